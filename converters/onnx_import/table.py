"""The op table the ONNX importer fills: ``OPS``, the ``@op("Name")`` decorator, and the
helpers several converter modules share (axes, pads).

:mod:`.ops`, :mod:`.pool` and :mod:`.resize` each register their converters here when
imported; :func:`edgekit.converters.onnx_import.op_table` imports the three and returns the
full table.
"""

from __future__ import annotations

from typing import Callable

from edgekit.converters.onnx_import.builder import Builder, NodeError, OpFn

__all__ = ["OPS", "op", "axis_of", "onnx_pads", "torch_pad_list"]

OPS: dict[str, OpFn] = {}


def op(*names: str) -> Callable[[OpFn], OpFn]:
    """Register a converter for the ONNX op types ``names`` (default domain)."""

    def deco(fn: OpFn) -> OpFn:
        for n in names:
            if n in OPS:
                raise RuntimeError(f"ONNX op {n} registered twice")
            OPS[n] = fn
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
