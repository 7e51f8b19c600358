"""The bundle that ships inside the package (``apps/camera/default_bundle``): made from the
shipped quicksrnet_small_x2 weights, computing what they compute, small, and runnable without
torch; and zoo names converted on first use into the user cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from numeric import THREADS, assert_matches

from demo_standins import demo_env
from edgekit.apps.camera.models import DEFAULT_BUNDLE_DIR, DEFAULT_SR_INPUT, default_bundle_ready

needs_bundle = pytest.mark.skipif(not default_bundle_ready(),
                                  reason="default bundle not generated (python -m edgekit.apps.camera.make_default_bundle)")
NO_TORCH = "import sys; sys.modules['torch'] = None; from edgekit.cli import main; main()"


@needs_bundle
def test_default_bundle_is_made_from_the_shipped_weights():
    pytest.importorskip("torch")
    from edgekit.apps.camera.make_default_bundle import check

    problems = check()
    assert problems == [], "; ".join(problems) + " — regenerate: python -m edgekit.apps.camera.make_default_bundle"


@needs_bundle
@pytest.mark.numeric
@pytest.mark.parametrize("artifact", ["model.tflite", "model.onnx"])
def test_default_bundle_computes_what_the_weights_compute(artifact):
    pytest.importorskip("torch")
    import edgekit
    from edgekit import zoo
    from edgekit.assets import load_photo

    _, _, h, w = DEFAULT_SR_INPUT
    photo = load_photo("chelsea")[:h, :w]  # a real photo, not noise
    x = np.ascontiguousarray(photo.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    from edgekit.apps.camera.make_default_bundle import shipped_weights

    weights, _ = shipped_weights()
    model = zoo.create("quicksrnet_small_x2", weights=weights)
    with edgekit.load(DEFAULT_BUNDLE_DIR / artifact, threads=THREADS) as s:
        got = s(x.transpose(0, 2, 3, 1).copy() if s.inputs[0].shape[-1] == 3 else x)
    got = got.transpose(0, 3, 1, 2) if got.shape[-1] == 3 else got
    assert got.shape == (1, 3, 2 * h, 2 * w)
    assert_matches(got, model, x, what=f"{artifact} vs the shipped weights in PyTorch")


@needs_bundle
def test_default_bundle_is_small():
    total = sum(p.stat().st_size for p in DEFAULT_BUNDLE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < 1_000_000, f"{total / 1e3:.0f} KB"


@needs_bundle
def test_demo_runs_without_torch(tmp_path):
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "demo", "--headless", "--frames", "5", "--no-record", "--json"],
                       capture_output=True, text=True, env=demo_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 5


def test_zoo_names_need_torch_and_say_so(tmp_path):
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "demo", "--model", "espcn_x2", "--headless", "--no-record"],
                       capture_output=True, text=True, env=demo_env(XDG_CACHE_HOME=str(tmp_path)), timeout=120)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "torch" in lines[0] and "pip install" in lines[0], r.stderr


@pytest.mark.slow
def test_zoo_name_is_converted_once_and_cached(tmp_path):
    pytest.importorskip("torch")
    env = demo_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    cmd = [sys.executable, "-c", "from edgekit.cli import main; main()", "demo", "upscale", "--model", "espcn_x2",
           "--headless", "--frames", "3", "--no-record", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "converting zoo model espcn_x2" in first.stderr
    bundles = list((tmp_path / "cache" / "edgekit" / "demo").iterdir())
    assert len(bundles) == 1 and (bundles[0] / "edgekit.json").is_file()
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert second.returncode == 0 and "converting" not in second.stderr
    assert json.loads(second.stdout)["frames"] == 3 and json.loads(second.stdout)["output_size"] == [640, 480]
