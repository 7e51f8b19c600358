"""The op-level view of a TFLite/LiteRT flatbuffer for :mod:`edgekit.lint`.

The file is validated by :func:`edgekit.runtimes.modelfile.read_model` first (bounds, indices,
buffer sizes: the pure-Python walker of :mod:`edgekit.runtimes.tflite_file`), then read
through the schema LiteRT ships (``ai_edge_litert.schema_py_generated``, part of the base
install), which decodes every op's builtin options (strides, ``half_pixel_centers``, fused
activation...). Constant buffers are read only when small (perms, axes, paddings); weights are
never copied. ``shape_signature`` -1 marks a dynamic dim. Op types and dtypes are named as
:mod:`edgekit.runtimes.tflite_file` names them for ``edgekit inspect``.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path
from typing import Any

from edgekit.errors import MissingDependency
from edgekit.lint.readers import SMALL, Graph, Op, Tensor, flat

__all__ = ["read_tflite_graph"]

_TFLITE_NP = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "uint8": "u1", "int64": "<i8", "bool": "?",
              "int16": "<i2", "int8": "i1", "float64": "<f8", "uint32": "<u4", "uint16": "<u2", "uint64": "<u8"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def read_tflite_graph(path: Path) -> Graph:
    """The :class:`~edgekit.lint.readers.Graph` of a ``.tflite`` file that
    :func:`~edgekit.runtimes.modelfile.read_model` has validated."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _read_tflite_buffer(path, data)


def _read_tflite_buffer(path: Path, data: Any) -> Graph:
    import numpy as np

    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime ships no schema
        raise MissingDependency("ai-edge-litert", "linting a TFLite model") from None

    from edgekit.runtimes.tflite_file import TFLITE_DTYPES, builtin_op_name

    model = schema.Model.GetRootAs(data, 0)
    act_names = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
    opcodes: list[str] = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            opcodes.append((oc.CustomCode() or b"CUSTOM").decode("utf-8", "replace"))
        else:
            opcodes.append(builtin_op_name(code))

    def constant(b: int) -> tuple[bool, bytes | None]:
        """Whether buffer ``b`` holds data, and its bytes when small (weights are never copied)."""
        if b <= 0 or b >= model.BuffersLength():
            return False, None
        buf = model.Buffers(b)
        if buf.Offset() > 1:  # stored after the flatbuffer (models over 2 GB)
            small = buf.Size() <= SMALL * 8
            return True, bytes(data[buf.Offset(): buf.Offset() + buf.Size()]) if small else None
        n = buf.DataLength()
        if n == 0:
            return False, None
        return True, buf.DataAsNumpy().tobytes() if n <= SMALL * 8 else None

    ops: list[Op] = []
    graph_inputs: list[Tensor] = []
    graph_outputs: list[Tensor] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        tensors: list[Tensor] = []
        for t_i in range(sg.TensorsLength()):
            t = sg.Tensors(t_i)
            shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
            sig = [int(d) for d in t.ShapeSignatureAsNumpy()] if t.ShapeSignatureLength() else []
            dims = sig if sig and len(sig) == len(shape) else shape
            code = t.Type()
            dtype = TFLITE_DTYPES[code] if 0 <= code < len(TFLITE_DTYPES) else f"tflite_type_{code}"
            is_const, raw = constant(t.Buffer())
            value = None
            if raw and dtype in _TFLITE_NP:
                arr = np.frombuffer(raw, dtype=_TFLITE_NP[dtype])
                if len(arr) <= SMALL:
                    value = arr.reshape(shape).tolist() if shape and int(np.prod(shape)) == arr.size else arr.tolist()
            name = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{t_i}"
            tensors.append(Tensor(f"{s}:{t_i}", name, tuple(None if d < 0 else d for d in dims), dtype,
                                  const=is_const, value=value))
        for o_i in range(sg.OperatorsLength()):
            op = sg.Operators(o_i)
            ins = [tensors[i] if i >= 0 else None for i in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [tensors[i] for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            op_type = opcodes[op.OpcodeIndex()]
            attrs: dict[str, Any] = {}
            table = op.BuiltinOptions()
            if table is not None and op.BuiltinOptionsType():
                options = schema.BuiltinOptionsCreator(op.BuiltinOptionsType(), table)
                if options is not None:
                    attrs = {_snake(k): v for k, v in vars(options).items() if isinstance(v, (bool, int, float))}
            ops.append(Op(o_i, op_type, "", ins, outs, _tflite_attrs(op_type, attrs, ins, act_names), subgraph=s))
        if s == 0:
            graph_inputs = [tensors[i] for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
            graph_outputs = [tensors[i] for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
    notes = [] if model.SubgraphsLength() == 1 else [f"{model.SubgraphsLength() - 1} control-flow subgraph(s) included"]
    return Graph("tflite", path, ops, graph_inputs, graph_outputs, "NHWC", notes)


def _tflite_attrs(op_type: str, raw: dict[str, Any], ins: list[Tensor | None], act_names: dict[int, str]) -> dict[str, Any]:
    a = dict(raw)
    if "stride_h" in raw:
        a["strides"] = tuple(raw[k] for k in ("stride_d", "stride_h", "stride_w") if k in raw)
    if "dilation_h_factor" in raw:
        a["dilations"] = tuple(raw[k] for k in ("dilation_d_factor", "dilation_h_factor", "dilation_w_factor") if k in raw)
    if "filter_height" in raw:
        a["kernel"] = (raw["filter_height"], raw["filter_width"])
    if "fused_activation_function" in raw:
        a["fused_activation"] = act_names.get(raw["fused_activation_function"], str(raw["fused_activation_function"]))
    weight = ins[1] if len(ins) > 1 else None
    if weight is not None and weight.shape and op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
        a["kernel"] = tuple(weight.shape[1:3])  # OHWI / 1HWO
    if weight is not None and weight.shape and op_type == "CONV_3D" and len(weight.shape) == 5:
        a["kernel"] = tuple(weight.shape[0:3])  # DHWIO
    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "FULLY_CONNECTED"):
        a["has_bias"] = len(ins) > 2 and ins[2] is not None
    if op_type == "TRANSPOSE_CONV":
        a["has_bias"] = len(ins) > 3 and ins[3] is not None
    if "block_size" in raw:
        a["block_size"] = raw["block_size"]
    for key in ("half_pixel_centers", "align_corners", "beta", "mode"):
        if key in raw:
            a[key] = raw[key]
    second = ins[1] if len(ins) > 1 else None
    if op_type == "TRANSPOSE" and second is not None and second.value is not None:
        a["perm"] = [int(v) for v in flat(second.value)]
    if op_type in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY") and second is not None \
            and second.value is not None:
        a["axes"] = [int(v) for v in flat(second.value)]
    if op_type in ("PAD", "PADV2", "MIRROR_PAD") and second is not None and second.value is not None:
        a["paddings"] = [[int(x) for x in row] for row in second.value] if isinstance(second.value, list) \
            and second.value and isinstance(second.value[0], list) else None
    if op_type == "STRIDED_SLICE":
        strides = ins[3] if len(ins) > 3 else None
        if strides is not None and strides.value is not None:
            a["slice_strides"] = [int(v) for v in flat(strides.value)]
        a["slice_masks"] = {"ellipsis": raw.get("ellipsis_mask", 0), "new_axis": raw.get("new_axis_mask", 0),
                            "shrink_axis": raw.get("shrink_axis_mask", 0)}
    if op_type in ("GATHER", "GATHER_ND") and second is not None:
        a["index_dtype"] = second.dtype
    return a
