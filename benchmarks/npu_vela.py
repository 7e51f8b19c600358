"""Ethos-U, as Arm's Vela compiler estimates it: edgekit's ``--target ethos-u`` output vs a plain
int8 export, for every zoo model that converts to int8.

For each zoo model (at its card's input shape; shipped weights where there are some, else random
init, which changes no op or shape), two int8 TFLite files are made with ``edgekit.convert``:

- ``plain``: ``--to tflite --precision int8`` (no rewrite pass: what an int8 export gives);
- ``ethos-u``: ``--to tflite --precision int8 --target ethos-u`` (the ethos-u pipeline, and the
  ops Vela runs natively kept as such).

Each is compiled by Vela (:func:`edgekit.vela.run_vela`) for Ethos-U55-128, U55-256 and
U65-256 with Vela's default system configuration and memory mode for the family, from Vela's
own ``Arm/vela.ini`` (named in the output). Reported per model and accelerator: the estimated
inference time, NPU cycles, the share of ops Vela placed on the NPU, the ops left on the CPU,
SRAM / off-chip use, and ``ratio`` = time(ethos-u) / time(plain) (below 1: edgekit's output is
faster). A model or file Vela cannot compile (e.g. one that does not fit) is recorded with
Vela's own message. A model that does not convert to int8 is recorded with the reason; an int8 file that fails
verification is still compiled (its ops and shapes are what Vela sees) and its verdict recorded.

Usage::

    python benchmarks/npu_vela.py --out benchmarks/results/npu_vela.json --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ACCELERATORS = ("ethos-u55-128", "ethos-u55-256", "ethos-u65-256")
VERDICTS: dict[str, str] = {}  # int8 file -> its verification verdict


def convert_int8(model: str, out: Path, target: str | None) -> tuple[Path | None, str | None, float]:
    """The int8 TFLite file of ``model`` (or None and why)."""
    from edgekit import zoo
    from edgekit.converters.api import convert

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"formats": ("tflite",), "precision": "int8", "bench_runs": 0}
    if zoo.card(model).weights:
        kwargs["pretrained"] = True
    if target:
        kwargs["target"] = target
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = convert(model, out=out, force=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - recorded, the benchmark goes on
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", time.perf_counter() - t0
    status = next((a for a in result.artifacts if a.format == "tflite"), None)
    path = result.bundle / "model.tflite"
    if status is None or not path.is_file():
        return None, "no int8 TFLite file was written", time.perf_counter() - t0
    # a file that failed int8 verification still has the ops and shapes Vela compiles: it is
    # compiled and its verdict recorded beside the numbers
    VERDICTS[str(path)] = status.status if status.status in ("passed", "skipped") else \
        f"{status.status}: {(status.reason or '')[:200]}"
    return path, None, time.perf_counter() - t0


def vela_row(path: Path, accelerator: str) -> dict[str, Any]:
    from edgekit.errors import EdgekitError
    from edgekit.vela import run_vela

    try:
        r = run_vela(path, accelerator)
    except EdgekitError as e:
        return {"error": str(e)}
    d = r.to_dict()
    return {"system_config": r.system_config, "memory_mode": r.memory_mode, "core_clock_hz": r.core_clock_hz,
            "inference_time_ms": round(r.inference_time_s * 1e3, 4), "cycles_npu": r.cycles["npu"],
            "cycles_total": r.cycles["total"], "macs": r.macs, "ops": len(r.ops), "npu_ops": len(r.npu_ops),
            "npu_share": round(r.npu_share, 4),
            "cpu_ops": [f"{o.op} #{o.index}: {(o.reasons or [''])[0]}" for o in r.cpu_ops],
            "memory": d["memory"], "weights": d["weights"]}


def _short(error: str) -> str:
    """Vela's or the converter's message without the file path and the hint."""
    text = error.split(": ", 1)[1] if error.startswith("/") and ": " in error else error
    return text.split(" — ")[0][:110]


def markdown(results: dict[str, Any]) -> str:
    accs = results["accelerators"]
    lines = ["| model | " + " | ".join(f"{a}: plain → ethos-u (ratio)" for a in accs) + " | NPU ops, plain / ethos-u |",
             "|---|" + "---|" * (len(accs) + 1)]
    for name, m in results["models"].items():
        cells = []
        for a in accs:
            p, e = m["plain"].get(a, {}), m["ethos-u"].get(a, {})
            if "error" in p and "error" in e:
                cells.append(f"plain: {_short(p['error'])}; ethos-u: {_short(e['error'])}" if a == accs[0] else "as left")
            elif "error" in p or "error" in e:
                bad, kind = (p, "plain") if "error" in p else (e, "ethos-u")
                ok = e if "error" in p else p
                cells.append(f"{ok['inference_time_ms']:.2f} ms; {kind}: {_short(bad['error'])}" if a == accs[0]
                             else f"{ok['inference_time_ms']:.2f} ms; {kind}: as left")
            else:
                cells.append(f"{p['inference_time_ms']:.2f} → {e['inference_time_ms']:.2f} ms ({m['ratio'][a]:.2f}x)")
        share = [m[k].get(accs[1], {}) for k in ("plain", "ethos-u")]
        npu = " / ".join(f"{s['npu_ops']}/{s['ops']}" if "ops" in s else "—" for s in share)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {npu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edgekit import zoo
    from edgekit.vela import require_vela

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(zoo.list_models()))
    ap.add_argument("--accelerators", default=",".join(ACCELERATORS))
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    ap.add_argument("--workdir", type=Path, help="keep the converted files here")
    ap.add_argument("--markdown", action="store_true", help="also print the README table on stderr")
    ap.add_argument("--update", action="store_true", help="keep the other models of an existing --out file")
    args = ap.parse_args(argv)
    version = require_vela("benchmarking Ethos-U")
    accs = [a.strip() for a in args.accelerators.split(",") if a.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="edgekit-npu-bench-"))
    results: dict[str, Any] = {"vela": version, "accelerators": accs, "python": platform.python_version(),
                               "date": time.strftime("%Y-%m-%d"), "models": {}}
    if args.update and args.out and args.out.is_file():  # re-measure some models, keep the others
        results["models"] = json.loads(args.out.read_text())["models"]
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        entry: dict[str, Any] = {"input_shape": list(zoo.card(name).input_shape)}
        for kind, target in (("plain", None), ("ethos-u", "ethos-u")):
            path, error, secs = convert_int8(name, work / f"{name}-{kind}", target)
            entry[f"convert_seconds_{kind}"] = round(secs, 1)
            if path is None:
                entry[kind] = {a: {"error": f"no int8 file: {error}"} for a in accs}
                continue
            entry[kind] = {a: vela_row(path, a) for a in accs}
            entry[f"verification_{kind}"] = VERDICTS.get(str(path), "?")
        entry["ratio"] = {}
        for a in accs:
            p, e = entry["plain"][a], entry["ethos-u"][a]
            if "error" not in p and "error" not in e and p["inference_time_ms"] > 0:
                entry["ratio"][a] = round(e["inference_time_ms"] / p["inference_time_ms"], 3)
        results["models"][name] = entry
        print(f"{name}: " + ", ".join(f"{a} {entry['ratio'].get(a, '—')}x" for a in accs), file=sys.stderr, flush=True)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)
    if args.markdown:
        print(markdown(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
