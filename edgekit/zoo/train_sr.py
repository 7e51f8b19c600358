"""Train and evaluate the zoo's super-resolution nets on real photographs, on CPU, in minutes.

    python -m edgekit.zoo.train_sr --model espcn_x2 [--steps N] [--seed 0] [--out DIR] [--eval-only]

Data: the photographs that ship inside scikit-image (``skimage/data``), read straight from
disk (no download). :data:`TRAIN_PHOTOS` are used for training; :data:`HELDOUT_PHOTOS`
(``coffee`` and the ``motorcycle_left``/``_right`` stereo pair — one scene, both views held
out) are never seen in training and are what the metrics are measured on.

Training: random HR crops, rescaled by a random factor in [0.5, 1] (more detail per crop,
scale diversity), flips, 90° rotations and colour jitter (channel order, saturation, tint);
one crop in ten is a smooth synthetic colour field instead (the photos do not cover the RGB
cube). Each crop is degraded to LR by one of: antialiased bicubic (PIL-style, half of the
crops), area averaging, antialiased bilinear, or a Gaussian blur then area averaging
(skimage-style); LR quantised to 8 bits. L1 loss, Adam, warm-up then cosine learning rate,
gradient-norm clipping, fixed seed, one CPU thread (bitwise reproducible on one machine).
SESR trains in its over-parameterised form (with the online collapse of Arm's reference
code) and is collapsed before saving.

Evaluation (what a reviewer does): the HR photo (8-bit) is downscaled ×r with PIL's bicubic
(antialiased), kept 8-bit, upscaled by the model and by bicubic; outputs rounded to 8 bits;
PSNR and SSIM (Gaussian 11×11, σ=1.5, Wang et al. 2004) on RGB in [0, 1] and on the BT.601
luma Y (MATLAB ``rgb2ycbcr``), shaving ``r`` pixels at each border. "Bicubic" is the better
(by mean RGB PSNR) of PIL's bicubic (a=-0.5) and OpenCV's/torch's (a=-0.75).

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
DEGRADATIONS = ("bicubic", "area", "bilinear", "gauss_area")
DEGRADATION_P = (0.5, 0.2, 0.15, 0.15)


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


def downscale(hr: np.ndarray, scale: int, method: str = "pil-bicubic") -> np.ndarray:
    """uint8 HR (HxWx3, sides multiples of ``scale``) → uint8 LR, as a user would make it:
    ``pil-bicubic`` (PIL resize, antialiased), ``skimage`` (``transform.resize`` with
    ``anti_aliasing=True``), ``area`` (mean of each scale×scale block)."""
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if method == "pil-bicubic":
        from PIL import Image

        return np.asarray(Image.fromarray(hr).resize((w, h), Image.BICUBIC))
    if method == "skimage":
        from skimage.transform import resize

        lr = resize(hr.astype(np.float64) / 255.0, (h, w), anti_aliasing=True)
        return np.clip(np.round(lr * 255.0), 0, 255).astype(np.uint8)
    if method == "area":
        blocks = hr[:h * scale, :w * scale].astype(np.float64).reshape(h, scale, w, scale, 3)
        return np.clip(np.round(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)
    raise UsageError(f"unknown degradation '{method}'", hint="use pil-bicubic, skimage or area")


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
             degradations: Sequence[str] = ("pil-bicubic", "skimage", "area")) -> dict[str, Any]:
    """Held-out scores of ``model`` and of bicubic, per photo and per LR degradation.

    Returns ``{"main": {...means for pil-bicubic LR...}, "per_photo": ..., "by_degradation": ...}``.
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
        "bicubic": "PIL (a=-0.5)" if m["bicubic"] == "bicubic_pil" else "OpenCV (a=-0.75)",
        "heldout": list(photos), "lr": degradations[0], "border": scale,
    }
    return {"main": main_scores, "per_photo": per_photo, "by_degradation": by_deg}


# --------------------------------------------------------------------------------------- training


class PatchSampler:
    """Random (LR, HR) training pairs from the training photos; deterministic given ``seed``."""

    def __init__(self, scale: int, patch: int, seed: int, photos: Sequence[tuple[str, float]] = TRAIN_PHOTOS,
                 margin: int = 4):
        import torch

        self.scale, self.patch, self.margin = scale, patch, margin
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
        import torch
        import torch.nn.functional as F

        r = self.scale
        kind = DEGRADATIONS[self.rng.choice(len(DEGRADATIONS), p=DEGRADATION_P)]
        size = (hr.shape[2] // r, hr.shape[3] // r)
        if kind == "bicubic":
            lr = F.interpolate(hr, size=size, mode="bicubic", antialias=True, align_corners=False)
        elif kind == "bilinear":
            lr = F.interpolate(hr, size=size, mode="bilinear", antialias=True, align_corners=False)
        else:
            if kind == "gauss_area":
                sigma = self.rng.uniform(0.3, 0.8)
                x = torch.arange(-3, 4, dtype=torch.float32)
                g = torch.exp(-x ** 2 / (2 * sigma ** 2))
                g = (g / g.sum()).view(1, 1, 1, 7).repeat(3, 1, 1, 1)
                hr = F.conv2d(F.pad(hr, (3, 3, 0, 0), mode="reflect"), g, groups=3)
                hr = F.conv2d(F.pad(hr, (0, 0, 3, 3), mode="reflect"), g.transpose(2, 3), groups=3)
            lr = F.avg_pool2d(hr, r)
        return torch.round(lr.clamp(0.0, 1.0) * 255.0) / 255.0  # 8-bit LR, as photos are stored

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


def build_for_training(name: str):
    """The trainable module for zoo model ``name`` (SESR: the over-parameterised form)."""
    from edgekit.zoo import create

    return create(name, training_form=True) if name.startswith("sesr") else create(name)


def to_deploy(model: Any) -> Any:
    return model.collapse() if hasattr(model, "collapse") else model


def train(name: str, recipe: Recipe, log_every: int = 100) -> tuple[Any, float]:
    """Train zoo model ``name``; returns (deploy-form model in eval mode, seconds spent)."""
    import torch

    torch.manual_seed(recipe.seed)
    model = build_for_training(name).train()
    scale = model.scale
    sampler = PatchSampler(scale, recipe.patch, recipe.seed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    t0 = time.perf_counter()
    running = 0.0
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, recipe)
        lr_img, hr_img = sampler.batch(recipe.batch)
        loss = torch.nn.functional.l1_loss(model(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad)
        opt.step()
        running += loss.item()
        if (step + 1) % log_every == 0 or step + 1 == recipe.steps:
            n = (step % log_every) + 1
            print(f"[{name}] step {step + 1}/{recipe.steps}  L1 {running / n:.5f}  "
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


def write_results_md(out_dir: Path, md_path: Path) -> Path:
    """Rebuild the Markdown table from every ``<out_dir>/*.json`` this script wrote."""
    rows = []
    for p in sorted(out_dir.glob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("kind") != "edgekit-sr-metrics":
            continue
        rows.append(rec)
    if not rows:
        raise UsageError("no SR metrics JSON to tabulate", where=out_dir, hint="train a model first")
    order = ["espcn_x2", "quicksrnet_small_x2", "quicksrnet_medium_x2", "quicksrnet_large_x2", "sesr_m5_x2"]
    rows.sort(key=lambda r: (order.index(r["model"]) if r["model"] in order else 99, r["model"]))
    first = rows[0]["metrics"]
    lines = [
        "# Super-resolution zoo: held-out results",
        "",
        "Generated by `python -m edgekit.zoo.train_sr` — do not edit by hand.",
        "",
        f"Held-out photos (never used in training): {', '.join(first['heldout'])} (scikit-image sample data). "
        f"HR photo → ×2 LR with PIL's antialiased bicubic, 8-bit → upscaled by the model and by bicubic, "
        f"rounded to 8-bit. PSNR/SSIM (Gaussian 11×11, σ=1.5) on RGB in [0, 1] and on BT.601 luma Y, "
        f"{first['border']}-pixel border shaved, mean over the photos. Bicubic is the better of PIL (a=-0.5) "
        "and OpenCV/torch (a=-0.75) by RGB PSNR. MACs at a 1×3×360×640 input (torch FLOP counter / 2). "
        "Train time is wall clock on one thread of a 2-core machine shared with other jobs.",
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
            f"| **+{m['gain_rgb_db']:.2f}** / +{m['gain_y_db']:.2f} | {r['train_seconds'] / 60:.1f} min |")
    lines += ["", "Gain over bicubic (RGB PSNR, dB) for other ways of making the LR image:", "",
              "| Model | " + " | ".join(rows[0]["by_degradation"]) + " |",
              "|---|" + "---:|" * len(rows[0]["by_degradation"])]
    for r in rows:
        lines.append(f"| `{r['model']}` | " + " | ".join(
            f"{v['gain_rgb_db']:+.2f}" for v in r["by_degradation"].values()) + " |")
    lines += ["", "Per photo (PIL-bicubic LR), RGB PSNR model vs bicubic (dB):", "",
              "| Model | " + " | ".join(first["heldout"]) + " |",
              "|---|" + "---:|" * len(first["heldout"])]
    for r in rows:
        cells = []
        for p in r["metrics"]["heldout"]:
            e = r["per_photo"][p]["pil-bicubic"]
            b = max(e["bicubic_pil"]["psnr_rgb"], e["bicubic_opencv"]["psnr_rgb"])
            cells.append(f"{e['model']['psnr_rgb']:.2f} vs {b:.2f}")
        lines.append(f"| `{r['model']}` | " + " | ".join(cells) + " |")
    lines += ["", "Training: " + "; ".join(
        f"`{r['model']}` {r['recipe']['steps']} steps × batch {r['recipe']['batch']} of "
        f"{r['recipe']['patch']}² LR patches, lr {r['recipe']['lr']:g}, seed {r['recipe']['seed']}, "
        f"{r['threads']} CPU thread{'s' if r['threads'] != 1 else ''}" for r in rows) + ".", ""]
    _write_atomic(md_path, "\n".join(lines).encode())
    return md_path


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
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest on a shared machine, and reproducible)")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for <model>.safetensors and <model>.json")
    ap.add_argument("--results", type=Path, default=None,
                    help="Markdown table to rebuild (default: edgekit/zoo/SR_RESULTS.md, or OUT/SR_RESULTS.md with --out)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate OUT/<model>.safetensors, do not train")
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
        overrides = {k: getattr(args, k) for k in ("steps", "batch", "patch", "lr", "seed") if getattr(args, k) is not None}
        recipe = replace(RECIPES.get(args.model, Recipe()), **overrides)

        if args.eval_only:
            model = load_weights(create(args.model), weights_path)
            prev = json.loads(json_path.read_text()) if json_path.is_file() else {}
            seconds = float(prev.get("train_seconds", 0.0))
            recipe = Recipe(**prev["recipe"]) if "recipe" in prev else recipe
            threads = prev.get("threads", args.threads)
            sha = sha256_file(weights_path)
        else:
            model, seconds = train(args.model, recipe)
            sha = save_weights(model, weights_path)
            threads = args.threads
        deploy = create(args.model)
        deploy.load_state_dict(model.state_dict())
        res = evaluate(deploy, c.scale_factor or 2)
        record = {
            "kind": "edgekit-sr-metrics", "model": args.model, "weights": weights_path.name, "sha256": sha,
            "params": count_params(deploy), "macs": count_macs(deploy, torch.zeros(c.macs_input)),
            "macs_input": list(c.macs_input), "train_seconds": round(seconds, 1), "threads": threads,
            "recipe": asdict(recipe), "train_photos": [n for n, _ in TRAIN_PHOTOS],
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
