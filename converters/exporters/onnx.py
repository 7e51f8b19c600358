"""ONNX exporter: ``torch.onnx.export(dynamo=True)``, then onnxscript's optimizer.

The program is translated by the dynamo-based exporter (``torch.export`` → ONNX through
onnxscript), then optimised with ``onnxscript.optimizer.optimize`` (constant folding,
dead-code removal, onnxscript's default rewrite rules). Weights are inlined in the single
``.onnx`` file when the model is under 2 GB (the protobuf limit) so that a bundle is
self-contained; larger models keep them in ``model.onnx.data`` beside it.

An ``.onnx`` source skips torch entirely: it is loaded, cleaned and optimised the same way.

Precision ``fp16`` exports the half-precision program (weights and activations in float16,
inputs and outputs stay float32 with one Cast at each end) — what ONNX Runtime's fp16 kernels
and GPU execution providers run.

Example::

    >>> export(ExportRequest(program, {"input": x}, ["input"], ["logits"], dest=Path("model.onnx")))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from edgekit.converters.exporters import ExportRequest, ExportResult, export_failure, tool_output
from edgekit.errors import ConversionError

__all__ = ["export", "save_inline"]

PROTOBUF_LIMIT = 2 * 1024**3 - 64 * 1024**2  # stay a little under 2 GiB: the graph needs room too
OPTIMIZER = "onnxscript.optimizer.optimize"
STATIC_INPUTS_PASS = "onnx.static_input_shapes"


def export(request: ExportRequest) -> ExportResult:
    import onnx_ir as ir
    import onnxscript.optimizer

    passes: list[str] = []
    notes: list[str] = []
    with tool_output() as log:
        try:
            if request.onnx_source is not None:
                model = ir.load(str(request.onnx_source))
                if request.precision == "fp16":
                    raise ConversionError("export", "onnx: fp16 from an ONNX source is not supported",
                                          hint="convert the ONNX source with --precision fp32")
                fixed = _fix_input_shapes(model, request)
                if fixed:
                    passes.append(STATIC_INPUTS_PASS)
                    notes.append("static input shapes: " + ", ".join(fixed))
            else:
                import torch

                from edgekit.converters.exporters import forms
                from edgekit.converters.passes import _custom_ops

                program = request.program_fp16 if request.precision == "fp16" else request.program
                if program is None:
                    raise ConversionError("export", f"onnx: no {request.precision} program was captured")
                if forms.matches(program.graph_module, "onnx"):  # on a copy: the request's program stays
                    program = program.run_decompositions({})
                    passes.extend(forms.lower(program.graph_module, "onnx"))
                onnx_program = torch.onnx.export(
                    program, (), kwargs=request.kwargs, dynamo=True, optimize=False, verbose=False,
                    input_names=request.input_names, output_names=request.output_names,
                    custom_translation_table=_custom_ops.onnx_translations(),  # ops the rewrite passes emit
                )
                model = onnx_program.model
                if request.precision == "fp16":
                    notes.append("float16 weights and activations; float32 inputs/outputs (Cast at each end)")
            model = onnxscript.optimizer.optimize(model)
            passes.append(OPTIMIZER)
            _rename_io(model, request)
            external = save_inline(model, request.dest)
        except Exception as e:
            raise export_failure("onnx", e, log) from None
    if external:
        notes.append(f"weights over 2 GB: stored in {request.dest.name}.data beside the model")
    opset = next((v for d, v in model.opset_imports.items() if d in ("", "ai.onnx")), None)
    return ExportResult(request.dest, passes=passes, notes=notes,
                        extra={"opset": opset, "external_data": external})


def _fix_input_shapes(model, request: ExportRequest) -> list[str]:
    """An ONNX source's input dims declared as -1 or 0, or not at all (no valid ONNX size, which
    other tools refuse), get the size the model was captured and verified with (``--input-shape``);
    named dims stay: they are the axes the author declared dynamic, and runtimes resize them.
    Outputs' -1/0 dims become unknown, which the optimizer's shape inference fills. Returns
    ``"name [declared] -> [written]"`` for each input changed."""
    import onnx_ir as ir

    def unset(d) -> bool:
        return d is None or (isinstance(d, int) and d <= 0)

    fixed = []
    for value in model.graph.inputs:
        example = request.kwargs.get(value.name)
        if example is None:
            continue
        want = [int(d) for d in example.shape]
        declared = value.shape is not None
        have = list(value.shape) if declared else [None] * len(want)
        if len(have) != len(want) or not any(unset(d) for d in have):
            continue
        new = [w if unset(d) else d for d, w in zip(have, want)]
        value.shape = ir.Shape(new)
        show = lambda dims: "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"  # noqa: E731
        fixed.append(f"{value.name} {show(have) if declared else '(no shape)'} -> {show(new)}")
    if fixed:
        for value in model.graph.outputs:
            if value.shape is not None:
                value.shape = ir.Shape([None if unset(d) else d for d in value.shape])
    return fixed


def _rename_io(model, request: ExportRequest) -> None:
    """For an ONNX source, keep its names (they are the source's); for a torch program make
    sure the graph uses the requested names (the exporter honours them, this checks it)."""
    if request.onnx_source is not None:
        return
    got = [v.name for v in model.graph.inputs]
    if got != list(request.input_names):
        raise ConversionError("export", f"onnx: input names {got} differ from the requested {request.input_names}")


def save_inline(model, dest: Path) -> bool:
    """Save ``model`` (an ``onnx_ir.Model``) with its weights inside the file when it fits
    under the protobuf limit; else beside it as ``<name>.data``. Returns True for external data."""
    import onnx_ir as ir

    total = 0
    for init in model.graph.initializers.values():
        if init.const_value is not None:
            total += init.const_value.nbytes
    if total < PROTOBUF_LIMIT:
        # Load external tensors (from an ONNX source) into memory so the file is self-contained.
        for init in model.graph.initializers.values():
            if isinstance(init.const_value, ir.ExternalTensor):
                init.const_value = ir.tensor(init.const_value.numpy(), name=init.name)
        ir.save(model, str(dest))
        return False
    ir.save(model, str(dest), external_data=f"{dest.name}.data")
    return True
