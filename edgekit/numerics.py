"""How far apart two float32 computations of one function may be, derived from the computation.

Two float32 implementations of the same function — PyTorch and onnxruntime, a graph before and
after an exact rewrite, one thread and two, AVX2 and AVX-512 kernels — differ by rounding alone.
Each is off from the exact result by an amount that grows with the length of its reductions, the
depth of the computation and the function's conditioning (a normalisation over a near-constant
channel amplifies it), and which of the two is further off depends on the CPU's kernels (blocking,
direct or Winograd convolution) and on how the work is split across threads. A tolerance typed in
after a run on one machine sits inside that noise on the next one. The bounds here are derived:

================================  ==========================================  ==================================
bound                             atol (absolute, on every element)           use it when
================================  ==========================================  ==================================
``Bound.exact()``                 0                                           pure data movement: transpose,
                                                                              reshape, pixel shuffle, layout
``Bound.measured(ref32, ref64)``  ``FACTOR * max|ref32 - ref64|`` + floor     a float64 run of the same
                                                                              function exists (a torch module
                                                                              in ``.double()``)
``Bound.roundoff(scale, n, d)``   ``FACTOR * u * (d * sqrt(n) + 1) * scale``  no float64 run: ``n`` the longest
                                                                              reduction, ``d`` the number of
                                                                              rounding steps in a chain
``Bound.quantised(step)``         ``step`` (one quantisation step)            outputs rounded to integers
                                                                              (uint8 pixels): float32 noise
                                                                              flips a rounding by one step
================================  ==========================================  ==================================

``u = 2**-24`` is float32's unit round-off. The floor of every bound but ``exact`` is
``FACTOR * u * scale``, ``scale = max|reference|``: the final rounding of each output to float32,
which no implementation avoids.

Why measuring one side bounds the difference: ``|A - B| <= |A - exact| + |B - exact|``. The float64
run stands in for the exact result (its own error is 2**-29 times smaller), so ``max|A32 - A64|`` is
A's error. B computes the same function at the same precision: a different summation order or
blocking changes *which* terms round, not how many, so its error is of the same order.
:data:`FACTOR` = 8 covers both sides and the spread between kernels: over the zoo and three small
models, PyTorch, onnxruntime (1 and 2 threads), LiteRT/XNNPACK (1 and 2 threads) and the ONNX
importer, with AVX-512 and with AVX2 kernels, the largest ratio of another implementation's error
to the measured side's was 4.5 (XNNPACK's GELU and softmax against PyTorch's), and the bound
exceeded the worst case ``eA + eB`` at least 2.06 times (``benchmarks/fp32_spread.py``;
``docs/testing.md``). A wrong op, layout or normalisation is off by 1e-3 of the output's range and
more, thousands of times above a typical fp32 bound (~1e-6 of it).

Example::

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> b = Bound.measured(np.float32(x.sum(dtype=np.float32)), x.sum())
    >>> b.check(np.float32(x[::-1].sum(dtype=np.float32)), x.sum()) is None   # another order
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["U32", "U16", "FACTOR", "Bound", "worst_error"]

U32 = 2.0 ** -24
"""Unit round-off of float32: the largest relative error of one rounding."""

U16 = 2.0 ** -11
"""Unit round-off of float16 (weights and activations of an fp16 artifact)."""

FACTOR = 8.0
"""How many times one implementation's measured float32 error the difference of two may reach
(2 for the two sides × 4 for the spread between CPU kernels; see the module docstring)."""


def _f64(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _scale(reference: Any) -> float:
    r = _f64(reference)
    finite = r[np.isfinite(r)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def worst_error(actual: Any, expected: Any) -> tuple[float, tuple[int, ...]]:
    """The largest ``|actual - expected|`` and its index. Equal non-finite values (the same inf,
    NaN against NaN) count as equal; any other non-finite difference is ``inf``."""
    a, e = _f64(actual), _f64(expected)
    if a.shape != e.shape:
        raise ValueError(f"shape {list(a.shape)} differs from the reference's {list(e.shape)}")
    if a.size == 0:
        return 0.0, ()
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(a - e))
    err = np.nan_to_num(err, nan=math.inf)
    idx = np.unravel_index(int(np.argmax(err)), err.shape)
    return float(err[idx]), tuple(int(i) for i in idx)


@dataclass(frozen=True)
class Bound:
    """An absolute bound on ``|actual - expected|`` and how it was derived (``how`` is printed
    beside a failure, so a reader sees where the number came from)."""

    atol: float
    how: str

    # -- the derivations ------------------------------------------------------------------------
    @classmethod
    def exact(cls, how: str = "exact: data movement only") -> "Bound":
        return cls(0.0, how)

    @classmethod
    def measured(cls, ref32: Any, ref64: Any, factor: float = FACTOR) -> "Bound":
        """``factor`` × the float32 result's own error against the float64 result, plus the
        floor (``factor`` × u × max|ref64|)."""
        own, _ = worst_error(ref32, ref64)
        scale = _scale(ref64)
        atol = factor * (own + U32 * scale)
        return cls(atol, f"{factor:g} x (float32-vs-float64 error {own:.3g} + u x max|ref| {scale:.3g})")

    @classmethod
    def roundoff(cls, scale: float, reduction: int = 1, depth: int = 1, factor: float = FACTOR,
                 unit: float = U32) -> "Bound":
        """A-priori bound when no float64 run exists: each of ``depth`` rounding steps adds about
        ``sqrt(reduction)`` units of round-off of ``scale`` (random-walk accumulation over a
        reduction of length ``reduction``), plus the output's own rounding. ``unit`` is the
        precision's unit round-off (:data:`U16` for float16 arithmetic)."""
        atol = factor * unit * (depth * math.sqrt(max(reduction, 1)) + 1) * float(scale)
        name = "u16" if unit == U16 else ("u" if unit == U32 else f"{unit:.3g}")
        return cls(atol, f"{factor:g} x {name} x ({depth} x sqrt({reduction}) + 1) x scale {float(scale):.3g}")

    @classmethod
    def quantised(cls, step: float = 1.0, what: str = "integer outputs") -> "Bound":
        return cls(float(step), f"one quantisation step of {what}: float32 noise may flip a rounding")

    @classmethod
    def largest(cls, bounds: Sequence["Bound"]) -> "Bound":
        """The loosest of several bounds (one bound for several cases of one output)."""
        return max(bounds, key=lambda b: b.atol)

    def scaled(self, k: float, why: str) -> "Bound":
        """This bound times ``k``, for a stated reason (e.g. the two float32 ends of a chain)."""
        return Bound(self.atol * k, f"{k:g} x [{self.how}] ({why})")

    # -- use --------------------------------------------------------------------------------------
    def check(self, actual: Any, expected: Any, what: str = "output") -> str | None:
        """``None`` when every element is within the bound, else one line naming the worst element,
        both values, the bound and how it was derived."""
        try:
            err, idx = worst_error(actual, expected)
        except ValueError as e:
            return f"{what}: {e}"
        if err <= self.atol:
            return None
        a, e = _f64(actual), _f64(expected)
        return (f"{what}: max abs error {err:.3g} at {list(idx)} ({a[idx]:.7g} vs reference {e[idx]:.7g}) "
                f"> bound {self.atol:.3g} = {self.how}")
