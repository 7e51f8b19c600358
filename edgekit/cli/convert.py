"""`edgekit convert`: a shell over :func:`edgekit.convert`.

Progress goes to stderr, one line per stage and format (capture, rewrite, export, verify,
write), so it reads the same in a terminal and in a CI log; the summary table (artifact,
size, verification, latency on this host) goes to stdout, or the whole result as JSON with
``--json``.

Exit codes: 0 every artifact verified (CoreML off macOS: spec checked, prediction skipped);
1 the conversion failed for every format (nothing written); 2 a usage error; 3 the bundle was
written but an artifact failed to export or to verify (see its line and ``edgekit.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edgekit._fmt import human_size
from edgekit.cli._common import err_console, handle_errors, out_console, print_json

_MARK = {"done": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]–[/]", "start": "[dim]…[/]"}


def register(app: typer.Typer) -> None:
    @app.command("convert")
    @handle_errors
    def convert(
        source: str = typer.Argument(..., help="A zoo name, path/to/file.py:callable, package.module:callable, "
                                               "a .pt2 ExportedProgram or an .onnx file."),
        to: str = typer.Option("onnx,tflite,coreml", "--to", help="Formats, comma-separated: onnx, tflite, coreml."),
        out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write (refused if not empty, see --force)."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="A .pth/.pt state dict or .safetensors file "
                                                                       "to load into the model."),
        pretrained: bool = typer.Option(False, "--pretrained", help="Load the weights that ship with a zoo model."),
        input_shape: Optional[list[str]] = typer.Option(None, "--input-shape", help="Input shape such as 1x3x224x224; "
                                                        "repeat once per input."),
        precision: str = typer.Option("fp32", "--precision", help="fp32, fp16, or int8 (TFLite full-integer and ONNX QDQ, "
                                      "calibrated on --calibration data, else on photos normalised as the model expects)."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
        json_out: bool = typer.Option(False, "--json", help="Print the result (and the manifest) as JSON on stdout."),
        fold_preprocess: bool = typer.Option(False, "--fold-preprocess", help="Artifacts take RGB pixels 0..255; the "
                                             "model card's normalisation is folded into the model (recorded in the "
                                             "manifest)."),
        input_layout: str = typer.Option("NCHW", "--input-layout", help="With --fold-preprocess: NCHW or NHWC pixels."),
        mean: Optional[str] = typer.Option(None, "--mean", help="Normalisation mean, e.g. 0.485,0.456,0.406 (for "
                                           "models without a model card)."),
        std: Optional[str] = typer.Option(None, "--std", help="Normalisation std, e.g. 0.229,0.224,0.225."),
        value_range: Optional[str] = typer.Option(None, "--value-range", help="The input's range before --mean/--std, "
                                                  "e.g. -1,1 (default 0,1, or the model card's); verification and "
                                                  "calibration inputs are drawn in it."),
        verify_data: Optional[Path] = typer.Option(None, "--verify-data", help="Also verify on your inputs: a folder "
                                                   "of images (pre-processed as edgekit run does), an image, or a "
                                                   ".npy/.npz of input arrays, e.g. --verify-data val_images/."),
        calibration: Optional[Path] = typer.Option(None, "--calibration", help="int8 calibration inputs, same kinds "
                                                   "as --verify-data, e.g. --calibration calib.npy (N x input shape)."),
        task: Optional[str] = typer.Option(None, "--task", help="classify, super-resolve, decode-video or other "
                                           "(default: the model card's, else read from the output shapes)."),
        target: Optional[str] = typer.Option(None, "--target", help="Rewrite for an accelerator profile "
                                             "(e.g. generic-npu, tflite-gpu, edgetpu; see `edgekit lint --help`)."),
        passes: Optional[str] = typer.Option(None, "--passes", help="Comma-separated rewrite pass ids to run."),
        skip_pass: Optional[list[str]] = typer.Option(None, "--skip-pass", help="A pass id to leave out (repeatable)."),
        no_verify: bool = typer.Option(False, "--no-verify", help="Do not verify the artifacts (recorded as not run)."),
        bench_runs: int = typer.Option(10, "--bench-runs", help="Timed runs for the latency column (0: none)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
        compile_for: Optional[str] = typer.Option(None, "--compile", help="Last stage: compile the int8 TFLite "
                                                  "artifact with Arm's Vela for this Ethos-U (e.g. ethos-u55-256; "
                                                  "see `edgekit compile --help`)."),
    ) -> None:
        """Convert a model to ONNX / TFLite / CoreML, verify every artifact, write a bundle.

        Example: edgekit convert quicksrnet_small_x2 --pretrained --to onnx,tflite --target generic-npu --out sr/
        """
        from edgekit.converters.api import convert as run_convert
        from edgekit.converters.capture import parse_shape

        shapes = [parse_shape(s) for s in input_shape] if input_shape else None
        progress = None if quiet else _Progress()
        result = run_convert(
            source, formats=to, out=out, target=target, input_shapes=shapes, weights=weights, pretrained=pretrained,
            precision=precision, force=force, fold_preprocess=fold_preprocess, input_layout=input_layout.upper(),
            mean=_floats(mean, "--mean"), std=_floats(std, "--std"), value_range=_floats(value_range, "--value-range"),
            task=task, verify_data=verify_data, calibration=calibration,
            passes=[p.strip() for p in passes.split(",") if p.strip()] if passes else None,
            skip_passes=tuple(skip_pass or ()), verify=not no_verify, bench_runs=bench_runs, progress=progress,
            compile=compile_for,
        )
        if json_out:
            print_json(result.to_dict())
        else:
            _summary(result)
        if result.exit_code:
            bad = [a for a in result.artifacts if a.status not in ("passed", "skipped")]
            what = [f"{a.format} {a.status}" for a in bad] + ([f"compile: {result.compile_error}"]
                                                              if result.compile_error else [])
            err_console().print(f"edgekit: {len(what)} artifact(s) failed: " + "; ".join(what)
                                + f" — the bundle is kept in {result.bundle} (see edgekit.json)", markup=False)
            raise typer.Exit(result.exit_code)


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    from edgekit.errors import UsageError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"cannot read {option} '{text}'", hint="write comma-separated numbers, e.g. 0.5,0.5,0.5") from None


class _Progress:
    """Prints one line per finished (or failed) stage on stderr; start lines only for the
    slow per-format stages."""

    def __init__(self) -> None:
        self.console = err_console()

    def __call__(self, event: Any) -> None:
        if event.status == "start" and event.stage not in ("export", "capture"):
            return
        label = event.stage + (f" {event.fmt}" if event.fmt else "")
        secs = f" [dim]{event.seconds:.1f}s[/]" if event.seconds is not None else ""
        msg = f"  {_escape(event.message)}" if event.message else ""
        mark = _MARK.get(event.status, "·")
        self.console.print(f"{mark} {label:<14}{secs}{msg}", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(" ".join(str(text).split()))


def _summary(result: Any) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"bundle {result.bundle}  ({result.manifest.task}, {result.seconds:.0f} s)",
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("artifact", "size", "verification", "latency"):
        table.add_column(col, justify="right" if col in ("size", "latency") else "left")
    by_format = {a.format: a for a in result.manifest.artifacts if "compiled_by" not in a.extra}
    for st in result.artifacts:
        art = by_format.get(st.format)
        name = art.path if art else f"{st.format} (not written)"
        size = human_size(st.size_bytes) if st.size_bytes else "—"
        if st.status == "passed" and art is not None:
            from edgekit.converters.api import metric_line

            verdict = f"[green]passed[/] {_escape(metric_line(art))}"
        elif st.status == "skipped":
            verdict = f"[yellow]skipped[/] {_escape(st.reason or '')}"
        else:
            verdict = f"[red]{st.status}[/] {_escape(st.reason or '')}"
        latency = f"{st.latency_ms:.2f} ms" if st.latency_ms is not None else "—"
        table.add_row(name, size, verdict, latency)
    for art in result.manifest.artifacts:
        if "compiled_by" in art.extra:  # edgekit convert --compile: the NPU compiler's output
            from edgekit.compiler import summary_line

            table.add_row(art.path, human_size(art.size_bytes) if art.size_bytes else "—",
                          f"[yellow]skipped[/] {_escape(summary_line(art.extra.get('npu') or {}))}", "—")
    out_console().print(table)
    for st in result.artifacts:
        for w in st.warnings:
            out_console().print(f"[yellow]![/] {st.format}: {_escape(w)}", highlight=False)

