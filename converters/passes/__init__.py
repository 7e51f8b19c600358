"""Rewrite passes ("NPU-friendly passes") and the per-target pipelines that order them.

This is the *rewrite* stage of ``edgekit convert`` (capture → **rewrite** → export → verify).
A pass is one file in this folder: a docstring with the before/after graph and the maths, and

- ``check(program) -> str | None``: None when the pass applies, else the reason it does not
  (reported in the manifest, never an error);
- ``rewrite(program) -> program``: the rewritten program. Exact unless the id says ``approx_``.

Passes act at one *stage*: ``program`` passes take and return a ``torch.export``
``ExportedProgram`` (so all three formats benefit); ``tflite`` passes take and return the
path of a written ``.tflite`` file (only for what litert-torch emits badly). Pipelines are data:
each target profile (``edgekit/targets/*.toml``) lists its pass ids in order, with a comment
on every ordering constraint.

Example::

    >>> program, applied = run_pipeline(program, target="generic-npu")   # doctest: +SKIP
    >>> applied[:2]
    ['fold_batchnorm', 'static_shapes']
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from edgekit.errors import ConversionError, EdgekitError, UsageError

__all__ = ["PassSpec", "PASSES", "pipeline_for", "run_pipeline", "stage_passes", "validate_selection"]


@dataclass(frozen=True)
class PassSpec:
    module: str  # import path of the pass's file
    stage: str  # "program" | "tflite"
    # the formats whose artifacts it is for (None: all). A layout rewrite is for the formats that
    # store tensors that way: NHWC for TFLite; ONNX and CoreML ops are channels-first by definition.
    formats: tuple[str, ...] | None = None


_P = "edgekit.converters.passes."
# pass id -> where it lives and when it runs. Explicit, imported lazily.
PASSES: dict[str, PassSpec] = {
    "fold_batchnorm": PassSpec(_P + "fold_batchnorm", "program"),
    "collapse_reparam": PassSpec(_P + "collapse_reparam", "program"),
    "static_shapes": PassSpec(_P + "static_shapes", "program"),
    "int64_to_int32": PassSpec(_P + "int64_to_int32", "program"),
    "groupnorm_decompose": PassSpec(_P + "groupnorm_decompose", "program"),
    "pixel_shuffle_3d_to_4d": PassSpec(_P + "pixel_shuffle_3d_to_4d", "program"),
    "frames_to_batch": PassSpec(_P + "frames_to_batch", "program"),
    "conv3d_to_conv2d": PassSpec(_P + "conv3d_to_conv2d", "program"),
    "upsample_nearest_native": PassSpec(_P + "upsample_nearest_native", "program"),
    "attention_per_frame": PassSpec(_P + "attention_per_frame", "program", ("onnx", "coreml")),
    "pixel_shuffle_to_depth_to_space": PassSpec(_P + "pixel_shuffle_to_depth_to_space", "program"),
    "mean_to_avgpool": PassSpec(_P + "mean_to_avgpool", "program"),
    "pixel_shuffle_to_transpose_conv": PassSpec(_P + "pixel_shuffle_to_transpose_conv", "program"),
    "hardswish_decompose": PassSpec(_P + "hardswish_decompose", "tflite"),
    "approx_gelu_tanh": PassSpec(_P + "approx_gelu_tanh", "program"),
    "prelu_restore": PassSpec(_P + "prelu_restore", "program"),
    "resize_nearest_no_half_pixel": PassSpec(_P + "resize_nearest_no_half_pixel", "tflite"),
    "relu_0_to_1_decompose": PassSpec(_P + "relu_0_to_1_decompose", "tflite"),
    "nhwc_boundary": PassSpec(_P + "nhwc_boundary", "program", ("tflite",)),
}


def pipeline_for(target: str) -> list[str]:
    """The ordered pass ids of a target profile (an unknown target is a usage error)."""
    from edgekit.targets import load_target

    return list(load_target(target).pipeline)


def validate_selection(target: str | None, passes: Sequence[str] | None = None, skip: Iterable[str] = ()) -> list[str]:
    """The pass ids that will run, in order; refuses unknown targets and pass ids up front."""
    skip = list(skip)
    if target is None and not passes:
        if skip:
            raise UsageError(f"--skip-pass {', '.join(skip)} given without a --target or --passes")
        return []
    wanted = list(passes) if passes else pipeline_for(target)  # type: ignore[arg-type]
    unknown = [p for p in [*wanted, *skip] if p not in PASSES]
    if unknown:
        raise UsageError(f"unknown pass(es) {', '.join(unknown)}", hint=f"known passes: {', '.join(PASSES)}")
    return [p for p in wanted if p not in skip]


def stage_passes(target: str | None, passes: Sequence[str] | None = None, skip: Iterable[str] = (), *,
                 stage: str = "program", fmt: str | None = None) -> list[str]:
    """The pass ids of one stage that run for an artifact of format ``fmt`` (None: any), in order."""
    return [p for p in validate_selection(target, passes, skip)
            if PASSES[p].stage == stage and (fmt is None or PASSES[p].formats is None or fmt in PASSES[p].formats)]


NOT_AVAILABLE = "not available in this version of edgekit"


def _module(pass_id: str) -> Any | None:
    """The pass's module, or None when this version does not have it yet."""
    spec = PASSES[pass_id]
    try:
        return importlib.import_module(spec.module)
    except ModuleNotFoundError as e:
        if e.name == spec.module:
            return None
        raise


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

    The identity for ``target=None`` with no passes. A pass whose ``check`` gives a reason (or
    that this version does not have) is not applied; the reason goes into ``not_applied`` (when
    given), which the converter records in the manifest and shows: lint then reports what the
    missing rewrite would have fixed. A pass that fails raises a
    :class:`ConversionError` naming it.
    """
    selected = stage_passes(target, passes, skip, stage=stage, fmt=fmt)
    applied: list[str] = []
    if program is None:
        return program, applied
    for pass_id in selected:
        module = _module(pass_id)
        reason = NOT_AVAILABLE if module is None else module.check(program)
        if reason:
            if not_applied is not None:
                not_applied[pass_id] = reason
            continue
        try:
            program = module.rewrite(program)
        except EdgekitError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ConversionError("rewrite", f"pass '{pass_id}' failed: {type(e).__name__}: {first}",
                                  hint=f"report it, or skip the pass with --skip-pass {pass_id}") from None
        applied.append(pass_id)
    return program, applied
