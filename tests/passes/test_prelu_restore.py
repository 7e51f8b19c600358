"""prelu_restore: aten.prelu becomes the opaque edgekit.prelu, which TFLite exports as one PRELU
(litert-torch otherwise splits it into RELU/MUL/SUB) and ONNX as one PRelu."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import _custom_ops, nhwc_boundary, prelu_restore
from _models2d import export, ops, run, tflite_ops
from numeric import Bound, assert_close, assert_matches, fp32_bound

pytestmark = pytest.mark.numeric


def _model(channels: int):
    torch.manual_seed(channels)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.PReLU(channels), nn.Conv2d(4, 4, 1)).eval()
    with torch.no_grad():
        m[1].weight.uniform_(0.05, 0.5)
    return m


@pytest.mark.parametrize("channels", [4, 1])
def test_rewrite_is_exact(channels):
    model = _model(channels)
    x = torch.randn(1, 3, 7, 9)
    ep = export(model, x)
    assert prelu_restore.check(ep) is None
    out = prelu_restore.rewrite(ep)
    assert ops(ep)["aten.prelu.default"] == 1 and ops(out)["aten.prelu.default"] == 0
    assert ops(out)["edgekit.prelu.default"] == 1
    with torch.no_grad():
        for inp in (x, x * 1e4, torch.zeros_like(x), -x.abs()):
            assert_close(run(out, inp), model(inp), Bound.exact(), f"prelu({channels})")


@pytest.mark.parametrize("channels", [4, 1])
def test_tflite_has_one_prelu(channels, tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    _custom_ops.register_litert()
    model = _model(channels)
    x = torch.randn(1, 3, 8, 8)
    split = export(model, x).module()
    split.training = False
    litert_torch.convert(split, (x,)).export(str(tmp_path / "split.tflite"))
    assert "PRELU" not in tflite_ops(tmp_path / "split.tflite")  # what litert-torch does on its own
    prog = nhwc_boundary.rewrite(prelu_restore.rewrite(export(model, x)))
    module = prog.module()
    module.training = False
    xn = x.permute(0, 2, 3, 1).contiguous()
    edge = litert_torch.convert(module, (xn,))
    edge.export(str(tmp_path / "m.tflite"))
    assert tflite_ops(tmp_path / "m.tflite") == ["CONV_2D", "PRELU", "CONV_2D"]
    for inp in (xn, xn * 100, -xn.abs()):
        with torch.no_grad():
            want = model(inp.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert_close(np.asarray(edge(inp)), want, fp32_bound(model, inp.permute(0, 3, 1, 2)), "tflite")


def test_onnx_has_prelu(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _model(4)
    x = torch.randn(1, 3, 8, 8)
    prog = torch.onnx.export(prelu_restore.rewrite(export(model, x)), (x,), dynamo=True,
                             custom_translation_table=_custom_ops.onnx_translations())
    kinds = [n.op_type for n in prog.model.graph]
    assert kinds.count("PRelu") == 1 and "Relu" not in kinds, kinds
    prog.save(str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    with torch.no_grad():
        assert_matches(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], model, x, what="onnx")


def test_not_applied_with_reason():
    assert prelu_restore.check(export(nn.Conv2d(3, 3, 1).eval(), torch.randn(1, 3, 4, 4))) == "the model has no PReLU"
    seq = export(nn.PReLU(5).eval(), torch.randn(2, 5))
    assert "not on 4-D tensors" in prelu_restore.check(seq)
