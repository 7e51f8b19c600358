"""`edgekit lint` and `edgekit inspect` on a runtime-only install (numpy, onnxruntime, ai-edge-litert).

Two subprocesses run the same CLI commands on the camera demo's default bundle (its
``model.tflite``, its ``model.onnx`` and the bundle folder): one as installed, one behind a
meta-path finder that refuses ``torch``, ``onnx``, ``coremltools`` and ``litert_torch`` (an
import of any of them raises ModuleNotFoundError). The runtime-only run must give the same
exit codes and the same reports. The one allowed difference: without ``onnx``, ONNX lint takes
the intermediate tensor shapes from onnxruntime's shape inference and says so in one note
(test_lint_onnx_without_onnx.py checks that it finds the same shapes on harder graphs). A Core
ML package cannot be parsed without coremltools: lint says what to install in one line,
inspect still describes the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "apps" / "camera" / "default_bundle"
BLOCKED = ("torch", "onnx", "coremltools", "litert_torch")

# Runs each argv (a JSON list of lists) through edgekit.cli.main, capturing exit code and output;
# with a blocked list, behind a finder that refuses those packages. Prints one JSON document.
RUNNER = """
import contextlib, importlib.abc, io, json, sys
blocked = tuple(filter(None, sys.argv[1].split(",")))
refused = set()

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            refused.add(name.split(".")[0])
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

already = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
assert not already, already
if blocked:
    sys.meta_path.insert(0, Refuse())
from edgekit.cli import main

results = []
for argv in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
    results.append({"argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
print(json.dumps({"results": results, "refused": sorted(refused), "leaked": leaked}))
"""


def _run(commands: list[list[str]], blocked: tuple[str, ...]) -> dict:
    env = {**os.environ, "COLUMNS": "200", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("EDGEKIT_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", RUNNER, ",".join(blocked), json.dumps(commands)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tflite, onnx = str(BUNDLE / "model.tflite"), str(BUNDLE / "model.onnx")
    package = _fake_mlpackage(tmp_path_factory.mktemp("coreml") / "model.mlpackage")
    commands = [
        ["lint", tflite, "--json"], ["lint", onnx, "--json"], ["lint", tflite], ["lint", onnx],
        ["lint", str(BUNDLE)], ["lint", onnx, "--target", "ethos-u", "--json"],
        ["inspect", tflite, "--json"], ["inspect", onnx, "--json"], ["inspect", str(BUNDLE), "--json"],
        ["inspect", str(BUNDLE)], ["lint", str(package)], ["inspect", str(package), "--json"],
    ]
    normal, runtime_only = _run(commands, ()), _run(commands, BLOCKED)
    return {" ".join(r["argv"]).replace(str(REPO) + "/", ""): (r, s)
            for r, s in zip(normal["results"], runtime_only["results"])}, runtime_only


def _fake_mlpackage(pkg: Path) -> Path:
    """An .mlpackage whose spec is not even protobuf: without coremltools it is never parsed."""
    spec = pkg / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec.parent.mkdir(parents=True)
    spec.write_bytes(b"not parsed")
    (pkg / "Manifest.json").write_text(json.dumps({
        "fileFormatVersion": "1.0.0", "rootModelIdentifier": "M",
        "itemInfoEntries": {"M": {"path": "com.apple.CoreML/model.mlmodel", "name": "model.mlmodel"}}}))
    return pkg


def test_the_runtime_only_process_never_imported_a_blocked_package(runs):
    _, runtime_only = runs
    assert runtime_only["leaked"] == []
    assert "onnx" in runtime_only["refused"]  # the ONNX reader asked for it and did without


@pytest.mark.parametrize("model", ["model.tflite", "model.onnx"])
def test_lint_json_reports_are_the_same(runs, model):
    results, _ = runs
    keys = [k for k in results if k.startswith(f"lint apps/camera/default_bundle/{model}") and "--json" in k]
    assert len(keys) == (2 if model == "model.onnx" else 1)
    for key in keys:
        normal, runtime_only = results[key]
        assert runtime_only["code"] == normal["code"] and normal["code"] in (0, 3), key
        a, b = json.loads(normal["stdout"]), json.loads(runtime_only["stdout"])
        assert b["findings"] == a["findings"] and b["summary"] == a["summary"] and b["target"] == a["target"], key
        ort_notes = [n for n in b["notes"] if "onnxruntime's shape inference" in n]
        assert b["notes"] == a["notes"] + ort_notes and len(ort_notes) == (model == "model.onnx"), key


def test_lint_text_output_is_the_same_but_for_the_shape_note(runs):
    results, _ = runs
    for model in ("model.tflite", "model.onnx"):
        normal, runtime_only = results[f"lint apps/camera/default_bundle/{model}"]
        assert runtime_only["code"] == normal["code"] and runtime_only["stderr"] == normal["stderr"]
        extra = [ln for ln in runtime_only["stdout"].splitlines() if "onnxruntime's shape inference" in ln]
        assert len(extra) == (model == "model.onnx")
        assert [ln for ln in runtime_only["stdout"].splitlines() if ln not in extra] == normal["stdout"].splitlines()


def test_lint_of_a_bundle_folder_is_the_same(runs):
    """A bundle is linted artifact by artifact; the shipped demo bundle's TFLite is a plain export
    (not NPU-clean), so both runs exit 3 with the same report and one error line."""
    results, _ = runs
    normal, runtime_only = results["lint apps/camera/default_bundle"]
    assert normal["code"] == runtime_only["code"] == 3
    assert runtime_only["stderr"] == normal["stderr"] and runtime_only["stderr"].count("\n") == 1


@pytest.mark.parametrize("target", ["model.tflite", "model.onnx", ""])
def test_inspect_reports_are_the_same(runs, target):
    results, _ = runs
    path = f"apps/camera/default_bundle/{target}".rstrip("/")
    normal, runtime_only = results[f"inspect {path} --json"]
    assert normal["code"] == runtime_only["code"] == 0, runtime_only["stderr"]
    assert json.loads(runtime_only["stdout"]) == json.loads(normal["stdout"])
    if target != "model.onnx":
        return
    assert json.loads(normal["stdout"])["lint"]["target"] == "generic-npu"  # the lint line ran in both


def test_inspect_text_of_the_bundle_is_the_same(runs):
    results, _ = runs
    normal, runtime_only = results["inspect apps/camera/default_bundle"]
    assert (runtime_only["code"], runtime_only["stdout"]) == (normal["code"], normal["stdout"]) == (0, normal["stdout"])


def test_core_ml_without_coremltools_says_what_to_install(runs):
    results, _ = runs
    (_, lint), = [v for k, v in results.items() if k.startswith("lint ") and k.endswith(".mlpackage")]
    assert lint["code"] == 1 and lint["stdout"] == ""
    assert lint["stderr"].count("\n") == 1 and lint["stderr"].startswith("edgekit: error: ")
    assert "linting a Core ML model needs the Python package 'coremltools'" in lint["stderr"]
    assert "pip install 'edgekit[coreml]'" in lint["stderr"]
    (_, inspect), = [v for k, v in results.items() if k.startswith("inspect ") and k.endswith(".mlpackage --json")]
    info = json.loads(inspect["stdout"])
    assert inspect["code"] == 0 and "pip install 'edgekit[coreml]'" in info["extra"]["note"]
    assert "pip install 'edgekit[coreml]'" in info["lint"]["error"]
