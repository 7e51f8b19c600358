"""int8 that keeps a model's meaning, or says it does not: a detector-like score map (conv →
sigmoid) quantized with calibration in its input domain keeps its scores; calibrated on inputs
far from that domain it moves them, and verification fails naming the output, the score before
and after and what to try. The ONNX QDQ file uses uint8 activations; every int8 artifact is timed
against its fp32 file and a slower one is flagged (the flag is tested with a stubbed timer: no
timing assertions). ``--value-range`` reaches the verification cases and the calibration."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ai_edge_quantizer")

from numeric import assert_verified  # noqa: E402

from edgekit.bundle import read_manifest  # noqa: E402
from edgekit.converters import verify as V  # noqa: E402
from edgekit.converters.criteria import SCORE_ABS  # noqa: E402

pytestmark = pytest.mark.numeric


def test_int8_keeps_the_scores_of_a_detector_calibrated_in_its_domain(converted, user):
    r = converted(user("score_map"), formats="onnx,tflite", precision="int8", bench_runs=8)
    m = read_manifest(r.bundle)
    for art in m.artifacts:
        v = art.verification
        assert_verified(v, f"score_map int8 {art.format}")
        score = v["outputs"]["output"]["score"]
        assert score["kind"] == "probability" and score["max_delta"] <= SCORE_ABS, score
        # calibrated on photo crops and random images in the model's (assumed) [0, 1] domain
        assert any("photos and" in p and "random images" in p and "[0, 1]" in p for p in art.passes), art.passes
        speed = art.extra["int8_speed"]  # both numbers recorded; the flag follows from them
        assert speed["fp32_ms"] > 0 and speed["int8_ms"] > 0
        assert speed["slower"] == (speed["int8_ms"] / speed["fp32_ms"] > V.SLOWER)
        st = next(a for a in r.artifacts if a.format == art.format)
        assert bool(st.warnings) == speed["slower"]
    import onnx

    model = onnx.load(str(r.bundle / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)  # U8S8 on the CPU


def test_int8_calibrated_far_from_the_inputs_fails_and_says_what_to_try(user, tmp_path):
    """Calibration arrays 40x the model's input range: every activation range is 40x too wide, the
    scores move (the test model's move by ~0.4), and the verification names the output and the
    remedy; the bundle is kept and the exit code is 3."""
    from edgekit.converters.api import convert

    far = tmp_path / "far.npy"
    np.save(far, (np.random.default_rng(0).random((8, 3, 32, 32)) * 40).astype(np.float32))
    r = convert(user("score_map"), formats="onnx,tflite", precision="int8", calibration=far, bench_runs=0,
                out=tmp_path / "b")
    assert r.exit_code == 3
    m = read_manifest(r.bundle)
    assert "8 arrays from" in m.extra["convert"]["calibration"]
    for art in m.artifacts:
        v = art.verification
        assert v["status"] == "failed", art.format
        assert "output 'output': int8 moves a score from" in v["reason"] and "\n" not in v["reason"], v["reason"]
        assert "--calibration" in v["hint"]
        assert any(p.endswith(f"on --calibration: 8 arrays from {far}") for p in art.passes), art.passes


def test_an_int8_artifact_slower_than_fp32_is_flagged(user, tmp_path, monkeypatch):
    """The flag and the summary line, with the timer stubbed (3 ms int8 vs 1 ms fp32)."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    monkeypatch.setattr(V, "_interleaved", lambda a, b, runs: (1.0, 3.0, 5))
    out = tmp_path / "b"
    r = CliRunner().invoke(app, ["convert", user("tiny_conv"), "--to", "onnx", "--precision", "int8", "--out",
                                 str(out), "--bench-runs", "4", "--quiet"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "int8 is slower than fp32 on this host (3.00 ms vs 1.00 ms, x3.00" in " ".join(r.stdout.split())
    speed = read_manifest(out).artifact_for("onnx").extra["int8_speed"]
    assert speed["slower"] is True and speed["ratio"] == 3.0


def test_value_range_reaches_the_cases_and_the_calibration(user, tmp_path):
    from edgekit.converters.api import convert

    r = convert(user("tiny_conv"), formats="onnx", precision="int8", value_range=(-1.0, 1.0), bench_runs=0,
                out=tmp_path / "b")
    m = read_manifest(r.bundle)
    assert m.preprocess["value_range"] == [-1.0, 1.0] and m.preprocess["overridden"] == ["value_range"]
    inputs = m.extra["convert"]["verification_inputs"]
    assert inputs["domain"] == "value range [-1, 1]"
    assert all("[-1, 1]" in c["what"] for c in inputs["cases"] if c["origin"] in ("random", "photo")), inputs
    assert any("[-1, 1]" in p for p in m.artifact_for("onnx").passes)


def test_value_range_is_checked():
    from edgekit.converters.api import convert
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="LO < HI"):
        convert("espcn_x2", formats="onnx", value_range=(1.0, 0.0), out="/nonexistent/never-written",
                input_shapes=[(1, 3, 8, 8)])
