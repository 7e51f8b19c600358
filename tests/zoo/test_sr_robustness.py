"""The shipped x2 SR weights beat bicubic however the LR image was made: the acceptance rule
(>= ACCEPT_GAIN_DB under every evaluated degradation) checked on the recorded held-out results,
SR_RESULTS.md and the cards as renderings of those records, and the degradation functions doing
what they say (shapes, ranges, what each one is, determinism under a seed)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")
F = torch.nn.functional

from edgekit import zoo  # noqa: E402
from edgekit.errors import UsageError  # noqa: E402
from edgekit.zoo import train_sr  # noqa: E402
from edgekit.zoo.registry import WEIGHTS_DIR  # noqa: E402

SHIPPED_X2 = sorted(n for n in zoo.list_models("super-resolve")
                    if zoo.card(n).scale_factor == 2 and zoo.card(n).weights is not None)
REQUIRED = {"espcn_x2", "quicksrnet_small_x2", "quicksrnet_medium_x2", "sesr_m5_x2"}

# Shipped models whose recorded results do not meet the rule yet, with the degradations they miss
# it on (SR_RESULTS.md has the numbers). Strict: a model that comes to meet it fails here until
# it is taken off this list, and one missing on another degradation fails as well.
SHORT_OF_RULE: dict[str, set[str]] = {
    "espcn_x2": {"bicubic-noaa", "blur1.0", "jpeg85"},
    "quicksrnet_small_x2": {"bicubic-noaa", "jpeg85"},
    "quicksrnet_medium_x2": {"bicubic-noaa"},
}


def rule_cases() -> list:
    def short(n: str) -> str:
        return f"{n} gains less than {train_sr.ACCEPT_GAIN_DB} dB over bicubic on {', '.join(sorted(SHORT_OF_RULE[n]))}"

    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=short(n)))
            if n in SHORT_OF_RULE else n for n in SHIPPED_X2]


def rule_violations(record: dict) -> list[str]:
    """Every way a metrics record breaks the acceptance rule: a degradation not measured, or a
    gain over bicubic (recomputed from the stored PSNRs) below ACCEPT_GAIN_DB."""
    out = []
    for deg, gain in train_sr.acceptance(record).items():
        if gain is None:
            out.append(f"{record['model']}: '{deg}' not measured")
        elif not gain >= train_sr.ACCEPT_GAIN_DB:  # NaN fails too
            out.append(f"{record['model']}: '{deg}' gains {gain:+.3f} dB over bicubic "
                       f"(< {train_sr.ACCEPT_GAIN_DB} dB)")
    return out


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    return {n: json.loads((WEIGHTS_DIR / f"{n}.json").read_text()) for n in SHIPPED_X2}


# ------------------------------------------------------------------------------ acceptance rule


def test_every_required_model_ships_x2_weights():
    assert REQUIRED <= set(SHIPPED_X2)


def test_evaluated_degradations_cover_the_ways_users_downscale():
    degs = set(train_sr.EVAL_DEGRADATIONS)
    assert {"area", "pil-bicubic", "bicubic-noaa", "pil-bilinear", "bilinear-noaa", "blur1.0", "skimage"} <= degs
    qualities = [int(d[4:]) for d in degs if d.startswith("jpeg")]
    assert qualities and all(70 <= q <= 90 for q in qualities), "JPEG at a moderate quality"
    assert next(iter(train_sr.EVAL_DEGRADATIONS)) == "pil-bicubic"  # the headline the cards carry


@pytest.mark.parametrize("name", rule_cases())
def test_recorded_results_hold_the_rule(name, records):
    """The shipped weights' claim, from the numbers train_sr measured and recorded: at least
    ACCEPT_GAIN_DB of RGB PSNR over the better bicubic under each degradation."""
    assert rule_violations(records[name]) == []


def test_models_short_of_the_rule_miss_it_where_listed(records):
    """The list above is the truth: each listed model misses the rule on exactly the listed
    degradations (and on nothing else)."""
    for name, degs in SHORT_OF_RULE.items():
        gains = train_sr.acceptance(records[name])
        assert {d for d, g in gains.items() if g is None or g < train_sr.ACCEPT_GAIN_DB} == degs, name


@pytest.mark.parametrize("name", SHIPPED_X2)
def test_recorded_gains_are_the_recorded_psnrs(name, records):
    """Each stored gain is the model's mean PSNR minus the better bicubic's (rounding to 5
    decimals on each stored number: at most 3 half-units of 1e-5 apart), per photo means agree;
    and the record is of the shipped file, measured on photos it was not trained on."""
    rec = records[name]
    assert rec["sha256"] == train_sr.sha256_file(WEIGHTS_DIR / rec["weights"]), "record is not of the shipped file"
    assert rec["metrics"]["heldout"] == list(train_sr.HELDOUT_PHOTOS)
    assert set(rec["metrics"]["heldout"]).isdisjoint(rec["train_photos"])
    gains = train_sr.acceptance(rec)
    for deg, e in rec["by_degradation"].items():
        best = max(("bicubic_pil", "bicubic_opencv"), key=lambda w: e[w]["psnr_rgb"])
        assert e["bicubic"] == best
        assert abs(e["gain_rgb_db"] - gains[deg]) <= 1.5e-5, deg
        per_photo = np.mean([rec["per_photo"][p][deg]["model"]["psnr_rgb"] for p in rec["metrics"]["heldout"]])
        assert abs(per_photo - e["model"]["psnr_rgb"]) <= 2e-5, deg
    worst = min(gains, key=gains.get)
    assert rec["metrics"]["min_gain_lr"] == worst
    assert abs(rec["metrics"]["min_gain_rgb_db"] - gains[worst]) <= 1e-3  # rounded to 3 decimals


def test_rule_fails_when_one_degradation_falls_short(records):
    """The check above can fail: one entry lowered to just under the threshold, or missing."""
    passing = [n for n in SHIPPED_X2 if n not in SHORT_OF_RULE]
    assert passing, "no shipped model meets the rule to start from"
    rec = copy.deepcopy(records[passing[0]])
    assert rule_violations(rec) == []
    e = rec["by_degradation"]["area"]
    e["model"]["psnr_rgb"] = max(e["bicubic_pil"]["psnr_rgb"], e["bicubic_opencv"]["psnr_rgb"]) + 0.49
    assert rule_violations(rec) == [f"{passing[0]}: 'area' gains +0.490 dB over bicubic (< 0.5 dB)"]
    del rec["by_degradation"]["jpeg85"]
    assert len(rule_violations(rec)) == 2 and "'jpeg85' not measured" in rule_violations(rec)[1]
    assert "**no**" in train_sr.render_results_md([rec])


@pytest.mark.parametrize("name", SHIPPED_X2)
def test_card_carries_the_recorded_metrics(name, records):
    c = zoo.card(name)
    assert c.metrics == records[name]["metrics"] and c.weights_sha256 == records[name]["sha256"]
    gains = train_sr.acceptance(records[name])
    assert c.metrics["min_gain_lr"] == min(gains, key=gains.get)


def test_results_md_is_the_rendering_of_the_records():
    want = train_sr.render_results_md(train_sr.load_records(WEIGHTS_DIR))
    assert train_sr.RESULTS_MD.read_text() == want, \
        "regenerate: python -m edgekit.zoo.train_sr --model NAME --eval-only"
    assert all(f"`{n}`" in want for n in SHIPPED_X2)


# ---------------------------------------------------------------------------------- degradations


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return train_sr.load_photo("astronaut")[100:228, 150:310]  # 128x160 of a held-in photo, detailed


def sharpness(lr: np.ndarray) -> float:
    """Mean absolute high-pass (image minus its Gaussian σ=1 blur): detail left in an LR image."""
    f = lr.astype(np.float64)
    return float(np.mean(np.abs(f - train_sr.gaussian_blur(f, 1.0))))


@pytest.mark.parametrize("method", list(train_sr.EVAL_DEGRADATIONS))
def test_eval_degradation_shape_range_repeatable(method, hr):
    lr = train_sr.downscale(hr, 2, method)
    assert lr.shape == (64, 80, 3) and lr.dtype == np.uint8
    np.testing.assert_array_equal(lr, train_sr.downscale(hr, 2, method))  # no hidden randomness
    # every kernel sums to 1 (JPEG keeps the DC terms), so the mean brightness stays within a
    # level of the photo's; a wrong scale (e.g. 0..1 output) or a shifted kernel would not
    assert abs(float(lr.mean()) - float(hr.mean())) < 1.0
    # and it is a downscale of this picture: close to the 2x2 block means, nowhere near a shifted copy
    area = train_sr.downscale(hr, 2, "area").astype(np.float64)
    assert np.abs(lr - area).mean() < 0.25 * np.abs(np.roll(area, 3, axis=1) - area).mean()


def test_eval_degradations_are_what_they_say(hr):
    from PIL import Image

    blocks = hr.astype(np.float64).reshape(64, 2, 80, 2, 3).mean(axis=(1, 3))
    area = train_sr.downscale(hr, 2, "area")
    np.testing.assert_array_equal(area, np.clip(np.round(blocks), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(train_sr.downscale(hr, 2, "pil-bilinear"),
                                  np.asarray(Image.fromarray(hr).resize((80, 64), Image.BILINEAR)))
    # bilinear without prefilter at x2 samples halfway between pixels: the 2x2 mean in float32,
    # rounded to 8 bits, so at most one level from the float64 block mean rounded
    assert np.abs(train_sr.downscale(hr, 2, "bilinear-noaa").astype(int) - area).max() <= 1
    noaa = F.interpolate(torch.from_numpy(hr.astype(np.float32)).permute(2, 0, 1)[None], size=(64, 80),
                         mode="bicubic", antialias=False, align_corners=False)
    np.testing.assert_array_equal(train_sr.downscale(hr, 2, "bicubic-noaa"),
                                  np.clip(np.round(noaa[0].permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8))
    # detail kept: no prefilter > antialiased bicubic > blur then area
    s = {m: sharpness(train_sr.downscale(hr, 2, m)) for m in ("bicubic-noaa", "pil-bicubic", "area", "blur1.0")}
    assert s["bicubic-noaa"] > s["pil-bicubic"] > s["blur1.0"] and s["area"] > s["blur1.0"]
    # JPEG at quality 85 of the PIL-bicubic LR: lossy, but mildly
    base = train_sr.downscale(hr, 2, "pil-bicubic")
    j85 = train_sr.downscale(hr, 2, "jpeg85")
    np.testing.assert_array_equal(j85, train_sr.jpeg(base, 85))
    p85 = train_sr.psnr(j85 / 255.0, base / 255.0)
    assert 30.0 < p85 < float("inf") and train_sr.psnr(train_sr.jpeg(base, 30) / 255.0, base / 255.0) < p85
    with pytest.raises(UsageError, match="unknown degradation 'lanczos'"):
        train_sr.downscale(hr, 2, "lanczos")
    with pytest.raises(UsageError, match="unknown degradation 'jpegxx'"):
        train_sr.downscale(hr, 2, "jpegxx")


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_gaussian_blur_is_a_normalised_gaussian(sigma):
    impulse = np.zeros((41, 41, 1))
    impulse[20, 20, 0] = 1.0
    psf = train_sr.gaussian_blur(impulse, sigma)[..., 0]
    yy, xx = np.mgrid[-20:21, -20:21]
    assert abs(psf.sum() - 1.0) < 1e-12  # float64 sum of ~ (8σ+1)² terms of at most 1
    # the sampled kernel, cut at 4σ, has a variance within 0.1% of σ² (the cut-off tails hold 6e-5 of it)
    assert abs((psf * yy ** 2).sum() / sigma ** 2 - 1.0) < 1e-3 and abs((psf * xx ** 2).sum() / sigma ** 2 - 1.0) < 1e-3
    assert np.array_equal(psf, psf.T) and psf.argmax() == 20 * 41 + 20
    flat = np.full((9, 7, 3), 77.0)
    assert np.abs(train_sr.gaussian_blur(flat, sigma) - 77.0).max() < 1e-12


# ------------------------------------------------------------------------- training degradations


def hr_tensor(hr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(hr.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.mark.parametrize("kind", list(train_sr.DEGRADATIONS))
def test_training_degradation_shape_range_seeded(kind, hr):
    x = hr_tensor(hr)
    a = train_sr.degrade(x, 2, np.random.default_rng(7), kind=kind)
    b = train_sr.degrade(x, 2, np.random.default_rng(7), kind=kind)
    assert a.shape == (1, 3, 64, 80) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(torch.round(a * 255.0) / 255.0, a)  # 8-bit levels, as stored photos are
    # a downscale of this crop: near the 2x2 means, far from those of a shifted crop
    area = F.avg_pool2d(x, 2)
    assert (a - area).abs().mean() < 0.25 * (torch.roll(area, 3, dims=3) - area).abs().mean()
    if kind == "blur":  # σ is drawn from the generator: another seed, another blur
        assert not torch.equal(a, train_sr.degrade(x, 2, np.random.default_rng(8), kind=kind))


def test_training_degradations_mirror_the_evaluated_ones(hr):
    """The mixture's kinds are the held-out degradations (up to float32 vs PIL's fixed point)."""
    x = hr_tensor(hr)
    rng = np.random.default_rng(0)
    for kind, method, levels in (("area", "area", 1), ("bilinear", "bilinear-noaa", 1),
                                 ("bicubic", "bicubic-noaa", 1), ("bicubic_aa", "pil-bicubic", 2),
                                 ("bilinear_aa", "pil-bilinear", 1)):
        # one level: two roundings to 8 bits of values computed in float32 vs float64; PIL's
        # bicubic with its 8-bit intermediate pass (rows then columns) adds another level
        got = np.round(train_sr.degrade(x, 2, rng, kind=kind)[0].permute(1, 2, 0).numpy() * 255.0)
        assert np.abs(got - train_sr.downscale(hr, 2, method)).max() <= levels, kind
    lr = train_sr.degrade(x, 2, rng, kind="bicubic_aa", jpeg_quality=85)
    np.testing.assert_array_equal(np.round(lr[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                                  train_sr.jpeg(np.round(train_sr.degrade(x, 2, rng, kind="bicubic_aa")[0]
                                                         .permute(1, 2, 0).numpy() * 255).astype(np.uint8), 85))


def test_training_mixture_is_seeded_and_weighted(hr):
    x = hr_tensor(hr)
    first = [train_sr.degrade(x, 2, np.random.default_rng(3)) for _ in range(2)]
    assert torch.equal(*first)
    only_area = tuple(1.0 if k == "area" else 0.0 for k in train_sr.DEGRADATIONS)
    got = train_sr.degrade(x, 2, np.random.default_rng(3), p=only_area, jpeg_p=0.0)
    assert torch.equal(got, torch.round(F.avg_pool2d(x, 2).clamp(0, 1) * 255.0) / 255.0)
    # a mixture is recorded as given, and a bad one is refused
    r = train_sr.Recipe(degradation_p=only_area, jpeg_p=0.5)
    assert train_sr.mixture(r)["downscale"]["area"] == 1.0 and train_sr.mixture(r)["jpeg_p"] == 0.5
    with pytest.raises(UsageError, match="degradation_p"):
        train_sr.mixture(train_sr.Recipe(degradation_p=(1.0,)))
    with pytest.raises(UsageError, match="unknown training degradation"):
        train_sr.degrade(x, 2, np.random.default_rng(0), kind="lanczos")
