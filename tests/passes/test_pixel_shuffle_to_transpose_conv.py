"""pixel_shuffle_to_transpose_conv: one-hot transposed conv (k = s = r), exact for finite inputs;
TFLite gets TRANSPOSE_CONV and no RESHAPE/TRANSPOSE."""

import numpy as np
import pytest
import torch

from edgekit.converters.passes import nhwc_boundary, pixel_shuffle_to_transpose_conv as T
from _models2d import ConvShuffle, export, ops, run, tflite_ops
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
