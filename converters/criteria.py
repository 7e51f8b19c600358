"""What an artifact is held to, per precision and task, and where each number comes from.

=========  ================================================================  ===========================
precision  the check                                                         where the number comes from
=========  ================================================================  ===========================
fp32       ``max|artifact - source| <= Bound.measured(source32, source64)``  derived, per case and output:
           on every case and output (top-1 agreement follows from it and    8 x (the source's own
           is reported for classifiers)                                      float32-vs-float64 error +
                                                                             u x max|source|), see
                                                                             :mod:`edgekit.numerics`
fp16       the fp32 bound x ``U16 / U32`` (= 2**13); PSNR for super-         derived (float16 rounds
           resolution and decoders                                           2**13 times coarser); PSNR
                                                                             stated
int8       scores (sigmoid/softmax outputs, a classifier's softmax):        stated (below)
           max |Δscore| and top-1 agreement; super-resolution and
           decoders: PSNR; other outputs: error relative to max|source|
           and cosine
=========  ================================================================  ===========================

Why the fp32 bound is the source's own error: an artifact computes the same function in float32 on
another runtime, so it can be as far from the exact result as the source is (a different summation
order changes which terms round, not how many). A model whose sigmoid map is ~1e-4 everywhere has
errors of ~1e-7 that are 1e-3 of its output — and still as close as float32 allows; a relative or
cosine threshold fails it, the measured bound does not. A wrong layout, normalisation, colour order
or op moves outputs by 1e-3 of their range and more, far above a typical measured bound (1e-7 to
1e-5 of it); each verification records ``bound_of_range`` so a case whose bound is too wide to tell
(an ill-conditioned source) is visible.

Without a float64 run of the source (an ONNX graph the importer cannot read, a module that refuses
``.double()``) the bound is stated instead: :data:`NO_FLOAT64_REL` of ``max|source|``, recorded as
such.

A metric that means nothing on a case is reported as ``"not meaningful"`` there, neither passed nor
failed: cosine and PSNR of an output or reference without variance (constant within float32
rounding, e.g. all zeros). The max-abs bound still applies.

Example::

    >>> tol = tolerance_for("int8", "classify")
    >>> tol.score_abs, tol.top1
    (0.1, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.numerics import FACTOR, U16, U32, Bound

__all__ = ["Tolerance", "tolerance_for", "case_bound", "has_variance", "score_kind", "to_scores", "output_range",
           "NOT_MEANINGFUL", "NO_FLOAT64_REL", "SCORE_ABS", "FP16_SCALE"]

NOT_MEANINGFUL = "not meaningful"

FP16_SCALE = U16 / U32
"""float16's unit round-off over float32's (2**13): the fp16 bound is the measured fp32 bound times
this. An fp16 artifact rounds weights and activations to float16 where the float32 source rounds to
float32; through the same computation the error scales with the unit round-off."""

NO_FLOAT64_REL = {"fp32": 1e-4, "fp16": 2e-2}
"""Stated bounds (of max|source|) when no float64 run of the source exists: over the zoo the largest
fp32 error was 4.2e-5 of it (video_decoder_turbo, ill-conditioned), the largest fp16 one 1.2e-2."""

SCORE_ABS = 0.1
"""Stated: how far int8 may move a score (a sigmoid or softmax output, in [0, 1]). Detection and
classification thresholds sit at 0.25-0.5; a score moving by more than 0.1 changes decisions (0.18 →
0.31 crosses a 0.25 threshold). Measured: the tests' detector-like score map
(``tests/converters/user_models.py:score_map``) moves its scores by 0.035 in int8 (ONNX QDQ and
full-integer TFLite) calibrated in its input domain, and by 0.40 calibrated on inputs 40x that
range."""

# int8, stated (measured worst case over the zoo's verification cases, each bound below it with margin):
# quicksrnet_small PSNR 33.3 dB, sesr_m5 35.0 dB, espcn 28.9 dB (its tanh quantizes coarsely on
# noise input); non-score outputs: MobileNetV2 logits (random weights) cosine 0.9969.
INT8_PSNR = {"super-resolve": 28.0, "decode-video": 25.0}
INT8_REL, INT8_COSINE = 0.25, 0.98

HOW = {
    "measured": f"{FACTOR:g} x (the source's float32-vs-float64 error + u x max|source|), per case and output",
    "measured-fp16": f"the fp32 measured bound x U16/U32 = {FP16_SCALE:g} (float16 rounding), per case and output",
    "stated": "stated bounds for int8 (quantisation error is not rounding): see edgekit.converters.criteria",
}


@dataclass(frozen=True)
class Tolerance:
    """What an artifact of one precision and task is held to. ``bound``: ``measured`` (fp32),
    ``measured-fp16`` or ``stated`` (int8); ``max_rel`` a stated bound relative to max|source|
    (int8 outputs that are not scores); ``cosine`` a stated minimum (int8 non-score outputs);
    ``psnr_db`` the task metric of super-resolution and decoders; ``top1`` the fraction of decisive
    cases whose top-1 class must agree; ``score_abs`` how far int8 may move a score."""

    precision: str
    bound: str
    max_rel: float | None = None
    cosine: float | None = None
    psnr_db: float | None = None
    top1: float | None = None
    score_abs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"bound": self.bound, "how": HOW[self.bound]}
        for k in ("max_rel", "cosine", "psnr_db", "top1", "score_abs"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


def tolerance_for(precision: str, task: str) -> Tolerance:
    """The :class:`Tolerance` of ``precision`` (fp32 | fp16 | int8) for ``task``."""
    top1 = 1.0 if task == "classify" else None
    if precision == "fp32":
        return Tolerance("fp32", "measured", top1=top1)
    if precision == "fp16":
        # PSNR stated: measured fp16 artifacts reach >= 65.5 dB (SR) and 68.8 dB (decoders)
        psnr = {"super-resolve": 45.0, "decode-video": 40.0}.get(task)
        return Tolerance("fp16", "measured-fp16", psnr_db=psnr, top1=top1)
    if precision == "int8":
        return Tolerance("int8", "stated", max_rel=INT8_REL, cosine=INT8_COSINE, psnr_db=INT8_PSNR.get(task),
                         top1=top1, score_abs=SCORE_ABS)
    raise ValueError(f"unknown precision '{precision}'")


def case_bound(tol: Tolerance, ref32: np.ndarray, ref64: np.ndarray | None) -> Bound:
    """The absolute bound on one case of one output. ``ref32`` is the source's float32 output
    and ``ref64`` the float64 run of the same function (None when there is none)."""
    scale = float(np.abs(np.asarray(ref32, np.float64)).max(initial=0.0))
    if tol.bound in ("measured", "measured-fp16") and ref64 is not None:
        b = Bound.measured(ref32, ref64)
        return b if tol.bound == "measured" else b.scaled(FP16_SCALE, "float16 rounds 2**13 times coarser")
    if tol.bound in ("measured", "measured-fp16"):
        rel = NO_FLOAT64_REL[tol.precision]
        return Bound(rel * scale, f"stated: {rel:g} x max|source| {scale:.3g} (no float64 run of the source)")
    return Bound((tol.max_rel or 0.0) * scale, f"stated: {tol.max_rel:g} x max|source| {scale:.3g} (int8)")


def has_variance(a: np.ndarray) -> bool:
    """False when ``a`` is constant within float32 rounding of its magnitude (all zeros, or one
    value): cosine and PSNR say nothing about such an array."""
    x = np.asarray(a, np.float64)
    if x.size < 2 or not np.all(np.isfinite(x)):
        return x.size >= 2
    return float(np.ptp(x)) > FACTOR * U32 * float(np.abs(x).max())


def score_kind(refs: list[np.ndarray], task: str) -> str | None:
    """``"probability"`` when every case of an output lies in [0, 1] (a sigmoid or softmax
    output), ``"logits"`` for a classifier's 2-D output outside it (its softmax is the score),
    else None. Super-resolution and decoder outputs are images, judged by PSNR instead."""
    if task in ("super-resolve", "decode-video") or not refs:
        return None
    arrays = [np.asarray(r) for r in refs]
    if any(a.dtype.kind != "f" for a in arrays):
        return None
    if all(a.size and float(a.min()) >= 0.0 and float(a.max()) <= 1.0 for a in arrays):
        return "probability"
    if task == "classify" and all(a.ndim == 2 and a.shape[1] > 1 for a in arrays):
        return "logits"
    return None


def to_scores(a: np.ndarray, kind: str) -> np.ndarray:
    """The scores of an output of ``kind`` (:func:`score_kind`), in float64."""
    x = np.asarray(a, np.float64)
    if kind == "logits":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return x


# --------------------------------------------------------------------------------------------
# Judging one output: per case, then over cases


def output_range(ref: np.ndarray, kind: str | None) -> float:
    """The range an output's errors are measured against: 1 for a probability (it lives in
    [0, 1], whatever its values on a case: a sigmoid map of 1e-4 is still a score), else
    max|reference|."""
    return 1.0 if kind == "probability" else float(np.abs(np.asarray(ref, np.float64)).max(initial=0.0))


def case_metrics(metrics: dict[str, Any], ref: np.ndarray, out: np.ndarray, bound: Bound | None, tol: Tolerance,
                 kind: str | None) -> dict[str, Any]:
    """One case of one output: ``metrics`` (from ``verify.compare``, with ``case`` and maybe
    ``psnr_db``) with the bound (and its fraction of :func:`output_range`), cosine and PSNR marked
    :data:`NOT_MEANINGFUL` where the reference or the output has no variance, and for int8 scores
    (``kind``) the largest score change."""
    m = dict(metrics)
    if bound is not None:
        rng = output_range(ref, kind)
        m["bound"], m["bound_how"] = bound.atol, bound.how
        m["bound_of_range"] = bound.atol / rng if rng > 0 else 0.0
    if not (has_variance(ref) and has_variance(out)):
        m["cosine"] = NOT_MEANINGFUL
        if "psnr_db" in m:
            m["psnr_db"] = NOT_MEANINGFUL
    if kind is not None and tol.score_abs is not None:
        r, o = to_scores(ref, kind), to_scores(out, kind)
        d = np.abs(o - r)
        if d.size:
            idx = np.unravel_index(int(np.argmax(d)), d.shape)
            m["score"] = {"kind": kind, "max_delta": float(d[idx]), "index": [int(i) for i in idx],
                          "reference": float(r[idx]), "artifact": float(o[idx])}
    return m


def _ratio(m: dict[str, Any]) -> float:
    """How much of its bound a case used (inf when over a zero bound)."""
    b = m.get("bound")
    if b is None:
        return 0.0
    return m["max_abs"] / b if b > 0 else (0.0 if m["max_abs"] == 0 else float("inf"))


_CASE_KEYS = ("case", "max_abs", "bound", "cosine", "psnr_db")


def merge_cases(per_case: list[dict[str, Any]]) -> dict[str, Any]:
    """One output's summary over its cases: the case that used the most of its bound (its worst
    element and bound), the worst meaningful cosine and PSNR (or :data:`NOT_MEANINGFUL` when no case
    had one), the largest score change, the cases where a metric meant nothing, and a short record
    per case."""
    worst = max(per_case, key=lambda m: (_ratio(m), m["max_abs"]))
    out: dict[str, Any] = {
        "max_abs": max(m["max_abs"] for m in per_case), "max_rel": max(m["max_rel"] for m in per_case),
        "mean_abs": max(m["mean_abs"] for m in per_case), "ref_max_abs": max(m["ref_max_abs"] for m in per_case),
        "worst": worst["worst"], "worst_case": worst["case"],
    }
    if worst.get("bound") is not None:
        out.update(bound=worst["bound"], bound_how=worst["bound_how"], bound_used=_ratio(worst),
                   bound_of_range=max(m.get("bound_of_range", 0.0) for m in per_case))
    for key in ("cosine", "psnr_db"):
        vals = [m for m in per_case if key in m and m[key] != NOT_MEANINGFUL]
        if any(key in m for m in per_case):
            best = min(vals, key=lambda m: m[key]) if vals else None
            out[key] = best[key] if best else NOT_MEANINGFUL
            out[key.replace("_db", "") + "_case"] = best["case"] if best else None
            if best is not None and "worst_frame" in best:
                out["worst_frame"] = best["worst_frame"]
    nm = {k: [m["case"] for m in per_case if m.get(k) == NOT_MEANINGFUL] for k in ("cosine", "psnr_db")}
    nm = {k: v for k, v in nm.items() if v}
    if nm:
        out["not_meaningful"] = nm
    scores = [m for m in per_case if "score" in m]
    if scores:
        s = max(scores, key=lambda m: m["score"]["max_delta"])
        out["score"] = {**s["score"], "case": s["case"]}
    out["cases"] = [{k: m[k] for k in _CASE_KEYS if k in m} for m in per_case]
    return out


def failures(outputs: dict[str, dict[str, Any]], tol: Tolerance) -> list[str]:
    """One line per check an output missed, naming the output, the case, the element and the
    bound with its derivation."""
    lines = []
    for name, m in outputs.items():
        if m.get("bound") is not None and m["bound_used"] > 1.0 and "score" not in m:
            w = m["worst"]
            lines.append(f"output '{name}' max abs error {_worst_error(m):.3g} at {w['index']} on {m['worst_case']} "
                         f"(artifact {w['artifact']:.7g} vs source {w['reference']:.7g}) > bound {m['bound']:.3g} "
                         f"= {m['bound_how']}")
        s = m.get("score")
        if s is not None and tol.score_abs is not None and s["max_delta"] > tol.score_abs:
            lines.append(f"output '{name}': {tol.precision} moves a score from {s['reference']:.3g} to "
                         f"{s['artifact']:.3g} at {s['index']} on {s['case']} (|Δscore| {s['max_delta']:.2g} > "
                         f"{tol.score_abs:g})")
        elif s is None and tol.cosine is not None and isinstance(m.get("cosine"), float) and m["cosine"] < tol.cosine:
            lines.append(f"output '{name}' cosine {m['cosine']:.6f} < {tol.cosine} on {m['cosine_case']}")
        if tol.psnr_db is not None and isinstance(m.get("psnr_db"), float) and m["psnr_db"] < tol.psnr_db:
            lines.append(f"output '{name}' PSNR {m['psnr_db']:.1f} dB < {tol.psnr_db} dB on {m['psnr_case']}")
    return lines


def _worst_error(m: dict[str, Any]) -> float:
    w = m["worst"]
    return abs(w["artifact"] - w["reference"])


def wide_bounds(outputs: dict[str, dict[str, Any]], limit: float = 1e-3) -> list[str]:
    """Outputs whose bound on some case reaches ``limit`` of the output's range
    (:func:`output_range`; an ill-conditioned source): there, an error that size cannot be told
    from rounding. Notes, not failures."""
    return [f"output '{name}': the bound reaches {m['bound_of_range']:.2g} of its range (the source's own "
            f"float32 error is that large), so errors below it cannot be told from rounding"
            for name, m in outputs.items() if m.get("bound_of_range", 0.0) >= limit]


INT8_HINT = ("calibrate on inputs like the model's (--calibration DIR of images or FILE.npy); if the output still "
             "moves, it needs more than int8 activations (int16 activations, or the layers before it kept in "
             "float); --precision fp16 keeps the whole model float")
