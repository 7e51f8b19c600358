"""int8_native: after int8 quantization, put back the ops a target runs natively that the
quantizer made us spell with other ops (``edgekit convert --precision int8 --target NAME``).

ai-edge-quantizer does not quantize ``RELU_0_TO_1`` or ``PRELU``, so before it runs they are
rewritten exactly into ops it has (:func:`edgekit.converters.quantize.prepare_for_int8`):
``clamp(x, 0, 1)`` as ``RELU`` then ``-MAXIMUM(-x, -1)`` (two MULs and a MAXIMUM), ``PRELU`` as
``RELU(x) - a*RELU(-x)`` (two RELUs, two MULs, a SUB). Once the file is int8, this module folds
each such chain back into the single int8 op, but only where the target's profile says that op
runs (its ``[tflite]`` table, for Ethos-U generated from Vela by ``edgekit.targets.refresh``):

    CONV_2D(fused RELU) → MUL(-1) → MAXIMUM(-1) → MUL(-1) → y
    becomes  CONV_2D(fused NONE) → RELU_0_TO_1 → y        (the conv now writes in y's quantization,
                                                           so Vela fuses RELU_0_TO_1 into it)

    RELU(x), MUL(x, -1) → RELU → MUL(a) → SUB → y
    becomes  PRELU(x, a) → y                              (the quantized a of the MUL)

Exact up to the requantization the chain did: the fused op computes the same clamp or the same
piecewise-linear function and rounds once, into the quantization of the chain's output ``y``
(the chain rounded at every step). The artifact is verified afterwards like any other.

Example::

    >>> restore_native(Path("model.tflite"), {"RELU_0_TO_1", "PRELU"})   # doctest: +SKIP
    ['RELU_0_TO_1 x4 (from RELU + MUL/MAXIMUM/MUL)']
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgekit._fs import atomic_path

__all__ = ["restore_native", "NATIVE_OPS", "PASS_NAME"]

PASS_NAME = "int8_native"
NATIVE_OPS = ("RELU_0_TO_1", "PRELU")
# ops whose int8 kernels take any output quantization (pooling and concatenation want the input's)
_REQUANTIZING = (3, 4, 67, 9, 0, 41, 18)  # CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED, ADD, SUB, MUL


def _const_value(model: Any, graph: Any, index: int) -> np.ndarray | None:
    """The dequantized value of a constant tensor (None for an activation)."""
    t = graph.tensors[index]
    data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
    if data is None or len(data) == 0:
        return None
    from ai_edge_litert import schema_py_generated as schema

    dtypes = {schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8, schema.TensorType.INT16: np.int16,
              schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT32: np.int32}
    dt = dtypes.get(t.type)
    if dt is None:
        return None
    raw = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dt).astype(np.float64)
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) == 1:
        zp = float(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0.0
        return (raw - zp) * float(q.scale[0])
    return raw


def _close_to(value: np.ndarray | None, target: float, graph: Any, index: int) -> bool:
    """A scalar constant equal to ``target`` within its own quantization step."""
    if value is None or value.size != 1:
        return False
    q = graph.tensors[index].quantization
    step = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 1e-6
    return abs(float(value.reshape(-1)[0]) - target) <= step / 2 + 1e-9


def restore_native(path: Path, native: Iterable[str]) -> list[str]:
    """Fold the quantizer's spellings of the ``native`` ops (of :data:`NATIVE_OPS`) in the int8
    TFLite file ``path`` back into those ops, in place. Returns what it did, one entry per op
    kind (empty when nothing matched; the file is then untouched)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from edgekit.converters.passes._tflite import builtin, drop_unused_code, new_op, opcode

    want = set(native) & set(NATIVE_OPS)
    if not want:
        return []
    B, A = schema.BuiltinOperator, schema.ActivationFunctionType
    model = flatbuffer_utils.read_model(str(path))
    done: Counter[str] = Counter()
    for graph in model.subgraphs:
        ops = list(graph.operators)
        kind = lambda op: builtin(model.operatorCodes[op.opcodeIndex])  # noqa: E731
        outputs = set(int(i) for i in (graph.outputs or []))

        def readers(t: int) -> list[Any]:
            return [o for o in ops if t in [int(i) for i in o.inputs]]

        def producer(t: int) -> Any | None:
            return next((o for o in ops if t in [int(i) for i in o.outputs]), None)

        def sole(t: int, code: int) -> Any | None:
            r = readers(t)
            return r[0] if len(r) == 1 and kind(r[0]) == code and t not in outputs else None

        def other_const(op: Any, t: int) -> int | None:
            ins = [int(i) for i in op.inputs]
            if len(ins) != 2 or t not in ins:
                return None
            c = ins[1] if ins[0] == t else ins[0]
            return c if _const_value(model, graph, c) is not None else None

        def is_int(t: int) -> bool:
            return graph.tensors[t].type in (schema.TensorType.INT8, schema.TensorType.INT16)

        changed = True
        while changed:
            changed = False
            for op in list(ops):
                if op not in ops:
                    continue
                # clamp(x, 0, 1): [x made with a RELU] → MUL(-1) → MAXIMUM(-1) → MUL(-1)
                if "RELU_0_TO_1" in want and kind(op) == B.MUL:
                    x = int(op.inputs[0])
                    c1 = other_const(op, x) if is_int(x) else None
                    n = int(op.outputs[0])
                    mx = sole(n, B.MAXIMUM) if c1 is not None else None
                    c2 = other_const(mx, n) if mx is not None else None
                    m = int(mx.outputs[0]) if mx is not None else -1
                    mul2 = sole(m, B.MUL) if c2 is not None else None
                    c3 = other_const(mul2, m) if mul2 is not None else None
                    if c3 is None or not all(_close_to(_const_value(model, graph, c), -1.0, graph, c) for c in (c1, c2, c3)):
                        pass
                    elif len(readers(x)) == 1 and x not in outputs:
                        p = producer(x)
                        opts = getattr(p, "builtinOptions", None) if p is not None else None
                        y = int(mul2.outputs[0])
                        if p is not None and kind(p) == B.RELU:  # a RELU op: clamp its input instead
                            start, drop = int(p.inputs[0]), [p, op, mx, mul2]
                        elif opts is not None and getattr(opts, "fusedActivationFunction", None) == A.RELU:
                            start, drop = x, [op, mx, mul2]
                        else:
                            start = None
                        if start is not None and len([r for r in readers(start) if all(r is not d for d in drop)]) == 0 \
                                and start not in outputs:
                            q = producer(start)
                            qopts = getattr(q, "builtinOptions", None) if q is not None else None
                            if q is not None and kind(q) in _REQUANTIZING and \
                                    getattr(qopts, "fusedActivationFunction", None) in (A.NONE, A.RELU):
                                # RELU_0_TO_1 clamps at 0 too, and the producer now writes in y's
                                # quantization (one rounding instead of four), so RELU_0_TO_1
                                # rescales nothing and Vela fuses it into the producer
                                qopts.fusedActivationFunction = A.NONE
                                graph.tensors[start].quantization = copy.deepcopy(graph.tensors[y].quantization)
                        if start is not None:
                            at = ops.index(drop[0])
                            new = new_op(opcode(model, B.RELU_0_TO_1), [start], [y], None, schema.BuiltinOptions.NONE)
                            ops = [o for o in ops if all(o is not d for d in drop)]
                            ops.insert(min(at, len(ops)), new)
                            done["RELU_0_TO_1 (from RELU + MUL/MAXIMUM/MUL)"] += 1
                            changed = True
                            continue
                # PRELU(x, a): RELU(x) and MUL(x, -1) → RELU → MUL(a) → SUB(pos, .)
                if "PRELU" in want and kind(op) == B.SUB:
                    pos, scaled = (int(i) for i in op.inputs[:2])
                    relu_pos, mul_a = producer(pos), producer(scaled)
                    if relu_pos is None or mul_a is None or kind(relu_pos) != B.RELU or kind(mul_a) != B.MUL:
                        continue
                    x = int(relu_pos.inputs[0])
                    rneg = int(mul_a.inputs[0])
                    relu_neg = producer(rneg)
                    alpha = other_const(mul_a, rneg)
                    neg_mul = producer(int(relu_neg.inputs[0])) if relu_neg is not None and kind(relu_neg) == B.RELU else None
                    if alpha is None or neg_mul is None or kind(neg_mul) != B.MUL or x not in [int(i) for i in neg_mul.inputs]:
                        continue
                    c = other_const(neg_mul, x)
                    if c is None or not _close_to(_const_value(model, graph, c), -1.0, graph, c):
                        continue
                    inner = [pos, scaled, rneg, int(neg_mul.outputs[0])]
                    if any(len(readers(t)) != 1 or t in outputs for t in inner):
                        continue
                    drop = [relu_pos, neg_mul, relu_neg, mul_a, op]
                    at = min(ops.index(d) for d in drop)
                    new = new_op(opcode(model, B.PRELU), [x, alpha], [int(op.outputs[0])], None, schema.BuiltinOptions.NONE)
                    ops = [o for o in ops if all(o is not d for d in drop)]
                    ops.insert(at, new)
                    done["PRELU (from RELU/MUL/RELU/MUL/SUB)"] += 1
                    changed = True
        graph.operators = ops
    if not done:
        return []
    for code in (B.MUL, B.MAXIMUM, B.SUB, B.RELU):
        drop_unused_code(model, code)
    with atomic_path(path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return [f"{what} x{n}" for what, n in done.items()]


def native_stage(conv: Any, jobs: list[Any]) -> list[Any]:
    """After export (``edgekit convert --precision int8 --target NAME``): fold the quantizer's
    spellings back into the ops the target's TFLite table runs (:func:`restore_native`), on each
    int8 TFLite file, before verification; recorded in the artifact's passes."""
    o = conv.options
    if o.precision != "int8" or not o.target or not getattr(o, "rewrites", True):
        return jobs
    from edgekit.converters.exporters.stage import artifact_size
    from edgekit.targets import load_target

    rules = load_target(o.target).ops.get("tflite")
    if rules is None:
        return jobs
    native = [op for op in NATIVE_OPS if rules.status(op)[0] in ("allowed", "constrained")]
    for job in jobs:
        if job.format != "tflite" or not job.alive or job.result is None:
            continue
        done = restore_native(Path(job.result.path), native)
        if done:
            job.result.passes.append(f"{PASS_NAME}: {', '.join(done)} (ops {o.target} runs natively)")
            if job.status is not None:
                job.status.size_bytes = artifact_size(Path(job.result.path))
        elif native:
            conv.not_applied.setdefault(PASS_NAME, f"no quantizer spelling of {', '.join(native)} in the int8 file")
    return jobs
