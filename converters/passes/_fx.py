"""Graph surgery shared by the video (5-D → rank ≤ 4) rewrite passes.

Two tools:

- :class:`Retracer` re-runs an ``ExportedProgram``'s graph node by node with a
  :class:`torch.fx.Interpreter` inside a fresh ``nn.Module`` and exports that module again. A pass
  overrides the nodes it rewrites (``handle``); every other node runs as it was. The result is a
  clean ``ExportedProgram`` (new graph, new signature, only the constants the new graph uses), and
  the input program is never mutated. Weights a pass derives (a Conv3d kernel reshaped for a
  Conv2d, a conv's output channels permuted) are computed once from the concrete weights and
  registered as constants of the new module, so no weight arithmetic is left in the graph.

- :class:`View` and :func:`gather_as` model pure data movement (view, reshape, permute, slice,
  pixel_shuffle, …) *lazily*: a view is its base tensor plus an integer array giving, for every
  element of the view, the flat position it reads in the base. A chain of rank-5..8 views is thus
  one index array, and :func:`gather_as` emits the cheapest equivalent ops at the consumer: a
  plain reshape when the order is unchanged, else one reshape → permute → reshape whose rank is
  the number of independent axes (found by :func:`factor_permutation`), plus slices when the view
  reads a box of the base. Simulating chains on index arrays is how the passes recognise the 8-D
  permute 3-D pixel shuffle and the frames-into-batch layout without matching op sequences.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily

from edgekit.errors import ConversionError

__all__ = ["View", "folded", "frames", "Retracer", "gather_as", "factor_permutation", "view_index", "example_inputs",
           "LAYOUT_META", "Attr", "aten", "node_shape", "is_view_op", "VIEW_OPS", "count_ops", "max_rank"]

aten = torch.ops.aten
LAYOUT_META = "edgekit_io_layouts"


# ------------------------------------------------------------------------- index-array views


def factor_permutation(perm: np.ndarray) -> list[tuple[int, int]] | None:
    """Write a map "flat target position → flat source position" as independent axes
    ``[(length, source_stride), …]``, outermost target axis first, merged where contiguous in both
    orders. Stride 0 marks a repeated (broadcast) axis. None when the map is not a transpose of
    some reshape of the source, with repeats."""
    q = np.asarray(perm, dtype=np.int64).reshape(-1)
    axes: list[tuple[int, int]] = []  # innermost first
    while q.size > 1:
        d = int(q[1] - q[0])
        if d < 0:
            return None
        diffs = np.diff(q)
        run = int(np.argmax(diffs != d)) + 1 if np.any(diffs != d) else q.size
        if q.size % run:
            return None
        rows = q.reshape(-1, run)
        if not np.array_equal(rows - rows[:, :1], np.broadcast_to(np.arange(run) * d, rows.shape)):
            return None
        axes.append((run, d))
        q = rows[:, 0]
    if q.size != 1 or q[0] != 0:
        return None
    # the source must be tiled exactly: sorted by stride, each stride = product of smaller lengths
    expect = 1
    for length, stride in sorted((a for a in axes if a[1]), key=lambda a: a[1]):
        if stride != expect:
            return None
        expect *= length
    return axes[::-1]


def _distinct(values: np.ndarray, size: int) -> np.ndarray:
    """The sorted distinct values of non-negative ints below ``size`` (O(n), unlike np.unique)."""
    seen = np.zeros(size, dtype=bool)
    seen[values.reshape(-1)] = True
    return np.flatnonzero(seen)


def _gather_box(base: torch.Tensor, idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Slice ``base`` to the box of positions ``idx`` reads; return it and ``idx`` re-based."""
    shape = tuple(base.shape)
    coords = np.unravel_index(idx.reshape(-1), shape)
    sub = base
    new_shape = list(shape)
    rel = []
    for d, c in enumerate(coords):
        lo, hi = int(c.min()), int(c.max())
        u = _distinct(c, shape[d])
        step = int(u[1] - u[0]) if u.size > 1 else 1
        if u.size < 2 or not np.array_equal(u, np.arange(lo, hi + 1, step)):
            step = 1
        if lo != 0 or hi != shape[d] - 1 or step > 1:
            sub = aten.slice.Tensor(sub, d, lo, hi + 1, step)
            new_shape[d] = (hi - lo) // step + 1
        rel.append((c - lo) // step)
    flat = np.ravel_multi_index(tuple(rel), tuple(new_shape)) if rel else np.zeros(1, np.int64)
    return sub, flat.reshape(idx.shape)


def _gather_range(base: torch.Tensor, idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Slice ``base`` to the contiguous flat range ``idx`` reads, as ``(blocks, b)[lo/b : hi/b]``
    with the largest block ``b`` that keeps it a slice of whole blocks (a frame range of a
    reshaped tensor is one slice on dim 0); returns the slice and ``idx`` re-based."""
    import math

    n = int(base.numel())
    lo, hi = int(idx.min()), int(idx.max()) + 1
    b = math.gcd(math.gcd(lo, hi), n) or n
    sub = aten.slice.Tensor(aten.reshape.default(base, [n // b, b]), 0, lo // b, hi // b)
    return sub, idx - lo


def gather_as(base: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """The tensor of shape ``idx.shape`` whose elements are ``base.flatten()[idx]``, built from
    slice, reshape, at most one permute and, for repeated elements (expand, repeat_interleave),
    concatenations of copies — never a gather or BROADCAST_TO. Raises ``ConversionError`` when
    the data movement is not a transpose of a box of ``base`` with repeats."""
    shape = list(idx.shape)
    if idx.size == 0:
        return aten.reshape.default(aten.slice.Tensor(base.reshape(-1), 0, 0, 0), shape)
    if idx.size == base.numel() and np.array_equal(idx.reshape(-1), np.arange(idx.size)):
        return base if list(base.shape) == shape else aten.reshape.default(base, shape)  # same order
    sub, rel = _gather_box(base, idx)
    n = int(np.prod(sub.shape)) if sub.dim() else 1
    if _distinct(rel, n).size != n:
        sub, rel = _gather_range(base, idx)
        n = int(np.prod(sub.shape))
    if (read := _distinct(rel, n).size) != n:
        raise ConversionError("rewrite", f"a view reads {read} of {n} elements (strided); "
                              "cannot express it with slice/reshape/transpose")
    axes = factor_permutation(rel)
    if axes is None:
        raise ConversionError("rewrite", f"a view of shape {shape} is not a transpose of its base {list(base.shape)}")
    core = [i for i, a in enumerate(axes) if a[1]]  # logical order
    if list(sub.shape) == shape and len(core) == len(axes):
        if all(axes[i][1] > axes[i + 1][1] for i in range(len(axes) - 1)):
            return sub
    order = sorted(core, key=lambda i: -axes[i][1])  # source axes, outermost first
    src_shape = [axes[i][0] for i in order]
    perm = [order.index(i) for i in core]
    x = sub
    if len(core) == len(axes) and perm != sorted(perm):
        fine = _split_at_dims(axes, list(sub.shape), shape)
        if fine is not None:
            return fine(sub)
    if perm != sorted(perm):
        if list(x.shape) != src_shape:
            x = aten.reshape.default(x, src_shape)
        x = aten.permute.default(x, perm)
    # repeated axes, innermost first: (outer, inner) → cat L copies on dim 1 → (outer, L·inner)
    present = list(core)
    for k in [i for i in range(len(axes) - 1, -1, -1) if not axes[i][1]]:
        outer = int(np.prod([axes[i][0] for i in present if i < k]))
        inner = int(np.prod([axes[i][0] for i in present if i > k]))
        x = aten.reshape.default(x, [outer, inner])
        x = torch.cat([x] * axes[k][0], dim=1)
        present = sorted(present + [k])
    return x if list(x.shape) == shape else aten.reshape.default(x, shape)


def _split_at_dims(axes: list[tuple[int, int]], src: list[int], dst: list[int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A pure transpose (``axes`` from :func:`factor_permutation`, no repeats) as permute *of the
    source's own dims* then reshape, or reshape *to the target's own dims* then permute, when
    splitting the merged axes at the dims of ``src`` and ``dst`` keeps it at rank ≤ 4.

    Why: a channels-last backend (litert-torch) keeps a 4-D tensor in NHWC and reads a reshape of
    it in NCHW order, so ``reshape(x₄, (T, C, H·W)).permute(0, 2, 1)`` costs a TRANSPOSE, while the
    same tokens as ``x₄.permute(0, 2, 3, 1).reshape(T, H·W, C)`` cancel against its own layout
    transpose (measured on video_decoder_ref: 13 → 4 TRANSPOSEs, the attention tokens and the NCHW
    residual stream they caused). None when
    the split form would exceed rank 4 or needs a reshape on both sides."""
    lst = [0] * len(axes)  # logical strides, axes in logical order
    acc = 1
    for i in range(len(axes) - 1, -1, -1):
        lst[i] = acc
        acc *= axes[i][0]
    ax = [(n, st, ls) for (n, st), ls in zip(axes, lst)]
    cuts_src = [int(np.prod(src[j + 1:])) for j in range(len(src))]
    cuts_dst = [int(np.prod(dst[j + 1:])) for j in range(len(dst))]
    changed = True
    while changed:
        changed = False
        for i, (n, st, ls) in enumerate(ax):
            f = next((c // st for c in cuts_src if st < c < st * n and c % st == 0), None)
            if f is None:
                f = next((c // ls for c in cuts_dst if ls < c < ls * n and c % ls == 0), None)
            if f is not None and n % f == 0:
                ax[i:i + 1] = [(n // f, st * f, ls * f), (f, st, ls)]
                changed = True
                break
    if len(ax) > 4:
        return None
    order = sorted(range(len(ax)), key=lambda i: -ax[i][1])
    fine_src = [ax[i][0] for i in order]
    perm = [order.index(i) for i in range(len(ax))]
    fine_dst = [ax[i][0] for i in range(len(ax))]
    if fine_src != list(src) and fine_dst != list(dst):
        return None

    def build(x: torch.Tensor) -> torch.Tensor:
        if list(x.shape) != fine_src:
            x = aten.reshape.default(x, fine_src)
        x = aten.permute.default(x, perm)
        return x if list(x.shape) == list(dst) else aten.reshape.default(x, list(dst))
    return build


def _pixel_shuffle_idx(a: np.ndarray, r: int) -> np.ndarray:
    *lead, c, h, w = a.shape
    oc = c // (r * r)
    a = a.reshape(*lead, oc, r, r, h, w)
    nl = len(lead)
    a = a.transpose(*range(nl), nl, nl + 3, nl + 1, nl + 4, nl + 2)
    return a.reshape(*lead, oc, h * r, w * r)


def _pixel_unshuffle_idx(a: np.ndarray, r: int) -> np.ndarray:
    *lead, c, h, w = a.shape
    nl = len(lead)
    a = a.reshape(*lead, c, h // r, r, w // r, r)
    a = a.transpose(*range(nl), nl, nl + 2, nl + 4, nl + 1, nl + 3)
    return a.reshape(*lead, c * r * r, h // r, w // r)


def _dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _slice_idx(a: np.ndarray, dim: int = 0, start: int | None = None, end: int | None = None, step: int = 1):
    dim = _dim(dim, a.ndim)
    key = [slice(None)] * a.ndim
    key[dim] = slice(start, end, step)
    return a[tuple(key)]


def _reshape_idx(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return a.reshape([int(s) for s in shape])


def _squeeze_idx(a: np.ndarray, dims: Sequence[int] | int | None = None) -> np.ndarray:
    if dims is None:
        return a.squeeze()
    dims = [dims] if isinstance(dims, int) else list(dims)
    dims = [_dim(d, a.ndim) for d in dims if a.shape[_dim(d, a.ndim)] == 1]
    return a.squeeze(tuple(dims)) if dims else a


def _expand_idx(a: np.ndarray, size: Sequence[int]) -> np.ndarray:
    size = [int(x) for x in size]
    lead = len(size) - a.ndim
    full = [a.shape[i - lead] if (s == -1 and i >= lead) else s for i, s in enumerate(size)]
    return np.broadcast_to(a.reshape((1,) * lead + a.shape), full)


def _flatten_idx(a: np.ndarray, start: int = 0, end: int = -1) -> np.ndarray:
    s, e = _dim(start, a.ndim), _dim(end, a.ndim)
    return a.reshape(*a.shape[:s], -1, *a.shape[e + 1:])


# aten view-like op → the same data movement on an index array (extra args as aten takes them)
VIEW_OPS: dict[Any, Callable[..., np.ndarray]] = {
    aten.view.default: _reshape_idx,
    aten.reshape.default: _reshape_idx,
    aten._unsafe_view.default: _reshape_idx,
    aten.permute.default: lambda a, dims: a.transpose([_dim(d, a.ndim) for d in dims]),
    aten.transpose.int: lambda a, d0, d1: np.swapaxes(a, d0, d1),
    aten.t.default: lambda a: a.T,
    aten.unsqueeze.default: lambda a, d: np.expand_dims(a, _dim(d, a.ndim + 1)),
    aten.squeeze.dim: _squeeze_idx,
    aten.squeeze.dims: _squeeze_idx,
    aten.squeeze.default: _squeeze_idx,
    aten.flatten.using_ints: _flatten_idx,
    aten.clone.default: lambda a, **_: a,
    aten.contiguous.default: lambda a, **_: a,
    aten.alias.default: lambda a: a,
    aten.detach.default: lambda a: a,
    aten.slice.Tensor: _slice_idx,
    aten.select.int: lambda a, d, i: np.take(a, i, axis=_dim(d, a.ndim)),
    aten.pixel_shuffle.default: _pixel_shuffle_idx,
    aten.expand.default: lambda a, size, **_: _expand_idx(a, size),
    aten.repeat_interleave.self_int: lambda a, repeats, dim=None, output_size=None: (
        np.repeat(a.reshape(-1), repeats) if dim is None else np.repeat(a, repeats, axis=_dim(dim, a.ndim))),
    aten.repeat.default: lambda a, reps: np.tile(a, list(reps)),
    aten.pixel_unshuffle.default: _pixel_unshuffle_idx,
}


def is_view_op(target: Any) -> bool:
    return target in VIEW_OPS


def view_index(target: Any, idx: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
    """Apply the data movement of the view-like aten op ``target`` to an index array."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("memory_format",)}
    return np.ascontiguousarray(VIEW_OPS[target](idx, *args, **kwargs))


class View:
    """A lazy view: ``base`` read through ``idx`` (flat base positions, logical shape).

    ``ops`` records the view ops that made it from ``base``; when :func:`gather_as` cannot
    express ``idx`` (rare: e.g. a strided slice after a transpose), :meth:`materialize` replays
    them, so an unusual view costs its original ops instead of failing the rewrite."""

    __slots__ = ("base", "idx", "ops", "_value", "_frames")

    def __init__(self, base: torch.Tensor, idx: np.ndarray, ops: tuple = ()):
        self.base, self.idx, self.ops, self._value, self._frames = base, idx, ops, None, None

    @classmethod
    def of(cls, x: "torch.Tensor | View") -> "View":
        if isinstance(x, View):
            return x
        return cls(x, np.arange(x.numel(), dtype=np.int64).reshape(tuple(x.shape)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.idx.shape)

    def dim(self) -> int:
        return self.idx.ndim

    def apply(self, target: Any, *args: Any, **kwargs: Any) -> "View":
        return View(self.base, view_index(target, self.idx, *args, **kwargs), self.ops + ((target, args, kwargs),))

    def replay(self) -> torch.Tensor:
        x = self.base
        for target, args, kwargs in self.ops:
            x = target(x, *args, **kwargs)
        return x

    def materialize(self) -> torch.Tensor:
        if self._value is None:  # once per view, however many ops read it
            try:
                self._value = gather_as(self.base, self.idx)
            except ConversionError:
                self._value = self.replay()
        return self._value


def folded(x4: torch.Tensor) -> View:
    """The logical ``(1, C, T, H, W)`` tensor stored as frames in batch ``x4 = (T, C, H, W)``."""
    t, c, h, w = x4.shape
    idx = np.arange(t * c * h * w, dtype=np.int64).reshape(t, c, h, w).transpose(1, 0, 2, 3)[None]
    return View(x4, np.ascontiguousarray(idx), ((aten.permute.default, ([1, 0, 2, 3],), {}),
                                                (aten.unsqueeze.default, (0,), {})))


def frames(x: "torch.Tensor | View", shape5: Sequence[int] | None = None) -> torch.Tensor:
    """``(T, C, H, W)`` frames in batch of a logical ``(1, C, T, H, W)`` tensor (free when ``x`` is
    already stored that way). ``shape5`` broadcasts a lower-rank tensor to rank 5 first (leading
    ones), e.g. a ``(1, C, 1, 1, 1)`` scale becomes ``(1, C, 1, 1)``."""
    v = View.of(x)
    if v._frames is None:  # once per view: every consumer shares the same frames tensor
        v._frames = _frames(v, shape5)
    return v._frames


def _frames(v: View, shape5: Sequence[int] | None) -> torch.Tensor:
    idx = v.idx
    if shape5 is not None and idx.ndim < 5:
        idx = idx.reshape((1,) * (5 - idx.ndim) + idx.shape)
    if idx.ndim != 5 or idx.shape[0] != 1:
        raise ConversionError("rewrite", f"expected a (1, C, T, H, W) tensor, got {list(idx.shape)}")
    try:
        return gather_as(v.base, np.ascontiguousarray(idx[0].transpose(1, 0, 2, 3)))
    except ConversionError:  # an unusual view: run its own ops, then fold the result
        x = v.replay()
        if x.dim() < 5:
            x = aten.reshape.default(x, list(idx.shape))
        return aten.permute.default(aten.squeeze.dim(x, 0), [1, 0, 2, 3])


# ------------------------------------------------------------------------------- re-tracing


class Attr:
    """A weight of the source graph, registered in the new module only when an op uses it."""

    __slots__ = ("target",)

    def __init__(self, target: str):
        self.target = target


def node_shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    val = node.meta.get("val")
    return tuple(int(s) for s in val.shape) if isinstance(val, torch.Tensor) else None


def example_inputs(program: torch.export.ExportedProgram) -> list[torch.Tensor]:
    """Random tensors shaped like the program's user inputs (static shapes)."""
    out = []
    g = torch.Generator().manual_seed(0)
    for node in program.graph_module.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta["val"]
            shape = [int(s) for s in val.shape]
            if val.dtype.is_floating_point:
                out.append(torch.randn(shape, generator=g, dtype=val.dtype))
            else:
                out.append(torch.zeros(shape, dtype=val.dtype))
    return out


def _attr(gm: nn.Module, target: str) -> Any:
    return operator.attrgetter(target)(gm)


_SKIP_TARGETS = {"_guards_fn"}


class Retracer(torch.fx.Interpreter):
    """Re-run ``program``'s graph inside a fresh module, letting a pass override nodes, and export
    the result (see the module docstring). Subclasses override :meth:`handle` (return
    ``NotImplemented`` to run a node as it was) and may transform inputs and outputs with
    :meth:`convert_input` / :meth:`convert_output` (given the new example input shapes by
    :meth:`input_shape`)."""

    def __init__(self, program: torch.export.ExportedProgram):
        self.program = program
        gm = program.module()
        super().__init__(gm)
        self.holder = nn.Module()
        self._const_names: dict[str, str] = {}
        self.layouts: dict[str, dict] = {"inputs": {}, "outputs": {}}
        self.cache: dict[Any, Any] = {}  # per run: tensors a pass shares between nodes
        self.user_inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]

    # -- constants ------------------------------------------------------------------------------
    def concrete(self, node: Any) -> torch.Tensor | None:
        """The concrete value of a weight argument (an :class:`Attr` or ``get_attr`` node), else None."""
        if isinstance(node, Attr):
            return _attr(self.module, node.target)
        if isinstance(node, torch.fx.Node) and node.op == "get_attr":
            return _attr(self.module, node.target)
        return None

    def const(self, key: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A constant of the new module, computed once by ``make`` (from concrete weights)."""
        name = self._const_names.get(key)
        if name is None:
            name = f"c{len(self._const_names)}_" + "".join(ch if ch.isalnum() else "_" for ch in key)[-60:]
            self._const_names[key] = name
            with unset_fake_temporarily(), torch.no_grad():  # real weights, even during the dry run
                value = make().detach().clone().contiguous()
            self.holder.register_buffer(name, value)
        return getattr(self.holder, name)

    def input_name(self, node: torch.fx.Node) -> str:
        """The source program's name of a user input (``program.module()`` may rename ``input``
        to ``input_1``; the new program keeps the exported name, which callers feed by)."""
        i = self.user_inputs.index(node)
        names = list(self.program.graph_signature.user_inputs)
        return str(names[i]) if i < len(names) else node.name

    # -- hooks ----------------------------------------------------------------------------------
    def input_shape(self, node: torch.fx.Node) -> tuple[int, ...]:
        return node_shape(node)  # type: ignore[return-value]

    def convert_input(self, node: torch.fx.Node, x: torch.Tensor) -> Any:
        return x

    def convert_output(self, i: int, value: Any) -> Any:
        return value.materialize() if isinstance(value, View) else value

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        return NotImplemented

    def default(self, target: Any, args: tuple, kwargs: dict) -> Any:
        """Run an op as it was, materialising any lazy view among its arguments."""
        args, kwargs = self.resolve((args, kwargs))
        return target(*args, **kwargs)

    def resolve(self, tree: Any) -> Any:
        """Materialise lazy views and weights in ``tree`` (args of an op that runs as it was)."""
        return torch.utils._pytree.tree_map_only(View, View.materialize, self.resolve_attrs(tree))

    def resolve_attrs(self, tree: Any) -> Any:
        """Weights in ``tree`` as constants of the new module (lazy views stay lazy)."""
        return torch.utils._pytree.tree_map_only(Attr, lambda a: self.const("attr:" + a.target,
                                                                         lambda: _attr(self.module, a.target)), tree)

    # -- interpreter ----------------------------------------------------------------------------
    def run_node(self, n: torch.fx.Node) -> Any:
        if n.op == "placeholder":
            return self.convert_input(n, next(self.args_iter))
        if n.op == "get_attr":
            return Attr(n.target)  # registered only if something still uses it
        if n.op == "call_module" and n.target in _SKIP_TARGETS:
            return None
        if n.op == "output":
            (outs,) = n.args
            flat = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            vals = self.map_nodes_to_values(flat, n)
            return tuple(self.convert_output(i, self.resolve(v) if isinstance(v, Attr) else v)
                         for i, v in enumerate(vals))
        if n.op == "call_function":
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            out = self.handle(n, args, kwargs)
            if out is NotImplemented:
                out = self.default(n.target, args, kwargs)
            return out
        return super().run_node(n)

    def dry_run(self, fn: Callable[..., Any] | None = None, args: Sequence[torch.Tensor] | None = None) -> Any:
        """Run the rewrite once on fake tensors (shapes only: seconds even where eager Conv3d would
        take minutes), creating the constants the rewrite needs from the real weights."""
        if args is None:
            args = example_inputs(self.program)
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
            fake = [mode.from_tensor(a) for a in args]
            if fn is None:
                self.cache.clear()
                return self.run(*fake, enable_io_processing=False)
            return fn(*fake)

    def export(self) -> torch.export.ExportedProgram:
        """The rewritten program (input names kept; layouts recorded in graph_module.meta)."""
        shapes = [self.input_shape(n) for n in self.user_inputs]
        names = [self.input_name(n) for n in self.user_inputs]
        retracer = self

        class Rewritten(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.consts = retracer.holder

            def run(self, *xs: torch.Tensor) -> Any:
                retracer.cache.clear()
                out = retracer.run(*xs, enable_io_processing=False)
                return out[0] if len(out) == 1 else out

        src = f"def forward(self, {', '.join(names)}):\n    return self.run({', '.join(names)})\n"
        scope: dict[str, Any] = {}
        exec(src, scope)  # gives the new program the source's input names
        Rewritten.forward = scope["forward"]
        args = []
        for node, shape in zip(self.user_inputs, shapes):
            val = node.meta["val"]
            g = torch.Generator().manual_seed(0)
            args.append(torch.randn(shape, generator=g, dtype=val.dtype) if val.dtype.is_floating_point
                        else torch.zeros(shape, dtype=val.dtype))
        mod = Rewritten().eval()
        self.dry_run(mod, args)  # creates the constants; export then sees a fixed module
        ep = torch.export.export(mod, tuple(args))
        meta = dict(self.program.graph_module.meta.get(LAYOUT_META) or {"inputs": {}, "outputs": {}})
        for side in ("inputs", "outputs"):
            merged = dict(meta.get(side, {}))
            merged.update(self.layouts[side])
            meta[side] = merged
        if meta["inputs"] or meta["outputs"]:
            ep.graph_module.meta[LAYOUT_META] = meta
        return ep


# ------------------------------------------------------------------------------- inspection


def count_ops(program: torch.export.ExportedProgram) -> dict[str, int]:
    """Histogram of ``call_function`` targets (``aten.conv2d.default`` → count)."""
    out: dict[str, int] = {}
    for n in program.graph_module.graph.nodes:
        if n.op == "call_function":
            k = str(n.target)
            out[k] = out.get(k, 0) + 1
    return out


def max_rank(program: torch.export.ExportedProgram) -> int:
    """The largest tensor rank of any node in the graph (inputs, weights and outputs included)."""
    r = 0
    for n in program.graph_module.graph.nodes:
        val = n.meta.get("val")
        vals = val if isinstance(val, (list, tuple)) else [val]
        for v in vals:
            if isinstance(v, torch.Tensor):
                r = max(r, v.dim())
    return r
