"""Fixtures for the camera demo tests: stand-in bundles (built once per session with
torch.onnx and litert-torch, see ``demo_standins.py``), generated clips, broken files, and a
fake session for pipeline tests that need no model at all."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import demo_standins  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def standins(tmp_path_factory) -> dict[str, Path]:
    """Bundle folders of the stand-in models: ``nearest_sr`` and ``colour_classifier``."""
    pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    root = tmp_path_factory.mktemp("demo_bundles")
    return {name: demo_standins.build_bundle(name, root / name) for name in ("nearest_sr", "colour_classifier")}


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A 320x240 mp4v clip of 20 frames."""
    return demo_standins.write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=20)


@pytest.fixture(scope="session")
def junk_video(tmp_path_factory) -> Path:
    """Random bytes named .mp4."""
    path = tmp_path_factory.mktemp("junk") / "junk.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    return path


class FakeSession:
    """A Session stand-in with no model: nearest-neighbour ×2 in NumPy, ``delay_s`` of sleep per
    run (sleep releases the GIL like a real runtime), a manifest saying super-resolve."""

    def __init__(self, delay_s: float = 0.0, size=(320, 240)):
        from edgekit.bundle import Manifest
        from edgekit.runtimes.base import Placement, TensorSpec

        w, h = size
        self.path = Path("fake.onnx")
        self.inputs = [TensorSpec("x", (1, 3, h, w), "float32", "NCHW")]
        self.outputs = [TensorSpec("y", (1, 3, 2 * h, 2 * w), "float32", "NCHW")]
        self.placement = Placement("fake", "none", {"CPU": 1})
        self.manifest = Manifest(name="fake_sr", task="super-resolve", source={"kind": "module", "ref": "fake"},
                                 preprocess={"layout": "NCHW", "color_order": "RGB", "value_range": [0, 1],
                                             "scale_factor": 2})
        self.delay_s = delay_s
        self.runs = 0
        self.closed = False

    def run(self, feed):
        x = feed["x"]
        if self.delay_s:
            time.sleep(self.delay_s)
        self.runs += 1
        return {"y": x.repeat(2, axis=2).repeat(2, axis=3)}

    def close(self):
        self.closed = True


@pytest.fixture
def fake_session():
    return FakeSession

