"""Per-frame attention computed channels-first, for the channels-first formats (ONNX, CoreML).
docs/accelerators.md, rewrite 12. Exact up to float summation order.

After ``frames_to_batch`` a per-frame spatial attention reads its tokens from frames in batch
``x₄ = (T, C, H, W)`` and is rank ≤ 4, but written token-major it needs the tokens
``(T, H·W, C)``: in a channels-first graph that is a layout Transpose in, another out, and the
key's transpose for ``q kᵀ``. The same block channels-first (``X = reshape(x₄, (T, C, S))``,
``S = H·W``)::

    before: tok = permute(X, (0, 2, 1));  q, k, v = linear(tok, W_q), linear(tok, W_k), linear(tok, W_v)
            y = linear(softmax(q kᵀ · s) v, W_o);          out = permute(y, (0, 2, 1)) → (T, C, H, W)
    after:  Q, K, V = conv1x1(X, W_q), conv1x1(X, W_k), conv1x1(X, W_v)          # (T, C', S)
            A = softmax(matmul(Qᵀ, K) · s)                                          # (T, S, S), last axis
            out = conv1x1(matmul(V, Aᵀ), W_o)                                       # (T, C, S) → (T, C, H, W)

since ``linear(tok, W)ᵀ = W X + b`` (a 1×1 convolution of the frames) and
``(A Vᵀ)ᵀ = V Aᵀ``. No layout Transpose is left; the two that remain swap the last two axes of a
MatMul operand (ONNX MatMul has no transpose flag; onnxruntime fuses them into ``FusedMatMul``,
Core ML into ``matmul(transpose_x/y)``, QNN into ``MatMul(transpose_in0/in1)``): no data moves.
The softmax stays on the last axis, the one every NPU's softmax takes.

Not for TFLite: litert-torch stores the frames NHWC, where the token-major form *is* the storage
order, and folds ``kᵀ`` into ``BATCH_MATMUL(adj_y)`` — zero TRANSPOSEs — while a channels-first
``(T, C, S)`` reshape of NHWC storage costs it two. The registry gives this pass to ONNX and
CoreML artifacts only.

Matched by meaning, not by op sequence: a ``linear`` (constant weight) whose input is a lazy,
simulated view that is a transpose of a channels-first tensor available for free, and a
``matmul`` whose right operand is such a view. Run after ``frames_to_batch``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import View, aten

__all__ = ["check", "rewrite", "NO_MATCH"]

NO_MATCH = ("no per-frame attention to compute channels-first (a linear projection of tokens that are a "
            "transpose of channels-first frames)")


def _channels_first(v: Any) -> tuple[int, int, int, int, int] | None:
    """``(B, C, S, c0, C_all)`` when ``v`` is a rank-3 token view ``(B, S, C)`` of channels
    ``c0 .. c0+C`` of a channels-first tensor ``(B, C_all, S)`` stored in order (e.g. the q, k or
    v third of a fused qkv projection): its channels-first form is then a reshape and a slice."""
    if not isinstance(v, View) or v.dim() != 3:
        return None
    b, s, c = v.shape
    n = v.base.numel()
    if not (b * s) or n % (b * s):
        return None
    c_all = n // (b * s)
    first = int(v.idx.reshape(-1)[0])
    if first % s or first >= c_all * s:
        return None
    c0 = first // s
    want = (np.arange(b)[:, None, None] * c_all * s + (c0 + np.arange(c))[None, :, None] * s
            + np.arange(s)[None, None, :])
    return (b, c, s, c0, c_all) if np.array_equal(np.swapaxes(v.idx, -1, -2), want) else None


def _cf_tensor(v: View, info: tuple[int, int, int, int, int], frames: bool = False) -> torch.Tensor:
    """The channels-first tensor a token view reads: ``(B, C, S)``, or with ``frames`` the 4-D
    ``(B, C, H, W)`` storage itself when it is one (what a 1×1 convolution takes)."""
    b, c, s, c0, c_all = info
    x = v.base
    if not (frames and x.dim() == 4 and tuple(x.shape[:2]) == (b, c_all)):
        x = aten.reshape.default(x, [b, c_all, s, 1] if frames else [b, c_all, s])
    return x if c == c_all else aten.slice.Tensor(x, 1, c0, c0 + c)


def _tokens_of(y: torch.Tensor) -> View:
    """The token-major ``(B, S, C)`` lazy view of a channels-first result ``y``: ``(B, C, S)``, or
    ``(B, C, H, W)`` frames with ``S = H·W``."""
    b, c = y.shape[:2]
    s = y.numel() // (b * c)
    idx = np.arange(y.numel(), dtype=np.int64).reshape(b, c, s)
    return View(y, np.ascontiguousarray(np.swapaxes(idx, -1, -2)),
                ((aten.reshape.default, ([b, c, s],), {}), (aten.transpose.int, (-1, -2), {})))


_SPLITS = (aten.chunk.default, aten.split.Tensor, aten.split_with_sizes.default)


def _split(v: View, target: Any, size: Any, dim: int = 0) -> list[View]:
    """``chunk`` / ``split`` / ``split_with_sizes`` of a lazy view: its slices, still lazy."""
    length = v.shape[dim]
    if target is aten.chunk.default:
        size = -(-length // size)
    sizes = list(size) if isinstance(size, (list, tuple)) else [size] * (-(-length // size))
    out, start = [], 0
    for n in sizes:
        end = min(start + n, length)
        out.append(v.apply(aten.slice.Tensor, dim, start, end))
        start = end
    return out


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.projections = 0

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        t = node.target
        if _fx.is_view_op(t) and t is not aten.pixel_shuffle.default and isinstance(args[0], (torch.Tensor, View)):
            return View.of(args[0]).apply(t, *args[1:], **kwargs)
        if t in _SPLITS and isinstance(args[0], View):  # a fused qkv split: three lazy views
            return _split(args[0], t, *args[1:], **kwargs)
        if t is operator.getitem and isinstance(args[0], (list, tuple)):
            return args[0][args[1]]
        if t is aten.linear.default and (info := _channels_first(args[0])) is not None:
            w = self.concrete(args[1])
            if w is None:
                return NotImplemented
            bias = self.concrete(args[2]) if len(args) > 2 and args[2] is not None else None
            if len(args) > 2 and args[2] is not None and bias is None:
                return NotImplemented  # a computed bias: not a projection
            w4 = self.const(node.name + ".w1x1", lambda: w[:, :, None, None])
            b4 = self.const(node.name + ".b", lambda: bias) if bias is not None else None
            self.projections += 1
            return _tokens_of(aten.conv2d.default(_cf_tensor(args[0], info, frames=True), w4, b4))
        if t in (aten.matmul.default, aten.bmm.default) and any(isinstance(a, View) for a in args[:2]):
            a = _operand(args[0])
            if (info := _channels_first(args[1])) is not None and a.dim() == 3:
                v_cf = _cf_tensor(args[1], info)  # (A Vᵀ)ᵀ = V Aᵀ: the product comes out channels-first
                return _tokens_of(aten.matmul.default(v_cf, aten.transpose.int(a, -1, -2)))
            return aten.matmul.default(a, _operand(args[1]))
        return NotImplemented


def _operand(x: Any) -> torch.Tensor:
    """A matmul operand: a token view of a channels-first tensor as reshape + last-two-axes
    transpose (the matmul's own transpose flag), never a layout permute of 4-D frames."""
    if (info := _channels_first(x)) is not None:
        return aten.transpose.int(_cf_tensor(x, info), -1, -2)
    return x.materialize() if isinstance(x, View) else x


def check(program: torch.export.ExportedProgram) -> str | None:
    if any(n.op == "call_function" and n.target is aten.linear.default for n in program.graph_module.graph.nodes):
        probe = _Rewrite(program)
        probe.dry_run()
        if probe.projections:
            return None
    if _fx.max_rank(program) >= 5:
        return NO_MATCH + "; run frames_to_batch first"
    return NO_MATCH


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
