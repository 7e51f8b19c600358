"""`edgekit convert --target generic-npu` on small SR nets of each architecture kind
(tests/converters/sr_nets.py): TFLite and ONNX come out verified against the source, with the
pixel shuffle as DEPTH_TO_SPACE, nothing above rank 4, no BROADCAST_TO, gather, scatter, PAD or
SELECT, and lint-clean for generic-npu — or, where a finding is left, one that gives its reason
(no pass proposed that did not already run or decline).

Slow: one conversion per net (seconds each, cached per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("litert_torch")

from numeric import assert_verified  # noqa: E402

from edgekit.bundle import read_manifest  # noqa: E402
from edgekit.lint import lint  # noqa: E402
from edgekit.runtimes.modelfile import read_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.numeric]

TARGET = "generic-npu"
NETS = Path(__file__).with_name("sr_nets.py")
# net → (input shape, passes that must have applied)
CASES = {
    "vgg_prelu": ((1, 3, 16, 16), {"pixel_shuffle_to_depth_to_space", "prelu_restore"}),
    "rrdb_lite": ((1, 3, 16, 24), {"pixel_shuffle_to_depth_to_space"}),
    "swin_lite": ((1, 3, 16, 16), {"pixel_shuffle_to_depth_to_space", "high_rank_views_to_4d"}),
    "slice_repeat": ((1, 3, 24, 16), {"slice_assign_to_concat", "repeat_interleave_to_4d",
                                      "pixel_shuffle_to_depth_to_space"}),
}
BANNED = {"BROADCAST_TO", "GATHER", "GATHER_ND", "SCATTER_ND", "PAD", "SELECT", "SELECT_V2", "Expand", "Gather",
          "GatherND", "ScatterND", "ScatterElements", "Where", "Pad"}


@pytest.mark.parametrize("net", list(CASES))
def test_sr_net_converts_verified_and_lints(converted, net):
    shape, must = CASES[net]
    r = converted(f"{NETS}:{net}", formats="onnx,tflite", target=TARGET, bench_runs=0, input_shapes=[shape])
    status = {a.format: a for a in r.artifacts}
    for fmt in ("onnx", "tflite"):
        assert status[fmt].status == "passed", (fmt, status[fmt].reason)
    m = read_manifest(r.bundle)
    applied = set(m.extra["convert"]["passes"])
    assert must <= applied, (must - applied, m.extra["convert"].get("passes_not_applied"))
    for art in m.artifacts:
        assert_verified(art.verification, art.format)
        info = read_model(r.bundle / art.path)
        assert info.max_rank <= 4, (art.format, info.max_rank)
        hist = info.op_histogram
        assert not BANNED & set(hist), (art.format, hist)
        assert hist.get("DEPTH_TO_SPACE", 0) + hist.get("DepthToSpace", 0) == 1, hist
        report = lint(r.bundle / art.path, TARGET)
        recorded = art.lint  # the conversion's verdict, fixes reconciled with the passes it ran
        if net != "swin_lite":
            assert report.passed and not report.warnings, [(f.rule, f.where, f.message) for f in report.findings]
            assert recorded["passed"] and not recorded.get("warnings")
            assert "TRANSPOSE" not in hist and "Transpose" not in hist, hist
            continue
        # Swin: the window partition needs a transpose that is not a layout change (a rank-4
        # TRANSPOSE, warned), LayerNorm brings SQUARED_DIFFERENCE (warned); in ONNX the tokens are
        # channels-last by the model's own design (NCHW <-> NHWC layout Transposes) and GELU is an
        # op NPUs lack (the fix, approx_gelu_tanh, changes numerics: opt-in, never in a profile).
        # Each finding left says why, and proposes no pass that has not already run or declined.
        for f in recorded["findings"]:
            assert f["fix_pass"] is None or f["fix_pass"] not in m.extra["convert"]["passes"] + list(
                m.extra["convert"].get("passes_not_applied", {})), f
            assert f["fix_pass"] or f["advice"], f
            if f["severity"] == "error":
                layout = f["rule"] == "layout" and f["details"]["perm"] in ([0, 2, 3, 1], [0, 3, 1, 2])
                gelu = f["op"] in ("Gelu", "Erf") and f["fix_pass"] == "approx_gelu_tanh"
                assert art.format == "onnx" and (layout or gelu), f
        transposes = [f for f in report.findings if f.op in ("TRANSPOSE", "Transpose") and f.rule == "op-forbidden"]
        assert all(f.severity == "warning" and f.fix_pass is None for f in transposes), transposes
        # the partition and the reverse: one rank-4 permute each, on (H/w, w, W/w, w·C)
        windows = [f for f in transposes if "on [4, 4, 4, 32]" in f.message]
        assert len(windows) == 2, [(f.where, f.message) for f in transposes]
        if art.format == "tflite":
            assert report.passed, [(f.rule, f.where, f.message) for f in report.errors]
