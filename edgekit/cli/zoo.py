"""`edgekit zoo`: list the model zoo and show a model's card (a shell over :mod:`edgekit.zoo`).

Examples::

    edgekit zoo list                      # table: name, task, input, params, MACs, weights
    edgekit zoo list --task classify --json
    edgekit zoo info mobilenet_v3_small   # the full model card and its config options
"""

from __future__ import annotations

from typing import Any

import typer

from edgekit.cli._common import handle_errors, out_console, print_json
from edgekit.errors import UsageError

TASKS = ("classify", "super-resolve", "decode-video")

zoo_app = typer.Typer(
    name="zoo",
    help="Browse the model zoo: efficient classifiers, super-resolution nets, video decoders.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def register(app: typer.Typer) -> None:
    app.add_typer(zoo_app, name="zoo")


@zoo_app.command("list")
@handle_errors
def list_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print every model's full card as JSON."),
    task: str | None = typer.Option(None, "--task", help=f"Only models of this task ({', '.join(TASKS)})."),
) -> None:
    """List the zoo's models: name, task, input, parameters, MACs and whether weights ship.

    Example: edgekit zoo list --task super-resolve
    """
    from edgekit import zoo

    if task is not None and task not in TASKS:
        raise UsageError(f"unknown task '{task}'", hint=f"use one of: {', '.join(TASKS)}")
    names = zoo.list_models(task)
    if json_out:
        print_json([_card_json(name) for name in names])
        return
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True,
                  header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("input", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    for name in names:
        c = zoo.card(name)
        table.add_row(name, c.task, f"{_shape(c.input_shape)} {c.layout}", human_count(c.params),
                      human_count(c.macs), "yes" if c.weights else "no")
    console = out_console()
    if not console.is_terminal:  # piped or captured: never truncate a name to fit 80 columns
        console.width = max(console.width, 160)
    console.print(table)
    console.print(f"{len(names)} model(s). Details: edgekit zoo info NAME", style="dim")


@zoo_app.command("info")
@handle_errors
def info_cmd(
    name: str = typer.Argument(..., help="A zoo model name (see `edgekit zoo list`)."),
    json_out: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Show a model's card: paper, task, input and output, preprocessing, size, license, weights.

    Example: edgekit zoo info mobilenet_v3_small
    """
    data = _card_json(name)
    if json_out:
        print_json(data)
        return
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, pad_edge=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in _card_rows(data):
        table.add_row(label, value)
    out_console().print(table)


def _card_json(name: str) -> dict[str, Any]:
    from edgekit import zoo

    data = zoo.card(name).to_dict()
    data["config"] = zoo.default_config(name)
    return data


def _card_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("name", d["name"]),
        ("family", d["family"]),
        ("task", d["task"]),
        ("paper", d["paper"]),
        ("input", f"{_shape(d['input_shape'])} {d['layout']}, {d['color_order']}, values in "
                  f"[{d['value_range'][0]:g}, {d['value_range'][1]:g}]"),
    ]
    if d.get("mean") is not None:
        rows.append(("normalise", f"(x - mean) / std, mean {_floats(d['mean'])}, std {_floats(d['std'])}"))
    if d.get("output_layout"):
        rows.append(("output layout", d["output_layout"]))
    if d.get("num_classes") is not None:
        rows.append(("classes", str(d["num_classes"])))
    if d.get("scale_factor") is not None:
        rows.append(("scale factor", f"{d['scale_factor']}x"))
    rows += [
        ("params", f"{d['params']:,} ({human_count(d['params'])})"),
        ("MACs", f"{d['macs']:,} ({human_count(d['macs'])}) at {_shape(d['macs_input'])}"),
        ("license", d["license"]),
    ]
    if d.get("weights"):
        rows.append(("weights", f"{d['weights']} (sha256 {d['weights_sha256']}); create(..., pretrained=True)"))
    else:
        where = f"; compatible: {d['weights_source']}" if d.get("weights_source") else ""
        rows.append(("weights", f"none shipped: pass weights=PATH (CLI --weights PATH){where}"))
    for key, value in (d.get("metrics") or {}).items():
        rows.append((f"metric {key}", str(value)))
    if d.get("config"):
        rows.append(("config", ", ".join(f"{k}={v!r}" for k, v in d["config"].items())))
    if d.get("description"):
        rows.append(("about", d["description"]))
    return rows


def human_count(n: int | None) -> str:
    """3504872 → '3.50 M', 56510400 → '56.5 M', 1.2e9 → '1.20 G'."""
    if n is None:
        return "?"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return str(n)


def _shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape)


def _floats(values: Any) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
