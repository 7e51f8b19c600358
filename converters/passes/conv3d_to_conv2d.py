"""Conv3d → Conv2d on frames folded into the batch dimension (docs/accelerators.md, rewrite 4). Exact.

Before (5-D, N = 1)::

    y = conv3d(x, W, b, stride=(st, sh, sw), padding=(pt, ph, pw), dilation=(dt, dh, dw), groups=g)
        x: (1, I, T, H, W)   W: (O, I/g, kt, kh, kw)   y: (1, O, T', H', W')

After (frames in batch: x₄ = (T, I, H, W), y₄ = (T', O, H', W'))::

    xp = cat([zeros(pt), x₄, zeros(pt)], dim=0)                  # temporal zero padding, if any
    s_τ = xp[τ·dt : τ·dt + (T'−1)·st + 1 : st]                    # k_t shifted frame slices
    g = 1:  y₄ = conv2d(cat([s_0 … s_{kt−1}], dim=1), W₂, b)       # W₂[o, τ·I + i] = W[o, i, τ]
    g > 1:  y₄ = Σ_τ conv2d(s_τ, W[:, :, τ], groups=g) + b        # depthwise/grouped: no channel interleave

because ``y[o, t] = Σ_τ Σ_i W[o, i, τ] ⋆ x[i, t·st + τ·dt − pt]`` (⋆ the 2-D correlation). For
``g = 1`` the concatenation puts the τ-th slice in channels ``τ·I … τ·I + I − 1``, which is the
order of the reshaped kernel, so one CONV_2D does the whole temporal sum. Grouped kernels would
need their input channels interleaved per group (a gather), so they are lowered to ``k_t`` grouped
Conv2ds summed (exact up to float summation order). Causal models pad time themselves (a concat of
first-frame slices), which stays a concat on dimension 0. ``1×1×1`` becomes ``1×1``.

:func:`lower_frames` is the lowering; ``frames_to_batch`` calls it for every Conv3d while it folds
the whole graph. On its own this pass rewrites each Conv3d in place on a 5-D graph with N = 1: the
input is folded just for the conv (a rank-4 transpose on each side, which ``frames_to_batch``
removes when it runs) — use it when other rank-5 ops must stay.
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "lower_frames", "conv3d_args", "CONV3D_OPS"]

CONV3D_OPS = (aten.conv3d.default, aten.convolution.default)


def _triple(v: Any) -> list[int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * 3 if len(v) == 1 else [int(a) for a in v]


def conv3d_args(node: torch.fx.Node) -> dict | None:
    """Normalised arguments of a 3-D convolution node, or None when it is not one we lower."""
    if node.op != "call_function" or node.target not in CONV3D_OPS:
        return None
    a = list(node.args)
    if node.target is aten.convolution.default:
        if len(a) < 9 or a[6]:  # transposed
            return None
        inp, w, b, stride, padding, dilation, groups = a[0], a[1], a[2], a[3], a[4], a[5], a[8]
    else:
        a += [None, 1, 0, 1, 1][len(a) - 2:]
        inp, w, b, stride, padding, dilation, groups = a[:7]
    shape = _fx.node_shape(inp) if isinstance(inp, torch.fx.Node) else None
    if shape is None or len(shape) != 5 or isinstance(padding, str):
        return None
    return dict(input=inp, weight=w, bias=b, stride=_triple(stride), padding=_triple(padding),
                dilation=_triple(dilation), groups=int(groups), in_shape=shape)


def _weight_reason(node: torch.fx.Node, a: dict) -> str | None:
    if not (isinstance(a["weight"], torch.fx.Node) and a["weight"].op == "get_attr"):
        return f"Conv3d {node.name}: its weight is computed in the graph, not a constant"
    if a["bias"] is not None and not (isinstance(a["bias"], torch.fx.Node) and a["bias"].op == "get_attr"):
        return f"Conv3d {node.name}: its bias is computed in the graph, not a constant"
    return None


def lower_frames(rt: "_fx.Retracer", key: str, x4: torch.Tensor, weight: Any, bias: Any,
                 stride: list[int], padding: list[int], dilation: list[int], groups: int) -> torch.Tensor:
    """``conv3d`` on frames-in-batch ``x4 = (T, I, H, W)`` → ``(T', O, H', W')`` (see module doc).
    ``weight``/``bias`` are the source graph's weight arguments (:class:`~._fx.Attr`)."""
    w = rt.concrete(weight)
    b = rt.concrete(bias) if bias is not None else None
    o, _, kt, kh, kw = w.shape
    st, sh, sw = stride
    pt, ph, pw = padding
    dt, dh, dw = dilation
    if pt:
        z = torch.zeros((pt, *x4.shape[1:]), dtype=x4.dtype)
        x4 = torch.cat([z, x4, z], dim=0)
    t_in = x4.shape[0]
    t_out = (t_in - dt * (kt - 1) - 1) // st + 1
    slices = []
    for tau in range(kt):
        start = tau * dt
        stop = start + (t_out - 1) * st + 1
        s = x4 if (start == 0 and stop == t_in and st == 1) else aten.slice.Tensor(x4, 0, start, stop, st)
        slices.append(s)
    bias_c = rt.const(key + ".b", lambda: b) if b is not None else None
    spatial = dict(stride=[sh, sw], padding=[ph, pw], dilation=[dh, dw], groups=groups)
    if groups == 1 or kt == 1:
        w2 = rt.const(key + ".w2d", lambda: w.permute(0, 2, 1, 3, 4).reshape(o, -1, kh, kw))
        if kt == 1:
            inp = slices[0]
        else:  # convs reading the same frames (e.g. split by pixel_shuffle_3d_to_4d) share one concat
            ck = ("conv3d_slices", id(x4), kt, dt, st, pt)
            if ck not in rt.cache:
                rt.cache[ck] = (x4, torch.cat(slices, dim=1))  # x4 kept alive so its id stays unique
            inp = rt.cache[ck][1]
        return aten.conv2d.default(inp, w2, bias_c, **spatial)
    y = None
    for tau, s in enumerate(slices):
        wt = rt.const(f"{key}.w2d.{tau}", lambda tau=tau: w[:, :, tau])
        part = aten.conv2d.default(s, wt, bias_c if tau == 0 else None, **spatial)
        y = part if y is None else y + part
    return y


class _Local(_fx.Retracer):
    """Each Conv3d folded just for itself (5-D elsewhere)."""

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        a = conv3d_args(node)
        if a is None or a["in_shape"][0] != 1 or _weight_reason(node, a):
            return NotImplemented
        x4 = _fx.frames(self.resolve_attrs(args[0]))
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        y4 = lower_frames(self, node.name, x4, args[1], bias, a["stride"], a["padding"], a["dilation"], a["groups"])
        return _fx.folded(y4)


def check(program: torch.export.ExportedProgram) -> str | None:
    convs = [(n, conv3d_args(n)) for n in program.graph_module.graph.nodes]
    convs = [(n, a) for n, a in convs if a is not None]
    if not convs:
        return "no Conv3d in the graph"
    for n, a in convs:
        if a["in_shape"][0] != 1:
            return f"Conv3d {n.name} has batch {a['in_shape'][0]}; frames fold into the batch only for N = 1"
    gm = program.module()
    for n in gm.graph.nodes:
        a = conv3d_args(n)
        if a is not None and (why := _weight_reason(n, a)):
            return why
    return None


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Local(program).export()
