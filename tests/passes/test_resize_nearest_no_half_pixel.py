"""resize_nearest_no_half_pixel: litert-torch's half-pixel nearest resize → the plain op, exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import resize_nearest_no_half_pixel as rn


class Up(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest") * 2.0


def _resize_ops(path):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return [(op.builtinOptions.halfPixelCenters, model.operatorCodes[op.opcodeIndex].version)
            for g in model.subgraphs for op in g.operators
            if type(op.builtinOptions).__name__ == "ResizeNearestNeighborOptionsT"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import litert_torch

    out = {}
    for scale in (2, 3, 1.5):
        x = torch.rand(1, 3, 6, 8)
        path = tmp_path_factory.mktemp("rn") / f"up{scale}.tflite"
        litert_torch.convert(Up(scale).eval(), (x,)).export(str(path))
        out[scale] = path
    return out


def _run(path, x):
    import edgekit

    with edgekit.load(path, backend="litert", threads=1) as s:
        return s(x)


@pytest.mark.parametrize("scale", [2, 3])
def test_clears_half_pixel_centers_exactly(exported, scale, tmp_path):
    src = exported[scale]
    assert _resize_ops(src) and all(h for h, _ in _resize_ops(src)), "fixture: litert-torch sets the flag"
    work = shutil.copy(src, tmp_path / "m.tflite")
    assert rn.check(work) is None
    out = rn.rewrite(work)
    assert _resize_ops(out) == [(False, 1)] * len(_resize_ops(src))
    rng = np.random.default_rng(scale)
    for x in (rng.standard_normal((1, 3, 6, 8)), np.arange(144.0).reshape(1, 3, 6, 8) * 1e3):
        x = x.astype(np.float32)
        got = _run(out, x)
        np.testing.assert_array_equal(got, _run(src, x))  # bit-identical to the half-pixel op
        np.testing.assert_array_equal(got, Up(scale)(torch.from_numpy(x)).numpy())  # and to the source


def test_non_integer_factor_is_left_alone(exported, tmp_path):
    work = shutil.copy(exported[1.5], tmp_path / "m.tflite")
    before = work.read_bytes()
    assert "integer scale factor" in rn.check(work)
    assert work.read_bytes() == before
