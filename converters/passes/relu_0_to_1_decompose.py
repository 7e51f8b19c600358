"""relu_0_to_1_decompose: float32 ``RELU_0_TO_1`` becomes a fused RELU and ``MINIMUM`` (TFLite stage). Exact.

litert-torch exports ``clamp(x, 0, 1)`` / ``Hardtanh(0, 1)`` (QuickSRNet's and SESR's clipped
activations, an SR net's output clip) as ``RELU_0_TO_1``, a recent builtin that the GPU
delegate, NNAPI, the Edge TPU and Vela do not have, and that ai-edge-quantizer does not quantize
(an int8 model keeps it in float between DEQUANTIZE/QUANTIZE). Every one of them has RELU and
MINIMUM, and a convolution's fused RELU is free::

    before:  x = CONV_2D(…; fused NONE) → RELU_0_TO_1 → y
    after:   x = CONV_2D(…; fused RELU) → MINIMUM(x, 1.0) → y         (same op count)

    before:  x → RELU_0_TO_1 → y          (x from an op without a fused activation slot, an input,
    after:   x → RELU → t → MINIMUM(t, 1.0) → y          or a tensor something else also reads)

Exact: ``clamp(x, 0, 1) = min(max(x, 0), 1)`` for every float, both forms only compare and
select. The producer takes the RELU only when ``RELU_0_TO_1`` is the sole reader of its output
and the output is not a model output (otherwise others would see the clipped value). Quantized
``RELU_0_TO_1`` is left alone.

Example (``.tflite`` in, same path out, rewritten atomically)::

    >>> path = rewrite(Path("quicksrnet.tflite"))       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit._fs import atomic_path
from edgekit.converters.passes._tflite import Graph, drop_unused_code, float_op_check, float_ops, new_op, opcode

__all__ = ["check", "rewrite"]

_TAG = "relu_0_to_1_decompose"


def check(path: Path) -> str | None:
    from ai_edge_litert import schema_py_generated as schema

    return float_op_check(path, schema.BuiltinOperator.RELU_0_TO_1, "RELU_0_TO_1")


def _fusable_producer(graph: Any, x: int) -> Any | None:
    """The op making ``x`` when it has a free fused-activation slot, ``x`` has one reader and
    is not a model output."""
    from ai_edge_litert import schema_py_generated as schema

    if x in (graph.outputs or []):
        return None
    readers = sum(list(op.inputs).count(x) for op in graph.operators)
    producer = next((op for op in graph.operators if x in list(op.outputs)), None)
    opts = getattr(producer, "builtinOptions", None)
    if readers != 1 or opts is None or getattr(opts, "fusedActivationFunction", None) != schema.ActivationFunctionType.NONE:
        return None
    return producer


def rewrite(path: Path) -> Path:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    model = flatbuffer_utils.read_model(str(path))
    found, _ = float_ops(model, schema.BuiltinOperator.RELU_0_TO_1)
    if not found:
        return path
    targets = {id(op) for _, op in found}
    minimum, relu = opcode(model, schema.BuiltinOperator.MINIMUM), None
    for gi in sorted({gi for gi, _ in found}):
        g = Graph(model, model.subgraphs[gi])
        one = g.scalar(f"{_TAG}/one", 1.0)
        ops: list[Any] = []
        for op in g.graph.operators:
            if id(op) not in targets:
                ops.append(op)
                continue
            x, y = int(op.inputs[0]), int(op.outputs[0])
            producer = _fusable_producer(g.graph, x)
            if producer is not None:
                producer.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU
            else:
                relu = opcode(model, schema.BuiltinOperator.RELU) if relu is None else relu
                stem = (g.graph.tensors[y].name or f"tensor{y}".encode()).decode(errors="replace")
                t = g.tensor(f"{stem}/{_TAG}/relu", g.graph.tensors[y])
                ops.append(new_op(relu, [x], [t], None, schema.BuiltinOptions.NONE))
                x = t
            ops.append(new_op(minimum, [x, one], [y], schema.MaximumMinimumOptionsT(),
                              schema.BuiltinOptions.MaximumMinimumOptions))
        g.graph.operators = ops
    drop_unused_code(model, schema.BuiltinOperator.RELU_0_TO_1)
    with atomic_path(path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return path
