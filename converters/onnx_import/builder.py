"""The importer's core: walks an ONNX graph and writes a ``torch.fx`` graph.

Every ONNX value becomes one of two things:

- :class:`Const` — a tensor known at import time: an initializer, a ``Constant`` node, or the
  result of a node whose inputs are all known (``Shape`` of a static input, ``Gather`` on it,
  ``Concat`` of those, ...). Converters read these as Python values (shapes, axes, pads) so
  the fx graph stays static and clean — the importer is a constant folder at the same time.
- :class:`Dyn` — an fx node computed at run time, with a ``meta`` tensor (on PyTorch's
  ``meta`` device: shape and dtype, no data) so converters know every static shape.

Converters call :meth:`Builder.call`: with only constants it runs the function eagerly and
returns a :class:`Const`; otherwise it adds a ``call_function`` node and runs the function on
meta tensors to learn the output's shape. A constant that reaches a run-time op is
registered on the root module — floating tensors as ``nn.Parameter`` (``requires_grad=False``),
the rest as buffers — and read with a ``get_attr`` node, so ``torch.export``, litert-torch
and coremltools see them as the model's weights.
"""

from __future__ import annotations

import itertools
import keyword
import math
import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import fx, nn

from edgekit.errors import ConversionError, EdgekitError, InvalidModelFile, UsageError, first_line

__all__ = ["Const", "Dyn", "Value", "NodeError", "Builder", "OpFn", "ONNX_DTYPES", "build_module"]


# ONNX TensorProto.DataType → torch dtype (the ones torch can hold).
ONNX_DTYPES: dict[int, torch.dtype] = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32,
    7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32,
    13: torch.uint64, 16: torch.bfloat16,
}

# Element types PyTorch holds without CPU kernels for most ops (add, min, max, remainder, ...).
NO_CPU_KERNELS: dict[int, str] = {4: "uint16", 12: "uint32", 13: "uint64"}


class NodeError(Exception):
    """Raised by an op converter when a node cannot be imported; the builder adds which node."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(eq=False)
class Const:
    """A tensor known at import time (``value`` holds real data)."""

    value: torch.Tensor
    name: str = "const"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.value.dtype

    @property
    def rank(self) -> int:
        return self.value.dim()


@dataclass(eq=False)
class Dyn:
    """A tensor computed at run time by fx node ``node``; ``meta`` carries its shape and dtype."""

    node: fx.Node
    meta: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.meta.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.meta.dtype

    @property
    def rank(self) -> int:
        return self.meta.dim()


Value = Const | Dyn
OpFn = Callable[..., "Value | list[Value | None] | tuple"]


def _sanitize(name: str, prefix: str = "t") -> str:
    """A Python identifier made from an ONNX name (``conv1.weight`` → ``conv1_weight``)."""
    s = re.sub(r"\W", "_", name).strip("_") or prefix
    if s[0].isdigit() or keyword.iskeyword(s):
        s = f"{prefix}_{s}"
    return s


def _map(obj: Any, fn: Callable[[Value], Any]) -> Any:
    """Apply ``fn`` to every Value inside nested lists/tuples/dicts of ``obj``."""
    if isinstance(obj, (Const, Dyn)):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj


def _any_dyn(obj: Any) -> bool:
    found = False

    def visit(v: Value) -> None:
        nonlocal found
        found = found or isinstance(v, Dyn)

    _map(obj, visit)
    return found


def _on_cpu(meta_args: Any) -> Any:
    """Meta tensors replaced by zero-filled CPU tensors (for ops without meta kernels)."""
    if isinstance(meta_args, torch.Tensor) and meta_args.device.type == "meta":
        return torch.zeros(meta_args.shape, dtype=meta_args.dtype)
    if isinstance(meta_args, (list, tuple)):
        return type(meta_args)(_on_cpu(a) for a in meta_args)
    if isinstance(meta_args, dict):
        return {k: _on_cpu(v) for k, v in meta_args.items()}
    return meta_args


def _to_meta(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.to("meta")
    if isinstance(out, (list, tuple)):
        return type(out)(_to_meta(o) for o in out)
    return out


# A folded constant larger than this (elements), and 4x larger than its inputs, is computed at
# run time instead of being stored in the model.
FOLD_LIMIT = 1 << 16


def _numel(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, (Const, Dyn)):
        return math.prod(obj.shape)
    if isinstance(obj, (list, tuple)):
        return sum(_numel(o) for o in obj)
    if isinstance(obj, dict):
        return sum(_numel(o) for o in obj.values())
    return 0


def _expands(out: Any, inputs: Any) -> bool:
    n = _numel(out)
    return n > FOLD_LIMIT and n > 4 * _numel(inputs)


@dataclass
class Builder:
    """State shared by the op converters while one ONNX graph is imported.

    A converter is ``fn(g, *inputs) -> Value | list[Value]``; it reads attributes with
    :meth:`attr`, static values with :meth:`ints`/:meth:`const`, and emits ops with :meth:`call`.
    """

    opset: int
    graph: fx.Graph = field(default_factory=fx.Graph)
    root: nn.Module = field(default_factory=nn.Module)
    # The node being converted (set by the main loop).
    node: Any = None
    node_index: int = -1
    # How many consumers each ONNX value has (graph outputs count as consumers).
    uses: Counter = field(default_factory=Counter)
    # id(Const) → (the Const, kept alive so its id stays unique; its get_attr node)
    _attr_nodes: dict[int, tuple[Const, fx.Node]] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)
    _attrs: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- attributes and constants
    def attr(self, name: str, default: Any = None) -> Any:
        """Attribute ``name`` of the current node as a Python value (strings decoded)."""
        return self._attrs.get(name, default)

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def const(self, v: Value | None, what: str) -> torch.Tensor:
        """The import-time tensor of input ``what``; an error when it is computed at run time."""
        if v is None:
            raise NodeError(f"input '{what}' is missing")
        if isinstance(v, Dyn):
            raise NodeError(
                f"input '{what}' is computed at run time, but edgekit's importer needs it constant "
                "(TFLite and CoreML need static shapes)",
                hint="fold it (e.g. `onnxsim` or re-export with static shapes), or export the PyTorch model instead",
            )
        return v.value

    def ints(self, v: Value | None, what: str) -> list[int]:
        return [int(i) for i in self.const(v, what).reshape(-1).tolist()]

    def floats(self, v: Value | None, what: str) -> list[float]:
        return [float(i) for i in self.const(v, what).reshape(-1).tolist()]

    def scalar(self, v: Value | None, what: str) -> float | int | bool:
        t = self.const(v, what)
        if t.numel() != 1:
            raise NodeError(f"input '{what}' must hold one value, it has shape {tuple(t.shape)}")
        return t.reshape(-1)[0].item()

    def is_const(self, v: Value | None) -> bool:
        return isinstance(v, Const)

    # ---------------------------------------------------------------- emitting ops
    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as a constant (all inputs known) or as an fx node.

        Returns a Value, or a list of Values when ``fn`` returns a tuple/list of tensors.
        """
        return self._emit("call_function", fn, args, kwargs)

    def method(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``args[0].name(*args[1:], **kwargs)`` the same way as :meth:`call`."""
        return self._emit("call_method", name, args, kwargs)

    def _emit(self, kind: str, target: Any, args: tuple, kwargs: dict) -> Any:
        def run(a: tuple, k: dict) -> Any:
            if kind == "call_method":
                return getattr(a[0], target)(*a[1:], **k)
            return target(*a, **k)

        if not _any_dyn((args, kwargs)):
            out = run(*_map((args, kwargs), lambda v: v.value))
            if not _expands(out, (args, kwargs)):
                return self._wrap_const(out)
            # Folding would store a large tensor made from small ones (Expand, Tile,
            # ConstantOfShape of an activation's shape): compute it at run time instead.
            meta_out = _to_meta(out)
        else:
            meta_args, meta_kwargs = _map((args, kwargs),
                                          lambda v: v.meta if isinstance(v, Dyn) else v.value.to("meta"))
            try:
                meta_out = run(meta_args, meta_kwargs)
            except (NotImplementedError, RuntimeError):
                # A few kernels have no meta implementation; learn the shape on zeros instead.
                meta_out = _to_meta(run(*_on_cpu((meta_args, meta_kwargs))))
        fx_args, fx_kwargs = _map((args, kwargs), self.fx_node)
        node = self.graph.create_node(kind, target, tuple(fx_args), dict(fx_kwargs))
        self._tag(node)
        if isinstance(meta_out, (list, tuple)):
            outs = []
            for i, m in enumerate(meta_out):
                item = self.graph.call_function(operator.getitem, (node, i))
                self._tag(item)
                outs.append(Dyn(item, m))
            return outs
        return Dyn(node, meta_out)

    def _wrap_const(self, out: Any) -> Any:
        name = self.node.output[0] if self.node is not None and len(self.node.output) else "const"
        if isinstance(out, torch.Tensor):
            return Const(out, name)
        if isinstance(out, (list, tuple)):
            return [self._wrap_const(o) for o in out]
        if isinstance(out, (bool, int, float)):
            return Const(torch.tensor(out), name)
        raise TypeError(f"constant folding produced {type(out).__name__}")

    def _tag(self, node: fx.Node) -> None:
        if self.node is not None:
            node.meta["onnx_node"] = self.node.name
            node.meta["onnx_op"] = self.node.op_type

    def fx_node(self, v: Value) -> fx.Node:
        """The fx node for ``v``; a constant is registered on the root module on first use."""
        if isinstance(v, Dyn):
            return v.node
        key = id(v)
        if key not in self._attr_nodes:
            base = _sanitize(v.name)
            name = base
            for i in itertools.count(1):
                if name not in self._names and not hasattr(self.root, name):
                    break
                name = f"{base}_{i}"
            self._names.add(name)
            t = v.value.detach().clone().contiguous()
            if t.is_floating_point() and t.dim() > 0:
                self.root.register_parameter(name, nn.Parameter(t, requires_grad=False))
            else:
                self.root.register_buffer(name, t)
            self._attr_nodes[key] = (v, self.graph.get_attr(name))
        return self._attr_nodes[key][1]

    def const_of(self, node: Any) -> Const | None:
        """The constant a ``get_attr`` node reads (``None`` for any other node)."""
        for c, n in self._attr_nodes.values():
            if n is node:
                return c
        return None

    # ---------------------------------------------------------------- helpers for converters
    @staticmethod
    def python_scalar(v: Value, like: Value) -> float | int | None:
        """``v`` as a Python number when it can stand in an elementwise op with ``like``
        without changing the result's shape or dtype (a one-element constant of the same kind)."""
        if not isinstance(v, Const) or v.value.numel() != 1 or v.rank > like.rank:
            return None
        if v.dtype.is_floating_point and like.dtype.is_floating_point:
            return float(v.value.reshape(-1)[0])
        if v.dtype == like.dtype and not v.dtype.is_floating_point and v.dtype != torch.bool:
            return int(v.value.reshape(-1)[0])
        return None


# ---------------------------------------------------------------------------- the main loop


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = tensor_from_proto(a.t)
        elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.SPARSE_TENSOR,
                        onnx.AttributeProto.SPARSE_TENSORS, onnx.AttributeProto.TENSORS):
            out[a.name] = a  # kept as protos: no supported op reads these
        else:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8") for s in v]
            out[a.name] = v
    return out


def tensor_from_proto(t: Any) -> torch.Tensor:
    """An ONNX TensorProto (data loaded) as a torch tensor."""
    from onnx import numpy_helper

    if t.data_type not in ONNX_DTYPES:
        import onnx

        name = onnx.TensorProto.DataType.Name(t.data_type)
        raise NodeError(f"tensor '{t.name}' has dtype {name}, which PyTorch cannot hold")
    if t.data_type == 16:  # bfloat16: numpy has no such dtype; reinterpret the bits
        arr = numpy_helper.to_array(t)
        return torch.from_numpy(np.asarray(arr).view(np.uint16).astype(np.int16).copy()).view(torch.bfloat16)
    arr = np.array(numpy_helper.to_array(t), copy=True)
    return torch.from_numpy(arr).to(ONNX_DTYPES[t.data_type]).reshape(tuple(t.dims))


@dataclass
class Built:
    module: fx.GraphModule
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    opset: int
    input_shapes: dict[str, tuple[int, ...]]


# Ops added in opsets 22–24 that older exporters write as basic ops.
_NEWER_OPS = {"Attention", "RMSNormalization", "RotaryEmbedding", "Swish", "TensorScatter"}


def _node_label(idx: int, node: Any) -> str:
    """``node 12 'conv_3' (ai.onnx::Conv)``: position in the graph, name, domain and op type."""
    name = f"'{node.name}'" if node.name else f"(unnamed, output '{node.output[0] if node.output else ''}')"
    domain = node.domain or "ai.onnx"
    return f"node {idx} {name} ({domain}::{node.op_type})"


def _static_input_shape(vi: Any, given: tuple | None, where: str) -> tuple[int, ...]:
    """The static shape of graph input ``vi``: from the model, filled in from ``given``."""
    dims = vi.type.tensor_type.shape.dim if vi.type.tensor_type.HasField("shape") else None
    if given is not None:
        given = tuple(int(d) for d in given)
        if dims is not None:
            if len(given) != len(dims):
                raise UsageError(
                    f"input_shapes['{vi.name}'] = {given} has rank {len(given)}, the model's input has rank {len(dims)}",
                    where=where)
            for i, (d, g) in enumerate(zip(dims, given)):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != g:  # -1, 0, named: free
                    raise UsageError(
                        f"input_shapes['{vi.name}'] = {given} sets dim {i} to {g}, but the model fixes it to {d.dim_value}",
                        where=where)
        if any(g <= 0 for g in given):
            raise UsageError(f"input_shapes['{vi.name}'] = {given} has a dim that is not positive", where=where)
        return given
    if dims is None:
        raise ConversionError("import", f"input '{vi.name}' has no shape in the model", where=where,
                              hint=f"pass input_shapes={{'{vi.name}': (...)}}: TFLite and CoreML need static shapes")
    shape = []
    for i, d in enumerate(dims):
        if not d.HasField("dim_value") or d.dim_value <= 0:
            label = f" ('{d.dim_param}')" if d.dim_param else ""
            raise ConversionError(
                "import", f"input '{vi.name}' has a dynamic dim {i}{label}", where=where,
                hint=f"pass input_shapes={{'{vi.name}': (...)}} with every dim fixed: TFLite and CoreML need static shapes")
        shape.append(d.dim_value)
    return tuple(shape)


def build_module(model: Any, input_shapes: dict[str, tuple] | None, where: str, ops: dict[str, OpFn]) -> Built:
    """Import ``model`` (an ``onnx.ModelProto`` with external data loaded) into a GraphModule:
    initializers become constants, inputs placeholders, each node its op converter's result."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 7:
        raise ConversionError("import", f"the model uses ONNX opset {opset}; edgekit imports opset 7 and newer",
                              where=where, hint="re-export the model with opset ≥ 13")
    b = Builder(opset=opset)
    values = _initializers(graph, where)
    real_inputs = [vi for vi in graph.input if vi.name not in values]
    shapes, examples = _placeholders(b, real_inputs, values, dict(input_shapes or {}), where)
    for node in graph.node:
        b.uses.update(n for n in node.input if n)
    b.uses.update(o.name for o in graph.output)
    for idx, node in enumerate(graph.node):
        _convert_node(b, idx, node, values, ops, opset, where)
    b.node = None
    out_nodes = []
    for o in graph.output:
        if o.name not in values:
            raise ConversionError("import", f"graph output '{o.name}' is not produced by any node", where=where)
        out_nodes.append(b.fx_node(values[o.name]))
    b.graph.output(out_nodes[0] if len(out_nodes) == 1 else tuple(out_nodes))
    b.graph.eliminate_dead_code()
    b.graph.lint()
    gm = fx.GraphModule(b.root, b.graph, class_name="ImportedOnnx")
    gm.eval()
    return Built(module=gm, example_inputs=tuple(examples), input_names=[vi.name for vi in real_inputs],
                 output_names=[o.name for o in graph.output], opset=opset, input_shapes=shapes)


def _initializers(graph: Any, where: str) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for init in graph.initializer:
        try:
            values[init.name] = Const(tensor_from_proto(init), init.name)
        except NodeError as e:
            raise ConversionError("import", f"initializer '{init.name}': {e.message}", where=where) from None
        except Exception as e:  # external data missing, truncated raw data, ...
            raise InvalidModelFile(where, f"initializer '{init.name}' cannot be read "
                                          f"({type(e).__name__}: {first_line(e, 150)})") from None
    return values


def _placeholders(b: "Builder", real_inputs: list, values: dict[str, Value], input_shapes: dict[str, tuple],
                  where: str) -> tuple[dict[str, tuple[int, ...]], list[torch.Tensor]]:
    """A placeholder per graph input (static shapes: the model's or ``input_shapes``), and
    seeded example inputs."""
    unknown = sorted(set(input_shapes) - {vi.name for vi in real_inputs})
    if unknown:
        raise UsageError(f"input_shapes names {unknown}, which the model does not have as inputs "
                         f"(its inputs: {[vi.name for vi in real_inputs]})", where=where)
    shapes: dict[str, tuple[int, ...]] = {}
    gen = torch.Generator().manual_seed(0)
    examples = []
    for vi in real_inputs:
        if not vi.type.HasField("tensor_type"):
            raise ConversionError("import", f"input '{vi.name}' is not a tensor (sequences and maps are not supported)",
                                  where=where)
        elem = vi.type.tensor_type.elem_type
        if elem not in ONNX_DTYPES:
            raise ConversionError("import", f"input '{vi.name}' has an element type ({elem}) PyTorch cannot hold",
                                  where=where)
        if elem in NO_CPU_KERNELS:
            raise ConversionError("import", f"input '{vi.name}' is {NO_CPU_KERNELS[elem]}, which PyTorch holds but "
                                            "has no CPU kernels for (most ops fail on it)", where=where,
                                  hint="make the input int32 or int64 in the model")
        dtype = ONNX_DTYPES[elem]
        shape = _static_input_shape(vi, input_shapes.get(vi.name), where)
        shapes[vi.name] = shape
        ph = b.graph.placeholder(_sanitize(vi.name, "input"))
        ph.meta["onnx_name"] = vi.name
        values[vi.name] = Dyn(ph, torch.empty(shape, dtype=dtype, device="meta"))
        if dtype.is_floating_point:
            examples.append(torch.rand(shape, generator=gen, dtype=torch.float32).to(dtype))
        else:
            examples.append(torch.zeros(shape, dtype=dtype))
    return shapes, examples


def _unsupported_hint(node: Any, domain: str) -> str:
    if domain == "com.microsoft":
        return ("this is an onnxruntime contrib op, found in models saved after ORT graph optimisation; "
                "import the model as exported, or export the PyTorch model instead")
    if domain:
        return "custom-domain ops are outside edgekit's importer; export the PyTorch model instead"
    if node.op_type in _NEWER_OPS:
        return ("this op is new in opset 22+; re-export with opset 20 "
                "(torch.onnx.export(..., opset_version=20)), which writes it as basic ops")
    if node.op_type in ("If", "Loop", "Scan"):
        return ("control flow is outside edgekit's importer; re-export with static shapes or fold the graph "
                "(e.g. onnxsim), or export the PyTorch model instead")
    if node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"):
        return ("quantized ONNX graphs are outside edgekit's importer; import the float model and let "
                "edgekit quantize it for the target")
    return ("this op is outside edgekit's importer (see edgekit.converters.onnx_import.SUPPORTED_OPS); "
            "export the PyTorch model instead, or convert to ONNX only")


def _convert_node(b: "Builder", idx: int, node: Any, values: dict[str, Value], ops: dict[str, OpFn], opset: int,
                  where: str) -> None:
    """Run one node's op converter; its outputs join ``values``. Every failure names the node."""
    label = _node_label(idx, node)
    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    fn = ops.get(node.op_type) if domain == "" else None
    if fn is None:
        raise ConversionError("import", f"{label}: op not supported (opset {opset})", where=where,
                              hint=_unsupported_hint(node, domain))
    try:
        ins: list[Value | None] = []
        for n in node.input:
            if not n:
                ins.append(None)
            elif n not in values:
                raise NodeError(f"input '{n}' is not produced by any earlier node (graph not in topological order?)")
            else:
                ins.append(values[n])
        b.node, b.node_index, b._attrs = node, idx, _attributes(node)
        outs = fn(b, *ins)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for i, name in enumerate(node.output):
            if not name:
                continue
            if i >= len(outs) or outs[i] is None:
                if b.uses[name]:
                    raise NodeError(f"output {i} ('{name}') is not supported by edgekit's importer")
                continue
            values[name] = outs[i]
    except NodeError as e:
        raise ConversionError("import", f"{label}: {e.message}", where=where,
                              hint=e.hint or "export the PyTorch model instead") from e
    except EdgekitError:
        raise
    except Exception as e:  # a converter bug or an input it did not foresee: still name the node
        raise ConversionError("import", f"{label} failed: {type(e).__name__}: {first_line(e)}",
                              where=where, hint="report this with the model; export the PyTorch model instead") from e


def prod(xs: Any) -> int:
    return int(math.prod(int(x) for x in xs))
