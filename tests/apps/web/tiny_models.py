"""Two tiny models for the web app's browser tests, converted with ``edgekit.convert`` like a user's.

- ``TinySR``: conv 3→8, ReLU, conv 8→12, pixel shuffle ×2 (random weights, seed 0) on a 1x3x48x64
  input: real arithmetic (a layout or colour slip changes the output), milliseconds per frame.
- ``TinyClassifier``: conv 3→8 stride 2, ReLU, global mean, linear to five classes, 1x3x32x32,
  normalised with a mean/std (so the page's step 5 matters).
- ``TinyVideoDecoder``: a 1x4x2x8x8 latent (NCTHW) to two 16x16 RGB frames in [-1, 1].
"""

from __future__ import annotations

import torch

SR_SHAPE = (1, 3, 48, 64)
CLS_SHAPE = (1, 3, 32, 32)
CLS_MEAN = (0.485, 0.456, 0.406)
CLS_STD = (0.229, 0.224, 0.225)
LABELS = ["red", "green", "blue", "dark", "bright"]


class TinySR(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 12, 3, padding=1))
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.body(x))


class TinyClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8, len(LABELS))

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_sr() -> torch.nn.Module:
    return TinySR().eval()


def tiny_classifier() -> torch.nn.Module:
    return TinyClassifier().eval()


LATENT_SHAPE = (1, 4, 2, 8, 8)  # N, C, T, H, W


class TinyVideoDecoder(torch.nn.Module):
    """A latent ``1x4x2x8x8`` (NCTHW) to two RGB frames ``1x3x2x16x16`` in [-1, 1]: per frame a
    conv 4→12 and pixel shuffle ×2, then tanh."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = torch.nn.Conv2d(4, 12, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, z):
        n, c, t, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        y = torch.tanh(self.shuffle(self.conv(frames)))
        return y.reshape(n, t, 3, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)


def tiny_video_decoder() -> torch.nn.Module:
    return TinyVideoDecoder().eval()
