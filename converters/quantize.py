"""int8 quantization of written artifacts (``--precision int8``), for the accelerators that run
int8 models only (Edge TPU, Ethos-U; NNAPI and Hexagon run them fastest). TFLite gets a
full-integer model (below); ONNX gets QDQ (:func:`quantize_onnx_int8`): float inputs and outputs,
QuantizeLinear/DequantizeLinear around int8 tensors, the form the ONNX NPU providers take.

Post-training static quantization with ai-edge-quantizer's ``static_wi8_ai8`` recipe: int8
weights (per channel) and int8 activations whose ranges are the min and max over every
calibration input (:func:`calibration_for`; the quantizer's own default, a moving average of
per-sample ranges, clipped a test detector's inputs at 0.93 of [0, 1]); the file's inputs and outputs become int8 too (scale and zero
point in the file), so no float op is left at either end. The bundle records each I/O tensor's
``(scale, zero_point)`` under the artifact's ``quantized_io``, and a session opened on the bundle
takes and returns float arrays (it quantizes and dequantizes at the boundary, see
:class:`edgekit.runtimes.bundle_session.QuantizedIOSession`).

Calibration data: the user's (``--calibration DIR|FILE``: images through the bundle's
pre-processing, or arrays as they are, :mod:`edgekit.converters.samples`). Without it, for a model
that takes one RGB image, crops of the photos shipped in ``edgekit.assets`` at several positions and
scales, mirrored, normalised as the model card or ``--mean/--std/--value-range`` say (real image
statistics), and a quarter as many random images in the same domain (verification's random cases
must keep their meaning too: calibrated on photos alone, a test detector's scores moved by 0.21 on
them in full-integer TFLite); otherwise seeded random
inputs in the model's declared input domain (never values the model was not made for: a model that
expects [-1, 1] is calibrated in [-1, 1]). What was used is recorded in the artifact's passes. The
quantized file is not exact: verification judges it on the task
(:mod:`edgekit.converters.criteria`: scores, top-1, PSNR) and reports the error.

ONNX QDQ uses uint8 activations (asymmetric) and int8 per-channel weights, every op type
onnxruntime's quantizer knows quantized: on onnxruntime's x86 CPU, int8 activations (S8S8) ran 1.2-1.75x
*slower* than fp32 on generated U-Nets, uint8 ones (U8S8) 0.46-0.67x of fp32; keeping Resize, Concat,
Add, Mul and MaxPool in float (or quantizing only the convolutions) was slower than quantizing them,
because each float island adds a DequantizeLinear/QuantizeLinear pass (``benchmarks/int8_onnx_ops.py``,
``benchmarks/results/int8_onnx_ops.json``). NPU providers (QNN, NNAPI) take uint8 activations too.
The int8 artifact is timed against its fp32 file at verification; a slower one is flagged.

Example::

    >>> quant = quantize_int8(Path("model.tflite"), samples)     # doctest: +SKIP
    >>> quant["input"]
    {'scale': 0.0186, 'zero_point': -14, 'dtype': 'int8'}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit._fs import atomic_path
from edgekit.errors import ConversionError, first_line

__all__ = ["calibration_inputs", "calibration_for", "quantize_job", "drop_fp32_copies", "prepare_for_int8",
           "quantize_int8", "quantize_onnx_int8", "INT8_PASS", "ONNX_INT8_PASS", "PREP_PASS"]

INT8_PASS = "ai_edge_quantizer.static_wi8_ai8(min-max calibration)"
ONNX_INT8_PASS = "onnxruntime.quantization.quantize_static(QDQ, per-channel int8 weights, uint8 activations)"
PREP_PASS = "int8_prep: MINIMUM(x, c) as -MAXIMUM(-x, -c), PRELU as RELU(x) - a*RELU(-x) (exact; ops the quantizer has)"
PHOTOS = ("coffee", "astronaut", "chelsea", "rocket")


def calibration_inputs(input_shapes: Sequence[tuple[int, ...]], dtypes: Sequence[Any], *,
                       preprocess: dict[str, Any], fold: Any = None, n: int = 16,
                       seed: int = 0, task: str | None = None,
                       use_photos: bool = True) -> tuple[list[list[np.ndarray]], str]:
    """Calibration inputs (one array per model input, source layout) and what they are: for one
    RGB image input ``n`` photo crops and ``n / 4`` random images, else ``n`` random inputs, all in
    the declared input domain (:func:`edgekit.converters.verify.random_inputs`). With ``fold``
    (pre-processing folded into the model) they stay pixels 0..255 in the fold's input layout, as
    the artifact takes them."""
    from edgekit.converters.verify import FoldSpec, _domain, _layout, normalise, photo_pixels

    rng = np.random.default_rng(seed)
    one_image = len(input_shapes) == 1 and len(input_shapes[0]) == 4 and input_shapes[0][1] == 3
    photos = _photos() if one_image and use_photos else []
    if photos:
        b, _, h, w = input_shapes[0]
        spec = FoldSpec.from_preprocess(preprocess)
        out = []
        for i in range(n):
            rgb = photos[i % len(photos)]
            H, W = rgb.shape[:2]
            frac = (1.0, 0.7, 0.5, 0.35)[(i // len(photos)) % 4]  # whole photo, then closer crops
            ch, cw = max(h, int(H * frac)), max(w, int(W * frac))
            y0, x0 = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
            crop = rgb[y0:y0 + ch, x0:x0 + cw]
            if i % 2:
                crop = crop[:, ::-1]
            # the crop as edgekit.preprocess feeds an image: the task's geometry, then the normalisation
            px = np.repeat(photo_pixels(np.ascontiguousarray(crop), input_shapes[0], preprocess, task)[None], b, axis=0)
            out.append([_layout(px.astype(np.float32), fold) if fold is not None else normalise(px, spec).astype(dtypes[0])])
        # and random images in the same domain: verification's random cases are inputs the model must
        # keep its meaning on too, and their activations reach further than the photos'
        extra, _ = calibration_inputs(input_shapes, dtypes, preprocess=preprocess, fold=fold, n=max(1, n // 4),
                                      seed=seed + 1, task=None, use_photos=False)
        return out + extra, f"{n} crops of {len(photos)} photos and {len(extra)} random images" + (
            " (as pixels 0..255)" if fold is not None else f" ({_domain(preprocess)})")
    from edgekit.converters.verify import random_inputs

    if fold is not None:  # the artifact takes pixels
        return ([[_layout(rng.integers(0, 256, input_shapes[0]).astype(np.float32), fold)] for _ in range(n)],
                f"{n} seeded random pixel images (0..255)")
    out = []
    what = ""
    for _ in range(n):
        arrays, what = random_inputs(rng, input_shapes, dtypes, preprocess)
        out.append(arrays)
    return out, f"{n} seeded random inputs ({what})"


def _photos() -> list[np.ndarray]:
    from edgekit.assets import load_photo

    found = []
    for name in PHOTOS:
        try:
            found.append(load_photo(name))
        except Exception:  # noqa: BLE001 - no image decoder: calibrate on random inputs instead
            return []
    return found


def calibration_for(conv: Any) -> tuple[list[list[np.ndarray]], str]:
    """The calibration inputs of a conversion, one array per input in the layout the artifact
    takes before any rewrite (pixels when pre-processing is folded): ``--calibration`` samples when
    given, else :func:`calibration_inputs`."""
    cap = conv.captured
    if conv.calibration_samples is not None:
        samples, what = conv.calibration_samples
        return [list(s.artifact if s.artifact is not None else s.source) for s in samples], f"--calibration: {what}"
    dtypes = [np.dtype(str(t.dtype).replace("torch.", "")) for t in cap.example_inputs]
    return calibration_inputs(cap.input_shapes, dtypes, preprocess=cap.preprocess, fold=conv.fold, task=cap.task)


def quantize_job(conv: Any, job: Any, result: Any) -> None:
    """int8 quantization of one exported file in place, calibrated on :func:`calibration_for` in
    the file's layouts: full-integer TFLite, QDQ ONNX. A copy of the fp32 file is kept (outside
    the bundle, removed by the verify stage) so verification can time int8 against fp32."""
    from edgekit.runtimes.bundle_session import LayoutMap

    cap = conv.captured
    samples, what = calibration_for(conv)
    io_layouts = job.program.io_layouts if job.program else None
    moves = {name: LayoutMap(lay["source"], lay["artifact"])
             for name, lay in ((io_layouts or {}).get("inputs") or {}).items() if lay["source"] != lay["artifact"]}
    feeds = [{n: (moves[n](a) if n in moves else a) for n, a in zip(cap.input_names, arrays)} for arrays in samples]
    _keep_fp32_copy(conv, job.format, result.path)
    if job.format == "onnx":
        quantize_onnx_int8(result.path, feeds)
        result.passes.append(f"{ONNX_INT8_PASS} on {what}")
        return
    if prepare_for_int8(result.path):
        result.passes.append(PREP_PASS)
    result.extra["quantized_io"] = quantize_int8(result.path, feeds)
    result.passes.append(f"{INT8_PASS} on {what}")
    result.notes.append("int8 weights, activations, inputs and outputs; a bundle session quantizes and dequantizes "
                        "at the boundary (quantized_io)")


def _keep_fp32_copy(conv: Any, fmt: str, path: Path) -> None:
    import shutil
    import tempfile

    if not conv.options.bench_runs or not conv.options.verify or path.is_dir():
        return
    if path.with_name(path.name + ".data").exists():  # external data (over 2 GB): not worth a second copy
        return
    folder = conv.shared.get("fp32_dir")
    if folder is None:
        folder = conv.shared["fp32_dir"] = Path(tempfile.mkdtemp(prefix="edgekit-fp32-"))
    copy = folder / f"fp32_{path.name}"
    shutil.copyfile(path, copy)
    conv.shared.setdefault("fp32_copies", {})[fmt] = copy


def drop_fp32_copies(conv: Any) -> None:
    """Remove the fp32 copies :func:`quantize_job` kept for timing."""
    import shutil

    folder = conv.shared.pop("fp32_dir", None)
    conv.shared.pop("fp32_copies", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def quantize_int8(path: Path, samples: list[dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Rewrite ``path`` in place as a full-integer int8 model calibrated on ``samples`` (one
    ``{input name: array in the file's layout}`` per sample); returns ``{tensor name: {"scale",
    "zero_point", "dtype"}}`` for every input and output, whose tensors get their signature
    names back (the quantizer renames them)."""
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

    from edgekit.converters.exporters import tool_output
    from edgekit.converters.exporters.tflite import name_io_tensors

    with tool_output():  # the quantizer prints a size report
        try:
            q = quantizer.Quantizer(str(path), recipe.static_wi8_ai8())
            signature = _signature(path)
            # min-max over every sample (as onnxruntime's MinMax calibrator): the quantizer's default
            # moving average of per-sample ranges clips the inputs that reach furthest
            recipes = recipe_manager.RecipeManager()
            recipes.load_quantization_recipe(recipe.static_wi8_ai8())
            calib = calibrator.Calibrator(path.read_bytes(), num_threads=2, qsv_update_func=_running_min_max)
            calib.calibrate({signature: samples}, recipes)
            calibration = _widen_degenerate(calib.get_model_qsvs())
            result = q.quantize(calibration)
            with atomic_path(path) as tmp:
                result.export_model(str(tmp), overwrite=True)
            name_io_tensors(path)
            _check_scales(path)
            _probe(path)
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001 - the quantizer's own error, one line
            first = first_line(e)
            raise ConversionError("export", f"int8 quantization failed: {type(e).__name__}: {first}",
                                  hint="convert with --precision fp32 (or fp16) for this model") from None
    return io_quantization(path)


def prepare_for_int8(path: Path) -> int:
    """Rewrite, exactly, the float ops ai-edge-quantizer cannot quantize into ones it can, so no
    float island (DEQUANTIZE → op → QUANTIZE) is left: ``MINIMUM(x, c)`` with a constant ``c``
    (what ``relu_0_to_1_decompose`` and clamps leave) becomes ``−MAXIMUM(−x, −c)`` — negation is
    exact, so the value is the same bit for bit — a remaining ``RELU_0_TO_1`` becomes ``RELU``
    then that form, and ``PRELU`` becomes ``RELU(x) − α·RELU(−x)``. Returns how many ops it
    rewrote (the file is untouched when 0)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from edgekit.converters.passes._tflite import Graph, builtin, new_op, opcode

    B = schema.BuiltinOperator
    model = flatbuffer_utils.read_model(str(path))
    rewritten = 0
    for graph in model.subgraphs:
        g = Graph(model, graph)
        consts = {i for i, t in enumerate(graph.tensors) if model.buffers[t.buffer].data is not None}
        ops: list[Any] = []
        for op in graph.operators:
            kind = builtin(model.operatorCodes[op.opcodeIndex])
            x, y = int(op.inputs[0]), int(op.outputs[0])
            if graph.tensors[x].type != schema.TensorType.FLOAT32:
                ops.append(op)
                continue
            if kind == B.MINIMUM and len(op.inputs) == 2 and int(op.inputs[1]) in consts:
                c = np.frombuffer(model.buffers[graph.tensors[int(op.inputs[1])].buffer].data.tobytes(), np.float32)
                if c.size != 1:
                    ops.append(op)
                    continue
                bound = float(c[0])
            elif kind == B.RELU_0_TO_1:
                t = g.tensor(_stem(graph, y) + "/int8_prep/relu", graph.tensors[y])
                ops.append(new_op(opcode(model, B.RELU), [x], [t], None, schema.BuiltinOptions.NONE))
                x, bound = t, 1.0
            elif kind == B.PRELU and int(op.inputs[1]) in consts:
                ops += _split_prelu(model, g, x, int(op.inputs[1]), y)
                rewritten += 1
                continue
            else:
                ops.append(op)
                continue
            neg = g.scalar("int8_prep/minus_one", -1.0)
            nx = g.tensor(_stem(graph, y) + "/int8_prep/neg", graph.tensors[y])
            m = g.tensor(_stem(graph, y) + "/int8_prep/max_neg", graph.tensors[y])
            mul, maximum = opcode(model, B.MUL), opcode(model, B.MAXIMUM)
            ops += [new_op(mul, [x, neg], [nx], schema.MulOptionsT(), schema.BuiltinOptions.MulOptions),
                    new_op(maximum, [nx, g.scalar(f"int8_prep/minus_{bound:g}", -bound)], [m],
                           schema.MaximumMinimumOptionsT(), schema.BuiltinOptions.MaximumMinimumOptions),
                    new_op(mul, [m, neg], [y], schema.MulOptionsT(), schema.BuiltinOptions.MulOptions)]
            rewritten += 1
        graph.operators = ops
    if rewritten:
        with atomic_path(path) as tmp:
            flatbuffer_utils.write_model(model, str(tmp))
    return rewritten


def _split_prelu(model: Any, g: Any, x: int, alpha: int, y: int) -> list[Any]:
    """``PRELU(x, α)`` as ``RELU(x) − α·RELU(−x)``: exact (one of the two terms is 0, negation is
    exact and ``α·x`` is one rounding either way), and every op quantizable."""
    from ai_edge_litert import schema_py_generated as schema

    from edgekit.converters.passes._tflite import new_op, opcode

    B = schema.BuiltinOperator
    stem = _stem(g.graph, y) + "/int8_prep/prelu_"
    pos, neg, rneg, scaled = (g.tensor(stem + n, g.graph.tensors[y]) for n in ("pos", "neg", "relu_neg", "scaled"))
    relu, mul, sub = opcode(model, B.RELU), opcode(model, B.MUL), opcode(model, B.SUB)
    mul_opts, none = schema.MulOptionsT(), schema.BuiltinOptions.NONE
    return [new_op(relu, [x], [pos], None, none),
            new_op(mul, [x, g.scalar("int8_prep/minus_one", -1.0)], [neg], mul_opts, schema.BuiltinOptions.MulOptions),
            new_op(relu, [neg], [rneg], None, none),
            new_op(mul, [rneg, alpha], [scaled], schema.MulOptionsT(), schema.BuiltinOptions.MulOptions),
            new_op(sub, [pos, scaled], [y], schema.SubOptionsT(), schema.BuiltinOptions.SubOptions)]


def _stem(graph: Any, y: int) -> str:
    return (graph.tensors[y].name or f"tensor{y}".encode()).decode(errors="replace")


def _running_min_max(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The range over every calibration sample so far: the smallest min and the largest max."""
    if not old:
        return new
    merged = dict(new)
    merged["min"] = np.minimum(np.asarray(old["min"]), np.asarray(new["min"]))
    merged["max"] = np.maximum(np.asarray(old["max"]), np.asarray(new["max"]))
    return merged


def _widen_degenerate(calibration: dict[str, Any]) -> dict[str, Any]:
    """Give a tensor that was constant on every calibration input (min == max: e.g. an SE
    block's ReLU that is 0 for every photo) the range from 0 to that constant, or [0, 1] for a
    constant 0, so that its scale is an ordinary one. A zero range makes a zero scale; a tiny one
    makes the next op's bias scale (input scale × weight scale) so small that the int32 bias
    overflows and XNNPACK refuses the op (or LiteRT crashes). 0 stays exactly representable."""
    for stats in calibration.values():
        lo, hi = stats.get("min"), stats.get("max")
        if lo is None or hi is None:
            continue
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        flat = hi - lo <= 0
        if np.any(flat):
            new_lo, new_hi = np.minimum(lo, 0), np.maximum(hi, 0)
            new_hi = np.where(new_hi - new_lo <= 0, np.float32(1), new_hi)
            stats["min"], stats["max"] = np.where(flat, new_lo, lo), np.where(flat, new_hi, hi)
    return calibration


def _check_scales(path: Path) -> None:
    """Refuse a quantized file with a zero or non-finite scale before any interpreter loads it."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for g in model.subgraphs:
        for t in g.tensors:
            scale = getattr(t.quantization, "scale", None)
            if scale is not None and len(scale) and not np.all(np.isfinite(scale) & (np.asarray(scale) > 0)):
                name = t.name.decode(errors="replace") if isinstance(t.name, bytes) else t.name
                raise ConversionError("export", f"int8 quantization gave tensor '{name}' an invalid scale",
                                      hint="convert with --precision fp32 (or fp16) for this model")


_PROBE = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
"""


def _probe(path: Path, timeout: float = 120.0) -> None:
    """Load and run the quantized file once in a child process: the quantizer can write files
    that crash LiteRT natively (seen: an SE block gives "double free or corruption"), which must
    become a one-line error here, not a crash of the converting process."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ConversionError("export", f"the int8 model did not finish one inference in {timeout:.0f} s",
                              hint="convert with --precision fp32 (or fp16) for this model") from None
    if done.returncode:
        lines = [ln for ln in (done.stderr or "").strip().splitlines() if ln.strip()]
        why = f"signal {-done.returncode}" if done.returncode < 0 else (lines[-1][:200] if lines else f"exit {done.returncode}")
        raise ConversionError("export", f"the int8 model ai-edge-quantizer wrote does not run in LiteRT ({why})",
                              hint="convert with --precision fp32 (or fp16) for this model")


def quantize_onnx_int8(path: Path, samples: list[dict[str, np.ndarray]]) -> None:
    """Rewrite the ONNX file ``path`` in place as int8 QDQ (onnxruntime's static quantization:
    per-channel int8 weights, uint8 activations, min-max calibration on ``samples``; every op type
    the quantizer knows). Inputs and outputs stay float32 with QuantizeLinear/DequantizeLinear at
    the ends, the form NPU execution providers (QNN, NNAPI) take and onnxruntime's CPU runs with
    its U8S8 int8 kernels (with int8 activations the same kernels ran slower than fp32: see the
    module docstring)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgekit.converters.exporters import tool_output

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tool_output():
        try:
            with atomic_path(path) as tmp:
                quantize_static(str(path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own error, one line
            first = first_line(e)
            raise ConversionError("export", f"int8 quantization of the ONNX model failed: {type(e).__name__}: {first}",
                                  hint="convert with --precision fp32 (or fp16) for this model") from None


def _signature(path: Path) -> str:
    from ai_edge_litert.interpreter import Interpreter

    keys = list(Interpreter(model_path=str(path)).get_signature_list())
    return keys[0] if keys else "serving_default"


def io_quantization(path: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"scale", "zero_point", "dtype"}}`` of the integer inputs and outputs of a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    out: dict[str, dict[str, Any]] = {}
    runner = it.get_signature_runner()
    for details in (runner.get_input_details(), runner.get_output_details()):
        for name, d in details.items():
            scale, zero = d["quantization"]
            if np.issubdtype(d["dtype"], np.integer) and scale:
                out[name] = {"scale": float(scale), "zero_point": int(zero), "dtype": np.dtype(d["dtype"]).name}
    return out
