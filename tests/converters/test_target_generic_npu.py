"""`edgekit convert --target generic-npu`: MobileNets, SR nets and user models come out
verified against the source, pixel shuffle as DEPTH_TO_SPACE, no TRANSPOSE in TFLite (NHWC
boundary) or ONNX (channels-first, as ONNX ops are), and lint-clean TFLite and ONNX for generic-npu.

One conversion per model (cached per session); the zoo sweep is slow-marked (about 30-60 s a
model on 2 cores), the user two-stage SR model runs by default.
"""

from __future__ import annotations

import collections

import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from edgekit import zoo  # noqa: E402
from edgekit.bundle import read_manifest  # noqa: E402
from edgekit.converters.lint import lint  # noqa: E402

TARGET = "generic-npu"
SMALL = {"classify": (1, 3, 64, 64), "super-resolve": (1, 3, 32, 32)}
ZOO_2D = [n for n in zoo.list_models() if zoo.card(n).task in SMALL]


def _tflite_ops(path) -> list[str]:
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.tools import flatbuffer_utils

    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    codes = model.operatorCodes
    return [names[max(codes[o.opcodeIndex].builtinCode, codes[o.opcodeIndex].deprecatedBuiltinCode)]
            for g in model.subgraphs for o in g.operators]


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
        if art.verification.get("outputs"):
            for name, metrics in art.verification["outputs"].items():
                assert metrics["max_rel"] <= 1e-4, (fmt, name, metrics)
    tfl = result.bundle / "model.tflite"
    ops = _tflite_ops(tfl)
    assert "TRANSPOSE" not in ops, ops
    assert ops.count("DEPTH_TO_SPACE") == shuffles, ops
    if prelu is not None:
        assert ops.count("PRELU") == prelu, ops
    report = lint(tfl, TARGET)
    assert report.passed, [(f.op, f.rule, f.message) for f in report.errors]
    assert not [f for f in report.warnings if f.rule == "prelu-decomposed"], "PReLU left split"
    onnx_report = lint(result.bundle / "model.onnx", TARGET)
    assert onnx_report.passed, [(f.op, f.rule, f.message) for f in onnx_report.errors]
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
