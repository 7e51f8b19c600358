"""CoreML exporter: coremltools, ML program (``.mlpackage``), from the ExportedProgram.

coremltools converts ``torch.export`` programs in the ATEN dialect, so the program is
decomposed with an empty table first (``run_decompositions({})``: core ATen ops, nothing
else changed). Inputs are ``TensorType`` of the source's exact shapes — the artifact takes the
same tensor as the source — unless pre-processing was folded: then the image input is an
``ImageType`` (``scale=1``, ``bias=0``, the source's colour order; the per-channel
normalisation runs in the graph, see :mod:`edgekit.converters.preprocess`) and a classifier
gets a ``ClassifierConfig`` with the card's labels, which is what Xcode and Vision expect.

``fp32`` sets ``compute_precision=FLOAT32`` (coremltools' default would be float16);
``fp16`` sets FLOAT16. The deployment target is iOS 16 / macOS 13 (ML programs with float32
compute and image inputs of any size).

Prediction needs macOS; on other hosts verification checks the saved package's interface
from its spec (:func:`edgekit.runtimes.coreml_spec.spec_io`).

Example::

    >>> export(ExportRequest(program, {"input": x}, ["input"], ["logits"], dest=Path("model.mlpackage")))  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from edgekit.converters.exporters import ExportRequest, ExportResult, export_failure, tool_output

__all__ = ["export"]

DEPLOYMENT_TARGET = "iOS16"


def export(request: ExportRequest) -> ExportResult:
    rank5 = any(getattr(t, "dim", lambda: 0)() >= 5 for t in request.kwargs.values())
    passes = ["torch.export.run_decompositions(edgekit ops)"]
    notes: list[str] = []
    extra: dict = {"minimum_deployment_target": DEPLOYMENT_TARGET}
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with tool_output() as log:
        try:
            import coremltools as ct
            import numpy as np

            from edgekit.converters.exporters import forms
            from edgekit.converters.passes import _custom_ops

            # ops the rewrite passes emit (edgekit.depth_to_space) become the exact torch ops
            _custom_ops.register_coreml()
            program = request.program.run_decompositions(_custom_ops.coreml_decompositions())  # a new program
            passes.extend(forms.lower(program.graph_module, "coreml"))  # exact forms of ops coremltools refuses
            inputs = []
            for i, name in enumerate(request.input_names):
                shape = tuple(request.kwargs[name].shape)
                if i == 0 and request.image_input is not None:
                    order = request.image_input.get("color_layout", "RGB").upper()
                    layout = ct.colorlayout.BGR if order == "BGR" else ct.colorlayout.RGB
                    inputs.append(ct.ImageType(name=name, shape=shape, scale=1.0, bias=[0.0] * shape[1],
                                               color_layout=layout, channel_first=True))
                    extra["image_input"] = {"name": name, "color_layout": order, "scale": 1.0, "bias": 0.0}
                else:
                    inputs.append(ct.TensorType(name=name, shape=shape, dtype=np.float32))
            classifier = None
            if request.image_input is not None and request.labels and request.task == "classify":
                classifier = ct.ClassifierConfig(list(request.labels), predicted_probabilities_output=request.output_names[0])
                extra["classifier"] = {"labels": len(request.labels), "probabilities": request.output_names[0],
                                       "note": "probabilities output holds the model's raw scores (no softmax added)"}
            outputs = [ct.TensorType(name=n) for n in request.output_names]
            precision = ct.precision.FLOAT16 if request.precision == "fp16" else ct.precision.FLOAT32
            mlmodel = ct.convert(
                program, inputs=inputs, outputs=outputs, classifier_config=classifier,
                convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                compute_precision=precision,
            )
            passes.append("coremltools default mlprogram pipeline")
            mlmodel.short_description = f"edgekit {request.task} model"
            mlmodel.save(str(request.dest))
        except Exception as e:
            raise export_failure("coreml", e, log, rank5=rank5) from None
    if request.precision == "fp16":
        notes.append("float16 compute (compute_precision=FLOAT16); float32 inputs and outputs")
    return ExportResult(request.dest, passes=passes, notes=notes, extra=extra)
