"""What capture hands on: :class:`Captured` (a source made ready for export) and the stage name
its errors carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgekit.converters.preprocess import FoldSpec
from edgekit.errors import UsageError

__all__ = ["STAGE", "Captured"]

STAGE = "capture"


@dataclass
class Captured:
    """A source made ready for export.

    ``module`` is the eval-mode deep copy of the source (the verification reference; for an
    ONNX source the imported torch module, or None when no torch path is needed);
    ``reference`` computes the source's outputs from NumPy inputs (the deep copy, or
    onnxruntime on the original ``.onnx``). ``preprocess`` is the manifest's unfolded
    pre-/post-processing (layout, value range, mean/std, colour order, labels, scale factor).
    """

    name: str
    module: Any
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    input_layouts: list[str | None]
    output_layouts: list[str | None]
    task: str
    source: dict[str, Any]
    card: Any = None
    preprocess: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None
    reference64: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None
    # the float32 run paired with reference64 in the measured bound when it is not ``reference``
    # (an ONNX source: the imported module's, while ``reference`` is onnxruntime on the file)
    reference32_for64: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(t.shape) for t in self.example_inputs]

    def fold_spec(self, input_layout: str = "NCHW") -> FoldSpec:
        """The :class:`FoldSpec` of this source's normalisation, or a usage error naming what is
        missing (folding needs an image input of rank 4 and a known value range)."""
        shapes = self.input_shapes
        if len(shapes) != 1 or len(shapes[0]) != 4:
            raise UsageError(f"--fold-preprocess needs one image input (N, C, H, W); {self.name} takes "
                             f"{', '.join(str(list(s)) for s in shapes)}", hint="convert without --fold-preprocess")
        p = self.preprocess
        if p.get("value_range") is None and p.get("mean") is None:
            raise UsageError(f"--fold-preprocess needs the input normalisation of {self.name}, which is not known",
                             hint="pass --mean and --std (and the value range the model expects)")
        return FoldSpec.from_preprocess(p, input_layout)
