"""Validate, summarise and read ONNX (protobuf) and ORT-format (flatbuffer) models without ``onnx``.

ONNX: a small protobuf wire-format walker reads ``ModelProto`` → ``GraphProto`` (nodes,
inputs, outputs, value_info, initializers, subgraphs of If/Loop/Scan) and checks what a
runtime would trust: well-formed varints and lengths, every length inside the file, a graph
with outputs, every node input produced somewhere in scope, initializer data of the size its
dims need, and external-data files that exist beside the model and are long enough. Field
numbers are those of ``onnx/onnx.proto``.

The same walker reads the main graph op by op for ``edgekit lint`` (:func:`read_onnx_graph`:
nodes with their attributes, declared tensor types, initializers with small values), writes a
slim copy for readers that parse the whole message (:func:`slim_onnx`), and a copy that asks a
runtime for the type of every tensor without loading a weight (:func:`shape_probe`).

ORT format: the ``ORTM`` flatbuffer identifier, then ``InferenceSession.model.graph`` read
with bounds checks for its inputs, outputs and node types (``onnxruntime/core/flatbuffers/
schema/ort.fbs``).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgekit.runtimes._flatbuffer import Malformed, Table, file_identifier, root_table
from edgekit.runtimes.base import TensorSpec

__all__ = ["read_onnx", "read_ort", "slim_onnx", "read_onnx_graph", "shape_probe", "RANK_PROBE", "ONNX_DTYPES",
           "OnnxGraph", "OnnxNode", "OnnxTensor", "OnnxValue"]

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


# -- the main graph op by op (edgekit lint) ------------------------------------------------------

@dataclass
class OnnxValue:
    """A ``ValueInfoProto``: ``shape`` is None when the type records no shape (rank unknown);
    its dims are ints, ``dim_param`` names, or None. A value that is not a tensor has dtype
    ``onnx_type_0`` and no shape."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None


@dataclass
class OnnxTensor:
    """An initializer or a tensor attribute: ``value`` holds the values (nested lists, or a
    scalar) of a tensor of at most ``keep_elements`` elements stored in the file, else None."""

    name: str
    dims: tuple[int, ...]
    dtype: str
    external: bool = False
    value: Any = None


@dataclass
class OnnxNode:
    """A ``NodeProto``. ``attrs`` maps names to ints, floats, strings, lists of them, an
    :class:`OnnxTensor` (tensor attributes), or None (graphs, type protos, sparse tensors)."""

    name: str
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OnnxGraph:
    """The main graph of a model (subgraphs of If/Loop/Scan are not unfolded)."""

    nodes: list[OnnxNode]
    initializers: list[OnnxTensor]
    inputs: list[OnnxValue]
    outputs: list[OnnxValue]
    value_info: list[OnnxValue]


# TensorProto data types -> NumPy dtype strings for reading small values.
_NP = {"float32": "<f4", "uint8": "u1", "int8": "i1", "uint16": "<u2", "int16": "<i2", "int32": "<i4",
       "int64": "<i8", "bool": "?", "float16": "<f2", "float64": "<f8", "uint32": "<u4", "uint64": "<u8"}
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR, _ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS = 1, 2, 3, 4, 6, 7, 8
# AttributeProto field number -> the AttributeType it implies when ``type`` is absent.
_ATTR_FIELD_TYPE = {2: _ATTR_FLOAT, 3: _ATTR_INT, 4: _ATTR_STRING, 5: _ATTR_TENSOR, 6: 5, 7: _ATTR_FLOATS,
                    8: _ATTR_INTS, 9: _ATTR_STRINGS, 10: 9, 11: 10, 14: 13, 15: 14, 22: 11, 23: 12}


def read_onnx_graph(data: Any, keep_elements: int = 64) -> OnnxGraph:
    """The main graph of the ONNX model ``data`` (bytes or an ``mmap``), node by node, as
    ``edgekit lint`` reads it. Call it on a file :func:`read_onnx` has validated: it assumes
    a well-formed protobuf (and raises :class:`Malformed` where it is not)."""
    graph_span = None
    for f, wt, v in _fields(data, 0, len(data), "ModelProto"):
        if f == 7:
            graph_span = _sub(v, "graph")
    if graph_span is None:
        raise Malformed("not an ONNX model (no graph)")
    nodes: list[OnnxNode] = []
    inits: list[OnnxTensor] = []
    ins: list[OnnxValue] = []
    outs: list[OnnxValue] = []
    infos: list[OnnxValue] = []
    for f, wt, v in _fields(data, *graph_span, "GraphProto"):
        if f == 1:
            nodes.append(_node(data, _sub(v, "node"), keep_elements))
        elif f == 5:
            inits.append(_tensor(data, _sub(v, "initializer"), keep_elements))
        elif f in (11, 12, 13):
            (ins, outs, infos)[f - 11].append(_value(data, _sub(v, "value_info")))
    return OnnxGraph(nodes, inits, ins, outs, infos)


def _node(data: Any, span: tuple[int, int], keep: int) -> OnnxNode:
    node = OnnxNode("", "", "", [], [])
    for f, wt, v in _fields(data, *span, "NodeProto"):
        if f == 1:
            node.inputs.append(_str(data, v, "node input"))
        elif f == 2:
            node.outputs.append(_str(data, v, "node output"))
        elif f == 3:
            node.name = _str(data, v, "node name")
        elif f == 4:
            node.op_type = _str(data, v, "op_type")
        elif f == 7:
            node.domain = _str(data, v, "domain")
        elif f == 5:
            name, value = _attribute(data, _sub(v, "attribute"), keep)
            node.attrs[name] = value
    return node


def _attribute(data: Any, span: tuple[int, int], keep: int) -> tuple[str, Any]:
    name, kind = "", 0
    seen: dict[int, list[tuple[int, Any]]] = {}
    for f, wt, v in _fields(data, *span, "AttributeProto"):
        if f == 1:
            name = _str(data, v, "attribute name")
        elif f == 20 and wt == _VARINT:
            kind = v
        else:
            seen.setdefault(f, []).append((wt, v))
    if not kind:
        kind = next((_ATTR_FIELD_TYPE[f] for f in seen if f in _ATTR_FIELD_TYPE), 0)

    def last(f: int) -> tuple[int, Any] | None:
        return seen[f][-1] if f in seen else None

    if kind == _ATTR_FLOAT:
        x = last(2)
        return name, _float32(x[1]) if x and x[0] == _I32 else 0.0
    if kind == _ATTR_INT:
        x = last(3)
        return name, _signed(x[1]) if x and x[0] == _VARINT else 0
    if kind == _ATTR_STRING:
        x = last(4)
        return name, bytes(data[x[1][0]:x[1][1]]).decode("utf-8", "replace") if x and x[0] == _LEN else ""
    if kind == _ATTR_TENSOR:
        x = last(5)
        return name, _tensor(data, _sub(x[1], "attribute tensor"), keep) if x else None
    if kind == _ATTR_FLOATS:
        return name, [y for wt, v in seen.get(7, []) for y in _floats(data, wt, v)]
    if kind == _ATTR_INTS:
        return name, [y for wt, v in seen.get(8, []) for y in _ints(data, wt, v, "ints")]
    if kind == _ATTR_STRINGS:
        return name, [bytes(data[v[0]:v[1]]).decode("utf-8", "replace") for wt, v in seen.get(9, []) if wt == _LEN]
    return name, None  # graphs, type protos, sparse tensors, lists of tensors


def _float32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<i", bits))[0]


def _floats(data: Any, wt: int, value: Any) -> list[float]:
    if wt == _I32:
        return [_float32(value)]
    if wt != _LEN:
        raise Malformed("floats: expected 32-bit floats")
    start, end = value
    return list(struct.unpack_from(f"<{(end - start) // 4}f", data, start))


def _tensor(data: Any, span: tuple[int, int], keep: int) -> OnnxTensor:
    name, dims, code, location = "", [], 0, 0
    raw = None
    external = False
    typed: dict[int, list[tuple[int, Any]]] = {}
    for f, wt, v in _fields(data, *span, "TensorProto"):
        if f == 1:
            dims.extend(_ints(data, wt, v, "dims"))
        elif f == 2 and wt == _VARINT:
            code = v
        elif f == 8:
            name = _str(data, v, "tensor name")
        elif f == 9 and wt == _LEN:
            raw = v
        elif f == 13:
            external = True
        elif f == 14 and wt == _VARINT:
            location = v
        elif f in (4, 5, 7, 10, 11):
            typed.setdefault(f, []).append((wt, v))
    dtype = ONNX_DTYPES.get(code, f"onnx_type_{code}")
    t = OnnxTensor(name, tuple(dims), dtype, external=external or location == 1)
    if not t.external and math.prod(dims) <= keep and dtype in _NP:
        try:
            t.value = _tensor_value(data, dtype, t.dims, raw, typed)
        except (ValueError, struct.error):  # an odd tensor: its value is not needed
            t.value = None
    return t


def _tensor_value(data: Any, dtype: str, dims: tuple[int, ...], raw: Any, typed: dict[int, list]) -> Any:
    import numpy as np

    if raw is not None:
        arr = np.frombuffer(bytes(data[raw[0]:raw[1]]), dtype=_NP[dtype])
    elif dtype == "float32":
        arr = np.array([x for wt, v in typed.get(4, []) for x in _floats(data, wt, v)], dtype=np.float32)
    elif dtype == "float64":
        arr = np.array([x for wt, v in typed.get(10, []) for x in _doubles(data, wt, v)], dtype=np.float64)
    elif dtype == "int64":
        arr = np.array([x for wt, v in typed.get(7, []) for x in _ints(data, wt, v, "int64_data")], dtype=np.int64)
    elif dtype in ("uint32", "uint64"):
        arr = np.array([x & ((1 << 64) - 1) for wt, v in typed.get(11, []) for x in _ints(data, wt, v, "uint64_data")],
                       dtype=np.uint64).astype(_NP[dtype])
    else:  # int32_data holds int32, int16, int8, uint16, uint8, bool and float16 (as its bits)
        ints = [x for wt, v in typed.get(5, []) for x in _ints(data, wt, v, "int32_data")]
        if dtype == "float16":
            arr = np.array(ints, dtype=np.int64).astype(np.uint16).view(np.float16)
        else:
            arr = np.array(ints, dtype=np.int64).astype(_NP[dtype])
    return arr.reshape(dims).tolist()


def _doubles(data: Any, wt: int, value: Any) -> list[float]:
    if wt == _I64:
        return [struct.unpack("<d", struct.pack("<q", value))[0]]
    if wt != _LEN:
        raise Malformed("double_data: expected 64-bit floats")
    start, end = value
    return list(struct.unpack_from(f"<{(end - start) // 8}d", data, start))


def _value(data: Any, span: tuple[int, int]) -> OnnxValue:
    name, dtype, shape = "", "onnx_type_0", None
    for f, wt, v in _fields(data, *span, "ValueInfoProto"):
        if f == 1:
            name = _str(data, v, "value name")
        elif f == 2:
            for g, gwt, gv in _fields(data, *_sub(v, "type"), "TypeProto"):
                if g != 1:  # only tensor_type: other kinds have no element type or shape here
                    continue
                elem, dims = 0, None
                for h, hwt, hv in _fields(data, *_sub(gv, "tensor_type"), "TypeProto.Tensor"):
                    if h == 1 and hwt == _VARINT:
                        elem = hv
                    elif h == 2:
                        dims = [_dim(data, _sub(x, "dim")) for k, kwt, x in
                                _fields(data, *_sub(hv, "shape"), "TensorShapeProto") if k == 1]
                dtype, shape = ONNX_DTYPES.get(elem, f"onnx_type_{elem}"), None if dims is None else tuple(dims)
    return OnnxValue(name, dtype, shape)


def _dim(data: Any, span: tuple[int, int]) -> int | str | None:
    for f, wt, v in _fields(data, *span, "Dimension"):
        if f == 1 and wt == _VARINT:
            return _signed(v)
        if f == 2:
            return _str(data, v, "dim_param")
    return None


# -- a copy that asks a runtime for every tensor's type --------------------------------------------
RANK_PROBE = "edgekit.rank_of:"  # the output holding Shape(name) when a runtime is asked for a rank


def shape_probe(data: Any, keep_elements: int = 64, rank_of: tuple[str, ...] = ()) -> bytes:
    """A copy of the ONNX model ``data`` whose graph outputs are every node output of the main
    graph, for a runtime to report the type and shape its shape inference gives each (without
    running the model). Weights never load: an initializer of more than ``keep_elements``
    elements, or with external data, becomes a graph input of its dtype and dims, and so does a
    ``Constant`` node holding such a tensor; doc strings and metadata are dropped. For each name
    in ``rank_of`` a ``Shape`` node adds the output ``RANK_PROBE + name``: its length is the
    rank, which tells a scalar from a tensor of unknown rank (both report shape [])."""
    out = bytearray()
    graph = None
    for f, wt, v in _fields(data, 0, len(data), "ModelProto"):
        if f == 7:
            graph = _sub(v, "graph")
        elif f not in _DROP["model"]:
            out += _raw_field(data, f, wt, v)
    if graph is None:
        raise Malformed("not an ONNX model (no graph)")
    body = bytearray()
    inputs, outputs = set(), set()
    produced: list[str] = []
    fields = list(_fields(data, *graph, "GraphProto"))
    for f, wt, v in fields:
        if f in (11, 12):
            (inputs if f == 11 else outputs).add(_value(data, _sub(v, "value_info")).name)
    for f, wt, v in fields:
        if f == 1:
            node = _node(data, v, keep_elements)
            tensor = node.attrs.get("value") if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
            produced += [o for o in node.outputs if o]
            if isinstance(tensor, OnnxTensor) and len(node.outputs) == 1 and                     (tensor.external or math.prod(tensor.dims) > keep_elements):
                body += _len_field(11, _value_info(node.outputs[0], tensor))
                continue
            body += _len_field(1, _slim(data, *v, "node", 1 << 62, 0))
        elif f == 5:
            t = _tensor(data, v, 0)
            if t.external or math.prod(t.dims) > keep_elements:
                if t.name not in inputs:
                    body += _len_field(11, _value_info(t.name, t))
                    inputs.add(t.name)
                continue
            body += _len_field(5, _slim(data, *v, "tensor", keep_elements, 0))
        elif f not in _DROP["graph"]:
            body += _raw_field(data, f, wt, v)
    for name in produced:
        if name not in outputs and name not in inputs:
            body += _len_field(12, _len_field(1, name.encode()))
            outputs.add(name)
    for name in rank_of:
        probe = RANK_PROBE + name
        body += _len_field(1, _len_field(1, name.encode()) + _len_field(2, probe.encode()) + _len_field(4, b"Shape"))
        body += _len_field(12, _len_field(1, probe.encode()))
    return bytes(out + _len_field(7, bytes(body)))


def _value_info(name: str, t: OnnxTensor) -> bytes:
    code = next((k for k, v in ONNX_DTYPES.items() if v == t.dtype), 0)
    shape = b"".join(_len_field(1, _encode_varint(1 << 3) + _encode_varint(d)) for d in t.dims)
    tensor_type = _encode_varint(1 << 3) + _encode_varint(code) + _len_field(2, shape)
    return _len_field(1, name.encode()) + _len_field(2, _len_field(1, tensor_type))


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def _raw_field(data: Any, number: int, wt: int, value: Any) -> bytes:
    """A field as read by :func:`_fields`, encoded again (unchanged)."""
    if wt == _LEN:
        return _len_field(number, bytes(data[value[0]:value[1]]))
    key = _encode_varint(number << 3 | wt)
    if wt == _VARINT:
        return key + _encode_varint(value & ((1 << 64) - 1))
    return key + (struct.pack("<q", value) if wt == _I64 else struct.pack("<i", value))


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
