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
from numeric import THREADS, Bound


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

# THREADS (from numeric): ``EDGEKIT_THREADS`` when set (CI's second run sets 1), else the
# physical cores; every session and bare runtime of the suite uses it.


@dataclass
class Case:
    """``files``: format -> model path; ``feed``: input arrays in model order; ``expected``:
    output arrays in model order; ``bounds``: one :class:`~edgekit.numerics.Bound` per output
    against ``expected``, derived from how it was computed; ``layout``: what the case covers
    (for reading the test ids). ``notes`` may override ``feeds``, ``expected`` and ``bounds``
    per format."""

    name: str
    files: dict[str, Path]
    feed: list[np.ndarray]
    expected: list[np.ndarray]
    bounds: list[Bound]
    layout: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def to_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


def case_feed(case: Case, fmt: str) -> list[np.ndarray]:
    return case.notes.get("feeds", {}).get(fmt, case.feed)


def case_expected(case: Case, fmt: str) -> tuple[list[np.ndarray], list[Bound]]:
    return case.notes.get("expected", {}).get(fmt, case.expected), case.notes.get("bounds", {}).get(fmt, case.bounds)


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


