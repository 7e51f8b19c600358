"""`edgekit compile` / `edgekit.compile`: a small int8 model through Arm's Vela (fast), the
compiled artifact and what Vela reported in the manifest, `edgekit inspect`, `edgekit convert
--compile`, and the one-line errors (float model, unknown accelerator / system config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.compiler import COMPILED_NAME


def _compiled_entry(bundle: Path) -> dict:
    manifest = json.loads((bundle / "edgekit.json").read_text())
    entries = [a for a in manifest["artifacts"] if a["path"] == COMPILED_NAME]
    assert len(entries) == 1, [a["path"] for a in manifest["artifacts"]]
    return entries[0]


def test_compile_in_place_records_vela_report(vela, tiny_int8, bundle_copy):
    import edgekit
    from edgekit.bundle import read_manifest
    from edgekit.vela import CONFIG_FILE, system_configs

    bundle = bundle_copy(tiny_int8)
    result = edgekit.compile(bundle, "ethos-u55-128")
    assert (bundle / COMPILED_NAME).is_file()
    read_manifest(bundle)  # the schema accepts what was written
    entry = _compiled_entry(bundle)
    assert entry["format"] == "tflite" and entry["target"] == "ethos-u55-128"
    by = entry["compiled_by"]
    assert by["vela"] == vela == "5.2.0" and by["accelerator"] == "ethos-u55-128"
    # the system configuration is one of Vela's shipped Arm/vela.ini, named, never made up
    assert by["config_file"] == CONFIG_FILE and by["system_config"] in system_configs()["system"]
    npu = entry["npu"]
    ops = npu["ops"]
    assert ops["total"] == ops["npu"] + ops["cpu"] and ops["npu"] >= 1
    assert ops["cpu"] == 0 and ops["npu_by_type"].get("CONV_2D") == 1, ops
    assert sorted(o["index"] for o in ops["npu_ops"]) == list(range(ops["total"]))  # every op, by index
    assert sum(o["cycles"] for o in ops["npu_ops"]) > 0
    assert npu["macs"] == 8 * 8 * 4 * (3 * 3 * 3 + 1)  # conv 3->4, 3x3, on 8x8; Vela counts the bias add as one MAC
    assert npu["cycles"]["npu"] > 0 and npu["inference_time_s"] > 0
    clock = npu["core_clock_hz"]
    assert clock > 0 and abs(npu["cycles"]["total"] / clock - npu["inference_time_s"]) <= 1e-3 * npu["inference_time_s"]
    assert npu["memory"]["sram_bytes"] > 0
    w = 4 * 3 * 3 * 3  # int8 weights; Vela adds a little for the 4 biases
    assert w <= npu["weights"]["original_bytes"] <= w + 4 * 4 and npu["weights"]["encoded_bytes"] > 0
    assert entry["verification"]["status"] == "skipped"
    assert result.report.cycles["npu"] == npu["cycles"]["npu"]
    # a session on this host never picks the compiled file (its ethos-u op runs only on the NPU)
    with edgekit.load(bundle) as session:
        assert session.artifact.path != COMPILED_NAME


def test_compile_cli_json_and_inspect(vela, tiny_int8, bundle_copy, cli):
    bundle = bundle_copy(tiny_int8)
    r = cli("compile", bundle, "--target", "ethos-u55-256", "--system-config", "Ethos_U55_Deep_Embedded",
            "--memory-mode", "Shared_Sram", "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["compiled_by"]["system_config"] == "Ethos_U55_Deep_Embedded"
    assert out["npu"]["accelerator"] == "ethos-u55-256" and out["npu"]["core_clock_hz"] == 200e6  # vela.ini's clock
    r = cli("inspect", bundle)
    assert r.exit_code == 0, r.stderr
    assert "NPU" in r.stdout and "Vela 5.2.0" in r.stdout and "ethos-u55-256" in r.stdout
    assert "0 on the CPU" in r.stdout
    # compiling again replaces the earlier compile, and says so
    r = cli("compile", bundle, "--target", "ethos-u65-256")
    assert r.exit_code == 0, r.stderr
    assert "replaced the earlier" in r.stdout and _compiled_entry(bundle)["target"] == "ethos-u65-256"
    # lint of the bundle leaves the compiled file alone (its ops are Vela's command stream)
    r = cli("lint", bundle, "--target", "ethos-u", "--json")
    assert COMPILED_NAME not in r.stdout


def test_compile_bare_file_to_new_bundle(vela, tiny_int8, tmp_path, cli):
    out = tmp_path / "npu"
    r = cli("compile", tiny_int8 / "model.tflite", "--target", "ethos-u85-256", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert (out / "model.tflite").is_file() and (out / COMPILED_NAME).is_file()
    assert _compiled_entry(out)["compiled_by"]["system_config"] == "Ethos_U85_SYS_DRAM_Mid"
    # a bare file without --out: reported, nothing written
    r = cli("compile", tiny_int8 / "model.tflite", "--target", "ethos-u55-128")
    assert r.exit_code == 0 and "nothing written" in r.stdout


def _one_line(r, code: int, *needles: str) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_float_model_is_a_one_line_error(vela, tiny_fp32, cli):
    _one_line(cli("compile", tiny_fp32 / "model.tflite", "--target", "ethos-u55-256"), 1, "float32", "--precision int8")
    _one_line(cli("compile", tiny_fp32, "--target", "ethos-u55-256"), 1, "fp32", "--precision int8")


def test_usage_errors(vela, tiny_int8, cli):
    _one_line(cli("compile", tiny_int8, "--target", "ethos-u99-1"), 2, "ethos-u99-1", "ethos-u55-256")
    _one_line(cli("compile", tiny_int8, "--target", "ethos-u55-256", "--system-config", "Made_Up_1GHz"), 2,
              "Made_Up_1GHz", "Ethos_U55_High_End_Embedded")
    _one_line(cli("compile", tiny_int8, "--target", "ethos-u55-256", "--memory-mode", "Huge"), 2, "Huge", "Shared_Sram")


def test_convert_compile_stage(vela, convert_cached):
    from edgekit.converters.compile_stage import check_compile_options
    from edgekit.errors import UsageError

    result = convert_cached(f"{Path(__file__).parents[1] / 'converters' / 'user_models.py'}:tiny_conv",
                            "tiny_compiled", formats=("tflite",), precision="int8", target="ethos-u",
                            compile="ethos-u55-256")
    assert result.ok and result.compile_error is None
    entry = _compiled_entry(result.bundle)
    assert entry["npu"]["ops"]["cpu"] == 0 and result.manifest.tools["ethos-u-vela"] == vela
    with pytest.raises(UsageError, match="int8"):
        check_compile_options("ethos-u55-256", ("tflite",), "fp32")
    with pytest.raises(UsageError, match="tflite"):
        check_compile_options("ethos-u55-256", ("onnx",), "int8")


def test_cpu_ops_carry_vela_reasons(vela, tiny_int8, tmp_path):
    """An op Vela leaves on the CPU is listed by type and index with Vela's reason: a float
    island appended to an int8 model (DEQUANTIZE then a float op) is such an op."""
    from edgekit.vela import parse_cpu_warnings, run_vela

    text = ("Warning (supported operators) operator: DEQUANTIZE, ofm: 'out'\n"
            "Reason: Op has no NPU support\n"
            "Warning (supported operators) operator: TANH, ofm: 't'\n"
            "Reason: Feature-map dataTypes must be one of ...\n    - Op has tensors with FLOAT32 dtype\n\nNetwork summary")
    parsed = parse_cpu_warnings(text)
    assert [(p[0], p[1]) for p in parsed] == [("DEQUANTIZE", "out"), ("TANH", "t")]
    assert parsed[0][2] == ["Op has no NPU support"] and parsed[1][2][1].startswith("- Op has tensors")
    report = run_vela(tiny_int8 / "model.tflite", "ethos-u55-128")
    assert report.cpu_ops == [] and report.npu_share == 1.0
