"""The committed cases are what ``make_cases.py`` builds today.

Re-runs the generator into a temporary folder (torch, litert-torch, onnx and coremltools needed)
and checks, case by case, that it writes the same formats, declares the same tensors, draws the
same inputs, and that the regenerated ONNX, ORT and TFLite models compute the committed expected
outputs on the committed inputs within the committed bounds. Model files are not compared byte
for byte: exporters embed their versions, and .mlpackage manifests fresh identifiers. A change
in the builders (a module, a seed, an exporter's behaviour) fails here: then regenerate with
``python tests/conformance/make_cases.py --force`` and review the diff of ``case.json``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from numeric import assert_close

from conformance_support import CASES_DIR, load_cases, raw_run

pytestmark = pytest.mark.numeric
SCRIPT = CASES_DIR.parent / "make_cases.py"


def test_the_script_refuses_to_overwrite(tmp_path):
    """Without --force an existing case folder is left alone; with it, only a generated one
    (holding case.json) is replaced. Both refusals come before anything is built."""
    (tmp_path / "multi_io").mkdir()
    (tmp_path / "multi_io" / "keep.txt").write_text("mine")
    for extra, says in (([], "pass --force"), (["--force"], "not a generated case folder")):
        r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), *extra, "multi_io"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and says in r.stderr, r.stderr
    assert (tmp_path / "multi_io" / "keep.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    for module in ("torch", "litert_torch", "onnx", "coremltools"):
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("regenerated") / "cases"
    r = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return load_cases(out)


@pytest.mark.slow
def test_same_cases_formats_tensors_and_inputs(regenerated):
    committed = load_cases()
    assert sorted(regenerated) == sorted(committed)
    for name, new in regenerated.items():
        old = committed[name]
        assert new.formats == old.formats, name
        for fmt in old.formats:
            assert new.spec(fmt) == old.spec(fmt), f"{name}/{fmt}: the regenerated file declares other tensors"
            for a, b in zip(new.feed(fmt), old.feed(fmt)):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b, err_msg=f"{name}/{fmt}: the inputs are seeded")


@pytest.mark.slow
def test_regenerated_models_compute_the_committed_outputs(regenerated):
    committed = load_cases()
    ran = 0
    for name, new in regenerated.items():
        old = committed[name]
        for fmt in old.formats:
            expected, bounds = old.expected(fmt), old.bounds(fmt)
            for e, y, b in zip(expected, new.expected(fmt), bounds):  # the reference itself (torch eager, NumPy)
                assert_close(y, e, b, f"{name}/{fmt}: regenerated reference vs committed")
            if fmt == "coreml":
                continue  # predicts on macOS only; its spec is compared above
            outs = raw_run(fmt, new.path(fmt), old.feed(fmt))
            assert len(outs) == len(expected)
            for y, e, b, t in zip(outs, expected, bounds, old.meta["formats"][fmt]["outputs"]):
                assert y.dtype == e.dtype and y.shape == e.shape, (name, fmt, t["name"])
                assert_close(y, e, b, f"{name}/{fmt}: regenerated model, output {t['name']} vs committed expected")
            ran += 1
    assert ran >= 12
