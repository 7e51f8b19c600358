"""The lint stage of a conversion: with ``--target``, every artifact is checked against the
target's profile (:mod:`edgekit.lint`) and the verdict is recorded on its manifest entry
(``artifact.lint``), so a bundle says whether it fits its accelerator without being re-linted.
Findings are recorded, never fatal: the conversion's verdict is verification's."""

from __future__ import annotations

from typing import Any

from edgekit.converters.jobs import Conversion, Event, Job

__all__ = ["lint_stage", "MAX_FINDINGS"]

MAX_FINDINGS = 50  # findings kept per artifact in the manifest (the summary counts them all)


def lint_stage(conv: Conversion, jobs: list[Job]) -> list[Job]:
    target = conv.options.target
    if not target:
        return jobs
    from edgekit.lint import lint
    from edgekit.lint.readers import LINT_FORMATS
    from edgekit.targets import load_target

    profile = load_target(target)
    for job in jobs:
        art = job.artifact
        if art is None:
            continue
        path = job.result.path
        if path.suffix.lower() not in LINT_FORMATS:
            continue
        covered = getattr(profile, "formats", None)
        if covered and job.format not in covered:
            art.lint = {"target": target, "skipped": f"the {target} profile covers {', '.join(covered)} artifacts"}
            continue
        art.lint = _verdict(lint, path, profile, target, art.passes, conv.not_applied)
        s = art.lint
        conv.report(Event("lint", "failed" if "error" in s else "done", job.format, _line(s)))
    return jobs


def _verdict(lint: Any, path: Any, profile: Any, target: str, applied: list[str],
             declined: dict[str, str]) -> dict[str, Any]:
    from edgekit.errors import EdgekitError
    from edgekit.lint import reconcile_fixes

    try:
        report = reconcile_fixes(lint(path, profile), applied, declined)
    except EdgekitError as e:
        return {"target": target, "error": str(e)}
    s = report.summary
    out = {k: s[k] for k in ("target", "passed", "errors", "warnings", "by_rule", "fix_passes") if k in s}
    out["findings"] = [f.to_dict() for f in report.findings[:MAX_FINDINGS]]
    if report.notes:
        out["notes"] = list(report.notes)
    return out


def _line(s: dict[str, Any]) -> str:
    if "error" in s:
        return f"not checked: {s['error']}"
    if s.get("passed") and not s.get("warnings"):
        return f"clean for {s['target']}"
    return f"{s['target']}: {s.get('errors', 0)} error(s), {s.get('warnings', 0)} warning(s)"
