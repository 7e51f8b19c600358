"""repeat_interleave_to_4d: every spelling of a repeat of a 4-D tensor (repeat_interleave on any
axis, by-hand unsqueeze/expand/reshape through rank 6, expand of a unit axis, repeat/tile, a block
repeated, after a transpose) becomes slices, concats, a nearest resize or a one-hot 1×1 conv:
exact, nothing above rank 4, no expand; TFLite without BROADCAST_TO, ONNX without Expand."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import _fx
from edgekit.converters.passes import repeat_interleave_to_4d as R
from _models2d import export, ops, run, tflite_ops
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric

REPEATS = ("expand", "repeat_interleave", "repeat.default")


def _manual_hw(x, a):  # nearest upsampling by hand: x[:, :, :, None, :, None].expand(...).reshape(...)
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, a, w, a).reshape(n, c, h * a, w * a)


def _manual_c(x, a):  # each channel a times, through a rank-5 expand
    n, c, h, w = x.shape
    return x.unsqueeze(2).expand(n, c, a, h, w).reshape(n, c * a, h, w)


SPELLINGS = {
    "hw": (lambda x, a: x.repeat_interleave(a, 2).repeat_interleave(a, 3), "aten.upsample_nearest2d.vec"),
    "h": (lambda x, a: x.repeat_interleave(a, dim=2), "aten.upsample_nearest2d.vec"),
    "w": (lambda x, a: x.repeat_interleave(a, dim=-1), "aten.upsample_nearest2d.vec"),
    "c": (lambda x, a: x.repeat_interleave(a, dim=1), "aten.conv2d.default"),
    "manual_hw": (_manual_hw, "aten.upsample_nearest2d.vec"),
    "manual_c": (_manual_c, "aten.conv2d.default"),
    "tile": (lambda x, a: x.repeat(1, a, 1, a), "aten.cat.default"),
    "unit_axis": (lambda x, a: x[:, :, 1:2].expand(-1, -1, a, -1), "aten.cat.default"),
    "batch": (lambda x, a: x.repeat_interleave(a, dim=0), "aten.cat.default"),
    "block_c": (lambda x, a: x[:, 1:3].repeat_interleave(a, 1), "aten.conv2d.default"),
    "after_transpose": (lambda x, a: x.transpose(2, 3).repeat_interleave(a, 2), "aten.upsample_nearest2d.vec"),
}


class Rep(nn.Module):
    def __init__(self, spelling: str, a: int):
        super().__init__()
        self.f, self.a = SPELLINGS[spelling][0], a
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.f(torch.relu(self.conv(x)), self.a) * 2 - 1


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("a,shape", [(2, (1, 3, 5, 6)), (3, (2, 3, 4, 4))])
def test_repeat_becomes_rank4_ops(spelling, a, shape):
    torch.manual_seed(a)
    model = Rep(spelling, a).eval()
    x = torch.randn(*shape)
    ep = export(model, x)
    graph = str(ep.graph)
    assert R.check(ep) is None
    assert str(ep.graph) == graph
    out = R.rewrite(ep)
    after = ops(out)
    assert not [k for k in after if any(r in k for r in REPEATS)], after
    assert SPELLINGS[spelling][1] in after, after
    assert _fx.max_rank(out) <= 4
    with torch.no_grad():
        for inp in (x, x * 1e3, -x):
            assert_close(run(out, inp), model(inp), Bound.exact(), f"{spelling} x{a}")


@pytest.mark.parametrize("h,w,a", [(1, 1, 5), (7, 3, 4), (16, 16, 3), (9, 5, 7)])
def test_nearest_factors_are_exact(h, w, a):
    """Nearest sampling with an integer factor reads ⌊i / a⌋ exactly, for odd sizes and factors too."""
    model = Rep("hw", a).eval()
    x = torch.randn(1, 3, h, w)
    out = R.rewrite(export(model, x))
    with torch.no_grad():
        assert_close(run(out, x), model(x), Bound.exact(), f"{h}x{w} x{a}")


class NotARepeat(nn.Module):
    """A unit axis expanded into H's place: rows and columns mixed, not a repeat along an axis."""

    def forward(self, x):
        n, c, h, w = x.shape
        return x.unsqueeze(-1).expand(n, c, h, w, 2).reshape(n, c, h * 2, w) + 1


class Rank3(nn.Module):
    def forward(self, x):
        return x[0].repeat_interleave(2, dim=1) + 1


@pytest.mark.parametrize("model,reason", [
    (nn.Conv2d(3, 3, 1), "no repeat_interleave, expand or repeat"),
    (NotARepeat(), "not a repeat of a 4-D tensor along its own axes"),
    (Rank3(), "repeats a rank-3 tensor"),
])
def test_left_alone_with_reason(model, reason):
    ep = export(model.eval(), torch.randn(1, 3, 4, 4))
    graph = str(ep.graph)
    why = R.check(ep)
    assert why is not None and reason in why, why
    assert str(ep.graph) == graph


@pytest.mark.parametrize("spelling", ["hw", "c", "manual_hw"])
def test_artifacts_have_no_broadcast(spelling, tmp_path):
    """Before: rank-5 BROADCAST_TO (TFLite) / Expand (ONNX). After: RESIZE_NEAREST_NEIGHBOR or
    CONV_2D, rank ≤ 4, matching the source."""
    litert_torch = pytest.importorskip("litert_torch")
    ort = pytest.importorskip("onnxruntime")
    from edgekit.converters.passes import nhwc_boundary
    from edgekit.runtimes.modelfile import read_model

    torch.manual_seed(4)
    model = Rep(spelling, 2).eval()
    x = torch.randn(1, 3, 8, 8)
    out = R.rewrite(export(model, x))
    onnx = torch.onnx.export(out, (x,), dynamo=True)
    onnx.save(str(tmp_path / "m.onnx"))
    info = read_model(tmp_path / "m.onnx")
    assert "Expand" not in info.op_histogram and info.max_rank <= 4, info.op_histogram
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    with torch.no_grad():
        assert_matches(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], model, x, what="onnx")
    module = nhwc_boundary.rewrite(out).module()
    module.training = False
    xn = x.permute(0, 2, 3, 1).contiguous()
    edge = litert_torch.convert(module, (xn,))
    edge.export(str(tmp_path / "m.tflite"))
    names = tflite_ops(tmp_path / "m.tflite")
    assert not {"BROADCAST_TO", "TRANSPOSE", "GATHER", "TILE"} & set(names), names
    assert read_model(tmp_path / "m.tflite").max_rank <= 4
    with torch.no_grad():
        assert_matches(np.asarray(edge(xn)).transpose(0, 3, 1, 2), model, x, what="tflite")
