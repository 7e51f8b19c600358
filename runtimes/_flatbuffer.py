"""A bounds-checked reader for FlatBuffers tables, for validating untrusted model files.

The generated FlatBuffers accessors (``ai_edge_litert.schema_py_generated`` and ONNX Runtime's
``ort_flatbuffers_py``) trust their buffer: a truncated or corrupt file yields garbage or
negative indices that Python silently wraps. Native loaders trust it too, and crash. This
reader checks every offset, vtable and vector against the buffer before it reads, and raises
:class:`Malformed` naming what was out of range. Field numbers are schema slots (0, 1, 2 ...),
the same order as the fields in the ``.fbs`` file.

Example::

    >>> t = root_table(data, "Model")                        # doctest: +SKIP
    >>> t.scalar(0, "I", 0), len(t.tables(2, "subgraphs"))   # doctest: +SKIP
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["Malformed", "Table", "root_table", "file_identifier"]

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")


class Malformed(ValueError):
    """The buffer breaks the FlatBuffers (or protobuf) format: the message says where."""


def file_identifier(data: Any) -> bytes:
    """The 4-byte identifier a FlatBuffer carries after its root offset (b"" when too short)."""
    return bytes(data[4:8]) if len(data) >= 8 else b""


def root_table(data: Any, what: str) -> "Table":
    """The root table of a FlatBuffer (``data``: bytes, bytearray or mmap)."""
    if len(data) < 8:
        raise Malformed(f"only {len(data)} bytes, too short for a flatbuffer")
    return Table(data, _U32.unpack_from(data, 0)[0], what)


class Table:
    """One table of a FlatBuffer, read with bounds checks. ``what`` names it in errors."""

    __slots__ = ("data", "size", "pos", "vt", "vt_len", "tbl_len", "what")

    def __init__(self, data: Any, pos: int, what: str):
        self.data, self.size, self.what = data, len(data), what
        if not 0 <= pos <= self.size - 4:
            raise Malformed(f"{what}: table offset {pos} outside the file ({self.size} bytes)")
        vt = pos - _I32.unpack_from(data, pos)[0]
        if not 0 <= vt <= self.size - 4:
            raise Malformed(f"{what}: vtable offset {vt} outside the file ({self.size} bytes)")
        vt_len, tbl_len = _U16.unpack_from(data, vt)[0], _U16.unpack_from(data, vt + 2)[0]
        if vt_len < 4 or vt_len % 2 or vt + vt_len > self.size or pos + tbl_len > self.size or tbl_len < 4:
            raise Malformed(f"{what}: corrupt vtable at byte {vt}")
        self.pos, self.vt, self.vt_len, self.tbl_len = pos, vt, vt_len, tbl_len

    # -- field access --------------------------------------------------------------------
    def _field(self, slot: int, width: int) -> int:
        """Absolute position of field ``slot`` (0 when absent), checked to lie inside the table."""
        voff = 4 + 2 * slot
        if voff >= self.vt_len:
            return 0
        off = _U16.unpack_from(self.data, self.vt + voff)[0]
        if off == 0:
            return 0
        if off + width > self.tbl_len:
            raise Malformed(f"{self.what}: field {slot} lies outside its table")
        return self.pos + off

    def has(self, slot: int) -> bool:
        return self._field(slot, 1) != 0

    def scalar(self, slot: int, fmt: str, default: int | float = 0) -> Any:
        """A scalar field; ``fmt`` is a struct code (``"b"``, ``"B"``, ``"i"``, ``"I"``, ``"q"``, ``"Q"``...)."""
        s = struct.Struct("<" + fmt)
        p = self._field(slot, s.size)
        return s.unpack_from(self.data, p)[0] if p else default

    def _target(self, slot: int, what: str) -> int:
        """Follow the uoffset stored in field ``slot``; 0 when the field is absent."""
        p = self._field(slot, 4)
        if not p:
            return 0
        target = p + _U32.unpack_from(self.data, p)[0]
        if target > self.size - 4:
            raise Malformed(f"{self.what}.{what}: offset points outside the file")
        return target

    def _vector(self, slot: int, elem_size: int, what: str) -> tuple[int, int]:
        """(start, length) of a vector field, checked to fit in the file; (0, 0) when absent."""
        v = self._target(slot, what)
        if not v:
            return 0, 0
        n = _U32.unpack_from(self.data, v)[0]
        start = v + 4
        if start + n * elem_size > self.size:
            raise Malformed(f"{self.what}.{what}: vector of {n} elements runs past the end of the file")
        return start, n

    def table(self, slot: int, what: str) -> "Table | None":
        v = self._target(slot, what)
        return Table(self.data, v, f"{self.what}.{what}") if v else None

    def string(self, slot: int, what: str) -> str | None:
        start, n = self._vector(slot, 1, what)
        if not start:
            return None
        return _utf8(self.data[start:start + n], f"{self.what}.{what}")

    def vector(self, slot: int, fmt: str, what: str) -> tuple:
        """A vector of scalars as a tuple (empty when absent)."""
        s = struct.calcsize("<" + fmt)
        start, n = self._vector(slot, s, what)
        return struct.unpack_from(f"<{n}{fmt}", self.data, start) if n else ()

    def span(self, slot: int, what: str) -> tuple[int, int]:
        """(start, length) in bytes of a ``[ubyte]`` field, without copying it."""
        return self._vector(slot, 1, what)

    def tables(self, slot: int, what: str) -> list["Table"]:
        """A vector of tables."""
        start, n = self._vector(slot, 4, what)
        out = []
        for i in range(n):
            p = start + 4 * i
            target = p + _U32.unpack_from(self.data, p)[0]
            out.append(Table(self.data, target, f"{self.what}.{what}[{i}]"))
        return out

    def strings(self, slot: int, what: str) -> list[str]:
        start, n = self._vector(slot, 4, what)
        out = []
        for i in range(n):
            p = start + 4 * i
            s = p + _U32.unpack_from(self.data, p)[0]
            if s > self.size - 4:
                raise Malformed(f"{self.what}.{what}[{i}]: offset points outside the file")
            length = _U32.unpack_from(self.data, s)[0]
            if s + 4 + length > self.size:
                raise Malformed(f"{self.what}.{what}[{i}]: string runs past the end of the file")
            out.append(_utf8(self.data[s + 4:s + 4 + length], f"{self.what}.{what}[{i}]"))
        return out


def _utf8(raw: Any, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"{what}: string is not valid UTF-8") from None
