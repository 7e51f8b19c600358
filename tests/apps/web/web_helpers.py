"""Helpers of the web app's browser tests (plain functions, imported by conftest and the tests):
the Chromium path and flags, skip reasons, the Y4M clip writer, `edgekit app serve` in a
subprocess, and opening the app in a page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


CHROMIUM = Path("/usr/bin/chromium")
CLIP_SIZE = (320, 240)  # W, H of the fake camera
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    from edgekit.webapp import runtime_dir

    if not (runtime_dir() / "onnxruntime-web" / "package.json").is_file():
        return f"{runtime_dir()} is absent: run `npm ci` in apps/web (.ci/run does)"
    return None


def write_y4m(path: Path, frames: int = 12, size=CLIP_SIZE) -> Path:
    """A 4:2:0 Y4M clip (``C420jpeg``: Chromium's fake capture crashes on ``C420mpeg2``): moving
    gradients, so consecutive frames differ."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            y = ((xx + yy + 9 * i) % 256).astype(np.uint8)
            u = ((xx[::2, ::2] * 2 + 5 * i) % 256).astype(np.uint8)
            v = ((yy[::2, ::2] * 2 + 200) % 256).astype(np.uint8)
            f.write(b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes())
    return path


class Server:
    """``edgekit app serve DIR --port 0`` in a subprocess; ``url`` from its first line."""

    def __init__(self, folder: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "edgekit", "app", "serve", str(folder), "--port", "0",
                                      "--host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith("note:"):
                break
        match = re.search(r"http://localhost:(\d+)/", "\n".join(self.lines))
        if not match:
            self.close()
            raise RuntimeError(f"edgekit app serve printed {self.lines!r}; stderr {self.proc.stderr.read()!r}")
        self.url = f"http://localhost:{match.group(1)}/"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def open_app(browser, url: str, query: str = "", viewport=None, frames: int = 0):
    """A new page on ``url?query``, after the app is ready (and ``frames`` camera frames ran);
    ``page.requests`` lists every URL it fetched, ``page.errors`` its uncaught errors."""
    page = browser.new_page(viewport=viewport) if viewport else browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + (f"?{query}" if query else ""))
    page.wait_for_function("() => window.edgekit !== undefined", timeout=30000)
    page.evaluate("() => edgekit.ready")
    if frames:
        page.wait_for_function(f"() => edgekit.stats().frames >= {frames} || edgekit.stats().message !== null",
                               timeout=60000)
    page.requests, page.errors = requests, errors
    return page

