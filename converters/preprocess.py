"""Folding pre-processing into the model (``--fold-preprocess``): an explicit option, never a default.

Without folding, every artifact takes exactly the tensor its source takes. With folding,
the artifact takes raw pixels: float32 values in ``[0, 255]``, RGB, in the layout asked for
(NCHW by default, or NHWC). A small module is prepended in PyTorch, before export, so all
three formats get the same graph::

    pixels (0..255, RGB, NCHW|NHWC)
      └─ permute NHWC→NCHW        (only when the input layout is NHWC)
      └─ flip channels RGB→BGR    (only when the source wants BGR)
      └─ x * a + b                a = (hi - lo) / 255 / std,  b = (lo - mean) / std
      └─ source model

which is ``((x / 255) * (hi - lo) + lo - mean) / std`` per channel, the normalisation of the
model card, written as one multiply and one add (equal to the step-by-step form up to float
rounding, ≤ 1 ulp). CoreML artifacts take an ``ImageType`` instead: CoreML decodes the image to
a 0..255 NCHW tensor in the source's colour order (``color_layout``), with ``scale=1`` and
``bias=0``, and the same multiply-add runs in the graph — per-channel ``std`` cannot be
expressed by ImageType's single ``scale``, so keeping the affine in-graph is what is exact.

Example::

    >>> spec = FoldSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    >>> spec.to_manifest()["folded"]
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import UsageError
from edgekit.preprocess import Preprocess

__all__ = ["FoldSpec", "fold_module", "normalise"]


@dataclass(frozen=True)
class FoldSpec:
    """What is folded: the source's normalisation and what the artifact takes instead.

    ``value_range`` is the range the source expects before ``mean``/``std`` (``(0, 1)`` for
    most models); ``mean``/``std`` may be None (value range only, e.g. SR nets).
    ``color_order`` is the order the *source* wants; the artifact always takes RGB.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    color_order: str = "RGB"
    input_layout: str = "NCHW"

    @classmethod
    def from_preprocess(cls, p: dict[str, Any], input_layout: str = "NCHW") -> "FoldSpec":
        """The normalisation a model card's (or manifest's) ``preprocess`` describes."""
        return cls(mean=tuple(p["mean"]) if p.get("mean") is not None else None,
                   std=tuple(p["std"]) if p.get("std") is not None else None,
                   value_range=tuple(p.get("value_range") or (0.0, 1.0)),
                   color_order=p.get("color_order", "RGB"), input_layout=input_layout)

    def source_spec(self, channels: int = 3) -> Preprocess:
        """The :class:`edgekit.preprocess.Preprocess` of what the source takes (NCHW float32):
        the one definition of the normalisation that is folded here."""
        return Preprocess(layout="NCHW", channels=channels, dtype="float32", color_order=self.color_order.upper(),
                          value_range=tuple(float(v) for v in self.value_range), mean=self.mean, std=self.std,
                          output_range=tuple(float(v) for v in self.value_range))

    def affine(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(a, b)`` in float64 such that ``source_input = pixels * a + b``
        (:meth:`edgekit.preprocess.Preprocess.affine`, with the pixels in the source's colour order)."""
        try:
            return self.source_spec(channels).affine()
        except UsageError as e:
            raise ValueError(e.message) from None

    @property
    def swaps_channels(self) -> bool:
        return self.color_order.upper() == "BGR"

    def to_manifest(self) -> dict[str, Any]:
        return {
            "folded": True,
            "input_value_range": [0, 255],
            "input_color_order": "RGB",
            "input_layout": self.input_layout,
            "folded_ops": [op for op, on in (
                ("permute NHWC->NCHW", self.input_layout == "NHWC"),
                ("flip RGB->BGR", self.swaps_channels),
                ("scale 0..255 to value_range", True),
                ("subtract mean, divide by std", self.mean is not None or self.std is not None),
            ) if on],
        }


def fold_module(module: Any, spec: FoldSpec, channels: int, *, for_image_input: bool = False) -> Any:
    """``module`` with the pre-processing of ``spec`` prepended (a new module; ``module`` is
    shared, not copied or changed). ``for_image_input`` builds the CoreML variant: no permute
    and no flip (CoreML's ImageType delivers NCHW in the source's colour order)."""
    import torch

    a, b = spec.affine(channels)

    class FoldedPreprocess(torch.nn.Module):
        """pixels (0..255) → the tensor the source model takes, then the source model."""

        def __init__(self) -> None:
            super().__init__()
            self.model = module
            self.register_buffer("scale", torch.tensor(a, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("shift", torch.tensor(b, dtype=torch.float32).view(1, -1, 1, 1))
            self.nhwc = spec.input_layout == "NHWC" and not for_image_input
            self.flip = spec.swaps_channels and not for_image_input

        def forward(self, pixels: torch.Tensor):
            x = pixels.permute(0, 3, 1, 2) if self.nhwc else pixels
            if self.flip:
                x = torch.flip(x, dims=[1])
            return self.model(x * self.scale + self.shift)

    return FoldedPreprocess().eval()


def normalise(pixels_nchw_rgb: np.ndarray, spec: FoldSpec) -> np.ndarray:
    """What the source takes for RGB pixels (N, C, H, W, 0..255): steps 4–6 of
    :mod:`edgekit.preprocess` per image (the reference the folded artifact is verified against)."""
    src = spec.source_spec(pixels_nchw_rgb.shape[1])
    px = np.asarray(pixels_nchw_rgb)
    if px.dtype != np.uint8:
        if np.any(px != np.rint(px)) or px.min(initial=0) < 0 or px.max(initial=0) > 255:
            raise ValueError("pixels must be integers in 0..255")
        px = px.astype(np.uint8)
    return np.concatenate([src.encode(np.ascontiguousarray(img.transpose(1, 2, 0))) for img in px])
