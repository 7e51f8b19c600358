"""pixel_shuffle_to_transpose_conv: pixel_shuffle(r) becomes a transposed conv with kernel =
stride = r and one-hot weights, for accelerators without DEPTH_TO_SPACE (Edge TPU, Ethos-U).

Before::

    z = pixel_shuffle(y, r)                            # z[c, h·r+i, w·r+j] = y[c·r²+i·r+j, h, w]

After::

    z = conv_transpose2d(y, W, stride=r)               # W: (C·r², C, r, r)
    W[c·r²+i·r+j, c, i, j] = 1, every other weight 0

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

from edgekit.converters.passes import _fx

__all__ = ["check", "rewrite", "one_hot_kernel"]

_SHUFFLE = torch.ops.aten.pixel_shuffle.default


def one_hot_kernel(channels_in: int, r: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (C·r², C, r, r) transposed-conv weight that performs pixel_shuffle(r)."""
    c = channels_in // (r * r)
    w = torch.zeros(channels_in, c, r, r, dtype=dtype)
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                w[ch * r * r + i * r + j, ch, i, j] = 1
    return w


def _shuffles(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    out = []
    for n in program.graph_module.graph.nodes:
        if n.op == "call_function" and n.target == _SHUFFLE and len(_fx.node_shape(n.args[0]) or ()) == 4 \
                and int(n.args[1]) >= 2:
            out.append(n)
    return out


def check(program: torch.export.ExportedProgram) -> str | None:
    return None if _shuffles(program) else "the model has no 4-D pixel_shuffle with block size ≥ 2"


class _ToTransposeConv(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.names = {n.name for n in _shuffles(program)}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name not in self.names:
            return NotImplemented
        y = self.resolve(args[0])
        r = int(args[1])
        cin = int(y.shape[1])
        w = self.const(f"one_hot_{cin}_{r}_{y.dtype}", lambda: one_hot_kernel(cin, r, y.dtype))
        return torch.ops.aten.conv_transpose2d.input(y, w, None, [r, r])


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _ToTransposeConv(program).export()
