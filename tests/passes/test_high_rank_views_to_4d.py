"""high_rank_views_to_4d: window partition / reverse (NHWC tokens, or from NCHW features), attention
head splits (unbind, chunk, indexing) through rank-5/6 views become rank-≤4 reshapes and permutes:
exact; TFLite and ONNX keep nothing above rank 4."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import _fx
from edgekit.converters.passes import high_rank_views_to_4d as V
from _models2d import export, ops, run, tflite_ops
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric


def partition(t, w):  # Swin: (B, H, W, C) → (B·nW, w, w, C)
    b, h, wd, c = t.shape
    return t.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w, w, c)


def reverse(p, w, b, h, wd):  # (B·nW, w, w, C) → (B, H, W, C)
    c = p.shape[-1]
    return p.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, c)


class Windows(nn.Module):
    """Per-window mixing between partition and reverse, from NHWC tokens or NCHW features."""

    def __init__(self, w: int, nchw: bool, c: int = 4):
        super().__init__()
        self.w, self.nchw = w, nchw
        self.mix = nn.Linear(c, c)

    def forward(self, x):
        t = x.permute(0, 2, 3, 1) if self.nchw else x
        b, h, wd, _ = t.shape
        p = partition(t, self.w)
        p = self.mix(p.reshape(p.shape[0], self.w * self.w, -1)).view(-1, self.w, self.w, p.shape[-1])
        u = reverse(p, self.w, b, h, wd)
        return u.permute(0, 3, 1, 2) if self.nchw else u


class Heads(nn.Module):
    """qkv (B_, N, 3·C) split into heads through a rank-5 permute, three ways."""

    def __init__(self, how: str, c: int = 8, heads: int = 2):
        super().__init__()
        self.how, self.heads = how, heads
        self.qkv = nn.Linear(c, 3 * c)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.how == "unbind":
            q, k, v = qkv.unbind(0)
        elif self.how == "index":
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q, k, v = (t.squeeze(0) for t in qkv.chunk(3, 0))
        a = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
        return a.transpose(1, 2).reshape(b, n, c)


def _rewritten(model, x):
    ep = export(model.eval(), x)
    graph = str(ep.graph)
    assert _fx.max_rank(ep) > 4
    assert V.check(ep) is None
    assert str(ep.graph) == graph
    out = V.rewrite(ep)
    assert _fx.max_rank(out) <= 4
    return ep, out


@pytest.mark.parametrize("nchw", [False, True])
@pytest.mark.parametrize("w,shape", [(4, (1, 8, 12, 4)), (2, (2, 6, 4, 4)), (3, (1, 9, 3, 4))])
def test_window_partition_and_reverse(w, shape, nchw):
    torch.manual_seed(w)
    x = torch.randn(shape[0], shape[3], shape[1], shape[2]) if nchw else torch.randn(*shape)
    model = Windows(w, nchw)
    ep, out = _rewritten(model, x)
    perms = [n for n in out.graph_module.graph.nodes if n.target is torch.ops.aten.permute.default]
    assert all(len(n.args[1]) <= 4 for n in perms)
    with torch.no_grad():
        for inp in (x, x * 1e3, -x):
            # the per-window Linear is unchanged; the data movement around it is exact
            assert_close(run(out, inp), model(inp), Bound.exact(), f"w={w} {shape} nchw={nchw}")


@pytest.mark.parametrize("how", ["unbind", "index", "chunk"])
@pytest.mark.parametrize("b,n", [(4, 16), (1, 9)])
def test_head_split(how, b, n):
    torch.manual_seed(n)
    model = Heads(how)
    x = torch.randn(b, n, 8)
    ep, out = _rewritten(model, x)
    with torch.no_grad():
        assert_close(run(out, x), model(x), Bound.exact(), f"{how} {b}x{n}")


class SixAxes(nn.Module):
    def forward(self, x):  # a reversal of six independent axes: no rank-4 form
        return x.view(1, 2, 2, 2, 2, 3, 5).permute(0, 6, 5, 4, 3, 2, 1).reshape(1, 5, 24, 2) + 1


class ComputesOnRank6(nn.Module):
    def forward(self, x):
        return (x.view(1, 2, 2, 2, 2, 3, 4) * 2).reshape(1, 8, 12, 2)


class FromRank5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 8, 1)

    def forward(self, x):
        y = self.conv(x)  # (1, 8, 2, 3, 3)
        return y.view(1, 2, 4, 2, 3, 3).permute(0, 2, 1, 3, 4, 5).reshape(1, 16, 3, 3)


@pytest.mark.parametrize("model,x,reason", [
    (nn.Conv2d(3, 3, 1), torch.randn(1, 3, 4, 4), "no view op above rank 4"),
    (SixAxes(), torch.randn(1, 48, 5, 1), "6 independent axes"),
    (ComputesOnRank6(), torch.randn(1, 8, 12, 2), "computes on the rank-7 tensor"),
    (FromRank5(), torch.randn(1, 2, 2, 3, 3), "starts at the rank-5 tensor conv3d"),
])
def test_left_alone_with_reason(model, x, reason):
    ep = export(model.eval(), x)
    graph = str(ep.graph)
    why = V.check(ep)
    assert why is not None and reason in why, why
    assert str(ep.graph) == graph


@pytest.mark.parametrize("model,x", [(Windows(4, True), torch.randn(1, 4, 8, 8)), (Heads("unbind"), torch.randn(4, 16, 8))])
def test_artifacts_are_rank4(model, x, tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    ort = pytest.importorskip("onnxruntime")
    from edgekit.runtimes.modelfile import read_model

    torch.manual_seed(0)
    model = model.eval()
    _, out = _rewritten(model, x)
    onnx = torch.onnx.export(out, (x,), dynamo=True)
    onnx.save(str(tmp_path / "m.onnx"))
    assert read_model(tmp_path / "m.onnx").max_rank <= 4
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    with torch.no_grad():
        assert_matches(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], model, x, what="onnx")
    module = out.module()
    module.training = False
    edge = litert_torch.convert(module, (x,))
    edge.export(str(tmp_path / "m.tflite"))
    assert read_model(tmp_path / "m.tflite").max_rank <= 4, tflite_ops(tmp_path / "m.tflite")
    with torch.no_grad():
        assert_matches(np.asarray(edge(x)), model, x, what="tflite")
