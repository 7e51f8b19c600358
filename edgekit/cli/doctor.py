"""`edgekit doctor`: what this host can run and what to install (a shell over :mod:`edgekit.doctor`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from edgekit.cli._common import handle_errors, out_console, print_json


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @handle_errors
    def doctor(json_out: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
        """Check Python, NumPy, CPU features, backends, accelerators and cameras; name fixes for known-bad setups.

        Example: edgekit doctor --json
        """
        from edgekit.doctor import diagnose

        report = diagnose()
        if json_out:
            print_json(report)
        else:
            render(report)


def render(r: dict[str, Any]) -> None:
    """Human summary of a :func:`edgekit.doctor.diagnose` report."""
    con = out_console()
    py, np_, os_, cpu = r.get("python", {}), r.get("numpy", {}), r.get("os", {}), r.get("cpu", {})
    con.print(f"[bold]edgekit {r.get('edgekit', {}).get('version', '?')}[/]  ·  Python {py.get('version')} "
              f"({py.get('bits')}-bit)  ·  NumPy {np_.get('version') or '[red]missing[/]'}  ·  "
              f"{os_.get('system')} {os_.get('machine')}" + (f" ({os_['distro']})" if os_.get("distro") else ""))
    model = cpu.get("board") or cpu.get("model") or "unknown CPU"
    con.print(f"[bold]CPU[/]  {model}, {cpu.get('physical_cores')} physical cores, {cpu.get('logical_cpus')} logical")
    if cpu.get("threads_env"):
        con.print(f"      sessions default to EDGEKIT_THREADS={cpu['threads_env']} threads")
    feats = cpu.get("features") or {}
    if feats:
        con.print("     " + "  ".join(f"[green]✓ {k}[/]" if v else f"[dim]✗ {k}[/]" for k, v in feats.items())
                  + f"  [dim](from {cpu.get('features_source')})[/]")
    else:
        con.print(f"     [dim]features {cpu.get('features_source', 'unknown')}[/]")

    con.print("[bold]Backends[/]")
    rows = []
    for name, b in (r.get("backends") or {}).items():
        if not isinstance(b, dict):
            continue
        label = f"{b.get('package', name)} {b.get('version') or ''}".strip()
        if b.get("imports"):
            mark, notes = "[green]✓[/]", ", ".join(b.get("accelerators") or [])
        elif b.get("imports") is None:
            mark, notes = "[dim]–[/]", b.get("note") or ""
        else:
            error = b.get("error") or "does not import"
            if error == "not installed":
                mark, notes = "[dim]–[/]", "[dim]not installed[/]"
            else:
                mark, notes = "[red]✗[/]", f"[red]{error}[/]"
        rows.append((mark, label, notes))
    width = max((len(label) for _, label, _ in rows), default=0)
    for mark, label, notes in rows:
        con.print(f"  {mark} {label.ljust(width)}  {notes}")
    usable = r.get("edgekit_backends")
    if isinstance(usable, dict) and usable:
        parts = [f"[green]{n}[/]" if why is None else f"[dim]{n} ({why})[/]" for n, why in usable.items()]
        con.print("  edgekit can run with: " + ", ".join(parts))

    delegates, devices = r.get("delegates") or [], r.get("devices") or []
    if delegates or devices:
        con.print("[bold]Accelerators found[/]")
        for d in delegates if isinstance(delegates, list) else []:
            con.print(f"  {d['path']}  TFLite delegate: {d['purpose']}")
        for d in devices if isinstance(devices, list) else []:
            con.print(f"  {d['path']}  {d['what']}")
    else:
        con.print("Accelerators found: [dim]none beyond the CPU (no external TFLite delegate on the library path, "
                  "no NPU/GPU device node)[/]")

    cams = r.get("cameras") or {}
    devs = cams.get("devices") or []
    cam_text = ", ".join(d["path"] + (f" ({d['name']})" if d.get("name") else "") for d in devs)
    cam_text = cam_text or "[dim]no /dev/video*[/]"
    pc = cams.get("picamera2") or {}
    pc_text = "imports" if pc.get("imports") else (pc.get("error") or "not installed")
    note = f"  [dim]{cams['note']}[/]" if cams.get("note") else ""
    con.print(f"[bold]Cameras[/]  {cam_text}  ·  picamera2: {pc_text}{note}")

    npu = r.get("npu_compilers") or {}
    if isinstance(npu, dict) and npu:
        con.print("[bold]NPU compilers[/]")
        for c in npu.values():
            if not isinstance(c, dict):
                continue
            label = f"{c.get('package')} {c.get('version') or ''}".strip()
            if c.get("error"):
                mark, notes = "[dim]–[/]", f"[dim]{escape(c['error'])}[/]"
            else:
                where = f" in {c['python']}" if c.get("python") else (f", SDK at {c['sdk']}" if c.get("sdk") else "")
                mark, notes = "[green]✓[/]", escape(f"{c.get('targets', '')}{where}")
            con.print(f"  {mark} {escape(label)}  {notes}")

    problems = r.get("problems") or []
    if not problems:
        con.print("[green]No known problems.[/]")
    for p in problems:
        colour = "red" if p["severity"] == "error" else "yellow"
        con.print(f"[{colour}]{p['severity']}[/]: {p['what']}\n    fix: {p['fix']}")
