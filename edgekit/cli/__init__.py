"""The ``edgekit`` command: a thin shell over the library, one module per command group.

Each module in ``COMMANDS`` exposes ``register(app)``; commands catch :class:`EdgekitError` and
print one line (see ``_common.handle_errors``).
"""

from __future__ import annotations

import importlib

import typer

COMMANDS = ("convert", "inspect", "lint", "bench", "run", "demo", "zoo", "doctor")

app = typer.Typer(
    name="edgekit",
    help="Put efficient vision models on devices: convert, rewrite for NPUs, verify, lint, run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from edgekit import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """edgekit: convert, verify, lint and run efficient vision models on devices."""


for _name in COMMANDS:
    importlib.import_module(f"edgekit.cli.{_name}").register(app)


def main() -> None:
    app()
