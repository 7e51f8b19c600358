"""attention_per_frame: per-frame attention computed channels-first (1×1 convs for the
projections, ``V Aᵀ`` for the product) — no layout transpose left, only the two matmul-operand
transposes; for ONNX and CoreML artifacts only."""

import collections

import pytest
import torch

from edgekit.converters.passes import _fx, attention_per_frame, frames_to_batch, stage_passes
from edgekit.zoo.video_decoder import FrameSelfAttention
from _video_models import PerFrameAttention, Plain2d, export, latent, ops, run_source_layout
from numeric import assert_close, assert_matches, fp32_bound

pytestmark = pytest.mark.numeric


def _matmul_operand_transposes_only(program) -> int:
    """Every transpose left swaps the last two axes of a matmul operand; returns how many."""
    n = 0
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        assert node.target is not torch.ops.aten.permute.default, node.format_node()
        if node.target is torch.ops.aten.transpose.int:
            rank = len(_fx.node_shape(node.args[0]))
            assert sorted(d % rank for d in node.args[1:3]) == [rank - 2, rank - 1], node.format_node()
            assert all(u.target is torch.ops.aten.matmul.default for u in node.users), node.format_node()
            n += 1
    return n


@pytest.mark.parametrize("model", [FrameSelfAttention(8), PerFrameAttention(8)], ids=["separate_qkv", "fused_qkv"])
def test_attention_channels_first(model):
    torch.manual_seed(0)
    model = model.eval()
    x = latent((1, 8, 3, 4, 5))
    folded = frames_to_batch.rewrite(export(model, x))
    assert attention_per_frame.check(folded) is None
    out = attention_per_frame.rewrite(folded)
    before, after = ops(folded), ops(out)
    assert before["aten.permute.default"] == 3  # tokens in, kᵀ, tokens out
    assert _matmul_operand_transposes_only(out) == 2  # qᵀ and Aᵀ
    assert "aten.linear.default" not in after and after["aten.conv2d.default"] == before["aten.linear.default"]
    assert _fx.max_rank(out) <= 4
    with torch.no_grad():
        for xi in (x, x * 10, torch.zeros_like(x)):
            assert_matches(run_source_layout(out, xi), model, xi)


def test_applies_before_frames_to_batch_when_tokens_come_from_frames():
    """FrameGroupNorm's output is already (T, C, H, W): the pass needs no folding to apply."""
    model = FrameSelfAttention(8).eval()
    x = latent((1, 8, 3, 4, 4))
    ep = export(model, x)
    assert attention_per_frame.check(ep) is None
    out = attention_per_frame.rewrite(ep)
    assert "aten.linear.default" not in ops(out)
    with torch.no_grad():
        assert_matches(run_source_layout(out, x), model, x)


def test_negative():
    # before frames_to_batch, tokens read straight from the (N, C, T, H, W) clip are not a transpose
    # of channels-first frames
    model = FrameSelfAttention(8).eval()
    model.norm = torch.nn.Identity()
    ep = export(model, latent((1, 8, 2, 4, 4)))
    assert attention_per_frame.check(ep) == attention_per_frame.NO_MATCH + "; run frames_to_batch first"
    assert attention_per_frame.check(export(Plain2d(), torch.randn(1, 3, 8, 8))) == attention_per_frame.NO_MATCH

    class TokenMlp(torch.nn.Module):  # a linear on tokens that are not a transpose of anything
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, t):
            return self.fc(t)

    assert attention_per_frame.check(export(TokenMlp(), torch.randn(2, 5, 8))) == attention_per_frame.NO_MATCH


def test_for_channels_first_formats_only():
    assert "attention_per_frame" in stage_passes("generic-npu", fmt="onnx")
    assert "attention_per_frame" in stage_passes("generic-npu", fmt="coreml")
    assert "attention_per_frame" not in stage_passes("generic-npu", fmt="tflite")


def test_onnx_has_no_layout_transpose(tmp_path):
    """Through the real exporter: the ONNX graph keeps only the two MatMul-operand Transposes,
    onnxruntime computes the source's output, and generic-npu lint passes (noting them)."""
    ort = pytest.importorskip("onnxruntime")
    import onnx

    from edgekit.lint import lint

    torch.manual_seed(0)
    model = PerFrameAttention(8).eval()
    x = latent((1, 8, 2, 4, 4))
    out = attention_per_frame.rewrite(frames_to_batch.rewrite(export(model, x)))
    x4 = x[0].permute(1, 0, 2, 3).contiguous()  # frames in batch: (T, C, H, W)
    path = tmp_path / "attn.onnx"
    torch.onnx.export(out, (x4,), str(path), dynamo=True, external_data=False)
    graph = onnx.load(str(path)).graph
    kinds = collections.Counter(n.op_type for n in graph.node)
    assert kinds["Transpose"] == 2 and kinds["MatMul"] == 2 and "Gather" not in kinds, kinds
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {graph.input[0].name: x4.numpy()})[0]
    with torch.no_grad():
        assert_close(got, model(x)[0].permute(1, 0, 2, 3), fp32_bound(model, x), "onnxruntime")
    report = lint(path, "generic-npu")
    assert report.passed and not [f for f in report.findings if f.op == "Transpose"], report.findings
    assert any("MatMul operand" in n for n in report.notes), report.notes
