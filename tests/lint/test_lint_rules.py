"""Lint rules on models exported by the real tools (litert-torch, torch.onnx, coremltools), and
every constraint key on small synthetic graphs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from numeric import THREADS, assert_close, fp32_bound

from edgekit.lint import lint, lint_graph
from edgekit.lint.readers import Graph, Op, Tensor, read_graph
from edgekit.errors import InvalidModelFile, ModelFileNotFound


def _by(report, rule=None, op=None):
    return [f for f in report.findings if (rule is None or f.rule == rule) and (op is None or f.op == op)]


# -- TFLite ---------------------------------------------------------------------------------------

def test_conv3d_tflite_names_conv3d_and_every_rank5_tensor_once(tflite_models):
    path = tflite_models["tflite_conv3d"]
    graph = read_graph(path)
    report = lint(path, "generic-npu")
    assert not report.passed
    conv3d = _by(report, "op-forbidden", "CONV_3D")
    assert len(conv3d) == sum(op.type == "CONV_3D" for op in graph.ops) == 1
    assert conv3d[0].fix_pass == "conv3d_to_conv2d" and conv3d[0].severity == "error"
    assert isinstance(conv3d[0].index_or_node, int) and "3-D convolution" in conv3d[0].why
    rank = _by(report, "rank")
    named = [f.tensor for f in rank]
    assert len(named) == len(set(named)), "each tensor is named once"
    expected = {t.name for op in graph.ops for t in op.outputs if not t.const and t.rank == 5} | \
               {t.name for t in graph.inputs if t.rank == 5}
    assert set(named) == expected and len(expected) >= 3
    for f in rank:
        assert f.details["rank"] == 5 and f.fix_pass == "frames_to_batch"
        assert f.details["producer"] or f.details["consumers"]
    model_input = next(f for f in rank if f.tensor == graph.inputs[0].name)
    assert model_input.details["producer"] is None and model_input.details["consumers"]


def test_pixel_shuffle_from_litert_torch_is_a_transpose_chain_not_depth_to_space(tflite_models):
    path = tflite_models["tflite_pixel_shuffle_nhwc"]
    ops = Counter(op.type for op in read_graph(path).ops)
    assert ops["DEPTH_TO_SPACE"] == 0 and ops["TRANSPOSE"] >= 2 and ops["RESHAPE"] >= 2
    report = lint(path, "generic-npu")
    [ps] = _by(report, "pixel-shuffle")
    assert ps.severity == "error" and ps.fix_pass == "pixel_shuffle_to_depth_to_space"
    assert ps.details["r"] == 2 and ps.details["temporal"] == 1
    assert len(ps.details["ops"]) == ops["TRANSPOSE"] + ops["RESHAPE"]
    # the chain's transposes are reported once, as the pattern, not again op by op
    assert not _by(report, "op-forbidden", "TRANSPOSE") and not _by(report, "layout")
    assert _by(lint(path, "edgetpu"), "pixel-shuffle")[0].fix_pass == "pixel_shuffle_to_transpose_conv"
    gpu = lint(path, "tflite-gpu")  # TRANSPOSE runs on the GPU delegate: only slower
    assert gpu.passed and [f.rule for f in gpu.warnings] == ["pixel-shuffle"]


def test_nchw_io_adds_boundary_layout_findings(tflite_models):
    report = lint(tflite_models["tflite_pixel_shuffle_nchw"], "generic-npu")
    layout = _by(report, "layout")
    assert sorted(f.details["position"] for f in layout) == ["input", "output"]
    assert all(f.fix_pass == "nhwc_boundary" for f in layout)
    assert any("model input" in f.message and "NCHW" in f.message for f in layout)
    plain = lint(tflite_models["tflite_plain_nchw"], "generic-npu")
    assert [f.details["position"] for f in _by(plain, "layout")] == ["input", "output"]
    assert [f.details["perm"] for f in _by(plain, "layout")] == [[0, 2, 3, 1], [0, 3, 1, 2]]


def test_half_pixel_nearest_resize_is_an_error_fixed_by_resize_nearest_no_half_pixel(tflite_models):
    report = lint(tflite_models["tflite_plain_nhwc"], "generic-npu")
    [f] = report.findings
    assert (f.rule, f.op, f.fix_pass) == ("op-constraint", "RESIZE_NEAREST_NEIGHBOR", "resize_nearest_no_half_pixel")
    assert "half_pixel_centers=True" in f.message
    nnapi = lint(tflite_models["tflite_plain_nhwc"], "nnapi")  # rejected only below Android 11: a warning
    assert nnapi.passed and [w.op for w in nnapi.warnings] == ["RESIZE_NEAREST_NEIGHBOR"]


def test_clean_nhwc_model_with_depth_to_space_passes_generic_npu(tflite_models):
    path = tflite_models["tflite_clean"]
    ops = Counter(op.type for op in read_graph(path).ops)
    assert ops["DEPTH_TO_SPACE"] == 1 and ops["TRANSPOSE"] == 0 and ops["CONV_2D"] == 2
    for target in ("generic-npu", "tflite-gpu", "nnapi"):
        report = lint(path, target)
        assert report.findings == [], (target, [(f.rule, f.where, f.message) for f in report.findings])
        assert report.passed
    # integer-only accelerators still refuse it, for their own documented reasons
    edgetpu = lint(path, "edgetpu")
    assert {f.rule for f in edgetpu.errors} == {"dtype", "op-forbidden"}
    assert _by(edgetpu, "op-forbidden")[0].op == "DEPTH_TO_SPACE"
    assert _by(lint(path, "ethos-u"), "op-forbidden", "DEPTH_TO_SPACE")[0].fix_pass == "pixel_shuffle_to_transpose_conv"


@pytest.mark.numeric
def test_clean_fixture_is_a_real_model_that_matches_pytorch(tflite_models, plain_torch_net):
    """The appended DEPTH_TO_SPACE and the cleared half_pixel_centers leave a model LiteRT runs,
    and it computes depth_to_space(DCR) of the PyTorch model's output."""
    torch = pytest.importorskip("torch")
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(0).standard_normal((1, 16, 16, 3)).astype(np.float32)
    interp = Interpreter(model_path=str(tflite_models["tflite_clean"]), num_threads=THREADS)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    x_nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = plain_torch_net(x_nchw).permute(0, 2, 3, 1).numpy()
    n, h, w, c = ref.shape
    ref = ref.reshape(n, h, w, 2, 2, c // 4).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * 2, w * 2, c // 4)
    assert got.shape == ref.shape == (1, 32, 32, 4)
    # depth_to_space is data movement: the net's own measured float32 bound carries over
    assert_close(got, ref, fp32_bound(plain_torch_net, x_nchw), "clean.tflite vs depth_to_space(PyTorch)")


def test_gather_is_forbidden_on_generic_npu(tflite_models):
    report = lint(tflite_models["tflite_gather"], "generic-npu")
    gathers = [f for f in report.errors if f.op in ("GATHER", "GATHER_ND")]
    assert gathers and gathers[0].rule == "op-forbidden"
    assert "gather" in gathers[0].why.lower()
    # constant indices: a fixed selection no shape pass removes, so the finding gives advice
    assert gathers[0].fix_pass is None and "constant indices" in gathers[0].advice
    # the transposes around the gather move channels first: not a layout change, so warnings
    transposes = _by(report, "op-forbidden", "TRANSPOSE")
    assert transposes and all(f.severity == "warning" and "not a layout change" in f.advice for f in transposes)
    assert not _by(report, "layout")


def test_silu_and_prelu_patterns():
    from edgekit.targets import load_target

    x = Tensor("x", "x", (1, 8, 8, 4), "float32")
    s = Tensor("s", "s", (1, 8, 8, 4), "float32")
    y = Tensor("y", "y", (1, 8, 8, 4), "float32")
    silu = Graph("tflite", Path("silu.tflite"), [Op(0, "LOGISTIC", "", [x], [s]), Op(1, "MUL", "", [x, s], [y])],
                 [x], [y], "NHWC")
    assert [f.rule for f in lint_graph(silu, load_target("edgetpu")).warnings] == ["silu"]
    assert not lint_graph(silu, load_target("generic-npu")).findings  # float target: no quantization advice
    r, m1, m2, o = (Tensor(k, k, (1, 8, 8, 4), "float32") for k in "rmno")
    minus1 = Tensor("c", "c", (), "float32", const=True, value=[-1.0])
    w = Tensor("w", "w", (4,), "float32", const=True)
    prelu = Graph("tflite", Path("prelu.tflite"), [
        Op(0, "RELU", "", [x], [r]), Op(1, "MUL", "", [x, minus1], [m1], {"fused_activation": "RELU"}),
        Op(2, "MUL", "", [m1, w], [m2]), Op(3, "SUB", "", [r, m2], [o])], [x], [o], "NHWC")
    [f] = lint_graph(prelu, load_target("generic-npu")).findings
    assert (f.rule, f.severity, f.fix_pass) == ("prelu-decomposed", "warning", "prelu_restore")


# -- ONNX ------------------------------------------------------------------------------------------

def test_conv3d_onnx(onnx_models):
    report = lint(onnx_models["onnx_conv3d"], "generic-npu")
    [conv] = _by(report, "op-constraint", "Conv")
    assert conv.fix_pass == "conv3d_to_conv2d" and "3-D kernel 3x3x3" in conv.message
    assert isinstance(conv.index_or_node, str) and conv.index_or_node  # ONNX findings name the node
    assert {f.details["rank"] for f in _by(report, "rank")} == {5}


def test_dynamic_shape_onnx_names_the_input_and_its_dims(onnx_models):
    report = lint(onnx_models["onnx_dynamic"], "generic-npu")
    [dyn] = _by(report, "dynamic-shape")
    assert dyn.tensor == "x" and dyn.details["dims"] == [0, 2] and dyn.fix_pass == "static_shapes"
    assert not _by(lint(onnx_models["onnx_sr"], "generic-npu"), "dynamic-shape")


def test_gather_onnx(onnx_models):
    report = lint(onnx_models["onnx_gather"], "generic-npu")
    assert any(f.op in ("Gather", "GatherND") and f.rule == "op-forbidden" for f in report.errors)


def test_sr_onnx_crd_depth_to_space_and_nchw_boundary(onnx_models):
    """An NCHW boundary is ONNX's own layout (the execution provider picks the storage): not a
    finding; the CRD DepthToSpace is."""
    report = lint(onnx_models["onnx_sr"], "generic-npu")
    [d2s] = _by(report, "op-constraint", "DepthToSpace")
    assert d2s.severity == "warning" and "CRD" in d2s.message and d2s.fix_pass == "pixel_shuffle_to_depth_to_space"
    assert _by(report, "layout") == []


def test_internal_layout_transpose_in_onnx(tmp_path):
    """Token-major attention in a channels-first ONNX graph: the layout Transposes into and out of
    the tokens are errors (fixed by attention_per_frame), kᵀ feeding MatMul is only noted."""
    torch = pytest.importorskip("torch")
    from edgekit.zoo.video_decoder import FrameSelfAttention

    class Attn2d(torch.nn.Module):  # FrameSelfAttention's token-major core on one NCHW image
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(8, 8, 1)
            self.attn = FrameSelfAttention(8)

        def forward(self, x):
            n, c, h, w = x.shape
            y = self.conv(x).permute(0, 2, 3, 1).reshape(n, h * w, c)
            a = self.attn
            s = torch.softmax(torch.matmul(a.q(y), a.k(y).transpose(1, 2)) * a.scale, dim=-1)
            out = a.proj(torch.matmul(s, a.v(y)))
            return x + out.reshape(n, h, w, c).permute(0, 3, 1, 2)

    path = tmp_path / "attn.onnx"
    torch.onnx.export(Attn2d().eval(), (torch.randn(1, 8, 4, 4),), str(path), dynamo=True, external_data=False)
    report = lint(path, "generic-npu")
    layout = _by(report, "layout")
    assert sorted(f.details["perm"] for f in layout) == [[0, 2, 3, 1], [0, 3, 1, 2]], [f.message for f in layout]
    assert all(f.details["position"] == "internal" and f.fix_pass == "attention_per_frame" for f in layout)
    assert not [f for f in report.findings if f.rule == "op-forbidden" and f.op == "Transpose"]
    assert any("MatMul operand" in n for n in report.notes), report.notes


def test_nhwc_boundary_transposes_are_fine_in_onnx(onnx_models):
    """ONNX Conv is NCHW by definition: an NHWC input transposed once at the boundary is the
    NHWC model the nhwc_boundary pass makes, not a violation."""
    report = lint(onnx_models["onnx_nhwc_clean"], "generic-npu")
    assert report.findings == [], [(f.rule, f.where, f.message) for f in report.findings]


def test_onnx_model_for_a_tflite_only_target_is_a_format_finding(onnx_models):
    report = lint(onnx_models["onnx_nhwc_clean"], "edgetpu")
    assert report.findings[0].rule == "format" and "tflite" in report.findings[0].advice


# -- Core ML ----------------------------------------------------------------------------------------

def test_coreml_conv3d_and_clean(coreml_models):
    report = lint(coreml_models["coreml_conv3d"], "generic-npu")
    [conv] = _by(report, "op-constraint", "conv")
    assert conv.fix_pass == "conv3d_to_conv2d" and "rank-5" in conv.message
    assert _by(report, "rank")
    ane = lint(coreml_models["coreml_conv3d"], "ane")
    assert not ane.passed and all(f.severity == "warning" for f in _by(ane, "rank"))  # Core ML takes rank 5
    for target in ("generic-npu", "ane"):
        clean = lint(coreml_models["coreml_clean"], target)
        assert clean.findings == [], (target, [(f.rule, f.where, f.message) for f in clean.findings])


# -- light dependencies ----------------------------------------------------------------------------

def test_lint_needs_neither_torch_nor_coremltools(tflite_models, onnx_models, coreml_models):
    """`edgekit lint` runs where only the runtime wheels (plus onnx / the Core ML protos) exist."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from edgekit.lint import lint\n"
        "for p in sys.argv[1:]:\n"
        "    lint(p)\n"
        "print(sorted(m for m in ('torch', 'coremltools', 'litert_torch', 'tensorflow') if m in sys.modules))\n"
    )
    paths = [tflite_models["tflite_clean"], onnx_models["onnx_sr"], coreml_models["coreml_clean"]]
    out = subprocess.run([sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- bad input -------------------------------------------------------------------------------------

def test_unreadable_files_are_one_line_errors(tmp_path, tflite_models):
    with pytest.raises(ModelFileNotFound):
        lint(tmp_path / "missing.tflite")
    (tmp_path / "model.pt").write_bytes(b"\x80\x02")
    with pytest.raises(InvalidModelFile, match="lint reads"):
        lint(tmp_path / "model.pt")
    (tmp_path / "model.ort").write_bytes(b"\x00" * 16)
    with pytest.raises(InvalidModelFile, match=".onnx the .ort"):
        lint(tmp_path / "model.ort")
    good = tflite_models["tflite_clean"].read_bytes()
    (tmp_path / "cut.tflite").write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidModelFile) as e:
        lint(tmp_path / "cut.tflite")
    assert "\n" not in str(e.value)


# -- every constraint key on a synthetic op ----------------------------------------------------------

def _one_op(op_type, attrs=None, x_shape=(1, 8, 8, 4), y_shape=(1, 8, 8, 4), inputs=(), fmt="tflite"):
    x = Tensor("x", "x", x_shape, "float32")
    y = Tensor("y", "y", y_shape, "float32")
    op = Op(0, op_type, "", [x, *inputs], [y], dict(attrs or {}))
    return Graph(fmt, Path(f"m.{fmt}"), [op], [x], [y], "NHWC" if fmt == "tflite" else "NCHW")


def _violations(graph, constraints):
    from edgekit.targets import OpRule

    from edgekit.lint import _Context, _violations

    op = graph.ops[0]
    return _violations(_Context(graph, None), op, OpRule(op.type, constraints))  # type: ignore[arg-type]


CASES = [
    # (constraint, op type, attrs, extra kwargs, breaks?)
    ({"max_stride": 3}, "CONV_2D", {"strides": (4, 4)}, {}, True),
    ({"max_stride": 3}, "CONV_2D", {"strides": (2, 2)}, {}, False),
    ({"strides_in": [1, 2]}, "TRANSPOSE_CONV", {"strides": (3, 3)}, {}, True),
    ({"max_dilation": 1}, "DEPTHWISE_CONV_2D", {"dilations": (2, 2)}, {}, True),
    ({"max_kernel": 8}, "AVERAGE_POOL_2D", {"kernel": (9, 9)}, {}, True),
    ({"kernel_rank": 2}, "Conv", {"kernel_rank": 3, "kernel": (3, 3, 3)}, {"fmt": "onnx"}, True),
    ({"half_pixel_centers": False}, "RESIZE_NEAREST_NEIGHBOR", {"half_pixel_centers": True}, {}, True),
    ({"half_pixel_centers": False}, "Resize", {"half_pixel_centers": True, "nearest": False}, {"fmt": "onnx"}, False),
    ({"align_corners": False}, "RESIZE_BILINEAR", {"align_corners": True}, {}, True),
    ({"not_align_and_half_pixel": True}, "RESIZE_BILINEAR", {"align_corners": True, "half_pixel_centers": True}, {}, True),
    ({"resize_factors": [2, 4, 8]}, "RESIZE_NEAREST_NEIGHBOR", {}, {"y_shape": (1, 24, 24, 4)}, True),
    ({"resize_factors": [2, 4, 8]}, "RESIZE_NEAREST_NEIGHBOR", {}, {"y_shape": (1, 32, 32, 4)}, False),
    ({"resize_factors": [2, 4, 8]}, "RESIZE_NEAREST_NEIGHBOR", {}, {"y_shape": (1, 16, 32, 4)}, True),
    ({"min_block_size": 2}, "DEPTH_TO_SPACE", {"block_size": 1}, {}, True),
    ({"mode": "DCR"}, "DepthToSpace", {"mode": "CRD"}, {"fmt": "onnx"}, True),
    ({"min_input_rank": 3}, "SLICE", {}, {"x_shape": (8, 4)}, True),
    ({"max_input_rank": 4}, "SOFTMAX", {}, {"x_shape": (1, 2, 3, 4, 5)}, True),
    ({"hw_axes_only": True}, "MEAN", {"axes": [1, 2]}, {}, False),
    ({"hw_axes_only": True}, "MEAN", {"axes": [3]}, {}, True),
    ({"hw_axes_only": True}, "ReduceMean", {"axes": [2, 3]}, {"fmt": "onnx"}, False),
    ({"hw_axes_only": True}, "PAD", {"paddings": [[0, 0], [1, 1], [1, 1], [0, 0]]}, {}, False),
    ({"hw_axes_only": True}, "PAD", {"paddings": [[0, 0], [0, 0], [0, 0], [0, 4]]}, {}, True),
    ({"unit_strides": True}, "STRIDED_SLICE", {"slice_strides": [1, 2, 2, 1]}, {}, True),
    ({"no_slice_masks": ["ellipsis"]}, "STRIDED_SLICE", {"slice_masks": {"ellipsis": 1, "shrink_axis": 0}}, {}, True),
    ({"no_slice_masks": ["ellipsis"]}, "STRIDED_SLICE", {"slice_masks": {"ellipsis": 0, "shrink_axis": 1}}, {}, False),
    ({"max_elements": 16000}, "SOFTMAX", {}, {"x_shape": (1, 20000)}, True),
    ({"max_nonunit_dims": 1}, "SOFTMAX", {}, {"x_shape": (1, 10, 10)}, True),
    ({"no_fused_activation": True}, "AVERAGE_POOL_2D", {"fused_activation": "RELU"}, {}, True),
    ({"no_fused_activation": True}, "AVERAGE_POOL_2D", {"fused_activation": "NONE"}, {}, False),
    ({"fused_activations": ["NONE", "RELU"]}, "CONV_2D", {"fused_activation": "SIGN_BIT"}, {}, True),
    ({"index_dtypes": ["int32"]}, "GATHER", {"index_dtype": "int64"}, {}, True),
    ({"beta_one": True}, "SOFTMAX", {"beta": 0.5}, {}, True),
    ({"bias_required": True}, "CONV_2D", {"has_bias": False}, {}, True),
    ({"const_inputs": [1]}, "PAD", {}, {"inputs": (Tensor("p", "p", (4, 2), "int32"),)}, True),
    ({"const_inputs": [1]}, "PAD", {}, {"inputs": (Tensor("p", "p", (4, 2), "int32", const=True),)}, False),
    ({"perms": [[0, 2, 1, 3]]}, "TRANSPOSE", {"perm": [0, 3, 1, 2]}, {}, True),
]


@pytest.mark.parametrize("constraints,op_type,attrs,kw,breaks", CASES,
                         ids=[f"{next(iter(c[0]))}-{c[1]}-{'breaks' if c[4] else 'ok'}" for c in CASES])
def test_constraint(constraints, op_type, attrs, kw, breaks):
    messages = _violations(_one_op(op_type, attrs, **kw), constraints)
    assert bool(messages) == breaks, messages


def test_every_constraint_key_has_a_breaking_case():
    from edgekit.targets import CONSTRAINT_KEYS

    covered = {k for c in CASES if c[4] for k in c[0]}
    assert covered == set(CONSTRAINT_KEYS), set(CONSTRAINT_KEYS) - covered
