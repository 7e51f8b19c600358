"""Frame sources: the virtual camera, video files, and the one-line errors of cameras and files
that cannot be opened."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from edgekit.apps.camera.sources import OpenCVCapture, VideoFile, VirtualCamera, open_source, parse_size
from edgekit.errors import DemoError, UsageError


def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text, f"multi-line error: {text!r}"
    return text


def test_parse_size():
    assert parse_size("320x240") == (320, 240)
    assert parse_size(" 640X480 ") == (640, 480)
    assert parse_size(None) is None
    for bad in ("320", "320x", "4x4", "axb", "320*240"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_virtual_camera_is_deterministic_and_moves():
    a, b = VirtualCamera((320, 240), seed=3), VirtualCamera((320, 240), seed=3)
    f0, f1 = a.read(), a.read()
    assert f0.shape == (240, 320, 3) and f0.dtype == np.uint8
    np.testing.assert_array_equal(f0, b.read())
    np.testing.assert_array_equal(f1, b.frame_at(1))
    assert not np.array_equal(f0, VirtualCamera((320, 240), seed=4).frame_at(0))
    # the camera moves: frames a second apart differ by far more than the noise
    diff = np.abs(a.frame_at(0).astype(int) - a.frame_at(30).astype(int)).mean()
    assert diff > 5, f"mean difference {diff:.1f} levels over 30 frames: the camera does not move"
    # a little noise: two renders of one frame index agree, neighbouring frames are not identical
    assert np.abs(a.frame_at(5).astype(int) - a.frame_at(6).astype(int)).max() > 0
    # real photographs, not flat colour: plenty of texture
    assert f0.std() > 20


def test_virtual_camera_bounded_and_paced():
    cam = VirtualCamera((160, 120), frames=5)
    assert [cam.read() is None for _ in range(6)] == [False] * 5 + [True]
    live = VirtualCamera((160, 120), fps=100.0, live=True, frames=16)
    t0 = time.perf_counter()
    while live.read() is not None:
        pass
    # 15 frame intervals at 100 fps: a lower bound, and sleeps never end early, so a slower or
    # busier machine only makes it longer
    assert time.perf_counter() - t0 >= 0.14


def test_open_source_picks_the_kind():
    assert isinstance(open_source(None), VirtualCamera)
    v = open_source("virtual", (200, 100))
    assert v.size == (200, 100) and v.read().shape == (100, 200, 3)


def test_video_file_every_frame_then_end(clip):
    src = open_source(str(clip))
    assert isinstance(src, VideoFile) and not src.live and src.size == (320, 240)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == 20
    src.close()
    small = VideoFile(clip, size=(160, 120))
    assert small.read().shape == (120, 160, 3)


def test_missing_video(tmp_path):
    with pytest.raises(DemoError, match="no such video file") as e:
        open_source(str(tmp_path / "nope.mp4"))
    assert "nope.mp4" in one_line(e.value)


def test_unreadable_video(junk_video, tmp_path):
    with pytest.raises(DemoError, match="cannot decode this file as a video") as e:
        open_source(str(junk_video))
    assert "junk.mp4" in one_line(e.value)
    with pytest.raises(DemoError, match="folder"):
        open_source(str(tmp_path))


def test_camera_index_that_does_not_exist():
    with pytest.raises(DemoError, match="cannot open this camera") as e:
        open_source("99")
    assert "camera 99" in one_line(e.value)
    with pytest.raises(DemoError, match="no such camera device"):
        OpenCVCapture("/dev/video99")


@pytest.mark.skipif(importlib.util.find_spec("picamera2") is not None, reason="Picamera2 is installed here")
def test_picamera_without_picamera2_says_what_to_install():
    with pytest.raises(DemoError, match="Picamera2") as e:
        open_source("picamera")
    assert "python3-picamera2" in one_line(e.value)
