"""attention_per_frame: the transposed key projection of per-frame attention → a 1×1 Conv2d on
the frames (one transpose fewer per attention block)."""

import torch

from edgekit.converters.passes import _fx, attention_per_frame, frames_to_batch
from edgekit.zoo.video_decoder import FrameSelfAttention
from _video_models import PerFrameAttention, Plain2d, assert_close, export, latent, ops, run_source_layout


def _perms(program):
    o = ops(program)
    return o.get("aten.permute.default", 0) + o.get("aten.transpose.int", 0)


def test_key_projection_channels_first():
    torch.manual_seed(0)
    model = FrameSelfAttention(8).eval()
    x = latent((1, 8, 3, 4, 5))
    folded = frames_to_batch.rewrite(export(model, x))
    assert attention_per_frame.check(folded) is None
    out = attention_per_frame.rewrite(folded)
    before, after = ops(folded), ops(out)
    assert _perms(out) == _perms(folded) - 1 == 2, after
    assert after["aten.linear.default"] == before["aten.linear.default"] - 1
    assert after.get("aten.conv2d.default", 0) == before.get("aten.conv2d.default", 0) + 1
    assert _fx.max_rank(out) <= 4
    with torch.no_grad():
        for xi in (x, x * 10, torch.zeros_like(x)):
            assert_close(run_source_layout(out, xi), model(xi))


def test_applies_before_frames_to_batch_when_tokens_come_from_frames():
    """FrameGroupNorm's output is already (T, C, H, W): the pass needs no folding to apply."""
    model = FrameSelfAttention(8).eval()
    x = latent((1, 8, 3, 4, 4))
    ep = export(model, x)
    assert attention_per_frame.check(ep) is None
    out = attention_per_frame.rewrite(ep)
    assert _perms(out) < _perms(ep) and ops(out)["aten.linear.default"] == ops(ep)["aten.linear.default"] - 1
    with torch.no_grad():
        assert_close(run_source_layout(out, x), model(x))


def test_negative():
    # a fused qkv projection split with chunk: the key is not a linear of its own
    folded = frames_to_batch.rewrite(export(PerFrameAttention(8), latent((1, 8, 2, 4, 4))))
    assert attention_per_frame.check(folded) == attention_per_frame.NO_MATCH
    # before frames_to_batch, tokens read straight from the (N, C, T, H, W) clip are not a transpose
    # of channels-first frames
    model = FrameSelfAttention(8).eval()
    model.norm = torch.nn.Identity()
    ep = export(model, latent((1, 8, 2, 4, 4)))
    assert attention_per_frame.check(ep) == attention_per_frame.NO_MATCH + "; run frames_to_batch first"
    assert attention_per_frame.check(export(Plain2d(), torch.randn(1, 3, 8, 8))) == attention_per_frame.NO_MATCH
