"""Verification: does an artifact compute what its source computes, on the inputs it was made for?

Every artifact is opened with :func:`edgekit.load` (the runtime users will run) and fed the same
cases as the source (:func:`make_cases`): the example inputs, seeded random inputs drawn in the
model's declared input domain (an image model with a known normalisation gets random pixels
normalised as the card or ``--mean/--std/--value-range`` say), one standard-normal case for fp32/fp16
(negative values reach ReLU/PReLU branches), a real photo for image models
(:func:`edgekit.assets.load_photo` through :mod:`edgekit.preprocess`), and the user's own samples
(``--verify-data``, :mod:`edgekit.converters.samples`). The manifest records every case: its name,
where it came from and what it is.

Per output and case it records the maximum absolute error (and where: element index, both values)
against a bound derived from the computation (:mod:`edgekit.converters.criteria`): for fp32 the
source's own float32-vs-float64 error (``Bound.measured``, computed on the same case), so an
artifact as close as float32 allows always passes, whatever the magnitude of the output, and a
wrong layout, normalisation or op (errors of 1e-3 of the range and more) fails; fp16 scales it by
float16's round-off; int8 is judged on the task (scores, top-1, PSNR). Cosine and PSNR are
reported, and marked ``"not meaningful"`` on a case whose reference or output has no variance.

A CoreML artifact can only run on macOS. Elsewhere its spec is checked (it loads; inputs and
outputs have the source's names — after coremltools' renaming, recorded in the manifest as
``coreml_names`` — and shapes) and the verification is recorded as ``skipped`` with the reason,
never as a pass that did not run.

An int8 artifact is also timed against the fp32 file it was quantized from (interleaved runs on
this host); when it is slower the conversion summary and the manifest (``int8_speed``) say so.

Example::

    >>> m = compare(ref, out)                        # doctest: +SKIP
    >>> m["max_abs"], m["worst"]["index"]            # doctest: +SKIP
    (3.2e-07, [0, 281])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgekit.converters.criteria import (INT8_HINT, NOT_MEANINGFUL, Tolerance, case_bound, case_metrics, failures,
                                         merge_cases, score_kind, tolerance_for, wide_bounds)
from edgekit.converters.preprocess import FoldSpec, normalise
from edgekit.preprocess import Preprocess

__all__ = ["Tolerance", "Case", "compare", "psnr", "top1", "tolerance_for", "make_cases", "verify_artifact",
           "check_coreml_spec", "coreml_name_map", "verify_stage", "metric_line", "describe_cases", "NOT_MEANINGFUL"]


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
    artifact (they differ only when pre-processing is folded: raw pixels vs normalised).
    ``origin`` is example | random | random-normal | photo | user; ``what`` says what it is."""

    name: str
    source: list[np.ndarray]
    artifact: list[np.ndarray]
    origin: str = "random"
    what: str = ""


IMAGE_PHOTO = {"classify": "chelsea", "super-resolve": "astronaut"}


def make_cases(input_shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype], *, task: str,
               preprocess: dict[str, Any], fold: FoldSpec | None, example: Sequence[np.ndarray] | None = None,
               n_random: int = 3, seed: int = 1234, normal: bool = True, user: Sequence[Any] = ()) -> list[Case]:
    """The example inputs, seeded random cases in the model's input domain, a photo for image
    models, then ``user`` samples (:class:`edgekit.converters.samples.Sample`).

    Random cases: with folding, random pixels 0..255 (the source gets them normalised); a model
    with one image input and a declared normalisation (value range, mean/std) gets random pixels
    normalised the same way; other inputs are uniform in the value range (``[0, 1)`` when none is
    declared). With ``normal`` the last random case is standard normal instead (negative values
    reach ReLU/PReLU branches; int8 saturates there by design, so it is verified without it).
    """
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    if fold is not None:
        shape = input_shapes[0]
        for i in range(n_random):
            px = rng.integers(0, 256, shape).astype(np.uint8)
            cases.append(Case(f"random-pixels-{i}", [normalise(px, fold)], [_layout(px.astype(np.float32), fold)],
                              "random", "random pixels 0..255 (the source gets them normalised)"))
    else:
        if example is not None:
            cases.append(Case("example", [np.asarray(a) for a in example], [np.asarray(a) for a in example],
                              "example", "the example inputs of the source"))
        for i in range(n_random):
            if normal and i == n_random - 1:
                arrays = [rng.standard_normal(s).astype(dt) if np.issubdtype(dt, np.floating)
                          else rng.integers(0, 2, s).astype(dt) for s, dt in zip(input_shapes, dtypes)]
                cases.append(Case("random-normal", arrays, arrays, "random-normal",
                                  "standard normal (negative values reach ReLU/PReLU branches)"))
                continue
            arrays, what = random_inputs(rng, input_shapes, dtypes, preprocess)
            cases.append(Case(f"random-{i}", arrays, arrays, "random", what))
    photo = _photo_case(input_shapes, task, preprocess, fold)
    if photo is not None:
        cases.append(photo)
    for s in user:
        cases.append(Case(s.name, list(s.source), list(s.artifact if s.artifact is not None else s.source), "user",
                          "--verify-data"))
    return cases


def random_inputs(rng: np.random.Generator, input_shapes: Sequence[tuple[int, ...]], dtypes: Sequence[Any],
                  preprocess: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    """One random input per model input, in its declared domain, and what they are: random pixels
    through the declared normalisation for one image input (N, 1|3, H, W), else uniform in the
    value range; integer inputs 0 or 1."""
    lo, hi = preprocess.get("value_range") or (0.0, 1.0)
    declared = preprocess.get("value_range") is not None or preprocess.get("mean") is not None
    one_image = len(input_shapes) == 1 and len(input_shapes[0]) == 4 and input_shapes[0][1] in (1, 3)
    if one_image and declared and np.issubdtype(np.dtype(dtypes[0]), np.floating):
        spec = FoldSpec.from_preprocess(preprocess)
        px = rng.integers(0, 256, input_shapes[0]).astype(np.uint8)
        try:
            x = normalise(px, spec).astype(dtypes[0])
        except Exception:  # noqa: BLE001 - a mean/std that does not fit the channels: the plain range
            x = None
        if x is not None:
            return [x], f"random pixels normalised as declared ({_domain(preprocess)})"
    arrays = []
    for shape, dt in zip(input_shapes, dtypes):
        if np.issubdtype(np.dtype(dt), np.floating):
            arrays.append((rng.random(shape) * (hi - lo) + lo).astype(dt))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dt))
    what = f"uniform in [{lo:g}, {hi:g}]" + ("" if declared else " (no value range declared: assumed)")
    return arrays, what


def _domain(preprocess: dict[str, Any]) -> str:
    lo, hi = preprocess.get("value_range") or (0.0, 1.0)
    text = f"value range [{lo:g}, {hi:g}]" + ("" if preprocess.get("value_range") is not None else " (assumed)")
    if preprocess.get("mean") is not None:
        text += f", mean {list(preprocess['mean'])}, std {list(preprocess.get('std') or [1.0])}"
    return text


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
    return Case(f"photo:{name}", [source], [_layout(px.astype(np.float32), fold) if fold is not None else source],
                "photo", f"the '{name}' photo, pre-processed as edgekit run does ({_domain(preprocess)})")


def photo_pixels(rgb: np.ndarray, shape: Sequence[int], preprocess: dict[str, Any], task: str | None) -> np.ndarray:
    """An RGB photo at an NCHW input's size as (3, H, W) uint8: steps 2–3 of
    :mod:`edgekit.preprocess` (the task's resize policy, area/bilinear resize)."""
    spec = Preprocess.for_input(tuple(shape), "float32", "NCHW", preprocess, task)
    img, _ = spec.geometry(rgb)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def describe_cases(cases: Sequence[Case], preprocess: dict[str, Any], user: str | None = None) -> dict[str, Any]:
    """What the manifest says about the verification inputs: the input domain, the count per
    origin and each case (name, origin, what)."""
    counts: dict[str, int] = {}
    for c in cases:
        counts[c.origin] = counts.get(c.origin, 0) + 1
    rec: dict[str, Any] = {"domain": _domain(preprocess), "counts": counts,
                           "cases": [{"name": c.name, "origin": c.origin, "what": c.what} for c in cases]}
    if user:
        rec["user_data"] = user
    return rec


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


def float64_pairs(cases: Sequence[Case], references: list[list[np.ndarray]], reference64: Callable | None,
                  reference32_for64: Callable | None = None,
                  reference: Callable | None = None) -> list[tuple[list, list] | str | None]:
    """Per case, the source's float32 and float64 outputs of one computation (the measured bound's
    pair), or None where no float64 run exists (``reference64`` missing or raising). With
    ``reference``, the first case is run again in float32: a source that gives other outputs on the
    same input (random ops, state) cannot be verified against, and every entry is then a string
    saying so."""
    pairs: list[tuple[list, list] | str | None] = []
    for case, refs in zip(cases, references):
        if reference64 is None:
            pairs.append(None)
            continue
        try:
            r64 = reference64(case.source)
            r32 = reference32_for64(case.source) if reference32_for64 is not None else refs
        except Exception:  # noqa: BLE001 - a source that cannot run in float64: the bound is stated
            pairs.append(None)
            continue
        pairs.append((list(r32), list(r64)) if len(r64) == len(refs) == len(r32) else None)
    problem = _unrepeatable(cases, references, reference) if reference is not None and cases else None
    return [problem for _ in pairs] if problem else pairs


def _unrepeatable(cases: Sequence[Case], references: list[list[np.ndarray]], reference: Callable) -> str | None:
    """A line when the source's float32 run on the first case differs from a second run by more
    than float32 rounding of its outputs (8 u max|output|): it is not a function of its inputs.
    (The measured bound cannot serve here: a random source's float64 run differs by the noise.)"""
    from edgekit.numerics import Bound, worst_error

    again = reference(cases[0].source)
    for i, (a, b) in enumerate(zip(references[0], again)):
        err, _ = worst_error(b, a)
        if err > Bound.measured(a, a).atol:
            return (f"the source gives other outputs on the same input ({err:.3g} apart on {cases[0].name}, output {i}): "
                    f"random ops or state in eval mode; verification cannot compare an artifact with it")
    return None


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
    reference32_for64: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None,
    pairs64: list[tuple[list, list] | str | None] | None = None,
    approximate: Sequence[str] = (),
) -> tuple[dict[str, Any], Any]:
    """Run every case through the artifact (opened by ``loader``, :func:`edgekit.load` by
    default) and through ``reference``; return ``(verification, session)`` where verification is
    ``{"status": "passed"|"failed", "reason", "tolerance", "cases", "outputs": {name: summary}}``
    (:func:`edgekit.converters.criteria.merge_cases`). The session is returned open (for a latency
    run); the caller closes it. ``references`` (the source's outputs per case) and ``pairs64``
    (:func:`float64_pairs`) save recomputing them when several artifacts share the cases.

    ``reference64`` (the source in float64) gives the fp32/fp16 bound of every case
    (``Bound.measured``), paired with ``reference32_for64``'s float32 run when that is not
    ``reference`` (an ONNX source: the imported module's). Without it the bound is stated.

    ``approximate``: the ``approx_`` passes the artifact went through. They change the function
    (e.g. exact GELU → its tanh form, 4.7e-4 off at most per op), so the artifact is held to the
    fp16 bounds instead of fp32's, and the verification names them.
    """
    if loader is None:
        import edgekit

        loader = edgekit.load
    from edgekit.converters.exporters import tool_output

    tol = tolerance_for("fp16" if approximate and precision == "fp32" else precision, task)
    with tool_output():  # the runtimes' C++ start-up lines ("Created TensorFlow Lite XNNPACK delegate")
        session = loader(path)
    refs_cache = references if references is not None else [reference(c.source) for c in cases]
    if pairs64 is None and tol.bound != "stated":
        pairs64 = float64_pairs(cases, refs_cache, reference64, reference32_for64, reference)
    problems = sorted({p for p in pairs64 or () if isinstance(p, str)})
    if problems:
        return {"status": "failed", "reason": problems[0], "tolerance": tol.to_dict(),
                "cases": [c.name for c in cases]}, session
    try:
        outputs, (agree, decisive) = _run_cases(session, cases, refs_cache, pairs64, output_names, task, tol, peak)
    except _Mismatch as e:
        return {"status": "failed", "reason": str(e), "tolerance": tol.to_dict()}, session
    lines = failures(outputs, tol)
    metrics: dict[str, Any] = {}
    if task == "classify" and decisive:
        metrics["top1_agreement"] = agree / decisive
        metrics["top1_decisive_cases"] = decisive
        if tol.top1 is not None and agree / decisive < tol.top1:
            lines.append(f"top-1 class differs on {decisive - agree} of {decisive} decisive case(s)")
    notes = wide_bounds(outputs) + [f"output '{n}': {', '.join(k.replace('_db', '') for k in m['not_meaningful'])} "
                                    f"not meaningful on {len(set(sum(m['not_meaningful'].values(), [])))} case(s) "
                                    f"(no variance); the max-abs bound applies"
                                    for n, m in outputs.items() if "not_meaningful" in m]
    verification = {
        "status": "failed" if lines else "passed",
        "reason": "; ".join(lines) if lines else None,
        "tolerance": tol.to_dict(),
        **({"approximate": list(approximate)} if approximate else {}),
        "cases": [c.name for c in cases],
        "outputs": outputs,
        **metrics,
    }
    if lines and precision == "int8":
        verification["hint"] = INT8_HINT
    if notes:
        verification["notes"] = notes
    if verification["reason"] is None:
        del verification["reason"]
    return verification, session


class _Mismatch(Exception):
    """The artifact's outputs do not even have the source's number or shapes."""


def _run_cases(session: Any, cases: Sequence[Case], refs_cache: list[list[np.ndarray]],
               pairs64: list[tuple[list, list] | str | None] | None, output_names: Sequence[str], task: str,
               tol: Tolerance, peak: float) -> tuple[dict, tuple[int, int]]:
    """Run every case; per output the summary over cases
    (:func:`edgekit.converters.criteria.merge_cases`) and the classifier's (agreeing, decisive)
    top-1 counts."""
    per_output: dict[str, list[dict[str, Any]]] = {n: [] for n in output_names}
    kinds = {n: score_kind([refs[i] for refs in refs_cache], task) for i, n in enumerate(output_names)}
    judged = {n: k if tol.score_abs is not None else None for n, k in kinds.items()}  # scores judged in int8
    agree = decisive = 0
    for ci, (case, refs) in enumerate(zip(cases, refs_cache)):
        feed = {spec.name: _as_input(a, getattr(spec, "dtype", None)) for spec, a in zip(session.inputs, case.artifact)}
        got = session.run(feed)
        got_list = [got[spec.name] for spec in session.outputs]
        if len(got_list) != len(refs):
            raise _Mismatch(f"the artifact has {len(got_list)} outputs, the source {len(refs)}")
        pair = pairs64[ci] if pairs64 else None
        for oi, (name, ref, out) in enumerate(zip(output_names, refs, got_list)):
            try:
                m = compare(ref, out, name)
            except ValueError as e:
                raise _Mismatch(str(e)) from None
            m["case"] = case.name
            _task_psnr(m, ref, out, task, peak)
            bound = None if judged[name] is not None else case_bound(tol, pair[0][oi] if pair else ref,
                                                                       pair[1][oi] if pair else None)
            m = case_metrics(m, ref, out, bound, tol, kinds[name])
            per_output[name].append(m)
            if task == "classify" and ref.ndim == 2:
                a, d = _top1(ref, out, m, judged[name], tol)
                agree, decisive = agree + a, decisive + d
    return {n: merge_cases(ms) for n, ms in per_output.items() if ms}, (agree, decisive)


def _task_psnr(m: dict[str, Any], ref: np.ndarray, out: np.ndarray, task: str, peak: float) -> None:
    if task == "super-resolve" and ref.ndim == 4:
        m["psnr_db"] = psnr(ref, out, peak)
    elif task == "decode-video" and ref.ndim == 5:
        frames = frame_psnr(ref, out, peak)
        m["psnr_db"] = min(frames)
        m["worst_frame"] = int(np.argmin(frames))


def _top1(ref: np.ndarray, out: np.ndarray, m: dict[str, Any], kind: str | None, tol: Tolerance) -> tuple[int, int]:
    """Top-1 counts of one case: decisive rows are those whose top-2 gap exceeds what the check
    allows (twice the bound; for int8 the score change, in scores)."""
    if kind is not None:
        from edgekit.converters.criteria import to_scores

        return top1(to_scores(ref, kind), to_scores(out, kind), tol.score_abs or 0.0)
    return top1(ref, out, 2 * float(m.get("bound") or 0.0))


# --------------------------------------------------------------------------------------------
# CoreML: the names coremltools gives tensors, and the spec check


_MIL_RESERVED = frozenset(("any", "bool", "program", "func", "tensor", "list", "dict", "tuple", "true", "false",
                           "string", "bf16", "fp16", "fp32", "fp64", "int8", "int16", "int32", "int64", "uint8",
                           "uint16", "uint32", "uint64", "state"))


def coreml_name_map(input_names: Sequence[str], output_names: Sequence[str]) -> dict[str, str]:
    """``{source name: the name coremltools gives it}``, inputs then outputs. coremltools keeps
    names of the form ``[A-Za-z_][A-Za-z0-9_]*``; in others every other character becomes ``_``
    (``softmax_11.tmp_0`` → ``softmax_11_tmp_0``), a leading digit gets ``var_`` in front, a MIL
    keyword gets ``_workaround`` behind, and a renamed name already taken gets ``_0`` (then
    ``_0_1``, ...)."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in [*input_names, *output_names]:
        new = re.sub(r"[^A-Za-z0-9_]", "_", name)
        if re.match(r"[^A-Za-z_]", new):
            new = "var_" + new
        if new in _MIL_RESERVED:
            new += "_workaround"
        if new != name and new in taken:
            i = 0
            new += "_0"
            while new in taken:
                i += 1
                new += f"_{i}"
        taken.add(new)
        out[name] = new
    return out


def _same_coreml_name(spec_name: str, expected: str) -> bool:
    """The package's name is the expected one, or it with coremltools' uniqueness suffixes (a
    name an inner tensor already had gets ``_0``, ``_0_1``, ...)."""
    return spec_name == expected or re.fullmatch(re.escape(expected) + r"(_\d+)+", spec_name) is not None


def check_coreml_spec(path: Path, input_shapes: Sequence[tuple[int, ...]], input_names: Sequence[str],
                      output_names: Sequence[str], output_shapes: Sequence[tuple[int, ...]],
                      image_input: bool = False) -> list[str]:
    """Problems found in a saved ``.mlpackage``'s interface (empty when it matches the source):
    it must load without compiling, take inputs of the source's names (after coremltools'
    renaming, :func:`coreml_name_map`) and shapes, and give outputs of the source's names and
    shapes (a classifier's outputs are the label and the probability dictionary)."""
    from edgekit.runtimes.coreml_spec import spec_io

    try:
        ins, outs = spec_io(path)
    except Exception as e:  # noqa: BLE001 - a package coremltools cannot read is the finding
        from edgekit.errors import first_line

        return [f"coremltools cannot read the package ({type(e).__name__}: {first_line(e)})"]
    names = coreml_name_map(input_names, output_names)
    problems = []
    problems += _name_problems("inputs", [i["name"] for i in ins], list(input_names), names)
    for i, (spec, shape) in enumerate(zip(ins, input_shapes)):
        if list(spec["shape"]) != list(shape):
            problems.append(f"input '{spec['name']}' has shape {spec['shape']}, the source's is {list(shape)}")
        if i == 0 and image_input and spec["kind"] != "image":
            problems.append(f"input '{spec['name']}' is a {spec['kind']}, expected an image")
    if any(o["kind"] == "dictionary" for o in outs):  # classifier: label + probabilities
        return problems
    problems += _name_problems("outputs", [o["name"] for o in outs], list(output_names), names)
    for spec, shape in zip(outs, output_shapes):
        if spec["shape"] and list(spec["shape"]) != list(shape):
            problems.append(f"output '{spec['name']}' has shape {spec['shape']}, the source's is {list(shape)}")
    return problems


def _name_problems(what: str, got: list[str], source: list[str], names: dict[str, str]) -> list[str]:
    expected = [names[n] for n in source]
    if len(got) == len(expected) and all(_same_coreml_name(g, e) for g, e in zip(got, expected)):
        return []
    renamed = f" (the source's {source} as coremltools names them)" if expected != source else ""
    return [f"{what} are {got}, expected {expected}{renamed}"]


# --------------------------------------------------------------------------------------------
# The verify stage of a conversion


def verify_stage(conv: Any, jobs: list[Any]) -> list[Any]:
    """Give every exported job its manifest entry (``job.artifact``) and verify it (or record
    that verification was turned off); ``job.status`` says how it went. The fp32 copies int8
    quantization kept for timing are removed here, whatever happens."""
    import time

    from edgekit.bundle import sha256_file
    from edgekit.converters.bundle_stage import artifact_entry
    from edgekit.converters.exporters.stage import artifact_size
    from edgekit.converters.jobs import Event

    try:
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
    finally:
        from edgekit.converters.quantize import drop_fp32_copies

        drop_fp32_copies(conv)
    return jobs


def _verify_job(conv: Any, job: Any) -> None:
    """Verify one artifact in place: fills ``art.verification`` (and the runtime's tensor
    names), ``st.status``/``st.reason``/``st.latency_ms``; for int8, ``int8_speed``."""
    from edgekit.errors import EdgekitError, first_line
    from edgekit.runtimes.host import is_macos

    cap, fold, art, st, path = conv.captured, conv.fold, job.artifact, job.status, job.result.path
    if job.format == "coreml":
        _adopt_coreml_specs(art, path, coreml_name_map(cap.input_names, cap.output_names))
        if not is_macos():
            return _coreml_spec_only(conv, job)
    cases = _cases(conv)
    if job.format == "coreml" and fold is not None and fold.input_layout == "NHWC":  # CoreML images are NCHW
        cases = [Case(c.name, c.source, [c.artifact[0].transpose(0, 3, 1, 2)], c.origin, c.what) for c in cases]
    session = None
    preprocess = cap.preprocess
    peak = 2.0 if cap.task == "decode-video" else float(np.ptp(preprocess.get("value_range") or (0.0, 1.0))) or 1.0
    try:
        verification, session = verify_artifact(
            path, cases, cap.reference, output_names=cap.output_names, precision=conv.options.precision,
            task=cap.task, peak=peak, references=conv.shared["references"], pairs64=conv.shared["pairs64"],
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
    if conv.options.precision == "int8" and conv.options.bench_runs:
        _int8_speed(conv, job)


def _cases(conv: Any) -> list[Case]:
    """The verification cases, the source's outputs on them and (fp32/fp16) its float32/float64
    pairs, made once per conversion; what they are goes to the manifest
    (``conv.shared["inputs"]``)."""
    if "cases" not in conv.shared:
        cap = conv.captured
        example = [t.numpy() for t in cap.example_inputs]
        user, user_what = conv.verify_samples if conv.verify_samples else ([], None)
        cases = conv.shared["cases"] = make_cases(
            [tuple(t.shape) for t in cap.example_inputs], [a.dtype for a in example], task=cap.task,
            preprocess=cap.preprocess, fold=conv.fold, example=example if conv.fold is None else None,
            normal=conv.options.precision != "int8", user=user)  # int8 saturates outside its calibrated range
        refs = conv.shared["references"] = [cap.reference(c.source) for c in cases]
        conv.shared["pairs64"] = (None if conv.options.precision == "int8" else
                                  float64_pairs(cases, refs, cap.reference64, getattr(cap, "reference32_for64", None),
                                                cap.reference))
        conv.shared["inputs"] = describe_cases(cases, cap.preprocess, user_what)
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
    renamed = " (after coremltools' renaming, see coreml_names)" if art.extra.get("coreml_names") else ""
    art.verification = {"status": "skipped", "reason": "CoreML prediction needs macOS",
                        "spec_check": "passed: the package loads; inputs and outputs have the source's names"
                                      f"{renamed} and shapes"}
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


def _adopt_coreml_specs(art: Any, path: Path, names: dict[str, str]) -> None:
    """Record the package's own interface: an image input stays ``uint8`` NCHW; a classifier's
    outputs are the label (``str``) and the probability dictionary (``dict``, keyed by label);
    tensors get the names coremltools gave them, and ``coreml_names`` maps each renamed source
    name to its CoreML name (``softmax_11.tmp_0`` → ``softmax_11_tmp_0``)."""
    from edgekit.runtimes.base import TensorSpec
    from edgekit.runtimes.coreml_spec import spec_io

    try:
        ins, outs = spec_io(path)
    except Exception:  # noqa: BLE001 - the spec check reports an unreadable package
        return
    renamed: dict[str, str] = {}
    if any(o["kind"] in ("dictionary", "string") for o in outs):
        art.outputs = [TensorSpec(o["name"], tuple(o["shape"]), o["dtype"], None) for o in outs]
    elif len(outs) == len(art.outputs):
        for t, o in zip(art.outputs, outs):
            if o["name"] != t.name and _same_coreml_name(o["name"], names.get(t.name, t.name)):
                renamed[t.name] = o["name"]
        art.outputs = [TensorSpec(renamed.get(t.name, t.name), t.shape, t.dtype, t.layout) for t in art.outputs]
    layouts = [t.layout for t in art.inputs]
    if len(ins) == len(layouts):
        renamed.update({t.name: i["name"] for t, i in zip(art.inputs, ins) if i["name"] != t.name})
        art.inputs = [TensorSpec(i["name"], tuple(i["shape"]), i["dtype"], lay) for i, lay in zip(ins, layouts)]
    if renamed:
        art.extra["coreml_names"] = renamed
        art.source_layouts = {renamed.get(k, k): v for k, v in art.source_layouts.items()}


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


SLOWER = 1.1
"""An int8 artifact is flagged as slower than its fp32 file when its median time exceeds the fp32
one by more than this factor: interleaved medians on a shared CPU move by a few percent."""


def _int8_speed(conv: Any, job: Any) -> None:
    """Time the int8 artifact against the fp32 file it was quantized from (both opened with
    :func:`edgekit.load`, random inputs of each file's own dtypes, interleaved blocks, medians);
    record ``int8_speed`` in the manifest entry and warn in the summary when int8 is slower."""
    import edgekit

    fp32 = (conv.shared.get("fp32_copies") or {}).get(job.format)
    if fp32 is None or not Path(fp32).exists():
        return
    from edgekit.converters.exporters import tool_output

    try:
        with tool_output():
            a, b = edgekit.load(fp32), edgekit.load(job.result.path)
        try:
            fp32_ms, int8_ms, per_block = _interleaved(a, b, conv.options.bench_runs)
            host = _host_line(b)
        finally:
            a.close()
            b.close()
    except Exception:  # noqa: BLE001 - timing is a report, never a failure of the conversion
        return
    ratio = int8_ms / fp32_ms if fp32_ms > 0 else float("inf")
    rec = {"fp32_ms": round(fp32_ms, 3), "int8_ms": round(int8_ms, 3), "ratio": round(ratio, 3),
           "slower": ratio > SLOWER, "method": f"medians of 6 interleaved blocks of {per_block} runs each",
           "host": host}
    job.artifact.extra["int8_speed"] = rec
    if rec["slower"]:
        job.status.warnings.append(f"int8 is slower than fp32 on this host ({int8_ms:.2f} ms vs {fp32_ms:.2f} ms, "
                                   f"x{ratio:.2f}; {host}): for this CPU the fp32 artifact is the faster one")


def _interleaved(a: Any, b: Any, runs: int, rounds: int = 6, min_block_s: float = 0.01) -> tuple[float, float, int]:
    """Median ms per call of sessions ``a`` and ``b`` over ``rounds`` blocks each, run in the
    order A B B A ...; a block is at least ``runs / 4`` calls and at least ``min_block_s`` long (so a
    0.1 ms model is not timed on two calls)."""
    import statistics
    import time

    rng = np.random.default_rng(0)

    def feed(s: Any) -> dict[str, np.ndarray]:
        out = {}
        for spec in s.inputs:
            dt = np.dtype(spec.dtype)
            shape = tuple(int(d) for d in spec.shape)
            out[spec.name] = (rng.random(shape).astype(dt) if dt.kind == "f"
                              else rng.integers(-8, 8, shape).astype(dt))
        return out

    fa, fb = feed(a), feed(b)
    b.run(fb)  # warm-up
    t0 = time.perf_counter()
    a.run(fa)
    one = max(time.perf_counter() - t0, 1e-6)
    per_block = min(1000, max(1, runs // 4, math.ceil(min_block_s / one)))
    ta: list[float] = []
    tb: list[float] = []
    for r in range(rounds):
        for s, f, acc in ([(a, fa, ta), (b, fb, tb)] if r % 2 == 0 else [(b, fb, tb), (a, fa, ta)]):
            t0 = time.perf_counter()
            for _ in range(per_block):
                s.run(f)
            acc.append((time.perf_counter() - t0) / per_block * 1e3)
    return statistics.median(ta), statistics.median(tb), per_block


def metric_line(art: Any) -> str:
    """The artifact's verification in one line (``max abs 3e-06 (bound 2.4e-05), 1-cos 1e-12,
    top-1 100%``; int8 scores: ``max |Δscore| 0.02``), or the reason it was not verified;
    ``edgekit convert`` prints it."""
    v = art.verification
    outs = v.get("outputs") or {}
    if not outs:
        return v.get("reason") or ""
    name, m = next(iter(outs.items()))
    parts = [f"max abs {m['max_abs']:.2g}" + (f" (bound {m['bound']:.2g})" if m.get("bound") is not None else "")]
    if "score" in m:
        parts.append(f"max |Δscore| {m['score']['max_delta']:.2g}")
    cos = m.get("cosine")
    if isinstance(cos, float):
        parts.append(f"1-cos {1 - cos:.1g}" if cos > 0.999999 else f"cos {cos:.6f}")
    elif cos == NOT_MEANINGFUL:
        parts.append("cosine not meaningful")
    p = m.get("psnr_db")
    if isinstance(p, float):
        parts.append(f"PSNR {p:.1f} dB" if p != float("inf") else "PSNR inf")
    if "top1_agreement" in v:
        parts.append(f"top-1 {v['top1_agreement']:.0%}")
    return ", ".join(parts)
