"""Chains of view ops, found in a graph and simulated on index arrays (shared by the passes that
recognise data movement by what it computes: pixel shuffles, repeats, window partitions).

A *chain* is a run of view-like ops (:data:`._fx.VIEW_OPS`: view, reshape, permute, transpose,
unsqueeze, slice, expand, repeat_interleave, pixel_shuffle, …) that starts at the output of some
node ``x`` and where each op but the last has the next one as its only user. Simulating the chain
on ``arange(x.numel()).reshape(x.shape)`` (:func:`simulate`) gives, for every element of each
prefix's result, the flat position of ``x`` it copies, whatever ops spelled it
(``nn.PixelShuffle``, ``F.pixel_shuffle``, an einops-style ``view/permute/reshape``).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from edgekit.converters.passes import _fx

__all__ = ["is_view", "chain_from", "chain_starts", "sub_chains", "simulate", "coords"]


def is_view(node: Any) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and _fx.is_view_op(node.target) \
        and len(node.args) > 0 and isinstance(node.args[0], torch.fx.Node)


def chain_from(first: torch.fx.Node) -> list[torch.fx.Node]:
    """``[first, …]``: ``first`` and the view ops after it, each the only user of the previous."""
    out = [first]
    while len(out[-1].users) == 1:
        (u,) = out[-1].users
        if not is_view(u) or u.args[0] is not out[-1]:
            break
        out.append(u)
    return out


def chain_starts(graph: torch.fx.Graph) -> Iterator[tuple[torch.fx.Node, list[torch.fx.Node]]]:
    """``(x, chain)`` for every maximal chain: ``x`` is not a view op, or a view op read by more
    than one node (then each of its view users starts a chain)."""
    for n in graph.nodes:
        if not is_view(n):
            continue
        x = n.args[0]
        if is_view(x) and len(x.users) == 1:
            continue  # inside a longer chain
        yield x, chain_from(n)


def sub_chains(x: torch.fx.Node, chain: list[torch.fx.Node]) -> Iterator[tuple[torch.fx.Node, list[torch.fx.Node]]]:
    """``(root, chain[s:])`` for each start ``s``: the pattern a pass looks for may begin after
    other view ops (a transpose before a repeat); ``root`` is the tensor it then starts from."""
    for s in range(len(chain)):
        yield (x if s == 0 else chain[s - 1]), chain[s:]


def simulate(shape: tuple[int, ...], chain: list[torch.fx.Node]) -> list[np.ndarray]:
    """The index array after each op of ``chain`` applied to a tensor of ``shape``."""
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    out = []
    for u in chain:
        idx = _fx.view_index(u.target, idx, *u.args[1:], **u.kwargs)
        out.append(idx)
    return out


def coords(idx: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The source coordinates (one array per source dim, shaped like ``idx``) ``idx`` reads."""
    return np.unravel_index(idx, shape)
