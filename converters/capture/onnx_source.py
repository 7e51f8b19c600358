"""An ``.onnx`` source: example inputs from the graph's inputs, onnxruntime on the file as the
reference, and the torch module from the ONNX importer when a torch path (TFLite, CoreML)
needs one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle import sha256_file
from edgekit.converters.capture.captured import STAGE, Captured
from edgekit.converters.capture.finite_weights import check_finite_initializers
from edgekit.converters.capture.naming import infer_task
from edgekit.converters.capture.reference import onnx_reference
from edgekit.converters.layouts import layout_for_rank
from edgekit.errors import ConversionError, EdgekitError, UsageError, first_line

__all__ = ["capture_onnx", "import_onnx_module", "imported_references"]


def capture_onnx(path: Path, shapes: list | None, seed: int) -> Captured:
    """The :class:`Captured` of an ``.onnx`` file; its ``module`` stays None until
    :func:`import_onnx_module` (the task and output shapes come from one onnxruntime run)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        from edgekit.errors import InvalidModelFile

        raise InvalidModelFile(path, f"not a readable ONNX model ({first_line(e)})") from None
    check_finite_initializers(model, path)
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    arrays = _example_arrays(graph_inputs, shapes, seed, path)
    import torch

    inputs = tuple(torch.from_numpy(a) for a in arrays)
    src = {"kind": "onnx", "ref": str(path), "sha256": sha256_file(path),
           "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}
    out_names = [o.name for o in model.graph.output]
    out_ranks = [len(o.type.tensor_type.shape.dim) for o in model.graph.output]
    cap = Captured(
        name=path.stem, module=None, example_inputs=inputs,
        input_names=[vi.name for vi in graph_inputs], output_names=out_names,
        input_layouts=[layout_for_rank(len(a.shape)) for a in arrays],
        output_layouts=[layout_for_rank(r) for r in out_ranks],
        task="other", source=src, onnx_path=path,
    )
    cap.reference = onnx_reference(path)
    cap.reference32_for64, cap.reference64 = imported_references(cap)
    outs = cap.reference(arrays)
    cap.task = infer_task(None, [tuple(a.shape) for a in arrays], [tuple(o.shape) for o in outs])
    cap.output_layouts = [layout_for_rank(o.ndim) for o in outs]
    cap.output_shapes = [tuple(o.shape) for o in outs]
    return cap


def _example_arrays(graph_inputs: list, shapes: list | None, seed: int, path: Path) -> list[np.ndarray]:
    """Seeded random arrays for the graph's inputs: of ``shapes`` when given (each must fit the
    input's static dimensions), else of the inputs' own shapes, which must then be static."""
    np_dtypes = {1: np.float32, 10: np.float16, 11: np.float64, 7: np.int64, 6: np.int32, 2: np.uint8, 3: np.int8, 9: np.bool_}
    if shapes and len(shapes) != len(graph_inputs):
        raise UsageError(f"got {len(shapes)} --input-shape value(s), {path.name} takes {len(graph_inputs)} input(s)",
                         where=path)
    rng = np.random.default_rng(seed)
    arrays = []
    for i, vi in enumerate(graph_inputs):
        tt = vi.type.tensor_type
        # a dim is fixed by a positive value; -1, 0, a symbolic name or no value leave it to the user
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if shapes:
            declared = tt.HasField("shape")  # no shape at all: any --input-shape fits
            if declared and (len(shapes[i]) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shapes[i]))):
                shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
                raise UsageError(f"--input-shape {list(shapes[i])} does not fit input '{vi.name}' of shape {shown}",
                                 where=path, hint="keep the model's fixed (positive) dims; -1, 0 and named dims may be set")
            dims = list(shapes[i])
        elif not tt.HasField("shape"):
            raise UsageError(f"input '{vi.name}' declares no shape", where=path, hint="pass --input-shape for every input")
        if any(d is None or d < 1 for d in dims):
            shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
            raise UsageError(f"input '{vi.name}' has a dynamic shape {shown}", where=path,
                             hint="pass --input-shape for every input (e.g. --input-shape 1x3x224x224)")
        dt = np_dtypes.get(tt.elem_type)
        if dt is None:
            raise ConversionError(STAGE, f"input '{vi.name}' has an ONNX element type ({tt.elem_type}) edgekit cannot feed",
                                  where=path)
        arrays.append(rng.random(dims).astype(dt) if np.issubdtype(dt, np.floating) else rng.integers(0, 2, dims).astype(dt))
    return arrays


def import_onnx_module(cap: Captured) -> None:
    """Fill ``cap.module`` from the ONNX importer (needed for ONNX → TFLite / CoreML)."""
    if cap.module is not None or cap.onnx_path is None:
        return
    try:
        from edgekit.converters.onnx_import import import_onnx
    except ImportError as e:
        raise ConversionError(STAGE, f"the ONNX importer is not available ({first_line(e)})", where=cap.onnx_path,
                              hint="convert this .onnx to onnx only, or convert from the PyTorch model") from None
    shapes = {name: tuple(t.shape) for name, t in zip(cap.input_names, cap.example_inputs)}
    try:
        imported = import_onnx(cap.onnx_path, input_shapes=shapes)
    except EdgekitError:
        raise
    except Exception as e:
        raise ConversionError(STAGE, f"importing the ONNX graph into torch failed ({type(e).__name__}: {first_line(e)})",
                              where=cap.onnx_path) from None
    cap.module = imported.module


def imported_references(cap: Captured) -> tuple:
    """The float32 and float64 runs of the ONNX graph as the importer reads it (imported on first
    use): verification's measured bound for an ONNX source. Both come from the imported module, so
    a difference between the importer and onnxruntime shows in both precisions and cannot widen the
    bound; if the importer cannot read the graph, they raise and verification states its bound."""
    from edgekit.converters.capture.reference import torch_reference, torch_reference64

    runs: dict[str, Any] = {}

    def make() -> dict[str, Any]:
        if not runs:
            import_onnx_module(cap)
            runs["32"], runs["64"] = torch_reference(cap.module), torch_reference64(cap.module)
        return runs

    return (lambda arrays: make()["32"](arrays)), (lambda arrays: make()["64"](arrays))
