"""`edgekit inspect`: a shell over :func:`edgekit.inspect.inspect_model`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgekit._fmt import human_size

from edgekit.cli._common import handle_errors, out_console, print_json

_FORMAT_NAMES = {"onnx": "ONNX", "ort": "ONNX Runtime (.ort)", "tflite": "TFLite / LiteRT", "coreml": "Core ML",
                 "rknn": "RKNN (Rockchip NPU)"}


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    @handle_errors
    def inspect(
        model: Path = typer.Argument(..., help="A .onnx, .ort, .tflite or .mlpackage file, or a bundle folder."),
        json_out: bool = typer.Option(False, "--json", help="Print the description as JSON."),
        no_placement: bool = typer.Option(False, "--no-placement",
                                          help="Do not open TFLite models with LiteRT to count XNNPACK ops."),
    ) -> None:
        """Show format, size, inputs/outputs, op histogram, max rank and (TFLite) XNNPACK coverage.

        Example: edgekit inspect sr/model.tflite --json
        """
        from edgekit.inspect import inspect_model

        info = inspect_model(model, placement=not no_placement)
        if json_out:
            print_json(info)
            return
        if info.get("format") == "bundle":
            render_bundle(info)
        else:
            render_model(info)
        if info.get("format") == "bundle":
            broken = [a for a in info["artifacts"] if "error" in a]
            if broken:
                from edgekit.cli._common import fail

                raise fail(f"{model}: {len(broken)} of {len(info['artifacts'])} artifacts could not be read "
                           f"(first: {broken[0]['error']})", 1)


def _shape(shape: Any) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _short(value: Any, limit: int = 100) -> str:
    """One line for a detail value: dicts and lists compact, long text cut."""
    import json

    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(", ", ": "), default=str)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tensor_table(title: str, tensors: list[dict[str, Any]]):
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, title_style="bold",
                  box=box.SIMPLE_HEAD)
    for col in ("name", "shape", "dtype", "layout"):
        table.add_column(col)
    for t in tensors:
        table.add_row(str(t.get("name")), _shape(t.get("shape")), str(t.get("dtype")), t.get("layout") or "–")
    return table


def placement_text(placement: dict[str, Any] | None) -> str | None:
    """``XNNPACK runs 50 of 52 ops (96%); CPU 2`` or why it is unknown."""
    if not placement:
        return None
    counts = placement.get("op_counts")
    notes = "; ".join(placement.get("notes") or [])
    if not isinstance(counts, dict) or not counts:
        return f"op placement unknown{': ' + notes if notes else ''}"
    total = sum(counts.values())
    ranked = [(name, n) for name, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n]
    if len(ranked) == 1:
        text = f"{ranked[0][0]} runs all {total} ops"
    else:
        text = "; ".join(f"{name} runs {n} of {total} ops ({100 * n / total:.0f}%)" for name, n in ranked) or "no ops"
    return text + (f"  [dim]({notes})[/]" if notes else "")


def lint_text(lint: dict[str, Any] | None, path: Any) -> str | None:
    """``generic-npu: 3 errors, 1 warning (rank 2, layout 1, ...) — edgekit lint PATH`` or why unknown."""
    if not lint:
        return None
    if "error" in lint:
        return f"{lint['target']}: not checked ({lint['error']})"
    if not lint["errors"] and not lint["warnings"]:
        return f"[green]clean for {lint['target']}[/]"
    rules = ", ".join(f"{rule} {n}" for rule, n in list(lint["by_rule"].items())[:5])
    colour = "red" if lint["errors"] else "yellow"
    return (f"[{colour}]{lint['target']}: {lint['errors']} error(s), {lint['warnings']} warning(s)[/] ({rules})"
            f"  [dim]— details: edgekit lint {path}[/]")


def render_model(info: dict[str, Any], heading: bool = True) -> None:
    from rich.table import Table

    con = out_console()
    if heading:
        con.print(f"[bold]{info['path']}[/]  ·  {_FORMAT_NAMES.get(info['format'], info['format'])}  ·  "
                  f"{human_size(info.get('size_bytes'))}")
    con.print(_tensor_table("Inputs", info.get("inputs") or []))
    con.print(_tensor_table("Outputs", info.get("outputs") or []))
    hist = info.get("op_histogram") or {}
    total = info.get("num_ops", sum(hist.values()))
    con.print(f"[bold]Ops[/]  {total} in total, {len(hist)} kinds, max tensor rank {info.get('max_rank', '?')}")
    if hist:
        items = sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))
        cols = 3 if len(items) > 8 else 1
        grid = Table.grid(padding=(0, 3))
        for _ in range(cols):
            grid.add_column()
            grid.add_column(justify="right")
        rows = (len(items) + cols - 1) // cols
        for r in range(rows):
            cells: list[str] = []
            for c in range(cols):
                i = c * rows + r
                cells += [items[i][0], str(items[i][1])] if i < len(items) else ["", ""]
            grid.add_row(*cells)
        con.print(grid)
    placement = placement_text(info.get("placement"))
    if placement:
        con.print(f"[bold]Delegate[/]  {placement}")
    lint = lint_text(info.get("lint"), info.get("path"))
    if lint:
        con.print(f"[bold]Lint[/]  {lint}")
    if info.get("external_files"):
        con.print(f"[bold]External files[/]  {', '.join(info['external_files'])}")
    extra = {k: v for k, v in (info.get("extra") or {}).items() if k != "note"}
    if extra:
        details = Table.grid(padding=(0, 2))
        details.add_column(style="dim")
        details.add_column()
        for k, v in extra.items():
            details.add_row(k, _short(v))
        con.print("[bold]Details[/]")
        con.print(details)
    note = (info.get("extra") or {}).get("note")
    if note:
        con.print(f"[yellow]note:[/] {note}")


def render_bundle(info: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    con = out_console()
    m = info["manifest"]
    src = m.get("source") or {}
    source = f"{src.get('kind', '?')}: {src.get('ref', '?')}"
    if src.get("weights_sha256"):
        source += f" (weights sha256 {src['weights_sha256'][:12]}…)"
    con.print(f"[bold]{info['path']}[/]  ·  edgekit bundle v{m.get('version')}  ·  {m.get('name')}  ·  "
              f"task {m.get('task')}")
    con.print(f"source  {source}" + (f"  ·  created {m['created']}" if m.get("created") else ""))
    if m.get("preprocess"):
        con.print("preprocess  " + ", ".join(f"{k} {v}" for k, v in m["preprocess"].items()))
    table = Table(title="Artifacts", title_justify="left", show_edge=False, pad_edge=False, title_style="bold",
                  box=box.SIMPLE_HEAD)
    for col in ("path", "format", "target", "precision", "size", "ops", "max rank", "verified"):
        table.add_column(col)
    for a in info["artifacts"]:
        i = a.get("inspect") or {}
        status = (a.get("verification") or {}).get("status", "?")
        colour = {"passed": "green", "failed": "red"}.get(status, "dim")
        table.add_row(a["path"], a["format"], a.get("target") or "–", a.get("precision") or "?",
                      human_size(i.get("size_bytes")) if i else "[red]unreadable[/]",
                      str(i.get("num_ops", "?")) if i else "–", str(i.get("max_rank", "?")) if i else "–",
                      f"[{colour}]{status}[/]")
    con.print(table)
    for a in info["artifacts"]:
        con.print()
        con.print(f"[bold underline]{a['path']}[/]  ({_FORMAT_NAMES.get(a['format'], a['format'])})")
        if "error" in a:
            con.print(f"[red]cannot read:[/] {a['error']}")
            continue
        if "inspect" in a:
            render_model(a["inspect"], heading=False)
        if a.get("passes"):
            con.print(f"[bold]Passes[/]  {', '.join(a['passes'])}")
        if a.get("npu"):
            from rich.markup import escape

            from edgekit.compiler import describe

            con.print("[bold]NPU[/]  " + escape("\n     ".join(describe(a["npu"]))))
