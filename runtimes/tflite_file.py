"""Validate and summarise a TFLite/LiteRT flatbuffer without the native interpreter.

Checks what the interpreter would otherwise trust: the ``TFL3`` identifier, schema version 3,
every table and vector inside the file, tensor/buffer/opcode indices in range, constant
buffers of the size their tensor needs, and large-model buffers (``offset``/``size``, used
past 2 GB) inside the file. Field slots follow ``tensorflow/compiler/mlir/lite/schema/schema.fbs``
(the same schema ``ai_edge_litert.schema_py_generated`` is generated from); the tests read
the same file with both and compare.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgekit.runtimes._flatbuffer import Malformed, Table, file_identifier, root_table
from edgekit.runtimes.base import TensorSpec

__all__ = ["read_tflite", "TFLITE_DTYPES", "builtin_op_name"]

# TensorType enum -> NumPy dtype name (or a descriptive name where NumPy has none).
TFLITE_DTYPES = (
    "float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64", "int8",
    "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4", "bfloat16",
    "int2", "uint4", "float8_e4m3fn", "float8_e5m2",
)
_ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2,
             "complex64": 8, "int8": 1, "float64": 8, "complex128": 16, "uint64": 8, "uint32": 4, "uint16": 2}

# Slots of schema.fbs tables used here.
_MODEL_VERSION, _MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = 0, 1, 2, 3, 4
_MODEL_METADATA, _MODEL_SIGNATURES, _MODEL_EXT_GROUPS = 6, 7, 8
_OPCODE_DEPRECATED, _OPCODE_CUSTOM, _OPCODE_VERSION, _OPCODE_BUILTIN = 0, 1, 2, 3
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS, _SG_NAME = 0, 1, 2, 3, 4
_T_SHAPE, _T_TYPE, _T_BUFFER, _T_NAME, _T_QUANT, _T_VARIABLE, _T_SPARSITY, _T_SIGNATURE = 0, 1, 2, 3, 4, 5, 6, 7
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS = 0, 1, 2
_BUF_DATA, _BUF_OFFSET, _BUF_SIZE = 0, 1, 2
_Q_SCALE, _Q_ZERO_POINT, _Q_DIM = 2, 3, 6
_SIG_INPUTS, _SIG_OUTPUTS, _SIG_KEY, _SIG_SUBGRAPH = 0, 1, 2, 4
_TMAP_NAME, _TMAP_TENSOR = 0, 1
_META_NAME, _META_BUFFER = 0, 1


@lru_cache(maxsize=1)
def _builtin_names() -> dict[int, str]:
    """BuiltinOperator code -> name, from the schema LiteRT ships (empty when it is absent)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime ships no schema; fall back to numeric names
        return {}
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def builtin_op_name(code: int) -> str:
    return _builtin_names().get(code, f"BUILTIN_{code}")


def read_tflite(path: Path, data: Any) -> dict[str, Any]:
    """Fields of :class:`~edgekit.runtimes.modelfile.ModelInfo` for the TFLite file ``data``."""
    ident = file_identifier(data)
    if ident != b"TFL3":
        raise Malformed(f"not a TFLite flatbuffer (file identifier {ident!r}, expected b'TFL3')")
    model = root_table(data, "Model")
    version = model.scalar(_MODEL_VERSION, "I", 0)
    if version != 3:
        raise Malformed(f"TFLite schema version {version}, LiteRT reads version 3")
    size = len(data)

    ops: list[str] = []
    custom_ops: list[str] = []
    for i, oc in enumerate(model.tables(_MODEL_OPCODES, "operator_codes")):
        # builtin_code superseded the int8 deprecated_builtin_code; readers take the larger.
        code = max(oc.scalar(_OPCODE_DEPRECATED, "b", 0), oc.scalar(_OPCODE_BUILTIN, "i", 0))
        if code == 32:  # CUSTOM
            name = oc.string(_OPCODE_CUSTOM, "custom_code") or "CUSTOM"
            custom_ops.append(name)
        else:
            name = builtin_op_name(code)
        ops.append(name)

    buffer_sizes: list[int] = []
    for i, b in enumerate(model.tables(_MODEL_BUFFERS, "buffers")):
        start, n = b.span(_BUF_DATA, "data")
        offset, length = b.scalar(_BUF_OFFSET, "Q", 0), b.scalar(_BUF_SIZE, "Q", 0)
        if offset > 1:  # data stored after the flatbuffer (models over 2 GB)
            if offset + length > size:
                raise Malformed(f"buffer {i}: {length} bytes at offset {offset} run past the end of the file ({size} bytes)")
            n = length
        buffer_sizes.append(n)

    subgraphs = model.tables(_MODEL_SUBGRAPHS, "subgraphs")
    if not subgraphs:
        raise Malformed("the model has no subgraphs")
    histogram: dict[str, int] = {}
    ranks: dict[int, int] = {}
    dtypes: dict[str, int] = {}
    sg_tensors: list[list[Table]] = []
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    quant: dict[str, dict[str, Any]] = {}
    for s, sg in enumerate(subgraphs):
        where = f"subgraph {s}"
        tensors = sg.tables(_SG_TENSORS, "tensors")
        sg_tensors.append(tensors)
        nt = len(tensors)
        specs = []
        for t_i, t in enumerate(tensors):
            spec = _tensor_spec(t, t_i)
            specs.append(spec)
            ranks[spec.rank] = ranks.get(spec.rank, 0) + 1
            dtypes[spec.dtype] = dtypes.get(spec.dtype, 0) + 1
            b = t.scalar(_T_BUFFER, "I", 0)
            if b >= max(len(buffer_sizes), 1):
                raise Malformed(f"{where}: tensor '{spec.name}' refers to buffer {b}, the model has {len(buffer_sizes)}")
            nbytes = buffer_sizes[b] if b < len(buffer_sizes) else 0
            item = _ITEMSIZE.get(spec.dtype)
            if nbytes and item and not t.has(_T_SPARSITY) and spec.is_static:
                need = math.prod(spec.shape) * item
                if need != nbytes:
                    raise Malformed(f"{where}: constant tensor '{spec.name}' {list(spec.shape)} {spec.dtype} needs "
                                    f"{need} bytes, its buffer {b} holds {nbytes}")
        io = []
        for what, slot in (("inputs", _SG_INPUTS), ("outputs", _SG_OUTPUTS)):
            idx = sg.vector(slot, "i", what)
            bad = [i for i in idx if not 0 <= i < nt]
            if bad:
                raise Malformed(f"{where}: {what} refer to tensor {bad[0]}, the subgraph has {nt}")
            io.append(idx)
        for o_i, op in enumerate(sg.tables(_SG_OPERATORS, "operators")):
            code = op.scalar(_OP_OPCODE, "I", 0)
            if code >= len(ops):
                raise Malformed(f"{where}: operator {o_i} uses opcode {code}, the model defines {len(ops)}")
            for what, slot in (("inputs", _OP_INPUTS), ("outputs", _OP_OUTPUTS)):
                for i in op.vector(slot, "i", what):
                    if i != -1 and not 0 <= i < nt:
                        raise Malformed(f"{where}: operator {o_i} ({ops[code]}) {what} refer to tensor {i}, "
                                        f"the subgraph has {nt}")
            histogram[ops[code]] = histogram.get(ops[code], 0) + 1
        if s == 0:  # the primary subgraph is what an interpreter runs
            inputs = [specs[i] for i in io[0]]
            outputs = [specs[i] for i in io[1]]
            for i in (*io[0], *io[1]):
                q = tensors[i].table(_T_QUANT, "quantization")
                if q is not None and q.vector(_Q_SCALE, "f", "scale"):
                    quant[specs[i].name] = {"scale": list(q.vector(_Q_SCALE, "f", "scale")),
                                            "zero_point": list(q.vector(_Q_ZERO_POINT, "q", "zero_point")),
                                            "quantized_dimension": q.scalar(_Q_DIM, "i", 0)}

    signatures: dict[str, Any] = {}
    for k, sig in enumerate(model.tables(_MODEL_SIGNATURES, "signature_defs")):
        sgi = sig.scalar(_SIG_SUBGRAPH, "I", 0)
        if sgi >= len(subgraphs):
            raise Malformed(f"signature {k} refers to subgraph {sgi}, the model has {len(subgraphs)}")
        entry: dict[str, Any] = {"subgraph": sgi}
        for what, slot in (("inputs", _SIG_INPUTS), ("outputs", _SIG_OUTPUTS)):
            names = {}
            for tm in sig.tables(slot, what):
                ti = tm.scalar(_TMAP_TENSOR, "I", 0)
                if ti >= len(sg_tensors[sgi]):
                    raise Malformed(f"signature {k} {what} refer to tensor {ti}, subgraph {sgi} has {len(sg_tensors[sgi])}")
                names[tm.string(_TMAP_NAME, "name") or ""] = sg_tensors[sgi][ti].string(_T_NAME, "name") or f"tensor_{ti}"
            entry[what] = names
        signatures[sig.string(_SIG_KEY, "signature_key") or f"signature_{k}"] = entry

    metadata = []
    for m in model.tables(_MODEL_METADATA, "metadata"):
        if m.scalar(_META_BUFFER, "I", 0) >= max(len(buffer_sizes), 1):
            raise Malformed("metadata refers to a buffer the model does not have")
        metadata.append(m.string(_META_NAME, "name") or "")

    extra: dict[str, Any] = {
        "schema_version": version,
        "description": model.string(_MODEL_DESCRIPTION, "description"),
        "subgraphs": len(subgraphs),
        "signatures": signatures,
        "metadata": metadata,
    }
    if custom_ops:
        extra["custom_ops"] = sorted(set(custom_ops))
    if quant:
        extra["quantization"] = quant
    groups = [g.string(0, "name") for g in model.tables(_MODEL_EXT_GROUPS, "external_buffer_groups")]
    if groups:
        extra["external_buffer_groups"] = groups
    return {
        "inputs": inputs,
        "outputs": outputs,
        "op_histogram": histogram,
        "tensor_ranks": dict(sorted(ranks.items())),
        "tensor_dtypes": dtypes,
        "external_files": [],
        "extra": extra,
    }


def _tensor_spec(t: Table, index: int) -> TensorSpec:
    name = t.string(_T_NAME, "name") or f"tensor_{index}"
    shape = t.vector(_T_SHAPE, "i", "shape")
    signature = t.vector(_T_SIGNATURE, "i", "shape_signature")
    dims = signature if len(signature) == len(shape) and signature else shape
    code = t.scalar(_T_TYPE, "b", 0)
    dtype = TFLITE_DTYPES[code] if 0 <= code < len(TFLITE_DTYPES) else f"tflite_type_{code}"
    return TensorSpec(name, tuple(None if d < 0 else int(d) for d in dims), dtype)
