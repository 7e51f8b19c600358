"""The op-level view of a Core ML model for :mod:`edgekit.lint`: the MIL ops of an ML program.

The spec is found and parsed by :mod:`edgekit.runtimes.coreml_spec` (coremltools' protobuf
modules only, no coremltools import); every op of the main function's block (and of nested
blocks) becomes an :class:`~edgekit.lint.readers.Op` with its output ranks and dtypes, and
const values for its parameters (strides, perm, axes...). Old-style neural networks and
pipelines give layer types only (their tensors carry no types).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import InvalidModelFile
from edgekit.lint.readers import SMALL, Graph, Op, Tensor, flat
from edgekit.runtimes import coreml_spec

__all__ = ["read_coreml_graph"]


def read_coreml_graph(path: Path) -> Graph:
    """The :class:`~edgekit.lint.readers.Graph` of an ``.mlpackage`` folder or ``.mlmodel`` file.
    Raises :class:`~edgekit.errors.MissingDependency` without coremltools (its protobuf modules
    parse the spec)."""
    spec_path = coreml_spec.spec_file(path)
    model = coreml_spec.parse_spec(spec_path, coreml_spec.require_protobuf("linting a Core ML model"))
    kind = model.WhichOneof("Type")
    if kind != "mlProgram":
        return _coreml_neural_network(path, model, kind)

    fn = model.mlProgram.functions.get("main") or next(iter(model.mlProgram.functions.values()), None)
    if fn is None:
        raise InvalidModelFile(spec_path, "an ML program without functions")
    try:
        return _ml_program(path, spec_path, model, fn)
    except coreml_spec.CorruptSpec as e:
        raise InvalidModelFile(spec_path, str(e)) from None


def _ml_program(path: Any, spec_path: Any, model: Any, fn: Any) -> Graph:
    tensors: dict[str, Tensor] = {}
    consts: dict[str, Any] = {}
    ops: list[Op] = []
    inputs: list[Tensor] = []
    for inp in fn.inputs:
        shape, dtype = coreml_spec.mil_type(inp.type)
        tensors[inp.name] = Tensor(inp.name, inp.name, shape, dtype)
        inputs.append(tensors[inp.name])
    # Flexible input shapes live in the model description, not in the MIL types.
    for feat in model.description.input:
        arr = feat.type.multiArrayType if feat.type.WhichOneof("Type") == "multiArrayType" else None
        if arr is not None and feat.name in tensors and arr.WhichOneof("ShapeFlexibility") == "shapeRange":
            tensors[feat.name].shape = tuple(r.lowerBound if r.lowerBound == r.upperBound else None
                                             for r in arr.shapeRange.sizeRanges)
    block = fn.block_specializations.get(fn.opset) or next(iter(fn.block_specializations.values()), None)
    if block is None:
        raise InvalidModelFile(spec_path, "an ML program function without a block")
    _mil_block(block, tensors, consts, ops)
    outputs = [tensors.get(name) or Tensor(name, name, None, "unknown") for name in block.outputs]
    notes = [f"ML program, opset {fn.opset}"]
    return Graph("coreml", path, ops, inputs, outputs, "NCHW", notes)


def _mil_block(block: Any, tensors: dict[str, Tensor], consts: dict[str, Any], ops: list[Op]) -> None:
    for op in block.operations:
        outs = []
        for o in op.outputs:
            shape, dtype = coreml_spec.mil_type(o.type)
            t = tensors.setdefault(o.name, Tensor(o.name, o.name, shape, dtype))
            outs.append(t)
        name_attr = op.attributes.get("name")
        name = name_attr.immediateValue.tensor.strings.values[0] if name_attr is not None and \
            name_attr.immediateValue.tensor.strings.values else ""
        if op.type == "const":
            value = _mil_value(op.attributes.get("val"))
            for t in outs:
                t.const = True
                t.value = value
                consts[t.name] = value
            continue
        ins: list[Tensor | None] = []
        params: dict[str, Any] = {}
        keys = sorted(op.inputs, key=lambda k: (k != "x", k))  # "x" (the data input) first
        for key in keys:
            arg = op.inputs[key]
            for binding in arg.arguments:
                if binding.WhichOneof("binding") == "name":
                    t = tensors.get(binding.name) or Tensor(binding.name, binding.name, None, "unknown")
                    ins.append(t)
                    if t.const:
                        params[key] = t.value
                else:
                    params[key] = _mil_value_from(binding.value)
        attrs = _mil_attrs(op.type, params, ins)
        ops.append(Op(len(ops), op.type, name, ins, outs, attrs))
        for inner in op.blocks:
            _mil_block(inner, tensors, consts, ops)


def _mil_value(val: Any) -> Any:
    if val is None or val.WhichOneof("value") != "immediateValue":
        return None  # weights in the blob file: not needed by lint
    return _mil_value_from(val)


def _mil_value_from(val: Any) -> Any:
    if val.WhichOneof("value") != "immediateValue":
        return None
    imm = val.immediateValue
    if imm.WhichOneof("value") != "tensor":
        return None
    tv = imm.tensor
    kind = tv.WhichOneof("value")
    if kind is None:
        return None
    values = list(getattr(tv, kind).values)
    if len(values) > SMALL:
        return None
    if kind == "bytes":
        return None
    return values[0] if len(values) == 1 and not val.type.tensorType.dimensions else values


def _mil_attrs(op_type: str, params: dict[str, Any], ins: list[Tensor | None]) -> dict[str, Any]:
    a: dict[str, Any] = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, list))}
    if "strides" in params and isinstance(params["strides"], list):
        a["strides"] = tuple(params["strides"])
    if "dilations" in params and isinstance(params["dilations"], list):
        a["dilations"] = tuple(params["dilations"])
    if op_type == "transpose" and isinstance(params.get("perm"), list):
        a["perm"] = [int(v) for v in params["perm"]]
    if op_type.startswith("reduce_") and params.get("axes") is not None:
        a["axes"] = [int(v) for v in flat(params["axes"])]
    if op_type in ("pixel_shuffle", "depth_to_space", "space_to_depth"):
        a["block_size"] = params.get("upscale_factor", params.get("block_size"))
    if op_type in ("gather", "gather_nd", "gather_along_axis") and len(ins) > 1 and ins[1] is not None:
        a["index_dtype"] = ins[1].dtype
    return a


def _coreml_neural_network(path: Path, model: Any, kind: str | None) -> Graph:
    """Old-style neural networks (and pipelines): layer types only, no typed tensors."""
    ops: list[Op] = []

    def walk(m: Any) -> None:
        k = m.WhichOneof("Type")
        if k in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
            for layer in getattr(m, k).layers:
                outs = [Tensor(n, n, None, "unknown") for n in layer.output]
                ins: list[Tensor | None] = [Tensor(n, n, None, "unknown") for n in layer.input]
                ops.append(Op(len(ops), layer.WhichOneof("layer") or "unknown", layer.name, ins, outs))
        elif k in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
            pipe = m.pipeline if k == "pipeline" else getattr(m, k).pipeline
            for sub in pipe.models:
                walk(sub)

    walk(model)
    note = f"Core ML {kind or 'model'} (not an ML program): only layer types are known, not tensor ranks or dtypes"
    return Graph("coreml", path, ops, [], [], "NCHW", [note])
