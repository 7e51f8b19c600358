"""`edgekit app`: a bundle as an app. ``app web`` writes the static web app, ``app serve`` serves it
with the headers WebAssembly threads need (a shell over :mod:`edgekit.webapp`). The module is not
named ``app``: a submodule of that name would shadow the package's Typer ``app``."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.cli._common import handle_errors, print_json, warn


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Turn a bundle into an app: the web app for a phone's camera.", no_args_is_help=True)

    @group.command("web")
    @handle_errors
    def web(bundle: Path = typer.Argument(..., help="Bundle folder (written by `edgekit convert`)."),
            out: Path = typer.Option(..., "--out", "-o", help="Folder to write the static web app to."),
            force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
            json_out: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
        """Write a static web app that runs BUNDLE live on the camera (onnxruntime-web, LiteRT.js; works offline).

        Example: edgekit app web sr/ --out sr-web/ && edgekit app serve sr-web/
        """
        from edgekit.webapp import build

        result = build(bundle, out, force=force)
        for note in result.notes:
            warn(note)
        if json_out:
            print_json({"out": str(result.out), "task": result.task, "formats": result.formats,
                        "notes": result.notes, "size_bytes": result.size_bytes})
            return
        typer.echo(f"wrote {result.out}/ ({result.task}; {', '.join(result.formats)}; "
                   f"{result.size_bytes / 1e6:.1f} MB) — serve it: edgekit app serve {result.out}")

    @group.command("serve")
    @handle_errors
    def serve(folder: Path = typer.Argument(..., help="Folder written by `edgekit app web`."),
              port: int = typer.Option(8000, "--port", "-p", help="Port (0: any free port)."),
              host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on.")) -> None:
        """Serve a web app with COOP/COEP headers (WebAssembly threads); print its local and LAN URLs.

        Example: edgekit app serve sr-web/ --port 8000
        """
        from edgekit.webapp import serve as run

        try:
            run(folder, port, host, echo=lambda s, flush=True: typer.echo(s))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None

    app.add_typer(group, name="app")
