"""slice_assign_to_concat: writes into part of a tensor (every spelling: copy_, +=, *=, fill, select,
index tensors, multi-dim blocks, broadcast sources; and the functional slice_scatter / select_scatter
/ index_put) become concats of slices, exactly; TFLite loses PAD + SELECT, ONNX loses ScatterND."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import slice_assign_to_concat as S
from _models2d import export, ops, run, tflite_ops
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric

WRITES = ("copy_", "add_", "mul_", "fill_", "index_put", "slice_scatter", "select_scatter")


def write_ops(program) -> dict:
    return {k: v for k, v in ops(program).items() if any(w in k for w in WRITES)}


class Write(nn.Module):
    """A conv, then one write into part of its output (``kind``) at ``where``, then a read."""

    def __init__(self, kind: str, where: tuple[int, int] = (0, 2), c: int = 6):
        super().__init__()
        self.kind, (self.a, self.b) = kind, where
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.g = nn.Conv2d(abs(self.b - self.a), abs(self.b - self.a), 1)

    def forward(self, x):
        y = self.conv(x)
        a, b = self.a, self.b
        k = self.kind
        if k == "assign":  # x[:, a:b] = f(x[:, a:b])
            y[:, a:b] = torch.relu(self.g(y[:, a:b]))
        elif k == "clone_assign":
            y = y.clone()
            y[:, a:b] = torch.sigmoid(y[:, a:b])
        elif k == "iadd":
            y[:, a:b] += self.g(y[:, a:b])
        elif k == "imul":
            y[:, a:b] *= 2.0
        elif k == "fill":
            y[:, a:b] = 0.5
        elif k == "select":
            y[:, a] = y[:, b] * 3
        elif k == "spatial":
            y[..., a:b, :] = y[..., :b - a, :] + 1
        elif k == "block":  # two dims at once
            y[:, a:b, 1:3, 2:5] = x[:, :b - a, :2, :3]
        elif k == "broadcast":  # the source broadcasts along H
            y[:, a:b, 1:4] = y[:, a:b, :1]
        elif k == "index":  # y[:, idx] = v: a constant index tensor, any order
            y[:, torch.tensor([b - 1, a, 5])] = y[:, :3] * 2
        elif k == "alias":  # a view made before the write and read after it sees the write
            early = y[:, a:b + 1]
            y[:, a:b] = x[:, :b - a]
            return early * 2 + y.mean()
        return y * 1.5 + 1


CASES = [(k, w) for k in ("assign", "clone_assign", "iadd", "imul", "fill", "spatial", "block", "broadcast", "alias")
         for w in ((0, 2), (2, 4), (3, 5))] + [("select", (0, 4)), ("select", (5, 2)), ("index", (1, 3)), ("index", (0, 2))]


@pytest.mark.parametrize("kind,where", CASES)
@pytest.mark.parametrize("shape", [(1, 3, 6, 7), (2, 3, 5, 5)])
def test_write_becomes_concat(kind, where, shape):
    torch.manual_seed(sum(where))
    model = Write(kind, where).eval()
    x = torch.randn(*shape)
    ep = export(model, x)
    graph = str(ep.graph)
    assert S.check(ep) is None
    assert str(ep.graph) == graph
    assert write_ops(ep), "the spelling writes in place"
    out = S.rewrite(ep)
    assert write_ops(out) == {}, ops(out)
    assert ops(out)["aten.cat.default"] >= 1
    assert "aten.expand.default" not in ops(out) or kind == "broadcast"  # only the user's own expand
    with torch.no_grad():
        for inp in (x, x * 1e3, -x):
            assert_close(run(out, inp), model(inp), Bound.exact(), f"{kind} {where} {shape}")


class Functional(nn.Module):
    """The functional spellings, written by hand."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        y = x * 2
        if self.kind == "slice_scatter":
            return torch.slice_scatter(y, torch.relu(y[:, :, 1:3]), 2, 1, 3)
        if self.kind == "select_scatter":
            return torch.select_scatter(y, y[:, 0] + 1, 1, 2)
        return torch.index_put(y, (torch.tensor([2, 0]),), y[:1] * 3)  # batch rows, out of order


@pytest.mark.parametrize("kind,where", [("assign", (2, 4)), ("spatial", (1, 3)), ("index", (1, 3)),
                                        ("slice_scatter", None), ("select_scatter", None), ("index_put", None)])
def test_functional_scatters(kind, where):
    """Decomposed, the in-place writes are slice_scatter / index_put; and the functional ops written
    by hand."""
    torch.manual_seed(1)
    model = (Write(kind, where) if where else Functional(kind)).eval()
    x = torch.randn(3, 3, 6, 6)
    ep = export(model, x).run_decompositions() if where else export(model, x)
    assert write_ops(ep) and S.check(ep) is None
    out = S.rewrite(ep)
    assert write_ops(out) == {}, ops(out)
    with torch.no_grad():
        assert_close(run(out, x), model(x), Bound.exact(), kind)


class Strided(nn.Module):
    def forward(self, x):
        y = x * 2
        y[:, ::2] = 0.0
        return y


class IntoInput(nn.Module):
    def forward(self, x):
        x[:, :1] = 0.0
        return x * 2


class Accumulate(nn.Module):
    def forward(self, x):
        y = x * 2
        y.index_put_((torch.tensor([0, 0]),), torch.ones(1, 3, 4), accumulate=True)
        return y


class TwoIndexDims(nn.Module):
    def forward(self, x):
        y = x * 2
        y[:, torch.tensor([0, 1]), torch.tensor([1, 2])] = 0.0
        return y


@pytest.mark.parametrize("model,reason", [
    (nn.Conv2d(3, 3, 1), "no write into part of a tensor"),
    (nn.ReLU(inplace=True), "no write into part of a tensor"),
    (Strided(), "not a block"),
    (IntoInput(), "writes into the graph input x"),
    (Accumulate(), "accumulate=True"),
    (TwoIndexDims(), "advanced indexing on 2 dims"),
])
def test_left_alone_with_reason(model, reason):
    ep = export(model.eval(), torch.randn(2, 3, 4, 4))
    graph = str(ep.graph)
    why = S.check(ep)
    assert why is not None and reason in why, why
    assert str(ep.graph) == graph


@pytest.mark.parametrize("kind,where", [("assign", (0, 2)), ("index", (1, 3))])
def test_artifacts_have_no_scatter(kind, where, tmp_path):
    """Before: ONNX ScatterND, TFLite PAD + SELECT. After: Slice/Concat only, matching the source."""
    litert_torch = pytest.importorskip("litert_torch")
    ort = pytest.importorskip("onnxruntime")
    from edgekit.converters.passes import nhwc_boundary

    torch.manual_seed(2)
    model = Write(kind, where).eval()
    x = torch.randn(1, 3, 8, 8)
    out = S.rewrite(export(model, x))
    onnx = torch.onnx.export(out, (x,), dynamo=True)
    kinds = {n.op_type for n in onnx.model.graph}
    assert not kinds & {"ScatterND", "ScatterElements", "Where"} and "Concat" in kinds, kinds
    onnx.save(str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    with torch.no_grad():
        assert_matches(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], model, x, what="onnx")
    module = nhwc_boundary.rewrite(out).module()
    module.training = False
    xn = x.permute(0, 2, 3, 1).contiguous()
    edge = litert_torch.convert(module, (xn,))
    edge.export(str(tmp_path / "m.tflite"))
    names = tflite_ops(tmp_path / "m.tflite")
    assert not {"PAD", "SELECT", "SELECT_V2", "SCATTER_ND", "TRANSPOSE"} & set(names), names
    with torch.no_grad():
        assert_matches(np.asarray(edge(xn)).transpose(0, 3, 1, 2), model, x, what="tflite")
