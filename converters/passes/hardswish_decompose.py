"""hardswish_decompose: float32 ``HARD_SWISH`` becomes ADD/RELU6, MUL, MUL (TFLite stage).

The Edge TPU's op table has no ``HARD_SWISH`` (Coral ships only the "minimalistic" MobileNetV3
variants without it) but has ADD (with a fused RELU6) and MUL. Writing ``x * relu6(x + 3) / 6``
in the PyTorch model does not help: the LiteRT converter fuses that pattern back into one
``HARD_SWISH`` (checked with litert-torch 0.10). So this pass edits the written ``.tflite``::

    before:  x → HARD_SWISH → y

    after:   x → ADD(x, 3.0; fused RELU6) → t             t = relu6(x + 3)
             t → MUL(t, fl(1/6)) → h                       h = hardsigmoid(x) ∈ [0, 1]
             x, h → MUL → y                                y = x · h

This is the form the LiteRT converter itself emits for a hardsigmoid (the MobileNetV3 SE gate),
and it keeps the saturated branches exact: ``t = 0`` gives ``y = ±0`` for x ≤ −3, and
``6 · fl(1/6)`` rounds to exactly 1, so ``y = x`` for x ≥ 3. DIV is avoided (it is not in the
Edge TPU's op table): ``/ 6`` is a MUL by the float32 ``fl(1/6) = 0.16666667163…``.

``y`` keeps its tensor (index, name, shape), so signatures and consumers are unchanged; the three
ops take the place of ``HARD_SWISH`` in the operator list (still topological). The two scalar
constants (``hardswish_decompose/three``, ``…/one_sixth``) are shared by the rewritten ops of a
subgraph; the intermediates are named after ``y`` (``<y>/hardswish_decompose/relu6_x_plus_3``,
``…/hardsigmoid``). Existing ADD and MUL operator codes are reused (else added at version 1, the
float kernels); the ``HARD_SWISH`` code is dropped once no op uses it.

Error bound (float32 rounding only): three roundings (≤ 2⁻²⁴ each, relative) and fl(1/6)'s
relative error 3.0e-8 give ``|y − x·relu6(x+3)/6| ≤ 3.5·2⁻²⁴·|y|`` (2.1e-7 relative, at most a
few ulp), and no error at all for |x| ≥ 3. Measured with ai_edge_litert (XNNPACK) on every float32
x with 10⁻⁶ ≤ |x| < 10 (3.9·10⁸ values): max relative error 1.78e-7 (2.5 ulp; max absolute
3.6e-7) against the exact value in float64. The original file's ``HARD_SWISH`` kernel is not
exact either (its errors are those of ``x · clamp(x·fl(1/6) + ½, 0, 1)``, the form XNNPACK
evaluates: off by up to 2.4e-7 absolute near
x = −3, where its relative error is unbounded; provably within 2.75·2⁻²⁴·|x|): rewritten and
original outputs differ by at most 2.4e-7 absolute and 2·2⁻²⁴·|x| over the same values (the
tests allow the sum of the two bounds, 6.25·2⁻²⁴·|x|).

Quantized (int8/uint8/int16) ``HARD_SWISH`` is left alone: its kernel has its own fixed-point
arithmetic, which the quantizer chose; :func:`check` says so when only those are present.

Example (``.tflite`` in, same path out, rewritten atomically)::

    >>> path = rewrite(Path("mobilenet_v3.tflite"))       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.converters.passes._tflite import Graph, drop_unused_code, float_op_check, float_ops, new_op, opcode

from edgekit._fs import atomic_path

__all__ = ["check", "rewrite"]

_TAG = "hardswish_decompose"


def _hardswish(model: Any) -> list[tuple[int, Any]]:
    from ai_edge_litert import schema_py_generated as schema

    return float_ops(model, schema.BuiltinOperator.HARD_SWISH)[0]


def check(path: Path) -> str | None:
    from ai_edge_litert import schema_py_generated as schema

    return float_op_check(path, schema.BuiltinOperator.HARD_SWISH, "HARD_SWISH")


def _decomposed(g: Graph, op: Any, add: int, mul: int) -> list[Any]:
    """The three ops that replace one float32 HARD_SWISH ``op``."""
    from ai_edge_litert import schema_py_generated as schema

    x, y = int(op.inputs[0]), int(op.outputs[0])
    y_tensor = g.graph.tensors[y]
    stem = (y_tensor.name or f"tensor{y}".encode()).decode(errors="replace") + f"/{_TAG}/"
    t = g.tensor(stem + "relu6_x_plus_3", y_tensor)
    h = g.tensor(stem + "hardsigmoid", y_tensor)
    three, sixth = g.scalar(f"{_TAG}/three", 3.0), g.scalar(f"{_TAG}/one_sixth", 1.0 / 6.0)
    relu6 = schema.AddOptionsT()
    relu6.fusedActivationFunction = schema.ActivationFunctionType.RELU6
    return [
        new_op(add, [x, three], [t], relu6, schema.BuiltinOptions.AddOptions),
        new_op(mul, [t, sixth], [h], schema.MulOptionsT(), schema.BuiltinOptions.MulOptions),
        new_op(mul, [x, h], [y], schema.MulOptionsT(), schema.BuiltinOptions.MulOptions),
    ]


def rewrite(path: Path) -> Path:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    model = flatbuffer_utils.read_model(str(path))
    found = _hardswish(model)
    if not found:
        return path
    targets = {id(op) for _, op in found}
    add, mul = opcode(model, schema.BuiltinOperator.ADD), opcode(model, schema.BuiltinOperator.MUL)
    for gi in sorted({gi for gi, _ in found}):
        g = Graph(model, model.subgraphs[gi])
        ops: list[Any] = []
        for op in g.graph.operators:
            ops.extend(_decomposed(g, op, add, mul) if id(op) in targets else [op])
        g.graph.operators = ops
    drop_unused_code(model, schema.BuiltinOperator.HARD_SWISH)
    with atomic_path(path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return path
