"""``--precision int8``: full-integer TFLite for the int8-only accelerators (and QDQ ONNX),
calibrated on the shipped photos, verified at the int8 bounds, lint-clean for the Edge TPU, and a
bundle session that takes and returns float arrays in the source's layout (quantized_io)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

from numeric import THREADS, Bound, assert_close, assert_verified  # noqa: E402

import edgekit  # noqa: E402
from edgekit.lint import lint  # noqa: E402
from edgekit.converters.verify import tolerance_for  # noqa: E402
from edgekit.errors import UsageError  # noqa: E402
from edgekit.runtimes.modelfile import read_model  # noqa: E402

# int8 error is quantisation, not round-off: the tests below hold each artifact to the product's
# int8 verification (its int8 tolerance table, recorded in the verification), and rewrites made
# before quantisation to bit-identity.
pytestmark = pytest.mark.numeric


@pytest.mark.parametrize("name,shape,pretrained", [("mobilenet_v2", (1, 3, 64, 64), False),
                                                   ("quicksrnet_small_x2", (1, 3, 32, 32), True)])
def test_int8_edgetpu(converted, name, shape, pretrained):
    r = converted(name, formats="tflite", input_shapes=[shape], pretrained=pretrained, target="edgetpu",
                  precision="int8", bench_runs=0)
    (art,) = r.manifest.artifacts
    v = art.verification
    assert v["tolerance"] == tolerance_for("int8", r.manifest.task).to_dict(), v  # held to the int8 bounds
    assert_verified(v, name)
    assert "random-normal" not in v["cases"] and any(c.startswith("photo:") for c in v["cases"])
    assert any(p.startswith("ai_edge_quantizer.static_wi8_ai8") and "photos" in p for p in art.passes), art.passes
    quant = art.extra["quantized_io"]
    assert set(quant) == {art.inputs[0].name, art.outputs[0].name}
    assert all(q["dtype"] == "int8" and q["scale"] > 0 for q in quant.values())
    assert [t.dtype for t in (*art.inputs, *art.outputs)] == ["int8", "int8"]
    info = read_model(r.bundle / "model.tflite")
    assert not {"DEQUANTIZE", "QUANTIZE", "RELU_0_TO_1", "MINIMUM"} & set(info.op_histogram), info.op_histogram
    report = lint(r.bundle / "model.tflite", "edgetpu")
    assert report.passed, [(f.op, f.rule, f.message) for f in report.errors]

    with edgekit.load(r.bundle) as session:  # float NCHW in and out, like the source
        assert (session.inputs[0].dtype, session.inputs[0].layout, tuple(session.inputs[0].shape)) == ("float32", "NCHW", shape)
        y = session(np.full(shape, 0.5, np.float32))
        assert y.dtype == np.float32 and y.shape[:2] == tuple(r.manifest.extra["convert"]["output_shapes"][0][:2])
    with edgekit.load(r.bundle, io_layout="artifact") as raw:  # the file's own int8 NHWC
        assert raw.inputs[0].dtype == "int8" and raw.inputs[0].layout == "NHWC"


def test_int8_onnx_is_qdq(converted):
    """ONNX int8 is QDQ (float I/O, QuantizeLinear/DequantizeLinear around int8 tensors), verified
    at the int8 bounds next to the full-integer TFLite of the same bundle."""
    r = converted("quicksrnet_small_x2", formats="onnx,tflite", input_shapes=[(1, 3, 32, 32)], pretrained=True,
                  target="generic-npu", precision="int8", bench_runs=0)
    art = r.manifest.artifact_for("onnx")
    assert art.verification["tolerance"] == tolerance_for("int8", "super-resolve").to_dict()
    assert_verified(art.verification, "onnx")
    assert any(p.startswith("onnxruntime.quantization.quantize_static(QDQ") for p in art.passes), art.passes
    assert [t.dtype for t in (*art.inputs, *art.outputs)] == ["float32", "float32"] and "quantized_io" not in art.extra
    ops = read_model(r.bundle / "model.onnx").op_histogram
    assert ops.get("QuantizeLinear", 0) >= 1 and ops.get("DequantizeLinear", 0) >= 4 and ops.get("Conv") == 4, ops
    report = lint(r.bundle / "model.onnx", "generic-npu")
    assert report.passed and not report.warnings, [(f.op, f.rule, f.message) for f in report.findings]
    assert_verified(r.manifest.artifact_for("tflite").verification, "tflite")


def test_int8_refuses_coreml():
    from edgekit.converters.api import convert

    with pytest.raises(UsageError, match="not CoreML"):
        convert("espcn_x2", formats="onnx,coreml", precision="int8", out="/nonexistent/never-written")


@pytest.mark.parametrize("act", ["clamp01", "prelu"])
def test_prepare_for_int8_is_exact(tmp_path, act):
    """MINIMUM(x, c) → −MAXIMUM(−x, −c) and PRELU → RELU(x) − α·RELU(−x): bit-identical float
    outputs before quantization."""
    import shutil

    import litert_torch
    import torch

    from edgekit.converters.passes import relu_0_to_1_decompose
    from edgekit.converters.quantize import prepare_for_int8

    from edgekit.converters.passes import _custom_ops, prelu_restore

    torch.manual_seed(0)
    src = tmp_path / "m.tflite"
    if act == "clamp01":
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Hardtanh(0.0, 1.0)).eval()
        litert_torch.convert(model, (torch.zeros(1, 3, 8, 8),)).export(str(src))
        relu_0_to_1_decompose.rewrite(src)
    else:  # one PRELU op, as prelu_restore makes it
        _custom_ops.register_litert()
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.PReLU(4)).eval()
        with torch.no_grad():
            model[1].weight.uniform_(0.05, 0.5)
        module = prelu_restore.rewrite(torch.export.export(model, (torch.zeros(1, 3, 8, 8),))).module()
        module.training = False
        litert_torch.convert(module, (torch.zeros(1, 3, 8, 8),)).export(str(src))
    before = read_model(src).op_histogram
    work = shutil.copy(src, tmp_path / "w.tflite")
    assert prepare_for_int8(work) == 1
    ops = read_model(work).op_histogram
    if act == "clamp01":
        assert "MINIMUM" not in ops and ops.get("MAXIMUM") == 1 and ops.get("MUL") == 2, ops
    else:
        assert before.get("PRELU") == 1 and "PRELU" not in ops and ops.get("SUB") == 1, (before, ops)
    from ai_edge_litert.interpreter import Interpreter

    def run(path, x):
        it = Interpreter(model_path=str(path), num_threads=THREADS)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]).copy()

    x = (np.random.default_rng(0).standard_normal((1, 3, 8, 8)) * 3).astype(np.float32)
    assert_close(run(work, x), run(src, x), Bound.exact("negation, RELU and MAXIMUM are exact; a*RELU(-x) rounds as a*x"),
                 f"{act} prepared for int8")


def test_se_block_int8(converted, user):
    """MobileNetV3-style SE block: its squeeze ReLU is 0 on every calibration photo (random
    weights); the constant range becomes [0, 1] instead of a zero scale, so the next conv's
    int32 bias does not overflow, and the model verifies and is clean for the Edge TPU."""
    r = converted(user("se_classifier"), formats="tflite", input_shapes=[(1, 3, 64, 64)], target="edgetpu",
                  precision="int8", bench_runs=0)
    (art,) = r.manifest.artifacts
    assert_verified(art.verification, "se_classifier int8")
    report = lint(r.bundle / "model.tflite", "edgetpu")
    assert report.passed and not report.warnings, [(f.op, f.rule, f.message) for f in report.findings]


def test_a_file_litert_cannot_run_is_a_clean_error(user, tmp_path, monkeypatch):
    """Without the degenerate-range fix ai-edge-quantizer writes an SE model whose int32 bias
    overflows, which XNNPACK refuses or LiteRT crashes on (double free): the converter runs the
    file once in a child process, so this is a one-line export error with nothing left behind."""
    from edgekit.converters import quantize
    from edgekit.converters.api import convert
    from edgekit.errors import ConversionError

    def tiny(calibration):  # the range a naive fix gives: a scale of 1e-8
        for stats in calibration.values():
            lo, hi = np.asarray(stats["min"]), np.asarray(stats["max"])
            flat = hi - lo <= 0
            stats["min"], stats["max"] = np.where(flat, lo - 1e-6, lo), np.where(flat, hi + 1e-6, hi)
        return calibration

    monkeypatch.setattr(quantize, "_widen_degenerate", tiny)
    # the 16 photo crops alone (not the random images calibration adds): on them the SE block's
    # squeeze ReLU is 0 everywhere, the degenerate range this test is about
    both = quantize.calibration_inputs
    monkeypatch.setattr(quantize, "calibration_inputs", lambda *a, **k: (both(*a, **k)[0][:16], "16 photo crops"))
    out = tmp_path / "se"
    with pytest.raises(ConversionError, match="does not run in LiteRT") as e:
        convert(user("se_classifier"), formats="tflite", input_shapes=[(1, 3, 64, 64)], target="generic-npu",
                precision="int8", bench_runs=0, out=out)
    assert "\n" not in str(e.value) and not out.exists() and list(tmp_path.iterdir()) == []


def test_int8_with_folded_preprocessing(converted):
    """Folded pre-processing: the artifact takes pixels 0..255 (NHWC), so calibration feeds pixels."""
    r = converted("quicksrnet_small_x2", formats="tflite", input_shapes=[(1, 3, 32, 32)], pretrained=True,
                  precision="int8", fold_preprocess=True, input_layout="NHWC", bench_runs=0)
    (art,) = r.manifest.artifacts
    assert_verified(art.verification, "int8 folded")
    # a pixel range, not 0..1: 0..255 over int8's 256 levels is a scale of ~1, 0..1 one of ~1/255
    assert art.extra["quantized_io"][art.inputs[0].name]["scale"] > 0.5
    with edgekit.load(r.bundle) as session:
        assert session.inputs[0].layout == "NHWC" and session.inputs[0].dtype == "float32"
