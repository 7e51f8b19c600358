"""End-to-end conversions of user-style models: bundles, manifests, verification, failures.

Each conversion runs once per session (``converted`` fixture). Independent checks re-run the
written files with ``edgekit.load`` on fresh inputs and compare with PyTorch here, not only
the converter's own verification.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from numeric import Bound, assert_close, assert_matches, assert_verified, fp32_bound  # noqa: E402

import edgekit  # noqa: E402
from edgekit.bundle import read_manifest  # noqa: E402
from edgekit.converters.verify import tolerance_for  # noqa: E402

pytestmark = pytest.mark.numeric

HERE = Path(__file__).parent


def _load_user_module():
    spec = importlib.util.spec_from_file_location("_test_user_models", HERE / "user_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fresh(shape, seed, lo=0.0, hi=1.0):
    return (np.random.default_rng(seed).random(shape) * (hi - lo) + lo).astype(np.float32)


# -- a user SR model (file.py:callable returning (module, inputs)) to all three formats -------


@pytest.fixture(scope="module")
def sr_result(converted, user):
    return converted(user("two_stage_sr"), formats="onnx,tflite,coreml")


def test_sr_bundle_is_complete_and_verified(sr_result):
    r = sr_result
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    statuses = {a.format: a.status for a in r.artifacts}
    assert statuses["onnx"] == "passed" and statuses["tflite"] == "passed"
    assert statuses["coreml"] in ("passed", "skipped")
    names = sorted(p.name for p in r.bundle.iterdir())
    assert names == ["edgekit.json", "model.mlpackage", "model.onnx", "model.tflite"]
    assert not list(r.bundle.parent.glob(f".{r.bundle.name}.*")), "a staging folder was left behind"


def test_sr_manifest_fields(sr_result):
    m = read_manifest(sr_result.bundle)
    assert m.task == "super-resolve"  # read from the shapes: 3 → 3 channels, H and W ×4
    assert m.preprocess["scale_factor"] == 4 and m.preprocess["folded"] is False
    assert m.source["kind"] == "file" and len(m.source["sha256"]) == 64
    for tool in ("edgekit", "torch", "onnx", "onnxscript", "onnxruntime", "litert-torch", "coremltools"):
        assert tool in m.tools, tool
    for art in m.artifacts:
        for t in [*art.inputs, *art.outputs]:
            assert t.name and t.dtype and t.layout == "NCHW", (art.format, t)
        assert [t.name for t in art.inputs] == ["input"] and [t.name for t in art.outputs] == ["output"]
        assert list(art.inputs[0].shape) == [1, 3, 20, 28] and list(art.outputs[0].shape) == [1, 3, 80, 112]
        assert art.sha256 and art.size_bytes > 0
    onnx_art = m.artifact_for("onnx")
    assert "onnxscript.optimizer.optimize" in onnx_art.passes
    v = onnx_art.verification
    assert "photo:astronaut" in v["cases"]
    assert v["tolerance"] == tolerance_for("fp32", "super-resolve").to_dict()
    assert_verified(v, "onnx")  # within the tolerance it recorded; the files are re-checked below
    coreml = m.artifact_for("coreml")
    if sys.platform != "darwin":
        assert coreml.verification == {"status": "skipped", "reason": "CoreML prediction needs macOS",
                                       "spec_check": coreml.verification["spec_check"]}
        assert coreml.verification["spec_check"].startswith("passed")


def test_sr_files_reproduce_the_source_on_fresh_inputs(sr_result):
    """Independent of the converter's verification: the files, opened with edgekit.load, match
    PyTorch on inputs they have never seen."""
    model, _ = _load_user_module().two_stage_sr()
    for name in ("model.onnx", "model.tflite"):
        with edgekit.load(sr_result.bundle / name) as s:
            for seed in (7, 8):
                x = _fresh((1, 3, 20, 28), seed)
                assert_matches(s(x), model, x, what=f"{name} seed {seed}")


def test_bundle_loads_and_runs(sr_result):
    with edgekit.load(sr_result.bundle) as s:
        y = s(_fresh((1, 3, 20, 28), 3))
    assert y.shape == (1, 3, 80, 112)


# -- a user classifier with pre-processing folded and NHWC pixels ----------------------------


@pytest.fixture(scope="module")
def folded_result(converted, user):
    return converted(user("se_classifier"), formats="onnx,tflite,coreml", input_shapes=[(1, 3, 40, 56)],
                     fold_preprocess=True, input_layout="NHWC", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def test_folded_manifest_records_what_was_folded(folded_result):
    r = folded_result
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    m = read_manifest(r.bundle)
    assert m.task == "classify"
    p = m.preprocess
    assert p["folded"] is True and p["input_layout"] == "NHWC" and p["input_value_range"] == [0, 255]
    assert p["mean"] == [0.485, 0.456, 0.406] and "subtract mean, divide by std" in p["folded_ops"]
    for fmt in ("onnx", "tflite"):
        art = m.artifact_for(fmt)
        assert art.inputs[0].layout == "NHWC" and list(art.inputs[0].shape) == [1, 40, 56, 3]
        assert art.source_layouts == {}  # pixels are a new interface, not a relayout of the source tensor
        assert art.outputs[0].layout == "NC"
        assert art.verification["top1_agreement"] == 1.0 and art.verification["top1_decisive_cases"] >= 3
    coreml = m.artifact_for("coreml")
    assert coreml.extra["coreml"]["image_input"]["color_layout"] == "RGB"
    assert list(coreml.inputs[0].shape) == [1, 3, 40, 56]


def test_folded_bundle_session_takes_nhwc_pixels(folded_result):
    with edgekit.load(folded_result.bundle) as s:
        assert s.inputs[0].layout == "NHWC" and tuple(s.inputs[0].shape) == (1, 40, 56, 3)


class _OnPixels(torch.nn.Module):
    """The classifier on raw RGB pixels (NCHW, 0..255), normalised step by step here (not with
    edgekit's fold): the function a folded artifact must compute."""

    def __init__(self, model, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, px):
        return self.model((px / 255.0 - self.mean) / self.std)


def test_folded_artifacts_take_raw_pixels(folded_result):
    source = _OnPixels(_load_user_module().se_classifier(), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    px = np.random.default_rng(5).integers(0, 256, (1, 3, 40, 56)).astype(np.float32)
    with torch.no_grad():
        ref = source(torch.from_numpy(px)).numpy()
    bound = fp32_bound(source, px)
    top2 = np.sort(ref.ravel())[-2:]
    for name in ("model.onnx", "model.tflite"):
        with edgekit.load(folded_result.bundle / name) as s:
            y = s(np.ascontiguousarray(px.transpose(0, 2, 3, 1)))
        assert_close(y, ref, bound, name)
        if top2[1] - top2[0] > 2 * bound.atol:  # a decisive top-1 cannot flip within the bound
            assert y.argmax() == ref.argmax(), name


# -- ONNX as the source ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_source_result(converted, sr_result):
    return converted(sr_result.bundle / "model.onnx", formats="onnx,tflite,coreml")


def test_onnx_source_to_all_formats(onnx_source_result):
    r = onnx_source_result
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    m = read_manifest(r.bundle)
    assert m.source["kind"] == "onnx" and m.task == "super-resolve"
    for fmt in ("onnx", "tflite"):
        assert_verified(m.artifact_for(fmt).verification, fmt)


# -- a source module is never mutated --------------------------------------------------------


def test_user_module_is_not_mutated(bundles_dir):
    from edgekit.converters.api import convert

    model = _load_user_module().se_classifier_train_mode()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = convert(model, formats="onnx", out=bundles_dir / "not_mutated", input_shapes=[(2, 3, 24, 24)], bench_runs=0)
    assert r.exit_code == 0
    assert model.training, "the user's module was switched to eval mode"
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "the user's weights or statistics changed"
    m = read_manifest(r.bundle)
    assert "training mode" in m.source["note"]


# -- failures of one format, and of verification ---------------------------------------------


def test_one_format_failing_keeps_the_others(converted, user):
    r = converted(user("upsample3d"), formats="onnx,tflite,coreml")
    statuses = {a.format: a.status for a in r.artifacts}
    assert statuses == {"onnx": "passed", "tflite": "passed", "coreml": "export-failed"}
    assert r.exit_code == 3
    m = read_manifest(r.bundle)
    assert [a.format for a in m.artifacts] == ["onnx", "tflite"]
    assert not (r.bundle / "model.mlpackage").exists()
    (failure,) = m.extra["failures"]
    reason = failure["reason"]
    assert failure["format"] == "coreml" and "\n" not in reason
    assert "upsample_nearest3d" in reason and "--target generic-npu" in reason
    assert m.artifact_for("onnx").inputs[0].layout == "NCTHW"


def test_verification_failure_is_recorded_and_exits_3(converted, user):
    r = converted(user("noisy"), formats="onnx")
    assert r.exit_code == 3
    (st,) = r.artifacts
    assert st.status == "failed" and (r.bundle / "model.onnx").is_file()
    v = read_manifest(r.bundle).artifact_for("onnx").verification
    assert v["status"] == "failed"
    # x + rand_like(x): its float64 run differs by the noise, so a measured bound would be as wide
    # as the noise; the source is run twice instead and named as not a function of its inputs
    assert "the source gives other outputs on the same input" in v["reason"] and "\n" not in v["reason"]


# -- other sources ---------------------------------------------------------------------------


def test_module_path_source(converted):
    r = converted("edgekit.zoo.sr:espcn_x2", formats="onnx", input_shapes=[(1, 3, 12, 16)])
    assert r.exit_code == 0
    m = read_manifest(r.bundle)
    assert m.source["kind"] == "module" and m.task == "super-resolve"


def test_exported_program_source(converted, bundles_dir):
    model, inputs = _load_user_module().tiny_conv()
    path = bundles_dir / "tiny.pt2"
    torch.export.save(torch.export.export(model, inputs), str(path))
    r = converted(path, formats="onnx,tflite")
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    m = read_manifest(r.bundle)
    assert m.source["kind"] == "exported-program" and len(m.source["sha256"]) == 64
    with edgekit.load(r.bundle / "model.tflite") as s:
        x = _fresh((1, 3, 8, 8), 11)
        assert_matches(s(x), model, x, what="tflite from the exported program")


def test_result_json_is_serialisable(sr_result):
    d = json.loads(json.dumps(sr_result.to_dict(), default=str))
    assert d["ok"] is True and d["manifest"]["edgekit_manifest"] == 1


# -- fp16 ------------------------------------------------------------------------------------


def test_fp16_artifacts_verify_with_fp16_tolerances(converted, user):
    r = converted(user("two_stage_sr"), formats="onnx,tflite,coreml", precision="fp16")
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    m = read_manifest(r.bundle)
    # The artifact really is fp16: a float32 artifact of this net (3x3 convs over at most 16
    # channels: reductions of 144, four rounding steps deep with the skip's add) stays within the
    # a-priori float32 round-off of its output scale (2.3e-5; measured fp32 artifacts: ~2e-7);
    # float16 weights (each off by up to U16 = 2**-11 = 8192 u) put the error above it (1.1e-4
    # here, fixed by the rounded weights, not by the CPU's kernels).
    fp32_level = Bound.roundoff(1.0, reduction=16 * 3 * 3, depth=4).atol
    for fmt in ("onnx", "tflite"):
        art = m.artifact_for(fmt)
        assert art.precision == "fp16" and art.extra["notes"]
        v = art.verification
        assert v["tolerance"] == tolerance_for("fp16", "super-resolve").to_dict()
        assert_verified(v, fmt)
        assert v["outputs"]["output"]["max_rel"] > fp32_level, (fmt, v["outputs"]["output"]["max_rel"], fp32_level)
        assert art.inputs[0].dtype == "float32"  # the interface stays float32
    assert "ai_edge_quantizer.float_casting(fp16 weights)" in m.artifact_for("tflite").passes


def test_weights_are_loaded_into_a_user_module(converted, bundles_dir):
    model = _load_user_module().se_classifier()
    with torch.no_grad():
        model.fc.weight.mul_(-3.0)  # different from what the callable builds
    path = bundles_dir / "se_weights.pth"
    torch.save(model.state_dict(), path)
    r = converted(f"{HERE / 'user_models.py'}:se_classifier", formats="onnx", input_shapes=[(1, 3, 32, 40)],
                  weights=path)
    assert r.exit_code == 0
    m = read_manifest(r.bundle)
    assert m.source["weights"] == str(path) and len(m.source["weights_sha256"]) == 64
    x = _fresh((1, 3, 32, 40), 21)
    with edgekit.load(r.bundle / "model.onnx") as s:
        assert_matches(s(x), model, x, what="onnx with the user's weights")


def test_onnx_source_with_external_data_becomes_self_contained(converted, bundles_dir):
    model, inputs = _load_user_module().tiny_conv()
    src = bundles_dir / "ext" / "tiny.onnx"
    src.parent.mkdir()
    torch.onnx.export(model, inputs, dynamo=True, verbose=False).save(str(src), external_data=True)
    assert (src.parent / "tiny.onnx.data").is_file()
    r = converted(src, formats="onnx")
    assert r.exit_code == 0
    assert sorted(p.name for p in r.bundle.iterdir()) == ["edgekit.json", "model.onnx"]
    assert read_manifest(r.bundle).artifact_for("onnx").extra["onnx"]["external_data"] is False
