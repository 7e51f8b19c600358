"""`edgekit convert --target generic-npu`: MobileNets, SR nets and user models come out
verified against the source, pixel shuffle as DEPTH_TO_SPACE, no TRANSPOSE in TFLite (NHWC
boundary) or ONNX (channels-first, as ONNX ops are), and lint-clean TFLite, ONNX and CoreML for
generic-npu.

One conversion per model (cached per session); the zoo sweep is slow-marked (about 30-60 s a
model on 2 cores), the user two-stage SR model runs by default.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from numeric import assert_verified  # noqa: E402

from edgekit import zoo  # noqa: E402
from edgekit.bundle import read_manifest  # noqa: E402
from edgekit.lint import lint  # noqa: E402

pytestmark = pytest.mark.numeric

TARGET = "generic-npu"
SMALL = {"classify": (1, 3, 64, 64), "super-resolve": (1, 3, 32, 32)}
ZOO_2D = [n for n in zoo.list_models() if zoo.card(n).task in SMALL]


def _tflite_ops(path) -> collections.Counter:
    from edgekit.runtimes.modelfile import read_model

    return collections.Counter(read_model(path).op_histogram)


def _onnx_ops(path) -> collections.Counter:
    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _check_bundle(result, *, shuffles: int, prelu: int | None = None) -> dict:
    """The assertions shared by every model; returns facts for the caller's own checks."""
    m = read_manifest(result.bundle)
    status = {a.format: a for a in result.artifacts}
    assert status["onnx"].status == "passed", status["onnx"].reason
    assert status["tflite"].status == "passed", status["tflite"].reason
    assert status["coreml"].status in ("passed", "skipped"), status["coreml"].reason  # spec-checked on Linux
    arts = {a.format: a for a in m.artifacts}
    for fmt, art in arts.items():
        assert art.target == TARGET
        four_d = [t for t in (*art.inputs, *art.outputs) if len(t.shape) == 4]
        # TFLite stores NHWC (nhwc_boundary moves the transposes out); ONNX and CoreML ops are
        # channels-first by definition and keep the source's layout, transpose-free
        want = "NHWC" if fmt == "tflite" else "NCHW"
        assert four_d and all(t.layout == want for t in four_d), (fmt, [(t.name, t.layout) for t in four_d])
        assert all(art.source_layouts.get(t.name, "NCHW") == "NCHW" for t in four_d)
        assert ("nhwc_boundary" in art.passes) == (fmt == "tflite"), (fmt, art.passes)
        if art.verification.get("outputs"):  # CoreML off macOS has a spec check, no outputs
            assert_verified(art.verification, fmt)
    tfl = result.bundle / "model.tflite"
    ops = _tflite_ops(tfl)
    assert "TRANSPOSE" not in ops, ops
    assert ops["DEPTH_TO_SPACE"] == shuffles, ops
    if prelu is not None:
        assert ops["PRELU"] == prelu, ops
    report = lint(tfl, TARGET)
    assert report.passed, [(f.op, f.rule, f.message) for f in report.errors]
    assert not [f for f in report.warnings if f.rule == "prelu-decomposed"], "PReLU left split"
    for other in ("model.onnx", "model.mlpackage"):
        other_report = lint(result.bundle / other, TARGET)
        assert other_report.passed, (other, [(f.op, f.rule, f.message) for f in other_report.errors])
    onnx_ops = _onnx_ops(result.bundle / "model.onnx")
    assert onnx_ops["DepthToSpace"] == shuffles and onnx_ops["Transpose"] == 0, onnx_ops
    return {"ops": ops, "manifest": m, "warnings": [(f.op, f.rule) for f in report.warnings]}


def test_user_two_stage_sr_prelu_bilinear(converted, user):
    """Two ×2 pixel shuffles, PReLU, a bilinear skip, a non-square input."""
    r = converted(user("two_stage_sr"), formats="onnx,tflite,coreml", target=TARGET, bench_runs=0)
    facts = _check_bundle(r, shuffles=2, prelu=1)
    assert {"pixel_shuffle_to_depth_to_space", "prelu_restore", "nhwc_boundary"} <= set(facts["manifest"].extra["convert"]["passes"])
    assert "RESIZE_BILINEAR" in facts["ops"] and facts["warnings"] == []
    import edgekit
    import numpy as np

    with edgekit.load(r.bundle) as session:  # the bundle still takes and gives the source layout
        assert session.inputs[0].layout == "NCHW" and tuple(session.inputs[0].shape) == (1, 3, 20, 28)
        out = session.run({session.inputs[0].name: np.zeros((1, 3, 20, 28), np.float32)})
        assert next(iter(out.values())).shape == (1, 3, 80, 112)


@pytest.mark.slow
def test_user_se_hardswish_classifier(converted, user):
    r = converted(user("se_classifier"), formats="onnx,tflite,coreml", target=TARGET, bench_runs=0,
                  input_shapes=[(1, 3, 40, 56)])
    facts = _check_bundle(r, shuffles=0)
    assert "fold_batchnorm" in facts["manifest"].extra["convert"]["passes"]
    assert "HARD_SWISH" in facts["ops"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_2D)
def test_zoo_model_generic_npu(converted, name):
    card = zoo.card(name)
    shape = SMALL[card.task]
    r = converted(name, formats="onnx,tflite,coreml", input_shapes=[shape], target=TARGET, bench_runs=0)
    facts = _check_bundle(r, shuffles=1 if card.task == "super-resolve" else 0)
    if card.task == "super-resolve":
        assert "pixel_shuffle_to_depth_to_space" in facts["manifest"].extra["convert"]["passes"]


# ------------------------------------------------------------------------------ video decoders

VIDEO_MODELS = Path(__file__).resolve().parents[1] / "passes" / "_video_models.py"


def _check_video_bundle(result, *, attention_blocks: int) -> dict:
    """Every artifact verified and lint-clean for generic-npu; TFLite rank ≤ 4 with no CONV_3D,
    gather, BROADCAST_TO or TRANSPOSE; ONNX with no Transpose but attention's MatMul operands;
    the frames in batch as THWC (TFLite) and TCHW (ONNX, CoreML), read back as NCTHW."""
    status = {a.format: a for a in result.artifacts}
    assert status["onnx"].status == "passed", status["onnx"].reason
    assert status["tflite"].status == "passed", status["tflite"].reason
    assert status["coreml"].status in ("passed", "skipped"), status["coreml"].reason
    m = read_manifest(result.bundle)
    arts = {a.format: a for a in m.artifacts}
    for fmt, want in (("tflite", "THWC"), ("onnx", "TCHW"), ("coreml", "TCHW")):
        tensors = [*arts[fmt].inputs, *arts[fmt].outputs]
        assert [t.layout for t in tensors] == [want] * len(tensors), (fmt, [(t.name, t.layout) for t in tensors])
        assert set(arts[fmt].source_layouts.values()) == {"NCTHW"}
    from typer.testing import CliRunner

    from edgekit.cli import app

    for name in ("model.tflite", "model.onnx", "model.mlpackage"):
        report = lint(result.bundle / name, TARGET)
        assert report.passed and not report.warnings, (name, [(f.op, f.rule, f.message) for f in report.findings])
        cli = CliRunner().invoke(app, ["lint", str(result.bundle / name), "--target", TARGET])
        assert cli.exit_code == 0, cli.output
    ops = _tflite_ops(result.bundle / "model.tflite")
    assert not [k for k in ops if k in ("TRANSPOSE", "CONV_3D", "BROADCAST_TO") or k.startswith("GATHER")], ops
    onnx_ops = _onnx_ops(result.bundle / "model.onnx")
    assert onnx_ops["Transpose"] == 2 * attention_blocks and "Gather" not in onnx_ops, onnx_ops
    assert onnx_ops["MatMul"] == 2 * attention_blocks
    return {"ops": ops, "onnx_ops": onnx_ops, "manifest": m}


@pytest.mark.slow
@pytest.mark.parametrize("name,attention_blocks", [("video_decoder_ref", 1), ("video_decoder_turbo", 0)])
def test_zoo_video_decoder_generic_npu(converted, name, attention_blocks):
    r = converted(name, formats="onnx,tflite,coreml", input_shapes=[(1, 16, 2, 8, 8)], target=TARGET, bench_runs=0)
    facts = _check_video_bundle(r, attention_blocks=attention_blocks)
    assert "frames_to_batch" in facts["manifest"].extra["convert"]["passes"]
    import edgekit
    import numpy as np

    with edgekit.load(r.bundle) as session:  # the bundle takes and gives the source's NCTHW clip
        assert session.inputs[0].layout == "NCTHW" and tuple(session.inputs[0].shape) == (1, 16, 2, 8, 8)
        out = session.run({session.inputs[0].name: np.zeros((1, 16, 2, 8, 8), np.float32)})
        assert next(iter(out.values())).shape == tuple(facts["manifest"].extra["convert"]["output_shapes"][0])


@pytest.mark.slow
def test_user_video_model_generic_npu(converted):
    """Unseen user code: grouped causal Conv3d, GroupNorm on the 5-D clip, fused-qkv per-frame
    attention, nearest (1,2,2) and (2,2,2) upsampling, a non-causal grouped Conv3d and the
    8-D-permute 3-D pixel shuffle, all in one model."""
    r = converted(f"{VIDEO_MODELS}:UserVideoModel", formats="onnx,tflite,coreml", input_shapes=[(1, 4, 2, 4, 4)],
                  target=TARGET, bench_runs=0)
    facts = _check_video_bundle(r, attention_blocks=1)
    applied = set(facts["manifest"].extra["convert"]["passes"])
    assert {"groupnorm_decompose", "pixel_shuffle_3d_to_4d", "frames_to_batch", "attention_per_frame",
            "pixel_shuffle_to_depth_to_space", "nhwc_boundary"} <= applied, applied
    # frames_to_batch already lowers the Conv3d and 3-D nearest ops it folds: the dedicated passes
    # find nothing left (and say so in the manifest)
    skipped = facts["manifest"].extra["convert"]["passes_not_applied"]
    assert "no Conv3d" in skipped["conv3d_to_conv2d"] and "no upsample_nearest3d" in skipped["upsample_nearest_native"], skipped


def test_layout_passes_follow_the_format(converted, user):
    """nhwc_boundary is for TFLite, attention_per_frame for ONNX and CoreML: asked for an ONNX
    artifact only, the manifest says why nhwc_boundary did not run, and the ONNX stays NCHW."""
    r = converted(user("two_stage_sr"), formats="onnx", passes=["nhwc_boundary", "prelu_restore"], bench_runs=0)
    conv = r.manifest.extra["convert"]
    assert conv["passes"] == ["prelu_restore"]
    assert conv["passes_not_applied"]["nhwc_boundary"] == "for tflite artifacts only"
    (art,) = r.manifest.artifacts
    assert [t.layout for t in art.inputs] == ["NCHW"] and _onnx_ops(r.bundle / "model.onnx")["Transpose"] == 0


def test_onnx_source_gets_the_rewrites_too(converted, tmp_path_factory):
    """An ONNX source with --target goes through edgekit's importer, so the ONNX artifact is
    rewritten as well (direct ONNX → ONNX optimisation would keep PyTorch's CRD DepthToSpace)."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import user_models

    model, x = user_models.two_stage_sr()
    src = tmp_path_factory.mktemp("onnx_src") / "sr.onnx"
    torch.onnx.export(model, x, str(src), dynamo=True, external_data=False)
    r = converted(src, formats="onnx,tflite", target=TARGET, bench_runs=0)
    assert all(a.status == "passed" for a in r.artifacts), [(a.format, a.reason) for a in r.artifacts]
    onnx_art = r.manifest.artifact_for("onnx")
    assert "pixel_shuffle_to_depth_to_space" in onnx_art.passes
    report = lint(r.bundle / "model.onnx", TARGET)
    assert report.passed and not report.warnings, [(f.op, f.rule, f.message) for f in report.findings]
    import onnx

    modes = [a.s.decode() for n in onnx.load(str(r.bundle / "model.onnx")).graph.node if n.op_type == "DepthToSpace"
             for a in n.attribute if a.name == "mode"]
    assert modes == ["DCR", "DCR"], modes
