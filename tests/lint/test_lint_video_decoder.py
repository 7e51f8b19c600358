"""The anchors' kind of output: the CogVideoX/HunyuanVideo-style decoder exported by litert-torch
without edgekit's pipeline (such exports hold CONV_3D, rank-5 tensors, GATHER_ND and
BROADCAST_TO): lint names every CONV_3D and every rank-5 tensor, with the passes that remove them."""

from __future__ import annotations

import json
from collections import Counter

from edgekit.lint import lint
from edgekit.lint.readers import read_graph


def test_litert_torch_video_decoder_fails_generic_npu_with_the_expected_findings(video_decoder_tflite):
    graph = read_graph(video_decoder_tflite)
    ops = Counter(op.type for op in graph.ops)
    assert ops["CONV_3D"] >= 10 and graph.inputs[0].shape == (1, 16, 2, 8, 8)
    report = lint(video_decoder_tflite, "generic-npu")
    assert not report.passed

    conv3d = [f for f in report.findings if f.op == "CONV_3D" and f.rule == "op-forbidden"]
    assert len(conv3d) == ops["CONV_3D"] and {f.fix_pass for f in conv3d} == {"conv3d_to_conv2d"}
    assert {f.index_or_node for f in conv3d} == {op.index for op in graph.ops if op.type == "CONV_3D"}

    rank5 = {t.key for op in graph.ops for t in op.outputs if not t.const and t.rank == 5}
    rank_findings = [f for f in report.findings if f.rule == "rank"]
    assert len(rank_findings) == len(rank5) + 1  # every rank-5 activation once, plus the model input
    assert len({f.tensor for f in rank_findings}) == len(rank_findings)  # named once each
    assert all(f.details["rank"] == 5 and f.fix_pass == "frames_to_batch" for f in rank_findings)

    forbidden = Counter(f.op for f in report.findings if f.rule == "op-forbidden")
    assert forbidden["GATHER_ND"] == ops["GATHER_ND"] and forbidden["BROADCAST_TO"] == ops["BROADCAST_TO"]
    passes = set(report.summary["fix_passes"])
    assert {"conv3d_to_conv2d", "frames_to_batch", "nhwc_boundary", "upsample_nearest_native"} <= passes
    assert passes <= {"conv3d_to_conv2d", "frames_to_batch", "nhwc_boundary", "upsample_nearest_native",
                      "groupnorm_decompose", "pixel_shuffle_3d_to_4d", "static_shapes", "int64_to_int32"}


def test_cli_on_the_video_decoder_exits_3(video_decoder_tflite):
    from typer.testing import CliRunner

    from edgekit.cli import app

    result = CliRunner().invoke(app, ["lint", str(video_decoder_tflite), "--json"])
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert any(f["op"] == "CONV_3D" for f in data["findings"])
    assert any(f["rule"] == "rank" and "rank-5" in f["message"] for f in data["findings"])
    assert data["summary"]["errors"] > 100  # every violation at once, not the first one
