"""Causal video VAE decoders: a mainstream reference and a Turbo-VAED-style mobile design.

Both map a latent video ``(N, 16, T, h, w)`` (layout NCTHW, 16 latent channels as in CogVideoX
and HunyuanVideo) to RGB frames ``(N, 3, T', 8h, 8w)``. They are *architecture subjects* for
edgekit's converters, NPU rewrites and benchmarks: no trained weights ship, the weights are a
seeded random init (``seed=0`` unless told), so the same model comes back on every ``create``.

Temporal convention (causal, as in CogVideoX/HunyuanVideo): the first latent frame decodes to one
frame on its own, every later latent frame to ``f`` frames, so ``T' = 1 + f·(T − 1)``. The
default ``tiny`` configs upsample time once (``f = 2``, as the issue asks: "temporal in one
stage"); the ``paper`` configs upsample time twice (``f = 4``, CogVideoX/HunyuanVideo's 4× temporal
compression). Both decoders of one config give the same output shape for the same latent; see
:func:`output_shape`. Output frame ``j`` depends on latent frames ``0 … ⌈j/f⌉`` only (tested).

``video_decoder_ref`` — CogVideoX (arXiv:2408.06072) / HunyuanVideo (arXiv:2412.03603) style:
causal 3×3×3 Conv3d, GroupNorm, SiLU, ResNet blocks, a mid block with single-head spatial
self-attention inside each frame (H·W tokens), nearest-neighbour upsampling on 5-D tensors
(``upsample_nearest3d``, ×2 in space in three stages, ×2 in time in one stage), then a conv. It
carries every op mobile accelerators dislike: Conv3d, rank-5 tensors and transposes, GroupNorm,
3-D resize, batched matmuls and softmax over 1024+ tokens.

``video_decoder_turbo`` — Turbo-VAED (Zou et al. 2025, arXiv:2508.09136) design, facts from the
authors' repository (hustvl/Turbo-VAED, ``TurboVAEDDecoder3d`` and the ``Turbo-VAED-Hunyuan``
config): channel RMSNorm without affine (per voxel), SiLU (ReLU first in blocks that follow an
upsampler), 3-D depthwise separable convolutions (depthwise k×k×k then 1×1×1 pointwise) in the
mid block and the first, lowest-resolution up block with k = 5 (where the parameters are: 512
channels), full 3×3×3 convs in the narrow high-resolution blocks, and the *decoupled 3-D pixel
shuffle* for upsampling: a causal conv to ``C·st·s²`` channels at the low resolution, a temporal
shuffle (channels → time), a per-frame 2-D ``pixel_shuffle`` with frames folded into batch, and
dropping the first ``st − 1`` frames (causal). :func:`pixel_shuffle_3d` is the same shuffle written
the way many video VAEs write it (one rank-8 view/permute); ``upsample="permute8d"`` builds the
decoder with it (identical outputs) so that rewrites for both forms can be tested.

Deliberate differences from the sources (each keeps the model causal or simple to convert):

- Causal padding replicates the first frame ``k_t − 1`` times on the left, written as a concat of
  first-frame slices (slice + concat in the graph, no gather or broadcast); spatial padding is the
  conv's own zero padding. Turbo-VAED's repo pads its separable convs on both sides in time
  (``decoder_causal: false`` in its configs); here every conv is causal.
- The reference normalises with GroupNorm statistics *per frame* by default (``norm="frame"``:
  ``nn.GroupNorm`` on the ``(N·T, C, H, W)`` view). CogVideoX/HunyuanVideo apply ``nn.GroupNorm``
  to the whole 5-D clip, pooling statistics over ``(C/G, T, H, W)``; that makes a full-clip decode
  non-causal (a later latent frame shifts every frame's statistics). ``norm="clip"`` builds that
  variant (a rank-5 GroupNorm, which coremltools lowers through rank 6 and the ANE rejects); it is
  not causal, and a test shows it.
- Turbo's RMSNorm uses ``eps = 1e-6`` (the repo: 1e-8, which is 0 in float16).

Speed note: on CPU, eager PyTorch runs a batch-1 Conv3d through its slow im2col path
(``slow_conv3d``) unless ``N·C·T·H > 20480`` (a heuristic written for 4-D inputs), which is 10–25×
slower than oneDNN at these narrow widths; the exported ONNX models run several times faster in
ONNX Runtime. Time the exported artifacts, not eager mode.

Example::

    >>> from edgekit import zoo
    >>> dec = zoo.create("video_decoder_turbo")
    >>> (z,) = zoo.example_inputs("video_decoder_turbo")      # (1, 16, 2, 32, 32), N(0, 1)
    >>> dec(z).shape
    torch.Size([1, 3, 3, 256, 256])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.errors import ZooError
from edgekit.zoo.registry import ModelCard, register_model

__all__ = [
    "CausalConv3d", "CausalSeparableConv3d", "FrameGroupNorm", "ChannelRMSNorm", "ChannelLayerNorm",
    "ResBlock3d", "FrameSelfAttention", "NearestUpsample3d", "TurboResBlock3d", "PixelShuffleUpsample3d",
    "VideoDecoderRef", "VideoDecoderTurbo", "RefConfig", "TurboConfig", "REF_CONFIGS", "TURBO_CONFIGS",
    "pixel_shuffle_3d", "decoupled_pixel_shuffle_3d", "output_frames", "output_shape", "LATENT_CHANNELS",
]

LATENT_CHANNELS = 16
SPATIAL_FACTOR = 8


def output_frames(latent_frames: int, temporal_factor: int) -> int:
    """Frames a causal decoder makes from ``latent_frames``: the first alone, ``f`` per later one."""
    return 1 + temporal_factor * (latent_frames - 1)


def output_shape(latent_shape: tuple[int, ...], temporal_factor: int) -> tuple[int, int, int, int, int]:
    """``(N, 16, T, h, w)`` → ``(N, 3, 1 + f·(T − 1), 8h, 8w)``."""
    n, _, t, h, w = latent_shape
    return (n, 3, output_frames(t, temporal_factor), SPATIAL_FACTOR * h, SPATIAL_FACTOR * w)


def _triple(k: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (k, k, k) if isinstance(k, int) else tuple(k)  # type: ignore[return-value]


def _groups(channels: int, max_groups: int = 32) -> int:
    """GroupNorm groups: 32 (the VAEs' choice) for ≥ 128 channels, else groups of 4 channels."""
    g = max(1, min(max_groups, channels // 4))
    while channels % g:
        g -= 1
    return g


# ------------------------------------------------------------------------------- shared layers


class CausalConv3d(nn.Module):
    """Conv3d that never looks at later frames: time is padded on the left only, by repeating the
    first frame ``k_t − 1`` times (CogVideoX/HunyuanVideo/Turbo-VAED pad with the first frame);
    height and width are zero-padded symmetrically by the conv itself. Stride 1, so frame ``t`` of
    the output sees input frames ``t − k_t + 1 … t``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int, int] = 3,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        self.time_pad = kt - 1
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), padding=(0, kh // 2, kw // 2),
                              groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            first = x[:, :, :1]
            x = torch.cat([first] * self.time_pad + [x], dim=2)
        return self.conv(x)


# ----------------------------------------------------------------------------- reference decoder


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are taken per frame: the 5-D input is viewed as
    ``(N·T, C, H, W)`` (a transpose and a reshape), normalised, and viewed back. Same parameters
    as ``nn.GroupNorm``; causal, and exact under the frames-into-batch rewrite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(n * t, c, h, w)
        y = F.group_norm(y, self.num_groups, self.weight, self.bias, self.eps)
        return y.reshape(n, t, c, h, w).transpose(1, 2)


def _group_norm(kind: str, channels: int) -> nn.GroupNorm:
    cls = FrameGroupNorm if kind == "frame" else nn.GroupNorm
    return cls(_groups(channels), channels, eps=1e-6)


class ResBlock3d(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))))))`` with causal 3×3×3 convs; a causal 1×1×1 conv on
    the skip when the width changes (HunyuanVideo's ResnetBlockCausal3D)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "frame"):
        super().__init__()
        self.norm1 = _group_norm(norm, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = _group_norm(norm, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class FrameSelfAttention(nn.Module):
    """Single-head self-attention over the H·W positions of each frame (frames do not attend to
    each other, so it is causal): GroupNorm, q/k/v projections, ``softmax(q kᵀ/√C) v``, output
    projection, residual. Written with explicit matmuls and softmax, as the exporters see it."""

    def __init__(self, channels: int, norm: str = "frame"):
        super().__init__()
        self.norm = _group_norm(norm, channels)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, channels)
        self.scale = channels ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 4, 1).reshape(n * t, h * w, c)
        q, k, v = self.q(y), self.k(y), self.v(y)
        attn = torch.softmax(torch.matmul(q, k.transpose(1, 2)) * self.scale, dim=-1)
        y = self.proj(torch.matmul(attn, v))
        return x + y.reshape(n, t, h, w, c).permute(0, 4, 1, 2, 3)


class NearestUpsample3d(nn.Module):
    """Nearest ×2 in H and W (and ×2 in time when ``temporal``) on the 5-D tensor, then a causal
    3×3×3 conv. Causal temporal doubling = 3-D nearest ×2 then drop the first frame: frames
    ``[x0, x1, x1, x2, x2, …]``, i.e. ``1 + 2(T − 1)`` — the same result as CogVideoX/HunyuanVideo's
    "first frame spatially, the rest 3-D" split, in one op."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.temporal:
            x = F.interpolate(x, scale_factor=(2.0, 2.0, 2.0), mode="nearest")[:, :, 1:]
        else:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(x)


@dataclass(frozen=True)
class RefConfig:
    """Widths of the up blocks from the lowest resolution (the mid block runs at ``widths[0]``);
    blocks 0–2 upsample ×2 in space, those in ``temporal_stages`` also ×2 in time."""

    widths: tuple[int, int, int, int]
    resnets_per_block: int
    temporal_stages: tuple[int, ...]

    @property
    def temporal_factor(self) -> int:
        return 2 ** len(self.temporal_stages)


REF_CONFIGS: dict[str, RefConfig] = {
    # Every op of the paper config at toy widths, fast on a CPU: (1, 16, 2, 32, 32) → (1, 3, 3, 256, 256).
    "tiny": RefConfig(widths=(16, 16, 8, 4), resnets_per_block=1, temporal_stages=(0,)),
    # HunyuanVideo's decoder: block_out_channels (128, 256, 512, 512), layers_per_block 2 (3 ResNets
    # per up block), time upsampled in up blocks 1 and 2 (4× temporal compression).
    "paper": RefConfig(widths=(512, 512, 256, 128), resnets_per_block=3, temporal_stages=(1, 2)),
}


class VideoDecoderRef(nn.Module):
    """CogVideoX/HunyuanVideo-style causal video VAE decoder (see the module docstring).

    conv_in (causal 3×3×3) → mid [ResBlock3d, FrameSelfAttention, ResBlock3d] → 4 up blocks
    [ResBlock3d × n, NearestUpsample3d in the first three] → GroupNorm → SiLU → conv_out (→ 3).
    """

    def __init__(self, cfg: RefConfig, norm: str = "frame", latent_channels: int = LATENT_CHANNELS,
                 out_channels: int = 3):
        super().__init__()
        w = cfg.widths
        self.cfg = cfg
        self.latent_channels = latent_channels
        self.temporal_factor = cfg.temporal_factor
        self.conv_in = CausalConv3d(latent_channels, w[0], 3)
        self.mid = nn.Sequential(ResBlock3d(w[0], w[0], norm), FrameSelfAttention(w[0], norm),
                                 ResBlock3d(w[0], w[0], norm))
        blocks, c_prev = [], w[0]
        for i, c in enumerate(w):
            layers: list[nn.Module] = [ResBlock3d(c_prev if j == 0 else c, c, norm)
                                       for j in range(cfg.resnets_per_block)]
            if i < len(w) - 1:
                layers.append(NearestUpsample3d(c, temporal=i in cfg.temporal_stages))
            blocks.append(nn.Sequential(*layers))
            c_prev = c
        self.up = nn.ModuleList(blocks)
        self.norm_out = _group_norm(norm, w[-1])
        self.conv_out = CausalConv3d(w[-1], out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_channels, "video_decoder_ref")
        x = self.mid(self.conv_in(z))
        for block in self.up:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


# -------------------------------------------------------------------------------- Turbo decoder


def decoupled_pixel_shuffle_3d(x: torch.Tensor, st: int, s: int) -> torch.Tensor:
    """Turbo-VAED's decoupled 3-D pixel shuffle: ``(N, C·s²·st, T, H, W)`` → ``(N, C, T·st, H·s, W·s)``.

    Channel ``((c·s + i)·s + j)·st + τ`` goes to channel ``c``, frame ``t·st + τ``, pixel
    ``(h·s + i, w·s + j)``. Step 1 (temporal shuffle) moves ``τ`` into time with a rank-6 view;
    step 2 is ``F.pixel_shuffle`` (CRD order, DEPTH_TO_SPACE after the channel permutation) on
    every frame with frames folded into batch. The frames are not cropped here.
    """
    n, cin, t, h, w = x.shape
    cs2 = cin // st
    if st > 1:
        x = x.reshape(n, cs2, st, t, h, w).permute(0, 1, 3, 2, 4, 5).reshape(n, cs2, t * st, h, w)
    if s > 1:
        frames = t * st
        x = x.transpose(1, 2).reshape(n * frames, cs2, h, w)
        x = F.pixel_shuffle(x, s)
        x = x.reshape(n, frames, cs2 // (s * s), h * s, w * s).transpose(1, 2)
    return x


def pixel_shuffle_3d(x: torch.Tensor, st: int, s: int) -> torch.Tensor:
    """The same shuffle as :func:`decoupled_pixel_shuffle_3d` in one rank-8 view/permute/reshape
    (``b (c s s st) t h w -> b c (t st) (h s) (w s)``), the form many video VAEs use."""
    n, cin, t, h, w = x.shape
    c = cin // (st * s * s)
    x = x.reshape(n, c, s, s, st, t, h, w).permute(0, 1, 5, 4, 6, 2, 7, 3)
    return x.reshape(n, c, t * st, h * s, w * s)


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channels of each voxel, no affine (Turbo-VAED's ``RMSNorm(C,
    elementwise_affine=False)`` on channels-last, written on NCTHW directly: no transposes)."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each voxel with a per-channel affine (Turbo-VAED normalises
    the skip this way before the 1×1×1 conv when a block changes width)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=1, keepdim=True)
        d = x - mu
        y = d * torch.rsqrt(d.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return y * self.weight.view(1, -1, 1, 1, 1) + self.bias.view(1, -1, 1, 1, 1)


class CausalSeparableConv3d(nn.Module):
    """3-D depthwise separable conv: causal depthwise k×k×k Conv3d (groups = C) then a 1×1×1
    pointwise Conv3d. Parameters ``C·k³ + C·C'`` instead of ``C·C'·27``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5):
        super().__init__()
        self.depthwise = CausalConv3d(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pointwise = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class TurboResBlock3d(nn.Module):
    """Turbo-VAED ResNet block: ``skip + conv(SiLU(RMS(conv(act(RMS(x))))))``; ``act`` is ReLU in
    blocks that follow an upsampler (the repo's ``is_upsampler_modified``), else SiLU; convs are
    separable (depthwise k³ + pointwise) or full causal 3×3×3."""

    def __init__(self, in_channels: int, out_channels: int, separable: bool, kernel_size: int = 5,
                 relu_first: bool = False):
        super().__init__()

        def conv(a: int, b: int) -> nn.Module:
            return CausalSeparableConv3d(a, b, kernel_size) if separable else CausalConv3d(a, b, 3)

        self.relu_first = relu_first
        self.norm1 = ChannelRMSNorm()
        self.conv1 = conv(in_channels, out_channels)
        self.norm2 = ChannelRMSNorm()
        self.conv2 = conv(out_channels, out_channels)
        if in_channels != out_channels:
            self.skip_norm = ChannelLayerNorm(in_channels)
            self.skip = nn.Conv3d(in_channels, out_channels, 1)
        else:
            self.skip_norm, self.skip = nn.Identity(), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        h = self.conv1(F.relu(h) if self.relu_first else F.silu(h))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(self.skip_norm(x)) + h


class PixelShuffleUpsample3d(nn.Module):
    """Causal 3×3×3 conv to ``C·st·s²`` channels at the low resolution, 3-D pixel shuffle (×st in
    time, ×s in space), then drop the first ``st − 1`` frames: ``T → 1 + st·(T − 1)``, causal.
    ``form`` picks the shuffle: ``"decoupled"`` (Turbo-VAED) or ``"permute8d"`` (same numbers)."""

    def __init__(self, channels: int, st: int, s: int, form: str = "decoupled"):
        super().__init__()
        self.st, self.s, self.form = st, s, form
        self.conv = CausalConv3d(channels, channels * st * s * s, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        shuffle = decoupled_pixel_shuffle_3d if self.form == "decoupled" else pixel_shuffle_3d
        y = shuffle(y, self.st, self.s)
        return y[:, :, self.st - 1:] if self.st > 1 else y


@dataclass(frozen=True)
class TurboConfig:
    """Up-block widths from the lowest resolution (mid block at ``widths[0]``); ``layers`` for
    (mid, up0 … up3); ``separable`` per (mid, up0 … up3); ``scales`` per up block: ``None`` or
    ``(st, s)``."""

    widths: tuple[int, int, int, int]
    layers: tuple[int, int, int, int, int]
    separable: tuple[bool, bool, bool, bool, bool]
    scales: tuple[tuple[int, int] | None, ...]
    kernel_size: int = 5

    @property
    def temporal_factor(self) -> int:
        f = 1
        for sc in self.scales:
            f *= sc[0] if sc else 1
        return f


TURBO_CONFIGS: dict[str, TurboConfig] = {
    # Every op of the paper config at toy widths, same shapes as REF_CONFIGS["tiny"]. (Two channels at
    # full resolution would be faster but make the per-voxel RMSNorm ill-conditioned: ~1e-3 ORT-vs-eager.)
    "tiny": TurboConfig(widths=(16, 8, 4, 4), layers=(1, 1, 1, 1, 1),
                        separable=(True, True, False, False, False),
                        scales=(None, (2, 2), (1, 2), (1, 2))),
    # hustvl/Turbo-VAED configs/Turbo-VAED-Hunyuan.json: decoder_block_out_channels (16, 32, 256, 512),
    # layers (5, 4, 4, 4, 5), depthwise separable k=5 in the mid block and up block 0, time ×2 in
    # up blocks 1 and 2, space only in up block 3.
    "paper": TurboConfig(widths=(512, 256, 32, 16), layers=(5, 4, 4, 4, 5),
                         separable=(True, True, False, False, False),
                         scales=(None, (2, 2), (2, 2), (1, 2))),
}


class VideoDecoderTurbo(nn.Module):
    """Turbo-VAED-style causal video VAE decoder (see the module docstring).

    conv_in (causal 3×3×3) → mid [TurboResBlock3d × n] → 4 up blocks [TurboResBlock3d to the new
    width, PixelShuffleUpsample3d, TurboResBlock3d × n] → RMSNorm → SiLU → conv_out (→ 3).
    """

    def __init__(self, cfg: TurboConfig, upsample: str = "decoupled", latent_channels: int = LATENT_CHANNELS,
                 out_channels: int = 3):
        super().__init__()
        w, k = cfg.widths, cfg.kernel_size
        self.cfg = cfg
        self.latent_channels = latent_channels
        self.temporal_factor = cfg.temporal_factor
        self.conv_in = CausalConv3d(latent_channels, w[0], 3)
        self.mid = nn.Sequential(*[TurboResBlock3d(w[0], w[0], cfg.separable[0], k) for _ in range(cfg.layers[0])])
        blocks, c_prev = [], w[0]
        for i, c in enumerate(w):
            sep, scale = cfg.separable[i + 1], cfg.scales[i]
            layers: list[nn.Module] = []
            if c_prev != c:
                layers.append(TurboResBlock3d(c_prev, c, sep, k))
            if scale is not None:
                layers.append(PixelShuffleUpsample3d(c, scale[0], scale[1], upsample))
            layers += [TurboResBlock3d(c, c, sep, k, relu_first=scale is not None) for _ in range(cfg.layers[i + 1])]
            blocks.append(nn.Sequential(*layers))
            c_prev = c
        self.up = nn.ModuleList(blocks)
        self.norm_out = ChannelRMSNorm()
        self.conv_out = CausalConv3d(w[-1], out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_latent(z, self.latent_channels, "video_decoder_turbo")
        x = self.mid(self.conv_in(z))
        for block in self.up:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


def _check_latent(z: torch.Tensor, channels: int, name: str) -> None:
    if z.dim() != 5 or z.shape[1] != channels:
        raise ZooError(f"expects a latent video (N, {channels}, T, h, w) in NCTHW, got shape {tuple(z.shape)}",
                       where=name, hint="pass zoo.example_inputs(name) or a tensor of that layout")


# ------------------------------------------------------------------------------------ zoo entries


def _pick(configs: dict, config: str, name: str):
    if config not in configs:
        raise ZooError(f"unknown config {config!r}", where=name, hint=f"use one of {', '.join(configs)}")
    return configs[config]


def _seeded(seed: int, build):
    # The weights *are* the model here (no trained weights), so build them from a fixed seed
    # without disturbing the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


_MACS_INPUT = (1, LATENT_CHANNELS, 2, 32, 32)


def _example_latent(**_cfg) -> tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(_MACS_INPUT, generator=g),)


_COMMON = dict(
    family="video_decoder", task="decode-video", input_shape=_MACS_INPUT, layout="NCTHW", output_layout="NCTHW",
    value_range=(-3.0, 3.0), license="Apache-2.0 (edgekit's implementation; no weights ship)",
    macs_input=_MACS_INPUT, color_order="RGB", scale_factor=SPATIAL_FACTOR,
)
_CONVENTION = (
    " Input: a latent video (N, 16, T, h, w), NCTHW, standard normal (value_range ±3σ is nominal). Output: RGB "
    "(N, 3, 1+f(T-1), 8h, 8w), NCTHW, nominally [-1, 1] but unbounded: clamp to [-1, 1] and map (x+1)/2 to [0, 1] "
    "in post-processing. Causal in time: output frame j depends on latent frames 0..ceil(j/f). Random seeded init "
    "(seed=0): an architecture subject for conversion, NPU rewrites and speed, not a trained decoder. Configs: "
    "config='tiny' (default, f=2) or 'paper' (f=4; its params/MACs are in metrics['paper_config'])."
)

_REF_PAPER = ("CogVideoX (Yang et al. 2024, arXiv:2408.06072, https://arxiv.org/abs/2408.06072) and HunyuanVideo "
              "(Kong et al. 2024, arXiv:2412.03603, https://arxiv.org/abs/2412.03603) causal 3-D VAE decoders")
_TURBO_PAPER = ("Zou et al. 2025, Turbo-VAED: Fast and Stable Transfer of Video-VAEs to Mobile Devices, "
                "arXiv:2508.09136, https://arxiv.org/abs/2508.09136 (code: https://github.com/hustvl/Turbo-VAED)")

# Measured with edgekit.zoo.registry.count_params / count_macs (tests/zoo/test_video_decoder.py
# recomputes every number, the paper configs on the meta device).
_REF_TINY = dict(params=86_403, macs=1_688_469_504)
_REF_PAPER_METRICS = {"paper_config": {
    "params": 146_136_067, "macs_at": list(_MACS_INPUT), "macs": 3_127_365_337_088,
    "published_params": "HunyuanVideo VAE decoder 146.1M (Turbo-VAED results table)"}}
_TURBO_TINY = dict(params=45_723, macs=512_819_200)
_TURBO_PAPER_METRICS = {"paper_config": {
    "params": 40_687_811, "macs_at": list(_MACS_INPUT), "macs": 277_628_321_792,
    "published_params": "Turbo-VAED-Hunyuan decoder 40.7M (Turbo-VAED results table)"}}


@register_model(ModelCard(
    name="video_decoder_ref", paper=_REF_PAPER, **_COMMON, **_REF_TINY, metrics=_REF_PAPER_METRICS,
    description=("Mainstream causal video VAE decoder (CogVideoX/HunyuanVideo style): causal Conv3d, GroupNorm "
                 "(per-frame statistics; norm='clip' for the non-causal whole-clip GroupNorm of the originals), "
                 "SiLU, ResNet blocks, per-frame spatial self-attention in the mid block, nearest 3-D upsampling "
                 "(x2 in space three times, x2 in time once). tiny widths 16/16/8/4, one ResNet per up block; "
                 "paper = HunyuanVideo's decoder layout (128/256/512/512, 3 ResNets per up block)." + _CONVENTION)),
    example_inputs=_example_latent)
def video_decoder_ref(config: str = "tiny", norm: str = "frame", seed: int = 0) -> VideoDecoderRef:
    """The reference decoder; ``norm="frame"`` (causal) or ``"clip"`` (CogVideoX/Hunyuan's 5-D GroupNorm)."""
    cfg = _pick(REF_CONFIGS, config, "video_decoder_ref")
    if norm not in ("frame", "clip"):
        raise ZooError(f"unknown norm {norm!r}", where="video_decoder_ref", hint="use norm='frame' or norm='clip'")
    return _seeded(seed, lambda: VideoDecoderRef(cfg, norm=norm))


@register_model(ModelCard(
    name="video_decoder_turbo", paper=_TURBO_PAPER, **_COMMON, **_TURBO_TINY, metrics=_TURBO_PAPER_METRICS,
    description=("Turbo-VAED-style mobile video VAE decoder: channel RMSNorm, SiLU/ReLU, 3-D depthwise separable "
                 "convs (k=5) in the low-resolution blocks, narrow full 3x3x3 convs at high resolution, decoupled "
                 "3-D pixel shuffle upsampling (conv at low resolution, temporal shuffle, per-frame pixel_shuffle, "
                 "drop st-1 frames). upsample='permute8d' uses the rank-8 permute form (same outputs). tiny widths "
                 "16/8/4/4; paper = the Turbo-VAED-Hunyuan config (512/256/32/16, layers 5/4/4/4/5)." + _CONVENTION)),
    example_inputs=_example_latent)
def video_decoder_turbo(config: str = "tiny", upsample: str = "decoupled", seed: int = 0) -> VideoDecoderTurbo:
    """The Turbo-VAED-style decoder; ``upsample="decoupled"`` or ``"permute8d"`` (identical outputs)."""
    cfg = _pick(TURBO_CONFIGS, config, "video_decoder_turbo")
    if upsample not in ("decoupled", "permute8d"):
        raise ZooError(f"unknown upsample {upsample!r}", where="video_decoder_turbo",
                       hint="use upsample='decoupled' or upsample='permute8d'")
    return _seeded(seed, lambda: VideoDecoderTurbo(cfg, upsample=upsample))
