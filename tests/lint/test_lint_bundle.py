"""Lint that agrees with the manifest: `edgekit lint BUNDLE` lints every artifact against the
bundle's own target, a pass that ran and declined is not proposed again (the finding says why),
and a --target conversion records each artifact's lint verdict in the manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.lint import Finding, LintReport, reconcile_fixes

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "apps" / "camera" / "default_bundle"


def _finding(fix: str | None) -> Finding:
    return Finding("pixel-shuffle", "error", "TRANSPOSE", 3, "t", "a pixel shuffle", "why", fix)


def test_reconcile_names_declined_and_applied_passes_instead_of_proposing_them():
    report = LintReport(Path("m.tflite"), "generic-npu", "tflite",
                        [_finding("pixel_shuffle_to_depth_to_space"), _finding("nhwc_boundary"), _finding("other")], 10)
    reconcile_fixes(report, applied=["nhwc_boundary"],
                    declined={"pixel_shuffle_to_depth_to_space": "its input is not produced by a conv"})
    declined, applied, untouched = report.findings
    assert declined.fix_pass is None and "did not apply: its input is not produced by a conv" in declined.advice
    assert applied.fix_pass is None and "ran on this artifact and left this op" in applied.advice
    assert untouched.fix_pass == "other"
    assert report.summary["fix_passes"] == ["other"]  # only a pass that could still help is proposed


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_lint_of_a_bundle_lints_every_artifact():
    r = _cli("lint", DEFAULT_BUNDLE, "--json")
    assert r.returncode == 3, r.stderr  # the shipped demo bundle is a plain export: its TFLite is not NPU-clean
    reports = json.loads(r.stdout)
    assert sorted(Path(x["summary"]["path"]).name for x in reports) == ["model.onnx", "model.tflite"]
    assert "1 of 2 artifacts fail" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_target_conversion_records_lint_and_lint_of_the_bundle_agrees(tmp_path):
    pytest.importorskip("torch")
    import torch

    import edgekit
    from edgekit.bundle import read_manifest

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(self.conv(x), 2)

    out = tmp_path / "b"
    edgekit.convert(Net().eval(), formats="onnx,tflite", out=out, input_shapes=[(1, 3, 8, 8)], target="generic-npu",
                    bench_runs=0)
    manifest = read_manifest(out)
    for art in manifest.artifacts:
        assert art.lint["target"] == "generic-npu" and art.lint["passed"], (art.format, art.lint)
        assert "findings" in art.lint
    r = _cli("lint", out)
    assert r.returncode == 0, r.stdout + r.stderr
