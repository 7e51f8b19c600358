"""fold_batchnorm: conv → BatchNorm(eval) becomes one conv with scaled weights and shifted bias."""

import pytest
import torch

from edgekit.converters.passes import fold_batchnorm as F
from _models2d import BNOnly, ConvBN, export, ops, run
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric

BN, CONV = "aten.batch_norm.default", "aten.conv2d.default"


@pytest.mark.parametrize("kind", [dict(), dict(bias=True), dict(depthwise=True)])
def test_fold_is_exact_to_fp32_rounding(kind):
    torch.manual_seed(1)
    model = ConvBN(**kind).eval()
    x = torch.randn(2, 3, 9, 7)
    ep = export(model, x)
    assert F.check(ep) is None
    out = F.rewrite(ep)
    before, after = ops(ep), ops(out)
    assert before[BN] == 2 and after[BN] == 1, after  # the BN after the ReLU is not after a conv: stays
    assert after[CONV] == before[CONV] == 1
    assert ops(ep) == before  # input program untouched
    with torch.no_grad():
        for inp in (x, x * 100, torch.zeros_like(x), -x):
            assert_matches(run(out, inp), model, inp, what=str(kind))


def test_fold_matches_float64_better_than_source():
    """The folded weights are computed in float64 and rounded once: the folded fp32 model is no
    further from the float64 truth than the unfolded fp32 model is (within a small factor)."""
    torch.manual_seed(2)
    model = ConvBN().eval()
    x = torch.randn(1, 3, 16, 16)
    out = F.rewrite(export(model, x))
    with torch.no_grad():
        truth = model.double()(x.double())
        model.float()
        src = model(x)
    # 4 x the source's own float32 error (plus 4 u of the output: its final rounding)
    assert_close(run(out, x), truth, Bound.measured(src, truth, factor=4), "folded fp32 vs float64 truth")


def test_not_applied_without_conv():
    ep = export(BNOnly().eval(), torch.randn(1, 3, 4, 4))
    why = F.check(ep)
    assert why is not None and "follows a conv" in why
    ep2 = export(torch.nn.Conv2d(3, 3, 1).eval(), torch.randn(1, 3, 4, 4))
    assert F.check(ep2) == "the model has no BatchNorm"
