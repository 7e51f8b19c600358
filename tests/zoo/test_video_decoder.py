"""Video VAE decoders: shapes, causality, the two 3-D pixel shuffle forms, seeded init, cards, export.

Most tests decode a small latent (8×8 → 64×64) so that they stay fast; the default example
(1, 16, 2, 32, 32) is decoded once per session by the shared ``built_model`` fixture and timed
once here (printed, never asserted). Paper-scale configs are built on the meta device: their
parameters and MACs are counted without allocating or computing anything.
"""

from __future__ import annotations

import time

import pytest
import torch
from numeric import Bound, assert_close, fp32_bound

from edgekit import zoo
from edgekit.errors import ZooError
from edgekit.zoo import video_decoder as vd
from edgekit.zoo.registry import count_macs, count_params

NAMES = ("video_decoder_ref", "video_decoder_turbo")
FACTORIES = {"video_decoder_ref": vd.video_decoder_ref, "video_decoder_turbo": vd.video_decoder_turbo}

pytestmark = pytest.mark.numeric


def latent(t: int, hw: int = 8, seed: int = 0, n: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, vd.LATENT_CHANNELS, t, hw, hw, generator=g)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {name: zoo.create(name) for name in NAMES}


def first_frame_of(latent_frame: int, f: int) -> int:
    """The first output frame that latent frame ``latent_frame`` feeds (0 → 0, t → 1 + f(t−1))."""
    return 0 if latent_frame == 0 else 1 + f * (latent_frame - 1)


# ------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("t", [1, 2, 3])
def test_both_decoders_give_the_same_causal_shape(models, t):
    z = latent(t)
    shapes = {}
    for name, m in models.items():
        with torch.no_grad():
            y = m(z)
        assert m.temporal_factor == 2, f"{name}: tiny configs upsample time once"
        assert tuple(y.shape) == vd.output_shape(tuple(z.shape), 2) == (1, 3, 1 + 2 * (t - 1), 64, 64), (
            f"{name}: {tuple(y.shape)} for latent {tuple(z.shape)}")
        assert torch.isfinite(y).all(), f"{name}: non-finite output"
        shapes[name] = tuple(y.shape)
    assert len(set(shapes.values())) == 1, shapes


def test_batch_of_two_decodes_each_latent_alone(models):
    z = latent(2, n=2)
    for name, m in models.items():
        with torch.no_grad():
            both, first = m(z), m(z[:1])
        # batch 2 takes oneDNN's conv3d, batch 1 PyTorch's slow_conv3d: same maths, other rounding,
        # each within its own measured float32 error (the looser of the two runs' bounds)
        bound = Bound.largest([fp32_bound(m, z[:1]), fp32_bound(m, z)])
        assert_close(both[:1], first, bound, f"{name}: batch of two vs alone")


@pytest.mark.parametrize("t", [1, 3])
def test_paper_configs_build_and_shape_on_meta(t):
    z = torch.empty(1, vd.LATENT_CHANNELS, t, 8, 8, device="meta")
    for name, factory in FACTORIES.items():
        with torch.device("meta"):
            m = factory(config="paper")
        assert m.temporal_factor == 4
        y = m(z)
        assert tuple(y.shape) == (1, 3, 1 + 4 * (t - 1), 64, 64), f"{name} paper: {tuple(y.shape)}"


# ----------------------------------------------------------------------------------- causality


def assert_causal(m: torch.nn.Module, name: str, t_total: int = 3) -> None:
    z = latent(t_total)
    f = m.temporal_factor
    noise = fp32_bound(m, z).atol  # a change above the model's float32 round-off is a real dependence
    with torch.no_grad():
        base = m(z)
        for t in range(1, t_total):
            z2 = z.clone()
            z2[:, :, t] += torch.randn(z2[:, :, t].shape, generator=torch.Generator().manual_seed(t))
            out = m(z2)
            cut = first_frame_of(t, f)
            for j in range(cut):
                if not torch.equal(out[:, :, j], base[:, :, j]):
                    worst = (out[:, :, j] - base[:, :, j]).abs().max().item()
                    raise AssertionError(f"{name}: output frame {j} changed (max |Δ| {worst:.3g}) when latent "
                                         f"frame {t} changed; frames < {cut} must not depend on it")
            changed = (out[:, :, cut] - base[:, :, cut]).abs().max().item()
            assert changed > noise, (f"{name}: frame {cut} ignores latent frame {t} (max |Δ| {changed:.3g}, "
                                     f"float32 round-off {noise:.3g})")


@pytest.mark.parametrize("name", NAMES)
def test_output_frames_do_not_depend_on_later_latent_frames(models, name):
    assert_causal(models[name], name)


def test_permute8d_turbo_is_causal_too():
    assert_causal(vd.video_decoder_turbo(upsample="permute8d").eval(), "video_decoder_turbo[permute8d]")


def test_clip_groupnorm_is_not_causal():
    """The originals' whole-clip GroupNorm leaks later frames into earlier ones (why 'frame' is default)."""
    m = vd.video_decoder_ref(norm="clip").eval()
    z = latent(3)
    z2 = z.clone()
    z2[:, :, 2] += 3.0
    with torch.no_grad():
        d = (m(z2)[:, :, 0] - m(z)[:, :, 0]).abs().max().item()
    noise = fp32_bound(m, z).atol  # a change above the model's float32 round-off is a real dependence
    assert d > noise, (f"whole-clip GroupNorm should make frame 0 depend on latent frame 2 (max |Δ| {d:.3g}, "
                       f"float32 round-off {noise:.3g})")
    assert any(isinstance(mod, torch.nn.GroupNorm) and not isinstance(mod, vd.FrameGroupNorm)
               for mod in m.modules())


def test_causal_conv_pads_with_the_first_frame():
    conv = vd.CausalConv3d(1, 1, (3, 1, 1), bias=False)
    with torch.no_grad():
        conv.conv.weight.copy_(torch.tensor([1.0, 10.0, 100.0]).view(1, 1, 3, 1, 1))
    x = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1, 1)
    y = conv(x).flatten().tolist()
    # frame 0 sees (x0, x0, x0), frame 1 (x0, x0, x1), frame 2 (x0, x1, x2)
    assert y == [111.0, 1 + 10 + 200.0, 1 + 20 + 300.0]


# --------------------------------------------------------------------------- 3-D pixel shuffle


def shuffle_by_definition(x: torch.Tensor, st: int, s: int) -> torch.Tensor:
    """out[n, c, t·st+τ, h·s+i, w·s+j] = x[n, ((c·s+i)·s+j)·st+τ, t, h, w], one element at a time."""
    n, cin, t, h, w = x.shape
    c_out = cin // (st * s * s)
    out = torch.empty(n, c_out, t * st, h * s, w * s)
    for c in range(c_out):
        for i in range(s):
            for j in range(s):
                for tau in range(st):
                    out[:, c, tau::st, i::s, j::s] = x[:, ((c * s + i) * s + j) * st + tau]
    return out


@pytest.mark.parametrize("st,s", [(2, 2), (1, 2), (2, 1), (3, 2), (2, 3)])
def test_decoupled_and_permute8d_shuffles_are_identical(st, s):
    x = torch.randn(2, 3 * st * s * s, 4, 5, 6, generator=torch.Generator().manual_seed(st * 10 + s))
    a = vd.decoupled_pixel_shuffle_3d(x, st, s)
    b = vd.pixel_shuffle_3d(x, st, s)
    want = shuffle_by_definition(x, st, s)
    assert tuple(a.shape) == (2, 3, 4 * st, 5 * s, 6 * s)
    assert torch.equal(a, want), "decoupled shuffle does not follow the channel convention"
    assert torch.equal(b, want), "rank-8 shuffle does not follow the channel convention"


def test_turbo_upsample_forms_give_the_same_model():
    a = vd.video_decoder_turbo(upsample="decoupled").eval()
    b = vd.video_decoder_turbo(upsample="permute8d").eval()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    z = latent(3)
    with torch.no_grad():
        # the shuffles are data movement, but the convs after them may see other strides and
        # take other kernels: within the model's measured float32 bound
        assert_close(a(z), b(z), fp32_bound(a, z), "decoupled vs rank-8 shuffle model")


def test_upsampler_drops_the_first_st_minus_one_frames():
    up = vd.PixelShuffleUpsample3d(2, st=2, s=2)
    y = up(torch.randn(1, 2, 3, 4, 4))
    assert tuple(y.shape) == (1, 2, 1 + 2 * 2, 8, 8)


# ---------------------------------------------------------------------------------- init, cards


@pytest.mark.parametrize("name", NAMES)
def test_init_is_deterministic_given_the_seed_and_leaves_global_rng_alone(name):
    factory = FACTORIES[name]
    torch.manual_seed(123)
    before = torch.rand(3)
    a, b, c = factory(), factory(), factory(seed=1)
    after_build = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(before, torch.rand(3)) and torch.equal(after_build, torch.rand(3)), (
        f"{name}: building the model consumed the global RNG")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), f"{name}: seed=0 twice gave different weights"
    assert any(not torch.equal(sa[k], sc[k]) for k in sa), f"{name}: seed=1 gave the seed=0 weights"


@pytest.mark.parametrize("name", NAMES)
def test_card_numbers_are_measured(name, built_model):
    card = zoo.card(name)
    b = built_model(name)
    assert card.input_shape == card.macs_input == (1, 16, 2, 32, 32) and card.layout == "NCTHW"
    assert count_params(b.model) == card.params  # card.macs: tests/zoo/test_registry.py measures it
    assert tuple(b.output.shape) == (1, 3, 3, 256, 256)
    paper = card.metrics["paper_config"]
    with torch.device("meta"):
        m = FACTORIES[name](config="paper")
        z = torch.empty(paper["macs_at"])
        assert count_params(m) == paper["params"], f"{name}: paper params {count_params(m):,}"
        assert count_macs(m, z) == paper["macs"], f"{name}: paper MACs {count_macs(m, z):,}"


def test_paper_configs_match_the_published_parameter_counts():
    """HunyuanVideo's decoder has 146.1M parameters and Turbo-VAED-Hunyuan's 40.7M (Turbo-VAED table)."""
    ref = zoo.card("video_decoder_ref").metrics["paper_config"]["params"]
    turbo = zoo.card("video_decoder_turbo").metrics["paper_config"]["params"]
    # the table gives millions to one decimal: a count that rounds to it is within 0.05 M
    assert abs(ref - 146.1e6) <= 0.05e6, ref
    assert abs(turbo - 40.7e6) <= 0.05e6, turbo


def test_turbo_has_the_mobile_ops_and_ref_the_mainstream_ones(models):
    ref, turbo = models.values()
    kinds = lambda m: {type(x).__name__ for x in m.modules()}  # noqa: E731
    assert {"FrameGroupNorm", "FrameSelfAttention", "NearestUpsample3d", "CausalConv3d"} <= kinds(ref)
    assert {"CausalSeparableConv3d", "PixelShuffleUpsample3d", "ChannelRMSNorm"} <= kinds(turbo)
    assert not {"NearestUpsample3d", "FrameSelfAttention", "GroupNorm", "FrameGroupNorm"} & kinds(turbo)
    depthwise = [x for x in turbo.modules() if isinstance(x, torch.nn.Conv3d) and x.groups > 1]
    assert depthwise and all(x.groups == x.in_channels and x.kernel_size == (5, 5, 5) for x in depthwise)


# ---------------------------------------------------------------------------------- user errors


def test_bad_configs_and_latents_are_zoo_errors(models):
    for call, words in [
        (lambda: zoo.create("video_decoder_ref", config="huge"), "tiny"),
        (lambda: zoo.create("video_decoder_ref", norm="batch"), "norm"),
        (lambda: zoo.create("video_decoder_turbo", upsample="bilinear"), "permute8d"),
        (lambda: models["video_decoder_turbo"](torch.randn(1, 4, 2, 8, 8)), "NCTHW"),
        (lambda: models["video_decoder_ref"](torch.randn(1, 16, 8, 8)), "NCTHW"),
    ]:
        with pytest.raises(ZooError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and words in msg, msg


# -------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_captures_and_matches_eager(models, name):
    m = models[name]
    z = latent(2)
    ep = torch.export.export(m, (z,), strict=False)
    with torch.no_grad():
        want = m(z)
        got = ep.module()(z)
    assert_close(got, want, fp32_bound(m, z), f"{name}: exported vs eager")
    ops = {str(node.target) for node in ep.graph.nodes if node.op == "call_function"}
    if name == "video_decoder_turbo":
        assert any("pixel_shuffle" in o for o in ops), sorted(ops)
    else:
        assert any("upsample_nearest3d" in o for o in ops), sorted(ops)


# ------------------------------------------------------------------------------------- runtime


def test_default_decode_time_is_printed(built_model):
    """Eager CPU time of both defaults on the card's example latent (printed; no timing assert).
    Wall time on a shared machine says little, so the process CPU time is printed next to it."""
    lines = []
    for name in NAMES:
        b = built_model(name)  # built and run once already: this run is warm
        with torch.no_grad():
            wall, cpu = time.perf_counter(), time.process_time()
            y = b.model(*b.inputs)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert tuple(y.shape) == (1, 3, 3, 256, 256)
        lines.append(f"{name}: {wall * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU ({torch.get_num_threads()} threads)")
    print("\n" + "\n".join(lines))
