"""fold_batchnorm: an inference BatchNorm right after a conv becomes the conv's weights and bias.

Before::

    y = conv2d(x, W, b)                                   # W: (Co, Ci/g, kh, kw), b may be None
    z = batch_norm(y, γ, β, μ, σ², training=False, eps)   # z = (y − μ)/√(σ² + eps)·γ + β

After::

    z = conv2d(x, W·s, (b − μ)·s + β)                     # s = γ/√(σ² + eps), per output channel

The identity is exact in real arithmetic (BN in eval mode is a per-channel affine map, and a
conv is linear in its weights), so the result differs from the source only by float32
rounding: the folded weights are computed in float64 and rounded once, and the conv then
accumulates in a different association (measured below 1e-6 relative on the zoo). Works for
any ``groups`` (depthwise too): the scale is per output channel. A BatchNorm not fed by a conv
used only by it (e.g. after a ReLU) stays. litert-torch and the ONNX optimiser fold some BNs on
their own; doing it in the program makes all three formats (and CoreML) get the same graph
and lets later passes (``collapse_reparam``, ``pixel_shuffle_to_depth_to_space``) see plain
convs (docs/accelerators.md, rewrite 8).
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx

__all__ = ["check", "rewrite", "matches"]

aten = torch.ops.aten
_BN = {aten.batch_norm.default, aten._native_batch_norm_legit_no_training.default}
_CONV = {aten.conv2d.default, aten.conv1d.default}


def _bn_parts(node: torch.fx.Node) -> tuple[Any, Any, Any, Any, float] | None:
    """(weight, bias, mean, var, eps) of an inference batch norm node, else None."""
    a = node.args
    if node.target == aten.batch_norm.default:
        if a[5]:  # training=True: batch statistics, not a fixed affine map
            return None
        return a[1], a[2], a[3], a[4], float(a[7])
    return a[1], a[2], a[3], a[4], float(a[6])  # _native_batch_norm_legit_no_training(x, w, b, m, v, momentum, eps)


def matches(program: torch.export.ExportedProgram) -> list[tuple[torch.fx.Node, torch.fx.Node]]:
    """``[(conv_node, bn_node)]`` for every foldable pair."""
    found = []
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function" or node.target not in _BN or _bn_parts(node) is None:
            continue
        src = node.args[0]
        if not (isinstance(src, torch.fx.Node) and src.target in _CONV and len(src.users) == 1):
            continue
        if _bn_parts(node)[2] is None:  # no running statistics
            continue
        found.append((src, node))
    return found


def check(program: torch.export.ExportedProgram) -> str | None:
    if matches(program):
        return None
    n_bn = sum(1 for n in program.graph_module.graph.nodes if n.op == "call_function" and n.target in _BN)
    return "the model has no BatchNorm" if not n_bn else f"none of its {n_bn} BatchNorm(s) directly follows a conv used only by it"


class _Folder(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        pairs = matches(program)
        self.conv_to_bn = {c.name: b for c, b in pairs}
        self.bns = {b.name for _, b in pairs}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.conv_to_bn:
            bn = self.conv_to_bn[node.name]
            args = list(args) + [None] * max(0, 3 - len(args))
            x, w, b, *rest = args
            weight = self.concrete(w)
            bias = self.concrete(b) if b is not None else None
            # the BN's parameters, as get_attr nodes of the module being re-run
            bn_here = next(n for n in self.module.graph.nodes if n.name == bn.name)
            *params, eps = _bn_parts(bn_here)
            gamma, beta, mean, var = (self.concrete(p) if p is not None else None for p in params)
            if weight is None or mean is None or var is None or (b is not None and bias is None):
                return NotImplemented

            def folded() -> tuple[torch.Tensor, torch.Tensor]:  # float64, rounded once
                s = torch.rsqrt(var.double() + eps)
                if gamma is not None:
                    s = s * gamma.double()
                w2 = weight.double() * s.reshape(-1, *([1] * (weight.dim() - 1)))
                b2 = (-mean.double() if bias is None else bias.double() - mean.double()) * s
                if beta is not None:
                    b2 = b2 + beta.double()
                return w2.to(weight.dtype), b2.to(weight.dtype)

            w2 = self.const(f"{node.name}_w_bn", lambda: folded()[0])
            b2 = self.const(f"{node.name}_b_bn", lambda: folded()[1])
            x, rest = self.resolve((x, rest))
            return node.target(x, w2, b2, *rest)
        if node.name in self.bns:
            y = self.env[next(n for n in self.module.graph.nodes if n.name == node.name).args[0]]
            if node.target == aten.batch_norm.default:
                return y
            return (y, y.new_empty(0), y.new_empty(0))
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Folder(program).export()
