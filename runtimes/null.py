"""The null backend: a reference Session for testing orchestration without a runtime or hardware.

It "runs" a model described by a ``*.null.json`` file, or wraps a Python callable, and records
every feed it received (``session.feeds``), so tests of bundles, layout translation, bench
and apps can check exactly what reached the model.

A ``.null.json`` file::

    {"edgekit_null": 1,
     "inputs":  [{"name": "x", "shape": [1, 8, 8, 3], "dtype": "float32", "layout": "NHWC"}],
     "outputs": [{"name": "y", "shape": [1, 8, 8, 3], "dtype": "float32", "layout": "NHWC"}],
     "op": "identity",          # identity: output i = input i (cast to the output dtype)
                                # zeros: outputs are zeros; affine: output i = input i * scale + bias
     "scale": 2.0, "bias": 0.5, # for affine
     "latency_ms": 0}           # busy-wait this long per run (for bench tests)

Example::

    >>> s = session_from_callable(lambda feed: {"y": feed["x"] * 2},
    ...                           [TensorSpec("x", (2,), "float32")], [TensorSpec("y", (2,), "float32")])
    >>> s(np.ones(2, np.float32)).tolist()
    [2.0, 2.0]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgekit.errors import InvalidModelFile, UsageError
from edgekit.runtimes.base import Placement, Session, TensorSpec

__all__ = ["FORMATS", "available", "open_session", "NullSession", "session_from_callable", "write_null_model"]

FORMATS = ("null",)
OPS = ("identity", "zeros", "affine")

Fn = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


def available() -> str | None:
    return None


class NullSession(Session):
    """A Session that computes with a Python function; ``feeds`` keeps what each run received."""

    backend = "null"

    def __init__(self, fn: Fn, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *,
                 path: str | Path = "<callable>", threads: int = 1, latency_ms: float = 0.0,
                 keep_feeds: int = 16):
        self.path, self.threads = Path(path), threads
        self.inputs, self.outputs = list(inputs), list(outputs)
        self._fn, self._latency_s, self._keep = fn, latency_ms / 1e3, keep_feeds
        self.feeds: list[dict[str, np.ndarray]] = []
        self.runs = 0
        self.placement = Placement("null", "python", {"python": 1}, ["reference backend: no runtime, no hardware"])

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        self.runs += 1
        if self._keep:
            self.feeds.append({k: v.copy() for k, v in feed.items()})
            del self.feeds[:-self._keep]
        out = self._fn(feed)
        result = {}
        for spec in self.outputs:
            if spec.name not in out:
                raise UsageError(f"the null model's function returned no output '{spec.name}'", where=self.path)
            result[spec.name] = np.asarray(out[spec.name])
        while time.perf_counter() - t0 < self._latency_s:
            pass
        return result

    @property
    def last_feed(self) -> dict[str, np.ndarray] | None:
        return self.feeds[-1] if self.feeds else None


def session_from_callable(fn: Fn, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], **kwargs: Any) -> NullSession:
    """Wrap ``fn(feed) -> {output name: array}`` as a Session (validation, bench, bundles all apply)."""
    return NullSession(fn, inputs, outputs, **kwargs)


def open_session(path: Path, threads: int, accelerator: str = "auto", **options: Any) -> NullSession:
    if options:
        raise UsageError(f"unknown option(s) for the null backend: {', '.join(sorted(options))}")
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidModelFile(path, f"unreadable null model ({e})") from None
    if not isinstance(d, dict) or d.get("edgekit_null") != 1:
        raise InvalidModelFile(path, "not a null model (no \"edgekit_null\": 1)")
    try:
        inputs = [TensorSpec.from_dict(t) for t in d["inputs"]]
        outputs = [TensorSpec.from_dict(t) for t in d["outputs"]]
        op = d.get("op", "identity")
        scale, bias = float(d.get("scale", 1.0)), float(d.get("bias", 0.0))
        latency = float(d.get("latency_ms", 0.0))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidModelFile(path, f"malformed null model ({type(e).__name__}: {e})") from None
    if op not in OPS:
        raise InvalidModelFile(path, f"unknown null op '{op}'", hint=f"use one of {', '.join(OPS)}")
    if op in ("identity", "affine") and len(inputs) != len(outputs):
        raise InvalidModelFile(path, f"op '{op}' maps input i to output i; it needs as many outputs as inputs")

    def fn(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for i, spec in enumerate(outputs):
            if op == "zeros":
                shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape)
                out[spec.name] = np.zeros(shape, spec.dtype)
                continue
            x = feed[inputs[i].name]
            y = x * scale + bias if op == "affine" else x
            out[spec.name] = np.asarray(y).astype(spec.dtype, copy=False)
        return out

    return NullSession(fn, inputs, outputs, path=path, threads=threads, latency_ms=latency)


def write_null_model(path: str | Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                     op: str = "identity", **params: Any) -> Path:
    """Write a ``.null.json`` model (for tests and examples); returns its path."""
    path = Path(path)
    if not path.name.endswith(".null.json"):
        raise UsageError("a null model's file name must end in .null.json", where=path)
    d = {"edgekit_null": 1, "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
         "op": op, **params}
    path.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
    return path
