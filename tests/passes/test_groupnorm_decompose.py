"""groupnorm_decompose: GroupNorm on 4-D and 5-D inputs → rank ≤ 4 ops, exact to fp32 rounding."""

import pytest
import torch
from torch import nn

from edgekit.converters.passes import _fx, frames_to_batch, groupnorm_decompose
from _video_models import ClipGroupNorm, Plain2d, export, latent, ops, run_source_layout
from numeric import assert_matches, assert_same_function

pytestmark = pytest.mark.numeric

GN = "aten.group_norm.default"


class GN4(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.GroupNorm(4, 8)
        nn.init.normal_(self.norm.weight)
        nn.init.normal_(self.norm.bias)

    def forward(self, x):
        return self.norm(x)


@pytest.mark.parametrize("model, shape", [(GN4(), (2, 8, 5, 7)), (ClipGroupNorm(8, 2), (1, 8, 3, 5, 4))],
                         ids=["4d", "5d-clip"])
def test_decomposes_and_matches(model, shape):
    x = latent(shape)
    ep = export(model, x)
    assert groupnorm_decompose.check(ep) is None
    before = ops(ep)
    out = groupnorm_decompose.rewrite(ep)
    after = ops(out)
    assert before[GN] == 1 and GN not in after, after
    assert after["aten.rsqrt.default"] == 1 and after["aten.mean.dim"] == 2
    # no reshape: a channels-last backend would wrap an (N, G, -1) view in two TRANSPOSEs
    assert "aten.reshape.default" not in after and "aten.view.default" not in after, after
    # a 4-D norm needs no tensor above rank 4; a 5-D one stays ≤ its input rank (frames_to_batch folds it)
    assert _fx.max_rank(out) <= len(shape)
    # σ = 0 (constant input): the decomposition's rounding of the mean is amplified by 1/√ε ≈ 316,
    # PyTorch's fused kernel is exact there; both sides are measured against float64
    assert run_source_layout(out, x).shape == model.eval()(x).shape  # no layout change to undo
    for name, xi in [("random", x), ("offset 10", x + 10.0), ("tiny", x * 1e-4), ("constant", torch.full(shape, 0.7))]:
        assert_same_function(out.module(), model, xi, what=name)


def test_clip_norm_folds_to_rank4_without_transpose():
    x = latent((1, 8, 3, 5, 4))
    model = ClipGroupNorm(8, 2)
    out = frames_to_batch.rewrite(groupnorm_decompose.rewrite(export(model, x)))
    assert _fx.max_rank(out) <= 4
    assert "aten.permute.default" not in ops(out) and "aten.transpose.int" not in ops(out), ops(out)
    assert_matches(run_source_layout(out, x), model, x)


def test_clip_norm_folded_directly_by_frames_to_batch():
    """Without groupnorm_decompose, frames_to_batch lowers a 5-D GroupNorm itself (rank 3 stats)."""
    x = latent((1, 8, 3, 5, 4))
    model = ClipGroupNorm(8, 2)
    out = frames_to_batch.rewrite(export(model, x))
    assert GN not in ops(out) and _fx.max_rank(out) <= 4
    assert_matches(run_source_layout(out, x), model, x)


def test_group_average_weight():
    a = groupnorm_decompose.group_average(6, 2, 4)
    assert a.shape == (6, 6, 1, 1)
    assert torch.equal(a[:, :, 0, 0].sum(1), torch.ones(6))
    assert a[0, 2, 0, 0] == 1 / 3 and a[0, 3, 0, 0] == 0


def test_one_channel_per_group_needs_no_conv():
    model = torch.nn.GroupNorm(8, 8).eval()
    x = latent((2, 8, 4, 4))
    out = groupnorm_decompose.rewrite(export(model, x))
    assert "aten.conv2d.default" not in ops(out)
    assert_matches(run_source_layout(out, x), model, x)


def test_negative_no_groupnorm():
    ep = export(Plain2d(), torch.randn(1, 3, 8, 8))
    reason = groupnorm_decompose.check(ep)
    assert reason == "no GroupNorm in the graph"
