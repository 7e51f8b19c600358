"""pixel_shuffle_to_depth_to_space: any pixel shuffle becomes DCR ``DEPTH_TO_SPACE``, exact
(docs/accelerators.md, rewrite 1).

Before::

    y = conv2d(x, W, b)            # W: (C·r², Cin, k, k)
    y = prelu(y, α)                 # channel-wise ops: activations, per-channel affine, adds of
    y = y + conv2d(x0, V)           # branches that are permuted alike (SESR's anchor, a residual)
    z = pixel_shuffle(y, r)         # CRD: z[c, h·r+i, w·r+j] = y[c·r²+i·r+j, h, w]
                                    # (or the same data movement spelled as view/permute/reshape)

After::

    y' = conv2d(x, W[π], b[π])      # π[(i·r+j)·C+c] = c·r²+i·r+j for CRD
    y' = prelu(y', α[π])
    y' = y' + conv2d(x0, V[π])
    z  = edgekit.depth_to_space(y', r)   # DCR: z[c, h·r+i, w·r+j] = y'[(i·r+j)·C+c, h, w]

What is matched is what the graph computes, not how it is spelled: every chain of view ops
(``pixel_shuffle``, ``view``/``reshape``/``permute``/``transpose``/``clone``, any rank, einops-style
rearranges) from a 4-D tensor ``y = (N, K, H, W)`` to a 4-D ``z = (N, K/r², H·r, W·r)`` is simulated
on an index array (:mod:`._views`), and ``π`` is solved from it so that ``z = DCR(y[:, π])``. The CRD
order of ``nn.PixelShuffle`` / ``F.pixel_shuffle`` is one ``π``; a DCR rearrange is ``π = id``; any
other channel order of the block is another ``π``.

Then ``y[:, π]`` is made in one of two ways:

1. **Permute the producers** (free: no op added, bit-identical). The walk goes back from ``y``
   through ops that treat channels alike — pointwise activations, PReLU (``α[π]``), per-channel
   affine constants (``s[π]``), depthwise convs (``W[π]``, input permuted too), adds/muls of
   branches that can each be permuted, tensors that broadcast over channels — to the convs that
   make the channels, and permutes all of them consistently (:mod:`._channels`). Exact because
   each element is computed by the same ops from the same operands; only the rows of the
   constants move.
2. **A channel gather folded into a 1×1 conv** when the walk cannot reach convs: the shuffle
   reads a graph input, a concat on channels, a grouped conv, or a tensor something else also
   reads (permuting it would change that reader). The conv's weights are a permutation matrix
   (``P[k, π[k]] = 1``), so each output is one input times 1 plus zeros: exact for finite inputs
   (an inf or NaN would spread through the zero weights). It costs K² MACs per pixel, but it is a
   CONV_2D every NPU runs, where the alternatives are a channel GATHER (no NPU kernel) or the
   rank-6 RESHAPE/TRANSPOSE chain; CRD ``DepthToSpace`` exists in ONNX but NPU compilers lower it
   to the same transposes.

The first is always preferred; the reason for the second is recorded (:func:`find_shuffles`).
PyTorch exports pixel shuffle as a rank-6 reshape/permute (litert-torch: a RESHAPE/TRANSPOSE
chain); DCR depth-to-space is TFLite's ``DEPTH_TO_SPACE`` and ONNX's ``DepthToSpace(mode="DCR")``.

Frames regathered after the shuffle (a video decoder's temporal upsampling picks frames of two
shuffled tensors and concatenates them on the batch/frame axis) are gathered *before* it::

    cat([d2s(a)[i:i+1], d2s(b)[j:j+1], …], 0)  →  d2s(cat([a[i:i+1], b[j:j+1], …], 0), r)

Exact (depth-to-space acts on each batch item alone). Why: litert-torch lowers ``edgekit.
depth_to_space`` between two explicit permutes, and a batch slice of the NCHW permute's output
made its layout pass keep the slices, the concat and the residual adds after them in NCHW
(measured on video_decoder_turbo: 5 TRANSPOSEs, 0 after this). Slices and concats of the conv
outputs are plain NHWC ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgekit.converters.passes import _channels, _custom_ops, _fx, _views

__all__ = ["check", "rewrite", "find_shuffles", "solve_depth_to_space", "Shuffle", "frame_gathers"]

aten = torch.ops.aten
_SHUFFLE = aten.pixel_shuffle.default
_SLICE = aten.slice.Tensor
_CAT = aten.cat.default


@dataclass
class Shuffle:
    """A matched depth-to-space: ``end = DCR(x[:, perm], r)``, computed by the view ops ``chain``."""

    x: torch.fx.Node
    chain: list[torch.fx.Node]
    r: int
    perm: np.ndarray
    region: _channels.Region | None = None  # the producers permuted (None: no permutation, or a 1×1 conv)
    gather_why: str | None = None  # why the permutation is a 1×1 conv

    @property
    def end(self) -> torch.fx.Node:
        return self.chain[-1]

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.perm, np.arange(len(self.perm))))


def _dcr_index(shape: tuple[int, int, int, int], r: int) -> np.ndarray:
    """DCR depth-to-space of ``arange`` over ``shape = (N, K, H, W)``: the flat positions it reads."""
    n, k, h, w = shape
    c = k // (r * r)
    a = np.arange(n * k * h * w, dtype=np.int64).reshape(n, r, r, c, h, w)
    return a.transpose(0, 3, 4, 1, 5, 2).reshape(n, c, h * r, w * r)


def solve_depth_to_space(shape: tuple[int, ...], idx: np.ndarray) -> tuple[int, np.ndarray] | None:
    """``(r, π)`` with ``x.flatten()[idx] == DCR(x[:, π], r)`` for ``x`` of ``shape``, else None."""
    if len(shape) != 4 or idx.ndim != 4:
        return None
    n, k, h, w = shape
    n2, c, h2, w2 = idx.shape
    if n2 != n or h2 % h or w2 % w or h2 // h != w2 // w or h2 == h:
        return None
    r = h2 // h
    if c * r * r != k:
        return None
    ne, ke, he, we = _views.coords(idx, shape)
    nz, kz, hz, wz = _views.coords(_dcr_index((n, k, h, w), r), shape)
    if not (np.array_equal(ne, nz) and np.array_equal(he, hz) and np.array_equal(we, wz)):
        return None
    perm = np.full(k, -1, dtype=np.int64)
    perm[kz.reshape(-1)] = ke.reshape(-1)
    if (perm < 0).any() or not np.array_equal(perm[kz], ke) or not _channels.is_permutation(perm):
        return None
    return r, perm


def find_shuffles(program: torch.export.ExportedProgram) -> tuple[list[Shuffle], list[str]]:
    """The depth-to-space chains of ``program`` (each with how its permutation is made), and why
    each pixel_shuffle op that is not one was left."""
    consts = _channels.constant_nodes(program)
    found, skipped = [], []
    claimed: set[str] = set()
    for x0, whole in _views.chain_starts(program.graph_module.graph):
        match = None
        for x, chain in _views.sub_chains(x0, whole):
            shape = _fx.node_shape(x)
            if shape is None or len(shape) != 4:
                continue
            sims = _views.simulate(shape, chain)
            for j in range(len(chain) - 1, -1, -1):
                sol = solve_depth_to_space(shape, sims[j])
                if sol is not None:
                    match = Shuffle(x, chain[:j + 1], *sol)
                    break
            if match is not None:
                break
        if match is None:
            for u in whole:
                if u.target is _SHUFFLE:
                    r, src = int(u.args[1]), _fx.node_shape(u.args[0]) or ()
                    skipped.append(f"{u.name}: block size {r} < 2" if r < 2 else
                                   f"{u.name}: not on a 4-D tensor" if len(src) != 4 else f"{u.name}: not a depth-to-space")
            continue
        if not match.identity:
            region, why = _channels.channel_region(match.x, consts, consumers=[match.chain[0]])
            if region is not None and claimed & set(region.nodes):
                region, why = None, f"{match.x.name} is shared with another shuffle's producers"
            if region is not None:
                claimed |= set(region.nodes)
            match.region, match.gather_why = region, why
        found.append(match)
    return found, skipped


def _frame_slice(node: Any, shuffles: dict[str, int]) -> tuple[torch.fx.Node, int, int] | None:
    """``(shuffle end, start, end)`` when ``node`` is a unit-step slice on dim 0 of a taken shuffle."""
    if not (isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target is _SLICE):
        return None
    src, dim, start, end, step = list(node.args) + [0, None, None, 1][len(node.args) - 1:]
    shape = _fx.node_shape(src) if isinstance(src, torch.fx.Node) else None
    if not isinstance(src, torch.fx.Node) or src.name not in shuffles or shape is None or dim % len(shape) != 0 \
            or step != 1:
        return None
    n = shape[0]
    lo, hi = slice(start, end).indices(n)[:2]
    return (src, lo, hi) if hi > lo else None


def frame_gathers(program: torch.export.ExportedProgram, shuffles: dict[str, int]) -> dict[str, list[tuple]]:
    """Dim-0 ``cat`` nodes whose every input is a dim-0 slice of a taken shuffle (``{end name: r}``),
    all of one block size: ``{cat name: [(shuffle end, start, end), …]}``."""
    out = {}
    for node in program.graph_module.graph.nodes:
        if node.op != "call_function" or node.target is not _CAT:
            continue
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim != 0:
            continue
        parts = [_frame_slice(x, shuffles) for x in node.args[0]]
        if parts and all(parts) and len({shuffles[p[0].name] for p in parts}) == 1:  # type: ignore[index]
            out[node.name] = parts
    return out


def check(program: torch.export.ExportedProgram) -> str | None:
    found, skipped = find_shuffles(program)
    if found:
        return None
    if skipped:
        return "no pixel shuffle it can take: " + "; ".join(skipped)
    return "the model has no pixel shuffle (pixel_shuffle, or view ops that compute one)"


class _Rewriter(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram, move_gathers: bool = True):
        super().__init__(program)
        found, _ = find_shuffles(program)
        self.first = {sh.chain[0].name: sh for sh in found}
        self.inner = {u.name for sh in found for u in sh.chain[1:]}
        self.ends = {sh.end.name: sh for sh in found}
        self.regions: dict[str, _channels.RegionEvaluator] = {}
        for sh in found:
            if sh.region is not None:
                ev = _channels.RegionEvaluator(self, sh.region.nodes, [sh.perm], f"dcr.{sh.end.name}")
                self.regions.update({name: ev for name in sh.region.nodes})
        rs = {name: sh.r for name, sh in self.ends.items()}
        self.gathers = frame_gathers(program, rs) if move_gathers else {}
        # slices and shuffles read only by moved gathers are not emitted (export keeps a dead custom op)
        graph = program.graph_module.graph.nodes
        self.absorbed = {n.name for n in graph if n.target is _SLICE and n.users
                         and all(u.name in self.gathers for u in n.users)}
        self.absorbed |= {n.name for n in graph if n.name in self.ends
                          and all(u.name in self.absorbed for u in n.users)}

    def _input(self, sh: Shuffle, x: Any) -> torch.Tensor:
        """``x[:, π]``: the permuted producers' output, ``x`` itself, or a 1×1 permutation conv."""
        if isinstance(x, _channels.Grouped):
            return x[0]
        x = self.resolve(x)
        if sh.identity:
            return x
        return _channels.selection_conv(x, sh.perm.tolist(), self, f"dcr.{sh.end.name}.gather")

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.regions:
            return self.regions[node.name].value(node, args, kwargs)
        if node.name in self.first:
            sh = self.first[node.name]
            xp = self._input(sh, args[0])
            self.cache[("d2s input", sh.end.name)] = xp
            out = None if sh.end.name in self.absorbed else _custom_ops.D2S(xp, sh.r)
            self.cache[("d2s", sh.end.name)] = out
            return out
        if node.name in self.inner:
            return self.cache[("d2s", node.name)] if node.name in self.ends else None
        if node.name in self.gathers:
            parts = self.gathers[node.name]
            frames = [aten.slice.Tensor(self.cache[("d2s input", s.name)], 0, lo, hi) for s, lo, hi in parts]
            return _custom_ops.D2S(aten.cat.default(frames, 0), self.ends[parts[0][0].name].r)
        if node.name in self.absorbed:
            return None
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewriter(program).export()
