"""The TFLite-only target pipelines end to end on unseen user models (small, not slow): what each
pipeline leaves for its accelerator's lint, verified against the source.

- tflite-gpu and nnapi: lint-clean.
- edgetpu and ethos-u at fp32: the only error left is the float32 activations (both run int8
  models only), and on the Edge TPU the half-pixel bilinear resize, which no exact pass can
  change; with ``--precision int8`` the float finding is gone. HARD_SWISH is decomposed for the Edge TPU, which lacks it,
  and pixel shuffle becomes TRANSPOSE_CONV there (no DEPTH_TO_SPACE on the TPU).
"""

from __future__ import annotations

import collections

import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from edgekit.lint import lint  # noqa: E402
from edgekit.runtimes.modelfile import read_model  # noqa: E402

SE = ("se_classifier", [(1, 3, 40, 56)])
SR = ("two_stage_sr", None)


def _convert(converted, user, model, target):
    name, shapes = model
    kwargs = {"input_shapes": shapes} if shapes else {}
    r = converted(user(name), formats="tflite", target=target, bench_runs=0, **kwargs)
    (art,) = r.manifest.artifacts
    assert art.verification["status"] == "passed", art.verification
    path = r.bundle / "model.tflite"
    return path, collections.Counter(read_model(path).op_histogram), art


@pytest.mark.parametrize("target", ["tflite-gpu", "nnapi"])
@pytest.mark.parametrize("model", [SE, SR], ids=["se_classifier", "two_stage_sr"])
def test_delegate_targets_lint_clean(converted, user, model, target):
    path, ops, art = _convert(converted, user, model, target)
    report = lint(path, target)
    assert report.passed, [(f.op, f.rule, f.message) for f in report.errors]
    assert "TRANSPOSE" not in ops and "nhwc_boundary" in art.passes


@pytest.mark.parametrize("target", ["edgetpu", "ethos-u"])
@pytest.mark.parametrize("model", [SE, SR], ids=["se_classifier", "two_stage_sr"])
def test_int8_targets_leave_only_the_float_activations(converted, user, model, target):
    path, ops, art = _convert(converted, user, model, target)
    report = lint(path, target)
    errors = [(f.rule, f.op) for f in report.errors]
    if target == "edgetpu" and model is SR:
        # PyTorch's bilinear resize has half-pixel centers, which the TPU compiler refuses; no exact
        # pass removes them (they change the result), so lint names it with advice, not a pass
        (resize,) = [f for f in report.errors if f.op == "RESIZE_BILINEAR"]
        assert resize.rule == "op-constraint" and resize.fix_pass is None and "half-pixel" in resize.advice
        errors.remove(("op-constraint", "RESIZE_BILINEAR"))
    assert [e[0] for e in errors] == ["dtype"], [(f.op, f.rule, f.message) for f in report.findings]
    assert "float32" in report.errors[0].message
    assert "TRANSPOSE" not in ops
    if target == "edgetpu":
        assert "HARD_SWISH" not in ops and "DEPTH_TO_SPACE" not in ops, ops
        if model is SE:
            assert "hardswish_decompose" in art.passes
        else:
            assert ops["TRANSPOSE_CONV"] == 2 and "pixel_shuffle_to_transpose_conv" in art.passes


@pytest.mark.parametrize("target", ["edgetpu", "ethos-u"])
def test_int8_targets_with_int8(converted, user, target):
    """With --precision int8 the float32 finding is gone: the two-stage SR net (PReLU, two pixel
    shuffles, a bilinear skip) is clean for Ethos-U; the Edge TPU keeps only the half-pixel
    bilinear resize, which no exact pass changes."""
    r = converted(user("two_stage_sr"), formats="tflite", target=target, precision="int8", bench_runs=0)
    (art,) = r.manifest.artifacts
    assert art.verification["status"] == "passed", art.verification
    report = lint(r.bundle / "model.tflite", target)
    left = [(f.rule, f.op) for f in report.errors]
    assert left == ([("op-constraint", "RESIZE_BILINEAR")] if target == "edgetpu" else []), \
        [(f.op, f.rule, f.message) for f in report.findings]
    assert not report.warnings, [(f.op, f.rule, f.message) for f in report.warnings]
