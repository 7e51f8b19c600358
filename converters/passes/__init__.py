"""Rewrite passes ("NPU-friendly passes") and the per-target pipelines that order them.

This is the hook of the *rewrite* stage of ``edgekit convert`` (capture → **rewrite** →
export → verify). Passes arrive with the NPU-rewrite issue (issue 5), one file per pass in
this folder, each exact unless its id says ``approx_``, and pipelines as data: one ordered
list of pass ids per target. Until then the only pipeline is the empty one: with no target
the program goes to the exporters unchanged, and asking for a target or a pass is an error
that says so — never a silent no-op.

Example::

    >>> program, applied = run_pipeline(program, target=None)     # doctest: +SKIP
    >>> applied
    []
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from edgekit.errors import UsageError

__all__ = ["PASSES", "PIPELINES", "run_pipeline"]

# pass id -> "module:function" (lazy), filled by issue 5.
PASSES: dict[str, str] = {}
# target -> ordered pass ids, filled by issue 5.
PIPELINES: dict[str, list[str]] = {}


def run_pipeline(
    program: Any,
    target: str | None,
    passes: Sequence[str] | None = None,
    skip: Iterable[str] = (),
) -> tuple[Any, list[str]]:
    """Apply the pipeline of ``target`` (or the explicit ``passes``, minus ``skip``) to
    ``program`` (an ``ExportedProgram`` or ``nn.Module``); return ``(result, applied_ids)``.

    The identity for ``target=None`` with no passes. Unknown targets and pass ids are usage
    errors naming what exists.
    """
    skip = list(skip)
    if target is None and not passes:
        if skip:
            raise UsageError(f"--skip-pass {', '.join(skip)} given without a --target or --passes")
        return program, []
    if target is not None and target not in PIPELINES:
        known = ", ".join(sorted(PIPELINES)) or "none yet"
        raise UsageError(f"target '{target}' is not available in this version (known targets: {known})",
                         hint="NPU targets such as generic-npu arrive with the NPU rewrites (issue 5); omit --target")
    wanted = list(passes) if passes else list(PIPELINES[target])  # type: ignore[index]
    unknown = [p for p in [*wanted, *skip] if p not in PASSES]
    if unknown:
        known = ", ".join(sorted(PASSES)) or "none yet"
        raise UsageError(f"unknown pass(es) {', '.join(unknown)} (known passes: {known})",
                         hint="rewrite passes arrive with the NPU rewrites (issue 5)")
    applied: list[str] = []
    import importlib

    for pass_id in wanted:
        if pass_id in skip:
            continue
        module_name, _, fn_name = PASSES[pass_id].partition(":")
        program = getattr(importlib.import_module(module_name), fn_name)(program)
        applied.append(pass_id)
    return program, applied
