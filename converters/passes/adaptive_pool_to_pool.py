"""adaptive_pool_to_pool: adaptive pooling whose output size divides the (static) input size
becomes plain pooling with kernel = stride = input / output.

Before::

    y = adaptive_max_pool2d(x, (oh, ow))          # x: (N, C, H, W), H = kh·oh, W = kw·ow
    y = adaptive_avg_pool2d(x, (oh, ow))

After::

    y = max_pool2d(x, (kh, kw), stride=(kh, kw))   # MAX_POOL_2D
    y = avg_pool2d(x, (kh, kw), stride=(kh, kw))   # AVERAGE_POOL_2D

Why it is the same function: adaptive pooling's window ``i`` along an axis is
``[⌊i·In/Out⌋, ⌈(i+1)·In/Out⌉)``; when ``Out`` divides ``In`` that is ``[i·k, (i+1)·k)`` with
``k = In/Out`` — the windows of a pool with kernel and stride ``k`` and no padding. The maximum
is the same element (bit-exact; ties and NaN resolve in the same row-major order, so the indices of
``return_indices=True`` agree too); the average is the same sum over the same ``k``-element window
divided by the same count, up to float32 summation order. The 1-D and 3-D forms are rewritten alike.

litert-torch has no lowering for ``adaptive_max_pool2d`` at all (adaptive_max_pool1d becomes it),
so the TFLite exporter applies this pass to adaptive max pools by default (litert-torch lowers
adaptive averages itself; a target pipeline or ``--passes`` rewrites those too); NPUs also run fixed-kernel pools natively
where adaptive ones are not in their op tables. An output size that does not divide the input
(windows of varying size, overlapping) is left alone and named in the reason.
"""

from __future__ import annotations

import operator
from typing import Any

import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "adaptive_pools", "kernel_of", "ADAPTIVE"]

# adaptive op -> (plain pool, plain pool with indices or None, spatial rank, is max)
ADAPTIVE: dict[Any, tuple[Any, Any, int, bool]] = {
    aten.adaptive_avg_pool1d.default: (aten.avg_pool1d.default, None, 1, False),
    aten.adaptive_avg_pool2d.default: (aten.avg_pool2d.default, None, 2, False),
    aten.adaptive_avg_pool3d.default: (aten.avg_pool3d.default, None, 3, False),
    aten.adaptive_max_pool1d.default: (aten.max_pool1d.default, aten.max_pool1d_with_indices.default, 1, True),
    aten.adaptive_max_pool2d.default: (aten.max_pool2d.default, aten.max_pool2d_with_indices.default, 2, True),
    aten.adaptive_max_pool3d.default: (aten.max_pool3d.default, aten.max_pool3d_with_indices.default, 3, True),
}


def adaptive_pools(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    return [n for n in program.graph_module.graph.nodes if n.op == "call_function" and n.target in ADAPTIVE]


def kernel_of(node: torch.fx.Node) -> list[int] | str:
    """The pool kernel (= stride) equivalent to an adaptive pool node, or why there is none."""
    spatial = ADAPTIVE[node.target][2]
    src, out = _fx.node_shape(node.args[0]), _out_shape(node)
    name = str(node.target).split(".")[-2]
    if src is None or out is None:
        return f"{node.name}: shapes unknown (run static_shapes first)"
    ins, outs = src[-spatial:], out[-spatial:]
    if any(o == 0 or i % o for i, o in zip(ins, outs)):
        return (f"{name} '{node.name}': output {list(outs)} does not divide input {list(ins)} "
                "(windows of varying size: no fixed pool computes it)")
    return [i // o for i, o in zip(ins, outs)]


def _out_shape(node: torch.fx.Node) -> tuple[int, ...] | None:
    """The pooled values' shape (an adaptive max pool's value is (values, indices))."""
    val = node.meta.get("val")
    val = val[0] if isinstance(val, (tuple, list)) else val
    if not isinstance(val, torch.Tensor) or not all(isinstance(d, int) for d in val.shape):
        return None
    return tuple(int(d) for d in val.shape)


def _indices_used(node: torch.fx.Node) -> bool:
    return any(u.target is operator.getitem and u.args[1] == 1 and u.users for u in node.users)


def check(program: torch.export.ExportedProgram) -> str | None:
    nodes = adaptive_pools(program)
    if not nodes:
        return "the model has no adaptive pooling"
    reasons = [k for k in map(kernel_of, nodes) if isinstance(k, str)]
    if len(reasons) == len(nodes):
        return "; ".join(reasons)
    return None


class _Pools(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram, max_only: bool = False):
        super().__init__(program)
        self.kernels = {n.name: (k, _indices_used(n)) for n in adaptive_pools(program)
                        if not isinstance(k := kernel_of(n), str) and (ADAPTIVE[n.target][3] or not max_only)}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name not in self.kernels:
            return NotImplemented
        kernel, with_indices = self.kernels[node.name]
        x = self.resolve(args[0])
        pool, pool_indices, _, is_max = ADAPTIVE[node.target]
        if not is_max:
            return pool(x, kernel, kernel)
        if with_indices:
            return pool_indices(x, kernel, kernel)
        return pool(x, kernel, kernel), None  # the indices are not read


def rewrite(program: torch.export.ExportedProgram, *, max_only: bool = False) -> torch.export.ExportedProgram:
    """Every adaptive pool whose output divides its input becomes a plain pool (``max_only``: only
    the max pools, which is what the TFLite exporter needs by default)."""
    return _Pools(program, max_only).export()
