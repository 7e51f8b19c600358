"""pixel_shuffle_to_depth_to_space: conv → pixel_shuffle(r) becomes conv' → DEPTH_TO_SPACE(r), exact.

Before::

    y = conv2d(x, W, b)            # W: (C·r², Cin, k, k)
    y = relu(y)                     # optional channel-wise pointwise ops, and sums of such
    z = pixel_shuffle(y, r)         # branches (SESR: tail conv + anchor conv of the input)
                                    # CRD: z[c, h·r+i, w·r+j] = y[c·r²+i·r+j, h, w]

After::

    y' = conv2d(x, W[P], b[P])      # P[(i·r+j)·C+c] = c·r²+i·r+j
    y' = relu(y')
    z  = edgekit.depth_to_space(y', r)   # DCR: z[c, h·r+i, w·r+j] = y'[(i·r+j)·C+c, h, w]

Since ``y'[(i·r+j)·C+c] = y[c·r²+i·r+j]`` the two are the same tensor, element for element
(the permutation moves weights, no arithmetic changes, so the result is bit-identical). PyTorch
exports pixel shuffle as a rank-6 reshape/permute (litert-torch: a rank-4 RESHAPE/TRANSPOSE
chain), which NPUs run as memory shuffles or not at all; DCR depth-to-space is TFLite's
``DEPTH_TO_SPACE`` and ONNX's ``DepthToSpace(mode="DCR")`` (docs/accelerators.md, rewrite 1).
Conv output permutation is only exact for ``groups == 1`` (a grouped conv's groups would
change), and the ops between conv and shuffle must treat channels alike (pointwise activations,
adds of branches that are all permuted the same way); other shuffles stay, with the reason.

Frames regathered after the shuffle (a video decoder's temporal upsampling picks frames of two
shuffled tensors and concatenates them on the batch/frame axis) are gathered *before* it::

    cat([d2s(a)[i:i+1], d2s(b)[j:j+1], …], 0)  →  d2s(cat([a[i:i+1], b[j:j+1], …], 0), r)

Exact (depth-to-space acts on each batch item alone). Why: litert-torch lowers ``edgekit.
depth_to_space`` between two explicit permutes, and a batch slice of the NCHW permute's output
made its layout pass keep the slices, the concat and the residual adds after them in NCHW
(measured on video_decoder_turbo: 5 TRANSPOSEs, 0 after this). Slices and concats of the conv
outputs are plain NHWC ops.
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _custom_ops, _fx

__all__ = ["check", "rewrite", "matches"]

aten = torch.ops.aten
# Ops that apply the same function to every channel (so they commute with a channel permutation).
_POINTWISE = {aten.relu.default, aten.relu_.default, aten.leaky_relu.default, aten.hardtanh.default,
              aten.sigmoid.default, aten.tanh.default, aten.gelu.default, aten.silu.default,
              aten.hardswish.default, aten.elu.default, aten.clamp.default}
_CONV = {aten.conv2d.default}
_SHUFFLE = aten.pixel_shuffle.default


_ADD = {aten.add.Tensor, aten.sub.Tensor}
_SLICE = aten.slice.Tensor
_CAT = aten.cat.default


def _sources(node: Any) -> tuple[list[Any] | None, str | None]:
    """The convs whose output channels reach ``node`` unmixed: through channel-wise pointwise ops
    and sums of such branches (SESR adds an anchor conv of the input before its shuffle)."""
    if not isinstance(node, torch.fx.Node):
        return None, "its input is not produced by a conv2d"
    if len(node.users) != 1:
        return None, f"{node.name} has other users"
    if node.target in _CONV:
        if (node.args[6] if len(node.args) > 6 else 1) != 1:
            return None, f"conv {node.name} is grouped"
        return [node], None
    if node.target in _POINTWISE:
        return _sources(node.args[0])
    if node.target in _ADD and len(node.args) == 2 and all(isinstance(a, torch.fx.Node) for a in node.args) \
            and node.kwargs.get("alpha", 1) == 1:
        a, why = _sources(node.args[0])
        b, why_b = _sources(node.args[1])
        return (a + b, None) if a and b else (None, why or why_b)
    return None, "its input is not produced by a conv2d"


def matches(program: torch.export.ExportedProgram) -> tuple[list[tuple[list[Any], Any, int]], list[str]]:
    """``([(source convs, shuffle_node, r)], [why each other shuffle is not taken])``."""
    found, skipped = [], []
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function" or node.target != _SHUFFLE:
            continue
        r = int(node.args[1])
        convs, why = _sources(node.args[0])
        if r < 2:
            why = f"block size {r} < 2"
        if convs and not why:
            found.append((convs, node, r))
        else:
            skipped.append(f"{node.name}: {why}")
    return found, skipped


def _frame_slice(node: Any, shuffles: set[str]) -> tuple[torch.fx.Node, int, int] | None:
    """``(shuffle, start, end)`` when ``node`` is a unit-step slice on dim 0 of a taken shuffle."""
    if not (isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target is _SLICE):
        return None
    src, dim, start, end, step = list(node.args) + [0, None, None, 1][len(node.args) - 1:]
    shape = _fx.node_shape(src) if isinstance(src, torch.fx.Node) else None
    if not isinstance(src, torch.fx.Node) or src.name not in shuffles or shape is None or dim % len(shape) != 0 \
            or step != 1:
        return None
    n = shape[0]
    lo, hi = slice(start, end).indices(n)[:2]
    return (src, lo, hi) if hi > lo else None


def frame_gathers(program: torch.export.ExportedProgram, shuffles: set[str]) -> dict[str, list[tuple]]:
    """Dim-0 ``cat`` nodes whose every input is a dim-0 slice of a taken shuffle (one block size):
    ``{cat name: [(shuffle, start, end), …]}``."""
    out = {}
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function" or node.target is not _CAT:
            continue
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim != 0:
            continue
        parts = [_frame_slice(x, shuffles) for x in node.args[0]]
        if parts and all(parts) and len({int(p[0].args[1]) for p in parts}) == 1:  # type: ignore[index]
            out[node.name] = parts
    return out


def check(program: torch.export.ExportedProgram) -> str | None:
    found, skipped = matches(program)
    if found:
        return None
    if skipped:
        return "no pixel_shuffle fed by a plain conv2d: " + "; ".join(skipped)
    return "the model has no pixel_shuffle"


class _Rewriter(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram, move_gathers: bool = True):
        super().__init__(program)
        found, _ = matches(program)
        self.convs = {c.name: r for convs, _, r in found for c in convs}
        self.shuffles = {s.name for _, s, _ in found}
        self.gathers = frame_gathers(program, self.shuffles) if move_gathers else {}
        # slices and shuffles read only by moved gathers are not emitted (export keeps a dead custom op)
        graph = program.graph_module.graph.nodes
        self.absorbed = {n.name for n in graph if n.target is _SLICE and n.users
                         and all(u.name in self.gathers for u in n.users)}
        self.absorbed |= {n.name for n in graph if n.name in self.shuffles
                          and all(u.name in self.absorbed for u in n.users)}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.convs:
            r = self.convs[node.name]
            x, w, b, *rest = list(args) + [None] * max(0, 3 - len(args))
            weight = self.concrete(w)
            if weight is None:
                return NotImplemented
            bias = self.concrete(b) if b is not None else None

            def permuted(t: torch.Tensor) -> torch.Tensor:  # computed once, eagerly: a constant
                return t[_custom_ops.dcr_channel_perm(weight.shape[0], r)]

            w2 = self.const(f"{node.name}_w_dcr", lambda: permuted(weight))
            b2 = self.const(f"{node.name}_b_dcr", lambda: permuted(bias)) if bias is not None else None
            x, rest = self.resolve((x, rest))
            return aten.conv2d.default(x, w2, b2, *rest)
        if node.name in self.shuffles:
            x = self.resolve(args[0])
            self.cache[("d2s input", node.name)] = x  # the interpreter frees it after this node
            return None if node.name in self.absorbed else _custom_ops.D2S(x, int(args[1]))
        if node.name in self.absorbed:
            return None
        if node.name in self.gathers:
            parts = self.gathers[node.name]
            frames = [aten.slice.Tensor(self.cache[("d2s input", s.name)], 0, lo, hi) for s, lo, hi in parts]
            return _custom_ops.D2S(aten.cat.default(frames, 0), int(parts[0][0].args[1]))
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewriter(program).export()
