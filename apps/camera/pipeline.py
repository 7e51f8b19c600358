"""The demo pipeline: capture → pre-process → inference → render, one thread per stage, so the
model is never idle waiting for a frame and never works on a stale one.

::

    capture thread ──slot──▶ pre thread ──slot──▶ infer thread ──slot──▶ main thread
    source.read()            crop, resize,        session.run()          render, overlay,
                             normalise, pack                             record, show, keys

Every hand-over is a :class:`Slot` that holds one item. For a *live* source (a camera) a put
replaces an item nobody took yet — that frame is counted as dropped — so each stage always
takes the newest frame; for a file every put waits, so every frame is processed in order.
The pre thread takes a frame only once the infer thread has taken the previous input
(``wait_empty``), so it always prepares the newest frame and has it ready when the model
finishes: the model runs back to back (``model_busy`` ≈ 1) whenever it is the slowest stage,
which on an edge device it is. For live sources it goes one step further
(*just in time*): it waits until shortly before the model is expected to finish (recent
inference median minus pre-processing minus an adaptive margin) and only then takes the
newest frame, so a frame waits a fraction of an inference instead of a whole one — end-to-end
latency close to one inference plus rendering, at nearly the same throughput. The stages spend their time in
OpenCV, NumPy and the runtime, which all release the GIL.

Statistics (:class:`PipelineStats`): inference, pre-processing, render and end-to-end
(capture → frame shown or written) latencies; the end-to-end latency of every rendered frame
split into ``queue`` (waiting for the pre-processing and model stages), ``preprocess``,
``model`` and ``post`` (model end → rendered: waiting for the main thread, drawing, recording,
showing), which add up to it; rendered FPS and capture FPS; dropped frames; ``model_busy`` and
``efficiency``, two fractions of the run's wall time in [0, 1]. Percentiles over the whole
run come from a log histogram with 0.5 % bins (constant memory for endless runs); the overlay
shows medians of the last second or so. Every time is read from one clock, ``clock``
(``time.perf_counter``; tests pass a stub).

A source that is not *live* (a video file, the headless virtual camera) is not paced: the
capture thread reads the next frame as soon as the previous one is taken, so each frame waits
for the model instead of being dropped. A frame read while the model runs waits behind the
one running, the one pre-processed and the one in the capture slot: once the run is under
way its ``queue`` time is close to three inferences (measured: 2.9 over 60 frames of the
default bundle, headless). A paced camera drops those frames instead, and just in time keeps
its ``queue`` to a fraction of an inference plus up to one camera frame interval (measured:
54 ms with a 96 ms model and a 30 fps camera).

Example::

    >>> pipe = Pipeline(source, task, session, max_frames=60)          # doctest: +SKIP
    >>> stats = pipe.run(sink)                                          # doctest: +SKIP
    >>> stats.summary()["fps"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from edgekit.errors import DemoError

__all__ = ["Slot", "Closed", "Frame", "Result", "LatencyStats", "RateMeter", "PipelineStats", "Pipeline", "Sink"]

_EMPTY = object()
END = object()  # end of stream marker, flows through every slot
TIMEOUT = object()


class Closed(Exception):
    """The slot was closed: the pipeline is stopping."""


class Slot:
    """A hand-over of one item between two threads.

    ``put(item, replace=True)`` never waits: it replaces an item nobody took (and returns True,
    the caller counts a dropped frame). ``put(item, replace=False)`` waits until the slot is
    empty. ``get`` waits for an item (or ``timeout``, returning :data:`TIMEOUT`). ``close``
    wakes every waiter with :class:`Closed`.
    """

    def __init__(self, name: str = "slot"):
        self.name = name
        self._cond = threading.Condition()
        self._item: Any = _EMPTY
        self._closed = False

    def put(self, item: Any, replace: bool = False) -> bool:
        with self._cond:
            if not replace:
                while self._item is not _EMPTY and not self._closed:
                    self._cond.wait()
            if self._closed:
                raise Closed(self.name)
            dropped = self._item is not _EMPTY
            self._item = item
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._item is _EMPTY and not self._closed:
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return TIMEOUT
                    self._cond.wait(left)
            if self._item is _EMPTY:  # closed and empty
                raise Closed(self.name)
            item, self._item = self._item, _EMPTY
            self._cond.notify_all()
            return item

    def wait_empty(self) -> None:
        with self._cond:
            while self._item is not _EMPTY and not self._closed:
                self._cond.wait()
            if self._closed:
                raise Closed(self.name)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------
class LatencyStats:
    """Latencies in milliseconds: whole-run percentiles (log histogram, 0.5 % bins from 1 µs
    to 1000 s, so constant memory), exact min/max/mean, and the median of the last ``window``."""

    _LO_MS = 1e-3
    _RATIO = 1.005
    _BINS = int(math.ceil(math.log(1e6 / 1e-3) / math.log(1.005))) + 1

    def __init__(self, window: int = 30):
        self._hist = np.zeros(self._BINS, np.int64)
        self._recent: deque[float] = deque(maxlen=window)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def add(self, ms: float) -> None:
        ms = max(0.0, float(ms))  # sums, min and max keep the value; only its bin is clamped
        i = min(self._BINS - 1, int(math.log(max(ms, self._LO_MS) / self._LO_MS) / math.log(self._RATIO)))
        self._hist[i] += 1
        self._recent.append(ms)
        self.count += 1
        self.total += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) of every value added, within 0.25 %."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        i = int(np.searchsorted(np.cumsum(self._hist), rank))
        mid = self._LO_MS * self._RATIO ** (i + 0.5)
        return float(min(max(mid, self.min), self.max))

    @property
    def p50(self) -> float | None:
        return self.percentile(50)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def recent_p50(self) -> float | None:
        return float(np.median(self._recent)) if self._recent else None


class RateMeter:
    """Events per second: over the whole run ((n - 1) / (last - first), so pipeline start-up
    is not counted) and over the last ``window`` events."""

    def __init__(self, window: int = 30):
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self._recent: deque[float] = deque(maxlen=window)

    def tick(self, t: float) -> None:
        if self.first is None:
            self.first = t
        self.last = t
        self.count += 1
        self._recent.append(t)

    @property
    def rate(self) -> float | None:
        if self.count < 2 or self.last == self.first:
            return None
        return (self.count - 1) / (self.last - self.first)

    @property
    def recent_rate(self) -> float | None:
        if len(self._recent) < 2 or self._recent[-1] == self._recent[0]:
            return None
        return (len(self._recent) - 1) / (self._recent[-1] - self._recent[0])


@dataclass
class Frame:
    index: int  # how many frames the source delivered before this one
    image: np.ndarray  # BGR uint8 as the source delivered it
    t_capture: float  # the pipeline's clock when read() returned it


@dataclass
class Result:
    frame: Frame
    job: Any  # tasks.Job
    outputs: dict[str, np.ndarray]
    infer_ms: float
    pre_ms: float = 0.0  # pre-processing of this frame
    t_infer_start: float | None = None  # the pipeline's clock when the model took this frame
    t_infer_end: float | None = None  # ... and when it returned


#: The parts of a rendered frame's end-to-end latency, in the order they happen; they add up to it.
LATENCY_PARTS = ("queue", "preprocess", "model", "post")


def _fraction(part_s: float, wall_s: float | None) -> float | None:
    """``part_s / wall_s`` in [0, 1], or None when no wall time was measured. The ratio of
    serial busy time to the wall time around it is at most 1 by construction; the clamp keeps
    the bound when a clock's readings are coarse or out of order."""
    if wall_s is None or not wall_s > 0 or not math.isfinite(wall_s):
        return None
    v = part_s / wall_s
    return min(1.0, max(0.0, v)) if math.isfinite(v) else None


class PipelineStats:
    """Everything the overlay and the ``--json`` summary report.

    Two fractions of the run's *wall time* — from the moment the stages start (after the
    warm-up runs) to the last frame rendered, or the end of the last inference counted if that
    is later — say where the time went:

    - ``model_busy``: the fraction of wall time the model was computing (every inference, shown
      or not). Inferences run one at a time inside the wall time, so it is in [0, 1]; near 1
      the model is the bottleneck and never waits for a frame.
    - ``efficiency``: the fraction of wall time the model spent on frames that were rendered
      (a result replaced before the render stage took it does not count). It is at most
      ``model_busy``; for inferences of equal length it is FPS × inference time, the share of
      the model's own frame rate the demo delivers. Below ``model_busy``, results were dropped
      because rendering is slower than the model.

    Both are None (JSON null) only when no wall time was measured (a run stopped before its
    stages started); a run that rendered no frame has 0. Never negative, above 1 or NaN.
    """

    def __init__(self) -> None:
        self.infer = LatencyStats()
        self.pre = LatencyStats()
        self.render = LatencyStats()
        self.e2e = LatencyStats()
        # the end-to-end latency of each rendered frame in parts (see LATENCY_PARTS)
        self.parts = {name: LatencyStats() for name in LATENCY_PARTS}
        self.rendered = RateMeter()
        self.captured = RateMeter()
        self.dropped_capture = 0  # frames replaced before pre-processing took them
        self.dropped_results = 0  # results replaced before the render stage took them
        self.t_start: float | None = None  # the stages started (after the warm-up)
        self.t_end: float | None = None  # the main loop ended
        self.t_last_infer_end: float | None = None  # the last inference counted in `infer` ended

    @property
    def dropped(self) -> int:
        return self.dropped_capture + self.dropped_results

    def add_rendered(self, result: Result, t_render_start: float, t_render_end: float) -> None:
        """Count one rendered frame: render time, end-to-end latency and its parts, FPS."""
        f = result.frame
        start = result.t_infer_start if result.t_infer_start is not None else f.t_capture
        end = result.t_infer_end if result.t_infer_end is not None else start
        e2e = (t_render_end - f.t_capture) * 1e3
        parts = {"queue": (start - f.t_capture) * 1e3 - result.pre_ms, "preprocess": result.pre_ms,
                 "model": (end - start) * 1e3, "post": (t_render_end - end) * 1e3}
        self.render.add((t_render_end - t_render_start) * 1e3)
        self.e2e.add(e2e)
        for name, ms in parts.items():
            self.parts[name].add(ms)
        self.rendered.tick(t_render_end)

    def wall_s(self) -> float | None:
        """Seconds from the start of the stages to the end of the run (see the class docstring);
        None before the stages start."""
        if self.t_start is None:
            return None
        ends = [t for t in (self.t_end, self.t_last_infer_end, self.rendered.last) if t is not None]
        return max([self.t_start, *ends]) - self.t_start

    @property
    def model_busy(self) -> float | None:
        """The fraction of wall time the model was computing, in [0, 1] (None: no wall time)."""
        return _fraction(self.infer.total / 1e3, self.wall_s())

    @property
    def efficiency(self) -> float | None:
        """The fraction of wall time the model spent on frames that were rendered, in
        [0, ``model_busy``] (None: no wall time)."""
        busy = self.model_busy
        shown = _fraction(self.parts["model"].total / 1e3, self.wall_s())
        return None if busy is None or shown is None else min(busy, shown)

    def summary(self) -> dict[str, Any]:
        """The run in numbers (the ``--json`` fields, plus per-stage medians and efficiency)."""
        def r(v: float | None, nd: int = 2) -> float | None:
            return None if v is None else round(v, nd)

        fps = self.rendered.rate
        p50 = self.infer.p50
        return {
            "frames": self.rendered.count,
            "fps": r(fps),
            "inference_ms_p50": r(p50),
            "e2e_ms_p50": r(self.e2e.p50),
            "queue_ms_p50": r(self.parts["queue"].p50),
            "capture_fps": r(self.captured.rate),
            "dropped_frames": self.dropped,
            "efficiency": r(self.efficiency, 3),
            "model_busy": r(self.model_busy, 3),
            "wall_s": r(self.wall_s(), 3),
            "latency_ms": {name: {"p50": r(st.p50), "mean": r(st.mean)}
                           for name, st in (("end_to_end", self.e2e), *self.parts.items())},
            "inference_ms_mean": r(self.infer.mean),
            "preprocess_ms_p50": r(self.pre.p50, 3),
            "render_ms_p50": r(self.render.p50, 3),
            "frames_captured": self.captured.count,
            "inferences": self.infer.count,
        }


class Sink(Protocol):
    """The main-thread end of the pipeline (rendering, recording, the window)."""

    paused: bool

    def consume(self, result: Result, stats: PipelineStats) -> str | None:
        """Render, record and show one result; return ``"quit"`` to stop."""

    def idle(self, stats: PipelineStats) -> str | None:
        """Called while waiting for a result or paused (pump window events); ``"quit"`` stops."""


# ---------------------------------------------------------------------------------------------
class Pipeline:
    """Runs ``source`` → ``task.prepare`` → ``session.run`` → ``sink.consume`` on four threads.

    ``max_frames`` stops after that many rendered frames. When the source fails (a camera
    unplugged), the frames already captured are still rendered (and recorded) before its error
    is raised. For live sources, no frame for
    ``stall_timeout_s`` (``first_frame_timeout_s`` before the first) is a fault — a camera
    unplugged mid-run whose driver blocks instead of failing. The pipeline closes the source
    when it stops (unless its thread is stuck in ``read()``).

    ``clock`` (seconds, ``time.perf_counter``) times every measurement (and so the just-in-time
    wait, which follows the measured inference time); the stall timeouts use real time whatever
    it is.
    """

    def __init__(self, source: Any, task: Any, session: Any, *, max_frames: int | None = None,
                 stall_timeout_s: float = 5.0, first_frame_timeout_s: float = 10.0, warmup_runs: int = 2,
                 just_in_time: bool = True, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.source = source
        self.task = task
        self.session = session
        self.max_frames = max_frames
        self.stall_timeout_s = stall_timeout_s
        self.first_frame_timeout_s = first_frame_timeout_s
        self.warmup_runs = warmup_runs
        self.just_in_time = just_in_time
        self._margin_ms: float | None = None
        self._infer_waited_ms = 0.0
        self.live = bool(getattr(source, "live", False))
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._cap = Slot("capture")
        self._pre = Slot("preprocessed")
        self._out = Slot("results")
        self._threads: list[threading.Thread] = []
        self._last_capture: float | None = None  # real time (time.monotonic), for the stall check
        self._started: float | None = None
        self.ended = False  # the source reached its end
        self.source_error: Exception | None = None  # read() failed; raised once the frames in flight are shown
        self.interrupt_requested = False
        self.in_main_loop = False

    # -- stages --------------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        replace = self.live
        index = 0
        while not self._stop.is_set():
            try:
                image = self.source.read()
            except Exception as e:  # noqa: BLE001 - a device fault: finish the frames in flight, then raise it
                self.source_error = e
                image = None
            t = self.clock()
            if image is None:
                self._cap.put(END)
                return
            self._last_capture = time.monotonic()
            self.stats.captured.tick(t)
            if self._cap.put(Frame(index, image, t), replace=replace):
                self.stats.dropped_capture += 1
            index += 1

    def _pre_loop(self) -> None:
        just_in_time = self.live and self.just_in_time
        while True:
            self._pre.wait_empty()  # take a frame only when the model took the last input: the newest
            if just_in_time:
                self._stop.wait(self._prefetch_delay())
            frame = self._cap.get()
            if frame is END:
                self._pre.put(END)
                return
            t0 = self.clock()
            job = self.task.prepare(frame.image)
            pre_ms = (self.clock() - t0) * 1e3
            self.stats.pre.add(pre_ms)
            self._pre.put((frame, job, pre_ms))

    def _prefetch_delay(self) -> float:
        """Seconds to wait, once the model took its input, before taking the next frame: the
        model's recent median minus pre-processing and a safety margin, so the frame is as
        fresh as possible and still ready when the model finishes.

        The margin adapts: when the model had to wait for its last input, it grows by that
        wait (fetch earlier); otherwise it shrinks by 5 % towards 5 % of an inference (fetch
        later). Inference times that jitter (a busy CPU) get a wide margin, steady ones a
        narrow one."""
        infer, pre = self.stats.infer.recent_p50, self.stats.pre.recent_p50
        if infer is None or pre is None or self.stats.infer.count < 5:
            return 0.0
        if self._margin_ms is None:
            self._margin_ms = 0.15 * infer
        waited = self._infer_waited_ms
        if waited > 0.5:
            self._margin_ms = min(infer, self._margin_ms + waited)
        else:
            self._margin_ms = max(1.0, 0.05 * infer, 0.95 * self._margin_ms)
        return max(0.0, (infer - pre - self._margin_ms) / 1e3)

    def _infer_loop(self) -> None:
        replace = self.live
        run = self.session.run
        t_free = None
        while True:
            item = self._pre.get()
            t0 = self.clock()
            if item is END:
                self._out.put(END)
                return
            if t_free is not None:  # how long the model sat idle waiting for this input
                self._infer_waited_ms = (t0 - t_free) * 1e3
            frame, job, pre_ms = item
            outputs = run(job.feed)
            t1 = self.clock()
            ms = (t1 - t0) * 1e3
            if self._stop.is_set():  # a run that ended after the pipeline stopped: not part of the run
                return
            self.stats.t_last_infer_end = t1
            self.stats.infer.add(ms)
            if self._out.put(Result(frame, job, outputs, ms, pre_ms, t0, t1), replace=replace):
                self.stats.dropped_results += 1
            t_free = t1 if replace else self.clock()

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except Closed:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
                if self.error is None:
                    self.error = e
                self._shutdown_slots()
        return body

    # -- control -------------------------------------------------------------------------------
    def _shutdown_slots(self) -> None:
        self._stop.set()
        for slot in (self._cap, self._pre, self._out):
            slot.close()

    def warmup(self) -> None:
        """Run the model on a blank frame so first-run costs (allocation, XNNPACK packing) stay
        out of the measurements."""
        w, h = getattr(self.source, "size", (320, 240))
        job = self.task.prepare(np.zeros((h, w, 3), np.uint8))
        for _ in range(self.warmup_runs):
            self.session.run(job.feed)

    def _check_stall(self) -> None:
        if not self.live or self._started is None:
            return
        now = time.monotonic()
        if self._last_capture is None:
            if now - self._started > self.first_frame_timeout_s:
                raise DemoError(f"no frame in {self.first_frame_timeout_s:.0f} s", where=self.source.name,
                                hint="is the camera connected and free?")
        elif now - self._last_capture > self.stall_timeout_s:
            raise DemoError(f"the source delivered no frame for {self.stall_timeout_s:.0f} s after "
                            f"{self.stats.captured.count} frames", where=self.source.name,
                            hint="was the camera unplugged? reconnect it and start again")

    def run(self, sink: Sink) -> PipelineStats:
        """Run until the source ends, ``max_frames`` are rendered, the sink says quit, or a stage
        fails (its exception is raised here, after every thread stopped). KeyboardInterrupt
        propagates the same way; the caller's ``finally`` finalises the recording."""
        self.warmup()
        self._started = time.monotonic()
        self.stats.t_start = self.clock()  # before any stage runs: every measured interval is inside the wall time
        stages = (("capture", self._capture_loop), ("preprocess", self._pre_loop), ("inference", self._infer_loop))
        self._threads = [threading.Thread(target=self._guard(fn), name=f"edgekit-demo-{name}", daemon=True)
                         for name, fn in stages]
        for t in self._threads:
            t.start()
        try:
            self._main_loop(sink)
        finally:
            self.stats.t_end = self.clock()
            self.stop()
        if self.error is not None:
            raise self.error
        return self.stats

    def interrupt(self) -> None:
        """Ask the main loop to stop with KeyboardInterrupt at its next safe point (between
        frames): a signal handler calls this, so a frame is never half rendered or half
        recorded, and the frame count matches the recording."""
        self.interrupt_requested = True

    def _main_loop(self, sink: Sink) -> None:
        stats = self.stats
        self.in_main_loop = True
        try:
            self._loop(sink, stats)
        finally:
            self.in_main_loop = False

    def _loop(self, sink: Sink, stats: PipelineStats) -> None:
        while True:
            if self.interrupt_requested:
                raise KeyboardInterrupt
            if self.error is not None:
                return
            self._check_stall()
            if sink.paused:
                if sink.idle(stats) == "quit":
                    return
                time.sleep(0.01)
                continue
            try:
                item = self._out.get(timeout=0.05)
            except Closed:  # a stage failed and shut the pipeline down; run() raises its error
                return
            if item is TIMEOUT:
                if sink.idle(stats) == "quit":
                    return
                continue
            if item is END:
                if self.source_error is not None:
                    raise self.source_error
                self.ended = True
                return
            t0 = self.clock()
            action = sink.consume(item, stats)
            stats.add_rendered(item, t0, self.clock())
            if action == "quit":
                return
            if self.max_frames is not None and stats.rendered.count >= self.max_frames:
                return

    def stop(self, join_timeout_s: float = 3.0) -> None:
        """Stop every stage and close the source (idempotent)."""
        self._shutdown_slots()
        deadline = time.monotonic() + join_timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        capture_stuck = bool(self._threads) and self._threads[0].is_alive()
        if not capture_stuck:
            try:
                self.source.close()
            except Exception:  # closing a failed device must not hide the real error
                pass
