"""frames_to_batch (with the other video passes in pipeline order) on both zoo video decoders and
on unseen user models: rank ≤ 4, no Conv3d/3-D resize/gather, numerics equal the source."""

from functools import lru_cache

import pytest
import torch

from edgekit import zoo
from edgekit.converters.passes import _fx, frames_to_batch
from _video_models import (Plain2d, UserVideoModel, export, forbidden_ops, latent, ops,
                           run_source_layout, video_pipeline)
from numeric import assert_matches

pytestmark = pytest.mark.numeric

DECODERS = {
    "ref": ("video_decoder_ref", {}),
    "ref-clip": ("video_decoder_ref", {"norm": "clip"}),
    "turbo": ("video_decoder_turbo", {}),
    "turbo-permute8d": ("video_decoder_turbo", {"upsample": "permute8d"}),
}
Z = (1, 16, 2, 4, 4)


@lru_cache(maxsize=None)
def rewritten(key: str):
    name, kw = DECODERS[key]
    model = zoo.create(name, **kw).eval()
    ep = export(model, latent(Z))
    out, applied, not_applied = video_pipeline(ep)
    return model, ep, out, applied, not_applied


@pytest.mark.parametrize("key", list(DECODERS))
def test_decoder_rank4_no_conv3d_no_gather(key):
    model, ep, out, applied, not_applied = rewritten(key)
    before, after = ops(ep), ops(out)
    assert before.get("aten.conv3d.default", 0) > 0 and _fx.max_rank(ep) >= 5
    assert "frames_to_batch" in applied, not_applied
    assert _fx.max_rank(out) <= 4, f"rank {_fx.max_rank(out)} left"
    assert forbidden_ops(out) == [], forbidden_ops(out)
    assert after["aten.conv2d.default"] >= before["aten.conv3d.default"]
    # transposes left: per-frame attention's token views only (ref), none in Turbo
    perms = after.get("aten.permute.default", 0) + after.get("aten.transpose.int", 0)
    assert perms == (2 if key.startswith("ref") else 0), after
    if key.startswith("turbo"):
        assert after["aten.pixel_shuffle.default"] == 4  # (st, s) = (2, 2): one per temporal phase; (1, 2) twice


@pytest.mark.parametrize("key", list(DECODERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_decoder_numerics(key, seed):
    model, _, out, _, _ = rewritten(key)
    z = latent(Z, seed=seed + 10)
    with torch.no_grad():
        assert_matches(run_source_layout(out, z), model, z, what=key)


def test_decoder_edge_inputs():
    model, _, out, _, _ = rewritten("turbo")
    for name, z in [("zeros", torch.zeros(Z)), ("large", latent(Z) * 30), ("first frame only", _first(latent(Z)))]:
        with torch.no_grad():
            assert_matches(run_source_layout(out, z), model, z, what=name)


def _first(z):
    z = z.clone()
    z[:, :, 1:] = 0
    return z


def test_layouts_recorded():
    _, _, out, _, _ = rewritten("ref")
    meta = out.graph_module.meta[_fx.LAYOUT_META]
    assert meta == {"inputs": {"z": {"source": "NCTHW", "artifact": "TCHW"}},
                    "outputs": {"0": {"source": "NCTHW", "artifact": "TCHW"}}}
    (inp,) = [n for n in out.graph_module.graph.nodes if n.op == "placeholder" and n.name == "z"]
    assert tuple(inp.meta["val"].shape) == (Z[2], Z[1], Z[3], Z[4])


def test_layout_map_of_the_runtime_translates_the_same_way():
    """The runtime's LayoutMap (bundle_session) gives the same (T, C, H, W) array."""
    from edgekit.runtimes.bundle_session import LayoutMap

    _, _, out, _, _ = rewritten("ref")
    z = latent(Z)
    lay = out.graph_module.meta[_fx.LAYOUT_META]["inputs"]["z"]
    m = LayoutMap(lay["source"], lay["artifact"])
    assert m.shape(Z) == (Z[2], Z[1], Z[3], Z[4])


def test_unseen_user_model():
    model = UserVideoModel().eval()
    x = latent((1, 4, 3, 4, 4))
    ep = export(model, x)
    out, applied, not_applied = video_pipeline(ep)
    assert applied[:3] == ["groupnorm_decompose", "pixel_shuffle_3d_to_4d", "frames_to_batch"], not_applied
    assert _fx.max_rank(out) <= 4 and forbidden_ops(out) == []
    with torch.no_grad():
        assert_matches(run_source_layout(out, x), model, x)


def test_negative_2d_model_and_batch2():
    ep = export(Plain2d(), torch.randn(1, 3, 8, 8))
    assert frames_to_batch.check(ep) == "no 5-D tensor in the graph"
    out, applied, not_applied = video_pipeline(ep)
    assert applied == [] and out is ep and "frames_to_batch" in not_applied
    ep2 = export(torch.nn.Conv3d(4, 4, 1), latent((2, 4, 2, 4, 4)))
    assert "batch 2" in frames_to_batch.check(ep2)


def test_input_named_input_keeps_its_name():
    """``program.module()`` renames an input called ``input`` to ``input_1``; the rewritten program
    keeps the exported name (the converter feeds inputs by it)."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv3d(4, 4, 3, padding=1)

        def forward(self, input):  # noqa: A002 - the name under test
            return self.c(input)

    out = frames_to_batch.rewrite(export(M(), latent((1, 4, 2, 4, 4))))
    assert out.graph_signature.user_inputs == ["input"] or tuple(out.graph_signature.user_inputs) == ("input",)
    assert list(out.graph_module.meta[_fx.LAYOUT_META]["inputs"]) == ["input"]
