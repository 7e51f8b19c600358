"""The demo as one function, :func:`run_demo`: resolve the model, open the source, run the
pipeline into a window and/or a recording, and report the run in numbers.

Defaults, decided so that ``edgekit demo`` with no arguments is useful and bounded anywhere:

- no ``--model``: the shipped quicksrnet_small_x2 bundle (``upscale``); no ``--source``: the
  virtual camera over the shipped photos;
- no display (or an OpenCV without GUI): headless, said once on stderr;
- headless without ``--record``: records to ``./edgekit-demo.mp4`` (``--no-record`` opts out),
  and the path is printed at the end;
- headless on the virtual camera without ``--frames``: 150 frames (5 s of video at 30 fps);
  files run to their end, cameras until Ctrl-C;
- in a window, the virtual camera is paced like a 30 fps camera (the pipeline keeps only the
  newest frame); headless, it hands out every frame in order, so a recording is reproducible.
  Such an unpaced source (a video file too) lets frames wait for the model: the summary's
  ``latency_ms`` splits end-to-end latency into ``queue``, ``preprocess``, ``model`` and
  ``post``, ``paced`` is false and ``latency_note`` says what that means;
- a ``--model`` made for another task is refused before anything opens (usage error, exit 2);
- a model with random (untrained) weights says so on every rendered frame, in red, so the
  recording says it too (``random_weights`` in the summary).

The summary's fields are described in :func:`summary_fields` (and ``docs/demo.md``).

Example::

    >>> result = run_demo(DemoOptions(task="upscale", headless=True, frames=30))   # doctest: +SKIP
    >>> result.summary["frames"], result.recording                                   # doctest: +SKIP
    (30, PosixPath('edgekit-demo.mp4'))
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgekit.apps.camera import overlay
from edgekit.apps.camera._cv import cv2
from edgekit.errors import DemoError, EdgekitError, UsageError, first_line

__all__ = ["DemoOptions", "DemoResult", "DemoSink", "DemoInterrupted", "run_demo", "DEFAULT_RECORDING",
           "DEFAULT_HEADLESS_FRAMES", "upscale_frame_size", "summary_fields", "UNPACED_NOTE"]

DEFAULT_RECORDING = Path("edgekit-demo.mp4")
DEFAULT_HEADLESS_FRAMES = 150
UNPACED_NOTE = ("unpaced source (a file, or the virtual camera headless): end-to-end = queue + preprocess + model "
                "+ post; each frame is read as soon as the previous one is taken and waits for the model (queue: "
                "up to about 3 inferences) instead of being dropped as a paced camera's would be (there queue "
                "is a fraction of an inference)")


@dataclass
class DemoOptions:
    task: str = "upscale"
    model: str | None = None
    source: str | None = None  # None: the virtual camera
    size: tuple[int, int] | None = None
    backend: str = "auto"
    threads: int | None = None
    headless: bool = False
    record: Path | None = None
    no_record: bool = False
    frames: int | None = None
    view: str | None = None
    snapshot: Path | None = None  # write the last rendered frame here at the end
    snapshot_dir: Path = Path(".")  # where the `s` key writes
    seed: int = 0
    force: bool = False  # replace an existing --record / --snapshot file
    just_in_time: bool = True  # live sources: take the frame just before the model is free (API only)


@dataclass
class DemoResult:
    summary: dict[str, Any]
    recording: Path | None
    snapshot: Path | None = None
    headless_reason: str | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


class DemoInterrupted(Exception):
    """Ctrl-C (or SIGTERM) ended the run; ``result`` holds what was done until then."""

    def __init__(self, result: DemoResult):
        super().__init__("interrupted")
        self.result = result


# ---------------------------------------------------------------------------------------------
class DemoSink:
    """The main-thread end of the pipeline: render the task's view, draw the overlay, record,
    show, and act on keys (quit, pause, snapshot, switch view)."""

    def __init__(self, task: Any, *, model_name: str, backend: str, accelerator: str, live: bool,
                 recorder: Any = None, window: Any = None, view: str | None = None, snapshot_dir: Path = Path("."),
                 log: Callable[[str], None] = lambda m: None):
        self.task = task
        self.model_name = model_name
        self.backend = backend
        self.accelerator = accelerator
        self.live = live
        self.recorder = recorder
        self.window = window
        views = task.views
        if view is not None and view not in views:
            raise UsageError(f"--view {view!r} is not a view of '{task.kind}'", hint=f"choose one of: {', '.join(views)}")
        self.view = view or views[0]
        self.snapshot_dir = snapshot_dir
        self.log = log
        self.paused = False
        self.last_image: np.ndarray | None = None
        self._last_result: Any = None
        self.snapshots: list[Path] = []

    def _compose(self, result: Any, stats: Any) -> np.ndarray:
        rendered = self.task.render(result.frame.image, result.job, result.outputs, self.view)
        img = rendered.image
        lines = overlay.stats_lines(self.model_name, self.backend, self.accelerator, stats.infer.recent_p50,
                                    stats.e2e.recent_p50, stats.rendered.recent_rate,
                                    stats.captured.recent_rate if self.live else None, paced=self.live,
                                    queue_p50=stats.parts["queue"].recent_p50)
        spatial = self.task.spatial_line() if hasattr(self.task, "spatial_line") else None
        overlay.stats_panel(img, lines, [spatial] if spatial else (), getattr(self.task, "warnings", ()))
        if rendered.top_k:
            overlay.top_k_panel(img, rendered.top_k)
        return img

    def consume(self, result: Any, stats: Any) -> str | None:
        img = self._compose(result, stats)
        if self.recorder is not None:
            self.recorder.write(img)
        self.last_image = img
        self._last_result = result
        if self.window is None:
            return None
        overlay.help_line(img)
        self.window.show(img)
        return self._act(self.window.poll(), stats)

    def idle(self, stats: Any) -> str | None:
        if self.window is None:
            return None
        return self._act(self.window.poll(10 if self.paused else 1), stats)

    def _act(self, action: str | None, stats: Any) -> str | None:
        if action == "quit":
            return "quit"
        if action == "pause":
            self.paused = not self.paused
        elif action == "snapshot":
            self.snapshot()
        elif action == "view":
            views = self.task.views
            self.view = views[(views.index(self.view) + 1) % len(views)]
            if self.paused and self._last_result is not None:  # show the new view of the frozen frame
                img = self._compose(self._last_result, stats)
                self.last_image = img
                overlay.help_line(img)
                self.window.show(img)
        if self.paused and self.window is not None and self.last_image is not None and action == "pause":
            img = self.last_image.copy()
            overlay.corner_label(img, "paused", "bottom-left")
            self.window.show(img)
        return None

    def snapshot(self, path: Path | None = None) -> Path | None:
        """Write the last rendered frame as PNG (to ``path``; the ``s`` key: a timestamped name
        in ``snapshot_dir``, never one that exists, announced on the log)."""
        from edgekit._fs import atomic_path, fresh_path

        if self.last_image is None:
            return None
        announce = path is None
        if path is None:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = fresh_path(self.snapshot_dir / f"edgekit-snapshot-{stamp}-{len(self.snapshots) + 1}.png")
        with atomic_path(path, suffix=".png") as tmp:  # OpenCV picks the format by the suffix
            if not cv2().imwrite(str(tmp), self.last_image):
                raise DemoError("could not write the snapshot", where=path,
                                hint="check the folder exists and is writable")
        self.snapshots.append(path)
        if announce:
            self.log(f"snapshot: {path}")
        return path


# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _signals_stop(pipeline: Any) -> Iterator[None]:
    """Ctrl-C and SIGTERM while the pipeline runs: stop after the frame being rendered (so the
    recording and the frame count agree), via :meth:`Pipeline.interrupt`. Before the main loop
    runs, or on a second signal, they raise KeyboardInterrupt at once. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        if pipeline.in_main_loop and not pipeline.interrupt_requested:
            pipeline.interrupt()
            return
        raise KeyboardInterrupt

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Ignore a second Ctrl-C while the recording is being finalised."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _log_stderr(message: str) -> None:
    print(f"edgekit demo: {message}", file=sys.stderr, flush=True)


def run_demo(opts: DemoOptions, *, log: Callable[[str], None] = _log_stderr, source: Any = None) -> DemoResult:
    """Run the demo as ``opts`` says. Raises :class:`~edgekit.errors.EdgekitError` for faults
    (after finalising the recording; the message says how many frames it kept) and
    :class:`DemoInterrupted` for Ctrl-C/SIGTERM. ``source`` replaces ``opts.source`` with an
    already open source object (tests, custom sources)."""
    import edgekit
    from edgekit.apps.camera.models import precheck_model, resolve_model
    from edgekit.apps.camera.pipeline import Pipeline
    from edgekit.apps.camera.record import Recorder
    from edgekit.apps.camera.sources import open_source
    from edgekit.apps.camera.tasks import TASK_NAMES, make_task
    from edgekit.apps.camera.window import Window, why_headless

    if opts.task not in TASK_NAMES:
        raise UsageError(f"unknown demo task '{opts.task}'", hint="choose upscale or classify")
    if opts.frames is not None and opts.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {opts.frames}")
    if opts.record is not None and opts.no_record:
        raise UsageError("--record and --no-record contradict each other")
    precheck_model(opts.model, opts.task)  # a bundle or zoo model of another task: refused before anything opens

    headless_reason = None if opts.headless else why_headless()
    headless = opts.headless or headless_reason is not None
    # Files the user named are refused up front when they exist (unless --force); default names
    # never replace anything (the recorder takes the next free name).
    from edgekit._fs import checked_output_file

    if opts.record is not None:
        checked_output_file(opts.record, force=opts.force, what="--record")
    if opts.snapshot is not None:
        checked_output_file(opts.snapshot, force=opts.force, what="--snapshot")
    record_path = opts.record if opts.record is not None else (
        DEFAULT_RECORDING if headless and not opts.no_record else None)
    recorder = Recorder(record_path, force=opts.force) if record_path is not None else None  # validates early

    is_virtual = source is None and (opts.source in (None, "", "virtual"))
    # A camera or file is opened first: a wrong --source fails in a second, before a model loads.
    # The virtual camera waits for the model, whose input size is its default frame size.
    if source is None and not is_virtual:
        source = open_source(opts.source, opts.size, seed=opts.seed)
    session = None
    window = None
    pipeline = None
    result = DemoResult({}, None, headless_reason=headless_reason)
    try:
        resolved = resolve_model(opts.model, opts.task, progress=log)
        if resolved.note:
            result.notes.append(resolved.note)
            log(resolved.note)
        session = edgekit.load(resolved.path, backend=opts.backend, threads=opts.threads)
        task = make_task(opts.task, session, resolved.name, where=opts.model or resolved.path)
        max_frames = opts.frames
        if max_frames is None and headless and is_virtual:
            max_frames = DEFAULT_HEADLESS_FRAMES
        if source is None:
            # classify: a camera-like 640x480 view, centre-cropped for the model; upscale: see upscale_frame_size
            default = upscale_frame_size(task.pre.size) if opts.task == "upscale" else (640, 480)
            source = open_source("virtual", opts.size, live=not headless, seed=opts.seed, default_size=default)
        plan = task.plan(tuple(source.size))  # frames run at their own size, resized or tiled: decided once
        if plan is not None and plan.note:
            result.notes.append(plan.note)
        if recorder is not None:
            recorder.fps = source.fps
        placement = getattr(session, "placement", None)
        backend = getattr(placement, "backend", getattr(session, "backend", "?"))
        accelerator = getattr(placement, "accelerator", "?")
        if headless_reason:  # said once everything opened, so a fault stays a one-line message
            log(f"running headless: {headless_reason}")
        if not headless:
            try:
                window = Window(f"edgekit demo - {opts.task} - {resolved.name}")
            except Exception as e:  # a GUI backend that fails at run time: keep going headless
                first = first_line(e)
                result.headless_reason = f"cannot open a window ({first})"
                log(f"running headless: {result.headless_reason}")
                if recorder is None and not opts.no_record:
                    recorder = Recorder(DEFAULT_RECORDING, fps=source.fps)
                if is_virtual and opts.frames is None:
                    max_frames = DEFAULT_HEADLESS_FRAMES
        sink = DemoSink(task, model_name=resolved.name, backend=backend, accelerator=accelerator,
                        live=bool(source.live), recorder=recorder, window=window, view=opts.view,
                        snapshot_dir=opts.snapshot_dir, log=log)
        if recorder is not None:
            recorder.open(task.output_size(tuple(source.size)))
        pipeline = Pipeline(source, task, task.model, max_frames=max_frames, just_in_time=opts.just_in_time)
        try:
            with _signals_stop(pipeline):
                pipeline.run(sink)
        except KeyboardInterrupt:
            result.interrupted = True
        except EdgekitError as e:
            with _uninterruptible():
                pipeline.stop()
                kept = recorder.close() if recorder is not None else None
            result.recording = kept
            if kept is not None:
                raise DemoError(f"{e}; the {recorder.frames} frames rendered so far are saved in {kept}") from None
            raise
        with _uninterruptible():
            pipeline.stop()
            if opts.snapshot is not None:
                result.snapshot = sink.snapshot(opts.snapshot)
            result.recording = recorder.close() if recorder is not None else None
        result.summary = _summary(pipeline, opts, resolved.name, backend, accelerator, task, source, result)
        if result.interrupted:
            raise DemoInterrupted(result)
        return result
    finally:
        with _uninterruptible():
            if pipeline is not None:
                pipeline.stop()
            elif source is not None and hasattr(source, "close"):
                source.close()
            if recorder is not None and not recorder.closed:
                recorder.close()
            if window is not None:
                window.close()
            if session is not None:
                session.close()


def upscale_frame_size(model_size: tuple[int, int] | None) -> tuple[int, int]:
    """The virtual camera's frame size (width, height) for an upscaler taking ``model_size``
    (None: any size): 320x240, a small camera's frame, which a model made at a smaller size runs
    natively, resized or in a few tiles (a 128x128 model: 3x2 tiles) at interactive rates; a
    model made larger runs one frame of its own size."""
    if model_size is not None and (model_size[0] >= 320 or model_size[1] >= 240):
        return model_size
    return 320, 240


def summary_fields() -> dict[str, str]:
    """What each field of the run's summary (``edgekit demo --json``) means."""
    return {
        "frames": "frames rendered (shown and/or recorded)",
        "fps": "rendered frames per second, from the first rendered frame to the last",
        "inference_ms_p50": "median time of one model run (every run, shown or dropped)",
        "e2e_ms_p50": "median end-to-end latency: from the source returning a frame to that frame rendered",
        "queue_ms_p50": "median time a rendered frame waited for the pre-processing and model stages",
        "latency_ms": "end_to_end and its parts queue, preprocess, model, post (p50 and mean, rendered frames); "
                      "the means add up to the end-to-end mean",
        "paced": "whether the source paces frames like a camera (false: a file or the headless virtual camera)",
        "latency_note": "for an unpaced source, what its end-to-end latency includes (null when paced)",
        "capture_fps": "frames per second the source delivered",
        "dropped_frames": "frames or results replaced before the next stage took them (paced sources only)",
        "model_busy": "fraction of the run's wall time the model was computing, in [0, 1]",
        "efficiency": "fraction of the run's wall time the model spent on frames that were rendered, "
                      "in [0, model_busy]; FPS x inference time for equal-length inferences",
        "wall_s": "the run's wall time: from the stages starting (after the warm-up runs) to the end of the run",
        "random_weights": "the bundle says the model's weights are random (an untrained zoo model): outputs "
                          "are meaningless, and every frame says so",
        "backend": "the runtime that ran the model (litert, onnxruntime, coreml)",
        "accelerator": "where the runtime placed the model (e.g. XNNPACK, CPU)",
        "task": "upscale or classify",
        "model": "the model's name (the bundle's, or the file's)",
        "source": "the frame source (virtual, a camera, a file)",
        "live": "the same as paced (kept for scripts written before paced)",
        "output_size": "the rendered frame's width and height",
        "frame_size": "the source's frame width and height",
        "spatial": "upscale: how frames ran through the model, as `edgekit run` reports it (mode native, "
                   "resized or tiled, tiles and overlap, or crop and why); null for classify",
        "recording": "the recording's path, or null",
        "interrupted": "the run was stopped by Ctrl-C or SIGTERM",
        "stages_ms_p50": "median pre-processing and render times, and the mean inference time",
        "frames_captured": "frames the source delivered",
        "inferences": "model runs counted (rendered or dropped; the warm-up runs are not counted)",
    }


def _summary(pipeline: Any, opts: DemoOptions, model: str, backend: str, accelerator: str, task: Any, source: Any,
             result: DemoResult) -> dict[str, Any]:
    s = pipeline.stats.summary()
    out_size = task.output_size(tuple(source.size))
    paced = bool(source.live)
    return {
        **{k: s[k] for k in ("frames", "fps", "inference_ms_p50", "e2e_ms_p50", "queue_ms_p50", "capture_fps",
                             "dropped_frames")},
        "backend": backend,
        "accelerator": accelerator,
        "efficiency": s["efficiency"],
        "model_busy": s["model_busy"],
        "wall_s": s["wall_s"],
        "latency_ms": s["latency_ms"],
        "paced": paced,
        "latency_note": None if paced else UNPACED_NOTE,
        "random_weights": bool(getattr(task, "random_weights", False)),
        "task": opts.task,
        "model": model,
        "source": source.name,
        "live": paced,
        "output_size": list(out_size),
        "frame_size": list(source.size),
        "spatial": task.frame_plan.to_dict() if getattr(task, "frame_plan", None) is not None else None,
        "recording": str(result.recording) if result.recording is not None else None,
        "interrupted": result.interrupted,
        "stages_ms_p50": {"preprocess": s["preprocess_ms_p50"], "render": s["render_ms_p50"],
                          "inference_mean": s["inference_ms_mean"]},
        "frames_captured": s["frames_captured"],
        "inferences": s["inferences"],
    }
