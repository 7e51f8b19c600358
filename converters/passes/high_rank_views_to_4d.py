"""high_rank_views_to_4d: data movement through rank-5+ views (window partition and reverse,
attention head splits) becomes reshape → rank-≤4 permute → reshape. Exact (docs/accelerators.md,
rewrite 2).

Before (Swin-style window partition of ``t = (B, H, W, C)`` into ``w × w`` windows, and back)::

    p = t.view(B, H/w, w, W/w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B·nW, w, w, C)      # rank 6
    u = p.view(B, H/w, W/w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)        # rank 6
    q, k, v = qkv.reshape(B_, N, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)           # rank 5

After (the window grid folded into the batch; nothing above rank 4)::

    p = t.reshape(B·H/w, w, W/w, w·C).permute(0, 2, 1, 3).reshape(B·nW, w, w, C)
    u = p.reshape(B·H/w, W/w, w, w·C).permute(0, 2, 1, 3).reshape(B, H, W, C)
    q = qkv.slice(2, 0, heads·d).reshape(B_, N, heads, d).permute(0, 2, 1, 3)            # k, v alike

Why this is the same function: a view chain only moves data, so it is fully described by which
element of its input each element of its output copies. The pass simulates every connected run
of view ops whose tensors exceed rank 4 (view, reshape, permute, transpose, unsqueeze, slice,
select, ``unbind``/``split``/``chunk``) on an index array (:mod:`._views`), from the rank-≤4
tensor it starts at to each rank-≤4 tensor it ends at, and writes each end as a box slice of the
start, then one reshape → permute → reshape whose rank is the number of independent axes of the
movement (:func:`._fx.gather_as`, which merges axes that stay contiguous: ``W/w`` windows of
``w·C`` values in the example). Exact: the same elements are copied to the same places.

Left alone, with the reason: runs whose movement has more than 4 independent axes (a rank-5
permute would remain), runs that start at a rank-5+ tensor an op computed (video: see
``frames_to_batch``), and rank-5+ tensors that a non-view op computes on.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from edgekit.converters.passes import _fx, _views
from edgekit.converters.passes._fx import View, aten
from edgekit.errors import ConversionError

__all__ = ["check", "rewrite", "find_runs", "Run", "movement_rank"]

MAX_RANK = 4
_SPLITS = {aten.unbind.int, aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default,
           aten.unsafe_split.Tensor}


@dataclass
class Run:
    """A connected run of view ops above rank 4: its start, its nodes, and its ends (rank ≤ 4)."""

    root: torch.fx.Node
    nodes: set[str] = field(default_factory=set)
    ends: dict[str, np.ndarray] = field(default_factory=dict)  # end name → index array into root


def _rank(node: Any) -> int:
    return len(_fx.node_shape(node) or ()) if isinstance(node, torch.fx.Node) else 0


def _split_outputs(node: torch.fx.Node, idx: np.ndarray) -> list[np.ndarray]:
    """The index arrays of the outputs of an unbind/split/chunk applied to ``idx``."""
    t, a = node.target, list(node.args[1:])
    if t is aten.unbind.int:
        d = a[0] if a else 0
        return [np.take(idx, i, axis=d) for i in range(idx.shape[d])]
    d = (a[1] if len(a) > 1 else node.kwargs.get("dim", 0)) % idx.ndim
    if t is aten.split_with_sizes.default:
        sizes = list(a[0])
    elif t is aten.chunk.default:
        n = idx.shape[d]
        step = -(-n // a[0])
        sizes = [min(step, n - i) for i in range(0, n, step)]
    else:
        n, step = idx.shape[d], int(a[0])
        sizes = [min(step, n - i) for i in range(0, n, step)]
    cuts = np.cumsum([0] + sizes)
    return [np.take(idx, np.arange(lo, hi), axis=d) for lo, hi in zip(cuts[:-1], cuts[1:])]


class _RankProbe(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.rank = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.rank = max(self.rank, t.dim())
        return out


def movement_rank(shape: tuple[int, ...], idx: np.ndarray) -> int | None:
    """The highest rank :func:`._fx.gather_as` uses to copy ``idx`` out of a tensor of ``shape``
    (None when it cannot: a strided read)."""
    base = torch.empty(shape, device="meta")
    probe = _RankProbe()
    try:
        with probe:
            _fx.gather_as(base, idx)
    except ConversionError:
        return None
    return max(probe.rank, len(shape), idx.ndim)


def find_runs(program: torch.export.ExportedProgram) -> tuple[list[Run], list[str]]:
    """The runs this pass rewrites, and why each other run above rank 4 is left."""
    graph = program.graph_module.graph
    high = {n for n in graph.nodes if _views.is_view(n) and _rank(n) > MAX_RANK}
    # a split of a high tensor, and its getitems above rank 4, belong to the run too
    for n in graph.nodes:
        if n.op == "call_function" and n.target in _SPLITS and n.args[0] in high:
            high.add(n)
    for n in graph.nodes:
        if n.op == "call_function" and n.target is operator.getitem and n.args[0] in high and _rank(n) > MAX_RANK:
            high.add(n)
    runs, skipped, seen = [], [], set()
    for n in graph.nodes:
        if n not in high or n in seen or n.args[0] in high:
            continue
        run, why = _collect(n, high, seen)
        if why:
            skipped.append(why)
        else:
            runs.append(run)  # type: ignore[arg-type]
    return runs, skipped


def _collect(first: torch.fx.Node, high: set, seen: set) -> tuple[Run | None, str | None]:
    root = first.args[0]
    rshape = _fx.node_shape(root)
    run = Run(root)
    why = None
    if rshape is None or len(rshape) > MAX_RANK:
        why = f"{first.name}: starts at the rank-{len(rshape or ())} tensor {root.name}, which an op computes"
    idx: dict[Any, Any] = {root: np.arange(int(np.prod(rshape or (0,))), dtype=np.int64).reshape(rshape or (0,))}
    stack = [first]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        run.nodes.add(n.name)
        src = idx.get(n.args[0])
        if n.target in _SPLITS:
            idx[n] = _split_outputs(n, src) if src is not None and not why else None
        elif n.target is operator.getitem:
            idx[n] = src[n.args[1]] if src is not None else None
        else:
            idx[n] = _fx.view_index(n.target, src, *n.args[1:], **n.kwargs) if src is not None and not why else None
        for u in n.users:
            if u in high:
                stack.append(u)
            elif _views.is_view(u) and u.args[0] is n and _rank(u) <= MAX_RANK and idx[n] is not None:
                end = _fx.view_index(u.target, idx[n], *u.args[1:], **u.kwargs)
                run.ends[u.name] = end
                run.nodes.add(u.name)
            elif u.op == "call_function" and u.target is operator.getitem and idx[n] is not None:
                run.ends[u.name] = idx[n][u.args[1]]
                run.nodes.add(u.name)
            else:
                why = why or f"{u.name} computes on the rank-{_rank(n)} tensor {n.name}"
    if why:
        return None, why
    for name, end in run.ends.items():
        rank = movement_rank(tuple(rshape), end)  # type: ignore[arg-type]
        if rank is None or rank > MAX_RANK:
            return None, (f"{name}: the data movement from {root.name} has "
                          f"{'strided reads' if rank is None else f'{rank} independent axes'} (more than {MAX_RANK})")
    return run, None


def check(program: torch.export.ExportedProgram) -> str | None:
    runs, skipped = find_runs(program)
    if runs:
        return None
    if skipped:
        return "no view run it can bring to rank 4: " + "; ".join(skipped)
    return f"no view op above rank {MAX_RANK} in the graph"


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        runs, _ = find_runs(program)
        self.ends = {name: run for run in runs for name in run.ends}
        self.inner = {name: run for run in runs for name in run.nodes if name not in run.ends}
        self.roots = {run.root.name for run in runs}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.ends:
            run = self.ends[node.name]
            root = self.cache[("root", run.root.name)]
            return _fx.gather_as(root, run.ends[node.name])
        if node.name in self.inner:  # nothing is emitted inside a run
            run = self.inner[node.name]
            if ("root", run.root.name) not in self.cache:
                self.cache[("root", run.root.name)] = self.resolve(args[0])
            return None
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
