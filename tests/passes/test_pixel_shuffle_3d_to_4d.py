"""pixel_shuffle_3d_to_4d: the decoupled and the rank-8 permute 3-D pixel shuffles → a free
frame reshape + per-frame pixel_shuffle (conv output channels permuted)."""

import pytest
import torch

from edgekit.converters.passes import _fx, frames_to_batch, pixel_shuffle_3d_to_4d
from edgekit.zoo.video_decoder import PixelShuffleUpsample3d
from _video_models import (NotAShuffle, PixelShuffle8d, Plain2d, export, latent, ops,
                           run_source_layout)
from numeric import Bound, assert_close, assert_matches, fp32_bound

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
    ep = export(NotAShuffle(), latent((1, 4, 2, 4, 4)))
    graph = str(ep.graph)
    reason = pixel_shuffle_3d_to_4d.check(ep)
    assert reason == "conv3d: its reshape/permute chain is not a 3-D pixel shuffle"
    assert str(ep.graph) == graph
    assert pixel_shuffle_3d_to_4d.check(export(Plain2d(), torch.randn(1, 3, 8, 8))).startswith("no 3-D pixel shuffle")
    assert pixel_shuffle_3d_to_4d.check(export(torch.nn.Conv3d(4, 4, 1), latent((1, 4, 2, 4, 4)))).startswith(
        "no 3-D pixel shuffle")


# -- every ordering of the factors in the channel axis, any producer ---------------------------------

ORDERS = ["ctij", "cijt", "citj", "tcij", "ijtc", "jtic"]  # c: channel, t: temporal, i/j: the spatial factors


class OrderedShuffle(torch.nn.Module):
    """A conv (3-D, or 2-D making ``st`` frames from one image) to ``C·st·s²`` channels, optional
    channel-wise ops (PReLU, a per-channel scale, a residual conv), and a 3-D pixel shuffle whose
    channel axis is split in the ``order`` given, written with view/permute/reshape."""

    def __init__(self, order: str, conv: str = "3d", k: int = 3, st: int = 2, s: int = 2, c: int = 2,
                 act: bool = False, crop: bool = False):
        super().__init__()
        self.order, self.st, self.s, self.c, self.crop, self.act, self.kind = order, st, s, c, crop, act, conv
        big = c * st * s * s
        conv_t = torch.nn.Conv3d if conv == "3d" else torch.nn.Conv2d
        self.conv = conv_t(4, big, k, padding=k // 2)
        self.skip = conv_t(4, big, 1)
        self.prelu = torch.nn.PReLU(big)
        self.scale = torch.nn.Parameter(torch.rand(big, *([1] * (3 if conv == "3d" else 2))) + 0.5)

    def forward(self, x):
        y = self.conv(x)
        if self.act:
            y = self.prelu(y) * self.scale + self.skip(x)
        if self.kind == "2d":
            y = y.unsqueeze(2)
        n, _, t, h, w = y.shape
        size = {"c": self.c, "t": self.st, "i": self.s, "j": self.s}
        y = y.reshape(n, *[size[a] for a in self.order], t, h, w)
        pos = {a: 1 + i for i, a in enumerate(self.order)}
        y = y.permute(0, pos["c"], 5, pos["t"], 6, pos["i"], 7, pos["j"])
        y = y.reshape(n, self.c, t * self.st, h * self.s, w * self.s)
        return y[:, :, self.st - 1:] if self.crop else y


def _exact(model, x, what, bound=None):
    """The rewrite matches the model on scaled inputs (``bound``: exact for pure data movement; else
    the model's own float32 error, as the phase convs round like smaller convs)."""
    ep = export(model.eval(), x)
    assert pixel_shuffle_3d_to_4d.check(ep) is None, what
    out = pixel_shuffle_3d_to_4d.rewrite(ep)
    assert _fx.max_rank(out) <= 5, what
    with torch.no_grad():
        for inp in (x, x * 100, -x):
            assert_close(run_source_layout(out, inp) if x.dim() == 5 else out.module()(inp), model(inp),
                         bound or fp32_bound(model, inp), what)
    return ep, out


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("conv,act,crop", [("3d", False, False), ("3d", True, True), ("2d", False, True),
                                           ("2d", True, False)])
def test_every_factor_order_and_producer(order, conv, act, crop):
    """Each ordering is one channel permutation; the convs (and the channel-wise ops after them) are
    split into temporal phases, so no 1×1 gather conv is added and nothing stays above rank 5."""
    torch.manual_seed(len(order) + ORDERS.index(order))
    model = OrderedShuffle(order, conv, act=act, crop=crop)
    x = latent((1, 4, 3, 4, 5)) if conv == "3d" else torch.randn(1, 4, 4, 5)
    ep, out = _exact(model, x, f"{order}/{conv}/act={act}/crop={crop}")
    (sh,), _ = pixel_shuffle_3d_to_4d.find_shuffles(ep.module())
    assert (sh.st, sh.s) == (2, 2) and sh.region is not None, sh.select_why
    convs = "aten.conv3d.default" if conv == "3d" else "aten.conv2d.default"
    assert ops(out)[convs] == ops(ep)[convs] * 2  # each conv split in its two phases, no gather conv
    assert ops(out)[PS] == 2


@pytest.mark.parametrize("st,s", [(3, 1), (1, 3), (2, 3)])
def test_other_factors_from_a_2d_conv(st, s):
    torch.manual_seed(st * 7 + s)
    _exact(OrderedShuffle("tijc", "2d", st=st, s=s, c=1), torch.randn(1, 4, 3, 4), f"st={st} s={s}")


class InputShuffle(torch.nn.Module):
    """The 3-D pixel shuffle of a graph input (nothing to split): phases by slices or 1×1×1 convs."""

    def __init__(self, order):
        super().__init__()
        self.order = order

    def forward(self, y):
        n, k, t, h, w = y.shape
        if self.order == "tcij":  # phases are contiguous channel blocks: slices
            y = y.reshape(n, 2, 2, 2, 2, t, h, w).permute(0, 2, 5, 1, 6, 3, 7, 4)
        else:  # ctij: a phase's channels are interleaved: one-hot 1×1×1 convs
            y = y.reshape(n, 2, 2, 2, 2, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return y.reshape(n, 2, t * 2, h * 2, w * 2)


@pytest.mark.parametrize("order,selector", [("tcij", "aten.slice.Tensor"), ("ctij", "aten.conv3d.default")])
def test_shuffle_of_a_graph_input(order, selector):
    x = latent((1, 16, 2, 3, 3))
    ep, out = _exact(InputShuffle(order), x, order, Bound.exact("slices, or one-hot convs of finite values"))
    (sh,), _ = pixel_shuffle_3d_to_4d.find_shuffles(ep.module())
    assert sh.region is None and "graph input" in sh.select_why
    assert ops(out)[selector] >= 2
    folded = frames_to_batch.rewrite(out)
    assert _fx.max_rank(folded) <= 4
    with torch.no_grad():
        assert_close(run_source_layout(folded, x), InputShuffle(order)(x), Bound.exact(), order)
