"""What does ``--precision int8`` buy on the CPU? fp32 vs int8 of the same zoo model, TFLite on
LiteRT XNNPACK and ONNX on onnxruntime (QDQ), both through ``edgekit.load`` on the bundle (so the
int8 TFLite's float in / float out quantization at the boundary is included, as an app sees it).

For each model, ``edgekit.convert`` writes two bundles (``--target generic-npu``, fp32 and int8,
formats tflite and onnx) into ``benchmarks/.cache/int8/``. Then, per format, both sessions run
in alternating blocks (A, B, B, A, ...) in one process so that load from other processes hits
both alike. Reported: median ms per call of each, the ratio of medians (int8 / fp32) and the
median of per-block ratios, file sizes, and each artifact's verification against the source
(PSNR or cosine), written to ``benchmarks/results/int8.json``.

    python benchmarks/int8.py                         # 4 models, ~3-5 min on 2 cores
    python benchmarks/int8.py --models espcn_x2 --rounds 6
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
CACHE = HERE / ".cache" / "int8"
OUT = HERE / "results" / "int8.json"
MODELS = {"mobilenet_v2": (1, 3, 224, 224), "quicksrnet_small_x2": (1, 3, 128, 128),
          "espcn_x2": (1, 3, 128, 128), "sesr_m5_x2": (1, 3, 128, 128)}


def convert_pair(name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    from edgekit import zoo
    from edgekit.converters.api import convert

    pretrained = zoo.card(name).weights is not None
    rec: dict[str, Any] = {"input_shape": list(shape), "pretrained": pretrained}
    for precision in ("fp32", "int8"):
        out = CACHE / f"{name}_{precision}"
        result = convert(name, formats="tflite,onnx", input_shapes=[shape], pretrained=pretrained,
                         target="generic-npu", precision=precision, out=out, force=True, bench_runs=0)
        rec[f"{precision}_bundle"] = str(out)
        for art in result.manifest.artifacts:
            metrics = next(iter((art.verification.get("outputs") or {}).values()), {})
            rec[f"{precision}_{art.format}"] = {
                "size_bytes": art.size_bytes, "verification": art.verification.get("status"),
                "psnr_db": metrics.get("psnr_db"), "cosine": metrics.get("cosine"),
                "max_abs": metrics.get("max_abs")}
    return rec


def _block(session: Any, feed: dict[str, np.ndarray], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        session.run(feed)
    return (time.perf_counter() - t0) / n * 1e3


def measure(rec: dict[str, Any], fmt: str, threads: int, rounds: int) -> None:
    import edgekit

    backend = {"tflite": "litert", "onnx": "onnxruntime"}[fmt]
    a = edgekit.load(rec["fp32_bundle"], backend=backend, threads=threads)
    b = edgekit.load(rec["int8_bundle"], backend=backend, threads=threads)
    try:
        rng = np.random.default_rng(0)
        feed = {s.name: rng.random(tuple(s.shape)).astype(np.float32) for s in a.inputs}
        for _ in range(3):
            _block(a, feed, 2)
            _block(b, feed, 2)
        per_block = max(3, min(200, int(300 / max(_block(a, feed, 3), 0.05))))
        ta, tb, ratios = [], [], []
        for r in range(rounds):
            pair = [(a, ta), (b, tb)] if r % 2 == 0 else [(b, tb), (a, ta)]
            got = {}
            for session, acc in pair:
                acc.append(_block(session, feed, per_block))
                got[id(acc)] = acc[-1]
            ratios.append(got[id(tb)] / got[id(ta)])
    finally:
        a.close()
        b.close()
    ma, mb = statistics.median(ta), statistics.median(tb)
    rec[f"{fmt}_latency"] = {"fp32_ms": round(ma, 3), "int8_ms": round(mb, 3), "ratio_of_medians": round(mb / ma, 3),
                             "median_block_ratio": round(statistics.median(ratios), 3),
                             "rounds": rounds, "runs_per_block": per_block}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    CACHE.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name in args.models:
        print(f"[{name}] converting ...", flush=True)
        rec = convert_pair(name, MODELS[name])
        for fmt in ("tflite", "onnx"):
            measure(rec, fmt, args.threads, args.rounds)
            lat = rec[f"{fmt}_latency"]
            print(f"[{name}] {fmt}: fp32 {lat['fp32_ms']} ms, int8 {lat['int8_ms']} ms, "
                  f"block ratio {lat['median_block_ratio']}", flush=True)
        results[name] = rec
    import ai_edge_litert
    import onnxruntime

    doc = {
        "what": "zoo models at fp32 vs --precision int8 (both --target generic-npu), through edgekit.load on the bundle",
        "method": "alternating blocks A,B,B,A; median ms per call; ratio = int8 / fp32 (below 1: int8 faster)",
        "threads": args.threads, "host": platform.platform(), "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine: ratios are the robust number, absolute ms are noisy",
        "versions": {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"), "onnxruntime": onnxruntime.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
