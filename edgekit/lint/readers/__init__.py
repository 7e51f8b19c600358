"""Op-level views of .tflite, .onnx and .mlpackage files for :mod:`edgekit.lint`.

:func:`edgekit.runtimes.modelfile.read_model` validates a file and summarises it (histogram,
ranks); lint needs every op with its position, its input and output tensors (shape, dtype,
constant or not, small constant values such as a TRANSPOSE permutation) and its options
(strides, ``half_pixel_centers``, block size...). :func:`read_graph` gives that as a
:class:`Graph`, from any tool's export, through one module per format, each built on the
runtime side's reader of that format (so lint needs nothing a runtime-only install lacks):

- :mod:`.tflite`: the flatbuffer, validated by ``read_model`` first (a truncated file is a
  one-line error, not a crash), then read through the schema LiteRT ships
  (``ai_edge_litert.schema_py_generated``) for the op options, lazily (weights are never
  copied); ``shape_signature`` -1 marks a dynamic dim.
- :mod:`.onnx`: the graph from the pure-Python protobuf walker
  (:func:`edgekit.runtimes.onnx_file.read_onnx_graph`), shapes of intermediate tensors from
  ONNX shape inference (the ``onnx`` package's when installed, else the same inference as
  onnxruntime runs it when it loads the model); external weights are never loaded.
- :mod:`.coreml`: the MIL ops of an ML program from the spec
  (:mod:`edgekit.runtimes.coreml_spec`, coremltools' protobuf modules only), with their
  output ranks and dtypes, and const values for op parameters.

Example::

    >>> g = read_graph("model.tflite")                      # doctest: +SKIP
    >>> [(op.index, op.type) for op in g.ops][:2]           # doctest: +SKIP
    [(0, 'TRANSPOSE'), (1, 'CONV_2D')]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from edgekit.errors import InvalidModelFile

__all__ = ["Tensor", "Op", "Graph", "read_graph", "LINT_FORMATS", "SMALL", "flat"]

LINT_FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".mlpackage": "coreml", ".mlmodel": "coreml"}
SMALL = 64  # constant tensors up to this many elements keep their values (perms, axes, pads)


@dataclass(eq=False)
class Tensor:
    """A tensor of the graph. ``shape`` dims are None where dynamic or unknown; ``shape`` itself
    is None when not even the rank is known. ``value`` holds a small constant's values."""

    key: str
    name: str
    shape: tuple[int | None, ...] | None
    dtype: str
    const: bool = False
    value: Any = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return self.shape is not None and any(d is None for d in self.shape)

    @property
    def short(self) -> str:
        """The name for messages: converter-made names (litert-torch's module paths) cut to their tail."""
        if len(self.name) <= 48:
            return self.name
        tail = self.name.rsplit("/", 1)[-1]
        return "…/" + tail if len(tail) <= 45 else "…" + tail[-45:]

    def shape_text(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(eq=False)
class Op:
    """One op: ``index`` is its position in its (sub)graph, ``type`` the TFLite builtin name
    (custom ops: their custom code), ONNX op type (domain-prefixed outside the default domain)
    or MIL op type; ``name`` the node name where the format has one. ``attrs`` hold the options,
    with normalised keys lint reads: ``strides``, ``dilations``, ``kernel``, ``fused_activation``,
    ``half_pixel_centers``, ``align_corners``, ``block_size``, ``perm``, ``axes``, ``paddings``,
    ``slice_strides``, ``slice_masks``, ``beta``, ``mode``, ``has_bias``, ``index_dtype``."""

    index: int
    type: str
    name: str
    inputs: list[Tensor | None]
    outputs: list[Tensor]
    attrs: dict[str, Any] = field(default_factory=dict)
    subgraph: int = 0

    @property
    def where(self) -> str:
        """``op 12`` (TFLite), ``node 'conv_3'`` (ONNX, Core ML); the subgraph when not the main one."""
        text = f"node '{self.name}'" if self.name else f"op {self.index}"
        return text if self.subgraph == 0 else f"{text} (subgraph {self.subgraph})"

    @property
    def ref(self) -> str:
        """``CONV_2D #12`` or ``Conv 'conv_3'``: the op as findings name it."""
        return f"{self.type} '{self.name}'" if self.name else f"{self.type} #{self.index}"


@dataclass(eq=False)
class Graph:
    """The ops and tensors of a model file, in execution order (main graph first)."""

    format: str
    path: Path
    ops: list[Op]
    inputs: list[Tensor]
    outputs: list[Tensor]
    layout: str  # the layout the format's ops assume: "NHWC" (TFLite) or "NCHW" (ONNX, Core ML)
    notes: list[str] = field(default_factory=list)

    @cached_property
    def producers(self) -> dict[str, Op]:
        return {t.key: op for op in self.ops for t in op.outputs}

    @cached_property
    def consumers(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                if t is not None:
                    out.setdefault(t.key, []).append(op)
        return out

    @cached_property
    def tensors(self) -> dict[str, Tensor]:
        """Every tensor an op or the graph boundary touches, by key."""
        seen: dict[str, Tensor] = {t.key: t for t in self.inputs}
        for op in self.ops:
            for t in (*op.inputs, *op.outputs):
                if t is not None:
                    seen.setdefault(t.key, t)
        for t in self.outputs:
            seen.setdefault(t.key, t)
        return seen

    @cached_property
    def boundary(self) -> set[str]:
        return {t.key for t in (*self.inputs, *self.outputs)}


def read_graph(path: str | os.PathLike) -> Graph:
    """The op-level :class:`Graph` of a ``.tflite``, ``.onnx``, ``.mlpackage`` or ``.mlmodel``.

    Raises :class:`~edgekit.errors.ModelFileNotFound`, :class:`~edgekit.errors.InvalidModelFile`
    (corrupt file, unknown suffix) or :class:`~edgekit.errors.MissingDependency` (Core ML
    without coremltools; TFLite without ai-edge-litert's schema).
    """
    p = Path(path)
    from edgekit._fs import existing

    existing(p)
    fmt = LINT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        hint = "lint reads .tflite, .onnx and .mlpackage files"
        if p.suffix.lower() == ".ort":
            hint = "lint the .onnx the .ort was made from (.ort files keep no op options)"
        raise InvalidModelFile(p, f"lint cannot read '{p.suffix or '(no suffix)'}' files", hint=hint)
    if fmt == "coreml":
        from edgekit.lint.readers.coreml import read_coreml_graph

        return read_coreml_graph(p)
    from edgekit.runtimes.modelfile import read_model

    read_model(p)  # validates structure and bounds: corrupt files fail here with one line
    if fmt == "tflite":
        from edgekit.lint.readers.tflite import read_tflite_graph

        return read_tflite_graph(p)
    from edgekit.lint.readers.onnx import read_onnx_graph

    return read_onnx_graph(p)


def flat(value: Any) -> list[Any]:
    """The scalars of a nested list, in order (a scalar: itself, alone)."""
    if isinstance(value, list):
        return [x for v in value for x in flat(v)]
    return [value]
