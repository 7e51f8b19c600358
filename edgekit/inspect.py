"""``edgekit inspect``: what is inside a model file or a bundle, as a plain dict.

:func:`inspect_model` reads ``.onnx``, ``.ort`` and ``.tflite`` through the validating readers
of :mod:`edgekit.runtimes.modelfile`, ``.mlpackage`` (and ``.mlmodel``) here, from the Core ML
protobuf spec as :mod:`edgekit.runtimes.coreml_spec` reads it — on any host, since reading the
spec needs no Core ML runtime — and a bundle folder through its manifest plus each artifact. For
TFLite it also opens the model with LiteRT and reports how many ops XNNPACK took
(``placement``), or says honestly that it cannot tell. Every model also gets a short lint verdict
for the generic-npu target (:func:`edgekit.lint.lint_summary`).

The Core ML reader loads only the generated protobuf modules of ``coremltools`` (its
``proto`` folder, ~20 ms), not ``coremltools`` itself, which would import torch and its
converters (~3 s). Without coremltools installed it still reports the package layout and
size, and says what to install for the rest.

Example::

    >>> info = inspect_model("model.mlpackage")         # doctest: +SKIP
    >>> info["op_histogram"]["conv"]                    # doctest: +SKIP
    3
"""

from __future__ import annotations

import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, InvalidModelFile

__all__ = ["inspect_model", "inspect_bundle", "read_coreml"]


def inspect_model(path: str | os.PathLike, placement: bool = True) -> dict[str, Any]:
    """Describe the model file or bundle at ``path``.

    Returns ``{"path", "format", "size_bytes", "inputs", "outputs", "op_histogram", "num_ops",
    "max_rank", "tensor_ranks", "tensor_dtypes", "external_files", "extra"}`` (the keys of
    :meth:`edgekit.runtimes.modelfile.ModelInfo.to_dict`) (tensors as ``{"name", "shape", "dtype", "layout"}``)
    and, for TFLite when ``placement``, ``"placement"`` from a LiteRT session. A bundle folder
    gives ``{"path", "format": "bundle", "manifest": {...}, "artifacts": [...]}`` instead.
    Raises :class:`~edgekit.errors.EdgekitError` for a missing, truncated or foreign file.
    """
    from edgekit.bundle import is_bundle
    from edgekit.runtimes.registry import model_format

    p = Path(path)
    from edgekit._fs import existing

    existing(p)
    if is_bundle(p):
        return inspect_bundle(p, placement=placement)
    fmt = model_format(p)
    if fmt == "coreml":
        return _with_lint(read_coreml(p), p)
    from edgekit.runtimes.modelfile import read_model

    info = _as_dict(read_model(p))
    info.setdefault("num_ops", sum(info.get("op_histogram", {}).values()))
    if fmt == "tflite" and placement:
        info["placement"] = _tflite_placement(p)
    return _with_lint(info, p)


def _with_lint(info: dict[str, Any], path: Path) -> dict[str, Any]:
    """Add ``"lint"``: the model's verdict for the generic-npu target (see ``edgekit lint``)."""
    from edgekit.lint import lint_summary

    summary = lint_summary(path, "generic-npu")
    if summary is not None:
        info["lint"] = summary
    return info


def inspect_bundle(folder: str | os.PathLike, placement: bool = True) -> dict[str, Any]:
    """The manifest summary of a bundle and :func:`inspect_model` of each artifact (an artifact that
    cannot be read carries ``"error"`` instead of failing the whole bundle)."""
    from edgekit._fs import contained_path
    from edgekit.bundle import MANIFEST_NAME, read_manifest

    folder = Path(folder)
    m = read_manifest(folder)
    pre = dict(m.preprocess)
    labels = pre.pop("labels", None)
    if labels is not None:
        pre["labels"] = f"{len(labels)} labels"
    artifacts = []
    for a in m.artifacts:
        entry: dict[str, Any] = {
            "path": a.path, "format": a.format, "target": a.target, "precision": a.precision,
            "verification": a.verification, "passes": list(a.passes), "lint": a.lint,
        }
        if a.source_layouts:
            entry["source_layouts"] = dict(a.source_layouts)
        compiled = "compiled_by" in a.extra  # an NPU compiler's output (edgekit compile): runs only on the NPU
        if compiled:
            entry["compiled_by"], entry["npu"] = a.extra["compiled_by"], a.extra.get("npu")
        if a.format == "rknn":  # rknn-toolkit2's own container: its report is in the manifest (entry["npu"])
            artifacts.append(entry)
            continue
        try:
            file = contained_path(folder, a.path, folder / MANIFEST_NAME, "artifact path")
            info = inspect_model(file, placement=placement and not compiled)
            if compiled:  # its ops are the compiler's command stream, not the model's: no host lint
                info.pop("lint", None)
            entry["inspect"] = _manifest_layouts(info, a)
        except EdgekitError as e:
            entry["error"] = str(e)
        artifacts.append(entry)
    return {
        "path": str(folder),
        "format": "bundle",
        "manifest": {
            "version": m.version, "name": m.name, "task": m.task, "created": m.created, "source": m.source,
            "preprocess": pre, "tools": m.tools,
        },
        "artifacts": artifacts,
    }


def _manifest_layouts(info: dict[str, Any], artifact: Any) -> dict[str, Any]:
    """The artifact's tensors with the layouts its manifest records (a model file has none),
    matched by name, else by position (as a bundle session matches them)."""
    for key, declared in (("inputs", artifact.inputs), ("outputs", artifact.outputs)):
        tensors = info.get(key) or []
        by_name = {t.name: t.layout for t in declared}
        named = all(t.get("name") in by_name for t in tensors)
        if not named and len(tensors) != len(declared):
            continue
        for i, t in enumerate(tensors):
            layout = by_name[t["name"]] if named else declared[i].layout
            if not t.get("layout") and layout:
                t["layout"] = layout
    return info


# -- TFLite delegate coverage -------------------------------------------------------------------

def _tflite_placement(path: Path) -> dict[str, Any]:
    """Op placement reported by a LiteRT session, or why it is unknown."""
    from edgekit.runtimes.registry import load

    try:
        with load(path, backend="litert", threads=1) as session:
            return _as_dict(session.placement)
    except EdgekitError as e:
        return {"op_counts": "unknown", "notes": [f"could not open with LiteRT: {e}"]}
    except ImportError as e:  # the LiteRT backend module itself is absent
        return {"op_counts": "unknown", "notes": [f"LiteRT backend unavailable: {e}"]}


# -- Core ML ------------------------------------------------------------------------------------

def read_coreml(path: str | os.PathLike) -> dict[str, Any]:
    """Describe an ``.mlpackage`` folder or ``.mlmodel`` file from its protobuf spec."""
    from edgekit._fs import existing
    from edgekit.runtimes import coreml_spec

    p = Path(path)
    existing(p)
    spec_path = coreml_spec.spec_file(p)
    if p.suffix.lower() == ".mlpackage":
        files = sorted(f for f in p.rglob("*") if f.is_file())
        size = sum(f.stat().st_size for f in files)
        external = [str(f.relative_to(p)) for f in files if f != spec_path and f.name != "Manifest.json"]
    else:
        size, external = p.stat().st_size, []
    info: dict[str, Any] = {
        "path": str(p), "format": "coreml", "size_bytes": size, "inputs": [], "outputs": [],
        "op_histogram": {}, "num_ops": 0, "max_rank": None, "tensor_ranks": {}, "tensor_dtypes": {},
        "external_files": external, "extra": {},
    }
    proto = coreml_spec.protobuf()
    if proto is None:
        info["extra"]["note"] = ("coremltools is not installed, so the Core ML spec was not parsed (inputs, outputs, "
                                 "ops unknown); install it with: pip install 'edgekit[coreml]'")
        return info
    model = coreml_spec.parse_spec(spec_path, proto)

    model_type = model.WhichOneof("Type")
    desc = model.description
    info["inputs"] = [_feature(f) for f in desc.input]
    info["outputs"] = [_feature(f) for f in desc.output]
    ranks: list[int] = []
    dtypes: list[str] = []
    hist: dict[str, int] = {}
    try:
        consts = _count_ops(model, hist, ranks, dtypes)
    except coreml_spec.CorruptSpec as e:
        raise InvalidModelFile(spec_path, str(e)) from None
    if not ranks:  # a neural network / pipeline: only the interface is typed
        ranks = [len(t["shape"]) for t in info["inputs"] + info["outputs"] if t["shape"] is not None]
        dtypes = [t["dtype"] for t in info["inputs"] + info["outputs"]]
    info["tensor_ranks"] = {str(r): ranks.count(r) for r in sorted(set(ranks))}
    info["tensor_dtypes"] = {d: dtypes.count(d) for d in sorted(set(dtypes))}
    info["op_histogram"] = dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
    info["num_ops"] = sum(hist.values())
    info["max_rank"] = max(ranks) if ranks else None
    extra = info["extra"]
    extra["model_type"] = model_type
    extra["specification_version"] = model.specificationVersion
    if model_type == "mlProgram":
        fn = model.mlProgram.functions.get("main")
        if fn is not None:
            extra["opset"] = fn.opset
        extra["const_ops"] = consts  # weights and op parameters; left out of op_histogram
    if desc.predictedFeatureName:
        extra["classifier_output"] = desc.predictedFeatureName
    user = dict(desc.metadata.userDefined)
    for key, short in (("com.github.apple.coremltools.version", "coremltools"),
                       ("com.github.apple.coremltools.source", "source")):
        if key in user:
            extra[short] = user[key]
    if desc.metadata.shortDescription:
        extra["description"] = desc.metadata.shortDescription
    return info


def _feature(f: Any) -> dict[str, Any]:
    """A Core ML FeatureDescription as a tensor dict."""
    from edgekit.runtimes.coreml_spec import feature

    x = feature(f)
    if x.kind == "tensor":
        return {"name": x.name, "shape": list(x.flexible or x.shape), "dtype": x.dtype, "layout": None}
    if x.kind == "image":
        return {"name": x.name, "shape": list(x.shape), "dtype": x.dtype, "layout": "NCHW", "image": x.color_space}
    return {"name": x.name, "shape": None, "dtype": x.dtype, "layout": None}


def _count_ops(model: Any, hist: dict[str, int], ranks: list[int], dtypes: list[str]) -> int:
    """Add the ops of a Core ML model (ML program, neural network, pipeline) to ``hist``; return
    the number of MIL ``const`` ops skipped. Rank and dtype of every typed MIL tensor value (the
    function inputs and each op's outputs) go to ``ranks`` and ``dtypes``."""
    kind = model.WhichOneof("Type")
    consts = 0
    if kind == "mlProgram":
        for fn in model.mlProgram.functions.values():
            for inp in fn.inputs:
                _tensor_type(inp.type, ranks, dtypes)
            for block in fn.block_specializations.values():
                consts += _count_block(block, hist, ranks, dtypes)
    elif kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        for layer in getattr(model, kind).layers:
            name = layer.WhichOneof("layer") or "unknown"
            hist[name] = hist.get(name, 0) + 1
    elif kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        pipe = model.pipeline if kind == "pipeline" else getattr(model, kind).pipeline
        for sub in pipe.models:
            consts += _count_ops(sub, hist, ranks, dtypes)
    elif kind:
        hist[kind] = hist.get(kind, 0) + 1  # a whole-model type (e.g. treeEnsembleClassifier) counts as one op
    return consts


def _count_block(block: Any, hist: dict[str, int], ranks: list[int], dtypes: list[str]) -> int:
    consts = 0
    for op in block.operations:
        for out in op.outputs:
            _tensor_type(out.type, ranks, dtypes)
        if op.type == "const":
            consts += 1
        else:
            hist[op.type] = hist.get(op.type, 0) + 1
        for inner in op.blocks:  # cond / while_loop bodies
            consts += _count_block(inner, hist, ranks, dtypes)
    return consts


def _tensor_type(value_type: Any, ranks: list[int], dtypes: list[str]) -> None:
    from edgekit.runtimes.coreml_spec import mil_type

    if value_type.WhichOneof("type") != "tensorType":
        return
    shape, dtype = mil_type(value_type)
    if shape is not None:
        ranks.append(len(shape))
    dtypes.append(dtype)


# -- helpers ------------------------------------------------------------------------------------

def _as_dict(obj: Any) -> dict[str, Any]:
    """A ModelInfo / Placement (dataclass or object with ``to_dict``) as a JSON-ready dict."""
    if hasattr(obj, "to_dict"):
        d = obj.to_dict()
    elif is_dataclass(obj):
        d = asdict(obj)
    else:
        d = dict(vars(obj))
    return _plain(d)


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return str(value)
    return value
