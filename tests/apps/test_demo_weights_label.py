"""A model whose bundle says its weights are random (a zoo architecture converted without
trained weights) says so on every rendered frame, in red — and so in the recording, which is
made of the rendered frames. Checked on the render function's pixels and on a decoded
recording of plain grey frames, where nothing else on the frame is red."""

from __future__ import annotations

import copy
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

import edgekit
from edgekit.apps.camera.app import DemoOptions, DemoSink, run_demo
from edgekit.apps.camera.pipeline import Frame, PipelineStats, Result
from edgekit.apps.camera.record import count_frames
from edgekit.apps.camera.tasks import RANDOM_WEIGHTS_LABEL, has_random_weights, make_task

UNTRAINED = {"kind": "zoo", "ref": "mobilenet_v2", "weights": None, "weights_sha256": None, "pretrained": False}


@pytest.mark.parametrize("source,random", [
    (UNTRAINED, True),
    ({**UNTRAINED, "pretrained": True, "weights": "edgekit:m.safetensors"}, False),  # the shipped trained weights
    ({**UNTRAINED, "weights": "my.safetensors", "weights_sha256": "ab"}, False),  # the user's weights file
    ({"kind": "module", "ref": "net.py:make"}, False),  # a user's module: whatever weights it has
    ({"kind": "onnx", "ref": "m.onnx"}, False),
    ({}, False),
])
def test_which_manifests_mean_random_weights(source, random):
    assert has_random_weights(SimpleNamespace(source=source)) is random
    assert has_random_weights(None) is False  # a bare model file says nothing about its weights


def red_pixels(img: np.ndarray) -> int:
    """Pixels whose red exceeds both green and blue by more than 40 levels: the warning's red
    (BGR 70, 70, 255: 185 more) and its blends with the panel. The panel's other text is white
    (0 more) or amber (BGR 80, 220, 255: 35 more, less when blended); a grey frame has none."""
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero(r - np.maximum(g, b) > 40))


def grey(h=240, w=320) -> np.ndarray:
    return np.full((h, w, 3), 128, np.uint8)


@pytest.fixture(scope="module")
def classifier(standins):
    with edgekit.load(standins["colour_classifier"], threads=1) as session:
        yield session


def compose(session, source: dict, recorder=None) -> tuple[np.ndarray, DemoSink]:
    session = copy.copy(session)
    session.manifest = copy.deepcopy(session.manifest)
    session.manifest.source = source
    task = make_task("classify", session)
    sink = DemoSink(task, model_name="colour_classifier", backend="b", accelerator="a", live=False, recorder=recorder)
    frame = grey()
    job = task.prepare(frame)
    sink.consume(Result(Frame(0, frame, 0.0), job, session.run(job.feed), 1.0), PipelineStats())
    return sink.last_image, sink


def test_the_rendered_frame_says_random_weights(classifier):
    class Recorder:
        frames: list = []

        def write(self, img):
            self.frames.append(img.copy())

    rec = Recorder()
    untrained, sink = compose(classifier, UNTRAINED, rec)
    trained, _ = compose(classifier, {**UNTRAINED, "pretrained": True, "weights": "edgekit:w"})
    assert sink.task.warnings == [RANDOM_WEIGHTS_LABEL["classify"]] == ["random weights - labels meaningless"]
    assert red_pixels(trained) == 0
    assert red_pixels(untrained) > 50, red_pixels(untrained)  # a line of red text
    ys, xs = np.nonzero(np.any(untrained != trained, axis=2))
    assert ys.max() < untrained.shape[0] // 2 and xs.min() < 20  # only the stats panel (top-left) changed
    # what is recorded is that very frame
    assert len(rec.frames) == 1 and np.array_equal(rec.frames[0], untrained)


class GreySource:
    """``n`` plain grey frames (not paced), then the end."""

    live, fps, name, size = False, 30.0, "grey", (320, 240)

    def __init__(self, n: int):
        self.n = n

    def read(self):
        self.n -= 1
        return grey() if self.n >= 0 else None

    def close(self):
        pass


@pytest.fixture(scope="module")
def untrained_bundle(standins, tmp_path_factory):
    """The colour classifier stand-in with the manifest of an untrained zoo conversion."""
    out = tmp_path_factory.mktemp("untrained") / "untrained_classifier"
    shutil.copytree(standins["colour_classifier"], out)
    manifest = json.loads((out / "edgekit.json").read_text())
    manifest["source"] = UNTRAINED
    (out / "edgekit.json").write_text(json.dumps(manifest))
    return out


def test_the_recording_says_random_weights(standins, untrained_bundle, tmp_path):
    import cv2

    red = {}
    for name, bundle in (("trained", standins["colour_classifier"]), ("untrained", untrained_bundle)):
        out = tmp_path / f"{name}.mp4"
        res = run_demo(DemoOptions(task="classify", model=str(bundle), headless=True, record=out, threads=1),
                       log=lambda m: None, source=GreySource(4))
        assert res.summary["random_weights"] is (name == "untrained")
        assert count_frames(out) == (4, (320, 240))
        cap = cv2.VideoCapture(str(out))
        ok, first = cap.read()
        cap.release()
        assert ok
        red[name] = red_pixels(first)
    # through mp4v (4:2:0 chroma, lossy) the red text spreads and fades but stays red: 680 such
    # pixels measured in the warning's rows; the trained run's amber text reached 20 levels at most
    assert red["trained"] == 0 and red["untrained"] > 100, red
