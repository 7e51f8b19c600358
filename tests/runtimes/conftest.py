"""Tiny hand-built models (no torch needed) for the runtime tests, written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import model_builders  # tests/ is on sys.path (pyproject: pythonpath = ["tests"])


@pytest.fixture(scope="session")
def builders():
    return model_builders


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of each hand-built model (see model_builders.BUILDERS), plus an ORT-format copy."""
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("tiny_models")
    files = {name: build(d) for name, build in model_builders.BUILDERS.items()}
    files["float16.ort"] = model_builders.onnx_to_ort(files["float16.onnx"], d / "float16.ort")
    return files
