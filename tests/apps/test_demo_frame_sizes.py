"""Frames of any size through a super-resolution bundle made at one fixed size (the nearest x2
stand-in, 320x240): the demo and ``edgekit run`` use the same mechanism
(:class:`edgekit.tiling.ImageRunner`), make the same plan for a size (native, the runtime's
input resized, or tiles) and say which; the output is the whole frame at twice its size, equal
pixel for pixel to the nearest upscale the model computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numeric import THREADS, Bound, assert_close

import edgekit
from edgekit.apps.camera.tasks import make_task
from edgekit.tiling import ImageRunner

pytestmark = pytest.mark.numeric

PIXELS = Bound.quantised(1, "uint8 pixels: the float32 round trip /255, x255 may flip a rounding")
# (width, height): the model's own size, larger and odd in both (not a whole number of tiles),
# smaller than the model in both, wider but shorter, and a 1080p camera frame
SIZES = [(320, 240), (333, 251), (200, 150), (500, 100), (1920, 1080)]
SIZE_KEEPING = ("native", "resized", "tiled")


def frame_of(w: int, h: int, seed: int = 0) -> np.ndarray:
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    frame[:8, :8] = (0, 0, 255)  # a red block (BGR) must stay red
    return frame


def nearest_x2(img: np.ndarray) -> np.ndarray:
    return img.repeat(2, axis=0).repeat(2, axis=1)


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
@pytest.mark.parametrize("w,h", SIZES)
def test_the_demo_and_run_plan_alike_and_upscale_the_whole_frame(standins, backend, w, h):
    with edgekit.load(standins["nearest_sr"], backend=backend, threads=THREADS) as session:
        task = make_task("upscale", session)
        run_runner = ImageRunner.for_session(session, session.manifest.preprocess, session.manifest.task)
        frame = frame_of(w, h)
        demo_plan = task.plan((w, h))
        # the demo's plan is the one `edgekit run` makes for an image of this size
        assert demo_plan.to_dict() == run_runner.plan(h, w).to_dict()
        assert demo_plan.mode in SIZE_KEEPING, demo_plan.to_dict()
        if (w, h) == (320, 240):
            assert demo_plan.mode == "native"
        line = task.spatial_line()
        assert line is not None and line.startswith(demo_plan.short), line
        assert task.output_size((w, h)) == (2 * w, 2 * h)
        job = task.prepare(frame)
        outputs = task.model.run(job.feed)
        view = task.render(frame, job, outputs, "model").image
    assert view.shape == (2 * h, 2 * w, 3)
    want = nearest_x2(frame)
    # the model's name is drawn in the bottom-right corner: compare the rows above it
    top = 2 * h - max(40, 2 * h // 6)
    assert_close(view[:top], want[:top], PIXELS, f"model view of a {w}x{h} frame ({demo_plan.short})")
    assert tuple(view[4, 4]) == (0, 0, 255)


def test_a_frame_size_change_makes_a_new_plan(standins):
    """A source whose frames change size (a camera renegotiating): each size gets its plan."""
    with edgekit.load(standins["nearest_sr"], threads=THREADS) as session:
        task = make_task("upscale", session)
        for w, h in [(320, 240), (333, 251), (320, 240)]:
            frame = frame_of(w, h, seed=w)
            job = task.prepare(frame)
            assert task.frame_plan.image == (h, w)
            y = task.render(frame, job, task.model.run(job.feed), "model").image
            assert y.shape == (2 * h, 2 * w, 3)
            assert_close(y[:300], nearest_x2(frame)[:300], PIXELS, f"{w}x{h} after a size change")


@pytest.fixture(scope="module")
def odd_clip(tmp_path_factory):
    from demo_standins import write_clip

    return write_clip(tmp_path_factory.mktemp("odd") / "odd.mp4", frames=4, size=(334, 250))


def test_the_demo_and_run_commands_say_how_they_ran(standins, odd_clip, tmp_path):
    """The CLI: a 334x250 video through the demo, and one of its frames as a PNG through
    ``edgekit run``: both at 668x500, with the same spatial plan in their JSON."""
    import subprocess
    import sys

    import cv2

    from demo_standins import demo_env
    from edgekit.apps.camera.record import count_frames
    from edgekit.imageio import read_image, write_image

    bundle = str(standins["nearest_sr"])
    rec = tmp_path / "odd.mp4"
    cli = [sys.executable, "-c", "from edgekit.cli import main; main()"]
    r = subprocess.run([*cli, "demo", "upscale", "--model", bundle, "--source", str(odd_clip), "--headless",
                        "--record", str(rec), "--json", "--threads", str(THREADS), "--backend", "onnxruntime"],
                       capture_output=True, text=True, env=demo_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    demo = json.loads(r.stdout)
    assert demo["frame_size"] == [334, 250] and demo["output_size"] == [668, 500]
    assert demo["spatial"]["mode"] in SIZE_KEEPING and demo["spatial"]["image"] == [334, 250]
    assert count_frames(rec) == (4, (668, 500))

    cap = cv2.VideoCapture(str(odd_clip))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    png = write_image(tmp_path / "frame.png", np.ascontiguousarray(bgr[:, :, ::-1]))
    out = tmp_path / "hr.png"
    r = subprocess.run([*cli, "run", bundle, "--input", str(png), "--output", str(out), "--json", "--threads",
                        str(THREADS), "--backend", "onnxruntime"], capture_output=True, text=True, env=demo_env(),
                       timeout=120)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["spatial"] == demo["spatial"]
    hr = read_image(out)
    assert hr.shape == (500, 668, 3)
    assert_close(hr, nearest_x2(bgr[:, :, ::-1]), PIXELS, "edgekit run on a 334x250 frame")
