"""Import an ONNX model as a ``torch.fx`` module, so ONNX files reach TFLite and CoreML.

edgekit's TFLite and CoreML exporters start from PyTorch (litert-torch, coremltools). To take
an ``.onnx`` file there, this importer rebuilds its graph as a :class:`torch.fx.GraphModule`:
one small converter per ONNX op type (:mod:`.ops`, :mod:`.pool`, :mod:`.resize`), ONNX
initializers as the module's parameters and buffers, and every shape computed at import time
(``Shape → Gather → Concat → Reshape`` chains fold to constants), so the result exports with
``torch.export`` at static shapes. Anything outside the op table is an
:class:`~edgekit.errors.ConversionError` naming the node, its op, domain and position.

Example::

    >>> from edgekit.converters.onnx_import import import_onnx
    >>> imp = import_onnx("espcn.onnx", input_shapes={"input": (1, 3, 128, 128)})  # doctest: +SKIP
    >>> y = imp.module(*imp.example_inputs)                                          # doctest: +SKIP
    >>> ep = torch.export.export(imp.module, imp.example_inputs)                     # doctest: +SKIP

Opsets 7 and newer are read; the attribute/input variants of opsets 11–21 (Slice, Clip, Pad,
Resize, Squeeze/Unsqueeze, Split, Reduce*, GroupNormalization 18 vs 21, Softmax before 13)
are handled. Heavy libraries (torch, onnx) are imported when :func:`import_onnx` runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import InvalidModelFile, MissingDependency, ModelFileNotFound, first_line

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = ["import_onnx", "ImportedModel", "SUPPORTED_OPS", "op_table"]


@dataclass
class ImportedModel:
    """An ONNX model as a PyTorch module.

    ``module`` is a ``torch.fx.GraphModule`` in eval mode taking the ONNX inputs in order and
    returning the output tensor (a tuple when the model has several outputs);
    ``example_inputs`` are seeded tensors of the inputs' static shapes and dtypes
    (``torch.rand`` for floating inputs, zeros otherwise).
    """

    module: "torch.fx.GraphModule"
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    opset: int
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _load(path_or_model: "str | os.PathLike | onnx.ModelProto") -> tuple["onnx.ModelProto", str]:
    try:
        import onnx
    except ImportError:
        raise MissingDependency("onnx", "importing an ONNX model", extra="convert") from None

    if isinstance(path_or_model, onnx.ModelProto):
        model, where = path_or_model, "<ModelProto>"
        if model.graph.name:
            where = f"<ModelProto {model.graph.name}>"
    else:
        path = Path(path_or_model)
        where = str(path)
        if not path.is_file():
            raise ModelFileNotFound(path)
        try:
            model = onnx.load(str(path))
        except Exception as e:  # protobuf DecodeError, missing external data, ...
            raise InvalidModelFile(path, f"not a readable ONNX model ({first_line(e)})") from None
    _check_structure(model, where)
    if any(f for f in model.functions):
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    return model, where


def _check_structure(model: "onnx.ModelProto", where: str) -> None:
    """What a runtime needs to even read the graph: an IR version, opsets, and every value
    defined before it is read. (``onnx.checker`` is stricter than ONNX Runtime — it rejects
    outputs without shapes — so it is not the gate here.)"""
    if model.ir_version < 3 or not model.opset_import or (not model.graph.node and not model.graph.output):
        raise InvalidModelFile(where, "not an ONNX model (no IR version, opset or graph)")
    g = model.graph
    defined = {i.name for i in g.initializer} | {i.name for i in g.input} | {""}
    for idx, node in enumerate(g.node):
        for name in node.input:
            if name not in defined:
                raise InvalidModelFile(where, f"invalid ONNX model: node {idx} '{node.name}' ({node.op_type}) reads "
                                              f"'{name}', which no earlier node, input or initializer defines")
        defined.update(node.output)
    for o in g.output:
        if o.name not in defined:
            raise InvalidModelFile(where, f"invalid ONNX model: graph output '{o.name}' is not produced by any node")


def import_onnx(path_or_model: "str | os.PathLike | onnx.ModelProto",
                input_shapes: dict[str, tuple] | None = None) -> ImportedModel:
    """Import an ONNX model (a path or an ``onnx.ModelProto``) as a ``torch.fx`` module.

    ``input_shapes`` fixes the inputs' dynamic dims (``{"input": (1, 3, 224, 224)}``); a
    dynamic dim left open is an error naming the input and the dim, because TFLite and CoreML
    need static shapes. Raises :class:`~edgekit.errors.InvalidModelFile` for files that are
    not ONNX, :class:`~edgekit.errors.ConversionError` (stage ``import``) for nodes outside
    the importer.
    """
    model, where = _load(path_or_model)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependency("torch", "importing an ONNX model into PyTorch", extra="convert") from None
    from edgekit.converters.onnx_import.builder import build_module

    built = build_module(model, input_shapes, where, op_table())
    return ImportedModel(module=built.module, example_inputs=built.example_inputs, input_names=built.input_names,
                         output_names=built.output_names, opset=built.opset, input_shapes=built.input_shapes)


def op_table() -> dict[str, Any]:
    """Every ONNX op type the importer converts, mapped to its converter (imports torch)."""
    from edgekit.converters.onnx_import import ops, pool, resize  # noqa: F401  (each registers its converters)
    from edgekit.converters.onnx_import.table import OPS

    return OPS


def __getattr__(name: str) -> Any:
    # SUPPORTED_OPS is computed on first use so that importing this package does not import torch.
    if name == "SUPPORTED_OPS":
        return sorted(op_table())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
