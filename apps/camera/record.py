"""MP4 recording of the rendered view that is playable whatever ends the run.

Frames go to a temporary file beside the destination (``.NAME.partial-PID.mp4``, so FFmpeg
still picks the MP4 muxer by its suffix); :meth:`Recorder.close` releases the writer, which
writes the MP4 index, and only then renames the file into place. ``close`` runs on every
exit path (end of stream, ``--frames``, ``q``, a camera fault, Ctrl-C; the recorder is a
context manager), so a recording always holds every frame rendered so far, and an
interrupted write never leaves a half-written file under the user's name.

The codec is MPEG-4 Part 2 (``mp4v``): every OpenCV wheel can encode it and players
(VLC, mpv, ffmpeg, QuickTime) read it. H.264 (``avc1``) needs an encoder the pip wheels of
OpenCV do not ship (they fall back to a V4L2 hardware encoder and fail), so it is not tried.

Example::

    >>> with Recorder("demo.mp4", fps=30) as rec:                  # doctest: +SKIP
    ...     rec.write(frame_bgr)
    >>> rec.path, rec.frames                                        # doctest: +SKIP
    (PosixPath('demo.mp4'), 1)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from edgekit.apps.camera._cv import cv2
from edgekit.errors import DemoError, UsageError

__all__ = ["Recorder", "count_frames"]


class Recorder:
    """Writes BGR frames of one size to an MP4 at ``fps`` (the source's nominal rate); the
    writer opens with :meth:`open` or on the first frame."""

    FOURCC = "mp4v"

    def __init__(self, path: str | os.PathLike, fps: float = 30.0):
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise UsageError("--record writes MP4 files; the path must end in .mp4", where=self.path)
        if self.path.is_dir():
            raise UsageError("--record names a folder, not a file", where=self.path)
        parent = self.path.parent
        if not parent.exists():
            raise UsageError("the folder to record into does not exist", where=parent, hint="create it first")
        if not os.access(parent, os.W_OK):
            raise UsageError("cannot write into this folder", where=parent)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self._tmp = parent / f".{self.path.stem}.partial-{os.getpid()}.mp4"
        self._writer = None
        self.closed = False

    def open(self, size: tuple[int, int]) -> None:
        """Open the writer for frames of ``size`` (width, height) now, rather than on the first
        frame (the demo does this before it starts, to keep the writer's set-up out of the
        first frame's timing)."""
        if self.closed:
            raise DemoError("the recording is already closed", where=self.path)
        if self._writer is not None:
            return
        cv = cv2()
        w, h = int(size[0]), int(size[1])
        writer = cv.VideoWriter(str(self._tmp), cv.VideoWriter_fourcc(*self.FOURCC), self.fps, (w, h))
        if not writer.isOpened():
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            raise DemoError(f"cannot open an MP4 writer ({self.FOURCC}, {w}x{h})", where=self.path,
                            hint="this OpenCV build may lack FFmpeg; install opencv-python from PyPI")
        self._writer, self.size = writer, (w, h)

    def write(self, frame: np.ndarray) -> None:
        """Append a BGR frame; a frame of another size than the recording's (a camera that
        changed mode) is resized to it rather than ending the recording."""
        h, w = frame.shape[:2]
        if self._writer is None:
            self.open((w, h))
        if (w, h) != self.size:
            frame = cv2().resize(frame, self.size, interpolation=cv2().INTER_AREA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> Path | None:
        """Finalise the MP4 and move it into place; returns its path, or None when no frame was
        written (then nothing is left behind). Safe to call more than once."""
        if self.closed:
            return self.path if self.frames else None
        self.closed = True
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        writer.release()
        if self.frames == 0:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            return None
        try:
            os.replace(self._tmp, self.path)
        except OSError as e:
            raise DemoError(f"could not move the finished recording into place ({e})", where=self.path) from None
        return self.path

    def abort(self) -> None:
        """Drop the recording (used only when the run never produced a frame)."""
        writer, self._writer = self._writer, None
        self.closed = True
        if writer is not None:
            writer.release()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_frames(path: str | os.PathLike) -> tuple[int, tuple[int, int] | None]:
    """Decode a video to the end: (frames decoded, (width, height)). For tests and checks that
    a recording is playable; the container's frame count is not trusted."""
    cv = cv2()
    cap = cv.VideoCapture(str(path), cv.CAP_FFMPEG)
    n, size = 0, None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            size = (frame.shape[1], frame.shape[0])
    finally:
        cap.release()
    return n, size
