"""The runtime side stays light: no torch, onnx or coremltools when importing edgekit or loading,
running and benchmarking models (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "onnx", "coremltools", "onnxscript", "litert_torch", "tensorflow", "jax")


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def test_import_edgekit_loads_no_runtime():
    mods = _modules_after("import edgekit, edgekit.runtimes, edgekit.bundle, edgekit.errors")
    assert not mods & {*HEAVY, "onnxruntime", "ai_edge_litert"}, mods & {*HEAVY, "onnxruntime", "ai_edge_litert"}


def test_load_run_and_bench_import_nothing_heavy(tiny):
    code = f"""
import edgekit, numpy as np
for path in ({str(tiny['add_mul.tflite'])!r}, {str(tiny['float16_external.onnx'])!r}, {str(tiny['float16.ort'])!r}):
    with edgekit.load(path, threads=1) as s:
        edgekit.bench(s, warmup=1, runs=2)
from edgekit.runtimes.modelfile import read_model
read_model({str(tiny['float16.onnx'])!r})
"""
    mods = _modules_after(code)
    assert {"onnxruntime", "ai_edge_litert"} <= mods
    assert not mods & set(HEAVY), mods & set(HEAVY)
