"""`edgekit demo [upscale|classify]`: the live camera demo (a shell over :mod:`edgekit.apps.camera`).

With no arguments it runs ``upscale`` with the shipped quicksrnet_small_x2 bundle on the
virtual camera; without a display it runs headless, records 150 frames to
``./edgekit-demo.mp4`` and prints where the recording is. The summary it prints (or ``--json``)
is described in ``docs/demo.md`` and :func:`edgekit.apps.camera.app.summary_fields`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgekit.cli._common import check_threads, fail, handle_errors, print_json

_TASKS = ("upscale", "classify")


def register(app: typer.Typer) -> None:
    @app.command("demo", no_args_is_help=False)
    @handle_errors
    def demo(
        task: Optional[str] = typer.Argument(None, metavar="[upscale|classify]",
                                             help="What the model does (default: upscale)."),
        model: Optional[str] = typer.Option(None, "--model", "-m", metavar="BUNDLE_DIR|MODEL_FILE|ZOO_NAME",
                                            help="Model to run (default: the shipped quicksrnet_small_x2 bundle for "
                                                 "upscale; zoo mobilenet_v2, untrained, for classify: its frames say "
                                                 "'random weights'). It must be made for the task: a super-resolution "
                                                 "model for upscale (output: same channels, height and width a scale "
                                                 "factor larger), a classifier for classify. Zoo names are "
                                                 "converted on first use and cached."),
        source: Optional[str] = typer.Option(None, "--source", metavar="0|/dev/videoN|FILE|virtual|picamera",
                                             help="Frames from a camera index or device, a video file, a Pi CSI "
                                                  "camera, or the virtual camera over shipped photos (default)."),
        size: Optional[str] = typer.Option(None, "--size", metavar="WxH",
                                           help="Capture size (default: the model's input size)."),
        backend: str = typer.Option("auto", "--backend", help="Runtime backend: auto, litert, onnxruntime, coreml."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Inference threads (default: physical cores, or $EDGEKIT_THREADS)."),
        headless: bool = typer.Option(False, "--headless", help="Open no window (automatic without a display)."),
        record: Optional[Path] = typer.Option(None, "--record", metavar="OUT.mp4",
                                              help="Record the rendered view (headless default: ./edgekit-demo.mp4, "
                                                   "numbered when taken); an existing file needs --force."),
        no_record: bool = typer.Option(False, "--no-record", help="Headless without a recording."),
        frames: Optional[int] = typer.Option(None, "--frames", min=1,
                                             help="Stop after N frames (headless virtual camera default: 150)."),
        view: Optional[str] = typer.Option(None, "--view",
                                           help="Start view of upscale: split, side-by-side, model, bicubic (key v)."),
        snapshot: Optional[Path] = typer.Option(None, "--snapshot", metavar="OUT.png",
                                                help="Write the last rendered frame as PNG at the end."),
        seed: int = typer.Option(0, "--seed", help="Seed of the virtual camera's path and noise."),
        json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (fields: docs/demo.md). "
                                      "model_busy: fraction of wall time the model was computing; efficiency: "
                                      "fraction spent on frames that were rendered; both in [0, 1]."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --record or --snapshot file."),
    ) -> None:
        """Live camera demo: super-resolution (bicubic vs model) or classification, with latency/FPS overlays.

        Keys: q/Esc quit, space pause, s snapshot PNG, v switch view.

        Without a display (or with --headless) it records ./edgekit-demo.mp4; the virtual camera stops at 150 frames.

        Unpaced sources (files, headless virtual camera): latency splits into queue, preprocess, model, post.

        Example: edgekit demo upscale --source 0 --record out.mp4
        """
        from edgekit.apps.camera.app import DemoInterrupted, DemoOptions, run_demo
        from edgekit.apps.camera.sources import parse_size
        from edgekit.errors import UsageError

        if task is not None and task not in _TASKS:
            raise UsageError(f"unknown demo task '{task}'", hint="choose upscale or classify")
        check_threads(threads)
        opts = DemoOptions(task=task or "upscale", model=model, source=source, size=parse_size(size),
                           backend=backend, threads=threads, headless=headless, record=record, no_record=no_record,
                           frames=frames, view=view, snapshot=snapshot, seed=seed, force=force)
        try:
            result = run_demo(opts)
        except DemoInterrupted as stop:
            _report(stop.result, json_out)
            raise fail(f"interrupted after {stop.result.summary.get('frames', 0)} frames"
                       + (f"; recording saved to {stop.result.recording}" if stop.result.recording else ""), 130)
        _report(result, json_out)


def _report(result, json_out: bool) -> None:
    s = result.summary
    if json_out:
        print_json(s)
        if result.recording is not None:
            print(f"edgekit demo: recording: {result.recording}", file=sys.stderr, flush=True)
        return
    if s.get("frames"):
        def f(v, unit=""):
            return "--" if v is None else f"{v:g}{unit}"

        def pct(v):
            return "--" if v is None else f"{v * 100:.0f}%"

        print(f"{s['frames']} frames  ·  {f(s['fps'])} FPS  ·  inference p50 {f(s['inference_ms_p50'], ' ms')}  ·  "
              f"end-to-end p50 {f(s['e2e_ms_p50'], ' ms')}  ·  {s['backend']} / {s['accelerator']}  ·  "
              f"dropped {s['dropped_frames']}")
        lat = s.get("latency_ms") or {}
        if lat:
            mean = {k: (v or {}).get("mean") for k, v in lat.items()}
            print(f"end-to-end mean {f(mean['end_to_end'], ' ms')} = queue {f(mean['queue'])} + preprocess "
                  f"{f(mean['preprocess'])} + model {f(mean['model'])} + post {f(mean['post'])} ms  ·  "
                  f"model busy {pct(s.get('model_busy'))} of wall time, efficiency {pct(s.get('efficiency'))} "
                  "(model time on rendered frames)")
        if s.get("latency_note"):
            print(s["latency_note"])
    if s.get("random_weights"):
        print("random weights: the model is untrained, its outputs are meaningless (every frame says so)")
    spatial = s.get("spatial") or {}
    if spatial.get("note") and spatial.get("mode") != "native":
        w, h = spatial["image"]
        print(f"frames {w}x{h}: {spatial['note']}")
    if result.snapshot is not None:
        print(f"snapshot: {result.snapshot}")
    if result.recording is not None:
        print(f"recording: {result.recording}")
