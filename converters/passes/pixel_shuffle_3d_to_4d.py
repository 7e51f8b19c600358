"""3-D pixel shuffle (decoupled or rank-8 permute form) → a reshape of frames + per-frame
``pixel_shuffle`` (docs/accelerators.md, rewrites 2 and 5). Exact and free.

Video VAEs upsample with a conv to ``C·st·s²`` channels and a 3-D pixel shuffle
``b (c s s st) t h w → b c (t st) (h s) (w s)``, written either as Turbo-VAED's *decoupled* form
(rank-6 temporal shuffle, then a per-frame 2-D ``pixel_shuffle``) or as one rank-8
view/permute/reshape. Neither fits rank ≤ 4 as written.

Before (the rank-8 form)::

    y = conv3d(x, W)                                                   # (1, K, T, H, W), K = C·st·s²
    z = reshape(permute(reshape(y, (1, C, s, s, st, T, H, W)), (0, 1, 5, 4, 6, 2, 7, 3)),
                (1, C, T·st, H·s, W·s))

After (frames in batch; one conv per temporal phase τ < st, each shuffled per frame)::

    y_τ = conv3d(x, W[rows of phase τ])                                # (1, K/st, T, H, W)
    z₄  = cat([pixel_shuffle(frame t of y_τ, s) for output frame t·st + τ], 0)

Matching is by meaning, not by op sequence: every single-use chain of view ops
(``view/reshape/permute/transpose/slice/pixel_shuffle``, any rank) from a ``(1, K, T, H, W)``
tensor — or a ``(1, K, H, W)`` one, a 2-D conv making ``st`` frames from one image — to a
``(1, C, T', H', W')`` one is simulated on an index array (:mod:`._views`), giving, for every
output element, the input element it copies. Every ordering of the temporal and spatial factors
within the channel axis — ``(c, s, s, st)``, ``(st, c, s, s)``, ``(s, st, s, c)``, … — is one
channel permutation ``π`` of the same solution.
The pass then solves for ``(st, s, offset)`` and a channel permutation ``π`` such that, with
``K = C·st·s²``, frames in batch ``y₄ = (T, K, H, W)`` and ``T'`` output frames::

    out₄ = pixel_shuffle(reshape(y₄[:, π], (T·st, K/st, H, W)), s)[offset : offset + T']

and emits it without the reshape, which reads channels across frames (a TRANSPOSE on a
channels-last backend): the conv is split into ``st`` convs, one per temporal phase τ (rows
``π[τ·K/st … (τ+1)·K/st − 1]`` of its weight: free, same MACs). The conv need not feed the chain
directly: ops that treat channels alike in between (activations, per-channel affine, adds of
convs, depthwise convs) are split into phases with it (:mod:`._channels`, exact: the same ops on
the same operands). Where no conv can be split — the chain reads a graph input, a grouped conv, a
tensor that has other readers — each phase is a slice of ``x`` when its rows are a contiguous
range, else a 1×1(×1) conv with one-hot weights (exact for finite inputs). Each phase is followed by its own
per-frame ``pixel_shuffle`` (DEPTH_TO_SPACE after the 2-D pass permutes that conv's channels),
and output frame ``f = t·st + τ`` is frame ``t`` of phase τ: ``T'`` one-frame slices and one
concat on the batch dimension (frames in batch), the causal crop of the first ``st − 1`` frames
being frames never sliced. No reshape of the big tensor, no transpose in either layout.
Written in 5-D terms (``transpose(1, 2)`` + reshape, which ``frames_to_batch`` folds into
nothing) so the graph stays valid on its own. A chain that is not a 3-D pixel shuffle (spatial
and temporal positions that do not follow one) is left alone, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgekit.converters.passes import _channels, _fx, _views
from edgekit.converters.passes._fx import aten

__all__ = ["check", "rewrite", "find_shuffles", "Shuffle"]


@dataclass
class Shuffle:
    conv: torch.fx.Node  # the chain's input x (named for the common case: a conv's output)
    end: torch.fx.Node
    chain: list[torch.fx.Node]
    st: int
    s: int
    offset: int
    frames: int
    perm: np.ndarray  # new channel j of x is old channel perm[j]
    region: _channels.Region | None = None  # the producers whose rows are split into phases
    select_why: str | None = None  # why the phases are selected by slices / 1×1 convs instead

    @property
    def phases(self) -> list[list[int]]:
        k = len(self.perm) // self.st
        return [self.perm[tau * k:(tau + 1) * k].tolist() for tau in range(self.st)]


def _solve(k: int, t: int, h: int, w: int, target: np.ndarray) -> tuple[int, int, int, np.ndarray] | None:
    """(st, s, offset, π) with target == D(conv output), target: (1, C, T', H', W') indices."""
    _, c, t2, h2, w2 = target.shape
    if h2 % h or w2 % w or h2 // h != w2 // w:
        return None
    s = h2 // h
    if k % (c * s * s):
        return None
    st = k // (c * s * s)
    if t * st < t2 or st * s < 2:  # st = s = 1 is a frame slice, not a shuffle
        return None
    tk, tt, th, tw = np.unravel_index(target[0].transpose(1, 0, 2, 3), (k, t, h, w))  # NCTHW positions
    store = np.arange(t * k * h * w, dtype=np.int64).reshape(t, k, h, w).reshape(t * st, k // st, h, w)
    if s > 1:
        store = _fx.view_index(aten.pixel_shuffle.default, store, s)
    for off in range(t * st - t2 + 1):
        dt, dk, dh, dw = np.unravel_index(store[off:off + t2], (t, k, h, w))
        if not (np.array_equal(dt, tt) and np.array_equal(dh, th) and np.array_equal(dw, tw)):
            continue
        perm = np.full(k, -1, dtype=np.int64)
        perm[dk.reshape(-1)] = tk.reshape(-1)
        if (perm < 0).any() or not np.array_equal(perm[dk.reshape(-1)], tk.reshape(-1)):
            continue
        if np.array_equal(np.sort(perm), np.arange(k)):
            return st, s, off, perm
    return None


def find_shuffles(gm: torch.fx.GraphModule) -> tuple[list[Shuffle], str | None]:
    """The 3-D pixel shuffles in ``gm`` (a program's ``module()``): view chains from a
    ``(1, K, T, H, W)`` tensor, or a ``(1, K, H, W)`` one (a 2-D conv making the frames), to a
    ``(1, C, T', H', W')`` one; and why the first near miss did not match."""
    found, reason = [], None
    claimed: set[str] = set()
    for x, chain in _views.chain_starts(gm.graph):
        shape = _fx.node_shape(x)
        if shape is None or len(shape) not in (4, 5) or shape[0] != 1:
            continue
        k, t, h, w = (shape[1], 1, shape[2], shape[3]) if len(shape) == 4 else shape[1:]
        sims = _views.simulate(shape, chain)
        for j in range(len(chain) - 1, -1, -1):
            tgt = sims[j]
            if tgt.ndim != 5 or tgt.shape[0] != 1 or tgt.shape == tuple(shape):
                continue
            sol = _solve(k, t, h, w, tgt)
            if sol is not None:
                st, s, off, perm = sol
                sh = Shuffle(x, chain[j], chain[:j + 1], st, s, off, tgt.shape[2], perm)
                region, why = _channels.channel_region(x, set(), consumers=[chain[0]])
                if region is not None and claimed & set(region.nodes):
                    region, why = None, f"{x.name} is shared with another shuffle's producers"
                if region is not None:
                    claimed |= set(region.nodes)
                sh.region, sh.select_why = region, why
                found.append(sh)
                break
        else:
            if any(u.target in (aten.pixel_shuffle.default,) or len(_fx.node_shape(u) or ()) > 5 for u in chain):
                reason = reason or f"{x.name}: its reshape/permute chain is not a 3-D pixel shuffle"
    return found, reason


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        gm_shuffles, _ = find_shuffles(self.module)  # same graph, this module's node objects
        self.first = {sh.chain[0].name: sh for sh in gm_shuffles}
        self.by_end = {sh.end.name: sh for sh in gm_shuffles}
        self.inner = {u.name for sh in gm_shuffles for u in sh.chain[1:] if u is not sh.end}
        self.regions: dict[str, _channels.RegionEvaluator] = {}
        for sh in gm_shuffles:
            if sh.region is not None:
                ev = _channels.RegionEvaluator(self, sh.region.nodes, sh.phases, f"phase.{sh.end.name}")
                self.regions.update({name: ev for name in sh.region.nodes})

    def _phases(self, sh: Shuffle, x: Any) -> list[torch.Tensor]:
        """One tensor per temporal phase τ: channels ``perm[τ·K/st … (τ+1)·K/st − 1]`` of x."""
        if isinstance(x, _channels.Grouped):
            return list(x)
        x = self.resolve(x)
        return [_channels.selection_conv(x, rows, self, f"phase.{sh.end.name}.{tau}") for tau, rows in enumerate(sh.phases)]

    def _shuffled(self, sh: Shuffle, outs: list[torch.Tensor]) -> torch.Tensor:
        phases = []
        for y in outs:
            if y.dim() == 5:
                _, k, t, h, w = y.shape
                y = aten.reshape.default(aten.transpose.int(y, 1, 2), [t, k, h, w])  # frames of phase τ
            phases.append(aten.pixel_shuffle.default(y, sh.s) if sh.s > 1 else y)
        # output frame f = t·st + τ is frame t of phase τ; the causal crop just skips frames
        frames = [phases[f % sh.st] if phases[f % sh.st].shape[0] == 1 else
                  aten.slice.Tensor(phases[f % sh.st], 0, f // sh.st, f // sh.st + 1)
                  for f in range(sh.offset, sh.offset + sh.frames)]
        x = torch.cat(frames, dim=0) if len(frames) > 1 else frames[0]
        f, c, ho, wo = x.shape
        return aten.transpose.int(aten.reshape.default(x, [1, f, c, ho, wo]), 1, 2)

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.regions:
            return self.regions[node.name].value(node, args, kwargs)
        if node.name in self.first:
            sh = self.first[node.name]
            out = self._shuffled(sh, self._phases(sh, args[0]))
            self.cache[("shuffled", sh.end.name)] = out
            return out if node is sh.end or node.name == sh.end.name else None
        if node.name in self.inner:
            return None
        if node.name in self.by_end:
            return self.cache[("shuffled", node.name)]
        return NotImplemented


def check(program: torch.export.ExportedProgram) -> str | None:
    if not any(_views.is_view(n) and (len(_fx.node_shape(n) or ()) >= 5 or n.target is aten.pixel_shuffle.default)
               for n in program.graph_module.graph.nodes):
        return "no 3-D pixel shuffle: no view to rank 5 or more and no pixel_shuffle in the graph"
    gm = program.module()
    found, reason = find_shuffles(gm)
    if not found:
        return reason or "no 3-D pixel shuffle (a view chain to (1, C, T·st, H·s, W·s))"
    return None


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
