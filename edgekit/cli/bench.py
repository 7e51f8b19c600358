"""`edgekit bench`: latency percentiles, load time and peak memory (a shell over ``edgekit.bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgekit.cli._common import check_threads, handle_errors, out_console, print_json

# Keys `--json` always carries (the contract scripts and CI rely on).
REQUIRED_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "init_ms", "peak_rss_mb", "backend", "threads")


def register(app: typer.Typer) -> None:
    @app.command("bench")
    @handle_errors
    def bench(
        model: Path = typer.Argument(..., help="A model file or a bundle folder."),
        backend: str = typer.Option("auto", "--backend", "-b", help="auto, onnxruntime, litert or coreml."),
        threads: int | None = typer.Option(None, "--threads", "-t", min=1, help="CPU threads (default: physical cores, or $EDGEKIT_THREADS)."),
        warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed runs first."),
        runs: int = typer.Option(100, "--runs", "-n", min=1, help="Timed runs."),
        accelerator: str = typer.Option("auto", "--accelerator", help="Delegate / execution provider (default auto)."),
        input: Path | None = typer.Option(None, "--input", "-i",
                                          help="Feed from a .npy/.npz/image (default: random data of the input spec)."),
        json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Time MODEL: p50/p90/p99/mean latency, load time and peak RSS on one backend.

        Example: edgekit bench sr/ --threads 2 --runs 100 --json
        """
        import edgekit

        feed = None
        check_threads(threads)
        with edgekit.load(model, backend=backend, threads=threads, accelerator=accelerator) as session:
            if input is not None:
                from edgekit.cli.run import read_feed

                preprocess = session.manifest.preprocess if session.manifest is not None else {}
                feed, _ = read_feed(input, session, preprocess)
                session.run(feed)  # validate the feed once, before timing
            result = edgekit.bench(session, warmup=warmup, runs=runs, feed=feed)
            data = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
            data.setdefault("model", str(model))
            data.setdefault("backend", session.backend)
            data.setdefault("threads", session.threads)
            data.setdefault("placement", session.placement.to_dict())
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:  # a contract break inside edgekit, not a user error
            raise RuntimeError(f"edgekit.bench result lacks {', '.join(missing)}")
        if json_out:
            print_json(data)
        else:
            _render(data)


def _render(d: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from edgekit.cli.inspect import placement_text

    con = out_console()
    placement = d.get("placement") or {}
    acc = placement.get("accelerator") if isinstance(placement, dict) else None
    con.print(f"[bold]{d.get('model')}[/]  ·  {d['backend']}" + (f" / {acc}" if acc else "") +
              f"  ·  {d['threads']} threads  ·  {d.get('runs', '?')} runs after {d.get('warmup', '?')} warm-up")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    cols = ("p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "init ms", "peak RSS MB")
    keys = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "init_ms", "peak_rss_mb")
    shown = [(c, k) for c, k in zip(cols, keys) if k in d]
    for c, _ in shown:
        table.add_column(c, justify="right")
    table.add_row(*(_num(d[k]) for _, k in shown))
    con.print(table)
    text = placement_text(placement if isinstance(placement, dict) else None)
    if text:
        con.print(f"[bold]Placement[/]  {text}")
    for note in d.get("notes") or []:
        con.print(f"[dim]{note}[/]")


def _num(v: Any) -> str:
    if isinstance(v, (int, float)):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return "–" if v is None else str(v)
