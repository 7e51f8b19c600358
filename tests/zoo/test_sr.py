"""Super-resolution zoo: shapes, structure, SESR collapse, shipped weights, metrics, and the
trained nets beating bicubic on photos they never saw."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from numeric import Bound, assert_close, fp32_bound

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")
F = torch.nn.functional

from edgekit import zoo  # noqa: E402
from edgekit.errors import ZooError  # noqa: E402
from edgekit.zoo import sr, train_sr  # noqa: E402
from edgekit.zoo.registry import WEIGHTS_DIR, count_macs, count_params  # noqa: E402

SR_MODELS = ["espcn_x2", "quicksrnet_small_x2", "quicksrnet_medium_x2", "quicksrnet_large_x2", "sesr_m5_x2"]
TRAINED = [n for n in SR_MODELS if zoo.card(n).weights is not None]
REQUIRED_TRAINED = {"espcn_x2", "quicksrnet_small_x2", "sesr_m5_x2"}

pytestmark = pytest.mark.numeric

U64 = 2.0 ** -53
"""Unit round-off of float64 (the metrics below, and the float64 collapse checks)."""


def in_float64(bound: Bound) -> Bound:
    """``bound`` (measured on float32 runs) for the same computations run in float64: the same
    rounding steps, each 2**-29 times smaller."""
    return bound.scaled(2.0 ** -29, "the same computations in float64: unit round-off 2**-53, not 2**-24")


def nearest(x: torch.Tensor, r: int) -> torch.Tensor:
    return x.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


# ----------------------------------------------------------------------------------------- build


def test_registered_and_cards():
    assert set(SR_MODELS) <= set(zoo.list_models("super-resolve"))
    for name in SR_MODELS:
        c = zoo.card(name)
        assert c.family == "sr" and c.task == "super-resolve"
        assert c.input_shape == (1, 3, 128, 128) and c.layout == "NCHW" and c.output_layout == "NCHW"
        assert c.value_range == (0.0, 1.0) and c.color_order == "RGB" and c.scale_factor == 2
        assert c.macs_input == (1, 3, 360, 640)
        assert "arxiv.org" in c.paper


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", SR_MODELS)
def test_shapes_every_scale(name, scale):
    model = zoo.create(name, scale=scale)
    x = torch.rand(2, 3, 12, 17)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 12 * scale, 17 * scale)
    assert y.dtype == torch.float32 and float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_default_card_numbers_match_model():
    x = torch.zeros(zoo.card("espcn_x2").macs_input)
    for name in SR_MODELS:
        m = zoo.create(name)
        c = zoo.card(name)
        assert count_params(m) == c.params, name
        assert count_macs(m, x) == c.macs, name


@pytest.mark.parametrize("bad", [1, 5, 2.0, "2", True])
def test_bad_scale_is_a_zoo_error(bad):
    with pytest.raises(ZooError, match="scale must be one of 2, 3, 4"):
        zoo.create("quicksrnet_small_x2", scale=bad)


def test_unknown_option_is_a_zoo_error():
    with pytest.raises(ZooError, match="bad config"):
        zoo.create("espcn_x2", widht=3)


# ------------------------------------------------------------------------------------ structure


def test_espcn_layers_follow_the_paper():
    m = zoo.create("espcn_x2", scale=3)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3), (3, 3)]
    assert [c.out_channels for c in convs] == [64, 32, 27]
    assert m.shuffle.upscale_factor == 3


@pytest.mark.parametrize("name,channels,convs,ito", [
    ("quicksrnet_small_x2", 32, 3, False),
    ("quicksrnet_medium_x2", 32, 6, False),
    ("quicksrnet_large_x2", 64, 12, True),
])
def test_quicksrnet_configs(name, channels, convs, ito):
    m = zoo.create(name)
    body = [c for c in m.cnn if isinstance(c, torch.nn.Conv2d)]
    assert len(body) == convs and all(c.out_channels == channels for c in body)
    assert sum(isinstance(a, torch.nn.Hardtanh) for a in m.cnn) == convs
    assert m.conv_last.out_channels == 12 and (m.anchor is not None) == ito


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", ["quicksrnet_small_x2", "quicksrnet_medium_x2"])
def test_quicksrnet_identity_init_is_nearest_upsampling(name, scale):
    """With the random part of the init removed, what is left of a fresh small/medium net is
    exactly nearest upsampling: the paper's training trick in place of a skip connection."""
    m = zoo.create(name, scale=scale)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    m._init_identity(3)
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(m(x), nearest(x, scale))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_quicksrnet_large_anchor_skip_is_nearest_upsampling(scale):
    m = randomize(zoo.create("quicksrnet_large_x2", scale=scale))
    with torch.no_grad():
        m.anchor.net.weight.copy_(sr.repeat_kernel(3, scale))
        m.anchor.net.bias.zero_()
        m.conv_last.weight.zero_()
        m.conv_last.bias.zero_()
        x = torch.rand(1, 3, 9, 11)
        assert torch.equal(m(x), nearest(x, scale))
        m.conv_last.bias.fill_(0.1)  # the residual is added before the clip and the shuffle
        assert_close(m(x), (nearest(x, scale) + 0.1).clamp(0, 1), fp32_bound(m, x), "anchor + residual")


def test_repeat_kernel_then_shuffle_is_nearest():
    x = torch.rand(2, 3, 5, 7)
    for r in (2, 3, 4):
        y = F.pixel_shuffle(F.conv2d(x, sr.repeat_kernel(3, r)), r)
        assert torch.equal(y, nearest(x, r))


@pytest.mark.parametrize("training_form", [False, True])
def test_sesr_global_residual_is_nearest_upsampling(training_form):
    m = randomize(zoo.create("sesr_m5_x2", scale=3, training_form=training_form))
    with torch.no_grad():
        tail = m.tail.project if training_form else m.tail
        tail.weight.zero_()
        tail.bias.zero_()
        x = torch.rand(1, 3, 8, 10)
        assert torch.equal(m(x), nearest(x, 3))


def test_sesr_m5_config():
    t = zoo.create("sesr_m5_x2", training_form=True)
    assert not t.is_collapsed and len(t.body) == 5 and len(t.acts) == 5
    assert t.head.expand.out_channels == 256 and t.head.expand.kernel_size == (5, 5)
    assert all(b.expand.kernel_size == (3, 3) and b.project.out_channels == 16 and b.residual for b in t.body)
    assert t.tail.project.out_channels == 12 and not t.head.residual and not t.tail.residual
    d = zoo.create("sesr_m5_x2")
    assert d.is_collapsed and all(type(b) is torch.nn.Conv2d for b in [d.head, d.tail, *d.body])


# ------------------------------------------------------------------------------------ SESR collapse


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sesr_collapse_equals_training_form(scale):
    train_form = randomize(zoo.create("sesr_m5_x2", scale=scale, training_form=True), seed=scale)
    with torch.no_grad():
        for a in train_form.acts:  # PReLU slopes away from the default, differing per channel
            a.weight.copy_(torch.linspace(-0.3, 0.6, a.weight.numel()))
    deploy = train_form.collapse()
    assert deploy is not train_form and deploy.is_collapsed and not train_form.is_collapsed
    assert set(deploy.state_dict()) == set(zoo.create("sesr_m5_x2", scale=scale).state_dict())
    # compare before the final clip so that saturated pixels cannot hide a difference
    for m in (train_form, deploy):
        m.clip = torch.nn.Identity()
    x = torch.rand(2, 3, 23, 19, generator=torch.Generator().manual_seed(1))
    t64 = copy.deepcopy(train_form).double()
    d64 = t64.collapse()
    d64.clip = torch.nn.Identity()
    assert d64.head.weight.dtype == torch.float64 and d64.anchor.dtype == torch.float64
    with torch.no_grad():
        expanded = train_form.forward_expanded(x)
        online = train_form(x)
        folded = deploy(x)
        exact = t64.forward_expanded(x.double())  # x is float32: the float64 runs see the same input
        folded64 = d64(x.double())
    assert expanded.abs().max() > 0.1  # a real signal, not all zeros
    # the three float32 forms compute one function; each one's own error against float64 bounds
    # how far apart two of them may be (numeric.py: FACTOR x the larger error covers both sides)
    bound = Bound.largest([Bound.measured(y, exact) for y in (expanded, online, folded)])
    assert_close(online, expanded, bound, "online-collapsed vs expanded training form")
    assert_close(folded, expanded, bound, "collapse() vs expanded training form")
    # and to rounding error in float64
    assert_close(folded64, exact, in_float64(bound), "collapse() in float64")


def test_linear_block_fold_with_and_without_residual():
    g = torch.Generator().manual_seed(0)
    for cin, cout, k, res in ((3, 16, 5, False), (16, 16, 3, True), (16, 12, 5, False)):
        blk32 = randomize(sr.LinearBlock(cin, cout, k, 64, res))
        blk = copy.deepcopy(blk32).double()  # float32 weights, exactly representable in float64
        x32 = torch.randn(1, cin, 13, 9, generator=g)
        x = x32.double()
        with torch.no_grad():
            ref = blk.forward_expanded(x)
            # the float32 runs of the three forms measure the round-off of these computations
            bound = in_float64(Bound.largest([Bound.measured(y32, ref) for y32 in (
                blk32.forward_expanded(x32), blk32.to_conv()(x32), blk32(x32))]))
            assert_close(blk.to_conv()(x), ref, bound, f"to_conv {cin}->{cout} k{k}")
            assert_close(blk(x), ref, bound, f"online collapse {cin}->{cout} k{k}")


def test_collapse_leaves_training_form_untouched_and_trainable():
    t = zoo.create("sesr_m5_x2", training_form=True).train()
    before = {k: v.clone() for k, v in t.state_dict().items()}
    d = t.collapse()
    assert d.training and all(torch.equal(before[k], v) for k, v in t.state_dict().items())
    d2 = d.collapse()  # already collapsed: a copy
    assert d2 is not d and all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), d2.state_dict().values()))
    with pytest.raises(ValueError):
        d.forward_expanded(torch.rand(1, 3, 4, 4))


# -------------------------------------------------------------------------------- shipped weights


def test_required_models_ship_weights():
    assert REQUIRED_TRAINED <= set(TRAINED)


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_weights_sha256_and_load(name):
    c = zoo.card(name)
    path = WEIGHTS_DIR / c.weights
    assert path.suffix == ".safetensors" and path.is_file()
    assert train_sr.sha256_file(path) == c.weights_sha256
    model = zoo.create(name, pretrained=True)
    assert not model.training
    fresh = zoo.create(name)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


@pytest.mark.parametrize("name", TRAINED)
def test_card_agrees_with_training_record(name):
    """The card's numbers are the ones train_sr measured and wrote next to the weights."""
    c = zoo.card(name)
    rec = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert rec["sha256"] == c.weights_sha256 and rec["weights"] == c.weights
    assert rec["params"] == c.params and rec["macs"] == c.macs
    assert rec["metrics"] == c.metrics
    assert set(rec["metrics"]["heldout"]).isdisjoint(rec["train_photos"])
    # the shipped weights' claim (stored numbers, computed once by train_sr): at least 0.5 dB over bicubic
    assert c.metrics["gain_rgb_db"] >= 0.5 and c.metrics["gain_y_db"] >= 0.5


def test_heldout_photos_are_not_trained_on():
    assert set(train_sr.HELDOUT_PHOTOS).isdisjoint(n for n, _ in train_sr.TRAIN_PHOTOS)
    assert len(train_sr.HELDOUT_PHOTOS) >= 2


@pytest.fixture(scope="module")
def heldout_pairs():
    """(HR, LR) 8-bit crops of two held-out photos, LR made with PIL's antialiased bicubic."""
    pairs = []
    for name, (y, x) in (("motorcycle_right", (100, 150)), ("coffee", (40, 100))):
        hr = train_sr.load_photo(name)[y:y + 256, x:x + 384]
        pairs.append((name, hr, train_sr.downscale(hr, 2, "pil-bicubic")))
    return pairs


@pytest.mark.parametrize("name", TRAINED)
def test_trained_model_beats_bicubic_on_unseen_photos(name, heldout_pairs):
    model = zoo.create(name, pretrained=True)
    for photo, hr, lr in heldout_pairs:
        ref = hr / 255.0
        ours = train_sr.psnr(train_sr.sr_upscale(model, lr) / 255.0, ref, border=2)
        bic = max(train_sr.psnr(train_sr.bicubic_upscale(lr, 2, k) / 255.0, ref, border=2) for k in ("pil", "opencv"))
        # a quality claim, not a tolerance: the trained nets gain 0.83-2.1 dB on these crops, and
        # float32 round-off in the net moves a PSNR by ~1e-5 dB
        assert ours - bic >= 0.5, f"{name} on {photo}: {ours:.2f} dB vs bicubic {bic:.2f} dB"


# ---------------------------------------------------------------------------------------- metrics


def test_psnr_ssim_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    hr = train_sr.load_photo("chelsea")[:120, :160] / 255.0
    rng = np.random.default_rng(0)
    # Both sides compute in float64 and differ only in the order of rounding steps:
    # - PSNR = 10 log10(1 / MSE): the MSE is a reduction over every value, and an error e relative
    #   to it moves the PSNR by (10 / ln 10) e dB; |PSNR| (> 10 / ln 10 here) is the scale.
    # - SSIM: 11x11 Gaussian moments of values in [0, 1] (variance and covariance by subtraction),
    #   then ratios whose variance denominator is at least C2 = 0.03**2: an absolute error in the
    #   moments reaches the SSIM map amplified by at most ~4 / C2.
    ssim_bound = Bound.roundoff(4 / 0.03 ** 2, reduction=11 * 11, depth=3, unit=U64)
    for noisy in (np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1), hr[::-1] * 0.9):
        want_psnr = peak_signal_noise_ratio(hr, noisy, data_range=1.0)
        psnr_bound = Bound.roundoff(max(abs(want_psnr), 10 / math.log(10)), reduction=hr.size, depth=2, unit=U64)
        assert_close(train_sr.psnr(noisy, hr), want_psnr, psnr_bound, "psnr")
        want = structural_similarity(hr, noisy, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
        assert_close(train_sr.ssim(noisy, hr), want, ssim_bound, "ssim")
        gy, ny = train_sr.rgb_to_y(hr), train_sr.rgb_to_y(noisy)
        want_y = structural_similarity(gy, ny, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=1.0)
        assert_close(train_sr.ssim(ny, gy), want_y, ssim_bound, "ssim on Y")
    # identical images: every SSIM ratio has the same numerator and denominator terms, so exactly 1
    assert train_sr.psnr(hr, hr) == float("inf") and train_sr.ssim(hr, hr) == 1.0


def test_rgb_to_y_matches_skimage_ycbcr():
    from skimage.color import rgb2ycbcr

    img = train_sr.load_photo("astronaut")[:64, :64] / 255.0
    want = rgb2ycbcr(img)[..., 0] / 255.0
    # float64 on both sides: a 3-term dot product, + 16, / 255 (every partial sum is at most the result)
    assert_close(train_sr.rgb_to_y(img), want, Bound.roundoff(np.abs(want).max(), reduction=3, depth=3, unit=U64),
                 "Y of YCbCr")


def test_downscale_matches_pil_and_area():
    from PIL import Image

    hr = train_sr.load_photo("rocket")[:64, :96]
    lr = train_sr.downscale(hr, 2)
    assert lr.shape == (32, 48, 3) and lr.dtype == np.uint8
    np.testing.assert_array_equal(lr, np.asarray(Image.fromarray(hr).resize((48, 32), Image.BICUBIC)))
    area = train_sr.downscale(hr, 2, "area").astype(int)
    assert abs(area[0, 0, 0] - hr[:2, :2, 0].mean()) <= 0.5  # the mean of 4 integers, rounded to an integer


# --------------------------------------------------------------------------------------- training


def test_patch_sampler_is_deterministic_and_8bit():
    a = train_sr.PatchSampler(2, 16, seed=3, photos=(("astronaut", 1.0), ("camera", 1.0)))
    b = train_sr.PatchSampler(2, 16, seed=3, photos=(("astronaut", 1.0), ("camera", 1.0)))
    lr1, hr1 = a.batch(4)
    lr2, hr2 = b.batch(4)
    assert lr1.shape == (4, 3, 16, 16) and hr1.shape == (4, 3, 32, 32)
    assert torch.equal(lr1, lr2) and torch.equal(hr1, hr2)
    assert torch.equal(torch.round(lr1 * 255) / 255, lr1)
    assert 0.0 <= float(hr1.min()) and float(hr1.max()) <= 1.0
    # the LR really is a downscaled HR: close to the 2x2 mean of the HR patch (seeded data: 0.001
    # from it, an antialiased downscale of 8-bit pixels; the LR of another patch is ~0.2 away)
    assert float((F.avg_pool2d(hr1, 2) - lr1).abs().mean()) < 0.03


@pytest.mark.slow
def test_train_sr_cli_end_to_end(tmp_path):
    rc = train_sr.main(["--model", "sesr_m5_x2", "--steps", "4", "--batch", "2", "--patch", "16", "--out", str(tmp_path)])
    assert rc == 0
    rec = json.loads((tmp_path / "sesr_m5_x2.json").read_text())
    assert rec["sha256"] == train_sr.sha256_file(tmp_path / "sesr_m5_x2.safetensors")
    assert "sesr_m5_x2" in (tmp_path / "SR_RESULTS.md").read_text()
    zoo.create("sesr_m5_x2", weights=tmp_path / "sesr_m5_x2.safetensors")
    assert train_sr.main(["--model", "no_such_sr_x2", "--out", str(tmp_path)]) == 1
