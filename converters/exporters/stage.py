"""The export stage of a conversion: each living job's program becomes a file, then the
format-level passes run on it (TFLite), then int8 quantization (after those passes: they rewrite
float ops). A format that fails here is removed and recorded; the others go on."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from edgekit._fmt import human_size
from edgekit.converters.jobs import ArtifactStatus, Conversion, Event, Job
from edgekit.errors import ConversionError, EdgekitError

__all__ = ["export_stage", "artifact_size", "remove_artifact"]


def export_stage(conv: Conversion, jobs: list[Job]) -> list[Job]:
    """Set ``job.result`` (an :class:`~edgekit.converters.exporters.ExportResult`) and
    ``job.status`` for every job; raise when no format could be exported."""
    for job in jobs:
        conv.report(Event("export", "start", job.format))
        t0 = time.perf_counter()
        try:
            if job.error is not None:
                raise job.error
            job.result = _export_one(conv, job)
        except EdgekitError as e:
            remove_artifact(job.dest)
            job.result = None
            secs = time.perf_counter() - t0
            if job.error is None:
                job.fail(getattr(e, "stage", "export"), e)
            job.status = ArtifactStatus(job.format, "export-failed", reason=str(e), export_seconds=round(secs, 2))
            conv.report(Event("export", "failed", job.format, str(e), secs))
            continue
        secs = time.perf_counter() - t0
        size = artifact_size(job.dest)
        job.status = ArtifactStatus(job.format, "not-verified", path=job.final, size_bytes=size,
                                    export_seconds=round(secs, 2))
        conv.stage_seconds[f"export:{job.format}"] = secs
        conv.report(Event("export", "done", job.format, human_size(size), secs))
    if not any(j.alive for j in jobs):
        raise ConversionError("export", "no format could be exported: " + "; ".join(_reason(j.error) for j in jobs))
    return jobs


def _reason(e: EdgekitError) -> str:
    """An error's text without its own stage tag (the joined message carries one)."""
    text = str(e)
    stage = getattr(e, "stage", None)
    return text.replace(f"[{stage}] ", "", 1) if stage else text


def _export_one(conv: Conversion, job: Job) -> Any:
    from edgekit.converters.exporters import ExportRequest, export
    from edgekit.converters.passes import run_pipeline

    cap, o, fold = conv.captured, conv.options, conv.fold
    direct = job.format == "onnx" and conv.direct_onnx
    if job.program is None and not direct:
        raise ConversionError("export", f"{job.format}: nothing was captured to export")
    request = ExportRequest(
        program=job.program.program if job.program else None,
        kwargs=job.program.kwargs if job.program else dict(zip(cap.input_names, cap.example_inputs)),
        input_names=list(cap.input_names), output_names=list(cap.output_names), dest=job.dest, task=cap.task,
        precision="fp32" if o.precision == "int8" else o.precision,  # int8: quantized after the TFLite passes
        onnx_source=cap.onnx_path if direct else None,
        image_input={"color_layout": fold.color_order} if (job.format == "coreml" and fold is not None) else None,
        labels=cap.preprocess.get("labels"),
        program_fp16=job.half.program if job.half else None,
    )
    result = export(job.format, request)
    if job.format == "tflite" and o.rewrites:  # format-level passes on the written file
        result.path, applied = run_pipeline(result.path, o.target, o.passes, o.skip_passes, stage="tflite",
                                            not_applied=conv.not_applied)
        result.passes.extend(applied)
        conv.applied.extend(p for p in applied if p not in conv.applied)
    if o.precision == "int8":
        _quantize(conv, job, result)
    return result


def _quantize(conv: Conversion, job: Job, result: Any) -> None:
    """int8 quantization of the exported file in place (:func:`edgekit.converters.quantize.quantize_job`:
    calibration data, full-integer TFLite, QDQ ONNX)."""
    from edgekit.converters import quantize

    quantize.quantize_job(conv, job, result)


def artifact_size(path: Path) -> int:
    """Bytes of an artifact (a file, or every file of a folder such as an .mlpackage)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def remove_artifact(path: Path) -> None:
    """Remove a half-made artifact (and an ONNX model's external data beside it)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
    extra = path.with_name(path.name + ".data")
    if extra.exists():
        extra.unlink()
