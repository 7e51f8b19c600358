"""Fixtures of the data-safety tests: a tiny source model, a finished bundle, and a way to run
the ``edgekit`` command in a child process (real exit codes, signals and stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def run_cli(*args: str | os.PathLike, cwd: str | os.PathLike | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``edgekit ARGS`` in a child process; returns the completed process (text output)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("EDGEKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(r: subprocess.CompletedProcess, code: int) -> str:
    """Assert the command failed with ``code`` and one ``edgekit: error:`` line, no traceback;
    return that line."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == code, f"exit {r.returncode} (want {code}); stderr: {r.stderr[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [ln for ln in lines if ln.startswith("edgekit: error:")]
    assert len(errors) == 1, f"want one error line, got: {lines}"
    return errors[0]


def copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def write_manifest(folder: Path, data: dict) -> None:
    (folder / "edgekit.json").write_text(json.dumps(data))
