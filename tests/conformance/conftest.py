"""Fixtures of the conformance suite: tiny models built once per test session, and the cases.

A case is one model in every format it exists in, the inputs to feed it, and what it must
compute (PyTorch eager outputs, or a NumPy reference). The suite runs every case on every
backend in ``edgekit.runtimes.registry.BACKENDS`` that can open one of the case's formats;
backends that cannot run on this host are skipped with the reason they give.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numeric import Bound, fp32_bounds

from edgekit.numerics import U16

from conformance_support import CASE_FORMATS, Case, backend_formats, builders, skip_unavailable, to_numpy


@pytest.fixture(scope="session")
def conformance_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """Every case, its files written by torch.onnx (dynamo), litert-torch, onnx.helper,
    the TFLite schema builder and onnxruntime's ORT-format writer."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("conformance_models")
    cases: dict[str, Case] = {}
    with torch.no_grad():
        for name, (module, args) in builders.torch_modules().items():
            files = {
                "onnx": builders.export_onnx(module, args, d / f"{name}.onnx"),
                "tflite": builders.export_tflite(module, args, d / f"{name}.tflite"),
            }
            out = module(*args)
            outs = list(out) if isinstance(out, tuple) else [out]
            # each output within the module's own float32 error on these inputs (against its float64 run)
            cases[name] = Case(name, files, [to_numpy(a) for a in args], [to_numpy(o) for o in outs],
                               fp32_bounds(module, *args), layout="NHWC" if "nhwc" in name else "NCHW")
    cases["convnet_nchw"].files["ort"] = builders.onnx_to_ort(cases["convnet_nchw"].files["onnx"], d / "convnet_nchw.ort")

    rng = np.random.default_rng(0)
    # int8 input: y = (x - zero_point) * scale, exactly: small integers times a power of two.
    exact = Bound.exact("dequantize: (q - zero_point) * 0.25 is exact in float32")
    q_tfl = rng.integers(-128, 128, (1, 4, 4, 3)).astype(np.int8)
    q_onnx = rng.integers(-128, 128, (1, 3, 4, 4)).astype(np.int8)
    cases["int8_input"] = Case(
        "int8_input",
        {"tflite": builders.tflite_dequantize(d / "int8.tflite", "int8"), "onnx": builders.onnx_dequantize(d / "int8.onnx")},
        [q_tfl], [(q_tfl.astype(np.float32) + 3) * 0.25], [exact],
        notes={"feeds": {"tflite": [q_tfl], "onnx": [q_onnx]},
               "expected": {"tflite": [(q_tfl.astype(np.float32) + 3) * 0.25],
                            "onnx": [(q_onnx.astype(np.float32) + 3) * 0.25]}})
    # float16 input: TFLite dequantizes to float32 (exact: every float16 is a float32); the ONNX
    # model computes x * w + 1 in float16, as NumPy does here: two float16 roundings, which a
    # runtime may make in another way (float32 accumulation, a fused multiply-add).
    h_tfl = rng.standard_normal((1, 4, 4, 3)).astype(np.float16)
    h_onnx = rng.standard_normal((1, 3, 4, 4)).astype(np.float16)
    w = (np.arange(48, dtype=np.float32).reshape(3, 4, 4) / 8 - 1).astype(np.float16)
    want_onnx = h_onnx * w + np.float16(1)
    scale16 = float(np.abs(h_onnx.astype(np.float32) * w.astype(np.float32)).max()) + 1  # largest |x w| and |x w + 1|
    cases["float16_input"] = Case(
        "float16_input",
        {"tflite": builders.tflite_dequantize(d / "float16.tflite", "float16"),
         "onnx": builders.onnx_float16(d / "float16_external.onnx", external="float16_weights.bin")},
        [h_tfl], [h_tfl.astype(np.float32)], [Bound.exact("float16 -> float32 is exact")],
        notes={"feeds": {"tflite": [h_tfl], "onnx": [h_onnx]},
               "expected": {"tflite": [h_tfl.astype(np.float32)], "onnx": [want_onnx]},
               "bounds": {"onnx": [Bound.roundoff(scale16, reduction=1, depth=2, unit=U16)]}})
    a, b = rng.standard_normal((2, 1, 2, 3, 4)).astype(np.float32)
    c = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) / 10
    cases["add_mul_constant"] = Case("add_mul_constant", {"tflite": builders.tflite_add_mul(d / "add_mul.tflite")},
                                     [a, b], [a + b, a * c],
                                     [Bound.exact("one float32 add: correctly rounded"),
                                      Bound.exact("one float32 multiply: correctly rounded")])
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``conformance``: every (case, backend, format) where the backend opens a format the case has;
    ``backend_name``: every registered backend."""
    formats = backend_formats()
    if "conformance" in metafunc.fixturenames:
        params = [(c, b, f) for c, have in CASE_FORMATS.items() for b, fmts in formats.items() for f in fmts if f in have]
        metafunc.parametrize("conformance", params, ids=["-".join(p) for p in params], indirect=True)
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", list(formats), indirect=True)


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    skip_unavailable(request.param)
    return request.param


@pytest.fixture
def conformance(request: pytest.FixtureRequest, conformance_cases: dict[str, Case]) -> tuple[Case, str, str, Path]:
    """(case, backend, format, model path) for one parametrised combination."""
    name, backend, fmt = request.param
    skip_unavailable(backend)
    case = conformance_cases[name]
    assert set(case.files) == set(CASE_FORMATS[name]), f"CASE_FORMATS[{name!r}] is out of date"
    return case, backend, fmt, case.files[fmt]
