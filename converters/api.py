"""``edgekit.convert``: source → capture → rewrite → export → verify → bundle.

One function runs the stages of the data-flow picture in docs/architecture.md and writes a
bundle safely (see ``edgekit.bundle.staging_dir``). Each stage reports to an
optional ``progress`` callback, which the CLI turns into its stage display.

Failure policy (also the CLI's exit codes):

- a usage mistake (unknown format, non-empty ``out`` without ``force``...) raises
  :class:`~edgekit.errors.UsageError` before any work (exit 2);
- a failure that concerns every format (the source cannot be loaded or traced, a pass
  fails) raises :class:`~edgekit.errors.ConversionError` naming the stage (exit 1);
  nothing is written;
- a failure of one format (its exporter cannot express an op, or its artifact does not
  verify) does not stop the others: the bundle is written with what worked, the failed
  export is listed in the manifest's ``failures`` and a failed verification is recorded on
  its artifact; :attr:`ConvertResult.exit_code` is then 3. When *no* format could be
  exported, nothing is written and a ConversionError lists each format's reason (exit 1).

Example::

    >>> import edgekit
    >>> r = edgekit.convert("mobilenet_v2", formats=("onnx", "tflite"), out="mnv2",
    ...                     input_shapes=[(1, 3, 160, 160)])                       # doctest: +SKIP
    >>> [(a.format, a.status) for a in r.artifacts]                                # doctest: +SKIP
    [('onnx', 'passed'), ('tflite', 'passed')]
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from edgekit._fmt import human_size
from edgekit.bundle import Artifact, Manifest, sha256_file, staging_dir, write_manifest
from edgekit.errors import ConversionError, EdgekitError, UsageError, first_line
from edgekit.runtimes.base import TensorSpec

__all__ = ["convert", "ConvertResult", "ArtifactStatus", "Event", "TOOLS", "tool_versions", "metric_line"]

TOOLS = ("edgekit", "torch", "onnx", "onnxscript", "onnx-ir", "onnxruntime", "ai-edge-litert", "litert-torch",
         "ai-edge-quantizer", "coremltools", "numpy")
ARTIFACT_NAMES = {"onnx": "model.onnx", "tflite": "model.tflite", "coreml": "model.mlpackage"}
DEFAULT_FORMATS = ("onnx", "tflite", "coreml")


@dataclass
class Event:
    """A progress report: ``stage`` is capture | rewrite | export | verify | bench | write;
    ``fmt`` the format for per-artifact stages; ``status`` start | done | failed | skipped."""

    stage: str
    status: str
    fmt: str | None = None
    message: str = ""
    seconds: float | None = None


@dataclass
class ArtifactStatus:
    """The outcome for one requested format."""

    format: str
    status: str  # passed | failed | skipped | export-failed
    path: Path | None = None
    reason: str | None = None
    size_bytes: int | None = None
    latency_ms: float | None = None
    export_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "status": self.status, "path": str(self.path) if self.path else None,
                "reason": self.reason, "size_bytes": self.size_bytes, "latency_ms": self.latency_ms,
                "export_seconds": self.export_seconds}


@dataclass
class ConvertResult:
    """What :func:`convert` wrote: the bundle folder, its manifest and one status per format."""

    bundle: Path
    manifest: Manifest
    artifacts: list[ArtifactStatus]
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every artifact passed verification, or was skipped for a stated reason."""
        return all(a.status in ("passed", "skipped") for a in self.artifacts)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 3

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "ok": self.ok, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 2), "stage_seconds": {k: round(v, 2) for k, v in self.stage_seconds.items()},
                "artifacts": [a.to_dict() for a in self.artifacts], "manifest": self.manifest.to_dict()}


def tool_versions(names: Iterable[str] = TOOLS) -> dict[str, str]:
    """Installed versions of the tools that shaped a bundle (missing ones are left out)."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def convert(
    source: Any,
    formats: str | Sequence[str] = DEFAULT_FORMATS,
    out: str | Path | None = None,
    *,
    target: str | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    weights: str | Path | None = None,
    pretrained: bool = False,
    precision: str = "fp32",
    force: bool = False,
    fold_preprocess: bool = False,
    input_layout: str = "NCHW",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    task: str | None = None,
    passes: Sequence[str] | None = None,
    skip_passes: Sequence[str] = (),
    verify: bool = True,
    bench_runs: int = 10,
    progress: Callable[[Event], None] | None = None,
) -> ConvertResult:
    """Convert ``source`` to ``formats`` and write a verified bundle to ``out``.

    ``source``: a zoo name, ``file.py:callable``, ``package.module:callable``, a ``.pt2`` or
    ``.onnx`` file, an ``nn.Module`` or an ``ExportedProgram``. ``formats``: any of onnx,
    tflite, coreml (a list or a comma-separated string). ``input_shapes``: one shape per input
    (needed when the source does not come with example inputs). ``weights``/``pretrained``:
    a state dict to load, or the zoo's shipped weights. ``precision``: fp32 or fp16.
    ``fold_preprocess``: the artifacts take RGB pixels 0..255 (``input_layout`` NCHW or NHWC)
    with the source's normalisation folded in (see :mod:`edgekit.converters.preprocess`);
    ``mean``/``std`` give that normalisation for sources without a model card. ``target``,
    ``passes``, ``skip_passes``: the rewrite stage (a target's pipeline, or the passes named).
    ``bench_runs``: timed runs for the latency column (0 skips it). ``progress`` receives an
    :class:`Event` at the start and end of every stage.
    """
    t_start = time.perf_counter()
    report = progress or (lambda e: None)
    fmts = _parse_formats(formats)
    if precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"unknown precision '{precision}'", hint="choose fp32, fp16 or int8")
    if precision == "int8" and "coreml" in fmts:
        raise UsageError("--precision int8 writes TFLite (full-integer) and ONNX (QDQ), not CoreML",
                         hint="use --to tflite,onnx with int8, or fp32/fp16 for CoreML")
    if input_layout not in ("NCHW", "NHWC"):
        raise UsageError(f"unknown input layout '{input_layout}'", hint="choose NCHW or NHWC")
    if input_layout != "NCHW" and not fold_preprocess:
        raise UsageError("--input-layout NHWC changes what the artifact takes; it needs --fold-preprocess",
                         hint="add --fold-preprocess (or leave the layout NCHW)")
    if bench_runs < 0:
        raise UsageError(f"bench_runs must be >= 0, got {bench_runs}")
    # Refuse a bad target or pass ids before any expensive work.
    from edgekit.converters.passes import PASSES, run_pipeline, stage_passes

    run_pipeline(None, target, passes, skip_passes)

    from edgekit.converters import capture as cap_mod

    stage_seconds: dict[str, float] = {}
    out_path = Path(out) if out is not None else Path(f"{_default_name(source)}_edgekit")
    with staging_dir(out_path, force=force) as tmp:
        # -- capture ------------------------------------------------------------------------
        with _stage(report, stage_seconds, "capture", message=_display(source)):
            cap = cap_mod.capture(source, weights=weights, pretrained=pretrained, input_shapes=input_shapes,
                                  task=task, mean=mean, std=std)
            fold = cap.fold_spec(input_layout) if fold_preprocess else None
            # ONNX → ONNX is optimised directly, unless rewrites are asked for; everything else goes
            # through a torch program.
            direct_onnx = cap.onnx_path is not None and fold is None and precision == "fp32" and not (target or passes)
            needs_torch = [f for f in fmts if f != "onnx" or not direct_onnx]
            programs: dict[str, tuple[Any, dict]] = {}
            capture_errors: dict[str, ConversionError] = {}
            if needs_torch:
                try:
                    programs["tensor"] = cap_mod.export_program(cap, fold)
                except ConversionError as e:
                    if cap.onnx_path is None:
                        raise
                    # ONNX source: the importer failed; ONNX → ONNX still works without it.
                    for f in needs_torch:
                        capture_errors[f] = e
                # Variants that only one format uses: their failure fails that format only.
                if "tensor" in programs and fold is not None and "coreml" in fmts:
                    try:
                        programs["image"] = cap_mod.export_program(cap, fold, for_image_input=True)
                    except ConversionError as e:
                        capture_errors["coreml"] = e
                if "tensor" in programs and precision == "fp16" and "onnx" in needs_torch:
                    try:
                        programs["half"] = _half_program(cap, fold)
                    except ConversionError as e:
                        capture_errors["onnx"] = e

        # -- rewrite ------------------------------------------------------------------------
        # Each format gets the program its own passes made (a layout pass is for the formats that
        # store tensors that way); formats whose passes agree share one rewritten program.
        with _stage(report, stage_seconds, "rewrite", message=f"target {target or 'none'}") as rw:
            not_applied: dict[str, str] = {}  # pass id -> why it did not apply (recorded in the manifest)
            rewritten: dict[tuple[str, tuple[str, ...]], _Rewritten] = {}
            by_fmt: dict[str, dict[str, _Rewritten]] = {}  # format -> role ("main", "half") -> program
            for fmt in fmts:
                wanted = tuple(stage_passes(target, passes, skip_passes, fmt=fmt))
                for role, key in _program_keys(fmt, fold is not None):
                    if key not in programs:
                        continue
                    if (key, wanted) not in rewritten:
                        prog, kw = programs[key]
                        _seed_layouts(prog, cap, fold if key != "image" else None)
                        prog, done = run_pipeline(prog, target, passes, skip_passes, fmt=fmt, not_applied=not_applied)
                        rewritten[key, wanted] = _Rewritten(prog, _example_kwargs(prog, kw, cap.input_names), done,
                                                            prog.graph_module.meta.get("edgekit_io_layouts"))
                    by_fmt.setdefault(fmt, {})[role] = rewritten[key, wanted]
            applied = list(dict.fromkeys(p for r in rewritten.values() for p in r.applied))
            for pass_id in applied:  # applied for some format: not "not applied"
                not_applied.pop(pass_id, None)
            for pass_id in stage_passes(target, passes, skip_passes):  # meant for formats not asked for
                if all(pass_id not in stage_passes(target, passes, skip_passes, fmt=f) for f in fmts):
                    not_applied[pass_id] = f"for {' and '.join(PASSES[pass_id].formats or ())} artifacts only"
            if target or passes:
                rw.message += f": applied {', '.join(applied) or 'none'}; {len(not_applied)} not applied (see edgekit.json)"

        # -- export -------------------------------------------------------------------------
        from edgekit.converters.exporters import ExportRequest, export

        exported: dict[str, Any] = {}
        failures: list[dict[str, Any]] = []
        statuses: dict[str, ArtifactStatus] = {}
        for fmt in fmts:
            dest = tmp / ARTIFACT_NAMES[fmt]
            report(Event("export", "start", fmt))
            t0 = time.perf_counter()
            try:
                if fmt in capture_errors:
                    raise capture_errors[fmt]
                mine = by_fmt.get(fmt, {})
                program, kwargs = (mine["main"].program, mine["main"].kwargs) if "main" in mine else (None, {})
                if program is None and not (fmt == "onnx" and direct_onnx):
                    raise ConversionError("export", f"{fmt}: nothing was captured to export")
                if program is None:
                    kwargs = dict(zip(cap.input_names, cap.example_inputs))
                request = ExportRequest(
                    program=program, kwargs=kwargs, input_names=list(cap.input_names),
                    output_names=list(cap.output_names), dest=dest, task=cap.task,
                    precision="fp32" if precision == "int8" else precision,  # int8: quantized after the TFLite passes
                    onnx_source=cap.onnx_path if (fmt == "onnx" and direct_onnx) else None,
                    image_input={"color_layout": fold.color_order} if (fmt == "coreml" and fold is not None) else None,
                    labels=cap.preprocess.get("labels"),
                    program_fp16=mine["half"].program if "half" in mine else None,
                )
                exported[fmt] = export(fmt, request)
                if fmt == "tflite" and (target or passes):  # format-level passes on the written file
                    path, tfl_applied = run_pipeline(exported[fmt].path, target, passes, skip_passes,
                                                     stage="tflite", not_applied=not_applied)
                    exported[fmt].path = path
                    exported[fmt].passes.extend(tfl_applied)
                    applied.extend(p for p in tfl_applied if p not in applied)
                if precision == "int8":  # after the TFLite passes: they rewrite float ops
                    _quantize(fmt, exported[fmt], cap, fold, by_fmt[fmt]["main"].io_layouts)
            except EdgekitError as e:
                _remove(dest)
                exported.pop(fmt, None)  # a format-level step after the export failed: nothing to verify
                secs = time.perf_counter() - t0
                failures.append({"format": fmt, "stage": getattr(e, "stage", "export"), "reason": str(e)})
                statuses[fmt] = ArtifactStatus(fmt, "export-failed", reason=str(e), export_seconds=round(secs, 2))
                report(Event("export", "failed", fmt, str(e), secs))
                continue
            secs = time.perf_counter() - t0
            statuses[fmt] = ArtifactStatus(fmt, "not-verified", path=out_path / ARTIFACT_NAMES[fmt],
                                           size_bytes=_size(dest), export_seconds=round(secs, 2))
            stage_seconds[f"export:{fmt}"] = secs
            report(Event("export", "done", fmt, f"{human_size(_size(dest))}", secs))
        if not exported:
            raise ConversionError("export", "no format could be exported: " +
                                  "; ".join(f["reason"] for f in failures))

        # -- verify -------------------------------------------------------------------------
        artifacts: list[Artifact] = []
        shared: dict[str, Any] = {}  # verification cases and the source's outputs, computed once
        for fmt, result in exported.items():
            # the passes record how the program's boundary differs from the source's
            mine = by_fmt.get(fmt, {}).get("main")
            art = _artifact(fmt, result, cap, fold, precision, mine.applied if mine else [], mine.io_layouts if mine else None)
            art.target = target
            st = statuses[fmt]
            if verify:
                report(Event("verify", "start", fmt))
                t0 = time.perf_counter()
                _verify(fmt, result, art, cap, fold, precision, st, bench_runs, shared)
                secs = time.perf_counter() - t0
                stage_seconds[f"verify:{fmt}"] = secs
                report(Event("verify", {"passed": "done"}.get(st.status, st.status), fmt, st.reason or metric_line(art), secs))
            else:
                art.verification = {"status": "not-run", "reason": "verification disabled (--no-verify)"}
                st.status, st.reason = "skipped", "verification disabled"
            art.size_bytes = _size(result.path)
            art.sha256 = sha256_file(result.path)
            artifacts.append(art)

        # -- manifest -----------------------------------------------------------------------
        with _stage(report, stage_seconds, "write", message=str(out_path)):
            preprocess = dict(cap.preprocess)
            if fold is not None:
                preprocess.update(fold.to_manifest())
            manifest = Manifest(
                name=cap.name, task=cap.task, source=cap.source, preprocess=preprocess, artifacts=artifacts,
                tools=tool_versions(), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                extra={"convert": {
                    "formats": list(fmts), "precision": precision, "target": target, "passes": applied,
                    "passes_not_applied": not_applied,
                    "fold_preprocess": fold is not None,
                    "input_shapes": [list(s) for s in cap.input_shapes],
                    "output_shapes": [list(s) for s in cap.output_shapes],
                }, "failures": failures},
            )
            write_manifest(tmp, manifest)
    result = ConvertResult(out_path, manifest, [statuses[f] for f in fmts], time.perf_counter() - t_start,
                           stage_seconds)
    return result


# --------------------------------------------------------------------------------------------


class _stage:
    """Context manager: report start/done/failed of a stage and record its duration."""

    def __init__(self, report: Callable[[Event], None], seconds: dict[str, float], stage: str, message: str = ""):
        self.report, self.seconds, self.stage, self.message = report, seconds, stage, message

    def __enter__(self) -> "_stage":
        self.t0 = time.perf_counter()
        self.report(Event(self.stage, "start", message=self.message))
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        secs = time.perf_counter() - self.t0
        self.seconds[self.stage] = secs
        if exc is None:
            self.report(Event(self.stage, "done", seconds=secs, message=self.message))
        elif isinstance(exc, Exception):
            self.report(Event(self.stage, "failed", message=str(exc), seconds=secs))


def _parse_formats(formats: str | Sequence[str]) -> list[str]:
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    fmts = []
    for f in (x.strip().lower() for x in items):
        if not f:
            continue
        f = {"mlpackage": "coreml", "litert": "tflite"}.get(f, f)
        if f not in ARTIFACT_NAMES:
            raise UsageError(f"unknown format '{f}'", hint="choose from: onnx, tflite, coreml")
        if f not in fmts:
            fmts.append(f)
    if not fmts:
        raise UsageError("no output format given", hint="pass --to onnx,tflite,coreml")
    return fmts


def _display(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else type(source).__name__


def _default_name(source: Any) -> str:
    text = _display(source)
    return Path(text.rsplit(":", 1)[-1] if ":" in text else text).stem or "model"


def _half_program(cap: Any, fold: Any) -> tuple[Any, dict]:
    """The fp16 program: a half-precision copy of the module, float32 inputs cast on entry
    and outputs cast back (so the artifact's interface stays float32)."""
    import copy

    import torch
    import torch.utils._pytree as pytree

    from edgekit.converters import capture as cap_mod

    module = cap.module
    try:
        half = copy.deepcopy(module).half()
    except Exception as e:  # an ExportedProgram's module may refuse; say so
        raise ConversionError("capture", f"cannot make a float16 copy of the model ({type(e).__name__}: {e})",
                              hint="convert with --precision fp32") from None

    class HalfIO(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = half

        def forward(self, *xs: torch.Tensor) -> Any:
            out = self.model(*[x.half() if x.is_floating_point() else x for x in xs])
            return pytree.tree_map(lambda t: t.float() if t.is_floating_point() else t, out)

    wrapper = HalfIO()
    wrapper.training = False
    half_cap = copy.copy(cap)
    half_cap.module = wrapper
    return cap_mod.export_program(half_cap, fold)


def _artifact(fmt: str, result: Any, cap: Any, fold: Any, precision: str, applied: list[str],
              io_layouts: dict | None = None) -> Artifact:
    """The manifest entry of an exported file, with the tensors the exporter was asked for
    (replaced by what the runtime reports once verification opened it).

    Rewrites may change the boundary: ``io_layouts`` is the program's ``edgekit_io_layouts``
    (e.g. NCTHW → TCHW by frames_to_batch, NCHW → NHWC by nhwc_boundary). Each changed tensor gets its artifact layout and shape, and a ``source_layouts``
    entry so that ``edgekit.load(bundle)`` translates from and to the source's layout."""
    in_layouts = list(cap.input_layouts)
    in_shapes = [list(s) for s in cap.input_shapes]
    in_dtypes = [str(t.dtype).replace("torch.", "") for t in cap.example_inputs]
    # A folded input is a new interface (pixels), not the source tensor in another layout, so it
    # gets no source_layouts entry: a bundle session must not transpose it back to NCHW.
    source_layouts: dict[str, str] = {}
    if fold is not None:
        in_dtypes[0] = "float32"
        if fold.input_layout == "NHWC" and fmt != "coreml":
            n, c, h, w = in_shapes[0]
            in_shapes[0] = [n, h, w, c]
            in_layouts[0] = "NHWC"
    if fmt == "coreml" and fold is not None:
        in_dtypes[0] = "uint8"  # an image
    inputs = [TensorSpec(n, tuple(s), d, lay) for n, s, d, lay in zip(cap.input_names, in_shapes, in_dtypes, in_layouts)]
    outputs = [TensorSpec(n, tuple(s), "float32", lay)
               for n, s, lay in zip(cap.output_names, cap.output_shapes, cap.output_layouts)]
    inputs, outputs = _rewritten_layouts(fmt, result, inputs, outputs, source_layouts, io_layouts)
    extra: dict[str, Any] = {"notes": result.notes} if result.notes else {}
    own = {k: v for k, v in result.extra.items() if k != "quantized_io"}
    if own:
        extra[fmt] = own
    if "quantized_io" in result.extra:  # read by bundle sessions (edgekit.runtimes.bundle_session)
        extra["quantized_io"] = result.extra["quantized_io"]
    return Artifact(path=result.path.name, format=fmt, inputs=inputs, outputs=outputs, target=None,
                    precision=precision, passes=[*applied, *result.passes], source_layouts=source_layouts,
                    extra=extra)


def _example_kwargs(program: Any, kwargs: dict, names: Sequence[str]) -> dict:
    """The exporters' example inputs for a (possibly rewritten) program: the captured ones where
    the program still takes that shape, else the program's own (a pass changed the boundary)."""
    if program is None or not getattr(program, "example_inputs", None):
        return kwargs
    args, kw = program.example_inputs
    own = dict(kw) if kw else dict(zip(names, args))
    def same(a: Any, b: Any) -> bool:  # int64_to_int32 changes the dtype, nhwc_boundary the shape
        return tuple(a.shape) == tuple(b.shape) and a.dtype == b.dtype

    return {n: (kwargs[n] if n in kwargs and n in own and same(kwargs[n], own[n]) else own.get(n, kwargs.get(n)))
            for n in names}


@dataclass
class _Rewritten:
    """A program after one format's passes: what the exporter gets and the manifest records."""

    program: Any
    kwargs: dict
    applied: list[str]
    io_layouts: dict | None


def _program_keys(fmt: str, folded: bool) -> list[tuple[str, str]]:
    """(role, captured program) pairs an exporter of ``fmt`` uses: its main program (CoreML with
    folded preprocessing takes an image, which has its own), and ONNX's fp16 variant."""
    if fmt == "coreml":
        return [("main", "image" if folded else "tensor")]
    return [("main", "tensor"), ("half", "half")] if fmt == "onnx" else [("main", "tensor")]


def _seed_layouts(program: Any, cap: Any, fold: Any) -> None:
    """Record the captured program's boundary layouts in its ``edgekit_io_layouts`` meta (source
    = artifact), so that passes which change the boundary (nhwc_boundary) know where they start."""
    from edgekit.converters.passes._fx import LAYOUT_META

    in_layouts = list(cap.input_layouts)
    if fold is not None and fold.input_layout == "NHWC":
        in_layouts[0] = "NHWC"
    meta = program.graph_module.meta.setdefault(LAYOUT_META, {"inputs": {}, "outputs": {}})
    for name, lay in zip(cap.input_names, in_layouts):
        if lay:
            meta["inputs"].setdefault(name, {"source": lay, "artifact": lay})
    for i, lay in enumerate(cap.output_layouts):
        if lay:
            meta["outputs"].setdefault(str(i), {"source": lay, "artifact": lay})


def _rewritten_layouts(fmt: str, result: Any, inputs: list[TensorSpec], outputs: list[TensorSpec],
                       source_layouts: dict[str, str], io_layouts: dict | None
                       ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Apply the boundary changes of the rewrite passes to the specs (see :func:`_artifact`);
    fills ``source_layouts`` in place."""
    from edgekit.runtimes.bundle_session import LayoutMap

    def change(spec: TensorSpec, layout: str) -> TensorSpec:
        if not spec.layout or layout == spec.layout:
            return spec
        source_layouts.setdefault(spec.name, spec.layout)
        return TensorSpec(spec.name, LayoutMap(spec.layout, layout).shape(spec.shape), spec.dtype, layout)

    if io_layouts:
        ins, outs = io_layouts.get("inputs", {}), io_layouts.get("outputs", {})
        inputs = [change(t, ins[t.name]["artifact"]) if t.name in ins else t for t in inputs]
        outputs = [change(t, (outs.get(t.name) or outs.get(str(i)))["artifact"])
                   if (t.name in outs or str(i) in outs) else t for i, t in enumerate(outputs)]
    return inputs, outputs


def _layout_loader(art: Artifact) -> Callable[[Path], Any] | None:
    """A loader for verification that feeds and returns the source's layouts and float dtypes,
    as a bundle session does (None: no change)."""
    if not art.source_layouts and not art.extra.get("quantized_io"):
        return None
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


def _quantize(fmt: str, result: Any, cap: Any, fold: Any, io_layouts: dict | None) -> None:
    """int8 quantization of the exported file in place (see :mod:`edgekit.converters.quantize`),
    calibrated on inputs in the file's layouts: full-integer TFLite, QDQ ONNX."""
    import numpy as np

    from edgekit.converters import quantize
    from edgekit.runtimes.bundle_session import LayoutMap

    dtypes = [np.dtype(str(t.dtype).replace("torch.", "")) for t in cap.example_inputs]
    samples, what = quantize.calibration_inputs(cap.input_shapes, dtypes, preprocess=cap.preprocess, fold=fold,
                                                task=cap.task)
    moves = {name: LayoutMap(lay["source"], lay["artifact"])
             for name, lay in ((io_layouts or {}).get("inputs") or {}).items() if lay["source"] != lay["artifact"]}
    feeds = [{n: (moves[n](a) if n in moves else a) for n, a in zip(cap.input_names, arrays)} for arrays in samples]
    if fmt == "onnx":
        quantize.quantize_onnx_int8(result.path, feeds)
        result.passes.append(f"{quantize.ONNX_INT8_PASS} on {what}")
        return
    if quantize.prepare_for_int8(result.path):
        result.passes.append(quantize.PREP_PASS)
    result.extra["quantized_io"] = quantize.quantize_int8(result.path, feeds)
    result.passes.append(f"{quantize.INT8_PASS} on {what}")
    result.notes.append("int8 weights, activations, inputs and outputs; a bundle session quantizes and dequantizes "
                        "at the boundary (quantized_io)")


def _verify(fmt: str, result: Any, art: Artifact, cap: Any, fold: Any, precision: str, st: ArtifactStatus,
            bench_runs: int, shared: dict[str, Any]) -> None:
    """Verify one artifact in place: fills ``art.verification`` (and the runtime's tensor
    names), ``st.status``/``st.reason``/``st.latency_ms``."""
    import numpy as np

    from edgekit.converters import verify as V
    from edgekit.runtimes.host import is_macos

    preprocess = cap.preprocess
    peak = 2.0 if cap.task == "decode-video" else float(np.ptp(preprocess.get("value_range") or (0.0, 1.0))) or 1.0
    if fmt == "coreml":
        _adopt_coreml_specs(art, result.path)
    if fmt == "coreml" and not is_macos():
        problems = V.check_coreml_spec(result.path, [tuple(t.shape) for t in art.inputs], cap.input_names,
                                       cap.output_names, [tuple(t.shape) for t in art.outputs],
                                       image_input=fold is not None)
        if problems:
            art.verification = {"status": "failed", "reason": "spec check: " + "; ".join(problems)}
            st.status, st.reason = "failed", art.verification["reason"]
        else:
            art.verification = {"status": "skipped", "reason": "CoreML prediction needs macOS",
                                "spec_check": "passed: the package loads; inputs and outputs have the source's "
                                              "names and shapes"}
            st.status, st.reason = "skipped", "CoreML prediction needs macOS (spec checked)"
        return
    if "cases" not in shared:
        example = [t.numpy() for t in cap.example_inputs]
        shared["cases"] = V.make_cases([tuple(t.shape) for t in cap.example_inputs], [a.dtype for a in example],
                                       task=cap.task, preprocess=preprocess, fold=fold,
                                       example=example if fold is None else None,
                                       normal=precision != "int8")  # int8 saturates outside its calibrated range
        shared["references"] = [cap.reference(c.source) for c in shared["cases"]]
    cases = shared["cases"]
    if fmt == "coreml" and fold is not None and fold.input_layout == "NHWC":  # CoreML images are NCHW
        cases = [V.Case(c.name, c.source, [c.artifact[0].transpose(0, 3, 1, 2)]) for c in cases]
    session = None
    try:
        verification, session = V.verify_artifact(result.path, cases, cap.reference, output_names=cap.output_names,
                                                  precision=precision, task=cap.task, peak=peak,
                                                  references=shared["references"], reference64=cap.reference64,
                                                  loader=_layout_loader(art),
                                                  approximate=[p for p in art.passes if p.startswith("approx_")])
        _adopt_runtime_specs(art, _innermost(session))  # the artifact's own specs
    except EdgekitError as e:
        verification = {"status": "failed", "reason": f"the runtime cannot run it: {e}"}
    except Exception as e:  # noqa: BLE001 - a runtime crash on this artifact fails this artifact only
        first = first_line(e)
        verification = {"status": "failed", "reason": f"running it raised {type(e).__name__}: {first}"}
    art.verification = verification
    st.status = verification["status"]
    st.reason = verification.get("reason")
    if session is not None:
        if st.status == "passed" and bench_runs:
            st.latency_ms = _latency(session, cases[0].artifact, bench_runs)
            art.extra["latency_ms_p50"] = st.latency_ms
            art.extra["latency_host"] = _host_line(session)
        session.close()


def _adopt_runtime_specs(art: Artifact, session: Any) -> None:
    """Record the tensor names, shapes and dtypes the runtime reports (what a user feeds),
    keeping the layouts known from the source."""
    def merge(specs: list[TensorSpec], runtime: list[TensorSpec]) -> list[TensorSpec]:
        if len(specs) != len(runtime):
            return specs
        return [TensorSpec(r.name, tuple(r.shape), r.dtype, s.layout) for s, r in zip(specs, runtime)]

    art.inputs = merge(art.inputs, list(session.inputs))
    art.outputs = merge(art.outputs, list(session.outputs))


def _adopt_coreml_specs(art: Artifact, path: Path) -> None:
    """Record the package's own interface: an image input stays ``uint8`` NCHW; a classifier's
    outputs are the label (``str``) and the probability dictionary (``dict``, keyed by label)."""
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
    feed = {spec.name: a for spec, a in zip(session.inputs, arrays)}
    try:
        from edgekit.runtimes.bench import bench

        return round(bench(session, warmup=3, runs=runs, feed=feed).p50_ms, 3)
    except EdgekitError:
        return None


def _host_line(session: Any) -> str:
    import platform

    return f"{platform.machine()} {platform.system()}, {session.backend}/{session.placement.accelerator}, " \
           f"{session.threads} thread(s)"


def metric_line(art: Artifact) -> str:
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


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
    extra = path.with_name(path.name + ".data")
    if extra.exists():
        extra.unlink()
