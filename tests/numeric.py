"""The test suite's one way to compare numbers: bounds derived from the computation.

Every numeric test compares with :func:`assert_close` against an :class:`edgekit.numerics.Bound`
(the module's docstring has the table of derivations). For a torch source, :func:`fp32_bound`
measures the source's own float32 error against its float64 run; an exact rewrite or a pure layout
change is held to ``Bound.exact()``.

The suite runs under two settings (``.ci/run`` does both): the host's defaults, and
``EDGEKIT_THREADS=1 OMP_NUM_THREADS=1 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` for the
tests marked ``numeric``: other thread splits and other CPU kernels round differently, and a
bound that holds under one only must fail here, not on a user's machine. :data:`THREADS` is the
thread count tests pass to bare runtimes (onnxruntime sessions, LiteRT interpreters), so they vary
with the setting too.

This folder is on ``sys.path`` (``pythonpath`` in pyproject.toml): ``from numeric import ...``
works from every test folder.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np

from edgekit.numerics import FACTOR, Bound, worst_error
from edgekit.runtimes.host import default_threads

__all__ = ["Bound", "THREADS", "assert_close", "assert_matches", "assert_same_function", "assert_verified", "fp32_bound",
           "fp32_bounds", "bounds_over", "float64_outputs", "worst_error"]

THREADS = default_threads()
"""Threads for bare runtimes in tests: ``EDGEKIT_THREADS`` when set, else the physical cores."""


def assert_close(actual: Any, expected: Any, bound: Bound, what: str = "output") -> float:
    """Fail naming the worst element, both values, the bound and its derivation; return the
    largest absolute error (for tests that also report it)."""
    msg = bound.check(actual, expected, what)
    assert msg is None, msg
    return worst_error(actual, expected)[0]


def _outputs(y: Any) -> list[Any]:
    if isinstance(y, dict):
        return list(y.values())
    return list(y) if isinstance(y, (tuple, list)) else [y]


def float64_outputs(fn: Callable, *inputs: Any) -> list[np.ndarray]:
    """``fn`` run in float64: a torch module (copied, then ``.double()``) or a function of tensors,
    on the floating inputs cast to float64 (numpy arrays become tensors)."""
    import torch

    fn64 = copy.deepcopy(fn).double() if isinstance(fn, torch.nn.Module) else fn
    xs = [torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
    xs = [x.double() if torch.is_tensor(x) and x.is_floating_point() else x for x in xs]
    with torch.no_grad():
        return [o.detach().numpy() for o in _outputs(fn64(*xs))]


def fp32_bounds(fn: Callable, *inputs: Any, factor: float = FACTOR) -> list[Bound]:
    """One measured bound per output of ``fn`` on ``inputs``: ``factor`` × its float32 result's
    error against its float64 result (plus the output-rounding floor)."""
    import torch

    xs = [torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
    with torch.no_grad():
        y32 = [o.detach().numpy() for o in _outputs(fn(*xs))]
    return [Bound.measured(a, b, factor) for a, b in zip(y32, float64_outputs(fn, *inputs))]


def fp32_bound(fn: Callable, *inputs: Any, factor: float = FACTOR) -> Bound:
    """:func:`fp32_bounds` for a function of one output (the loosest bound when it has several)."""
    return Bound.largest(fp32_bounds(fn, *inputs, factor=factor))


def bounds_over(fn: Callable, cases: Sequence[Sequence[Any]], factor: float = FACTOR) -> Bound:
    """The loosest measured bound of ``fn`` over several input cases."""
    return Bound.largest([fp32_bound(fn, *c, factor=factor) for c in cases])


def assert_matches(actual: Any, fn: Callable, *inputs: Any, what: str = "output", factor: float = FACTOR) -> float:
    """``actual`` (one array, or a list for a function of several outputs) equals ``fn(*inputs)``
    within ``fn``'s own measured float32 bound on those inputs: the usual check of an artifact or
    a rewritten graph against its torch source."""
    import torch

    xs = [torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
    with torch.no_grad():
        want = [o.detach().numpy() for o in _outputs(fn(*xs))]
    want64 = float64_outputs(fn, *inputs)
    got = _outputs(actual) if isinstance(actual, (tuple, list, dict)) else [actual]
    assert len(got) == len(want), f"{what}: {len(got)} outputs, the source has {len(want)}"
    worst = 0.0
    for i, (g, w, w64) in enumerate(zip(got, want, want64)):
        label = what if len(want) == 1 else f"{what}[{i}]"
        worst = max(worst, assert_close(g, w, Bound.measured(w, w64, factor), label))
    return worst


def assert_same_function(actual_fn: Callable, expected_fn: Callable, *inputs: Any, what: str = "output",
                         factor: float = FACTOR) -> float:
    """Two torch implementations of one function (a rewritten graph module and its source) agree
    on ``inputs`` within the looser of their two measured bounds. Measuring both sides matters
    where they are conditioned differently: a normalisation over a constant group is exact in
    PyTorch's fused kernel but amplifies the rounding of the mean by 1/sqrt(eps) when written
    out op by op."""
    import torch

    xs = [torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x for x in inputs]
    with torch.no_grad():
        got = [o.detach().numpy() for o in _outputs(actual_fn(*xs))]
        want = [o.detach().numpy() for o in _outputs(expected_fn(*xs))]
    got64, want64 = float64_outputs(actual_fn, *inputs), float64_outputs(expected_fn, *inputs)
    assert len(got) == len(want), f"{what}: {len(got)} outputs, the source has {len(want)}"
    worst = 0.0
    for i, (g, w, g64, w64) in enumerate(zip(got, want, got64, want64)):
        bound = Bound.largest([Bound.measured(g, g64, factor), Bound.measured(w, w64, factor)])
        worst = max(worst, assert_close(g, w, bound, what if len(want) == 1 else f"{what}[{i}]"))
    return worst


def assert_verified(verification: dict, what: str = "artifact") -> None:
    """A verification recorded by ``edgekit convert`` (a manifest artifact's ``verification``)
    passed, and every output's recorded metrics lie within what the product recorded beside them:
    each case's max-abs error within that case's bound (for fp32 the source's measured
    float32-vs-float64 bound), and the stated thresholds of ``verification["tolerance"]``
    (``cosine``, ``psnr_db``, ``score_abs``, ``top1``) where present and meaningful. Tests check this
    rather than typing thresholds of their own, which would drift from the product's criteria."""
    v = verification
    assert v.get("status") == "passed", f"{what}: verification {v.get('status')}: {v.get('reason')}"
    tol = v["tolerance"]
    if "top1" in tol and "top1_agreement" in v:
        assert v["top1_agreement"] >= tol["top1"], f"{what}: top-1 agreement {v['top1_agreement']} < {tol['top1']}"
    for name, m in v.get("outputs", {}).items():
        for case in m["cases"]:
            if case.get("bound") is not None:
                assert case["max_abs"] <= case["bound"], f"{what}: output '{name}' on {case['case']}: {case}"
            if "psnr_db" in tol and isinstance(case.get("psnr_db"), float):
                assert case["psnr_db"] >= tol["psnr_db"], f"{what}: output '{name}' PSNR on {case['case']}: {case}"
        if "score" in m:
            assert m["score"]["max_delta"] <= tol["score_abs"], f"{what}: output '{name}' score {m['score']}"
        elif "cosine" in tol and isinstance(m.get("cosine"), float):
            assert m["cosine"] >= tol["cosine"], f"{what}: output '{name}' cosine {m['cosine']!r} < {tol['cosine']}"
