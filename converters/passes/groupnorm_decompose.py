"""GroupNorm on 4-D and 5-D inputs → means, 1×1 convs and pointwise ops, rank ≤ 4 once frames
are folded (docs/accelerators.md, rewrite 6). Exact up to float summation order.

GroupNorm has no TFLite builtin, is missing on several NPUs (RKNN, older Hexagon), and
coremltools lowers it on a 5-D input through rank 6 (which the ANE rejects). With G groups of
``C/G`` channels, ``y = (x − μ_g) / √(σ²_g + ε) · γ_c + β_c``, the statistics pooled over the
group's channels and every dimension but the batch.

Before::

    y  = group_norm(x, G, γ, β, ε)   # x: (N, C, H, W) or (N, C, T, H, W)

After (written without any reshape)::

    m  = mean(x, S)                  # per-channel mean over the spatial (and time) dims S: (N, C, 1, …)
    μ  = conv1x1(m, A)               # A[c, c'] = G/C when c, c' share a group: the group mean, per channel
    d  = x − μ
    σ² = conv1x1(mean(d·d, S), A)    # two-pass variance, as PyTorch
    y  = d · rsqrt(σ² + ε) · γ(1, C, 1, …) + β(1, C, 1, …)

Why this form: the obvious ``reshape(x, (N, G, −1))`` reads the tensor in NCHW order, so a
channels-last backend (litert-torch's NHWC lowering) wraps every norm in two TRANSPOSEs; means
over H, W, 1×1 convs and broadcasts are layout-neutral (measured: no internal TRANSPOSE, and
``mean_to_avgpool`` may turn the means into AVERAGE_POOL_2D). The per-channel means average equal
counts, so the mean of a group's channel means is the group mean. 4-D inputs use a Conv2d,
5-D (CogVideoX/HunyuanVideo's whole-clip norm) a 1×1×1 Conv3d, which ``frames_to_batch``
folds into a Conv2d (its means over T, H, W become means over the frames' dims 0, 2, 3).
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "group_norm_pooled", "group_average", "GROUP_NORM_OPS"]

GROUP_NORM_OPS = (aten.group_norm.default,)
_CONV = {3: aten.conv1d.default, 4: aten.conv2d.default, 5: aten.conv3d.default}


def group_average(channels: int, groups: int, rank: int) -> torch.Tensor:
    """The 1×1 conv weight ``A`` (C, C, 1, …) averaging each channel's group (rank of the input)."""
    per = channels // groups
    g = torch.arange(channels) // per
    a = (g[:, None] == g[None, :]).to(torch.float32) / per
    return a.reshape([channels, channels] + [1] * (rank - 2))


def group_norm_pooled(x: torch.Tensor, avg: torch.Tensor | None, w: torch.Tensor | None, b: torch.Tensor | None,
                      eps: float, dims: list[int]) -> torch.Tensor:
    """GroupNorm of ``x`` with statistics over ``dims`` and the group average ``avg`` (a 1×1 conv
    weight from :func:`group_average`, None when every group has one channel); ``w``/``b`` are
    shaped to broadcast over channels. See the module doc."""
    conv = _CONV[x.dim()]

    def group(m: torch.Tensor) -> torch.Tensor:
        return m if avg is None else conv(m, avg)

    mu = group(aten.mean.dim(x, dims, True))
    d = x - mu
    var = group(aten.mean.dim(d * d, dims, True))
    y = d * aten.rsqrt.default(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def norm_args(rt: "_fx.Retracer", node: torch.fx.Node, args: tuple, kwargs: dict, rank: int):
    """(group average weight or None, weight, bias, eps) of a group_norm node, shaped for an input
    of ``rank`` dims (``rank`` 4 for a folded clip)."""
    a = list(args) + [None] * (5 - len(args))
    groups = int(a[1] if a[1] is not None else kwargs["num_groups"])
    eps = float(a[4] if a[4] is not None else kwargs.get("eps", 1e-5))
    c = int(args[0].shape[1])
    shape = [1, c] + [1] * (rank - 2)
    out = []
    for i, tag in ((2, "w"), (3, "b")):
        v = a[i] if a[i] is not None else kwargs.get("weight" if i == 2 else "bias")
        if v is None:
            out.append(None)
        elif isinstance(v, _fx.Attr):
            conc = rt.concrete(v)
            out.append(rt.const(f"{node.name}.{tag}{rank}", lambda conc=conc: conc.reshape(shape)))
        else:
            out.append(aten.reshape.default(rt.resolve(v), shape))
    avg = None if groups == c else rt.const(f"group_average.{c}.{groups}.{rank}", lambda: group_average(c, groups, rank))
    return avg, out[0], out[1], eps


class _Decompose(_fx.Retracer):
    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.target not in GROUP_NORM_OPS:
            return NotImplemented
        x = self.resolve(args[0])
        if x.dim() not in _CONV:
            return NotImplemented
        avg, w, b, eps = norm_args(self, node, args, kwargs, x.dim())
        return group_norm_pooled(x, avg, w, b, eps, list(range(2, x.dim())))


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
