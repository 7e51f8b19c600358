"""Rewrite passes ("NPU-friendly passes") and the per-target pipelines that order them.

This is the *rewrite* stage of ``edgekit convert`` (capture → **rewrite** → export → verify).
A pass is one file in this folder, named by its id (``fold_batchnorm`` is ``fold_batchnorm.py``):
a docstring with the graph before and after (``Before``/``After`` blocks) and the maths, and

- ``check(program) -> str | None``: None when the pass applies, else the reason it does not
  (reported in the manifest, never an error);
- ``rewrite(program) -> program``: the rewritten program. Exact unless the id says ``approx_``.

Passes act at one *stage*: ``program`` passes take and return a ``torch.export``
``ExportedProgram`` (so all three formats benefit); ``tflite`` passes take and return the
path of a written ``.tflite`` file (only for what litert-torch emits badly). Program passes run
before export, TFLite passes on the written file after it.

:data:`PASSES` holds what the code does not say: each pass's stage, the formats it is for,
whether it is exact, and the passes it must run after, each with the reason (``after``). Each
target profile (``edgekit/targets/*.toml``) lists its pass ids in the order they run; loading a
profile, and every explicit ``--passes`` list, is checked against the specs
(:func:`pipeline_problem`). docs/passes.md describes how to add a pass.

Example::

    >>> program, applied = run_pipeline(program, target="generic-npu")   # doctest: +SKIP
    >>> applied[:2]
    ['fold_batchnorm', 'static_shapes']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Iterable, Mapping, Sequence

from edgekit.errors import ConversionError, EdgekitError, UsageError, first_line

__all__ = ["PassSpec", "PASSES", "STAGES", "module_name", "pipeline_problem", "pipeline_for", "run_pipeline",
           "stage_passes", "validate_selection"]

# The stages in the order ``edgekit convert`` runs them: program passes on the captured program
# before export, tflite passes on the written .tflite file after it.
STAGES = ("program", "tflite")
_STAGE_ORDER = "program passes run on the captured program before export, tflite passes on the written .tflite after it"


@dataclass(frozen=True)
class PassSpec:
    """What the registry says about a pass; its code is ``edgekit.converters.passes.<id>``."""

    stage: str  # one of STAGES
    # the formats whose artifacts it is for (None: all). A layout rewrite is for the formats that
    # store tensors that way: NHWC for TFLite; ONNX and CoreML ops are channels-first by definition.
    formats: tuple[str, ...] | None = None
    # pass id -> why this pass must run after it. Binds only when both are in a pipeline.
    after: Mapping[str, str] = field(default_factory=dict)
    # the rewritten program computes the same function, up to float rounding; False only for
    # ``approx_`` passes, which default pipelines never run
    exact: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", MappingProxyType(dict(self.after)))


# pass id -> its spec (docs/passes.md). Explicit; the code is imported only when a pass runs.
PASSES: dict[str, PassSpec] = {
    "fold_batchnorm": PassSpec("program"),
    "collapse_reparam": PassSpec("program", after={
        "fold_batchnorm": "each branch's BatchNorm must be folded into its conv before the branches are summed into one conv",
    }),
    "static_shapes": PassSpec("program"),
    "int64_to_int32": PassSpec("program", after={
        "static_shapes": "it refuses dynamic shapes; static_shapes folds the run-time shape arithmetic and its int64 sizes into constants",
    }),
    "groupnorm_decompose": PassSpec("program"),
    "pixel_shuffle_3d_to_4d": PassSpec("program"),
    "frames_to_batch": PassSpec("program", after={
        "static_shapes": "frames fold into the batch for a fixed number of frames T",
        "groupnorm_decompose": "a clip-wide GroupNorm pools over T; decomposed first, its means and 1×1×1 conv fold frame by frame",
        "pixel_shuffle_3d_to_4d": "the 3-D pixel shuffle is matched as the rank-6/8 view chain after a Conv3d, which frames_to_batch folds away",
    }),
    "conv3d_to_conv2d": PassSpec("program", after={
        "frames_to_batch": "frames_to_batch lowers every Conv3d of a graph it folds; this pass takes the Conv3ds left where it does not apply",
    }),
    "upsample_nearest_native": PassSpec("program", after={
        "static_shapes": "the integer scale factors are read from static shapes",
        "frames_to_batch": "frames_to_batch lowers every 3-D nearest upsample of a graph it folds; this pass takes those left where it does not apply",
    }),
    "attention_per_frame": PassSpec("program", ("onnx", "coreml"), after={
        "frames_to_batch": "it matches attention on frames in batch, (T, C, H, W), the layout frames_to_batch makes",
    }),
    "pixel_shuffle_to_depth_to_space": PassSpec("program", after={
        "fold_batchnorm": "a BatchNorm between the conv and the shuffle hides the conv whose output channels this pass permutes",
        "pixel_shuffle_3d_to_4d": "pixel_shuffle_3d_to_4d leaves per-frame pixel_shuffle ops for this pass to take",
        "repeat_interleave_to_4d": "a channel repeat before a shuffle becomes a one-hot 1×1 conv there, which this pass then permutes in place",
    }),
    "mean_to_avgpool": PassSpec("program", after={
        "static_shapes": "the pool's kernel is the static H × W",
        "groupnorm_decompose": "groupnorm_decompose writes GroupNorm's statistics as means over H and W, which this pass turns into average pools",
    }),
    "pixel_shuffle_to_transpose_conv": PassSpec("program", after={
        "pixel_shuffle_3d_to_4d": "pixel_shuffle_3d_to_4d leaves per-frame pixel_shuffle ops for this pass to take",
    }),
    "hardswish_decompose": PassSpec("tflite"),
    "approx_gelu_tanh": PassSpec("program", exact=False),
    "prelu_restore": PassSpec("program"),
    "resize_nearest_no_half_pixel": PassSpec("tflite"),
    "relu_0_to_1_decompose": PassSpec("tflite"),
    "slice_assign_to_concat": PassSpec("program", after={
        "static_shapes": "the block a write covers is located with static shapes",
    }),
    "repeat_interleave_to_4d": PassSpec("program", after={
        "static_shapes": "the repeat factors are read from static shapes",
        "frames_to_batch": "frames_to_batch folds the 5-D repeats of a video graph into frames; this pass takes the 4-D ones",
    }),
    "high_rank_views_to_4d": PassSpec("program", after={
        "static_shapes": "the view chains are simulated on static shapes",
        "pixel_shuffle_3d_to_4d": "a 3-D pixel shuffle's rank-6/8 chain becomes per-frame shuffles there, not a transpose here",
        "frames_to_batch": "frames_to_batch folds the rank-5 views of a video graph into frames; this pass takes what is left",
        "repeat_interleave_to_4d": "a repeat spelled with rank-5/6 expands becomes a resize or one-hot conv there, not concatenated copies here",
        "pixel_shuffle_to_depth_to_space": "a pixel shuffle spelled as a rank-6 view chain becomes DEPTH_TO_SPACE there, not a rank-4 transpose here",
        "pixel_shuffle_to_transpose_conv": "a pixel shuffle spelled as a rank-6 view chain becomes TRANSPOSE_CONV there, not a rank-4 transpose here",
    }),
    "adaptive_pool_to_pool": PassSpec("program", after={
        "static_shapes": "the pool's kernel is the static input size divided by the output size",
    }),
    "nhwc_boundary": PassSpec("program", ("tflite",), after={
        "frames_to_batch": "it moves C last on the per-frame (T, C, H, W) interface frames_to_batch makes; before it, a 5-D interface stays channels-first",
    }),
}


def module_name(pass_id: str) -> str:
    """The import path of a pass's code: the id names the file."""
    return f"{__name__}.{pass_id}"


def pipeline_problem(pipeline: Sequence[str]) -> str | None:
    """The first way ``pipeline`` (pass ids in run order) breaks the registry, as a phrase, or
    None: an unknown id, an id listed twice, a pass of a later stage listed before one of an
    earlier stage, or a pass listed before one its spec says must come first."""
    unknown = [p for p in pipeline if p not in PASSES]
    if unknown:
        return f"unknown pass(es) {', '.join(unknown)}"
    seen: set[str] = set()
    for p in pipeline:
        if p in seen:
            return f"pipeline lists '{p}' twice"
        seen.add(p)
    for i, p in enumerate(pipeline):
        for q in pipeline[i + 1:]:
            if STAGES.index(PASSES[q].stage) < STAGES.index(PASSES[p].stage):
                return (f"pipeline lists the {PASSES[p].stage}-stage pass '{p}' before the {PASSES[q].stage}-stage pass "
                        f"'{q}' ({_STAGE_ORDER})")
            if q in PASSES[p].after:
                return f"pipeline runs '{p}' before '{q}', which must come first ({PASSES[p].after[q]})"
    return None


def pipeline_for(target: str) -> list[str]:
    """The ordered pass ids of a target profile (an unknown target is a usage error)."""
    from edgekit.targets import load_target

    return list(load_target(target).pipeline)


def validate_selection(target: str | None, passes: Sequence[str] | None = None, skip: Iterable[str] = ()) -> list[str]:
    """The pass ids that will run, in order; refuses unknown targets, unknown pass ids and an
    explicit ``passes`` list in an order the registry forbids, up front."""
    skip = list(skip)
    if target is None and not passes:
        if skip:
            raise UsageError(f"--skip-pass {', '.join(skip)} given without a --target or --passes")
        return []
    wanted = list(passes) if passes else pipeline_for(target)  # type: ignore[arg-type]  (checked on load)
    unknown = [p for p in [*wanted, *skip] if p not in PASSES]
    if unknown:
        raise UsageError(f"unknown pass(es) {', '.join(unknown)}", hint=_unknown_pass_hint(unknown))
    if passes and (problem := pipeline_problem(wanted)):
        raise UsageError(problem, where="--passes", hint="reorder the pass ids")
    return [p for p in wanted if p not in skip]


def _unknown_pass_hint(unknown: Sequence[str]) -> str:
    """Close matches for each unknown id, else where the full list is (the registry is too long for one line)."""
    import difflib

    close = sorted({m for u in unknown for m in difflib.get_close_matches(u, PASSES, n=2, cutoff=0.5)})
    listing = "docs/passes.md lists every pass id"
    return f"did you mean {', '.join(close)}? ({listing})" if close else listing


def stage_passes(target: str | None, passes: Sequence[str] | None = None, skip: Iterable[str] = (), *,
                 stage: str = "program", fmt: str | None = None) -> list[str]:
    """The pass ids of one stage that run for an artifact of format ``fmt`` (None: any), in order."""
    return [p for p in validate_selection(target, passes, skip)
            if PASSES[p].stage == stage and (fmt is None or PASSES[p].formats is None or fmt in PASSES[p].formats)]


def _module(pass_id: str) -> ModuleType:
    """The pass's code (every registered pass has its file; the contract test checks it)."""
    return importlib.import_module(module_name(pass_id))


def run_pipeline(
    program: Any,
    target: str | None,
    passes: Sequence[str] | None = None,
    skip: Iterable[str] = (),
    *,
    stage: str = "program",
    fmt: str | None = None,
    not_applied: dict[str, str] | None = None,
) -> tuple[Any, list[str]]:
    """Apply the passes of ``stage`` from ``target``'s pipeline (or the explicit ``passes``,
    minus ``skip``) to ``program``; return ``(result, applied_ids)``. With ``fmt``, only the
    passes meant for that format's artifact run (see :attr:`PassSpec.formats`).

    The identity for ``target=None`` with no passes, and for ``program=None`` (which only
    validates the selection). A pass whose ``check`` gives a reason is not applied; the reason
    goes into ``not_applied`` (when given), which the converter records in the manifest and
    shows: lint then reports what the missing rewrite would have fixed. A pass that fails raises
    a :class:`ConversionError` naming it.
    """
    selected = stage_passes(target, passes, skip, stage=stage, fmt=fmt)
    applied: list[str] = []
    if program is None:
        return program, applied
    for pass_id in selected:
        module = _module(pass_id)
        reason = module.check(program)
        if reason:
            if not_applied is not None:
                not_applied[pass_id] = reason
            continue
        try:
            program = module.rewrite(program)
        except EdgekitError:
            raise
        except Exception as e:
            first = first_line(e)
            raise ConversionError("rewrite", f"pass '{pass_id}' failed: {type(e).__name__}: {first}",
                                  hint=f"report it, or skip the pass with --skip-pass {pass_id}") from None
        applied.append(pass_id)
    return program, applied
