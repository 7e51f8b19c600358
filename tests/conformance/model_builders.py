"""Tiny models for the runtime tests, written by the tools users convert with.

- PyTorch modules exported by ``torch.onnx.export(dynamo=True)`` (weights as external data,
  the exporter's default), converted by ``litert_torch.convert`` and by ``coremltools.convert``
  (an ML Program computing in float16, with float32 inputs and outputs).
- Hand-built files for what those exporters do not emit at model boundaries: an int8 and a
  float16 input, built with ``onnx.helper`` and with the TFLite flatbuffer schema that
  ``ai_edge_litert`` ships (``schema_py_generated``, object API).

Heavy imports (torch, litert_torch, onnx, coremltools) stay inside the functions: only the
case generator (``make_cases.py``, which writes the committed conformance cases) and tests that
build files on the fly call them. Run as a script to write the hand-built models into a folder:
``python model_builders.py out/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np


# -- PyTorch models ---------------------------------------------------------------------------------
def torch_modules() -> dict[str, tuple[Any, tuple]]:
    """name -> (module in eval mode, example args). Seeds fixed: the same weights every run."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class ConvNet(nn.Module):
        """Conv-BN-ReLU6, depthwise conv, global pool and a linear head: a MobileNet in miniature."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = torch.nn.functional.relu6(self.bn(self.conv(x)))
            y = self.dw(y)
            return self.fc(y.mean(dim=(2, 3)))

    class ConvNHWC(nn.Module):
        """Takes and returns NHWC: the layout NPUs want at the boundary."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)

    class MultiIO(nn.Module):
        """Two inputs, two outputs of different ranks."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, image, gain):
            z = self.conv(image)
            return torch.sigmoid(z) * gain, z.amax(dim=(2, 3))

    net = ConvNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    return {
        "convnet_nchw": (net.eval(), (torch.randn(1, 3, 16, 16, generator=g),)),
        "conv_nhwc": (ConvNHWC().eval(), (torch.randn(1, 12, 10, 3, generator=g),)),
        "multi_io": (MultiIO().eval(), (torch.randn(1, 3, 8, 8, generator=g), torch.rand(1, 4, 1, 1, generator=g))),
    }


def export_onnx(module: Any, args: tuple, path: Path, input_names: list[str] | None = None) -> Path:
    """``torch.onnx.export(dynamo=True)`` with weights in an external data file beside ``path``."""
    import torch

    torch.onnx.export(module, args, str(path), dynamo=True, external_data=True, input_names=input_names,
                      verbose=False)
    return path


def export_tflite(module: Any, args: tuple, path: Path) -> Path:
    import litert_torch

    litert_torch.convert(module, args).export(str(path))
    return path


def export_coreml(module: Any, args: tuple, path: Path, input_names: list[str], output_names: list[str]) -> Path:
    """``coremltools.convert`` of the traced module to an ML Program ``.mlpackage`` (macOS 13 and
    later) computing in float16 (the ML Program default, stated here), with float32 inputs and
    outputs named ``input_names`` / ``output_names``."""
    import coremltools as ct
    import torch

    traced = torch.jit.trace(module, args)
    model = ct.convert(
        traced,
        inputs=[ct.TensorType(name=n, shape=tuple(a.shape), dtype=np.float32) for n, a in zip(input_names, args)],
        outputs=[ct.TensorType(name=n, dtype=np.float32) for n in output_names],
        convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.macOS13,
    )
    model.save(str(path))
    return path


# -- hand-built TFLite --------------------------------------------------------------------------------
def _tflite(path: Path, tensors: list[dict], ops: list[tuple[int, list[int], list[int]]],
            inputs: list[int], outputs: list[int]) -> Path:
    """Write a one-subgraph TFLite model. ``tensors``: dicts of name, shape, type and optional
    scale/zero_point; ``ops``: (builtin code, input tensor ids, output tensor ids)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    model.description = "edgekit test model"
    model.buffers = [s.BufferT()]  # buffer 0: the empty sentinel
    codes = sorted({op[0] for op in ops})
    model.operatorCodes = []
    for c in codes:
        oc = s.OperatorCodeT()
        oc.builtinCode = c
        oc.deprecatedBuiltinCode = min(c, 127)
        oc.version = 1
        model.operatorCodes.append(oc)
    sg = s.SubGraphT()
    sg.tensors = []
    for t in tensors:
        tt = s.TensorT()
        tt.name = t["name"]
        tt.shape = list(t["shape"])
        if "signature" in t:  # -1 marks a dynamic dimension
            tt.shapeSignature = list(t["signature"])
        tt.type = t["type"]
        tt.buffer = 0
        if "scale" in t:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [t["scale"]], [t["zero_point"]]
            tt.quantization = q
        if "data" in t:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(t["data"]).tobytes(), np.uint8)
            tt.buffer = len(model.buffers)
            model.buffers.append(b)
        sg.tensors.append(tt)
    sg.operators = []
    for code, ins, outs in ops:
        op = s.OperatorT()
        op.opcodeIndex = codes.index(code)
        op.inputs, op.outputs = list(ins), list(outs)
        sg.operators.append(op)
    sg.inputs, sg.outputs = list(inputs), list(outputs)
    sg.name = "main"
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def tflite_dequantize(path: Path, dtype: str = "int8", shape: tuple = (1, 4, 4, 3), scale: float = 0.25,
                      zero_point: int = -3) -> Path:
    """input (int8 with scale/zero point, or float16) -> DEQUANTIZE -> float32 output."""
    from ai_edge_litert import schema_py_generated as s

    tin: dict[str, Any] = {"name": "x", "shape": shape,
                           "type": s.TensorType.INT8 if dtype == "int8" else s.TensorType.FLOAT16}
    if dtype == "int8":
        tin.update(scale=scale, zero_point=zero_point)
    tout = {"name": "y", "shape": shape, "type": s.TensorType.FLOAT32}
    return _tflite(path, [tin, tout], [(s.BuiltinOperator.DEQUANTIZE, [0], [1])], [0], [1])


def tflite_add_mul(path: Path, shape: tuple = (1, 2, 3, 4), dynamic_batch: bool = False) -> Path:
    """Two float32 inputs a, b -> outputs a + b and a * c (c a constant tensor, broadcast over
    the batch); ``dynamic_batch`` marks the first dimension of a, b and the outputs as -1."""
    from ai_edge_litert import schema_py_generated as s

    f32 = s.TensorType.FLOAT32
    c = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 10
    dyn = {"signature": (-1, *shape[1:])} if dynamic_batch else {}
    tensors = [{"name": "a", "shape": shape, "type": f32, **dyn}, {"name": "b", "shape": shape, "type": f32, **dyn},
               {"name": "c", "shape": shape, "type": f32, "data": c},
               {"name": "sum", "shape": shape, "type": f32, **dyn}, {"name": "prod", "shape": shape, "type": f32, **dyn}]
    ops = [(s.BuiltinOperator.ADD, [0, 1], [3]), (s.BuiltinOperator.MUL, [0, 2], [4])]
    return _tflite(path, tensors, ops, [0, 1], [3, 4])


# -- hand-built ONNX -------------------------------------------------------------------------------------
def _save_onnx(model: Any, path: Path, external: str | None = None) -> Path:
    import onnx

    onnx.checker.check_model(model)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=external, size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def onnx_dequantize(path: Path, shape: tuple = (1, 3, 4, 4), scale: float = 0.25, zero_point: int = -3) -> Path:
    """int8 input -> DequantizeLinear(scale, zero point) -> float32 output."""
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["x", "scale", "zp"], ["y"])], "dequantize",
        [helper.make_tensor_value_info("x", TensorProto.INT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
         helper.make_tensor("zp", TensorProto.INT8, [], [zero_point])])
    return _save_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def onnx_float16(path: Path, shape: tuple = (1, 3, 4, 4), external: str | None = None,
                 batch: str | None = None) -> Path:
    """float16 input x -> x * w + 1 (w a float16 constant) -> float16 output; optionally
    with the constant in an external data file, and a dynamic (named) first dimension."""
    from onnx import TensorProto, helper, numpy_helper

    w = (np.arange(np.prod(shape[1:]), dtype=np.float32).reshape(shape[1:]) / 8 - 1).astype(np.float16)
    io_shape = (batch, *shape[1:]) if batch else shape
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "one"], ["y"])], "float16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, io_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, io_shape)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(1.0, np.float16), "one")])
    return _save_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path, external)


def onnx_to_ort(onnx_path: Path, ort_path: Path) -> Path:
    """Convert to the ORT flatbuffer format, as onnxruntime's own converter does (basic optimisations)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(ort_path)
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return ort_path


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "int8_dequantize.tflite": lambda d: tflite_dequantize(d / "int8_dequantize.tflite", "int8"),
    "float16_dequantize.tflite": lambda d: tflite_dequantize(d / "float16_dequantize.tflite", "float16"),
    "add_mul.tflite": lambda d: tflite_add_mul(d / "add_mul.tflite"),
    "add_mul_dynamic.tflite": lambda d: tflite_add_mul(d / "add_mul_dynamic.tflite", dynamic_batch=True),
    "int8_dequantize.onnx": lambda d: onnx_dequantize(d / "int8_dequantize.onnx"),
    "float16.onnx": lambda d: onnx_float16(d / "float16.onnx"),
    "float16_external.onnx": lambda d: onnx_float16(d / "float16_external.onnx", external="float16_weights.bin"),
    "float16_dynamic.onnx": lambda d: onnx_float16(d / "float16_dynamic.onnx", batch="batch"),
}


if __name__ == "__main__":  # python model_builders.py OUT_DIR
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_models")
    out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        print(build(out))
