"""`edgekit convert` on the command line: progress on stderr, summary or JSON on stdout, exit
codes 0 / 1 / 2 / 3 and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edgekit.cli import app  # noqa: E402

USER = Path(__file__).parent / "user_models.py"


def _run(*args: str):
    return CliRunner().invoke(app, ["convert", *args])


def _error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("edgekit: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_json_output_and_progress(tmp_path):
    out = tmp_path / "b"
    r = _run(f"{USER}:tiny_conv", "--to", "onnx,tflite", "--out", str(out), "--json", "--bench-runs", "2")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] is True and [a["status"] for a in d["artifacts"]] == ["passed", "passed"]
    assert d["manifest"]["artifacts"][0]["inputs"][0] == {"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32",
                                                         "layout": "NCHW"}
    for stage in ("capture", "rewrite", "export onnx", "export tflite", "verify onnx", "verify tflite", "write"):
        assert f"✓ {stage}" in r.stderr, stage
    assert all(isinstance(a["latency_ms"], float) for a in d["artifacts"])


def test_summary_table(tmp_path):
    r = _run(f"{USER}:tiny_conv", "--to", "onnx", "--out", str(tmp_path / "b"), "-q")
    assert r.exit_code == 0, r.stderr
    assert "model.onnx" in r.stdout and "passed" in r.stdout and "latency" in r.stdout
    assert r.stderr.strip() == ""


@pytest.mark.parametrize("args, code, words", [
    (["--to", "onnx,gif"], 2, "unknown format 'gif'"),
    (["--input-shape", "1xAx3"], 2, "cannot read input shape '1xAx3'"),
    (["--target", "no-such-npu"], 2, "no-such-npu"),
    (["--precision", "int4"], 2, "unknown precision"),
    (["--precision", "int8", "--to", "tflite,coreml"], 2, "not CoreML"),
    (["--mean", "0.5,x"], 2, "cannot read --mean"),
])
def test_usage_errors_exit_2(tmp_path, args, code, words):
    r = _run(f"{USER}:tiny_conv", "--out", str(tmp_path / "b"), *args)
    assert r.exit_code == code
    assert words in _error_line(r)
    assert not (tmp_path / "b").exists()


def test_conversion_errors_exit_1(tmp_path):
    r = _run(f"{USER}:data_dependent", "--out", str(tmp_path / "b"))
    assert r.exit_code == 1
    line = _error_line(r)
    assert "data-dependent control flow" in line and "user_models.py:" in line
    r = _run(f"{USER}:missing_fn", "--out", str(tmp_path / "b"))
    assert r.exit_code == 1 and "'missing_fn' does not exist" in _error_line(r)
    assert not (tmp_path / "b").exists()


def test_failed_verification_exits_3_and_keeps_the_bundle(tmp_path):
    out = tmp_path / "b"
    r = _run(f"{USER}:noisy", "--to", "onnx", "--out", str(out))
    assert r.exit_code == 3
    assert "1 artifact(s) failed: onnx failed" in r.stderr and (out / "edgekit.json").is_file()
    assert "failed" in r.stdout


def test_non_empty_out_needs_force(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "x").write_text("x")
    r = _run(f"{USER}:tiny_conv", "--to", "onnx", "--out", str(out))
    assert r.exit_code == 2 and "--force" in _error_line(r)
    # --force replaces an edgekit bundle, never a file edgekit did not write
    r = _run(f"{USER}:tiny_conv", "--to", "onnx", "--out", str(out), "--force", "-q", "--bench-runs", "0")
    assert r.exit_code == 2 and "'x', which edgekit did not write" in _error_line(r) and (out / "x").exists()
    (out / "x").unlink()
    for _ in range(2):  # into the now empty folder, then over the bundle it holds
        r = _run(f"{USER}:tiny_conv", "--to", "onnx", "--out", str(out), "--force", "-q", "--bench-runs", "0")
        assert r.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["edgekit.json", "model.onnx"]


def test_an_untraceable_model_is_one_line_without_a_graph_dump(tmp_path):
    import subprocess
    import sys

    src = tmp_path / "ctl.py"
    src.write_text("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                   "        if x.sum() > 0:\n            return x * 2\n        return x - 1\n\n"
                   "def build():\n    return M(), (torch.rand(1, 3, 8, 8),)\n")
    r = subprocess.run([sys.executable, "-m", "edgekit", "convert", f"{src}:build", "--to", "onnx", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1
    assert "def forward" not in r.stdout + r.stderr and "torch.ops.aten" not in r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("edgekit: error:")]
    assert len(errors) == 1 and "ctl.py:5" in errors[0] and "data-dependent control flow" in errors[0]
