"""``edgekit.bench``: what it times, what it reports, and that the numbers are real."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import edgekit
from edgekit.errors import UsageError
from edgekit.runtimes.base import TensorSpec
from edgekit.runtimes.bench import bench, peak_rss_mb, random_feed, rss_mb
from edgekit.runtimes.null import session_from_callable

REQUIRED = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "init_ms", "peak_rss_mb", "backend", "threads")


def _busy(ms: float):
    spec = [TensorSpec("x", (4,), "float32")]
    return session_from_callable(lambda f: {"y": f["x"]}, spec, [TensorSpec("y", (4,), "float32")], latency_ms=ms)


def test_latency_of_a_known_workload():
    """The numbers are real: bounded below by the workload and above by the wall time of the
    whole call, whatever the host's speed or load (no bound depends on how fast it is)."""
    s = _busy(3.0)
    t0 = time.perf_counter()
    r = bench(s, warmup=2, runs=20)
    outer_ms = (time.perf_counter() - t0) * 1e3
    assert s.runs == 1 + 2 + 20  # first run, warm-up, timed runs
    # each run busy-waits until 3 ms of wall time have passed: no sample can be shorter
    assert 3.0 <= r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
    # every timed run lies inside the call (a ms/us mix-up would break this or the line above)
    assert sum(r.samples_ms) <= outer_ms, (sum(r.samples_ms), outer_ms)
    # throughput is runs over the timed loop, which holds every sample and lies inside the call;
    # 1e-3 covers the rounding of the reported values (mean to 1e-4 ms, throughput to 0.01/s)
    assert 20 * 1000 / outer_ms * (1 - 1e-3) <= r.throughput_per_s <= 1000 / r.mean_ms * (1 + 1e-3), r
    assert len(r.samples_ms) == 20 and "samples_ms" not in r.to_dict() and len(r.to_dict(samples=True)["samples_ms"]) == 20


def test_result_is_json_with_the_required_keys(tiny):
    with edgekit.load(tiny["add_mul.tflite"], threads=1) as s:
        r = edgekit.bench(s, warmup=1, runs=10)
    d = json.loads(json.dumps(r.to_dict()))
    assert all(k in d for k in REQUIRED)
    assert d["backend"] == "litert" and d["threads"] == 1 and d["accelerator"] == "XNNPACK"
    assert d["placement"]["op_counts"] == {"XNNPACK": 2, "CPU": 0}
    assert d["init_ms"] > 0 and d["first_run_ms"] > 0
    assert "p50" in str(r) and "add_mul.tflite" in str(r)


def test_given_feed_is_used():
    s = _busy(0.0)
    x = np.arange(4, dtype=np.float32)
    bench(s, warmup=0, runs=3, feed={"x": x})
    np.testing.assert_array_equal(s.last_feed["x"], x)


def test_random_feed_follows_the_specs():
    specs = [TensorSpec("f", (1, 3, None), "float32"), TensorSpec("h", ("n", 2), "float16"),
             TensorSpec("q", (1000,), "int8"), TensorSpec("u", (1000,), "uint8"), TensorSpec("i", (5,), "int64"),
             TensorSpec("b", (3,), "bool")]
    feed = random_feed(specs, dynamic_size=2)
    assert {k: (v.shape, v.dtype.name) for k, v in feed.items()} == {
        "f": ((1, 3, 2), "float32"), "h": ((2, 2), "float16"), "q": ((1000,), "int8"), "u": ((1000,), "uint8"),
        "i": ((5,), "int64"), "b": ((3,), "bool")}
    assert feed["q"].min() < -100 and feed["q"].max() > 100 and feed["u"].max() > 200
    np.testing.assert_array_equal(random_feed(specs, seed=3)["f"], random_feed(specs, seed=3)["f"])
    with pytest.raises(UsageError, match="random data"):
        random_feed([TensorSpec("s", (1,), "string")])
    with pytest.raises(UsageError, match="too large"):
        random_feed([TensorSpec("big", (1 << 20, 1 << 20), "float32")])


def test_bad_arguments():
    s = _busy(0.0)
    for kw in ({"runs": 0}, {"runs": 2.5}, {"warmup": -1}):
        with pytest.raises(UsageError):
            bench(s, **kw)


def test_memory_readings():
    before = peak_rss_mb()
    big = np.ones(64 * 1024 * 1024 // 8)  # 64 MB touched
    assert peak_rss_mb() >= before and rss_mb() > 50
    del big
