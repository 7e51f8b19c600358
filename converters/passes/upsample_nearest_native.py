"""Nearest upsampling by integer factors → NPU-native ops (docs/accelerators.md, rewrite 7). Exact.

Before: ``upsample_nearest3d(x, (ft·T, fh·H, fw·W))`` on ``x = (1, C, T, H, W)`` (no TFLite op,
coremltools has no converter for it).

After, on frames in batch ``x₄ = (T, C, H, W)``::

    r  = upsample_nearest2d(x₄, (fh·H, fw·W))                  # RESIZE_NEAREST_NEIGHBOR
    y₄ = cat([r[0:1]] * ft + [r[1:2]] * ft + …, dim=0)         # frame t·ft + j = r[t]: temporal repeat

The temporal repeat is exact: the j-th copy of frame t lands at frame ``t·ft + j``, which is what
nearest sampling ``⌊t'/ft⌋`` reads. It is a concatenation of frame (batch) slices, which a
channels-last backend keeps in NHWC; the equivalent ``reshape(cat([x₄] * ft, dim=1), (ft·T, C,
H, W))`` made litert-torch put a TRANSPOSE on each side of the reshape (measured on
video_decoder_ref). Resizing before the repeat resizes T frames instead of ft·T. No gather, no
BROADCAST_TO, nothing above rank 4. Nearest with an integer
factor needs no half-pixel offsets, so RESIZE_NEAREST_NEIGHBOR's plain mode is the same function.

:func:`lower_frames` is the lowering ``frames_to_batch`` uses while it folds the whole graph; on
its own this pass rewrites each ``upsample_nearest3d`` in place on a 5-D graph with N = 1 (a
rank-4 transpose on each side, removed when ``frames_to_batch`` runs).
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "lower_frames", "factors", "UPSAMPLE3D_OPS"]

UPSAMPLE3D_OPS = (aten.upsample_nearest3d.vec, aten.upsample_nearest3d.default)


def factors(node: torch.fx.Node) -> tuple[int, int, int] | str:
    """Integer (time, height, width) factors of an ``upsample_nearest3d`` node, or the reason not."""
    src, out = _fx.node_shape(node.args[0]), _fx.node_shape(node)
    if src is None or out is None:
        return f"{node.name}: shapes unknown (run static_shapes first)"
    if src[0] != 1:
        return f"{node.name}: batch {src[0]}; frames fold into the batch only for N = 1"
    f = []
    for a, b in zip(src[2:], out[2:]):
        if b % a:
            return f"{node.name}: non-integer nearest factor {b}/{a}"
        f.append(b // a)
    return tuple(f)  # type: ignore[return-value]


def lower_frames(x4: torch.Tensor, ft: int, fh: int, fw: int) -> torch.Tensor:
    """Nearest ×(ft, fh, fw) on frames in batch ``x4 = (T, C, H, W)`` (see the module doc)."""
    t, c, h, w = x4.shape
    if fh > 1 or fw > 1:
        x4 = aten.upsample_nearest2d.vec(x4, [h * fh, w * fw], None)
    if ft > 1:
        frames = [aten.slice.Tensor(x4, 0, i, i + 1) for i in range(t)] if t > 1 else [x4]
        x4 = aten.cat.default([f for f in frames for _ in range(ft)], 0)
    return x4


class _Local(_fx.Retracer):
    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.target not in UPSAMPLE3D_OPS or isinstance(f := factors(node), str):
            return NotImplemented
        return _fx.folded(lower_frames(_fx.frames(self.resolve_attrs(args[0])), *f))


def check(program: torch.export.ExportedProgram) -> str | None:
    nodes = [n for n in program.graph_module.graph.nodes if n.op == "call_function" and n.target in UPSAMPLE3D_OPS]
    if not nodes:
        return "no upsample_nearest3d in the graph"
    for n in nodes:
        if isinstance(f := factors(n), str):
            return f
    return None


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Local(program).export()
