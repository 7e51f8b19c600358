"""``edgekit.load`` and sessions: every user mistake is one EdgekitError line naming the file,
never a crash; backend options behave as documented."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
from numeric import THREADS

import edgekit
from edgekit.errors import BackendUnavailable, EdgekitError, FeedError, InvalidModelFile, ModelFileNotFound, UsageError
from edgekit.runtimes.host import THREADS_ENV, default_threads, physical_cores


def _one_line(err: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg
    return msg


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(1)
    files = {}
    for suffix, good in ((".tflite", tiny["add_mul.tflite"]), (".onnx", tiny["float16.onnx"]), (".ort", tiny["float16.ort"])):
        data = good.read_bytes()
        files[f"truncated{suffix}"] = data[: len(data) // 2]
        files[f"random{suffix}"] = rng.bytes(2048)
        files[f"empty{suffix}"] = b""
    for name, data in files.items():
        (d / name).write_bytes(data)
    with zipfile.ZipFile(d / "zip.onnx", "w") as z:
        z.writestr("model.onnx", tiny["float16.onnx"].read_bytes())
    return d


@pytest.mark.parametrize("name", ["truncated.tflite", "random.tflite", "empty.tflite", "truncated.onnx", "random.onnx",
                                  "empty.onnx", "zip.onnx", "truncated.ort", "random.ort", "empty.ort"])
def test_bad_model_files(bad_files, name):
    path = bad_files / name
    with pytest.raises(InvalidModelFile) as e:
        edgekit.load(path)
    _one_line(e, str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelFileNotFound) as e:
        edgekit.load(tmp_path / "missing.tflite")
    _one_line(e, "missing.tflite", "no such file")
    with pytest.raises(InvalidModelFile) as e:
        edgekit.load(tmp_path)
    _one_line(e, str(tmp_path), "neither an edgekit bundle")
    (tmp_path / "dir.tflite").mkdir()
    with pytest.raises(InvalidModelFile) as e:
        edgekit.load(tmp_path / "dir.tflite")
    _one_line(e, "dir.tflite", "folder")


def test_unknown_backend_accelerator_and_options(tiny):
    with pytest.raises(UsageError) as e:
        edgekit.load(tiny["add_mul.tflite"], backend="tensorflow")
    _one_line(e, "unknown backend 'tensorflow'", "litert")
    with pytest.raises(UsageError) as e:
        edgekit.load(tiny["add_mul.tflite"], backend="onnxruntime")
    _one_line(e, "cannot open tflite", "add_mul.tflite")
    with pytest.raises(UsageError) as e:
        edgekit.load(tiny["add_mul.tflite"], accelerator="warp-drive")
    _one_line(e, "unknown LiteRT accelerator 'warp-drive'")
    with pytest.raises(UsageError) as e:
        edgekit.load(tiny["float16.onnx"], accelerator="warp-drive")
    _one_line(e, "unknown onnxruntime accelerator")
    with pytest.raises(UsageError) as e:
        edgekit.load(tiny["float16.onnx"], fast=True)
    _one_line(e, "unknown option(s) for the onnxruntime backend: fast")
    for threads in (0, -1, 1.5):
        with pytest.raises(UsageError, match="threads"):
            edgekit.load(tiny["float16.onnx"], threads=threads)


# ai_edge_litert's Delegate.__del__ fails on a delegate that never loaded (its own bug; harmless).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unavailable_accelerators_say_why(tiny, tmp_path):
    with pytest.raises(BackendUnavailable) as e:
        edgekit.load(tiny["float16.onnx"], accelerator="cuda")
    _one_line(e, "CUDAExecutionProvider is not in this onnxruntime build", "float16.onnx")
    with pytest.raises(BackendUnavailable) as e:
        edgekit.load(tiny["add_mul.tflite"], accelerator="/nonexistent/libmy_delegate.so")
    _one_line(e, "cannot load the TFLite delegate '/nonexistent/libmy_delegate.so'")
    if sys.platform != "darwin":
        pkg = tmp_path / "m.mlpackage"
        pkg.mkdir()
        with pytest.raises(BackendUnavailable) as e:
            edgekit.load(pkg)
        _one_line(e, "only on macOS", "m.mlpackage")


def test_threads_default_to_physical_cores(tiny, monkeypatch):
    """Without ``threads``, a session takes ``EDGEKIT_THREADS`` when it is set, else the host's
    physical cores; both branches are checked here, whatever the calling environment sets."""
    with edgekit.load(tiny["add_mul.tflite"]) as s, edgekit.load(tiny["float16.onnx"]) as o:
        assert s.threads == o.threads == default_threads()  # the environment as CI runs it
    monkeypatch.delenv(THREADS_ENV, raising=False)
    with edgekit.load(tiny["add_mul.tflite"]) as s, edgekit.load(tiny["float16.onnx"]) as o:
        assert s.threads == o.threads == physical_cores()
    monkeypatch.setenv(THREADS_ENV, "3")  # any positive count: it need not match the host
    with edgekit.load(tiny["add_mul.tflite"]) as s, edgekit.load(tiny["float16.onnx"]) as o:
        assert s.threads == o.threads == 3
    with edgekit.load(tiny["add_mul.tflite"], threads=1) as s:  # an explicit count wins
        assert s.threads == 1


def test_litert_placement_and_strict(tiny):
    with edgekit.load(tiny["add_mul.tflite"], threads=1) as s:
        assert s.placement.accelerator == "XNNPACK" and s.placement.op_counts == {"XNNPACK": 2, "CPU": 0}
    with edgekit.load(tiny["add_mul.tflite"], threads=1, accelerator="none") as s:
        assert s.placement.op_counts == {"CPU": 2}
    # XNNPACK does not take a float16 DEQUANTIZE: it stays on the builtin kernels, and strict says so.
    with edgekit.load(tiny["float16_dequantize.tflite"], threads=1) as s:
        assert s.placement.op_counts == {"CPU": 1}
    with pytest.raises(BackendUnavailable) as e:
        edgekit.load(tiny["float16_dequantize.tflite"], strict=True)
    _one_line(e, "strict", "DEQUANTIZE×1", "float16_dequantize.tflite")


def test_onnxruntime_placement_detail_profiles_one_run(tiny, tmp_path):
    with edgekit.load(tiny["float16.onnx"], threads=1, placement_detail=True) as s:
        counts = s.placement.op_counts
        assert isinstance(counts, dict) and set(counts) == {"CPUExecutionProvider"} and counts["CPUExecutionProvider"] >= 1
        assert any("profiling" in n for n in s.placement.notes)
    with edgekit.load(tiny["float16.onnx"], threads=1, strict=True) as s:  # CPU EP: nothing to fall back from
        assert s.placement.accelerator == "CPUExecutionProvider"


def test_dynamic_dims(tiny):
    with edgekit.load(tiny["float16_dynamic.onnx"], threads=1) as s:
        assert s.inputs[0].shape == ("batch", 3, 4, 4)
        for batch in (1, 3, 2):
            x = np.ones((batch, 3, 4, 4), np.float16)
            assert s(x).shape == (batch, 3, 4, 4)
        with pytest.raises(FeedError, match="has shape"):
            s(np.ones((2, 3, 4, 5), np.float16))


@pytest.mark.numeric
def test_dynamic_dims_on_litert(tiny):
    """A dynamic batch: the interpreter is resized and re-allocated when the batch changes."""
    with edgekit.load(tiny["add_mul_dynamic.tflite"], threads=THREADS) as s:
        assert s.inputs[0].shape == (None, 2, 3, 4)
        c = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) / 10
        for batch in (1, 3, 3, 2):
            a = np.random.default_rng(batch).standard_normal((batch, 2, 3, 4), dtype=np.float32)
            out = s.run({"a": a, "b": a})
            # one float32 add / multiply per element: correctly rounded, so exact
            np.testing.assert_array_equal(out["sum"], a + a)
            np.testing.assert_array_equal(out["prod"], a * c)


@pytest.mark.numeric
def test_non_contiguous_feeds(tiny):
    a = np.random.default_rng(0).standard_normal((1, 4, 3, 2), dtype=np.float32).transpose(0, 3, 2, 1)
    assert not a.flags.c_contiguous
    with edgekit.load(tiny["add_mul.tflite"], threads=THREADS) as s:
        out = s.run({"a": a, "b": np.zeros_like(a)})
        np.testing.assert_array_equal(out["sum"], a)  # a + 0 is exactly a


def test_lists_are_accepted_as_arrays_only_with_the_right_dtype(tiny):
    with edgekit.load(tiny["add_mul.tflite"], threads=1) as s:
        with pytest.raises(FeedError, match="float64"):
            s.run({"a": np.zeros((1, 2, 3, 4)).tolist(), "b": np.zeros((1, 2, 3, 4), np.float32)})
        with pytest.raises(FeedError, match="feed must be a dict"):
            s.run([np.zeros((1, 2, 3, 4), np.float32)])


def test_corrupted_files_never_crash_the_process(tiny, tmp_path):
    """Random byte edits of valid models, loaded and run in a child process: each one either
    loads and runs or raises an EdgekitError — the child never dies of a signal."""
    files = [tiny[n] for n in ("add_mul.tflite", "int8_dequantize.tflite", "float16.onnx", "float16.ort")]
    code = f"""
import sys, numpy as np, edgekit
from pathlib import Path
from edgekit.errors import EdgekitError
from edgekit.runtimes.bench import random_feed
rng = np.random.default_rng(7)
counts = {{"rejected": 0, "ran": 0}}
for src in {[str(f) for f in files]!r}:
    data = Path(src).read_bytes()
    for i in range(60):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        p = Path({str(tmp_path)!r}) / ("fuzz" + Path(src).suffix)
        p.write_bytes(bytes(b))
        try:
            with edgekit.load(p, threads=1) as s:
                s.run(random_feed(s.inputs))
            counts["ran"] += 1
        except EdgekitError as e:
            assert "\\n" not in str(e)
            counts["rejected"] += 1
print(counts)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"child exited with {r.returncode}: {r.stderr[-2000:]}"
    counts = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307 - our own child's dict literal
    assert counts["rejected"] + counts["ran"] == 240 and counts["rejected"] > 120, counts


def test_every_error_is_an_edgekit_error(bad_files):
    for p in bad_files.iterdir():
        with pytest.raises(EdgekitError):
            edgekit.load(p)


def test_tflite_runtime_is_the_fallback(tiny, monkeypatch):
    """With ai-edge-litert absent and tflite-runtime present, the litert backend uses the latter
    (simulated: the same Interpreter class published under the tflite_runtime name)."""
    import types

    from ai_edge_litert import interpreter as real

    from edgekit.runtimes import litert

    fake = types.ModuleType("tflite_runtime")
    fake.interpreter = real
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # `import ai_edge_litert` now fails
    monkeypatch.setitem(sys.modules, "tflite_runtime", fake)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", real)
    assert litert.runtime_package() == "tflite-runtime" and litert.available() is None
    with edgekit.load(tiny["add_mul.tflite"], threads=1) as s:
        assert "runtime: tflite-runtime" in s.placement.notes
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    assert "pip install ai-edge-litert" in litert.available()
    with pytest.raises(BackendUnavailable, match="needs ai-edge-litert"):
        edgekit.load(tiny["add_mul.tflite"])
