"""`edgekit demo` (placeholder until issue 6: camera demo lands)."""

from __future__ import annotations

import typer

from edgekit.cli._common import not_yet


def register(app: typer.Typer) -> None:
    @app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def demo(ctx: typer.Context) -> None:
        """Not yet available (issue 6: camera demo)."""
        raise not_yet("demo", "issue 6: camera demo")
