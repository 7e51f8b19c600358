"""The capture stage of a conversion: the source becomes a module, example inputs, a reference
and the ``torch.export`` programs the formats need.

Roles of the captured programs (``Conversion.programs``): ``tensor`` (what every format
exports), ``image`` (CoreML with folded pre-processing: the first input is an image) and
``half`` (ONNX fp16: a float16 copy behind float32 inputs and outputs). A variant only one format
uses fails only that format. An ONNX source goes to ONNX directly (optimised, not re-exported)
unless rewrites, folding or another precision need the torch program; if the ONNX importer
fails, ONNX → ONNX still works and the other formats fail with the importer's reason.
"""

from __future__ import annotations

import copy
from typing import Any

from edgekit.converters.jobs import Conversion, Job
from edgekit.errors import ConversionError

__all__ = ["capture_stage", "half_program"]


def capture_stage(conv: Conversion, jobs: list[Job], source: Any, **capture_args: Any) -> list[Job]:
    """Fill ``conv.captured``, ``conv.fold``, ``conv.direct_onnx`` and ``conv.programs``; a
    format whose program could not be made gets ``job.error``. A failure that concerns every
    format raises."""
    from edgekit.converters import capture as C
    from edgekit.converters.samples import load_user_data

    o = conv.options
    name = str(source) if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__") else type(source).__name__
    with conv.stage("capture", message=name):
        cap = conv.captured = C.capture(source, **capture_args)
        conv.fold = fold = cap.fold_spec(o.input_layout) if o.fold_preprocess else None
        load_user_data(conv)  # --verify-data / --calibration: a wrong file stops here, before any export
        conv.direct_onnx = cap.onnx_path is not None and fold is None and o.precision == "fp32" and not o.rewrites
        by_format = {j.format: j for j in jobs}
        needs_torch = [f for f in by_format if f != "onnx" or not conv.direct_onnx]
        if not needs_torch:
            return jobs
        try:
            conv.programs["tensor"] = C.export_program(cap, fold)
        except ConversionError as e:
            if cap.onnx_path is None:
                raise
            for f in needs_torch:  # ONNX source: the importer failed; ONNX → ONNX still works
                by_format[f].fail("capture", e)
            return jobs
        variants = []
        if fold is not None and "coreml" in by_format:
            variants.append(("image", "coreml", lambda: C.export_program(cap, fold, for_image_input=True)))
        if o.precision == "fp16" and "onnx" in needs_torch:
            variants.append(("half", "onnx", lambda: half_program(cap, fold)))
        for role, fmt, make in variants:
            try:
                conv.programs[role] = make()
            except ConversionError as e:
                by_format[fmt].fail("capture", e)
    return jobs


def half_program(cap: Any, fold: Any) -> tuple[Any, dict]:
    """The fp16 program: a half-precision copy of the module, float32 inputs cast on entry
    and outputs cast back (so the artifact's interface stays float32)."""
    import torch
    import torch.utils._pytree as pytree

    from edgekit.converters import capture as C

    try:
        half = copy.deepcopy(cap.module).half()
    except Exception as e:  # an ExportedProgram's module may refuse; say so
        raise ConversionError("capture", f"cannot make a float16 copy of the model ({type(e).__name__}: {e})",
                              hint="convert with --precision fp32") from None

    class HalfIO(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = half

        def forward(self, *xs: torch.Tensor) -> Any:
            out = self.model(*[x.half() if x.is_floating_point() else x for x in xs])
            return pytree.tree_map(lambda t: t.float() if t.is_floating_point() else t, out)

    wrapper = HalfIO()
    wrapper.training = False
    half_cap = copy.copy(cap)
    half_cap.module = wrapper
    return C.export_program(half_cap, fold)
