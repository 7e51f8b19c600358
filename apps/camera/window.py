"""The demo window (``cv2.imshow``) and its keys, or the reason there can be none.

Keys: ``q``/Esc quit, space pause, ``s`` snapshot PNG, ``v`` switch view. Closing the window
quits too. :func:`why_headless` says why a window cannot open here (no display, an OpenCV
without GUI support); the demo then runs headless and says so, rather than failing.

Example::

    >>> reason = why_headless()
    >>> if reason is None:                                         # doctest: +SKIP
    ...     with Window("edgekit demo") as win:
    ...         win.show(frame); key = win.poll()
"""

from __future__ import annotations

import os
import sys

import numpy as np

from edgekit.apps.camera._cv import cv2, has_gui

__all__ = ["Window", "why_headless", "KEY_ACTIONS"]

# key code -> action
KEY_ACTIONS = {ord("q"): "quit", ord("Q"): "quit", 27: "quit", ord(" "): "pause", ord("s"): "snapshot",
               ord("S"): "snapshot", ord("v"): "view", ord("V"): "view"}


def why_headless() -> str | None:
    """None when a window can open; else a short reason."""
    if sys.platform.startswith("linux"):
        display = os.environ.get("DISPLAY")
        if not display and not os.environ.get("WAYLAND_DISPLAY"):
            return "no display (DISPLAY is not set)"
        if display and not os.environ.get("WAYLAND_DISPLAY") and not _x_reachable(display):
            # OpenCV's Qt aborts the whole process when the X server is unreachable: check first
            return f"the X display {display} does not answer"
    if not has_gui():
        return "this OpenCV build has no GUI support (opencv-python-headless); pip install opencv-python for a window"
    return None


def _x_reachable(display: str, timeout_s: float = 0.5) -> bool:
    """Whether an X server listens for ``display`` (``:0``, ``unix:1.0``, ``host:10.0``)."""
    import re
    import socket

    m = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(?:\.\d+)?", display)
    if not m:
        return True  # a form we do not know: let the GUI library try
    host, num = m["host"], int(m["num"])
    if host in ("", "unix"):
        for address in (f"/tmp/.X11-unix/X{num}", f"\0/tmp/.X11-unix/X{num}"):  # path, then Linux abstract
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout_s)
                try:
                    s.connect(address)
                    return True
                except OSError:
                    continue
        if host == "unix":
            return False
        host = "localhost"
    try:
        with socket.create_connection((host, 6000 + num), timeout=timeout_s):
            return True
    except OSError:
        return False


def _qt_fonts() -> None:
    """opencv-python's bundled Qt looks for fonts inside the wheel, which ships none, and warns
    on stderr for every window; point it at the system fonts when the user has not."""
    if "QT_QPA_FONTDIR" in os.environ or not sys.platform.startswith("linux"):
        return
    for d in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts"):
        if os.path.isdir(d):
            os.environ["QT_QPA_FONTDIR"] = d
            return


class Window:
    """One resizable-by-content window showing BGR frames."""

    def __init__(self, title: str = "edgekit demo"):
        self.title = title
        _qt_fonts()
        cv = cv2()
        # GUI_NORMAL: no Qt toolbar/status bar (pixel-peeping zoom controls); the image is the UI
        cv.namedWindow(self.title, cv.WINDOW_AUTOSIZE | getattr(cv, "WINDOW_GUI_NORMAL", 0))
        self._shown = False

    def show(self, image: np.ndarray) -> None:
        cv2().imshow(self.title, image)
        self._shown = True

    def poll(self, wait_ms: int = 1) -> str | None:
        """Pump window events; the action of a pressed key, ``"quit"`` when the window was closed."""
        cv = cv2()
        key = cv.waitKey(max(1, wait_ms))
        if key != -1:
            action = KEY_ACTIONS.get(key & 0xFF)
            if action:
                return action
        if self._shown:
            try:
                if cv.getWindowProperty(self.title, cv.WND_PROP_VISIBLE) < 1:
                    return "quit"
            except cv.error:
                return "quit"
        return None

    def close(self) -> None:
        cv = cv2()
        try:
            cv.destroyWindow(self.title)
            cv.waitKey(1)
        except cv.error:
            pass

    def __enter__(self) -> "Window":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
