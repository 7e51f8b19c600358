"""The demo in a real window, under an X virtual framebuffer.

Needs ``Xvfb`` on PATH and an OpenCV with GUI support (``opencv-python``, which the ``demo``
extra installs; ``opencv-python-headless`` has none): skipped otherwise. The screen is read
back from Xvfb's framebuffer file (``-fbdir``, XWD format) while the demo runs, so the test
sees what a user would. With ``EDGEKIT_DEMO_SCREENSHOT=PATH`` the window's pixels are also
saved as PNG (that is how ``docs/demo.png`` is made)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from demo_standins import demo_env

pytestmark = pytest.mark.xvfb


def _skip_reason() -> str | None:
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed (apt-get install xvfb)"
    from edgekit.apps.camera._cv import has_gui

    if not has_gui():
        return "this OpenCV has no GUI support (opencv-python-headless); pip install opencv-python"
    return None


@pytest.fixture
def xvfb(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    fbdir = tmp_path / "fb"
    fbdir.mkdir()
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-nocursor",
                             "-fbdir", str(fbdir)], pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            display = f.readline().strip()
        if not display:
            pytest.skip("Xvfb did not start")
        yield f":{display}", fbdir / "Xvfb_screen0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def read_xwd(path: Path) -> np.ndarray:
    """An XWD screen dump (ZPixmap, 24/32 bits per pixel, TrueColor) as HxWx3 uint8 RGB."""
    data = path.read_bytes()
    h = np.frombuffer(data[:100], ">u4")
    header_size, width, height = int(h[0]), int(h[4]), int(h[5])
    byte_order, bpp, bytes_per_line, ncolors = int(h[7]), int(h[11]), int(h[12]), int(h[19])
    red_mask, green_mask, blue_mask = int(h[14]), int(h[15]), int(h[16])
    assert bpp == 32, f"unexpected {bpp} bits per pixel"
    start = header_size + 12 * ncolors
    px = np.frombuffer(data[start:start + height * bytes_per_line], "<u4" if byte_order == 0 else ">u4")
    px = px.reshape(height, bytes_per_line // 4)[:, :width]

    def channel(mask: int) -> np.ndarray:
        shift = (mask & -mask).bit_length() - 1
        return ((px & mask) >> shift).astype(np.uint8)

    return np.dstack([channel(red_mask), channel(green_mask), channel(blue_mask)])


# About 8 s at the virtual camera's 30 fps (longer when the host is slower): the window is on
# screen for that long. The test keeps the first screenshot that shows it drawn, so a busy host
# that polls late cannot miss it once seen; the loop stops looking once it has one.
WINDOW_FRAMES = 240


def _drawn(img: np.ndarray) -> bool:
    return bool((img[:480, :640].max(axis=2) > 0).mean() > 0.9)  # the 640x480 window is up and drawn


def test_window_shows_the_demo(xvfb, standins, tmp_path):
    display, screen_file = xvfb
    from edgekit.apps.camera.models import default_bundle_ready

    # the screenshot for the docs shows the shipped model; the plain test a stand-in
    shipped = bool(os.environ.get("EDGEKIT_DEMO_SCREENSHOT")) and default_bundle_ready()
    model_args = [] if shipped else ["--model", str(standins["nearest_sr"])]
    env = demo_env(DISPLAY=display)
    cmd = [sys.executable, "-c", "from edgekit.cli import main; main()", "demo", "upscale", *model_args,
           "--frames", str(WINDOW_FRAMES), "--json", "--threads", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    screen = None
    try:
        # the loop ends when the window is seen or the demo exits; the deadline only bounds a hang
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            img = read_xwd(screen_file)
            if _drawn(img):
                screen = img
                time.sleep(1.5)  # let the overlay's rolling statistics settle (for the docs screenshot)
                later = read_xwd(screen_file)
                if _drawn(later):  # else the demo ended meanwhile: keep the screenshot already taken
                    screen = later
                break
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "running headless" not in stderr
    summary = json.loads(stdout)
    assert summary["frames"] == WINDOW_FRAMES and summary["output_size"] == [640, 480]
    assert summary["recording"] is None  # a window run records only when asked
    assert screen is not None, "the demo window never appeared on the X screen"
    window = screen[:480, :640]
    # a photo, not a blank window: texture everywhere, and the split line in the middle column
    assert window.std() > 20
    assert (window[100:380, 320] > 200).all(axis=1).mean() > 0.9, "no split line at x=320"
    assert (screen[:, 660:] == 0).all(), "something was drawn outside the 640x480 window"
    out = os.environ.get("EDGEKIT_DEMO_SCREENSHOT")
    if out:
        import cv2

        cv2.imwrite(out, cv2.cvtColor(np.ascontiguousarray(window), cv2.COLOR_RGB2BGR))
