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

Matching is by meaning, not by op sequence: the single-use chain of view ops after a Conv3d
(``view/reshape/permute/transpose/slice/pixel_shuffle``, any rank) is simulated on an index array
(:func:`._fx.view_index`), giving, for every output element, the conv output element it copies.
The pass then solves for ``(st, s, offset)`` and a channel permutation ``π`` such that, with
``K = C·st·s²``, frames in batch ``y₄ = (T, K, H, W)`` and ``T'`` output frames::

    out₄ = pixel_shuffle(reshape(y₄[:, π], (T·st, K/st, H, W)), s)[offset : offset + T']

and emits it without the reshape, which reads channels across frames (a TRANSPOSE on a
channels-last backend): the conv is split into ``st`` convs, one per temporal phase τ (rows
``π[τ·K/st … (τ+1)·K/st − 1]`` of its weight: free, same MACs), each followed by its own
per-frame ``pixel_shuffle`` (DEPTH_TO_SPACE after the 2-D pass permutes that conv's channels),
and output frame ``f = t·st + τ`` is frame ``t`` of phase τ: ``T'`` one-frame slices and one
concat on the batch dimension (frames in batch), the causal crop of the first ``st − 1`` frames
being frames never sliced. No reshape of the big tensor, no transpose in either layout.
Written in 5-D terms (``transpose(1, 2)`` + reshape, which ``frames_to_batch`` folds into
nothing) so the graph stays valid on its own. Any other reordering is left alone (reason
reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgekit.converters.passes import _fx
from edgekit.converters.passes._fx import aten
from edgekit.converters.passes.conv3d_to_conv2d import conv3d_args

__all__ = ["check", "rewrite", "find_shuffles", "Shuffle"]


@dataclass
class Shuffle:
    conv: torch.fx.Node
    end: torch.fx.Node
    chain: list[torch.fx.Node]
    st: int
    s: int
    offset: int
    frames: int
    perm: np.ndarray  # new conv channel j computes old channel perm[j]


def _chain(conv: torch.fx.Node) -> list[torch.fx.Node]:
    out, cur = [], conv
    while len(cur.users) == 1:
        (u,) = cur.users
        if u.op != "call_function" or not _fx.is_view_op(u.target) or u.args[0] is not cur:
            break
        out.append(u)
        cur = u
    return out


def _solve(k: int, t: int, h: int, w: int, target: np.ndarray) -> tuple[int, int, int, np.ndarray] | None:
    """(st, s, offset, π) with target == D(conv output), target: (1, C, T', H', W') indices."""
    _, c, t2, h2, w2 = target.shape
    if h2 % h or w2 % w or h2 // h != w2 // w:
        return None
    s = h2 // h
    if k % (c * s * s):
        return None
    st = k // (c * s * s)
    if t * st < t2:
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
    """The 3-D pixel shuffles after Conv3ds in ``gm`` (a program's ``module()``), and why the first
    near miss did not match."""
    found, reason = [], None
    for n in gm.graph.nodes:
        a = conv3d_args(n)
        if a is None:
            continue
        shape = _fx.node_shape(n)
        chain = _chain(n)
        if shape is None or shape[0] != 1 or not chain:
            continue
        idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
        sims = []
        for u in chain:
            idx = _fx.view_index(u.target, idx, *u.args[1:], **u.kwargs)
            sims.append(idx)
        for j in range(len(chain) - 1, -1, -1):
            tgt = sims[j]
            if tgt.ndim != 5 or tgt.shape[0] != 1 or tgt.shape == tuple(shape):
                continue
            sol = _solve(shape[1], shape[2], shape[3], shape[4], tgt)
            if sol is not None:
                st, s, off, perm = sol
                found.append(Shuffle(n, chain[j], chain[:j + 1], st, s, off, tgt.shape[2], perm))
                break
        else:
            if any(u.target in (aten.pixel_shuffle.default,) or len(_fx.node_shape(u) or ()) > 5 for u in chain):
                reason = reason or f"{n.name}: its reshape/permute chain is not a 3-D pixel shuffle"
    return found, reason


class _Rewrite(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        gm_shuffles, _ = find_shuffles(self.module)  # same graph, this module's node objects
        self.by_conv = {sh.conv.name: sh for sh in gm_shuffles}
        self.by_end = {sh.end.name: sh for sh in gm_shuffles}
        self.inner = {u.name for sh in gm_shuffles for u in sh.chain if u is not sh.end}
        self.conv_out: dict[str, torch.Tensor] = {}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.by_conv:
            sh = self.by_conv[node.name]
            a = conv3d_args(node)
            w = self.concrete(args[1])
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            b = self.concrete(bias) if bias is not None else None
            x = self.resolve(args[0])
            k = len(sh.perm) // sh.st
            outs = []
            for tau in range(sh.st):  # one conv per temporal phase τ: its channels τ·K/st … (τ+1)·K/st − 1
                rows = sh.perm[tau * k:(tau + 1) * k].tolist()  # plain ints: made into weights outside tracing
                wp = self.const(f"{node.name}.w.phase{tau}", lambda rows=rows: w[rows])
                bp = self.const(f"{node.name}.b.phase{tau}", lambda rows=rows: b[rows]) if b is not None else None
                outs.append(aten.conv3d.default(x, wp, bp, a["stride"], a["padding"], a["dilation"], a["groups"]))
            self.conv_out[node.name] = outs
            return None
        if node.name in self.inner:
            return None
        if node.name in self.by_end:
            sh = self.by_end[node.name]
            phases = []
            for y in self.conv_out[sh.conv.name]:
                _, k, t, h, w = y.shape
                x = aten.reshape.default(aten.transpose.int(y, 1, 2), [t, k, h, w])  # frames of phase τ
                phases.append(aten.pixel_shuffle.default(x, sh.s) if sh.s > 1 else x)
            # output frame f = t·st + τ is frame t of phase τ; the causal crop just skips frames
            frames = [aten.slice.Tensor(phases[f % sh.st], 0, f // sh.st, f // sh.st + 1)
                      for f in range(sh.offset, sh.offset + sh.frames)]
            x = torch.cat(frames, dim=0) if len(frames) > 1 else frames[0]
            f, c, ho, wo = x.shape
            return aten.transpose.int(aten.reshape.default(x, [1, f, c, ho, wo]), 1, 2)
        return NotImplemented


def check(program: torch.export.ExportedProgram) -> str | None:
    convs = [n for n in program.graph_module.graph.nodes if conv3d_args(n) is not None]
    if not convs:
        return "no Conv3d in the graph (a 3-D pixel shuffle follows one)"
    gm = program.module()
    found, reason = find_shuffles(gm)
    if not found:
        return reason or "no 3-D pixel shuffle after a Conv3d"
    for sh in found:
        a = conv3d_args(sh.conv)
        if sh.conv.args[1].op != "get_attr" or (a["bias"] is not None and a["bias"].op != "get_attr"):
            return f"{sh.conv.name}: weight computed in the graph, cannot permute its output channels"
    return None


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Rewrite(program).export()
