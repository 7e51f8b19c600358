"""MP4 recording of the rendered view that is playable whatever ends the run.

Frames go to a temporary file beside the destination (edgekit's temporary pattern,
``.NAME.edgekit-PID-TOKEN.partial.mp4``, so FFmpeg still picks the MP4 muxer by its suffix, and
the next run removes it if this process is killed); :meth:`Recorder.close` releases the writer,
which writes the MP4 index, and only then moves the file into place. An existing file is
replaced only with ``force``; without it the recording takes the next free name
(``NAME-2.mp4``) and says so, so an earlier recording is never lost. ``close`` runs on every
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

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, force: bool = False):
        from edgekit._fs import reap_partials

        self.path = Path(path)
        self.force = force
        if self.path.suffix.lower() != ".mp4":
            raise UsageError("--record writes MP4 files; the path must end in .mp4", where=self.path)
        if self.path.is_dir():
            raise UsageError("--record names a folder, not a file", where=self.path)
        parent = self.path.parent
        if not parent.exists():
            raise UsageError("the folder to record into does not exist", where=parent, hint="create it first")
        if not os.access(parent, os.W_OK):
            raise UsageError("cannot write into this folder (read-only)", where=parent,
                             hint="record into a folder you can write to")
        reap_partials(parent)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self._tmp: Path | None = None
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
        from edgekit._fs import partial_path

        cv = cv2()
        w, h = int(size[0]), int(size[1])
        self._tmp = partial_path(self.path, suffix=".mp4")
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
        from edgekit._fs import fresh_path, rename_noreplace

        try:
            if self.force:
                os.replace(self._tmp, self.path)
                return self.path
            while True:  # a file that appeared meanwhile is kept: take the next free name
                target = fresh_path(self.path)
                try:
                    rename_noreplace(self._tmp, target)
                    break
                except FileExistsError:
                    continue
        except OSError as e:
            raise DemoError(f"could not move the finished recording into place ({e})", where=self.path) from None
        self.path = target
        return self.path

    def abort(self) -> None:
        """Drop the recording (used only when the run never produced a frame)."""
        writer, self._writer = self._writer, None
        self.closed = True
        if writer is not None:
            writer.release()
        if self._tmp is not None:
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
