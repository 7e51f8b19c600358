"""approx_gelu_tanh: aten.gelu → x·σ(x·(a + b·x²)), the tanh approximation with no GELU/Erf op.

Tolerances (see the pass's docstring): against exact GELU the bound is 4.8e-4 absolute (the tanh
approximation's own 4.73e-4 plus float32 rounding); against the tanh approximation itself (the
source's ``approximate='tanh'``, or the formula in float64) only float32 rounding of the formula's
six ops on values of size max(1, |x|) remains: ``Bound.roundoff`` of depth 6 (12 when both sides
are float32) on the error divided by max(1, |x|).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import approx_gelu_tanh as G, run_pipeline
from _models2d import export, ops, run, tflite_ops
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric

BOUND = 4.8e-4
FORMULA_OPS = 6  # x·σ(x·(a + b·x²)): mul, mul, add, mul, sigmoid, mul — one rounding each
SIGMOID_FORM = ["MUL", "MUL", "ADD", "MUL", "LOGISTIC", "MUL"]


class Gelu(nn.Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        return nn.functional.gelu(x, approximate=self.approximate)


class TanhWrittenOut(nn.Module):
    """The tanh approximation op by op: the LiteRT converter fuses it back into GELU."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


class ConvGelu(nn.Module):
    """conv → GELU (erf) → conv → GELU (tanh) → conv, as in ConvNeXt / ViT MLP blocks."""

    def __init__(self, approximate: tuple[str, str] = ("none", "tanh")):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 1), nn.Conv2d(16, 16, 1), nn.Conv2d(16, 3, 1)
        with torch.no_grad():
            self.c1.weight.mul_(4)  # GELU inputs well beyond |x| = 3
        self.approximate = approximate

    def forward(self, x):
        a, b = self.approximate
        return self.c3(nn.functional.gelu(self.c2(nn.functional.gelu(self.c1(x), approximate=a)), approximate=b))


def _grid(n: int) -> torch.Tensor:
    edges = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e20, -1e20, 3e38, -3e38])
    return torch.cat([edges, torch.linspace(-12, 12, n - edges.numel())]).reshape(1, n)


def _gelu64(x, approximate: str = "none") -> np.ndarray:
    return nn.functional.gelu(torch.as_tensor(np.asarray(x), dtype=torch.float64), approximate=approximate).numpy()


def _assert_bounds(got, x, what: str) -> float:
    """``got`` within BOUND of exact GELU and within float32 rounding of the tanh formula."""
    got, x = np.asarray(got, dtype=np.float64), np.asarray(x, dtype=np.float64)
    err = np.abs(got - _gelu64(x))
    assert err.max() <= BOUND, f"{what}: {err.max():.3g} from exact GELU at x = {x.reshape(-1)[err.argmax()]}"
    finite = np.abs(x) < 1e19  # the float64 formula itself over/underflows beyond
    scale = np.maximum(1, np.abs(x[finite]))  # each op rounds relative to values of this size
    assert_close(got[finite] / scale, _gelu64(x, "tanh")[finite] / scale, Bound.roundoff(1.0, depth=FORMULA_OPS),
                 f"{what}: float32 formula vs float64, / max(1, |x|)")
    big = np.abs(x) >= 1e19
    np.testing.assert_array_equal(got[big], np.where(x[big] > 0, x[big], 0.0))  # saturated, no NaN
    return float(err.max())


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_rewrite_within_bound(approximate):
    x = _grid(200_001)
    ep = export(Gelu(approximate), x)
    assert G.check(ep) is None
    out = G.rewrite(ep)
    assert ops(ep) == {"aten.gelu.default": 1}
    assert ops(out) == {"aten.mul.Tensor": 4, "aten.add.Tensor": 1, "aten.sigmoid.default": 1}
    got = run(out, x)
    err = _assert_bounds(got, x, approximate)
    assert err > 4.7e-4  # the grid reaches the approximation's peak error (|x| ≈ 2.70)
    if approximate == "tanh":  # the same function as the source: float32 rounding of both forms only
        scale = x.abs().clamp_min(1)
        assert_close(got / scale, run(ep, x) / scale, Bound.roundoff(1.0, depth=2 * FORMULA_OPS),
                     "sigmoid form vs tanh source, / max(1, |x|)")


def test_in_a_network():
    model = ConvGelu().eval()
    x = torch.randn(1, 3, 6, 6)
    ep = export(model, x)
    out = G.rewrite(ep)
    assert ops(ep)["aten.gelu.default"] == 2 and ops(out)["aten.gelu.default"] == 0
    assert ops(out)["aten.sigmoid.default"] == 2
    tanh_model = ConvGelu(("tanh", "tanh")).eval()  # the function the rewrite computes
    with torch.no_grad():
        assert (model.c1(x).abs() > 3).any()
        for inp in (x, 3 * x, -x):
            assert_matches(run(out, inp), tanh_model, inp, what="rewritten vs all-tanh GELU")


def test_tflite_has_no_gelu(tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    x = _grid(4096)

    def tflite(module, name):
        path = tmp_path / f"{name}.tflite"
        edge = litert_torch.convert(module, (x,))
        edge.export(str(path))
        return tflite_ops(path), np.asarray(edge(x))

    assert tflite(Gelu().eval(), "exact")[0] == ["GELU"]
    assert tflite(TanhWrittenOut().eval(), "tanh")[0] == ["GELU"]  # why the pass uses the sigmoid form
    for approximate in ("none", "tanh"):
        module = G.rewrite(export(Gelu(approximate), x)).module()
        module.training = False
        kinds, got = tflite(module, f"approx_{approximate}")
        assert kinds == SIGMOID_FORM
        _assert_bounds(got, x, f"tflite ({approximate})")


def test_onnx_has_no_gelu_or_erf(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    x = _grid(4096)
    before = torch.onnx.export(export(Gelu(), x), (x,), dynamo=True)
    assert "Gelu" in [n.op_type for n in before.model.graph]
    prog = torch.onnx.export(G.rewrite(export(Gelu(), x)), (x,), dynamo=True)
    assert [n.op_type for n in prog.model.graph] == ["Mul", "Mul", "Add", "Mul", "Sigmoid", "Mul"]
    prog.save(str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    _assert_bounds(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], x, "onnxruntime")


class HandWrittenErfGelu(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.erf(x / 1.4142135623730951))


def test_not_applied_with_reason():
    x = torch.randn(1, 3, 4, 4)
    plain = export(nn.Conv2d(3, 3, 1).eval(), x)
    assert G.check(plain) == "the model has no GELU"
    erf = export(HandWrittenErfGelu(), x)
    assert G.check(erf) == "the model has no GELU (its 1 erf op(s) are not part of an aten.gelu and are left alone)"
    not_applied: dict[str, str] = {}
    same, applied = run_pipeline(erf, None, ["approx_gelu_tanh"], not_applied=not_applied)
    assert same is erf and applied == [] and "erf" in not_applied["approx_gelu_tanh"]


def test_through_convert(tmp_path):
    """Applied and recorded; convert verifies the artifacts against the exact-GELU source at the
    fp16 bounds (the measured fp32 bound x 2**13) that an approx_ pass gets, and says which pass made them
    approximate: they differ from the source by up to BOUND per activation, far above float32 rounding."""
    import onnx

    from edgekit.bundle import read_manifest
    from edgekit.converters.api import convert

    model = ConvGelu(("none", "none")).eval()
    r = convert(model, formats="onnx,tflite", passes=["approx_gelu_tanh"], out=tmp_path / "b",
                input_shapes=[[1, 3, 8, 8]], bench_runs=0)
    m = read_manifest(r.bundle)
    assert m.extra["convert"]["passes"] == ["approx_gelu_tanh"]
    assert "GELU" not in tflite_ops(r.bundle / "model.tflite")
    kinds = {n.op_type for n in onnx.load(str(r.bundle / "model.onnx")).graph.node}
    assert not kinds & {"Gelu", "Erf"}, kinds
    # how far errors of BOUND per GELU can move an output: through c3, and through c2, the second
    # GELU (slope below 1.13) and c3
    w2 = model.c2.weight.detach().abs().flatten(1).sum(1)
    w3 = model.c3.weight.detach().abs().flatten(1)
    reach = float(BOUND * (w3.sum(1) + 1.13 * (w3 @ w2)).max())
    for fmt in ("onnx", "tflite"):
        art = m.artifact_for(fmt)
        assert "approx_gelu_tanh" in art.passes
        v = art.verification
        assert v["status"] == "passed" and v["approximate"] == ["approx_gelu_tanh"], v
        assert v["tolerance"]["bound"] == "measured-fp16" and v["outputs"]["output"]["max_rel"] > 1e-4, v
        assert 1e-5 < v["outputs"]["output"]["max_abs"] <= reach, (v["outputs"]["output"], reach)
    assert r.exit_code == 0
