"""pixel_shuffle_3d_to_4d: the decoupled and the rank-8 permute 3-D pixel shuffles → a free
frame reshape + per-frame pixel_shuffle (conv output channels permuted)."""

import pytest
import torch

from edgekit.converters.passes import _fx, frames_to_batch, pixel_shuffle_3d_to_4d
from edgekit.zoo.video_decoder import PixelShuffleUpsample3d
from _video_models import (NotAShuffle, PixelShuffle8d, Plain2d, export, latent, ops,
                           run_source_layout)
from numeric import assert_close, assert_matches, fp32_bound

pytestmark = pytest.mark.numeric

PS = "aten.pixel_shuffle.default"

CASES = {
    "decoupled-st2-s2": lambda: PixelShuffleUpsample3d(4, 2, 2, "decoupled"),
    "permute8d-st2-s2": lambda: PixelShuffleUpsample3d(4, 2, 2, "permute8d"),
    "permute8d-st1-s2": lambda: PixelShuffleUpsample3d(4, 1, 2, "permute8d"),
    "permute8d-st2-s1": lambda: PixelShuffleUpsample3d(4, 2, 1, "permute8d"),
    "permute8d-st3-s2": lambda: PixelShuffleUpsample3d(4, 3, 2, "permute8d"),
    "user-8d-crop": lambda: PixelShuffle8d(3, 2, 2, crop=True),
    "user-8d-nocrop": lambda: PixelShuffle8d(3, 2, 2, crop=False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rewritten_exact_and_transpose_free(name):
    torch.manual_seed(0)
    model = CASES[name]().eval()
    x = latent((1, 4, 3, 5, 5))
    ep = export(model, x)
    assert pixel_shuffle_3d_to_4d.check(ep) is None
    out = pixel_shuffle_3d_to_4d.rewrite(ep)
    (found,) = pixel_shuffle_3d_to_4d.find_shuffles(ep.module())[0]
    st, s = found.st, found.s
    assert ops(out).get(PS, 0) == (st if s > 1 else 0)  # one per temporal phase
    assert ops(out)["aten.conv3d.default"] == st
    assert _fx.max_rank(out) <= 5, "the rank-6/8 views are gone"
    with torch.no_grad():
        want = model(x)
        bound = fp32_bound(model, x)
        assert_close(run_source_layout(out, x), want, bound, name)
        folded = frames_to_batch.rewrite(out)
        after = ops(folded)
        assert _fx.max_rank(folded) <= 4
        assert "aten.permute.default" not in after and "aten.transpose.int" not in after, after
        # the only reshapes left are of the conv weights' frames, never across channels and frames
        assert after.get("aten.reshape.default", 0) == 0, after
        assert_close(run_source_layout(folded, x), want, bound, name + "/folded")
        assert_matches(run_source_layout(folded, x * 100), model, x * 100, what=name + "/x100")


def test_channel_permutation_is_in_the_weights():
    """The conv keeps its shape; only its output channels move (no gather in the graph)."""
    model = PixelShuffleUpsample3d(4, 2, 2, "permute8d").eval()
    ep = export(model, latent((1, 4, 3, 5, 5)))
    (sh,), _ = pixel_shuffle_3d_to_4d.find_shuffles(ep.module())
    assert (sh.st, sh.s, sh.offset, sh.frames) == (2, 2, 1, 5)  # the causal crop of st − 1 frames is matched too
    assert sorted(sh.perm.tolist()) == list(range(4 * 2 * 2 * 2)) and sh.perm.tolist() != sorted(sh.perm.tolist())
    out = pixel_shuffle_3d_to_4d.rewrite(ep)
    assert not [k for k in ops(out) if "index" in k or "gather" in k]


def test_negative():
    reason = pixel_shuffle_3d_to_4d.check(export(NotAShuffle(), latent((1, 4, 2, 4, 4))))
    assert reason == "conv3d: its reshape/permute chain is not a 3-D pixel shuffle"
    assert pixel_shuffle_3d_to_4d.check(export(Plain2d(), torch.randn(1, 3, 8, 8))).startswith("no Conv3d")
    assert pixel_shuffle_3d_to_4d.check(export(torch.nn.Conv3d(4, 4, 1), latent((1, 4, 2, 4, 4)))) == \
        "no 3-D pixel shuffle after a Conv3d"
