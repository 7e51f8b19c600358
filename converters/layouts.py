"""Layout letters for the tensors of a model (``NCHW``, ``NHWC``, ``NC``, ``NCTHW``).

The manifest names the layout of every tensor so that apps never guess. A model card gives
the layout of the input (and sometimes the output); for other tensors the letters follow
from the rank and the task: a 2-D classifier output is ``NC``, a 4-D image tensor ``NCHW``,
a 5-D video tensor ``NCTHW``. A tensor whose role cannot be told gets ``None`` (unknown),
never a guess dressed up as a fact.

Example::

    >>> layout_for_rank(4)
    'NCHW'
    >>> layout_for_rank(5)
    'NCTHW'
    >>> to_nhwc("NCHW")
    'NHWC'
"""

from __future__ import annotations

__all__ = ["layout_for_rank", "to_nhwc", "permutation"]

# PyTorch convention: channels right after the batch dimension.
_BY_RANK = {1: "C", 2: "NC", 3: "NCL", 4: "NCHW", 5: "NCTHW"}


def layout_for_rank(rank: int, hint: str | None = None) -> str | None:
    """Letters for a tensor of ``rank`` dims; ``hint`` (from a model card) wins when its length
    matches the rank. ``None`` for ranks without a conventional meaning (0, 6+)."""
    if hint and len(hint) == rank:
        return hint
    return _BY_RANK.get(rank)


def to_nhwc(layout: str) -> str:
    """The channels-last spelling of a channels-first layout (``NCHW`` → ``NHWC``,
    ``NCTHW`` → ``NTHWC``)."""
    if len(layout) < 3 or layout[1] != "C":
        raise ValueError(f"{layout!r} is not a channels-first layout")
    return layout[0] + layout[2:] + "C"


def permutation(src: str, dst: str) -> tuple[int, ...]:
    """The ``permute`` indices that turn a tensor in layout ``src`` into layout ``dst``."""
    if sorted(src) != sorted(dst):
        raise ValueError(f"layouts {src!r} and {dst!r} do not name the same dimensions")
    return tuple(src.index(letter) for letter in dst)
