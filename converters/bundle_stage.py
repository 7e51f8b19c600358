"""The bundle's content: each exported file's manifest entry (:func:`artifact_entry`, made by the
verify stage before it opens the file) and the write stage (:func:`write_stage`), which puts
the manifest beside the artifacts in the staging folder (``edgekit.bundle.staging_dir`` moves
the folder into place)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
from typing import Any, Iterable

from edgekit.bundle import Artifact, Manifest, write_manifest
from edgekit.converters.jobs import Conversion, Job
from edgekit.runtimes.base import TensorSpec

__all__ = ["artifact_entry", "write_stage", "tool_versions", "TOOLS"]

TOOLS = ("edgekit", "torch", "onnx", "onnxscript", "onnx-ir", "onnxruntime", "ai-edge-litert", "litert-torch",
         "ai-edge-quantizer", "coremltools", "numpy")


def tool_versions(names: Iterable[str] = TOOLS) -> dict[str, str]:
    """Installed versions of the tools that shaped a bundle (missing ones are left out)."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def artifact_entry(conv: Conversion, job: Job) -> Artifact:
    """The manifest entry of an exported file, with the tensors the exporter was asked for
    (replaced by what the runtime reports once verification opened it).

    Rewrites may change the boundary: the program's ``edgekit_io_layouts`` (e.g. NCTHW → TCHW
    by frames_to_batch, NCHW → NHWC by nhwc_boundary). Each changed tensor gets its artifact
    layout and shape, and a ``source_layouts`` entry so that ``edgekit.load(bundle)`` translates
    from and to the source's layout."""
    cap, fold, fmt, result = conv.captured, conv.fold, job.format, job.result
    in_layouts = list(cap.input_layouts)
    in_shapes = [list(s) for s in cap.input_shapes]
    in_dtypes = [str(t.dtype).replace("torch.", "") for t in cap.example_inputs]
    # A folded input is a new interface (pixels), not the source tensor in another layout, so it
    # gets no source_layouts entry: a bundle session must not transpose it back to NCHW.
    source_layouts: dict[str, str] = {}
    if fold is not None:
        in_dtypes[0] = "float32"
        if fold.input_layout == "NHWC" and fmt != "coreml":
            n, c, h, w = in_shapes[0]
            in_shapes[0] = [n, h, w, c]
            in_layouts[0] = "NHWC"
    if fmt == "coreml" and fold is not None:
        in_dtypes[0] = "uint8"  # an image
    inputs = [TensorSpec(n, tuple(s), d, lay) for n, s, d, lay in zip(cap.input_names, in_shapes, in_dtypes, in_layouts)]
    outputs = [TensorSpec(n, tuple(s), "float32", lay)
               for n, s, lay in zip(cap.output_names, cap.output_shapes, cap.output_layouts)]
    io_layouts = job.program.io_layouts if job.program else None
    inputs, outputs = _rewritten_layouts(inputs, outputs, source_layouts, io_layouts)
    extra: dict[str, Any] = {"notes": result.notes} if result.notes else {}
    own = {k: v for k, v in result.extra.items() if k != "quantized_io"}
    if own:
        extra[fmt] = own
    if "quantized_io" in result.extra:  # read by bundle sessions (edgekit.runtimes.bundle_session)
        extra["quantized_io"] = result.extra["quantized_io"]
    applied = job.program.applied if job.program else []
    return Artifact(path=result.path.name, format=fmt, inputs=inputs, outputs=outputs, target=conv.options.target,
                    precision=conv.options.precision, passes=[*applied, *result.passes],
                    source_layouts=source_layouts, extra=extra)


def _rewritten_layouts(inputs: list[TensorSpec], outputs: list[TensorSpec], source_layouts: dict[str, str],
                       io_layouts: dict | None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Apply the boundary changes of the rewrite passes to the specs; fills ``source_layouts``."""
    from edgekit.runtimes.bundle_session import LayoutMap

    def change(spec: TensorSpec, layout: str) -> TensorSpec:
        if not spec.layout or layout == spec.layout:
            return spec
        source_layouts.setdefault(spec.name, spec.layout)
        return TensorSpec(spec.name, LayoutMap(spec.layout, layout).shape(spec.shape), spec.dtype, layout)

    if io_layouts:
        ins, outs = io_layouts.get("inputs", {}), io_layouts.get("outputs", {})
        inputs = [change(t, ins[t.name]["artifact"]) if t.name in ins else t for t in inputs]
        outputs = [change(t, (outs.get(t.name) or outs.get(str(i)))["artifact"])
                   if (t.name in outs or str(i) in outs) else t for i, t in enumerate(outputs)]
    return inputs, outputs


def write_stage(conv: Conversion, jobs: list[Job]) -> Manifest:
    """Write ``edgekit.json`` into the staging folder: the source, its pre-processing (and what
    was folded), every artifact, the conversion's options and passes, and every failed format."""
    cap, o = conv.captured, conv.options
    with conv.stage("write", message=str(conv.out)):
        preprocess = dict(cap.preprocess)
        if conv.fold is not None:
            preprocess.update(conv.fold.to_manifest())
        manifest = Manifest(
            name=cap.name, task=cap.task, source=cap.source, preprocess=preprocess,
            artifacts=[j.artifact for j in jobs if j.artifact is not None],
            tools=tool_versions(), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            extra={"convert": {
                "formats": list(o.formats), "precision": o.precision, "target": o.target, "passes": conv.applied,
                "passes_not_applied": conv.not_applied, "fold_preprocess": conv.fold is not None,
                "input_shapes": [list(s) for s in cap.input_shapes],
                "output_shapes": [list(s) for s in cap.output_shapes],
                **({"verification_inputs": conv.shared["inputs"]} if "inputs" in conv.shared else {}),
                **({"calibration": conv.calibration_samples[1]} if conv.calibration_samples else {}),
            }, "failures": [{"format": j.format, "stage": j.failed_stage or "export", "reason": str(j.error)}
                            for j in jobs if j.error is not None]},
        )
        write_manifest(conv.staging, manifest)
    return manifest
