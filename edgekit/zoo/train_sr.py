"""Train and evaluate the zoo's super-resolution nets on real photographs, on CPU, in minutes.

    python -m edgekit.zoo.train_sr --model espcn_x2 [--steps N] [--seed 0] [--out DIR] [--eval-only]

Data: the photographs that ship inside scikit-image (``skimage/data``), read straight from
disk (no download). :data:`TRAIN_PHOTOS` are used for training; :data:`HELDOUT_PHOTOS`
(``coffee`` and the ``motorcycle_left``/``_right`` stereo pair — one scene, both views held
out) are never seen in training and are what the metrics are measured on.

Training: random HR crops, rescaled by a random factor in [0.5, 1] (more detail per crop,
scale diversity), flips, 90° rotations and colour jitter (channel order, saturation, tint);
one crop in ten is a smooth synthetic colour field instead (the photos do not cover the RGB
cube). Each crop is made LR by one draw of a mixture of degradations (:func:`degrade`):
bicubic or bilinear with or without antialiasing, area averaging, or a Gaussian blur then area
or antialiased bicubic; LR quantised to 8 bits, then, for some crops, JPEG-compressed. A user
makes LR images in any of these ways, and a net trained on one alone loses to bicubic on
another. L1 (or, to fine-tune for PSNR, L2) loss, Adam, warm-up then cosine learning rate,
gradient-norm clipping, fixed seed, one CPU thread (bitwise reproducible on one machine). From scratch, SESR trains in its
over-parameterised form (with the online collapse of Arm's reference code) and is collapsed
before saving; ``--finetune`` continues from the shipped (deploy-form) weights.

Evaluation (what a reviewer does): the HR photo (8-bit) is downscaled ×r by each of
:data:`EVAL_DEGRADATIONS` (the first, PIL's antialiased bicubic, is the headline), kept 8-bit,
upscaled by the model and by bicubic; outputs rounded to 8 bits; PSNR and SSIM (Gaussian
11×11, σ=1.5, Wang et al. 2004) on RGB in [0, 1] and on the BT.601 luma Y (MATLAB
``rgb2ycbcr``), shaving ``r`` pixels at each border. "Bicubic" is the better (by mean RGB PSNR)
of PIL's bicubic (a=-0.5) and OpenCV's/torch's (a=-0.75). A shipped ×2 model must beat it by
:data:`ACCEPT_GAIN_DB` under every one of them (``tests/zoo/test_sr_robustness.py``).

Outputs: ``<out>/<name>.safetensors`` (deploy form), ``<out>/<name>.json`` (metrics and the
training recipe) and the Markdown table ``SR_RESULTS.md`` rebuilt from every ``*.json`` there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit._fs import atomic_path
from edgekit.errors import EdgekitError, MissingDependency, UsageError
from edgekit.zoo.registry import WEIGHTS_DIR

__all__ = ["TRAIN_PHOTOS", "HELDOUT_PHOTOS", "Recipe", "load_photo", "psnr", "ssim", "rgb_to_y", "downscale",
           "bicubic_upscale", "sr_upscale", "evaluate", "train", "main"]

RESULTS_MD = Path(__file__).with_name("SR_RESULTS.md")

# (photo, sampling weight). Colour photos count double; greyscale ones add texture and text.
TRAIN_PHOTOS: tuple[tuple[str, float], ...] = (
    ("astronaut", 2.0), ("chelsea", 2.0), ("rocket", 2.0), ("ihc", 2.0), ("hubble_deep_field", 1.0),
    ("camera", 1.0), ("coins", 1.0), ("text", 1.0), ("page", 1.0), ("grass", 1.0), ("gravel", 1.0),
    ("brick", 1.0), ("moon", 1.0),
)
HELDOUT_PHOTOS: tuple[str, ...] = ("coffee", "motorcycle_left", "motorcycle_right")

SYNTHETIC_P = 0.1  # share of training crops that are smooth synthetic colour fields

# How a training crop is made LR (degrade): one downscale drawn with these
# probabilities, then, for JPEG_P of the crops, JPEG compression of the 8-bit LR at a quality
# drawn from JPEG_QUALITY. "blur" is a Gaussian of σ drawn from BLUR_SIGMA, then area or
# antialiased bicubic. Names ending in "_aa" prefilter (PIL-style antialiasing); "bicubic" and
# "bilinear" sample with no prefilter (OpenCV INTER_CUBIC/INTER_LINEAR, torch's default).
DEGRADATIONS = ("bicubic_aa", "bicubic", "area", "bilinear_aa", "bilinear", "blur")
DEGRADATION_P = (0.2, 0.25, 0.15, 0.15, 0.05, 0.2)
BLUR_SIGMA = (0.3, 1.0)
JPEG_P = 0.3
JPEG_QUALITY = (75, 95)

# How the held-out LR images are made (evaluate): every shipped x2 model must beat bicubic by at
# least ACCEPT_GAIN_DB (mean RGB PSNR over the held-out photos) under each. The first is the
# headline (the card's metrics).
EVAL_DEGRADATIONS: dict[str, str] = {
    "pil-bicubic": "PIL `resize(BICUBIC)`: bicubic (a=-0.5) with antialiasing",
    "area": "mean of each 2×2 block (OpenCV `INTER_AREA`, PIL `reduce`)",
    "bicubic-noaa": "bicubic (a=-0.75) with no prefilter (OpenCV `INTER_CUBIC`, torch `interpolate`)",
    "pil-bilinear": "PIL `resize(BILINEAR)`: bilinear with antialiasing (a 4-pixel triangle)",
    "bilinear-noaa": "bilinear with no prefilter (OpenCV `INTER_LINEAR`, torch `interpolate`); at ×2 the "
                     "mean of each 2×2 block, so `area` up to rounding",
    "skimage": "scikit-image `resize(anti_aliasing=True)`: Gaussian σ=0.5, then bilinear sampling",
    "blur1.0": "Gaussian blur σ=1.0, then area",
    "jpeg85": "PIL bicubic (antialiased), then JPEG quality 85 (PIL, 4:2:0 chroma)",
}
ACCEPT_GAIN_DB = 0.5


def mixture(recipe: "Recipe | None" = None) -> dict[str, Any]:
    """The training degradation mixture (of ``recipe``, else the default) as data (recorded with
    each training stage)."""
    p, jp = _mixture_of(recipe)
    return {"downscale": dict(zip(DEGRADATIONS, p)), "blur_sigma": list(BLUR_SIGMA),
            "blur_then": ["area", "bicubic_aa"], "jpeg_p": jp, "jpeg_quality": list(JPEG_QUALITY)}


def _mixture_of(recipe: "Recipe | None") -> tuple[tuple[float, ...], float]:
    p = tuple(DEGRADATION_P) if recipe is None or recipe.degradation_p is None else tuple(recipe.degradation_p)
    jp = JPEG_P if recipe is None or recipe.jpeg_p is None else float(recipe.jpeg_p)
    if len(p) != len(DEGRADATIONS) or min(p) < 0 or abs(sum(p) - 1.0) > 1e-9 or not 0.0 <= jp <= 1.0:
        raise UsageError("a recipe's degradation_p must give one probability per DEGRADATIONS entry, summing to 1, "
                         "and jpeg_p must be in [0, 1]", where=", ".join(DEGRADATIONS))
    return p, jp


# The mixture of the first trained weights (records written before stages were recorded).
LEGACY_MIXTURE: dict[str, Any] = {
    "downscale": {"bicubic_aa": 0.5, "area": 0.2, "bilinear_aa": 0.15, "blur": 0.15}, "blur_sigma": [0.3, 0.8],
    "blur_then": ["area"], "jpeg_p": 0.0, "jpeg_quality": None}


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters (defaults tuned for ≤ ~8 min per model on 2 busy cores)."""

    steps: int = 2000
    batch: int = 16
    patch: int = 48  # LR patch side; the HR patch is patch·scale
    lr: float = 2e-3
    warmup: int = 100
    min_lr_ratio: float = 0.02
    seed: int = 0
    clip_grad: float = 0.5
    # The degradation mixture (None: DEGRADATION_P and JPEG_P): more weight on a degradation a
    # model lags bicubic on.
    degradation_p: tuple[float, ...] | None = None
    jpeg_p: float | None = None
    loss: str = "l1"  # "l1", or "l2" (the mean squared error, which PSNR measures)


# Per-model defaults (the CLI flags override them). SESR's over-parameterised blocks amplify
# the step size of the collapsed weights, so it needs a smaller learning rate (Arm's reference
# uses 2e-4 for 300 epochs; at 2e-3 without gradient clipping it diverged here). Each takes
# 4-9 minutes on one CPU thread of a busy 2-core machine.
RECIPES: dict[str, Recipe] = {
    "espcn_x2": Recipe(steps=3000, lr=2e-3),
    "quicksrnet_small_x2": Recipe(steps=4000, lr=2e-3),
    "quicksrnet_medium_x2": Recipe(steps=5000, lr=2e-3),
    "sesr_m5_x2": Recipe(steps=4000, lr=1e-3),
}

# Fine-tuning the shipped weights on the current mixture (--finetune).
FINETUNE_RECIPES: dict[str, Recipe] = {
    "espcn_x2": Recipe(steps=3000, lr=1e-3, warmup=50),
    "quicksrnet_small_x2": Recipe(steps=3000, lr=1e-3, warmup=50),
    "quicksrnet_medium_x2": Recipe(steps=4000, lr=1e-3, warmup=50),
    "sesr_m5_x2": Recipe(steps=3000, lr=5e-4, warmup=50),
}


# ------------------------------------------------------------------------------------ photographs


def data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise MissingDependency("scikit-image", "the SR training photographs", extra="dev") from None
    return Path(skimage.__file__).with_name("data")


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8 HxWx3 RGB (greyscale repeated, alpha dropped)."""
    from PIL import Image

    folder = data_dir()
    hits = [p for p in folder.glob(f"{name}.*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    if not hits:
        raise UsageError(f"no photo '{name}' in scikit-image's data folder", where=folder,
                         hint="check the scikit-image version (>= 0.22)")
    with Image.open(hits[0]) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy


# ---------------------------------------------------------------------------------------- metrics


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB in [0, 1] (HxWx3), in [16/255, 235/255] — MATLAB's ``rgb2ycbcr``."""
    return (16.0 + img @ np.array([65.481, 128.553, 24.966])) / 255.0


def _shave(a: np.ndarray, border: int) -> np.ndarray:
    return a[border:a.shape[0] - border, border:a.shape[1] - border] if border else a


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """PSNR in dB of two images in [0, 1] (HxW or HxWxC), ``border`` pixels shaved."""
    a, b = _shave(np.asarray(a, np.float64), border), _shave(np.asarray(b, np.float64), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the 1-D window ``g`` on both axes."""
    n = g.size
    rows = sum(g[i] * img[i:img.shape[0] - n + 1 + i] for i in range(n))
    return sum(g[i] * rows[:, i:rows.shape[1] - n + 1 + i] for i in range(n))


def ssim(a: np.ndarray, b: np.ndarray, border: int = 0, data_range: float = 1.0) -> float:
    """SSIM (Wang et al. 2004): Gaussian 11×11 window, σ=1.5, K1=0.01, K2=0.03, population
    statistics, mean over the positions where the window fits and over channels."""
    a, b = _shave(np.asarray(a, np.float64), border), _shave(np.asarray(b, np.float64), border)
    if a.ndim == 3:
        return float(np.mean([ssim(a[..., c], b[..., c], 0, data_range) for c in range(a.shape[2])]))
    g = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


# ------------------------------------------------------------------------- degradation, upscaling


def crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    return img[:h, :w]


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Float HxWxC image blurred by a Gaussian of ``sigma`` pixels (separable, radius ⌈4σ⌉,
    edges reflected)."""
    radius = max(1, int(math.ceil(4.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2.0 * sigma ** 2))
    g /= g.sum()
    out = np.asarray(img, np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        p = np.pad(out, pad, mode="symmetric")
        n = out.shape[axis]
        out = sum(g[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(g.size))
    return out


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGB through PIL's JPEG encoder at ``quality`` (default 4:2:0 chroma) and back."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _torch_resize(img: np.ndarray, size: tuple[int, int], mode: str, antialias: bool) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(t, size=size, mode=mode, antialias=antialias, align_corners=False)
    return _to_uint8(y[0].permute(1, 2, 0).numpy())


def _area(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale, img.shape[1] // scale
    return np.asarray(img, np.float64)[:h * scale, :w * scale].reshape(h, scale, w, scale, -1).mean(axis=(1, 3))


def downscale(hr: np.ndarray, scale: int, method: str = "pil-bicubic") -> np.ndarray:
    """uint8 HR (HxWx3, sides multiples of ``scale``) → uint8 LR, as a user would make it; the
    methods are the keys of :data:`EVAL_DEGRADATIONS` (``jpegQ``: PIL bicubic then JPEG at
    quality Q; ``blurS``: Gaussian σ=S then area)."""
    from PIL import Image

    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if method in ("pil-bicubic", "pil-bilinear"):
        kind = Image.BICUBIC if method == "pil-bicubic" else Image.BILINEAR
        return np.asarray(Image.fromarray(hr).resize((w, h), kind))
    if method in ("bicubic-noaa", "bilinear-noaa"):
        return _torch_resize(hr, (h, w), method.split("-")[0], antialias=False)
    if method == "skimage":
        from skimage.transform import resize

        lr = resize(hr.astype(np.float64) / 255.0, (h, w), anti_aliasing=True)
        return _to_uint8(lr * 255.0)
    if method == "area":
        return _to_uint8(_area(hr, scale))
    try:
        if method.startswith("blur"):
            return _to_uint8(_area(gaussian_blur(hr, float(method[4:])), scale))
        if method.startswith("jpeg"):
            return jpeg(downscale(hr, scale, "pil-bicubic"), int(method[4:]))
    except ValueError:
        pass
    raise UsageError(f"unknown degradation '{method}'", hint="use one of " + ", ".join(EVAL_DEGRADATIONS))


def bicubic_upscale(lr: np.ndarray, scale: int, kind: str = "pil") -> np.ndarray:
    """uint8 LR → uint8 bicubic upscale: ``pil`` (Keys a=-0.5) or ``opencv`` (a=-0.75, as
    ``cv2.INTER_CUBIC`` and ``torch`` ``mode='bicubic'``)."""
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if kind == "pil":
        from PIL import Image

        return np.asarray(Image.fromarray(lr).resize((w, h), Image.BICUBIC))
    if kind == "opencv":
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.array(lr, dtype=np.float32)).permute(2, 0, 1)[None]
        up = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
        return np.clip(np.round(up), 0, 255).astype(np.uint8)
    raise UsageError(f"unknown bicubic kind '{kind}'", hint="use pil or opencv")


def sr_upscale(model: Any, lr: np.ndarray) -> np.ndarray:
    """uint8 LR HxWx3 → the model's uint8 output."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        y = model(x)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)


def _scores(out: np.ndarray, hr: np.ndarray, border: int) -> dict[str, float]:
    o, h = out.astype(np.float64) / 255.0, hr.astype(np.float64) / 255.0
    oy, hy = rgb_to_y(o), rgb_to_y(h)
    return {"psnr_rgb": psnr(o, h, border), "ssim_rgb": ssim(o, h, border),
            "psnr_y": psnr(oy, hy, border), "ssim_y": ssim(oy, hy, border)}


def evaluate(model: Any, scale: int, photos: Sequence[str] = HELDOUT_PHOTOS,
             degradations: Sequence[str] = tuple(EVAL_DEGRADATIONS)) -> dict[str, Any]:
    """Held-out scores of ``model`` and of bicubic, per photo and per LR degradation.

    Returns ``{"main": {...means for the first degradation's LR, and the smallest RGB gain over
    all of them...}, "per_photo": ..., "by_degradation": ...}``.
    """
    model.eval()
    per_photo: dict[str, dict] = {}
    for name in photos:
        hr = crop_to_multiple(load_photo(name), scale)
        per_photo[name] = {}
        for deg in degradations:
            lr = downscale(hr, scale, deg)
            per_photo[name][deg] = {
                "model": _scores(sr_upscale(model, lr), hr, scale),
                "bicubic_pil": _scores(bicubic_upscale(lr, scale, "pil"), hr, scale),
                "bicubic_opencv": _scores(bicubic_upscale(lr, scale, "opencv"), hr, scale),
            }

    def mean(deg: str, who: str, key: str) -> float:
        return float(np.mean([per_photo[p][deg][who][key] for p in photos]))

    by_deg: dict[str, dict] = {}
    for deg in degradations:
        entry = {who: {k: mean(deg, who, k) for k in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")}
                 for who in ("model", "bicubic_pil", "bicubic_opencv")}
        best = max(("bicubic_pil", "bicubic_opencv"), key=lambda w: entry[w]["psnr_rgb"])
        entry["bicubic"] = best
        entry["gain_rgb_db"] = entry["model"]["psnr_rgb"] - entry[best]["psnr_rgb"]
        entry["gain_y_db"] = entry["model"]["psnr_y"] - entry[best]["psnr_y"]
        by_deg[deg] = entry
    m = by_deg[degradations[0]]
    b = m[m["bicubic"]]
    main_scores = {
        "psnr_rgb": round(m["model"]["psnr_rgb"], 3), "ssim_rgb": round(m["model"]["ssim_rgb"], 4),
        "psnr_y": round(m["model"]["psnr_y"], 3), "ssim_y": round(m["model"]["ssim_y"], 4),
        "bicubic_psnr_rgb": round(b["psnr_rgb"], 3), "bicubic_ssim_rgb": round(b["ssim_rgb"], 4),
        "bicubic_psnr_y": round(b["psnr_y"], 3), "bicubic_ssim_y": round(b["ssim_y"], 4),
        "gain_rgb_db": round(m["gain_rgb_db"], 3), "gain_y_db": round(m["gain_y_db"], 3),
        "min_gain_rgb_db": round(min(by_deg[d]["gain_rgb_db"] for d in degradations), 3),
        "min_gain_lr": min(degradations, key=lambda d: by_deg[d]["gain_rgb_db"]),
        "bicubic": "PIL (a=-0.5)" if m["bicubic"] == "bicubic_pil" else "OpenCV (a=-0.75)",
        "heldout": list(photos), "lr": degradations[0], "border": scale,
    }
    return {"main": main_scores, "per_photo": per_photo, "by_degradation": by_deg}


# --------------------------------------------------------------------------------------- training


def degrade(hr: Any, scale: int, rng: np.random.Generator, kind: str | None = None,
            jpeg_quality: int | None = None, p: Sequence[float] | None = None, jpeg_p: float | None = None) -> Any:
    """HR crop (1x3xHxW float in [0, 1], sides multiples of ``scale``) → 8-bit LR (1x3x(H/r)x(W/r),
    values k/255) by one draw of the training mixture: a downscale of :data:`DEGRADATIONS` drawn
    with probabilities ``p`` (default :data:`DEGRADATION_P`), or ``kind``; then JPEG for
    ``jpeg_p`` (default :data:`JPEG_P`) of the crops, or, when ``kind`` is given, only at
    ``jpeg_quality``. Every random draw comes from ``rng``, so a seed fixes the result."""
    import torch
    import torch.nn.functional as F

    r = scale
    if kind is None:
        kind = DEGRADATIONS[rng.choice(len(DEGRADATIONS), p=DEGRADATION_P if p is None else p)]
        draw_jpeg = True
    elif kind not in DEGRADATIONS:
        raise UsageError(f"unknown training degradation '{kind}'", hint="use one of " + ", ".join(DEGRADATIONS))
    else:
        draw_jpeg = False
    size = (hr.shape[2] // r, hr.shape[3] // r)
    if kind == "blur":
        sigma = float(rng.uniform(*BLUR_SIGMA))
        radius = int(math.ceil(4.0 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-x ** 2 / (2 * sigma ** 2))
        g = (g / g.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
        hr = F.conv2d(F.pad(hr, (radius, radius, 0, 0), mode="reflect"), g, groups=3)
        hr = F.conv2d(F.pad(hr, (0, 0, radius, radius), mode="reflect"), g.transpose(2, 3), groups=3)
        kind = "area" if rng.random() < 0.5 else "bicubic_aa"
    if kind == "area":
        lr = F.avg_pool2d(hr, r)
    else:
        mode = "bicubic" if kind.startswith("bicubic") else "bilinear"
        lr = F.interpolate(hr, size=size, mode=mode, antialias=kind.endswith("_aa"), align_corners=False)
    lr = torch.round(lr.clamp(0.0, 1.0) * 255.0)  # 8-bit LR, as photos are stored
    q = None
    if draw_jpeg and rng.random() < (JPEG_P if jpeg_p is None else jpeg_p):
        q = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    elif not draw_jpeg:
        q = jpeg_quality
    if q is not None:
        img = jpeg(lr[0].permute(1, 2, 0).to(torch.uint8).numpy(), q)
        lr = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return lr / 255.0


class PatchSampler:
    """Random (LR, HR) training pairs from the training photos; deterministic given ``seed``."""

    def __init__(self, scale: int, patch: int, seed: int, photos: Sequence[tuple[str, float]] = TRAIN_PHOTOS,
                 margin: int = 4, mix: tuple[Sequence[float], float] | None = None):
        import torch

        self.scale, self.patch, self.margin = scale, patch, margin
        self.mix = mix
        self.rng = np.random.default_rng(seed)
        self.images = [torch.from_numpy(load_photo(n)).permute(2, 0, 1).float().div_(255.0) for n, _ in photos]
        w = np.array([wt for _, wt in photos], dtype=np.float64)
        self.weights = w / w.sum()

    def _hr_crop(self):
        import torch
        import torch.nn.functional as F

        r, m = self.scale, self.margin
        side = (self.patch + 2 * m) * r  # HR crop with an LR margin of m pixels on every side
        if self.rng.random() < SYNTHETIC_P:
            return self._colour_field(side)
        img = self.images[self.rng.choice(len(self.images), p=self.weights)]
        _, H, W = img.shape
        s = self.rng.uniform(0.5, 1.0)
        src = min(int(round(side / s)), H, W)
        y, x = self.rng.integers(0, H - src + 1), self.rng.integers(0, W - src + 1)
        crop = img[:, y:y + src, x:x + src][None]
        if src != side:
            crop = F.interpolate(crop, size=(side, side), mode="bicubic", antialias=True,
                                 align_corners=False).clamp_(0.0, 1.0)
        k = int(self.rng.integers(4))
        if k:
            crop = torch.rot90(crop, k, dims=(2, 3))
        if self.rng.random() < 0.5:
            crop = torch.flip(crop, dims=(3,))
        return self._colour_jitter(crop)

    def _colour_field(self, side: int):
        """A smooth random colour field reaching the corners of the RGB cube. A dozen photos do
        not cover it: without these, a QuickSRNet trained here was 20/255 off on a flat
        saturated cyan, where bicubic is exact."""
        import torch
        import torch.nn.functional as F

        k = int(self.rng.integers(2, 6))
        grid = torch.from_numpy(self.rng.random((1, 3, k, k)).astype(np.float32))
        grid = ((grid - 0.5) * float(self.rng.uniform(1.0, 3.0)) + 0.5).clamp_(0.0, 1.0)
        return F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=True).clamp_(0.0, 1.0)

    def _colour_jitter(self, crop):
        """Random channel order, saturation ×[0.5, 1.6] and, half the time, a per-channel tint.
        Without it a net learns the colour statistics of a dozen photos (and, from the greyscale
        ones, that R=G=B) and shifts saturated colours it never saw — a green circuit board came
        out teal, 6 dB below bicubic."""
        import torch

        crop = crop[:, torch.from_numpy(self.rng.permutation(3))]
        luma = (crop * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        crop = luma + float(self.rng.uniform(0.5, 1.6)) * (crop - luma)
        if self.rng.random() < 0.5:
            gain = torch.from_numpy(self.rng.uniform(0.6, 1.0, 3).astype(np.float32))
            offset = torch.from_numpy(self.rng.uniform(0.0, 1.0, 3).astype(np.float32)) * (1 - gain)
            crop = crop * gain.view(1, 3, 1, 1) + offset.view(1, 3, 1, 1)
        return crop.clamp_(0.0, 1.0)

    def _degrade(self, hr):
        p, jp = self.mix if self.mix is not None else (None, None)
        return degrade(hr, self.scale, self.rng, p=p, jpeg_p=jp)

    def batch(self, n: int):
        import torch

        r, m = self.scale, self.margin
        hrs, lrs = [], []
        for _ in range(n):
            hr = self._hr_crop()
            lr = self._degrade(hr)
            hrs.append(hr[:, :, m * r:-m * r, m * r:-m * r])
            lrs.append(lr[:, :, m:-m, m:-m])
        return torch.cat(lrs), torch.cat(hrs)


def _lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    lo = recipe.lr * recipe.min_lr_ratio
    return lo + 0.5 * (recipe.lr - lo) * (1.0 + math.cos(math.pi * t))


def build_for_training(name: str, init: Path | None = None):
    """The trainable module for zoo model ``name``: from scratch (SESR: the over-parameterised
    form), or starting from the weights file ``init`` (SESR: its deploy form, a plain conv net —
    the expanded weights cannot be recovered from collapsed ones)."""
    from edgekit.zoo import create
    from edgekit.zoo.registry import load_weights

    if init is not None:
        return load_weights(create(name), init)
    return create(name, training_form=True) if name.startswith("sesr") else create(name)


def to_deploy(model: Any) -> Any:
    return model.collapse() if hasattr(model, "collapse") else model


def train(name: str, recipe: Recipe, log_every: int = 100, init: Path | None = None) -> tuple[Any, float]:
    """Train zoo model ``name`` (from scratch, or fine-tune the weights file ``init``); returns
    (deploy-form model in eval mode, seconds spent)."""
    import torch

    losses = {"l1": torch.nn.functional.l1_loss, "l2": torch.nn.functional.mse_loss}
    if recipe.loss not in losses:
        raise UsageError(f"unknown loss '{recipe.loss}'", hint="use l1 or l2")
    loss_fn = losses[recipe.loss]
    torch.manual_seed(recipe.seed)
    model = build_for_training(name, init).train()
    scale = model.scale
    sampler = PatchSampler(scale, recipe.patch, recipe.seed, mix=_mixture_of(recipe))
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    t0 = time.perf_counter()
    running = 0.0
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe)
        lr_img, hr_img = sampler.batch(recipe.batch)
        loss = loss_fn(model(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        opt.step()
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            n = (step % log_every) + 1
            print(f"[{name}] step {step + 1}/{recipe.steps}  {recipe.loss.upper()} {running / n:.5f}  "
                  f"lr {_lr_at(step, recipe):.2e}  {time.perf_counter() - t0:.0f}s", flush=True)
            running = 0.0
    seconds = time.perf_counter() - t0
    return to_deploy(model.eval()).eval(), seconds


# ----------------------------------------------------------------------------------------- output


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_weights(model: Any, path: Path) -> str:
    from safetensors.torch import save

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    _write_atomic(path, save(state, metadata={"format": "pt"}))
    return sha256_file(path)


def _fmt_int(n: int) -> str:
    return f"{n:,}"


_MODEL_ORDER = ["espcn_x2", "quicksrnet_small_x2", "quicksrnet_medium_x2", "quicksrnet_large_x2", "sesr_m5_x2"]
_BICUBIC_NAMES = {"bicubic_pil": "PIL", "bicubic_opencv": "OpenCV"}
_MIX_NAMES = {"bicubic_aa": "antialiased bicubic", "bicubic": "bicubic without prefilter", "area": "area",
              "bilinear_aa": "antialiased bilinear", "bilinear": "bilinear without prefilter", "blur": "Gaussian blur"}


def load_records(out_dir: Path) -> list[dict[str, Any]]:
    """Every metrics record (``<out_dir>/*.json`` written by this script), in the zoo's order."""
    rows = []
    for p in sorted(out_dir.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("kind") == "edgekit-sr-metrics":
            rows.append(rec)
    rows.sort(key=lambda r: (_MODEL_ORDER.index(r["model"]) if r["model"] in _MODEL_ORDER else 99, r["model"]))
    return rows


def acceptance(record: dict[str, Any]) -> dict[str, float | None]:
    """RGB PSNR gain over bicubic (dB) per listed degradation, from a metrics record, recomputed
    from the model's and both bicubic kernels' mean PSNR (None where the record lacks it)."""
    out: dict[str, float | None] = {}
    for deg in EVAL_DEGRADATIONS:
        e = record.get("by_degradation", {}).get(deg)
        out[deg] = None if e is None else (
            e["model"]["psnr_rgb"] - max(e["bicubic_pil"]["psnr_rgb"], e["bicubic_opencv"]["psnr_rgb"]))
    return out


def _describe_mixture(mix: dict[str, Any]) -> str:
    parts = [f"{_MIX_NAMES.get(k, k)} {p:.0%}" for k, p in mix["downscale"].items()]
    text = "downscale by " + ", ".join(parts)
    if "blur" in mix["downscale"]:
        then = " or ".join(_MIX_NAMES.get(k, k) for k in mix.get("blur_then", ["area"]))
        lo, hi = mix["blur_sigma"]
        text += f" (blur: σ {lo:g}–{hi:g}, then {then})"
    if mix.get("jpeg_p"):
        lo, hi = mix["jpeg_quality"]
        text += f"; then JPEG at quality {lo}–{hi} for {mix['jpeg_p']:.0%} of the crops"
    return text


def _describe_stages(rec: dict[str, Any]) -> str:
    stages = _stages_of(rec)
    bits = []
    for i, st in enumerate(stages):
        if "recipe" not in st:
            bits.append(f"started from {st.get('note', 'given weights')} (sha256 {st['weights_sha256'][:12]}…)")
            continue
        r = st["recipe"]
        how = "from scratch" if st["init"] is None else (
            "fine-tuned from " + ("those weights" if i else "given weights") + f" (sha256 {st['init'][:12]}…)")
        bits.append(f"{r['steps']} steps {how}, {r.get('loss', 'l1').upper()} loss, batch {r['batch']} of {r['patch']}² LR patches, lr {r['lr']:g} "
                    f"(warm-up {r['warmup']}, cosine), seed {r['seed']}, {st.get('threads', 1)} CPU thread"
                    f"{'s' if st.get('threads', 1) != 1 else ''}, {st.get('train_seconds', 0.0) / 60:.1f} min; "
                    f"degradations: {_describe_mixture(st.get('mixture') or LEGACY_MIXTURE)}")
    return f"`{rec['model']}`: " + "; then ".join(bits) + "."


def render_results_md(rows: Sequence[dict[str, Any]]) -> str:
    """SR_RESULTS.md's text from the metrics records (a pure function of them)."""
    first = rows[0]["metrics"]
    degs = list(EVAL_DEGRADATIONS)
    gains = {r["model"]: acceptance(r) for r in rows}
    lines = [
        "# Super-resolution zoo: held-out results",
        "",
        "Generated by `python -m edgekit.zoo.train_sr` from the metrics records next to the weights "
        "(`edgekit/zoo/weights/<model>.json`) — do not edit by hand: `tests/zoo/test_sr_robustness.py` rebuilds it "
        "from them, compares, and checks the acceptance rule on them.",
        "",
        f"Held-out photos (never used in training): {', '.join(first['heldout'])} (scikit-image sample data). "
        f"Each HR photo (8-bit) → ×2 LR by one of the degradations below, 8-bit → upscaled by the model and by "
        f"bicubic, rounded to 8-bit. PSNR/SSIM (Gaussian 11×11, σ=1.5) on RGB in [0, 1] and on BT.601 luma Y, "
        f"{first['border']}-pixel border shaved, mean over the photos. For each degradation, bicubic is the "
        "better of PIL's (a=-0.5) and OpenCV's/torch's (a=-0.75) kernels by mean RGB PSNR on that degradation's "
        "LR images.",
        "",
        "## Acceptance rule",
        "",
        f"Every shipped ×2 model beats bicubic by at least **{ACCEPT_GAIN_DB} dB** of RGB PSNR (mean over the "
        f"held-out photos) under **each** of the {len(degs)} degradations below.",
        "",
        "| Model | Smallest gain (degradation) | Holds |",
        "|---|---:|:---:|",
    ]
    for r in rows:
        g = gains[r["model"]]
        missing = [d for d in degs if g[d] is None]
        if missing:
            lines.append(f"| `{r['model']}` | not measured: {', '.join(missing)} | no |")
            continue
        worst = min(degs, key=lambda d: g[d])
        lines.append(f"| `{r['model']}` | {g[worst]:+.2f} dB (`{worst}`) "
                     f"| {'yes' if g[worst] >= ACCEPT_GAIN_DB else '**no**'} |")
    held = [r["model"] for r in rows if all(v is not None and v >= ACCEPT_GAIN_DB for v in gains[r["model"]].values())]
    lines += ["", f"{len(held)} of {len(rows)} models meet the rule" + (
        "." if len(held) == len(rows) else "; the others fall short where the table says **no** (see the gains below).")]
    lines += ["", "## RGB PSNR by degradation (dB): model (gain over bicubic)", "",
              "| LR made by | Bicubic | " + " | ".join(f"`{r['model']}`" for r in rows) + " |",
              "|---|---:|" + "---:|" * len(rows)]
    for d in degs:
        ref = next((r["by_degradation"][d] for r in rows if d in r.get("by_degradation", {})), None)
        bic = "—" if ref is None else f"{ref[ref['bicubic']]['psnr_rgb']:.2f} ({_BICUBIC_NAMES[ref['bicubic']]})"
        cells = []
        for r in rows:
            e = r.get("by_degradation", {}).get(d)
            cells.append("—" if e is None else f"{e['model']['psnr_rgb']:.2f} (**{gains[r['model']][d]:+.2f}**)")
        lines.append(f"| `{d}` | {bic} | " + " | ".join(cells) + " |")
    lines += ["", "Degradations:", ""] + [f"- `{d}`: {text}" for d, text in EVAL_DEGRADATIONS.items()]
    lines += ["", "Gain in luma Y PSNR by degradation (dB):", "",
              "| Model | " + " | ".join(f"`{d}`" for d in degs) + " |", "|---|" + "---:|" * len(degs)]
    for r in rows:
        by = r.get("by_degradation", {})
        lines.append(f"| `{r['model']}` | " + " | ".join(
            f"{by[d]['gain_y_db']:+.2f}" if d in by else "—" for d in degs) + " |")
    lines += [
        "",
        f"## Headline: `{first['lr']}` LR (the model cards' metrics)",
        "",
        "MACs at a 1×3×360×640 input (torch FLOP counter / 2). Train time is wall clock on one thread of a "
        "2-core machine shared with other jobs, summed over the training stages.",
        "",
        "| Model | Params | MACs @640×360 | PSNR RGB / Y (dB) | SSIM RGB / Y | Bicubic PSNR RGB / Y (dB) "
        "| Bicubic SSIM RGB / Y | Gain RGB / Y (dB) | Train time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m = r["metrics"]
        lines.append(
            f"| `{r['model']}` | {_fmt_int(r['params'])} | {r['macs'] / 1e9:.2f} G "
            f"| {m['psnr_rgb']:.2f} / {m['psnr_y']:.2f} | {m['ssim_rgb']:.4f} / {m['ssim_y']:.4f} "
            f"| {m['bicubic_psnr_rgb']:.2f} / {m['bicubic_psnr_y']:.2f} "
            f"| {m['bicubic_ssim_rgb']:.4f} / {m['bicubic_ssim_y']:.4f} "
            f"| **{m['gain_rgb_db']:+.2f}** / {m['gain_y_db']:+.2f} | {r['train_seconds'] / 60:.1f} min |")
    lines += ["", f"Per photo (`{first['lr']}` LR), RGB PSNR model vs bicubic (dB):", "",
              "| Model | " + " | ".join(first["heldout"]) + " |",
              "|---|" + "---:|" * len(first["heldout"])]
    for r in rows:
        cells = []
        for p in r["metrics"]["heldout"]:
            e = r["per_photo"][p][first["lr"]]
            b = max(e["bicubic_pil"]["psnr_rgb"], e["bicubic_opencv"]["psnr_rgb"])
            cells.append(f"{e['model']['psnr_rgb']:.2f} vs {b:.2f}")
        lines.append(f"| `{r['model']}` | " + " | ".join(cells) + " |")
    lines += ["", "## Training", "",
              "Adam, gradient-norm clipping, random crops of the training photos (rescaled, flipped, "
              "rotated, colour-jittered; one in ten a synthetic colour field), each made LR by a draw of the "
              "stage's degradation mixture and quantised to 8 bits.", ""]
    lines += [f"- {_describe_stages(r)}" for r in rows]
    lines.append("")
    return "\n".join(lines)


def write_results_md(out_dir: Path, md_path: Path) -> Path:
    """Rebuild the Markdown tables from every ``<out_dir>/*.json`` this script wrote."""
    rows = load_records(out_dir)
    if not rows:
        raise UsageError("no SR metrics JSON to tabulate", where=out_dir, hint="train a model first")
    _write_atomic(md_path, render_results_md(rows).encode())
    return md_path


def _stages_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The training stages a metrics record describes, oldest first (a record written before
    stages were recorded had one, from scratch, on :data:`LEGACY_MIXTURE`)."""
    if "stages" in record:
        return list(record["stages"])
    if "recipe" not in record:
        return []
    return [{"init": None, "recipe": record["recipe"], "train_seconds": record.get("train_seconds", 0.0),
             "threads": record.get("threads", 1), "mixture": LEGACY_MIXTURE}]


def _round_floats(obj: Any, nd: int = 5) -> Any:
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: _round_floats(v, nd) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round_floats(v, nd) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgekit.zoo.train_sr", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="zoo SR model, e.g. espcn_x2, quicksrnet_small_x2, sesr_m5_x2")
    ap.add_argument("--steps", type=int, help="optimiser steps (default: the model's recipe in RECIPES)")
    ap.add_argument("--batch", type=int, help="patches per step")
    ap.add_argument("--patch", type=int, help="LR patch side")
    ap.add_argument("--lr", type=float, help="peak learning rate")
    ap.add_argument("--seed", type=int, help="random seed (data order, crops, init)")
    ap.add_argument("--degradation-p", metavar="P,P,...",
                    help="probabilities of the training downscales, in the order " + ",".join(DEGRADATIONS)
                         + " (default: the recipe's, else DEGRADATION_P); weight up a degradation the model lags on")
    ap.add_argument("--jpeg-p", type=float, help="share of training crops JPEG-compressed after the downscale")
    ap.add_argument("--loss", choices=("l1", "l2"), help="training loss (default: the recipe's, l1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest on a shared machine, and reproducible)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for <model>.safetensors and <model>.json")
    ap.add_argument("--results", type=Path, default=None,
                    help="Markdown table to rebuild (default: edgekit/zoo/SR_RESULTS.md, or OUT/SR_RESULTS.md with --out)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate OUT/<model>.safetensors, do not train")
    ap.add_argument("--finetune", action="store_true",
                    help="start from OUT/<model>.safetensors (the current weights) with the model's FINETUNE_RECIPES "
                         "entry, instead of training from scratch")
    ap.add_argument("--init", type=Path, help="start from this weights file (.safetensors/.pth) instead of from scratch")
    args = ap.parse_args(argv)

    try:
        import torch

        from edgekit.zoo import card, create
        from edgekit.zoo.registry import count_macs, count_params, load_weights
    except ImportError:
        raise MissingDependency("torch", "training the SR models", extra="convert") from None

    try:
        c = card(args.model)
        if c.task != "super-resolve":
            raise UsageError(f"'{args.model}' is a {c.task} model, not super-resolution", where=args.model)
        torch.set_num_threads(max(1, args.threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        out: Path = args.out
        md_path = args.results or (RESULTS_MD if out.resolve() == WEIGHTS_DIR.resolve() else out / "SR_RESULTS.md")
        weights_path = out / f"{args.model}.safetensors"
        json_path = out / f"{args.model}.json"
        overrides = {k: getattr(args, k) for k in ("steps", "batch", "patch", "lr", "seed", "jpeg_p", "loss")
                     if getattr(args, k) is not None}
        if args.degradation_p is not None:
            try:
                overrides["degradation_p"] = tuple(float(v) for v in args.degradation_p.split(","))
            except ValueError:
                raise UsageError(f"--degradation-p '{args.degradation_p}' is not a comma-separated list of numbers",
                                 hint="e.g. " + ",".join(f"{v:g}" for v in DEGRADATION_P)) from None
        init: Path | None = weights_path if args.finetune else args.init
        if args.finetune and args.init is not None:
            raise UsageError("--finetune and --init both name the starting weights", hint="pass one of them")
        if init is not None and not init.is_file():
            raise UsageError("no weights to start from", where=init, hint="train from scratch first (no --finetune)")
        base = FINETUNE_RECIPES if init is not None else RECIPES
        recipe = replace(base.get(args.model, Recipe()), **overrides)
        mixture(recipe)  # a bad mixture is a usage error before any work
        prev = json.loads(json_path.read_text()) if json_path.is_file() else {}

        if args.eval_only:
            model = load_weights(create(args.model), weights_path)
            sha = sha256_file(weights_path)
            stages = _stages_of(prev)
        else:
            stages = []
            if init is not None:
                init_sha = sha256_file(init)
                stages = _stages_of(prev) if prev.get("sha256") == init_sha else [
                    {"init": None, "weights_sha256": init_sha, "note": f"weights from {init.name}"}]
            model, seconds = train(args.model, recipe, init=init)
            sha = save_weights(model, weights_path)
            stages.append({"init": init_sha if init is not None else None, "recipe": asdict(recipe),
                           "train_seconds": round(seconds, 1), "threads": args.threads, "mixture": mixture(recipe)})
        deploy = create(args.model)
        deploy.load_state_dict(model.state_dict())
        res = evaluate(deploy, c.scale_factor or 2)
        record = {
            "kind": "edgekit-sr-metrics", "model": args.model, "weights": weights_path.name, "sha256": sha,
            "params": count_params(deploy), "macs": count_macs(deploy, torch.zeros(c.macs_input)),
            "macs_input": list(c.macs_input),
            "train_seconds": round(sum(st.get("train_seconds", 0.0) for st in stages), 1),
            "threads": max((st.get("threads", 1) for st in stages), default=args.threads),
            "recipe": stages[-1].get("recipe", asdict(recipe)) if stages else asdict(recipe), "stages": stages,
            "train_photos": [n for n, _ in TRAIN_PHOTOS],
            "metrics": res["main"], "by_degradation": res["by_degradation"], "per_photo": res["per_photo"],
            "torch": torch.__version__,
        }
        _write_atomic(json_path, (json.dumps(_round_floats(record), indent=1) + "\n").encode())
        write_results_md(out, md_path)
    except EdgekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    m = res["main"]
    print(f"{args.model}: held-out PSNR RGB {m['psnr_rgb']:.2f} dB (bicubic {m['bicubic_psnr_rgb']:.2f}, "
          f"gain {m['gain_rgb_db']:+.2f}); Y {m['psnr_y']:.2f} (bicubic {m['bicubic_psnr_y']:.2f}, "
          f"gain {m['gain_y_db']:+.2f}); SSIM RGB {m['ssim_rgb']:.4f} vs {m['bicubic_ssim_rgb']:.4f}")
    print(f"weights {weights_path} sha256 {sha}\nmetrics {json_path}\ntable {md_path}")
    print("card: weights=%r, weights_sha256=%r, metrics=%r" % (weights_path.name, sha, m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
