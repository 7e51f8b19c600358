"""Fixtures of the data-safety tests: a tiny source model, a finished bundle, and a way to run
the ``edgekit`` command in a child process (real exit codes, signals and stderr)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_SOURCE = """
import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval(), (torch.rand(1, 3, 8, 8),)
"""


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory) -> Path:
    """``net.py`` whose ``build()`` returns a conv+ReLU and its example input."""
    path = tmp_path_factory.mktemp("safety_src") / "net.py"
    path.write_text(TINY_SOURCE)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_source) -> Path:
    """A finished ONNX bundle of the tiny model (never modified: tests copy it)."""
    pytest.importorskip("torch")
    import edgekit

    out = tmp_path_factory.mktemp("safety_bundle") / "bundle"
    edgekit.convert(f"{tiny_source}:build", formats="onnx", out=out, bench_runs=0)
    return out
