"""Capture: turn a SOURCE into a module, example inputs and everything the manifest must say.

A source is one of

- a zoo name (``mobilenet_v2``), built with :func:`edgekit.zoo.create`;
- ``path/to/file.py:callable`` or ``package.module:callable``; the callable takes no
  arguments and returns an ``nn.Module`` or ``(module, example_inputs)``;
- a ``.pt2`` file written by ``torch.export.save``;
- an ``.onnx`` file (ONNX → ONNX is optimised directly; ONNX → TFLite/CoreML goes through
  the ONNX importer, :mod:`edgekit.converters.onnx_import`);
- in the Python API also an ``nn.Module`` or ``ExportedProgram`` object.

The user's module is never mutated: capture works on a deep copy in eval mode, which is
also the *reference* that verification compares every artifact against. :func:`export_program`
then runs ``torch.export`` on a thin wrapper that gives inputs and outputs stable names
(``input``, ``logits``/``output``...) so that all three formats agree on them. When
``torch.export`` cannot trace a model, the error names the cause (e.g. data-dependent
control flow) and the user's file and line.

Example::

    >>> cap = capture("mobilenet_v2", input_shapes=[(1, 3, 96, 96)])   # doctest: +SKIP
    >>> program = export_program(cap)                                  # doctest: +SKIP

The package, one module per concern: :mod:`.sources` (what a source is, zoo models, modules
and exported programs, ``--input-shape``), :mod:`.user_code` (the user's file or module, and
their line in a traceback), :mod:`.onnx_source`, :mod:`.naming` (tensor names, task guessing),
:mod:`.reference` (the source's outputs; a float64 second opinion), :mod:`.finite_weights`,
:mod:`.manifest_fields` (task, pre-processing, labels), :mod:`.program` (``torch.export``
and its errors); :class:`Captured` is in :mod:`.captured`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from edgekit.bundle import sha256_file
from edgekit.converters.capture.captured import STAGE, Captured
from edgekit.converters.capture.manifest_fields import fill_manifest_fields
from edgekit.converters.capture.naming import infer_task
from edgekit.converters.capture.onnx_source import capture_onnx, import_onnx_module
from edgekit.converters.capture.program import explain_export_error, export_program
from edgekit.converters.capture.sources import (MAX_INPUT_ELEMENTS, MAX_RANK, capture_object, capture_zoo, classify,
                                                display, load_pt2, parse_shape)
from edgekit.converters.capture.user_code import call_factory_from_file, call_factory_from_module
from edgekit.errors import UsageError

__all__ = ["Captured", "capture", "export_program", "parse_shape", "infer_task", "explain_export_error",
           "import_onnx_module", "STAGE", "MAX_RANK", "MAX_INPUT_ELEMENTS"]


def capture(
    source: Any,
    *,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
    input_shapes: Sequence[Sequence[int]] | None = None,
    task: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    value_range: Sequence[float] | None = None,
    seed: int = 0,
) -> Captured:
    """Resolve ``source`` (see the module docstring) to a :class:`Captured`.

    ``input_shapes`` overrides the example inputs' shapes (one per input); ``task``, ``mean``,
    ``std`` and ``value_range`` override or complete what a model card says.
    """
    shapes = [tuple(int(d) for d in s) for s in input_shapes] if input_shapes else None
    kind, ref = classify(source)
    if pretrained and kind != "zoo":
        raise UsageError("--pretrained only applies to zoo models", where=display(source),
                         hint="pass --weights PATH to load a state dict into your module")
    if kind == "onnx":
        if weights is not None:
            raise UsageError("--weights does not apply to an ONNX source (its weights are in the file)", where=ref)
        cap = capture_onnx(Path(ref), shapes, seed)
    elif kind == "zoo":
        cap = capture_zoo(ref, weights, pretrained, shapes, seed)
    else:
        if kind == "file":
            obj, src = call_factory_from_file(ref)
        elif kind == "module":
            obj, src = call_factory_from_module(ref)
        elif kind == "exported-program":
            obj, src = load_pt2(Path(ref)), {"kind": kind, "ref": ref, "sha256": sha256_file(ref)}
        else:  # a Python object given to the API
            obj, src = source, {"kind": kind, "ref": type(source).__name__}
        cap = capture_object(obj, src, weights, shapes, seed)
    fill_manifest_fields(cap, task, mean, std, value_range)
    return cap
