"""The conformance suite needs the runtimes only: it passes with torch, litert-torch, onnx and
coremltools unimportable.

A subprocess runs ``pytest tests/conformance`` behind a meta-path finder that refuses those four
packages (``import torch`` raises ModuleNotFoundError, ``importlib.util.find_spec("torch")`` is
None: what a machine without them sees), and the test checks that every (case, backend, format)
combination this host can run passed — not skipped — and that the only skips are backends that
cannot run here, the one cross-check that needs the ``onnx`` package and the regeneration of the
cases (``test_cases_reproducible.py``, which needs the converters by design).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance_support import CASE_FORMATS, backend_formats

pytestmark = pytest.mark.slow

BLOCKED = ("torch", "litert_torch", "onnx", "coremltools")
ENV_FLAG = "EDGEKIT_TEST_BLOCKED_IMPORTS"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# Runs pytest in a process where BLOCKED cannot be imported; prints the names it refused.
WRAPPER = """
import importlib.abc, importlib.util, sys
BLOCKED = set(sys.argv[1].split(","))
refused = set()
already = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not already, f"imported before the blocker: {already}"

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            refused.add(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the conformance test)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
_find_spec = importlib.util.find_spec
def find_spec(name, package=None):
    if name.split(".")[0] in BLOCKED:
        refused.add(name)
        return None
    return _find_spec(name, package)
importlib.util.find_spec = find_spec

import pytest
rc = pytest.main(sys.argv[2:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("blocked imports refused:", ",".join(sorted(refused)) or "none")
print("blocked modules loaded:", ",".join(leaked) or "none")
sys.exit(rc if not leaked else 99)
"""


def _conformance_tests() -> list[str]:
    """The test functions of test_conformance.py that take a (case, backend, format)."""
    import test_conformance

    return [n for n, f in vars(test_conformance).items()
            if n.startswith("test_") and callable(f) and "conformance" in inspect.signature(f).parameters]


@pytest.mark.skipif(os.environ.get(ENV_FLAG) == "1", reason="already inside the blocked-imports run")
def test_suite_passes_without_the_converters(tmp_path):
    from edgekit.runtimes.registry import backend_module

    junit = tmp_path / "junit.xml"
    env = {**os.environ, ENV_FLAG: "1", "PYTHONDONTWRITEBYTECODE": "1"}
    args = [sys.executable, "-c", WRAPPER, ",".join(BLOCKED), str(HERE), "-q", "-p", "no:cacheprovider",
            "-W", "ignore", f"--junitxml={junit}", "-o", "junit_family=xunit2"]
    r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert "blocked modules loaded: none" in r.stdout, tail
    # pytest.importorskip("onnx") in the cross-check asks for it: the blocker was in the way
    assert "onnx" in r.stdout.split("blocked imports refused:")[1].splitlines()[0], tail

    results: dict[str, str] = {}
    skip_reasons: dict[str, str] = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        tid = f"{tc.get('classname')}::{tc.get('name')}"
        skipped = tc.find("skipped")
        bad = tc.find("failure") is not None or tc.find("error") is not None
        results[tid] = "failed" if bad else ("skipped" if skipped is not None else "passed")
        if skipped is not None:
            skip_reasons[tid] = skipped.get("message", "")
    assert not [t for t, v in results.items() if v == "failed"], tail

    # every (case, backend, format) this host can run: passed, through every conformance test
    runnable = {b: f for b, f in backend_formats().items() if backend_module(b).available() is None}
    combos = [f"{c}-{b}-{f}" for c, have in CASE_FORMATS.items() for b, fmts in runnable.items() for f in fmts
              if f in have]
    assert combos
    want = {f"test_conformance::{t}[{p}]" for t in _conformance_tests() for p in combos}
    passed = {t for t, v in results.items() if v == "passed"}
    missing = sorted(w for w in want if not any(p.endswith(w) for p in passed))
    assert not missing, f"{len(missing)} conformance tests did not pass without the converters: {missing[:5]}"

    # the only skips: backends that cannot run here, this test itself, the onnx-package cross-check
    # and the regeneration of the cases (which needs the converters by design)
    allowed = {"test_conformance": "cannot run here", "test_without_converters": "already inside the blocked-imports run",
               "test_modelfile_crosscheck::test_onnx_reader": "could not import 'onnx'",
               "test_cases_reproducible::test_same_cases": "could not import 'torch'",
               "test_cases_reproducible::test_regenerated": "could not import 'torch'"}
    odd = {t: why for t, why in skip_reasons.items()
           if not any(where in t and why_ in why for where, why_ in allowed.items())}
    assert not odd, odd
    print(f"without {', '.join(BLOCKED)}: {len(passed)} passed ({len(want)} case x backend x format tests), "
          f"{len(skip_reasons)} skipped")
