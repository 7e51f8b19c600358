"""How far apart are float32 implementations of one model? The measurement behind
``edgekit.numerics.FACTOR``.

For every zoo model (random or shipped weights, the card's example input) and the importer's
and conformance-style small models, the float32 outputs of several implementations are compared
with the model run in float64 (PyTorch, ``.double()``):

- ``torch``: PyTorch eager, float32;
- ``onnxruntime-1t`` / ``-2t``: the dynamo ONNX export on onnxruntime's CPU EP, 1 and 2 threads;
- ``litert-1t`` / ``-2t``: litert-torch's TFLite on LiteRT with XNNPACK, 1 and 2 threads;
- ``importer``: edgekit's ONNX importer (ONNX → torch.fx) run in float32.

Each implementation's error is ``max |y32 - y64|``. A derived test bound measures one side (the
torch source, or the importer's own graph) and multiplies by FACTOR; it holds when every other
implementation's error is at most ``FACTOR - 1`` times the measured side's (then
``|A - B| <= eA + eB <= FACTOR * eA``). Reported per model: each error, the ratio of the largest
other error to the measured side's, and the run's CPU settings. Run it under both CI settings:

    python benchmarks/fp32_spread.py                          # host defaults (AVX-512 here)
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 OMP_NUM_THREADS=1 python benchmarks/fp32_spread.py

Results go to ``benchmarks/results/fp32_spread.json`` (one entry per setting, merged).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "fp32_spread.json"
SETTING_KEYS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")


def _err(a: Any, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max())


def measure(name: str, model: Any, xs: tuple, workdir: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    from edgekit.converters.onnx_import import import_onnx

    model = model.eval()
    with torch.no_grad():
        y64 = copy.deepcopy(model).double()(*[x.double() for x in xs]).numpy()
        errs: dict[str, float] = {"torch": _err(model(*xs).numpy(), y64)}
    onnx_path = workdir / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, xs, str(onnx_path), dynamo=True, verbose=False)
    feeds = [x.numpy() for x in xs]
    for t in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = t, 1
        s = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        errs[f"onnxruntime-{t}t"] = _err(s.run(None, dict(zip([i.name for i in s.get_inputs()], feeds)))[0], y64)
    imp = import_onnx(onnx_path)
    with torch.no_grad():
        errs["importer"] = _err(imp.module(*xs).numpy(), y64)
    try:
        import litert_torch
        from ai_edge_litert.interpreter import Interpreter

        tfl = workdir / f"{name}.tflite"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            litert_torch.convert(model, xs).export(str(tfl))
        for t in (1, 2):
            it = Interpreter(model_path=str(tfl), num_threads=t)
            it.allocate_tensors()
            for d, x in zip(it.get_input_details(), feeds):
                it.set_tensor(d["index"], x)
            it.invoke()
            errs[f"litert-{t}t"] = _err(it.get_tensor(it.get_output_details()[0]["index"]), y64)
    except Exception as e:  # noqa: BLE001 - a model litert-torch cannot export: report it, measure the rest
        errs["litert_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    scale = float(np.abs(y64).max())
    numbers = {k: v for k, v in errs.items() if isinstance(v, float)}
    from edgekit.numerics import FACTOR, U32

    ratios, margins = {}, {}
    for side in ("torch", "importer"):
        others = [v for k, v in numbers.items() if k != side]
        ratios[side] = max(others) / numbers[side] if numbers[side] > 0 else None
        # the derived bound over the worst case of |A - B| (<= eA + eB): > 1 means the bound holds
        worst = numbers[side] + max(others)
        margins[side] = FACTOR * (numbers[side] + U32 * scale) / worst if worst > 0 else None
    return {"output_scale": scale, "errors": errs, "largest_ratio_to": ratios, "bound_margin": margins}


def small_models() -> dict[str, tuple[Any, tuple]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4),
                         nn.BatchNorm2d(16).eval(), nn.Hardswish(), nn.Conv2d(16, 12, 1), nn.PixelShuffle(2))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 256), nn.GELU(), nn.LayerNorm(256), nn.Linear(256, 10),
                        nn.Softmax(-1))
    norm = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.SiLU(), nn.Conv2d(32, 3, 3, padding=1))
    x = torch.rand(1, 3, 16, 16)
    return {"small_convnet": (conv, (x,)), "small_mlp": (mlp, (x,)), "small_groupnorm": (norm, (x,))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="zoo names (default: every zoo model, plus the small models)")
    args = ap.parse_args()

    import torch

    from edgekit import zoo

    setting = {k: os.environ.get(k) for k in SETTING_KEYS}
    key = ",".join(f"{k}={v}" for k, v in setting.items() if v) or "host defaults"
    names = args.models or zoo.list_models()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {n: (zoo.create(n), tuple(zoo.example_inputs(n))) for n in names}
        if not args.models:
            models.update(small_models())
        for name, (model, xs) in models.items():
            torch.manual_seed(0)
            results[name] = measure(name, model, xs, Path(tmp))
            r = results[name]
            print(f"{name:24s} scale {r['output_scale']:.3g}  " + "  ".join(
                f"{k} {v:.2g}" for k, v in r["errors"].items() if isinstance(v, float)) +
                f"  | largest/torch {r['largest_ratio_to']['torch']}", flush=True)
    ratios = [r["largest_ratio_to"][s] for r in results.values() for s in ("torch", "importer")
              if r["largest_ratio_to"][s] is not None and r["output_scale"] > 1e-6]
    margins = [r["bound_margin"][s] for r in results.values() for s in ("torch", "importer")
               if r["bound_margin"][s] is not None]
    record = {
        "setting": setting, "smallest_bound_margin": min(margins) if margins else None, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "processor": platform.processor(),
        "largest_ratio": max(ratios) if ratios else None, "models": results,
        "note": "ratios only over outputs of scale > 1e-6 (random-weight classifiers output ~1e-9: their "
                "errors are at the denormal floor and the floor term of the bound decides)",
    }
    prev = json.loads(OUT.read_text()) if OUT.exists() else {}
    prev[key] = record
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(prev, indent=1) + "\n")
    print(f"largest ratio of another implementation's error to the measured side's: {record['largest_ratio']:.2f}; "
          f"smallest margin of the derived bound over eA + eB: {record['smallest_bound_margin']:.2f}")
    print(f"wrote {OUT} [{key}]")


if __name__ == "__main__":
    main()
