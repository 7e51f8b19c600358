"""``edgekit.convert``: source → capture → rewrite → export → verify → lint → write.

:func:`convert` is the data-flow line of docs/architecture.md: each stage is a function in the
module of its stage that takes and returns the per-format jobs (:mod:`edgekit.converters.jobs`),
and the bundle is written safely (see ``edgekit.bundle.staging_dir``). Each stage reports to an
optional ``progress`` callback, which the CLI turns into its stage display.

Failure policy (also the CLI's exit codes):

- a usage mistake (unknown format, non-empty ``out`` without ``force``...) raises
  :class:`~edgekit.errors.UsageError` before any work (exit 2);
- a failure that concerns every format (the source cannot be loaded or traced, a pass
  fails) raises :class:`~edgekit.errors.ConversionError` naming the stage (exit 1);
  nothing is written;
- a failure of one format (its exporter cannot express an op, or its artifact does not
  verify) does not stop the others: the bundle is written with what worked, the failed
  export is listed in the manifest's ``failures`` and a failed verification is recorded on
  its artifact; :attr:`ConvertResult.exit_code` is then 3. When *no* format could be
  exported, nothing is written and a ConversionError lists each format's reason (exit 1).

Example::

    >>> import edgekit
    >>> r = edgekit.convert("mobilenet_v2", formats=("onnx", "tflite"), out="mnv2",
    ...                     input_shapes=[(1, 3, 160, 160)])                       # doctest: +SKIP
    >>> [(a.format, a.status) for a in r.artifacts]                                # doctest: +SKIP
    [('onnx', 'passed'), ('tflite', 'passed')]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edgekit.bundle import Manifest, staging_dir
from edgekit.converters.bundle_stage import TOOLS, tool_versions
from edgekit.converters.jobs import (ARTIFACT_NAMES, DEFAULT_FORMATS, ArtifactStatus, Conversion, ConvertOptions,
                                     Event, Job, parse_formats)
from edgekit.converters.verify import metric_line

__all__ = ["convert", "ConvertResult", "ArtifactStatus", "Event", "TOOLS", "tool_versions", "metric_line"]


@dataclass
class ConvertResult:
    """What :func:`convert` wrote: the bundle folder, its manifest and one status per format."""

    bundle: Path
    manifest: Manifest
    artifacts: list[ArtifactStatus]
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    compile_error: str | None = None  # --compile: why the NPU compiler did not compile the TFLite artifact

    @property
    def ok(self) -> bool:
        """True when every artifact passed verification, or was skipped for a stated reason, and
        ``--compile`` (when asked) compiled."""
        return all(a.status in ("passed", "skipped") for a in self.artifacts) and self.compile_error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 3

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "ok": self.ok, "exit_code": self.exit_code, "compile_error": self.compile_error,
                "seconds": round(self.seconds, 2), "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
                "artifacts": [a.to_dict() for a in self.artifacts], "manifest": self.manifest.to_dict()}


def convert(
    source: Any,
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    out: str | Path | None = None,
    *,
    target: str | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    weights: str | Path | None = None,
    pretrained: bool = False,
    precision: str = "fp32",
    force: bool = False,
    fold_preprocess: bool = False,
    input_layout: str = "NCHW",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    value_range: Sequence[float] | None = None,
    task: str | None = None,
    passes: Sequence[str] | None = None,
    skip_passes: Sequence[str] = (),
    verify: bool = True,
    bench_runs: int = 10,
    verify_data: str | Path | None = None,
    calibration: str | Path | None = None,
    progress: Callable[[Event], None] | None = None,
    compile: str | None = None,
) -> ConvertResult:
    """Convert ``source`` to ``formats`` and write a verified bundle to ``out``.

    ``source``: a zoo name, ``file.py:callable``, ``package.module:callable``, a ``.pt2`` or
    ``.onnx`` file, an ``nn.Module`` or an ``ExportedProgram``. ``formats``: any of onnx,
    tflite, coreml (a list or a comma-separated string). ``input_shapes``: one shape per input
    (needed when the source does not come with example inputs). ``weights``/``pretrained``:
    a state dict to load, or the zoo's shipped weights. ``precision``: fp32, fp16 or int8.
    ``fold_preprocess``: the artifacts take RGB pixels 0..255 (``input_layout`` NCHW or NHWC)
    with the source's normalisation folded in (see :mod:`edgekit.converters.preprocess`);
    ``mean``/``std`` give that normalisation for sources without a model card, and ``value_range``
    the range before it (``[0, 1]`` when not given); verification and int8 calibration draw their
    inputs in that domain. ``verify_data``: a folder of images, an image, a ``.npy`` or ``.npz``
    whose samples become verification cases beside the generated ones; ``calibration``: the same
    kinds, the int8 calibration inputs (:mod:`edgekit.converters.samples`). ``target``,
    ``passes``, ``skip_passes``: the rewrite stage (a target's pipeline, or the passes named);
    with a target, every artifact is also linted against it. ``bench_runs``: timed runs for the
    latency column (0 skips it). ``progress`` receives an :class:`Event` at the start and end of
    every stage. ``compile``: an Ethos-U accelerator (``ethos-u55-256``...): the int8 TFLite
    artifact is compiled by Arm's Vela as the last stage (:mod:`edgekit.compiler`).
    """
    from edgekit.converters.capture.stage import capture_stage
    from edgekit.converters.exporters.stage import export_stage
    from edgekit.converters.lint_stage import lint_stage
    from edgekit.converters.rewrite import rewrite_stage
    from edgekit.converters.bundle_stage import write_stage
    from edgekit.converters.compile_stage import check_compile_options, compile_stage
    from edgekit.converters.int8_native import native_stage
    from edgekit.converters.verify import verify_stage

    t_start = time.perf_counter()
    options = ConvertOptions(tuple(parse_formats(formats)), target, tuple(passes) if passes else None,
                             tuple(skip_passes), precision, fold_preprocess, input_layout, verify, bench_runs,
                             Path(verify_data) if verify_data is not None else None,
                             Path(calibration) if calibration is not None else None)
    if value_range is not None:
        from edgekit.converters.capture.manifest_fields import check_value_range

        check_value_range(value_range)  # a usage error before any work
    check_compile_options(compile, options.formats, precision)
    out_path = Path(out) if out is not None else Path(f"{_default_name(source)}_edgekit")
    with staging_dir(out_path, force=force) as tmp:
        conv = Conversion(options, tmp, out_path, progress or (lambda e: None))
        jobs = [Job(f, tmp / ARTIFACT_NAMES[f], out_path / ARTIFACT_NAMES[f]) for f in options.formats]
        jobs = capture_stage(conv, jobs, source, weights=weights, pretrained=pretrained, input_shapes=input_shapes,
                             task=task, mean=mean, std=std, value_range=value_range)
        jobs = rewrite_stage(conv, jobs)
        jobs = export_stage(conv, jobs)
        jobs = native_stage(conv, jobs)  # int8 + --target: ops the target runs natively, folded back
        jobs = verify_stage(conv, jobs)
        jobs = lint_stage(conv, jobs)
        manifest = write_stage(conv, jobs)
        manifest, compile_error = compile_stage(conv, jobs, manifest, compile)
    return ConvertResult(out_path, manifest, [j.status for j in jobs], time.perf_counter() - t_start,
                         conv.stage_seconds, compile_error)


def _default_name(source: Any) -> str:
    text = str(source) if isinstance(source, (str, Path)) else type(source).__name__
    return Path(text.rsplit(":", 1)[-1] if ":" in text else text).stem or "model"
