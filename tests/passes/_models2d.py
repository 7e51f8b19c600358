"""Small 2-D models and helpers shared by the 2-D pass tests (SR heads, BN convs, PReLU, SE)."""

from __future__ import annotations

import collections

import numpy as np
import torch
from torch import nn


class ConvShuffle(nn.Module):
    """conv → (relu) → pixel_shuffle, optionally twice (×4 by two ×2 stages, as ESPCN/EDSR heads)."""

    def __init__(self, c: int = 3, r: int = 2, stages: int = 1, act: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += [nn.Conv2d(c, c * r * r, 3, padding=1)] + ([nn.ReLU()] if act else []) + [nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class AnchoredShuffle(nn.Module):
    """SESR-style: (tail conv + bias-free anchor conv of the input) → hardtanh → pixel_shuffle."""

    def __init__(self, r: int = 2):
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 3 * r * r, 3, padding=1)
        self.anchor = nn.Parameter(torch.randn(3 * r * r, 3, 1, 1))
        self.r = r

    def forward(self, x):
        y = self.tail(torch.relu(self.body(x))) + nn.functional.conv2d(x, self.anchor)
        return nn.functional.hardtanh(nn.functional.pixel_shuffle(y, self.r), 0.0, 1.0)


class ShuffleNoConv(nn.Module):
    """pixel_shuffle of an input (no conv to absorb the permutation): must stay."""

    def forward(self, x):
        return nn.functional.pixel_shuffle(x * 2.0, 2)


class GroupedShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, groups=2)

    def forward(self, x):
        return nn.functional.pixel_shuffle(self.conv(x), 2)


class ConvBN(nn.Module):
    def __init__(self, cin: int = 3, cout: int = 8, bias: bool = False, depthwise: bool = False):
        super().__init__()
        groups = cin if depthwise else 1
        cout = cin if depthwise else cout
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias, groups=groups)
        self.bn = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        with torch.no_grad():
            for bn in (self.bn, self.bn2):
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.5, 2)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.bn2(y)  # not after a conv: stays a BatchNorm


class BNOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(x)


def export(model: nn.Module, *xs: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(model.eval(), xs)


def ops(program: torch.export.ExportedProgram) -> collections.Counter:
    return collections.Counter(str(n.target) for n in program.graph_module.graph.nodes if n.op == "call_function")


def run(program: torch.export.ExportedProgram, *xs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = program.module()(*xs)
    return out[0] if isinstance(out, (tuple, list)) else out


def tflite_ops(path) -> list[str]:
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.tools import flatbuffer_utils

    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    codes = model.operatorCodes
    return [names[max(codes[o.opcodeIndex].builtinCode, codes[o.opcodeIndex].deprecatedBuiltinCode)]
            for g in model.subgraphs for o in g.operators]


def run_tflite(path, x: np.ndarray) -> np.ndarray:
    """One inference of a single-input, single-output .tflite (``THREADS``: the suite's setting)."""
    from ai_edge_litert.interpreter import Interpreter

    from numeric import THREADS

    it = Interpreter(model_path=str(path), num_threads=THREADS)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()
