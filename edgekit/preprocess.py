"""Pre-processing: one specification of how an image becomes a model input, and back.

Every place that feeds images to a model uses :class:`Preprocess`: ``edgekit run``, the camera
demo (its fast OpenCV path is derived from the same object), verification's photo case and the
int8 calibration photos; the folded pre-processing of ``--fold-preprocess`` is built from it too.
It needs only NumPy (OpenCV, when installed, only makes the resize faster and computes the same
thing). The web app's JavaScript and the mobile metadata are tested against it.

The specification, step by step (``to_tensor``; ``from_tensor`` undoes steps 3–7 for an image
output):

====  =============  ===================================================================================
step  what           rule
====  =============  ===================================================================================
1     input          an ``H x W x 3`` uint8 RGB image (grey images are expanded by the readers)
2     geometry       by the resize policy, when the model's size (``h x w``) is fixed:
                     ``crop``: centre crop to the model's aspect ratio, then resize to ``h x w``;
                     ``stretch``: resize to ``h x w`` (aspect not kept);
                     ``pad``: resize to fit inside ``h x w`` keeping the aspect, centre it, fill the
                     rest with 0 (letterbox);
                     ``native``: the image keeps its size and the model runs at it
                     (:class:`edgekit.tiling.ImageRunner`: as declared when its ``H``/``W`` are
                     dynamic, else with the runtime's input resized when the session can and the
                     outputs scale, else in ``h x w`` tiles overlapping by the receptive field);
                     ``tile``: the image keeps its size and always runs in tiles.
                     ``native`` and ``tile`` keep the size only for a caller that runs any size
                     (``any_size=True``); one input of the model's own size (verification's
                     photo case, int8 calibration, a model that can be neither resized nor
                     tiled) is cut as by ``crop``. A model of any size (dynamic ``H``/``W``) takes
                     the image as it is. Crop and pad offsets: ``(W - cw) // 2``; lengths
                     ``floor(x + 0.5)`` (not banker's rounding), at least 1.
                     Default policy by task: classify ``crop``, super-resolve ``native``, others
                     ``stretch``; the manifest's ``preprocess.resize`` overrides it.
3     resize         area average (box filter over the exact source footprint) when the output is
                     no larger than the input in both directions, else bilinear with half-pixel
                     centres (clamped at the edges); uint8 results round half to even.
4     colour         3 channels: RGB, or flipped to BGR when ``color_order`` is BGR. 1 channel:
                     BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, rounded to uint8.
5     values         float inputs: ``x = px * a + b`` per channel with, in float64,
                     ``a = (hi - lo) / 255 / std`` and ``b = (lo - mean) / std``, i.e.
                     ``((px / 255) * (hi - lo) + lo - mean) / std`` (``value_range = [lo, hi]``,
                     default ``[0, 1]``; ``mean`` 0 and ``std`` 1 when absent), then cast to the
                     input dtype. uint8 inputs: the pixels. int8 inputs: ``px - 128``.
                     Folded models (``preprocess.folded``): the artifact normalises itself;
                     values are ``input_value_range`` (default ``[0, 255]``) in
                     ``input_color_order``, with no mean/std.
6     layout         NCHW / NHWC / CHW / HWC from the input's declared layout, else the
                     manifest's, else the position of a 1- or 3-sized axis; a batch of 1.
====  =============  ===================================================================================

``from_tensor``: the first image of a batch, to ``H x W x C``; float values mapped from the
source's ``value_range`` to 0..255 (``(y - lo) * 255 / (hi - lo)``), clipped, rounded half to
even; uint8 as they are; flipped back to RGB when the source's ``color_order`` is BGR.

Example::

    >>> pre = Preprocess.for_input((1, 3, 224, 224), "float32", "NCHW",
    ...                            {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "classify")
    >>> x, notes = pre.to_tensor(np.zeros((480, 640, 3), np.uint8))
    >>> x.shape, notes[0]
    ((1, 3, 224, 224), 'centre crop 640x480 -> 480x480, area resize to 224x224')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import UsageError

__all__ = ["Preprocess", "RESIZE_POLICIES", "SIZE_KEEPING", "DEFAULT_POLICY", "resize", "crop_box", "guess_layout",
           "image_layout", "LUMA"]

RESIZE_POLICIES = ("crop", "stretch", "pad", "native", "tile")
SIZE_KEEPING = ("native", "tile")  # the image keeps its size when the caller runs any size
DEFAULT_POLICY = {"classify": "crop", "super-resolve": "native"}  # every other task: stretch
LUMA = (0.299, 0.587, 0.114)  # BT.601
IMAGE_LAYOUTS = ("NCHW", "NHWC", "CHW", "HWC")


def _round(x: float) -> int:
    """floor(x + 0.5): the same in Python, NumPy and JavaScript (``Math.round``)."""
    return int(math.floor(x + 0.5))


# -- step 2: geometry -------------------------------------------------------------------------------
def crop_box(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """``(y0, x0, h, w)`` of the centre crop of a ``height x width`` image to the aspect ratio of
    ``out_h x out_w``."""
    if width * out_h > out_w * height:  # wider than the model: trim the sides
        cw = max(1, _round(height * out_w / out_h))
        return 0, (width - cw) // 2, height, cw
    ch = max(1, _round(width * out_h / out_w))
    return (height - ch) // 2, 0, ch, width


def _fit(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int]:
    """The largest ``(h, w)`` with the image's aspect that fits in ``out_h x out_w``."""
    s = min(out_h / height, out_w / width)
    return max(1, min(out_h, _round(height * s))), max(1, min(out_w, _round(width * s)))


# -- step 3: resize -----------------------------------------------------------------------------------
def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: the share of each source pixel in each output pixel's footprint."""
    scale = n_in / n_out
    lo = np.arange(n_out) * scale
    hi = lo + scale
    k = np.arange(n_in)
    overlap = np.clip(np.minimum(hi[:, None], k[None, :] + 1) - np.maximum(lo[:, None], k[None, :]), 0, None)
    return overlap / scale


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: half-pixel-centre linear interpolation, clamped at the edges."""
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    f = x - lo
    w = np.zeros((n_out, n_in))
    np.add.at(w, (np.arange(n_out), lo), 1 - f)
    np.add.at(w, (np.arange(n_out), hi), f)
    return w


def resize(img: np.ndarray, height: int, width: int, use_opencv: bool = True) -> np.ndarray:
    """Resize ``H x W x C`` (uint8 or float) to ``height x width`` by step 3 of the table; the
    dtype is kept. NumPy computes the reference; OpenCV (``INTER_AREA`` / ``INTER_LINEAR``, the
    same filters) is used when installed and ``use_opencv``, for speed (uint8 results may differ
    from NumPy's by one level where OpenCV's fixed point rounds the other way)."""
    if img.ndim != 3:
        raise UsageError(f"resize expects an HxWxC image, got shape {list(img.shape)}")
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    area = height <= h and width <= w
    if use_opencv and img.shape[2] <= 4 and img.dtype in (np.uint8, np.float32):
        try:
            import cv2
        except ImportError:
            cv2 = None
        if cv2 is not None:
            out = cv2.resize(np.ascontiguousarray(img), (width, height),
                             interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
            return out.reshape(height, width, img.shape[2])
    weights = _area_weights if area else _bilinear_weights
    wy, wx = weights(h, height), weights(w, width)
    out = np.einsum("oh,hwc->owc", wy, img.astype(np.float64))
    out = np.einsum("pw,owc->opc", wx, out)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(img.dtype)


# -- step 6: layouts ------------------------------------------------------------------------------------
def guess_layout(shape: Sequence[Any]) -> str | None:
    """NCHW / NHWC (CHW / HWC) from where a 1- or 3-sized channel axis sits, else None."""
    rank = len(shape)

    def is_c(d: object) -> bool:
        return d in (1, 3)

    if rank == 4:
        if is_c(shape[1]) and not is_c(shape[3]):
            return "NCHW"
        if is_c(shape[3]) and not is_c(shape[1]):
            return "NHWC"
        if is_c(shape[1]) and is_c(shape[3]):
            return "NCHW" if shape[1] == 3 else "NHWC"
    if rank == 3:
        if is_c(shape[0]) and not is_c(shape[2]):
            return "CHW"
        if is_c(shape[2]):
            return "HWC"
    return None


def image_layout(shape: Sequence[Any], layout: str | None) -> str | None:
    """The image layout of a tensor from its declared layout or its shape; None when the tensor
    is not image-like (logits, latents, a channel count other than 1 or 3)."""
    rank = len(shape)
    if layout in IMAGE_LAYOUTS and len(layout) == rank:
        c = shape[layout.index("C")]
        return layout if (c in (1, 3) or not isinstance(c, int)) else None
    if layout is not None and layout not in IMAGE_LAYOUTS:
        return None
    return guess_layout(tuple(shape))


def _size_of(value: Any, layout: str) -> tuple[int, int] | None:
    """``preprocess.input_size`` as ``(H, W)``: ``[H, W]``, one int, or a full input shape."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        if len(value) == 2:
            return int(value[0]), int(value[1])
        if len(value) == len(layout):
            return int(value[layout.index("H")]), int(value[layout.index("W")])
    return None


# -- the spec -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    """How one image input is fed (see the module's table). ``size`` is ``(H, W)`` or None
    (the model takes any size); ``value_range``, ``mean`` and ``std`` describe float inputs
    (for a folded model: the raw-pixel range, no mean/std)."""

    layout: str = "NCHW"
    size: tuple[int, int] | None = None
    channels: int = 3
    dtype: str = "float32"
    color_order: str = "RGB"
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    policy: str = "crop"
    folded: bool = False
    output_range: tuple[float, float] = (0.0, 1.0)  # value range of image outputs (the source's)
    output_color_order: str = "RGB"  # colour order of image outputs (the source's)

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def for_input(cls, shape: Sequence[Any], dtype: str, layout: str | None,
                  preprocess: Mapping[str, Any] | None = None, task: str | None = None) -> "Preprocess":
        """The spec for a model input of ``shape``/``dtype``/``layout`` given a manifest's (or a
        model card's) ``preprocess`` section and task. A usage error when the input is not an
        image or the section is inconsistent."""
        pre = dict(preprocess or {})
        lay = image_layout(tuple(shape), layout or pre.get("layout"))
        if lay is None:
            raise UsageError(f"the model input of shape {list(shape)} is not an image",
                             hint="pass the input as a .npy (or .npz with one array per input)")
        c = shape[lay.index("C")]
        channels = c if isinstance(c, int) and c > 0 else 3
        h, w = shape[lay.index("H")], shape[lay.index("W")]
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            size: tuple[int, int] | None = (h, w)
        else:  # dynamic: the size it was exported and verified at, if the manifest says; else any
            size = _size_of(pre.get("input_size"), lay)
        policy = pre.get("resize") or DEFAULT_POLICY.get(task or "", "stretch")
        if policy not in RESIZE_POLICIES:
            raise UsageError(f"unknown resize policy '{policy}'", hint=f"use one of {', '.join(RESIZE_POLICIES)}")
        folded = bool(pre.get("folded"))
        source_range = tuple(float(v) for v in (pre.get("value_range") or (0.0, 1.0)))
        if folded:
            value_range = tuple(float(v) for v in pre.get("input_value_range", (0.0, 255.0)))
            color, mean, std = str(pre.get("input_color_order", "RGB")), None, None
        else:
            value_range = source_range
            color = str(pre.get("color_order") or "RGB")
            mean = tuple(float(v) for v in pre["mean"]) if pre.get("mean") is not None else None
            std = tuple(float(v) for v in pre["std"]) if pre.get("std") is not None else None
        spec = cls(lay, size, channels, str(dtype), color.upper(), value_range, mean, std, policy, folded,
                   output_range=source_range, output_color_order=str(pre.get("color_order") or "RGB").upper())
        spec.affine()  # refuse inconsistent mean/std now, not at the first frame
        return spec

    @classmethod
    def for_output(cls, preprocess: Mapping[str, Any] | None = None) -> "Preprocess":
        """The spec that turns image outputs back into pictures (``from_tensor``): the source's
        ``value_range`` and ``color_order``."""
        pre = dict(preprocess or {})
        rng = tuple(float(v) for v in (pre.get("value_range") or (0.0, 1.0)))
        order = str(pre.get("color_order") or "RGB").upper()
        return cls(color_order=order, value_range=rng, output_range=rng, output_color_order=order)

    # -- step 5 as numbers (the fold and the OpenCV fast path use these) --------------------------------
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(a, b)`` in float64 with ``input = px * a + b`` (``px`` in 0..255, in the
        model's colour order)."""
        lo, hi = self.value_range
        n = self.channels
        mean = np.asarray(self.mean if self.mean is not None else [0.0], np.float64).reshape(-1)
        std = np.asarray(self.std if self.std is not None else [1.0], np.float64).reshape(-1)
        if mean.size not in (1, n) or std.size not in (1, n):
            raise UsageError(f"preprocess mean/std have {mean.size}/{std.size} values for a {n}-channel input",
                             hint="fix preprocess.mean/std in edgekit.json")
        mean, std = np.broadcast_to(mean, (n,)), np.broadcast_to(std, (n,))
        if np.any(std == 0) or hi == lo:
            raise UsageError("preprocess has a zero std or an empty value_range", hint="fix edgekit.json")
        return (hi - lo) / 255.0 / std, (lo - mean) / std

    @property
    def keeps_size(self) -> bool:
        """The policy keeps the image's size (``native``, ``tile``) for a caller that runs any size."""
        return self.policy in SIZE_KEEPING

    # -- the steps --------------------------------------------------------------------------------------
    def geometry(self, image: np.ndarray, any_size: bool = False) -> tuple[np.ndarray, str | None]:
        """Steps 2–3: the image at the size the model runs it (uint8 ``H x W x C``) and what was
        done. ``any_size``: the caller runs the model at any input size
        (:class:`edgekit.tiling.ImageRunner`), so ``native``/``tile`` keep the image as it is;
        without it they cut one input of the model's size, as ``crop``."""
        if self.size is None or (any_size and self.keeps_size):
            return image, None
        out_h, out_w = self.size
        h, w = image.shape[:2]
        if (h, w) == (out_h, out_w):
            return image, None
        if self.policy in ("crop", *SIZE_KEEPING):
            y0, x0, ch, cw = crop_box(h, w, out_h, out_w)
            img = image[y0:y0 + ch, x0:x0 + cw]
            text = f"centre crop {w}x{h} -> {cw}x{ch}, " if (ch, cw) != (h, w) else ""
        elif self.policy == "pad":
            fh, fw = _fit(h, w, out_h, out_w)
            small = resize(image, fh, fw)
            img = np.zeros((out_h, out_w, image.shape[2]), image.dtype)
            y0, x0 = (out_h - fh) // 2, (out_w - fw) // 2
            img[y0:y0 + fh, x0:x0 + fw] = small
            kind = "area" if fh <= h and fw <= w else "bilinear"
            return img, f"{kind} resize {w}x{h} -> {fw}x{fh}, padded to {out_w}x{out_h}"
        else:
            img, text = image, ""
        kind = "area" if out_h <= img.shape[0] and out_w <= img.shape[1] else "bilinear"
        return resize(img, out_h, out_w), f"{text}{kind} resize to {out_w}x{out_h}"

    def encode(self, image: np.ndarray) -> np.ndarray:
        """Steps 4–6 on an image already at the model's size: the input tensor."""
        img = image
        if self.channels == 1:
            grey = img.astype(np.float64) @ np.asarray(LUMA)
            img = np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, :, None]
        elif self.color_order == "BGR":
            img = img[:, :, ::-1]
        dt = np.dtype(self.dtype)
        if dt == np.uint8:
            x = img
        elif dt == np.int8:
            x = (img.astype(np.int16) - 128).astype(np.int8)
        elif dt.kind == "f":
            a, b = self.affine()
            x = (img.astype(np.float64) * a + b).astype(dt)
        else:
            raise UsageError(f"cannot feed an image to a {self.dtype} input", hint="pass the input as a .npy")
        if self.layout in ("NCHW", "CHW"):
            x = np.transpose(x, (2, 0, 1))
        if self.layout.startswith("N"):
            x = x[None]
        return np.ascontiguousarray(x)

    def to_tensor(self, image: np.ndarray, any_size: bool = False) -> tuple[np.ndarray, list[str]]:
        """An ``H x W x 3`` uint8 RGB image → the model's input tensor, and notes on what was done
        (``any_size`` as in :meth:`geometry`)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UsageError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {list(image.shape)}")
        img, note = self.geometry(image, any_size)
        return self.encode(img), self.describe(note)

    def describe(self, geometry_note: str | None = None) -> list[str]:
        notes = [geometry_note] if geometry_note else []
        if self.channels == 1:
            notes.append("grey (BT.601 luma)")
        elif self.color_order == "BGR":
            notes.append("BGR channel order")
        dt = np.dtype(self.dtype)
        if dt == np.uint8:
            notes.append("raw uint8 pixels")
        elif dt == np.int8:
            notes.append("int8 pixels (value - 128)")
        else:
            lo, hi = self.value_range
            text = f"scaled to [{lo:g}, {hi:g}]"
            if self.mean is not None or self.std is not None:
                text += f", (x - mean {list(self.mean or [0])}) / std {list(self.std or [1])}"
            notes.append(text)
        return notes

    def from_tensor(self, output: np.ndarray, layout: str | None = None) -> np.ndarray:
        """An image-like output → ``H x W x C`` uint8 RGB (``from_tensor`` row of the table)."""
        lay = image_layout(tuple(output.shape), layout)
        if lay is None:
            raise UsageError(f"an output of shape {list(output.shape)} is not an image",
                             hint="save it as .npy or .npz")
        arr = output
        if lay.startswith("N"):
            arr, lay = arr[0], lay[1:]
        if lay == "CHW":
            arr = np.transpose(arr, (1, 2, 0))
        if arr.dtype == np.uint8:
            img = arr
        else:
            lo, hi = self.output_range
            img = np.clip(np.rint((arr.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
        if img.shape[2] == 3 and self.output_color_order == "BGR":
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img)
