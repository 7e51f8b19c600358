"""conv3d_to_conv2d: dense, grouped, depthwise, causal and symmetric temporal padding, temporal
stride and dilation → Conv2d on frames in batch (standalone and inside frames_to_batch)."""

import pytest
import torch

from edgekit.converters.passes import _fx, conv3d_to_conv2d, frames_to_batch
from _video_models import (CausalGroupedConv3d, Plain2d, SymmetricConv3d, export, latent, ops,
                           run_source_layout)
from numeric import assert_matches

pytestmark = pytest.mark.numeric

C3, C2 = "aten.conv3d.default", "aten.conv2d.default"

CASES = {
    # name: (model, input shape, conv2d count: 1 for dense (one conv over concatenated slices), k_t if grouped)
    "dense-causal": (lambda: CausalGroupedConv3d(4, 6, groups=1), (1, 4, 3, 6, 6), 1),
    "grouped2-causal": (lambda: CausalGroupedConv3d(4, 6, groups=2), (1, 4, 3, 6, 6), 3),
    "depthwise-k5": (lambda: CausalGroupedConv3d(4, 4, groups=4, k=(5, 5, 5)), (1, 4, 3, 7, 7), 5),
    "symmetric": (lambda: SymmetricConv3d(4, 5), (1, 4, 4, 6, 6), 1),
    "symmetric-grouped": (lambda: SymmetricConv3d(4, 6, groups=2), (1, 4, 4, 6, 6), 3),
    "stride2-dilation2": (lambda: SymmetricConv3d(4, 5, stride=2, dilation=2), (1, 4, 7, 6, 6), 1),
    "pointwise": (lambda: torch.nn.Conv3d(4, 8, 1), (1, 4, 3, 5, 5), 1),
    "k1x3x3": (lambda: torch.nn.Conv3d(4, 8, (1, 3, 3), padding=(0, 1, 1)), (1, 4, 3, 5, 5), 1),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["standalone", "frames_to_batch"])
def test_lowered_and_exact(name, mode):
    make, shape, n_conv2d = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    x = latent(shape)
    ep = export(model, x)
    assert ops(ep)[C3] == 1
    if mode == "standalone":
        assert conv3d_to_conv2d.check(ep) is None
        out = conv3d_to_conv2d.rewrite(ep)
    else:
        out = frames_to_batch.rewrite(ep)
        assert _fx.max_rank(out) <= 4
    after = ops(out)
    assert C3 not in after and after[C2] == n_conv2d, after
    assert not any("index" in k or "gather" in k for k in after)
    with torch.no_grad():
        for what, xi in [("random", x), ("zeros", torch.zeros(shape)), ("x1e3", x * 1e3),
                         ("one hot frame", _one_hot(shape))]:
            assert_matches(run_source_layout(out, xi), model, xi, what=f"{name}/{what}")


def _one_hot(shape):
    x = torch.zeros(shape)
    x[0, :, shape[2] // 2, shape[3] // 2, shape[4] // 2] = 1.0
    return x


def test_standalone_keeps_5d_io_and_input_untouched():
    model = CausalGroupedConv3d(4, 6, groups=2).eval()
    ep = export(model, latent((1, 4, 3, 6, 6)))
    before = ops(ep)
    out = conv3d_to_conv2d.rewrite(ep)
    assert ops(ep) == before  # the input program is not mutated
    assert _fx.LAYOUT_META not in out.graph_module.meta  # I/O stays NCTHW
    assert conv3d_to_conv2d.check(out) == "no Conv3d in the graph"


def test_negative():
    assert conv3d_to_conv2d.check(export(Plain2d(), torch.randn(1, 3, 8, 8))) == "no Conv3d in the graph"
    reason = conv3d_to_conv2d.check(export(torch.nn.Conv3d(4, 4, 3), latent((2, 4, 3, 5, 5))))
    assert "batch 2" in reason
