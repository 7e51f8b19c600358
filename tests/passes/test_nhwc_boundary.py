"""nhwc_boundary: the program takes and gives NHWC; litert-torch then leaves no TRANSPOSE."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import _custom_ops, nhwc_boundary, pixel_shuffle_to_depth_to_space
from edgekit.converters.passes._fx import LAYOUT_META
from _models2d import ConvShuffle, export, ops, run, tflite_ops
from numeric import assert_close, fp32_bound, fp32_bounds

pytestmark = pytest.mark.numeric


class Residual(nn.Module):
    """A residual ADD with the input: litert-torch computes it NCHW unless the boundary is NHWC."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + x


class TwoHeads(nn.Module):
    """A 4-D and a 2-D output: only the 4-D one changes layout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return y, y.mean((2, 3))


def _nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


@pytest.mark.parametrize("make", [Residual, TwoHeads, lambda: ConvShuffle(stages=2)])
def test_boundary_becomes_nhwc_exactly(make):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(1, 3, 8, 6)
    ep = export(model, x)
    assert nhwc_boundary.check(ep) is None
    out = nhwc_boundary.rewrite(ep)
    meta = out.graph_module.meta[LAYOUT_META]
    assert meta["inputs"]["x"] == {"source": "NCHW", "artifact": "NHWC"}
    assert meta["outputs"]["0"] == {"source": "NCHW", "artifact": "NHWC"}
    assert "1" not in meta["outputs"]  # the 2-D output keeps its layout
    assert ops(ep) == ops(export(model, x))  # the input program is not mutated
    with torch.no_grad():
        for inp in (x, x * 1e3, torch.zeros_like(x), -x):
            got = out.module()(_nhwc(inp))
            want = model(inp)
            got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
            # same ops; eager PyTorch may pick a channels-last conv kernel (rounding order differs)
            bounds = fp32_bounds(model, inp)
            assert_close(got[0].permute(0, 3, 1, 2), want[0], bounds[0], "4-D output")
            for g, w, b in zip(got[1:], want[1:], bounds[1:]):
                assert_close(g, w, b, "2-D output")


def test_litert_leaves_no_transpose(tmp_path):
    """Residual: without the pass, TRANSPOSE ×3 (in, around the NCHW ADD); with it, none."""
    litert_torch = pytest.importorskip("litert_torch")
    torch.manual_seed(0)
    model = Residual().eval()
    x = torch.randn(1, 3, 8, 8)
    paths = {}
    for name, prog in (("before", export(model, x)), ("after", nhwc_boundary.rewrite(export(model, x)))):
        module = prog.module()
        module.training = False
        arg = x if name == "before" else _nhwc(x)
        edge = litert_torch.convert(module, (arg,))
        paths[name] = tmp_path / f"{name}.tflite"
        edge.export(str(paths[name]))
        got = np.asarray(edge(arg))
        with torch.no_grad():
            want = model(x) if name == "before" else _nhwc(model(x))
        assert_close(got, want, fp32_bound(model, x), name)
    assert tflite_ops(paths["before"]).count("TRANSPOSE") >= 2
    assert tflite_ops(paths["after"]) == ["CONV_2D", "ADD"]


def test_sr_head_after_depth_to_space_is_transpose_free(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    _custom_ops.register_litert()
    model = ConvShuffle(stages=2).eval()
    x = torch.randn(1, 3, 8, 8)
    prog = nhwc_boundary.rewrite(pixel_shuffle_to_depth_to_space.rewrite(export(model, x)))
    module = prog.module()
    module.training = False
    litert_torch.convert(module, (_nhwc(x),)).export(str(tmp_path / "m.tflite"))
    assert tflite_ops(tmp_path / "m.tflite") == ["CONV_2D", "DEPTH_TO_SPACE", "CONV_2D", "DEPTH_TO_SPACE"]


def test_not_applied_with_reason():
    lin = export(nn.Linear(4, 2).eval(), torch.randn(1, 4))
    assert "no 4-D float input or output" in nhwc_boundary.check(lin)
    ep = export(Residual().eval(), torch.randn(1, 3, 4, 4))
    ep.graph_module.meta[LAYOUT_META] = {"inputs": {"x": {"source": "NHWC", "artifact": "NHWC"}},
                                         "outputs": {"0": {"source": "NHWC", "artifact": "NHWC"}}}
    assert nhwc_boundary.check(ep) is not None  # already channels-last: left alone
