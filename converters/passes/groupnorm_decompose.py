"""GroupNorm on 4-D and 5-D inputs → rank ≤ 4 reductions and pointwise ops (NPU.md rewrite 6). Exact.

GroupNorm has no TFLite builtin, is missing on several NPUs (RKNN, older Hexagon), and
coremltools lowers it on a 5-D input through rank 6 (which the ANE rejects). With G groups and
``C/G`` channels per group, ``y = (x − μ_g) / √(σ²_g + ε) · γ_c + β_c`` where the statistics pool
over the group's channels and all other dimensions except the batch.

4-D ``(N, C, H, W)`` (also 3-D)::

    xr = reshape(x, (N, G, C/G·H·W));  μ = mean(xr, −1);  d = xr − μ;  σ² = mean(d·d, −1)
    y  = reshape(d · rsqrt(σ² + ε), x.shape) · γ(1, C, 1, 1) + β(1, C, 1, 1)

5-D ``(N, C, T, H, W)`` (CogVideoX/HunyuanVideo's clip norm) — written so that folding frames
into the batch (``frames_to_batch``) needs no transpose: statistics go through per-channel means
over ``(T, H, W)`` (rank-5 tensors whose T is 1, which fold for free)::

    m_c = mean(x, (2, 3, 4))                        # (N, C, 1, 1, 1)
    μ_g = mean(reshape(m_c, (N, G, C/G)), −1)        # equal counts per channel: the group mean
    μ_c = reshape(cat([μ_g] * (C/G), −1), (N, C, 1, 1, 1))  # back to channels, no BROADCAST_TO
    d = x − μ_c;  σ²_c likewise from mean(d·d, (2, 3, 4));  y = d · rsqrt(σ²_c + ε) · γ + β

On frames in batch ``x₄ = (T, C, H, W)`` the clip norm is :func:`group_norm_frames`: a rank-3
``(T, G, C/G·H·W)`` view reduced over dims (0, 2). Two-pass variance as PyTorch; results agree
to float rounding (≤ 1e-5 relative in the tests).
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "group_norm_frames", "group_norm_grouped", "group_norm_per_channel", "GROUP_NORM_OPS"]

GROUP_NORM_OPS = (aten.group_norm.default,)


def _affine(y: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def group_norm_grouped(x: torch.Tensor, groups: int, w: torch.Tensor | None, b: torch.Tensor | None,
                       eps: float) -> torch.Tensor:
    """GroupNorm of an ``(N, C, *S)`` input through an ``(N, G, −1)`` view (rank 3);
    ``w``/``b`` already shaped ``(1, C, 1, …)``."""
    shape = list(x.shape)
    xr = aten.reshape.default(x, [shape[0], groups, -1])
    mu = aten.mean.dim(xr, [-1], True)
    d = xr - mu
    var = aten.mean.dim(d * d, [-1], True)
    y = aten.reshape.default(d * aten.rsqrt.default(var + eps), shape)
    return _affine(y, w, b)


def group_norm_frames(x4: torch.Tensor, groups: int, w: torch.Tensor | None, b: torch.Tensor | None,
                      eps: float) -> torch.Tensor:
    """Clip GroupNorm of a logical ``(1, C, T, H, W)`` tensor stored as frames ``(T, C, H, W)``:
    statistics over dims (0, 2) of the ``(T, G, C/G·H·W)`` view. ``w``/``b``: ``(1, C, 1, 1)``."""
    t, c, h, wd = x4.shape
    xr = aten.reshape.default(x4, [t, groups, -1])
    mu = aten.mean.dim(xr, [0, 2], True)
    d = xr - mu
    var = aten.mean.dim(d * d, [0, 2], True)
    y = aten.reshape.default(d * aten.rsqrt.default(var + eps), [t, c, h, wd])
    return _affine(y, w, b)


def _to_channels(stat_g: torch.Tensor, n: int, c: int, groups: int, rank: int) -> torch.Tensor:
    rep = c // groups
    s = torch.cat([stat_g] * rep, dim=-1) if rep > 1 else stat_g
    return aten.reshape.default(s, [n, c] + [1] * (rank - 2))


def group_norm_per_channel(x: torch.Tensor, groups: int, w: torch.Tensor | None, b: torch.Tensor | None,
                           eps: float) -> torch.Tensor:
    """GroupNorm of an ``(N, C, *S)`` input (S of any length) via per-channel statistics
    (the 5-D form of the module doc); ``w``/``b`` shaped ``(1, C, 1, …)``."""
    n, c = int(x.shape[0]), int(x.shape[1])
    rank = x.dim()
    red = list(range(2, rank))

    def group_mean(per_channel: torch.Tensor) -> torch.Tensor:
        g = aten.mean.dim(aten.reshape.default(per_channel, [n, groups, c // groups]), [-1], True)
        return _to_channels(g, n, c, groups, rank)

    mu = group_mean(aten.mean.dim(x, red, True))
    d = x - mu
    var = group_mean(aten.mean.dim(d * d, red, True))
    return _affine(d * aten.rsqrt.default(var + eps), w, b)


def norm_args(rt: "_fx.Retracer", node: torch.fx.Node, args: tuple, kwargs: dict, rank: int):
    """(groups, weight, bias, eps) of a group_norm node, affine reshaped to ``(1, C, 1, …)``."""
    a = list(args) + [None] * (5 - len(args))
    groups = int(a[1])
    eps = float(a[4] if a[4] is not None else kwargs.get("eps", 1e-5))
    c = int(args[0].shape[1])
    out = []
    for i, tag in ((2, "w"), (3, "b")):
        v = a[i] if a[i] is not None else kwargs.get("weight" if i == 2 else "bias")
        if v is None:
            out.append(None)
        elif isinstance(v, _fx.Attr):
            conc = rt.concrete(v)
            out.append(rt.const(f"{node.name}.{tag}{rank}", lambda conc=conc: conc.reshape([1, c] + [1] * (rank - 2))))
        else:
            out.append(aten.reshape.default(rt.resolve(v), [1, c] + [1] * (rank - 2)))
    return groups, out[0], out[1], eps


class _Decompose(_fx.Retracer):
    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.target not in GROUP_NORM_OPS:
            return NotImplemented
        x = self.resolve(args[0])
        groups, w, b, eps = norm_args(self, node, args, kwargs, x.dim())
        if x.dim() >= 5:
            return group_norm_per_channel(x, groups, w, b, eps)
        return group_norm_grouped(x, groups, w, b, eps)


def check(program: torch.export.ExportedProgram) -> str | None:
    for n in program.graph_module.graph.nodes:
        if n.op == "call_function" and n.target in GROUP_NORM_OPS:
            return None
    natives = [n.name for n in program.graph_module.graph.nodes
               if n.op == "call_function" and n.target is aten.native_group_norm.default]
    if natives:
        return f"only aten.group_norm is matched; {natives[0]} is native_group_norm (export without decompositions)"
    return "no GroupNorm in the graph"


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Decompose(program).export()
