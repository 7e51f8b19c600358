"""Fixtures for the web app's browser tests: tiny bundles (``edgekit.convert`` of
``tiny_models.py``), their web apps (``edgekit app web``) served by ``edgekit app serve``, and a
real Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright, never a downloaded browser)
whose fake camera plays a Y4M clip the tests write.

Skips, each with its reason: no ``/usr/bin/chromium`` (CI installs it with apt), no Playwright
(the dev extra), no ``apps/web/node_modules`` (``npm ci`` in apps/web; CI runs it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models  # noqa: E402
from web_helpers import CHROMIUM, CHROMIUM_ARGS, Server, browser_missing, write_y4m  # noqa: E402


@pytest.fixture(scope="session")
def need_browser():
    why = browser_missing()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory, need_browser) -> dict[str, Path]:
    """``sr``, ``cls`` and ``vd`` (video decoder) bundle folders (ONNX + TFLite). Not verified
    (``verify=False``, to save CI time): the tests compare the page with ``edgekit.load`` of the
    same files, which is the claim here."""
    import edgekit
    from edgekit.bundle import read_manifest, write_manifest

    root = tmp_path_factory.mktemp("web_bundles")
    sr = root / "sr"
    edgekit.convert(tiny_models.tiny_sr(), "onnx,tflite", sr, input_shapes=[tiny_models.SR_SHAPE],
                    task="super-resolve", bench_runs=0, verify=False)
    cls = root / "cls"
    edgekit.convert(tiny_models.tiny_classifier(), "onnx,tflite", cls, input_shapes=[tiny_models.CLS_SHAPE],
                    task="classify", mean=tiny_models.CLS_MEAN, std=tiny_models.CLS_STD, bench_runs=0, verify=False)
    m = read_manifest(cls)
    m.preprocess["labels"] = list(tiny_models.LABELS)
    write_manifest(cls, m)
    vd = root / "vd"
    edgekit.convert(tiny_models.tiny_video_decoder(), "onnx,tflite", vd, input_shapes=[tiny_models.LATENT_SHAPE],
                    task="decode-video", value_range=(-1.0, 1.0), bench_runs=0, verify=False)
    return {"sr": sr, "cls": cls, "vd": vd}


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
