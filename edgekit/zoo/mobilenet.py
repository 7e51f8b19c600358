"""MobileNet V1, V2 and V3 image classifiers.

- V1: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
  Applications" (https://arxiv.org/abs/1704.04861). A 3x3 stem and 13 depthwise-separable blocks
  (3x3 depthwise + 1x1 pointwise, each with BatchNorm and ReLU6), global average pool, one linear
  layer: 28 layers, 4.2 M parameters, 569 M multiply-adds at 224x224.
- V2: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
  (https://arxiv.org/abs/1801.04381). Inverted residual blocks: 1x1 expand (ReLU6), 3x3
  depthwise (ReLU6), 1x1 linear projection, a shortcut when shapes allow it.
- V3: Howard et al. 2019, "Searching for MobileNetV3" (https://arxiv.org/abs/1905.02244). V2's
  blocks found by architecture search, with squeeze-and-excitation (ReLU, then hard-sigmoid) in
  some blocks, hard-swish in the deeper half, and a cheaper head (pool before the last 1x1s).

The V2 and V3 modules are laid out like torchvision's: their ``state_dict()`` has the same keys
and shapes (``features.1.conv.0.0.weight``, ``features.4.block.2.fc1.weight``,
``classifier.3.weight``...), so a torchvision checkpoint loads without renaming a key and gives
the same logits, without depending on torchvision. V1 has no torchvision counterpart; its layout is
``features.0`` (stem), ``features.{1..13}.dw``/``.pw`` and ``classifier.1``.

Every model takes RGB float NCHW, the image scaled to [0, 1] and then normalised with the ImageNet
mean and std (the model itself does not normalise, like torchvision's), and returns logits (N, C).

Example::

    >>> from edgekit import zoo
    >>> net = zoo.create("mobilenet_v2", weights="mobilenet_v2-b0353104.pth")  # doctest: +SKIP
    >>> (x,) = zoo.example_inputs("mobilenet_v2")
    >>> zoo.create("mobilenet_v3_small", num_classes=10)(x).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import torch
from torch import nn

from edgekit.errors import ZooError
from edgekit.zoo.registry import ModelCard, register_model

__all__ = [
    "MobileNetV1", "MobileNetV2", "MobileNetV3", "IMAGENET_MEAN", "IMAGENET_STD", "imagenet_labels",
    "make_divisible", "normalize", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SHAPE = (1, 3, 224, 224)


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (at least ``min_value``),
    going up one step when rounding lost more than 10 %.

    This is the rule the reference MobileNet V2/V3 implementations apply to ``width_mult``; using
    the same rule is what makes the channel counts (and so the state-dict shapes) agree with them.
    Multiples of 8 also suit the SIMD and NPU kernels these models target.
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias, "same" padding) → BatchNorm2d → optional activation.

    Children are numbered ``0`` (conv), ``1`` (norm), ``2`` (activation), as in torchvision's
    ``Conv2dNormActivation``, so the state-dict keys read ``<name>.0.weight``, ``<name>.1.running_var``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU6, bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


def _init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions, unit BatchNorm, small normal linear layers: the usual
    initialisation for training these nets from scratch."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _check_config(name: str, width_mult: float, num_classes: int, dropout: float) -> None:
    if not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ZooError(f"width_mult must be a positive number, got {width_mult!r}", where=name,
                       hint="typical values are 0.25, 0.5, 0.75, 1.0")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ZooError(f"num_classes must be a positive integer, got {num_classes!r}", where=name)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ZooError(f"dropout must be in [0, 1), got {dropout!r}", where=name)


# ---------------------------------------------------------------------------------------------
# MobileNetV1
# ---------------------------------------------------------------------------------------------

# (output channels, stride) of the 13 depthwise-separable blocks (Howard et al. 2017, Table 1).
_V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


class DepthwiseSeparable(nn.Module):
    """A 3x3 depthwise conv (one filter per channel, carries the stride) then a 1x1 pointwise conv
    that mixes channels, each followed by BatchNorm and ReLU6: ~8-9x fewer multiply-adds than a
    full 3x3 conv (Howard et al. 2017, section 3.1)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.dw = ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch)
        self.pw = ConvBNAct(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNetV1 (Howard et al. 2017). ``width_mult`` is the paper's width multiplier alpha,
    applied to every layer and rounded with :func:`make_divisible`; that matches alpha·channels
    exactly for the paper's 1.0/0.75/0.5/0.25. ReLU6 as in the TensorFlow reference model (the
    paper says ReLU; the bounded form quantises better)."""

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        _check_config("mobilenet_v1", width_mult, num_classes, dropout)
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, stride=2)]
        for out, stride in _V1_BLOCKS:
            out = make_divisible(out * width_mult)
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------------------------

# (expansion t, output channels c, repeats n, first stride s) (Sandler et al. 2018, Table 2).
_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand to ``t``·in channels (ReLU6; skipped when t = 1), 3x3
    depthwise (ReLU6, carries the stride), 1x1 *linear* projection (no activation: the
    "linear bottleneck", Sandler et al. 2018, section 3.2), plus the input when stride 1 and the
    channel count is unchanged. Its children live in ``conv`` (torchvision's key names)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(in_ch * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), torchvision's state-dict layout.

    ``width_mult`` scales every layer (rounded to multiples of 8); the last 1x1 conv keeps 1280
    channels below width 1.0 and grows above it, as in the paper (section 6.1).
    """

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        _check_config("mobilenet_v2", width_mult, num_classes, dropout)
        channels = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, stride=2)]
        for t, c, n, s in _V2_STAGES:
            out = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(ConvBNAct(channels, last, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------
# MobileNetV3
# ---------------------------------------------------------------------------------------------

# One row per bottleneck (Howard et al. 2019, Tables 1 and 2):
# (kernel, expanded channels, output channels, squeeze-excite, hard-swish (else ReLU), stride).
_V3_LARGE: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)
_V3_SMALL: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)
# stem channels and the width of the hidden classifier layer
_V3_HEAD = {"large": (16, 1280), "small": (16, 1024)}
_V3_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) as MobileNetV3 uses it: global average pool, 1x1
    conv down to ``squeeze`` channels (ReLU), 1x1 conv back up, hard-sigmoid; the result scales
    the input's channels. ``fc1``/``fc2`` are 1x1 convs with bias (torchvision's names)."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = nn.ReLU()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class InvertedResidualV3(nn.Module):
    """MobileNetV3 bottleneck: optional 1x1 expand, kxk depthwise, optional squeeze-excite
    (after the depthwise conv, on the expanded channels), 1x1 linear projection; ReLU or
    hard-swish; a shortcut when stride 1 and in = out. Children live in ``block``."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, use_se: bool, use_hs: bool,
                 stride: int):
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(ConvBNAct(in_ch, expanded, 1, act=act, **_V3_BN))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act, **_V3_BN))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4, 8)))
        layers.append(ConvBNAct(expanded, out_ch, 1, act=None, **_V3_BN))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Large or -Small (Howard et al. 2019), torchvision's state-dict layout.

    ``width_mult`` scales every layer including the hidden classifier layer (rounded to
    multiples of 8). ``reduced_tail=True`` halves the channels of the last three blocks and the
    classifier's hidden layer (the paper's "reduced" variant for detection/segmentation backbones,
    section 6.1.2; also what torchvision's ``reduced_tail`` does).
    """

    def __init__(self, variant: str = "large", width_mult: float = 1.0, num_classes: int = 1000,
                 dropout: float = 0.2, reduced_tail: bool = False):
        super().__init__()
        if variant not in _V3_HEAD:
            raise ZooError(f"unknown MobileNetV3 variant {variant!r}", hint="use 'large' or 'small'")
        _check_config(f"mobilenet_v3_{variant}", width_mult, num_classes, dropout)
        rows = list(_V3_LARGE if variant == "large" else _V3_SMALL)
        stem, hidden = _V3_HEAD[variant]
        if reduced_tail:
            k, e, o, se, hs, s = rows[-3]
            rows[-3] = (k, e, o // 2, se, hs, s)
            rows[-2:] = [(k, e // 2, o // 2, se, hs, s) for k, e, o, se, hs, s in rows[-2:]]
            hidden //= 2

        def scaled(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        channels = scaled(stem)
        layers: list[nn.Module] = [ConvBNAct(3, channels, 3, stride=2, act=nn.Hardswish, **_V3_BN)]
        for kernel, expanded, out, use_se, use_hs, stride in rows:
            layers.append(InvertedResidualV3(channels, kernel, scaled(expanded), scaled(out), use_se, use_hs, stride))
            channels = scaled(out)
        last_conv = 6 * channels
        layers.append(ConvBNAct(channels, last_conv, 1, act=nn.Hardswish, **_V3_BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = scaled(hidden)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, hidden), nn.Hardswish(), nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------
# Labels, inputs and registration
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (``edgekit/zoo/data/imagenet_classes.txt``,
    the list torchvision ships with its weights), for the bundle manifest and the demo overlay."""
    text = (resources.files("edgekit.zoo") / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 1000:  # a broken install, not a user mistake
        raise RuntimeError(f"imagenet_classes.txt holds {len(labels)} names, expected 1000")
    return labels


def __getattr__(name: str) -> Any:  # IMAGENET_CLASSES is read from disk on first use only
    if name == "IMAGENET_CLASSES":
        return imagenet_labels()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(x - mean) / std per channel for NCHW images in [0, 1]: what the classifiers expect."""
    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


def classifier_inputs(**cfg: Any) -> tuple[torch.Tensor]:
    """One seeded random RGB image in [0, 1], 1x3x224x224, normalised with the ImageNet mean/std.
    The model config (width, classes) does not change the input."""
    g = torch.Generator().manual_seed(0)
    return (normalize(torch.rand(INPUT_SHAPE, generator=g)),)


_TV_LICENSE = ("Apache-2.0 (edgekit's module); torchvision's ImageNet weights, which load unchanged, "
               "are BSD-3-Clause")


def _card(name: str, paper: str, params: int, macs: int, description: str, license: str = _TV_LICENSE,
          weights_source: str | None = None) -> ModelCard:
    return ModelCard(
        name=name, family="mobilenet", task="classify", paper=paper,
        input_shape=INPUT_SHAPE, layout="NCHW", value_range=(0.0, 1.0), license=license,
        params=params, macs=macs, macs_input=INPUT_SHAPE, output_layout="NC", color_order="RGB",
        mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=1000, weights=None, weights_sha256=None,
        weights_source=weights_source, description=description,
    )


_INPUT_NOTE = "Input: RGB in [0, 1], then normalised with the ImageNet mean/std (not inside the model)"


@register_model(_card(
    "mobilenet_v1",
    paper="Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
          "Applications, https://arxiv.org/abs/1704.04861",
    params=4_231_976, macs=568_740_352, license="Apache-2.0",
    description="Depthwise-separable convolutions, no shortcuts; edgekit's own layout (no torchvision "
                f"counterpart). {_INPUT_NOTE}.",
), example_inputs=classifier_inputs)
def mobilenet_v1(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV1:
    """MobileNetV1 at width ``width_mult`` with ``num_classes`` outputs."""
    return MobileNetV1(width_mult=width_mult, num_classes=num_classes, dropout=dropout)


@register_model(_card(
    "mobilenet_v2",
    paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks, "
          "https://arxiv.org/abs/1801.04381",
    params=3_504_872, macs=300_774_272,
    weights_source="torchvision IMAGENET1K_V1 (71.9% top-1 as reported by torchvision): "
                   "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    description=f"Inverted residuals with linear bottlenecks; torchvision's state-dict layout. {_INPUT_NOTE}.",
), example_inputs=classifier_inputs)
def mobilenet_v2(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 at width ``width_mult`` with ``num_classes`` outputs; loads torchvision
    ``mobilenet_v2`` state dicts of the same config unchanged."""
    return MobileNetV2(width_mult=width_mult, num_classes=num_classes, dropout=dropout)


_V3_PAPER = "Howard et al. 2019, Searching for MobileNetV3, https://arxiv.org/abs/1905.02244"


@register_model(_card(
    "mobilenet_v3_small", paper=_V3_PAPER, params=2_542_856, macs=56_510_400,
    weights_source="torchvision IMAGENET1K_V1 (67.7% top-1 as reported by torchvision): "
                   "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
    description="Searched bottlenecks with squeeze-excite (hard-sigmoid) and hard-swish; torchvision's "
                f"state-dict layout. {_INPUT_NOTE}.",
), example_inputs=classifier_inputs)
def mobilenet_v3_small(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                       reduced_tail: bool = False) -> MobileNetV3:
    """MobileNetV3-Small; loads torchvision ``mobilenet_v3_small`` state dicts of the same config."""
    return MobileNetV3("small", width_mult=width_mult, num_classes=num_classes, dropout=dropout,
                       reduced_tail=reduced_tail)


@register_model(_card(
    "mobilenet_v3_large", paper=_V3_PAPER, params=5_483_032, macs=216_589_760,
    weights_source="torchvision IMAGENET1K_V1 (74.0% top-1 as reported by torchvision): "
                   "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
    description="Searched bottlenecks with squeeze-excite (hard-sigmoid) and hard-swish; torchvision's "
                f"state-dict layout. {_INPUT_NOTE}.",
), example_inputs=classifier_inputs)
def mobilenet_v3_large(width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2,
                       reduced_tail: bool = False) -> MobileNetV3:
    """MobileNetV3-Large; loads torchvision ``mobilenet_v3_large`` state dicts of the same config."""
    return MobileNetV3("large", width_mult=width_mult, num_classes=num_classes, dropout=dropout,
                       reduced_tail=reduced_tail)
