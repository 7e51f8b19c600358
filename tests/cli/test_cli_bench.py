"""`edgekit bench`: the --json contract, consistent numbers, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

REQUIRED = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "init_ms", "peak_rss_mb", "backend", "threads")


@pytest.mark.parametrize("key, backend", [("classifier_onnx", "onnxruntime"), ("classifier_tflite", "litert")])
def test_bench_json(cli, models, key, backend):
    if key not in models.files:
        pytest.skip(f"{key} not built (converter missing)")
    result = cli("bench", models[key], "--runs", "20", "--warmup", "2", "--threads", "1", "--json")
    assert result.exit_code == 0, result.stderr
    d = json.loads(result.stdout)
    for k in REQUIRED:
        assert k in d, k
    assert d["backend"] == backend and d["threads"] == 1 and d["runs"] == 20 and d["warmup"] == 2
    assert 0 < d["min_ms"] <= d["p50_ms"] <= d["p90_ms"] <= d["p99_ms"] <= d["max_ms"]
    assert d["min_ms"] <= d["mean_ms"] <= d["max_ms"]
    assert d["init_ms"] > 0 and d["peak_rss_mb"] > 10  # a Python process with numpy and a runtime


def test_bench_human_and_feed_file(cli, models, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    result = cli("bench", models["bundle"], "--runs", "5", "--warmup", "0", "--input", tmp_path / "x.npy")
    assert result.exit_code == 0, result.stderr
    assert "p50 ms" in result.stdout and "peak RSS MB" in result.stdout


@pytest.mark.parametrize("args, code, needle", [
    (["--backend", "tensorrt"], 2, "tensorrt"),
    (["--runs", "0"], 2, None),
    (["--threads", "0"], 2, None),
])
def test_bench_usage_errors(cli, models, args, code, needle, one_line_error):
    result = cli("bench", models["classifier_onnx"], *args)
    if needle:
        one_line_error(result, code, needle)
    else:  # click's own range check
        assert result.exit_code == code and "Traceback" not in result.stderr


def test_bench_bad_feed(cli, models, tmp_path, one_line_error):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    result = cli("bench", models["classifier_onnx"], "--input", tmp_path / "x.npy")
    one_line_error(result, 1, "shape [1, 3, 8, 8]")


def test_bench_missing_model(cli, tmp_path, one_line_error):
    one_line_error(cli("bench", tmp_path / "gone.tflite"), 1, "gone.tflite")
