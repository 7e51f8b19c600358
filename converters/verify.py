"""Verification: does an artifact compute what its source computes?

Every artifact is opened with :func:`edgekit.load` (the runtime users will run) and fed the
same cases as the source: several seeded random inputs and, for image models, a real photo
(:func:`edgekit.assets.load_photo`, resized to the input size, normalised per the model
card). Per output it reports the maximum absolute error (and where: case, element index,
both values), the maximum error relative to the reference's largest magnitude, the cosine
similarity, and the task metric: top-1 agreement for classifiers, PSNR of artifact vs source
for super-resolution, per-frame PSNR for video decoders.

Tolerances depend on precision and task (:data:`TOLERANCES`), set from measurements on this
repository's zoo (numbers beside the table): fp32 artifacts agree with PyTorch to ~1e-6 of
the output's range, fp16 ones to ~1e-3. The bounds leave a wide margin over what was measured
while still catching a wrong layout, normalisation, colour order or op (errors ≥ 1e-2). An
fp32 artifact that misses them gets a second opinion against the source run in float64 (see
:func:`verify_artifact`), so an ill-conditioned model is not reported as a broken conversion.

A CoreML artifact can only run on macOS. Elsewhere its spec is checked (it loads; inputs and
outputs have the names and shapes of the source) and the verification is recorded as
``skipped`` with the reason — never as a pass that did not run.

Example::

    >>> m = compare(ref, out)                        # doctest: +SKIP
    >>> m["max_abs"], m["worst"]["index"]            # doctest: +SKIP
    (3.2e-07, [0, 281])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgekit.converters.preprocess import FoldSpec, normalise
from edgekit.preprocess import Preprocess

__all__ = ["Tolerance", "TOLERANCES", "Case", "compare", "psnr", "top1", "tolerance_for", "make_cases",
           "verify_artifact", "check_coreml_spec", "verify_stage", "metric_line"]


@dataclass(frozen=True)
class Tolerance:
    """Bounds an artifact must meet. ``max_rel``: the largest absolute error divided by the
    reference's largest magnitude (so the bound scales with the output, and an all-zero
    reference demands an all-zero output); ``psnr_db`` applies to super-resolution and decoders (per frame); ``top1`` is the fraction
    of decisive cases (top-2 margin above the error bound) whose top-1 class must agree."""

    max_rel: float
    cosine: float
    psnr_db: float | None = None
    top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# (precision, task) -> Tolerance; "*" is the fallback task. Measured over the zoo (onnx and
# tflite, small inputs, classifiers with non-trivial BatchNorm statistics), worst case:
#   fp32: max_rel 3.7e-6 (4.2e-5 for video_decoder_turbo, whose normalisation over near-constant
#         channels amplifies rounding: its own float32 result is 1e-5 from float64), 1 - cos 7e-12,
#         PSNR ≥ 123 dB;
#   fp16: max_rel 7.4e-4 (classifiers), 1.8e-3 (SR), 1.2e-2 (video decoders), 1 - cos 2.7e-6,
#         PSNR ≥ 65.5 dB (SR), 68.8 dB (decoders).
# The bounds leave ≥ 4× (mostly 10–100×) margin; a wrong normalisation, colour order, layout
# or op gives errors of 1e-2 and more of the output's range.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("fp32", "*"): Tolerance(max_rel=1e-4, cosine=0.999999),
    ("fp32", "classify"): Tolerance(max_rel=1e-4, cosine=0.999999, top1=1.0),
    ("fp32", "super-resolve"): Tolerance(max_rel=1e-4, cosine=0.999999, psnr_db=80.0),
    ("fp32", "decode-video"): Tolerance(max_rel=1e-4, cosine=0.999999, psnr_db=80.0),
    ("fp16", "*"): Tolerance(max_rel=2e-2, cosine=0.9999),
    ("fp16", "classify"): Tolerance(max_rel=1e-2, cosine=0.9999, top1=1.0),
    ("fp16", "super-resolve"): Tolerance(max_rel=2e-2, cosine=0.9999, psnr_db=45.0),
    ("fp16", "decode-video"): Tolerance(max_rel=5e-2, cosine=0.9999, psnr_db=40.0),
    # int8 (full-integer, photo-calibrated; verified without the standard-normal case, which
    # saturates by design). Measured worst case over the verification cases: quicksrnet_small
    # PSNR 33.3 dB, sesr_m5 35.0 dB, espcn 28.9 dB (its tanh quantizes coarsely, on noise input);
    # MobileNetV2 (random weights) cosine 0.9969.
    ("int8", "*"): Tolerance(max_rel=0.25, cosine=0.98),
    ("int8", "classify"): Tolerance(max_rel=0.25, cosine=0.98),
    ("int8", "super-resolve"): Tolerance(max_rel=0.25, cosine=0.99, psnr_db=28.0),
    ("int8", "decode-video"): Tolerance(max_rel=0.25, cosine=0.98, psnr_db=25.0),
}


def tolerance_for(precision: str, task: str) -> Tolerance:
    return TOLERANCES.get((precision, task)) or TOLERANCES[(precision, "*")]


# --------------------------------------------------------------------------------------------
# Comparison helpers: they return metrics and name the worst element, never a bare bool.


def compare(reference: np.ndarray, output: np.ndarray, name: str = "output") -> dict[str, Any]:
    """Error metrics of ``output`` against ``reference`` (same shape), in float64.

    ``max_rel`` is ``max_abs / max|reference|`` (element-wise relative error is meaningless
    near zero). ``worst`` holds the index of the largest absolute error and both values there.
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"{name}: artifact output has shape {list(out.shape)}, the source's is {list(ref.shape)}")
    if not np.all(np.isfinite(out)):
        bad = np.argwhere(~np.isfinite(out))[0]
        return {"max_abs": math.inf, "max_rel": math.inf, "mean_abs": math.inf, "cosine": -1.0,
                "ref_max_abs": float(np.abs(ref).max(initial=0.0)),
                "worst": {"index": [int(i) for i in bad], "reference": float(ref[tuple(bad)]),
                          "artifact": float(out[tuple(bad)])}}
    diff = np.abs(out - ref)
    flat = int(np.argmax(diff)) if diff.size else 0
    idx = np.unravel_index(flat, diff.shape) if diff.size else ()
    scale = float(np.abs(ref).max(initial=0.0))
    denom = float(np.linalg.norm(ref) * np.linalg.norm(out))
    cosine = float(np.dot(ref.ravel(), out.ravel()) / denom) if denom > 0 else (1.0 if not diff.any() else 0.0)
    max_abs = float(diff.max(initial=0.0))
    return {
        "max_abs": max_abs,
        "max_rel": max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf),
        "mean_abs": float(diff.mean()) if diff.size else 0.0,
        "cosine": cosine,
        "ref_max_abs": scale,
        "worst": {"index": [int(i) for i in idx], "reference": float(ref[idx]) if diff.size else 0.0,
                  "artifact": float(out[idx]) if diff.size else 0.0},
    }


def psnr(reference: np.ndarray, output: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB of ``output`` against ``reference`` for signals of range ``peak``
    (``inf`` when identical)."""
    mse = float(np.mean((np.asarray(output, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def frame_psnr(reference: np.ndarray, output: np.ndarray, peak: float, time_axis: int = 2) -> list[float]:
    """PSNR of each frame (index along ``time_axis``) of a video tensor."""
    ref = np.moveaxis(np.asarray(reference), time_axis, 0)
    out = np.moveaxis(np.asarray(output), time_axis, 0)
    return [psnr(r, o, peak) for r, o in zip(ref, out)]


def top1(reference: np.ndarray, output: np.ndarray, margin: float) -> tuple[int, int]:
    """(agreeing, decisive) rows: rows whose reference top-2 margin exceeds ``margin`` are
    decisive; of those, how many have the same arg-max in ``output``."""
    ref = np.asarray(reference, np.float64).reshape(reference.shape[0], -1)
    out = np.asarray(output, np.float64).reshape(output.shape[0], -1)
    agree = decisive = 0
    for r, o in zip(ref, out):
        if r.size < 2:
            continue
        top2 = np.partition(r, -2)[-2:]
        if top2[1] - top2[0] <= margin:
            continue
        decisive += 1
        agree += int(np.argmax(r) == np.argmax(o))
    return agree, decisive


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    """One verification input: ``source`` arrays feed the source, ``artifact`` arrays the
    artifact (they differ only when pre-processing is folded: raw pixels vs normalised)."""

    name: str
    source: list[np.ndarray]
    artifact: list[np.ndarray]


IMAGE_PHOTO = {"classify": "chelsea", "super-resolve": "astronaut"}


def make_cases(input_shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype], *, task: str,
               preprocess: dict[str, Any], fold: FoldSpec | None, example: Sequence[np.ndarray] | None = None,
               n_random: int = 3, seed: int = 1234, normal: bool = True) -> list[Case]:
    """Seeded random cases, the example inputs, and a photo for image models.

    Without folding, random inputs are uniform in the card's value range (``[0, 1)`` when
    unknown) plus, with ``normal``, one standard-normal case (negative values reach PReLU/ReLU
    branches; an int8 artifact saturates there by design, so it is verified without it); with
    folding they are random pixels 0..255 and the source gets them normalised.
    """
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    lo, hi = preprocess.get("value_range") or (0.0, 1.0)
    if fold is not None:
        shape = input_shapes[0]
        for i in range(n_random):
            px = rng.integers(0, 256, shape).astype(np.uint8)
            cases.append(Case(f"random-pixels-{i}", [normalise(px, fold)], [_layout(px.astype(np.float32), fold)]))
    else:
        if example is not None:
            cases.append(Case("example", [np.asarray(a) for a in example], [np.asarray(a) for a in example]))
        for i in range(n_random):
            arrays = []
            for shape, dt in zip(input_shapes, dtypes):
                if np.issubdtype(dt, np.floating):
                    a = rng.standard_normal(shape) if (normal and i == n_random - 1) else rng.random(shape) * (hi - lo) + lo
                else:
                    a = rng.integers(0, 2, shape)
                arrays.append(a.astype(dt))
            cases.append(Case("random-normal" if (normal and i == n_random - 1) else f"random-{i}", arrays, arrays))
    photo = _photo_case(input_shapes, task, preprocess, fold)
    if photo is not None:
        cases.append(photo)
    return cases


def _layout(px_nchw: np.ndarray, fold: FoldSpec | None) -> np.ndarray:
    if fold is not None and fold.input_layout == "NHWC":
        return np.ascontiguousarray(px_nchw.transpose(0, 2, 3, 1))
    return px_nchw


def _photo_case(input_shapes: Sequence[tuple[int, ...]], task: str, preprocess: dict[str, Any],
                fold: FoldSpec | None) -> Case | None:
    """A real photo at the input size, when the model takes one RGB image (N, 3, H, W): its
    geometry (crop and resize) and normalisation are :mod:`edgekit.preprocess`'s, as ``edgekit run``
    and the demo apply them."""
    if len(input_shapes) != 1 or len(input_shapes[0]) != 4 or input_shapes[0][1] != 3:
        return None
    n = input_shapes[0][0]
    name = IMAGE_PHOTO.get(task, "coffee")
    try:
        from edgekit.assets import load_photo

        rgb = load_photo(name)
    except Exception:  # noqa: BLE001 - no decoder installed: verify on random inputs only
        return None
    px = np.repeat(photo_pixels(rgb, input_shapes[0], preprocess, task)[None], n, axis=0)
    source = normalise(px, fold if fold is not None else FoldSpec.from_preprocess(preprocess))
    return Case(f"photo:{name}", [source], [_layout(px.astype(np.float32), fold) if fold is not None else source])


def photo_pixels(rgb: np.ndarray, shape: Sequence[int], preprocess: dict[str, Any], task: str | None) -> np.ndarray:
    """An RGB photo at an NCHW input's size as (3, H, W) uint8: steps 2–3 of
    :mod:`edgekit.preprocess` (the task's resize policy, area/bilinear resize)."""
    spec = Preprocess.for_input(tuple(shape), "float32", "NCHW", preprocess, task)
    img, _ = spec.geometry(rgb)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


# --------------------------------------------------------------------------------------------
# Verifying an artifact


def _as_input(a: np.ndarray, dtype: str | None) -> np.ndarray:
    """An integer case for an artifact that takes a narrower integer (int64 token ids for an
    int32 input, as int64_to_int32 and litert-torch make it), when every value fits."""
    want = np.dtype(dtype) if dtype else a.dtype
    if a.dtype != want and a.dtype.kind in "iu" and want.kind in "iu":
        info = np.iinfo(want)
        if a.size == 0 or (a.min() >= info.min and a.max() <= info.max):
            return a.astype(want)
    return a


def verify_artifact(
    path: Path,
    cases: Sequence[Case],
    reference: Callable[[Sequence[np.ndarray]], list[np.ndarray]],
    *,
    output_names: Sequence[str],
    precision: str,
    task: str,
    peak: float = 1.0,
    loader: Callable[[Path], Any] | None = None,
    references: list[list[np.ndarray]] | None = None,
    reference64: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None,
    approximate: Sequence[str] = (),
) -> tuple[dict[str, Any], Any]:
    """Run every case through the artifact (opened by ``loader``, :func:`edgekit.load` by
    default) and through ``reference``; return ``(verification, session)`` where
    verification is ``{"status": "passed"|"failed", "reason", "tolerance", "cases",
    "outputs": {name: metrics}}``. The session is returned open (for a latency run); the caller
    closes it. ``references`` (the source's outputs per case) saves recomputing them when
    several artifacts are verified against the same cases.

    ``reference64`` (the source in float64) is used only when an fp32 artifact misses the
    bounds: some models are ill-conditioned (a normalisation over a near-constant channel
    amplifies rounding), and then PyTorch's own float32 result is as far from the exact
    result as the artifact is. The artifact passes if its error against float64 is within
    :data:`CONDITIONING_FACTOR` times the source's own float32 error (or within the bounds);
    the numbers are recorded under ``conditioning``.

    ``approximate``: the ``approx_`` passes the artifact went through. They change the function
    (e.g. exact GELU → its tanh form, 4.7e-4 off at most per op), so the artifact is held to the
    fp16 bounds instead of fp32's, and the verification names them.
    """
    if loader is None:
        import edgekit

        loader = edgekit.load
    from edgekit.converters.exporters import tool_output

    tol = tolerance_for("fp16" if approximate else precision, task)
    with tool_output():  # the runtimes' C++ start-up lines ("Created TensorFlow Lite XNNPACK delegate")
        session = loader(path)
    refs_cache = references if references is not None else [reference(c.source) for c in cases]
    try:
        outputs, artifact_outs, (agree, decisive) = _run_cases(session, cases, refs_cache, output_names, task, tol,
                                                                peak)
    except _Mismatch as e:
        return _failed(str(e), tol), session
    failures = _failures(outputs, tol)
    metrics: dict[str, Any] = {}
    if failures and precision == "fp32" and reference64 is not None:
        cond = _float64_check(cases, refs_cache, artifact_outs, reference64, output_names, tol, task, peak)
        if cond is not None:
            metrics["conditioning"] = cond
            if cond["within"]:
                failures = []
            else:
                failures.append(f"also against float64: artifact error {cond['artifact_error_vs_fp64']:.2g} > "
                                f"{CONDITIONING_FACTOR:g}× the source's own float32 error "
                                f"{cond['source_fp32_error_vs_fp64']:.2g}")
    if task == "classify" and decisive:
        metrics["top1_agreement"] = agree / decisive
        metrics["top1_decisive_cases"] = decisive
        if tol.top1 is not None and agree / decisive < tol.top1:
            failures.append(f"top-1 class differs on {decisive - agree} of {decisive} decisive case(s)")
    verification = {
        "status": "failed" if failures else "passed",
        "reason": "; ".join(failures) if failures else None,
        "tolerance": tol.to_dict(),
        **({"approximate": list(approximate)} if approximate else {}),
        "cases": [c.name for c in cases],
        "outputs": outputs,
        **metrics,
    }
    if verification["reason"] is None:
        del verification["reason"]
    return verification, session


class _Mismatch(Exception):
    """The artifact's outputs do not even have the source's number or shapes."""


def _run_cases(session: Any, cases: Sequence[Case], refs_cache: list[list[np.ndarray]], output_names: Sequence[str],
               task: str, tol: Tolerance, peak: float) -> tuple[dict, list[list[np.ndarray]], tuple[int, int]]:
    """Run every case; per output the worst metrics over cases (:func:`_merge`), the artifact's
    outputs, and the classifier's (agreeing, decisive) top-1 counts."""
    outputs: dict[str, dict[str, Any]] = {}
    artifact_outs: list[list[np.ndarray]] = []
    agree = decisive = 0
    for case, refs in zip(cases, refs_cache):
        feed = {spec.name: _as_input(a, getattr(spec, "dtype", None)) for spec, a in zip(session.inputs, case.artifact)}
        got = session.run(feed)
        got_list = [got[spec.name] for spec in session.outputs]
        artifact_outs.append(got_list)
        if len(got_list) != len(refs):
            raise _Mismatch(f"the artifact has {len(got_list)} outputs, the source {len(refs)}")
        for name, ref, out in zip(output_names, refs, got_list):
            try:
                m = compare(ref, out, name)
            except ValueError as e:
                raise _Mismatch(str(e)) from None
            m["case"] = case.name
            if task == "super-resolve" and ref.ndim == 4:
                m["psnr_db"] = psnr(ref, out, peak)
            elif task == "decode-video" and ref.ndim == 5:
                frames = frame_psnr(ref, out, peak)
                m["psnr_db"] = min(frames)
                m["worst_frame"] = int(np.argmin(frames))
            if task == "classify" and ref.ndim == 2:
                a, d = top1(ref, out, 2 * tol.max_rel * m["ref_max_abs"])
                agree, decisive = agree + a, decisive + d
            _merge(outputs, name, m)
    return outputs, artifact_outs, (agree, decisive)


def _failures(outputs: dict[str, dict[str, Any]], tol: Tolerance) -> list[str]:
    """One line per bound an output missed (worst case named)."""
    failures = []
    for name, m in outputs.items():
        if not m["max_rel"] <= tol.max_rel:
            w = m["worst"]
            failures.append(f"output '{name}' max abs error {m['max_abs']:.3g} ({m['max_rel']:.2g} of max|source| "
                            f"{m['ref_max_abs']:.3g}, allowed {tol.max_rel:g}) at {w['index']} on {m['worst_case']} "
                            f"(artifact {w['artifact']:.6g} vs source {w['reference']:.6g})")
        if not m["cosine"] >= tol.cosine:
            failures.append(f"output '{name}' cosine {m['cosine']:.6f} < {tol.cosine} on {m['cosine_case']}")
        if tol.psnr_db is not None and m.get("psnr_db") is not None and not m["psnr_db"] >= tol.psnr_db:
            failures.append(f"output '{name}' PSNR {m['psnr_db']:.1f} dB < {tol.psnr_db} dB on {m['psnr_case']}")
    return failures


CONDITIONING_FACTOR = 10.0
# The float64 second opinion widens a bound by at most this factor: beyond it the difference is
# not rounding amplified by the model but a real one (or a non-deterministic source).
CONDITIONING_CAP = 10.0


def _float64_check(cases: Sequence[Case], refs32: list[list[np.ndarray]], outs: list[list[np.ndarray]],
                   reference64: Callable, names: Sequence[str], tol: Tolerance, task: str,
                   peak: float) -> dict[str, Any] | None:
    """Errors of the fp32 source and of the artifact against the float64 source (relative to
    its max magnitude), worst over cases; ``within`` when the artifact's stays within
    ``max(bound, CONDITIONING_FACTOR × source's)`` for every output and case."""
    try:
        refs64 = [reference64(c.source) for c in cases]
    except Exception:  # noqa: BLE001 - a module that cannot run in float64: no second opinion
        return None
    within = True
    src_worst = art_worst = 0.0
    for r32s, r64s, outs_c in zip(refs32, refs64, outs):
        for r32, r64, out in zip(r32s, r64s, outs_c):
            r64 = np.asarray(r64, np.float64)
            scale = float(np.abs(r64).max()) or 1.0
            src = float(np.abs(np.asarray(r32, np.float64) - r64).max()) / scale
            art = float(np.abs(np.asarray(out, np.float64) - r64).max()) / scale
            src_worst, art_worst = max(src_worst, src), max(art_worst, art)
            if art > max(tol.max_rel, min(CONDITIONING_FACTOR * src, CONDITIONING_CAP * tol.max_rel)):
                within = False
            cos_src, cos_art = compare(r64, r32)["cosine"], compare(r64, out)["cosine"]
            slack = min(CONDITIONING_FACTOR * (1 - cos_src), CONDITIONING_CAP * (1 - tol.cosine))
            if 1 - cos_art > max(1 - tol.cosine, slack):
                within = False
            if tol.psnr_db is not None and task in ("super-resolve", "decode-video"):
                p_src, p_art = psnr(r64, r32, peak), psnr(r64, out, peak)
                # 20 dB = CONDITIONING_FACTOR in amplitude; never below 20 dB under the bound
                if p_art < min(tol.psnr_db, max(p_src - 20.0, tol.psnr_db - 20.0)):
                    within = False
    return {"within": within, "source_fp32_error_vs_fp64": src_worst, "artifact_error_vs_fp64": art_worst,
            "factor": CONDITIONING_FACTOR}


def _merge(outputs: dict[str, dict[str, Any]], name: str, m: dict[str, Any]) -> None:
    """Keep the worst of each metric over cases, and which case it came from."""
    cur = outputs.get(name)
    if cur is None:
        outputs[name] = {"max_abs": m["max_abs"], "max_rel": m["max_rel"], "mean_abs": m["mean_abs"],
                         "cosine": m["cosine"], "ref_max_abs": m["ref_max_abs"], "worst": m["worst"],
                         "worst_case": m["case"], "cosine_case": m["case"]}
        if "psnr_db" in m:
            cur = outputs[name]
            cur["psnr_db"], cur["psnr_case"] = m["psnr_db"], m["case"]
            if "worst_frame" in m:
                cur["worst_frame"] = m["worst_frame"]
        return
    if m["max_abs"] > cur["max_abs"]:
        cur.update(max_abs=m["max_abs"], worst=m["worst"], worst_case=m["case"])
    cur["max_rel"] = max(cur["max_rel"], m["max_rel"])
    cur["mean_abs"] = max(cur["mean_abs"], m["mean_abs"])
    cur["ref_max_abs"] = max(cur["ref_max_abs"], m["ref_max_abs"])
    if m["cosine"] < cur["cosine"]:
        cur.update(cosine=m["cosine"], cosine_case=m["case"])
    if "psnr_db" in m and ("psnr_db" not in cur or m["psnr_db"] < cur["psnr_db"]):
        cur.update(psnr_db=m["psnr_db"], psnr_case=m["case"])
        if "worst_frame" in m:
            cur["worst_frame"] = m["worst_frame"]


def _failed(reason: str, tol: Tolerance) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "tolerance": tol.to_dict()}


def check_coreml_spec(path: Path, input_shapes: Sequence[tuple[int, ...]], input_names: Sequence[str],
                      output_names: Sequence[str], output_shapes: Sequence[tuple[int, ...]],
                      image_input: bool = False) -> list[str]:
    """Problems found in a saved ``.mlpackage``'s interface (empty when it matches the source):
    it must load without compiling, take inputs of the source's names and shapes, and give
    outputs of the source's names and shapes (a classifier's outputs are the label and the
    probability dictionary)."""
    from edgekit.runtimes.coreml_spec import spec_io

    try:
        ins, outs = spec_io(path)
    except Exception as e:  # noqa: BLE001 - a package coremltools cannot read is the finding
        from edgekit.errors import first_line

        return [f"coremltools cannot read the package ({type(e).__name__}: {first_line(e)})"]
    problems = []
    if [i["name"] for i in ins] != list(input_names):
        problems.append(f"inputs are {[i['name'] for i in ins]}, expected {list(input_names)}")
    for i, (spec, shape) in enumerate(zip(ins, input_shapes)):
        if list(spec["shape"]) != list(shape):
            problems.append(f"input '{spec['name']}' has shape {spec['shape']}, the source's is {list(shape)}")
        if i == 0 and image_input and spec["kind"] != "image":
            problems.append(f"input '{spec['name']}' is a {spec['kind']}, expected an image")
    if any(o["kind"] == "dictionary" for o in outs):  # classifier: label + probabilities
        return problems
    if [o["name"] for o in outs] != list(output_names):
        problems.append(f"outputs are {[o['name'] for o in outs]}, expected {list(output_names)}")
    for spec, shape in zip(outs, output_shapes):
        if spec["shape"] and list(spec["shape"]) != list(shape):
            problems.append(f"output '{spec['name']}' has shape {spec['shape']}, the source's is {list(shape)}")
    return problems


# --------------------------------------------------------------------------------------------
# The verify stage of a conversion


def verify_stage(conv: Any, jobs: list[Any]) -> list[Any]:
    """Give every exported job its manifest entry (``job.artifact``) and verify it (or record
    that verification was turned off); ``job.status`` says how it went."""
    import time

    from edgekit.bundle import sha256_file
    from edgekit.converters.bundle_stage import artifact_entry
    from edgekit.converters.exporters.stage import artifact_size
    from edgekit.converters.jobs import Event

    for job in jobs:
        if job.result is None:
            continue
        art = job.artifact = artifact_entry(conv, job)
        st = job.status
        if conv.options.verify:
            conv.report(Event("verify", "start", job.format))
            t0 = time.perf_counter()
            _verify_job(conv, job)
            secs = time.perf_counter() - t0
            conv.stage_seconds[f"verify:{job.format}"] = secs
            conv.report(Event("verify", {"passed": "done"}.get(st.status, st.status), job.format,
                              st.reason or metric_line(art), secs))
        else:
            art.verification = {"status": "not-run", "reason": "verification disabled (--no-verify)"}
            st.status, st.reason = "skipped", "verification disabled"
        art.size_bytes = artifact_size(job.result.path)
        art.sha256 = sha256_file(job.result.path)
    return jobs


def _verify_job(conv: Any, job: Any) -> None:
    """Verify one artifact in place: fills ``art.verification`` (and the runtime's tensor
    names), ``st.status``/``st.reason``/``st.latency_ms``."""
    from edgekit.errors import EdgekitError, first_line
    from edgekit.runtimes.host import is_macos

    cap, fold, art, st, path = conv.captured, conv.fold, job.artifact, job.status, job.result.path
    if job.format == "coreml":
        _adopt_coreml_specs(art, path)
        if not is_macos():
            return _coreml_spec_only(conv, job)
    cases = _cases(conv)
    if job.format == "coreml" and fold is not None and fold.input_layout == "NHWC":  # CoreML images are NCHW
        cases = [Case(c.name, c.source, [c.artifact[0].transpose(0, 3, 1, 2)]) for c in cases]
    session = None
    preprocess = cap.preprocess
    peak = 2.0 if cap.task == "decode-video" else float(np.ptp(preprocess.get("value_range") or (0.0, 1.0))) or 1.0
    try:
        verification, session = verify_artifact(
            path, cases, cap.reference, output_names=cap.output_names, precision=conv.options.precision,
            task=cap.task, peak=peak, references=conv.shared["references"], reference64=cap.reference64,
            loader=_layout_loader(art), approximate=[p for p in art.passes if p.startswith("approx_")])
        _adopt_runtime_specs(art, _innermost(session))  # the artifact's own specs
    except EdgekitError as e:
        verification = {"status": "failed", "reason": f"the runtime cannot run it: {e}"}
    except Exception as e:  # noqa: BLE001 - a runtime crash on this artifact fails this artifact only
        verification = {"status": "failed", "reason": f"running it raised {type(e).__name__}: {first_line(e)}"}
    art.verification = verification
    st.status, st.reason = verification["status"], verification.get("reason")
    if session is not None:
        if st.status == "passed" and conv.options.bench_runs:
            st.latency_ms = _latency(session, cases[0].artifact, conv.options.bench_runs)
            art.extra["latency_ms_p50"] = st.latency_ms
            art.extra["latency_host"] = _host_line(session)
        session.close()


def _cases(conv: Any) -> list[Case]:
    """The verification cases and the source's outputs on them, made once per conversion."""
    if "cases" not in conv.shared:
        cap = conv.captured
        example = [t.numpy() for t in cap.example_inputs]
        conv.shared["cases"] = make_cases(
            [tuple(t.shape) for t in cap.example_inputs], [a.dtype for a in example], task=cap.task,
            preprocess=cap.preprocess, fold=conv.fold, example=example if conv.fold is None else None,
            normal=conv.options.precision != "int8")  # int8 saturates outside its calibrated range
        conv.shared["references"] = [cap.reference(c.source) for c in conv.shared["cases"]]
    return conv.shared["cases"]


def _coreml_spec_only(conv: Any, job: Any) -> None:
    """Where CoreML cannot predict (not macOS): check the package's interface, record the skip."""
    cap, art, st = conv.captured, job.artifact, job.status
    problems = check_coreml_spec(job.result.path, [tuple(t.shape) for t in art.inputs], cap.input_names,
                                 cap.output_names, [tuple(t.shape) for t in art.outputs],
                                 image_input=conv.fold is not None)
    if problems:
        art.verification = {"status": "failed", "reason": "spec check: " + "; ".join(problems)}
        st.status, st.reason = "failed", art.verification["reason"]
        return
    art.verification = {"status": "skipped", "reason": "CoreML prediction needs macOS",
                        "spec_check": "passed: the package loads; inputs and outputs have the source's names and shapes"}
    st.status, st.reason = "skipped", "CoreML prediction needs macOS (spec checked)"


def _layout_loader(art: Any) -> Callable[[Path], Any] | None:
    """A loader for verification that feeds and returns the source's layouts and float dtypes,
    as a bundle session does (None: no change)."""
    if not art.source_layouts and not art.extra.get("quantized_io"):
        return None
    from edgekit.runtimes.base import TensorSpec

    layouts = {t.name: t.layout for t in (*art.inputs, *art.outputs)}

    def load(path: Path) -> Any:
        import edgekit
        from edgekit.runtimes.bundle_session import source_io

        inner = edgekit.load(path)
        inner.inputs = [TensorSpec(t.name, t.shape, t.dtype, layouts.get(t.name, t.layout)) for t in inner.inputs]
        inner.outputs = [TensorSpec(t.name, t.shape, t.dtype, layouts.get(t.name, t.layout)) for t in inner.outputs]
        return source_io(inner, art)

    return load


def _innermost(session: Any) -> Any:
    while hasattr(session, "inner"):
        session = session.inner
    return session


def _adopt_runtime_specs(art: Any, session: Any) -> None:
    """Record the tensor names, shapes and dtypes the runtime reports (what a user feeds),
    keeping the layouts known from the source."""
    from edgekit.runtimes.base import TensorSpec

    def merge(specs: list, runtime: list) -> list:
        if len(specs) != len(runtime):
            return specs
        return [TensorSpec(r.name, tuple(r.shape), r.dtype, s.layout) for s, r in zip(specs, runtime)]

    art.inputs = merge(art.inputs, list(session.inputs))
    art.outputs = merge(art.outputs, list(session.outputs))


def _adopt_coreml_specs(art: Any, path: Path) -> None:
    """Record the package's own interface: an image input stays ``uint8`` NCHW; a classifier's
    outputs are the label (``str``) and the probability dictionary (``dict``, keyed by label)."""
    from edgekit.runtimes.base import TensorSpec
    from edgekit.runtimes.coreml_spec import spec_io

    try:
        ins, outs = spec_io(path)
    except Exception:  # noqa: BLE001 - the spec check reports an unreadable package
        return
    if any(o["kind"] in ("dictionary", "string") for o in outs):
        art.outputs = [TensorSpec(o["name"], tuple(o["shape"]), o["dtype"], None) for o in outs]
    layouts = [t.layout for t in art.inputs]
    if len(ins) == len(layouts):
        art.inputs = [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"], lay) for i, lay in zip(ins, layouts)]


def _latency(session: Any, arrays: list, runs: int) -> float | None:
    from edgekit.errors import EdgekitError
    from edgekit.runtimes.bench import bench

    feed = {spec.name: a for spec, a in zip(session.inputs, arrays)}
    try:
        return round(bench(session, warmup=3, runs=runs, feed=feed).p50_ms, 3)
    except EdgekitError:
        return None


def _host_line(session: Any) -> str:
    import platform

    return f"{platform.machine()} {platform.system()}, {session.backend}/{session.placement.accelerator}, " \
           f"{session.threads} thread(s)"


def metric_line(art: Any) -> str:
    """The artifact's verification in one line (``max abs 3e-06, 1-cos 1e-12, top-1 100%``), or
    the reason it was not verified; ``edgekit convert`` prints it."""
    v = art.verification
    outs = v.get("outputs") or {}
    if not outs:
        return v.get("reason") or ""
    name, m = next(iter(outs.items()))
    cos = m["cosine"]
    parts = [f"max abs {m['max_abs']:.2g}", f"1-cos {1 - cos:.1g}" if cos > 0.999999 else f"cos {cos:.6f}"]
    if "psnr_db" in m:
        parts.append(f"PSNR {m['psnr_db']:.1f} dB" if m["psnr_db"] != float("inf") else "PSNR inf")
    if "top1_agreement" in v:
        parts.append(f"top-1 {v['top1_agreement']:.0%}")
    return ", ".join(parts)
