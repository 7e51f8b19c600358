"""Read and write image files without requiring OpenCV.

The runtime side must work on a Raspberry Pi with only numpy and one backend, so images are
read with whichever of OpenCV (``cv2``) or Pillow is installed. Arrays are always ``HxWx3``
uint8 in RGB order (``HxWx1`` for grey), whatever library read them. Turning an image into a
model input (resize, normalise, layout) is :mod:`edgekit.preprocess`'s job.

Example::

    >>> rgb = read_image("cat.jpg")                  # doctest: +SKIP
    >>> write_image("copy.png", rgb)                 # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekit._fs import atomic_path
from edgekit.errors import InvalidModelFile, MissingDependency, ModelFileNotFound, UsageError

__all__ = ["IMAGE_SUFFIXES", "is_image_path", "read_image", "write_image"]

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
