"""The user's own inputs (``--verify-data``, ``--calibration``): images through the bundle's
pre-processing, arrays as they are; shapes and dtypes checked with one-line errors before anything
is exported; the cases recorded in the manifest. And CoreML names after coremltools' renaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from numeric import Bound, assert_close  # noqa: E402

from edgekit.converters.preprocess import FoldSpec, normalise  # noqa: E402
from edgekit.converters.samples import load_samples  # noqa: E402
from edgekit.errors import EdgekitError, UsageError  # noqa: E402
from edgekit.imageio import write_image  # noqa: E402
from edgekit.preprocess import Preprocess  # noqa: E402

pytestmark = pytest.mark.numeric

SHAPE = (1, 3, 8, 10)
PRE = {"value_range": [0.0, 1.0], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def _load(path, shapes=(SHAPE,), names=("input",), dtypes=(np.float32,), fold=None, limit=32):
    return load_samples(path, option="--verify-data", input_names=list(names), input_shapes=list(shapes),
                        dtypes=list(dtypes), preprocess=PRE, task="classify", fold=fold, limit=limit)


def _image(seed, h=30, w=40):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_images_go_through_the_bundles_preprocessing(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"img{i}.png", _image(i))
    (tmp_path / "notes.txt").write_text("ignored")
    samples, what = _load(tmp_path)
    assert [s.name for s in samples] == ["data:img0.png", "data:img1.png", "data:img2.png"]
    assert what.startswith("3 images from") and "pre-processed as edgekit run does" in what
    spec = Preprocess.for_input(SHAPE, "float32", "NCHW", PRE, "classify")
    want, _ = spec.to_tensor(_image(0))
    assert_close(samples[0].source[0], want, Bound.exact("the same pre-processing of the same pixels"), "image")
    # folded: the artifact gets the pixels (NHWC here), the source them normalised
    fold = FoldSpec.from_preprocess(PRE, "NHWC")
    (folded,), _ = _load(tmp_path / "img1.png", fold=fold)
    px = folded.artifact[0]
    assert px.shape == (1, 8, 10, 3) and px.dtype == np.float32
    assert_close(folded.source[0], normalise(px.transpose(0, 3, 1, 2), fold), Bound.exact("same steps"), "folded")


def test_arrays_are_fed_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    one = rng.standard_normal(SHAPE).astype(np.float32)
    np.save(tmp_path / "one.npy", one)
    (s,), what = _load(tmp_path / "one.npy")
    assert_close(s.source[0], one, Bound.exact("fed as it is"), "npy")
    assert s.artifact is None  # not folded: the artifact takes what the source takes
    np.save(tmp_path / "stack.npy", rng.random((4, *SHAPE)))  # (K, *shape), float64 → the input's float32
    samples, _ = _load(tmp_path / "stack.npy")
    assert len(samples) == 4 and samples[3].name == "data:stack.npy[3]" and samples[0].source[0].dtype == np.float32
    np.save(tmp_path / "batch.npy", rng.random((5, *SHAPE[1:])).astype(np.float32))  # K in place of the batch of 1
    assert len(_load(tmp_path / "batch.npy")[0]) == 5
    shapes, names = [(1, 4), (1, 2)], ["a", "ids"]
    np.savez(tmp_path / "named.npz", ids=np.array([[1, 2]]), a=np.ones((1, 4)))
    (s,), _ = _load(tmp_path / "named.npz", shapes, names, (np.float32, np.int32))
    assert s.source[1].dtype == np.int32 and s.source[1].tolist() == [[1, 2]]
    np.savez(tmp_path / "positional.npz", np.ones((2, 1, 4)), np.zeros((2, 1, 2), np.int64))
    assert len(_load(tmp_path / "positional.npz", shapes, names, (np.float32, np.int32))[0]) == 2
    samples, what = _load(tmp_path / "stack.npy", limit=2)
    assert len(samples) == 2 and "(the first 2 of 4)" in what


@pytest.mark.parametrize("make,match", [
    (lambda d: np.save(d / "x.npy", np.zeros((1, 3, 8, 9), np.float32)), r"takes shape \[1, 3, 8, 10\], the array has"),
    (lambda d: np.save(d / "x.npy", np.full(SHAPE, np.nan, np.float32)), "NaN or infinite"),
    (lambda d: np.save(d / "x.npy", np.array(["a"] * 240).reshape(SHAPE)), "takes float32, the array is"),
    (lambda d: np.savez(d / "x.npz", other=np.zeros(SHAPE)), r"the .npz holds \['other'\]"),
    (lambda d: (d / "x.npy").write_bytes(b"not numpy"), "not a readable .npy"),
    (lambda d: (d / "x.csv").write_text("1,2"), "takes a folder, an image, a .npy or a .npz"),
    (lambda d: (d / "sub").mkdir(), "the folder has no images and no .npy/.npz files"),
])
def test_bad_data_is_one_line_naming_the_file(tmp_path, make, match):
    make(tmp_path)
    path = next(tmp_path.iterdir())
    with pytest.raises(UsageError, match=match) as e:
        _load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value) and "--verify-data" in str(e.value)


def test_data_that_does_not_fit_the_model(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    with pytest.raises(UsageError, match="a .npy holds one array but the model takes 2 inputs"):
        _load(tmp_path / "x.npy", [(1, 4), (1, 2)], ["a", "b"], (np.float32, np.float32))
    np.save(tmp_path / "f.npy", np.full((1, 2), 0.5))
    with pytest.raises(UsageError, match="integer values expected"):
        _load(tmp_path / "f.npy", [(1, 2)], ["ids"], (np.int32,))
    write_image(tmp_path / "i.png", _image(0))
    with pytest.raises(UsageError, match="an image feeds a model with one image input"):
        _load(tmp_path / "i.png", [(1, 4)], ["a"])
    np.save(tmp_path / "norm.npy", np.full(SHAPE, 0.3, np.float32))  # folded models take pixels
    with pytest.raises(UsageError, match="with --fold-preprocess the arrays are RGB pixels 0..255"):
        _load(tmp_path / "norm.npy", fold=FoldSpec.from_preprocess(PRE))
    with pytest.raises(EdgekitError, match="no such file"):
        _load(tmp_path / "missing.npy")


def test_verify_data_becomes_cases_recorded_in_the_manifest(converted, user, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_image(data / "a.png", _image(1, 20, 20))
    np.save(data / "b.npy", np.random.default_rng(0).random((2, 1, 3, 8, 8)).astype(np.float32))
    r = converted(user("tiny_conv"), formats="onnx,tflite", verify_data=data)
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    inputs = r.manifest.extra["convert"]["verification_inputs"]
    assert inputs["counts"]["user"] == 3 and str(data) in inputs["user_data"]
    user_cases = [c for c in inputs["cases"] if c["origin"] == "user"]
    assert [c["name"] for c in user_cases] == ["data:a.png", "data:b.npy[0]", "data:b.npy[1]"]
    for art in r.manifest.artifacts:
        assert {"data:a.png", "data:b.npy[1]"} <= set(art.verification["cases"])


def test_cli_options_are_checked_before_any_work(user, tmp_path):
    from typer.testing import CliRunner

    from edgekit.cli import app

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 3, 4, 4), np.float32))  # tiny_conv takes 1x3x8x8
    runner = CliRunner()
    r = runner.invoke(app, ["convert", user("tiny_conv"), "--to", "onnx", "--out", str(tmp_path / "o1"),
                            "--verify-data", str(bad), "--quiet"])
    assert r.exit_code == 2 and "takes shape [1, 3, 8, 8], the array has [1, 3, 4, 4]" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o1").exists()
    r = runner.invoke(app, ["convert", user("tiny_conv"), "--to", "onnx", "--out", str(tmp_path / "o2"),
                            "--calibration", str(bad)])
    assert r.exit_code == 2 and "--calibration applies to --precision int8" in r.stderr
    r = runner.invoke(app, ["convert", "--help"])
    for option in ("--verify-data", "--calibration", "--value-range"):
        assert option in r.stdout


def test_coreml_names_after_coremltools_renaming(tmp_path):
    """PaddleOCR-style names ('softmax_11.tmp_0', 'det/sigmoid.map'): the CoreML package names them
    as coremltools does, the spec check compares the renamed names (and passes), and the manifest
    maps each source name to its CoreML name."""
    pytest.importorskip("coremltools")
    import user_models

    from edgekit.bundle import read_manifest
    from edgekit.converters.api import convert
    from edgekit.runtimes.coreml_spec import spec_io

    src = user_models.dotted_names_onnx(tmp_path / "paddle.onnx")
    r = convert(src, formats="onnx,coreml", out=tmp_path / "b", bench_runs=0)
    statuses = {a.format: a.status for a in r.artifacts}
    assert statuses["onnx"] == "passed" and statuses["coreml"] in ("passed", "skipped"), [a.to_dict() for a in r.artifacts]
    art = read_manifest(r.bundle).artifact_for("coreml")
    assert art.extra["coreml_names"] == {"softmax_11.tmp_0": "softmax_11_tmp_0", "det/sigmoid.map": "det_sigmoid_map"}
    _, outs = spec_io(r.bundle / "model.mlpackage")
    assert [o["name"] for o in outs] == [t.name for t in art.outputs] == ["softmax_11_tmp_0", "det_sigmoid_map"]
    if statuses["coreml"] == "skipped":
        assert "coremltools' renaming" in art.verification["spec_check"]
    # a package whose names are not the renamed source names is still refused
    from edgekit.converters.verify import check_coreml_spec

    problems = check_coreml_spec(r.bundle / "model.mlpackage", [(1, 3, 16, 16)], ["x"], ["softmax_11.tmp_0", "other"],
                                 [(1, 4), (1, 4, 16, 16)])
    assert problems and "expected ['softmax_11_tmp_0', 'other']" in problems[0], problems
    json.dumps(art.to_dict())  # the mapping is plain JSON
