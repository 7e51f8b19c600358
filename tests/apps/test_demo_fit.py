"""`edgekit demo upscale|classify` refuses a model made for the other task (or for none of
them): from a bundle's manifest or a zoo card before anything opens, from a bare file's tensors
once it is loaded. One line naming the model, what it is and what to pass instead; exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from demo_standins import demo_env
from edgekit.apps.camera.tasks import check_model_fits, kind_from_shapes, make_task
from edgekit.errors import UsageError
from edgekit.runtimes.base import TensorSpec

CLI = "from edgekit.cli import main; main()"
NO_TORCH = "import sys; sys.modules['torch'] = None; " + CLI


class ShapeSession:
    """Only tensors: what a bare model file's session says about itself. ``probe`` answers
    :meth:`output_shapes_for` (None: the runtime cannot tell)."""

    def __init__(self, ins, outs, probe=None, manifest=None):
        self.inputs = [TensorSpec(f"x{i}", tuple(s), "float32", lay) for i, (s, lay) in enumerate(ins)]
        self.outputs = [TensorSpec(f"y{i}", tuple(s), "float32", lay) for i, (s, lay) in enumerate(outs)]
        self.probe, self.manifest, self.path = probe, manifest, Path("m.tflite")
        self.asked = []

    def output_shapes_for(self, shapes):
        self.asked.append(dict(shapes))
        return None if self.probe is None else {self.outputs[0].name: self.probe(next(iter(shapes.values())))}


# -- what the tensors say ----------------------------------------------------------------------------
@pytest.mark.parametrize("ins,outs,kind,says", [
    # super-resolution: same channels, H and W one factor s > 1 larger, either layout, declared or guessed
    ([((1, 3, 240, 320), None)], [((1, 3, 480, 640), None)], "super-resolve", "x2"),
    ([((1, 64, 48, 3), None)], [((1, 192, 144, 3), None)], "super-resolve", "x3"),
    ([((1, 3, 32, 32), "NCHW")], [((1, 3, 128, 128), "NCHW")], "super-resolve", "x4"),
    ([((1, 3, 30, 40), "NCHW")], [((1, 60, 80, 3), "NHWC")], "super-resolve", "x2"),  # a layout-translated output
    # classifiers: one vector of scores per image
    ([((1, 3, 224, 224), None)], [((1, 1000), None)], "classify", "1000 scores"),
    ([((1, 224, 224, 3), None)], [((1, 1, 1, 10), None)], "classify", "10 scores"),
    ([((1, 3, 64, 64), None)], [((1, 5, 1, 1), None)], "classify", "5 scores"),
    # image outputs that are not upscales
    ([((1, 3, 64, 64), None)], [((1, 3, 64, 64), None)], "image", "the input's size"),
    ([((1, 3, 64, 64), None)], [((1, 21, 64, 64), None)], "image", "21 channels out of 3"),
    ([((1, 3, 64, 64), None)], [((1, 3, 128, 64), None)], "image", "x2 in height and x1 in width"),
    ([((1, 3, 64, 64), None)], [((1, 3, 32, 32), None)], "image", "x0.5"),
    # inputs that are not one image: a video decoder's latent clip, two inputs, a 4-channel tensor
    ([((1, 16, 4, 8, 8), "NCTHW")], [((1, 3, 16, 64, 64), "NCTHW")], "not-image", "1x16x4x8x8 is not one image"),
    ([((1, 3, 64, 64), None), ((1, 3, 64, 64), None)], [((1, 3, 64, 64), None)], "not-image", "2 inputs"),
    ([((1, 4, 64, 64), None)], [((1, 4, 128, 128), None)], "not-image", "1x4x64x64"),
    # neither: detections
    ([((1, 3, 320, 320), None)], [((1, 100, 6), None)], "other", "1x100x6"),
])
def test_kind_from_shapes(ins, outs, kind, says):
    got, desc = kind_from_shapes(ShapeSession(ins, outs))
    assert got == kind and says in desc, (got, desc)


def test_dynamic_sizes_are_asked_of_the_runtime():
    ins, outs = [((1, 3, "h", "w"), "NCHW")], [((1, 3, "h2", "w2"), "NCHW")]
    upscaler = ShapeSession(ins, outs, probe=lambda s: (s[0], s[1], 3 * s[2], 3 * s[3]))
    kind, desc = kind_from_shapes(upscaler)
    assert kind == "super-resolve" and "x3" in desc and upscaler.asked == [{"x0": (1, 3, 64, 64)}]
    same = ShapeSession(ins, outs, probe=lambda s: s)
    assert kind_from_shapes(same)[0] == "image"
    # the runtime cannot say: not refused here (the task's own checks speak when it runs)
    unknown = ShapeSession(ins, outs, probe=None)
    assert kind_from_shapes(unknown)[0] is None
    check_model_fits("upscale", unknown)
    check_model_fits("classify", unknown)


# -- the refusal ---------------------------------------------------------------------------------------
def refusal(kind, session, where=None) -> str:
    with pytest.raises(UsageError) as e:
        check_model_fits(kind, session, where)
    assert e.value.exit_code == 2
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bare_files_are_judged_by_their_tensors():
    classifier = ShapeSession([((1, 3, 64, 64), None)], [((1, 5), None)])
    msg = refusal("upscale", classifier, "cls.tflite")
    assert msg.startswith("cls.tflite: ") and "a classifier" in msg and "not a super-resolution model" in msg
    assert "run `edgekit demo classify --model cls.tflite`" in msg and "--model quicksrnet_small_x2" in msg
    upscaler = ShapeSession([((1, 3, 64, 64), None)], [((1, 3, 128, 128), None)])
    msg = refusal("classify", upscaler, "sr.onnx")
    assert "an upscaler" in msg and "run `edgekit demo upscale --model sr.onnx`" in msg and "mobilenet_v2" in msg
    decoder = ShapeSession([((1, 16, 4, 8, 8), None)], [((1, 3, 16, 64, 64), None)])
    for kind in ("upscale", "classify"):
        msg = refusal(kind, decoder, "dec.tflite")
        assert "is not one image" in msg and "edgekit demo upscale --model" not in msg
        assert "edgekit demo classify --model" not in msg  # nothing the demo runs: only what to pass instead
    same_size = ShapeSession([((1, 3, 64, 64), None)], [((1, 3, 64, 64), None)])
    msg = refusal("upscale", same_size)
    assert "the input's size" in msg and "super-resolution keeps the channels" in msg
    # the models that fit pass
    check_model_fits("upscale", upscaler)
    check_model_fits("classify", classifier)


@pytest.mark.parametrize("task,kind,ok", [
    ("classify", "upscale", False), ("super-resolve", "classify", False), ("decode-video", "upscale", False),
    ("decode-video", "classify", False), ("super-resolve", "upscale", True), ("classify", "classify", True),
])
def test_the_manifest_task_decides_for_a_bundle(task, kind, ok):
    # tensors that say the opposite of the manifest: the manifest wins
    tensors = ([((1, 3, 64, 64), None)], [((1, 5), None)] if task != "classify" else [((1, 3, 128, 128), None)])
    session = ShapeSession(*tensors, manifest=SimpleNamespace(task=task, name="b"))
    if ok:
        check_model_fits(kind, session, "bundles/b")
        return
    msg = refusal(kind, session, "bundles/b")
    assert msg.startswith("bundles/b: bundle 'b' is a " + task + " model"), msg
    other = {"classify": "classify", "super-resolve": "upscale"}.get(task)
    assert (f"run `edgekit demo {other} --model bundles/b`" in msg) == (other is not None), msg


def test_a_bundle_of_task_other_is_judged_by_its_tensors():
    other = SimpleNamespace(task="other", name="b")
    upscaler = ShapeSession([((1, 3, 64, 64), None)], [((1, 3, 128, 128), None)], manifest=other)
    check_model_fits("upscale", upscaler)
    assert "an upscaler" in refusal("classify", upscaler)


def test_make_task_refuses_a_classifier_bundle(standins):
    import edgekit

    with edgekit.load(standins["colour_classifier"], threads=1) as session:
        with pytest.raises(UsageError, match="classify model.*edgekit demo classify"):
            make_task("upscale", session)


# -- the command -----------------------------------------------------------------------------------------
def demo(*args, code=CLI, cwd=None):
    r = subprocess.run([sys.executable, "-c", code, "demo", *args, "--headless", "--no-record"],
                       capture_output=True, text=True, env=demo_env(), cwd=cwd, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r, [line for line in r.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def decoder_bundle(standins, tmp_path_factory):
    """The SR stand-in relabelled as a video decoder: what a decode-video bundle's manifest says."""
    out = tmp_path_factory.mktemp("decoder") / "decoder_bundle"
    shutil.copytree(standins["nearest_sr"], out)
    manifest = json.loads((out / "edgekit.json").read_text())
    manifest.update(task="decode-video", name="decoder_bundle")
    (out / "edgekit.json").write_text(json.dumps(manifest))
    return out


def test_cli_refuses_a_bundle_of_another_task_before_opening_the_camera(standins, decoder_bundle):
    cls, sr = standins["colour_classifier"], standins["nearest_sr"]
    # camera 99 does not exist: the model's refusal comes first, so nothing was opened
    r, lines = demo("upscale", "--model", str(cls), "--source", "99")
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"edgekit: error: {cls}: bundle 'colour_classifier' is a classify model")
    assert f"edgekit demo classify --model {cls}" in lines[0]
    r, lines = demo("classify", "--model", str(sr), "--source", "99")
    assert r.returncode == 2 and len(lines) == 1 and "is a super-resolve model" in lines[0], r.stderr
    assert f"edgekit demo upscale --model {sr}" in lines[0]
    for kind in ("upscale", "classify"):
        r, lines = demo(kind, "--model", str(decoder_bundle))
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert "bundle 'decoder_bundle' is a decode-video model" in lines[0] and "pass a" in lines[0]


def test_cli_refuses_bare_files_by_their_tensors(standins):
    cls_file, sr_file = standins["colour_classifier"] / "model.tflite", standins["nearest_sr"] / "model.onnx"
    r, lines = demo("upscale", "--model", str(cls_file))
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"{cls_file}: its tensors say it is a classifier" in lines[0] and "5 scores per image" in lines[0]
    r, lines = demo("classify", "--model", str(sr_file))
    assert r.returncode == 2 and len(lines) == 1 and "an upscaler" in lines[0] and "x2" in lines[0], r.stderr


def test_cli_refuses_a_zoo_model_of_another_task_without_torch():
    r, lines = demo("upscale", "--model", "video_decoder_ref", code=NO_TORCH)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "zoo model 'video_decoder_ref' is a decode-video model" in lines[0] and "quicksrnet_small_x2" in lines[0]
    r, lines = demo("classify", "--model", "espcn_x2", code=NO_TORCH)
    assert r.returncode == 2 and len(lines) == 1 and "edgekit demo upscale --model espcn_x2" in lines[0], r.stderr
