"""Stand-in models and clips for the demo tests, built with the tools users convert with.

- ``nearest_sr``: conv 3→12 (centre taps only) → pixel shuffle ×2, so the model computes exactly
  a nearest-neighbour ×2 upscale: tests can check the demo's pre- and post-processing (colour
  order, layout, value range) number by number. Input ``1x3x240x320`` → ``1x3x480x640``.
- ``colour_classifier``: normalise → global mean → linear, five classes (``red``, ``green``,
  ``blue``, ``dark``, ``bright``): a red frame must come out ``red`` if colour order and
  normalisation are right. Input ``1x3x64x64`` (square: the demo centre-crops 4:3 frames).
- ``busy_sr``: four 3x3 convs (32 channels) added with weight 1e-3 to the input of the
  nearest-SR head — about the work of quicksrnet_small_x2, for timing the pipeline (a weight of
  exactly 0 would let the TFLite converter fold the body away).

Each is exported with ``torch.onnx.export(dynamo=True)`` and ``litert_torch.convert`` into a
bundle folder with a hand-written ``edgekit.json`` (:mod:`edgekit.bundle`). Clips are written
with ``cv2.VideoWriter`` (mp4v).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from quiet import quiet

COLOUR_LABELS = ["red", "green", "blue", "dark", "bright"]
CLS_MEAN = [0.5, 0.5, 0.5]
CLS_STD = [0.25, 0.25, 0.25]


def _nearest_head(torch, cin: int, scale: int = 2):
    """conv cin→3·s² whose output channel c·s²+k copies input channel c: pixel shuffle then
    gives the nearest-neighbour upscale of the first three input channels."""
    conv = torch.nn.Conv2d(cin, 3 * scale * scale, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(3):
            for k in range(scale * scale):
                conv.weight[c * scale * scale + k, c, 1, 1] = 1.0
    return conv


def torch_models():
    import torch

    torch.manual_seed(0)

    class NearestSR(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = _nearest_head(torch, 3)
            self.shuffle = torch.nn.PixelShuffle(2)

        def forward(self, x):
            return self.shuffle(self.head(x))

    class BusySR(torch.nn.Module):
        """Real work (convs of 32 channels, ~quicksrnet_small's MACs), output close to nearest-SR."""

        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(32, 3, 3, padding=1))
            self.head = _nearest_head(torch, 3)
            self.shuffle = torch.nn.PixelShuffle(2)
            self.mix = torch.nn.Parameter(torch.full((1,), 1e-3), requires_grad=False)

        def forward(self, x):
            return self.shuffle(self.head(x + self.mix * self.body(x)))

    class ColourClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            w = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1 / 3] * 3, [1 / 3] * 3])
            self.fc = torch.nn.Linear(3, 5)
            with torch.no_grad():
                self.fc.weight.copy_(w)
                self.fc.bias.zero_()

        def forward(self, x):
            return self.fc(x.mean(dim=(2, 3)))

    return {
        "nearest_sr": (NearestSR().eval(), (1, 3, 240, 320)),
        "busy_sr": (BusySR().eval(), (1, 3, 240, 320)),
        "colour_classifier": (ColourClassifier().eval(), (1, 3, 64, 64)),
    }


def build_bundle(name: str, out: Path, formats=("onnx", "tflite")) -> Path:
    """Export stand-in ``name`` into bundle folder ``out`` (model.onnx, model.tflite, edgekit.json)."""
    import torch

    from edgekit.bundle import Manifest, write_manifest

    model, shape = torch_models()[name]
    out.mkdir(parents=True, exist_ok=True)
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    is_sr = name.endswith("_sr")
    in_name, out_name = "image", ("upscaled" if is_sr else "logits")  # ONNX names; TFLite picks its own
    artifacts = []
    with quiet():
        if "onnx" in formats:
            path = out / "model.onnx"
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=[in_name], output_names=[out_name],
                              external_data=False)
            artifacts.append(_artifact(path, "onnx", "NCHW" if is_sr else "NC"))
        if "tflite" in formats:
            import litert_torch

            path = out / "model.tflite"
            litert_torch.convert(model, (x,)).export(str(path))
            artifacts.append(_artifact(path, "tflite", "NCHW" if is_sr else "NC"))
    if is_sr:
        pre = {"layout": "NCHW", "color_order": "RGB", "value_range": [0.0, 1.0], "scale_factor": 2,
               "input_size": list(shape[2:])}
        task = "super-resolve"
    else:
        pre = {"layout": "NCHW", "color_order": "RGB", "value_range": [0.0, 1.0], "mean": CLS_MEAN, "std": CLS_STD,
               "input_size": list(shape[2:]), "labels": COLOUR_LABELS}
        task = "classify"
    write_manifest(out, Manifest(name=name, task=task, source={"kind": "module", "ref": f"demo_standins:{name}"},
                                 preprocess=pre, artifacts=artifacts))
    return out


def _artifact(path: Path, fmt: str, out_layout: str):
    """The manifest entry of an exported file, with the tensor names and shapes the file has."""
    import edgekit
    from edgekit.bundle import Artifact, sha256_file
    from edgekit.runtimes.base import TensorSpec

    with edgekit.load(path, threads=1) as s:
        ins = [TensorSpec(t.name, t.shape, t.dtype, "NCHW") for t in s.inputs]
        outs = [TensorSpec(t.name, t.shape, t.dtype, out_layout) for t in s.outputs]
    return Artifact(path.name, fmt, ins, outs, verification={"status": "passed", "reason": "stand-in"},
                    size_bytes=path.stat().st_size, sha256=sha256_file(path))


def write_clip(path: Path, frames: int = 20, size=(320, 240), fps: float = 30.0) -> Path:
    """A clip of ``frames`` frames: a photo panning under a moving coloured square (mp4v)."""
    import cv2

    from edgekit.assets import load_photo

    w, h = size
    photo = cv2.cvtColor(load_photo("coffee"), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "cv2.VideoWriter cannot write mp4v here"
    for i in range(frames):
        x0 = (i * 5) % max(1, photo.shape[1] - w)
        img = np.ascontiguousarray(photo[:h, x0:x0 + w]) if photo.shape[0] >= h and photo.shape[1] >= w + x0 \
            else cv2.resize(photo, (w, h))
        cv2.rectangle(img, (10 + 6 * i, 20), (50 + 6 * i, 60), (40, 40, 230), -1)
        writer.write(img)
    writer.release()
    return path


def demo_env(**extra: str) -> dict[str, str]:
    """Environment for demo subprocesses: no display (headless), repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "EDGEKIT_DEBUG")}
    env.update(extra)
    return env
