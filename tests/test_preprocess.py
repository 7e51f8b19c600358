"""edgekit.preprocess: the one pre-processing spec, row by row of its table, and the proof that
``edgekit run``, the demo, verification and int8 calibration feed the same tensor for the same
image and manifest."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numeric import Bound, assert_close

from edgekit.errors import UsageError
from edgekit.preprocess import (LUMA, Preprocess, _area_weights, crop_box, guess_layout, image_layout, resize)

pytestmark = pytest.mark.numeric

RNG = np.random.default_rng(11)
IMG = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def spec(shape=(1, 3, 24, 24), dtype="float32", layout="NCHW", pre=None, task="classify") -> Preprocess:
    return Preprocess.for_input(shape, dtype, layout, pre, task)


# -- step 2: geometry -----------------------------------------------------------------------------
@pytest.mark.parametrize("hw,out,box", [
    ((480, 640), (224, 224), (0, 80, 480, 480)),      # wider: the sides go
    ((640, 480), (224, 224), (80, 0, 480, 480)),      # taller: top and bottom go
    ((480, 640), (240, 320), (0, 0, 480, 640)),       # same aspect: nothing
    ((5, 8), (2, 3), (0, 0, 5, 8)),                    # 8*2 > 3*5: cw = floor(5*3/2 + 0.5) = 8, all of it
    ((7, 7), (2, 1), (0, 1, 7, 4)),                    # cw = floor(3.5 + 0.5) = 4, x0 = (7 - 4) // 2
])
def test_crop_box(hw, out, box):
    y0, x0, h, w = crop_box(*hw, *out)
    assert (h, w) == box[2:] and (y0, x0) == ((hw[0] - h) // 2, (hw[1] - w) // 2)
    assert abs(w / h - out[1] / out[0]) <= 1 / min(h, w)  # the model's aspect, to a pixel


def test_half_pixel_lengths_round_up_as_javascript_does():
    # 5 x 3 image to a 2:1 model: the crop is 5 x 2.5 -> floor(2.5 + 0.5) = 3 rows (Python's round gives 2)
    y0, x0, h, w = crop_box(3, 5, 1, 2)
    assert (h, w) == (3, 5)
    y0, x0, h, w = crop_box(5, 5, 1, 2)
    assert h == 3 and y0 == 1 and round(2.5) == 2


@pytest.mark.parametrize("policy", ["crop", "stretch", "pad"])
def test_geometry_policies(policy):
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 200  # the centre square
    s = spec((1, 3, 20, 20), pre={"resize": policy})
    out, note = s.geometry(img)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    if policy == "crop":
        assert (out == 200).all() and note.startswith("centre crop 80x40 -> 40x40")
    elif policy == "stretch":
        assert (out[:, :5] == 0).all() and (out[:, 5:15] == 200).all() and "crop" not in note
    else:  # letterbox: 20 x 10 picture centred, zero rows above and below
        assert (out[:5] == 0).all() and (out[15:] == 0).all() and (out[5:15, 5:15] == 200).all()
        assert "padded to 20x20" in note


def test_default_policy_by_task_and_manifest_override():
    assert spec(task="classify").policy == "crop" and spec(task="super-resolve").policy == "native"
    assert spec(task="other").policy == "stretch" and spec(task=None).policy == "stretch"
    assert spec(task="classify", pre={"resize": "pad"}).policy == "pad"
    assert spec(task="super-resolve", pre={"resize": "tile"}).policy == "tile"
    with pytest.raises(UsageError, match="unknown resize policy"):
        spec(pre={"resize": "zoom"})


@pytest.mark.parametrize("policy", ["native", "tile"])
def test_size_keeping_policies_keep_the_image_only_for_a_caller_that_runs_any_size(policy):
    """``native``/``tile``: the image as it is when the caller runs any size (edgekit.tiling);
    one input of the model's size (verification, calibration) is cut exactly as ``crop`` cuts it."""
    s = spec((1, 3, 24, 24), pre={"resize": policy}, task="super-resolve")
    assert s.keeps_size and not spec((1, 3, 24, 24), pre={"resize": "crop"}).keeps_size
    x, notes = s.to_tensor(IMG, any_size=True)
    assert x.shape == (1, 3, 48, 64) and not any("crop" in n or "resize" in n for n in notes)
    np.testing.assert_array_equal(x, s.encode(IMG))
    fixed, fixed_notes = s.to_tensor(IMG)
    crop, crop_notes = spec((1, 3, 24, 24), pre={"resize": "crop"}, task="super-resolve").to_tensor(IMG)
    assert fixed.shape == (1, 3, 24, 24) and fixed_notes[0] == crop_notes[0]
    np.testing.assert_array_equal(fixed, crop)
    # geometry alone: the same two answers, and crop/stretch/pad ignore any_size
    assert s.geometry(IMG, any_size=True)[0] is IMG and s.geometry(IMG)[0].shape == (24, 24, 3)
    for other in ("crop", "stretch", "pad"):
        o = spec((1, 3, 24, 24), pre={"resize": other})
        np.testing.assert_array_equal(o.geometry(IMG, any_size=True)[0], o.geometry(IMG)[0])


def test_any_size_model_takes_the_image_as_it_is_unless_the_manifest_names_a_size():
    assert spec((1, 3, "h", "w")).to_tensor(IMG)[0].shape == (1, 3, 48, 64)
    assert spec((1, 3, None, None), pre={"input_size": [16, 32]}).to_tensor(IMG)[0].shape == (1, 3, 16, 32)
    assert spec((1, 3, -1, -1), pre={"input_size": [1, 3, 8, 8]}).to_tensor(IMG)[0].shape == (1, 3, 8, 8)


# -- step 3: resize -------------------------------------------------------------------------------
def test_area_resize_is_the_box_average_for_integer_factors():
    out = resize(IMG.astype(np.float32), 12, 16, use_opencv=False)
    want = IMG.astype(np.float64).reshape(12, 4, 16, 4, 3).mean(axis=(1, 3))
    # NumPy's einsum sums 16 products in float64, then stores float32
    assert_close(out, want, Bound.roundoff(255.0, reduction=16, depth=1), "box average")
    weights = _area_weights(7, 3)  # a non-integer factor: every row sums to 1
    assert_close(weights.sum(axis=1), np.ones(3), Bound.roundoff(1.0, reduction=7, unit=2.0 ** -53), "weights")


@pytest.mark.parametrize("size", [(12, 16), (30, 47), (48, 64), (96, 128), (20, 100)])
def test_numpy_reference_matches_opencv(size):
    cv2 = pytest.importorskip("cv2")
    h, w = size
    area = h <= 48 and w <= 64
    flag = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    got = resize(IMG.astype(np.float32), h, w, use_opencv=False)
    # OpenCV interpolates float images in float32 (weights and up to (64/h + 1)(48/w + 1) taps)
    taps = math.ceil(48 / h + 1) * math.ceil(64 / w + 1) if area else 4
    assert_close(got, cv2.resize(IMG.astype(np.float32), (w, h), interpolation=flag),
                 Bound.roundoff(255.0, reduction=taps, depth=2), f"float {size}")
    # 8 bits: OpenCV rounds its weights to fixed point, then rounds the result: one level at most
    assert_close(resize(IMG, h, w, use_opencv=False), cv2.resize(IMG, (w, h), interpolation=flag),
                 Bound.quantised(1, "uint8 pixels"), f"uint8 {size}")
    assert resize(IMG, h, w).shape == (h, w, 3)  # whichever library is used


def test_resize_keeps_constant_images_and_the_identity():
    flat = np.full((9, 7, 3), 77, np.uint8)
    for h, w in ((4, 13), (3, 3), (18, 14)):
        np.testing.assert_array_equal(resize(flat, h, w, use_opencv=False), np.full((h, w, 3), 77, np.uint8))
    assert resize(IMG, 48, 64) is IMG


# -- steps 4-5: colour and values --------------------------------------------------------------------
@pytest.mark.parametrize("pre", [
    {},
    {"value_range": [-1, 1]},
    IMAGENET,
    {"color_order": "BGR", "value_range": [0, 255], "mean": [103.9, 116.8, 123.7], "std": [1, 1, 1]},
    {"color_order": "BGR", "value_range": [0, 1], "mean": [0.4], "std": [0.2]},
])
def test_values_follow_the_formula(pre):
    s = spec((1, 3, 48, 64), pre=pre)
    x, _ = s.to_tensor(IMG)
    src = IMG[:, :, ::-1] if pre.get("color_order") == "BGR" else IMG
    lo, hi = pre.get("value_range", [0, 1])
    want = ((src.astype(np.float64) / 255) * (hi - lo) + lo - np.asarray(pre.get("mean", 0.0))) \
        / np.asarray(pre.get("std", 1.0))
    # px * a + b in float64, rounded once to float32; the step-by-step form differs by a few ulp
    assert_close(x[0].transpose(1, 2, 0), want, Bound.roundoff(float(np.abs(want).max()), depth=2), str(pre))
    assert x.dtype == np.float32


def test_integer_inputs_and_grey():
    np.testing.assert_array_equal(spec((1, 48, 64, 3), "uint8", "NHWC").to_tensor(IMG)[0][0], IMG)
    i8 = spec((1, 48, 64, 3), "int8", "NHWC").to_tensor(IMG)[0][0]
    np.testing.assert_array_equal(i8.astype(np.int16), IMG.astype(np.int16) - 128)
    grey, notes = spec((1, 1, 48, 64), pre={"value_range": [0, 255]}).to_tensor(IMG)
    luma = np.clip(np.rint(IMG.astype(np.float64) @ np.asarray(LUMA)), 0, 255)
    np.testing.assert_array_equal(grey[0, 0], luma.astype(np.float32))
    assert "grey (BT.601 luma)" in notes


def test_folded_models_take_raw_pixels():
    pre = {**IMAGENET, "color_order": "BGR", "folded": True, "input_value_range": [0, 255], "input_color_order": "RGB"}
    x, notes = spec((1, 48, 64, 3), layout="NHWC", pre=pre).to_tensor(IMG)
    np.testing.assert_array_equal(x[0], IMG.astype(np.float32))
    assert notes[-1] == "scaled to [0, 255]"


def test_float16_inputs():
    x, _ = spec((1, 3, 48, 64), "float16").to_tensor(IMG)
    assert x.dtype == np.float16
    np.testing.assert_array_equal(x, (IMG.astype(np.float64) / 255).transpose(2, 0, 1)[None].astype(np.float16))


# -- step 6: layouts ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,layout", [((1, 3, 8, 8), "NCHW"), ((1, 8, 8, 3), "NHWC"), ((3, 8, 8), "CHW"),
                                          ((8, 8, 3), "HWC"), ((1, 1, 8, 8), "NCHW"), ((1, 8, 8, 1), "NHWC"),
                                          ((1, 3, 8, 3), "NCHW"), ((1, 16, 8, 8), None), ((1, 1000), None)])
def test_layout_guess(shape, layout):
    assert guess_layout(shape) == layout


def test_declared_layout_wins_and_non_images_are_refused():
    assert image_layout((1, 3, 8, 3), "NHWC") == "NHWC"
    assert image_layout((1, 16, 8, 8), "NCHW") is None  # 16 channels: not an image
    assert image_layout((1, 4, 8, 8), "NCTHW") is None
    x, _ = spec((3, 48, 64), layout="CHW").to_tensor(IMG)
    assert x.shape == (3, 48, 64)
    for shape in [(1, 1000), (1, 4, 2, 8, 8), (1, 16, 8, 8)]:
        with pytest.raises(UsageError, match="not an image"):
            spec(shape, layout=None)


def test_inconsistent_manifests_are_refused_when_the_spec_is_built():
    with pytest.raises(UsageError, match="2/3 values for a 3-channel input"):
        spec(pre={"mean": [0.5, 0.5], "std": [0.2, 0.2, 0.2]})
    with pytest.raises(UsageError, match="zero std"):
        spec(pre={"std": [0.2, 0.0, 0.2]})
    with pytest.raises(UsageError, match="HxWx3 uint8"):
        spec().to_tensor(IMG.astype(np.float32))


# -- from_tensor ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pre", [{}, {"value_range": [-1, 1]}, {"color_order": "BGR", "value_range": [0, 255]}])
def test_from_tensor_undoes_to_tensor(pre):
    s = spec((1, 3, 48, 64), pre=pre, task="super-resolve")
    x, _ = s.to_tensor(IMG)
    np.testing.assert_array_equal(s.from_tensor(x, "NCHW"), IMG)
    np.testing.assert_array_equal(Preprocess.for_output(pre).from_tensor(x, "NCHW"), IMG)
    clipped = Preprocess.for_output({}).from_tensor(np.full((1, 2, 2, 3), 7.0, np.float32), None)
    assert clipped.shape == (2, 2, 3) and (clipped == 255).all()


def test_from_tensor_of_a_folded_bgr_model_returns_rgb():
    pre = {"color_order": "BGR", "value_range": [0, 1], "folded": True, "input_value_range": [0, 255],
           "input_color_order": "RGB"}
    s = spec((1, 3, 48, 64), pre=pre, task="super-resolve")
    out = (IMG[:, :, ::-1].astype(np.float32) / 255).transpose(2, 0, 1)[None]  # the source's BGR output
    np.testing.assert_array_equal(s.from_tensor(out, "NCHW"), IMG)


# -- one spec, four users ---------------------------------------------------------------------------
def test_run_demo_verification_and_calibration_feed_the_same_tensor(tmp_path, monkeypatch):
    """One photo, one classifier manifest: ``edgekit run``'s feed, the demo's, verification's
    photo case and the first int8 calibration sample are the same tensor (the demo's fast OpenCV
    path is the same multiply-add rounded once more in float32)."""
    from edgekit.apps.camera.tasks import FramePreprocess
    from edgekit.bundle import Manifest
    from edgekit.cli.run import read_feed
    from edgekit.converters import quantize, verify
    from edgekit.imageio import write_image
    from edgekit.runtimes.base import TensorSpec

    photo = RNG.integers(0, 256, (60, 90, 3), dtype=np.uint8)  # 3:2, so the 1:1 model crops it
    shape = (1, 3, 24, 24)
    pre = {"layout": "NCHW", "color_order": "RGB", "value_range": [0.0, 1.0], **IMAGENET}
    want, _ = Preprocess.for_input(shape, "float32", "NCHW", pre, "classify").to_tensor(photo)

    class Session:  # what read_feed needs of a session
        inputs = [TensorSpec("x", shape, "float32", "NCHW")]
        manifest = Manifest(name="m", task="classify", source={}, preprocess=pre)

    path = tmp_path / "photo.png"
    write_image(path, photo)
    run_feed, notes = read_feed(path, Session(), pre)
    np.testing.assert_array_equal(run_feed["x"], want)
    assert notes[0].startswith("centre crop 90x60 -> 60x60")

    fast = FramePreprocess.from_manifest(Session.inputs[0], pre, task="classify")
    frame_bgr = np.ascontiguousarray(photo[:, :, ::-1])
    demo = fast(fast.low_res(frame_bgr))
    np.testing.assert_array_equal(fast.low_res(frame_bgr)[:, :, ::-1], Preprocess.for_input(
        shape, "float32", "NCHW", pre, "classify").geometry(photo)[0])  # the same pixels
    # (px - offset) * scale in float32 with offset and scale rounded to float32: four roundings
    assert_close(demo, want, Bound.roundoff(float(np.abs(want).max()), depth=4), "demo fast path")

    import edgekit.assets
    monkeypatch.setattr(edgekit.assets, "load_photo", lambda name: photo)
    cases = verify.make_cases([shape], [np.float32], task="classify", preprocess=pre, fold=None)
    np.testing.assert_array_equal(next(c for c in cases if c.name.startswith("photo")).source[0], want)

    monkeypatch.setattr(quantize, "_photos", lambda: [photo])
    samples, _ = quantize.calibration_inputs([shape], [np.float32], preprocess=pre, n=1, task="classify")
    np.testing.assert_array_equal(samples[0][0], want)
