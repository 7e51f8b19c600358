"""Bundles: which artifact ``edgekit.load(folder)`` opens, and layout translation at the boundary."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from numeric import THREADS

import edgekit
from edgekit.bundle import Artifact, Manifest, write_manifest
from edgekit.errors import BackendUnavailable, FeedError, InvalidModelFile, ModelFileNotFound, UsageError
from edgekit.runtimes.base import TensorSpec
from edgekit.runtimes.bundle_session import LayoutMap, choose_artifact, open_bundle, parse_layout
from edgekit.runtimes.null import write_null_model


def _spec(name, shape, dtype="float32", layout=None):
    return TensorSpec(name, tuple(shape), dtype, layout)


def _bundle(folder, artifacts, files=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in (files or {}).items():
        shutil.copy(src, folder / name)
    write_manifest(folder, Manifest(name="t", task="other", source={"kind": "file", "ref": "x"}, artifacts=artifacts))
    return folder


@pytest.fixture
def fp16_bundle(tmp_path, tiny):
    """The same computation-shaped pair: a float16 TFLite (NHWC) and a float16 ONNX (NCHW)."""
    tfl = Artifact("model.tflite", "tflite", [_spec("x", (1, 4, 4, 3), "float16", "NHWC")],
                   [_spec("y", (1, 4, 4, 3), "float32", "NHWC")], verification={"status": "passed"})
    onx = Artifact("model.onnx", "onnx", [_spec("x", (1, 3, 4, 4), "float16", "NCHW")],
                   [_spec("y", (1, 3, 4, 4), "float16", "NCHW")], verification={"status": "passed"})
    return tmp_path / "b", tfl, onx, {"model.tflite": tiny["float16_dequantize.tflite"], "model.onnx": tiny["float16.onnx"]}


def test_picks_the_host_preferred_format(fp16_bundle):
    folder, tfl, onx, files = fp16_bundle
    _bundle(folder, [onx, tfl], files)
    with edgekit.load(folder, threads=1) as s:
        assert s.artifact.path == "model.tflite" and s.backend == "litert"  # Linux: TFLite first
        assert s.manifest.name == "t" and s.bundle == folder
        assert ("model.onnx", "ranked after model.tflite") in s.skipped
        assert [t.layout for t in s.inputs] == ["NHWC"] and [t.layout for t in s.outputs] == ["NHWC"]


def test_skips_failed_verification_and_honours_backend(fp16_bundle):
    folder, tfl, onx, files = fp16_bundle
    tfl.verification = {"status": "failed", "reason": "max abs error 0.3 > 1e-3"}
    _bundle(folder, [tfl, onx], files)
    with edgekit.load(folder, threads=1) as s:
        assert s.artifact.path == "model.onnx"
        assert ("model.tflite", "verification failed (max abs error 0.3 > 1e-3)") in s.skipped
    tfl.verification = {"status": "passed"}
    _bundle(folder, [tfl, onx], files)
    with edgekit.load(folder, backend="onnxruntime", threads=1) as s:
        assert s.artifact.path == "model.onnx" and s.backend == "onnxruntime"
    with pytest.raises(UsageError, match="unknown backend"):
        edgekit.load(folder, backend="tvm")


def test_verified_before_unverified_and_nothing_runnable(tmp_path):
    x = [_spec("x", (2,))]
    a = Artifact("a.null.json", "null", x, [_spec("y", (2,))], verification={"status": "not-run"})
    b = Artifact("b.null.json", "null", x, [_spec("y", (2,))], verification={"status": "passed"})
    folder = tmp_path / "n"
    folder.mkdir()
    for art in (a, b):
        write_null_model(folder / art.path, art.inputs, art.outputs)
    _bundle(folder, [a, b])
    with edgekit.load(folder) as s:
        assert s.artifact.path == "b.null.json" and s.backend == "null"
    ml = Artifact("m.mlpackage", "coreml", x, x)
    _bundle(tmp_path / "c", [ml])
    from edgekit.runtimes.host import is_macos

    if not is_macos():
        with pytest.raises(BackendUnavailable) as e:
            edgekit.load(tmp_path / "c")
        assert "m.mlpackage: CoreML models run only on macOS" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InvalidModelFile, match="lists no artifacts"):
        edgekit.load(_bundle(tmp_path / "e", []))


def test_broken_bundles(fp16_bundle, tmp_path):
    folder, tfl, onx, files = fp16_bundle
    _bundle(folder, [tfl], {})
    with pytest.raises(ModelFileNotFound) as e:
        edgekit.load(folder)
    assert "model.tflite" in str(e.value) and "incomplete" in str(e.value)
    _bundle(folder, [Artifact("../model.tflite", "tflite", [], [])], {})
    with pytest.raises(InvalidModelFile, match="leaves its folder"):
        edgekit.load(folder)
    bad = Artifact("model.tflite", "tflite", [_spec("x", (1, 4, 4, 3), "float32")], [_spec("y", (1, 4, 4, 3))])
    _bundle(folder, [bad], files)
    with pytest.raises(InvalidModelFile) as e:
        edgekit.load(folder)
    assert "float16[1, 4, 4, 3] in the model but float32[1, 4, 4, 3] in the manifest" in str(e.value)


def test_choose_artifact_is_a_plain_function(fp16_bundle):
    folder, tfl, onx, files = fp16_bundle
    m = Manifest(name="t", task="other", source={}, artifacts=[onx, tfl])
    art, backend, skipped = choose_artifact(m)
    assert (art.path, backend) == ("model.tflite", "litert")
    art, backend, _ = choose_artifact(m, "onnxruntime")
    assert (art.path, backend) == ("model.onnx", "onnxruntime")


# -- layouts ---------------------------------------------------------------------------------------
def test_parse_layout():
    assert parse_layout("NCTHW") == ["N", "C", "T", "H", "W"]
    assert parse_layout("(NT)HWC") == ["NT", "H", "W", "C"]
    for bad in ("nchw", "NCHN", "(N)CHW", "N(CH", ""):
        with pytest.raises(UsageError):
            parse_layout(bad)


@pytest.mark.parametrize("src,dst,shape,expect", [
    ("NCHW", "NHWC", (2, 3, 4, 5), lambda x: x.transpose(0, 2, 3, 1)),
    ("NHWC", "NCHW", (2, 4, 5, 3), lambda x: x.transpose(0, 3, 1, 2)),
    ("NCTHW", "THWC", (1, 3, 4, 5, 6), lambda x: x[0].transpose(1, 2, 3, 0)),
    ("THWC", "NCTHW", (4, 5, 6, 3), lambda x: x.transpose(3, 0, 1, 2)[None]),
    ("NCTHW", "(NT)HWC", (1, 3, 4, 5, 6), lambda x: x[0].transpose(1, 2, 3, 0)),
    ("NCTHW", "(NT)CHW", (2, 3, 4, 5, 6), lambda x: x.transpose(0, 2, 1, 3, 4).reshape(8, 3, 5, 6)),
    ("NC", "NCHW", (2, 7), lambda x: x[:, :, None, None]),
])
def test_layout_map_against_numpy(src, dst, shape, expect):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    m = LayoutMap(src, dst, {"N": shape[0]} if src.startswith("N") else {})
    y = m(x)
    np.testing.assert_array_equal(y, expect(x))
    assert y.flags.c_contiguous and m.shape(x.shape) == y.shape
    np.testing.assert_array_equal(m(x), y)  # cached plan


def test_layout_map_splits_a_folded_dim_back():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5, 6)).astype(np.float32)
    folded = LayoutMap("NCTHW", "(NT)CHW", {"N": 2})(x)
    back = LayoutMap("(NT)CHW", "NCTHW", {"N": 2})(folded)
    np.testing.assert_array_equal(back, x)
    # N unknown: batch taken as 1, so T takes the whole folded dim.
    assert LayoutMap("(NT)HWC", "NCTHW").shape((8, 5, 6, 3)) == (1, 3, 8, 5, 6)
    assert LayoutMap("NCTHW", "THWC").shape((1, 3, "frames", None, 6)) == ("frames", None, 6, 3)


def test_layout_map_errors():
    with pytest.raises(FeedError, match="letter N of layout NCTHW has size 2"):
        LayoutMap("NCTHW", "THWC")(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(UsageError, match="only size-1 letters can be dropped"):
        LayoutMap("NCTHW", "THWC").shape((2, 3, 4, 5, 6))
    with pytest.raises(UsageError, match="cannot split dimension"):
        LayoutMap("(TH)WC", "THWC").shape((12, 5, 3))
    with pytest.raises(FeedError, match="not a multiple"):
        LayoutMap("(NT)HWC", "NTHWC", {"T": 5})(np.zeros((12, 2, 2, 3)))


def _video_bundle(folder, layout_in="THWC", layout_out="THWC", shape=(4, 6, 6, 3), **extra):
    art = Artifact("decoder.null.json", "null", [_spec("frames", shape, "float32", layout_in)],
                   [_spec("video", shape, "float32", layout_out)],
                   source_layouts={"frames": "NCTHW", "video": "NCTHW"}, **extra)
    folder.mkdir(parents=True, exist_ok=True)
    write_null_model(folder / art.path, art.inputs, art.outputs, op="affine", scale=2.0, bias=0.0)
    return _bundle(folder, [art])


@pytest.mark.parametrize("layout", ["THWC", "(NT)HWC"])
def test_source_layout_session(tmp_path, layout):
    folder = _video_bundle(tmp_path / "v", layout, layout)
    x = np.random.default_rng(2).standard_normal((1, 3, 4, 6, 6)).astype(np.float32)
    with edgekit.load(folder) as s:
        assert [(t.name, t.shape, t.layout) for t in s.inputs] == [("frames", (1, 3, 4, 6, 6), "NCTHW")]
        assert [(t.name, t.shape, t.layout) for t in s.outputs] == [("video", (1, 3, 4, 6, 6), "NCTHW")]
        y = s(x)
        seen = s.inner.last_feed["frames"]  # what reached the artifact
        np.testing.assert_array_equal(seen, x[0].transpose(1, 2, 3, 0))
        np.testing.assert_array_equal(y, 2 * x)  # back in the source layout
        assert s.artifact.source_layouts == {"frames": "NCTHW", "video": "NCTHW"} and s.backend == "null"
        with pytest.raises(FeedError, match="has shape"):
            s(x[:, :, :2])
    with edgekit.load(folder, io_layout="artifact") as s:
        assert s.inputs[0].layout == layout and s.inputs[0].shape == (4, 6, 6, 3)
        np.testing.assert_array_equal(s(seen), 2 * seen)
    with pytest.raises(UsageError, match="io_layout"):
        open_bundle(folder, io_layout="nchw")


@pytest.mark.numeric
def test_source_layout_on_a_real_tflite(tmp_path, tiny):
    """A TFLite artifact in NHWC served to a caller in NCHW: exact, both ways (transposes and a
    float16 -> float32 dequantize, which is exact)."""
    art = Artifact("model.tflite", "tflite", [_spec("x", (1, 4, 4, 3), "float16", "NHWC")],
                   [_spec("y", (1, 4, 4, 3), "float32", "NHWC")], source_layouts={"x": "NCHW", "y": "NCHW"})
    folder = _bundle(tmp_path / "r", [art], {"model.tflite": tiny["float16_dequantize.tflite"]})
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 4)).astype(np.float16)
    with edgekit.load(folder, threads=THREADS) as s:
        assert s.inputs[0].shape == (1, 3, 4, 4) and s.placement.backend == "litert"
        np.testing.assert_array_equal(s(x), x.astype(np.float32))


def test_source_layouts_must_name_real_tensors(tmp_path):
    folder = _video_bundle(tmp_path / "v")
    from edgekit.bundle import read_manifest

    m = read_manifest(folder)
    m.artifacts[0].source_layouts = {"frame": "NCTHW"}
    write_manifest(folder, m)
    with pytest.raises(InvalidModelFile, match="source_layouts names tensor"):
        edgekit.load(folder)
