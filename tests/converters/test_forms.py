"""Exact alternative forms (``converters/exporters/forms.py``): each form rewrites only the nodes
it is for (positive and negative cases) into the same function (numeric: the lowered graph run in
torch against the model), and the functional API's defaults (pooling with the stride left out,
interpolate by a scale factor in every mode, every padding mode) go through all three exporters.

ONNX and TFLite artifacts are run (onnxruntime, LiteRT) and compared with the model. coremltools
cannot run a model on Linux, so for CoreML the test checks what can be checked here: the
conversion succeeds, the saved spec declares the output shape the model has, the ML program holds
the op the case is about (and not the one coremltools refused), and the graph the forms handed to
coremltools computes the model's function when torch runs it. No CoreML prediction is claimed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekit.converters.exporters import ExportRequest, forms
from numeric import THREADS, Bound, assert_close, assert_matches

aten = torch.ops.aten


class Fn(nn.Module):
    """A module of one functional expression (optionally with weights in ``self.w``)."""

    def __init__(self, f: Callable, w: torch.Tensor | None = None, **layers: nn.Module):
        super().__init__()
        self.f = f
        if w is not None:
            self.w = nn.Parameter(w)
        for name, layer in layers.items():
            setattr(self, name, layer)

    def forward(self, x):
        return self.f(self, x)


def _program(model: nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(model.eval(), (), kwargs={"x": x}, strict=False)


def lowered(model: nn.Module, x: torch.Tensor, fmt: str) -> tuple[list[str], Callable, set[str]]:
    """(applied forms, the lowered graph as a function of x, its op names) for ``fmt``, prepared
    the way that format's exporter prepares its graph."""
    from edgekit.converters.passes import _custom_ops

    program = _program(model, x)
    if fmt == "tflite":
        gm = program.module()
        applied = forms.lower(gm, fmt)
        fn = lambda t: gm(x=t)  # noqa: E731
    else:
        program = program.run_decompositions(_custom_ops.coreml_decompositions() if fmt == "coreml" else {})
        gm = program.graph_module
        applied = forms.lower(gm, fmt)
        fn = lambda t: program.module()(x=t)  # noqa: E731
    return applied, fn, {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}


def _count(applied: list[str], form: str) -> int:
    m = next((re.fullmatch(rf"forms\.{form}\((\d+)\)", a) for a in applied if a.startswith(f"forms.{form}(")), None)
    return int(m[1]) if m else 0


g = torch.Generator().manual_seed(0)
torch.manual_seed(0)  # the layers' initial weights
ALPHA6 = torch.linspace(0.05, 0.5, 6)
ALPHA4 = torch.linspace(0.05, 0.5, 4)

# (id, format, model, input shape, the form, count, op gone after, exact?)
POSITIVE = [
    ("alias", "coreml", Fn(lambda s, x: aten.alias(x) * 2 + x.detach()), (1, 3, 4, 4), "drop_identity", 2,
     "aten.alias.default", True),
    ("full-slice", "coreml", Fn(lambda s, x: x[:, :] + x.reshape(1, 3, 4, 4)), (1, 3, 4, 4), "drop_identity", 2,
     "aten.slice.Tensor", True),
    ("ellipsis-index", "coreml", Fn(lambda s, x: x[...] * 2 + x.permute(0, 1, 2, 3)), (1, 3, 4, 4), "drop_identity", 2,
     "aten.alias.default", True),
    ("identity-output", "coreml", Fn(lambda s, x: aten.alias(x)), (1, 3, 4, 4), "drop_identity", 1,
     "aten.alias.default", True),
    ("max-pool-k2", "coreml", Fn(lambda s, x: F.max_pool2d(x, 2)), (1, 3, 8, 8), "pool_default_stride", 1, None, True),
    ("avg-pool-k3-pad", "coreml", Fn(lambda s, x: F.avg_pool2d(x, 3, padding=1)), (1, 3, 9, 9),
     "pool_default_stride", 1, None, False),
    ("max-pool1d", "coreml", Fn(lambda s, x: F.max_pool1d(x, 2)), (1, 3, 8), "pool_default_stride", 1, None, True),
    ("prelu-rank2-after-linear", "coreml", Fn(lambda s, x: F.prelu(s.l(x.flatten(1)), s.w), ALPHA6,
                                              l=nn.Linear(8, 6)), (2, 2, 4),
     "prelu_rank4", 1, None, False),
    ("prelu-rank3", "coreml", Fn(lambda s, x: F.prelu(x, s.w), ALPHA4), (2, 4, 5), "prelu_rank4", 1, None, True),
    ("prelu-rank5", "coreml", Fn(lambda s, x: F.prelu(x, s.w), ALPHA4), (1, 4, 2, 3, 3), "prelu_rank4", 1, None, True),
    ("circular", "coreml", Fn(lambda s, x: F.pad(x, (1, 2, 2, 1), mode="circular")), (1, 3, 6, 6), "circular_pad", 1,
     None, True),
    ("circular-1d", "coreml", Fn(lambda s, x: F.pad(x, (3, 0), mode="circular")), (1, 3, 6), "circular_pad", 1,
     None, True),
    ("bicubic-x2", "coreml", Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bicubic")), (1, 3, 6, 5),
     "bicubic_matmul", 1, "aten.upsample_bicubic2d.vec", False),
    ("bicubic-x2-align", "coreml", Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=True)),
     (1, 3, 6, 5), "bicubic_matmul", 1, "aten.upsample_bicubic2d.vec", False),
    ("bicubic-size", "coreml", Fn(lambda s, x: F.interpolate(x, size=(9, 4), mode="bicubic")), (1, 3, 6, 5),
     "bicubic_matmul", 1, "aten.upsample_bicubic2d.vec", False),
    ("bicubic-x1.5", "coreml", Fn(lambda s, x: F.interpolate(x, scale_factor=1.5, mode="bicubic")), (1, 2, 6, 6),
     "bicubic_matmul", 1, "aten.upsample_bicubic2d.vec", False),
    ("nearest-exact-x2", "coreml", Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="nearest-exact")),
     (1, 3, 4, 5), "nearest_exact_integer", 1, "aten._upsample_nearest_exact2d.vec", True),
    ("avg-divisor", "coreml", Fn(lambda s, x: F.avg_pool2d(x, 2, divisor_override=3)), (1, 3, 8, 8),
     "avg_pool_divisor", 1, None, False),
    ("avg-divisor-onnx", "onnx", Fn(lambda s, x: F.avg_pool2d(x, 2, divisor_override=3)), (1, 3, 8, 8),
     "avg_pool_divisor", 1, None, False),
    ("negative-pad", "coreml", Fn(lambda s, x: F.pad(x, (-1, 2, 1, -2), value=0.5)), (1, 3, 6, 6), "negative_pad", 1,
     None, True),
    ("conv-transpose-output-padding", "tflite",
     Fn(lambda s, x: F.conv_transpose2d(x, s.w, stride=2, padding=1, output_padding=1), torch.randn(3, 4, 3, 3,
                                                                                                 generator=g)),
     (1, 3, 5, 5), "conv_transpose_output_padding", 1, None, False),
    ("conv1d-same-even-kernel", "tflite", Fn(lambda s, x: F.conv1d(x, s.w, padding="same"),
                                             torch.randn(4, 3, 4, generator=g)),
     (1, 3, 9), "conv_padding_string", 1, "aten.conv1d.padding", False),
    ("nearest-x1.5", "tflite", Fn(lambda s, x: F.interpolate(x, scale_factor=1.5)), (1, 3, 6, 4),
     "nearest_fractional", 1, "aten.upsample_nearest2d.vec", True),
]

# (id, format, model, input shape): nothing for the format's forms to do
NEGATIVE = [
    ("real-reshape", "coreml", Fn(lambda s, x: x.reshape(1, 48) * 2), (1, 3, 4, 4)),
    ("real-permute", "coreml", Fn(lambda s, x: x.permute(0, 1, 3, 2) * 2), (1, 3, 4, 4)),
    ("offset-slice", "coreml", Fn(lambda s, x: x[:, 1:] * 2), (1, 3, 4, 4)),
    ("pool-explicit-stride", "coreml", Fn(lambda s, x: F.max_pool2d(x, 2, stride=1)), (1, 3, 8, 8)),
    ("prelu-rank4", "coreml", Fn(lambda s, x: F.prelu(x, s.w), ALPHA4), (1, 4, 3, 3)),
    ("prelu-one-alpha-rank3", "coreml", Fn(lambda s, x: F.prelu(x, s.w), torch.tensor([0.2])), (1, 4, 5)),
    ("reflect", "coreml", Fn(lambda s, x: F.pad(x, (1, 2, 2, 1), mode="reflect")), (1, 3, 6, 6)),
    ("bilinear", "coreml", Fn(lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear")), (1, 3, 6, 6)),
    ("nearest-exact-x1.5", "coreml", Fn(lambda s, x: F.interpolate(x, scale_factor=1.5, mode="nearest-exact")),
     (1, 3, 6, 6)),
    ("avg-divisor-excluded-pad", "coreml",
     Fn(lambda s, x: F.avg_pool2d(x, 3, 1, 1, count_include_pad=False, divisor_override=4)), (1, 3, 6, 6)),
    ("positive-pad", "coreml", Fn(lambda s, x: F.pad(x, (1, 2, 1, 0), value=0.5)), (1, 3, 6, 6)),
    ("conv-transpose-no-output-padding", "tflite",
     Fn(lambda s, x: F.conv_transpose2d(x, s.w, stride=2, padding=1), torch.randn(3, 4, 3, 3, generator=g)),
     (1, 3, 5, 5)),
    ("conv1d-int-padding", "tflite", Fn(lambda s, x: F.conv1d(x, s.w, padding=1), torch.randn(4, 3, 3, generator=g)),
     (1, 3, 9)),
    ("nearest-x2", "tflite", Fn(lambda s, x: F.interpolate(x, scale_factor=2)), (1, 3, 6, 4)),
    ("pool-default-stride-not-for-onnx", "onnx", Fn(lambda s, x: F.max_pool2d(x, 2)), (1, 3, 8, 8)),
]


@pytest.mark.numeric
@pytest.mark.parametrize("case", POSITIVE, ids=[c[0] for c in POSITIVE])
def test_form_rewrites_its_nodes_into_the_same_function(case):
    _, fmt, model, shape, form, count, gone, exact = case
    model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    applied, fn, ops = lowered(model, x, fmt)
    assert _count(applied, form) == count, applied
    assert all(re.fullmatch(r"forms\.[a-z0-9_]+\(\d+\)", a) for a in applied), applied  # ASCII labels
    if gone:
        assert gone not in ops, ops
    with torch.no_grad():
        for inp in (x, x * 1e3, -x):
            got = fn(inp)
            got = got["output"] if isinstance(got, dict) else got
            if exact:
                assert_close(got.numpy(), model(inp).numpy(), Bound.exact("data movement / same op"), case[0])
            else:
                assert_matches(got, model, inp, what=case[0])


@pytest.mark.parametrize("case", NEGATIVE, ids=[c[0] for c in NEGATIVE])
def test_form_leaves_other_nodes_alone(case):
    _, fmt, model, shape = case
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    applied, _, _ = lowered(model, x, fmt)
    assert applied == [], applied


def test_stride_default_is_what_torch_computes():
    """The stride written out is the kernel (PyTorch's default), not 1: the lowered pool's output
    shape is the model's."""
    model = Fn(lambda s, x: F.max_pool2d(x, (3, 2)))
    x = torch.randn(1, 2, 9, 8)
    _, fn, _ = lowered(model, x, "coreml")
    assert tuple(fn(x).shape) == tuple(model(x).shape) == (1, 2, 3, 4)


def test_form_ids_per_format():
    assert set(forms.form_ids("coreml")) >= {"drop_identity", "pool_default_stride", "prelu_rank4", "circular_pad",
                                              "bicubic_matmul"}
    assert set(forms.form_ids("tflite")) >= {"nearest_fractional", "conv_padding_string"}
    assert forms.form_ids("onnx") == ["avg_pool_divisor"]
    assert all(f.id.isascii() and f.id.isidentifier() and f.what.isascii() for f in forms.FORMS)


# -- the functional API's defaults through every exporter ---------------------------------------

SWEEP: dict[str, tuple[Callable, tuple[int, ...], str | None]] = {
    # id: (expression, input shape, the Core ML op the case must become)
    "max_pool2d-k2": (lambda x: F.max_pool2d(x, 2), (1, 3, 8, 8), "max_pool"),
    "max_pool2d-k3-pad1": (lambda x: F.max_pool2d(x, 3, padding=1), (1, 3, 9, 9), "max_pool"),
    "max_pool2d-ceil": (lambda x: F.max_pool2d(x, 2, ceil_mode=True), (1, 3, 7, 7), "max_pool"),
    "avg_pool2d-k2": (lambda x: F.avg_pool2d(x, 2), (1, 3, 8, 8), "avg_pool"),
    "avg_pool2d-k3-pad1": (lambda x: F.avg_pool2d(x, 3, padding=1), (1, 3, 9, 9), "avg_pool"),
    "max_pool1d-k2": (lambda x: F.max_pool1d(x, 2), (1, 3, 8), "max_pool"),
    "avg_pool1d-k2": (lambda x: F.avg_pool1d(x, 2), (1, 3, 8), "avg_pool"),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 2), (1, 3, 8, 8), None),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (2, 4)), (1, 3, 8, 8), None),
    "nearest-x2": (lambda x: F.interpolate(x, scale_factor=2), (1, 3, 6, 6), None),
    "nearest-x1.5": (lambda x: F.interpolate(x, scale_factor=1.5), (1, 3, 6, 6), None),
    "nearest-exact-x2": (lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"), (1, 3, 6, 6), None),
    "bilinear-x2": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (1, 3, 6, 6), None),
    "bilinear-x2-align": (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True),
                          (1, 3, 6, 6), None),
    "bilinear-x1.5": (lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear"), (1, 3, 6, 6), None),
    "bicubic-x2": (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), (1, 3, 6, 6), "matmul"),
    "bicubic-x2-align": (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=True),
                         (1, 3, 6, 6), "matmul"),
    "pad-reflect": (lambda x: F.pad(x, (1, 2, 2, 1), mode="reflect"), (1, 3, 6, 6), "pad"),
    "pad-replicate": (lambda x: F.pad(x, (1, 2, 2, 1), mode="replicate"), (1, 3, 6, 6), "pad"),
    "pad-constant": (lambda x: F.pad(x, (1, 2, 2, 1), value=0.5), (1, 3, 6, 6), "pad"),
    "pad-circular": (lambda x: F.pad(x, (1, 2, 2, 1), mode="circular"), (1, 3, 6, 6), "concat"),
}
SUFFIX = {"onnx": "onnx", "tflite": "tflite", "coreml": "mlpackage"}


def _sweep_model(case: str) -> tuple[nn.Module, torch.Tensor]:
    expr, shape, _ = SWEEP[case]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    return Fn(lambda s, t: expr(t)).eval(), x


def _export(fmt: str, model: nn.Module, x: torch.Tensor, dest: Path) -> Any:
    import importlib

    exporter = importlib.import_module(f"edgekit.converters.exporters.{fmt}")
    return exporter.export(ExportRequest(_program(model, x), {"x": x}, ["x"], ["y"], dest, task="other"))


def _run_artifact(fmt: str, path: Path, x: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=THREADS)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def _mil_ops(path: Path) -> list[str]:
    from edgekit.runtimes.coreml_spec import load_spec

    spec = load_spec(path)
    return [op.type for f in spec.mlProgram.functions.values() for b in f.block_specializations.values()
            for op in b.operations]


@pytest.mark.slow
@pytest.mark.numeric
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("case", list(SWEEP))
def test_functional_defaults_run_the_same_function(case, fmt, tmp_path):
    pytest.importorskip({"onnx": "onnxruntime", "tflite": "litert_torch"}[fmt])
    model, x = _sweep_model(case)
    result = _export(fmt, model, x, tmp_path / f"m.{SUFFIX[fmt]}")
    assert all(p.isascii() for p in result.passes), result.passes
    assert_matches(_run_artifact(fmt, result.path, x.numpy()), model, x, what=f"{fmt} {case}")


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SWEEP))
def test_functional_defaults_convert_to_coreml(case, tmp_path):
    """Core ML: conversion and the spec only (coremltools does not predict on Linux)."""
    pytest.importorskip("coremltools")
    from edgekit.runtimes.coreml_spec import spec_io

    model, x = _sweep_model(case)
    result = _export("coreml", model, x, tmp_path / "m.mlpackage")
    assert all(p.isascii() for p in result.passes), result.passes
    _, outputs = spec_io(result.path)
    assert outputs[0]["shape"] == list(model(x).shape), outputs
    want = SWEEP[case][2]
    mil = _mil_ops(result.path)
    if want:
        assert want in mil, mil
    assert not any("upsample_bicubic" in op or op == "alias" for op in mil), mil


@pytest.mark.numeric
@pytest.mark.parametrize("case", list(SWEEP))
def test_coreml_lowered_graph_is_the_same_function(case):
    """What the CoreML forms hand to coremltools computes the model's function (run by torch)."""
    model, x = _sweep_model(case)
    _, fn, ops = lowered(model, x, "coreml")
    assert "aten.upsample_bicubic2d.vec" not in ops
    with torch.no_grad():
        got = fn(x)
        assert_matches(got["output"] if isinstance(got, dict) else got, model, x, what=f"coreml forms {case}")


# -- the seen failures, end to end on CoreML ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["prelu-rank2-after-linear", "prelu-rank3", "alias", "ellipsis-index", "full-slice"])
def test_coreml_converts_what_it_refused(name, tmp_path):
    """Per-channel PReLU on rank 2/3 (coremltools: "rank 3 or rank 5 input is only supported when
    all the values of alpha are same") and alias/identity views ("cannot express op 'alias'";
    ``x[...]`` in attention code exports as ``aten.alias``)."""
    pytest.importorskip("coremltools")
    from edgekit.runtimes.coreml_spec import spec_io

    _, _, model, shape, form, count, _, _ = next(c for c in POSITIVE if c[0] == name)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    result = _export("coreml", model.eval(), x, tmp_path / "m.mlpackage")
    assert f"forms.{form}({count})" in result.passes
    assert spec_io(result.path)[1][0]["shape"] == list(model(x).shape)
    mil = _mil_ops(result.path)
    assert "alias" not in mil
    if form == "prelu_rank4":
        assert "prelu" in mil, mil  # per-channel, not a leaky_relu with one alpha
