"""`python -m edgekit.targets.refresh ethos-u`: the committed profile is what the installed Vela
reports (the op table, the version), no pipeline pass decomposes an op Vela runs natively, and an
int8 conversion keeps those ops (RELU_0_TO_1, PRELU) instead of the quantizer's spellings."""

from __future__ import annotations

import pytest


def test_committed_profile_matches_vela(vela):
    from edgekit.targets.refresh import refresh

    ok, message = refresh("ethos-u", check=True)
    assert ok, message
    assert f"Vela {vela}" in message


def test_profile_records_vela_version_and_native_ops(vela):
    from edgekit.targets import load_target
    from edgekit.targets.refresh import DECOMPOSES

    t = load_target("ethos-u")
    assert any(s.title.startswith(f"Arm Vela {vela}:") for s in t.sources)
    rules = t.ops["tflite"]
    for op in ("RELU_0_TO_1", "MINIMUM", "PRELU", "TRANSPOSE", "RESHAPE", "CONV_2D"):
        assert rules.status(op)[0] in ("allowed", "constrained"), op
    assert rules.status("DEPTH_TO_SPACE")[0] == "forbidden"
    assert "Unsupported opType" in rules.forbidden["DEPTH_TO_SPACE"].why  # Vela's words
    for pass_id, op in DECOMPOSES.items():
        if rules.status(op)[0] in ("allowed", "constrained"):
            assert pass_id not in t.pipeline, (pass_id, op)
    # the limits lint checks come from Vela's constraint checks
    from ethosu.vela.tflite_supported_operators import TFLiteSupportedOperators

    assert rules.constraints["DEPTHWISE_CONV_2D"].constraints["max_stride"] == TFLiteSupportedOperators.stride_range[1]


def test_refresh_refuses_a_decomposition_of_a_native_op(vela, monkeypatch, tmp_path):
    from edgekit.errors import EdgekitError
    from edgekit.targets import refresh as mod

    src = (mod.HERE / "ethos-u.toml").read_text()
    bad = src.replace('  "nhwc_boundary",', '  "nhwc_boundary",\n  "relu_0_to_1_decompose",', 1)
    assert bad != src
    (tmp_path / "ethos-u.toml").write_text(bad)
    monkeypatch.setattr(mod, "HERE", tmp_path)
    with pytest.raises(EdgekitError, match="relu_0_to_1_decompose decomposes RELU_0_TO_1"):
        mod.refresh("ethos-u", check=True)


def test_refresh_check_fails_on_a_stale_table(vela, monkeypatch, tmp_path):
    from edgekit.targets import refresh as mod

    src = (mod.HERE / "ethos-u.toml").read_text()
    (tmp_path / "ethos-u.toml").write_text(src.replace('"RELU_0_TO_1", ', "", 1))
    monkeypatch.setattr(mod, "HERE", tmp_path)
    ok, message = mod.refresh("ethos-u", check=True)
    assert not ok and "differs" in message
    assert mod.main(["ethos-u", "--check"]) == 1
    assert mod.main(["nnapi"]) == 2


def test_parse_report_reads_vela_sections():
    from edgekit.targets.refresh import parse_report

    text = """Vela version: `9.9.9`

## Ethos-U55 and Ethos-U65 TFLite Summary Table

| Operator | TFLite Constraints |
| --- | --- |
| ADD | [Generic](#x) |
| TRANSPOSE_CONV | [Generic](#x), [Specific](#y) |

## Ethos-U55 and Ethos-U65 TFLite Generic Constraints

- Tensors must have constant shape.

### Ethos-U55 and Ethos-U65 TFLite TRANSPOSE_CONV Constraints

- Stride values WxH must be: 1x1 OR 2x2 OR 2x1

## Ethos-U85 TFLite Summary Table

| Operator | TFLite Constraints |
| --- | --- |
| GATHER | [Generic](#z) |
"""
    r = parse_report(text)
    assert r["version"] == "9.9.9" and r["ops"] == ["ADD", "TRANSPOSE_CONV"]
    assert r["constraints"]["TRANSPOSE_CONV"] == ["- Stride values WxH must be: 1x1 OR 2x2 OR 2x1"]
    assert r["generic"] == ["- Tensors must have constant shape."]


def test_int8_native_keeps_prelu(vela, convert_cached):
    """SESR's PReLUs stay PRELU in the int8 file (the quantizer's RELU/MUL/RELU/MUL/SUB folded
    back) and run on the NPU."""
    from edgekit.lint.readers import read_graph

    result = convert_cached("sesr_m5_x2", "sesr_m5_x2-ethos-u", formats=("tflite",), precision="int8",
                            pretrained=True, target="ethos-u")
    assert result.ok
    types = [op.type for op in read_graph(result.bundle / "model.tflite").ops]
    assert types.count("PRELU") == 5 and "SUB" not in types, types
    passes = result.manifest.artifacts[0].passes
    assert any(p.startswith("int8_native: ") and "PRELU" in p for p in passes), passes
