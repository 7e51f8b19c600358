"""Lint names the pass that removes what SR nets leave after export, by what made the op: a slice
assignment (TFLite PAD + SELECT by a constant mask, ONNX ScatterND and the Transposes around it)
→ slice_assign_to_concat; repeat_interleave of a 4-D tensor (rank-5 RESHAPE/BROADCAST_TO,
Unsqueeze/Expand) → repeat_interleave_to_4d; a window partition (rank-6 RESHAPE/TRANSPOSE) →
high_rank_views_to_4d. After that pass, lint no longer names it, and the findings are gone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekit.lint import lint
from quiet import quiet

pytest.importorskip("litert_torch")


class SliceAssign(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.g = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        y[:, :4] = torch.relu(self.g(y[:, :4]))
        return y * 2


class Repeat(nn.Module):
    def forward(self, x):
        up = x.repeat_interleave(2, 2).repeat_interleave(2, 3)  # nearest x2 by hand
        return up + x.repeat_interleave(2, 1)[:, :1].repeat_interleave(2, 2).repeat_interleave(2, 3)


class Windows(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(3, 3)

    def forward(self, t):  # (1, H, W, C) tokens
        b, h, w, c = t.shape
        p = t.view(b, h // 4, 4, w // 4, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, 4, 4, c)
        p = self.mix(p)
        return p.view(b, h // 4, w // 4, 4, 4, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


CASES = {
    "slice_assign_to_concat": (SliceAssign, (1, 3, 8, 8), {"PAD", "SELECT", "SELECT_V2", "ScatterND"}),
    "repeat_interleave_to_4d": (Repeat, (1, 3, 8, 8), {"BROADCAST_TO", "Expand"}),
    "high_rank_views_to_4d": (Windows, (1, 8, 8, 3), {"TRANSPOSE", "Transpose"}),
}


def _export(program_or_model, x, fmt: str, path):
    with quiet():
        if fmt == "tflite":
            import litert_torch

            module = program_or_model.module() if hasattr(program_or_model, "module") else program_or_model
            module.training = False
            litert_torch.convert(module, (x,)).export(str(path))
        else:
            torch.onnx.export(program_or_model, (x,), dynamo=True).save(str(path))
    return path


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
@pytest.mark.parametrize("pass_id", list(CASES))
def test_lint_names_the_pass_and_the_pass_removes_the_findings(pass_id, fmt, tmp_path):
    import importlib

    make, shape, op_types = CASES[pass_id]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(*shape)
    before = lint(_export(model, x, fmt, tmp_path / f"before.{fmt}"), "generic-npu")
    named = [f for f in before.findings if f.fix_pass == pass_id]
    assert named, [(f.rule, f.where, f.fix_pass) for f in before.findings]
    assert {f.op for f in named} & op_types or any(f.rule == "rank" for f in named), [(f.rule, f.where) for f in named]
    # nothing this pass removes is attributed to another pass
    wrong = [f for f in before.findings if f.op in op_types and f.fix_pass and f.fix_pass != pass_id
             and f.rule != "layout"]
    assert not wrong, [(f.rule, f.where, f.fix_pass) for f in wrong]

    module = importlib.import_module(f"edgekit.converters.passes.{pass_id}")
    program = torch.export.export(model, (x,))
    assert module.check(program) is None
    after = lint(_export(module.rewrite(program), x, fmt, tmp_path / f"after.{fmt}"), "generic-npu")
    assert not [f for f in after.findings if f.fix_pass == pass_id], \
        [(f.rule, f.where, f.fix_pass) for f in after.findings]
    assert not [f for f in after.findings if f.rule == "rank"]
    left = [f for f in after.findings if f.op in op_types and f.severity == "error" and f.rule != "layout"]
    assert not left, [(f.rule, f.where, f.message) for f in left]
