"""Flatbuffer surgery shared by the TFLite-stage passes (``hardswish_decompose``,
``relu_0_to_1_decompose``): operator codes, new tensors and scalar constants with unique names,
new operators, and dropping operator codes no op uses. Works on the object API of
``ai_edge_litert.schema_py_generated`` (``flatbuffer_utils.read_model``)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Graph", "builtin", "builtin_ops", "drop_unused_code", "float_op_check", "float_ops", "new_op", "opcode"]


def builtin(code: Any) -> int:
    return max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))


def builtin_ops(model: Any, code: int) -> list[tuple[int, Any]]:
    """(subgraph index, operator) of every op with builtin operator ``code``."""
    return [(gi, op) for gi, g in enumerate(model.subgraphs or []) for op in g.operators or []
            if builtin(model.operatorCodes[op.opcodeIndex]) == code]


def float_ops(model: Any, code_id: int) -> tuple[list[tuple[int, Any]], int]:
    """(subgraph index, operator) of every float32 op of builtin ``code_id``, and how many
    quantized ones there are (the decompositions leave those to their fixed-point kernels)."""
    from ai_edge_litert import schema_py_generated as schema

    found, other = [], 0
    for gi, op in builtin_ops(model, code_id):
        if model.subgraphs[gi].tensors[op.inputs[0]].type == schema.TensorType.FLOAT32:
            found.append((gi, op))
        else:
            other += 1
    return found, other


def float_op_check(path: Any, code_id: int, name: str) -> str | None:
    """A TFLite pass's ``check``: None when the file has a float32 ``name`` op, else why not."""
    from ai_edge_litert.tools import flatbuffer_utils

    found, other = float_ops(flatbuffer_utils.read_model(str(path)), code_id)
    if found:
        return None
    if other:
        return f"its {other} {name} op(s) are quantized; only float32 {name} is decomposed"
    return f"the model has no {name}"


def opcode(model: Any, code_id: int) -> int:
    """The index of builtin operator ``code_id``'s operator code, added at version 1 when the model has none."""
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        if builtin(code) == code_id and not code.customCode:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = code_id, min(code_id, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


class Graph:
    """Adds tensors to one subgraph of ``model`` with names unique in that subgraph."""

    def __init__(self, model: Any, graph: Any):
        self.model, self.graph = model, graph
        self.names = {t.name for t in graph.tensors}
        self.scalars: dict[str, int] = {}

    def _name(self, base: str) -> bytes:
        name, k = base.encode(), 1
        while name in self.names:
            name, k = f"{base}_{k}".encode(), k + 1
        self.names.add(name)
        return name

    def tensor(self, name: str, like: Any) -> int:
        """A new float32 activation shaped like the tensor ``like``."""
        from ai_edge_litert import schema_py_generated as schema

        t = schema.TensorT()
        t.name, t.type, t.buffer, t.hasRank = self._name(name), schema.TensorType.FLOAT32, 0, True
        t.shape = None if like.shape is None else list(like.shape)
        t.shapeSignature = None if like.shapeSignature is None else list(like.shapeSignature)
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def scalar(self, name: str, value: float) -> int:
        """A float32 scalar constant (one per name and subgraph) with its own buffer."""
        from ai_edge_litert import schema_py_generated as schema

        if name not in self.scalars:
            buf = schema.BufferT()
            buf.data = np.frombuffer(np.float32(value).tobytes(), dtype=np.uint8).copy()
            self.model.buffers.append(buf)
            t = schema.TensorT()
            t.name, t.type, t.shape, t.hasRank = self._name(name), schema.TensorType.FLOAT32, [], True
            t.buffer = len(self.model.buffers) - 1
            self.graph.tensors.append(t)
            self.scalars[name] = len(self.graph.tensors) - 1
        return self.scalars[name]


def new_op(opcode: int, inputs: list[int], outputs: list[int], options: Any, options_type: int) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptions, op.builtinOptionsType = options, options_type
    return op


def drop_unused_code(model: Any, code_id: int) -> None:
    """Remove builtin operator ``code_id``'s code when no op uses it any more (re-indexing the ops)."""
    used = {int(op.opcodeIndex) for g in model.subgraphs for op in g.operators}
    dead = [i for i, c in enumerate(model.operatorCodes) if builtin(c) == code_id and i not in used]
    if not dead:
        return
    remap = {old: new for new, old in enumerate(i for i in range(len(model.operatorCodes)) if i not in dead)}
    model.operatorCodes = [c for i, c in enumerate(model.operatorCodes) if i not in dead]
    for g in model.subgraphs:
        for op in g.operators:
            op.opcodeIndex = remap[int(op.opcodeIndex)]
