"""How a capture computes the source's outputs from NumPy inputs: the eval-mode module (and a
float64 copy of it, verification's second opinion), or onnxruntime on the original ``.onnx``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["torch_reference", "torch_reference64", "onnx_reference"]


def torch_reference(module: Any) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The source's outputs: the eval-mode module as captured."""

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.utils._pytree as pytree

        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [t.detach().cpu().numpy() for t in pytree.tree_leaves(out)]

    return run


def torch_reference64(module: Any) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The source in float64 (a copy made on first use): verification's second opinion for
    ill-conditioned models."""
    state: dict[str, Any] = {}

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.utils._pytree as pytree

        if "m" not in state:
            state["m"] = copy.deepcopy(module).double()
        xs = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        with torch.no_grad():
            out = state["m"](*[x.double() if x.is_floating_point() else x for x in xs])
        return [t.detach().cpu().numpy() for t in pytree.tree_leaves(out)]

    return run


def onnx_reference(path: Path) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The source's outputs: onnxruntime (through ``edgekit.load``) on the original file."""
    state: dict[str, Any] = {}

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if "session" not in state:
            import edgekit

            state["session"] = edgekit.load(path, backend="onnxruntime")
        s = state["session"]
        out = s.run({spec.name: a for spec, a in zip(s.inputs, arrays)})
        return [out[spec.name] for spec in s.outputs]

    return run
