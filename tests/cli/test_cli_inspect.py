"""`edgekit inspect` on ONNX, TFLite, Core ML and bundles; broken files give one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest


def _inspect_json(cli, path) -> dict:
    result = cli("inspect", path, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_inspect_onnx(cli, models):
    info = _inspect_json(cli, models["classifier_onnx"])
    assert info["format"] == "onnx"
    assert info["inputs"] == [{"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32", "layout": None}]
    assert [o["name"] for o in info["outputs"]] == ["logits"] and info["outputs"][0]["shape"] == [1, 5]
    assert info["op_histogram"]["Conv"] == 1 and info["op_histogram"]["Relu"] == 1
    assert info["num_ops"] == sum(info["op_histogram"].values())
    assert info["max_rank"] == 4
    # torch.onnx writes the weights beside the model; their size counts.
    assert info["external_files"] == ["classifier.onnx.data"]
    on_disk = models["classifier_onnx"].stat().st_size + models["classifier_onnx"].with_suffix(".onnx.data").stat().st_size
    assert info["size_bytes"] == on_disk


def test_inspect_ort(cli, models):
    info = _inspect_json(cli, models["sr_ort"])
    assert info["format"] == "ort"
    assert info["inputs"][0]["name"] == "lr" and info["inputs"][0]["shape"] == [1, 3, 8, 8]
    assert info["outputs"][0]["shape"] == [1, 3, 16, 16]
    # ORT's basic optimisation keeps one conv and turns pixel shuffle into DepthToSpace.
    assert info["op_histogram"]["Conv"] == 1 and info["op_histogram"]["DepthToSpace"] == 1


def test_inspect_tflite_reports_xnnpack_coverage(cli, models):
    if "classifier_tflite" not in models.files:
        pytest.skip("litert-torch not installed")
    info = _inspect_json(cli, models["classifier_tflite"])
    assert info["format"] == "tflite" and info["max_rank"] == 4
    assert info["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert info["op_histogram"].get("CONV_2D") == 1
    placement = info["placement"]
    counts = placement["op_counts"]
    from edgekit.runtimes.registry import available_backends

    if available_backends().get("litert") is not None:
        assert counts == "unknown" and placement["notes"]
        return
    # The interpreter and the file reader count the same ops.
    assert isinstance(counts, dict) and sum(counts.values()) == info["num_ops"]
    assert counts.get("XNNPACK", 0) > 0


def test_inspect_tflite_human(cli, models):
    if "classifier_tflite" not in models.files:
        pytest.skip("litert-torch not installed")
    result = cli("inspect", models["classifier_tflite"])
    assert result.exit_code == 0, result.stderr
    assert "TFLite" in result.stdout and "CONV_2D" in result.stdout and "Delegate" in result.stdout


def test_inspect_mlpackage(cli, models):
    if "classifier_mlpackage" not in models.files:
        pytest.skip("coremltools not installed")
    info = _inspect_json(cli, models["classifier_mlpackage"])
    assert info["format"] == "coreml"
    assert info["inputs"] == [{"name": "image", "shape": [1, 3, 16, 16], "dtype": "float32", "layout": None}]
    assert info["outputs"][0]["shape"] == [1, 5]
    hist = info["op_histogram"]
    assert hist["conv"] == 1 and hist["relu"] == 1 and hist["linear"] == 1 and "const" not in hist
    assert info["max_rank"] == 4
    assert info["extra"]["model_type"] == "mlProgram" and info["extra"]["const_ops"] > 0
    assert any(f.endswith("weight.bin") for f in info["external_files"])
    size = sum(p.stat().st_size for p in models["classifier_mlpackage"].rglob("*") if p.is_file())
    assert info["size_bytes"] == size


def test_mlpackage_reader_does_not_import_coremltools_or_torch(models):
    if "classifier_mlpackage" not in models.files:
        pytest.skip("coremltools not installed")
    code = ("import sys; from edgekit.inspect import inspect_model; "
            f"i = inspect_model({str(models['classifier_mlpackage'])!r}); "
            "print(i['op_histogram']['conv'], [m for m in ('torch', 'coremltools') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 []"


def test_inspect_mlpackage_without_coremltools(cli, models, monkeypatch):
    if "classifier_mlpackage" not in models.files:
        pytest.skip("coremltools not installed")
    from edgekit.runtimes import coreml_spec

    monkeypatch.setattr(coreml_spec, "protobuf", lambda: None)
    info = _inspect_json(cli, models["classifier_mlpackage"])
    assert info["inputs"] == [] and "coremltools is not installed" in info["extra"]["note"]
    assert "pip install 'edgekit[coreml]'" in info["lint"]["error"]  # lint says what to install, in one line
    result = cli("inspect", models["classifier_mlpackage"])
    assert result.exit_code == 0 and "pip install" in result.stdout


def test_inspect_bundle(cli, models):
    info = _inspect_json(cli, models["bundle"])
    assert info["format"] == "bundle"
    assert info["manifest"]["task"] == "classify" and info["manifest"]["preprocess"]["labels"] == "5 labels"
    paths = [a["path"] for a in info["artifacts"]]
    assert "model.onnx" in paths
    for a in info["artifacts"]:
        assert "error" not in a, a
        assert a["inspect"]["inputs"][0]["shape"] == [1, 3, 16, 16]
        assert a["inspect"]["inputs"][0]["layout"] == "NCHW"  # from the manifest: a model file has none
    result = cli("inspect", models["bundle"])
    assert result.exit_code == 0, result.stderr
    assert "tiny-classifier" in result.stdout and "classify" in result.stdout and "model.onnx" in result.stdout


def test_inspect_bundle_with_a_broken_artifact(cli, models, tmp_path, one_line_error):
    bundle = tmp_path / "b"
    shutil.copytree(models["bundle"], bundle)
    (bundle / "model.onnx").write_bytes(b"\x08\x07garbage")
    result = cli("inspect", bundle)
    line = one_line_error(result, 1, "artifacts could not be read")
    assert "model.onnx" in line
    assert "model.onnx" in result.stdout  # the readable rest is still shown


def _truncated(src, dst, keep=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.mark.parametrize("case", ["truncated_tflite", "random_tflite", "random_onnx", "truncated_onnx", "empty_onnx",
                                  "missing", "directory", "unknown_suffix", "mlpackage_no_manifest",
                                  "mlpackage_garbage_spec", "bad_manifest", "truncated_ort"])
def test_inspect_bad_inputs_give_one_line(cli, models, tmp_path, case, one_line_error):
    rng = np.random.default_rng(1)
    if case == "truncated_tflite":
        if "classifier_tflite" not in models.files:
            pytest.skip("litert-torch not installed")
        path = _truncated(models["classifier_tflite"], tmp_path / "cut.tflite")
    elif case == "random_tflite":
        path = tmp_path / "noise.tflite"
        path.write_bytes(rng.bytes(4096))
    elif case == "random_onnx":
        path = tmp_path / "noise.onnx"
        path.write_bytes(rng.bytes(4096))
    elif case == "truncated_onnx":
        path = _truncated(models["sr_onnx"], tmp_path / "cut.onnx")
    elif case == "empty_onnx":
        path = tmp_path / "empty.onnx"
        path.write_bytes(b"")
    elif case == "missing":
        path = tmp_path / "nope.onnx"
    elif case == "directory":
        path = tmp_path / "folder"
        path.mkdir()
    elif case == "unknown_suffix":
        path = tmp_path / "model.pt"
        path.write_bytes(b"x")
    elif case == "mlpackage_no_manifest":
        path = tmp_path / "m.mlpackage"
        path.mkdir()
    elif case == "bad_manifest":
        path = tmp_path / "bundle"
        path.mkdir()
        (path / "edgekit.json").write_text('{"edgekit_manifest": 1, "artifacts": [{"format": "onnx"}]')
    elif case == "truncated_ort":
        path = _truncated(models["sr_ort"], tmp_path / "cut.ort")
    else:
        if "classifier_mlpackage" not in models.files:
            pytest.skip("coremltools not installed")
        path = tmp_path / "g.mlpackage"
        shutil.copytree(models["classifier_mlpackage"], path)
        spec = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
        spec.write_bytes(rng.bytes(512))
    result = cli("inspect", path)
    one_line_error(result, 1, path.name)


def test_traceback_only_with_debug(cli, tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(os.urandom(256))
    quiet = cli("inspect", path)
    assert quiet.exit_code == 1 and "Traceback" not in quiet.stderr
    loud = cli("inspect", path, env={"EDGEKIT_DEBUG": "1"})
    assert loud.exit_code == 1 and "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1].startswith("edgekit: error: ")
