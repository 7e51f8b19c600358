"""Layout-neutral forms the video rewrites emit, so litert-torch's NHWC lowering needs no TRANSPOSE:
token views of frames as permute-then-reshape (``_fx.gather_as``) and the temporal nearest repeat
as a concat of frame slices (``upsample_nearest_native.lower_frames``). Each test converts the
same program both ways, counts TRANSPOSEs and checks the TFLite against the source."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import _fx, frames_to_batch, nhwc_boundary, upsample_nearest_native
from _models2d import tflite_ops
from _video_models import PerFrameAttention, export, latent
from numeric import Bound, assert_close, assert_matches, fp32_bound

pytestmark = pytest.mark.numeric

litert_torch = pytest.importorskip("litert_torch")


def _tflite(program, x_thwc, path):
    module = program.module()
    module.training = False
    edge = litert_torch.convert(module, (x_thwc,))
    edge.export(str(path))
    return edge, tflite_ops(path)


def _thwc(x5):
    return x5[0].permute(1, 2, 3, 0).contiguous()


class AttentionBlock(nn.Module):
    """1×1×1 Conv3d → per-frame attention (written token-major with permute/reshape) → Conv3d."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.pre, self.attn, self.post = nn.Conv3d(c, c, 1), PerFrameAttention(c), nn.Conv3d(c, c, 1)

    def forward(self, x):
        y = self.attn(self.pre(x))
        return y + self.post(y)


@pytest.mark.parametrize("base,view", [((2, 16, 8, 8), lambda a: a.transpose(0, 2, 3, 1).reshape(2, 64, 16)),
                                       ((2, 64, 16), lambda a: a.reshape(2, 8, 8, 16).transpose(0, 3, 1, 2)),
                                       ((2, 16, 8, 8), lambda a: a.reshape(2, 16, 64).transpose(0, 2, 1)),
                                       ((6, 10), lambda a: a.reshape(2, 3, 2, 5).transpose(1, 3, 0, 2).reshape(15, 4)),
                                       ((1, 4, 3, 6, 6), lambda a: a[0].transpose(1, 0, 2, 3))])
def test_gather_as_is_exact(base, view):
    x = torch.randn(base)
    idx = np.ascontiguousarray(view(np.arange(x.numel()).reshape(base)))
    got = _fx.gather_as(x, idx)
    assert torch.equal(got, x.reshape(-1)[torch.from_numpy(idx)])


def test_token_view_permutes_the_frames_first():
    """(T, C, H, W) → (T, H·W, C) tokens: permute the 4-D frames, then reshape (not the reverse)."""
    x = torch.randn(2, 16, 8, 8)
    idx = np.ascontiguousarray(np.arange(x.numel()).reshape(2, 16, 8, 8).transpose(0, 2, 3, 1).reshape(2, 64, 16))
    from torch.fx.experimental.proxy_tensor import make_fx

    gm = make_fx(lambda t: _fx.gather_as(t, idx))(x)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    names = [t._opname for t in targets]
    assert names[0] == "permute" and names.count("permute") == 1, names  # make_fx spells reshape as view


def test_attention_tokens_without_transpose(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = AttentionBlock().eval()
    x = latent((1, 8, 2, 4, 4))
    with torch.no_grad():
        want = _thwc(model(x))
    counts = {}
    for label in ("before", "after"):
        if label == "before":  # the reshape-then-permute views gather_as emitted until now
            monkeypatch.setattr(_fx, "_split_at_dims", lambda *a: None)
        else:
            monkeypatch.undo()
        prog = nhwc_boundary.rewrite(frames_to_batch.rewrite(export(model, x)))
        edge, names = _tflite(prog, _thwc(x), tmp_path / f"{label}.tflite")
        counts[label] = names.count("TRANSPOSE")
        with torch.no_grad():
            assert_close(np.asarray(edge(_thwc(x))), want, fp32_bound(model, x), label)
    assert counts["before"] >= 2 and counts["after"] == 0, counts


class TemporalRepeatOld(nn.Module):
    """The temporal repeat lower_frames emitted before: channel concat, then reshape to frames."""

    def forward(self, x4):
        t, c, h, w = x4.shape
        r = torch.cat([x4] * 2, dim=1).reshape(2 * t, c, h, w)
        return nn.functional.interpolate(r, scale_factor=2.0, mode="nearest")


class TemporalRepeatNew(nn.Module):
    def forward(self, x4):
        return upsample_nearest_native.lower_frames(x4, 2, 2, 2)


@pytest.mark.parametrize("t", [1, 3])
def test_temporal_repeat_without_transpose(tmp_path, t):
    torch.manual_seed(t)
    conv_in, conv_out = nn.Conv2d(4, 4, 3, padding=1).eval(), nn.Conv2d(4, 4, 3, padding=1).eval()
    x = torch.randn(t, 4, 6, 6)
    counts, outs = {}, {}
    for label, up in (("before", TemporalRepeatOld()), ("after", TemporalRepeatNew())):
        model = nn.Sequential(conv_in, up, conv_out).eval()
        prog = nhwc_boundary.rewrite(export(model, x))
        xn = x.permute(0, 2, 3, 1).contiguous()
        edge, names = _tflite(prog, xn, tmp_path / f"{label}{t}.tflite")
        counts[label] = names.count("TRANSPOSE")
        outs[label] = torch.from_numpy(np.asarray(edge(xn))).permute(0, 3, 1, 2)
        with torch.no_grad():
            assert_matches(outs[label], model, x, what=label)
    with torch.no_grad():  # nearest ×(2, 2, 2) by definition: frame t' reads ⌊t'/2⌋
        ref = nn.functional.interpolate(conv_in(x).permute(1, 0, 2, 3)[None], scale_factor=2.0, mode="nearest")
        assert_close(TemporalRepeatNew()(conv_in(x)), ref[0].permute(1, 0, 2, 3), Bound.exact(), "definition")
    assert counts["after"] == 0 and (t == 1 or counts["before"] >= 2), counts


@pytest.mark.slow
@pytest.mark.parametrize("name", ["video_decoder_ref", "video_decoder_turbo"])
def test_zoo_decoders_generic_npu_have_no_transpose(tmp_path, name):
    """The whole generic-npu pipeline on both zoo decoders: no TRANSPOSE left in the TFLite (was 13
    in ref and 5 in turbo), and the TFLite matches the source."""
    from edgekit import zoo
    from edgekit.converters.passes import _custom_ops, run_pipeline

    model = zoo.create(name).eval()
    z = latent((1, 16, 2, 8, 8), seed=4)
    prog, _ = run_pipeline(export(model, z), "generic-npu", fmt="tflite")
    lay = next(iter(prog.graph_module.meta[_fx.LAYOUT_META]["inputs"].values()))
    assert (lay["source"], lay["artifact"]) == ("NCTHW", "THWC"), lay
    _custom_ops.register_litert()
    edge, names = _tflite(prog, _thwc(z), tmp_path / f"{name}.tflite")
    assert names.count("TRANSPOSE") == 0, sorted(set(names))
    with torch.no_grad():
        assert_close(np.asarray(edge(_thwc(z))), _thwc(model(z)), fp32_bound(model, z), name)
