"""Measure a Session: init, first run, latency percentiles, throughput, peak memory.

What is timed is ``session.run(feed)`` — what an application calls — with
``time.perf_counter_ns`` around each call, after ``warmup`` untimed runs. The first run is
timed on its own (it includes lazy allocation and kernel preparation). Percentiles use
linear interpolation (NumPy's default), like ``onnxruntime_perf_test``.

``peak_rss_mb`` is the peak resident set size of this process so far (Linux ``VmHWM``,
elsewhere ``getrusage``'s ``ru_maxrss``): it includes everything the process loaded before
the model, which is what a device has to fit. ``rss_mb`` is the resident size after the runs.

Example::

    >>> r = bench(edgekit.load("m.tflite", threads=2), runs=50)   # doctest: +SKIP
    >>> r.p50_ms, r.to_dict()["backend"]                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import UsageError
from edgekit.runtimes.base import Session, TensorSpec

__all__ = ["BenchResult", "bench", "random_feed", "peak_rss_mb", "rss_mb"]

_MAX_RANDOM_BYTES = 1 << 32  # 4 GB: beyond this a spec is a mistake, not a model to benchmark


@dataclass
class BenchResult:
    """Timings in milliseconds; ``throughput_per_s`` is runs per second over the timed loop."""

    model: str
    backend: str
    accelerator: str
    threads: int
    warmup: int
    runs: int
    init_ms: float
    first_run_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    throughput_per_s: float
    peak_rss_mb: float
    rss_mb: float
    placement: dict[str, Any] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list, repr=False)

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """A JSON-able dict (``samples=True`` keeps every timed run)."""
        d = asdict(self)
        if not samples:
            d.pop("samples_ms")
        return d

    def __str__(self) -> str:
        return (f"{self.model} on {self.backend}/{self.accelerator}, {self.threads} thread(s): "
                f"p50 {self.p50_ms:.3f} ms, p90 {self.p90_ms:.3f} ms, p99 {self.p99_ms:.3f} ms, "
                f"mean {self.mean_ms:.3f} ms ({self.throughput_per_s:.1f}/s) over {self.runs} runs; "
                f"init {self.init_ms:.1f} ms, first run {self.first_run_ms:.2f} ms, peak RSS {self.peak_rss_mb:.0f} MB")


def random_feed(specs: Sequence[TensorSpec], seed: int = 0, dynamic_size: int = 1) -> dict[str, np.ndarray]:
    """A feed of random arrays matching ``specs`` (dynamic dims become ``dynamic_size``).

    Floats are standard normal, integers span their type's range (int32/int64 small
    non-negative values, as they are often indices), booleans are fair coins.
    """
    rng = np.random.default_rng(seed)
    feed = {}
    for s in specs:
        shape = tuple(d if isinstance(d, int) and d >= 0 else dynamic_size for d in s.shape)
        try:
            dtype = np.dtype(s.dtype)
        except TypeError:
            raise UsageError(f"cannot make random data for input '{s.name}' of dtype {s.dtype}",
                             hint="pass feed= with real inputs") from None
        if math.prod(shape) * dtype.itemsize > _MAX_RANDOM_BYTES:
            raise UsageError(f"input '{s.name}' {list(shape)} {s.dtype} is too large for random data",
                             hint="pass feed= with real inputs")
        if dtype.kind == "f":
            x = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            x = rng.random(shape) < 0.5
        elif dtype.kind in "iu" and dtype.itemsize == 1:
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
        elif dtype.kind in "iu":
            x = rng.integers(0, 10, shape).astype(dtype)
        else:
            raise UsageError(f"cannot make random data for input '{s.name}' of dtype {s.dtype}",
                             hint="pass feed= with real inputs")
        feed[s.name] = x
    return feed


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (VmHWM on Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB elsewhere
    except (ImportError, OSError):
        return float("nan")


def rss_mb() -> float:
    """Current resident set size of this process in MB (nan when the OS does not say)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return float("nan")


def bench(session: Session, warmup: int = 10, runs: int = 100, feed: Mapping[str, np.ndarray] | None = None,
          seed: int = 0) -> BenchResult:
    """Time ``session.run``: one first run, ``warmup`` untimed runs, then ``runs`` timed runs.

    ``feed`` defaults to :func:`random_feed` of the session's inputs.
    """
    if not isinstance(runs, int) or runs < 1:
        raise UsageError(f"runs must be a positive integer, got {runs!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise UsageError(f"warmup must be a non-negative integer, got {warmup!r}")
    feed = dict(feed) if feed is not None else random_feed(session.inputs, seed)
    run = session.run
    clock = time.perf_counter_ns

    t0 = clock()
    run(feed)
    first_ms = (clock() - t0) / 1e6
    for _ in range(warmup):
        run(feed)
    samples = np.empty(runs, dtype=np.int64)
    loop_start = clock()
    for i in range(runs):
        t0 = clock()
        run(feed)
        samples[i] = clock() - t0
    loop_s = (clock() - loop_start) / 1e9

    ms = samples / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    placement = session.placement
    return BenchResult(
        model=session.path.name,
        backend=session.backend,
        accelerator=placement.accelerator,
        threads=session.threads,
        warmup=warmup,
        runs=runs,
        init_ms=round(float(session.init_ms), 3),
        first_run_ms=round(first_ms, 4),
        p50_ms=round(float(p50), 4),
        p90_ms=round(float(p90), 4),
        p99_ms=round(float(p99), 4),
        mean_ms=round(float(ms.mean()), 4),
        min_ms=round(float(ms.min()), 4),
        max_ms=round(float(ms.max()), 4),
        std_ms=round(float(ms.std()), 4),
        throughput_per_s=round(runs / loop_s, 2) if loop_s > 0 else float("inf"),
        peak_rss_mb=round(peak_rss_mb(), 1),
        rss_mb=round(rss_mb(), 1),
        placement=placement.to_dict(),
        samples_ms=[round(float(x), 4) for x in ms],
    )
