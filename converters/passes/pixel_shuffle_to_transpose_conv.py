"""pixel_shuffle_to_transpose_conv: pixel_shuffle(r) becomes a transposed conv with kernel =
stride = r and one-hot weights, for accelerators without DEPTH_TO_SPACE (Edge TPU, Ethos-U).

Before::

    z = pixel_shuffle(y, r)                            # z[c, h·r+i, w·r+j] = y[c·r²+i·r+j, h, w]

After::

    z = conv_transpose2d(y, W, stride=r)               # W: (C·r², C, r, r)
    W[c·r²+i·r+j, c, i, j] = 1, every other weight 0

The shuffle is recognised by what it computes (``pixel_shuffle``, or view/permute/reshape chains
that move data the same way, in any channel order of the block: see
``pixel_shuffle_to_depth_to_space.find_shuffles``, which solves ``z = DCR(y[:, π], r)``); the
channel order ``π`` goes into the one-hot weights, ``W[π[(i·r+j)·C+c], c, i, j] = 1``, so no
producer has to change.

With kernel = stride the output blocks do not overlap, so each output element is one input
element times 1 plus zeros: the same value, exactly, for finite inputs (an inf or NaN input
would spread NaN through the zero weights, as 0·inf is NaN). TRANSPOSE_CONV is native on the
Edge TPU and Ethos-U, which have no DEPTH_TO_SPACE; it costs r²·C² MACs per output pixel block
where depth-to-space is a memory move, so targets that have DEPTH_TO_SPACE use
``pixel_shuffle_to_depth_to_space`` instead (docs/accelerators.md, rewrite 1).
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _custom_ops, _fx
from edgekit.converters.passes.pixel_shuffle_to_depth_to_space import find_shuffles

__all__ = ["check", "rewrite", "one_hot_kernel"]


def one_hot_kernel(channels_in: int, r: int, dtype: torch.dtype = torch.float32, perm: Any = None) -> torch.Tensor:
    """The (C·r², C, r, r) transposed-conv weight that performs ``DCR(y[:, perm], r)``; the default
    ``perm`` is pixel_shuffle(r)'s CRD order."""
    c = channels_in // (r * r)
    perm = _custom_ops.dcr_channel_perm(channels_in, r).tolist() if perm is None else [int(p) for p in perm]
    w = torch.zeros(channels_in, c, r, r, dtype=dtype)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                w[perm[(i * r + j) * c + ch], ch, i, j] = 1
    return w


def check(program: torch.export.ExportedProgram) -> str | None:
    found, skipped = find_shuffles(program)
    if found:
        return None
    return ("no pixel shuffle it can take: " + "; ".join(skipped)) if skipped else \
        "the model has no 4-D pixel shuffle with block size ≥ 2"


class _ToTransposeConv(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        found, _ = find_shuffles(program)
        self.first = {sh.chain[0].name: sh for sh in found}
        self.rest = {u.name: sh for sh in found for u in sh.chain[1:]}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.first:
            sh = self.first[node.name]
            y = self.resolve(args[0])
            cin = int(y.shape[1])
            w = self.const(f"one_hot.{sh.end.name}", lambda: one_hot_kernel(cin, sh.r, y.dtype, sh.perm))
            self.cache[("tconv", sh.end.name)] = out = torch.ops.aten.conv_transpose2d.input(y, w, None, [sh.r, sh.r])
            return out if len(sh.chain) == 1 else None
        if node.name in self.rest:
            return self.cache[("tconv", node.name)] if node.name == self.rest[node.name].end.name else None
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _ToTransposeConv(program).export()
