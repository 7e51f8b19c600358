"""The custom torch ops that rewrite passes emit, and how each exporter lowers them: the
``edgekit::depth_to_space`` op (``pixel_shuffle_to_depth_to_space``) and the ``edgekit::prelu`` op
(``prelu_restore``), for litert-torch (TFLite), ``torch.onnx.export`` and coremltools.

``torch.ops.edgekit.depth_to_space(x, block_size)`` is depth-to-space in **DCR** order on an
NCHW tensor (TFLite's ``DEPTH_TO_SPACE``, ONNX ``DepthToSpace(mode="DCR")``)::

    out[n, c, h*r + i, w*r + j] = x[n, (i*r + j)*C + c, h, w]

PyTorch's ``pixel_shuffle`` is the CRD order (``x[n, c*r*r + i*r + j, h, w]``); the pass
``pixel_shuffle_to_depth_to_space`` permutes the producing conv's output channels so the two
agree exactly. Keeping the op opaque in the program (instead of a reshape/permute chain) is
what lets every exporter emit its native op:

- TFLite (litert-torch): a pre-convert decomposition into ``permute(NCHW→NHWC)`` →
  ``edgekit::depth_to_space_nhwc`` → ``permute(NHWC→NCHW)``, and a lowering of the NHWC op to a
  ``tfl.depth_to_space`` custom call that the LiteRT converter turns into the builtin
  ``DEPTH_TO_SPACE``. The permutes cancel against the ones litert-torch puts around its NHWC
  convolutions (the converter folds consecutive transposes), so no TRANSPOSE is left.
- ONNX: a custom translation to ``DepthToSpace(blocksize=r, mode="DCR")``.
- CoreML: MIL ``depth_to_space`` (DCR, NCHW), registered with coremltools' torch frontend.

``torch.ops.edgekit.prelu(x, weight)`` is ``aten.prelu`` kept opaque, because litert-torch
deliberately splits PReLU into RELU/MUL/SUB; the edgekit op lowers to one TFLite ``PRELU``
(alpha shaped (1, 1, C) on the NHWC tensor, by the same permute-cancelling decomposition), to
ONNX ``PRelu`` and back to ``aten.prelu`` for coremltools (which has a native prelu).

:func:`register_litert`, :func:`onnx_translations`, :func:`coreml_decompositions` and
:func:`register_coreml` are what the exporters call; importing this module registers the torch op (eager + fake kernels).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["depth_to_space_nchw", "dcr_channel_perm", "register_litert", "onnx_translations",
           "coreml_decompositions", "register_coreml", "D2S", "PRELU"]


@torch.library.custom_op("edgekit::depth_to_space", mutates_args=())
def _d2s(x: torch.Tensor, block_size: int) -> torch.Tensor:
    return depth_to_space_nchw(x, block_size).clone()


@_d2s.register_fake
def _d2s_fake(x: torch.Tensor, block_size: int) -> torch.Tensor:
    n, c, h, w = x.shape
    r = block_size
    return x.new_empty((n, c // (r * r), h * r, w * r))


@torch.library.custom_op("edgekit::depth_to_space_nhwc", mutates_args=())
def _d2s_nhwc(x: torch.Tensor, block_size: int) -> torch.Tensor:
    n, h, w, c = x.shape
    r = block_size
    oc = c // (r * r)
    return x.reshape(n, h, w, r, r, oc).permute(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, oc).clone()


@_d2s_nhwc.register_fake
def _d2s_nhwc_fake(x: torch.Tensor, block_size: int) -> torch.Tensor:
    n, h, w, c = x.shape
    r = block_size
    return x.new_empty((n, h * r, w * r, c // (r * r)))


@torch.library.custom_op("edgekit::prelu", mutates_args=())
def _prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.prelu.default(x, weight).clone()


@_prelu.register_fake
def _prelu_fake(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("edgekit::prelu_nhwc", mutates_args=())
def _prelu_nhwc(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, x * alpha)


@_prelu_nhwc.register_fake
def _prelu_nhwc_fake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


D2S = torch.ops.edgekit.depth_to_space.default
PRELU = torch.ops.edgekit.prelu.default


def depth_to_space_nchw(x: torch.Tensor, r: int) -> torch.Tensor:
    """DCR depth-to-space on NCHW as plain torch ops (the reference and the CoreML form)."""
    n, c, h, w = x.shape
    oc = c // (r * r)
    return x.reshape(n, r, r, oc, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, oc, h * r, w * r)


def dcr_channel_perm(out_channels: int, r: int) -> torch.Tensor:
    """``perm`` with ``new[k] = old[perm[k]]``: CRD channel order → DCR (old ``c·r²+i·r+j`` is new
    ``(i·r+j)·C+c``)."""
    c = out_channels // (r * r)
    k = torch.arange(out_channels)
    return (k % c) * (r * r) + k // c


_LITERT_DONE = False


def register_litert() -> None:
    """Teach litert-torch the op (idempotent): decomposition around NHWC and the TFL lowering."""
    global _LITERT_DONE
    if _LITERT_DONE:
        return
    from litert_converter.mlir import ir
    from litert_torch import fx_infra
    from litert_torch.backend.experimental.torch_tfl._lowerings import _ir_operation
    from litert_torch.backend.lowerings import registry
    from litert_torch.backend.lowerings import utils as lowering_utils

    def decomp(x: torch.Tensor, block_size: int) -> torch.Tensor:
        y = torch.ops.edgekit.depth_to_space_nhwc(x.permute(0, 2, 3, 1), block_size)
        return y.permute(0, 3, 1, 2)

    fx_infra.decomp.add_pre_convert_decomp(D2S, decomp)

    def prelu_decomp(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:  # PRELU broadcasts alpha from the last axis; only 4-D NCHW is moved
            return torch.relu(x) - weight.reshape(-1, *([1] * (x.dim() - 2))) * torch.relu(-x)
        alpha = weight.reshape(1, 1, -1)  # (1, 1, C): broadcast over N, H, W of NHWC
        return torch.ops.edgekit.prelu_nhwc(x.permute(0, 2, 3, 1), alpha).permute(0, 3, 1, 2)

    fx_infra.decomp.add_pre_convert_decomp(PRELU, prelu_decomp)

    @registry.lower(torch.ops.edgekit.prelu_nhwc.default)
    def _lower_prelu(lctx: Any, x: Any, alpha: Any) -> Any:
        return _ir_operation("tfl.prelu", results=lowering_utils.node_meta_to_ir_types(lctx.node),
                             operands=[x, alpha])

    @registry.lower(torch.ops.edgekit.depth_to_space_nhwc.default)
    def _lower(lctx: Any, x: Any, block_size: int) -> Any:
        return _ir_operation("tfl.depth_to_space", results=lowering_utils.node_meta_to_ir_types(lctx.node),
                             operands=[x],
                             attributes={"block_size": ir.IntegerAttr.get(ir.IntegerType.get_signless(32), block_size)})

    _LITERT_DONE = True


def onnx_translations() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``."""
    from onnxscript import opset18 as op

    def d2s(x: Any, block_size: int) -> Any:
        return op.DepthToSpace(x, blocksize=block_size, mode="DCR")

    def prelu(x: Any, weight: Any) -> Any:  # ONNX PRelu broadcasts the slope from the right
        return op.PRelu(x, op.Unsqueeze(weight, op.Constant(value_ints=[1, 2])))

    return {D2S: d2s, PRELU: prelu}


def coreml_decompositions() -> dict:
    """Decomposition table for ``ExportedProgram.run_decompositions`` before coremltools:
    ``edgekit.prelu`` back to ``aten.prelu`` (coremltools has a native prelu);
    ``edgekit.depth_to_space`` stays and is converted by :func:`register_coreml`."""
    return {PRELU: torch.ops.aten.prelu.default}


_COREML_DONE = False


def register_coreml() -> None:
    """Teach coremltools' torch frontend ``edgekit.depth_to_space`` → MIL ``depth_to_space`` (the
    TensorFlow-style DCR op on NCHW; idempotent)."""
    global _COREML_DONE
    if _COREML_DONE:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def edgekit_depth_to_space(context: Any, node: Any) -> None:
        x, r = _get_inputs(context, node, expected=2)
        context.add(mb.depth_to_space(x=x, block_size=int(r.val), name=node.name))

    register_torch_op(edgekit_depth_to_space, torch_alias=["edgekit.depth_to_space", "edgekit::depth_to_space",
                                                           "depth_to_space"], override=True)
    _COREML_DONE = True
