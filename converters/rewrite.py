"""The rewrite stage of a conversion: each format gets the program its own passes made.

A pass declares the formats it is for (a layout rewrite is for the formats that store tensors
that way: NHWC for TFLite; ONNX and CoreML ops are channels-first by definition), so formats may
need different programs; formats whose pipelines agree share one rewritten program. A pass that
did not apply is recorded with its reason (``Conversion.not_applied``), including passes meant
only for formats that were not asked for. Format-level (``tflite``-stage) passes run later, on
the written file (see ``exporters.stage``).
"""

from __future__ import annotations

from typing import Any, Sequence

from edgekit.converters.jobs import Conversion, Job, Rewritten

__all__ = ["rewrite_stage", "program_keys"]


def program_keys(fmt: str, folded: bool) -> list[tuple[str, str]]:
    """(role, captured program) pairs an exporter of ``fmt`` uses: its main program (CoreML with
    folded pre-processing takes an image, which has its own), and ONNX's fp16 variant."""
    if fmt == "coreml":
        return [("main", "image" if folded else "tensor")]
    return [("main", "tensor"), ("half", "half")] if fmt == "onnx" else [("main", "tensor")]


def rewrite_stage(conv: Conversion, jobs: list[Job]) -> list[Job]:
    """Set ``job.program`` (and ``job.half``) to the rewritten programs; fill
    ``conv.applied`` and ``conv.not_applied``."""
    from edgekit.converters.passes import PASSES, run_pipeline, stage_passes

    o = conv.options
    with conv.stage("rewrite", message=f"target {o.target or 'none'}") as timer:
        done: dict[tuple[str, tuple[str, ...]], Rewritten] = {}
        for job in jobs:
            job.passes = tuple(stage_passes(o.target, o.passes, o.skip_passes, fmt=job.format))
            if not job.alive:
                continue
            for role, key in program_keys(job.format, conv.fold is not None):
                if key not in conv.programs:
                    continue
                if (key, job.passes) not in done:
                    prog, kwargs = conv.programs[key]
                    seed_layouts(prog, conv.captured, conv.fold if key != "image" else None)
                    prog, applied = run_pipeline(prog, o.target, o.passes, o.skip_passes, fmt=job.format,
                                                 not_applied=conv.not_applied)
                    done[key, job.passes] = Rewritten(prog, example_kwargs(prog, kwargs, conv.captured.input_names),
                                                      applied, prog.graph_module.meta.get("edgekit_io_layouts"))
                setattr(job, "program" if role == "main" else "half", done[key, job.passes])
        conv.applied = list(dict.fromkeys(p for r in done.values() for p in r.applied))
        for pass_id in conv.applied:  # applied for some format: not "not applied"
            conv.not_applied.pop(pass_id, None)
        formats = [j.format for j in jobs]
        for pass_id in stage_passes(o.target, o.passes, o.skip_passes):  # meant for formats not asked for
            if all(pass_id not in stage_passes(o.target, o.passes, o.skip_passes, fmt=f) for f in formats):
                conv.not_applied[pass_id] = f"for {' and '.join(PASSES[pass_id].formats or ())} artifacts only"
        if o.rewrites:
            timer.message += (f": applied {', '.join(conv.applied) or 'none'}; {len(conv.not_applied)} not applied "
                              "(see edgekit.json)")
    return jobs


def example_kwargs(program: Any, kwargs: dict, names: Sequence[str]) -> dict:
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


def seed_layouts(program: Any, cap: Any, fold: Any) -> None:
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
