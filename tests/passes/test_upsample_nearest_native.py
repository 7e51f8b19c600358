"""upsample_nearest_native: 3-D nearest (temporal repeat + 2-D nearest) on frames in batch."""

import pytest
import torch
import torch.nn.functional as F

from edgekit.converters.passes import _fx, frames_to_batch, upsample_nearest_native
from _video_models import Plain2d, Upsample3d, export, latent, ops, run_source_layout
from numeric import assert_matches

pytestmark = pytest.mark.numeric

U3, U2 = "aten.upsample_nearest3d.vec", "aten.upsample_nearest2d.vec"


class Up(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.f, mode="nearest") * 2.0


@pytest.mark.parametrize("factors, n_resize", [((1, 2, 2), 1), ((2, 2, 2), 1), ((3, 1, 1), 0), ((2, 3, 2), 1)])
@pytest.mark.parametrize("mode", ["standalone", "frames_to_batch"])
def test_lowered_and_exact(factors, n_resize, mode):
    model = Up(tuple(float(f) for f in factors)).eval()
    x = latent((1, 3, 3, 4, 5))
    ep = export(model, x)
    assert ops(ep)[U3] == 1
    if mode == "standalone":
        assert upsample_nearest_native.check(ep) is None
        out = upsample_nearest_native.rewrite(ep)
    else:
        out = frames_to_batch.rewrite(ep)
        assert _fx.max_rank(out) <= 4
    after = ops(out)
    assert U3 not in after and after.get(U2, 0) == n_resize, after
    assert not any(k for k in after if "index" in k or "gather" in k or "expand" in k or "repeat" in k)
    with torch.no_grad():
        got = run_source_layout(out, x)
        assert torch.equal(got, model(x)), "nearest upsampling must be bit-exact"


def test_in_a_causal_model():
    model = Upsample3d(4, (2, 2, 2)).eval()
    x = latent((1, 4, 2, 4, 4))
    out = frames_to_batch.rewrite(export(model, x))
    assert _fx.max_rank(out) <= 4
    with torch.no_grad():
        assert_matches(run_source_layout(out, x), model, x)


def test_negative():
    assert upsample_nearest_native.check(export(Plain2d(), torch.randn(1, 3, 8, 8))) == \
        "no upsample_nearest3d in the graph"
    ep = export(Up((1.0, 1.5, 1.5)), latent((1, 3, 2, 4, 4)))
    reason = upsample_nearest_native.check(ep)
    assert "non-integer nearest factor 6/4" in reason
    assert U3 in ops(frames_to_batch.rewrite(ep))  # left for the exporter, not silently changed
