"""`edgekit run`: run a model once on a .npy/.npz feed or an image, save and summarise the outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

from edgekit._fs import atomic_path
from edgekit.cli._common import check_threads, handle_errors, out_console, print_json
from edgekit.errors import FeedError, InvalidModelFile, UsageError


def register(app: typer.Typer) -> None:
    @app.command("run")
    @handle_errors
    def run(
        model: Path = typer.Argument(..., help="A model file or a bundle folder."),
        input: Path = typer.Option(..., "--input", "-i",
                                   help="A .npy (single-input models), a .npz keyed by input name, or an image."),
        output: Path | None = typer.Option(None, "--output", "-o",
                                           help="Where to save: .npy (one output), .npz (all), or an image (.png, .jpg) "
                                                "for an image-like output; an existing file needs --force. "
                                                "Default: <input>.out.npy/.npz here (numbered if taken)."),
        backend: str = typer.Option("auto", "--backend", "-b", help="auto, onnxruntime, litert or coreml."),
        threads: int | None = typer.Option(None, "--threads", "-t", min=1, help="CPU threads (default: physical cores, or $EDGEKIT_THREADS)."),
        accelerator: str = typer.Option("auto", "--accelerator", help="Delegate / execution provider (default auto)."),
        json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --output file (never the input)."),
    ) -> None:
        """Run MODEL once on INPUT; print output names, shapes, ranges, latency (and top-5 for classifiers).

        Example: edgekit run sr/ --input photo.png --output big.png
        """
        import edgekit
        from edgekit._fs import checked_output_file

        if output is not None:  # refused before any work; the default name is always a new file
            output = checked_output_file(output, force=force, protected=(input, model))
        check_threads(threads)
        with edgekit.load(model, backend=backend, threads=threads, accelerator=accelerator) as session:
            manifest = session.manifest  # set when MODEL is a bundle
            preprocess = manifest.preprocess if manifest is not None else {}
            runner = image_runner(input, session, preprocess)  # images: run at their own size when the policy says
            feed, notes = read_feed(input, session, preprocess, runner)
            t0 = time.perf_counter()
            outputs = (runner or session).run(feed)
            latency_ms = (time.perf_counter() - t0) * 1e3
            specs = {s.name: s for s in session.outputs}
            saved = save_outputs(outputs, output or default_output(input, len(outputs)), specs, preprocess, notes)
            summary: dict[str, Any] = {
                "model": str(model),
                "artifact": str(session.path),
                "backend": session.backend,
                "placement": session.placement.to_dict(),
                "threads": session.threads,
                "init_ms": round(float(session.init_ms), 3),
                "latency_ms": round(latency_ms, 3),
                "input_notes": notes,
                "spatial": runner.last_plan.to_dict() if runner is not None and runner.last_plan else None,
                "outputs": [_describe(name, arr) for name, arr in outputs.items()],
                "saved": str(saved),
            }
            labels = manifest.labels if manifest else None
            if manifest is not None and manifest.task == "classify" and labels:
                summary["top5"] = top_k(outputs, labels, 5)
        if json_out:
            print_json(summary)
        else:
            _render(summary)


# -- feed ---------------------------------------------------------------------------------------

def image_runner(path: Path, session: Any, preprocess: dict[str, Any]) -> Any:
    """The :class:`edgekit.tiling.ImageRunner` that feeds image ``path`` to ``session`` (by the
    manifest's resize policy: super-resolution models run at the image's own size, natively,
    with the runtime's input resized, or in tiles), or None when ``path`` is not an image or the
    model does not take one image."""
    from edgekit.imageio import is_image_path
    from edgekit.tiling import ImageRunner

    if not is_image_path(path) or len(session.inputs) != 1:
        return None
    manifest = getattr(session, "manifest", None)
    try:
        return ImageRunner.for_session(session, preprocess, manifest.task if manifest is not None else None)
    except UsageError as e:
        raise FeedError(f"input '{session.inputs[0].name}': {e.message}", where=path, hint=e.hint) from None


def read_feed(path: Path, session: Any, preprocess: dict[str, Any],
              runner: Any = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays for every input of ``session`` from a .npy, .npz or image file (not cast or reshaped:
    a wrong name, shape or dtype is reported by the session). An image goes through ``runner``
    (:func:`image_runner`; made here when not given): its tensor is at the size ``runner.run``
    takes, which for a size-keeping policy is the image's own."""
    from edgekit.imageio import is_image_path, read_image

    from edgekit._fs import regular_file

    if path.is_dir():
        raise UsageError("--input is a folder", where=path, hint="pass a .npy, .npz or image file")
    regular_file(path, hint="check the --input path")
    names = [s.name for s in session.inputs]
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(names) != 1:
            raise FeedError(f"a .npy holds one array but the model takes {len(names)} inputs ({', '.join(names)})",
                            where=path, hint="pass a .npz with one array per input name")
        return {names[0]: _load_npy(path)}, []
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}, []
        except (OSError, ValueError, EOFError) as e:
            raise InvalidModelFile(path, f"not a readable .npz ({e})", hint="write it with numpy.savez") from None
    if is_image_path(path):
        if len(names) != 1:
            raise FeedError(f"an image feeds one input but the model takes {len(names)} ({', '.join(names)})",
                            where=path, hint="pass a .npz with one array per input name")
        spec = session.inputs[0]
        img = read_image(path)
        runner = runner or image_runner(path, session, preprocess)
        try:
            x, notes = runner.to_tensor(img)
        except UsageError as e:
            raise FeedError(f"input '{spec.name}': {e.message}", where=path, hint=e.hint) from None
        if not preprocess:
            notes.append("no bundle manifest: preprocessing guessed from the input spec; use a bundle or a .npy "
                         "for the model's exact normalisation")
        return {spec.name: x}, notes
    raise UsageError(f"unknown input file type '{path.suffix or '(none)'}'", where=path,
                     hint="pass a .npy, .npz or an image (.png, .jpg, ...)")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InvalidModelFile(path, f"not a readable .npy ({e})", hint="write it with numpy.save") from None


# -- outputs ------------------------------------------------------------------------------------

def default_output(input_path: Path, n_outputs: int) -> Path:
    """``<input stem>.out.npy`` (``.npz`` for several outputs) in the current folder, numbered
    (``.out-2.npy``) when an earlier run's file is there: a default never replaces a file."""
    from edgekit._fs import fresh_path

    return fresh_path(Path.cwd() / f"{input_path.stem}.out{'.npy' if n_outputs == 1 else '.npz'}")


def save_outputs(outputs: dict[str, np.ndarray], path: Path, specs: dict[str, Any], preprocess: dict[str, Any],
                 notes: list[str]) -> Path:
    """Write outputs atomically: .npy (exactly one output), .npz (all), or an image of the image-like output."""
    from edgekit.imageio import is_image_path, write_image
    from edgekit.preprocess import Preprocess, image_layout

    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(outputs) != 1:
            raise UsageError(f"the model has {len(outputs)} outputs ({', '.join(outputs)}); a .npy holds one",
                             where=path, hint="use an .npz output path")
        arr = next(iter(outputs.values()))
        _atomic(path, lambda f: np.save(f, arr, allow_pickle=False))
        return path
    if suffix == ".npz":
        _atomic(path, lambda f: np.savez(f, **outputs))
        return path
    if is_image_path(path):
        layouts = {n: image_layout(a.shape, getattr(specs.get(n), "layout", None)) for n, a in outputs.items()}
        candidates = [n for n, lay in layouts.items() if lay is not None]
        if not candidates:
            shapes = ", ".join(f"{n} {list(a.shape)}" for n, a in outputs.items())
            raise UsageError(f"no output looks like an image ({shapes})", where=path, hint="save as .npy or .npz")
        name = candidates[0]
        if len(candidates) > 1:
            notes.append(f"wrote output '{name}' as the image (other image-like outputs: {', '.join(candidates[1:])})")
        write_image(path, Preprocess.for_output(preprocess).from_tensor(outputs[name], layouts[name]))
        return path
    raise UsageError(f"unknown output file type '{path.suffix or '(none)'}'", where=path,
                     hint="use .npy, .npz or an image suffix (.png, .jpg)")


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def _describe(name: str, arr: np.ndarray) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "shape": list(arr.shape), "dtype": arr.dtype.name}
    if arr.size and arr.dtype.kind in "fiub":
        d["min"] = float(np.min(arr))
        d["max"] = float(np.max(arr))
        if arr.dtype.kind == "f":
            d["nonfinite"] = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    return d


def top_k(outputs: dict[str, np.ndarray], labels: list[str], k: int) -> list[dict[str, Any]]:
    """Top-k labels of the output with one score per label (softmax applied unless it already
    looks like probabilities)."""
    for arr in outputs.values():
        scores = np.asarray(arr, dtype=np.float64).reshape(-1) if arr.size == len(labels) else None
        if scores is None:
            continue
        is_prob = scores.min() >= 0 and scores.max() <= 1 and abs(scores.sum() - 1) < 1e-3
        if not is_prob:
            e = np.exp(scores - scores.max())
            scores = e / e.sum()
        order = np.argsort(-scores, kind="stable")[:k]
        return [{"index": int(i), "label": labels[i], "score": float(scores[i])} for i in order]
    return []


def _render(s: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    con = out_console()
    con.print(f"[bold]{s['artifact']}[/] on {s['backend']} ({s['threads']} threads): "
              f"{s['latency_ms']:.2f} ms (first run; load {s['init_ms']:.1f} ms)")
    for note in s["input_notes"]:
        con.print(f"  [dim]input: {note}[/]")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("output", "shape", "dtype", "min", "max"):
        table.add_column(col, justify="right" if col in ("min", "max") else "left")
    for o in s["outputs"]:
        table.add_row(o["name"], str(o["shape"]), o["dtype"],
                      f"{o['min']:.4g}" if "min" in o else "–", f"{o['max']:.4g}" if "max" in o else "–")
    con.print(table)
    bad = [o["name"] for o in s["outputs"] if o.get("nonfinite")]
    if bad:
        con.print(f"[yellow]warning:[/] NaN/Inf values in {', '.join(bad)}")
    if s.get("top5"):
        con.print("[bold]Top-5[/]")
        for t in s["top5"]:
            con.print(f"  {t['score']:6.2%}  {t['label']}  [dim](#{t['index']})[/]")
    con.print(f"saved {s['saved']}")
