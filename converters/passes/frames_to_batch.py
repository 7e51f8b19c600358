"""Frames into batch: every ``(1, C, T, H, W)`` tensor becomes ``(T, C, H, W)`` (docs/accelerators.md, rewrites
2, 3, 4, 7). Exact.

With N = 1 a video tensor is stored as frames in the batch dimension for the whole graph, so
nothing above rank 4 is left.

Before (a decoder block as written)::

    x: (1, C, T, H, W) → conv3d → group_norm → silu → upsample_nearest3d(×ft, ×fh, ×fw) → (1, C', T', H', W')

After::

    x₄: (T, C, H, W) → conv2d(cat of k_t shifted frame slices) → means + 1×1 convs → silu
        → upsample_nearest2d(×fh, ×fw) → cat of each frame repeated ft times → (T', C', H', W')

Per op:

- frame-independent ops (every pointwise op, with ``(1, C, 1, 1, 1)`` scales becoming
  ``(1, C, 1, 1)``) run unchanged on the ``(T, C, H, W)`` storage;
- reductions and ``cat`` map dimensions (C → 1, T → 0, H → 2, W → 3): the causal first-frame
  padding ``cat([x[:, :, :1]] * 2 + [x], dim=2)`` becomes a concat of frame slices on dim 0;
- Conv3d → Conv2d on shifted frame slices (:mod:`.conv3d_to_conv2d`), nearest 3-D upsampling →
  frame repeat + 2-D nearest (:mod:`.upsample_nearest_native`), GroupNorm on the clip → means
  over the frames' dims (0, 2, 3) and 1×1 convs (:func:`.groupnorm_decompose.group_norm_pooled`);
- view chains (view/reshape/permute/transpose/slice/pixel_shuffle, any rank) are simulated on
  index arrays and emitted at their consumer as the cheapest reshape/permute of rank ≤ 4
  (:func:`._fx.gather_as`). A per-frame ``(N·T, C, H, W)`` view — how per-frame norms and
  Turbo-VAED's per-frame pixel shuffle are written — *is* the storage, so it costs nothing;
  per-frame attention's ``(T, H·W, C)`` tokens cost one rank-3 transpose each way.

Boundary: a 5-D input or output of the source becomes ``(T, C, H, W)`` in the rewritten
program; the layouts are recorded in ``graph_module.meta["edgekit_io_layouts"]``
(``{"inputs": {name: {"source": "NCTHW", "artifact": "TCHW"}}, "outputs": {"0": …}}``), which
the runtime's ``LayoutMap`` translates by letters (N = 1 is dropped and re-inserted).

Not applicable (reason reported) when there is no rank-5 tensor, or a 5-D tensor has N ≠ 1.
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import View, aten, folded, frames
from edgekit.converters.passes.conv3d_to_conv2d import conv3d_args
from edgekit.converters.passes.conv3d_to_conv2d import lower_frames as conv_frames
from edgekit.converters.passes.groupnorm_decompose import GROUP_NORM_OPS, group_norm_pooled, norm_args
from edgekit.converters.passes.upsample_nearest_native import UPSAMPLE3D_OPS, factors
from edgekit.converters.passes.upsample_nearest_native import lower_frames as upsample_frames

__all__ = ["check", "rewrite", "SOURCE_LAYOUT", "ARTIFACT_LAYOUT"]

SOURCE_LAYOUT, ARTIFACT_LAYOUT = "NCTHW", "TCHW"
_DIM = {1: 1, 2: 0, 3: 2, 4: 3}  # NCTHW dim → TCHW dim (N, of size 1, has none)
_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default}
# data movement that stays an op (DEPTH_TO_SPACE / SPACE_TO_DEPTH), not folded into index arrays
_REAL_OPS = {aten.pixel_shuffle.default, aten.pixel_unshuffle.default}
_IGNORED = {aten._assert_tensor_metadata.default, aten._assert_scalar.default}


def _is5(x: Any) -> bool:
    return isinstance(x, (torch.Tensor, View)) and len(x.shape) == 5 and x.shape[0] == 1


def _tensors(tree: Any) -> list:
    return [x for x in torch.utils._pytree.tree_leaves(tree) if isinstance(x, (torch.Tensor, View))]


def _frames_const(x: torch.Tensor) -> torch.Tensor:
    """A concrete tensor broadcast against (1, C, T, H, W), stored as frames (T, C, H, W)."""
    x = x.reshape((1,) * (5 - x.dim()) + tuple(x.shape))
    return x[0].transpose(0, 1)


class _Frames(_fx.Retracer):
    def input_shape(self, node: torch.fx.Node) -> tuple[int, ...]:
        s = _fx.node_shape(node)
        return (s[2], s[1], s[3], s[4]) if s is not None and len(s) == 5 and s[0] == 1 else s

    def convert_input(self, node: torch.fx.Node, x: torch.Tensor) -> Any:
        s = _fx.node_shape(node)
        if s is not None and len(s) == 5 and s[0] == 1:
            self.layouts["inputs"][self.input_name(node)] = {"source": SOURCE_LAYOUT, "artifact": ARTIFACT_LAYOUT}
            return folded(x)
        return x

    def convert_output(self, i: int, value: Any) -> Any:
        if _is5(value):
            self.layouts["outputs"][str(i)] = {"source": SOURCE_LAYOUT, "artifact": ARTIFACT_LAYOUT}
            return frames(value)
        return super().convert_output(i, value)

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        t = node.target
        if t in _IGNORED:
            return None
        if _fx.is_view_op(t) and t not in _REAL_OPS and isinstance(args[0], (torch.Tensor, View, _fx.Attr)):
            return View.of(self.resolve_attrs(args[0])).apply(t, *args[1:], **kwargs)
        ts = _tensors((args, kwargs))
        if not any(_is5(x) for x in ts):
            return NotImplemented
        if any(len(x.shape) == 5 and x.shape[0] != 1 for x in ts):
            return NotImplemented
        if isinstance(t, torch._ops.OpOverload) and torch.Tag.pointwise in t.tags:
            return self._pointwise(t, args, kwargs)
        if t in _REDUCTIONS:
            return self._reduce(t, args, kwargs)
        if t is aten.cat.default:
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            dim = dim + 5 if dim < 0 else dim
            if dim == 0 or not all(_is5(x) for x in args[0]):
                return NotImplemented
            return folded(torch.cat([frames(x) for x in args[0]], dim=_DIM[dim]))
        if (a := conv3d_args(node)) is not None and isinstance(args[1], _fx.Attr):
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if bias is None or isinstance(bias, _fx.Attr):
                return folded(conv_frames(self, node.name, frames(args[0]), args[1], bias, a["stride"],
                                          a["padding"], a["dilation"], a["groups"]))
        if t in UPSAMPLE3D_OPS and not isinstance(f := factors(node), str):
            return folded(upsample_frames(frames(args[0]), *f))
        if t in GROUP_NORM_OPS and _is5(args[0]):
            avg, w, b, eps = norm_args(self, node, args, kwargs, 4)  # the clip's stats: frames' dims 0, 2, 3
            return folded(group_norm_pooled(frames(args[0]), avg, w, b, eps, [0, 2, 3]))
        return NotImplemented

    def _pointwise(self, t: Any, args: tuple, kwargs: dict) -> Any:
        def conv(x: Any) -> Any:
            if isinstance(x, _fx.Attr):  # a weight: fold it once, outside the graph
                conc = self.concrete(x)
                if conc.dim() >= 1:
                    return self.const("frames:" + x.target, lambda: _frames_const(conc))
                x = self.resolve_attrs(x)
            if isinstance(x, (torch.Tensor, View)) and len(x.shape) >= 1:
                return frames(x, shape5=(1,) * 5)
            return x

        args4, kwargs4 = torch.utils._pytree.tree_map(conv, (args, kwargs),
                                                      is_leaf=lambda x: isinstance(x, (View, _fx.Attr)))
        return folded(t(*args4, **kwargs4))

    def _reduce(self, t: Any, args: tuple, kwargs: dict) -> Any:
        x = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        dims = list(range(5)) if dims in (None, []) else ([dims] if isinstance(dims, int) else list(dims))
        dims = sorted({d + 5 if d < 0 else d for d in dims})
        mapped = [_DIM[d] for d in dims if d != 0]
        rest = {k: v for k, v in kwargs.items() if k not in ("dim", "keepdim")}
        y = folded(t(frames(x), mapped, True, **rest)) if mapped else View.of(x)
        return y if keep else y.apply(aten.squeeze.dims, dims)


def check(program: torch.export.ExportedProgram) -> str | None:
    ranks = []
    user = set(program.graph_signature.user_inputs)
    for n in program.graph_module.graph.nodes:
        if not (n.op == "call_function" or (n.op == "placeholder" and n.name in user)):
            continue  # weights (a Conv3d kernel is 5-D too) are folded with the ops that use them
        s = _fx.node_shape(n)
        if s is not None and len(s) == 5:
            if s[0] != 1:
                return f"{n.name} is a 5-D tensor with batch {s[0]}; frames fold into the batch only for N = 1"
            ranks.append(n)
    if not ranks:
        return "no 5-D tensor in the graph"
    return None


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Frames(program).export()
