"""_fx: index-array views and gather_as (the engine under the video passes), checked against torch
on random view chains, repeats and slices; plus frames_to_batch on repeat_interleave/expand."""

import numpy as np
import pytest
import torch

from edgekit.converters.passes import _fx, frames_to_batch
from edgekit.converters.passes._fx import View, aten, factor_permutation, gather_as
from edgekit.errors import ConversionError
from _video_models import export, latent, ops, run_source_layout


def _chain(rng, x):
    """A random chain of permutes, reshapes and slices applied both to x (torch) and a View."""
    v = View.of(x)
    for _ in range(4):
        r = rng.integers(3)
        if r == 0:
            p = [int(i) for i in rng.permutation(x.dim())]
            x, v = x.permute(p), v.apply(aten.permute.default, p)
        elif r == 1 and x.dim() > 1:
            d = int(rng.integers(x.dim() - 1))
            shape = list(x.shape[:d]) + [x.shape[d] * x.shape[d + 1]] + list(x.shape[d + 2:])
            x, v = x.reshape(shape), v.apply(aten.reshape.default, shape)
        else:
            d = int(rng.integers(x.dim()))
            if x.shape[d] > 1:
                x, v = x[(slice(None),) * d + (slice(1, None),)], v.apply(aten.slice.Tensor, d, 1, None)
    return x, v


def test_random_chains_match_torch():
    done = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        base = torch.randn(2, 3, 4, 5)
        want, v = _chain(rng, base)
        try:
            got = gather_as(base, v.idx)
        except ConversionError:
            continue  # a slice after a permute is not always one box; callers then keep the op
        assert torch.equal(got, want), f"seed {seed}"
        done += 1
    assert done >= 30, f"only {done} of 40 random chains were expressible"


def test_factor_permutation():
    assert factor_permutation(np.arange(12)) == [(12, 1)]
    assert factor_permutation(np.arange(12).reshape(3, 4).T) == [(4, 1), (3, 4)]
    assert factor_permutation(np.repeat(np.arange(4), 3)) == [(4, 1), (3, 0)]
    assert factor_permutation(np.array([0, 2, 1])) is None


def test_repeats_become_concats():
    x = torch.arange(24.0).reshape(2, 3, 4)
    idx = np.ascontiguousarray(np.repeat(np.arange(24).reshape(2, 3, 4), 2, axis=1))
    assert torch.equal(gather_as(x, idx), x.repeat_interleave(2, dim=1))


class RepeatT(torch.nn.Module):
    def forward(self, x):
        return x.repeat_interleave(2, dim=2) + 1.0


class ExpandT(torch.nn.Module):
    def forward(self, x):
        n, c, t, h, w = x.shape
        return x.unsqueeze(3).expand(n, c, t, 2, h, w).reshape(n, c, t * 2, h, w) + 1.0


@pytest.mark.parametrize("model", [RepeatT(), ExpandT()], ids=["repeat_interleave", "expand"])
def test_temporal_repeat_folds_to_concat(model):
    x = latent((1, 4, 3, 5, 5))
    out = frames_to_batch.rewrite(export(model, x))
    after = ops(out)
    assert _fx.max_rank(out) <= 4 and after.get("aten.cat.default") == 1, after
    assert not [k for k in after if "expand" in k or "repeat" in k or "index" in k]
    assert torch.equal(run_source_layout(out, x), model(x))


class OddViews(torch.nn.Module):
    """A temporal stride-2 slice and an H/W transpose of the clip."""

    def forward(self, x):
        return x[:, :, ::2] * 2.0 + x[:, :, ::2].transpose(3, 4)


def test_strided_and_unusual_views_fold_or_fall_back_exactly():
    model = OddViews()
    x = latent((1, 3, 5, 4, 4))
    out = frames_to_batch.rewrite(export(model, x))
    assert _fx.max_rank(out) <= 4
    assert torch.equal(run_source_layout(out, x), model(x))


def test_replay_fallback_when_no_box():
    base = torch.randn(4, 6)
    v = View.of(base).apply(aten.permute.default, [1, 0]).apply(aten.reshape.default, [3, 8])
    v = v.apply(aten.slice.Tensor, 1, 1, 7)  # not one box of the base
    with pytest.raises(ConversionError):
        gather_as(base, v.idx)
    assert torch.equal(v.materialize(), base.permute(1, 0).reshape(3, 8)[:, 1:7])


def test_rewritten_constants_are_real_tensors():
    """Constants are made during a fake-tensor dry run; none may leak into the program as fakes."""
    from torch._subclasses.fake_tensor import FakeTensor

    from edgekit.converters.passes import pixel_shuffle_3d_to_4d
    from edgekit.zoo.video_decoder import PixelShuffleUpsample3d

    ep = export(PixelShuffleUpsample3d(4, 2, 2, "permute8d"), latent((1, 4, 2, 3, 3)))
    for out in (pixel_shuffle_3d_to_4d.rewrite(ep), frames_to_batch.rewrite(pixel_shuffle_3d_to_4d.rewrite(ep))):
        tensors = [*out.state_dict.values(), *out.constants.values()]
        assert tensors and not any(isinstance(t, FakeTensor) for t in tensors)
