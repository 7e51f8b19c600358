"""pixel_shuffle_to_transpose_conv: one-hot transposed conv (k = s = r), exact for finite inputs;
TFLite gets TRANSPOSE_CONV and no RESHAPE/TRANSPOSE."""

import numpy as np
import pytest
import torch

from edgekit.converters.passes import nhwc_boundary, pixel_shuffle_to_transpose_conv as T
from _models2d import ConvShuffle, export, ops, run, tflite_ops
from _sr_variants import SPELLINGS, make
from numeric import Bound, assert_close, fp32_bound

pytestmark = pytest.mark.numeric


@pytest.mark.parametrize("r,stages", [(2, 1), (3, 1), (2, 2)])
def test_rewrite_is_exact(r, stages):
    torch.manual_seed(r)
    model = ConvShuffle(c=3, r=r, stages=stages).eval()
    x = torch.randn(1, 3, 5, 6)
    ep = export(model, x)
    assert T.check(ep) is None
    out = T.rewrite(ep)
    assert ops(out)["aten.pixel_shuffle.default"] == 0
    assert ops(out)["aten.conv_transpose2d.input"] == stages
    with torch.no_grad():
        for inp in (x, x * 1e6, torch.zeros_like(x), -x):
            assert_close(run(out, inp), model(inp), Bound.exact(), f"r={r}")


def test_tflite_transpose_conv(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    model = ConvShuffle(stages=2).eval()
    x = torch.randn(1, 3, 8, 8)
    prog = nhwc_boundary.rewrite(T.rewrite(export(model, x)))
    module = prog.module()
    module.training = False
    xn = x.permute(0, 2, 3, 1).contiguous()
    edge = litert_torch.convert(module, (xn,))
    edge.export(str(tmp_path / "m.tflite"))
    names = tflite_ops(tmp_path / "m.tflite")
    assert names.count("TRANSPOSE_CONV") == 2 and not {"TRANSPOSE", "RESHAPE", "DEPTH_TO_SPACE"} & set(names), names
    with torch.no_grad():
        assert_close(np.asarray(edge(xn)), model(x).permute(0, 2, 3, 1), fp32_bound(model, x), "tflite")


def test_not_applied_without_shuffle():
    assert T.check(export(torch.nn.Conv2d(3, 3, 1).eval(), torch.randn(1, 3, 4, 4))) is not None


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("producer", ["conv", "input"])
def test_every_spelling_becomes_one_transposed_conv(spelling, producer):
    """The channel order of whatever spells the shuffle goes into the one-hot weights."""
    model, x = make(producer, spelling, r=2, seed=3)
    ep = export(model, x)
    assert T.check(ep) is None
    out = T.rewrite(ep)
    after = ops(out)
    assert after["aten.conv_transpose2d.input"] == 1 and after["aten.pixel_shuffle.default"] == 0
    assert not {k for k in after if "permute" in k or "view" in k or "reshape" in k}, after
    with torch.no_grad():
        for inp in (x, x * 1e6, -x):
            assert_close(run(out, inp), model(inp), Bound.exact(), spelling)


def test_not_a_shuffle_is_left_with_reason():
    class Unshuffle(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(x[0], 2)

    why = T.check(export(Unshuffle().eval(), torch.randn(1, 8, 4, 4)))
    assert why is not None and "not on a 4-D tensor" in why, why
