"""The op table the ONNX importer fills: ``OPS``, the ``@op("Name")`` decorator, and the
helpers several converter modules share (axes, pads).

:mod:`.ops`, :mod:`.pool` and :mod:`.resize` each register their converters here when
imported; :func:`edgekit.converters.onnx_import.op_table` imports the three and returns the
full table.
"""

from __future__ import annotations

from typing import Callable

from edgekit.converters.onnx_import.builder import Builder, NodeError, OpFn

__all__ = ["OPS", "op", "axis_of", "onnx_pads", "torch_pad_list", "NOT_READ_OK"]

OPS: dict[str, OpFn] = {}

NOT_READ_OK: dict[str, set[str]] = {
    # Attributes a converter may leave unread because they cannot change an inference result.
    "Dropout": {"seed", "ratio"},  # inference-mode dropout is the identity
    "BatchNormalization": {"momentum"},  # updates running statistics in training only
    "Cast": {"saturate"}, "CastLike": {"saturate"},  # float8 targets only, which the importer refuses
}


class _ReadTracker(dict):
    """A node's attributes that remember which ones the converter read."""

    def __init__(self, attrs: dict):
        super().__init__(attrs)
        self.read: set[str] = set()

    def get(self, key, default=None):  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)


def _is_default(op_type: str, opset: int, name: str, value) -> bool:
    """Whether ``value`` is the ONNX schema's default of attribute ``name`` (exporters write
    defaults out; a converter that does not read one computes that default)."""
    try:
        import onnx.defs
        from onnx import helper

        attr = onnx.defs.get_schema(op_type, opset).attributes.get(name)
        if attr is None or not attr.default_value.name:
            return False
        default = helper.get_attribute_value(attr.default_value)
    except Exception:  # noqa: BLE001 — no schema: not a known default
        return False
    if isinstance(default, bytes):
        default = default.decode()
    if isinstance(value, float) or isinstance(default, float):
        return float(value) == float(default) if isinstance(value, (int, float)) else False
    if isinstance(default, list):
        return list(value) == list(default) if isinstance(value, (list, tuple)) else False
    return value == default


def _guarded(fn: OpFn) -> OpFn:
    """``fn``, refusing a node that carries an attribute ``fn`` never read: an attribute the
    converter does not know (a mode a newer opset added, a legacy flag) must not be ignored
    silently, because ignoring it computes something else."""

    def convert(g: Builder, *inputs):
        attrs = _ReadTracker(getattr(g, "_attrs", {}) or {})
        g._attrs = attrs
        out = fn(g, *inputs)
        op_type = g.node.op_type if g.node is not None else ""
        ok = NOT_READ_OK.get(op_type, set())
        unread = sorted(k for k in attrs if k not in attrs.read and k not in ok
                        and not _is_default(op_type, g.opset, k, dict.__getitem__(attrs, k)))
        if unread:
            k = unread[0]
            raise NodeError(f"attribute {k}={dict.__getitem__(attrs, k)!r} is not implemented by edgekit's importer",
                            hint="export the PyTorch model instead")
        return out

    convert.__wrapped__ = fn  # type: ignore[attr-defined]
    convert.__name__ = getattr(fn, "__name__", "convert")
    return convert


def op(*names: str) -> Callable[[OpFn], OpFn]:
    """Register a converter for the ONNX op types ``names`` (default domain). A node carrying an
    attribute the converter never reads is refused (see :func:`_guarded`)."""

    def deco(fn: OpFn) -> OpFn:
        for n in names:
            if n in OPS:
                raise RuntimeError(f"ONNX op {n} registered twice")
            OPS[n] = _guarded(fn)
        return fn

    return deco


def axis_of(a: int, rank: int, what: str = "axis") -> int:
    """``a`` normalised to ``[0, rank)``; an error naming ``what`` when out of range."""
    if not -rank <= a < max(rank, 1):
        raise NodeError(f"{what} {a} is out of range for a rank-{rank} input")
    return a % rank if rank else 0


def torch_pad_list(begin: list[int], end: list[int]) -> list[int]:
    """ONNX-style per-axis pads (first axis first) as ``F.pad``'s list (last axis first),
    trimmed to the innermost axes that are padded."""
    pairs = list(zip(begin, end))
    while pairs and pairs[0] == (0, 0):
        pairs.pop(0)
    out: list[int] = []
    for b, e in reversed(pairs):
        out += [int(b), int(e)]
    return out


def onnx_pads(g: Builder, in_sp: tuple[int, ...], kernel: list[int], strides: list[int],
              dilations: list[int], dilate_same: bool = True) -> tuple[list[int], list[int]]:
    """Begin/end pads of a conv or pooling node from ``pads`` or ``auto_pad`` (static shapes).

    ``dilate_same=False`` sizes SAME_* padding with the undilated kernel, as ONNX Runtime's
    pooling does (its Conv refuses SAME with dilations)."""
    nd = len(in_sp)
    auto = g.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(g.attr("pads", [0] * (2 * nd)))
        if len(pads) != 2 * nd:
            raise NodeError(f"pads {pads} should have {2 * nd} values")
        return pads[:nd], pads[nd:]
    if auto == "VALID":
        return [0] * nd, [0] * nd
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise NodeError(f"auto_pad={auto!r} is not an ONNX value")
    begin, end = [], []
    for i in range(nd):
        out = -(-in_sp[i] // strides[i])
        eff = (kernel[i] - 1) * dilations[i] + 1 if dilate_same else kernel[i]
        total = max(0, (out - 1) * strides[i] + eff - in_sp[i])
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin, end
