"""``--input-shape`` on an ONNX source whose input is declared with -1 or named dims:
those dims take the given size (the model's positive dims must be kept), the model is converted
and verified at that size, and the ONNX artifact declares it (named dims stay named: the axes the
author made dynamic). Without ``--input-shape`` a dynamic input is a one-line usage error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.errors import UsageError  # noqa: E402

W = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)


def conv_model(path: Path, dims: list | None, out_dims: list | None = None) -> Path:
    """Conv 3 -> 4 (3x3, padding 1) with the input declared as ``dims`` (None: no shape)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g", [x], [y],
                              [numpy_helper.from_array(W, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


DECLARED = {
    "minus-one-and-names": ([-1, 3, "h", "w"], [-1, 4, "h", "w"], [1, 3, "h", "w"]),
    "all-minus-one": ([-1, -1, -1, -1], None, [1, 3, 8, 8]),
    "named": (["batch", 3, "height", "width"], ["batch", 4, "height", "width"], ["batch", 3, "height", "width"]),
}


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.numeric
@pytest.mark.parametrize("case", list(DECLARED))
def test_input_shape_fixes_dynamic_dims_and_the_model_verifies(case, tmp_path, converted):
    dims, out_dims, written = DECLARED[case]
    src = conv_model(tmp_path / f"{case}.onnx", dims, out_dims)
    result = converted(src, formats="onnx", input_shapes=[[1, 3, 8, 8]])
    assert result.ok, [a.to_dict() for a in result.artifacts]  # verified against onnxruntime on the source
    artifact = onnx.load(next(result.bundle.glob("*.onnx")))
    assert _dims(artifact.graph.input[0]) == written
    if all(isinstance(d, int) for d in written):
        assert _dims(artifact.graph.output[0]) == [1, 4, 8, 8]


@pytest.mark.slow
@pytest.mark.numeric
def test_cli_input_shape_on_minus_one_dims_to_tflite(tmp_path):
    """The refused case, on the command line: [-1, 3, '?', '?'] with --input-shape, to TFLite
    (through the importer) and ONNX, both verified."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    src = conv_model(tmp_path / "m.onnx", [-1, 3, "h", "w"])
    r = CliRunner().invoke(app, ["convert", str(src), "--input-shape", "1x3x8x8", "--to", "onnx,tflite",
                                 "--out", str(tmp_path / "b"), "--bench-runs", "1", "-q"])
    assert r.exit_code == 0, r.stderr + r.stdout
    assert "passed" in r.stdout


@pytest.mark.parametrize("dims,given,words", [
    ([-1, 3, "h", "w"], [1, 4, 8, 8], "does not fit input 'x' of shape [-1, 3, 'h', 'w']"),
    ([1, 3, "h", "w"], [2, 3, 8, 8], "does not fit input 'x' of shape [1, 3, 'h', 'w']"),
    ([-1, 3, "h", "w"], [1, 3, 8], "does not fit input 'x'"),
])
def test_input_shape_must_keep_the_fixed_dims(tmp_path, dims, given, words):
    from edgekit.converters.capture import capture

    src = conv_model(tmp_path / "m.onnx", dims)
    with pytest.raises(UsageError) as e:
        capture(str(src), input_shapes=[given])
    msg = str(e.value)
    assert words in msg and "\n" not in msg and e.value.exit_code == 2
    assert "positive" in msg  # says which dims may be set


@pytest.mark.parametrize("dims,words", [
    ([-1, 3, "h", "w"], "has a dynamic shape [-1, 3, 'h', 'w']"),
    (None, "declares no shape"),
])
def test_dynamic_input_without_input_shape_is_a_usage_error(tmp_path, dims, words):
    from edgekit.converters.capture import capture

    src = conv_model(tmp_path / "m.onnx", dims)
    with pytest.raises(UsageError) as e:
        capture(str(src))
    msg = str(e.value)
    assert words in msg and "--input-shape" in msg and "\n" not in msg


def test_importer_takes_given_sizes_for_minus_one_dims(tmp_path):
    """The ONNX importer (the TFLite/CoreML path) fills -1 dims from ``input_shapes`` and still
    refuses a given size that contradicts a fixed dim."""
    from edgekit.converters.onnx_import import builder

    vi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "h", 0])
    assert builder._static_input_shape(vi, (1, 3, 8, 8), "m.onnx") == (1, 3, 8, 8)
    with pytest.raises(UsageError, match="fixes it to 3"):
        builder._static_input_shape(vi, (1, 4, 8, 8), "m.onnx")
