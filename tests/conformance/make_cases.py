"""Build the conformance cases once and write them as small files the suite reads.

Regenerate (needs torch, litert-torch, onnx, onnxruntime, ai-edge-litert and coremltools:
``pip install -e ".[convert]"``)::

    python tests/conformance/make_cases.py --force        # rewrite tests/conformance/cases/
    python tests/conformance/make_cases.py --out DIR      # write elsewhere (DIR must not hold the cases)

Without ``--force`` the script refuses to touch a case folder that exists. Each case folder
``cases/<case>/`` holds the model in every format it is built in (``model.onnx`` with its
external data, ``model.ort``, ``model.tflite``, ``model.mlpackage/``), ``inputs.npz``,
``expected.npz`` and ``case.json``: the formats, each format's input and output tensors (read
back with the reference tools: onnxruntime, the LiteRT interpreter, the Core ML spec), which
arrays to feed and expect, and one bound per output with its derivation (``Bound.how``).

Where the files come from:

- ``convnet_nchw``, ``conv_nhwc``, ``multi_io``: the seeded torch modules of
  ``model_builders.torch_modules`` exported by ``torch.onnx.export(dynamo=True)``,
  ``litert_torch.convert`` and ``coremltools.convert`` (an ML Program computing in float16);
  the expected outputs are the torch float32 eager outputs. ONNX and TFLite are held to
  ``Bound.measured`` (the module's own float32-vs-float64 error, ``numeric.fp32_bounds``);
  Core ML to an a-priori float16 round-off bound (``Bound.roundoff(..., unit=U16)``), derived
  below and recorded beside the module's torch ``.half()`` error for comparison.
- ``int8_input``, ``float16_input``, ``add_mul_constant``: hand-built with ``onnx.helper`` and the
  TFLite schema (``model_builders``), with NumPy references that are exact by construction
  (``Bound.exact``), except the float16 ONNX model, which computes ``x * w + 1`` in float16 (a
  U16 round-off bound, as NumPy's float16 reference may round differently from the runtime).
- ``model.ort``: onnxruntime's ORT-format writer on ``model.onnx`` (``model_builders.onnx_to_ort``).

The suite (``conformance_support.load_cases``) needs none of the tools above: only the runtimes.
``test_cases_reproducible.py`` (slow) re-runs this script into a temporary folder and checks that
the regenerated models compute the committed expected outputs within the committed bounds.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
CASES_DIR = HERE / "cases"
GENERATED_BY = "tests/conformance/make_cases.py (regenerate: python tests/conformance/make_cases.py --force)"
SCHEMA = 1

if str(TESTS) not in sys.path:  # run as a script: import the test helpers as pytest does
    sys.path.insert(0, str(TESTS))

from edgekit.numerics import FACTOR, U16, Bound  # noqa: E402

# What each torch case covers, its formats, and the float16 round-off parameters of its Core ML
# model, per output: ``reduction`` the longest reduction on the path to the output, ``depth`` the
# rounding steps on it (one for the float16 rounding of the inputs and weights, one per layer that
# rounds: conv with its bias, batch norm, mean, linear, sigmoid, multiply; ReLU/ReLU6, max and
# permutes are exact).
TORCH_CASES: dict[str, dict[str, Any]] = {
    "convnet_nchw": {
        "covers": "Conv-BN-ReLU6, depthwise conv, global mean pool, linear head (a MobileNet in miniature); "
                  "NCHW input; also saved in the ORT format",
        "layout": "NCHW",
        "formats": ("onnx", "ort", "tflite", "coreml"),
        "inputs": ["x"], "outputs": ["logits"],
        "fp16": [{"reduction": 64, "depth": 6,
                  "path": "round(x, w) -> conv 3x3x3 (27) -> BN -> ReLU6 -> depthwise 3x3 (9) -> mean 8x8 (64) -> linear (8)"}],
    },
    "conv_nhwc": {
        "covers": "a conv that takes and returns NHWC (permutes around it): the layout NPUs want at the boundary",
        "layout": "NHWC",
        "formats": ("onnx", "tflite", "coreml"),
        "inputs": ["x"], "outputs": ["y"],
        "fp16": [{"reduction": 27, "depth": 2, "path": "round(x, w) -> conv 3x3x3 (27) + bias -> ReLU"}],
    },
    "multi_io": {
        "covers": "two inputs, two outputs of different ranks (sigmoid(conv(image)) * gain, amax of the conv)",
        "layout": "NCHW",
        "formats": ("onnx", "tflite", "coreml"),
        "inputs": ["image", "gain"], "outputs": ["gated", "peak"],
        "fp16": [{"reduction": 27, "depth": 4, "path": "round(x, w) -> conv 3x3x3 (27) + bias -> sigmoid -> * gain"},
                 {"reduction": 27, "depth": 2, "path": "round(x, w) -> conv 3x3x3 (27) + bias -> amax (exact)"}],
    },
}
HAND_CASES = ("int8_input", "float16_input", "add_mul_constant")
ALL_CASES = (*TORCH_CASES, *HAND_CASES)

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64"}
_COREML_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32", 131080: "int8"}
FILES = {"onnx": "model.onnx", "ort": "model.ort", "tflite": "model.tflite", "coreml": "model.mlpackage"}


# -- reading back what a file declares, with the reference tools --------------------------------
def _dims(shape: Any) -> list:
    return [d if isinstance(d, (int, str)) or d is None else int(d) for d in shape]


def declared(fmt: str, path: Path) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of ``path`` as name/shape/dtype dicts, read by the format's reference tool."""
    if fmt in ("onnx", "ort"):
        import onnxruntime as ort

        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        spec = lambda a: {"name": a.name, "shape": _dims(a.shape), "dtype": _ORT_DTYPES[a.type]}  # noqa: E731
        return [spec(a) for a in s.get_inputs()], [spec(a) for a in s.get_outputs()]
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path))
        spec = lambda d: {"name": d["name"], "shape": [int(x) for x in d["shape_signature"]],  # noqa: E731
                          "dtype": np.dtype(d["dtype"]).name}
        return [spec(d) for d in it.get_input_details()], [spec(d) for d in it.get_output_details()]
    if fmt == "coreml":
        import coremltools as ct

        desc = ct.utils.load_spec(str(path)).description
        spec = lambda f: {"name": f.name, "shape": [int(x) for x in f.type.multiArrayType.shape],  # noqa: E731
                          "dtype": _COREML_DTYPES[f.type.multiArrayType.dataType]}
        return [spec(f) for f in desc.input], [spec(f) for f in desc.output]
    raise ValueError(fmt)


def run_model(fmt: str, path: Path, feed: list[np.ndarray]) -> list[np.ndarray]:
    """The model on its bare runtime, one thread (the generator's self-check)."""
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        for d, x in zip(it.get_input_details(), feed):
            it.set_tensor(d["index"], x)
        it.invoke()
        return [it.get_tensor(d["index"]) for d in it.get_output_details()]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), feed)})


# -- bounds --------------------------------------------------------------------------------------
def bound_json(b: Bound, kind: str, **extra: Any) -> dict[str, Any]:
    return {"atol": float(b.atol), "how": b.how, "kind": kind, **extra}


def _fp16_error(module: Any, args: tuple) -> list[float]:
    """The module's own float16 error: its torch ``.half()`` run against its float64 run (for
    comparison with the a-priori Core ML bound; torch's CPU kernels may accumulate in float32)."""
    import torch
    from numeric import float64_outputs

    half = copy.deepcopy(module).half()
    with torch.no_grad():
        out = half(*[a.half() for a in args])
    outs = list(out) if isinstance(out, tuple) else [out]
    return [float(np.abs(o.float().numpy().astype(np.float64) - r).max())
            for o, r in zip(outs, float64_outputs(module, *args))]


def coreml_bounds(name: str, expected: list[np.ndarray], fp16_errors: list[float]) -> list[dict]:
    """Core ML computes in float16: ``Bound.roundoff(max|expected|, reduction, depth, unit=U16)`` per
    output (see TORCH_CASES); the generator refuses a bound below FACTOR x the torch .half() error."""
    out = []
    for e, p, err in zip(expected, TORCH_CASES[name]["fp16"], fp16_errors):
        b = Bound.roundoff(float(np.abs(e).max()), reduction=p["reduction"], depth=p["depth"], unit=U16)
        if b.atol < FACTOR * err:
            raise SystemExit(f"{name}: the float16 bound {b.atol:.3g} is below {FACTOR:g} x the torch .half() error "
                             f"{err:.3g}: revisit its reduction/depth")
        out.append(bound_json(b, "roundoff-u16", derivation=(
            "Core ML ML Program computing in float16 (compute_precision FLOAT16): a-priori float16 round-off "
            "(unit U16 = 2**-11) at the scale of the torch float32 output, over the longest reduction and the "
            f"rounding steps of the path {p['path']}"), torch_half_error=err))
    return out


# -- the cases -----------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "litert-torch", "onnx", "onnxruntime", "ai-edge-litert", "coremltools", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _format_entry(fmt: str, folder: Path, built_by: str, feed: list[str], expect: list[str],
                  bounds: list[dict]) -> dict[str, Any]:
    path = folder / FILES[fmt]
    ins, outs = declared(fmt, path)
    assert len(ins) == len(feed) and len(outs) == len(expect) == len(bounds), (fmt, path)
    for t, a in zip(ins, feed):
        t["array"] = a
    for t, a, b in zip(outs, expect, bounds):
        t["expected"], t["bound"] = a, b
    if path.is_dir():
        files = sorted(str(f.relative_to(folder)) for f in path.rglob("*") if f.is_file())
    else:
        files = [path.name] + _onnx_external(path)
    return {"model": path.name, "files": files, "built_by": built_by, "inputs": ins, "outputs": outs}


def _onnx_external(path: Path) -> list[str]:
    if path.suffix != ".onnx":
        return []
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return sorted({e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"})


def build_torch_case(name: str, module: Any, args: tuple, folder: Path) -> dict[str, Any]:
    import torch
    from numeric import fp32_bounds

    from conformance import model_builders as B

    spec = TORCH_CASES[name]
    with torch.no_grad():
        out = module(*args)
    expected = [o.detach().numpy() for o in (out if isinstance(out, tuple) else (out,))]
    feed = [a.detach().numpy() for a in args]
    measured = [bound_json(b, "measured", derivation="numeric.fp32_bounds: the torch module's float32 outputs "
                           "against its float64 run (Bound.measured, factor 8)")
                for b in fp32_bounds(module, *args)]
    in_keys, out_keys = spec["inputs"], spec["outputs"]
    entries: dict[str, Any] = {}
    with torch.no_grad():
        B.export_onnx(module, args, folder / "model.onnx")
        entries["onnx"] = _format_entry("onnx", folder, "torch.onnx.export(dynamo=True, external_data=True)",
                                        in_keys, out_keys, measured)
        if "ort" in spec["formats"]:
            B.onnx_to_ort(folder / "model.onnx", folder / "model.ort")
            entries["ort"] = _format_entry("ort", folder, "onnxruntime ORT-format writer on model.onnx "
                                           "(model_builders.onnx_to_ort, basic optimisations)", in_keys, out_keys, measured)
        B.export_tflite(module, args, folder / "model.tflite")
        entries["tflite"] = _format_entry("tflite", folder, "litert_torch.convert", in_keys, out_keys, measured)
        if "coreml" in spec["formats"]:
            onnx_in, onnx_out = entries["onnx"]["inputs"], entries["onnx"]["outputs"]
            B.export_coreml(module, args, folder / "model.mlpackage", [t["name"] for t in onnx_in],
                            [t["name"] for t in onnx_out])
            entries["coreml"] = _format_entry(
                "coreml", folder, "coremltools.convert(torch.jit.trace(module), convert_to='mlprogram', "
                "compute_precision=FLOAT16, minimum_deployment_target=macOS13), float32 inputs and outputs",
                in_keys, out_keys, coreml_bounds(name, expected, _fp16_error(module, args)))
    return {"covers": spec["covers"], "layout": spec["layout"],
            "source": f"model_builders.torch_modules()['{name}'] (torch.manual_seed(0); inputs from "
                      "torch.Generator().manual_seed(1)); expected: its torch float32 eager outputs",
            "formats": entries,
            "arrays": (dict(zip(in_keys, feed)), dict(zip(out_keys, expected)))}


def build_hand_cases(folders: dict[str, Path]) -> dict[str, dict[str, Any]]:
    from conformance import model_builders as B

    rng = np.random.default_rng(0)
    cases: dict[str, dict[str, Any]] = {}

    # int8 input: y = (q - zero_point) * scale, exactly: small integers times a power of two.
    exact = bound_json(Bound.exact("dequantize: (q - zero_point) * 0.25 is exact in float32"), "exact")
    q_nhwc = rng.integers(-128, 128, (1, 4, 4, 3)).astype(np.int8)
    q_nchw = rng.integers(-128, 128, (1, 3, 4, 4)).astype(np.int8)
    d = folders["int8_input"]
    B.tflite_dequantize(d / "model.tflite", "int8")
    B.onnx_dequantize(d / "model.onnx")
    cases["int8_input"] = {
        "covers": "an int8 input with scale 0.25 and zero point -3, dequantized to float32 "
                  "(TFLITE DEQUANTIZE on NHWC, ONNX DequantizeLinear on NCHW)",
        "layout": "NHWC (tflite), NCHW (onnx)",
        "source": "model_builders.tflite_dequantize / onnx_dequantize; inputs from numpy default_rng(0); "
                  "expected: (q + 3) * 0.25 in NumPy",
        "formats": {
            "onnx": _format_entry("onnx", d, "onnx.helper (model_builders.onnx_dequantize)", ["q_nchw"], ["y_nchw"], [exact]),
            "tflite": _format_entry("tflite", d, "TFLite schema object API (model_builders.tflite_dequantize)",
                                    ["q_nhwc"], ["y_nhwc"], [exact]),
        },
        "arrays": ({"q_nhwc": q_nhwc, "q_nchw": q_nchw},
                   {"y_nhwc": (q_nhwc.astype(np.float32) + 3) * 0.25, "y_nchw": (q_nchw.astype(np.float32) + 3) * 0.25}),
    }

    # float16 input: TFLite dequantizes to float32 (exact: every float16 is a float32); the ONNX
    # model computes x * w + 1 in float16, as NumPy does here: two float16 roundings, which a
    # runtime may make in another way (float32 accumulation, a fused multiply-add).
    h_nhwc = rng.standard_normal((1, 4, 4, 3)).astype(np.float16)
    h_nchw = rng.standard_normal((1, 3, 4, 4)).astype(np.float16)
    w = (np.arange(48, dtype=np.float32).reshape(3, 4, 4) / 8 - 1).astype(np.float16)
    want_nchw = h_nchw * w + np.float16(1)
    scale16 = float(np.abs(h_nchw.astype(np.float32) * w.astype(np.float32)).max()) + 1  # largest |x w| and |x w + 1|
    d = folders["float16_input"]
    B.tflite_dequantize(d / "model.tflite", "float16")
    B.onnx_float16(d / "model.onnx", external="float16_weights.bin")
    cases["float16_input"] = {
        "covers": "a float16 input: TFLITE DEQUANTIZE to float32 (NHWC); ONNX x * w + 1 computed in float16 "
                  "with the constant w in an external data file (NCHW)",
        "layout": "NHWC (tflite), NCHW (onnx)",
        "source": "model_builders.tflite_dequantize / onnx_float16; inputs from numpy default_rng(0) "
                  "(after int8_input's); expected: NumPy (float32 cast; float16 x * w + 1)",
        "formats": {
            "onnx": _format_entry(
                "onnx", d, "onnx.helper (model_builders.onnx_float16, external data float16_weights.bin)",
                ["h_nchw"], ["y_nchw"],
                [bound_json(Bound.roundoff(scale16, reduction=1, depth=2, unit=U16), "roundoff-u16",
                            derivation="two float16 roundings (multiply, add) at the scale of the largest "
                                       "|x w| + 1; NumPy's float16 reference and the runtime may round differently")]),
            "tflite": _format_entry("tflite", d, "TFLite schema object API (model_builders.tflite_dequantize)",
                                    ["h_nhwc"], ["y_nhwc"],
                                    [bound_json(Bound.exact("float16 -> float32 is exact"), "exact")]),
        },
        "arrays": ({"h_nhwc": h_nhwc, "h_nchw": h_nchw}, {"y_nhwc": h_nhwc.astype(np.float32), "y_nchw": want_nchw}),
    }

    a, b = rng.standard_normal((2, 1, 2, 3, 4)).astype(np.float32)
    c = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) / 10
    d = folders["add_mul_constant"]
    B.tflite_add_mul(d / "model.tflite")
    cases["add_mul_constant"] = {
        "covers": "two float32 inputs, two outputs: a + b and a * c (c a constant tensor in the file)",
        "layout": "NHWC",
        "source": "model_builders.tflite_add_mul; inputs from numpy default_rng(0) (after float16_input's); "
                  "expected: NumPy float32 a + b, a * c",
        "formats": {"tflite": _format_entry(
            "tflite", d, "TFLite schema object API (model_builders.tflite_add_mul)", ["a", "b"], ["sum", "prod"],
            [bound_json(Bound.exact("one float32 add: correctly rounded"), "exact"),
             bound_json(Bound.exact("one float32 multiply: correctly rounded"), "exact")])},
        "arrays": ({"a": a, "b": b}, {"sum": a + b, "prod": a * c}),
    }
    return cases


def self_check(name: str, folder: Path, meta: dict[str, Any]) -> None:
    """Every format the bare runtimes here can open computes the expected outputs within its bound."""
    with np.load(folder / "inputs.npz") as f:
        inputs = dict(f)
    with np.load(folder / "expected.npz") as f:
        expected = dict(f)
    for fmt, entry in meta["formats"].items():
        if fmt == "coreml":
            continue  # predicts on macOS only
        outs = run_model(fmt, folder / entry["model"], [inputs[t["array"]] for t in entry["inputs"]])
        for y, t in zip(outs, entry["outputs"]):
            b = Bound(t["bound"]["atol"], t["bound"]["how"])
            msg = b.check(y, expected[t["expected"]], f"{name}/{fmt}: output {t['name']}")
            if msg:
                raise SystemExit(f"self-check failed: {msg}")


def _dumps(meta: dict[str, Any]) -> str:
    """Indented JSON with lists of scalars (shapes, file lists) on one line."""
    text = json.dumps(meta, indent=1)
    return re.sub(r"\[\n\s*([^\[\]{}]*?)\n\s*\]", lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text)


def write_case(name: str, folder: Path, built: dict[str, Any], tools: dict[str, str]) -> None:
    inputs, expected = built.pop("arrays")
    np.savez(folder / "inputs.npz", **inputs)
    np.savez(folder / "expected.npz", **expected)
    meta = {"generated_by": GENERATED_BY, "schema": SCHEMA, "case": name, **built, "tools": tools}
    (folder / "case.json").write_text(_dumps(meta) + "\n", encoding="utf-8")
    self_check(name, folder, meta)


def generate(out: Path, force: bool = False, only: list[str] | None = None) -> list[Path]:
    names = list(only or ALL_CASES)
    unknown = sorted(set(names) - set(ALL_CASES))
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(unknown)} (known: {', '.join(ALL_CASES)})")
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not force:
        raise SystemExit(f"{existing[0]} exists: pass --force to regenerate {len(existing)} case folder(s) in place")
    for p in existing:
        if p.is_dir() and (p / "case.json").is_file():
            continue
        raise SystemExit(f"{p} exists and is not a generated case folder (no case.json): not replacing it")

    from conformance import model_builders as B

    tools = _versions()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix=".make_cases-", dir=out) as tmp:
        stage = Path(tmp)
        folders = {n: stage / n for n in ALL_CASES}
        for f in folders.values():
            f.mkdir()
        built: dict[str, dict[str, Any]] = {}
        torch_names = [n for n in names if n in TORCH_CASES]
        if torch_names:
            modules = B.torch_modules()
            for n in torch_names:
                module, args = modules[n]
                built[n] = build_torch_case(n, module, args, folders[n])
        if any(n in HAND_CASES for n in names):
            hand = build_hand_cases(folders)  # one rng for all three: built together, kept as asked
            built.update({n: hand[n] for n in names if n in HAND_CASES})
        for n in names:
            write_case(n, folders[n], built[n], tools)
        for n in names:
            target = out / n
            if target.exists():
                shutil.rmtree(target)
            folders[n].rename(target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Regenerate the committed cases: python tests/conformance/make_cases.py --force")
    ap.add_argument("--out", type=Path, default=CASES_DIR, help=f"where to write the case folders (default {CASES_DIR})")
    ap.add_argument("--force", action="store_true", help="replace case folders that exist (only generated ones)")
    ap.add_argument("cases", nargs="*", help=f"cases to build (default: all of {', '.join(ALL_CASES)})")
    a = ap.parse_args(argv)
    for p in generate(a.out, a.force, a.cases or None):
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        print(f"{p}: {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
