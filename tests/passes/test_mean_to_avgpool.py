"""mean_to_avgpool: mean over (H, W) → full-size avg_pool2d; TFLite then has AVERAGE_POOL_2D
and no TRANSPOSE."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import mean_to_avgpool, nhwc_boundary
from _models2d import export, ops, run, tflite_ops
from numeric import assert_matches

pytestmark = pytest.mark.numeric


class SEHead(nn.Module):
    """Squeeze-excitation gate with keepdim mean, then a global-mean head without keepdim."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        y = y * nn.functional.hardsigmoid(self.gate(y.mean((2, 3), keepdim=True)))
        return self.fc(y.mean((-1, -2)))


class ChannelMean(nn.Module):
    def forward(self, x):
        return x.mean(1, keepdim=True) + x.mean((0, 1)).sum()


def test_rewrite_exact_to_fp32_rounding():
    torch.manual_seed(0)
    model = SEHead().eval()
    x = torch.randn(2, 3, 7, 5)
    ep = export(model, x)
    assert mean_to_avgpool.check(ep) is None
    out = mean_to_avgpool.rewrite(ep)
    assert ops(ep)["aten.mean.dim"] == 2
    assert ops(out)["aten.mean.dim"] == 0 and ops(out)["aten.avg_pool2d.default"] == 2
    with torch.no_grad():
        for inp in (x, x * 1e3, torch.zeros_like(x), torch.full_like(x, 3.0)):
            assert_matches(run(out, inp), model, inp, what="se-head")


def test_tflite_average_pool_without_transpose(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    model = SEHead().eval()
    x = torch.randn(1, 3, 8, 8)
    xn = x.permute(0, 2, 3, 1).contiguous()
    names = {}
    for label, prog in (("mean", nhwc_boundary.rewrite(export(model, x))),
                        ("pool", nhwc_boundary.rewrite(mean_to_avgpool.rewrite(export(model, x))))):
        module = prog.module()
        module.training = False
        edge = litert_torch.convert(module, (xn,))
        edge.export(str(tmp_path / f"{label}.tflite"))
        names[label] = tflite_ops(tmp_path / f"{label}.tflite")
        with torch.no_grad():
            assert_matches(np.asarray(edge(xn)), model, x, what=label)
    assert "TRANSPOSE" in names["mean"]  # litert-torch computes MEAN over (2, 3) in NCHW
    assert "TRANSPOSE" not in names["pool"] and names["pool"].count("AVERAGE_POOL_2D") == 2, names["pool"]


def test_not_applied_with_reason():
    ep = export(ChannelMean().eval(), torch.randn(1, 3, 4, 4))
    assert "none of its 2 mean(s)" in mean_to_avgpool.check(ep)
    assert mean_to_avgpool.check(export(nn.Conv2d(3, 3, 1).eval(), torch.randn(1, 3, 4, 4))) == "the model has no mean"
