"""User-style models for the converter tests, loaded as ``user_models.py:callable``.

Not a test module (no ``test_`` prefix): ``edgekit convert`` imports it from its path, the
way a user's own file is imported. The models use what real user code does and the zoo does
not always: squeeze-excitation with hard-sigmoid, hard-swish, PReLU, two-stage pixel shuffle,
a bilinear skip connection, non-square non-224 inputs — and the mistakes the error paths
must report.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018, https://arxiv.org/abs/1709.01507), hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class TinyClassifier(nn.Module):
    """Conv-BN-hardswish stem, a depthwise block with SE, global pool, linear head."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.se = SqueezeExcite(16)
        self.pw = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.Hardswish())
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.pw(self.se(self.dw(self.stem(x))))
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and O(1) logits, so that verification is not vacuous."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def se_classifier():
    """Module only: the converter needs --input-shape."""
    torch.manual_seed(0)
    return _randomise_bn(TinyClassifier()).eval()


def se_classifier_train_mode():
    """A module left in training mode (dropout, batch statistics): converted in eval mode."""
    torch.manual_seed(0)
    return _randomise_bn(TinyClassifier()).train()


class TwoStageSR(nn.Module):
    """×4 super-resolution: PReLU features, two ×2 pixel shuffles, a bilinear skip."""

    def __init__(self, features: int = 16):
        super().__init__()
        self.head = nn.Conv2d(3, features, 3, padding=1)
        self.act = nn.PReLU(features)
        self.up1 = nn.Conv2d(features, features * 4, 3, padding=1)
        self.up2 = nn.Conv2d(features, 3 * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        y = self.act(self.head(x))
        y = self.shuffle(self.up1(y))
        y = self.shuffle(self.up2(y))
        return y + F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def two_stage_sr():
    """Returns (module, example_inputs) at a non-square size."""
    torch.manual_seed(0)
    model = TwoStageSR().eval()
    with torch.no_grad():
        model.act.weight.uniform_(0.05, 0.4)
    return model, (torch.rand(1, 3, 20, 28),)


class DataDependent(nn.Module):
    def forward(self, x):
        if x.mean() > 0.5:  # a Python branch on a tensor's value: torch.export cannot trace it
            return x * 2
        return x


def data_dependent():
    return DataDependent(), (torch.rand(1, 3, 8, 8),)


def returns_none():
    return None


def returns_number():
    return 42


def needs_args(width):
    return nn.Conv2d(3, width, 1)


def raises():
    return TinyClassifier(num_classes="ten")  # noqa: the bug is the point


class Upsample3d(nn.Module):
    """Nearest 3-D upsampling: ONNX and TFLite express it, coremltools does not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2, mode="nearest")


def upsample3d():
    torch.manual_seed(0)
    return Upsample3d().eval(), (torch.rand(1, 2, 2, 4, 4),)


class Noisy(nn.Module):
    """Not deterministic: no artifact can reproduce it, so verification must fail."""

    def forward(self, x):
        return x + torch.rand_like(x)


def noisy():
    return Noisy(), (torch.rand(1, 3, 8, 8),)


def tiny_conv():
    """The smallest convertible model (fast CLI tests)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval(), (torch.rand(1, 3, 8, 8),)


class ScoreMap(nn.Module):
    """A detector's score head: conv → ReLU → conv → ReLU → 1x1 conv → sigmoid, with He-scaled
    random weights and logits x3, so its scores spread over (0, 1) and int8 errors show in them."""

    def __init__(self, width: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a, self.b, self.head = nn.Conv2d(3, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1), \
            nn.Conv2d(width, 1, 1)
        with torch.no_grad():
            for c in (self.a, self.b, self.head):
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) * (2.0 / c.weight[0].numel()) ** 0.5)
                c.bias.zero_()

    def forward(self, x):
        return torch.sigmoid(self.head(F.relu(self.b(F.relu(self.a(x))))) * 3)


def score_map():
    """A detector-like score map on 32x32 RGB in [0, 1] (sigmoid output: scores)."""
    return ScoreMap().eval(), (torch.rand(1, 3, 32, 32),)


def dotted_names_onnx(path):
    """Write an ONNX model whose input and outputs are named as PaddleOCR names them
    (``softmax_11.tmp_0``) and with '/': a softmax over classes and a sigmoid map."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.c = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.c(x)
            return torch.softmax(y.mean((2, 3)), 1), torch.sigmoid(y)

    torch.onnx.export(TwoHeads().eval(), (torch.rand(1, 3, 16, 16),), str(path), input_names=["x"],
                      output_names=["softmax_11.tmp_0", "det/sigmoid.map"], dynamo=False)
    return path
