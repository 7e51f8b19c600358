"""Shared fixtures: conversions cached for the whole session (each costs seconds).

``converted(source, **kwargs)`` runs :func:`edgekit.convert` once per distinct call and
returns its :class:`~edgekit.converters.api.ConvertResult`; the bundles live in a session
temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

HERE = Path(__file__).parent
USER_MODELS = HERE / "user_models.py"


@pytest.fixture(scope="session")
def user() -> Callable[[str], str]:
    """``user("two_stage_sr")`` → the source string of that model in ``user_models.py``."""
    return lambda name: f"{USER_MODELS}:{name}"


@pytest.fixture(scope="session")
def bundles_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def converted(bundles_dir) -> Callable[..., Any]:
    from edgekit.converters.api import convert

    cache: dict[str, Any] = {}

    def run(source: Any, **kwargs: Any) -> Any:
        key = json.dumps([str(source), {k: str(v) for k, v in sorted(kwargs.items())}])
        if key not in cache:
            out = bundles_dir / f"b{len(cache)}"
            kwargs.setdefault("bench_runs", 2)
            cache[key] = convert(source, out=out, **kwargs)
        return cache[key]

    return run
