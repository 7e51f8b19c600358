"""``edgekit doctor``: what this host can run, and what to install when something is off.

:func:`diagnose` collects, without ever raising: the Python and NumPy in use, the CPU
(architecture, the SIMD features XNNPACK and onnxruntime pick kernels by — AVX2, AVX-512,
VNNI on x86; NEON, dotprod, i8mm, fp16 on ARM), which runtime backends import and at which
version, which accelerators they can reach (onnxruntime execution providers, LiteRT's
built-in XNNPACK, external TFLite delegates such as ``libedgetpu.so.1`` on the library path,
accelerator device nodes, CoreML on macOS only), cameras, and known-bad combinations with
the exact fix.

It never imports torch, onnx or coremltools (their versions come from package metadata), and
imports that are known to misbehave (``tflite_runtime`` under NumPy 2, ``picamera2`` with
its libcamera bindings) are tried in a child process so that a crash there is reported, not
suffered.

Example::

    >>> report = diagnose()                       # doctest: +SKIP
    >>> report["cpu"]["features"]["avx2"]         # doctest: +SKIP
    True
"""

from __future__ import annotations

import glob
import importlib
import importlib.metadata as metadata
import os
import platform
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["diagnose", "cpu_features", "find_delegates", "DELEGATES", "DEVICE_NODES"]

# External TFLite delegates edgekit can hand to LiteRT (``accelerator=<path>``): library file
# name -> what it drives and where it comes from.
DELEGATES: dict[str, str] = {
    "libedgetpu.so.1": "Google Coral Edge TPU (apt install libedgetpu1-std)",
    "libvx_delegate.so": "VeriSilicon VIP NPU, e.g. NXP i.MX 8M Plus (NXP eIQ / tflite-vx-delegate)",
    "libethosu_delegate.so": "Arm Ethos-U NPU, e.g. NXP i.MX 93 (NXP eIQ)",
    "libQnnTFLiteDelegate.so": "Qualcomm QNN delegate for Hexagon HTP / Adreno (Qualcomm AI Engine Direct)",
    "libarmnnDelegate.so": "Arm NN delegate for Mali GPUs and Arm CPUs (apt install libarmnn-tfliteparser / Arm NN release)",
    "libtensorflowlite_gpu_delegate.so": "TFLite GPU delegate (OpenCL / OpenGL ES), built from source",
}
_MAC_DELEGATES = {"libedgetpu.1.dylib": DELEGATES["libedgetpu.so.1"]}

# Device nodes (glob) that reveal an accelerator, and what it is.
DEVICE_NODES: dict[str, str] = {
    "/dev/apex_*": "Coral Edge TPU (PCIe / M.2)",
    "/dev/hailo*": "Hailo-8 / Hailo-8L NPU (e.g. Raspberry Pi AI Kit)",
    "/dev/accel/accel*": "NPU on the Linux accel subsystem (e.g. Intel NPU)",
    "/dev/galcore": "VeriSilicon GPU/NPU driver (galcore)",
    "/dev/dri/renderD*": "GPU render node (OpenCL / Vulkan / GL)",
    "/dev/nvidia[0-9]*": "NVIDIA GPU",
}
# USB accelerators: (idVendor, idProduct) -> name. The Coral USB Accelerator enumerates as
# 1a6e:089a until its firmware is loaded, then as 18d1:9302.
USB_ACCELERATORS: dict[tuple[str, str], str] = {
    ("1a6e", "089a"): "Coral USB Accelerator (firmware not loaded yet)",
    ("18d1", "9302"): "Coral USB Accelerator",
}

# CPU feature name -> flags that imply it, as /proc/cpuinfo spells them (x86 `flags`, ARM `Features`).
_X86_FEATURES = {
    "sse4_2": ("sse4_2",),
    "avx": ("avx",),
    "avx2": ("avx2",),
    "fma": ("fma",),
    "f16c": ("f16c",),
    "avx512f": ("avx512f",),
    "avx512_vnni": ("avx512_vnni",),
    "avx_vnni": ("avx_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx_int8": ("amx_int8",),
}
_ARM_FEATURES = {
    "neon": ("neon", "asimd"),
    "dotprod": ("asimddp",),
    "fp16": ("asimdhp", "fphp"),
    "i8mm": ("i8mm",),
    "bf16": ("bf16",),
    "sve": ("sve",),
    "sme": ("sme",),
}
# macOS sysctl keys for the same ARM features.
_MAC_ARM_SYSCTL = {
    "dotprod": "hw.optional.arm.FEAT_DotProd",
    "fp16": "hw.optional.arm.FEAT_FP16",
    "i8mm": "hw.optional.arm.FEAT_I8MM",
    "bf16": "hw.optional.arm.FEAT_BF16",
    "sme": "hw.optional.arm.FEAT_SME",
}

# Packages whose version doctor reports from metadata only (never imported here).
_PACKAGES = (
    "numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime", "coremltools",
    "torch", "onnx", "onnxscript", "litert-torch", "opencv-python", "opencv-python-headless", "pillow",
    "picamera2",
)


def diagnose() -> dict[str, Any]:
    """Everything :mod:`edgekit.doctor` knows about this host, as a JSON-ready dict. Never raises."""
    report: dict[str, Any] = {}
    sections = (
        ("edgekit", _edgekit),
        ("python", _python),
        ("numpy", _numpy),
        ("os", _os_info),
        ("cpu", _cpu),
        ("packages", _packages),
        ("backends", _backends),
        ("edgekit_backends", _edgekit_backends),
        ("delegates", find_delegates),
        ("devices", _devices),
        ("cameras", _cameras),
        ("npu_compilers", _npu_compilers),
    )
    for key, fn in sections:
        try:
            report[key] = fn()
        except Exception as e:  # doctor reports; it never falls over
            report[key] = {"error": f"{type(e).__name__}: {e}"}
    try:
        report["problems"] = _problems(report)
    except Exception as e:
        report["problems"] = [{"severity": "warning", "what": f"could not check combinations ({e})", "fix": ""}]
    severities = {p["severity"] for p in report["problems"]}
    report["status"] = "errors" if "error" in severities else "warnings" if severities else "ok"
    return report


# -- sections ---------------------------------------------------------------------------------

def _edgekit() -> dict[str, Any]:
    from edgekit import __version__

    return {"version": __version__, "location": str(Path(__file__).resolve().parent)}


def _python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "bits": struct.calcsize("P") * 8,
    }


def _numpy() -> dict[str, Any]:
    try:
        import numpy as np
    except Exception as e:
        return {"version": None, "error": f"{type(e).__name__}: {e}"}
    return {"version": np.__version__, "major": int(np.__version__.split(".")[0])}


def _os_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
    }
    if info["system"] == "Linux":
        libc, libc_version = platform.libc_ver()
        info["libc"] = f"{libc} {libc_version}".strip() or None
        try:
            info["distro"] = platform.freedesktop_os_release().get("PRETTY_NAME")
        except OSError:
            info["distro"] = None
    elif info["system"] == "Darwin":
        info["macos"] = platform.mac_ver()[0]
    return info


def _cpu() -> dict[str, Any]:
    from edgekit.runtimes.host import THREADS_ENV, physical_cores

    arch = platform.machine() or "unknown"
    features, source = cpu_features()
    out: dict[str, Any] = {
        "arch": arch,
        "bits": struct.calcsize("P") * 8,
        "model": _cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "threads_env": os.environ.get(THREADS_ENV) or None,
        "features": features,
        "features_source": source,
    }
    board = _read_text("/proc/device-tree/model")
    if board:
        out["board"] = board.rstrip("\x00").strip()
    return out


def cpu_features() -> tuple[dict[str, bool], str]:
    """SIMD features that matter for inference kernels, and where they were read from.

    Linux: the ``flags`` (x86) or ``Features`` (ARM) line of /proc/cpuinfo. macOS: sysctl.
    Elsewhere the dict is empty and the source says so.
    """
    arch = (platform.machine() or "").lower()
    is_arm = arch.startswith(("arm", "aarch64"))
    table = _ARM_FEATURES if is_arm else _X86_FEATURES
    text = _read_text("/proc/cpuinfo")
    if text:
        flags: set[str] = set()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                flags.update(value.split())
        if flags:
            # 64-bit ARM always has Advanced SIMD (NEON), even when the kernel names it asimd.
            found = {name: any(f in flags for f in names) for name, names in table.items()}
            if arch == "aarch64":
                found["neon"] = True
            return found, "/proc/cpuinfo"
    if platform.system() == "Darwin":
        if is_arm:
            found = {"neon": True}
            for name, key in _MAC_ARM_SYSCTL.items():
                found[name] = _sysctl(key) == "1"
            return found, "sysctl"
        leaf = " ".join(filter(None, (_sysctl("machdep.cpu.features"), _sysctl("machdep.cpu.leaf7_features"))))
        flags = {f.lower().replace(".", "_") for f in leaf.split()}
        return {name: any(f in flags for f in names) for name, names in table.items()}, "sysctl"
    return {}, f"not readable on {platform.system() or 'this OS'}"


def _cpu_model() -> str | None:
    text = _read_text("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    if platform.system() == "Darwin":
        return _sysctl("machdep.cpu.brand_string")
    return platform.processor() or None


def _packages() -> dict[str, str | None]:
    return {name: _version(name) for name in _PACKAGES}


def _backends() -> dict[str, Any]:
    return {
        "onnxruntime": _onnxruntime(),
        "litert": _litert(),
        "tflite-runtime": _tflite_runtime(),
        "coreml": _coreml(),
    }


def _onnxruntime() -> dict[str, Any]:
    out: dict[str, Any] = {"package": "onnxruntime", "version": _version("onnxruntime") or _version("onnxruntime-gpu")}
    if out["version"] is None:
        return {**out, "imports": False, "error": "not installed", "accelerators": []}
    try:
        ort = importlib.import_module("onnxruntime")
        providers = list(ort.get_available_providers())
    except Exception as e:
        return {**out, "imports": False, "error": f"{type(e).__name__}: {e}", "accelerators": []}
    return {**out, "version": getattr(ort, "__version__", out["version"]), "imports": True, "accelerators": providers}


def _litert() -> dict[str, Any]:
    out: dict[str, Any] = {"package": "ai-edge-litert", "version": _version("ai-edge-litert")}
    if out["version"] is None:
        return {**out, "imports": False, "error": "not installed", "accelerators": []}
    try:
        importlib.import_module("ai_edge_litert.interpreter")
    except Exception as e:
        return {**out, "imports": False, "error": f"{type(e).__name__}: {e}", "accelerators": []}
    # XNNPACK is LiteRT's default CPU delegate, compiled into the interpreter.
    accelerators = ["XNNPACK (built in)"]
    accelerators += [f"{d['library']} (external delegate)" for d in find_delegates()]
    return {**out, "imports": True, "accelerators": accelerators}


def _tflite_runtime() -> dict[str, Any]:
    out: dict[str, Any] = {"package": "tflite-runtime", "version": _version("tflite-runtime")}
    if out["version"] is None:
        return {**out, "imports": False, "error": "not installed", "accelerators": []}
    ok, error = _probe_import("tflite_runtime.interpreter")
    accelerators = ["XNNPACK (built in)"] + [f"{d['library']} (external delegate)" for d in find_delegates()] if ok else []
    return {**out, "imports": ok, "error": error, "accelerators": accelerators}


def _coreml() -> dict[str, Any]:
    out: dict[str, Any] = {"package": "coremltools", "version": _version("coremltools")}
    if platform.system() != "Darwin":
        # coremltools converts here, but Core ML itself (prediction, the Neural Engine) is macOS/iOS only.
        return {**out, "imports": None, "can_run": False, "accelerators": [],
                "note": "Core ML runs only on macOS/iOS; here coremltools can convert but not predict"}
    if out["version"] is None:
        return {**out, "imports": False, "can_run": False, "error": "not installed", "accelerators": []}
    return {**out, "imports": None, "can_run": True, "accelerators": ["CPU", "GPU", "Neural Engine (if present)"]}


def _edgekit_backends() -> dict[str, str | None]:
    """edgekit's own view: backend name -> None when usable, else why not."""
    from edgekit.runtimes.registry import BACKENDS, backend_module

    out: dict[str, str | None] = {}
    for name in BACKENDS:
        if name == "null":
            continue
        try:
            out[name] = backend_module(name).available()
        except Exception as e:
            out[name] = f"{type(e).__name__}: {e}"
    return out


def find_delegates() -> list[dict[str, str]]:
    """External TFLite delegate libraries present on the library search path (not loaded)."""
    names = _MAC_DELEGATES if platform.system() == "Darwin" else DELEGATES
    found = []
    seen: set[str] = set()
    for directory in _library_dirs():
        for lib, purpose in names.items():
            path = os.path.join(directory, lib)
            if lib not in seen and os.path.exists(path):
                seen.add(lib)
                found.append({"library": lib, "path": path, "purpose": purpose})
    return found


def _library_dirs() -> list[str]:
    """Where the dynamic loader looks: LD_LIBRARY_PATH, /etc/ld.so.conf(.d), the default dirs."""
    dirs: list[str] = []
    env = "DYLD_LIBRARY_PATH" if platform.system() == "Darwin" else "LD_LIBRARY_PATH"
    dirs += [d for d in os.environ.get(env, "").split(os.pathsep) if d]
    if platform.system() == "Darwin":
        dirs += ["/usr/local/lib", "/opt/homebrew/lib", "/usr/lib"]
    else:
        dirs += _ld_so_conf("/etc/ld.so.conf")
        dirs += ["/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib"]
        dirs += sorted(glob.glob("/usr/lib/*-linux-gnu*")) + sorted(glob.glob("/lib/*-linux-gnu*"))
    unique: list[str] = []
    for d in dirs:
        if d not in unique and os.path.isdir(d):
            unique.append(d)
    return unique


def _ld_so_conf(path: str, depth: int = 0) -> list[str]:
    text = _read_text(path)
    if not text or depth > 4:
        return []
    dirs: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            pattern = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
            if pattern and not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(path), pattern)
            for inc in sorted(glob.glob(pattern)):
                dirs += _ld_so_conf(inc, depth + 1)
        else:
            dirs.append(line)
    return dirs


def _devices() -> list[dict[str, str]]:
    found = []
    for pattern, what in DEVICE_NODES.items():
        for path in sorted(glob.glob(pattern)):
            found.append({"path": path, "what": what})
    for dev in sorted(glob.glob("/sys/bus/usb/devices/*")):
        ids = (_read_text(f"{dev}/idVendor"), _read_text(f"{dev}/idProduct"))
        if ids[0] and ids[1]:
            what = USB_ACCELERATORS.get((ids[0].strip().lower(), ids[1].strip().lower()))
            if what:
                found.append({"path": f"usb {ids[0].strip()}:{ids[1].strip()}", "what": what})
    return found


def _cameras() -> dict[str, Any]:
    devices = []
    for path in sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p)):
        name = _read_text(f"/sys/class/video4linux/{os.path.basename(path)}/name")
        devices.append({"path": path, "name": name.strip() if name else None})
    picam: dict[str, Any] = {"version": _version("picamera2")}
    if picam["version"] is None:
        picam.update(imports=False, error="not installed")
    else:
        ok, error = _probe_import("picamera2")
        picam.update(imports=ok, error=error)
    note = None
    if platform.system() != "Linux":
        note = f"camera nodes are not listed on {platform.system()}; `edgekit demo --source 0` opens the first camera"
    return {"devices": devices, "picamera2": picam, "note": note}


# -- NPU compilers -------------------------------------------------------------------------------

RKNN_PYTHON_ENV = "EDGEKIT_RKNN_PYTHON"
# How to make the separate interpreter rknn-toolkit2 needs: it pins NumPy <= 1.26, ONNX <= 1.18 and
# torch <= 2.4, which cannot share an environment with edgekit's converters.
RKNN_HOWTO = ("python3.11 -m venv ~/rknn-venv && ~/rknn-venv/bin/pip install torch==2.4.0 "
              "--index-url https://download.pytorch.org/whl/cpu && ~/rknn-venv/bin/pip install rknn-toolkit2, "
              f"then export {RKNN_PYTHON_ENV}=~/rknn-venv/bin/python")
# Where ai-edge-litert-sdk-qualcomm keeps the Qualcomm AI Runtime SDK it downloads while it installs.
_QUALCOMM_SDK_LIBS = ("data", "lib", "x86_64-linux-clang")


def _npu_compilers() -> dict[str, Any]:
    """The NPU compilers edgekit can drive, and whether each can really run here."""
    return {"vela": _vela(), "rknn": rknn_status(), "qualcomm": _qualcomm_sdk()}


def _vela() -> dict[str, Any]:
    out: dict[str, Any] = {"package": "ethos-u-vela", "version": _version("ethos-u-vela"),
                           "targets": "Arm Ethos-U55 / U65 / U85 (edgekit compile)"}
    if out["version"] is None:
        out["error"] = "not installed"
        out["fix"] = 'pip install "edgekit[ethos-u]"'
    return out


def rknn_status(python: str | None = None, timeout: float = 180.0) -> dict[str, Any]:
    """Whether the interpreter named by ``python`` (default: ``$EDGEKIT_RKNN_PYTHON``) imports rknn-toolkit2.

    That interpreter is the user's; edgekit only starts it (never installs into it)."""
    python = python or os.environ.get(RKNN_PYTHON_ENV) or None
    out: dict[str, Any] = {"package": "rknn-toolkit2", "python": python, "version": None,
                           "targets": "Rockchip RK3588 / RK3576 / RK3566 NPUs (simulated on x86-64)"}
    if not python:
        return {**out, "ok": False, "error": f"no interpreter named ({RKNN_PYTHON_ENV} is not set)", "fix": RKNN_HOWTO}
    code = ("import json, importlib.metadata as m; import rknn.api; "
            "print(json.dumps({d: m.version(d) for d in ('rknn-toolkit2', 'numpy', 'onnx', 'torch')}))")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**out, "ok": False, "error": f"importing rknn.api in {python} did not finish in {timeout:.0f} s",
                "fix": RKNN_HOWTO}
    except OSError as e:
        return {**out, "ok": False, "error": f"cannot start {python} ({e.strerror or e})", "fix": RKNN_HOWTO}
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        why = lines[-1][:300] if lines else f"exit code {proc.returncode}"
        return {**out, "ok": False, "error": f"{python} cannot import rknn.api ({why})", "fix": RKNN_HOWTO}
    import json

    try:
        versions = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {**out, "ok": False, "error": f"{python} printed no versions", "fix": RKNN_HOWTO}
    return {**out, "ok": True, "version": versions.get("rknn-toolkit2"), "versions": versions}


def _qualcomm_sdk() -> dict[str, Any]:
    """ai-edge-litert-sdk-qualcomm downloads Qualcomm's SDK while pip installs it; offline, the install
    succeeds with no SDK inside. Look for the SDK's libraries rather than trust the package."""
    import importlib.util

    out: dict[str, Any] = {"package": "ai-edge-litert-sdk-qualcomm", "version": _version("ai-edge-litert-sdk-qualcomm"),
                           "targets": "Qualcomm Hexagon NPUs (LiteRT ahead-of-time compilation)"}
    if out["version"] is None:
        return {**out, "sdk": None, "error": "not installed"}
    try:
        spec = importlib.util.find_spec("ai_edge_litert_sdk_qualcomm")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return {**out, "sdk": None, "error": "installed, but its module is missing"}
    libs = Path(spec.origin).parent.joinpath(*_QUALCOMM_SDK_LIBS)
    found = sorted(p.name for p in libs.glob("*.so*")) if libs.is_dir() else []
    if not found:
        return {**out, "sdk": None, "empty": True,
                "error": f"installed without the Qualcomm SDK (no libraries in {libs})"}
    return {**out, "sdk": str(libs.parent.parent), "libraries": len(found)}


# -- known-bad combinations --------------------------------------------------------------------

def _problems(r: dict[str, Any]) -> list[dict[str, str]]:
    """Known-bad combinations, each with what is wrong and the exact fix."""
    problems: list[dict[str, str]] = []

    def add(severity: str, what: str, fix: str) -> None:
        problems.append({"severity": severity, "what": what, "fix": fix})

    pkgs = r.get("packages", {})
    numpy_major = (r.get("numpy") or {}).get("major")
    machine = (platform.machine() or "").lower()
    bits = struct.calcsize("P") * 8
    arm32 = (machine.startswith("arm") and machine != "arm64") or (machine == "aarch64" and bits == 32)
    backends = r.get("backends", {})
    litert = backends.get("litert", {}) if isinstance(backends, dict) else {}
    tflrt = backends.get("tflite-runtime", {}) if isinstance(backends, dict) else {}
    ort = backends.get("onnxruntime", {}) if isinstance(backends, dict) else {}

    if (r.get("numpy") or {}).get("version") is None:
        add("error", "NumPy does not import; no backend can run", "pip install numpy")
    if pkgs.get("tflite-runtime") and numpy_major is not None and numpy_major >= 2:
        if arm32:
            fix = "pip install 'numpy<2' (tflite-runtime is the only TFLite wheel for 32-bit ARM)"
        else:
            fix = "pip uninstall tflite-runtime && pip install ai-edge-litert"
        add("error" if not litert.get("imports") else "warning",
            f"tflite-runtime {pkgs['tflite-runtime']} is built for NumPy 1.x and fails under NumPy {r['numpy']['version']}",
            fix)
    if arm32:
        where = "32-bit Python on a 64-bit ARM kernel" if machine == "aarch64" else f"32-bit ARM ({machine})"
        if not litert.get("imports"):
            add("warning" if tflrt.get("imports") else "error",
                f"{where}: ai-edge-litert publishes no wheels for it",
                "pip install tflite-runtime 'numpy<2' (or move to a 64-bit OS, where ai-edge-litert installs)")
    elif not litert.get("imports") and not tflrt.get("imports"):
        reason = litert.get("error") or "not installed"
        add("warning", f"no TFLite runtime imports (ai-edge-litert: {reason}); .tflite models cannot run",
            "pip install ai-edge-litert")
    if not ort.get("imports"):
        add("warning", f"onnxruntime does not import ({ort.get('error') or 'not installed'}); .onnx models cannot run",
            "pip install onnxruntime")
    if pkgs.get("onnxruntime") and pkgs.get("onnxruntime-gpu"):
        add("warning", "onnxruntime and onnxruntime-gpu are both installed; they share the `onnxruntime` module "
            "and the one installed last wins",
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (or onnxruntime)")
    if pkgs.get("opencv-python") and pkgs.get("opencv-python-headless"):
        add("warning", "opencv-python and opencv-python-headless are both installed; they overwrite each other's `cv2`",
            "pip uninstall -y opencv-python opencv-python-headless && pip install opencv-python (or -headless)")
    if platform.system() == "Darwin" and machine == "x86_64" and _sysctl("sysctl.proc_translated") == "1":
        add("warning", "this Python runs under Rosetta 2 (x86_64 on Apple silicon): no NEON kernels, slower inference",
            "install an arm64 Python (e.g. from python.org or `brew install python`)")
    cams = r.get("cameras", {})
    if isinstance(cams, dict) and cams.get("picamera2", {}).get("version") and not cams["picamera2"].get("imports"):
        add("warning", f"picamera2 is installed but does not import ({cams['picamera2'].get('error')})",
            "on Raspberry Pi OS use the system package: sudo apt install python3-picamera2, and create the venv "
            "with --system-site-packages")
    npu = r.get("npu_compilers") or {}
    qc = npu.get("qualcomm") if isinstance(npu, dict) else None
    if isinstance(qc, dict) and qc.get("empty"):
        add("warning", f"ai-edge-litert-sdk-qualcomm {qc.get('version')} holds no Qualcomm SDK (its install downloads "
            "the SDK and goes on without it when the download fails); Qualcomm NPU compilation cannot run",
            "with network access: pip install --force-reinstall --no-cache-dir ai-edge-litert-sdk-qualcomm")
    rk = npu.get("rknn") if isinstance(npu, dict) else None
    if isinstance(rk, dict) and rk.get("python") and not rk.get("ok"):
        add("warning", f"{RKNN_PYTHON_ENV} is set but {rk.get('error')}", RKNN_HOWTO)
    return problems


# -- helpers ----------------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
    except Exception:
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _sysctl(key: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _probe_import(module: str, timeout: float = 60.0) -> tuple[bool, str | None]:
    """Import ``module`` in a child Python; a crash or hang there is reported, not suffered."""
    code = f"import {module}"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"importing {module} did not finish in {timeout:.0f} s"
    except OSError as e:
        return False, f"could not start Python to import {module} ({e})"
    if proc.returncode == 0:
        return True, None
    lines = [ln.strip() for ln in proc.stderr.strip().splitlines() if ln.strip()]
    if proc.returncode < 0:
        return False, f"importing {module} crashed (signal {-proc.returncode})"
    return False, lines[-1][:300] if lines else f"exit code {proc.returncode}"
