"""`edgekit convert` (placeholder until issue 4: converters lands)."""

from __future__ import annotations

import typer

from edgekit.cli._common import not_yet


def register(app: typer.Typer) -> None:
    @app.command("convert", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def convert(ctx: typer.Context) -> None:
        """Not yet available (issue 4: converters)."""
        raise not_yet("convert", "issue 4: converters")
