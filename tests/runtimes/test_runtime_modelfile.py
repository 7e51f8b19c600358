"""``read_model``: summaries of good files, one-line errors for every kind of bad one."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from edgekit.errors import InvalidModelFile, ModelFileNotFound
from edgekit.runtimes.modelfile import read_model


def _err(path, match: str) -> str:
    with pytest.raises(InvalidModelFile) as e:
        read_model(path)
    msg = str(e.value)
    assert match in msg, msg
    assert str(path) in msg and "\n" not in msg, msg
    return msg


# -- good files ----------------------------------------------------------------------------------------
def test_tflite_summary(tiny):
    info = read_model(tiny["add_mul.tflite"])
    assert info.format == "tflite" and info.size_bytes == tiny["add_mul.tflite"].stat().st_size
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [("a", (1, 2, 3, 4), "float32"), ("b", (1, 2, 3, 4), "float32")]
    assert [t.name for t in info.outputs] == ["sum", "prod"]
    assert info.op_histogram == {"ADD": 1, "MUL": 1} and info.num_ops == 2
    assert info.max_rank == 4 and info.tensor_ranks == {4: 5} and info.tensor_dtypes == {"float32": 5}
    assert info.extra["schema_version"] == 3 and info.extra["description"] == "edgekit test model"
    json.dumps(info.to_dict())


def test_tflite_quantization_of_inputs(tiny):
    info = read_model(tiny["int8_dequantize.tflite"])
    assert info.inputs[0].dtype == "int8"
    assert info.extra["quantization"]["x"] == {"scale": [0.25], "zero_point": [-3], "quantized_dimension": 0}


def test_onnx_summary_with_external_data(tiny):
    path = tiny["float16_external.onnx"]
    info = read_model(path)
    assert info.external_files == ["float16_weights.bin"]
    assert info.size_bytes == path.stat().st_size + (path.parent / "float16_weights.bin").stat().st_size
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [("x", (1, 3, 4, 4), "float16")]
    assert info.op_histogram == {"Mul": 1, "Add": 1}
    assert info.extra["opset_imports"] == {"ai.onnx": 17} and info.extra["parameters"] == 49


def test_onnx_symbolic_dims(tiny):
    info = read_model(tiny["float16_dynamic.onnx"])
    assert info.inputs[0].shape == ("batch", 3, 4, 4) and not info.inputs[0].is_static


def test_ort_format_summary(tiny):
    info = read_model(tiny["float16.ort"])
    assert info.format == "ort"
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [("x", (1, 3, 4, 4), "float16")]
    assert info.num_ops >= 1


# -- bad files: every one a one-line InvalidModelFile naming the file ----------------------------------
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelFileNotFound, match="no such file"):
        read_model(tmp_path / "nope.tflite")
    (tmp_path / "d.onnx").mkdir()
    _err(tmp_path / "d.onnx", "is a folder")


@pytest.mark.parametrize("suffix", [".tflite", ".onnx", ".ort"])
def test_empty_and_random_files(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    _err(empty, "empty file")
    rng = np.random.default_rng(0)
    for i in range(50):
        p = tmp_path / f"random{i}{suffix}"
        p.write_bytes(rng.bytes(int(rng.integers(1, 4096))))
        _err(p, "invalid")


def test_zip_json_and_misnamed_files(tmp_path, tiny):
    z = tmp_path / "archive.onnx"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("model.onnx", tiny["float16.onnx"].read_bytes())
    _err(z, "it is a zip archive")
    j = tmp_path / "model.tflite"
    j.write_text('{"not": "a model"}')
    _err(j, "it is a JSON file")
    misnamed = tmp_path / "really_tflite.onnx"
    misnamed.write_bytes(tiny["add_mul.tflite"].read_bytes())
    _err(misnamed, "named .onnx but it is a TFLite flatbuffer")
    unknown = tmp_path / "model.pt"
    unknown.write_bytes(b"x")
    _err(unknown, "unknown model format")


@pytest.mark.parametrize("name", ["add_mul.tflite", "int8_dequantize.tflite", "float16.onnx", "float16.ort"])
def test_every_truncation_is_rejected(tmp_path, tiny, name):
    data = tiny[name].read_bytes()
    cut = tmp_path / name
    accepted = []
    # Every cut in the last 512 bytes (what the flatbuffer builders write first), every 7th before.
    for n in sorted({*range(1, len(data), 7), *range(max(1, len(data) - 512), len(data))}):
        cut.write_bytes(data[:n])
        try:
            read_model(cut)
            accepted.append(n)
        except InvalidModelFile as e:
            assert "\n" not in str(e)
    # Only a cut inside trailing padding may still read as a whole model.
    assert all(n >= len(data) - 8 for n in accepted), f"truncations accepted: {accepted}"


def test_tflite_with_indices_out_of_range(tmp_path, builders):
    from ai_edge_litert import schema_py_generated as s

    f32 = s.TensorType.FLOAT32
    t = [{"name": "a", "shape": (1, 4), "type": f32}, {"name": "b", "shape": (1, 4), "type": f32}]
    bad_tensor = builders._tflite(tmp_path / "bad_tensor.tflite", t, [(s.BuiltinOperator.RELU, [0], [7])], [0], [1])
    _err(bad_tensor, "operator 0 (RELU) outputs refer to tensor 7, the subgraph has 2")
    bad_io = builders._tflite(tmp_path / "bad_io.tflite", t, [(s.BuiltinOperator.RELU, [0], [1])], [0], [5])
    _err(bad_io, "outputs refer to tensor 5")
    small = t + [{"name": "w", "shape": (4, 4), "type": f32, "data": np.zeros(3, np.float32)}]
    short = builders._tflite(tmp_path / "short_buffer.tflite", small, [(s.BuiltinOperator.RELU, [0], [1])], [0], [1])
    _err(short, "constant tensor 'w' [4, 4] float32 needs 64 bytes, its buffer 1 holds 12")


def test_tflite_wrong_schema_version(tmp_path, tiny):
    data = bytearray(tiny["add_mul.tflite"].read_bytes())
    # The version field is the first scalar of the root table: find and corrupt it safely.
    from edgekit.runtimes._flatbuffer import root_table

    t = root_table(bytes(data), "Model")
    pos = t._field(0, 4)
    data[pos:pos + 4] = (2).to_bytes(4, "little")
    p = tmp_path / "v2.tflite"
    p.write_bytes(bytes(data))
    _err(p, "schema version 2")


def test_onnx_external_data_problems(tmp_path, tiny):
    src = tiny["float16_external.onnx"]
    alone = tmp_path / "alone" / src.name
    alone.parent.mkdir()
    alone.write_bytes(src.read_bytes())
    _err(alone, "external data file 'float16_weights.bin' is missing")
    (alone.parent / "float16_weights.bin").write_bytes(b"\0" * 10)
    _err(alone, "external data file 'float16_weights.bin' has 10 bytes")


def test_onnx_graph_problems(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def save(nodes, name, outputs=("y",), initializers=()):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2]) for o in outputs],
                              list(initializers))
        p = tmp_path / name
        onnx.save_model(helper.make_model(g), str(p))
        return p

    _err(save([helper.make_node("Add", ["x", "ghost"], ["y"], name="add0")], "dangling.onnx"),
         "node add0 reads tensor 'ghost'")
    _err(save([helper.make_node("Relu", ["x"], ["y"])], "no_producer.onnx", outputs=("y", "z")),
         "graph output 'z' is not produced")
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=b"\0" * 12)
    _err(save([helper.make_node("Add", ["x", "w"], ["y"])], "short_raw.onnx", initializers=[w]),
         "initializer 'w' [4] float32 needs 16 bytes of raw_data, it holds 12")
    escaping = helper.make_tensor("w", TensorProto.FLOAT, [2], vals=[0.0, 0.0])
    escaping.data_location = TensorProto.EXTERNAL
    del escaping.float_data[:]
    entry = escaping.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    _err(save([helper.make_node("Add", ["x", "w"], ["y"])], "escape.onnx", initializers=[escaping]),
         "must be a path inside the model's folder")


def test_if_subgraphs_see_outer_names(tmp_path):
    """Nodes inside If branches may read outer-scope tensors; their ops are counted."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    branch = lambda op, name: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["x"], [name])], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])])
    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch("Relu", "t"), else_branch=branch("Neg", "e"))], "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    p = tmp_path / "if.onnx"
    onnx.save_model(helper.make_model(g), str(p))
    info = read_model(p)
    assert info.op_histogram == {"If": 1, "Relu": 1, "Neg": 1}


def test_reading_never_loads_a_runtime(tmp_path, tiny):
    import subprocess
    import sys

    code = ("import sys; from edgekit.runtimes.modelfile import read_model; "
            f"read_model({str(tiny['float16.onnx'])!r}); read_model({str(tiny['add_mul.tflite'])!r}); "
            "bad = [m for m in ('onnxruntime', 'onnx', 'torch', 'tflite_runtime') if m in sys.modules]; "
            "bad += [m for m in sys.modules if m.startswith('ai_edge_litert.') and 'schema' not in m]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
