"""Make the torchvision reference data that ``tests/zoo/test_mobilenet.py`` checks edgekit's
MobileNetV2/V3 against. Run once, by hand; torchvision is NOT a dependency of edgekit or its tests.

What it writes to ``tests/data/torchvision_ref/``:

- ``<model>.safetensors``: a torchvision state dict (torchvision's own keys and shapes) for a
  small config (``width_mult=0.25``, ``num_classes=10``), initialised by torchvision under
  ``torch.manual_seed(SEED)``; then (seeded) its BatchNorm scales and shifts, its conv biases and
  its linear layers are randomised and the BatchNorm running statistics are measured on the
  reference images (plus their mirror images), so that eval-mode BatchNorm is not the identity
  (its ``eps`` matters), the SE biases are not zero, and the logits are O(1) and differ between
  inputs. Every float is rounded to a float16-representable value *before* the reference
  logits are computed and stored as float16 (half the bytes, no loss: loading casts back exactly).
- ``reference.safetensors``: ``input_uint8`` (2x3x224x224: a photo from ``skimage.data`` and seeded
  noise, as 8-bit RGB) and ``<model>.logits``, torchvision's float32 logits for that input after
  ``/255`` and ImageNet mean/std normalisation.
- ``reference.json``: versions, seeds, configs, the sha256 of each weight file, and the ordered
  state-dict keys and shapes of full-size torchvision models (default config, and a few other
  widths / class counts / ``reduced_tail``), checked key by key against edgekit's modules.

How it was run (torchvision 0.28.0 is the release built against torch 2.13; its wheel's compiled
ops do not load against the CPU torch, but the model definitions are pure Python, so
``torch.library.register_fake`` is stubbed while ``torchvision`` imports)::

    pip download --no-deps torchvision==0.28.0 -d /tmp/tv
    PY=$(readlink -f /work/main/.venv/bin/python) && $PY -m venv /tmp/tvenv
    # the throwaway venv sees the project's packages (torch, numpy, safetensors, scikit-image)
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/tvenv/lib/python3.11/site-packages/main.pth
    /tmp/tvenv/bin/pip install --no-deps /tmp/tv/torchvision-0.28.0-*.whl
    /tmp/tvenv/bin/python tests/data/make_torchvision_reference.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("torchvision_ref")
SEED = 20240601
SMALL_CFG = {"width_mult": 0.25, "num_classes": 10}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
# configs whose full state-dict layout (keys, shapes) is recorded
LAYOUT_CFGS = {
    "mobilenet_v2": [{}, {"width_mult": 0.75, "num_classes": 10}, {"width_mult": 1.4}],
    "mobilenet_v3_small": [{}, {"width_mult": 0.75, "num_classes": 10}, {"reduced_tail": True}],
    "mobilenet_v3_large": [{}, {"width_mult": 0.75, "num_classes": 10}, {"reduced_tail": True}],
}


def import_torchvision():
    import torch.library

    real = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # skip torchvision's C++ op metas
    try:
        import torchvision
        import torchvision.models as tvm
    finally:
        torch.library.register_fake = real
    return torchvision, tvm


def reference_images() -> np.ndarray:
    """2x3x224x224 uint8 RGB: skimage's astronaut photo (512x512, area-downscaled) and uniform noise."""
    import skimage.data
    import skimage.transform

    photo = skimage.transform.resize(skimage.data.astronaut(), (224, 224), anti_aliasing=True)
    photo = np.clip(np.round(photo * 255), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    noise = np.random.default_rng(SEED).integers(0, 256, size=(3, 224, 224), dtype=np.uint8)
    return np.stack([photo, noise])


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Randomise what torchvision initialises to constants (conv biases, linear layers, BN affine)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            with torch.no_grad():
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, torch.nn.Linear):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def calibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running mean/var to the statistics of ``x`` (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
        m.num_batches_tracked.fill_(1000)


def round_to_float16(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    from safetensors.torch import save_file

    torchvision, tvm = import_torchvision()
    OUT.mkdir(exist_ok=True)
    images = reference_images()
    x = torch.from_numpy(images).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)

    tensors: dict[str, torch.Tensor] = {"input_uint8": torch.from_numpy(images)}
    meta: dict = {
        "made_by": "tests/data/make_torchvision_reference.py",
        "torchvision": torchvision.__version__, "torch": torch.__version__, "seed": SEED,
        "input": "input_uint8 / 255, then (x - mean) / std", "mean": MEAN, "std": STD,
        "models": {}, "layouts": {},
    }
    for i, name in enumerate(MODELS):
        torch.manual_seed(SEED + i)
        model = getattr(tvm, name)(**SMALL_CFG)
        randomise(model, SEED + 100 + i)
        calibrate_batchnorm(model, torch.cat([x, x.flip(-1)]))
        round_to_float16(model)
        with torch.no_grad():
            logits = model(x)
        weights = OUT / f"{name}.safetensors"
        save_file({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, str(weights))
        tensors[f"{name}.logits"] = logits.contiguous()
        meta["models"][name] = {
            "config": SMALL_CFG, "weights": weights.name, "weights_sha256": sha256(weights),
            "logits_absmax": float(logits.abs().max()), "argmax": logits.argmax(1).tolist(),
        }
        meta["layouts"][name] = []
        for cfg in LAYOUT_CFGS[name]:
            full = getattr(tvm, name)(**cfg)
            meta["layouts"][name].append({
                "config": cfg,
                "params": sum(p.numel() for p in full.parameters()),
                "state_dict": [[k, list(v.shape)] for k, v in full.state_dict().items()],
            })
        print(f"{name}: logits absmax {meta['models'][name]['logits_absmax']:.3f}, "
              f"argmax {meta['models'][name]['argmax']}, {weights.stat().st_size / 1e3:.0f} kB")
    save_file(tensors, str(OUT / "reference.safetensors"))
    (OUT / "reference.json").write_text(_dump(meta) + "\n")


def _dump(meta: dict) -> str:
    """JSON with one state-dict entry per line (readable diffs, modest size)."""
    text = json.dumps(meta, indent=1)
    # collapse the innermost [key, [shape]] pairs onto one line
    import re

    return re.sub(r"\[\n\s+(\"[^\"]+\"),\n\s+\[([^\]]*)\]\n\s+\]",
                  lambda m: "[" + m.group(1) + ", [" + ", ".join(s.strip() for s in m.group(2).split(",") if s.strip())
                  + "]]", text)


if __name__ == "__main__":
    sys.exit(main())
