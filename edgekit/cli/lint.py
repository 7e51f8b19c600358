"""`edgekit lint MODEL --target NAME`: a shell over :func:`edgekit.lint.lint`.

Prints every finding, grouped by rule (and op type), each with where it is, what is wrong,
why it matters on the accelerator and the pass that fixes it; then one summary line. Exit
codes: 0 when the model passes (no errors; warnings allowed unless ``--strict``), 3 when it
does not, 1 for a file that cannot be read, 2 for a usage error (e.g. an unknown target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgekit.cli._common import handle_errors, out_console, print_json

_ORDER = {"error": 0, "warning": 1}
# Most consequential first: what the accelerator cannot run at all, then shapes, then details.
_RULE_ORDER = ("format", "op-forbidden", "op-not-supported", "rank", "dynamic-shape", "dtype", "layout",
               "pixel-shuffle", "op-constraint", "nonunit-dims", "max-dim", "batch", "prelu-decomposed", "silu")
_FORMAT_NAMES = {"onnx": "ONNX", "tflite": "TFLite / LiteRT", "coreml": "Core ML"}


def register(app: typer.Typer) -> None:
    @app.command("lint")
    @handle_errors
    def lint(
        model: Optional[Path] = typer.Argument(None, help="A .tflite, .onnx or .mlpackage file (from any tool), or "
                                                        "an edgekit bundle folder (each artifact is linted)."),
        target: Optional[str] = typer.Option(None, "--target", "-t", help="Target profile (see --list-targets; "
                                             "default: a bundle's own target, else generic-npu)."),
        json_out: bool = typer.Option(False, "--json", help="Print findings, summary and target as JSON."),
        show_all: bool = typer.Option(False, "--all", help="List every finding (default: the first 8 of each group)."),
        strict: bool = typer.Option(False, "--strict", help="Fail (exit 3) on warnings too."),
        list_targets: bool = typer.Option(False, "--list-targets", help="List the target profiles and exit."),
    ) -> None:
        """Check a model against an accelerator's rules; every violation, with the pass that fixes it.

        Example: edgekit lint model.tflite --target edgetpu
        """
        from edgekit.errors import LintFailed, UsageError
        from edgekit.targets import list_targets as names, load_target

        if list_targets:
            profiles = [load_target(n) for n in names()]
            if json_out:
                print_json([p.to_dict() for p in profiles])
            else:
                _render_targets(profiles)
            return
        if model is None:
            raise UsageError("missing MODEL", hint="usage: edgekit lint MODEL [--target NAME], or --list-targets")
        from edgekit.bundle import is_bundle

        if is_bundle(model):
            reports, profile = _lint_bundle(model, target)
        else:
            from edgekit.lint import lint as run_lint

            profile = load_target(target or "generic-npu")
            reports = [run_lint(model, profile)]
        if json_out:
            payload = [{**r.to_dict(), "target": profile.to_dict(),
                        **({"npu_placement": n} if (n := _npu_placement(r, profile)) is not None else {})}
                       for r in reports]
            print_json(payload[0] if len(payload) == 1 and not is_bundle(model) else payload)
        else:
            for report in reports:
                _render(report, profile, show_all)
        bad = [r for r in reports if not r.passed or (strict and r.warnings)]
        if bad:
            s = bad[0].summary
            where = bad[0].path if len(reports) > 1 else model
            raise LintFailed(f"fails {profile.name}: {s['errors']} error(s), {s['warnings']} warning(s)"
                             + (" (--strict)" if bad[0].passed else "")
                             + (f"; {len(bad)} of {len(reports)} artifacts fail" if len(reports) > 1 else ""),
                             where=where)


def _lint_bundle(folder: Path, target: str | None) -> tuple[list[Any], Any]:
    """Lint each artifact of a bundle against ``target`` (default: the bundle's own), with the
    fixes reconciled with what its conversion did (a pass that declined says why)."""
    from edgekit._fs import contained_path
    from edgekit.bundle import MANIFEST_NAME, read_manifest
    from edgekit.lint import lint as run_lint, reconcile_fixes
    from edgekit.lint.readers import LINT_FORMATS
    from edgekit.targets import load_target

    manifest = read_manifest(folder)
    convert = manifest.extra.get("convert") or {}
    profile = load_target(target or convert.get("target") or "generic-npu")
    declined = convert.get("passes_not_applied") or {}
    reports = []
    for art in manifest.artifacts:
        if "compiled_by" in art.extra:  # an NPU compiler's output: its ops are the compiler's, not the model's
            continue
        path = contained_path(folder, art.path, folder / MANIFEST_NAME, "artifact path")
        if path.suffix.lower() not in LINT_FORMATS or (profile.formats and art.format not in profile.formats):
            continue
        reports.append(reconcile_fixes(run_lint(path, profile), art.passes, declined))
    if not reports:
        from edgekit.errors import UsageError

        raise UsageError(f"no artifact of this bundle is a format {profile.name} covers ({', '.join(profile.formats)})",
                         where=folder, hint="pick another --target")
    return reports, profile


def _groups(findings: list[Any]) -> list[tuple[tuple[str, str, str], list[Any]]]:
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for f in findings:
        by_op = f.rule in ("op-forbidden", "op-not-supported", "op-constraint")
        key = (f.severity, f.rule, (f.op or "") if by_op else "")
        groups.setdefault(key, []).append(f)
    def rank(rule: str) -> int:
        return _RULE_ORDER.index(rule) if rule in _RULE_ORDER else len(_RULE_ORDER)

    return sorted(groups.items(), key=lambda kv: (_ORDER.get(kv[0][0], 9), rank(kv[0][1]), -len(kv[1]), kv[0][2]))


def _render(report: Any, profile: Any, show_all: bool) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    con = out_console()
    con.print(f"[bold]{escape(str(report.path))}[/]  ·  {_FORMAT_NAMES.get(report.format, report.format)}  ·  "
              f"target [bold]{profile.name}[/] ({escape(profile.title)})")
    for note in report.notes:
        con.print(f"[dim]note: {escape(note)}[/]")
    limit = None if show_all else 8
    for (severity, rule, op), items in _groups(report.findings):
        colour = "red" if severity == "error" else "yellow"
        fixes = sorted({f.fix_text for f in items})
        title = f"[{colour}]{severity}[/] [bold]{rule}[/]" + (f" · {escape(op)}" if op else "") + f" · {len(items)}"
        if len(fixes) == 1:
            title += f" · fix: [cyan]{escape(fixes[0])}[/]"
        con.print()
        con.print(title)
        whys = sorted({f.why for f in items if f.why})
        for why in whys[:2]:
            con.print(f"  [dim]why: {escape(why)}[/]")
        table = Table(box=box.SIMPLE, show_header=False, pad_edge=False, show_edge=False, padding=(0, 1))
        table.add_column("where", style="bold", no_wrap=True)
        table.add_column("finding", overflow="fold")
        if len(fixes) > 1:
            table.add_column("fix", style="cyan", overflow="fold")
        shown = items if limit is None else items[:limit]
        for f in shown:
            row = [escape(f.where), escape(f.message)]
            if len(fixes) > 1:
                row.append(escape(f.fix_text))
            table.add_row(*row)
        con.print(table)
        if len(items) > len(shown):
            con.print(f"  [dim]... and {len(items) - len(shown)} more (--all lists them, --json gives every one)[/]")
    con.print()
    npu = _npu_placement(report, profile)
    if npu is not None:  # ethos-u: the ops Vela will leave on the Cortex-M CPU, predicted from the profile
        cpu = npu["cpu_ops"]
        con.print(f"[bold]Vela[/] (predicted from the profile, {npu['vela']}): {npu['total'] - len(cpu)} of "
                  f"{npu['total']} ops on the NPU, {len(cpu)} on the CPU"
                  + (": " + ", ".join(f"{c['op']} #{c['index']}" for c in cpu[:12]) + (" ..." if len(cpu) > 12 else "")
                     if cpu else ""))
        con.print()
    s = report.summary
    if not report.findings:
        con.print(f"[green]✓[/] {escape(report.summary_line())}")
        return
    mark = "[green]✓[/]" if report.passed else "[red]✗[/]"
    con.print(f"{mark} {escape(report.summary_line())}"
              + (f"; passes that fix them: {', '.join(s['fix_passes'])}" if s["fix_passes"] else ""))


def _npu_placement(report: Any, profile: Any) -> dict[str, Any] | None:
    """For a TFLite file linted against ethos-u: the ops Vela is predicted to leave on the CPU
    (:func:`edgekit.vela.predict_cpu_ops`), each with why; None for other targets and formats."""
    if profile.name != "ethos-u" or report.format != "tflite":
        return None
    from edgekit.lint.readers import read_graph
    from edgekit.vela import predict_cpu_ops

    graph = read_graph(report.path)
    ops = {op.index: op for op in graph.ops if op.subgraph == 0}
    cpu = predict_cpu_ops(report, graph)
    vela = next((s.title.split(":")[0] for s in profile.sources if s.title.startswith("Arm Vela")), "Vela")
    return {"vela": vela, "total": len(ops),
            "cpu_ops": [{"index": i, "op": ops[i].type, "why": why} for i, why in cpu.items()]}


def _render_targets(profiles: list[Any]) -> None:
    from rich.markup import escape

    con = out_console()
    for p in profiles:
        rank = f"rank <= {p.max_rank}" + (f" (prefers {p.preferred_rank})" if p.preferred_rank else "")
        con.print(f"[bold]{p.name}[/]  {escape(p.title)}  ·  {', '.join(p.formats)}  ·  {rank}  ·  {p.layout}  ·  "
                  f"{', '.join(p.dtypes)}")
        con.print(f"  [dim]{escape(p.summary)}[/]")
