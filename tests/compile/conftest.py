"""Fixtures for the Ethos-U tests: Vela (``ethos-u-vela``, in the ``dev`` extra) and small int8
bundles converted once per session.

- ``tiny_int8``: ``tiny_conv`` (conv 3->4, 3x3, + ReLU on 1x3x8x8) converted with
  ``--to tflite --precision int8 --target ethos-u``: a bundle with an int8 ``model.tflite``.
- ``tiny_fp32``: the same model at fp32 (what Vela cannot put on the NPU).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from quiet import quiet

USER_MODELS = Path(__file__).parents[1] / "converters" / "user_models.py"


@pytest.fixture(scope="session")
def vela() -> str:
    from edgekit.vela import vela_version

    version = vela_version()
    if version is None:
        pytest.skip("ethos-u-vela is not installed (pip install -e '.[ethos-u]')")
    return version


@pytest.fixture(scope="session")
def convert_cached(tmp_path_factory) -> Callable[..., Any]:
    pytest.importorskip("torch")
    from edgekit.converters.api import convert

    root = tmp_path_factory.mktemp("npu_bundles")
    cache: dict[str, Any] = {}

    def run(source: str, name: str, **kwargs: Any) -> Any:
        if name not in cache:
            kwargs.setdefault("bench_runs", 0)
            with quiet():
                cache[name] = convert(source, out=root / name, **kwargs)
        return cache[name]

    return run


@pytest.fixture(scope="session")
def tiny_int8(convert_cached) -> Path:
    result = convert_cached(f"{USER_MODELS}:tiny_conv", "tiny_int8", formats=("tflite",), precision="int8",
                            target="ethos-u")
    assert result.ok, result.to_dict()["artifacts"]
    return result.bundle


@pytest.fixture(scope="session")
def tiny_fp32(convert_cached) -> Path:
    result = convert_cached(f"{USER_MODELS}:tiny_conv", "tiny_fp32", formats=("tflite",))
    assert result.ok
    return result.bundle


@pytest.fixture
def bundle_copy(tmp_path) -> Callable[[Path], Path]:
    """A private copy of a session bundle (tests that write into it)."""
    def copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst

    return copy


@pytest.fixture
def cli(monkeypatch):
    from typer.testing import CliRunner

    from edgekit.cli import app

    monkeypatch.delenv("EDGEKIT_DEBUG", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])
