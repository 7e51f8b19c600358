"""The null backend: a described or Python-function model behind the full Session API."""

from __future__ import annotations

import numpy as np
import pytest

import edgekit
from edgekit.errors import FeedError, InvalidModelFile, UsageError
from edgekit.runtimes.base import TensorSpec
from edgekit.runtimes.null import session_from_callable, write_null_model

X = TensorSpec("x", (2, 3), "float32", "NC")


def test_null_file_through_load(tmp_path):
    p = write_null_model(tmp_path / "m.null.json", [X], [TensorSpec("y", (2, 3), "float16")], op="affine",
                         scale=3.0, bias=1.0)
    with edgekit.load(p) as s:
        assert s.backend == "null" and s.inputs == [X] and s.placement.backend == "null"
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        y = s(x)
        assert y.dtype == np.float16
        np.testing.assert_array_equal(y, (x * 3 + 1).astype(np.float16))
        np.testing.assert_array_equal(s.last_feed["x"], x)
        with pytest.raises(FeedError, match="dtype float64"):
            s(x.astype(np.float64))
    z = write_null_model(tmp_path / "z.null.json", [X], [TensorSpec("y", (None, 4), "int8")], op="zeros")
    with edgekit.load(z) as s:
        assert s(np.ones((2, 3), np.float32)).tolist() == [[0, 0, 0, 0]]


def test_bad_null_files(tmp_path):
    p = tmp_path / "bad.null.json"
    for text, match in (("{", "unreadable"), ('{"x": 1}', "not a null model"),
                        ('{"edgekit_null": 1, "inputs": []}', "malformed"),
                        ('{"edgekit_null": 1, "inputs": [], "outputs": [], "op": "fft"}', "unknown null op")):
        p.write_text(text)
        with pytest.raises(InvalidModelFile, match=match):
            edgekit.load(p)
    with pytest.raises(UsageError, match="must end in .null.json"):
        write_null_model(tmp_path / "m.json", [X], [X])


def test_callable_session_keeps_recent_feeds():
    s = session_from_callable(lambda f: {"y": f["x"].sum(axis=1)}, [X], [TensorSpec("y", (2,), "float32")], keep_feeds=2)
    for i in range(5):
        s(np.full((2, 3), i, np.float32))
    assert s.runs == 5 and [int(f["x"][0, 0]) for f in s.feeds] == [3, 4]
    bad = session_from_callable(lambda f: {}, [X], [TensorSpec("y", (2,), "float32")])
    with pytest.raises(UsageError, match="returned no output 'y'"):
        bad(np.zeros((2, 3), np.float32))
