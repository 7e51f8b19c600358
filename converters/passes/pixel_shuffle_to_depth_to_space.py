"""pixel_shuffle_to_depth_to_space: conv → pixel_shuffle(r) becomes conv' → DEPTH_TO_SPACE(r), exact.

Before::

    y = conv2d(x, W, b)            # W: (C·r², Cin, k, k)
    y = relu(y)                     # optional channel-wise pointwise ops
    z = pixel_shuffle(y, r)         # CRD: z[c, h·r+i, w·r+j] = y[c·r²+i·r+j, h, w]

After::

    y' = conv2d(x, W[P], b[P])      # P[(i·r+j)·C+c] = c·r²+i·r+j
    y' = relu(y')
    z  = edgekit.depth_to_space(y', r)   # DCR: z[c, h·r+i, w·r+j] = y'[(i·r+j)·C+c, h, w]

Since ``y'[(i·r+j)·C+c] = y[c·r²+i·r+j]`` the two are the same tensor, element for element
(the permutation moves weights, no arithmetic changes, so the result is bit-identical). PyTorch
exports pixel shuffle as a rank-6 reshape/permute (litert-torch: a rank-4 RESHAPE/TRANSPOSE
chain), which NPUs run as memory shuffles or not at all; DCR depth-to-space is TFLite's
``DEPTH_TO_SPACE`` and ONNX's ``DepthToSpace(mode="DCR")`` (research/NPU.md rewrite 1).
Conv output permutation is only exact for ``groups == 1`` (a grouped conv's groups would
change), and the ops between conv and shuffle must treat channels alike; other shuffles stay.
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx, _fx2d

__all__ = ["check", "rewrite", "matches"]

aten = torch.ops.aten
# Ops that apply the same function to every channel (so they commute with a channel permutation).
_POINTWISE = {aten.relu.default, aten.relu_.default, aten.leaky_relu.default, aten.hardtanh.default,
              aten.sigmoid.default, aten.tanh.default, aten.gelu.default, aten.silu.default,
              aten.hardswish.default, aten.elu.default, aten.clamp.default}
_CONV = {aten.conv2d.default}
_SHUFFLE = aten.pixel_shuffle.default


def matches(program: torch.export.ExportedProgram) -> tuple[list[tuple[Any, Any, int]], list[str]]:
    """``([(conv_node, shuffle_node, r)], [why each other shuffle is not taken])``."""
    found, skipped = [], []
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function" or node.target != _SHUFFLE:
            continue
        r = int(node.args[1])
        src = node.args[0]
        while isinstance(src, torch.fx.Node) and src.target in _POINTWISE and len(src.users) == 1:
            src = src.args[0]
        why = None
        if not (isinstance(src, torch.fx.Node) and src.target in _CONV):
            why = f"{node.name}: its input is not produced by a conv2d"
        elif len(src.users) != 1:
            why = f"{node.name}: conv {src.name} has other users"
        elif (src.args[6] if len(src.args) > 6 else 1) != 1:
            why = f"{node.name}: conv {src.name} is grouped"
        elif r < 2:
            why = f"{node.name}: block size {r} < 2"
        if why:
            skipped.append(why)
        else:
            found.append((src, node, r))
    return found, skipped


def check(program: torch.export.ExportedProgram) -> str | None:
    found, skipped = matches(program)
    if found:
        return None
    if skipped:
        return "no pixel_shuffle fed by a plain conv2d: " + "; ".join(skipped)
    return "the model has no pixel_shuffle"


class _Rewriter(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        found, _ = matches(program)
        self.convs = {c.name: r for c, _, r in found}
        self.shuffles = {s.name for _, s, _ in found}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.convs:
            r = self.convs[node.name]
            x, w, b, *rest = args
            weight = self.concrete(w)
            if weight is None:
                return NotImplemented
            bias = self.concrete(b) if b is not None else None

            def permuted(t: torch.Tensor) -> torch.Tensor:  # computed once, eagerly: a constant
                return t[_fx2d.dcr_channel_perm(weight.shape[0], r)]

            w2 = self.const(f"{node.name}_w_dcr", lambda: permuted(weight))
            b2 = self.const(f"{node.name}_b_dcr", lambda: permuted(bias)) if bias is not None else None
            x, rest = self.resolve((x, rest))
            return aten.conv2d.default(x, w2, b2, *rest)
        if node.name in self.shuffles:
            x = self.resolve(args[0])
            return _fx2d.D2S(x, int(args[1]))
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewriter(program).export()
