"""``edgekit inspect``: what is inside a model file or a bundle, as a plain dict.

:func:`inspect_model` reads ``.onnx``, ``.ort`` and ``.tflite`` through the validating readers
of :mod:`edgekit.runtimes.modelfile`, ``.mlpackage`` (and ``.mlmodel``) here, from the Core ML
protobuf spec — on any host, since reading the spec needs no Core ML runtime — and a bundle
folder through its manifest plus each artifact. For TFLite it also opens the model with LiteRT
and reports how many ops XNNPACK took (``placement``), or says honestly that it cannot tell.

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

import importlib.util
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgekit.errors import EdgekitError, InvalidModelFile

__all__ = ["inspect_model", "inspect_bundle", "read_coreml"]

# The spec inside an .mlpackage when Manifest.json does not say otherwise.
_MLPACKAGE_SPEC = Path("Data") / "com.apple.CoreML" / "model.mlmodel"
# Core ML ArrayFeatureType / MIL DataType names -> NumPy dtype names.
_COREML_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "FLOAT64": "float64", "BFLOAT16": "bfloat16",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8", "UINT16": "uint16",
    "UINT32": "uint32", "UINT64": "uint64", "BOOL": "bool", "STRING": "str",
}


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
    from edgekit.converters.lint import lint_summary

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
        try:
            file = contained_path(folder, a.path, folder / MANIFEST_NAME, "artifact path")
            entry["inspect"] = _manifest_layouts(inspect_model(file, placement=placement), a)
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
    import edgekit

    try:
        with edgekit.load(path, backend="litert", threads=1) as session:
            return _as_dict(session.placement)
    except EdgekitError as e:
        return {"op_counts": "unknown", "notes": [f"could not open with LiteRT: {e}"]}
    except ImportError as e:  # the LiteRT backend module itself is absent
        return {"op_counts": "unknown", "notes": [f"LiteRT backend unavailable: {e}"]}


# -- Core ML ------------------------------------------------------------------------------------

def _coreml_proto() -> ModuleType | None:
    """coremltools' generated protobuf package, without importing coremltools (and torch) itself.

    When coremltools is already imported its own ``coremltools.proto`` is used; otherwise its
    ``proto`` folder is loaded as a private package (the modules import each other relatively).
    None when coremltools is not installed.
    """
    if "coremltools" in sys.modules:
        import coremltools.proto.Model_pb2  # noqa: F401  (already paid for)

        return sys.modules["coremltools.proto"]
    name = "_edgekit_coremltools_proto"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("coremltools")
    if spec is None or not spec.submodule_search_locations:
        return None
    proto_dir = Path(next(iter(spec.submodule_search_locations))) / "proto"
    init = proto_dir / "__init__.py"
    if not init.is_file():
        return None
    pspec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(proto_dir)])
    if pspec is None or pspec.loader is None:
        return None
    module = importlib.util.module_from_spec(pspec)
    sys.modules[name] = module
    try:
        pspec.loader.exec_module(module)
        importlib.import_module(f"{name}.Model_pb2")
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module


def _mlpackage_spec_path(pkg: Path) -> Path:
    """The spec file of an .mlpackage, as its Manifest.json names it."""
    manifest = pkg / "Manifest.json"
    if not manifest.is_file():
        raise InvalidModelFile(pkg, "an .mlpackage without Manifest.json", hint="re-save it with coremltools (model.save)")
    from edgekit._fs import contained_path

    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        root = data["itemInfoEntries"][data["rootModelIdentifier"]]["path"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError) as e:
        raise InvalidModelFile(manifest, f"unreadable .mlpackage manifest ({type(e).__name__}: {e})") from None
    spec = contained_path(pkg / "Data", root, manifest, "the model spec's path")
    if not spec.is_file():
        fallback = pkg / _MLPACKAGE_SPEC
        if not fallback.is_file():
            raise InvalidModelFile(pkg, f"the model spec {spec.relative_to(pkg)} named by Manifest.json is missing")
        spec = fallback
    return spec


def read_coreml(path: str | os.PathLike) -> dict[str, Any]:
    """Describe an ``.mlpackage`` folder or ``.mlmodel`` file from its protobuf spec."""
    p = Path(path)
    from edgekit._fs import existing

    existing(p)
    if p.suffix.lower() == ".mlpackage":
        if not p.is_dir():
            raise InvalidModelFile(p, "an .mlpackage must be a folder", hint="re-save it with coremltools (model.save)")
        spec_path = _mlpackage_spec_path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file())
        size = sum(f.stat().st_size for f in files)
        external = [str(f.relative_to(p)) for f in files if f != spec_path and f.name != "Manifest.json"]
    else:
        if p.is_dir():
            raise InvalidModelFile(p, "is a folder, not an .mlmodel file")
        spec_path, size, external = p, p.stat().st_size, []
    info: dict[str, Any] = {
        "path": str(p), "format": "coreml", "size_bytes": size, "inputs": [], "outputs": [],
        "op_histogram": {}, "num_ops": 0, "max_rank": None, "tensor_ranks": {}, "tensor_dtypes": {},
        "external_files": external, "extra": {},
    }
    proto = _coreml_proto()
    if proto is None:
        info["extra"]["note"] = ("coremltools is not installed, so the Core ML spec was not parsed (inputs, outputs, "
                                 "ops unknown); install it with: pip install 'edgekit[coreml]'")
        return info
    model = proto.Model_pb2.Model()
    try:
        raw = spec_path.read_bytes()
        model.ParseFromString(raw)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise InvalidModelFile(spec_path, f"not a Core ML model spec ({type(e).__name__}: {e})") from None
    if not raw or model.specificationVersion == 0:
        raise InvalidModelFile(spec_path, "not a Core ML model spec (no specificationVersion)")

    model_type = model.WhichOneof("Type")
    desc = model.description
    info["inputs"] = [_feature(f) for f in desc.input]
    info["outputs"] = [_feature(f) for f in desc.output]
    ranks: list[int] = []
    dtypes: list[str] = []
    hist: dict[str, int] = {}
    consts = _count_ops(model, hist, ranks, dtypes)
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
    kind = f.type.WhichOneof("Type")
    if kind == "multiArrayType":
        arr = f.type.multiArrayType
        dtype = _COREML_DTYPES.get(type(arr).ArrayDataType.Name(arr.dataType), "unknown")
        shape: list[Any] = list(arr.shape)
        which = arr.WhichOneof("ShapeFlexibility")
        if which == "shapeRange":
            shape = [r.lowerBound if r.lowerBound == r.upperBound else
                     f"{r.lowerBound}..{'' if r.upperBound < 0 else r.upperBound}" for r in arr.shapeRange.sizeRanges]
        elif which == "enumeratedShapes" and not shape and arr.enumeratedShapes.shapes:
            shape = list(arr.enumeratedShapes.shapes[0].shape)
        return {"name": f.name, "shape": shape, "dtype": dtype, "layout": None}
    if kind == "imageType":
        img = f.type.imageType
        colour = type(img).ColorSpace.Name(img.colorSpace)
        channels = 1 if colour.startswith("GRAYSCALE") else 3
        return {"name": f.name, "shape": [1, channels, img.height, img.width], "dtype": "uint8", "layout": "NCHW",
                "image": colour}
    if kind == "dictionaryType":
        return {"name": f.name, "shape": None, "dtype": "dict", "layout": None}
    return {"name": f.name, "shape": None, "dtype": kind or "unknown", "layout": None}


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
    if value_type.WhichOneof("type") != "tensorType":
        return
    t = value_type.tensorType
    if t.rank >= 0:
        ranks.append(t.rank)
    name = type(t).DESCRIPTOR.fields_by_name["dataType"].enum_type.values_by_number.get(t.dataType)
    dtypes.append(_COREML_DTYPES.get(name.name, name.name.lower()) if name else "unknown")


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
