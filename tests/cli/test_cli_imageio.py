"""edgekit.imageio: reading and writing images with OpenCV or Pillow (pre-processing: tests/test_preprocess.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit import imageio
from edgekit.errors import EdgekitError

RNG = np.random.default_rng(3)
IMG = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


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


def test_unreadable_image_is_an_edgekit_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(EdgekitError, match="bad.png"):
        imageio.read_image(bad)
