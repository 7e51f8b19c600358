"""Fixtures of the conformance suite: the committed cases and their parametrisation.

A case is one model in every format it exists in, the inputs to feed it, and what it must
compute (PyTorch eager outputs, or a NumPy reference), with one bound per output: the folders
under ``cases/``, written by ``make_cases.py`` (see there for how each was built and its bound
derived). The suite runs every case on every backend in ``edgekit.runtimes.registry.BACKENDS``
that can open one of the case's formats; backends that cannot run on this host are skipped with
the reason they give. It needs the runtimes only: not torch, litert-torch, onnx or coremltools
(``test_without_converters.py`` proves it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance_support import CASE_FORMATS, Case, backend_formats, load_cases, skip_unavailable


@pytest.fixture(scope="session")
def conformance_cases() -> dict[str, Case]:
    """Every committed case, by name."""
    cases = load_cases()
    assert cases, "no conformance cases under tests/conformance/cases: run python tests/conformance/make_cases.py"
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``conformance``: every (case, backend, format) where the backend opens a format the case has;
    ``backend_name``: every registered backend."""
    formats = backend_formats()
    if "conformance" in metafunc.fixturenames:
        params = [(c, b, f) for c, have in CASE_FORMATS.items() for b, fmts in formats.items() for f in fmts if f in have]
        metafunc.parametrize("conformance", params, ids=["-".join(p) for p in params], indirect=True)
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", list(formats), indirect=True)


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    skip_unavailable(request.param)
    return request.param


@pytest.fixture
def conformance(request: pytest.FixtureRequest, conformance_cases: dict[str, Case]) -> tuple[Case, str, str, Path]:
    """(case, backend, format, model path) for one parametrised combination."""
    name, backend, fmt = request.param
    skip_unavailable(backend)
    case = conformance_cases[name]
    return case, backend, fmt, case.path(fmt)
