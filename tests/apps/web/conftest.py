"""Fixtures for the web app's browser tests: tiny bundles (``edgekit.convert`` of
``tiny_models.py``), their web apps (``edgekit app web``) served by ``edgekit app serve``, and a
real Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright, never a downloaded browser)
whose fake camera plays a Y4M clip the tests write.

Skips, each with its reason: no ``/usr/bin/chromium`` (CI installs it with apt), no Playwright
(the dev extra), no ``apps/web/node_modules`` (``npm ci`` in apps/web; CI runs it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

import tiny_models  # noqa: E402

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


@pytest.fixture(scope="session")
def need_browser():
    why = browser_missing()
    if why:
        pytest.skip(why)


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


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory, need_browser) -> dict[str, Path]:
    """``sr`` and ``cls`` bundle folders (ONNX + TFLite, verified by edgekit.convert)."""
    import edgekit
    from edgekit.bundle import read_manifest, write_manifest

    root = tmp_path_factory.mktemp("web_bundles")
    sr = root / "sr"
    edgekit.convert(tiny_models.tiny_sr(), "onnx,tflite", sr, input_shapes=[tiny_models.SR_SHAPE],
                    task="super-resolve", bench_runs=0)
    cls = root / "cls"
    edgekit.convert(tiny_models.tiny_classifier(), "onnx,tflite", cls, input_shapes=[tiny_models.CLS_SHAPE],
                    task="classify", mean=tiny_models.CLS_MEAN, std=tiny_models.CLS_STD, bench_runs=0)
    m = read_manifest(cls)
    m.preprocess["labels"] = list(tiny_models.LABELS)
    write_manifest(cls, m)
    return {"sr": sr, "cls": cls}


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


@pytest.fixture(scope="session")
def web_apps(tiny_bundles, tmp_path_factory) -> dict[str, Path]:
    from edgekit.webapp import build

    root = tmp_path_factory.mktemp("web_apps")
    return {name: build(bundle, root / name).out for name, bundle in tiny_bundles.items()}


@pytest.fixture(scope="session")
def servers(web_apps):
    started = {name: Server(folder) for name, folder in web_apps.items()}
    yield started
    for s in started.values():
        s.close()


@pytest.fixture(scope="session")
def playwright_session(need_browser):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("camera") / "clip.y4m")


@pytest.fixture(scope="session")
def browser(playwright_session, clip):
    """Chromium with a fake camera playing ``clip`` and the permission prompt accepted."""
    b = playwright_session.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={clip}"])
    yield b
    b.close()


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
