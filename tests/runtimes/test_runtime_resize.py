"""Sessions at other input sizes: ``Session.output_shapes_for`` / ``resizable`` on both backends.

LiteRT resizes the interpreter's input, even a declared-static one, in an interpreter per size:
for generated fully convolutional graphs the result equals the same model exported at that size;
graphs that hold their size in constants (pixel shuffle's reshapes, a resize to a fixed size)
refuse or keep their output shape, and ``edgekit.tiling`` then tiles. onnxruntime resizes only
dynamic dims, and finds by one run the sizes a dynamic graph cannot take.
"""

from __future__ import annotations

import numpy as np
import pytest
from numeric import THREADS, assert_close, assert_matches, fp32_bound

import edgekit
from edgekit.errors import FeedError
from edgekit.runtimes.base import TensorSpec
from edgekit.runtimes.bundle_session import LayoutSession
from edgekit.runtimes.null import session_from_callable
from edgekit.tiling import ImageRunner

pytestmark = pytest.mark.numeric

EXPORTED = (32, 32)


def _modules():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Denoise(nn.Module):
        """Scale 1: conv 5x5 → ReLU → dilated conv 3x3 → conv 1x1."""

        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 6, 5, padding=2), nn.Conv2d(6, 6, 3, padding=2, dilation=2), \
                nn.Conv2d(6, 3, 1)

        def forward(self, x):
            return self.c(torch.relu(self.b(torch.relu(self.a(x)))))

    class DeconvSR(nn.Module):
        """x2 by a transposed convolution (LiteRT's TRANSPOSE_CONV, which XNNPACK re-plans per size)."""

        def __init__(self):
            super().__init__()
            self.a, self.up = nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(8, 3, 2, stride=2)

        def forward(self, x):
            return self.up(torch.relu(self.a(x)))

    class ShuffleSR(nn.Module):
        """x2 by pixel shuffle: litert-torch writes reshapes with constant shapes."""

        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x):
            return nn.functional.pixel_shuffle(self.a(x), 2)

    class NearestSR(nn.Module):
        """x2 by nearest upsampling: RESIZE_NEAREST_NEIGHBOR to a constant size."""

        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return nn.functional.interpolate(self.a(x), scale_factor=2, mode="nearest")

    torch.manual_seed(0)
    return {"denoise": Denoise().eval(), "deconv_sr": DeconvSR().eval(), "shuffle_sr": ShuffleSR().eval(),
            "nearest_sr": NearestSR().eval()}


@pytest.fixture(scope="module")
def litert_models(tmp_path_factory):
    pytest.importorskip("litert_torch")
    import torch

    from conformance.model_builders import export_tflite

    root = tmp_path_factory.mktemp("resize")
    modules = _modules()
    files = {}
    for name, m in modules.items():
        files[name] = export_tflite(m, (torch.rand(1, 3, *EXPORTED),), root / f"{name}.tflite")
    return modules, files, root


def _x(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, h, w), dtype=np.float32)


@pytest.mark.parametrize("name,size", [("denoise", (24, 40)), ("denoise", (45, 19)), ("deconv_sr", (40, 24)),
                                       ("deconv_sr", (33, 47))])
def test_litert_resizes_a_static_fully_convolutional_graph_like_an_export_at_that_size(litert_models, name, size):
    import torch

    from conformance.model_builders import export_tflite

    modules, files, root = litert_models
    model = modules[name]
    x = _x(*size, seed=size[0])
    at_size = export_tflite(model, (torch.from_numpy(x),), root / f"{name}_{size[0]}x{size[1]}.tflite")
    with edgekit.load(files[name], threads=THREADS) as s, edgekit.load(at_size, threads=THREADS) as ref:
        n = s.inputs[0].name
        assert s.inputs[0].shape == (1, 3, *EXPORTED)
        with pytest.raises(FeedError, match="the model wants"):  # not before the session said yes
            s.run({n: x})
        scale = 2 if name.endswith("_sr") else 1
        assert s.output_shapes_for({n: x.shape}) == {s.outputs[0].name: (1, 3, size[0] * scale, size[1] * scale)}
        assert s.resizable(x.shape)
        got = next(iter(s.run({n: x}).values()))
        want = next(iter(ref.run({ref.inputs[0].name: x}).values()))
    bound = fp32_bound(model, x)
    assert_close(got, want, bound, f"{name} resized to {size} vs exported at {size}")
    assert_matches(got, model, x, what=f"{name} resized to {size} vs torch")


def test_litert_keeps_interpreters_per_size_and_the_declared_one_untouched(litert_models):
    modules, files, _ = litert_models
    model = modules["deconv_sr"]
    sizes = [(24, 40), EXPORTED, (40, 24), (16, 16), (24, 40), (20, 52), (40, 24), EXPORTED]  # > SIZES_KEPT distinct
    with edgekit.load(files["deconv_sr"], threads=THREADS) as s:
        n = s.inputs[0].name
        for i, size in enumerate(sizes):
            x = _x(*size, seed=i)
            assert s.resizable(x.shape)
            assert_matches(next(iter(s.run({n: x}).values())), model, x, what=f"run {i} at {size}")


@pytest.mark.parametrize("name", ["shuffle_sr", "nearest_sr"])
def test_litert_graphs_with_constant_shapes_are_tiled_not_resized(litert_models, name):
    modules, files, _ = litert_models
    model = modules[name]
    with edgekit.load(files[name], threads=THREADS) as s:
        n, out = s.inputs[0].name, s.outputs[0].name
        shapes = s.output_shapes_for({n: (1, 3, 48, 80)})
        if name == "shuffle_sr":  # the reshapes cannot take the new element count: allocation fails
            assert shapes is None and not s.resizable((1, 3, 48, 80))
        else:  # allocates, but the output keeps the exported size: not a run at 48x80
            assert shapes == {out: (1, 3, 2 * EXPORTED[0], 2 * EXPORTED[1])}
        x = _x(*EXPORTED)  # a refused size leaves the session as it was
        assert_matches(s.run({n: x})[out], model, x, what="declared size after a refused resize")
        runner = ImageRunner.for_session(s, {}, "super-resolve")
        plan = runner.plan(48, 80)
        assert plan.mode == "tiled" and plan.grid.overlap == 1 and plan.grid.shape == (3, 2)
        big = _x(48, 80, seed=5)
        assert_matches(runner.run({n: big})[out], model, big, what=f"{name} tiled 3x2 vs torch on the whole image")


def test_the_runner_resizes_litert_when_the_outputs_scale(litert_models):
    modules, files, _ = litert_models
    with edgekit.load(files["deconv_sr"], threads=THREADS) as s:
        runner = ImageRunner.for_session(s, {}, "super-resolve")
        plan = runner.plan(48, 80)
        assert plan.mode == "resized" and plan.note == "resized: the runtime's input resized from 32x32 to 80x48"
        x = _x(48, 80, seed=2)
        assert_matches(runner.run({s.inputs[0].name: x})[s.outputs[0].name], modules["deconv_sr"], x,
                       what="deconv_sr through the runner at 80x48")
        tiled = ImageRunner.for_session(s, {"resize": "tile"}, "super-resolve").plan(48, 80)
        assert tiled.mode == "tiled"  # the tile policy never resizes


# -- onnxruntime ---------------------------------------------------------------------------------------
def _onnx_sr(path, weights, bias, dims=("H", "W"), skip=False):
    """Conv 3x3 (3 → 12) → DepthToSpace x2 (CRD: pixel shuffle), input H and W as ``dims``;
    ``skip`` adds a stride-2 branch back to the input size (odd sizes cannot add up)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = dims
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["c"], ["y0" if skip else "y"], blocksize=2, mode="CRD")]
    inits = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")]
    if skip:
        nodes += [helper.make_node("Conv", ["x", "w", "b"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2]),
                  helper.make_node("DepthToSpace", ["d"], ["d2"], blocksize=2, mode="CRD"),
                  helper.make_node("Resize", ["d2", "", "s"], ["d4"], mode="nearest"),
                  helper.make_node("Add", ["y0", "d4"], ["y"])]
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s"))
    out_dims = [None, None] if isinstance(h, str) else [2 * h, 2 * w]
    g = helper.make_graph(nodes, "sr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, *out_dims])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


@pytest.fixture(scope="module")
def onnx_sr(tmp_path_factory):
    pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 12, 3, padding=1).eval()
    model = torch.nn.Sequential(conv, torch.nn.PixelShuffle(2)).eval()
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    root = tmp_path_factory.mktemp("onnx_sr")
    return model, {"dynamic": _onnx_sr(root / "dyn.onnx", w, b), "static": _onnx_sr(root / "st.onnx", w, b, (16, 16)),
                   "skip": _onnx_sr(root / "skip.onnx", w, b, skip=True)}


@pytest.mark.parametrize("size", [(16, 16), (31, 45), (64, 20)])
def test_onnxruntime_runs_dynamic_dims_at_any_size(onnx_sr, size):
    model, files = onnx_sr
    with edgekit.load(files["dynamic"], backend="onnxruntime", threads=THREADS) as s:
        assert s.output_shapes_for({"x": (1, 3, *size)}) == {"y": (1, 3, 2 * size[0], 2 * size[1])}
        runner = ImageRunner.for_session(s, {"input_size": [16, 16]}, "super-resolve")
        plan = runner.plan(*size)
        assert plan.mode == "native"
        x = _x(*size, seed=size[1])
        assert_matches(runner.run({"x": x})["y"], model, x, what=f"dynamic ONNX at {size}")


def test_onnxruntime_never_resizes_a_static_dim_and_tiles_instead(onnx_sr):
    model, files = onnx_sr
    with edgekit.load(files["static"], backend="onnxruntime", threads=THREADS) as s:
        assert not s.resizable((1, 3, 20, 24)) and s.output_shapes_for({"x": (1, 3, 20, 24)}) is None
        with pytest.raises(FeedError, match="the model wants"):
            s.run({"x": _x(20, 24)})
        runner = ImageRunner.for_session(s, {}, "super-resolve")
        plan = runner.plan(20, 24)
        assert plan.mode == "tiled" and plan.grid.overlap == 1
        x = _x(20, 24, seed=3)
        assert_matches(runner.run({"x": x})["y"], model, x, what="static ONNX tiled")


def test_onnxruntime_finds_the_sizes_a_dynamic_graph_cannot_take(onnx_sr):
    _, files = onnx_sr
    with edgekit.load(files["skip"], backend="onnxruntime", threads=THREADS) as s:
        assert s.output_shapes_for({"x": (1, 3, 32, 40)}) == {"y": (1, 3, 64, 80)}
        assert s.output_shapes_for({"x": (1, 3, 33, 40)}) is None  # 2 * ceil(33 / 2) rows do not add to 66
        with pytest.raises(FeedError, match="output_shapes_for needs a shape for every input"):
            s.output_shapes_for({"z": (1, 3, 8, 8)})


# -- wrappers ------------------------------------------------------------------------------------------
def test_a_layout_session_asks_its_artifact_in_the_artifact_layout():
    seen = []
    inner = session_from_callable(lambda feed: {"y": np.repeat(np.repeat(feed["x"], 2, 1), 2, 2)},
                                  [TensorSpec("x", (1, None, None, 3), "float32", "NHWC")],
                                  [TensorSpec("y", (1, None, None, 3), "float32", "NHWC")])
    asked = inner.output_shapes_for

    def spy(shapes):
        seen.append(dict(shapes))
        return asked(shapes)

    inner.output_shapes_for = spy
    s = LayoutSession(inner, {"x": "NCHW", "y": "NCHW"})
    assert s.output_shapes_for({"x": (1, 3, 10, 12)}) == {"y": (1, 3, None, None)}
    assert seen == [{"x": (1, 10, 12, 3)}]
    assert s.output_shapes_for({"x": (1, 4, 10, 12)}) is None  # a 4-channel feed: not this model
