"""adaptive_pool_to_pool: adaptive max/avg pooling whose output divides the static input becomes a
plain pool with kernel = stride = input / output; one that does not divide is left alone, with the
reason. The TFLite exporter applies it to adaptive max pools (litert-torch has no lowering for them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _models2d import export, ops, run, run_tflite, tflite_ops
from edgekit.converters.passes import adaptive_pool_to_pool as adaptive
from edgekit.errors import ConversionError
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric

ADAPTIVE_OPS = ("aten.adaptive_max_pool2d.default", "aten.adaptive_avg_pool2d.default",
                "aten.adaptive_max_pool1d.default", "aten.adaptive_avg_pool1d.default",
                "aten.adaptive_max_pool3d.default", "aten.adaptive_avg_pool3d.default")


class Pool(nn.Module):
    """``kind`` ("max"/"avg") adaptive pooling of spatial rank ``rank`` to ``size``, after a conv
    (so the pool reads an activation, not the input itself)."""

    def __init__(self, kind: str, size, rank: int = 2, channels: int = 3, indices: bool = False):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[rank]
        self.conv = conv(channels, 4, 1)
        self.kind, self.size, self.rank, self.indices = kind, size, rank, indices

    def forward(self, x):
        y = self.conv(x)
        fn = getattr(F, f"adaptive_{self.kind}_pool{self.rank}d")
        if self.indices:
            values, idx = fn(y, self.size, return_indices=True)
            return values, idx
        return fn(y, self.size)


def _generated_divisible():
    """(kind, rank, input spatial shape, output size): output sizes that divide the input, a few
    per spatial rank, both kinds; the kernel is ``input // output`` (1 = the identity window,
    the whole axis = a global pool)."""
    g = np.random.default_rng(7)
    cases = []
    for rank in (1, 2, 3):
        for _ in range(3 if rank < 3 else 2):
            outs = [int(g.integers(1, 4)) for _ in range(rank)]
            ins = [o * int(g.integers(1, 4)) for o in outs]
            for kind in ("max", "avg"):
                cases.append((kind, rank, tuple(ins), tuple(outs)))
    cases += [("max", 2, (8, 8), (1, 1)), ("avg", 2, (6, 9), (6, 3)), ("max", 2, (7, 5), (7, 5))]
    return cases


DIVISIBLE = _generated_divisible()


@pytest.mark.parametrize("kind,rank,ins,outs", DIVISIBLE, ids=[f"{k}{r}d-{i}-{o}" for k, r, i, o in DIVISIBLE])
def test_divisible_becomes_plain_pool_and_keeps_the_function(kind, rank, ins, outs):
    torch.manual_seed(0)
    model = Pool(kind, outs, rank).eval()
    x = torch.randn(2, 3, *ins)
    ep = export(model, x)
    assert adaptive.check(ep) is None
    out = adaptive.rewrite(ep)
    before, after = ops(ep), ops(out)
    assert before[f"aten.adaptive_{kind}_pool{rank}d.default"] == 1
    assert not any(after[o] for o in ADAPTIVE_OPS), after
    assert sum(n for op, n in after.items() if op.startswith(f"aten.{kind}_pool{rank}d")) == 1, after
    with torch.no_grad():
        for inp in (x, x * 1e3, torch.zeros_like(x)):
            got = run(out, inp)
            if kind == "max":  # the same element of the same window: bit-exact
                assert_close(got.numpy(), model(inp).numpy(), Bound.exact("max of the same window"), "max pool")
            else:  # the same k-element sum divided by the same count, up to summation order
                assert_matches(got, model, inp, what="avg pool")


def test_max_with_indices_keeps_values_and_indices():
    torch.manual_seed(0)
    model = Pool("max", (2, 3), 2, indices=True).eval()
    x = torch.randn(1, 3, 6, 9)
    out = adaptive.rewrite(export(model, x))
    assert ops(out)["aten.max_pool2d_with_indices.default"] == 1
    assert ops(out)["aten.adaptive_max_pool2d.default"] == 0
    with torch.no_grad():
        values, idx = out.module()(x)
        want_values, want_idx = model(x)
    assert_close(values.numpy(), want_values.numpy(), Bound.exact("max of the same window"), "values")
    assert torch.equal(idx, want_idx)


@pytest.mark.parametrize("kind,rank,ins,outs", [
    ("max", 2, (7, 7), (2, 2)), ("avg", 2, (8, 6), (3, 3)), ("max", 1, (10,), (4,)), ("avg", 3, (4, 4, 5), (2, 2, 2)),
])
def test_not_divisible_is_left_alone_with_the_reason(kind, rank, ins, outs):
    ep = export(Pool(kind, outs, rank).eval(), torch.randn(1, 3, *ins))
    reason = adaptive.check(ep)
    assert reason is not None and "does not divide input" in reason and str(list(outs)) in reason, reason
    assert str(list(ins)) in reason


def test_no_adaptive_pool():
    assert adaptive.check(export(nn.Conv2d(3, 3, 1).eval(), torch.randn(1, 3, 4, 4))) == "the model has no adaptive pooling"


class Mixed(nn.Module):
    """One adaptive pool that divides (max 8 -> 4) and one that does not (avg 8 -> 3)."""

    def forward(self, x):
        return F.adaptive_max_pool2d(x, 4).sum((2, 3)) + F.adaptive_avg_pool2d(x, 3).sum((2, 3))


def test_mixed_rewrites_only_the_divisible_one():
    x = torch.randn(1, 3, 8, 8)
    ep = export(Mixed().eval(), x)
    assert adaptive.check(ep) is None
    out = adaptive.rewrite(ep)
    after = ops(out)
    assert after["aten.adaptive_max_pool2d.default"] == 0 and after["aten.adaptive_avg_pool2d.default"] == 1
    with torch.no_grad():
        assert_matches(run(out, x), Mixed().eval(), x, what="mixed")


# -- the TFLite exporter's default lowering -------------------------------------------------------


def _tflite(model: nn.Module, x: torch.Tensor, dest):
    pytest.importorskip("litert_torch")
    from edgekit.converters.exporters import ExportRequest
    from edgekit.converters.exporters import tflite as exporter

    program = torch.export.export(model, (), kwargs={"x": x}, strict=False)
    return exporter.export(ExportRequest(program, {"x": x}, ["x"], ["y"], dest))


@pytest.mark.slow
def test_tflite_exporter_lowers_adaptive_max_by_default(tmp_path):
    torch.manual_seed(0)
    model = Pool("max", (2, 4), 2).eval()
    x = torch.randn(1, 3, 8, 8)
    result = _tflite(model, x, tmp_path / "m.tflite")
    assert "adaptive_pool_to_pool(max)" in result.passes
    assert "MAX_POOL_2D" in tflite_ops(result.path)
    # the 1x1 conv before the pool rounds differently in LiteRT: the model's own float32 bound
    assert_matches(run_tflite(result.path, x.numpy()), model, x, what="tflite")


@pytest.mark.slow
def test_tflite_exporter_refuses_non_divisible_adaptive_max_in_one_line(tmp_path):
    with pytest.raises(ConversionError) as e:
        _tflite(Pool("max", (3, 3), 2).eval(), torch.randn(1, 3, 8, 8), tmp_path / "m.tflite")
    msg = str(e.value)
    assert "no adaptive max pooling" in msg and "does not divide input [8, 8]" in msg and "\n" not in msg
