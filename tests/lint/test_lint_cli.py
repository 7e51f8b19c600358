"""`edgekit lint` and the lint line of `edgekit inspect`, through the CLI."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def cli(monkeypatch):
    from typer.testing import CliRunner

    from edgekit.cli import app

    monkeypatch.delenv("EDGEKIT_DEBUG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def _one_error_line(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgekit: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_clean_model_exits_0(cli, tflite_models):
    result = cli("lint", tflite_models["tflite_clean"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "clean for generic-npu" in result.stdout and result.stderr == ""


def test_conv3d_model_exits_3_naming_conv3d_rank5_and_the_passes(cli, tflite_models):
    result = cli("lint", tflite_models["tflite_conv3d"], "--target", "generic-npu")
    _one_error_line(result, 3, "fails generic-npu")
    out = result.stdout
    for needle in ("op-forbidden", "CONV_3D", "conv3d_to_conv2d", "rank", "rank-5 tensor", "frames_to_batch", "why:"):
        assert needle in out, needle
    assert "fails generic-npu" in out.splitlines()[-1]


def test_json_output(cli, tflite_models):
    result = cli("lint", tflite_models["tflite_pixel_shuffle_nchw"], "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["target"]["name"] == "generic-npu" and data["target"]["max_rank"] == 4
    assert data["summary"]["errors"] == len(data["findings"]) == 3 and data["summary"]["passed"] is False
    rules = sorted(f["rule"] for f in data["findings"])
    assert rules == ["layout", "layout", "pixel-shuffle"]
    for f in data["findings"]:
        assert {"rule", "severity", "op", "index_or_node", "tensor", "message", "why", "fix_pass", "where"} <= set(f)
        assert f["why"] and (f["fix_pass"] or f["advice"])
    assert data["summary"]["fix_passes"] == ["pixel_shuffle_to_depth_to_space", "nhwc_boundary"]


def test_warnings_pass_unless_strict(cli, tflite_models):
    path = tflite_models["tflite_pixel_shuffle_nhwc"]
    ok = cli("lint", path, "-t", "tflite-gpu")
    assert ok.exit_code == 0 and "warning pixel-shuffle" in ok.stdout and "passes tflite-gpu" in ok.stdout
    _one_error_line(cli("lint", path, "-t", "tflite-gpu", "--strict"), 3, "--strict")


def test_all_lists_every_finding(cli, tflite_models):
    path = tflite_models["tflite_conv3d"]
    short, full = cli("lint", path), cli("lint", path, "--all")
    assert full.stdout.count("rank-5 tensor") >= short.stdout.count("rank-5 tensor") >= 3


def test_list_targets(cli):
    result = cli("lint", "--list-targets")
    assert result.exit_code == 0
    for name in ("generic-npu", "edgetpu", "tflite-gpu", "nnapi", "qnn-htp", "ane", "ethos-u"):
        assert name in result.stdout
    data = json.loads(cli("lint", "--list-targets", "--json").stdout)
    assert len(data) == 7 and all(t["sources"] and t["pipeline"] for t in data)


def test_bad_input(cli, tmp_path, tflite_models):
    _one_error_line(cli("lint", tmp_path / "nope.tflite"), 1, "nope.tflite", "no such file")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all, just text" * 4)
    _one_error_line(cli("lint", junk), 1, "junk.tflite")
    _one_error_line(cli("lint", tflite_models["tflite_clean"], "--target", "tpu9000"), 2, "unknown target", "generic-npu")
    _one_error_line(cli("lint"), 2, "missing MODEL")


def test_inspect_shows_the_generic_npu_lint_summary(cli, tflite_models):
    result = cli("inspect", tflite_models["tflite_pixel_shuffle_nchw"], "--no-placement")
    assert result.exit_code == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("Lint"))
    assert "generic-npu: 3 error(s)" in line and "pixel-shuffle 1" in line and "edgekit lint" in line
    data = json.loads(cli("inspect", tflite_models["tflite_clean"], "--json", "--no-placement").stdout)
    assert data["lint"] == {"target": "generic-npu", "passed": True, "errors": 0, "warnings": 0, "by_rule": {},
                            "fix_passes": []}
