"""Generated SR-head variants for the pixel-shuffle pass tests: every spelling of a pixel shuffle
(``nn.PixelShuffle``, ``F.pixel_shuffle``, view/permute/reshape chains in NCHW and NHWC, an
einops-style DCR rearrange, another block order) after every kind of producer (a conv, a conv and
PReLU, a per-channel affine, a residual of two convs, a depthwise conv and explicit SiLU; and
producers no permutation can reach: a graph input, a grouped conv, a conv output read twice, a
channel concat)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _view6(y, r):  # PyTorch's own CRD order, by hand
    b, k, h, w = y.shape
    c = k // (r * r)
    return y.view(b, c, r, r, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * r, w * r)


def _einops_dcr(y, r):  # rearrange(y, "b (r1 r2 c) h w -> b c (h r1) (w r2)"): already DCR
    b, k, h, w = y.shape
    c = k // (r * r)
    return y.view(b, r, r, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c, h * r, w * r)


def _nhwc(y, r):  # the CRD shuffle done on channels-last tokens, then back to NCHW
    b, k, h, w = y.shape
    c = k // (r * r)
    t = y.permute(0, 2, 3, 1).reshape(b, h, w, c, r, r).permute(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c)
    return t.permute(0, 3, 1, 2)


def _transposed_block(y, r):  # rearrange(y, "b (c r2 r1) h w -> b c (h r1) (w r2)"): another order
    b, k, h, w = y.shape
    c = k // (r * r)
    return y.view(b, c, r, r, h, w).permute(0, 1, 4, 3, 5, 2).reshape(b, c, h * r, w * r)


SPELLINGS = {
    "module": lambda y, r: nn.PixelShuffle(r)(y),
    "functional": F.pixel_shuffle,
    "view6": _view6,
    "einops_dcr": _einops_dcr,
    "nhwc": _nhwc,
    "transposed_block": _transposed_block,
}
# producers whose channels the pass permutes (free) / where it adds a 1×1 permutation conv
PERMUTED = ["conv", "prelu", "affine", "residual", "depthwise_silu"]
GATHERED = ["input", "grouped", "shared", "concat"]


class ShuffleHead(nn.Module):
    """``producer`` → pixel shuffle (``spelling``) by ``r`` to ``c`` output channels."""

    def __init__(self, producer: str, spelling: str, r: int = 2, c: int = 3, cin: int = 4):
        super().__init__()
        self.producer, self.spelling, self.r = producer, spelling, r
        k = c * r * r
        self.cin = k if producer == "input" else cin
        self.conv = nn.Conv2d(cin, k, 3, padding=1, groups=2 if producer == "grouped" else 1)
        self.conv2 = nn.Conv2d(cin, k // 2 if producer == "concat" else k, 1)
        self.dw = nn.Conv2d(k, k, 3, padding=1, groups=k)
        self.prelu = nn.PReLU(k)
        with torch.no_grad():
            self.prelu.weight.uniform_(-0.5, 0.5)
        self.scale = nn.Parameter(torch.rand(k, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(1, k, 1, 1))
        if producer == "concat":
            self.conv = nn.Conv2d(cin, k // 2, 3, padding=1)

    def forward(self, x):
        p = self.producer
        if p == "input":
            y, extra = x * 2.0, 0.0
        else:
            y, extra = self.conv(x), 0.0
        if p == "prelu":
            y = self.prelu(y)
        elif p == "affine":
            y = torch.relu(y * self.scale + self.shift)
        elif p == "residual":
            y = F.leaky_relu(y + self.conv2(x), 0.2)
        elif p == "depthwise_silu":
            y = self.dw(y)
            y = y * torch.sigmoid(y)
        elif p == "shared":
            extra = y.mean()  # the conv output is also read elsewhere: its channels cannot move
        elif p == "concat":
            y = torch.cat([y, self.conv2(x)], 1)
        return SPELLINGS[self.spelling](y, self.r) + extra


def make(producer: str, spelling: str, r: int = 2, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = ShuffleHead(producer, spelling, r).eval()
    x = torch.randn(1, model.cin, 5, 6)
    return model, x
