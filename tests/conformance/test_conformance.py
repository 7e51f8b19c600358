"""One suite, every backend: the committed cases run through ``edgekit.load`` on each backend here.

Each case checks that the session (1) describes its tensors as the file and ``case.json`` do,
(2) computes exactly what the bare runtime computes with the same thread count, (3) computes
what the model means (``expected.npz``: PyTorch eager, or the exact NumPy formula) within the
bound ``case.json`` records for the format, (4) rejects wrong feeds with one line naming the
file, and (5) reports its placement, closes and benchmarks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from numeric import Bound, assert_close

import edgekit
from edgekit.errors import FeedError, UsageError

from conformance_support import CASE_FORMATS, THREADS, backend_formats, raw_run, read_file_info

pytestmark = pytest.mark.numeric


def _open(backend: str, path, **kw):
    return edgekit.load(path, backend=backend, threads=THREADS, **kw)


def test_specs_match_the_file(conformance):
    case, backend, fmt, path = conformance
    feed = case.feed(fmt)
    info = read_file_info(fmt, path)
    spec_in, spec_out = case.spec(fmt)
    with _open(backend, path) as s:
        assert s.backend == backend and s.threads == THREADS
        assert [t.name for t in s.inputs] == [t[0] for t in info.inputs] == [t[0] for t in spec_in]
        assert [t.name for t in s.outputs] == [t[0] for t in info.outputs] == [t[0] for t in spec_out]
        assert [(t.shape, t.dtype) for t in s.inputs] == [(x.shape, x.dtype.name) for x in feed]
        assert [(t.shape, t.dtype) for t in s.inputs] == [t[1:] for t in info.inputs] == [t[1:] for t in spec_in]
        assert [t.dtype for t in s.outputs] == [e.dtype.name for e in case.expected(fmt)] == [t[2] for t in spec_out]


def test_outputs_equal_the_bare_runtime(conformance):
    case, backend, fmt, path = conformance
    feed = case.feed(fmt)
    with _open(backend, path) as s:
        out = s.run({t.name: x for t, x in zip(s.inputs, feed)})
        names = [t.name for t in s.outputs]
    assert list(out) == names
    raw = raw_run(fmt, path, feed)
    for name, r in zip(names, raw):
        assert out[name].dtype == r.dtype
        assert out[name].shape == r.shape
        assert_close(out[name], r, Bound.exact("edgekit session vs bare runtime, same threads: bit for bit"),
                     f"{case.name} on {backend}: output {name} vs bare runtime")


def test_outputs_match_the_model(conformance):
    case, backend, fmt, path = conformance
    feed, expected, bounds = case.feed(fmt), case.expected(fmt), case.bounds(fmt)
    with _open(backend, path) as s:
        out = s.run({t.name: x for t, x in zip(s.inputs, feed)})
    assert len(out) == len(expected) == len(bounds)
    for (name, y), e, bound in zip(out.items(), expected, bounds):
        assert_close(y, e, bound, f"{case.name} on {backend}/{fmt}: output {name} vs reference")


def test_positional_call(conformance):
    case, backend, fmt, path = conformance
    feed = case.feed(fmt)
    with _open(backend, path) as s:
        by_name = s.run({t.name: x for t, x in zip(s.inputs, feed)})
        positional = s(*feed)
        if len(s.outputs) == 1:
            assert isinstance(positional, np.ndarray)
            np.testing.assert_array_equal(positional, next(iter(by_name.values())))
        else:
            assert list(positional) == list(by_name)
        with pytest.raises(FeedError, match="takes"):
            s(*feed, feed[0])


def test_wrong_feeds_are_one_line_errors(conformance):
    case, backend, fmt, path = conformance
    feed = case.feed(fmt)
    with _open(backend, path) as s:
        good = {t.name: x for t, x in zip(s.inputs, feed)}
        first = s.inputs[0].name
        bad_feeds = {
            "unknown input": {**good, "no_such_input": feed[0]},
            "missing input": {k: v for k, v in good.items() if k != first},
            "has shape": {**good, first: np.concatenate([feed[0], feed[0]], axis=0)},
            "has dtype": {**good, first: feed[0].astype(np.float64)},
        }
        for expect, bad in bad_feeds.items():
            with pytest.raises(FeedError) as err:
                s.run(bad)
            msg = str(err.value)
            assert expect in msg and str(path) in msg and "\n" not in msg, msg


def test_placement_counts_every_op(conformance):
    case, backend, fmt, path = conformance
    info = read_file_info(fmt, path)
    with _open(backend, path) as s:
        p = s.placement
    assert p.backend == backend and p.accelerator
    d = p.to_dict()
    json.dumps(d)
    if isinstance(p.op_counts, dict):
        if backend == "litert":  # every op of the file, each counted once: on a delegate or on CPU
            assert sum(p.op_counts.values()) == info.num_ops, p
        elif backend == "onnxruntime":
            assert p.op_counts == {"CPUExecutionProvider": info.num_ops}, p
    else:
        assert p.op_counts == "unknown"


def test_close_and_context_manager(conformance):
    case, backend, fmt, path = conformance
    feed = case.feed(fmt)
    with _open(backend, path) as s:
        pass
    with pytest.raises(UsageError, match="closed"):
        s.run({t.name: x for t, x in zip(s.inputs, feed)})
    s.close()  # idempotent


def test_bench_reports_the_session(conformance):
    case, backend, fmt, path = conformance
    feed = case.feed(fmt)
    with _open(backend, path) as s:
        r = edgekit.bench(s, warmup=1, runs=5, feed={t.name: x for t, x in zip(s.inputs, feed)})
    d = json.loads(json.dumps(r.to_dict()))
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "init_ms", "peak_rss_mb", "backend", "threads"):
        assert key in d, key
    assert d["backend"] == backend and d["threads"] == THREADS and d["runs"] == 5
    assert 0 < d["min_ms"] <= d["p50_ms"] <= d["p90_ms"] <= d["p99_ms"] <= d["max_ms"]
    assert d["peak_rss_mb"] > 10


def test_every_backend_is_accounted_for(backend_name):
    """Each registered backend that can run here opens at least one conformance case."""
    covered = {f for fmts in CASE_FORMATS.values() for f in fmts}
    assert covered & set(backend_formats()[backend_name]), f"no conformance case for backend {backend_name}"
