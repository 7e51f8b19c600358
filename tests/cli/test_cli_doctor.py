"""`edgekit doctor` and :func:`edgekit.doctor.diagnose`: facts match the host, missing pieces never crash."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest

from edgekit import doctor

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""


def test_doctor_json_matches_host(cli):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["python"]["version"] == platform.python_version()
    assert r["numpy"]["version"] == np.__version__
    assert r["cpu"]["arch"] == platform.machine()
    assert r["cpu"]["physical_cores"] >= 1
    assert isinstance(r["cpu"]["features"], dict)
    assert r["status"] in ("ok", "warnings", "errors")
    ort = pytest.importorskip("onnxruntime")
    b = r["backends"]["onnxruntime"]
    assert b["imports"] is True and b["version"] == ort.__version__
    assert set(b["accelerators"]) == set(ort.get_available_providers())
    if platform.system() != "Darwin":
        assert r["backends"]["coreml"]["can_run"] is False


def test_doctor_x86_flags_follow_proc_cpuinfo():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86 host only")
    flags = set()
    for line in open("/proc/cpuinfo").read().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    features, source = doctor.cpu_features()
    assert source == "/proc/cpuinfo"
    assert features["avx2"] == ("avx2" in flags)
    assert features["avx512f"] == ("avx512f" in flags)
    assert features["avx512_vnni"] == ("avx512_vnni" in flags)


def test_doctor_reads_arm_features(monkeypatch):
    monkeypatch.setattr(doctor.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(doctor, "_read_text", lambda path: ARM_CPUINFO if path == "/proc/cpuinfo" else None)
    features, source = doctor.cpu_features()
    assert source == "/proc/cpuinfo"
    assert features["neon"] and features["dotprod"] and features["fp16"]
    assert not features["i8mm"] and not features["sve"]


def test_doctor_human_output(cli):
    result = cli("doctor")
    assert result.exit_code == 0, result.stderr
    for word in ("Python", "NumPy", "CPU", "Backends", "Cameras"):
        assert word in result.stdout
    assert result.stderr.strip() == ""


def test_doctor_does_not_import_torch():
    code = ("import sys; from edgekit.doctor import diagnose; r = diagnose(); "
            "heavy = [m for m in ('torch', 'onnx', 'coremltools', 'tensorflow') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_doctor_finds_a_delegate_on_the_library_path(tmp_path, monkeypatch):
    if platform.system() != "Linux":
        pytest.skip("Linux library names")
    (tmp_path / "libedgetpu.so.1").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    found = doctor.find_delegates()
    assert {"library": "libedgetpu.so.1", "path": str(tmp_path / "libedgetpu.so.1"),
            "purpose": doctor.DELEGATES["libedgetpu.so.1"]} in found


def test_doctor_survives_missing_backends(monkeypatch, cli):
    """Nothing installed: no crash, and the fixes name the packages to install."""
    real = doctor._version
    monkeypatch.setattr(doctor, "_version",
                        lambda d: None if d in ("onnxruntime", "onnxruntime-gpu", "ai-edge-litert") else real(d))
    r = doctor.diagnose()
    fixes = " ".join(p["fix"] for p in r["problems"])
    assert "pip install onnxruntime" in fixes and "pip install ai-edge-litert" in fixes
    assert r["status"] != "ok"
    result = cli("doctor")
    assert result.exit_code == 0 and "pip install ai-edge-litert" in result.stdout


def test_doctor_flags_tflite_runtime_under_numpy2(monkeypatch):
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("needs NumPy 2")
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda d: "2.14.0" if d == "tflite-runtime" else real(d))
    failed = (False, "ImportError: numpy.core.multiarray failed to import")
    monkeypatch.setattr(doctor, "_probe_import", lambda m, timeout=60.0: failed)
    r = doctor.diagnose()
    assert r["backends"]["tflite-runtime"]["imports"] is False
    bad = [p for p in r["problems"] if "tflite-runtime" in p["what"]]
    assert bad and "NumPy" in bad[0]["what"]
    assert bad[0]["fix"] == "pip uninstall tflite-runtime && pip install ai-edge-litert"


def test_doctor_flags_32bit_arm_without_litert(monkeypatch):
    real = doctor._version
    monkeypatch.setattr(doctor.platform, "machine", lambda: "armv7l")
    monkeypatch.setattr(doctor, "_version", lambda d: None if d == "ai-edge-litert" else real(d))
    r = doctor.diagnose()
    arm = [p for p in r["problems"] if "32-bit ARM" in p["what"]]
    assert arm and arm[0]["severity"] == "error"
    assert "tflite-runtime 'numpy<2'" in arm[0]["fix"]


def test_doctor_section_failure_is_reported_not_raised(monkeypatch, cli):
    def boom():
        raise OSError("no /proc here")

    monkeypatch.setattr(doctor, "_cpu", boom)
    r = doctor.diagnose()
    assert r["cpu"] == {"error": "OSError: no /proc here"}
    result = cli("doctor")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_probe_import_reports_a_failing_import():
    ok, error = doctor._probe_import("edgekit_no_such_module_xyz")
    assert ok is False and "ModuleNotFoundError" in error
    assert doctor._probe_import("json") == (True, None)


def _fake_qualcomm_sdk(tmp_path, monkeypatch, libraries=()):
    """An ai-edge-litert-sdk-qualcomm install as pip leaves it: offline, the module without its SDK."""
    pkg = tmp_path / "site" / "ai_edge_litert_sdk_qualcomm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in libraries:
        lib = pkg / "data" / "lib" / "x86_64-linux-clang" / name
        lib.parent.mkdir(parents=True, exist_ok=True)
        lib.write_bytes(b"\x7fELF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda d: "2.3.0" if d == "ai-edge-litert-sdk-qualcomm" else real(d))


def test_doctor_flags_qualcomm_sdk_installed_empty(tmp_path, monkeypatch):
    _fake_qualcomm_sdk(tmp_path, monkeypatch)
    r = doctor.diagnose()
    qc = r["npu_compilers"]["qualcomm"]
    assert qc["version"] == "2.3.0" and qc["sdk"] is None and qc["empty"]
    flagged = [p for p in r["problems"] if "holds no Qualcomm SDK" in p["what"]]
    assert len(flagged) == 1 and "--force-reinstall" in flagged[0]["fix"]


def test_doctor_trusts_qualcomm_sdk_with_libraries(tmp_path, monkeypatch):
    _fake_qualcomm_sdk(tmp_path, monkeypatch, libraries=("libQnnHtp.so", "libQnnSystem.so"))
    r = doctor.diagnose()
    qc = r["npu_compilers"]["qualcomm"]
    assert qc["libraries"] == 2 and qc["sdk"].endswith("data") and "error" not in qc
    assert not [p for p in r["problems"] if "Qualcomm" in p["what"]]


def _fake_python(folder, body: str):
    """A stand-in for the user's rknn interpreter: a script that answers the probe."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_doctor_rknn_interpreter_probe(tmp_path, monkeypatch):
    monkeypatch.delenv(doctor.RKNN_PYTHON_ENV, raising=False)
    unset = doctor.rknn_status()
    assert not unset["ok"] and doctor.RKNN_PYTHON_ENV in unset["error"] and "rknn-toolkit2" in unset["fix"]

    good = _fake_python(tmp_path / "good", """echo '{"rknn-toolkit2": "2.5.0", "numpy": "1.26.4", "onnx": "1.18.0", "torch": "2.4.0"}'""")
    ok = doctor.rknn_status(good)
    assert ok["ok"] and ok["version"] == "2.5.0" and ok["versions"]["numpy"] == "1.26.4"

    broken = _fake_python(tmp_path / "broken", "echo \"ModuleNotFoundError: No module named 'rknn'\" >&2; exit 1")
    bad = doctor.rknn_status(broken)
    assert not bad["ok"] and "No module named 'rknn'" in bad["error"]

    monkeypatch.setenv(doctor.RKNN_PYTHON_ENV, broken)
    problems = doctor.diagnose()["problems"]
    assert [p for p in problems if doctor.RKNN_PYTHON_ENV in p["what"] and "rknn" in p["what"]]
