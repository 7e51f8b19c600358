"""Tiny model files for the CLI tests, built once per session from PyTorch.

- ``classifier``: conv 3→4 (3x3) → ReLU → global mean → linear 4→5, input ``[1, 3, 16, 16]``,
  as .onnx (with external data, as torch.onnx writes it), .tflite (litert-torch) and
  .mlpackage (coremltools ML program).
- ``sr``: conv 3→12 → pixel shuffle ×2 → sigmoid, ``[1, 3, 8, 8]`` → ``[1, 3, 16, 16]`` (.onnx).
  Also as .ort (onnxruntime's own format, written by onnxruntime).
- ``two_in``: ``(x + y, x * y)`` for two ``[1, 4]`` inputs named ``x`` and ``y`` (.onnx).
- ``bundle``: a folder with the classifier as model.onnx and model.tflite plus an
  ``edgekit.json`` (task classify, ImageNet-style mean/std, five labels).

The PyTorch modules are kept (``models.torch``) so tests compare CLI outputs with the source.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from quiet import quiet as _quiet

LABELS = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


@dataclass
class Models:
    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    torch: dict[str, object] = field(default_factory=dict)
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    mean: list[float] = field(default_factory=lambda: list(MEAN))
    std: list[float] = field(default_factory=lambda: list(STD))

    def __getitem__(self, key: str) -> Path:
        return self.files[key]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("cli_models")
    out = Models(root)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    class TinySR(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x):
            return torch.sigmoid(torch.nn.functional.pixel_shuffle(self.conv(x), 2))

    class TwoIn(torch.nn.Module):
        def forward(self, x, y):
            return x + y, x * y

    torch.manual_seed(0)
    clf, sr, two = Classifier().eval(), TinySR().eval(), TwoIn().eval()
    out.torch.update(classifier=clf, sr=sr, two_in=two)
    x = torch.rand(1, 3, 16, 16)
    with _quiet():
        torch.onnx.export(clf, (x,), str(root / "classifier.onnx"), dynamo=True,
                          input_names=["image"], output_names=["logits"])
        torch.onnx.export(sr, (torch.rand(1, 3, 8, 8),), str(root / "sr.onnx"), dynamo=True, external_data=False,
                          input_names=["lr"], output_names=["hr"])
        torch.onnx.export(two, (torch.rand(1, 4), torch.rand(1, 4)), str(root / "two_in.onnx"), dynamo=True,
                          external_data=False, input_names=["x", "y"], output_names=["sum", "prod"])
    out.files.update(classifier_onnx=root / "classifier.onnx", sr_onnx=root / "sr.onnx",
                     two_in_onnx=root / "two_in.onnx")

    # ORT format: onnxruntime writes it when asked to save its optimised model as "ORT".
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.save_model_format", "ORT")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(root / "sr.ort")
    ort.InferenceSession(str(root / "sr.onnx"), so, providers=["CPUExecutionProvider"])
    out.files["sr_ort"] = root / "sr.ort"

    try:
        import litert_torch

        with _quiet():
            litert_torch.convert(clf, (x,)).export(str(root / "classifier.tflite"))
        out.files["classifier_tflite"] = root / "classifier.tflite"
    except ImportError:
        pass

    try:
        import coremltools as ct

        with _quiet():
            traced = torch.jit.trace(clf, x)
            ml = ct.convert(traced, inputs=[ct.TensorType(name="image", shape=x.shape)], convert_to="mlprogram")
            ml.save(str(root / "classifier.mlpackage"))
        out.files["classifier_mlpackage"] = root / "classifier.mlpackage"
    except ImportError:
        pass

    out.files["bundle"] = _make_bundle(out)
    return out


def _make_bundle(models: Models) -> Path:
    from edgekit.bundle import Artifact, Manifest, write_manifest
    from edgekit.runtimes.base import TensorSpec

    folder = models.root / "bundle"
    folder.mkdir()
    inputs = [TensorSpec("image", (1, 3, 16, 16), "float32", "NCHW")]
    outputs = [TensorSpec("logits", (1, 5), "float32", "NC")]
    shutil.copy(models["classifier_onnx"], folder / "model.onnx")
    shutil.copy(models["classifier_onnx"].with_name("classifier.onnx.data"), folder / "classifier.onnx.data")
    artifacts = [Artifact("model.onnx", "onnx", inputs, outputs, target="generic",
                          verification={"status": "passed", "metrics": {"max_abs": 0.0}})]
    if "classifier_tflite" in models.files:
        shutil.copy(models["classifier_tflite"], folder / "model.tflite")
        artifacts.append(Artifact("model.tflite", "tflite", inputs, outputs, target="generic",
                                  verification={"status": "not-run"}))
    manifest = Manifest(
        name="tiny-classifier", task="classify", source={"kind": "module", "ref": "tests/cli/conftest.py:Classifier"},
        preprocess={"layout": "NCHW", "color_order": "RGB", "value_range": [0, 1], "mean": MEAN, "std": STD,
                    "input_size": [16, 16], "labels": LABELS},
        artifacts=artifacts, tools={"torch": "test"},
    )
    write_manifest(folder, manifest)
    return folder


@pytest.fixture(scope="session")
def image_file(tmp_path_factory) -> Path:
    """A 40x30 RGB PNG with a colour gradient (not square, so resizing is exercised)."""
    from edgekit.imageio import write_image

    h, w = 30, 40
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], -1).astype(np.uint8)
    return write_image(tmp_path_factory.mktemp("img") / "gradient.png", img)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli(runner, monkeypatch):
    """Invoke the edgekit app; returns click's Result (``.stdout``, ``.stderr``, ``.exit_code``)."""
    from edgekit.cli import app

    monkeypatch.delenv("EDGEKIT_DEBUG", raising=False)

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env)

    return invoke


def _one_line_error(result, code: int, *needles: str) -> str:
    """The CLI failed with ``code`` and said so in one stderr line naming ``needles``."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgekit: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def one_line_error():
    """``one_line_error(result, code, *needles)``: assert a one-line CLI error; returns the line."""
    return _one_line_error
