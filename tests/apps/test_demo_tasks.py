"""Pre- and post-processing of the demo tasks, number by number: the one-call OpenCV blob
against a plain NumPy reference, and real converted stand-in models whose outputs are known
(nearest-neighbour ×2, a colour classifier)."""

from __future__ import annotations

import numpy as np
import pytest
from numeric import THREADS, Bound, assert_close

import edgekit
from edgekit.apps.camera.tasks import FramePreprocess as Preprocess, make_task
from edgekit.errors import DemoError
from edgekit.runtimes.base import TensorSpec

pytestmark = pytest.mark.numeric

U64 = 2.0 ** -53  # float64's unit round-off: the softmax and top-k are computed in float64


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("pre", [
    {"color_order": "RGB", "value_range": [0, 1]},
    {"color_order": "BGR", "value_range": [-1, 1]},
    {"color_order": "RGB", "value_range": [0, 1], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    {"color_order": "BGR", "value_range": [0, 255], "mean": [103.9, 116.8, 123.7], "std": [1, 1, 1]},
    {"color_order": "BGR", "value_range": [0, 1], "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2], "folded": True,
     "input_value_range": [0, 255], "input_color_order": "RGB"},
])
def test_blob_matches_the_step_by_step_reference(layout, pre):
    shape = (1, 3, 48, 64) if layout == "NCHW" else (1, 48, 64, 3)
    p = Preprocess.from_manifest(TensorSpec("x", shape, "float32", layout), pre)
    img = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    got = p(img)
    # the reference, written out as the manifest reads: colour order, /255, value range, mean/std
    src = img[:, :, ::-1] if (pre.get("input_color_order") if pre.get("folded") else pre["color_order"]) == "RGB" else img
    x = src.astype(np.float64) / 255.0
    lo, hi = pre.get("input_value_range") if pre.get("folded") else pre["value_range"]
    x = x * (hi - lo) + lo
    if not pre.get("folded"):
        x = (x - np.asarray(pre.get("mean", [0, 0, 0]))) / np.asarray(pre.get("std", [1, 1, 1]))
    want = (x.transpose(2, 0, 1) if layout == "NCHW" else x)[None]
    assert got.shape == shape and got.dtype == np.float32
    # The blob is (pixel - offset) * scale in float32, offset and scale themselves rounded to
    # float32: four roundings, of values up to (|hi - lo| + |mean - lo|) / std in output units
    # (the pixel term and the offset term; the result is no larger).
    if pre.get("folded"):  # (lo, hi): the input value range, no mean or std
        largest = abs(hi - lo) + abs(lo)
    else:
        mean, std = np.asarray(pre.get("mean", [0, 0, 0])), np.asarray(pre.get("std", [1, 1, 1]))
        largest = float(np.max((abs(hi - lo) + np.abs(mean - lo)) / np.abs(std)))
    assert_close(got, want, Bound.roundoff(largest, reduction=1, depth=4), "blob")


def test_crop_keeps_the_model_aspect():
    p = Preprocess.from_manifest(TensorSpec("x", (1, 3, 64, 64), "float32", "NCHW"), {}, task="classify")
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 40:280] = 255  # the centre 240x240 square
    low = p.low_res(frame)
    assert low.shape == (64, 64, 3) and low.min() == 255


def test_rejects_inputs_the_demo_cannot_feed():
    with pytest.raises(DemoError, match="3 channels"):
        Preprocess.from_manifest(TensorSpec("x", (1, 1, 32, 32), "float32", "NCHW"), {})
    with pytest.raises(DemoError, match="rank 4"):
        Preprocess.from_manifest(TensorSpec("x", (1, 3, 32), "float32", None), {})
    with pytest.raises(DemoError, match="int8"):
        Preprocess.from_manifest(TensorSpec("x", (1, 3, 32, 32), "int8", "NCHW"), {})


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_upscale_renders_the_model_output_exactly(standins, backend):
    """The stand-in computes nearest ×2: the 'model' view must be the nearest upscale of the
    low-res frame, pixel for pixel (±1 for float rounding), in the right colours."""
    pixels = Bound.quantised(1, "uint8 pixels: the float32 round trip /255, x255 may flip a rounding")
    with edgekit.load(standins["nearest_sr"], backend=backend, threads=THREADS) as session:
        task = make_task("upscale", session)
        assert task.output_size((320, 240)) == (640, 480) and task.scale == 2
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        frame[:40, :40] = (0, 0, 255)  # a red block (BGR) must stay red
        job = task.prepare(frame)
        outputs = session.run(job.feed)
        model = task.render(frame, job, outputs, "model").image
        want = frame.repeat(2, axis=0).repeat(2, axis=1)
        # labels are drawn in the bottom-right corner: compare everything above them
        assert_close(model[:400], want[:400], pixels, "model view")
        assert tuple(model[10, 10]) == (0, 0, 255)
        split = task.render(frame, task.prepare(frame), session.run(task.prepare(frame).feed), "split").image
        bicubic = task.render(frame, job, outputs, "bicubic").image
        assert split.shape == bicubic.shape == (480, 640, 3)
        np.testing.assert_array_equal(split[:400, :300], bicubic[:400, :300])
        assert_close(split[:400, 340:], want[:400, 340:], pixels, "right half of split view")


def test_upscale_views_keep_the_output_size(standins):
    with edgekit.load(standins["nearest_sr"], threads=1) as session:
        task = make_task("upscale", session)
        frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        for view in task.views:
            job = task.prepare(frame)
            assert task.render(frame, job, session.run(job.feed), view).image.shape == (480, 640, 3), view


@pytest.mark.parametrize("colour,label", [((0, 0, 255), "red"), ((0, 255, 0), "green"), ((255, 0, 0), "blue")])
def test_classify_top5_from_manifest_labels(standins, colour, label):
    with edgekit.load(standins["colour_classifier"], threads=THREADS) as session:
        task = make_task("classify", session)
        frame = np.zeros((240, 320, 3), np.uint8)
        frame[:] = colour  # BGR
        job = task.prepare(frame)
        rendered = task.render(frame, job, session.run(job.feed), "frame")
        top = rendered.top_k
        assert len(top) == 5 and top[0][0] == label, top
        # all five classes of a float64 softmax: 1 up to the round-off of exp, / and a 5-term sum
        assert_close(sum(p for _, p in top), 1.0, Bound.roundoff(1.0, reduction=5, depth=3, unit=U64), "top-5 sum")
        assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
        assert rendered.image.shape == (240, 320, 3)


def test_classify_without_labels_shows_indices(fake_session):
    from edgekit.apps.camera.tasks import Classify

    class NoLabels(fake_session):
        def __init__(self):
            super().__init__()
            self.outputs = [TensorSpec("y", (1, 7), "float32", "NC")]
            self.manifest.task = "classify"

    task = Classify(NoLabels())
    logits = np.array([[0.1, 3.0, -1, 2.0, 0.0, 0.5, 1.0]], np.float32)
    top = task.top_k(logits)
    assert [n for n, _ in top] == ["class 1", "class 3", "class 6", "class 5", "class 0"]
    probs = np.exp(logits[0].astype(np.float64))  # the same float32 logits, softmax in float64
    want = probs[1] / probs.sum()
    assert_close(top[0][1], want, Bound.roundoff(want, reduction=7, depth=3, unit=U64), "softmax")
