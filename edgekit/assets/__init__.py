"""Real photographs shipped inside the package (see ``photos/LICENSES.txt``).

Used by the converters' verification (a real photo, not only noise) and by the demo's
``virtual`` camera, so both work with nothing attached and no network.

Example::

    >>> from edgekit.assets import photo_names, load_photo
    >>> img = load_photo("chelsea")          # HxWx3 uint8, RGB        # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import MissingDependency

__all__ = ["PHOTO_DIR", "photo_names", "photo_path", "load_photo"]

PHOTO_DIR = Path(__file__).with_name("photos")


def photo_names() -> list[str]:
    return sorted(p.stem for p in PHOTO_DIR.glob("*.jpg"))


def photo_path(name: str) -> Path:
    path = PHOTO_DIR / f"{name}.jpg"
    if not path.is_file():
        raise KeyError(f"no shipped photo named {name!r}; have {photo_names()}")
    return path


def load_photo(name: str) -> np.ndarray:
    """Decode a shipped photo to an (H, W, 3) uint8 RGB array with OpenCV or Pillow."""
    path = photo_path(name)
    try:
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            return np.ascontiguousarray(bgr[:, :, ::-1])
    except ImportError:
        pass
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependency("opencv-python", "decoding the shipped photos", extra="demo") from None
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
