"""Read, resize and write images without requiring OpenCV.

The runtime side must work on a Raspberry Pi with only numpy and one backend, so images are
read with whichever of OpenCV (``cv2``) or Pillow is installed, and resized with OpenCV when
present, else with a small numpy bilinear resize (half-pixel centres, the convention of
``cv2.INTER_LINEAR`` and ``torch.nn.functional.interpolate(align_corners=False)``). Arrays are
always ``HxWx3`` uint8 in RGB order (``HxWx1`` for grey), whatever library read them.

Example::

    >>> rgb = read_image("cat.jpg")                  # doctest: +SKIP
    >>> small = resize(rgb, 224, 224)                # doctest: +SKIP
    >>> write_image("small.png", small)              # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekit._fs import atomic_path
from edgekit.errors import InvalidModelFile, MissingDependency, ModelFileNotFound, UsageError

__all__ = ["IMAGE_SUFFIXES", "is_image_path", "read_image", "resize", "write_image", "image_layout", "image_to_tensor",
           "tensor_to_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _pil():
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``HxWx3`` uint8 RGB (alpha dropped, grey expanded to three channels)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileNotFound(path, hint="check the image path")
    if path.is_dir():
        raise UsageError("is a folder, not an image", where=path)
    cv2, image_mod = _cv2(), _pil()
    if cv2 is not None:
        data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also copes with non-ASCII paths
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None:
            raise InvalidModelFile(path, "not an image OpenCV can decode", hint="pass a PNG or JPEG file")
        return np.ascontiguousarray(img[:, :, ::-1])
    if image_mod is not None:
        try:
            with image_mod.open(path) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        except (OSError, ValueError, SyntaxError) as e:
            raise InvalidModelFile(path, f"not an image Pillow can decode ({e})", hint="pass a PNG or JPEG file") from None
    raise MissingDependency("pillow", "reading image files")


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``HxWxC`` (any dtype) to ``height x width``; returns the input dtype.

    Uses ``cv2.resize`` (INTER_AREA when shrinking, which avoids aliasing; INTER_LINEAR when
    enlarging) when OpenCV is present, else :func:`_resize_bilinear`.
    """
    if img.ndim != 3:
        raise UsageError(f"resize expects an HxWxC image, got shape {list(img.shape)}")
    if img.shape[0] == height and img.shape[1] == width:
        return img
    cv2 = _cv2()
    if cv2 is not None and img.shape[2] <= 4 and img.dtype in (np.uint8, np.float32):
        shrink = height < img.shape[0] and width < img.shape[1]
        out = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return out.reshape(height, width, img.shape[2])
    return _resize_bilinear(img, height, width)


def _resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear interpolation with half-pixel centres in plain numpy (no anti-aliasing)."""
    h, w = img.shape[:2]

    def coords(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (x - lo)

    y0, y1, fy = coords(height, h)
    x0, x1, fx = coords(width, w)
    src = img.astype(np.float64)
    top = src[y0][:, x0] * (1 - fx)[None, :, None] + src[y0][:, x1] * fx[None, :, None]
    bottom = src[y1][:, x0] * (1 - fx)[None, :, None] + src[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(img.dtype)


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write ``HxWx3`` (RGB) or ``HxWx1``/``HxW`` uint8 to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"unknown image suffix '{path.suffix}'", where=path, hint=f"use one of {', '.join(IMAGE_SUFFIXES)}")
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise UsageError(f"write_image expects HxWx3 or HxW uint8, got {img.dtype} {list(img.shape)}", where=path)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells Pillow the format
        cv2, image_mod = _cv2(), _pil()
        if cv2 is not None:
            ok, encoded = cv2.imencode(path.suffix.lower(), img[:, :, ::-1] if img.ndim == 3 else img)
            if not ok:
                raise UsageError(f"OpenCV cannot encode {path.suffix} images", where=path)
            encoded.tofile(str(tmp))
        elif image_mod is not None:
            image_mod.fromarray(np.ascontiguousarray(img)).save(tmp)
        else:
            raise MissingDependency("pillow", "writing image files")
    return path


# -- images <-> model tensors -------------------------------------------------------------------

def _guess_layout(shape: tuple, rank: int) -> str | None:
    """NCHW / NHWC (CHW / HWC) from where a 1- or 3-sized channel dimension sits, else None."""
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


def image_layout(shape: tuple, layout: str | None) -> str | None:
    """The image layout (NCHW, NHWC, CHW, HWC) of a tensor, from its declared layout or its shape;
    None when the tensor is not image-like (e.g. logits, latents)."""
    rank = len(shape)
    if (layout in ("NCHW", "NHWC") and rank == 4) or (layout in ("CHW", "HWC") and rank == 3):
        c = shape[layout.index("C")]
        return layout if (c in (1, 3) or not isinstance(c, int)) else None
    if layout is not None and layout not in ("NCHW", "NHWC", "CHW", "HWC"):
        return None
    return _guess_layout(tuple(shape), rank)


def _size_of(size: object) -> tuple[int, int] | None:
    if isinstance(size, int):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return int(size[0]), int(size[1])
    return None


def image_to_tensor(img: np.ndarray, shape: tuple, dtype: str, layout: str | None,
                    preprocess: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """Turn an ``HxWx3`` uint8 RGB image into one model input, and say what was done.

    ``shape``/``dtype``/``layout`` describe the input (dynamic dims as None or names);
    ``preprocess`` is a bundle manifest's ``preprocess`` (``layout``, ``color_order``,
    ``value_range``, ``mean``, ``std``, ``input_size``, ``folded``). Pixels are scaled from
    0..255 to ``value_range`` (default ``[0, 1]``); ``mean``/``std`` (in ``value_range`` units,
    per channel) are applied unless ``folded`` says the model does it. Integer inputs get the
    raw pixels (uint8) or pixels - 128 (int8).
    """
    pre = dict(preprocess or {})
    lay = image_layout(tuple(shape), layout or pre.get("layout"))
    if lay is None:
        raise UsageError(f"the model input of shape {list(shape)} is not an image",
                         hint="pass the input as a .npy (or .npz with one array per input)")
    channels = shape[lay.index("C")]
    channels = channels if isinstance(channels, int) else 3
    h_dim, w_dim = shape[lay.index("H")], shape[lay.index("W")]
    notes = []
    if isinstance(h_dim, int) and isinstance(w_dim, int) and h_dim > 0 and w_dim > 0:
        size = (h_dim, w_dim)
    else:
        size = _size_of(pre.get("input_size")) or (img.shape[0], img.shape[1])
    if (img.shape[0], img.shape[1]) != size:
        notes.append(f"resized {img.shape[1]}x{img.shape[0]} -> {size[1]}x{size[0]}")
        img = resize(img, size[0], size[1])
    order = str(pre.get("color_order", "RGB")).upper()
    if channels == 1:
        grey = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        img = np.clip(np.rint(grey), 0, 255).astype(np.uint8)[:, :, None]
        notes.append("converted to grey (BT.601 luma)")
    elif order == "BGR":
        img = img[:, :, ::-1]
        notes.append("BGR channel order")
    dt = np.dtype(dtype)
    if dt == np.uint8:
        x = img
        notes.append("raw uint8 pixels")
    elif dt == np.int8:
        x = (img.astype(np.int16) - 128).astype(np.int8)
        notes.append("int8 pixels (value - 128)")
    elif dt.kind == "f":
        lo, hi = (float(v) for v in pre.get("value_range", (0.0, 1.0)))
        x = img.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
        text = f"scaled to [{lo:g}, {hi:g}]"
        if pre.get("mean") is not None and pre.get("std") is not None and not pre.get("folded"):
            mean = np.asarray(pre["mean"], np.float32).reshape(-1)
            std = np.asarray(pre["std"], np.float32).reshape(-1)
            if mean.size not in (1, x.shape[2]) or std.size not in (1, x.shape[2]):
                raise UsageError(f"manifest mean/std have {mean.size}/{std.size} values for a {x.shape[2]}-channel input",
                                 hint="fix preprocess.mean/std in edgekit.json")
            x = (x - mean) / std
            text += f", (x - mean {pre['mean']}) / std {pre['std']}"
        notes.append(text)
        x = x.astype(dt)
    else:
        raise UsageError(f"cannot feed an image to a {dtype} input", hint="pass the input as a .npy")
    if lay in ("NCHW", "CHW"):
        x = np.transpose(x, (2, 0, 1))
    if lay.startswith("N"):
        x = x[None]
    return np.ascontiguousarray(x), notes


def tensor_to_image(arr: np.ndarray, layout: str | None, preprocess: dict | None = None) -> np.ndarray:
    """Turn an image-like model output into ``HxWx3`` (or ``HxWx1``) uint8 RGB for writing.

    Float outputs are mapped from the manifest's ``value_range`` (default ``[0, 1]``) to 0..255
    and clipped; uint8 outputs are written as they are. The first image of a batch is used.
    """
    pre = dict(preprocess or {})
    lay = image_layout(tuple(arr.shape), layout)
    if lay is None:
        raise UsageError(f"an output of shape {list(arr.shape)} is not an image", hint="save it as .npy or .npz")
    if lay.startswith("N"):
        arr, lay = arr[0], lay[1:]
    if lay == "CHW":
        arr = np.transpose(arr, (1, 2, 0))
    if arr.dtype == np.uint8:
        img = arr
    else:
        lo, hi = (float(v) for v in pre.get("value_range", (0.0, 1.0)))
        img = np.clip(np.rint((arr.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    if img.shape[2] == 3 and str(pre.get("color_order", "RGB")).upper() == "BGR":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)
