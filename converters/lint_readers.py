"""Op-level views of .tflite, .onnx and .mlpackage files for :mod:`edgekit.converters.lint`.

:func:`edgekit.runtimes.modelfile.read_model` validates a file and summarises it (histogram,
ranks); lint needs every op with its position, its input and output tensors (shape, dtype,
constant or not, small constant values such as a TRANSPOSE permutation) and its options
(strides, ``half_pixel_centers``, block size...). :func:`read_graph` gives that as a
:class:`Graph`, from any tool's export:

- TFLite through the flatbuffer schema LiteRT ships (``ai_edge_litert.schema_py_generated``),
  read lazily (weights are never copied); ``shape_signature`` -1 marks a dynamic dim. The file
  is validated by ``read_model`` first, so a truncated file is a one-line error, not a crash.
- ONNX through the ``onnx`` package (converter side; ``pip install onnx``), with shape
  inference for the intermediate tensors; external weights are not loaded.
- Core ML ``.mlpackage`` / ``.mlmodel`` through coremltools' generated protobuf modules only
  (:func:`edgekit.inspect._coreml_proto`, no coremltools import): the MIL ops of an ML
  program with their output ranks and dtypes, and const values for op parameters.

Example::

    >>> g = read_graph("model.tflite")                      # doctest: +SKIP
    >>> [(op.index, op.type) for op in g.ops][:2]           # doctest: +SKIP
    [(0, 'TRANSPOSE'), (1, 'CONV_2D')]
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from edgekit.errors import InvalidModelFile, MissingDependency

__all__ = ["Tensor", "Op", "Graph", "read_graph", "LINT_FORMATS"]

LINT_FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".mlpackage": "coreml", ".mlmodel": "coreml"}
_SMALL = 64  # constant tensors up to this many elements keep their values (perms, axes, pads)


@dataclass(eq=False)
class Tensor:
    """A tensor of the graph. ``shape`` dims are None where dynamic or unknown; ``shape`` itself
    is None when not even the rank is known. ``value`` holds a small constant's values."""

    key: str
    name: str
    shape: tuple[int | None, ...] | None
    dtype: str
    const: bool = False
    value: Any = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return self.shape is not None and any(d is None for d in self.shape)

    @property
    def short(self) -> str:
        """The name for messages: converter-made names (litert-torch's module paths) cut to their tail."""
        if len(self.name) <= 48:
            return self.name
        tail = self.name.rsplit("/", 1)[-1]
        return "…/" + tail if len(tail) <= 45 else "…" + tail[-45:]

    def shape_text(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(eq=False)
class Op:
    """One op: ``index`` is its position in its (sub)graph, ``type`` the TFLite builtin name
    (custom ops: their custom code), ONNX op type (domain-prefixed outside the default domain)
    or MIL op type; ``name`` the node name where the format has one. ``attrs`` hold the options,
    with normalised keys lint reads: ``strides``, ``dilations``, ``kernel``, ``fused_activation``,
    ``half_pixel_centers``, ``align_corners``, ``block_size``, ``perm``, ``axes``, ``paddings``,
    ``slice_strides``, ``slice_masks``, ``beta``, ``mode``, ``has_bias``, ``index_dtype``."""

    index: int
    type: str
    name: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    attrs: dict[str, Any] = field(default_factory=dict)
    subgraph: int = 0

    @property
    def where(self) -> str:
        """``op 12`` (TFLite), ``node 'conv_3'`` (ONNX, Core ML); the subgraph when not the main one."""
        text = f"node '{self.name}'" if self.name else f"op {self.index}"
        return text if self.subgraph == 0 else f"{text} (subgraph {self.subgraph})"

    @property
    def ref(self) -> str:
        """``CONV_2D #12`` or ``Conv 'conv_3'``: the op as findings name it."""
        return f"{self.type} '{self.name}'" if self.name else f"{self.type} #{self.index}"


@dataclass(eq=False)
class Graph:
    """The ops and tensors of a model file, in execution order (main graph first)."""

    format: str
    path: Path
    ops: list[Op]
    inputs: list[Tensor]
    outputs: list[Tensor]
    layout: str  # the layout the format's ops assume: "NHWC" (TFLite) or "NCHW" (ONNX, Core ML)
    notes: list[str] = field(default_factory=list)

    @cached_property
    def producers(self) -> dict[str, Op]:
        return {t.key: op for op in self.ops for t in op.outputs}

    @cached_property
    def consumers(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t is not None:
                    out.setdefault(t.key, []).append(op)
        return out

    @cached_property
    def tensors(self) -> dict[str, Tensor]:
        """Every tensor an op or the graph boundary touches, by key."""
        seen: dict[str, Tensor] = {t.key: t for t in self.inputs}
        for op in self.ops:
            for t in (*op.inputs, *op.outputs):
                if t is not None:
                    seen.setdefault(t.key, t)
        for t in self.outputs:
            seen.setdefault(t.key, t)
        return seen

    @cached_property
    def boundary(self) -> set[str]:
        return {t.key for t in (*self.inputs, *self.outputs)}


def read_graph(path: str | os.PathLike) -> Graph:
    """The op-level :class:`Graph` of a ``.tflite``, ``.onnx``, ``.mlpackage`` or ``.mlmodel``.

    Raises :class:`~edgekit.errors.ModelFileNotFound`, :class:`~edgekit.errors.InvalidModelFile`
    (corrupt file, unknown suffix) or :class:`~edgekit.errors.MissingDependency` (ONNX without
    the ``onnx`` package, Core ML without coremltools).
    """
    p = Path(path)
    from edgekit._fs import existing

    existing(p)
    fmt = LINT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        hint = "lint reads .tflite, .onnx and .mlpackage files"
        if p.suffix.lower() == ".ort":
            hint = "lint the .onnx the .ort was made from (.ort files keep no op options)"
        raise InvalidModelFile(p, f"lint cannot read '{p.suffix or '(no suffix)'}' files", hint=hint)
    if fmt == "coreml":
        return _read_coreml(p)
    from edgekit.runtimes.modelfile import read_model

    read_model(p)  # validates structure and bounds: corrupt files fail here with one line
    return _read_tflite(p) if fmt == "tflite" else _read_onnx(p)


# -- TFLite --------------------------------------------------------------------------------------

_TFLITE_NP = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "uint8": "u1", "int64": "<i8", "bool": "?",
              "int16": "<i2", "int8": "i1", "float64": "<f8", "uint32": "<u4", "uint16": "<u2", "uint64": "<u8"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _read_tflite(path: Path) -> Graph:
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _read_tflite_buffer(path, data)


def _read_tflite_buffer(path: Path, data: Any) -> Graph:
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgekit.runtimes._tflite_file import TFLITE_DTYPES, builtin_op_name

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
            small = buf.Size() <= _SMALL * 8
            return True, bytes(data[buf.Offset(): buf.Offset() + buf.Size()]) if small else None
        n = buf.DataLength()
        if n == 0:
            return False, None
        return True, buf.DataAsNumpy().tobytes() if n <= _SMALL * 8 else None

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
                if len(arr) <= _SMALL:
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
        a["perm"] = [int(v) for v in _flat(second.value)]
    if op_type in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY") and second is not None \
            and second.value is not None:
        a["axes"] = [int(v) for v in _flat(second.value)]
    if op_type in ("PAD", "PADV2", "MIRROR_PAD") and second is not None and second.value is not None:
        a["paddings"] = [[int(x) for x in row] for row in second.value] if isinstance(second.value, list) \
            and second.value and isinstance(second.value[0], list) else None
    if op_type == "STRIDED_SLICE":
        strides = ins[3] if len(ins) > 3 else None
        if strides is not None and strides.value is not None:
            a["slice_strides"] = [int(v) for v in _flat(strides.value)]
        a["slice_masks"] = {"ellipsis": raw.get("ellipsis_mask", 0), "new_axis": raw.get("new_axis_mask", 0),
                            "shrink_axis": raw.get("shrink_axis_mask", 0)}
    if op_type in ("GATHER", "GATHER_ND") and second is not None:
        a["index_dtype"] = second.dtype
    return a


def _flat(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [value]


# -- ONNX ---------------------------------------------------------------------------------------

def _read_onnx(path: Path) -> Graph:
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise MissingDependency("onnx", "linting an ONNX model", extra="convert") from None
    from edgekit.runtimes._onnx_file import ONNX_DTYPES

    import mmap

    from edgekit.runtimes._onnx_file import slim_onnx

    try:
        # Parse a slim copy (no doc strings, no data of large tensors): memory set by the graph, not
        # by the file (a 2 GB doc string or 2 GB of weights), and lint needs neither.
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            model = onnx.ModelProto.FromString(slim_onnx(data, keep_elements=_SMALL))
    except Exception as e:  # DecodeError and friends; read_model validated the wire format already
        raise InvalidModelFile(path, f"onnx cannot parse the model ({type(e).__name__}: {e})") from None
    notes: list[str] = []
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:  # custom domains, unsupported opsets: lint the declared types only
        inferred = model
        notes.append(f"shape inference failed ({type(e).__name__}); ranks of intermediate tensors may be unknown")
    g = inferred.graph

    def type_of(vi: Any) -> tuple[tuple[int | None, ...] | None, str]:
        tt = vi.type.tensor_type
        dtype = ONNX_DTYPES.get(tt.elem_type, f"onnx_type_{tt.elem_type}")
        if not tt.HasField("shape"):
            return None, dtype
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim), dtype

    tensors: dict[str, Tensor] = {}
    init_names = set()
    for init in g.initializer:
        init_names.add(init.name)
        value = None
        size = 1
        for d in init.dims:
            size *= d
        if size <= _SMALL and init.data_location != onnx.TensorProto.EXTERNAL:
            try:
                value = numpy_helper.to_array(init).tolist()
            except Exception:
                value = None
        tensors[init.name] = Tensor(init.name, init.name, tuple(int(d) for d in init.dims),
                                    ONNX_DTYPES.get(init.data_type, f"onnx_type_{init.data_type}"), const=True, value=value)
    for vi in (*g.input, *g.value_info, *g.output):
        if vi.name in tensors:
            continue
        shape, dtype = type_of(vi)
        tensors[vi.name] = Tensor(vi.name, vi.name, shape, dtype)

    def tensor(name: str) -> Tensor:
        if name not in tensors:
            tensors[name] = Tensor(name, name, None, "unknown")
        return tensors[name]

    ops: list[Op] = []
    for i, node in enumerate(g.node):
        op_type = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        attrs = {a.name: _onnx_attr(helper.get_attribute_value(a)) for a in node.attribute}
        if node.op_type == "Constant":
            for out in node.output:
                t = tensor(out)
                t.const = True
                if "value" in attrs and hasattr(node.attribute[0], "t"):
                    proto = node.attribute[0].t
                    t.shape = tuple(int(d) for d in proto.dims)  # data of large constants is not read
                    t.dtype = ONNX_DTYPES.get(proto.data_type, t.dtype)
                    if math.prod(t.shape) <= _SMALL:
                        try:
                            t.value = numpy_helper.to_array(proto).tolist()
                        except Exception:  # noqa: BLE001 - an odd constant: its value is not needed
                            pass
        ins = [tensor(n) if n else None for n in node.input]
        outs = [tensor(n) for n in node.output]
        ops.append(Op(i, op_type, node.name or "", ins, outs, _onnx_attrs(node.op_type, attrs, ins)))
    inputs = [tensors[vi.name] for vi in g.input if vi.name not in init_names]
    outputs = [tensor(vi.name) for vi in g.output]
    return Graph("onnx", path, ops, inputs, outputs, "NCHW", notes)


def _onnx_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [_onnx_attr(x) for x in v]
    if isinstance(v, (int, float, str, bool)):
        return v
    return None  # tensors / graphs: not needed by lint


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
            a["axes"] = [int(v) for v in _flat(ins[1].value)]
    if op_type == "Pad" and len(ins) > 1 and ins[1] is not None and ins[1].value is not None:
        pads = [int(v) for v in _flat(ins[1].value)]
        n = len(pads) // 2
        a["paddings"] = [[pads[i], pads[i + n]] for i in range(n)]
    if op_type == "Slice" and len(ins) > 4 and ins[4] is not None and ins[4].value is not None:
        a["slice_strides"] = [int(v) for v in _flat(ins[4].value)]
    if op_type in ("Gather", "GatherND", "GatherElements") and weight is not None:
        a["index_dtype"] = weight.dtype
    if op_type == "Softmax" and "axis" in raw:
        a["axis"] = raw["axis"]
    return a


# -- Core ML --------------------------------------------------------------------------------------

_MIL_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "BFLOAT16": "bfloat16", "INT8": "int8",
    "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
    "UINT64": "uint64", "BOOL": "bool", "STRING": "str", "INT4": "int4", "UINT4": "uint4",
}


def _read_coreml(path: Path) -> Graph:
    from edgekit.inspect import _coreml_proto, _mlpackage_spec_path

    if path.suffix.lower() == ".mlpackage":
        if not path.is_dir():
            raise InvalidModelFile(path, "an .mlpackage must be a folder", hint="re-save it with coremltools (model.save)")
        spec_path = _mlpackage_spec_path(path)
    else:
        spec_path = path
    proto = _coreml_proto()
    if proto is None:
        raise MissingDependency("coremltools", "linting a Core ML model", extra="coreml")
    model = proto.Model_pb2.Model()
    try:
        raw = spec_path.read_bytes()
        model.ParseFromString(raw)
    except Exception as e:
        raise InvalidModelFile(spec_path, f"not a Core ML model spec ({type(e).__name__}: {e})") from None
    if not raw or model.specificationVersion == 0:
        raise InvalidModelFile(spec_path, "not a Core ML model spec (no specificationVersion)")
    kind = model.WhichOneof("Type")
    if kind != "mlProgram":
        return _coreml_neural_network(path, model, kind)

    tensors: dict[str, Tensor] = {}
    consts: dict[str, Any] = {}
    ops: list[Op] = []
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    fn = model.mlProgram.functions.get("main") or next(iter(model.mlProgram.functions.values()), None)
    if fn is None:
        raise InvalidModelFile(spec_path, "an ML program without functions")
    for inp in fn.inputs:
        shape, dtype = _mil_type(inp.type)
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
            shape, dtype = _mil_type(o.type)
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


def _mil_type(value_type: Any) -> tuple[tuple[int | None, ...] | None, str]:
    if value_type.WhichOneof("type") != "tensorType":
        return None, value_type.WhichOneof("type") or "unknown"
    t = value_type.tensorType
    enum = type(t).DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number.get(t.dataType)
    dtype = _MIL_DTYPES.get(enum.name, enum.name.lower()) if enum else "unknown"
    if t.rank < 0:
        return None, dtype
    dims = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in t.dimensions)
    return dims if len(dims) == t.rank else tuple([None] * t.rank), dtype


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
    if len(values) > _SMALL:
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
        a["axes"] = [int(v) for v in _flat(params["axes"])]
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
