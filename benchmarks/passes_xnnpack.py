"""Do the generic-npu rewrites slow the CPU path? Every zoo model with and without
``--target generic-npu`` on LiteRT XNNPACK (2 threads), plus op counts before and after.

For each zoo model, ``edgekit.convert`` writes two TFLite files (no target / ``--target
generic-npu``) into ``benchmarks/.cache/passes_xnnpack/``. Then, in one process, both files run
with ``ai_edge_litert`` ``Interpreter(num_threads=2)`` (XNNPACK is LiteRT's default CPU
delegate) in alternating blocks (A, B, B, A, ...) so that load from other processes on a shared
machine hits both alike. The rewritten file takes NHWC; the caller's NCHW → NHWC transpose (and
back for 4-D outputs) is timed separately with NumPy and reported as ``host_transpose_us``, so
that both the model-only ratio and the end-to-end ratio (the caller had NCHW arrays; per block
``(target + host transpose) / none``) are known.

Reported per model: median latency of each (ms), the ratio of medians (target / none), the
median of the per-block ratios, op counts of each file (TRANSPOSE, RESHAPE, CONV_3D,
DEPTH_TO_SPACE, PRELU, total) and the largest tensor rank, the passes applied, and why the
others did not apply. Models whose conversion fails are reported with the reason (the video
decoders depend on the 5-D passes).

Every model record carries its own ``created`` time. A run with ``--models`` merges its records
into the existing ``results/passes_xnnpack.json`` (the other models' records stay as they were);
if its threads, host or tool versions differ from the file's, its records say so.

    python benchmarks/passes_xnnpack.py                  # all zoo models, ~15-25 min on 2 cores
    python benchmarks/passes_xnnpack.py --models espcn_x2 mobilenet_v2 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "passes_xnnpack"
OUT = HERE / "results" / "passes_xnnpack.json"
TARGET = "generic-npu"
COUNTED = ("TRANSPOSE", "RESHAPE", "CONV_3D", "DEPTH_TO_SPACE", "PRELU", "GATHER", "BROADCAST_TO")


def tflite_op_list(path: Path) -> tuple[list[str], int]:
    """The builtin op names of a .tflite file in order, and its largest tensor rank."""
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.tools import flatbuffer_utils

    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    codes = model.operatorCodes
    ops = [names[max(codes[o.opcodeIndex].builtinCode, codes[o.opcodeIndex].deprecatedBuiltinCode)]
           for g in model.subgraphs for o in g.operators]
    rank = max((len(t.shape) for g in model.subgraphs for t in g.tensors if t.shape is not None), default=0)
    return ops, rank


def op_stats(path: Path) -> dict[str, Any]:
    """Op counts and the largest tensor rank of a .tflite file."""
    ops, rank = tflite_op_list(path)
    out = {k: ops.count(k) for k in COUNTED}
    out.update({"total_ops": len(ops), "max_rank": rank})
    return out


def convert_pair(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """Convert ``name`` without and with the target; returns paths and pass records."""
    from edgekit.bundle import read_manifest
    from edgekit.converters.api import convert

    rec: dict[str, Any] = {"input_shape": list(shape)}
    for label, target in (("none", None), ("target", TARGET)):
        out = CACHE / f"{name}_{label}"
        try:
            t0 = time.perf_counter()
            convert(name, formats="tflite", input_shapes=[shape], target=target, out=out, force=True,
                    verify=True, bench_runs=0)
            rec[f"{label}_convert_s"] = round(time.perf_counter() - t0, 1)
            m = read_manifest(out)
            art = m.artifacts[0]
            rec[f"{label}_path"] = str(out / "model.tflite")
            rec[f"{label}_verification"] = art.verification.get("status")
            rec[f"{label}_max_abs_error"] = max((o.get("max_abs", 0.0) for o in (art.verification.get("outputs") or {}).values()),
                                                default=None)
            rec[f"{label}_layouts"] = {t.name: t.layout for t in (*art.inputs, *art.outputs)}
            if target:
                rec["passes_applied"] = m.extra["convert"]["passes"]
                rec["passes_not_applied"] = m.extra["convert"]["passes_not_applied"]
        except Exception as e:  # noqa: BLE001 - a failed conversion is a result to report
            rec[f"{label}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    return rec


def _runner(path: str, threads: int) -> tuple[Any, list[dict], list[dict]]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=threads)
    interp.allocate_tensors()
    return interp, interp.get_input_details(), interp.get_output_details()


def _time_block(interp: Any, ins: list[dict], arrays: list[np.ndarray], outs: list[dict], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        for d, a in zip(ins, arrays):
            interp.set_tensor(d["index"], a)
        interp.invoke()
        for d in outs:
            interp.get_tensor(d["index"])
    return (time.perf_counter() - t0) / n * 1e3


def measure(rec: dict[str, Any], threads: int, rounds: int, per_block: int) -> None:
    a, b = rec["none_path"], rec["target_path"]
    ia, ins_a, outs_a = _runner(a, threads)
    ib, ins_b, outs_b = _runner(b, threads)
    rng = np.random.default_rng(0)
    xa = [rng.standard_normal(tuple(d["shape"])).astype(np.float32) for d in ins_a]
    xb = [rng.standard_normal(tuple(d["shape"])).astype(np.float32) for d in ins_b]
    for _ in range(3):  # warm-up
        _time_block(ia, ins_a, xa, outs_a, 2)
        _time_block(ib, ins_b, xb, outs_b, 2)
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        order = [(ia, ins_a, xa, outs_a, ta), (ib, ins_b, xb, outs_b, tb)]
        if r % 2:
            order.reverse()
        got = {}
        for interp, ins, xs, outs, acc in order:
            ms = _time_block(interp, ins, xs, outs, per_block)
            acc.append(ms)
            got[id(acc)] = ms
        ratios.append(got[id(tb)] / got[id(ta)])
    # the caller's NCHW -> NHWC (inputs) and NHWC -> NCHW (4-D outputs) on the host
    t0 = time.perf_counter()
    for _ in range(per_block):
        for x in xa:
            if x.ndim == 4:
                np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        for d in outs_b:
            y = ib.get_tensor(d["index"])
            if y.ndim == 4:
                np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    host_ms = (time.perf_counter() - t0) / per_block * 1e3
    ma, mb = statistics.median(ta), statistics.median(tb)
    e2e = [(b + host_ms) / a for a, b in zip(ta, tb)]  # per block, as the ratios
    rec.update({
        "latency_ms_none": round(ma, 3), "latency_ms_target": round(mb, 3),
        "ratio_of_medians": round(mb / ma, 3), "median_block_ratio": round(statistics.median(ratios), 3),
        "host_transpose_us": round(host_ms * 1e3, 1),
        "median_block_ratio_end_to_end": round(statistics.median(e2e), 3),
        "rounds": rounds, "runs_per_block": per_block,
    })


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` (a run over some models) merged into ``old`` (the file): other models' records are
    kept, each with its ``created`` (the file's for records written before records had one);
    where the run's threads, host or versions differ from the file's, its records carry them."""
    models = old.get("models", {})
    for rec in models.values():
        rec.setdefault("created", old.get("created"))
    for key in ("threads", "host", "cpu_count", "versions"):
        if key in old and old[key] != new[key]:
            for rec in new["models"].values():
                rec[key] = new[key]
            new[key] = old[key]
    models.update(new["models"])
    return {**new, "models": models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="zoo names (default: all)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=0, help="runs per block (default: ~0.3 s worth)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classify-size", type=int, default=224)
    ap.add_argument("--sr-size", type=int, default=128)
    ap.add_argument("--video-latent", type=int, default=16)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgekit import zoo

    names = args.models or zoo.list_models()
    CACHE.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in names:
        card = zoo.card(name)
        shape = tuple(card.input_shape)
        if card.task == "classify":
            shape = (1, shape[1], args.classify_size, args.classify_size)
        elif card.task == "super-resolve":
            shape = (1, shape[1], args.sr_size, args.sr_size)
        else:
            shape = (*shape[:-2], args.video_latent, args.video_latent)
        print(f"[{name}] converting {shape} ...", flush=True)
        rec = convert_pair(name, shape)
        rec["task"] = card.task
        for label in ("none", "target"):
            if f"{label}_path" in rec:
                rec[f"ops_{label}"] = op_stats(Path(rec[f"{label}_path"]))
        if "none_path" in rec and "target_path" in rec:
            ia, ins, outs = _runner(rec["none_path"], args.threads)
            xs = [np.zeros(tuple(d["shape"]), np.float32) for d in ins]
            one = _time_block(ia, ins, xs, outs, 3)
            per_block = args.runs or max(3, min(200, int(300 / max(one, 0.05))))
            del ia
            measure(rec, args.threads, args.rounds, per_block)
            print(f"[{name}] none {rec['latency_ms_none']} ms, target {rec['latency_ms_target']} ms, "
                  f"ratio {rec['median_block_ratio']}", flush=True)
        for k in [k for k in rec if k.endswith("_path")]:
            rec[k] = str(Path(rec[k]).relative_to(HERE.parent)) if HERE.parent in Path(rec[k]).parents else rec[k]
        rec["created"] = _now()
        results[name] = rec
    import ai_edge_litert
    import litert_torch

    doc = {
        "what": "zoo models converted to TFLite without and with --target generic-npu, on LiteRT XNNPACK",
        "method": "alternating blocks A,B,B,A; median ms per call; ratio = target / none (below 1: faster)",
        "threads": args.threads, "host": platform.platform(), "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine with other jobs running: ratios are the robust number, absolute ms are noisy",
        "versions": {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
                     "litert_torch": getattr(litert_torch, "__version__", "?")},
        "created": _now(),
        "models": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if args.models and OUT.exists():  # a partial run updates the models it measured
        doc = merge(json.loads(OUT.read_text()), doc)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
