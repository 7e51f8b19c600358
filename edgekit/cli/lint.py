"""`edgekit lint` (placeholder until issue 5: lint lands)."""

from __future__ import annotations

import typer

from edgekit.cli._common import not_yet


def register(app: typer.Typer) -> None:
    @app.command("lint", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def lint(ctx: typer.Context) -> None:
        """Not yet available (issue 5: lint)."""
        raise not_yet("lint", "issue 5: lint")
