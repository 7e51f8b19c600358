"""OpenCV, imported on first use and made quiet.

OpenCV and the FFmpeg inside it print warnings straight to stderr when a camera index does not
exist or a file is not a video ("can't open camera by index", "moov atom not found"). The demo
turns those cases into one-line :class:`~edgekit.errors.DemoError` messages, so the library
chatter is switched off here, once, before the first capture is opened.
"""

from __future__ import annotations

import os
from functools import lru_cache
from types import ModuleType

from edgekit.errors import MissingDependency

__all__ = ["cv2", "has_gui"]


@lru_cache(maxsize=None)
def cv2() -> ModuleType:
    """The ``cv2`` module, with OpenCV's and FFmpeg's logging silenced (``EDGEKIT_DEBUG=1`` keeps it)."""
    from edgekit.errors import debug_enabled

    if not debug_enabled():
        # Read by OpenCV's FFmpeg backend when it opens a file; -8 is AV_LOG_QUIET.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        import cv2 as _cv2
    except ImportError:
        raise MissingDependency("opencv-python", "the camera demo", extra="demo") from None
    if not debug_enabled():
        try:
            _cv2.utils.logging.setLogLevel(_cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:  # very old builds without the logging utilities
            pass
    return _cv2


@lru_cache(maxsize=None)
def has_gui() -> bool:
    """Whether this OpenCV build can open windows (``opencv-python``, not ``-headless``)."""
    for line in cv2().getBuildInformation().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "GUI":
            return value.strip().upper() not in ("", "NONE")
    return False
