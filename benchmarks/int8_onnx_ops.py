"""Which ops should an int8 ONNX (QDQ) model quantize for onnxruntime's CPU?

A user's U-Net ran 3x slower after ``--precision int8`` than in fp32 on onnxruntime's CPU. QDQ
puts QuantizeLinear/DequantizeLinear around every op onnxruntime's quantizer knows; the CPU runs an
op in int8 only when it has a fused int8 kernel for the whole DQ → op → Q group (QLinearConv,
QLinearAdd, ...). Elsewhere the DQ/Q pairs are extra passes over the tensor, and some int8 kernels
are slower than their float ones. This measures, on generated U-Nets (encoder convs with max-pool,
decoder upsampling by ConvTranspose or by Resize, skip Concats, residual Adds, a sigmoid map), the
fp32 model against int8 variants that differ in the activations' type (``s8s8``: int8
activations, ``u8s8``: uint8 activations; weights int8 per channel in both) and in which op types
are quantized:

- ``all``: onnxruntime's default (every op type its QDQ quantizer knows);
- ``compute``: only the ops whose int8 kernels do the arithmetic (Conv, ConvTranspose, Gemm, MatMul);
- ``no_data_movement``: all but Resize, Concat, Add, Mul, MaxPool (ops that compute little);
- ``no_convtranspose``: all but ConvTranspose.

Per model, every variant runs in interleaved blocks (rotating order each round) in one process
so that load from other processes hits all alike. Reported: the median ms per call of each, the
ratio of medians to fp32, and each int8 variant's error against fp32 (max |Δ| of the sigmoid map,
and PSNR), written to ``benchmarks/results/int8_onnx_ops.json``.

    python benchmarks/int8_onnx_ops.py                 # ~2-4 min on 2 cores
    python benchmarks/int8_onnx_ops.py --rounds 6 --size 96
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "int8_onnx_ops.json"

VARIANTS: dict[str, dict[str, Any]] = {
    "s8s8_all": {"activations": "int8"},
    "u8s8_all": {"activations": "uint8"},
    "u8s8_compute": {"activations": "uint8", "op_types_to_quantize": ["Conv", "ConvTranspose", "Gemm", "MatMul"]},
    "u8s8_no_data_movement": {"activations": "uint8", "exclude": ["Resize", "Concat", "Add", "Mul", "MaxPool"]},
    "u8s8_no_convtranspose": {"activations": "uint8", "exclude": ["ConvTranspose"]},
}


def unet(up: str, width: int = 16, seed: int = 0) -> Any:
    """A two-level U-Net: conv blocks with a residual Add, max-pool down, ``up`` (convtranspose |
    resize) up, Concat skips, a 1x1 conv and a sigmoid map."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.a = nn.Conv2d(cin, cout, 3, padding=1)
            self.b = nn.Conv2d(cout, cout, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.a(x))
            return torch.relu(self.b(y) + y)

    class Up(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.t = nn.ConvTranspose2d(c, c, 2, stride=2) if up == "convtranspose" else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.t is not None:
                return self.t(x)
            return nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.e1, self.e2, self.mid = Block(3, w), Block(w, 2 * w), Block(2 * w, 4 * w)
            self.u2, self.d2 = Up(4 * w), Block(6 * w, 2 * w)
            self.u1, self.d1 = Up(2 * w), Block(3 * w, w)
            self.head = nn.Conv2d(w, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e1 = self.e1(x)
            e2 = self.e2(nn.functional.max_pool2d(e1, 2))
            m = self.mid(nn.functional.max_pool2d(e2, 2))
            d2 = self.d2(torch.cat([self.u2(m), e2], 1))
            d1 = self.d1(torch.cat([self.u1(d2), e1], 1))
            return torch.sigmoid(self.head(d1))

    return UNet().eval()


def export_onnx(model: Any, size: int, path: Path) -> None:
    import torch

    torch.onnx.export(model, (torch.rand(1, 3, size, size),), str(path), input_names=["input"],
                      output_names=["mask"], dynamo=False, opset_version=17)


def quantize(src: Path, dst: Path, samples: list[np.ndarray], variant: dict[str, Any]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter({"input": s} for s in samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    kwargs: dict[str, Any] = {}
    if "op_types_to_quantize" in variant:
        kwargs["op_types_to_quantize"] = variant["op_types_to_quantize"]
    if "exclude" in variant:
        graph = onnx.load(str(src)).graph
        kwargs["nodes_to_exclude"] = [n.name for n in graph.node if n.op_type in variant["exclude"]]
    activations = QuantType.QUInt8 if variant["activations"] == "uint8" else QuantType.QInt8
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activations, weight_type=QuantType.QInt8, **kwargs)


def _block(session: Any, feed: dict[str, np.ndarray], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        session.run(None, feed)
    return (time.perf_counter() - t0) / n * 1e3


def measure(files: dict[str, Path], feed: dict[str, np.ndarray], threads: int, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in files.items()}
    names = list(sessions)
    for s in sessions.values():  # warm-up
        _block(s, feed, 2)
    per_block = max(3, min(100, int(250 / max(_block(sessions["fp32"], feed, 3), 0.05))))
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        if r % 2:
            order.reverse()
        for k in order:
            times[k].append(_block(sessions[k], feed, per_block))
    outs = {k: s.run(None, feed)[0] for k, s in sessions.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    rec: dict[str, Any] = {"runs_per_block": per_block, "rounds": rounds}
    for k in names:
        diff = np.abs(outs[k].astype(np.float64) - outs["fp32"])
        mse = float(np.mean(diff ** 2))
        rec[k] = {"median_ms": round(med[k], 3), "ratio_to_fp32": round(med[k] / med["fp32"], 3),
                  "max_abs_vs_fp32": float(diff.max()),
                  "psnr_vs_fp32_db": None if mse == 0 else round(10 * math.log10(1.0 / mse), 2),
                  "ops": _ops(files[k])}
    return rec


def _ops(path: Path) -> dict[str, int]:
    import onnx

    hist: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    return dict(sorted(hist.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--widths", type=int, nargs="*", default=[16, 32])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    # calibration and timing input: smooth random images (box-blurred noise) in [0, 1]
    def image() -> np.ndarray:
        x = rng.random((1, 3, args.size // 8, args.size // 8)).astype(np.float32)
        return np.ascontiguousarray(np.repeat(np.repeat(x, 8, axis=2), 8, axis=3))

    samples = [image() for _ in range(8)]
    feed = {"input": image()}
    models: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for up, width in ((u, w) for u in ("convtranspose", "resize") for w in args.widths):
            key = f"unet_{up}_w{width}"
            src = Path(tmp) / f"{key}.onnx"
            export_onnx(unet(up, width), args.size, src)
            files = {"fp32": src}
            for name, variant in VARIANTS.items():
                dst = Path(tmp) / f"{key}_{name}.onnx"
                quantize(src, dst, samples, variant)
                files[name] = dst
            print(f"[{key}] timing {len(files)} models ...", flush=True)
            models[key] = measure(files, feed, args.threads, args.rounds)
            for k in files:
                m = models[key][k]
                print(f"  {k:<18} {m['median_ms']:8.3f} ms  x{m['ratio_to_fp32']:.2f}  "
                      f"max|d| {m['max_abs_vs_fp32']:.3g}", flush=True)
    import onnxruntime

    doc = {
        "what": "int8 QDQ ONNX on onnxruntime's CPU: which op types to quantize (generated U-Nets)",
        "method": "interleaved blocks per round, rotating order; median ms per call; ratio = variant / fp32",
        "variants": VARIANTS, "input": [1, 3, args.size, args.size], "widths": args.widths,
        "threads": args.threads, "host": platform.platform(), "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine: ratios are the robust number, absolute ms are noisy",
        "versions": {"onnxruntime": onnxruntime.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": models,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
