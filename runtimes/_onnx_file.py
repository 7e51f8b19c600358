"""Validate and summarise ONNX (protobuf) and ORT-format (flatbuffer) models without ``onnx``.

ONNX: a small protobuf wire-format walker reads ``ModelProto`` → ``GraphProto`` (nodes,
inputs, outputs, value_info, initializers, subgraphs of If/Loop/Scan) and checks what a
runtime would trust: well-formed varints and lengths, every length inside the file, a graph
with outputs, every node input produced somewhere in scope, initializer data of the size its
dims need, and external-data files that exist beside the model and are long enough. Field
numbers are those of ``onnx/onnx.proto``.

ORT format: the ``ORTM`` flatbuffer identifier, then ``InferenceSession.model.graph`` read
with bounds checks for its inputs, outputs and node types (``onnxruntime/core/flatbuffers/
schema/ort.fbs``).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any, Iterator

from edgekit.runtimes._flatbuffer import Malformed, Table, file_identifier, root_table
from edgekit.runtimes.base import TensorSpec

__all__ = ["read_onnx", "read_ort", "slim_onnx", "ONNX_DTYPES"]

# TensorProto.DataType -> NumPy dtype name (or a descriptive name where NumPy has none).
ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
    16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz",
    21: "uint4", 22: "int4", 23: "float4e2m1", 24: "float8e8m0", 25: "uint2", 26: "int2",
}
_ITEMSIZE = {"float32": 4, "uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "int32": 4, "int64": 8, "bool": 1,
             "float16": 2, "float64": 8, "uint32": 4, "uint64": 8, "complex64": 8, "complex128": 16, "bfloat16": 2}
_MAX_DEPTH = 32  # nested subgraphs (If inside Loop inside ...)

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


# -- protobuf wire format ----------------------------------------------------------------------
def _varint(data: Any, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise Malformed(f"truncated varint at byte {pos}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise Malformed(f"varint longer than 10 bytes at byte {pos}")


def _fields(data: Any, start: int, end: int, what: str) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field, wire_type, value)``; value is an int, or ``(start, end)`` for length-delimited."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise Malformed(f"{what}: field number 0 at byte {pos} (not protobuf)")
        if wt == _VARINT:
            value, pos = _varint(data, pos, end)
        elif wt == _LEN:
            n, pos = _varint(data, pos, end)
            if pos + n > end:
                raise Malformed(f"{what}: field {field} of {n} bytes runs past the end (truncated file?)")
            value, pos = (pos, pos + n), pos + n
        elif wt == _I64:
            if pos + 8 > end:
                raise Malformed(f"{what}: truncated 64-bit field {field}")
            value, pos = struct.unpack_from("<q", data, pos)[0], pos + 8
        elif wt == _I32:
            if pos + 4 > end:
                raise Malformed(f"{what}: truncated 32-bit field {field}")
            value, pos = struct.unpack_from("<i", data, pos)[0], pos + 4
        else:
            raise Malformed(f"{what}: wire type {wt} at byte {pos} (not an ONNX protobuf)")
        yield field, wt, value


def _str(data: Any, span: Any, what: str) -> str:
    if not isinstance(span, tuple):
        raise Malformed(f"{what}: expected a string")
    try:
        return bytes(data[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"{what}: string is not valid UTF-8") from None


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(data: Any, wt: int, value: Any, what: str) -> list[int]:
    """A repeated int64 field occurrence, packed or not."""
    if wt == _VARINT:
        return [_signed(value)]
    if wt != _LEN:
        raise Malformed(f"{what}: expected integers")
    out, pos, end = [], value[0], value[1]
    while pos < end:
        v, pos = _varint(data, pos, end)
        out.append(_signed(v))
    return out


def _sub(value: Any, what: str) -> tuple[int, int]:
    if not isinstance(value, tuple):
        raise Malformed(f"{what}: expected a message")
    return value


# -- ONNX messages ------------------------------------------------------------------------------
class _OnnxReader:
    def __init__(self, path: Path, data: Any):
        self.path, self.data = path, data
        self.histogram: dict[str, int] = {}
        self.ranks: dict[int, int] = {}
        self.dtypes: dict[str, int] = {}
        self.external: dict[str, int] = {}  # location -> bytes needed
        self.n_initializers = 0
        self.n_params = 0

    def model(self) -> dict[str, Any]:
        data = self.data
        ir_version = 0
        graph_span = None
        opsets: dict[str, int] = {}
        producer = producer_version = None
        n_functions = 0
        for f, wt, v in _fields(data, 0, len(data), "ModelProto"):
            if f == 1 and wt == _VARINT:
                ir_version = v
            elif f == 2:
                producer = _str(data, v, "producer_name")
            elif f == 3:
                producer_version = _str(data, v, "producer_version")
            elif f == 7:
                graph_span = _sub(v, "graph")
            elif f == 8:
                domain, version = "", 0
                for g, gwt, gv in _fields(data, *_sub(v, "opset_import"), "opset_import"):
                    if g == 1:
                        domain = _str(data, gv, "opset domain")
                    elif g == 2 and gwt == _VARINT:
                        version = gv
                opsets[domain or "ai.onnx"] = version
            elif f == 25:
                n_functions += 1
        if graph_span is None or ir_version <= 0:
            raise Malformed("not an ONNX model (no graph or no ir_version in the protobuf)")
        g = self.graph(graph_span, outer=set(), depth=0, top=True)
        if not g["outputs"]:
            raise Malformed("the ONNX graph declares no outputs")
        extra = {
            "ir_version": ir_version,
            "opset_imports": opsets,
            "producer": " ".join(p for p in (producer, producer_version) if p) or None,
            "graph_name": g["name"],
            "initializers": self.n_initializers,
            "parameters": self.n_params,
        }
        if n_functions:
            extra["functions"] = n_functions
        return {"inputs": g["inputs"], "outputs": g["outputs"], "extra": extra}

    def graph(self, span: tuple[int, int], outer: set[str], depth: int, top: bool = False) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise Malformed(f"subgraphs nested deeper than {_MAX_DEPTH}")
        data = self.data
        name = ""
        nodes: list[tuple[int, int]] = []
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        value_infos: list[TensorSpec] = []
        initializers: set[str] = set()
        for f, wt, v in _fields(data, *span, "GraphProto"):
            if f == 1:
                nodes.append(_sub(v, "node"))
            elif f == 2:
                name = _str(data, v, "graph name")
            elif f == 5:
                initializers.add(self.tensor(_sub(v, "initializer"), "initializer"))
            elif f == 15:
                initializers.add(self.sparse_tensor(_sub(v, "sparse_initializer")))
            elif f == 11:
                inputs.append(self.value_info(_sub(v, "input")))
            elif f == 12:
                outputs.append(self.value_info(_sub(v, "output")))
            elif f == 13:
                value_infos.append(self.value_info(_sub(v, "value_info")))
        for spec in (*inputs, *outputs, *value_infos):
            if spec.dtype != "unknown":
                self.ranks[spec.rank] = self.ranks.get(spec.rank, 0) + 1
                self.dtypes[spec.dtype] = self.dtypes.get(spec.dtype, 0) + 1
        known = set(outer) | initializers | {s.name for s in inputs} | {""}
        produced: list[tuple[str, str]] = []
        for i, node_span in enumerate(nodes):
            node_name, op, node_inputs, node_outputs = self.node(node_span, known, depth, i)
            for x in node_inputs:
                produced.append((x, node_name or f"#{i} ({op})"))
            known.update(node_outputs)
        missing = next(((x, n) for x, n in produced if x not in known), None)
        if missing:
            raise Malformed(f"node {missing[1]} reads tensor '{missing[0]}', which no node, input or initializer provides")
        missing_out = next((s.name for s in outputs if s.name not in known), None)
        if missing_out:
            raise Malformed(f"graph output '{missing_out}' is not produced by any node")
        if top:
            # Graph inputs that are initializers (IR < 4 lists them) are weights, not model inputs.
            inputs = [s for s in inputs if s.name not in initializers]
        return {"name": name, "inputs": inputs, "outputs": outputs}

    def node(self, span: tuple[int, int], scope: set[str], depth: int, index: int) -> tuple[str, str, list[str], list[str]]:
        data = self.data
        name = op = domain = ""
        ins: list[str] = []
        outs: list[str] = []
        attrs: list[tuple[int, int]] = []
        for f, wt, v in _fields(data, *span, "NodeProto"):
            if f == 1:
                ins.append(_str(data, v, "node input"))
            elif f == 2:
                outs.append(_str(data, v, "node output"))
            elif f == 3:
                name = _str(data, v, "node name")
            elif f == 4:
                op = _str(data, v, "op_type")
            elif f == 5:
                attrs.append(_sub(v, "attribute"))
            elif f == 7:
                domain = _str(data, v, "domain")
        if not op:
            raise Malformed(f"node {name or '#' + str(index)} has no op_type")
        key = op if domain in ("", "ai.onnx") else f"{domain}::{op}"
        self.histogram[key] = self.histogram.get(key, 0) + 1
        # Subgraphs (If/Loop/Scan bodies) see every name defined so far in the outer scopes.
        for a in attrs:
            for f, wt, v in _fields(data, *a, "AttributeProto"):
                if f in (6, 11):
                    self.graph(_sub(v, "subgraph"), outer=scope, depth=depth + 1)
                elif f in (5, 10):
                    self.tensor(_sub(v, "attribute tensor"), f"attribute of node {name or op}", count=False)
        return name, op, ins, outs

    def value_info(self, span: tuple[int, int]) -> TensorSpec:
        data = self.data
        name, dtype, shape = "", "unknown", ()
        for f, wt, v in _fields(data, *span, "ValueInfoProto"):
            if f == 1:
                name = _str(data, v, "value name")
            elif f == 2:
                dtype, shape = self.type_proto(_sub(v, "type"))
        return TensorSpec(name, shape, dtype)

    def type_proto(self, span: tuple[int, int]) -> tuple[str, tuple]:
        data = self.data
        for f, wt, v in _fields(data, *span, "TypeProto"):
            if f in (1, 8):  # tensor_type, sparse_tensor_type
                elem, dims = 0, None
                for g, gwt, gv in _fields(data, *_sub(v, "tensor_type"), "TypeProto.Tensor"):
                    if g == 1 and gwt == _VARINT:
                        elem = gv
                    elif g == 2:
                        dims = []
                        for h, hwt, hv in _fields(data, *_sub(gv, "shape"), "TensorShapeProto"):
                            if h == 1:
                                dims.append(self.dim(_sub(hv, "dim")))
                return ONNX_DTYPES.get(elem, f"onnx_type_{elem}"), tuple(dims) if dims is not None else ()
            if f in (4, 5, 9):
                return {4: "sequence", 5: "map", 9: "optional"}[f], ()
        return "unknown", ()

    def dim(self, span: tuple[int, int]) -> int | str | None:
        for f, wt, v in _fields(self.data, *span, "Dimension"):
            if f == 1 and wt == _VARINT:
                return _signed(v)
            if f == 2:
                return _str(self.data, v, "dim_param")
        return None

    def tensor(self, span: tuple[int, int], what: str, count: bool = True) -> str:
        """Check one TensorProto (inline data length, external data); return its name."""
        data = self.data
        name = ""
        dims: list[int] = []
        dtype = 0
        raw = None
        external: dict[str, str] = {}
        location = 0
        for f, wt, v in _fields(data, *span, "TensorProto"):
            if f == 1:
                dims.extend(_ints(data, wt, v, "dims"))
            elif f == 2 and wt == _VARINT:
                dtype = v
            elif f == 8:
                name = _str(data, v, "tensor name")
            elif f == 9:
                if wt != _LEN:
                    raise Malformed(f"{what} '{name}': raw_data has protobuf wire type {wt}, bytes expected "
                                    "(a corrupt or hand-edited file)")
                raw = v[1] - v[0]
            elif f == 13:
                key = value = ""
                for g, gwt, gv in _fields(data, *_sub(v, "external_data"), "StringStringEntryProto"):
                    if g == 1:
                        key = _str(data, gv, "key")
                    elif g == 2:
                        value = _str(data, gv, "value")
                external[key] = value
            elif f == 14 and wt == _VARINT:
                location = v
        if any(d < 0 for d in dims):
            raise Malformed(f"{what} '{name}' has a negative dimension {dims}")
        dname = ONNX_DTYPES.get(dtype, "")
        item = _ITEMSIZE.get(dname)
        need = math.prod(dims) * item if item else None
        if count:
            self.n_initializers += 1
            self.n_params += math.prod(dims)
            self.ranks[len(dims)] = self.ranks.get(len(dims), 0) + 1
            if dname:
                self.dtypes[dname] = self.dtypes.get(dname, 0) + 1
        if location == 1 or external:
            self._external(name, external, need, what)
        elif raw is not None and need is not None and raw != need:
            raise Malformed(f"{what} '{name}' {dims} {dname} needs {need} bytes of raw_data, it holds {raw}")
        return name

    def sparse_tensor(self, span: tuple[int, int]) -> str:
        name = ""
        for f, wt, v in _fields(self.data, *span, "SparseTensorProto"):
            if f in (1, 2):
                n = self.tensor(_sub(v, "sparse tensor part"), "sparse_initializer", count=False)
                if f == 1:
                    name = n
        self.n_initializers += 1
        return name

    def _external(self, name: str, entry: dict[str, str], need: int | None, what: str) -> None:
        location = entry.get("location")
        if not location:
            raise Malformed(f"{what} '{name}' is stored externally but names no location")
        if os.path.isabs(location) or ".." in Path(location).parts:
            raise Malformed(f"{what} '{name}': external data location '{location}' must be a path inside the model's folder")
        try:
            offset = int(entry.get("offset", "0") or 0)
            length = int(entry["length"]) if entry.get("length") else need
        except ValueError:
            raise Malformed(f"{what} '{name}': external data offset/length are not integers") from None
        if need is not None and length is not None and length != need:
            raise Malformed(f"{what} '{name}' needs {need} bytes, its external data entry says {length}")
        end = offset + (length or 0)
        self.external[location] = max(self.external.get(location, 0), end)


# -- a slim copy for readers that parse the whole message (onnx.load, shape inference) -----------
# Per message: fields dropped, and fields that are messages to slim in turn (by their kind).
_DROP = {"model": {6, 14, 20}, "graph": {10}, "node": {6}, "attr": {13}, "tensor": {12}}
_INTO = {"model": {7: "graph"}, "graph": {1: "node", 5: "tensor"}, "node": {5: "attr"},
         "attr": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph"}, "tensor": {}}
_TENSOR_DATA = {4, 5, 6, 7, 9, 10, 11}  # float_data ... uint64_data, raw_data


def slim_onnx(data: Any, keep_elements: int = 4096) -> bytes:
    """The model's bytes without what structure readers never need: doc strings, metadata,
    training info, and the data of tensors larger than ``keep_elements`` (their dims and dtype
    stay, so shape inference still sees every weight's shape). The result parses with
    ``onnx.ModelProto.FromString`` at a size set by the graph, not by the file: a 2 GB doc string
    or 2 GB of weights cost nothing. ``data`` may be an ``mmap``; only the kept bytes are read."""
    return _slim(data, 0, len(data), "model", keep_elements, 0)


def _slim(data: Any, start: int, end: int, kind: str, keep: int, depth: int) -> bytes:
    if depth > _MAX_DEPTH:
        raise Malformed(f"messages nested deeper than {_MAX_DEPTH}")
    drop, into = _DROP[kind], _INTO[kind]
    if kind == "tensor":
        dims = [d for f, wt, v in _fields(data, start, end, "TensorProto") if f == 1 for d in _ints(data, wt, v, "dims")]
        if math.prod(dims) > keep:
            drop = drop | _TENSOR_DATA
    out = bytearray()
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(data, pos, end)
        field, wt = key >> 3, key & 7
        if wt == _VARINT:
            _, pos = _varint(data, pos, end)
        elif wt == _LEN:
            n, body = _varint(data, pos, end)
            if body + n > end:
                raise Malformed(f"field {field} of {n} bytes runs past the end (truncated file?)")
            pos = body + n
            if field in into and field not in drop:
                inner = _slim(data, body, pos, into[field], keep, depth + 1)
                out += _encode_varint(key) + _encode_varint(len(inner)) + inner
                continue
        elif wt == _I64:
            pos += 8
        elif wt == _I32:
            pos += 4
        else:
            raise Malformed(f"wire type {wt} at byte {pos} (not an ONNX protobuf)")
        if pos > end:
            raise Malformed(f"field {field} runs past the end (truncated file?)")
        if field not in drop:
            out += data[field_start:pos]
    return bytes(out)


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_onnx(path: Path, data: Any) -> dict[str, Any]:
    """Fields of :class:`~edgekit.runtimes.modelfile.ModelInfo` for the ONNX file ``data``."""
    reader = _OnnxReader(path, data)
    out = reader.model()
    folder = path.parent
    files = []
    for location, end in reader.external.items():
        f = folder / location
        if not f.is_file():
            raise Malformed(f"external data file '{location}' is missing (expected at {f}); "
                            "copy it next to the model")
        actual = f.stat().st_size
        if actual < end:
            raise Malformed(f"external data file '{location}' has {actual} bytes, the model reads up to byte {end} "
                            "(truncated copy?)")
        files.append(location)
    out.update(
        op_histogram=reader.histogram,
        tensor_ranks=dict(sorted(reader.ranks.items())),
        tensor_dtypes=reader.dtypes,
        external_files=files,
    )
    return out


# -- ORT format ---------------------------------------------------------------------------------
# Slots of ort.fbs tables used here.
_IS_ORT_VERSION, _IS_MODEL = 0, 1
_M_IR, _M_OPSETS, _M_PRODUCER, _M_GRAPH = 0, 1, 2, 7
_G_INITIALIZERS, _G_NODE_ARGS, _G_NODES, _G_INPUTS, _G_OUTPUTS = 0, 1, 2, 5, 6
_N_NAME, _N_DOMAIN, _N_OP_TYPE, _N_INPUTS, _N_OUTPUTS = 0, 2, 5, 8, 9
_VI_NAME, _VI_TYPE = 0, 2
_TI_VALUE_TYPE, _TI_VALUE = 1, 2
_TTS_ELEM, _TTS_SHAPE = 0, 1
_DIM_VALUE = 0
_DV_TYPE, _DV_VALUE, _DV_PARAM = 0, 1, 2
_TENSOR_NAME, _TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_RAW = 0, 2, 3, 4


def read_ort(path: Path, data: Any) -> dict[str, Any]:
    """Fields of :class:`~edgekit.runtimes.modelfile.ModelInfo` for the ORT-format file ``data``."""
    ident = file_identifier(data)
    if ident != b"ORTM":
        raise Malformed(f"not an ORT-format model (file identifier {ident!r}, expected b'ORTM')")
    session = root_table(data, "InferenceSession")
    model = session.table(_IS_MODEL, "model")
    graph = model.table(_M_GRAPH, "graph") if model else None
    if graph is None:
        raise Malformed("ORT-format file without a model graph")
    infos: dict[str, TensorSpec] = {}
    ranks: dict[int, int] = {}
    dtypes: dict[str, int] = {}
    for vi in graph.tables(_G_NODE_ARGS, "node_args"):
        spec = _ort_value_info(vi)
        infos[spec.name] = spec
        if spec.dtype != "unknown":
            ranks[spec.rank] = ranks.get(spec.rank, 0) + 1
            dtypes[spec.dtype] = dtypes.get(spec.dtype, 0) + 1
    histogram: dict[str, int] = {}
    for node in graph.tables(_G_NODES, "nodes"):
        op = node.string(_N_OP_TYPE, "op_type") or "?"
        domain = node.string(_N_DOMAIN, "domain") or ""
        node.string(_N_NAME, "name")  # read to bounds-check them; the summary does not need them
        node.strings(_N_INPUTS, "inputs")
        node.strings(_N_OUTPUTS, "outputs")
        key = op if domain in ("", "ai.onnx") else f"{domain}::{op}"
        histogram[key] = histogram.get(key, 0) + 1
    initializers = set()
    for t in graph.tables(_G_INITIALIZERS, "initializers"):
        name = t.string(_TENSOR_NAME, "name") or ""
        dims = t.vector(_TENSOR_DIMS, "q", "dims")
        _, raw = t.span(_TENSOR_RAW, "raw_data")
        item = _ITEMSIZE.get(ONNX_DTYPES.get(t.scalar(_TENSOR_TYPE, "i", 0), ""))
        if raw and item and min(dims, default=0) >= 0 and math.prod(dims) * item != raw:
            raise Malformed(f"initializer '{name}' {list(dims)} needs {math.prod(dims) * item} bytes, it holds {raw}")
        initializers.add(name)
    session.string(_IS_ORT_VERSION, "ort_version")
    ins = [n for n in graph.strings(_G_INPUTS, "inputs") if n not in initializers]
    outs = graph.strings(_G_OUTPUTS, "outputs")
    opsets = {}
    for o in model.tables(_M_OPSETS, "opset_import"):
        opsets[o.string(0, "domain") or "ai.onnx"] = o.scalar(1, "q", 0)
    return {
        "inputs": [infos.get(n, TensorSpec(n, (), "unknown")) for n in ins],
        "outputs": [infos.get(n, TensorSpec(n, (), "unknown")) for n in outs],
        "op_histogram": histogram,
        "tensor_ranks": dict(sorted(ranks.items())),
        "tensor_dtypes": dtypes,
        "external_files": [],
        "extra": {"ir_version": model.scalar(_M_IR, "q", 0), "opset_imports": opsets,
                  "producer": model.string(_M_PRODUCER, "producer_name"), "initializers": len(initializers)},
    }


def _ort_value_info(vi: Table) -> TensorSpec:
    name = vi.string(_VI_NAME, "name") or ""
    ti = vi.table(_VI_TYPE, "type")
    if ti is None or ti.scalar(_TI_VALUE_TYPE, "B", 0) != 1:  # 1: tensor_type
        return TensorSpec(name, (), "unknown")
    tts = ti.table(_TI_VALUE, "value")
    if tts is None:
        return TensorSpec(name, (), "unknown")
    dtype = ONNX_DTYPES.get(tts.scalar(_TTS_ELEM, "i", 0), "unknown")
    shape_t = tts.table(_TTS_SHAPE, "shape")
    dims: list[int | str | None] = []
    if shape_t is not None:
        for d in shape_t.tables(0, "dim"):
            dv = d.table(_DIM_VALUE, "value")
            if dv is None:
                dims.append(None)
            elif dv.scalar(_DV_TYPE, "b", 0) == 1:
                dims.append(dv.scalar(_DV_VALUE, "q", 0))
            elif dv.scalar(_DV_TYPE, "b", 0) == 2:
                dims.append(dv.string(_DV_PARAM, "dim_param"))
            else:
                dims.append(None)
    return TensorSpec(name, tuple(dims), dtype)
