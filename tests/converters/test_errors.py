"""Every error path of ``edgekit convert``: one line naming the cause and where, the right
exit code, and nothing half-written left behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from edgekit.converters.api import convert  # noqa: E402
from edgekit.errors import ConversionError, EdgekitError, ModelFileNotFound, UsageError, ZooError  # noqa: E402

HERE = Path(__file__).parent
USER = HERE / "user_models.py"


def _no_leftovers(out: Path) -> None:
    assert not out.exists(), f"{out} was written"
    assert not list(out.parent.glob(f".{out.name}.*")), "a staging folder was left behind"


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and len(text) < 500, text
    return text


@pytest.mark.parametrize("callable_name, cls, words", [
    ("does_not_exist", ConversionError, ["'does_not_exist' does not exist", "user_models.py"]),
    ("se_clasifier", ConversionError, ["did you mean se_classifier"]),
    ("returns_none", ConversionError, ["returned None, not an nn.Module"]),
    ("returns_number", ConversionError, ["returned int, not an nn.Module"]),
    ("needs_args", ConversionError, ["needs argument(s) width"]),
    ("raises", ConversionError, ["raised TypeError", "user_models.py:"]),
    ("se_classifier", ConversionError, ["without example inputs", "--input-shape"]),
    ("SqueezeExcite", ConversionError, ["needs argument(s) channels"]),
])
def test_callable_errors(tmp_path, callable_name, cls, words):
    out = tmp_path / "out"
    with pytest.raises(cls) as info:
        convert(f"{USER}:{callable_name}", formats="onnx", out=out)
    text = _one_line(info.value)
    assert text.startswith(str(USER)) or "[capture]" in text, text
    for w in words:
        assert w in text, text
    _no_leftovers(out)


def test_untraceable_model_names_cause_and_line(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        convert(f"{USER}:data_dependent", formats="onnx,tflite", out=out)
    text = _one_line(info.value)
    assert "[capture] torch.export cannot trace the model: data-dependent control flow" in text
    line = next(i for i, ln in enumerate(USER.read_text().splitlines(), 1) if "x.mean() > 0.5" in ln)
    assert f"user_models.py:{line} (forward)" in text
    assert info.value.exit_code == 1
    _no_leftovers(out)


def test_import_error_in_file_names_the_line(tmp_path):
    bad = tmp_path / "bad_model.py"
    bad.write_text("import torch\n\nraise RuntimeError('broken on purpose')\n\ndef make():\n    return None\n")
    with pytest.raises(ConversionError) as info:
        convert(f"{bad}:make", formats="onnx", out=tmp_path / "out")
    text = _one_line(info.value)
    assert "bad_model.py:3" in text and "broken on purpose" in text


def test_syntax_error_in_file(tmp_path):
    bad = tmp_path / "syntax.py"
    bad.write_text("def make(:\n    pass\n")
    with pytest.raises(ConversionError, match=r"syntax\.py:1: \[capture\] syntax error"):
        convert(f"{bad}:make", formats="onnx", out=tmp_path / "out")


def test_user_file_does_not_stay_in_sys_modules(tmp_path):
    (tmp_path / "helper_mod_xyz.py").write_text("import torch\nSIZE = 4\n")
    src = tmp_path / "with_helper.py"
    src.write_text("import torch, helper_mod_xyz\n\ndef make():\n"
                   "    return torch.nn.Conv2d(3, helper_mod_xyz.SIZE, 1), (torch.rand(1, 3, 4, 4),)\n")
    before = set(sys.modules)
    from edgekit.converters.capture import capture

    cap = capture(f"{src}:make")
    assert cap.output_shapes == [(1, 4, 4, 4)]
    added = set(sys.modules) - before
    assert not any("with_helper" in n or "helper_mod_xyz" in n for n in added), added
    assert str(tmp_path) not in sys.path


def test_missing_file_and_unknown_zoo_model(tmp_path):
    with pytest.raises(ModelFileNotFound):
        convert(f"{tmp_path}/nope.py:make", formats="onnx", out=tmp_path / "a")
    with pytest.raises(ModelFileNotFound):
        convert(tmp_path / "nope.onnx", formats="onnx", out=tmp_path / "b")
    with pytest.raises(ZooError, match="did you mean mobilenet_v2"):
        convert("mobilenet_v22", formats="onnx", out=tmp_path / "c")
    _no_leftovers(tmp_path / "c")


@pytest.mark.parametrize("kwargs, words", [
    ({"formats": "onnx,jpeg"}, "unknown format 'jpeg'"),
    ({"formats": ""}, "no output format"),
    ({"precision": "int3"}, "unknown precision"),
    ({"input_layout": "NHWC"}, "needs --fold-preprocess"),
    ({"target": "no-such-npu"}, "no-such-npu"),
    ({"passes": ["fold_bn_typo"]}, "unknown pass(es) fold_bn_typo"),
    ({"skip_passes": ["fold_batchnorm"]}, "--skip-pass fold_batchnorm given without"),
    ({"pretrained": True}, "--pretrained only applies to zoo models"),
    ({"input_shapes": [(1, 3, 8, 8), (1, 3, 8, 8)]}, "got 2 --input-shape value(s), the model takes 1"),
    ({"fold_preprocess": True}, "needs the input normalisation"),
])
def test_usage_errors(tmp_path, kwargs, words):
    out = tmp_path / "out"
    with pytest.raises(UsageError) as info:
        convert(f"{USER}:tiny_conv", out=out, **{"formats": "onnx", **kwargs})
    assert words in _one_line(info.value)
    assert info.value.exit_code == 2
    _no_leftovers(out)


def test_wrong_input_shape_names_the_model(tmp_path):
    with pytest.raises(ConversionError) as info:
        convert(f"{USER}:tiny_conv", formats="onnx", out=tmp_path / "o", input_shapes=[(1, 5, 8, 8)])
    text = _one_line(info.value)
    assert "[capture] running the model on inputs of shape [1, 5, 8, 8] raised RuntimeError" in text
    assert "--input-shape" in text


def test_non_empty_out_is_refused_and_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        convert(f"{USER}:tiny_conv", formats="onnx", out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_and_failure_keeps_old(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    # --force never replaces a folder holding a file edgekit did not write
    with pytest.raises(UsageError, match="keep.txt"):
        convert(f"{USER}:tiny_conv", formats="onnx", out=out, force=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    r = convert(f"{USER}:tiny_conv", formats="onnx", out=out, force=True, bench_runs=0)
    assert r.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["edgekit.json", "model.onnx"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # A failing conversion with --force leaves the old bundle exactly as it was.
    with pytest.raises(EdgekitError):
        convert(f"{USER}:returns_none", formats="onnx", out=out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_all_formats_failing_writes_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        convert(f"{USER}:upsample3d", formats="coreml", out=out)
    text = _one_line(info.value)
    assert text.startswith("[export] no format could be exported") and "upsample_nearest3d" in text
    assert text.count("[export]") == 1, text  # the stage is named once
    _no_leftovers(out)
