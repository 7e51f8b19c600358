"""repeat_interleave_to_4d: repeating a 4-D tensor along its axes (``repeat_interleave``,
``expand``, ``repeat``, or ``unsqueeze``/``expand``/``reshape`` spellings) becomes rank-4 ops NPUs
run, without BROADCAST_TO. Exact (docs/accelerators.md, rewrites 2 and 7).

Before::

    y = repeat_interleave(x, 2, dim=2)              # litert-torch: rank-5 RESHAPE → BROADCAST_TO → RESHAPE
    y = repeat_interleave(y, 2, dim=3)              # (ONNX: Unsqueeze → Expand → Reshape, rank 5)
    z = x[:, :, :, None, :, None].expand(1, C, H, 2, W, 2).reshape(1, C, 2H, 2W)   # the same, by hand
    g = repeat_interleave(x, 3, dim=1)              # each channel three times
    t = x.repeat(1, 1, 2, 1)                        # the whole tensor twice along H

After::

    y = upsample_nearest2d(x, (2H, 2W))             # RESIZE_NEAREST_NEIGHBOR: out[h, w] = x[h // 2, w // 2]
    g = conv2d(x, E)                                # 1×1, E[c·3 + k, c] = 1: out[c'] = x[c' // 3]
    t = cat([x, x], dim=2)                          # CONCATENATION

What is matched is what the graph computes: each chain of view ops from a 4-D tensor ``x`` to a
4-D tensor ``z`` is simulated on an index array (:mod:`._views`), and matched when every axis of
``z`` reads one axis of ``x`` alone as ``lo + i // a`` (interleave: each element ``a`` times) or
``lo + i mod n`` (tile: the block ``a`` times), with some ``a > 1``. Then, per axis:

- a block of ``x`` (``lo``, ``n``) is a slice;
- an axis of length 1, or a tile, is a concatenation of copies (exact: copies);
- H and W interleaved (nearest upsampling by integer factors) are one ``upsample_nearest2d``:
  nearest sampling with an integer factor reads ``⌊i / a⌋`` exactly (PyTorch, and TFLite's
  RESIZE_NEAREST_NEIGHBOR once ``resize_nearest_no_half_pixel`` has removed half-pixel centres,
  which give the same index for integer factors anyway);
- channels interleaved are a 1×1 conv with one-hot weights, exact for finite inputs (one product
  by 1, the rest by 0; an inf or NaN would spread through the zeros). A CONV_2D runs on every NPU
  in either layout, where the pure data-movement alternative, a reshape across the channel axis,
  costs a TRANSPOSE on each side in NHWC;
- the batch axis interleaved is a concatenation of repeated batch slices.

Left alone (reason reported): repeats of tensors that are not 4-D, and chains that also reorder
axes (a transpose is not a repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgekit.converters.passes import _fx, _views
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "find_repeats", "Repeat", "solve_repeat"]

_REPEAT_OPS = {aten.expand.default, aten.repeat_interleave.self_int, aten.repeat.default}


@dataclass
class Axis:
    lo: int  # first element of x read
    n: int  # elements of x read
    a: int  # times each is repeated
    tile: bool  # the block repeated as a whole (else each element)


@dataclass
class Repeat:
    x: torch.fx.Node
    chain: list[torch.fx.Node]
    axes: list[Axis]

    @property
    def end(self) -> torch.fx.Node:
        return self.chain[-1]


def solve_repeat(shape: tuple[int, ...], idx: np.ndarray) -> list[Axis] | None:
    """Per axis, how ``x.flatten()[idx]`` reads ``x`` of ``shape`` (same rank), when it is a
    repeat of a block; None otherwise."""
    if idx.ndim != len(shape):
        return None
    coords = _views.coords(idx, shape)
    axes = []
    for d, c in enumerate(coords):
        line = c[(0,) * d + (slice(None),) + (0,) * (idx.ndim - d - 1)]  # the source index along axis d
        view = [1] * idx.ndim
        view[d] = idx.shape[d]
        if not np.array_equal(c, np.broadcast_to(line.reshape(view), idx.shape)):
            return None  # this axis's source depends on other axes: a transpose, not a repeat
        lo = int(line.min())
        u = line - lo
        n = int(u.max()) + 1
        length = idx.shape[d]
        if length % n:
            return None
        a = length // n
        i = np.arange(length)
        if np.array_equal(u, i // a):
            axes.append(Axis(lo, n, a, False))
        elif np.array_equal(u, i % n):
            axes.append(Axis(lo, n, a, True))
        else:
            return None
    if not any(ax.a > 1 for ax in axes):
        return None
    return axes


def find_repeats(program: torch.export.ExportedProgram) -> tuple[list[Repeat], list[str]]:
    """The repeats in ``program`` (the longest from the earliest start of each view chain), and
    why each chain with a repeat op that is not one was left."""
    found, skipped = [], []
    for x0, whole in _views.chain_starts(program.graph_module.graph):
        if not any(u.target in _REPEAT_OPS for u in whole):
            continue
        match = None
        for x, chain in _views.sub_chains(x0, whole):
            shape = _fx.node_shape(x)
            if shape is None or len(shape) != 4:
                continue
            sims = _views.simulate(shape, chain)
            for j in range(len(chain) - 1, -1, -1):
                axes = solve_repeat(shape, sims[j]) if any(u.target in _REPEAT_OPS for u in chain[:j + 1]) else None
                if axes is not None:
                    match = Repeat(x, chain[:j + 1], axes)
                    break
            if match is not None:
                break
        if match is not None:
            found.append(match)
            continue
        first = next(u for u in whole if u.target in _REPEAT_OPS)
        src = len(_fx.node_shape(first.args[0]) or ())
        ends4 = len(_fx.node_shape(x0) or ()) == len(_fx.node_shape(whole[-1]) or ()) == 4
        skipped.append(f"{first.name}: its view chain is not a repeat of a 4-D tensor along its own axes" if ends4
                       else f"{first.name}: repeats a rank-{src} tensor (only 4-D)")
    return found, skipped


def check(program: torch.export.ExportedProgram) -> str | None:
    found, skipped = find_repeats(program)
    if found:
        return None
    if skipped:
        return "no repeat it can take: " + "; ".join(skipped)
    return "no repeat_interleave, expand or repeat in the graph"


def _copies(x: torch.Tensor, d: int, a: int) -> torch.Tensor:
    return aten.cat.default([x] * a, d)


def emit(x: torch.Tensor, axes: list[Axis], retracer: _fx.Retracer, key: str) -> torch.Tensor:
    """The repeat ``axes`` of a 4-D ``x`` with slices, concats, one resize and one 1×1 conv."""
    for d, ax in enumerate(axes):  # the blocks read
        if (ax.lo, ax.n) != (0, int(x.shape[d])):
            x = aten.slice.Tensor(x, d, ax.lo, ax.lo + ax.n)
    copies = {d for d, ax in enumerate(axes) if ax.a > 1 and (ax.tile or ax.n == 1)}
    for d in sorted(copies):
        x = _copies(x, d, axes[d].a)
    ax0 = axes[0]
    if ax0.a > 1 and 0 not in copies:  # batch items, each a times
        items = [aten.slice.Tensor(x, 0, i, i + 1) for i in range(ax0.n)]
        x = aten.cat.default([it for it in items for _ in range(ax0.a)], 0)
    ax1 = axes[1]
    if ax1.a > 1 and 1 not in copies:  # channels, each a times: a one-hot 1×1 conv
        c, a = ax1.n, ax1.a

        def one_hot() -> torch.Tensor:
            w = torch.zeros(c * a, c, 1, 1, dtype=x.dtype)
            w[torch.arange(c * a), torch.arange(c * a) // a] = 1
            return w

        x = aten.conv2d.default(x, retracer.const(f"{key}.one_hot", one_hot))
    fh = axes[2].a if 2 not in copies else 1
    fw = axes[3].a if 3 not in copies else 1
    if fh > 1 or fw > 1:  # nearest upsampling by integer factors
        x = aten.upsample_nearest2d.vec(x, [int(x.shape[2]) * fh, int(x.shape[3]) * fw], None)
    return x


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        found, _ = find_repeats(program)
        self.first = {rp.chain[0].name: rp for rp in found}
        self.rest = {u.name: rp for rp in found for u in rp.chain[1:]}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.first:
            rp = self.first[node.name]
            out = emit(self.resolve(args[0]), rp.axes, self, f"repeat.{rp.end.name}")
            self.cache[("repeat", rp.end.name)] = out
            return out if len(rp.chain) == 1 else None
        if node.name in self.rest:
            return self.cache[("repeat", node.name)] if node.name == self.rest[node.name].end.name else None
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
