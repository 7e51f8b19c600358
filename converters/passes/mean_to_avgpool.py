"""mean_to_avgpool: a mean over H and W of a 4-D tensor becomes a full-size average pool.

Before::

    g = x.mean((2, 3), keepdim=k)                     # x: (N, C, H, W)

After::

    g = avg_pool2d(x, kernel=(H, W), stride=(H, W))   # (N, C, 1, 1)
    g = g.reshape(N, C)                               # only when keepdim=False

Why: litert-torch computes a MEAN over axes (2, 3) in NCHW, so it puts a TRANSPOSE in front of
it (the rest of the graph is NHWC); an average pool is a layout-aware 2-D op it keeps in NHWC,
emitting ``AVERAGE_POOL_2D`` with no TRANSPOSE. Edge TPU and Ethos-U also run a full-size
AVERAGE_POOL_2D where their MEAN support is restricted (docs/accelerators.md, rewrite 9). Squeeze-
excitation gates and global pooling heads written as ``mean`` are the usual source. The value
is the same average (sum over H·W divided by H·W), up to float32 summation order. Needs
static H and W (the pipeline runs it after static_shapes). Means over other axes (GroupNorm's
statistics, channel means) stay.
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _fx

__all__ = ["check", "rewrite", "spatial_means"]

aten = torch.ops.aten
_MEAN = aten.mean.dim


def _is_spatial(node: torch.fx.Node) -> bool:
    shape = _fx.node_shape(node.args[0])
    if shape is None or len(shape) != 4 or len(node.args) < 2 or node.args[1] is None:
        return False
    dims = sorted(d % 4 for d in node.args[1])
    dtype = node.kwargs.get("dtype")
    return dims == [2, 3] and dtype is None and node.args[0].meta["val"].dtype.is_floating_point


def spatial_means(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    return [n for n in program.graph_module.graph.nodes if n.op == "call_function" and n.target == _MEAN
            and _is_spatial(n)]


def check(program: torch.export.ExportedProgram) -> str | None:
    if spatial_means(program):
        return None
    n = sum(1 for x in program.graph_module.graph.nodes if x.op == "call_function" and x.target == _MEAN)
    return "the model has no mean" if not n else f"none of its {n} mean(s) is over H and W of a 4-D float tensor"


class _Pool(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.names = {n.name for n in spatial_means(program)}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name not in self.names:
            return NotImplemented
        x = self.resolve(args[0])
        keepdim = bool(args[2]) if len(args) > 2 else bool(kwargs.get("keepdim", False))
        n, c, h, w = x.shape
        y = aten.avg_pool2d.default(x, [h, w], [h, w])
        return y if keepdim else aten.reshape.default(y, [n, c])


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Pool(program).export()
