"""edgekit's TFLite and ONNX artifacts vs the anchors' direct conversions, per zoo model.

For each model (at its card's input shape, random-init or shipped weights):

- anchors: ``litert_torch.convert(model, (x,)).export(...)`` (TFLite) and
  ``torch.onnx.export(model, (x,), dynamo=True)`` with its default optimisation (ONNX);
- edgekit: ``edgekit.convert(name, formats="onnx,tflite")`` (capture, export, verification).

Reported: conversion wall time of each (edgekit's includes verification, listed apart), the
TFLite op histograms, and latency. Latency is measured *interleaved in one process*: the
edgekit and anchor files are opened side by side with the bare runtimes (``ai_edge_litert``
Interpreter with ``num_threads``, onnxruntime with ``intra_op_num_threads``; no edgekit code on
the timed path), and ``--rounds`` rounds alternate which file runs first, ``--runs`` timed runs
each, after a warm-up. The ratio is median(edgekit) / median(anchor): ≤ 1.0 means edgekit is
no slower; ``ratio_p10`` compares the 10th percentiles, which other processes on a shared host
disturb least (the load average is recorded beside them).

Usage::

    python benchmarks/convert_vs_anchors.py --models mobilenet_v2 --threads 2 --out results.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def anchor_tflite(model, x, path: Path) -> float:
    import litert_torch

    from edgekit.converters.exporters import tool_output

    t0 = time.perf_counter()
    with tool_output():
        litert_torch.convert(model.eval(), (x,)).export(str(path))
    return time.perf_counter() - t0


def anchor_onnx(model, x, path: Path) -> float:
    import torch

    from edgekit.converters.exporters import tool_output

    t0 = time.perf_counter()
    with tool_output():
        torch.onnx.export(model.eval(), (x,), dynamo=True, verbose=False).save(str(path), external_data=False)
    return time.perf_counter() - t0


def tflite_runner(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    (inp,) = it.get_input_details()
    ops = collections.Counter(d["op_name"] for d in it._get_ops_details())

    def run(x: np.ndarray) -> None:
        it.set_tensor(inp["index"], x)
        it.invoke()

    return run, dict(sorted(ops.items()))


def onnx_runner(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name

    def run(x: np.ndarray) -> None:
        s.run(None, {name: x})

    return run, None


def interleaved(runners: dict[str, callable], x: np.ndarray, rounds: int, runs: int, warmup: int) -> dict[str, list[float]]:
    """Per-run times (ms) of each runner, alternating the order every round."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    keys = list(runners)
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            run = runners[k]
            for _ in range(runs):
                t0 = time.perf_counter_ns()
                run(x)
                times[k].append((time.perf_counter_ns() - t0) / 1e6)
    return times


def bench_model(name: str, work: Path, threads: int, rounds: int, runs: int, warmup: int) -> dict:
    import edgekit
    from edgekit import zoo

    card = zoo.card(name)
    pretrained = card.weights is not None
    model = zoo.create(name, pretrained=pretrained)
    (x,) = zoo.example_inputs(name)
    result: dict = {"model": name, "input_shape": list(x.shape), "pretrained": pretrained}
    files: dict[str, Path] = {}
    for fmt, fn in (("tflite", anchor_tflite), ("onnx", anchor_onnx)):
        path = work / f"{name}.anchor.{fmt}"
        try:
            result[f"anchor_{fmt}_convert_s"] = round(fn(model, x, path), 2)
            files[f"anchor_{fmt}"] = path
        except Exception as e:  # noqa: BLE001 - an anchor that cannot convert is a result
            result[f"anchor_{fmt}_error"] = " ".join(str(e).split())[:300]
    t0 = time.perf_counter()
    try:
        r = edgekit.convert(name, formats="onnx,tflite", out=work / f"{name}.edgekit", force=True, bench_runs=0,
                            pretrained=pretrained)
        result["edgekit_convert_s"] = round(time.perf_counter() - t0, 2)
        result["edgekit_stage_s"] = {k: round(v, 2) for k, v in r.stage_seconds.items()}
        for st in r.artifacts:
            result[f"edgekit_{st.format}_status"] = st.status
            if st.status != "export-failed":
                files[f"edgekit_{st.format}"] = r.bundle / f"model.{st.format}"
            else:
                result[f"edgekit_{st.format}_error"] = st.reason
    except Exception as e:  # noqa: BLE001
        result["edgekit_error"] = " ".join(str(e).split())[:300]
    xn = np.ascontiguousarray(x.numpy())
    for fmt, make in (("tflite", tflite_runner), ("onnx", onnx_runner)):
        a, b = files.get(f"edgekit_{fmt}"), files.get(f"anchor_{fmt}")
        if a is None or b is None:
            continue
        (run_e, ops_e), (run_a, ops_a) = make(a, threads), make(b, threads)
        t = interleaved({"edgekit": run_e, "anchor": run_a}, xn, rounds, runs, warmup)
        med_e, med_a = statistics.median(t["edgekit"]), statistics.median(t["anchor"])
        p10_e, p10_a = (float(np.percentile(t[k], 10)) for k in ("edgekit", "anchor"))
        result[fmt] = {
            "edgekit_ms_p50": round(med_e, 4), "anchor_ms_p50": round(med_a, 4), "ratio": round(med_e / med_a, 4),
            # p10 is robust to other processes taking the cores now and then (a busy shared host)
            "edgekit_ms_p10": round(p10_e, 4), "anchor_ms_p10": round(p10_a, 4), "ratio_p10": round(p10_e / p10_a, 4),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "edgekit_size": a.stat().st_size, "anchor_size": b.stat().st_size, "samples_each": len(t["edgekit"]),
        }
        if ops_e is not None:
            result[fmt]["edgekit_ops"], result[fmt]["anchor_ops"] = ops_e, ops_a
            result[fmt]["same_ops"] = ops_e == ops_a
    return result


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgekit import zoo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(zoo.list_models()), help="comma-separated zoo names (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per file per round")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("convert_vs_anchors.json"))
    args = ap.parse_args(argv)
    import importlib.metadata as md

    report = {
        "host": {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version(),
                 "cpus": os.cpu_count()},
        "settings": {"threads": args.threads, "rounds": args.rounds, "runs": args.runs, "warmup": args.warmup},
        "tools": {p: md.version(p) for p in ("torch", "litert-torch", "ai-edge-litert", "onnxruntime", "onnxscript")},
        "models": [],
    }
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            print(f"… {name}", file=sys.stderr, flush=True)
            res = bench_model(name, Path(tmp), args.threads, args.rounds, args.runs, args.warmup)
            report["models"].append(res)
            line = "  ".join(f"{fmt} {res[fmt]['edgekit_ms_p50']:.3f}/{res[fmt]['anchor_ms_p50']:.3f} ms "
                             f"(×{res[fmt]['ratio']:.3f}, p10 ×{res[fmt]['ratio_p10']:.3f})"
                             for fmt in ("tflite", "onnx") if fmt in res)
            print(f"  {name}: {line or 'no comparison'}", file=sys.stderr, flush=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
