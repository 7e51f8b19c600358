"""The data a conversion passes from stage to stage.

``edgekit.convert`` is the line capture → rewrite → export → verify → lint → write
(``docs/architecture.md``). Each stage is a function in the module of its stage that takes the
:class:`Conversion` (what holds for every format: the options, the captured source, timings,
the progress callback) and the list of :class:`Job` s (one per requested format) and returns the
jobs, filled in:

=========  ====================================  ===========================================
stage      function                              fills in on each job
=========  ====================================  ===========================================
capture    ``capture.stage.capture_stage``       ``Conversion.captured``, ``.programs``;
                                                 ``job.error`` when this format cannot go on
rewrite    ``rewrite.rewrite_stage``             ``job.program`` (and ``.half``): the program
                                                 its passes made; ``Conversion.not_applied``
export     ``exporters.stage.export_stage``      ``job.result`` (file, format-level passes),
                                                 or ``job.error``
verify     ``verify.verify_stage``               ``job.artifact`` (manifest entry) with its
                                                 ``verification``; ``job.status``
lint       ``lint_stage.lint_stage``             ``job.artifact.lint`` (``--target`` only)
write      ``bundle_stage.write_stage``          the manifest, from every job
=========  ====================================  ===========================================

A job whose ``error`` is set skips the rest of the line; the bundle lists it under ``failures``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from edgekit.bundle import Artifact
from edgekit.errors import EdgekitError, UsageError

__all__ = ["Event", "ArtifactStatus", "ConvertOptions", "Rewritten", "Job", "Conversion", "ARTIFACT_NAMES",
           "DEFAULT_FORMATS", "parse_formats"]

ARTIFACT_NAMES = {"onnx": "model.onnx", "tflite": "model.tflite", "coreml": "model.mlpackage"}
DEFAULT_FORMATS = ("onnx", "tflite", "coreml")


@dataclass
class Event:
    """A progress report: ``stage`` is capture | rewrite | export | verify | lint | write;
    ``fmt`` the format for per-artifact stages; ``status`` start | done | failed | skipped."""

    stage: str
    status: str
    fmt: str | None = None
    message: str = ""
    seconds: float | None = None


@dataclass
class ArtifactStatus:
    """The outcome for one requested format."""

    format: str
    status: str  # passed | failed | skipped | export-failed | not-verified
    path: Path | None = None
    reason: str | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None
    export_seconds: float | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. an int8 artifact slower than its fp32 file

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "status": self.status, "path": str(self.path) if self.path else None,
                "reason": self.reason, "size_bytes": self.size_bytes, "latency_ms": self.latency_ms,
                "export_seconds": self.export_seconds, "warnings": list(self.warnings)}


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """``"onnx,tflite"`` or a list → the formats in order, aliases resolved; usage errors for
    unknown or no formats."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    fmts: list[str] = []
    for f in (x.strip().lower() for x in items):
        if not f:
            continue
        f = {"mlpackage": "coreml", "litert": "tflite"}.get(f, f)
        if f not in ARTIFACT_NAMES:
            raise UsageError(f"unknown format '{f}'", hint="choose from: onnx, tflite, coreml")
        if f not in fmts:
            fmts.append(f)
    if not fmts:
        raise UsageError("no output format given", hint="pass --to onnx,tflite,coreml")
    return fmts


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``edgekit.convert`` was asked, checked before any work (usage errors, exit 2)."""

    formats: tuple[str, ...]
    target: str | None = None
    passes: tuple[str, ...] | None = None
    skip_passes: tuple[str, ...] = ()
    precision: str = "fp32"
    fold_preprocess: bool = False
    input_layout: str = "NCHW"
    verify: bool = True
    bench_runs: int = 10
    verify_data: Path | None = None  # --verify-data: a folder, an image, .npy or .npz (edgekit.converters.samples)
    calibration: Path | None = None  # --calibration: the same kinds, int8 calibration inputs

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"unknown precision '{self.precision}'", hint="choose fp32, fp16 or int8")
        if self.precision == "int8" and "coreml" in self.formats:
            raise UsageError("--precision int8 writes TFLite (full-integer) and ONNX (QDQ), not CoreML",
                             hint="use --to tflite,onnx with int8, or fp32/fp16 for CoreML")
        if self.input_layout not in ("NCHW", "NHWC"):
            raise UsageError(f"unknown input layout '{self.input_layout}'", hint="choose NCHW or NHWC")
        if self.input_layout != "NCHW" and not self.fold_preprocess:
            raise UsageError("--input-layout NHWC changes what the artifact takes; it needs --fold-preprocess",
                             hint="add --fold-preprocess (or leave the layout NCHW)")
        if self.bench_runs < 0:
            raise UsageError(f"bench_runs must be >= 0, got {self.bench_runs}")
        from edgekit.converters.samples import check_data_path

        if self.calibration is not None and self.precision != "int8":
            raise UsageError("--calibration applies to --precision int8", hint="add --precision int8 or leave it out")
        if self.verify_data is not None and not self.verify:
            raise UsageError("--verify-data with --no-verify: nothing would use the data", hint="leave one of them out")
        for option, path in (("--verify-data", self.verify_data), ("--calibration", self.calibration)):
            if path is not None:
                check_data_path(path, option)
        from edgekit.converters.passes import validate_selection

        validate_selection(self.target, self.passes, self.skip_passes)  # bad targets and pass ids, up front

    @property
    def rewrites(self) -> bool:
        return bool(self.target or self.passes)


@dataclass
class Rewritten:
    """A program after one format's passes: what the exporter gets and the manifest records."""

    program: Any
    kwargs: dict
    applied: list[str]
    io_layouts: dict | None


@dataclass
class Job:
    """One requested format on its way through the stages."""

    format: str
    dest: Path  # where the exporter writes, inside the staging folder
    final: Path  # where the artifact is once the bundle is in place
    passes: tuple[str, ...] = ()  # this format's program-stage pipeline
    program: Rewritten | None = None  # the program to export (None: ONNX optimised directly)
    half: Rewritten | None = None  # ONNX fp16: the half-precision program
    result: Any = None  # the exporter's ExportResult
    artifact: Artifact | None = None  # the manifest entry
    error: EdgekitError | None = None  # this format cannot go on (and why)
    failed_stage: str | None = None
    status: ArtifactStatus | None = None

    def fail(self, stage: str, error: EdgekitError) -> None:
        self.error, self.failed_stage = error, stage

    @property
    def alive(self) -> bool:
        return self.error is None


@dataclass
class Conversion:
    """What every stage shares: the options, the captured source (``captured``), the captured
    programs by role (``programs``), the fold, the passes that did not apply and why, the
    verification cases computed once, the stage timings and the progress callback."""

    options: ConvertOptions
    staging: Path
    out: Path
    report: Callable[[Event], None]
    captured: Any = None
    fold: Any = None
    programs: dict[str, tuple[Any, dict]] = field(default_factory=dict)
    direct_onnx: bool = False
    applied: list[str] = field(default_factory=list)
    not_applied: dict[str, str] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    verify_samples: tuple[list, str] | None = None  # (samples, what) from --verify-data
    calibration_samples: tuple[list, str] | None = None  # (samples, what) from --calibration

    def stage(self, name: str, message: str = "", fmt: str | None = None) -> "_StageTimer":
        """``with conv.stage("rewrite"):`` reports start / done / failed and records the time."""
        return _StageTimer(self, name, message, fmt)


class _StageTimer:
    def __init__(self, conv: Conversion, stage: str, message: str, fmt: str | None):
        self.conv, self.stage, self.message, self.fmt = conv, stage, message, fmt

    def __enter__(self) -> "_StageTimer":
        self.t0 = time.perf_counter()
        self.conv.report(Event(self.stage, "start", self.fmt, message=self.message))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        key = f"{self.stage}:{self.fmt}" if self.fmt else self.stage
        self.conv.stage_seconds[key] = self.seconds
        if exc is None:
            self.conv.report(Event(self.stage, "done", self.fmt, message=self.message, seconds=self.seconds))
        elif isinstance(exc, Exception):
            self.conv.report(Event(self.stage, "failed", self.fmt, message=str(exc), seconds=self.seconds))
