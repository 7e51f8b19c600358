"""slice_assign_to_concat: writing into part of a tensor becomes a concat of the new part and the
untouched rest. Exact (pure data movement).

Before (``x[:, :k] = f(x[:, :k])``, ``x[..., a:b, :] += y``, ``x[:, 3] = v``, ``x[:, idx] = v``)::

    s = slice(x, 1, 0, k)                       # a view of x
    copy_(s, f(s))                              # in place: x changes
    … later ops read x …
    (functional spellings: slice_scatter(x, v, 1, 0, k), select_scatter, index_put(x, [None, idx], v))

After::

    x' = cat([f(slice(x, 1, 0, k)), slice(x, 1, k, C)], dim=1)
    … later ops read x' …

Exported, the write is a ScatterND (ONNX) or PAD + SELECT with a constant mask (TFLite), neither
of which NPUs run (no scatter kernel; PAD on the channel axis and SELECT are outside the Edge TPU's,
Ethos-U's and NNAPI's tables). A concat of slices computes the same tensor: every element of ``x'``
is either an element of the new part or the element of ``x`` at the same place, copied.

What is matched is what the graph does to memory: an in-place op (``copy_``, ``add_``, ``fill_``,
``mul_``, … any ``aten`` op that writes its first argument) whose target is a view of a tensor
``x`` made by view ops (slice, select, narrow, unsqueeze, …) is simulated on an index array
(:mod:`._views`); when the view is a box of ``x`` with unit steps (a block of each dim), the write
becomes a concat per dim the box does not cover. The new part is the in-place op's functional
form (``add`` for ``add_``, the source for ``copy_``, a constant for ``fill_`` of a constant)
applied to the view's value, broadcast to the box by concatenating copies (not BROADCAST_TO).
``index_put`` with one constant 1-D index (``x[:, idx] = v``, any order, last write wins) becomes
runs of slices of ``v`` and of ``x`` concatenated on that dim. Reads of ``x`` after the write see
``x'``; views of ``x`` made before the write and read after it are remade from ``x'``, so aliasing
behaves as in eager PyTorch.

Left alone, with the reason: writes into a graph input (the program's caller owns it), strided
views (``x[:, ::2] = …``), advanced indexing on more than one dim, ``index_put`` with
``accumulate=True`` or computed indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from edgekit.converters.passes import _fx, _views
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "find_writes", "Write"]

_SCATTERS = {aten.slice_scatter.default, aten.select_scatter.default, aten.index_put.default}
# ops that pass a constant through unchanged (how export lifts a literal index or fill value)
_CONST_PASS = {aten.lift_fresh_copy.default, aten.detach.default, aten.detach_.default, aten.clone.default,
               aten.alias.default, aten._to_copy.default}


@dataclass
class Write:
    node: torch.fx.Node  # the in-place op or the functional scatter
    base: torch.fx.Node  # the tensor written into
    box: list[tuple[int, int]] | None  # per dim of base: the [lo, hi) block written (None: index_put)
    inplace: bool
    index: tuple[int, np.ndarray] | None = None  # index_put: (dim, positions)


def _writes_first_arg(target: Any) -> bool:
    if not isinstance(target, torch._ops.OpOverload):
        return False
    args = target._schema.arguments
    return bool(args) and args[0].alias_info is not None and args[0].alias_info.is_write


def _view_root(v: torch.fx.Node) -> tuple[torch.fx.Node, list[torch.fx.Node]]:
    """The tensor ``v`` is a view of, and the view ops from it to ``v``."""
    chain: list[torch.fx.Node] = []
    while _views.is_view(v) and v.target not in (aten.clone.default, aten.contiguous.default) \
            and v.target not in (aten.expand.default, aten.repeat_interleave.self_int, aten.repeat.default,
                                 aten.pixel_shuffle.default, aten.pixel_unshuffle.default):
        chain.append(v)
        v = v.args[0]
    return v, chain[::-1]


def _box(shape: tuple[int, ...], idx: np.ndarray) -> list[tuple[int, int]] | None:
    """Per dim of ``shape``, the ``[lo, hi)`` block ``idx`` reads, when it reads exactly that box in order."""
    if idx.size == 0:
        return None
    c = _views.coords(idx.reshape(-1), shape)
    box = [(int(a.min()), int(a.max()) + 1) for a in c]
    ref = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[tuple(slice(lo, hi) for lo, hi in box)]
    return box if ref.size == idx.size and np.array_equal(ref.reshape(-1), idx.reshape(-1)) else None


def _const_value(node: Any, gm: torch.fx.GraphModule) -> torch.Tensor | None:
    """The value of a node that only passes a constant through (``lift_fresh_copy(_tensor_constant0)``)."""
    while isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in _CONST_PASS:
        node = node.args[0]
    if isinstance(node, torch.fx.Node) and node.op == "get_attr":
        import operator

        return operator.attrgetter(node.target)(gm)
    return None


def find_writes(gm: torch.fx.GraphModule) -> tuple[list[Write], list[str]]:
    """The writes into parts of tensors in ``gm`` (a program's ``module()``) this pass rewrites,
    and why each other one is left."""
    found, skipped = [], []
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if n.target in _SCATTERS:
            w, why = _functional(n, gm)
        elif _writes_first_arg(n.target) and isinstance(n.args[0], torch.fx.Node):
            w, why = _inplace(n, gm)
        else:
            continue
        if w is not None:
            found.append(w)
        elif why:
            skipped.append(why)
    return found, skipped


def _index_put(n: torch.fx.Node, base: torch.fx.Node, gm: torch.fx.GraphModule, inplace: bool) -> tuple[Write | None, str | None]:
    indices = list(n.args[1])
    accumulate = n.args[3] if len(n.args) > 3 else n.kwargs.get("accumulate", False)
    if accumulate:
        return None, f"{n.name}: index_put with accumulate=True"
    dims = [d for d, i in enumerate(indices) if i is not None]
    if len(dims) != 1:
        return None, f"{n.name}: advanced indexing on {len(dims)} dims"
    d = dims[0]
    pos = _const_value(indices[d], gm)
    shape = _fx.node_shape(base)
    if pos is None or pos.dim() != 1 or pos.dtype not in (torch.int64, torch.int32) or shape is None:
        return None, f"{n.name}: the index is computed in the graph or not a 1-D integer tensor"
    p = pos.numpy().astype(np.int64) % shape[d]
    return Write(n, base, None, inplace, (d, p)), None


def _functional(n: torch.fx.Node, gm: torch.fx.GraphModule) -> tuple[Write | None, str | None]:
    base = n.args[0]
    shape = _fx.node_shape(base)
    if shape is None:
        return None, f"{n.name}: shapes unknown (run static_shapes first)"
    if n.target is aten.index_put.default:
        return _index_put(n, base, gm, False)
    dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
    dim %= len(shape)
    if n.target is aten.select_scatter.default:
        i = int(n.args[3]) % shape[dim]
        lo, hi = i, i + 1
    else:
        start, end, step = (list(n.args[3:]) + [None, None, 1][len(n.args) - 3:])[:3]
        if (step or 1) != 1:
            return None, f"{n.name}: writes every {step}th element (a strided view)"
        lo, hi = slice(start, end).indices(shape[dim])[:2]
    box = [(0, s) for s in shape]
    box[dim] = (lo, hi)
    return Write(n, base, box, False), None


def _inplace(n: torch.fx.Node, gm: torch.fx.GraphModule) -> tuple[Write | None, str | None]:
    base, chain = _view_root(n.args[0])
    if not chain and n.target is not aten.index_put_.default:
        return None, None  # an in-place op on a whole tensor: not a partial write
    if base.op == "placeholder":
        return None, f"{n.name}: writes into the graph input {base.name}"
    shape = _fx.node_shape(base)
    if shape is None:
        return None, f"{n.name}: shapes unknown (run static_shapes first)"
    if n.target in (aten.index_put_.default,):
        if chain:
            return None, f"{n.name}: index_put into a view"
        return _index_put(n, base, gm, True)
    box = _box(shape, _views.simulate(shape, chain)[-1])
    if box is None:
        return None, f"{n.name}: writes into {chain[-1].name}, a view that is not a block of {base.name} (strided or reordered)"
    return Write(n, base, box, True), None


def check(program: torch.export.ExportedProgram) -> str | None:
    if not any(n.op == "call_function" and (n.target in _SCATTERS or _writes_first_arg(n.target))
               for n in program.graph_module.graph.nodes):
        return "no write into part of a tensor (x[:, a:b] = …, slice_scatter, index_put)"
    found, skipped = find_writes(program.module())
    if found:
        return None
    return "; ".join(skipped) if skipped else "no write into part of a tensor (only whole-tensor in-place ops)"


def broadcast_by_concat(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``t`` broadcast to ``shape`` by concatenating copies along each broadcast dim (exact; no
    BROADCAST_TO, which NPUs lack)."""
    shape = [int(s) for s in shape]
    if t.dim() < len(shape):
        t = aten.reshape.default(t, [1] * (len(shape) - t.dim()) + list(t.shape))
    for d, (have, want) in enumerate(zip(t.shape, shape)):
        if have == 1 and want != 1:
            t = aten.cat.default([t] * want, d)
    return t


def put_box(base: torch.Tensor, new: torch.Tensor, box: Sequence[tuple[int, int]], start: int = 0) -> torch.Tensor:
    """``base`` with the block ``box`` replaced by ``new`` (shaped like the block): slices of
    ``base`` and ``new`` concatenated, one concat per dim the block does not cover."""
    for d in range(start, len(box)):
        lo, hi = box[d]
        size = int(base.shape[d])
        if (lo, hi) == (0, size):
            continue
        inner = put_box(aten.slice.Tensor(base, d, lo, hi), new, box, d + 1)
        parts = ([aten.slice.Tensor(base, d, 0, lo)] if lo > 0 else []) + [inner] + \
                ([aten.slice.Tensor(base, d, hi, size)] if hi < size else [])
        return aten.cat.default(parts, d) if len(parts) > 1 else inner
    return new


def put_index(base: torch.Tensor, new: torch.Tensor, dim: int, pos: np.ndarray) -> torch.Tensor:
    """``base`` with ``base[..., pos[k], ...] = new[..., k, ...]`` along ``dim`` (last write wins),
    as runs of slices of ``base`` and ``new`` concatenated on ``dim``."""
    size = int(base.shape[dim])
    src: list[tuple[str, int]] = [("x", i) for i in range(size)]
    for k, p in enumerate(pos.tolist()):
        src[p] = ("v", k)
    parts, i = [], 0
    while i < size:
        kind, a = src[i]
        j = i + 1
        while j < size and src[j] == (kind, a + (j - i)):
            j += 1
        t = base if kind == "x" else new
        parts.append(aten.slice.Tensor(t, dim, a, a + (j - i)))
        i = j
    return aten.cat.default(parts, dim) if len(parts) > 1 else parts[0]


def _functional_form(target: Any) -> Any:
    """``aten.add.Tensor`` for ``aten.add_.Tensor``: the op that returns what an in-place op writes."""
    name = target._schema.name.split("::")[1].rstrip("_")
    return getattr(getattr(aten, name), target._overloadname)


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.garbage_collect_values = False  # a write makes earlier tensors live again (the base, its views)
        self.gm = self.module
        found, _ = find_writes(self.gm)
        self.writes = {w.node.name: w for w in found}
        self.nodes = {n.name: n for n in self.gm.graph.nodes}
        self.last: dict[str, tuple[str, Any]] = {}  # base name → (write node, its target view spec)

    def _views_of(self, base: torch.fx.Node) -> list[torch.fx.Node]:
        """View ops reading ``base``, directly or through other views, in graph order."""
        out, stack = [], [base]
        while stack:
            v = stack.pop()
            for u in v.users:
                if _views.is_view(u) and u.args[0] is v and u.target not in (aten.clone.default,):
                    out.append(u)
                    stack.append(u)
        order = {n: i for i, n in enumerate(self.gm.graph.nodes)}
        return sorted(set(out), key=order.__getitem__)

    def _new_part(self, node: torch.fx.Node, w: Write, args: tuple, kwargs: dict) -> torch.Tensor:
        view = self.resolve(args[0])
        t = node.target
        if t in (aten.copy_.default,):
            new = self.resolve(args[1])
        elif t in (aten.fill_.Scalar, aten.fill_.Tensor):
            value = args[1]
            if isinstance(value, _fx.Attr):
                conc = self.concrete(value)
            elif isinstance(node.args[1], torch.fx.Node):
                conc = _const_value(node.args[1], self.gm)
            else:
                conc = value
            if conc is None:  # a fill value computed in the graph
                return aten.fill.Tensor(view, self.resolve(value))
            shape, dtype = list(view.shape), view.dtype  # made outside tracing (const): real values
            return self.const(f"fill.{node.name}", lambda: torch.full(shape, float(conc), dtype=dtype))
        else:
            new = _functional_form(t)(view, *self.resolve((args[1:], kwargs))[0], **self.resolve(kwargs))
        if new.dtype != view.dtype:
            new = new.to(view.dtype)
        return broadcast_by_concat(new, view.shape)

    def _unviewed(self, node: torch.fx.Node, shape: list[int]) -> torch.Tensor | None:
        """The value of ``node`` before reshapes that only dropped unit dims, when it had ``shape``
        (export views index_put's values to the indexed shape; undone, no reshape pair is left,
        which a channels-last backend would turn into two TRANSPOSEs)."""
        while node.op == "call_function" and node.target in (aten.view.default, aten.reshape.default,
                                                             aten._unsafe_view.default):
            node = node.args[0]
            if _fx.node_shape(node) == tuple(shape) and node in self.env:
                return self.resolve(self.env[node])
        return None

    def _refresh(self, base: torch.fx.Node) -> None:
        """Views of ``base`` already computed are remade from its new value (aliasing, as eager)."""
        for v in self._views_of(base):
            if v in self.env:
                args, kwargs = self.fetch_args_kwargs_from_env(v)
                self.env[v] = self.default(v.target, args, kwargs)

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        w = self.writes.get(node.name)
        if w is None:
            return NotImplemented
        base = self.resolve(self.env[w.base] if w.inplace else args[0])
        if w.inplace and w.box is not None:
            prev = self.last.get(w.base.name)
            src = node.args[1] if len(node.args) > 1 else None
            if node.target is aten.copy_.default and prev is not None and isinstance(src, torch.fx.Node) \
                    and prev == (src.name, tuple(w.box)):
                return self.resolve(args[1])  # writes back what the previous in-place op just wrote
            new = self._new_part(node, w, args, kwargs)
            shape = [hi - lo for lo, hi in w.box]
            base_new = put_box(base, aten.reshape.default(new, shape) if list(new.shape) != shape else new, w.box)
            self.env[w.base] = base_new
            self.last[w.base.name] = (node.name, tuple(w.box))
            self._refresh(w.base)
            return new
        if w.index is not None:
            dim, pos = w.index
            sel = list(base.shape)
            sel[dim] = len(pos)
            values = self._unviewed(node.args[2], sel) if isinstance(node.args[2], torch.fx.Node) else None
            values = self.resolve(args[2]) if values is None else values
            values = broadcast_by_concat(values.to(base.dtype) if values.dtype != base.dtype else values, sel)
            base_new = put_index(base, values, dim, pos)
            if w.inplace:
                self.env[w.base] = base_new
                self.last.pop(w.base.name, None)
                self._refresh(w.base)
            return base_new
        # functional slice_scatter / select_scatter
        src = self.resolve(args[1])
        shape = [hi - lo for lo, hi in w.box]  # type: ignore[union-attr]
        src = broadcast_by_concat(src, shape) if src.dim() == len(shape) else aten.reshape.default(src, shape)
        return put_box(base, src, w.box)  # type: ignore[arg-type]


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
