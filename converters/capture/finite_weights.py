"""Non-finite weight checks, run before anything executes on the weights: the parameters and
buffers of a torch module, the initializers of an ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.converters.capture.captured import STAGE
from edgekit.errors import ConversionError

__all__ = ["check_finite_weights", "check_finite_initializers"]


def check_finite_weights(module: Any, where: str) -> None:
    """Refuse weights that are not finite, naming the tensor, before anything runs on them (an
    Inf weight otherwise shows up as one artifact failing verification and another passing by
    luck). Every parameter must be finite; buffers may hold ±inf (attention masks do) but not NaN."""
    import torch

    named = [(n, t, True) for n, t in module.named_parameters()] + [(n, t, False) for n, t in module.named_buffers()]
    for name, t, is_param in named:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.device.type == "meta":
            continue
        bad = ~torch.isfinite(t) if is_param else torch.isnan(t)
        if bool(bad.any()):
            flat = int(bad.flatten().nonzero()[0])
            idx = [int(i) for i in torch.unravel_index(torch.tensor(flat), t.shape)] if t.dim() else []
            kinds = sorted({"NaN" if torch.isnan(v) else ("+Inf" if v > 0 else "-Inf") for v in t[bad][:1000]})
            raise ConversionError(STAGE, f"weight '{name}' holds {int(bad.sum())} non-finite value(s) "
                                  f"({'/'.join(kinds)}; the first at {idx})", where=where,
                                  hint="the weights are broken (a diverged training run, a bad checkpoint); "
                                       "fix them before converting")


def check_finite_initializers(model: Any, path: Path) -> None:
    """:func:`check_finite_weights` for an ONNX file: no NaN in any float initializer, no ±Inf
    in the weights of Conv/ConvTranspose/Gemm/MatMul/BatchNormalization (masks elsewhere may
    hold -inf)."""
    from onnx import TensorProto, numpy_helper

    weight_ops = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"}
    weights = {n for node in model.graph.node if node.op_type in weight_ops for n in node.input[1:]}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    for init in model.graph.initializer:
        if init.data_type not in floats or init.data_location == TensorProto.EXTERNAL:
            continue
        a = numpy_helper.to_array(init).astype(np.float64)
        bad = ~np.isfinite(a) if init.name in weights else np.isnan(a)
        if bad.any():
            idx = [int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)] if a.ndim else []
            raise ConversionError(STAGE, f"initializer '{init.name}' holds {int(bad.sum())} non-finite value(s) "
                                  f"(the first at {idx}: {a[tuple(idx)] if idx else a})", where=path,
                                  hint="the weights are broken; fix them before converting")
