"""Pooling ops: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

PyTorch's pooling takes symmetric padding of at most half the kernel; ONNX allows any begin/end
pads (``auto_pad`` SAME_* gives asymmetric ones) and ``ceil_mode``. When the ONNX node fits,
it becomes one ``F.max_poolNd``/``F.avg_poolNd``; otherwise the input is padded explicitly
(``-inf`` for max, zeros for average), pooled without padding, and — for average pooling —
multiplied by a constant map that turns PyTorch's divisor (the kernel area) into ONNX's
(the window's size clipped to the padded or the unpadded input, per ``count_include_pad``).
Output sizes follow the ONNX formula with the rule that a window must start inside the input
or its begin padding (what ONNX Runtime and PyTorch do with ``ceil_mode``).
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from edgekit.converters.onnx_import.builder import Builder, Const, NodeError, Value
from edgekit.converters.onnx_import.table import onnx_pads, op, torch_pad_list

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def out_size(n: int, k: int, s: int, d: int, b: int, e: int, ceil: bool) -> int:
    eff = (k - 1) * d + 1
    num = n + b + e - eff
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= n + b:
        o -= 1
    return o


def _geometry(g: Builder, x: Value) -> tuple:
    nd = x.rank - 2
    if nd not in _MAX:
        raise NodeError(f"pooling a rank-{x.rank} input: only 1-D, 2-D and 3-D pooling is supported")
    k = list(g.attr("kernel_shape"))
    s = list(g.attr("strides", [1] * nd))
    d = list(g.attr("dilations", [1] * nd))
    begin, end = onnx_pads(g, x.shape[2:], k, s, d, dilate_same=False)
    ceil = bool(g.attr("ceil_mode", 0))
    out = [out_size(x.shape[2 + i], k[i], s[i], d[i], begin[i], end[i], ceil) for i in range(nd)]
    if any(o <= 0 for o in out):
        raise NodeError(f"the pooling window (kernel {k}, dilations {d}) does not fit the padded input {x.shape[2:]}")
    return nd, k, s, d, begin, end, ceil, out


def _fits_torch(k: list[int], begin: list[int], end: list[int]) -> bool:
    return begin == end and all(b <= kk // 2 for b, kk in zip(begin, k))


def _explicit(g: Builder, x: Value, k, s, d, begin, end, out, value: float) -> Value:
    """``x`` padded so that a pool without padding or ceil_mode gives at least ``out`` windows."""
    ext = [max(end[i], (out[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - x.shape[2 + i] - begin[i])
           for i in range(len(k))]
    p = torch_pad_list([0, 0] + list(begin), [0, 0] + ext)
    return g.call(F.pad, x, p, "constant", value) if p else x


def _crop(g: Builder, y: Value, out: list[int]) -> Value:
    if list(y.shape[2:]) == list(out):
        return y
    return g.call(operator.getitem, y, (slice(None), slice(None)) + tuple(slice(0, o) for o in out))


def _indices_used(g: Builder) -> bool:
    return len(g.node.output) > 1 and bool(g.node.output[1]) and bool(g.uses[g.node.output[1]])


def _max_pool_with_indices(g: Builder, x: Value, nd: int, k, s, d, begin, end, ceil, out) -> list:
    """MaxPool's Indices output: ONNX counts into the whole input tensor, row-major
    (``storage_order=0``) or with the spatial axes column-major (``storage_order=1``, 2-D);
    PyTorch's indices count within one (n, c) plane, row-major."""
    order = int(g.attr("storage_order", 0))
    if order not in (0, 1) or (order == 1 and nd != 2):
        raise NodeError(f"MaxPool Indices with storage_order={order} on a {nd}-D pool is not supported")
    if not _fits_torch(k, begin, end):
        raise NodeError(f"MaxPool Indices with pads={list(begin) + list(end)} (beyond PyTorch's symmetric "
                        "padding) is not supported")
    y, idx = g.call(_MAX[nd], x, k, s, begin, d, ceil, True)
    if list(y.shape[2:]) != list(out):
        raise NodeError(f"MaxPool Indices with ceil_mode={int(ceil)} here (PyTorch keeps a window ONNX drops) "
                        "is not supported")
    plane = 1
    for n in x.shape[2:]:
        plane *= n
    if order == 1:
        h, w = x.shape[2], x.shape[3]
        idx = g.call(operator.add, g.call(operator.mul, g.call(operator.mod, idx, w), h),
                     g.call(operator.floordiv, idx, w))
    base = torch.arange(x.shape[0] * x.shape[1], dtype=torch.int64).reshape(
        (x.shape[0], x.shape[1]) + (1,) * nd) * plane
    return [y, g.call(operator.add, idx, Const(base, f"{g.node.output[1]}_base"))]


@op("MaxPool")
def max_pool(g: Builder, x: Value) -> Value | list:
    nd, k, s, d, begin, end, ceil, out = _geometry(g, x)
    order = int(g.attr("storage_order", 0))
    if _indices_used(g):
        return _max_pool_with_indices(g, x, nd, k, s, d, begin, end, ceil, out)
    if order not in (0, 1):
        raise NodeError(f"storage_order={order} is not an ONNX value")
    if _fits_torch(k, begin, end):
        y = g.call(_MAX[nd], x, k, s, begin, d, ceil)
        if list(y.shape[2:]) == out:
            return y
    low = float("-inf") if x.dtype.is_floating_point else int(torch.iinfo(x.dtype).min)
    xp = _explicit(g, x, k, s, d, begin, end, out, low)
    return _crop(g, g.call(_MAX[nd], xp, k, s, 0, d, False), out)


@op("AveragePool")
def avg_pool(g: Builder, x: Value) -> Value:
    nd, k, s, d, begin, end, ceil, out = _geometry(g, x)
    include = bool(g.attr("count_include_pad", 0))
    if any(v != 1 for v in d):
        return _dilated_avg_pool(g, x, nd, k, s, d, begin, end, out, include)
    if _fits_torch(k, begin, end):
        y = g.call(_AVG[nd], x, k, s, begin, ceil, include)
        if list(y.shape[2:]) == out:
            return y
    xp = _explicit(g, x, k, s, d, begin, end, out, 0.0)
    y = _crop(g, g.call(_AVG[nd], xp, k, s, 0, False, True), out)
    # PyTorch divided by the kernel area; ONNX divides by the window's clipped size.
    factor = torch.ones((), dtype=torch.float64)
    for i in range(nd):
        n = x.shape[2 + i]
        lo, hi = (-begin[i], n + end[i]) if include else (0, n)
        counts = torch.tensor([min(o * s[i] - begin[i] + k[i], hi) - max(o * s[i] - begin[i], lo)
                               for o in range(out[i])], dtype=torch.float64)
        factor = factor.unsqueeze(-1) * (k[i] / counts.clamp(min=1))
    if torch.all(factor == 1):
        return y
    factor = factor.reshape((1, 1) + tuple(out)).to(x.dtype)
    return g.call(operator.mul, y, Const(factor, f"{g.node.output[0]}_divisor"))


def _dilated_avg_pool(g: Builder, x: Value, nd: int, k, s, d, begin, end, out, include: bool) -> Value:
    """PyTorch's average pooling has no dilations: a depthwise convolution with a dilated kernel
    of ones sums each window, and a constant map divides by its number of taps inside the input
    (or inside the padded input, ``count_include_pad``)."""
    if not x.dtype.is_floating_point:
        raise NodeError(f"AveragePool with dilations={d} on {x.dtype} is not supported")
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    c = x.shape[1]
    xp = _explicit(g, x, k, s, d, begin, end, out, 0.0)
    ones = Const(torch.ones((c, 1) + tuple(k), dtype=x.dtype), f"{g.node.output[0]}_window")
    y = _crop(g, g.call(conv, xp, ones, None, s, 0, d, c), out)
    inv = torch.ones((), dtype=torch.float64)
    for i in range(nd):
        n = x.shape[2 + i]
        lo, hi = (-begin[i], n + end[i]) if include else (0, n)
        counts = torch.tensor([sum(1 for j in range(k[i]) if lo <= o * s[i] - begin[i] + j * d[i] < hi)
                               for o in range(out[i])], dtype=torch.float64)
        inv = inv.unsqueeze(-1) * (1.0 / counts.clamp(min=1))
    inv = inv.reshape((1, 1) + tuple(out)).to(x.dtype)
    return g.call(operator.mul, y, Const(inv, f"{g.node.output[0]}_divisor"))


@op("GlobalAveragePool")
def global_avg_pool(g: Builder, x: Value) -> Value:
    return g.call(torch.mean, x, list(range(2, x.rank)), True)


@op("GlobalMaxPool")
def global_max_pool(g: Builder, x: Value) -> Value:
    return g.call(torch.amax, x, list(range(2, x.rank)), True)
