"""Shared fixtures of the video rewrite tests: small "unseen user" models and helpers.

The models are written the way user code writes them (explicit permutes/reshapes, nn.GroupNorm on
5-D, F.interpolate on 5-D, the rank-8 pixel shuffle), not the way the passes emit them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekit.converters.passes import _fx, run_pipeline
from edgekit.zoo.video_decoder import pixel_shuffle_3d

VIDEO_PASSES = ["groupnorm_decompose", "pixel_shuffle_3d_to_4d", "frames_to_batch", "conv3d_to_conv2d",
                "upsample_nearest_native", "attention_per_frame"]
# ops that must not survive the video rewrites (gathers, 3-D ops)
FORBIDDEN = ("conv3d", "upsample_nearest3d", "index", "gather", "take", "expand", "repeat_interleave",
             "group_norm")


class CausalGroupedConv3d(nn.Module):
    """Grouped 3×3×3 Conv3d, causal (first frame replicated twice on the left)."""

    def __init__(self, cin: int = 4, cout: int = 6, groups: int = 2, k: tuple[int, int, int] = (3, 3, 3)):
        super().__init__()
        self.pad = k[0] - 1
        self.conv = nn.Conv3d(cin, cout, k, padding=(0, k[1] // 2, k[2] // 2), groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, :1]] * self.pad + [x], dim=2)
        return self.conv(x)


class SymmetricConv3d(nn.Module):
    """Non-causal Conv3d: zero padding on both sides in time (Turbo-VAED's separable convs)."""

    def __init__(self, cin: int = 4, cout: int = 5, stride: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=(dilation, 1, 1), stride=(stride, 1, 1),
                              dilation=(dilation, 1, 1), groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv(x))


class ClipGroupNorm(nn.Module):
    """nn.GroupNorm on the whole 5-D clip (statistics over C/G, T, H, W), then a 1×1×1 conv."""

    def __init__(self, c: int = 8, groups: int = 2):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-6)
        nn.init.normal_(self.norm.weight)
        nn.init.normal_(self.norm.bias)
        self.conv = nn.Conv3d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


class Upsample3d(nn.Module):
    """F.interpolate(mode='nearest') on 5-D by (ft, fh, fw), then a causal conv."""

    def __init__(self, c: int = 4, factors: tuple[int, int, int] = (2, 2, 2)):
        super().__init__()
        self.factors = tuple(float(f) for f in factors)
        self.conv = CausalGroupedConv3d(c, c, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.factors, mode="nearest"))


class PerFrameAttention(nn.Module):
    """Single-head attention over each frame's H·W positions, written with permute/reshape."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.scale = c ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, h, w = x.shape
        tok = x.permute(0, 2, 3, 4, 1).reshape(n * t, h * w, c)
        q, k, v = self.qkv(tok).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        y = self.proj(a @ v).reshape(n, t, h, w, c).permute(0, 4, 1, 2, 3)
        return x + y


class PixelShuffle8d(nn.Module):
    """Conv to C·st·s² channels, the rank-8 permute 3-D pixel shuffle, causal crop of st−1 frames."""

    def __init__(self, c: int = 3, st: int = 2, s: int = 2, crop: bool = True):
        super().__init__()
        self.st, self.s, self.crop = st, s, crop
        self.conv = CausalGroupedConv3d(4, c * st * s * s, groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = pixel_shuffle_3d(self.conv(x), self.st, self.s)
        return y[:, :, self.st - 1:] if self.crop else y


class NotAShuffle(nn.Module):
    """Conv3d then a rank-6 permute that swaps H and W halves: not a 3-D pixel shuffle."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        n, c, t, h, w = y.shape
        y = y.reshape(n, 2, c // 2, t, h, w).permute(0, 2, 3, 5, 4, 1).reshape(n, c // 2, t, w, h * 2)
        return y


class UserVideoModel(nn.Module):
    """Everything at once: grouped causal Conv3d, 5-D GroupNorm, per-frame attention, nearest
    (1,2,2) and (2,2,2) upsampling, an 8-D-permute pixel shuffle, a non-causal conv."""

    def __init__(self):
        super().__init__()
        self.conv_in = CausalGroupedConv3d(4, 8, groups=2)
        self.norm = ClipGroupNorm(8, 2)
        self.attn = PerFrameAttention(8)
        self.up1 = nn.Upsample(scale_factor=(1, 2, 2), mode="nearest")
        self.up2 = nn.Upsample(scale_factor=(2, 2, 2), mode="nearest")
        self.sym = SymmetricConv3d(8, 4, groups=2)
        self.shuffle = PixelShuffle8d(3, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(F.silu(self.norm(self.conv_in(x))))
        x = self.sym(self.up2(self.up1(x)))
        return self.shuffle(x)


class Plain2d(nn.Module):
    """A 2-D model: nothing for the video passes to do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


# ------------------------------------------------------------------------------------ helpers


def export(model: nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(model.eval(), (x,))


def to_artifact(program: torch.export.ExportedProgram, x: torch.Tensor, name: str | None = None) -> torch.Tensor:
    """``x`` (source layout) in the layout the rewritten program takes (from its layout meta)."""
    meta = program.graph_module.meta.get(_fx.LAYOUT_META, {})
    lay = next(iter(meta.get("inputs", {}).values()), None) if name is None else meta["inputs"].get(name)
    if lay is None:
        return x
    assert (lay["source"], lay["artifact"]) == ("NCTHW", "TCHW"), lay
    return x[0].transpose(0, 1).contiguous()


def from_artifact(program: torch.export.ExportedProgram, y: torch.Tensor, i: int = 0) -> torch.Tensor:
    meta = program.graph_module.meta.get(_fx.LAYOUT_META, {})
    lay = meta.get("outputs", {}).get(str(i))
    if lay is None:
        return y
    assert (lay["source"], lay["artifact"]) == ("NCTHW", "TCHW"), lay
    return y.transpose(0, 1)[None]


def run_source_layout(program: torch.export.ExportedProgram, x: torch.Tensor) -> torch.Tensor:
    """Run a (possibly rewritten) program on a source-layout input, return a source-layout output."""
    with torch.no_grad():
        return from_artifact(program, program.module()(to_artifact(program, x)))


def ops(program: torch.export.ExportedProgram) -> dict[str, int]:
    return _fx.count_ops(program)


def forbidden_ops(program: torch.export.ExportedProgram) -> list[str]:
    return [k for k in ops(program) if any(f in k for f in FORBIDDEN)]


def video_pipeline(program, passes=VIDEO_PASSES):
    """Run the video passes in pipeline order; (program, applied, not_applied)."""
    not_applied: dict[str, str] = {}
    out, applied = run_pipeline(program, None, passes=passes, not_applied=not_applied)
    return out, applied, not_applied


def latent(shape=(1, 4, 3, 6, 6), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
