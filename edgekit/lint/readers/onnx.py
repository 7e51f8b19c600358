"""The op-level view of an ONNX model for :mod:`edgekit.lint`, without the ``onnx`` package.

Nodes, attributes, initializers (values of small ones: perms, axes, pads) and the declared
tensor types come from the pure-Python protobuf walker
(:func:`edgekit.runtimes.onnx_file.read_onnx_graph`) on a file
:func:`~edgekit.runtimes.modelfile.read_model` has validated; weights are never read.

Intermediate tensors usually carry no declared type, and lint needs their ranks, dtypes and
shapes. They come from ONNX shape inference, which runs where it is installed:

- with the ``onnx`` package (the converter side): ``onnx.shape_inference.infer_shapes`` (with
  data propagation) on a slim copy of the model (no doc strings, no weight data:
  :func:`~edgekit.runtimes.onnx_file.slim_onnx`);
- without it (a runtime-only install): the same inference functions as onnxruntime runs them
  when it loads a model (:func:`edgekit.runtimes.onnxruntime.infer_types`: every node output
  declared a graph output, weights turned into typed inputs, nothing run). A note says so.

When neither can infer (a custom op, an invalid node), lint works with the declared types and
the report's notes say that checks of intermediate tensors saw only those.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, InvalidModelFile
from edgekit.lint.readers import SMALL, Graph, Op, Tensor, flat
from edgekit.runtimes.onnx_file import ONNX_DTYPES, OnnxTensor, OnnxValue, read_onnx_graph as walk_graph

__all__ = ["read_onnx_graph"]

# The note when onnxruntime, not the onnx package, inferred the intermediate shapes.
ORT_INFERENCE_NOTE = ("intermediate tensor shapes from onnxruntime's shape inference (the onnx package is not "
                      "installed; the same ONNX inference functions)")


def read_onnx_graph(path: Path) -> Graph:
    """The :class:`~edgekit.lint.readers.Graph` of an ``.onnx`` file that
    :func:`~edgekit.runtimes.modelfile.read_model` has validated."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        g = walk_graph(data, keep_elements=SMALL)
        typed, notes = _tensor_types(path, data, g)

    tensors: dict[str, Tensor] = {}
    init_names = set()
    for init in g.initializers:
        init_names.add(init.name)
        tensors[init.name] = Tensor(init.name, init.name, tuple(init.dims), init.dtype, const=True, value=init.value)
    for vi in typed:
        if vi.name in tensors:
            continue
        tensors[vi.name] = Tensor(vi.name, vi.name, _shape(vi.shape), vi.dtype)

    def tensor(name: str) -> Tensor:
        if name not in tensors:
            tensors[name] = Tensor(name, name, None, "unknown")
        return tensors[name]

    ops: list[Op] = []
    for i, node in enumerate(g.nodes):
        op_type = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        if node.op_type == "Constant":
            for out in node.outputs:
                t = tensor(out)
                t.const = True
                value = node.attrs.get("value")
                if isinstance(value, OnnxTensor):
                    t.shape = tuple(value.dims)  # data of large constants is not read
                    if value.dtype in ONNX_DTYPES.values():
                        t.dtype = value.dtype
                    t.value = value.value  # None above SMALL elements
        attrs = {k: _plain(v) for k, v in node.attrs.items()}
        ins = [tensor(n) if n else None for n in node.inputs]
        outs = [tensor(n) for n in node.outputs]
        ops.append(Op(i, op_type, node.name or "", ins, outs, _onnx_attrs(node.op_type, attrs, ins)))
    inputs = [tensors[vi.name] for vi in g.inputs if vi.name not in init_names]
    outputs = [tensor(vi.name) for vi in g.outputs]
    return Graph("onnx", path, ops, inputs, outputs, "NCHW", notes)


def _tensor_types(path: Path, data: Any, g: Any) -> tuple[list[OnnxValue], list[str]]:
    """The typed values lint uses, first one of a name wins: the graph inputs, then what shape
    inference gives (or the declared value_info), then the graph outputs; and notes."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        from edgekit.runtimes.onnx_file import slim_onnx

        try:
            # Parse a slim copy (no doc strings, no data of large tensors): memory set by the graph, not
            # by the file (a 2 GB doc string or 2 GB of weights), and lint needs neither.
            model = onnx.ModelProto.FromString(slim_onnx(data, keep_elements=SMALL))
        except Exception as e:  # DecodeError and friends; read_model validated the wire format already
            raise InvalidModelFile(path, f"onnx cannot parse the model ({type(e).__name__}: {e})") from None
        notes: list[str] = []
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as e:  # custom domains, unsupported opsets: lint the declared types only
            inferred = model
            notes.append(f"shape inference failed ({type(e).__name__}); ranks of intermediate tensors may be unknown")
        i = walk_graph(inferred.SerializeToString(), keep_elements=0)
        return [*i.inputs, *i.value_info, *i.outputs], notes
    from edgekit.runtimes.onnxruntime import infer_types

    try:
        inferred = infer_types(data, keep_elements=SMALL)
    except EdgekitError as e:
        return [*g.inputs, *g.value_info, *g.outputs], [
            f"intermediate tensor shapes unknown: the onnx package is not installed and {e.message}; rank, dtype "
            "and shape checks saw only the tensors the file declares a type for (inputs, outputs, value_info)"]
    produced = [inferred[o] for node in g.nodes for o in node.outputs if o in inferred]
    return [*g.inputs, *produced, *g.value_info, *g.outputs], [ORT_INFERENCE_NOTE]


def _shape(shape: tuple[int | str | None, ...] | None) -> tuple[int | None, ...] | None:
    """Dims as lint reads them: positive sizes, else None (dynamic or unknown)."""
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _plain(v: Any) -> Any:
    """An attribute value as lint keeps it: numbers, strings and lists of them (tensors and
    graphs are not needed)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (int, float, str, bool)):
        return v
    return None


def _onnx_attrs(op_type: str, raw: dict[str, Any], ins: list[Tensor | None]) -> dict[str, Any]:
    a = dict(raw)
    weight = ins[1] if len(ins) > 1 else None
    if op_type in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv"):
        w = ins[3] if op_type == "QLinearConv" and len(ins) > 3 else weight
        kernel = raw.get("kernel_shape") or (list(w.shape[2:]) if w is not None and w.shape else None)
        if kernel is not None:
            a["kernel"] = tuple(kernel)
            a["kernel_rank"] = len(kernel)
        a["has_bias"] = len(ins) > 2 and ins[2] is not None
    if op_type in ("MaxPool", "AveragePool", "LpPool") and raw.get("kernel_shape"):
        a["kernel"] = tuple(raw["kernel_shape"])
        a["kernel_rank"] = len(raw["kernel_shape"])
    if "strides" in raw:
        a["strides"] = tuple(raw["strides"])
    if "dilations" in raw:
        a["dilations"] = tuple(raw["dilations"])
    if op_type in ("DepthToSpace", "SpaceToDepth"):
        a["block_size"] = raw.get("blocksize")
        a["mode"] = raw.get("mode", "DCR")
    if op_type == "Resize":
        ctm = raw.get("coordinate_transformation_mode", "half_pixel")
        a["nearest"] = raw.get("mode", "nearest") == "nearest"
        a["half_pixel_centers"] = ctm in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric")
        a["align_corners"] = ctm == "align_corners"
    if op_type == "Transpose" and "perm" in raw:
        a["perm"] = list(raw["perm"])
    if op_type.startswith("Reduce"):
        if "axes" in raw:
            a["axes"] = list(raw["axes"])
        elif len(ins) > 1 and ins[1] is not None and ins[1].value is not None:
            a["axes"] = [int(v) for v in flat(ins[1].value)]
    if op_type == "Pad" and len(ins) > 1 and ins[1] is not None and ins[1].value is not None:
        pads = [int(v) for v in flat(ins[1].value)]
        n = len(pads) // 2
        a["paddings"] = [[pads[i], pads[i + n]] for i in range(n)]
    if op_type == "Slice" and len(ins) > 4 and ins[4] is not None and ins[4].value is not None:
        a["slice_strides"] = [int(v) for v in flat(ins[4].value)]
    if op_type in ("Gather", "GatherND", "GatherElements") and weight is not None:
        a["index_dtype"] = weight.dtype
    if op_type == "Softmax" and "axis" in raw:
        a["axis"] = raw["axis"]
    return a
