"""Channel selection pushed back to the convs that make the channels (shared by the pixel-shuffle
passes).

A pass that needs a tensor ``X`` with its channels reordered (``X[:, π]``: a CRD pixel shuffle
becoming DCR depth-to-space) or split into groups (``X[:, rows_τ]``: the temporal phases of a 3-D
pixel shuffle) gets them for free when every value ``X`` depends on through its channel axis comes
from a convolution: selecting rows of the conv's weight and bias selects its output channels, and
ops that treat channels alike commute with the selection. :func:`channel_region` finds the nodes
that have to be recomputed (the *region* of ``X``); :class:`RegionEvaluator` recomputes them inside
a :class:`._fx.Retracer`, once per group of rows, with the constants selected the same way.

What a region may contain (every node has the channel count ``C`` of ``X`` on dim 1 and the rank
of ``X``):

- a convolution (2-D or 3-D, ``groups == 1``) or a transposed convolution (``groups == 1``) with
  constant weights: a leaf, computed with ``W[rows]`` (``W[:, rows]`` transposed) and ``b[rows]``;
- a depthwise convolution (one filter per channel): ``W[rows]``, ``b[rows]``, ``groups =
  len(rows)``, its input selected the same way (so the walk continues through it);
- ``prelu`` (one slope, or one per channel: ``α[rows]``);
- any op tagged ``pointwise`` (activations, ``add``/``sub``/``mul``/``div``/``maximum``/``where``…)
  whose tensor operands are each either in the region, a constant that broadcasts with 1 or
  ``C`` channels (selected as ``c[rows]``), or a computed tensor that broadcasts over channels
  (one channel, or fewer dims: an attention map), which is used unchanged;
- ``clone``/``alias``/``contiguous``/``detach``.

Every user of a region node must be in the region or be the consumer that asked, since the
original tensor no longer exists afterwards. Anything else (a grouped conv that is not depthwise,
a concat on channels, a graph input, a tensor used elsewhere) stops the walk, with the reason.

The recomputation is exact: each output element is computed by the same ops from the same
operands; only which rows of the constants are stored where changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten

__all__ = ["Region", "channel_region", "RegionEvaluator", "Grouped", "constant_nodes", "conv_parts", "is_constant"]

_SAME = {aten.clone.default, aten.alias.default, aten.contiguous.default, aten.detach.default}
_PRELU = {aten.prelu.default, aten._prelu_kernel.default}
_CONVS = {aten.conv2d.default, aten.conv3d.default, aten.conv1d.default, aten.convolution.default,
          aten.conv_transpose2d.input, aten.conv_transpose3d.input}


def constant_nodes(program: torch.export.ExportedProgram) -> set[str]:
    """Names of the placeholders of ``program`` that hold parameters, buffers or constants."""
    sig = program.graph_signature
    names = set(sig.inputs_to_parameters) | set(sig.inputs_to_buffers)
    names |= set(getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {})
    return names


def is_constant(node: Any, consts: set[str]) -> bool:
    """A weight: a ``get_attr`` node (``program.module()``) or a lifted constant placeholder."""
    return isinstance(node, torch.fx.Node) and (node.op == "get_attr" or (node.op == "placeholder" and node.name in consts))


def conv_parts(node: torch.fx.Node) -> dict | None:
    """``{"x", "w", "b", "groups", "transposed", "wpos", "bpos", "gpos"}`` of a convolution node
    (positions of weight, bias and groups in its args), or None when it is not one."""
    if node.op != "call_function" or node.target not in _CONVS:
        return None
    a = list(node.args)
    if node.target is aten.convolution.default:
        if len(a) < 9:
            return None
        return {"x": a[0], "w": a[1], "b": a[2], "groups": int(a[8]), "transposed": bool(a[6]),
                "wpos": 1, "bpos": 2, "gpos": 8}
    transposed = node.target in (aten.conv_transpose2d.input, aten.conv_transpose3d.input)
    gpos = 6  # conv: (x, w, b, stride, padding, dilation, groups); transposed: (…, output_padding, groups, dilation)
    groups = a[gpos] if len(a) > gpos else node.kwargs.get("groups", 1)
    b = a[2] if len(a) > 2 else node.kwargs.get("bias")
    return {"x": a[0], "w": a[1], "b": b, "groups": int(groups), "transposed": transposed,
            "wpos": 1, "bpos": 2, "gpos": gpos}


@dataclass
class Region:
    """The nodes recomputed for a channel selection of ``out`` (names → kind), in graph order."""

    out: str
    nodes: dict[str, str] = field(default_factory=dict)

    @property
    def convs(self) -> list[str]:
        return [n for n, k in self.nodes.items() if k in ("conv", "tconv")]


def _shape(x: Any) -> tuple[int, ...] | None:
    return _fx.node_shape(x) if isinstance(x, torch.fx.Node) else None


def _channel_axis(shape: Sequence[int], rank: int) -> int | None:
    """The axis of a tensor broadcast against a rank-``rank`` tensor that lines up with dim 1."""
    ax = 1 - (rank - len(shape))
    return ax if 0 <= ax < len(shape) else None


def channel_region(out: torch.fx.Node, consts: set[str], consumers: Sequence[torch.fx.Node] = ()) -> tuple[Region | None, str | None]:
    """The region of ``out`` (module doc), or ``(None, reason)``. ``consumers``: the nodes that read
    ``out`` and are rewritten by the caller (``out`` may have no other users)."""
    shape = _shape(out)
    if shape is None or len(shape) < 2:
        return None, f"{getattr(out, 'name', out)} has no known shape"
    rank, c = len(shape), shape[1]
    region = Region(out.name)
    kinds: dict[str, str] = {}
    stack = [out]
    while stack:
        n = stack.pop()
        if n.name in kinds:
            continue
        kind, more, why = _classify(n, rank, c, consts)
        if why:
            return None, why
        kinds[n.name] = kind
        stack.extend(more)
    allowed = set(kinds) | {u.name for u in consumers}
    graph = out.graph
    for n in graph.nodes:
        if n.name in kinds:
            others = [u.name for u in n.users if u.name not in allowed]
            if others:
                return None, f"{n.name} is also used by {', '.join(others)}"
            region.nodes[n.name] = kinds[n.name]
    return region, None


def _classify(n: torch.fx.Node, rank: int, c: int, consts: set[str]) -> tuple[str, list[torch.fx.Node], str | None]:
    """(kind, region operands to visit, reason it cannot be in a region)."""
    if not isinstance(n, torch.fx.Node) or n.op != "call_function":
        what = "a graph input" if getattr(n, "op", None) == "placeholder" else "not computed by an op"
        return "", [], f"{getattr(n, 'name', n)} is {what}"
    shape = _shape(n)
    if shape is None or len(shape) != rank or shape[1] != c:
        return "", [], f"{n.name} does not have the {c} channels on dim 1"
    t = n.target
    if (p := conv_parts(n)) is not None:
        w, b = p["w"], p["b"]
        if not is_constant(w, consts) or (b is not None and not is_constant(b, consts)):
            return "", [], f"conv {n.name} has weights computed in the graph"
        wshape = _shape(w)
        if p["groups"] == 1:
            return ("tconv" if p["transposed"] else "conv"), [], None
        xs = _shape(p["x"])
        if not p["transposed"] and wshape is not None and xs is not None and p["groups"] == c == xs[1] and wshape[1] == 1:
            return "depthwise", [p["x"]], None
        return "", [], f"conv {n.name} is grouped ({p['groups']} groups)"
    if t in _PRELU:
        if not is_constant(n.args[1], consts):
            return "", [], f"prelu {n.name} has a computed slope"
        return "prelu", [n.args[0]], None
    if t in _SAME:
        return "same", [n.args[0]], None
    if isinstance(t, torch._ops.OpOverload) and torch.Tag.pointwise in t.tags:
        more = []
        for a in [*n.args, *n.kwargs.values()]:
            if not isinstance(a, torch.fx.Node):
                continue
            s = _shape(a)
            if s is None:
                return "", [], f"{n.name} reads {a.name} of unknown shape"
            ax = _channel_axis(s, rank)
            if is_constant(a, consts):
                if ax is not None and s[ax] not in (1, c):
                    return "", [], f"{n.name} reads constant {a.name} of shape {list(s)}"
                continue
            if ax is None or s[ax] == 1:
                continue  # broadcast over channels: the same for every channel
            if len(s) != rank or s[1] != c:
                return "", [], f"{n.name} reads {a.name} of shape {list(s)}"
            more.append(a)
        return "pointwise", more, None
    return "", [], f"{n.name} ({t}) mixes or moves channels"


class Grouped(tuple):
    """A region node's value: one tensor per group of selected rows."""


class RegionEvaluator:
    """Recomputes region nodes in a Retracer: ``value(node, args, kwargs)`` gives the
    :class:`Grouped` value of a region node (call it from ``handle`` in graph order)."""

    def __init__(self, retracer: _fx.Retracer, kinds: dict[str, str], groups: Sequence[Sequence[int]], key: str):
        self.r = retracer
        self.kinds = kinds
        self.groups = [list(map(int, g)) for g in groups]
        self.key = key

    def _rows(self, t: torch.Tensor, axis: int, gi: int) -> torch.Tensor:
        return t.index_select(axis, torch.tensor(self.groups[gi], dtype=torch.long))

    def _const(self, name: str, value: Callable[[], torch.Tensor], axis: int | None, gi: int) -> Any:
        """A constant with rows ``groups[gi]`` selected on ``axis`` (None: unchanged)."""
        base = value()
        if axis is None or base.dim() == 0 or base.shape[axis] == 1:
            return self.r.const(f"{self.key}.{name}", lambda: base)
        return self.r.const(f"{self.key}.{name}.g{gi}", lambda: self._rows(base, axis, gi))

    def value(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Grouped:
        kind = self.kinds[node.name]
        outs = []
        for gi, rows in enumerate(self.groups):
            outs.append(getattr(self, "_" + kind)(node, list(args), dict(kwargs), gi, rows))
        return Grouped(outs)

    def _arg(self, a: Any, gi: int) -> Any:
        return a[gi] if isinstance(a, Grouped) else self.r.resolve(a)

    def _conv(self, node: torch.fx.Node, args: list, kwargs: dict, gi: int, rows: list[int], axis: int = 0) -> Any:
        p = conv_parts(node)
        args = args + [None] * max(0, 3 - len(args))
        if "bias" in kwargs:
            args[2] = kwargs.pop("bias")
        w = self.r.concrete(args[1])
        b = self.r.concrete(args[2]) if args[2] is not None else None
        args[1] = self._const(f"{node.name}.w", lambda: w, axis, gi)
        if b is not None:
            args[2] = self._const(f"{node.name}.b", lambda: b, 0, gi)
        args[0] = self._arg(args[0], gi)
        if p is not None and p["groups"] != 1:  # depthwise: one group per selected channel
            while len(args) <= p["gpos"]:
                args.append(_DEFAULTS[node.target][len(args)])
            args[p["gpos"]] = len(rows)
        rest = self.r.resolve((args[3:], kwargs))
        return node.target(*args[:3], *rest[0], **rest[1])

    def _tconv(self, node: torch.fx.Node, args: list, kwargs: dict, gi: int, rows: list[int]) -> Any:
        return self._conv(node, args, kwargs, gi, rows, axis=1)

    def _depthwise(self, node: torch.fx.Node, args: list, kwargs: dict, gi: int, rows: list[int]) -> Any:
        return self._conv(node, args, kwargs, gi, rows)

    def _prelu(self, node: torch.fx.Node, args: list, kwargs: dict, gi: int, rows: list[int]) -> Any:
        w = self.r.concrete(args[1])
        return node.target(self._arg(args[0], gi), self._const(f"{node.name}.w", lambda: w, 0, gi))

    def _same(self, node: torch.fx.Node, args: list, kwargs: dict, gi: int, rows: list[int]) -> Any:
        return args[0][gi]

    def _pointwise(self, node: torch.fx.Node, args: list, kwargs: dict, gi: int, rows: list[int]) -> Any:
        rank = len(_fx.node_shape(node) or ())

        def one(i: Any, a: Any) -> Any:
            if isinstance(a, Grouped):
                return a[gi]
            if isinstance(a, _fx.Attr):
                t = self.r.concrete(a)
                ax = _channel_axis(tuple(t.shape), rank)
                return self._const(f"{node.name}.{i}", lambda: t, ax, gi)
            return self.r.resolve(a)

        args2 = [one(i, a) for i, a in enumerate(args)]
        kwargs2 = {k: one(k, v) for k, v in kwargs.items()}
        return node.target(*args2, **kwargs2)


# the positional defaults of the conv ops (to set ``groups`` when the call left it out)
_DEFAULTS = {
    aten.conv2d.default: [None, None, None, [1, 1], [0, 0], [1, 1], 1],
    aten.conv3d.default: [None, None, None, [1, 1, 1], [0, 0, 0], [1, 1, 1], 1],
    aten.conv1d.default: [None, None, None, [1], [0], [1], 1],
}


def selection_conv(x: torch.Tensor, rows: Sequence[int], retracer: _fx.Retracer, key: str) -> torch.Tensor:
    """``x[:, rows]`` for a channels-first ``x`` (rank 4 or 5) as a 1×1 (×1) convolution whose
    weights are one-hot rows (exact for finite inputs: one product by 1, the rest by 0), or as a
    slice when ``rows`` is a contiguous ascending range (free)."""
    rows = [int(r) for r in rows]
    k = int(x.shape[1])
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return x if len(rows) == k else aten.slice.Tensor(x, 1, rows[0], rows[0] + len(rows))
    nd = x.dim() - 2

    def weights() -> torch.Tensor:
        w = torch.zeros(len(rows), k, *([1] * nd), dtype=x.dtype)
        w[torch.arange(len(rows)), torch.tensor(rows)] = 1
        return w

    w = retracer.const(key, weights)
    return aten.conv2d.default(x, w) if nd == 2 else aten.conv3d.default(x, w)


def is_permutation(rows: Sequence[int]) -> bool:
    return np.array_equal(np.sort(np.asarray(rows)), np.arange(len(rows)))
