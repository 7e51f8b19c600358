"""Per-frame attention: the key projection computed channels-first (NPU.md rewrite 12). Exact up
to float summation order.

After ``frames_to_batch`` a per-frame spatial attention reads its tokens from frames in batch
``x₄ = (T, C, H, W)`` and is already rank ≤ 4, but written token-major it costs three
transposes per block: ``x₄ → (T, H·W, C)`` tokens, ``kᵀ`` for ``q kᵀ``, and the result back to
``(T, C, H, W)``. The transposed key is the projection of the channels-first frames themselves::

    before: tok = permute(reshape(x₄, (T, C, S)), (0, 2, 1));  k = linear(tok, W_k, b_k);  kᵀ = transpose(k)
    after:  kᵀ = reshape(conv2d(reshape(x₄, (T, C, S, 1)), W_k[:, :, None, None], b_k), (T, C', S))

(``kᵀ[t, o, s] = Σ_c W_k[o, c]·x[t, c, s] + b_k[o]``): a 1×1 CONV_2D instead of FULLY_CONNECTED +
TRANSPOSE, one transpose fewer per attention block, nothing above rank 3. Matched by meaning: a
``linear`` whose only use is a transpose of its last two dimensions, on an input that is a
(lazy, simulated) transpose of a tensor available channels-first for free. The query and value
stay token-major: ``softmax`` runs on the last axis (what TFLite's SOFTMAX supports), which needs
``q`` token-major, and ``softmax(q kᵀ) v`` gives tokens.

Run after ``frames_to_batch`` (the per-frame token view must be a view of the frames storage).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import View, aten

__all__ = ["check", "rewrite", "find_keys", "NO_MATCH"]

_SWAPS = (aten.transpose.int, aten.permute.default)


def _swaps_last_two(node: torch.fx.Node) -> bool:
    shape = _fx.node_shape(node.args[0])
    if shape is None or len(shape) < 2:
        return False
    r = len(shape)
    if node.target is aten.transpose.int:
        dims = sorted(d % r for d in node.args[1:3])
        return dims == [r - 2, r - 1]
    perm = [d % r for d in node.args[1]]
    return perm == [*range(r - 2), r - 1, r - 2]


def find_keys(gm: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """``linear`` nodes (rank-3 input, constant weight) whose only use is a last-two-dims transpose."""
    out = []
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target is not aten.linear.default or len(n.users) != 1:
            continue
        (u,) = n.users
        shape = _fx.node_shape(n.args[0])
        if u.op == "call_function" and u.target in _SWAPS and _swaps_last_two(u) and shape and len(shape) == 3 \
                and isinstance(n.args[1], torch.fx.Node) and n.args[1].op == "get_attr":
            out.append(n)
    return out


def _free(idx: np.ndarray) -> bool:
    """True when reading ``idx`` from its base is a plain reshape (no slice, no permute)."""
    flat = idx.reshape(-1)
    return bool(flat.size and flat[0] == 0 and np.array_equal(flat, np.arange(flat.size)))


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.keys = {n.name for n in find_keys(self.module)}
        self.done = 0

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        t = node.target
        if _fx.is_view_op(t) and t is not aten.pixel_shuffle.default and isinstance(args[0], (torch.Tensor, View)):
            return View.of(args[0]).apply(t, *args[1:], **kwargs)
        if node.name in self.keys and isinstance(args[0], View):
            x = args[0]
            cf = np.ascontiguousarray(np.swapaxes(x.idx, -1, -2))  # (B, C, S) channels-first
            if not _free(cf):
                return NotImplemented
            b_, c, s = cf.shape
            w = self.concrete(args[1])
            bias = self.concrete(args[2]) if len(args) > 2 and args[2] is not None else None
            w4 = self.const(node.name + ".w1x1", lambda: w[:, :, None, None])
            b4 = self.const(node.name + ".b", lambda: bias) if bias is not None else None
            x4 = aten.reshape.default(x.base, [b_, c, s, 1])
            y = aten.reshape.default(aten.conv2d.default(x4, w4, b4), [b_, w.shape[0], s])
            self.done += 1
            idx = np.arange(y.numel(), dtype=np.int64).reshape(tuple(y.shape))
            return View(y, np.ascontiguousarray(np.swapaxes(idx, -1, -2)), ((aten.transpose.int, (-1, -2), {}),))
        return NotImplemented


NO_MATCH = ("no per-frame attention key projection to compute channels-first (a linear on a transposed "
            "channels-first tensor whose only use is a transpose)")


def check(program: torch.export.ExportedProgram) -> str | None:
    if find_keys(program.module()):
        probe = _Rewrite(program)
        probe.dry_run()
        if probe.done:
            return None
    if _fx.max_rank(program) >= 5:
        return NO_MATCH + "; run frames_to_batch first"
    return NO_MATCH


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
