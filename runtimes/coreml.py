"""CoreML backend (macOS only): ``.mlpackage`` / ``.mlmodel`` through ``coremltools.models.MLModel``.

coremltools converts on any OS but predicts only on macOS; elsewhere :func:`available` says so
and ``edgekit.load`` raises :class:`~edgekit.errors.BackendUnavailable`. Note that
``coremltools.models`` imports coremltools' converters (and torch when installed) — a
coremltools packaging fact; edgekit imports it only when a CoreML model is opened.

Accelerators map to compute units: ``"auto"``/``"all"`` → ALL, ``"cpu"``/``"none"`` →
CPU_ONLY, ``"gpu"`` → CPU_AND_GPU, ``"ane"``/``"npu"`` → CPU_AND_NE. CoreML picks the device
per op and has no thread setting. With ``placement_detail=True`` (macOS 14.4+, coremltools 8+)
``MLComputePlan`` gives the preferred device of every ML Program op, counted into
``placement.op_counts``; otherwise they are ``"unknown"``.

Not exercised by this repository's CI (Linux); the module is kept small so that it can be
read whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BackendUnavailable, InvalidModelFile, MissingDependency, UsageError
from edgekit.runtimes.base import Placement, Session, Stopwatch, TensorSpec
from edgekit.runtimes.coreml_spec import feature
from edgekit.runtimes.host import is_macos

__all__ = ["FORMATS", "available", "open_session", "CoreMLSession"]

FORMATS = ("coreml",)
_UNITS = {"auto": "ALL", "all": "ALL", "cpu": "CPU_ONLY", "none": "CPU_ONLY", "gpu": "CPU_AND_GPU",
          "ane": "CPU_AND_NE", "npu": "CPU_AND_NE", "neural_engine": "CPU_AND_NE"}


def available() -> str | None:
    if not is_macos():
        return "CoreML models run only on macOS (coremltools converts here but cannot predict)"
    try:
        import importlib.util

        if importlib.util.find_spec("coremltools") is None:
            raise ImportError
    except ImportError:
        return "the coreml backend needs coremltools — install it with: pip install 'edgekit[coreml]'"
    return None


def open_session(path: Path, threads: int, accelerator: str = "auto", *, placement_detail: bool = False,
                 **options: Any) -> "CoreMLSession":
    if options:
        raise UsageError(f"unknown option(s) for the coreml backend: {', '.join(sorted(options))}",
                         hint="coreml takes placement_detail=")
    why_not = available()
    if why_not:
        raise BackendUnavailable(why_not, where=path)
    return CoreMLSession(Path(path), threads, accelerator, placement_detail=placement_detail)


class CoreMLSession(Session):
    backend = "coreml"

    def __init__(self, path: Path, threads: int, accelerator: str, *, placement_detail: bool = False):
        try:
            import coremltools as ct
        except ImportError:
            raise MissingDependency("coremltools", "running CoreML models", extra="coreml") from None
        unit = _UNITS.get(accelerator.lower())
        if unit is None:
            raise UsageError(f"unknown CoreML accelerator '{accelerator}'", hint=f"use one of: {', '.join(_UNITS)}")
        self.path, self.threads = path, threads
        with Stopwatch() as sw:
            try:
                model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, unit))
            except Exception as e:  # coremltools raises plain Exceptions for bad packages
                raise InvalidModelFile(path, f"CoreML cannot load it: {_first_line(e)}") from None
        self.init_ms = sw.ms
        self._model = model
        desc = model.get_spec().description
        self.inputs = [_spec(f) for f in desc.input]
        self.outputs = [_spec(f) for f in desc.output]
        notes = [f"compute units: {unit}", "CoreML chooses the device per op; threads do not apply"]
        counts: dict[str, int] | str = "unknown"
        if placement_detail:
            try:
                counts = _compute_plan_counts(model, getattr(ct.ComputeUnit, unit))
                notes.append("op counts: MLComputePlan preferred device per ML Program op (const ops excluded)")
            except Exception as e:  # older macOS/coremltools, or a neural-network (not ML Program) model
                notes.append(f"MLComputePlan unavailable ({_first_line(e)})")
        self.placement = Placement("coreml", unit, counts, notes)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._model.predict(feed)
        return {s.name: np.asarray(out[s.name]) for s in self.outputs}

    def _close(self) -> None:
        self._model = None


def _spec(description: Any) -> TensorSpec:
    """A model input or output as the session feeds it (an image: (1, H, W), fed as an image)."""
    f = feature(description)
    if f.kind == "tensor":  # an unset data type is fed as float32
        return TensorSpec(f.name, f.shape, f.dtype if f.dtype != "unknown" else "float32")
    if f.kind == "image":
        return TensorSpec(f.name, (1, *f.shape[2:]), "image", None)
    return TensorSpec(f.name, (), f.dtype)


def _compute_plan_counts(model: Any, compute_units: Any) -> dict[str, int]:
    from coremltools.models.compute_plan import MLComputePlan

    plan = MLComputePlan.load_from_path(model.get_compiled_model_path(), compute_units=compute_units)
    program = plan.model_structure.program
    if program is None:
        raise ValueError("not an ML Program model")
    counts: dict[str, int] = {}

    def walk(block: Any) -> None:
        for op in block.operations:
            if op.operator_name != "const":
                usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
                device = type(usage.preferred_compute_device).__name__ if usage else "unknown"
                name = {"MLCPUComputeDevice": "CPU", "MLGPUComputeDevice": "GPU",
                        "MLNeuralEngineComputeDevice": "NeuralEngine"}.get(device, device)
                counts[name] = counts.get(name, 0) + 1
            for inner in op.blocks:
                walk(inner)

    walk(program.functions["main"].block)
    return counts


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
