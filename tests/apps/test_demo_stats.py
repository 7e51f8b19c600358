"""The demo's numbers with a stubbed clock (no real timing): ``model_busy`` and ``efficiency``
are fractions of the run's wall time in [0, 1] (efficiency ≤ model_busy), never NaN, also for
runs of 0 and 1 frames; the end-to-end latency of each rendered frame splits into queue,
preprocess, model and post, which add up to it; an unpaced source is labelled as such."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from numeric import Bound, assert_close

from edgekit.apps.camera import overlay
from edgekit.apps.camera.pipeline import LATENCY_PARTS, Frame, Pipeline, PipelineStats, Result
from edgekit.apps.camera.tasks import make_task

pytestmark = pytest.mark.numeric

TICK = 1 / 1024  # seconds: a binary fraction, so every difference of readings and its ms value are exact


class StepClock:
    """A clock that advances ``step`` ticks at every reading (from any thread); 0: time stands still."""

    def __init__(self, step: int = 1):
        self.step, self.now, self._lock = step, 0, threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now * TICK


class ModelClock:
    """Time passes only while the model computes: the fake model's run advances it by ``run_ticks``."""

    def __init__(self, run_ticks: int = 10):
        self.now, self.run_ticks, self._lock = 0, run_ticks, threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now * TICK

    def model_ran(self) -> None:
        with self._lock:
            self.now += self.run_ticks


class ListSource:
    def __init__(self, n: int, size=(64, 48)):
        self.frames = [np.full((size[1], size[0], 3), i % 256, np.uint8) for i in range(n)]
        self.size, self.live, self.fps, self.name, self.i = size, False, 30.0, "list", 0

    def read(self):
        if self.i >= len(self.frames):
            return None
        self.i += 1
        return self.frames[self.i - 1]

    def close(self):
        pass


class Sink:
    paused = False

    def consume(self, result, stats):
        return None

    def idle(self, stats):
        return None


def check_bounds(stats: PipelineStats) -> dict:
    s = stats.summary()
    json.dumps(s, allow_nan=False)  # no NaN or infinity anywhere in the summary
    busy, eff = stats.model_busy, stats.efficiency
    assert (busy is None) == (eff is None) == (stats.wall_s() is None or stats.wall_s() == 0), (busy, eff)
    if busy is not None:
        assert 0.0 <= eff <= busy <= 1.0, (eff, busy)
    return s


# -- the definitions on hand-made runs --------------------------------------------------------------------
def result(t_capture, pre_ms, t_infer_start, t_infer_end) -> Result:
    return Result(Frame(0, None, t_capture), None, {}, (t_infer_end - t_infer_start) * 1e3, pre_ms,
                  t_infer_start, t_infer_end)


def infer(stats: PipelineStats, t0: float, t1: float) -> None:
    stats.t_last_infer_end = t1
    stats.infer.add((t1 - t0) * 1e3)


def test_busy_and_efficiency_before_and_without_frames():
    stats = PipelineStats()
    assert check_bounds(stats)["model_busy"] is None  # the stages never started
    stats.t_start = stats.t_end = 5.0
    assert check_bounds(stats)["efficiency"] is None  # no wall time: no fraction of it
    stats.t_end = 6.0
    s = check_bounds(stats)  # a second without a frame: the model was idle all of it
    assert s["model_busy"] == 0.0 and s["efficiency"] == 0.0 and s["frames"] == 0 and s["fps"] is None


def test_busy_and_efficiency_of_one_frame():
    stats = PipelineStats()
    stats.t_start = 0.0
    infer(stats, 2 * TICK, 10 * TICK)
    stats.add_rendered(result(1 * TICK, 1 * TICK * 1e3, 2 * TICK, 10 * TICK), 11 * TICK, 12 * TICK)
    stats.t_end = 16 * TICK
    check_bounds(stats)
    assert stats.model_busy == 8 / 16 and stats.efficiency == 8 / 16  # 8 of 16 ticks computing, all on the shown frame
    assert stats.summary()["fps"] is None  # one frame has no rate


def test_skewed_inference_times_stay_bounded():
    """The old definitions (FPS x p50, FPS x mean inference) exceed 1 here: a slow first render
    lets the second inference run before the first frame is shown, so the rendered frames'
    span is shorter than the inference time. The fractions of wall time cannot."""
    stats = PipelineStats()
    stats.t_start = 0.0
    spans = [(0, 1), (1, 31), (31, 61)]  # ticks; back to back
    renders = [(1, 30), (31, 32), (61, 62)]  # the first render takes 29 ticks
    for (a, b), (r0, r1) in zip(spans, renders):
        infer(stats, a * TICK, b * TICK)
        stats.add_rendered(result(a * TICK, 0.0, a * TICK, b * TICK), r0 * TICK, r1 * TICK)
    stats.t_end = 62 * TICK
    fps = stats.rendered.rate
    assert fps * stats.infer.p50 / 1e3 > 1 and fps * stats.infer.mean / 1e3 > 1  # what the old fields reported
    check_bounds(stats)
    assert stats.model_busy == 61 / 62 and stats.efficiency == 61 / 62


def test_dropped_results_count_for_busy_not_for_efficiency():
    stats = PipelineStats()
    stats.t_start = 0.0
    infer(stats, 0, 10 * TICK)  # dropped: replaced before the render stage took it
    infer(stats, 10 * TICK, 20 * TICK)
    stats.add_rendered(result(0.0, 0.0, 10 * TICK, 20 * TICK), 20 * TICK, 20 * TICK)
    stats.t_end = 20 * TICK
    check_bounds(stats)
    assert stats.model_busy == 1.0 and stats.efficiency == 0.5


def test_readings_out_of_order_are_clamped():
    """A stubbed (or broken) clock can make inferences longer than the run: still in [0, 1]."""
    stats = PipelineStats()
    stats.t_start = 10.0
    stats.infer.add(50_000.0)
    stats.add_rendered(result(10.0, 0.0, 10.0, 60.0), 11.0, 11.0)
    stats.t_end = 11.0
    check_bounds(stats)
    assert stats.model_busy == 1.0 and stats.efficiency == 1.0


def test_latency_parts_of_one_frame():
    stats = PipelineStats()
    # captured at 0, pre-processed for 3 ticks (somewhere in between), model 10..30, shown at 34
    stats.add_rendered(result(0.0, 3 * TICK * 1e3, 10 * TICK, 30 * TICK), 31 * TICK, 34 * TICK)
    ms = TICK * 1e3
    got = {name: stats.parts[name].total for name in LATENCY_PARTS}
    assert got == {"queue": 7 * ms, "preprocess": 3 * ms, "model": 20 * ms, "post": 4 * ms}
    assert stats.e2e.total == 34 * ms and stats.render.total == 3 * ms


# -- through the pipeline --------------------------------------------------------------------------------------
def run(n: int, clock, max_frames=None, session=None, fake_session=None):
    session = session or fake_session(size=(64, 48))
    task = make_task("upscale", session)
    return Pipeline(ListSource(n), task, session, max_frames=max_frames, clock=clock).run(Sink())


@pytest.mark.parametrize("n,max_frames", [(0, None), (1, None), (2, None), (25, None), (25, 1), (25, 7)])
@pytest.mark.parametrize("step", [1, 0])
def test_pipeline_fractions_are_bounded(n, max_frames, step, fake_session):
    stats = run(n, StepClock(step), max_frames, fake_session=fake_session)
    assert stats.rendered.count == min(n, max_frames or n)
    s = check_bounds(stats)
    if step == 0:  # time stood still: nothing to take a fraction of
        assert s["model_busy"] is None and s["efficiency"] is None and s["wall_s"] == 0
    else:
        assert s["model_busy"] is not None
        assert (s["model_busy"] > 0) == (stats.infer.count > 0)


def test_a_model_bound_run_is_fully_busy(fake_session):
    """Time passes only in the model: every tick of wall time is inference, and for a file
    source every inference is rendered, so both fractions are exactly 1."""
    clock = ModelClock(run_ticks=10)

    class Timed(fake_session):
        def run(self, feed):
            out = super().run(feed)
            clock.model_ran()
            return out

    stats = run(12, clock, session=Timed(size=(64, 48)))
    assert stats.rendered.count == 12 and stats.infer.count == 12
    assert stats.model_busy == 1.0 and stats.efficiency == 1.0
    ms = 10 * TICK * 1e3
    assert stats.parts["model"].total == 12 * ms  # exactly the model's ticks, the warm-up runs left out
    # Pre- and post-processing take no time of their own here; a reading is non-zero only when the
    # next frame's inference (another thread) ran inside it, so it holds whole model runs.
    for part in ("preprocess", "post"):
        runs = stats.parts[part].total / ms
        assert runs == int(runs) and runs <= 12, (part, stats.parts[part].total)
    queue = [stats.parts["queue"].min, stats.parts["queue"].max]
    assert queue[0] >= 0 and queue[1] <= 12 * ms


@pytest.mark.parametrize("max_frames", [None, 1, 5])
def test_latency_parts_add_up_to_end_to_end(max_frames, fake_session):
    stats = run(20, StepClock(1), max_frames, fake_session=fake_session)
    n = stats.rendered.count
    assert all(stats.parts[p].count == n for p in LATENCY_PARTS) and stats.e2e.count == n
    for p in LATENCY_PARTS:
        assert stats.parts[p].min >= 0, p
    # every reading is a whole number of ticks: the parts' sums equal the end-to-end sum exactly
    total = sum(stats.parts[p].total for p in LATENCY_PARTS)
    assert_close(np.float64(total), np.float64(stats.e2e.total), Bound.exact(), "sum of the latency parts")
    lat = stats.summary()["latency_ms"]
    assert set(lat) == {"end_to_end", *LATENCY_PARTS}
    # the summary rounds each mean to 0.01 ms: five roundings of at most 0.005
    assert abs(sum(lat[p]["mean"] for p in LATENCY_PARTS) - lat["end_to_end"]["mean"]) <= 5 * 0.005 + 1e-9
    assert math.isclose(stats.summary()["queue_ms_p50"], lat["queue"]["p50"])


# -- how an unpaced source is labelled --------------------------------------------------------------------------
def test_overlay_labels_an_unpaced_source():
    paced = overlay.stats_lines("m", "b", "a", 10.0, 25.0, 30.0, 30.0, paced=True, queue_p50=1.0)
    unpaced = overlay.stats_lines("m", "b", "a", 10.0, 25.0, 30.0, None, paced=False, queue_p50=12.5)
    assert "queue" not in " ".join(paced) and "unpaced" not in " ".join(paced) and "(camera 30.0)" in paced[-1]
    assert "end-to-end p50 25.0 ms (queue 12.5 ms)" in unpaced and unpaced[-1] == "FPS 30.0  (unpaced source)"
    assert all(line.isascii() for line in unpaced)  # Hershey fonts draw ASCII only


def test_summary_says_the_headless_virtual_camera_is_unpaced(standins):
    from edgekit.apps.camera.app import UNPACED_NOTE, DemoOptions, run_demo, summary_fields

    res = run_demo(DemoOptions(task="upscale", model=str(standins["nearest_sr"]), headless=True, frames=3,
                               no_record=True, threads=1), log=lambda m: None)
    s = res.summary
    assert s["source"] == "virtual" and s["paced"] is False and s["latency_note"] == UNPACED_NOTE
    assert "waits for the model" in UNPACED_NOTE
    assert s["frames"] == 3 and set(s["latency_ms"]) == {"end_to_end", *LATENCY_PARTS}
    assert 0 <= s["efficiency"] <= s["model_busy"] <= 1 and s["random_weights"] is False
    documented = summary_fields()
    assert {"model_busy", "efficiency", "latency_ms", "paced", "latency_note", "random_weights"} <= set(documented)
    assert set(documented) == set(s), sorted(set(documented) ^ set(s))  # every field described, no more


def test_the_docs_page_describes_every_summary_field():
    import re
    from pathlib import Path

    from edgekit.apps.camera.app import summary_fields

    page = (Path(__file__).resolve().parents[2] / "docs" / "demo.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", page, flags=re.M))
    fields = set(summary_fields())
    assert fields <= rows, sorted(fields - rows)
    # the two fractions are defined there with their bounds
    assert "`model_busy` = " in page and "`efficiency` = " in page
    assert "**[0, 1]**" in page and "**[0, `model_busy`]**" in page
