"""The ONNX importer judged by ONNX's own backend node test cases.

Every case of ``onnx.backend.test.case.node`` whose ops are all in the importer's table runs
through :func:`~edgekit.converters.onnx_import.import_onnx`
(:mod:`edgekit.converters.onnx_import.coverage` holds the harness, the scope rules and the
out-of-scope list): each must give ONNX's expected outputs (integer and bool exactly, float
within the imported graph's own measured float32 bound) or be refused in one line naming the
node and what it does not implement. A wrong result, a crash or an unclean refusal fails. The
README's coverage numbers are checked against the same run.

Slow (TFLite): a LayerNormalization model and a Resize model imported and converted with
``edgekit.convert`` verify.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx.backend.test.case.node")

from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from numeric import assert_verified  # noqa: E402

from edgekit.converters.onnx_import import coverage as cov  # noqa: E402
from edgekit.converters.onnx_import import import_onnx  # noqa: E402
from edgekit.errors import ConversionError  # noqa: E402

pytestmark = pytest.mark.numeric

CASES = cov.cases()
IN_SCOPE = [c for c in CASES if cov.scope_reason(c) is None]


@pytest.mark.parametrize("case", IN_SCOPE, ids=[c.name for c in IN_SCOPE])
def test_backend_case(case: cov.Case) -> None:
    r = cov.result(case)
    assert r.status in ("passed", "refused"), f"{case.name} {r.status}: {r.detail}"


def test_cases_were_found() -> None:
    # the op table reaches most of ONNX's cases; an empty parametrisation would pass silently
    assert len(IN_SCOPE) > 500, len(IN_SCOPE)
    names = {c.name for c in IN_SCOPE}
    for must in ("test_averagepool_2d_ceil_last_window_starts_on_pad", "test_spacetodepth_crd_mode_example",
                 "test_layer_normalization_4d_axis1", "test_resize_upsample_sizes_nearest_floor_align_corners",
                 "test_resize_downsample_scales_cubic", "test_upsample_nearest"):
        assert must in names, must


def test_out_of_scope_names_are_cases() -> None:
    """Every case excluded by name exists (a renamed case must not leave a stale entry)."""
    names = {c.name for c in CASES}
    assert set(cov.OUT_OF_SCOPE) <= names, sorted(set(cov.OUT_OF_SCOPE) - names)
    assert set(cov.TYPED_DECIMALS) <= names


def test_readme_numbers_match_the_run() -> None:
    res, out = cov.results()
    n = cov.counts(res, out)
    assert n["wrong"] == n["error"] == 0, [(r.name, r.detail) for r in res.values() if r.status in ("wrong", "error")]
    text = cov.readme_path().read_text()
    assert text == cov.update_readme(text, n), (
        f"README.md's ONNX coverage numbers differ from this run ({n}); "
        "run python -m edgekit.converters.onnx_import.coverage --write-readme")


# ---------------------------------------------------------------------------- the harness can fail


def _case(name: str) -> cov.Case:
    return next(c for c in CASES if c.name == name)


def test_harness_finds_a_wrong_result() -> None:
    c = _case("test_relu")
    (inputs, outputs), = c.data_sets
    bad = [np.asarray(outputs[0]) + np.float32(1e-3) * np.abs(np.asarray(outputs[0])).max()]
    r = cov.run_case(cov.Case(c.name, c.model, [(inputs, bad)], c.ops))
    assert r.status == "wrong" and "max abs error" in r.detail, r
    assert cov.run_case(c).status == "passed"


def test_harness_finds_a_wrong_dtype() -> None:
    c = _case("test_cumsum_2d_int32")
    (inputs, outputs), = c.data_sets
    r = cov.run_case(cov.Case(c.name, c.model, [(inputs, [np.asarray(outputs[0]).astype(np.int64)])], c.ops))
    assert r.status == "wrong" and "dtype int32" in r.detail, r


def test_harness_tells_a_crash_from_a_refusal(monkeypatch) -> None:
    from edgekit.converters.onnx_import import table

    c = _case("test_relu")

    def broken(g, x):
        raise IndexError("a converter bug")

    monkeypatch.setitem(table.OPS, "Relu", table._guarded(broken))
    r = cov.run_case(c)
    assert r.status == "error" and "not a deliberate refusal" in r.detail, r


# ---------------------------------------------------------------------------- what the cases found


def _single(op_type: str, x: np.ndarray, opset: int, **attrs) -> onnx.ModelProto:
    node = oh.make_node(op_type, ["x"], ["y"], name="n0", **attrs)
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)], ir_version=8)


def test_an_attribute_the_converter_does_not_read_is_refused() -> None:
    """A node attribute no converter reads (a mode added by a newer opset) is refused in one line
    naming the node and the attribute, not ignored."""
    x = np.zeros((1, 2, 4, 4), np.float32)
    model = _single("Relu", x, 17, future_mode="fast")
    with pytest.raises(ConversionError, match=r"node 0 'n0' \(ai.onnx::Relu\): attribute future_mode='fast' "
                                              r"is not implemented"):
        import_onnx(model)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth_modes_invert_depth_to_space(mode: str) -> None:
    x = np.arange(2 * 8 * 3 * 3, dtype=np.float32).reshape(2, 8, 3, 3)
    d2s = import_onnx(_single("DepthToSpace", x, 13, blocksize=2, mode=mode))
    y = d2s.module(torch.from_numpy(x))
    s2d = import_onnx(_single("SpaceToDepth", y.numpy(), 25, blocksize=2, mode=mode))
    np.testing.assert_array_equal(s2d.module(y).numpy(), x)


def test_align_corners_with_a_fractional_output_length_is_refused() -> None:
    x = np.zeros((1, 1, 2, 4), np.float32)
    node = oh.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", mode="linear",
                        coordinate_transformation_mode="align_corners")
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                      [numpy_helper.from_array(np.array([1, 1, 0.6, 0.6], np.float32), "scales")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=8)
    with pytest.raises(ConversionError, match=r"node 0 'rs' \(ai.onnx::Resize\): .*align_corners.*scale 0.6"):
        import_onnx(model)


# ---------------------------------------------------------------------------- downstream: TFLite


def _layer_norm_model(path) -> None:
    rng = np.random.default_rng(0)
    c = 8
    w = numpy_helper.from_array(rng.standard_normal((c, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    gamma = numpy_helper.from_array(rng.uniform(0.5, 1.5, (c,)).astype(np.float32), "gamma")
    beta = numpy_helper.from_array(rng.standard_normal((c,)).astype(np.float32) * 0.1, "beta")
    perm1, perm2 = [0, 2, 3, 1], [0, 3, 1, 2]
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             oh.make_node("Transpose", ["c"], ["t"], perm=perm1),
             oh.make_node("LayerNormalization", ["t", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-5),
             oh.make_node("Transpose", ["ln"], ["y"], perm=perm2)]
    g = oh.make_graph(nodes, "ln", [oh.make_tensor_value_info("x", TP.FLOAT, [1, 3, 16, 16])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, [1, c, 16, 16])], [w, gamma, beta])
    onnx.save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), str(path))


def _resize_model(path) -> None:
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    sizes = numpy_helper.from_array(np.array([1, 4, 32, 32], np.int64), "sizes")
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             oh.make_node("Resize", ["c", "", "", "sizes"], ["y"], mode="linear",
                          coordinate_transformation_mode="half_pixel")]
    g = oh.make_graph(nodes, "rs", [oh.make_tensor_value_info("x", TP.FLOAT, [1, 3, 16, 16])],
                      [oh.make_tensor_value_info("y", TP.FLOAT, [1, 4, 32, 32])], [w, sizes])
    onnx.save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=8), str(path))


@pytest.mark.slow
@pytest.mark.parametrize("build", [_layer_norm_model, _resize_model], ids=["layernorm", "resize"])
def test_imported_model_converts_to_tflite_and_verifies(build, tmp_path) -> None:
    pytest.importorskip("litert_torch")
    import edgekit
    from edgekit.bundle import read_manifest

    src = tmp_path / "m.onnx"
    build(src)
    res = edgekit.convert(str(src), formats="tflite", out=tmp_path / "b", bench_runs=0)
    arts = {a.format: a for a in read_manifest(tmp_path / "b").artifacts}
    assert res.ok, res.to_dict()["artifacts"]
    assert_verified(arts["tflite"].verification, "tflite")


# ---------------------------------------------------------------------------- antialiased Resize vs onnxruntime


@pytest.mark.parametrize("sizes", [[1, 2, 5, 7], [1, 2, 26, 5]], ids=["down-both", "up-h-down-w"])
@pytest.mark.parametrize("coord", ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners"])
@pytest.mark.parametrize("mode,exclude", [("linear", 0), ("cubic", 0), ("cubic", 1)])
def test_antialiased_resize_matches_onnxruntime(mode: str, exclude: int, coord: str, sizes: list[int]) -> None:
    """ONNX's four antialias cases are tiny; here the stretched kernel meets onnxruntime on odd
    sizes and every coordinate mode, and the import still exports with torch.export."""
    ort = pytest.importorskip("onnxruntime")
    from numeric import THREADS, assert_close, fp32_bound

    x = np.random.default_rng(0).standard_normal((1, 2, 13, 17)).astype(np.float32)
    node = oh.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, antialias=1, exclude_outside=exclude,
                        coordinate_transformation_mode=coord)
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                      [numpy_helper.from_array(np.array(sizes, np.int64), "sizes")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=9)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    want = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    imp = import_onnx(model)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        got = imp.module(xt).numpy()
    assert_close(got, want, fp32_bound(imp.module, xt), f"antialias {mode} {coord}")
    ep = torch.export.export(imp.module, (xt,))
    with torch.no_grad():
        np.testing.assert_array_equal(ep.module()(xt).numpy(), got)


# ---------------------------------------------------------------------------- pooling the cases found refused


def _ort_run(model: onnx.ModelProto, feeds: dict) -> list:
    ort = pytest.importorskip("onnxruntime")
    from numeric import THREADS

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)

def _matches_onnxruntime(model, x: np.ndarray, what: str) -> np.ndarray:
    """Import ``model``, run it on ``x`` and compare with onnxruntime within the graph's float32
    bound (tests/numeric.py); returns the importer's output."""
    from numeric import assert_close, fp32_bound

    (want,) = _ort_run(model, {"x": x})
    imp = import_onnx(model)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        got = imp.module(xt).numpy()
    assert_close(got, want, fp32_bound(imp.module, xt), what)
    return got



def _pool_model(op_type: str, x: np.ndarray, outputs: list[str], **attrs) -> onnx.ModelProto:
    node = oh.make_node(op_type, ["x"], outputs, name="p", **attrs)
    outs = [oh.make_tensor_value_info(o, TP.FLOAT if i == 0 else TP.INT64, None) for i, o in enumerate(outputs)]
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))], outs)
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=9)


@pytest.mark.parametrize("order", [0, 1])
def test_max_pool_indices_match_onnxruntime(order: int) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 9)).astype(np.float32)
    model = _pool_model("MaxPool", x, ["y", "i"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 0],
                        storage_order=order)
    y_want, i_want = _ort_run(model, {"x": x})
    with torch.no_grad():
        y, i = import_onnx(model).module(torch.from_numpy(x))
    np.testing.assert_array_equal(y.numpy(), y_want)
    np.testing.assert_array_equal(i.numpy(), i_want)


@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("include", [0, 1])
def test_dilated_average_pool_matches_onnxruntime(ceil: int, include: int) -> None:
    x = np.random.default_rng(1).standard_normal((1, 2, 11, 10)).astype(np.float32)
    model = _pool_model("AveragePool", x, ["y"], kernel_shape=[3, 2], strides=[2, 3], dilations=[2, 3],
                        pads=[2, 1, 1, 1], ceil_mode=ceil, count_include_pad=include)
    _matches_onnxruntime(model, x, f"dilated AveragePool ceil={ceil} include={include}")


# ---------------------------------------------------------------------------- Resize grid vs onnxruntime

_COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
           "half_pixel_symmetric"]
_GRID = ([("nearest", c, n) for c in _COORDS for n in ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]]
         + [(m, c, "round_prefer_floor") for m in ("linear", "cubic")
            for c in ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]])


@pytest.mark.parametrize("how", ["sizes", "scales"])
@pytest.mark.parametrize("mode,coord,nearest", _GRID, ids=["-".join(p) for p in _GRID])
def test_resize_modes_match_onnxruntime(mode: str, coord: str, nearest: str, how: str) -> None:
    """ONNX's cases cover a few (mode, coordinate mode, nearest mode) combinations; every one a
    vision model may carry is held to onnxruntime here, upscaling one axis and downscaling the
    other by a factor that is not a whole number."""

    x = np.random.default_rng(2).standard_normal((1, 2, 5, 8)).astype(np.float32)
    if how == "sizes":
        inputs, init = ["x", "", "", "p"], numpy_helper.from_array(np.array([1, 2, 9, 5], np.int64), "p")
    else:
        inputs, init = ["x", "", "p"], numpy_helper.from_array(np.array([1, 1, 1.8, 0.625], np.float32), "p")
    node = oh.make_node("Resize", inputs, ["y"], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)], [init])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=9)
    _matches_onnxruntime(model, x, f"Resize {mode} {coord} {nearest} by {how}")


@pytest.mark.parametrize("roi", [[0.2, 0.1, 0.9, 0.7], [-0.3, 0.4, 1.2, 1.5], [0.6, 0.9, 0.2, 0.1]],
                         ids=["inside", "beyond-edges", "flipped"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_tf_crop_and_resize_matches_onnxruntime(mode: str, roi: list[float]) -> None:
    """The crop box inside, beyond the input (extrapolation_value) and flipped."""
    x = np.random.default_rng(3).standard_normal((1, 2, 7, 9)).astype(np.float32)
    node = oh.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], mode=mode, extrapolation_value=7.5,
                        coordinate_transformation_mode="tf_crop_and_resize", axes=[2, 3])
    g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TP.FLOAT, list(x.shape))],
                      [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                      [numpy_helper.from_array(np.array([5, 12], np.int64), "sizes"),
                       numpy_helper.from_array(np.array(roi, np.float32), "roi")])
    model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=9)
    got = _matches_onnxruntime(model, x, f"tf_crop_and_resize {mode} roi {roi}")
    assert (got == np.float32(7.5)).any() == (min(roi) < 0 or max(roi) > 1)


def test_attributes_written_at_their_default_are_accepted(monkeypatch) -> None:
    """Exporters write defaults out (torch.onnx writes Resize's extrapolation_value=0.0): an
    attribute a converter does not read is accepted when it holds the schema's default, refused
    otherwise, and accepted when it cannot change an inference result (table.NOT_READ_OK)."""
    from edgekit.converters.onnx_import import table

    # a converter that reads no attribute: LeakyRelu at the schema's default alpha only
    monkeypatch.setitem(table.OPS, "LeakyRelu", table._guarded(
        lambda g, x: g.call(torch.nn.functional.leaky_relu, x, 0.01)))
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    imp = import_onnx(_single("LeakyRelu", x, 17, alpha=0.01))
    np.testing.assert_array_equal(imp.module(torch.from_numpy(x)).numpy(), np.where(x > 0, x, np.float32(0.01) * x))
    with pytest.raises(ConversionError, match=r"\(ai.onnx::LeakyRelu\): attribute alpha=0.2\d* is not implemented"):
        import_onnx(_single("LeakyRelu", x, 17, alpha=0.2))
    for sat in (0, 1):
        cast = oh.make_node("Cast", ["x"], ["y"], name="c", to=TP.INT32, saturate=sat)
        g = oh.make_graph([cast], "g", [oh.make_tensor_value_info("x", TP.FLOAT, [2, 3])],
                          [oh.make_tensor_value_info("y", TP.INT32, None)])
        imp = import_onnx(oh.make_model(g, opset_imports=[oh.make_opsetid("", 19)], ir_version=9))
        assert imp.module(torch.from_numpy(x)).dtype == torch.int32
