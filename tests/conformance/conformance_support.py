"""Helpers of the conformance suite: the committed cases, the bare-runtime runner, the backends.

The cases are files under ``cases/`` written by ``make_cases.py`` (torch, litert-torch, onnx and
coremltools are needed to regenerate them, not to read them): reading one needs NumPy and JSON
only, running one needs only the runtime that opens its format.

Kept out of ``conftest.py`` so that test modules can import them by a name no other test
folder uses (``conformance_support``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numeric import THREADS, Bound

# THREADS (from numeric): ``EDGEKIT_THREADS`` when set (CI's second run sets 1), else the
# physical cores; every session and bare runtime of the suite uses it.

CASES_DIR = Path(__file__).resolve().parent / "cases"
GENERATED_BY = "tests/conformance/make_cases.py"


@dataclass
class Case:
    """One committed case: ``meta`` is its ``case.json``; per format, ``path``, ``feed`` (input
    arrays in model order), ``expected`` (output arrays in model order), ``bounds`` (one
    :class:`~edgekit.numerics.Bound` per output against ``expected``, derived when the case was
    generated) and ``spec`` (the tensors the file declares, read back by the reference tools)."""

    name: str
    folder: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def layout(self) -> str:
        return self.meta["layout"]

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.meta["formats"])

    @property
    def files(self) -> dict[str, Path]:
        """format -> model path."""
        return {fmt: self.path(fmt) for fmt in self.formats}

    def path(self, fmt: str) -> Path:
        return self.folder / self.meta["formats"][fmt]["model"]

    @cached_property
    def _inputs(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "inputs.npz", allow_pickle=False) as f:
            return dict(f)

    @cached_property
    def _expected(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "expected.npz", allow_pickle=False) as f:
            return dict(f)

    def feed(self, fmt: str) -> list[np.ndarray]:
        return [self._inputs[t["array"]] for t in self.meta["formats"][fmt]["inputs"]]

    def expected(self, fmt: str) -> list[np.ndarray]:
        return [self._expected[t["expected"]] for t in self.meta["formats"][fmt]["outputs"]]

    def bounds(self, fmt: str) -> list[Bound]:
        return [Bound(float(t["bound"]["atol"]), t["bound"]["how"]) for t in self.meta["formats"][fmt]["outputs"]]

    def spec(self, fmt: str) -> tuple[list[tuple], list[tuple]]:
        """(inputs, outputs) the file declares, as (name, shape, dtype) tuples."""
        entry = self.meta["formats"][fmt]
        one = lambda t: (t["name"], tuple(t["shape"]), t["dtype"])  # noqa: E731
        return [one(t) for t in entry["inputs"]], [one(t) for t in entry["outputs"]]


def load_case(folder: Path) -> Case:
    meta = json.loads((folder / "case.json").read_text(encoding="utf-8"))
    return Case(meta["case"], folder, meta)


def load_cases(root: Path = CASES_DIR) -> dict[str, Case]:
    """Every case folder under ``root`` (one with a ``case.json``), by name."""
    return {c.name: c for c in (load_case(p.parent) for p in sorted(root.glob("*/case.json")))}


def case_formats(root: Path = CASES_DIR) -> dict[str, tuple[str, ...]]:
    """case -> its formats, from the ``case.json`` files (read at collection time)."""
    return {name: c.formats for name, c in load_cases(root).items()}


# Which formats each committed case holds: parametrises the suite.
CASE_FORMATS = case_formats()


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
    if fmt == "coreml":  # macOS only; the compute units edgekit's default ("auto") picks
        import coremltools as ct

        m = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)
        desc = m.get_spec().description
        out = m.predict({f.name: x for f, x in zip(desc.input, feed)})
        return [np.asarray(out[f.name]) for f in desc.output]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), feed)})


@dataclass
class FileInfo:
    """What edgekit's own readers say a model file declares: (name, shape, dtype) per tensor."""

    inputs: list[tuple]
    outputs: list[tuple]
    num_ops: int


def read_file_info(fmt: str, path: Path) -> FileInfo:
    """``read_model`` for TFLite/ONNX/ORT, ``edgekit.inspect.read_coreml`` for an .mlpackage."""
    if fmt == "coreml":
        from edgekit.inspect import read_coreml

        info = read_coreml(path)
        one = lambda t: (t["name"], tuple(t["shape"]), t["dtype"])  # noqa: E731
        return FileInfo([one(t) for t in info["inputs"]], [one(t) for t in info["outputs"]], info["num_ops"])
    from edgekit.runtimes.modelfile import read_model

    info = read_model(path)
    return FileInfo([(t.name, t.shape, t.dtype) for t in info.inputs],
                    [(t.name, t.shape, t.dtype) for t in info.outputs], info.num_ops)


def backend_formats() -> dict[str, tuple[str, ...]]:
    """Backend -> the formats it opens, from the registry: registering a backend gets it tested."""
    from edgekit.runtimes.registry import BACKENDS, backend_module

    return {name: tuple(backend_module(name).FORMATS) for name in BACKENDS if name != "null"}


def skip_unavailable(backend: str) -> None:
    from edgekit.runtimes.registry import backend_module

    why_not = backend_module(backend).available()
    if why_not:
        pytest.skip(f"{backend} cannot run here: {why_not}")
