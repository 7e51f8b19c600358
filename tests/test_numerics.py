"""edgekit.numerics: the derived float32 bounds every numeric test uses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.numerics import FACTOR, U16, U32, Bound, worst_error

pytestmark = pytest.mark.numeric


def test_measured_bound_covers_other_blockings_of_one_reduction():
    """What a thread split or another SIMD width does to a reduction: the same terms, summed in
    other blocks. The bound measured on one blocking holds for the others."""
    for seed in range(50):
        x = np.random.default_rng(seed).standard_normal(4096).astype(np.float32)
        exact = x.astype(np.float64).sum()
        ref32 = x.sum(dtype=np.float32)  # numpy's pairwise order
        b = Bound.measured(ref32, exact)
        for blocks in (2, 8, 16, 64):  # threads x lanes
            other = np.float32(0)
            for part in x.reshape(blocks, -1).sum(axis=1, dtype=np.float32)[::-1]:
                other = np.float32(other + part)
            assert b.check(other, ref32, f"seed {seed}, {blocks} blocks") is None


def test_measured_bound_is_factor_times_own_error_plus_floor():
    ref64 = np.array([1.0, -2.0, 3.0])
    ref32 = ref64 + np.array([0.0, 1e-7, 0.0])
    b = Bound.measured(ref32, ref64)
    assert b.atol == pytest.approx(FACTOR * (1e-7 + U32 * 3.0))
    assert "float32-vs-float64 error 1e-07" in b.how


def test_measured_bound_never_drops_below_the_output_rounding_floor():
    ref = np.array([0.5, 4.0])
    b = Bound.measured(ref, ref)  # a float32 run that happens to be exact
    assert b.atol == pytest.approx(FACTOR * U32 * 4.0) and b.atol > 0


def test_exact_bound_fails_on_one_ulp():
    y = np.ones(5, np.float32)
    z = y.copy()
    z[3] = np.nextafter(np.float32(1), np.float32(2))
    assert Bound.exact().check(y, y) is None
    msg = Bound.exact().check(z, y, "out")
    assert msg.startswith("out: max abs error") and "[3]" in msg and "exact" in msg


def test_roundoff_grows_with_reduction_and_depth_and_unit():
    a, b = Bound.roundoff(2.0, 100, 1), Bound.roundoff(2.0, 400, 3)
    assert a.atol == pytest.approx(FACTOR * U32 * 11 * 2.0)
    assert b.atol > a.atol
    assert Bound.roundoff(2.0, 100, 1, unit=U16).atol == pytest.approx(a.atol * U16 / U32)
    assert "u16" in Bound.roundoff(1.0, unit=U16).how


def test_check_names_worst_element_values_bound_and_derivation():
    want = np.zeros((2, 3))
    got = want.copy()
    got[1, 2] = 0.5
    msg = Bound(0.1, "a stated reason").check(got, want, "logits")
    assert msg == ("logits: max abs error 0.5 at [1, 2] (0.5 vs reference 0) > bound 0.1 = a stated reason")


def test_shape_mismatch_and_non_finite_values():
    assert "shape [3] differs" in Bound(1.0, "x").check(np.zeros(3), np.zeros(2))
    nan_inf = np.array([np.nan, np.inf, 1.0])
    assert Bound.exact().check(nan_inf, nan_inf.copy()) is None  # same non-finite values are equal
    err, idx = worst_error(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert math.isinf(err) and idx == (0,)
    assert Bound(1e9, "huge").check(np.array([np.inf]), np.array([1.0])) is not None


def test_quantised_and_scaled_and_largest():
    q = Bound.quantised(1.0, "uint8 pixels")
    assert q.check(np.array([10, 11]), np.array([11, 11])) is None
    assert q.check(np.array([9]), np.array([11])) is not None
    s = Bound(2.0, "base").scaled(3, "two ends")
    assert s.atol == 6.0 and "two ends" in s.how
    assert Bound.largest([Bound(1.0, "a"), Bound(3.0, "b")]).how == "b"


def test_torch_tensors_are_accepted_without_importing_torch_here():
    torch = pytest.importorskip("torch")
    assert Bound.exact().check(torch.ones(2), np.ones(2)) is None
