"""Helpers of the conformance suite: the case type, the bare-runtime runner, numeric checks.

Kept out of ``conftest.py`` so that test modules can import them by a name no other test
folder uses (``conformance_support``).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

def _load_builders():
    """tests/conformance/model_builders.py under a name no other test folder uses."""
    name = "edgekit_tests_model_builders"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("model_builders.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


builders = _load_builders()

THREADS = 2


@dataclass
class Case:
    """``files``: format -> model path; ``feed``: input arrays in model order; ``expected``:
    output arrays in model order; ``atol``: tolerance against ``expected``; ``layout``: what
    the case covers (for reading the test ids)."""

    name: str
    files: dict[str, Path]
    feed: list[np.ndarray]
    expected: list[np.ndarray]
    atol: float
    layout: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def to_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


def case_feed(case: Case, fmt: str) -> list[np.ndarray]:
    return case.notes.get("feeds", {}).get(fmt, case.feed)


def case_expected(case: Case, fmt: str) -> tuple[list[np.ndarray], float]:
    return case.notes.get("expected", {}).get(fmt, case.expected), case.notes.get("atol", {}).get(fmt, case.atol)


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    """Equal shapes and dtypes' kinds, and |actual - expected| <= atol everywhere; the failure
    names the worst element, its index and both values."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    assert err.size == 0 or err[worst] <= atol, (
        f"{what}: worst error {err[worst]:.3g} > {atol:g} at index {tuple(int(i) for i in worst)} "
        f"(got {actual[worst]!r}, expected {expected[worst]!r})")


def raw_run(fmt: str, path: Path, feed: list[np.ndarray], threads: int = THREADS) -> list[np.ndarray]:
    """The same model on the bare runtime (no edgekit): what edgekit must reproduce bit for bit."""
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
        for d, x in zip(it.get_input_details(), feed):
            it.set_tensor(d["index"], x)
        it.invoke()
        return [it.get_tensor(d["index"]) for d in it.get_output_details()]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), feed)})


def backend_formats() -> dict[str, tuple[str, ...]]:
    """Backend -> the formats it opens, from the registry: registering a backend gets it tested."""
    from edgekit.runtimes.registry import BACKENDS, backend_module

    return {name: tuple(backend_module(name).FORMATS) for name in BACKENDS if name != "null"}


# Which formats each case is built in (checked against the built files by the fixture).
CASE_FORMATS = {
    "convnet_nchw": ("onnx", "tflite", "ort"),
    "conv_nhwc": ("onnx", "tflite"),
    "multi_io": ("onnx", "tflite"),
    "int8_input": ("onnx", "tflite"),
    "float16_input": ("onnx", "tflite"),
    "add_mul_constant": ("tflite",),
}


def skip_unavailable(backend: str) -> None:
    from edgekit.runtimes.registry import backend_module

    why_not = backend_module(backend).available()
    if why_not:
        pytest.skip(f"{backend} cannot run here: {why_not}")


