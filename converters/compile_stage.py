"""The compile stage (``edgekit convert ... --compile ethos-u55-256``): the last stage, after the
manifest is written into the staging folder. The int8 TFLite artifact is compiled by the NPU
compiler (:func:`edgekit.compiler.compile_into`, Arm's Vela) and the compiled file and its
manifest entry join the bundle before it is moved into place, so the bundle appears whole or
not at all. A compiler failure does not lose the conversion: the bundle is written with the
failure under ``failures`` (stage ``compile``) and the conversion exits 3."""

from __future__ import annotations

from typing import Any

from edgekit.bundle import Manifest, write_manifest
from edgekit.converters.jobs import Conversion, Job, Event
from edgekit.errors import EdgekitError, UsageError

__all__ = ["check_compile_options", "compile_stage"]


def check_compile_options(accelerator: str | None, formats: tuple[str, ...], precision: str) -> None:
    """Usage errors for ``--compile`` before any work (exit 2), and Vela's absence (exit 1)."""
    if accelerator is None:
        return
    from edgekit.vela import ACCELERATORS, require_vela

    if accelerator not in ACCELERATORS:
        raise UsageError(f"unknown Ethos-U accelerator '{accelerator}' for --compile",
                         hint=f"one of {', '.join(ACCELERATORS)}")
    if "tflite" not in formats:
        raise UsageError("--compile compiles the TFLite artifact", hint="add tflite to --to")
    if precision != "int8":
        raise UsageError("--compile needs an int8 model: the Ethos-U NPU runs int8 only",
                         hint="add --precision int8 (and --target ethos-u)")
    require_vela("--compile")


def compile_stage(conv: Conversion, jobs: list[Job], manifest: Manifest, accelerator: str | None) -> tuple[Manifest, str | None]:
    """Compile the bundle's TFLite artifact for ``accelerator`` (None: nothing to do). Returns the
    manifest and the failure, if any (recorded in the manifest's ``failures``)."""
    if accelerator is None:
        return manifest, None
    from edgekit.compiler import compile_into, summary_line

    job = next((j for j in jobs if j.format == "tflite"), None)
    error: str | None = None
    if job is None or job.artifact is None:
        error = "no TFLite artifact to compile (its export failed)"
        conv.report(Event("compile", "skipped", "tflite", message=error))
    else:
        timer = conv.stage("compile", message=accelerator, fmt="tflite")
        try:
            with timer:
                result = compile_into(conv.staging, manifest, accelerator)
                timer.message = summary_line(result.report.to_dict())
        except EdgekitError as e:
            error = str(e)
    if error is not None:
        failures: list[dict[str, Any]] = manifest.extra.setdefault("failures", [])
        failures.append({"format": "tflite", "stage": "compile", "reason": error})
    manifest.extra.setdefault("convert", {})["compile"] = accelerator
    write_manifest(conv.staging, manifest)
    return manifest, error
