"""Lint agrees with the compiler: for int8 zoo models converted with ``--target ethos-u``, the
same models exported at int8 without edgekit's rewrites, and one with a DEPTH_TO_SPACE (that the
quantizer leaves in float), ``edgekit lint --target ethos-u`` predicts exactly the ops Vela puts on
the Cortex-M CPU (same op indices), each with Vela's reason in its words. Vela is run on each
file (``edgekit.vela.run_vela``) and the two are compared.

The done-when numbers of the Ethos-U pipeline are checked here too: Vela places every op of the
SR nets and MobileNetV2 on the NPU with ``--target ethos-u``, and quicksrnet_small_x2 at 128x128
takes at most 0.6x the 3.65 M NPU cycles on Ethos-U55-256 it took when RELU_0_TO_1 was
decomposed (no op Vela runs natively is decomposed any more).
"""

from __future__ import annotations

import re

import pytest

SR_SLOW = ["sesr_m5_x2", "espcn_x2", "quicksrnet_medium_x2"]
BASELINE_CYCLES = 3.65e6  # quicksrnet_small_x2, U55-256, with relu_0_to_1_decompose + the quantizer's MUL/MAXIMUM/MUL


def _bundle(convert_cached, model: str, kind: str):
    kwargs = {"formats": ("tflite",), "precision": "int8"}
    if model != "mobilenet_v2":
        kwargs["pretrained"] = True
    if kind == "ethos-u":
        kwargs["target"] = "ethos-u"
    elif kind == "depth_to_space":
        kwargs["passes"] = ["pixel_shuffle_to_depth_to_space", "nhwc_boundary"]
    result = convert_cached(model, f"{model}-{kind}", **kwargs)
    # the int8 verdict (accuracy) is not what is compared here: the file's ops and shapes are
    path = result.bundle / "model.tflite"
    assert path.is_file(), result.to_dict()["artifacts"]
    return path


def _vela_words(reasons: list[str]) -> str:
    """Vela's first reason line without the tensor it names: 'Unsupported opType', 'Operation
    has tensor with unsupported DataType Float32'."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", reasons[0]).strip()


def _agree(path, accelerator: str = "ethos-u55-256"):
    from edgekit.lint import lint
    from edgekit.vela import predict_cpu_ops, run_vela

    report = run_vela(path, accelerator)
    predicted = predict_cpu_ops(lint(path, "ethos-u"))
    actual = {o.index: o for o in report.cpu_ops}
    assert sorted(predicted) == sorted(actual), (
        {i: (o.op, o.reasons) for i, o in actual.items()}, predicted)
    for i, op in actual.items():
        words = _vela_words(op.reasons)
        assert any(words in why for why in predicted[i]), (op.op, i, words, predicted[i])
    return report


@pytest.mark.parametrize("kind", ["ethos-u", "plain", "depth_to_space"])
def test_quicksrnet_small_lint_matches_vela(vela, convert_cached, kind):
    report = _agree(_bundle(convert_cached, "quicksrnet_small_x2", kind))
    if kind == "depth_to_space":  # the case with CPU ops: the float island around DEPTH_TO_SPACE
        assert {o.op for o in report.cpu_ops} == {"DEQUANTIZE", "DEPTH_TO_SPACE", "QUANTIZE"}
    else:
        assert report.cpu_ops == [] and report.npu_share == 1.0


def test_quicksrnet_small_cycles_done_when(vela, convert_cached):
    from edgekit.lint.readers import read_graph
    from edgekit.vela import run_vela

    path = _bundle(convert_cached, "quicksrnet_small_x2", "ethos-u")
    ops = {op.type for op in read_graph(path).ops}
    assert "RELU_0_TO_1" in ops and not ops & {"MAXIMUM", "MINIMUM", "MUL"}, ops  # kept native, not decomposed
    report = run_vela(path, "ethos-u55-256")
    assert report.npu_share == 1.0
    assert report.cycles["npu"] <= 0.6 * BASELINE_CYCLES, report.cycles
    # RELU_0_TO_1 is fused into the conv before it: Vela spends no cycles on it
    assert "RELU_0_TO_1" not in report.cycles_by_op() or report.cycles_by_op()["RELU_0_TO_1"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("model", [*SR_SLOW, "mobilenet_v2"])
@pytest.mark.parametrize("kind", ["ethos-u", "plain"])
def test_zoo_lint_matches_vela(vela, convert_cached, model, kind):
    report = _agree(_bundle(convert_cached, model, kind))
    if kind == "ethos-u":
        assert report.cpu_ops == [] and report.npu_share == 1.0, [(o.index, o.op, o.reasons) for o in report.cpu_ops]
