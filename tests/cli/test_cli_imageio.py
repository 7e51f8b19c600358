"""edgekit.imageio: reading/writing without OpenCV, resizing, and image <-> tensor conversion."""

from __future__ import annotations

import numpy as np
import pytest
from numeric import Bound, assert_close

from edgekit import imageio
from edgekit.errors import EdgekitError, UsageError

RNG = np.random.default_rng(3)
IMG = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)

pytestmark = pytest.mark.numeric


@pytest.mark.parametrize("backend", ["cv2", "pil"])
def test_png_roundtrip_with_either_library(tmp_path, monkeypatch, backend):
    if backend == "pil":
        monkeypatch.setattr(imageio, "_cv2", lambda: None)
    else:
        pytest.importorskip("cv2")
    path = imageio.write_image(tmp_path / "a.png", IMG)
    np.testing.assert_array_equal(imageio.read_image(path), IMG)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_cv2_and_pil_agree_on_rgb_order(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    path = imageio.write_image(tmp_path / "a.png", IMG)
    via_cv2 = imageio.read_image(path)
    monkeypatch.setattr(imageio, "_cv2", lambda: None)
    np.testing.assert_array_equal(imageio.read_image(path), via_cv2)


def test_numpy_resize_matches_opencv_linear():
    cv2 = pytest.importorskip("cv2")
    up = imageio._resize_bilinear(IMG.astype(np.float32), 30, 47)
    # OpenCV interpolates float images in float32 (weights and 2 + 2 taps), imageio in float64
    assert_close(up, cv2.resize(IMG.astype(np.float32), (47, 30), interpolation=cv2.INTER_LINEAR),
                 Bound.roundoff(255.0, reduction=4, depth=2), "float")
    up8 = imageio._resize_bilinear(IMG, 30, 47)
    # OpenCV's 8-bit path rounds the 2 + 2 weights to 1/2048 (at most 255 x 4 / 4096 = 0.25 level
    # off), then rounds to 8 bits: the two roundings differ by at most one level
    assert_close(up8, cv2.resize(IMG, (47, 30), interpolation=cv2.INTER_LINEAR), Bound.quantised(1, "uint8 pixels"),
                 "uint8")


def test_numpy_resize_keeps_constant_images():
    flat = np.full((9, 7, 3), 77, np.uint8)
    np.testing.assert_array_equal(imageio._resize_bilinear(flat, 4, 13), np.full((4, 13, 3), 77, np.uint8))


def test_unreadable_image_is_an_edgekit_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(EdgekitError, match="bad.png"):
        imageio.read_image(bad)


def test_image_to_tensor_nchw_with_mean_std():
    pre = {"value_range": [0, 1], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]}
    x, notes = imageio.image_to_tensor(IMG, (1, 3, 12, 20), "float32", None, pre)
    assert x.shape == (1, 3, 12, 20) and x.dtype == np.float32
    want = (IMG.astype(np.float64) / 255 - 0.5) / np.array([0.25, 0.5, 1.0])
    # float32: scale, offset, subtract the mean, divide by the std; values up to max|want|
    assert_close(x[0].transpose(1, 2, 0), want, Bound.roundoff(np.abs(want).max(), reduction=1, depth=4), "NCHW")
    assert not any("resized" in n for n in notes)


def test_image_to_tensor_nhwc_bgr_value_range():
    x, _ = imageio.image_to_tensor(IMG, (1, 6, 10, 3), "float32", "NHWC",
                                   {"color_order": "BGR", "value_range": [-1, 1]})
    assert x.shape == (1, 6, 10, 3)
    ref = imageio.resize(IMG, 6, 10)[:, :, ::-1].astype(np.float64) / 255 * 2 - 1
    # float32: scale and offset (two roundings and the rounded constants) of values up to 1
    assert_close(x[0], ref, Bound.roundoff(1.0, reduction=1, depth=3), "NHWC BGR")


def test_image_to_tensor_quantized_and_grey():
    u8, _ = imageio.image_to_tensor(IMG, (1, 12, 20, 3), "uint8", "NHWC")
    np.testing.assert_array_equal(u8[0], IMG)
    i8, _ = imageio.image_to_tensor(IMG, (1, 12, 20, 3), "int8", "NHWC")
    np.testing.assert_array_equal(i8[0].astype(np.int16), IMG.astype(np.int16) - 128)
    grey, notes = imageio.image_to_tensor(IMG, (1, 1, 12, 20), "float32", "NCHW")
    luma = IMG.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    levels = grey[0, 0].astype(np.float64) * 255
    # 8-bit levels scaled to [0, 1] in float32 (two roundings of values up to 255 after * 255)
    assert_close(levels, np.rint(levels), Bound.roundoff(255.0, reduction=1, depth=2), "grey levels")
    # imageio rounds a float32 luma to 8 bits: float32 noise can flip a rounding by one level
    assert_close(np.rint(levels), np.rint(luma), Bound.quantised(1, "8-bit grey levels"), "grey")
    assert any("grey" in n for n in notes)


def test_image_to_tensor_dynamic_size_uses_manifest_or_image():
    x, _ = imageio.image_to_tensor(IMG, (1, 3, "h", "w"), "float32", "NCHW", {"input_size": [8, 8]})
    assert x.shape == (1, 3, 8, 8)
    y, _ = imageio.image_to_tensor(IMG, (1, 3, None, None), "float32", "NCHW")
    assert y.shape == (1, 3, 12, 20)


def test_non_image_inputs_are_refused():
    for shape in [(1, 1000), (1, 4, 2, 8, 8), (1, 16, 8, 8)]:
        with pytest.raises(UsageError, match="not an image"):
            imageio.image_to_tensor(IMG, shape, "float32", None)


def test_tensor_to_image_inverts_image_to_tensor():
    x, _ = imageio.image_to_tensor(IMG, (1, 3, 12, 20), "float32", "NCHW", {"value_range": [-1, 1]})
    back = imageio.tensor_to_image(x, "NCHW", {"value_range": [-1, 1]})
    np.testing.assert_array_equal(back, IMG)
    clipped = imageio.tensor_to_image(np.full((1, 2, 2, 3), 7.0, np.float32), None)
    assert clipped.shape == (2, 2, 3) and (clipped == 255).all()
