"""Turbo-VAED-style vs CogVideoX/Hunyuan-style video decoder, same output video, on LiteRT
XNNPACK and ONNX Runtime CPU (2 threads), with and without ``--target generic-npu``.

The latent shape of each decoder is computed from its temporal and spatial factors (zoo card,
``temporal_factor`` of the built model) so that both decode to the same ``T × H × W × 3`` video
(default 9 frames at 256×256: latent ``(1, 16, 5, 32, 32)`` for both ``tiny`` configs); the output
shapes are asserted equal, in the manifest and at run time, and recorded.

``edgekit.convert`` writes each (decoder, target) pair as one bundle with ``model.tflite`` and
``model.onnx`` into ``benchmarks/.cache/video_decoders/`` (verified against eager PyTorch). A
bundle is reused while its fingerprint (latent shape, target, tool versions, and the source of
edgekit's converters, targets and the video decoder zoo module) is unchanged. A format that fails
to convert is a result (its reason is recorded), not a crash.

Then, in one process, pairs of files run in alternating blocks (a, b, b, a, ...) for several
rounds, every pair inside every round, so that load from other processes on a shared machine hits
both files of a pair alike:

- ``turbo_vs_ref``: turbo against ref, per format and target (``target`` = generic-npu, ``none``);
- ``target_vs_none``: each decoder's generic-npu file against its untargeted one, per format
  (model time only: a caller holding NCTHW arrays also pays the layout change to THWC/TCHW).

Runtimes: TFLite in ``ai_edge_litert`` ``Interpreter(num_threads=2)`` (XNNPACK, LiteRT's default
CPU delegate); ONNX in ``onnxruntime`` (CPUExecutionProvider, ``intra_op_num_threads=2``).
A pair with a file that failed to convert is listed with the reason instead of timings.

Reported per pair: median latency of each (ms), the ratio of medians (b / a), the median of the
per-block ratios, and every block; per file: op counts (TFLite: TRANSPOSE, RESHAPE, CONV_3D,
GATHER + GATHER_ND, BROADCAST_TO, DEPTH_TO_SPACE, total, max rank; ONNX: Transpose, Reshape, Conv
with a 3-D kernel, Gather*, Expand, DepthToSpace, total, max rank), tensor shapes and layouts,
passes, verification error; per decoder: params and MACs (the card's at its ``macs_input``, and
counted at the benchmark latent).

    python benchmarks/video_decoders.py                 # ~5 min on 2 cores (~3 min when cached)
    python benchmarks/video_decoders.py --quick         # 3 frames at 128x128, 4 rounds, ~1-2 min
                                                        # (writes benchmarks/.cache/video_decoders.quick.json)
    python benchmarks/video_decoders.py --rounds 6 --frames 9 --size 256
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "video_decoders"
OUT = HERE / "results" / "video_decoders.json"
MODELS = ("video_decoder_ref", "video_decoder_turbo")  # (A, B): ratios are B / A
TARGETS = {"target": "generic-npu", "none": None}
FORMATS = ("tflite", "onnx")
TFLITE_COUNTED = {"TRANSPOSE": ("TRANSPOSE",), "RESHAPE": ("RESHAPE",), "CONV_3D": ("CONV_3D",),
                  "GATHER*": ("GATHER", "GATHER_ND"), "BROADCAST_TO": ("BROADCAST_TO",),
                  "DEPTH_TO_SPACE": ("DEPTH_TO_SPACE",)}
ONNX_COUNTED = {"Transpose": ("Transpose",), "Reshape": ("Reshape",), "Gather*": ("Gather", "GatherND", "GatherElements"),
                "Expand": ("Expand",), "DepthToSpace": ("DepthToSpace",)}
TOOLS = ("ai_edge_litert", "onnxruntime", "onnx", "torch", "litert_torch")


# ------------------------------------------------------------------------------- shapes


def latent_for(name: str, frames: int, size: int) -> tuple[int, int, int, int, int]:
    """The latent ``(1, C, T, h, w)`` that ``name`` decodes to ``frames`` frames of ``size``²."""
    from edgekit import zoo

    card = zoo.card(name)
    f = zoo.create(name).temporal_factor
    s = card.scale_factor
    if (frames - 1) % f or size % s:
        raise SystemExit(f"{name}: {frames} frames at {size}x{size} is not 1 + {f}·(T − 1) frames at {s}·h")
    return (1, card.input_shape[1], 1 + (frames - 1) // f, size // s, size // s)


def video_shape(shape: list[int], layout: str) -> tuple[int, int, int, int]:
    """``(T, H, W, C)`` of a tensor in ``layout`` (NCTHW, TCHW, THWC...); N must be 1."""
    dims = dict(zip(layout, shape))
    if dims.get("N", 1) != 1:
        raise ValueError(f"batch {dims['N']} in {layout} {shape}")
    return (dims.get("T", 1), dims["H"], dims["W"], dims["C"])


def model_facts(name: str, latent: tuple[int, ...]) -> dict[str, Any]:
    """Params and MACs from the card, and MACs counted at ``latent`` (on the meta device)."""
    import torch

    from edgekit import zoo
    from edgekit.zoo.registry import count_macs

    card = zoo.card(name)
    net = zoo.create(name)
    with torch.device("meta"):
        macs = count_macs(net.to("meta"), torch.empty(latent))
    return {"config": zoo.default_config(name), "temporal_factor": net.temporal_factor,
            "spatial_factor": card.scale_factor, "params": card.params, "macs_card": card.macs,
            "macs_card_input": list(card.macs_input), "macs_at_latent": macs,
            "paper_config": card.metrics.get("paper_config")}


# ------------------------------------------------------------------------------- conversion


def fingerprint(latent: tuple[int, ...], target: str | None) -> str:
    """What a cached bundle depends on: inputs, tool versions and edgekit's conversion source."""
    import edgekit.converters

    import edgekit
    import edgekit.zoo.video_decoder as vd

    h = hashlib.sha256(json.dumps([list(latent), target, versions()]).encode())
    roots = [Path(p) for p in edgekit.converters.__path__] + [Path(edgekit.__file__).parent / "targets"]
    files = sorted(f for r in roots for f in r.rglob("*") if f.suffix in (".py", ".toml"))
    for f in [*files, Path(vd.__file__)]:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def convert_cached(name: str, label: str, latent: tuple[int, ...], reconvert: bool) -> dict[str, Any]:
    """Bundle of ``name`` with TFLite and ONNX for target ``label``; per format a path or an error."""
    from edgekit.converters.api import convert

    from edgekit.bundle import read_manifest

    target = TARGETS[label]
    out = CACHE / f"{name}_{label}_{'x'.join(map(str, latent[2:]))}"
    stamp = out / "fingerprint.txt"
    fp = fingerprint(latent, target)
    rec: dict[str, Any] = {"bundle": str(out.relative_to(HERE.parent))}
    if reconvert or not stamp.is_file() or stamp.read_text().strip() != fp:
        t0 = time.perf_counter()
        try:
            convert(name, formats=",".join(FORMATS), input_shapes=[latent], target=target, out=out, force=True,
                    verify=True, bench_runs=0)
        except Exception as e:  # noqa: BLE001 - a failed conversion is a result to report
            return {**rec, "error": _one_line(e)}
        stamp.write_text(fp + "\n")
        rec["convert_s"] = round(time.perf_counter() - t0, 1)
        print(f"  converted {name} {label} in {rec['convert_s']} s", flush=True)
    else:
        rec["cached"] = True
    m = read_manifest(out)
    rec["created"] = m.created
    rec["passes_applied"] = m.extra["convert"]["passes"]
    for f in m.extra.get("failures", []):
        rec[f["format"]] = {"error": f["reason"].splitlines()[0][:400]}
    for art in m.artifacts:
        outs = (art.verification.get("outputs") or {}).values()
        rec[art.format] = {
            "path": str((out / art.path).relative_to(HERE.parent)),
            "size_bytes": art.size_bytes,
            "verification": art.verification.get("status"),
            "max_abs_error": max((o.get("max_abs", 0.0) for o in outs), default=None),
            "inputs": {t.name: {"shape": list(t.shape), "layout": t.layout} for t in art.inputs},
            "outputs": {t.name: {"shape": list(t.shape), "layout": t.layout} for t in art.outputs},
            "passes": list(art.passes),
        }
    if target:
        rec["passes_not_applied"] = m.extra["convert"]["passes_not_applied"]
    return rec


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:400]}"


# ------------------------------------------------------------------------------- op counts


def tflite_ops(path: Path) -> dict[str, Any]:
    # benchmarks/ is the script's folder, so on sys.path
    from passes_xnnpack import tflite_op_list

    ops, rank = tflite_op_list(path)
    out = {k: sum(ops.count(o) for o in v) for k, v in TFLITE_COUNTED.items()}
    out.update({"total_ops": len(ops), "max_rank": rank})
    return out


def onnx_ops(path: Path) -> dict[str, Any]:
    """Op counts and the largest tensor rank (shape-inferred values, inputs, outputs, initializers)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    g = model.graph
    ranks = {i.name: len(i.dims) for i in g.initializer}
    for v in (*g.input, *g.output, *g.value_info):
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            ranks[v.name] = len(v.type.tensor_type.shape.dim)
    nodes = [n for n in g.node]  # the exporters inline functions: no nested graphs here

    def kernel_rank(n: Any) -> int:
        ks = next((list(a.ints) for a in n.attribute if a.name == "kernel_shape"), None)
        return len(ks) if ks else ranks.get(n.input[1], 0) - 2

    ops = [n.op_type for n in nodes]
    out = {k: sum(ops.count(o) for o in v) for k, v in ONNX_COUNTED.items()}
    out["Conv3d"] = sum(1 for n in nodes if n.op_type in ("Conv", "ConvTranspose") and kernel_rank(n) == 3)
    out.update({"total_ops": len(ops), "max_rank": max(ranks.values(), default=0)})
    return out


# ------------------------------------------------------------------------------- runners


@dataclass
class Runner:
    """One model file loaded in its runtime, with a fixed input; ``run()`` is one inference."""

    run: Callable[[], list[np.ndarray]]
    output_shapes: list[list[int]] = field(default_factory=list)


def tflite_runner(path: Path, threads: int, seed: int) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    ins, outs = interp.get_input_details(), interp.get_output_details()
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal(tuple(d["shape"])).astype(np.float32) for d in ins]

    def run() -> list[np.ndarray]:
        for d, x in zip(ins, xs):
            interp.set_tensor(d["index"], x)
        interp.invoke()
        return [interp.get_tensor(d["index"]) for d in outs]

    return Runner(run)


def onnx_runner(path: Path, threads: int, seed: int) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feed = {i.name: rng.standard_normal(tuple(i.shape)).astype(np.float32) for i in sess.get_inputs()}
    return Runner(lambda: sess.run(None, feed))


def time_block(r: Runner, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        r.run()
    return (time.perf_counter() - t0) / n * 1e3


# ------------------------------------------------------------------------------- measurement


@dataclass
class Pair:
    """Two runners timed against each other; ratios are ``b / a``."""

    a: str
    run_a: Runner
    b: str
    run_b: Runner


def measure(pairs: dict[str, Pair], rounds: int, block_s: float) -> dict[str, dict[str, Any]]:
    """Alternating blocks per pair (a, b in even rounds, b, a in odd ones), all pairs in every round."""
    plan: dict[str, int] = {}
    for key, p in pairs.items():
        for r in (p.run_a, p.run_b):
            r.output_shapes = [list(y.shape) for y in r.run()]  # warm-up (XNNPACK/ORT set up here)
            r.run()
        one = max(time_block(p.run_a, 1), time_block(p.run_b, 1))
        plan[key] = max(2, min(100, round(block_s * 1e3 / max(one, 0.05))))
        print(f"  {key}: ~{one:.0f} ms per call (slower of the two), {plan[key]} runs per block", flush=True)
    ta: dict[str, list[float]] = {k: [] for k in pairs}
    tb: dict[str, list[float]] = {k: [] for k in pairs}
    for rnd in range(rounds):
        for key, p in pairs.items():
            if rnd % 2 == 0:
                ta[key].append(time_block(p.run_a, plan[key]))
                tb[key].append(time_block(p.run_b, plan[key]))
            else:
                tb[key].append(time_block(p.run_b, plan[key]))
                ta[key].append(time_block(p.run_a, plan[key]))
        print(f"  round {rnd + 1}/{rounds} done", flush=True)
    res = {}
    for key, p in pairs.items():
        ma, mb = statistics.median(ta[key]), statistics.median(tb[key])
        ratios = [b / a for a, b in zip(ta[key], tb[key])]
        res[key] = {"ratio": f"{p.b} / {p.a}", f"latency_ms_{p.a}": round(ma, 3), f"latency_ms_{p.b}": round(mb, 3),
                    "ratio_of_medians": round(mb / ma, 3), "median_block_ratio": round(statistics.median(ratios), 3),
                    "block_ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
                    f"blocks_ms_{p.a}": [round(x, 2) for x in ta[key]], f"blocks_ms_{p.b}": [round(x, 2) for x in tb[key]],
                    "rounds": rounds, "runs_per_block": plan[key]}
    return res


def plan_pairs(models: dict[str, Any], threads: int) -> tuple[dict[str, Pair], dict[str, dict[str, str]]]:
    """The pairs to time: turbo vs ref per format and target, and target vs none per format and
    decoder; pairs with a file missing are returned apart, with the conversion errors."""
    runners: dict[tuple[str, str, str], Runner | str] = {}

    def runner(fmt: str, label: str, name: str) -> Runner | str:
        if (fmt, label, name) not in runners:
            conv = models[name]["conversions"][label]
            art = conv.get(fmt) or {"error": conv.get("error", "not converted")}
            make = tflite_runner if fmt == "tflite" else onnx_runner
            runners[fmt, label, name] = make(HERE.parent / art["path"], threads, seed=0) if "path" in art else art["error"]
        return runners[fmt, label, name]

    ref, turbo = MODELS
    wanted = {f"turbo_vs_ref:{fmt}/{label}": (("ref", fmt, label, ref), ("turbo", fmt, label, turbo))
              for fmt in FORMATS for label in TARGETS}
    wanted |= {f"target_vs_none:{fmt}/{name}": (("none", fmt, "none", name), ("target", fmt, "target", name))
               for fmt in FORMATS for name in MODELS}
    pairs, not_timed = {}, {}
    for key, ((la, *a), (lb, *b)) in wanted.items():
        ra, rb = runner(*a), runner(*b)
        if isinstance(ra, Runner) and isinstance(rb, Runner):
            pairs[key] = Pair(la, ra, lb, rb)
        else:
            not_timed[key] = {lab: r for lab, r in ((la, ra), (lb, rb)) if isinstance(r, str)}
    return pairs, not_timed


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for t in TOOLS:
        try:
            out[t] = version(t.replace("_", "-"))
        except PackageNotFoundError:
            out[t] = "?"
    return out


# ------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=9, help="output frames (default 9)")
    ap.add_argument("--size", type=int, default=256, help="output height = width (default 256)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block-seconds", type=float, default=1.0, help="time per block of the slower model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 frames at 128x128, 4 rounds, 0.5 s blocks (a smoke run)")
    ap.add_argument("--reconvert", action="store_true", help="ignore the conversion cache")
    ap.add_argument("--out", type=Path, help=f"result file (default {OUT.relative_to(HERE.parent)}; "
                                             "with --quick, under benchmarks/.cache/)")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.size, args.rounds, args.block_seconds = 3, 128, 4, 0.5
    args.out = args.out or (CACHE / "video_decoders.quick.json" if args.quick else OUT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t_start, load_start = time.perf_counter(), os.getloadavg()
    CACHE.mkdir(parents=True, exist_ok=True)

    latents = {n: latent_for(n, args.frames, args.size) for n in MODELS}
    video = (args.frames, args.size, args.size, 3)
    models: dict[str, Any] = {}
    for name in MODELS:
        models[name] = {"latent_shape": list(latents[name]), **model_facts(name, latents[name]), "conversions": {}}
        for label in TARGETS:
            print(f"[{name}] {label}: latent {latents[name]} ...", flush=True)
            conv = convert_cached(name, label, latents[name], args.reconvert)
            for fmt in FORMATS:
                art = conv.get(fmt)
                if art and "path" in art:
                    art["ops"] = (tflite_ops if fmt == "tflite" else onnx_ops)(HERE.parent / art["path"])
                    (out_spec,) = art["outputs"].values()
                    art["output_video_THWC"] = list(video_shape(out_spec["shape"], out_spec["layout"]))
                    assert tuple(art["output_video_THWC"]) == video, (name, label, fmt, out_spec)
            models[name]["conversions"][label] = conv

    pairs, not_timed = plan_pairs(models, args.threads)
    print(f"timing {len(pairs)} pairs, {args.rounds} rounds ...", flush=True)
    comparisons: dict[str, dict[str, Any]] = {"turbo_vs_ref": {}, "target_vs_none": {}}
    for key, res in measure(pairs, args.rounds, args.block_seconds).items():
        p = pairs[key]
        group, sub = key.split(":")
        if group == "turbo_vs_ref":  # same file layout: the runtimes must agree on the shape too
            assert p.run_a.output_shapes == p.run_b.output_shapes, (key, p.run_a.output_shapes, p.run_b.output_shapes)
        comparisons[group][sub] = {"output_shapes": {p.a: p.run_a.output_shapes[0], p.b: p.run_b.output_shapes[0]}, **res}
        print(f"[{key}] {p.a} {res[f'latency_ms_{p.a}']} ms, {p.b} {res[f'latency_ms_{p.b}']} ms, "
              f"{res['ratio']} {res['ratio_of_medians']} (median block ratio {res['median_block_ratio']})", flush=True)
    for key, why in not_timed.items():
        group, sub = key.split(":")
        comparisons[group][sub] = {"not_timed": why}

    doc = {
        "what": "video_decoder_turbo vs video_decoder_ref decoding the same video, TFLite (LiteRT XNNPACK) and "
                "ONNX (onnxruntime CPU), with --target generic-npu and without a target",
        "method": "pairs of files in alternating blocks a,b,b,a,... (every pair in every round); median ms per "
                  "call of the model alone (no host layout transposes); turbo_vs_ref: ratio turbo / ref per format "
                  "and target (below 1: turbo faster); target_vs_none: ratio target / none per format and decoder",
        "output_video_THWC": list(video), "latent_shapes": {n: list(latents[n]) for n in MODELS},
        "threads": args.threads, "host": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "loadavg_1_5_15": {"start": load_start, "end": os.getloadavg()},
        "note": "shared 2-core host with other jobs running: ratios are the robust number, absolute ms are noisy. "
                "Random seeded weights (no trained weights ship); speed does not depend on them.",
        "runtimes": {"tflite": f"ai_edge_litert Interpreter(num_threads={args.threads}), XNNPACK default delegate",
                     "onnx": f"onnxruntime CPUExecutionProvider, intra_op_num_threads={args.threads}, "
                             "inter_op_num_threads=1, default graph optimisations"},
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.perf_counter() - t_start, 1),
        "quick": args.quick,
        "comparisons": comparisons,
        "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} in {doc['wall_s']} s")


if __name__ == "__main__":
    main()
