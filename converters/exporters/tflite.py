"""TFLite/LiteRT exporter: litert-torch (``litert_torch.convert``), no TensorFlow.

litert-torch re-exports the program's module with the same named keyword inputs, lowers it
to the LiteRT dialect and writes a flatbuffer whose ``serving_default`` signature has the
input and output names of the request. Layout: the graph keeps the source's NCHW tensors at
its boundary (litert-torch inserts the TRANSPOSEs around the NHWC kernels); moving the
boundary to NHWC is a rewrite of the NPU issue, not done silently here.

Precision ``fp16`` is TFLite's float16 weight quantization (ai-edge-quantizer's
``float_casting``): weights of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and
TRANSPOSE_CONV are stored as float16 with a DEQUANTIZE in front; XNNPACK computes in float32,
the GPU delegate in float16. Half the size, the same ops.

Example::

    >>> export(ExportRequest(program, {"input": x}, ["input"], ["logits"], dest=Path("model.tflite")))  # doctest: +SKIP
"""

from __future__ import annotations

import os

from edgekit._fs import atomic_path
from edgekit.converters.exporters import ExportRequest, ExportResult, export_failure, tool_output
from edgekit.errors import ConversionError

__all__ = ["export", "name_io_tensors", "lower_for_tflite"]

FP16_PASS = "ai_edge_quantizer.float_casting(fp16 weights)"
NAME_PASS = "tflite.name_io_tensors"
_RENAME_LIMIT = 1024**3  # the object API repacks the whole flatbuffer in memory; skip for huge models


def export(request: ExportRequest) -> ExportResult:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rank5 = any(getattr(t, "dim", lambda: 0)() >= 5 for t in request.kwargs.values())
    passes: list[str] = []
    notes: list[str] = []
    with tool_output() as log:
        try:
            import litert_torch

            from edgekit.converters.exporters import forms
            from edgekit.converters.passes import _custom_ops

            _custom_ops.register_litert()  # edgekit.depth_to_space → DEPTH_TO_SPACE (a rewrite may emit it)
            program = request.program
            program, lowered = lower_for_tflite(program)
            passes.extend(lowered)
            module = program.module()
            module.training = False  # the unlifted module refuses .eval(); litert-torch only reads the flag
            passes.extend(forms.lower(module, "tflite"))  # exact forms of ops litert-torch refuses (own copy)
            if _takes_keywords(program):
                edge = litert_torch.convert(module, sample_kwargs=dict(request.kwargs))
            else:  # a rewritten program (passes re-export positionally; the input names are kept)
                edge = litert_torch.convert(module, tuple(request.kwargs[n] for n in request.input_names))
            edge.export(str(request.dest))
            if request.precision == "fp16":
                _fp16_weights(request.dest)
                passes.append(FP16_PASS)
                notes.append("float16 weights (DEQUANTIZE to float32 on CPU; the GPU delegate computes in float16)")
            if request.dest.stat().st_size < _RENAME_LIMIT:
                positional = not _takes_keywords(program)
                name_io_tensors(request.dest, request.input_names if positional else None,
                                 request.output_names if positional else None)
                passes.append(NAME_PASS)
        except Exception as e:
            raise export_failure("tflite", e, log, rank5=rank5) from None
    if not request.dest.is_file():
        raise export_failure("tflite", RuntimeError("litert-torch wrote no file"), log, rank5=rank5)
    return ExportResult(request.dest, passes=passes, notes=notes)


def lower_for_tflite(program):
    """The program-stage lowerings every TFLite export needs, whatever the target: adaptive max
    pools whose output divides the input become plain max pools (``adaptive_pool_to_pool``, exact;
    litert-torch cannot lower ``adaptive_max_pool2d``, and lowers adaptive averages itself).
    Returns ``(program, applied)``; an adaptive max pool that no plain pool computes is refused
    with the pass's reason."""
    from edgekit.converters.passes import adaptive_pool_to_pool as adaptive

    applied = []
    maxes = [n for n in adaptive.adaptive_pools(program) if adaptive.ADAPTIVE[n.target][3]]
    if any(not isinstance(adaptive.kernel_of(n), str) for n in maxes):
        program = adaptive.rewrite(program, max_only=True)
        applied.append("adaptive_pool_to_pool(max)")
    for node in adaptive.adaptive_pools(program):
        if adaptive.ADAPTIVE[node.target][3]:  # litert-torch decomposes adaptive averages itself
            raise ConversionError("export", f"tflite: LiteRT has no adaptive max pooling, and {adaptive.kernel_of(node)}",
                                  hint="choose an output size that divides the input, or drop tflite from --to")
    return program, applied


def _takes_keywords(program) -> bool:
    """True when the program was exported with keyword inputs (the capture stage's programs)."""
    example = getattr(program, "example_inputs", None)
    return not example or bool(example[1])


def name_io_tensors(path, input_names=None, output_names=None) -> None:
    """Give the graph's input and output tensors their signature names (``input``, ``logits``)
    instead of the converter's ``serving_default_input``/``serving_default_logits_output``, so
    that every format of a bundle uses the same names. Only names change (same ops, same
    buffers; the schema keeps buffers 16-byte aligned). ``input_names``/``output_names``
    replace positional signature names (``args_0``, ``output_0``), in order."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    changed = False
    for sig in model.signatureDefs or []:
        for entries, names in ((sig.inputs, input_names), (sig.outputs, output_names)):
            if names and entries and len(entries) == len(names):
                for t, name in zip(_positional_order(entries), names):
                    t.name, changed = name, True
        graph = model.subgraphs[sig.subgraphIndex]
        for t in [*(sig.inputs or []), *(sig.outputs or [])]:
            if graph.tensors[t.tensorIndex].name != t.name:
                graph.tensors[t.tensorIndex].name = t.name
                changed = True
    if changed:
        with atomic_path(path) as tmp:
            flatbuffer_utils.write_model(model, str(tmp))


def _positional_order(entries):
    """Signature entries by their position (``args_10`` after ``args_9``)."""
    def key(t):
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tail = name.rsplit("_", 1)[-1]
        return (0, int(tail)) if tail.isdigit() else (1, name)
    return sorted(entries, key=key)


def _fp16_weights(path) -> None:
    """Rewrite ``path`` in place with float16 weights (ai-edge-quantizer float casting)."""
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(path))
    for op in (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
               qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.CONV_2D_TRANSPOSE):
        q.add_weight_only_config(regex=".*", operation_name=op, num_bits=16, algorithm_key="float_casting")
    result = q.quantize()
    with atomic_path(path) as tmp:
        result.export_model(str(tmp), overwrite=True)
