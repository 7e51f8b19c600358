"""Lightweight single-image super-resolution nets: ESPCN, QuickSRNet (small/medium/large), SESR-M5.

All three families compute in low-resolution space and upscale once at the end with a
sub-pixel convolution (a conv to ``3·r²`` channels followed by ``pixel_shuffle(r)``, which
exports as DepthToSpace). Input and output are RGB float32 in [0, 1], NCHW; the output is
``scale`` times the input size and is clipped to [0, 1]. Every model takes ``scale`` in
{2, 3, 4}; the ``*_x2`` names default to 2. Forwards are plain conv/activation chains with
no data-dependent control flow, so ``torch.export`` captures them as they are.

Example::

    >>> from edgekit import zoo
    >>> net = zoo.create("sesr_m5_x2", pretrained=True)      # doctest: +SKIP
    >>> net(torch.rand(1, 3, 90, 160)).shape                  # doctest: +SKIP
    torch.Size([1, 3, 180, 320])

The shipped weights (``espcn_x2``, ``quicksrnet_small_x2``, ``quicksrnet_medium_x2``,
``sesr_m5_x2``) are trained by :mod:`edgekit.zoo.train_sr` on photographs that ship with
scikit-image; the cards hold the held-out PSNR/SSIM it measured against bicubic.

SESR forms. ``create("sesr_m5_x2")`` returns the *deploy* form: every collapsible linear
block already folded into one plain conv (what you convert and run; the shipped weights are
in this form). ``create("sesr_m5_x2", training_form=True)`` returns the over-parameterised
*training* form (k×k conv to 256 channels, 1×1 conv back to 16, short residual); its
:meth:`SESR.collapse` returns a new deploy-form module computing the same function. The
expanded weights cannot be recovered from the collapsed ones, so to fine-tune the shipped
SESR train the deploy form directly (it is a plain conv net).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import ZooError
from edgekit.zoo.registry import ModelCard, register_model

__all__ = ["ESPCN", "QuickSRNet", "SESR", "LinearBlock", "repeat_kernel", "SCALES"]

SCALES = (2, 3, 4)


def _check_scale(scale: int, name: str) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES:
        raise ZooError(f"scale must be one of {', '.join(map(str, SCALES))} (got {scale!r})", where=name,
                       hint="pass scale=2, 3 or 4")
    return scale


def repeat_kernel(channels: int, scale: int) -> torch.Tensor:
    """1×1 conv weight that repeats each input channel ``scale²`` times, channel ``c`` going to
    outputs ``c·r² … c·r²+r²-1``. Followed by ``pixel_shuffle(r)`` this is exactly nearest
    upsampling, so adding it before the shuffle makes a net predict a residual over nearest
    upsampling (QuickSRNet's "anchor", SESR's global residual) with only convs in the graph."""
    r2 = scale * scale
    w = torch.zeros(channels * r2, channels, 1, 1)
    for c in range(channels):
        w[c * r2:(c + 1) * r2, c] = 1.0
    return w


# ------------------------------------------------------------------------------------------ ESPCN


class ESPCN(nn.Module):
    """ESPCN (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network", arXiv:1609.05158).

    conv5×5(64) → tanh → conv3×3(32) → tanh → conv3×3(3·r²) → pixel shuffle(r) → clip [0, 1].
    The paper runs on the Y channel; this one maps RGB to RGB. The final clip is the only
    addition to the graph (outputs are images in [0, 1]).

    Initialisation (not in the paper, which starts from small Gaussian weights): on top of
    PyTorch's default init, the first three channels of the two hidden layers carry the input
    alone, through the tanh's near-linear range (``tanh(0.5·(x-0.5))``), the last conv maps
    them back onto every sub-pixel and starts with its other weights scaled by 0.1, so a fresh
    net is close to nearest upsampling — QuickSRNet's training trick carried over. It makes the
    short CPU training converge much faster.
    """

    def __init__(self, scale: int = 2, channels: int = 3, widths: tuple[int, int] = (64, 32)):
        super().__init__()
        self.scale = scale
        w1, w2 = widths
        self.conv1 = nn.Conv2d(channels, w1, 5, padding=2)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.conv3 = nn.Conv2d(w2, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.clip = nn.Hardtanh(0.0, 1.0)
        self._init_near_identity(channels)

    @torch.no_grad()
    def _init_near_identity(self, channels: int, gain: float = 0.5, residual_scale: float = 0.1) -> None:
        r2 = self.scale * self.scale
        for conv, centre in ((self.conv1, 2), (self.conv2, 1)):
            conv.weight[:channels] = 0.0
            conv.bias[:channels] = 0.0
            for c in range(channels):
                conv.weight[c, c, centre, centre] = gain if conv is self.conv1 else 1.0
        self.conv1.bias[:channels] = -0.5 * gain
        self.conv3.weight.mul_(residual_scale)
        self.conv3.bias.zero_()
        for o in range(self.conv3.out_channels):
            self.conv3.weight[o, o // r2, 1, 1] += 1.0 / gain
            self.conv3.bias[o] += 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.clip(self.shuffle(self.conv3(x)))


# ------------------------------------------------------------------------------------- QuickSRNet


class _Anchor(nn.Module):
    """QuickSRNet's input-to-output skip: a trainable 1×1 conv initialised to :func:`repeat_kernel`."""

    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.net = nn.Conv2d(channels, channels * scale * scale, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class QuickSRNet(nn.Module):
    """QuickSRNet (Berger et al. 2023, "QuickSRNet: Plain Single-Image Super-Resolution
    Architecture for Faster Inference on Mobile Platforms", arXiv:2303.04336).

    A plain stack: conv3×3(3→C) and ``layers`` conv3×3(C→C), each followed by a clipped ReLU
    (Hardtanh 0..1, which keeps activations quantisation-friendly), then conv3×3(C→3·r²),
    clip [0, 1], pixel shuffle(r). Configs as in Qualcomm's AIMET model zoo: small C=32,
    2 layers; medium C=32, 5 layers; large C=64, 11 layers.

    The input-to-output skip ("anchor"): ``ito=True`` (large) adds a 1×1 conv of the input,
    initialised to :func:`repeat_kernel` (nearest upsampling after the shuffle) and trained,
    before the final clip. Small and medium have no skip in the graph (it costs latency);
    instead they are *initialised* so that the net starts out as nearest upsampling: every
    3×3 conv gets +1 on its centre tap for channel i→i, and the last conv +1 on c→c·r²+k,
    so the RGB input flows through the first three feature channels at initialisation.

    State-dict keys follow the layout of Qualcomm's reference code (``cnn.<i>``, ``conv_last``,
    ``anchor.net``), so its float checkpoints should load with ``weights=`` (not verified here:
    no network).
    """

    def __init__(self, scale: int = 2, channels: int = 32, layers: int = 2, ito: bool = False,
                 in_channels: int = 3):
        super().__init__()
        self.scale = scale
        self.ito = ito
        convs: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.Hardtanh(0.0, 1.0)]
        for _ in range(layers):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.Hardtanh(0.0, 1.0)]
        self.cnn = nn.Sequential(*convs)
        self.conv_last = nn.Conv2d(channels, in_channels * scale * scale, 3, padding=1)
        self.anchor = _Anchor(in_channels, scale) if ito else None
        self.clip = nn.Hardtanh(0.0, 1.0)
        self.shuffle = nn.PixelShuffle(scale)
        self._init_identity(in_channels)

    @torch.no_grad()
    def _init_identity(self, in_channels: int) -> None:
        for m in self.cnn:
            if isinstance(m, nn.Conv2d):
                for i in range(min(m.in_channels, m.out_channels)):
                    m.weight[i, i, 1, 1] += 1.0
        r2 = self.scale * self.scale
        if self.anchor is not None:
            self.anchor.net.weight.copy_(repeat_kernel(in_channels, self.scale))
            self.anchor.net.bias.zero_()
        else:
            for o in range(self.conv_last.out_channels):
                self.conv_last.weight[o, o // r2, 1, 1] += 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_last(self.cnn(x))
        if self.anchor is not None:
            y = y + self.anchor(x)
        return self.shuffle(self.clip(y))


# ------------------------------------------------------------------------------------------- SESR


class LinearBlock(nn.Module):
    """SESR's collapsible linear block: k×k conv expanding to ``expand`` channels, then a 1×1
    conv projecting to ``out_channels``, with no non-linearity in between, plus the identity
    when ``residual`` (``in_channels == out_channels``).

    Being linear, it equals one k×k conv with weight ``W = P·E (+ I at the centre tap)`` and
    bias ``b_P`` (``P`` the 1×1 weight as a matrix, ``E`` the k×k weight, ``I`` the identity).
    :meth:`forward` uses that collapsed weight (computed from the expanded parameters at every
    call, as in Arm's reference training code: same function and gradients, a fraction of the
    MACs); :meth:`forward_expanded` runs the two convs literally; :meth:`to_conv` returns the
    folded ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, expand: int, residual: bool):
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError("a residual linear block needs in_channels == out_channels")
        self.kernel_size = kernel_size
        self.residual = residual
        self.expand = nn.Conv2d(in_channels, expand, kernel_size, padding=kernel_size // 2, bias=False)
        self.project = nn.Conv2d(expand, out_channels, 1)
        if residual:
            eye = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
            c = kernel_size // 2
            eye[:, :, c, c] = torch.eye(out_channels)
            self.register_buffer("identity", eye, persistent=False)
        else:
            self.identity = None

    def collapsed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the single k×k conv this block equals."""
        w = torch.einsum("op,pikl->oikl", self.project.weight[:, :, 0, 0], self.expand.weight)
        if self.identity is not None:
            w = w + self.identity
        return w, self.project.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.collapsed()
        return F.conv2d(x, w, b, padding=self.kernel_size // 2)

    def forward_expanded(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.expand(x))
        return y + x if self.residual else y

    @torch.no_grad()
    def to_conv(self) -> nn.Conv2d:
        w, b = self.collapsed()
        conv = nn.Conv2d(w.shape[1], w.shape[0], self.kernel_size, padding=self.kernel_size // 2,
                         device=w.device, dtype=w.dtype)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        return conv


class SESR(nn.Module):
    """SESR (Bhardwaj et al. 2022, "Collapsible Linear Blocks for Super-Efficient Super
    Resolution", MLSys 2022, arXiv:2103.09404).

    head: 5×5 linear block 3→f; body: ``m`` 3×3 linear blocks f→f with short residuals, each
    followed by a PReLU; long residual (head output added to the body output); tail: 5×5 linear
    block f→3·r²; global residual (the input repeated r² times, i.e. nearest upsampling);
    pixel shuffle(r); clip [0, 1]. SESR-M5: f=16, m=5, blocks expanding to 256 channels.
    The paper runs on the Y channel; this one maps RGB to RGB.

    ``collapsed=False`` builds the training form (:class:`LinearBlock` everywhere);
    ``collapsed=True`` the deploy form (plain ``nn.Conv2d``, same state-dict layout as
    :meth:`collapse` produces). Convert and ship the deploy form: it has ~19x fewer weights and
    the same MACs as the training form's online-collapsed forward.
    """

    def __init__(self, scale: int = 2, features: int = 16, m: int = 5, expand: int = 256,
                 collapsed: bool = True, in_channels: int = 3):
        super().__init__()
        self.scale = scale
        self.features, self.m, self.expand, self.in_channels = features, m, expand, in_channels
        self.is_collapsed = collapsed
        out = in_channels * scale * scale

        def block(cin: int, cout: int, k: int, residual: bool) -> nn.Module:
            if collapsed:
                return nn.Conv2d(cin, cout, k, padding=k // 2)
            return LinearBlock(cin, cout, k, expand, residual)

        self.head = block(in_channels, features, 5, False)
        self.body = nn.ModuleList(block(features, features, 3, True) for _ in range(m))
        self.acts = nn.ModuleList(nn.PReLU(features) for _ in range(m))
        self.tail = block(features, out, 5, False)
        self.register_buffer("anchor", repeat_kernel(in_channels, scale), persistent=False)
        self.shuffle = nn.PixelShuffle(scale)
        self.clip = nn.Hardtanh(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.head(x)
        f = f0
        for conv, act in zip(self.body, self.acts):
            f = act(conv(f))
        y = self.tail(f + f0) + F.conv2d(x, self.anchor)
        return self.clip(self.shuffle(y))

    def forward_expanded(self, x: torch.Tensor) -> torch.Tensor:
        """The training form run literally (each linear block as k×k conv then 1×1 conv plus
        identity) — the reference :meth:`collapse` is checked against."""
        if self.is_collapsed:
            raise ValueError("forward_expanded needs the training form (collapsed=False)")
        f0 = self.head.forward_expanded(x)
        f = f0
        for blk, act in zip(self.body, self.acts):
            f = act(blk.forward_expanded(f))
        y = self.tail.forward_expanded(f + f0) + F.conv2d(x, self.anchor)
        return self.clip(self.shuffle(y))

    @torch.no_grad()
    def collapse(self) -> "SESR":
        """A new deploy-form SESR computing the same function (``self`` is left untouched;
        on a deploy-form model this returns a copy)."""
        if self.is_collapsed:
            return copy.deepcopy(self)
        like = self.anchor
        out = SESR(self.scale, self.features, self.m, self.expand, collapsed=True, in_channels=self.in_channels)
        out = out.to(device=like.device, dtype=like.dtype)
        out.head = self.head.to_conv()
        out.body = nn.ModuleList(b.to_conv() for b in self.body)
        out.tail = self.tail.to_conv()
        out.acts.load_state_dict(self.acts.state_dict())
        return out.train(self.training)


# --------------------------------------------------------------------------------------- registry

_SR_INPUT = (1, 3, 128, 128)
_MACS_INPUT = (1, 3, 360, 640)


def _card(name: str, paper: str, params: int, macs: int, description: str, **extra) -> ModelCard:
    return ModelCard(
        name=name, family="sr", task="super-resolve", paper=paper,
        input_shape=_SR_INPUT, layout="NCHW", output_layout="NCHW", value_range=(0.0, 1.0),
        color_order="RGB", scale_factor=2, params=params, macs=macs, macs_input=_MACS_INPUT,
        description=description, **extra)


_LICENSE = "Apache-2.0 (edgekit's implementation; weights trained by edgekit.zoo.train_sr)"
_LICENSE_UNTRAINED = "Apache-2.0 (edgekit's implementation; no weights ship)"
_ESPCN_PAPER = ("Shi et al. 2016, Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel "
                "Convolutional Neural Network, https://arxiv.org/abs/1609.05158")
_QSR_PAPER = ("Berger et al. 2023, QuickSRNet: Plain Single-Image Super-Resolution Architecture for Faster "
              "Inference on Mobile Platforms, https://arxiv.org/abs/2303.04336")
_SESR_PAPER = ("Bhardwaj et al. 2022, Collapsible Linear Blocks for Super-Efficient Super Resolution (MLSys), "
               "https://arxiv.org/abs/2103.09404")

# Filled in from edgekit/zoo/weights/<name>.json, which `python -m edgekit.zoo.train_sr` writes
# next to the weights; tests/zoo/test_sr.py checks that card, JSON and file agree. Evaluation
# set-up and bicubic scores are shared by all models.
_HELDOUT_EVAL: dict = {
    "bicubic_psnr_rgb": 28.944, "bicubic_ssim_rgb": 0.8973, "bicubic_psnr_y": 30.481,
    "bicubic_ssim_y": 0.9095, "bicubic": "OpenCV (a=-0.75)",
    "heldout": ["coffee", "motorcycle_left", "motorcycle_right"], "lr": "pil-bicubic", "border": 2,
}
_TRAINED: dict[str, dict] = {
    "espcn_x2": dict(
        weights="espcn_x2.safetensors",
        weights_sha256="66b16ab70728d22c600484b862ab0911526031152e2061013fc9ab9c8d377de6",
        metrics={
            "psnr_rgb": 29.513, "ssim_rgb": 0.9046, "psnr_y": 31.102, "ssim_y": 0.9185, "gain_rgb_db": 0.569,
            "gain_y_db": 0.621, "min_gain_rgb_db": 0.371, "min_gain_lr": "jpeg85",
            **_HELDOUT_EVAL}),
    "quicksrnet_small_x2": dict(
        weights="quicksrnet_small_x2.safetensors",
        weights_sha256="f6174af531d0aa197139b49c8fb6b6931ec42e63b0b3f4b64a95a384e4d8b50e",
        metrics={
            "psnr_rgb": 29.684, "ssim_rgb": 0.9043, "psnr_y": 31.349, "ssim_y": 0.9201, "gain_rgb_db": 0.74,
            "gain_y_db": 0.868, "min_gain_rgb_db": 0.263, "min_gain_lr": "bicubic-noaa",
            **_HELDOUT_EVAL}),
    "quicksrnet_medium_x2": dict(
        weights="quicksrnet_medium_x2.safetensors",
        weights_sha256="1a6de16d562a03c2a7b61da7b1869f6a5c3863008a380681e4877f5a99182a04",
        metrics={
            "psnr_rgb": 29.714, "ssim_rgb": 0.9035, "psnr_y": 31.426, "ssim_y": 0.9214, "gain_rgb_db": 0.769,
            "gain_y_db": 0.945, "min_gain_rgb_db": 0.297, "min_gain_lr": "bicubic-noaa",
            **_HELDOUT_EVAL}),
    "sesr_m5_x2": dict(
        weights="sesr_m5_x2.safetensors",
        weights_sha256="10370d7e8fe4926f3211f8608605b3eaa3631031f08a6a9aa212e71a94f39098",
        metrics={
            "psnr_rgb": 30.06, "ssim_rgb": 0.9133, "psnr_y": 31.696, "ssim_y": 0.9263, "gain_rgb_db": 1.116,
            "gain_y_db": 1.215, "min_gain_rgb_db": 0.552, "min_gain_lr": "bicubic-noaa",
            **_HELDOUT_EVAL}),
}


_AIMET_LARGE = ("Qualcomm AIMET model zoo float32 checkpoint (BSD-3-Clause), same state-dict keys; save its "
                "'state_dict' as .pth (not verified offline): https://github.com/quic/aimet-model-zoo/releases/"
                "download/phase_2_january_artifacts/quicksrnet_large_2x_checkpoint_float32.pth.tar")


def _trained(name: str) -> dict:
    t = _TRAINED.get(name)
    if not t or t["weights"] is None:
        return dict(license=_LICENSE_UNTRAINED)
    return dict(license=_LICENSE, **t)


@register_model(_card(
    "espcn_x2", _ESPCN_PAPER, params=26_796, macs=6_148_915_200,
    description=("ESPCN on RGB: conv5x5(64)-tanh-conv3x3(32)-tanh-conv3x3(3r^2)-pixel shuffle-clip; "
                 "initialised near nearest upsampling."),
    **_trained("espcn_x2")))
def espcn_x2(scale: int = 2) -> nn.Module:
    return ESPCN(scale=_check_scale(scale, "espcn_x2"))


def _register_quicksrnet(name: str, channels: int, layers: int, ito: bool, params: int, macs: int,
                         **extra) -> None:
    variant = name.split("_")[1]
    skip = "a trainable 1x1 input-to-output anchor skip" if ito else "initialised as nearest upsampling (no skip)"
    card = _card(name, _QSR_PAPER, params=params, macs=macs,
                 description=f"QuickSRNet-{variant}: {layers + 2} conv3x3 layers ({channels} channels, clipped ReLU), "
                             f"pixel shuffle; {skip}.", **extra)

    def factory(scale: int = 2) -> nn.Module:
        return QuickSRNet(scale=_check_scale(scale, name), channels=channels, layers=layers, ito=ito)

    factory.__name__ = factory.__qualname__ = name
    register_model(card)(factory)


_register_quicksrnet("quicksrnet_small_x2", 32, 2, False, 22_860, 5_242_060_800, **_trained("quicksrnet_small_x2"))
_register_quicksrnet("quicksrnet_medium_x2", 32, 5, False, 50_604, 11_612_160_000,
                     **_trained("quicksrnet_medium_x2"))
_register_quicksrnet("quicksrnet_large_x2", 64, 11, True, 414_972, 95_427_072_000,
                     license=_LICENSE_UNTRAINED, weights_source=_AIMET_LARGE)


@register_model(_card(
    "sesr_m5_x2", _SESR_PAPER, params=17_708, macs=4_044_902_400,
    description=("SESR-M5 (f=16, m=5) on RGB. create() returns the deploy form (linear blocks collapsed into "
                 "plain convs); training_form=True gives the over-parameterised form (expand=256), whose "
                 ".collapse() folds it."),
    **_trained("sesr_m5_x2")))
def sesr_m5_x2(scale: int = 2, training_form: bool = False) -> nn.Module:
    return SESR(scale=_check_scale(scale, "sesr_m5_x2"), features=16, m=5, expand=256,
                collapsed=not training_form)
