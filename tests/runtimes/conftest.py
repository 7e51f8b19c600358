"""Tiny hand-built models (no torch needed) for the runtime tests, written once per session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_builders():
    """tests/conformance/model_builders.py under a name no other test folder uses."""
    name = "edgekit_tests_model_builders"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "conformance" / "model_builders.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def builders():
    return _load_builders()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory, builders) -> dict[str, Path]:
    """name -> path of each hand-built model (see model_builders.BUILDERS), plus an ORT-format copy."""
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("tiny_models")
    files = {name: build(d) for name, build in builders.BUILDERS.items()}
    files["float16.ort"] = builders.onnx_to_ort(files["float16.onnx"], d / "float16.ort")
    return files
