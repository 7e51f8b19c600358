"""ONNX lint without the ``onnx`` package finds the same tensor shapes and the same findings.

With ``onnx`` installed, lint takes intermediate shapes from ``onnx.shape_inference``; without it,
from onnxruntime's shape inference (:func:`edgekit.runtimes.onnxruntime.infer_types`). Here
``sys.modules["onnx"] = None`` makes ``import onnx`` fail in-process, and every tensor of the
graph (shape, dtype) and every report (all targets) is compared between the two. The models:
the lint fixtures (torch.onnx exports) and hand-made graphs with what tells the two apart if
anything does: scalars next to tensors of unknown rank (onnxruntime reports both as shape []),
a data-dependent NonZero, a dynamic input. A graph onnxruntime cannot load (an op it does not
know) is linted with its declared types, and the report says which checks saw only those.
"""

from __future__ import annotations

import sys

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgekit.lint import lint  # noqa: E402
from edgekit.lint.readers import read_graph  # noqa: E402
from edgekit.targets import list_targets  # noqa: E402

ORT_NOTE = "onnxruntime's shape inference"


def _tensors(path):
    g = read_graph(path)
    return {t.key: (t.shape, t.dtype, t.const) for t in g.tensors.values()}, g.notes


def _without_onnx(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError


def _save(tmp_path, name, nodes, inputs, outputs, inits=(), opset=17, domains=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    *(helper.make_opsetid(d, 1) for d in domains)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def hand_made(tmp_path):
    import numpy as np

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, ["k"])
    untyped = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, None)  # noqa: E731
    scalars = _save(tmp_path, "scalars", [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),  # a scalar
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),  # a scalar
        helper.make_node("Reshape", ["x", "s"], ["r"]),  # rank unknown
        helper.make_node("Relu", ["r"], ["y"]),
        helper.make_node("Add", ["x", "total"], ["z"]),
        helper.make_node("Transpose", ["z"], ["t"], perm=[0, 2, 3, 1]),
    ], [x, s], [untyped("y"), untyped("t"), helper.make_tensor_value_info("n", TensorProto.INT64, None)],
        [numpy_helper.from_array(np.array(0, np.int64), "zero")])
    nonzero = _save(tmp_path, "nonzero", [
        helper.make_node("Greater", ["x", "half"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["idx"]),  # (4, ?) from data
        helper.make_node("Transpose", ["idx"], ["idx_t"], perm=[1, 0]),
        helper.make_node("Cast", ["idx_t"], ["y"], to=TensorProto.FLOAT),
    ], [x], [untyped("y")], [numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    dynamic = _save(tmp_path, "dynamic", [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c"], ["d"], blocksize=2, mode="CRD"),
        helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT16),
    ], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
        [numpy_helper.from_array(np.ones((12, 3, 3, 3), np.float32), "w")])
    return {"scalars": scalars, "nonzero": nonzero, "dynamic": dynamic}


def _compare(path, monkeypatch):
    with_onnx = _tensors(path)
    reports = {t: lint(path, t).to_dict() for t in list_targets()}
    with monkeypatch.context() as m:
        _without_onnx(m)
        without = _tensors(path)
        reports_without = {t: lint(path, t).to_dict() for t in list_targets()}
    assert without[0] == with_onnx[0]
    assert [n for n in without[1] if ORT_NOTE not in n] == with_onnx[1]
    assert any(ORT_NOTE in n for n in without[1])
    for target, report in reports.items():
        other = reports_without[target]
        assert [n for n in other.pop("notes") if ORT_NOTE not in n] == report.pop("notes")
        assert other == report, target


def test_the_lint_fixtures_read_the_same_without_onnx(onnx_models, monkeypatch):
    for path in onnx_models.values():
        _compare(path, monkeypatch)


@pytest.mark.parametrize("name", ["scalars", "nonzero", "dynamic"])
def test_hand_made_graphs_read_the_same_without_onnx(hand_made, name, monkeypatch):
    _compare(hand_made[name], monkeypatch)


def test_scalars_and_unknown_ranks_are_told_apart(hand_made, monkeypatch):
    _without_onnx(monkeypatch)
    tensors, _ = _tensors(hand_made["scalars"])
    assert tensors["n"][0] == () and tensors["total"][0] == ()  # scalars
    assert tensors["r"][0] is None and tensors["y"][0] is None  # rank unknown
    assert tensors["t"][0] == (1, 8, 8, 3)
    nonzero, _ = _tensors(hand_made["nonzero"])
    assert nonzero["idx"][0] == (4, None) and nonzero["y"][:2] == ((None, 4), "float32")


def test_a_graph_onnxruntime_cannot_load_says_which_checks_saw_declared_types_only(tmp_path, monkeypatch):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    path = _save(tmp_path, "custom", [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Foo", ["t"], ["y"], domain="my.custom"),
    ], [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], domains=["my.custom"])
    _without_onnx(monkeypatch)
    report = lint(path, "generic-npu")
    (note,) = report.notes
    assert "onnx package is not installed" in note and "my.custom" in note
    assert "rank, dtype and shape checks saw only the tensors the file declares a type for" in note
    t = next(op for op in read_graph(path).ops if op.type == "Transpose").outputs[0]
    assert t.shape is None and t.dtype == "unknown"  # not guessed
    assert {f.rule for f in report.findings} >= {"op-not-supported", "layout"}  # what needs no shapes still ran
