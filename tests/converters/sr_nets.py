"""Small super-resolution nets of the architecture kinds community SR models use, loaded by the
converter tests as ``sr_nets.py:callable`` (like a user's file). Tiny widths, 16-32 px inputs.

- ``vgg_prelu``: a compact VGG-style net (FSRCNN/ESPCN-like) with PReLU everywhere, the shuffle
  after an activation;
- ``rrdb_lite``: one residual-in-residual dense block (ESRGAN-like), the upsampling conv plus a
  skip conv of the input summed before the shuffle;
- ``swin_lite``: one window-attention block (SwinIR-like: LayerNorm, window partition, multi-head
  attention, window reverse, MLP) on channels-last tokens, then a conv and the shuffle;
- ``slice_repeat``: a feature block updated in place on half its channels (``x[:, :k] = f(x[:, :k])``)
  and a nearest skip written as ``repeat_interleave`` (plus a channel repeat_interleave).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class VGGPReLU(nn.Module):
    def __init__(self, c: int = 8, r: int = 2):
        super().__init__()
        self.head, self.a1 = nn.Conv2d(3, c, 5, padding=2), nn.PReLU(c)
        self.body, self.a2 = nn.Conv2d(c, c, 3, padding=1), nn.PReLU(c)
        self.up, self.a3 = nn.Conv2d(c, 3 * r * r, 3, padding=1), nn.PReLU(3 * r * r)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, x):
        return self.shuffle(self.a3(self.up(self.a2(self.body(self.a1(self.head(x)))))))


class DenseBlock(nn.Module):
    def __init__(self, c: int, g: int = 4):
        super().__init__()
        self.c1 = nn.Conv2d(c, g, 3, padding=1)
        self.c2 = nn.Conv2d(c + g, g, 3, padding=1)
        self.fuse = nn.Conv2d(c + 2 * g, c, 1)

    def forward(self, x):
        a = F.leaky_relu(self.c1(x), 0.2)
        b = F.leaky_relu(self.c2(torch.cat([x, a], 1)), 0.2)
        return x + 0.2 * self.fuse(torch.cat([x, a, b], 1))


class RRDBLite(nn.Module):
    def __init__(self, c: int = 8, r: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.rrdb = nn.Sequential(DenseBlock(c), DenseBlock(c))
        self.trunk = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Conv2d(c, c * r * r, 3, padding=1)
        self.skip = nn.Conv2d(3, c * r * r, 1)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)
        self.r = r

    def forward(self, x):
        f = self.head(x)
        f = f + 0.2 * self.trunk(self.rrdb(f))
        return self.tail(F.pixel_shuffle(F.leaky_relu(self.up(f), 0.2) + self.skip(x), self.r))


class WindowAttention(nn.Module):
    def __init__(self, c: int, w: int, heads: int = 2):
        super().__init__()
        self.w, self.heads = w, heads
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(approximate="tanh"), nn.Linear(2 * c, c))

    def forward(self, t):  # t: (B, H, W, C) tokens
        b, h, wd, c = t.shape
        w = self.w
        win = self.norm1(t).view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
        n = win.shape[0]
        q, k, v = self.qkv(win).reshape(n, w * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = torch.softmax((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1), -1) @ v
        a = self.proj(a.transpose(1, 2).reshape(n, w * w, c)).view(-1, w, w, c)
        t = t + a.view(b, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, c)
        return t + self.mlp(self.norm2(t))


class SwinLite(nn.Module):
    def __init__(self, c: int = 8, w: int = 4, r: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.block = WindowAttention(c, w)
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Conv2d(c, 3 * r * r, 3, padding=1)
        self.r = r

    def forward(self, x):
        f = self.head(x)
        t = self.block(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        f = f + self.conv(t)
        return F.pixel_shuffle(self.up(f), self.r)


class SliceRepeat(nn.Module):
    def __init__(self, c: int = 8, r: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.part = nn.Conv2d(c // 2, c // 2, 3, padding=1)
        self.mix = nn.Conv2d(2 * c, c, 1)
        self.up = nn.Conv2d(c, 3 * r * r, 3, padding=1)
        self.r = r

    def forward(self, x):
        f = self.head(x)
        k = f.shape[1] // 2
        f[:, :k] = torch.relu(self.part(f[:, :k]))  # in place, on half the channels
        f = self.mix(torch.repeat_interleave(f, 2, dim=1))
        y = F.pixel_shuffle(self.up(f), self.r)
        return y + torch.repeat_interleave(torch.repeat_interleave(x, self.r, dim=2), self.r, dim=3)


def _seeded(cls):
    torch.manual_seed(0)
    model = cls().eval()
    with torch.no_grad():  # PReLU slopes of both signs, so the slope matters
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(-0.5, 0.5)
    return model


def vgg_prelu():
    return _seeded(VGGPReLU)


def rrdb_lite():
    return _seeded(RRDBLite)


def swin_lite():
    return _seeded(SwinLite)


def slice_repeat():
    return _seeded(SliceRepeat)
