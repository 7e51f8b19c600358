"""int64_to_int32: every int64 tensor of the program becomes int32, exactly, or the pass refuses.

NPUs and GPU delegates (NNAPI, Ethos-U, Edge TPU, the TFLite GPU delegate, Qualcomm HTP) have no
int64 kernels, but PyTorch makes int64 by default: argmax/argmin/topk/sort indices, ``arange``,
integer reductions (``sum`` of ints or bools promotes to int64), ``long()`` casts, int64
buffers and constants (index tables) and int64 model inputs (token ids, class indices).

Before (a segmentation head, an embedding of token ids, an index buffer)::

    x: f32 → conv → argmax(1) : i64 → out               ONNX: ArgMax → out (int64)
    t: i64 → embedding(W, t) ; index_select(x, 1, idx: i64 buffer) ; arange(n) : i64

After::

    x: f32 → conv → argmax(1) : i64 → to(i32) → out      ONNX: ArgMax → Cast(int32)
    t: i32 → embedding(W, t) ; index_select(x, 1, idx: i32 constant) ; arange(n, dtype=i32)

How: the program is re-run node by node (:class:`_fx.Retracer`) and re-exported. int64 inputs,
constants and buffers become int32; an op with a ``dtype`` argument that made int64 makes int32
(``arange``, ``full``, ``sum``, ``cumsum``, ``to``), ``searchsorted``/``bucketize`` get
``out_int32``; an op that can only make int64 (argmax, topk and sort indices) gets a cast to
int32 right after it. Ops whose eager kernel refuses int32 indices (``one_hot``, ``take``,
``take_along_dim``, ``index_copy``, ``index_fill``; :data:`INT64_ONLY`) get a local cast to
int64 right before them: the only int64 tensors left (litert-torch narrows those as well).
``gather``, ``scatter``, ``index_select``, ``embedding`` and tensor indexing take int32 indices
in the torch edgekit runs (2.13, eager and fake tensors alike), so they get no cast; on
generic-npu gathers are forbidden anyway.

Boundary: the artifact takes and returns int32 where the source took or returned int64 (feed
token ids as int32; an argmax map comes back int32). The manifest records the dtypes of the
exported file, so apps see that. litert-torch already narrows every int64 tensor to int32 on its
own (``enable_x64=False``, its default), inputs and outputs included, *wrapping constants that
do not fit* (``t + 2**40`` exports as ``t + 0``); this pass makes ONNX and CoreML artifacts
agree with TFLite and refuses where narrowing would change a value.

Exact: every integer that fits in int32 has the same value in int32, and int32 arithmetic gives
the int64 result whenever that result fits in int32 (two's complement wraps only on overflow).
``check`` refuses a program with an int64 constant or an integer literal outside int32; values
computed at run time (inputs, sums) must fit in int32, which indices into tensors an edge
device can hold always do. ONNX keeps int64 where its spec mandates it (ArgMax/TopK outputs,
shape inputs of Reshape/Expand, GatherND indices) and where torchlib casts indices for
``index_select``/``gather`` (a constant index becomes an int64 initializer). docs/accelerators.md
rewrite 14 (its int64 → int32 half; ``static_shapes`` runs first).
"""

from __future__ import annotations

import operator
from typing import Any, Iterator

import torch
import torch.utils._pytree as pytree

from edgekit.converters.passes import _fx
from edgekit.converters.passes.static_shapes import symbolic_inputs

__all__ = ["check", "rewrite", "INT64_ONLY", "int64_nodes"]

aten = torch.ops.aten
_I32 = torch.iinfo(torch.int32)
NOTHING_TO_DO = "the program has no int64 tensors"

# ops whose eager kernel (torch 2.13) refuses int32 indices -> the arguments that must be int64
INT64_ONLY: dict[Any, tuple[str, ...]] = {
    aten.one_hot.default: ("self",),
    aten.take.default: ("index",),
    aten.take_along_dim.default: ("indices",),
    aten.index_copy.default: ("index",),
    aten.index_fill.int_Scalar: ("index",),
    aten.index_fill.int_Tensor: ("index",),
}
_CASTS = (aten.to.dtype, aten._to_copy.default)
_VALUE_TYPES = ("number", "Optional[number]", "Tensor", "Optional[Tensor]")  # a literal here is a tensor value


def _is_int64(val: Any) -> bool:
    vals = val if isinstance(val, (list, tuple)) else [val]
    return any(isinstance(v, torch.Tensor) and v.dtype == torch.int64 for v in vals)


def _holds_int64(node: torch.fx.Node) -> bool:
    """An int64 tensor something reads (BatchNorm's unused ``num_batches_tracked`` is not one)."""
    return bool(node.users) and _is_int64(node.meta.get("val"))


def _fits(v: int) -> bool:
    return _I32.min <= v <= _I32.max


def _schema_args(node: torch.fx.Node) -> Iterator[tuple[Any, Any]]:
    """``(schema argument, value)`` for every argument the node passes (op overloads only)."""
    if not isinstance(node.target, torch._ops.OpOverload):
        return
    for i, arg in enumerate(node.target._schema.arguments):
        if i < len(node.args) and not arg.kwarg_only:
            yield arg, node.args[i]
        elif arg.name in node.kwargs:
            yield arg, node.kwargs[arg.name]


def _makes_int32(target: Any) -> bool:
    """True when the op can be asked for int32 output (a ``dtype`` or ``out_int32`` argument)."""
    return isinstance(target, torch._ops.OpOverload) and any(
        a.name in ("dtype", "out_int32") for a in target._schema.arguments)


def _kept(node: torch.fx.Node) -> bool:
    """An int64 tensor the rewrite would leave as it is: a cast to int64 feeding only
    :data:`INT64_ONLY` ops, or the output of an op that only makes int64 (argmax, topk indices,
    one_hot), read only by casts to another dtype."""
    users = [u for u in node.users if u.target != aten._assert_tensor_metadata.default]
    if node.op != "call_function" or not users:
        return False
    if node.target in _CASTS:
        return all(u.target in INT64_ONLY for u in users)
    if _makes_int32(node.target):
        return False
    return all((u.target in _CASTS or u.target is operator.getitem) and (not _is_int64(u.meta.get("val")) or _kept(u))
               for u in users)


def int64_nodes(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    """The nodes (inputs, weights, ops) holding an int64 tensor the rewrite would narrow."""
    return [n for n in program.graph_module.graph.nodes if _holds_int64(n) and not _kept(n)]


def _constant_problem(program: torch.export.ExportedProgram, names: set[str]) -> str | None:
    sig = program.graph_signature
    where = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
    for name, target in where.items():
        if name not in names:
            continue
        value = program.state_dict[target] if target in program.state_dict else program.constants[target]
        worst = max(int(value.min()), int(value.max()), key=abs) if value.numel() else 0
        if not _fits(worst):
            return f"int64 constant '{target}' holds {worst}, outside int32"
    return None


def _literal_problem(node: torch.fx.Node) -> str | None:
    if node.target == aten.view.dtype:
        return f"{node.name} reinterprets the bits of an int64 tensor (view as another dtype)"
    for arg, value in _schema_args(node):
        if str(arg.type) in _VALUE_TYPES and type(value) is int and not _fits(value):
            return f"{node.name} ({node.target}) uses the integer {value}, outside int32"
    return None


def _touches(node: torch.fx.Node, names: set[str]) -> bool:
    return node.name in names or any(a.name in names for a in node.all_input_nodes)


def check(program: torch.export.ExportedProgram) -> str | None:
    if not any(map(_holds_int64, program.graph_module.graph.nodes)):
        return NOTHING_TO_DO
    nodes = int64_nodes(program)
    if not nodes:
        return "its only int64 tensors are indices cast to int32 at once or kept for ops that need int64"
    if symbolic_inputs(program):
        return "the program has dynamic shapes (static_shapes runs first)"
    names = {n.name for n in nodes}
    reason = _constant_problem(program, names)
    for node in program.graph_module.graph.nodes:
        if reason:
            break
        if node.op == "call_function" and _touches(node, names):
            reason = _literal_problem(node)
    return reason


def _slot(target: Any, args: list, name: str) -> int | None:
    """The position of argument ``name`` in ``args`` (None: it is, or goes, in the kwargs)."""
    for i, arg in enumerate(target._schema.arguments):
        if arg.name == name:
            return i if i < len(args) and not arg.kwarg_only else None
    raise KeyError(name)


def _get(target: Any, args: list, kwargs: dict, name: str) -> Any:
    i = _slot(target, args, name)
    return kwargs.get(name) if i is None else args[i]


def _set(target: Any, args: list, kwargs: dict, name: str, value: Any) -> None:
    i = _slot(target, args, name)
    if i is None:
        kwargs[name] = value
    else:
        args[i] = value


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return aten._to_copy.default(t, dtype=dtype)  # the core op: no metadata assert in the graph, unlike .to()


def _narrow(out: Any) -> Any:
    return pytree.tree_map_only(torch.Tensor, lambda t: _cast(t, torch.int32) if t.dtype == torch.int64 else t, out)


class _Narrower(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.wide = {n.name for n in self.module.graph.nodes if _holds_int64(n)}
        for n in self.user_inputs:  # the new program (and so the artifact) takes int32
            if n.name in self.wide:
                n.meta = {**n.meta, "val": torch.empty(_fx.node_shape(n), dtype=torch.int32, device="meta")}

    def run_node(self, n: torch.fx.Node) -> Any:
        if n.op == "get_attr" and n.name in self.wide:
            value = self.concrete(n)
            return self.const("int32:" + str(n.target), lambda: value.to(torch.int32))  # once, a constant
        return super().run_node(n)

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if not _touches(node, self.wide):
            return NotImplemented
        args, kwargs = self.resolve((args, kwargs))
        if isinstance(node.target, torch._ops.OpOverload):
            args, kwargs = self._retype(node, list(args), dict(kwargs))
        return _narrow(node.target(*args, **kwargs))

    def _retype(self, node: torch.fx.Node, args: list, kwargs: dict) -> tuple[list, dict]:
        op = node.target
        args, kwargs = pytree.tree_map_only(torch.dtype, lambda d: torch.int32 if d == torch.int64 else d,
                                            (args, kwargs))
        params = {a.name for a in op._schema.arguments}
        if node.name in self.wide and "dtype" in params and _get(op, args, kwargs, "dtype") is None:
            _set(op, args, kwargs, "dtype", torch.int32)  # sum/cumsum/arange/full of ints
        if "out_int32" in params:
            _set(op, args, kwargs, "out_int32", True)  # searchsorted, bucketize
        for name in INT64_ONLY.get(op, ()):  # a local cast back, right before the op
            value = _get(op, args, kwargs, name)
            if isinstance(value, torch.Tensor):
                _set(op, args, kwargs, name, _cast(value, torch.int64))
        return args, kwargs


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Narrower(program).export()
