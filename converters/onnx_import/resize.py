"""Resize (opsets 10–19) and Upsample (opsets 7–9).

ONNX Resize is separable: along each axis an output index maps to a source coordinate
(``coordinate_transformation_mode``), which picks one source pixel (``nearest`` with its
``nearest_mode``) or blends two or four (``linear``, ``cubic``). The importer computes that
mapping per axis at import time — an index list for nearest, an ``out × in`` weight matrix
otherwise — following the spec and ONNX Runtime's float32 arithmetic, then:

1. compares it with what ``F.interpolate`` would compute (``nearest``, ``nearest-exact``,
   ``(bi|tri)linear`` and ``bicubic``, with or without ``align_corners``, given ``size`` or
   ``scale_factor``) and emits that call when they agree — the common case, and the one
   TFLite/CoreML map to their resize ops;
2. otherwise emits the mapping itself: ``index_select`` per axis for nearest, a constant
   ``F.linear`` per axis for linear/cubic. Exact, if slower on an accelerator.

Antialiased downscaling (``antialias=1``, opset 18) stretches the linear or cubic kernel by
1/scale (:func:`antialias_matrix`) and always takes the second form. ``tf_crop_and_resize``
takes it too: the ``roi`` box spreads the output over part of the input (:func:`crop_coords`),
and outputs falling outside the input take ``extrapolation_value``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.converters.onnx_import.builder import Builder, Const, NodeError, Value
from edgekit.converters.onnx_import.table import axis_of, op

f32 = np.float32


def source_coords(mode: str, n_in: int, n_out: int, scale: float) -> np.ndarray:
    """ONNX's source coordinate of every output index along one axis (float32, like ORT)."""
    o = np.arange(n_out, dtype=f32)
    s = f32(scale)
    if mode == "half_pixel":
        return (o + f32(0.5)) / s - f32(0.5)
    if mode == "pytorch_half_pixel":
        return (o + f32(0.5)) / s - f32(0.5) if n_out > 1 else np.zeros(n_out, f32)
    if mode == "half_pixel_symmetric":
        adj = f32(n_out) / (s * f32(n_in))
        offset = f32(n_in) / f32(2) * (f32(1) - adj)
        return offset + (o + f32(0.5)) / s - f32(0.5)
    if mode == "align_corners":
        return o * f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else np.zeros(n_out, f32)
    if mode == "asymmetric":
        return o / s
    if mode == "tf_half_pixel_for_nn":
        return (o + f32(0.5)) / s
    raise NodeError(f"coordinate_transformation_mode={mode!r} is not an ONNX value")


def crop_coords(n_in: int, n_out: int, start: float, end: float) -> np.ndarray:
    """``tf_crop_and_resize``: output indices spread over the box [start, end] (fractions of the
    input's extent, float32 like ORT)."""
    o = np.arange(n_out, dtype=f32)
    a, b, m = f32(start), f32(end), f32(n_in - 1)
    if n_out > 1:
        return a * m + (o * (b - a) * m) / f32(n_out - 1)
    return np.full(n_out, f32(0.5) * (a + b) * m, dtype=f32)


def nearest_index(x: np.ndarray, mode: str, n_in: int, scale: float) -> np.ndarray:
    if mode == "round_prefer_floor":
        i = np.where(x == np.trunc(x) + f32(0.5), np.floor(x), np.sign(x) * np.floor(np.abs(x) + f32(0.5)))
    elif mode == "round_prefer_ceil":
        i = np.sign(x) * np.floor(np.abs(x) + f32(0.5))  # std::round: halves away from zero
    elif mode == "floor":
        i = np.floor(x)
    elif mode == "ceil":
        i = np.ceil(x)
    elif mode == "simple":  # opsets < 11: ceil when downscaling, else truncate
        i = np.ceil(x) if scale < 1 else np.trunc(x)
    else:
        raise NodeError(f"nearest_mode={mode!r} is not an ONNX value")
    return np.clip(i, 0, n_in - 1).astype(np.int64)


def linear_matrix(x: np.ndarray, n_in: int) -> np.ndarray:
    """Weights of ORT's linear resize: the coordinate clamped into the input, two taps."""
    x = np.clip(x, 0, n_in - 1)
    i0 = np.minimum(np.trunc(x).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    d0, d1 = np.abs(x - i0), np.abs(x - i1)
    same = i0 == i1
    d0, d1 = np.where(same, 0.5, d0), np.where(same, 0.5, d1)
    m = np.zeros((len(x), n_in))
    rows = np.arange(len(x))
    np.add.at(m, (rows, i0), d1)
    np.add.at(m, (rows, i1), d0)
    return m


def cubic_matrix(x: np.ndarray, n_in: int, a: float, exclude_outside: bool) -> np.ndarray:
    """Weights of the cubic convolution (Keys, 1981) with coefficient ``a``; taps outside the
    input are clamped to the edge, or dropped and the rest renormalised (exclude_outside)."""
    x = x.astype(np.float64)
    xi = np.floor(x)
    t = x - xi
    ts = np.stack([t + 1, t, 1 - t, 2 - t], 1)
    w = np.where(ts <= 1, ((a + 2) * ts - (a + 3)) * ts * ts + 1, ((a * ts - 5 * a) * ts + 8 * a) * ts - 4 * a)
    idx = xi[:, None].astype(np.int64) + np.arange(-1, 3)[None]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        w = w / w.sum(1, keepdims=True)
    m = np.zeros((len(x), n_in))
    rows = np.repeat(np.arange(len(x)), 4)
    np.add.at(m, (rows, np.clip(idx, 0, n_in - 1).reshape(-1)), w.reshape(-1))
    return m


def _keys(t: np.ndarray, a: float) -> np.ndarray:
    """The cubic convolution kernel (Keys) at distances ``|t|``: zero from 2 on."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def antialias_matrix(x: np.ndarray, n_in: int, mode: str, scale: float, a: float,
                     exclude_outside: bool) -> np.ndarray:
    """Weights of ONNX's antialiased linear/cubic resize along one axis (``scale`` < 1): the
    kernel stretched by 1/scale, so each output averages every input it covers. Taps sit at
    whole offsets from the coordinate's left neighbour (the coordinate itself when it is whole),
    are normalised to sum to one, and outside the input are clamped to the edge (or dropped and
    the rest renormalised, ``exclude_outside``)."""
    x = x.astype(np.float64)
    s = min(float(scale), 1.0)
    support = 1.0 if mode == "linear" else 2.0
    start = int(np.floor(-support / s) + 1)
    offs = np.arange(start, 2 - start)
    fl = np.floor(x)
    ratio = np.where(x == fl, 1.0, x - fl)
    base = np.rint(x - ratio).astype(np.int64)
    t = (offs[None, :] - ratio[:, None]) * s
    w = np.clip(1 - np.abs(t), 0, 1) if mode == "linear" else _keys(t, a)
    w = w / w.sum(1, keepdims=True)
    idx = base[:, None] + offs[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    m = np.zeros((len(x), n_in))
    rows = np.repeat(np.arange(len(x)), len(offs))
    np.add.at(m, (rows, np.clip(idx, 0, n_in - 1).reshape(-1)), w.reshape(-1))
    return m


# ---------------------------------------------------------------------------- what F.interpolate does


def _torch_scale(n_in: int, n_out: int, align_corners: bool, scale_factor: float | None) -> np.float32:
    if align_corners:
        return f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
    if scale_factor is not None and scale_factor > 0:
        return f32(1.0 / scale_factor)
    return f32(n_in) / f32(n_out)


def torch_mapping(kind: str, n_in: int, n_out: int, align: bool, sf: float | None) -> np.ndarray:
    """Index list (nearest kinds) or weight matrix (others) PyTorch's CPU kernels use."""
    o = np.arange(n_out)
    s = _torch_scale(n_in, n_out, align, sf)
    if kind == "nearest":
        if n_out == n_in:
            return o.astype(np.int64)
        if n_out == 2 * n_in:
            return (o >> 1).astype(np.int64)
        return np.minimum(np.floor(o.astype(f32) * s), n_in - 1).astype(np.int64)
    if kind == "nearest-exact":
        return np.minimum(np.floor(((o + 0.5) * s).astype(f32)), n_in - 1).astype(np.int64)
    src = o.astype(f32) * s if align else s * (o.astype(f32) + f32(0.5)) - f32(0.5)
    if kind == "linear":
        src = np.maximum(src, 0) if not align else src
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        lam = np.clip(src - i0, 0, 1)
        i1 = i0 + (i0 < n_in - 1)
        m = np.zeros((n_out, n_in))
        np.add.at(m, (o, i0), 1 - lam)
        np.add.at(m, (o, i1), lam)
        return m
    return cubic_matrix(src, n_in, -0.75, False)  # bicubic


_LINEAR_NAME = {3: "linear", 4: "bilinear", 5: "trilinear"}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "i":
        return bool(np.array_equal(a, b))
    return bool(np.allclose(a, b, atol=1e-6, rtol=0))


def emit_resize(g: Builder, x: Value, out: list[int], scales: list[float], given_scales: bool,
                mode: str, coord: str, nearest_mode: str, cubic_a: float, exclude_outside: bool,
                antialias: bool = False, roi: list[tuple[float, float]] | None = None,
                extrapolation: float = 0.0) -> Value:
    rank = x.rank
    if mode not in ("nearest", "linear", "cubic"):
        raise NodeError(f"Resize mode {mode!r} is not an ONNX value")
    # The ONNX mapping per axis (None: the axis is left as it is).
    maps: list[np.ndarray | None] = []
    crop = coord == "tf_crop_and_resize"
    outside = np.zeros(out, dtype=bool)  # tf_crop_and_resize: outputs outside the input
    for ax in range(rank):
        n_in, n_out, s = x.shape[ax], out[ax], scales[ax]
        box = roi[ax] if crop and roi is not None else (0.0, 1.0)
        if n_out == n_in and s == 1 and box == (0.0, 1.0):
            maps.append(None)
            continue
        if crop:
            src = crop_coords(n_in, n_out, *box)
            shape = [1] * rank
            shape[ax] = n_out
            outside |= ((src < 0) | (src > f32(n_in - 1))).reshape(shape)
        else:
            src = source_coords(coord, n_in, n_out, s)
        if mode == "nearest":
            maps.append(nearest_index(src, nearest_mode, n_in, s))
        elif antialias and s < 1:
            maps.append(antialias_matrix(src, n_in, mode, s, cubic_a, exclude_outside))
        elif mode == "linear":
            maps.append(linear_matrix(src, n_in))
        else:
            maps.append(cubic_matrix(src, n_in, cubic_a, exclude_outside))

    def identity(ax: int) -> np.ndarray:
        n = x.shape[ax]
        return np.arange(n) if mode == "nearest" else np.eye(n)

    # 1. One F.interpolate call when it computes the same mapping on every axis (antialiased
    # downscaling always takes the matrices: PyTorch's antialias kernels do not export everywhere).
    downscaled = any(out[ax] < x.shape[ax] for ax in range(rank))
    if not crop and not (antialias and downscaled and mode != "nearest") and 3 <= rank <= 5 and all(m is None for m in maps[:2]) and any(m is not None for m in maps):
        if mode == "nearest":
            kinds = [("nearest", None), ("nearest-exact", None)]
        elif mode == "linear":
            kinds = [("linear", False), ("linear", True)]
        else:
            kinds = [("cubic", False), ("cubic", True)] if rank == 4 and cubic_a == -0.75 and not exclude_outside else []
        sizes = [out[ax] for ax in range(2, rank)]
        styles: list[tuple[str, list]] = [("size", sizes)]
        if given_scales:
            styles.append(("scale_factor", [float(scales[ax]) for ax in range(2, rank)]))
        for kind, align in kinds:
            for style, arg in styles:
                ok = True
                for ax in range(2, rank):
                    sf = arg[ax - 2] if style == "scale_factor" else None
                    want = maps[ax] if maps[ax] is not None else identity(ax)
                    if not _same(torch_mapping(kind, x.shape[ax], out[ax], bool(align), sf), want):
                        ok = False
                        break
                if not ok:
                    continue
                tmode = {"linear": _LINEAR_NAME[rank], "cubic": "bicubic"}.get(kind, kind)
                kw = {style: tuple(arg), "mode": tmode}
                if align is not None:
                    kw["align_corners"] = align
                return g.call(F.interpolate, x, **kw)

    # 2. The mapping itself, axis by axis.
    y = x
    for ax, m in enumerate(maps):
        if m is None:
            continue
        if mode == "nearest":
            y = g.call(torch.index_select, y, ax, Const(torch.from_numpy(m), f"{g.node.output[0]}_index{ax}"))
        else:
            w = Const(torch.from_numpy(m).to(x.dtype if x.dtype.is_floating_point else torch.float32),
                      f"{g.node.output[0]}_weights{ax}")
            moved = g.call(torch.movedim, y, ax, -1) if ax != rank - 1 else y
            moved = g.call(F.linear, moved, w)
            y = g.call(torch.movedim, moved, -1, ax) if ax != rank - 1 else moved
    if outside.any():
        y = g.method("masked_fill", y, Const(torch.from_numpy(outside), f"{g.node.output[0]}_outside"),
                     float(extrapolation))
    return y


def _float_list(g: Builder, v: Value | None, what: str) -> list[float] | None:
    if v is None or int(np.prod(v.shape)) == 0:
        return None
    return [float(f32(s)) for s in g.floats(v, what)]


@op("Resize")
def resize(g: Builder, x: Value, *rest: Value | None) -> Value:
    rest = tuple(rest) + (None,) * 3
    mode = g.attr("mode", "nearest")
    if g.opset < 11:
        scales, sizes = _float_list(g, rest[0], "scales"), None
        coord, nearest_mode = "asymmetric", "simple"
    else:
        scales = _float_list(g, rest[1], "scales")
        sizes = None if rest[2] is None or int(np.prod(rest[2].shape)) == 0 else g.ints(rest[2], "sizes")
        coord = g.attr("coordinate_transformation_mode", "half_pixel")
        nearest_mode = g.attr("nearest_mode", "round_prefer_floor")
    if (scales is None) == (sizes is None):
        raise NodeError("Resize needs exactly one of scales and sizes")
    rank = x.rank
    axes = [axis_of(a, rank) for a in g.attr("axes", list(range(rank)))]
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise NodeError(f"{'scales' if scales else 'sizes'} has {len(given)} values for {len(axes)} axes")
    full_scales = [1.0] * rank
    out = list(x.shape)
    policy = g.attr("keep_aspect_ratio_policy", "stretch")  # read always: it only matters with sizes
    if sizes is not None:
        if policy == "stretch":
            for a, s in zip(axes, sizes):
                out[a] = s
                full_scales[a] = float(f32(s) / f32(x.shape[a]))
        elif policy in ("not_larger", "not_smaller"):
            ratios = [f32(s) / f32(x.shape[a]) for a, s in zip(axes, sizes)]
            r = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out[a] = int(np.floor(r * f32(x.shape[a]) + f32(0.5)))
                full_scales[a] = float(r)
        else:
            raise NodeError(f"keep_aspect_ratio_policy={policy!r} is not an ONNX value")
    else:
        for a, s in zip(axes, scales):
            if s <= 0:
                raise NodeError(f"scale {s} is not positive")
            full_scales[a] = s
            out[a] = int(f32(s) * f32(x.shape[a]))
    roi = None
    if coord == "tf_crop_and_resize":
        if rest[0] is None or int(np.prod(rest[0].shape)) == 0:
            raise NodeError("coordinate_transformation_mode='tf_crop_and_resize' needs the 'roi' input (the crop box)")
        box = g.floats(rest[0], "roi")
        if len(box) != 2 * len(axes):
            raise NodeError(f"roi has {len(box)} values; tf_crop_and_resize over {len(axes)} axes needs {2 * len(axes)}")
        roi = [(0.0, 1.0)] * rank
        for i, a in enumerate(axes):
            roi[a] = (box[i], box[len(axes) + i])
    if coord in ("align_corners", "tf_crop_and_resize") and scales is not None:
        for a, sc in zip(axes, scales):
            if f32(sc) * f32(x.shape[a]) != out[a]:
                # The spec maps with the output length in*scale, ONNX Runtime with the whole output
                # size: the two disagree when in*scale is not whole, so neither is guessed.
                raise NodeError(f"coordinate_transformation_mode={coord!r} with scale {sc:g} on an axis of "
                                f"{x.shape[a]} (output size {f32(sc) * f32(x.shape[a]):g} is not whole) is not "
                                "supported: ONNX's reference and ONNX Runtime map it differently",
                                hint="give the Resize sizes instead of scales")
    antialias = bool(int(g.attr("antialias", 0)))
    return emit_resize(g, x, out, full_scales, scales is not None, mode, coord, nearest_mode,
                       float(g.attr("cubic_coeff_a", -0.75)), bool(g.attr("exclude_outside", 0)), antialias,
                       roi, float(g.attr("extrapolation_value", 0.0)))


@op("Upsample")
def upsample(g: Builder, x: Value, scales_: Value | None = None) -> Value:
    scales = list(g.attr("scales")) if g.opset < 9 else _float_list(g, scales_, "scales")
    if not scales or len(scales) != x.rank:
        raise NodeError(f"Upsample needs {x.rank} scales, got {scales}")
    mode = {"bilinear": "linear"}.get(g.attr("mode", "nearest"), g.attr("mode", "nearest"))
    scales = [float(f32(s)) for s in scales]
    out = [int(f32(s) * f32(n)) for s, n in zip(scales, x.shape)]
    return emit_resize(g, x, out, scales, True, mode, "asymmetric", "simple", -0.75, False)
