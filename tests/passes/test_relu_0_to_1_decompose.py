"""relu_0_to_1_decompose: float32 RELU_0_TO_1 in a written .tflite → the producer's fused RELU +
MINIMUM(x, 1), or RELU + MINIMUM where the producer cannot take it. Exact: compare and select only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import relu_0_to_1_decompose as R
from _models2d import run_tflite as _run, tflite_ops

pytest.importorskip("litert_torch")


class Clipped(nn.Module):
    """QuickSRNet-style: conv → Hardtanh(0, 1) (fusable), then a clamp of a tensor that is also read
    by an add (not fusable: the add must see the unclipped value), then a clamp of the input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        a = nn.functional.hardtanh(self.c1(x), 0.0, 1.0)
        b = self.c2(a)
        return torch.clamp(b, 0.0, 1.0) + b + torch.clamp(x, 0, 1).mean()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import litert_torch

    d = tmp_path_factory.mktemp("clamp01")
    out = {}
    for name, model in (("clipped", Clipped()), ("plain", nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()))):
        litert_torch.convert(model.eval(), (torch.zeros(1, 3, 8, 8),)).export(str(d / f"{name}.tflite"))
        out[name] = d / f"{name}.tflite"
    return out


def test_exact_and_fused_where_possible(files, tmp_path):
    src = files["clipped"]
    before = tflite_ops(src)
    assert before.count("RELU_0_TO_1") == 3, before
    work = shutil.copy(src, tmp_path / "m.tflite")
    assert R.check(work) is None
    assert R.rewrite(work) == work and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]
    after = tflite_ops(work)
    assert "RELU_0_TO_1" not in after and after.count("MINIMUM") == 3, after
    assert after.count("RELU") == 2 and len(after) == len(before) + 2, after  # one clamp fused into its conv
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 50.0):
        x = (rng.standard_normal((1, 3, 8, 8)) * scale).astype(np.float32)  # litert-torch keeps NCHW at the boundary
        np.testing.assert_array_equal(_run(work, x), _run(src, x))


def test_negative(files, tmp_path):
    work = shutil.copy(files["plain"], tmp_path / "p.tflite")
    assert R.check(work) == "the model has no RELU_0_TO_1"
    data = work.read_bytes()
    assert R.rewrite(work) == work and work.read_bytes() == data


def test_generic_npu_sr_nets_have_no_relu_0_to_1(tmp_path):
    """QuickSRNet's Hardtanh(0, 1) activations: lint warnings before, none after the pipeline."""
    from edgekit.converters.api import convert
    from edgekit.lint import lint

    r = convert("quicksrnet_small_x2", formats="tflite", input_shapes=[(1, 3, 16, 16)], pretrained=True,
                target="generic-npu", out=tmp_path / "b", bench_runs=0)
    (art,) = r.manifest.artifacts
    assert art.verification["status"] == "passed" and "relu_0_to_1_decompose" in art.passes
    ops = tflite_ops(r.bundle / "model.tflite")
    assert "RELU_0_TO_1" not in ops and ops.count("MINIMUM") == 4, ops
    report = lint(r.bundle / "model.tflite", "generic-npu")
    assert report.passed and not report.warnings, [(f.op, f.message) for f in report.findings]
