"""Fuzz: a few hundred mutants of small TFLite, ONNX and CoreML models and of bundle manifests,
each opened by an ``edgekit`` command (inspect, bench, lint) in a child process with a timeout.

A native crash (the child dies of a signal), a hang (the timeout), a traceback or an error that
is not exactly one ``edgekit: error:`` line fails the test, naming the case. The seed is fixed;
``EDGEKIT_FUZZ_N=5000`` runs a longer campaign (``EDGEKIT_FUZZ_SEED`` picks another seed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N = int(os.environ.get("EDGEKIT_FUZZ_N", "320"))
SEED = int(os.environ.get("EDGEKIT_FUZZ_SEED", "20261203"))
HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "apps" / "camera" / "default_bundle"


# -- mutations -------------------------------------------------------------------------------------
def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:  # a few random bytes
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 1:  # truncated
        del b[int(rng.integers(1, len(b))):]
    elif kind == 2:  # random bytes inserted
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8).tobytes()
    elif kind == 3:  # a window overwritten with 0x00 or 0xFF (offsets and lengths go to extremes)
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 16))
        b[i:i + n] = bytes([0xFF if rng.integers(0, 2) else 0x00]) * len(b[i:i + n])
    elif kind == 4:  # a chunk duplicated
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 256))
        b[i:i] = b[i:i + n]
    else:  # one 32-bit little-endian field set to an extreme
        i = int(rng.integers(0, max(1, len(b) - 4)))
        b[i:i + 4] = int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0x10000])).to_bytes(4, "little")
    return bytes(b)


WEIRD = [None, -1, 0, 2**40, -(2**63), 1.5, float("1e308"), True, "", ".", "../../etc/passwd", "/etc/passwd",
         "NCHW", "x" * 5000, [], {}, [[[[[]]]]], {"a": {"b": {"c": None}}}, "\u0000", "🙂", [1, 2, 3]]


def mutate_json(text: str, rng: np.random.Generator) -> str:
    if rng.integers(0, 4) == 0:  # raw text edits
        return mutate_bytes(text.encode(), rng).decode("utf-8", "replace")
    data = json.loads(text)
    paths = []

    def walk(obj, path):
        paths.append(path)
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, path + [k])
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, path + [i])

    walk(data, [])
    path = paths[int(rng.integers(1, len(paths)))] if len(paths) > 1 else []
    parent = data
    for k in path[:-1]:
        parent = parent[k]
    if path and isinstance(parent, dict) and rng.integers(0, 5) == 0:
        del parent[path[-1]]
    elif path:
        parent[path[-1]] = WEIRD[int(rng.integers(0, len(WEIRD)))]
    return json.dumps(data, allow_nan=True)


# -- sources ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    from conformance import model_builders as B

    d = tmp_path_factory.mktemp("fuzz_sources")
    src = {
        "add_mul.tflite": B.tflite_add_mul(d / "add_mul.tflite"),
        "int8.tflite": B.tflite_dequantize(d / "int8.tflite", "int8"),
        "sr.tflite": DEFAULT_BUNDLE / "model.tflite",
        "sr.onnx": DEFAULT_BUNDLE / "model.onnx",
    }
    pytest.importorskip("onnx")
    src["float16.onnx"] = B.onnx_float16(d / "float16.onnx")
    src["dequantize.onnx"] = B.onnx_dequantize(d / "dequantize.onnx")
    bundle = d / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    src["bundle"] = bundle
    try:
        src["model.mlpackage"] = _tiny_mlpackage(d / "model.mlpackage")
    except Exception as e:  # noqa: BLE001 - coremltools missing or unable to build here: fuzz the rest
        print(f"no CoreML source for the fuzz test: {e}")
    return src


def _tiny_mlpackage(path: Path) -> Path:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 4, 4))])
    def prog(x):
        return mb.relu(x=mb.add(x=x, y=1.0), name="y")

    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15).save(str(path))
    return path


def make_cases(sources: dict[str, Path], work: Path, n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    names = sorted(sources)
    cases = []
    for i in range(n):
        name = names[i % len(names)]
        src = sources[name]
        case_dir = work / f"{i:05d}"
        case_dir.mkdir()
        if src.is_dir():
            dst = case_dir / src.name
            shutil.copytree(src, dst)
            if name == "bundle":
                target = dst / ("edgekit.json" if rng.integers(0, 3) else ("model.tflite", "model.onnx")[i % 2])
            else:  # an .mlpackage: its Manifest.json, or the spec or weights inside
                files = sorted(p for p in dst.rglob("*") if p.is_file())
                target = files[int(rng.integers(0, len(files)))]
            if target.suffix == ".json":
                target.write_text(mutate_json(target.read_text(), rng))
            else:
                target.write_bytes(mutate_bytes(target.read_bytes(), rng))
        else:
            dst = case_dir / src.name
            dst.write_bytes(mutate_bytes(src.read_bytes(), rng))
        commands = [["inspect", str(dst), "--json"], ["bench", str(dst), "--runs", "1", "--warmup", "0", "--threads", "1"],
                    ["lint", str(dst), "--target", "generic-npu"]]
        if name == "model.mlpackage":
            commands = [commands[0], commands[2]]
        cases.append(commands[int(rng.integers(0, len(commands)))])
    return cases


def judge(record: dict) -> str | None:
    """Why a record is a failure, or None."""
    if record["ended"] != "exit":
        return f"ended by {record['ended']}"
    code, err = record["code"], record["stderr"]
    if "Traceback" in err:
        return f"traceback (exit {code}): {err[-800:]}"
    if code not in (0, 1, 2, 3):
        return f"exit code {code}: {err[-800:]}"
    if code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("edgekit: warning:")]
        errors = [ln for ln in lines if ln.startswith("edgekit: error:")]
        if code == 3 and not errors:  # lint findings: a report on stdout, no error line
            return None
        if len(errors) != 1 or len(lines) != 1:
            return f"exit {code} without exactly one error line: {lines[:6]}"
    return None


@pytest.mark.slow
def test_mutated_models_and_manifests_never_crash_hang_or_trace(sources, tmp_path):
    cases = make_cases(sources, tmp_path, N, SEED)
    cases_file, results_file = tmp_path / "cases.json", tmp_path / "results.json"
    cases_file.write_text(json.dumps(cases))
    env = {**os.environ, "EDGEKIT_THREADS": "1"}
    env.pop("EDGEKIT_DEBUG", None)
    r = subprocess.run([sys.executable, str(HERE / "fuzz_server.py"), str(cases_file), str(results_file)],
                       capture_output=True, text=True, timeout=3600, env=env)
    assert r.returncode == 0, f"the fuzz server itself failed: {r.stderr[-3000:]}"
    records = json.loads(results_file.read_text())
    assert len(records) == len(cases)
    failures = [(rec["args"], why) for rec in records if (why := judge(rec)) is not None]
    outcomes = {}
    for rec in records:
        key = "ok" if rec.get("code") == 0 else f"exit {rec.get('code', rec['ended'])}"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert not failures, f"{len(failures)} of {len(cases)} mutants failed (seed {SEED}); first: " + \
        "\n".join(f"{' '.join(a)}: {w}" for a, w in failures[:5])
    assert outcomes.get("exit 1", 0) > len(cases) // 4, outcomes  # most mutants are rejected, cleanly
    print(f"fuzz: {len(cases)} mutants, outcomes {outcomes}")
