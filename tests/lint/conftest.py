"""Small models for the lint tests, built once per session from PyTorch with the real exporters.

TFLite (litert-torch 0.10):
- ``conv3d``: Conv3d 4->8 (3x3x3) + ReLU on (1, 4, 3, 8, 8): CONV_3D and rank-5 tensors.
- ``pixel_shuffle_nchw`` / ``pixel_shuffle_nhwc``: conv 3->12 + pixel_shuffle(2); litert-torch
  lowers the shuffle to RESHAPE/TRANSPOSE (no DEPTH_TO_SPACE); NCHW I/O adds boundary TRANSPOSEs,
  ``to_channel_last_io`` removes them.
- ``plain_nchw`` / ``plain_nhwc``: conv 3->8 (ReLU) -> conv 8->16 stride 2 (ReLU) -> depthwise 3x3
  -> nearest x2; litert-torch writes RESIZE_NEAREST_NEIGHBOR with half_pixel_centers=True.
- ``clean``: ``plain_nhwc``'s convs plus a DEPTH_TO_SPACE (block 2) appended to the flatbuffer and
  the resize's half_pixel_centers cleared (what ``upsample_nearest_native`` and
  ``pixel_shuffle_to_depth_to_space`` produce); checked to run in LiteRT and to match PyTorch.
- ``gather``: x[:, [2, 0, 1]] with NHWC I/O (litert-torch: TRANSPOSE, GATHER_ND, TRANSPOSE).

ONNX (torch.onnx dynamo): ``conv3d``, ``gather``, ``dynamic`` (batch and height dynamic), ``sr``
(conv + pixel shuffle: DepthToSpace CRD), ``nhwc_clean`` (NHWC input transposed once at the
boundary, conv, ReLU, transposed back).

Core ML (coremltools ML program): ``conv3d`` and ``clean`` (conv + ReLU), when coremltools is present.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from quiet import quiet


def _modules():
    import torch
    from torch import nn

    class Conv3dNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(4, 8, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x))

    class PixelShuffleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x):
            return nn.functional.pixel_shuffle(self.conv(x), 2)

    class PlainNet(nn.Module):
        def __init__(self, upsample: bool = True):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.upsample = upsample

        def forward(self, x):
            x = self.dw(torch.relu(self.c2(torch.relu(self.c1(x)))))
            return nn.functional.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    class GatherNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("idx", torch.tensor([2, 0, 1]))

        def forward(self, x):
            return x[:, self.idx] * 2.0

    class NhwcNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):  # x: NHWC
            return torch.relu(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)

    return Conv3dNet, PixelShuffleNet, PlainNet, GatherNet, NhwcNet


def plain_net():
    """The PlainNet behind ``tflite_plain_nhwc`` and ``tflite_clean`` (seeded: tests rebuild it)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return _modules()[2]().eval()


@pytest.fixture(scope="session")
def plain_torch_net():
    pytest.importorskip("torch")
    return plain_net()


@pytest.fixture(scope="session")
def lint_models(tflite_models, onnx_models) -> dict[str, Path]:
    """The TFLite and ONNX fixture files by key (``tflite_conv3d``, ``onnx_sr``...)."""
    return {**tflite_models, **onnx_models}


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = tmp_path_factory.mktemp("lint_tflite")
    Conv3dNet, PixelShuffleNet, PlainNet, GatherNet, _ = _modules()
    torch.manual_seed(0)
    files: dict[str, Path] = {}
    x = torch.randn(1, 3, 16, 16)

    def tfl(name, module, sample, nhwc=False):
        module = module.eval()
        if nhwc:
            module = litert_torch.to_channel_last_io(module, args=[0], outputs=[0])
            sample = sample.permute(0, 2, 3, 1).contiguous()
        path = root / f"{name}.tflite"
        with quiet():
            litert_torch.convert(module, (sample,)).export(str(path))
        files[f"tflite_{name}"] = path

    tfl("conv3d", Conv3dNet(), torch.randn(1, 4, 3, 8, 8))
    tfl("pixel_shuffle_nchw", PixelShuffleNet(), x)
    tfl("pixel_shuffle_nhwc", PixelShuffleNet(), x, nhwc=True)
    tfl("plain_nchw", PlainNet(), x)
    tfl("plain_nhwc", plain_net(), x, nhwc=True)
    tfl("gather", GatherNet(), x, nhwc=True)
    files["tflite_clean"] = _append_depth_to_space(files["tflite_plain_nhwc"], root / "clean.tflite")
    return files


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("lint_onnx")
    Conv3dNet, PixelShuffleNet, PlainNet, GatherNet, NhwcNet = _modules()
    torch.manual_seed(0)
    files: dict[str, Path] = {}
    x = torch.randn(1, 3, 16, 16)

    def onnx(name, module, sample, dynamic_shapes=None):
        path = root / f"{name}.onnx"
        with quiet():
            torch.onnx.export(module.eval(), (sample,), str(path), dynamo=True, external_data=False,
                              input_names=["x"], dynamic_shapes=dynamic_shapes)
        files[f"onnx_{name}"] = path

    onnx("conv3d", Conv3dNet(), torch.randn(1, 4, 3, 8, 8))
    onnx("gather", GatherNet(), x)
    onnx("sr", PixelShuffleNet(), x)
    onnx("nhwc_clean", NhwcNet(), x.permute(0, 2, 3, 1).contiguous())
    dim = torch.export.Dim
    onnx("dynamic", PlainNet(upsample=False), x, {"x": {0: dim("batch", max=8), 2: dim("height", min=8, max=64)}})
    return files


@pytest.fixture(scope="session")
def coreml_models(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    with quiet():
        ct = pytest.importorskip("coremltools")
    root = tmp_path_factory.mktemp("lint_coreml")
    Conv3dNet, _, PlainNet, _, _ = _modules()
    torch.manual_seed(0)
    files: dict[str, Path] = {}
    for name, module, sample in (("conv3d", Conv3dNet(), torch.randn(1, 4, 3, 8, 8)),
                                 ("clean", PlainNet(upsample=False), torch.randn(1, 3, 16, 16))):
        with quiet():
            traced = torch.jit.trace(module.eval(), sample)
            ml = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=sample.shape)], convert_to="mlprogram")
            ml.save(str(root / f"{name}.mlpackage"))
        files[f"coreml_{name}"] = root / f"{name}.mlpackage"
    return files


def _append_depth_to_space(src: Path, dst: Path) -> Path:
    """``src`` with its resize's half_pixel_centers cleared and a DEPTH_TO_SPACE (block 2, DCR)
    appended after the last op, as the NPU passes would leave a super-resolution tail."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    graph = model.subgraphs[0]
    for op in graph.operators:
        if isinstance(op.builtinOptions, schema.ResizeNearestNeighborOptionsT):
            op.builtinOptions.halfPixelCenters = False
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.DEPTH_TO_SPACE
    code.deprecatedBuiltinCode = schema.BuiltinOperator.DEPTH_TO_SPACE
    code.version = 1
    model.operatorCodes.append(code)
    old_out = int(graph.outputs[0])
    n, h, w, c = (int(d) for d in graph.tensors[old_out].shape)
    buffer = schema.BufferT()
    model.buffers.append(buffer)
    out = schema.TensorT()
    out.shape = np.array([n, h * 2, w * 2, c // 4], dtype=np.int32)
    out.type = schema.TensorType.FLOAT32
    out.buffer = len(model.buffers) - 1
    out.name = "depth_to_space"
    graph.tensors.append(out)
    new_out = len(graph.tensors) - 1
    op = schema.OperatorT()
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs = np.array([old_out], dtype=np.int32)
    op.outputs = np.array([new_out], dtype=np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.DepthToSpaceOptions
    op.builtinOptions = schema.DepthToSpaceOptionsT()
    op.builtinOptions.blockSize = 2
    graph.operators.append(op)
    graph.outputs = np.array([new_out], dtype=np.int32)
    for sig in model.signatureDefs or []:
        for t in sig.outputs or []:
            if t.tensorIndex == old_out:
                t.tensorIndex = new_out
    flatbuffer_utils.write_model(model, str(dst))
    return dst


@pytest.fixture(scope="session")
def video_decoder_tflite(tmp_path_factory) -> Path:
    """``edgekit.zoo.create("video_decoder_ref")`` (tiny config) exported by litert-torch as is, on a
    (1, 16, 2, 8, 8) latent: what a user gets without edgekit's NPU pipeline."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from edgekit import zoo

    model = zoo.create("video_decoder_ref").eval()
    latent = torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("lint_vd") / "video_decoder_ref.tflite"
    with quiet():
        litert_torch.convert(model, (latent,)).export(str(path))
    return path
