"""Where the demo's frames come from: webcams, video files, a Raspberry Pi CSI camera, or a
virtual camera moving over the photographs shipped in :mod:`edgekit.assets`.

Every source hands out BGR ``uint8`` frames (OpenCV's order) through ``read()``, which returns
None at the end of a file and raises :class:`~edgekit.errors.DemoError` when a device fails.
A source says whether it is *live*:

- live sources (cameras, streams, the paced virtual camera) produce frames whether or not
  anyone is ready; the pipeline reads them continuously on its own thread and keeps only the
  newest, so inference never works on a stale frame (the answer to OpenCV's buffering lag on a
  Raspberry Pi: ``CAP_PROP_BUFFERSIZE=1`` where V4L2 honours it, a grabber thread everywhere);
- non-live sources (files, the unpaced virtual camera) hand out every frame in order and wait
  for the pipeline, so a recording of a clip has exactly one output frame per input frame.

Example::

    >>> src = open_source("virtual", size=(320, 240), seed=0)
    >>> src.read().shape
    (240, 320, 3)
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgekit.apps.camera._cv import cv2
from edgekit.errors import DemoError, UsageError, first_line

__all__ = ["Source", "OpenCVCapture", "VideoFile", "PiCamera", "VirtualCamera", "open_source", "parse_size"]

# How long a camera may take to deliver its first frame, and then between frames, before the
# demo calls it failed (unplugged, or a driver that blocks forever).
FIRST_FRAME_TIMEOUT_S = 10.0


class Source(Protocol):
    """What the pipeline needs of a frame source."""

    name: str  # for messages and the overlay: "camera 0", "clip.mp4", "virtual"
    live: bool
    fps: float  # nominal frame rate (recordings are written at it)
    size: tuple[int, int]  # (width, height) of the frames read() returns

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"320x240"`` → ``(320, 240)``; None stays None; anything else is a usage error."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or not all(8 <= int(v) <= MAX_SIDE for v in m.groups()):
        raise UsageError(f"--size must be WIDTHxHEIGHT with both from 8 to {MAX_SIDE}, got {text!r}",
                         hint="e.g. --size 320x240 (cameras deliver up to 4K)")
    return int(m.group(1)), int(m.group(2))


MAX_SIDE = 4096  # 4K cameras; a 2x SR output of 4096x4096 is already 400 MB of float32


# ---------------------------------------------------------------------------------------------
# OpenCV: webcams, /dev/videoN, network streams
# ---------------------------------------------------------------------------------------------
class _CvStream:
    """What the OpenCV sources share: the first frame is read when opening (so a device or
    file that delivers nothing fails at once) and handed out by the first ``read()``."""

    _cap: Any
    frames_read: int

    def _start(self, first: np.ndarray) -> None:
        self._pending: np.ndarray | None = first
        fps = self._cap.get(cv2().CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 30.0
        self.frames_read = 0

    def _next(self) -> np.ndarray | None:
        """The next frame in BGR, or None when OpenCV delivers none."""
        if self._pending is not None:
            frame, self._pending = self._pending, None
        else:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return None
        self.frames_read += 1
        return _as_bgr(frame)

    def close(self) -> None:
        self._cap.release()


class OpenCVCapture(_CvStream):
    """A webcam (index or ``/dev/videoN``) or a network stream (``rtsp://``...) read with OpenCV.

    Asks the driver to keep one buffer (``CAP_PROP_BUFFERSIZE=1``); the pipeline's grabber
    thread then keeps only the newest frame. ``read()`` raises when the device stops delivering
    (unplugged): for a camera, a failed read is a fault, never an end of stream.
    """

    live = True

    def __init__(self, device: int | str, size: tuple[int, int] | None = None):
        cv = cv2()
        self.name = f"camera {device}" if isinstance(device, int) else str(device)
        if isinstance(device, str) and device.startswith("/dev/") and not os.path.exists(device):
            raise DemoError("no such camera device", where=device, hint="list cameras with `ls /dev/video*`")
        api = cv.CAP_V4L2 if isinstance(device, str) and device.startswith("/dev/") else cv.CAP_ANY
        self._cap = cv.VideoCapture(device, api)
        if not self._cap.isOpened():
            self._cap.release()
            hint = ("check the index (cameras are 0, 1, ...; `ls /dev/video*` on Linux), or run without "
                    "--source to use the virtual camera") if isinstance(device, int) else "check the device or URL"
            raise DemoError("cannot open this camera", where=self.name, hint=hint)
        self._cap.set(cv.CAP_PROP_BUFFERSIZE, 1)
        if size is not None:
            self._cap.set(cv.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv.CAP_PROP_FRAME_HEIGHT, size[1])
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise DemoError("the camera opened but delivered no frame", where=self.name,
                            hint="is another program using it? unplug and replug it")
        self.size = (first.shape[1], first.shape[0])
        self._start(first)

    def read(self) -> np.ndarray | None:
        frame = self._next()
        if frame is None:  # a camera has no end of stream: a failed read is a fault
            raise DemoError(f"the camera stopped delivering frames after {self.frames_read} frames",
                            where=self.name, hint="was it unplugged? reconnect it and start again")
        return frame


# ---------------------------------------------------------------------------------------------
# Video files
# ---------------------------------------------------------------------------------------------
class VideoFile(_CvStream):
    """A video file read in order, every frame (not live): a recording of a clip has one
    output frame per input frame. ``size`` resizes frames as they are read."""

    live = False

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None):
        cv = cv2()
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.exists():
            raise DemoError("no such video file", where=self.path, hint="check the path given to --source")
        if self.path.is_dir():
            raise DemoError("is a folder, not a video file", where=self.path)
        if not os.access(self.path, os.R_OK):
            raise DemoError("cannot read this file (permission denied)", where=self.path)
        self._cap = cv.VideoCapture(str(self.path), cv.CAP_FFMPEG)
        first = None
        if self._cap.isOpened():
            ok, first = self._cap.read()
            first = first if ok else None
        if first is None:
            self._cap.release()
            raise DemoError("cannot decode this file as a video", where=self.path,
                            hint="is it a complete video (mp4, avi, mkv...) in a codec FFmpeg reads?")
        self._resize = size if size is not None and size != (first.shape[1], first.shape[0]) else None
        self.size = size or (first.shape[1], first.shape[0])
        count = int(self._cap.get(cv.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None  # from the container: a hint, not a promise
        self._start(first)

    def read(self) -> np.ndarray | None:
        frame = self._next()  # None: the end of the file
        if frame is not None and self._resize is not None:
            frame = cv2().resize(frame, self._resize, interpolation=cv2().INTER_AREA)
        return frame


# ---------------------------------------------------------------------------------------------
# Raspberry Pi CSI cameras (libcamera, which OpenCV cannot read)
# ---------------------------------------------------------------------------------------------
class PiCamera:
    """A Raspberry Pi CSI camera through Picamera2 (libcamera). Frames are requested as
    ``RGB888``, which libcamera lays out as B, G, R bytes: OpenCV's order, no conversion."""

    live = True

    def __init__(self, size: tuple[int, int] | None = None):
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise DemoError(
                "--source picamera needs the Picamera2 library, which is not installed",
                hint="on Raspberry Pi OS: sudo apt install python3-picamera2 (in a venv, create it with "
                     "--system-site-packages); USB webcams work without it: --source 0",
            ) from None
        self.name = "picamera"
        size = size or (640, 480)
        try:
            self._cam = Picamera2()
            config = self._cam.create_video_configuration(main={"size": size, "format": "RGB888"}, buffer_count=2)
            self._cam.configure(config)
            self._cam.start()
        except Exception as e:  # no camera attached, camera busy, libcamera error
            first = first_line(e)
            raise DemoError(f"cannot start the CSI camera ({first})", where="picamera",
                            hint="check the ribbon cable and that no other program uses the camera "
                                 "(`rpicam-hello --list-cameras`)") from None
        self.size = tuple(size)
        self.fps = 30.0
        self.frames_read = 0

    def read(self) -> np.ndarray | None:
        try:
            frame = self._cam.capture_array("main")
        except Exception as e:
            raise DemoError(f"the CSI camera stopped delivering frames after {self.frames_read} frames ({e})",
                            where="picamera") from None
        self.frames_read += 1
        return _as_bgr(frame)

    def close(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# The virtual camera
# ---------------------------------------------------------------------------------------------
class VirtualCamera:
    """A camera moving over the real photographs shipped with edgekit: slow pans and zooms
    (eased, one photo per shot, short cross-fades between shots) and a little sensor noise.

    Frame ``i`` is a pure function of ``(seed, i)`` (:meth:`frame_at`), so runs are
    reproducible. ``live=True`` paces ``read()`` at ``fps`` like a real camera (the pipeline then
    keeps only the newest frame); ``live=False`` returns frames as fast as they are asked for,
    every one in order. ``frames`` ends the stream after that many frames (None: endless).
    """

    SHOT_FRAMES = 120  # 4 s at 30 fps
    FADE_FRAMES = 10
    NOISE_SIGMA = 2.0  # in 8-bit levels
    NOISE_BANK = 8

    def __init__(self, size: tuple[int, int] = (320, 240), *, fps: float = 30.0, seed: int = 0,
                 live: bool = False, frames: int | None = None, photos: list[str] | None = None):
        from edgekit.assets import load_photo, photo_names

        cv = cv2()
        self.name = "virtual"
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps)
        self.live = bool(live)
        self.seed = int(seed)
        self.frames = frames
        names = photos or photo_names()
        if not names:
            raise DemoError("no photographs are shipped with this edgekit install", where="edgekit/assets/photos",
                            hint="reinstall edgekit, or use --source with a camera or a video file")
        self._photos = [np.ascontiguousarray(cv.cvtColor(load_photo(n), cv.COLOR_RGB2BGR)) for n in names]
        w, h = self.size
        rng = np.random.default_rng(self.seed)
        self._noise = [rng.normal(0.0, self.NOISE_SIGMA, (h, w, 3)).round().astype(np.int16)
                       for _ in range(self.NOISE_BANK)]
        self._index = 0
        self._t0: float | None = None
        self.frames_read = 0

    # -- geometry ------------------------------------------------------------------------------
    def _shot(self, k: int) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
        """Photo and (cx, cy, window width) at the start and end of shot ``k``."""
        photo = self._photos[(self.seed + k) % len(self._photos)]
        ph, pw = photo.shape[:2]
        w, h = self.size
        aspect = w / h
        max_win = min(pw, ph * aspect)  # widest window of the output's aspect inside the photo
        min_win = max(0.45 * max_win, min(0.9 * max_win, 0.75 * w))
        rng = np.random.default_rng([self.seed, k])
        ends = []
        for _ in range(2):
            win = float(rng.uniform(min_win, max_win))
            half_w, half_h = win / 2, win / aspect / 2
            cx = float(rng.uniform(half_w, pw - half_w))
            cy = float(rng.uniform(half_h, ph - half_h))
            ends.append((cx, cy, win))
        return photo, ends[0], ends[1]

    def _render(self, k: int, t: float) -> np.ndarray:
        """Shot ``k`` at progress ``t`` in [0, 1], without noise."""
        cv = cv2()
        photo, (x0, y0, w0), (x1, y1, w1) = self._shot(k)
        e = t * t * (3 - 2 * t)  # smoothstep: the camera eases in and out
        cx, cy, win = x0 + (x1 - x0) * e, y0 + (y1 - y0) * e, w0 + (w1 - w0) * e
        # a slow hand-held sway of about a pixel of the output
        cx += 0.6 * math.sin(2 * math.pi * (t * 1.7 + 0.13 * k)) * win / self.size[0]
        cy += 0.6 * math.cos(2 * math.pi * (t * 1.3 + 0.29 * k)) * win / self.size[0]
        s = self.size[0] / win  # output pixels per photo pixel
        m = np.array([[s, 0.0, self.size[0] / 2 - s * cx], [0.0, s, self.size[1] / 2 - s * cy]])
        return cv.warpAffine(photo, m, self.size, flags=cv.INTER_LINEAR, borderMode=cv.BORDER_REFLECT101)

    def frame_at(self, i: int) -> np.ndarray:
        """Frame ``i`` of this camera's endless sequence (BGR uint8, deterministic)."""
        cv = cv2()
        k, j = divmod(i, self.SHOT_FRAMES)
        img = self._render(k, j / (self.SHOT_FRAMES - 1))
        if k > 0 and j < self.FADE_FRAMES:  # cross-fade from the end of the previous shot
            prev = self._render(k - 1, 1.0)
            a = (j + 1) / (self.FADE_FRAMES + 1)
            img = cv.addWeighted(img, a, prev, 1 - a, 0.0)
        noise = self._noise[(i * 7 + self.seed) % self.NOISE_BANK]
        return cv.add(img, noise, dtype=cv.CV_8U)

    def read(self) -> np.ndarray | None:
        if self.frames is not None and self._index >= self.frames:
            return None
        if self.live:
            now = time.perf_counter()
            if self._t0 is None:
                self._t0 = now
            due = self._t0 + self._index / self.fps
            if due > now:
                time.sleep(due - now)
            elif now - due > 1.0:  # fell far behind (a paused debugger): resync like a camera would
                self._t0 = now - self._index / self.fps
        frame = self.frame_at(self._index)
        self._index += 1
        self.frames_read += 1
        return frame

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
def open_source(spec: str | int | None, size: tuple[int, int] | None = None, *, live: bool | None = None,
                seed: int = 0, frames: int | None = None, default_size: tuple[int, int] = (320, 240)) -> Any:
    """Open ``--source``: ``virtual`` (default), ``picamera``, a camera index (``0``), a device
    (``/dev/video0``), a stream URL (``rtsp://...``) or a video file.

    ``size`` is the capture size asked of the device (cameras may pick the nearest they
    support), the size of the virtual camera's frames, or a resize of a file's frames.
    ``live`` only matters for the virtual camera (paced like a camera, or every frame in order);
    ``frames`` bounds the virtual camera.
    """
    spec = "virtual" if spec is None or spec == "" else spec
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return OpenCVCapture(int(spec), size)
    text = str(spec)
    if text == "virtual":
        return VirtualCamera(size or default_size, seed=seed, live=bool(live), frames=frames)
    if text == "picamera":
        return PiCamera(size)
    if text.startswith("/dev/video"):
        return OpenCVCapture(text, size)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text) and not text.startswith("file://"):
        return OpenCVCapture(text, size)
    return VideoFile(text[len("file://"):] if text.startswith("file://") else text, size)


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """Grey or BGRA frames (some drivers, some files) as 3-channel BGR uint8."""
    cv = cv2()
    if frame.ndim == 2:
        return cv.cvtColor(frame, cv.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv.cvtColor(frame, cv.COLOR_BGRA2BGR)
    if frame.dtype != np.uint8:
        return cv.convertScaleAbs(frame)
    return frame
