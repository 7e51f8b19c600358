"""Read a Core ML model's protobuf spec: the one reader for ``.mlpackage`` folders and ``.mlmodel`` files.

``edgekit inspect`` (:func:`edgekit.inspect.read_coreml`), ``edgekit lint``
(:mod:`edgekit.lint.readers.coreml`), the coreml backend (its tensor specs) and the
converter's check of a saved package (:func:`spec_io`, used by verification) all read the spec
here: :func:`spec_file` finds it inside an ``.mlpackage`` through ``Manifest.json`` (the path
it names is kept inside the package by :func:`edgekit._fs.contained_path`), :func:`parse_spec`
parses it, :data:`DTYPES` names its data types the NumPy way, :func:`feature` describes a
model input or output and :func:`mil_type` the type of an ML program value.

Parsing needs only coremltools' generated protobuf modules (its ``proto`` folder, ~20 ms):
:func:`protobuf` loads them without importing coremltools itself, which would import torch
and its converters (~3 s), so this works on any host. Without coremltools installed the spec
cannot be parsed: :func:`load_spec` raises :class:`~edgekit.errors.MissingDependency` naming
``pip install 'edgekit[coreml]'``.

Example::

    >>> model = load_spec("model.mlpackage")                        # doctest: +SKIP
    >>> [feature(f).shape for f in model.description.input]         # doctest: +SKIP
    [(1, 3, 224, 224)]
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgekit.errors import InvalidModelFile, MissingDependency

__all__ = ["DTYPES", "Feature", "protobuf", "require_protobuf", "spec_file", "parse_spec", "load_spec", "feature",
           "mil_type", "enum_dtype", "spec_io"]

# The spec inside an .mlpackage when Manifest.json names one that is missing.
MLPACKAGE_SPEC = Path("Data") / "com.apple.CoreML" / "model.mlmodel"

# Core ML ArrayFeatureType.ArrayDataType and MIL DataType enum names -> NumPy dtype names (other
# names are lower-cased: "FLOAT8E4M3FN" -> "float8e4m3fn").
DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "FLOAT64": "float64", "BFLOAT16": "bfloat16",
    "INT4": "int4", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT4": "uint4",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64", "BOOL": "bool", "STRING": "str",
}
_FEATURE_KINDS = {"multiArrayType": "tensor", "imageType": "image", "dictionaryType": "dictionary",
                  "stringType": "string"}
_FEATURE_DTYPES = {"dictionary": "dict", "string": "str"}


def protobuf() -> ModuleType | None:
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
    try:
        spec = importlib.util.find_spec("coremltools")
    except (ImportError, ValueError):  # an import hook refusing it: as good as absent
        return None
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


def spec_file(path: str | os.PathLike) -> Path:
    """The protobuf spec of an ``.mlpackage`` (as its ``Manifest.json`` names it) or the
    ``.mlmodel`` file itself. Raises :class:`~edgekit.errors.InvalidModelFile` for a package
    that is not a folder, has no readable manifest, or names a spec that is missing."""
    p = Path(path)
    if p.suffix.lower() != ".mlpackage":
        if p.is_dir():
            raise InvalidModelFile(p, "is a folder, not an .mlmodel file")
        return p
    if not p.is_dir():
        raise InvalidModelFile(p, "an .mlpackage must be a folder", hint="re-save it with coremltools (model.save)")
    manifest = p / "Manifest.json"
    if not manifest.is_file():
        raise InvalidModelFile(p, "an .mlpackage without Manifest.json", hint="re-save it with coremltools (model.save)")
    from edgekit._fs import contained_path

    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        root = data["itemInfoEntries"][data["rootModelIdentifier"]]["path"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError) as e:
        raise InvalidModelFile(manifest, f"unreadable .mlpackage manifest ({type(e).__name__}: {e})") from None
    spec = contained_path(p / "Data", root, manifest, "the model spec's path")
    if not spec.is_file():
        fallback = p / MLPACKAGE_SPEC
        if not fallback.is_file():
            raise InvalidModelFile(p, f"the model spec {spec.relative_to(p)} named by Manifest.json is missing")
        spec = fallback
    return spec


def parse_spec(spec: Path, proto: ModuleType) -> Any:
    """The ``Model`` message in the spec file ``spec`` (from :func:`spec_file`), parsed with the
    protobuf package ``proto`` (from :func:`protobuf`)."""
    model = proto.Model_pb2.Model()
    try:
        raw = spec.read_bytes()
        model.ParseFromString(raw)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise InvalidModelFile(spec, f"not a Core ML model spec ({type(e).__name__}: {e})") from None
    if not raw or model.specificationVersion == 0:
        raise InvalidModelFile(spec, "not a Core ML model spec (no specificationVersion)")
    return model


def require_protobuf(purpose: str) -> ModuleType:
    """:func:`protobuf`, or :class:`~edgekit.errors.MissingDependency` saying that ``purpose``
    needs coremltools (``pip install 'edgekit[coreml]'``)."""
    proto = protobuf()
    if proto is None:
        raise MissingDependency("coremltools", purpose, extra="coreml")
    return proto


def load_spec(path: str | os.PathLike, purpose: str = "reading a Core ML model") -> Any:
    """The parsed ``Model`` message of an ``.mlpackage`` or ``.mlmodel``. Raises
    :class:`~edgekit.errors.MissingDependency` (naming ``purpose``) without coremltools."""
    return parse_spec(spec_file(path), require_protobuf(purpose))


def enum_dtype(message: Any, field: str) -> str:
    """The NumPy dtype name of the enum ``field`` of ``message`` (an ArrayDataType or a MIL
    DataType); ``"unknown"`` for a number the enum does not define."""
    value = type(message).DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(getattr(message, field))
    return DTYPES.get(value.name, value.name.lower()) if value else "unknown"


@dataclass(frozen=True)
class Feature:
    """A model input or output as its spec declares it. ``kind``: ``tensor`` (a multi-array),
    ``image``, ``dictionary``, ``string``, or the spec's own type name. ``shape`` is the declared
    (default) shape — (1, C, H, W) for an image, () for other kinds; ``flexible`` the shape with
    ``"lo..hi"`` for each dim a shape range leaves open (None when the shape is fixed)."""

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    flexible: tuple[int | str, ...] | None = None
    color_space: str | None = None


def feature(f: Any) -> Feature:
    """A ``FeatureDescription`` of the spec's ``description.input`` / ``output``."""
    which = f.type.WhichOneof("Type")
    kind = _FEATURE_KINDS.get(which or "", which or "unknown")
    if kind == "tensor":
        arr = f.type.multiArrayType
        shape = tuple(int(d) for d in arr.shape)
        flexible = None
        flex = arr.WhichOneof("ShapeFlexibility")
        if flex == "shapeRange":
            flexible = tuple(r.lowerBound if r.lowerBound == r.upperBound else
                             f"{r.lowerBound}..{'' if r.upperBound < 0 else r.upperBound}" for r in arr.shapeRange.sizeRanges)
        elif flex == "enumeratedShapes" and not shape and arr.enumeratedShapes.shapes:
            shape = tuple(int(d) for d in arr.enumeratedShapes.shapes[0].shape)
        return Feature(f.name, kind, shape, enum_dtype(arr, "dataType"), flexible)
    if kind == "image":
        img = f.type.imageType
        colour = type(img).ColorSpace.Name(img.colorSpace) if img.colorSpace in type(img).ColorSpace.values() \
            else str(img.colorSpace)
        channels = 1 if colour.startswith("GRAYSCALE") else 3
        return Feature(f.name, kind, (1, channels, int(img.height), int(img.width)), "uint8", color_space=colour)
    return Feature(f.name, kind, (), _FEATURE_DTYPES.get(kind, kind))


# No model has tensors of a higher rank; a spec that declares one is corrupt (a mutated rank of
# 805,306,367 once made the readers build a shape of that length).
MAX_RANK = 64


class CorruptSpec(ValueError):
    """A Core ML spec that parses but cannot be a model (callers name the file)."""


def mil_type(value_type: Any) -> tuple[tuple[int | None, ...] | None, str]:
    """``(shape, dtype)`` of an ML program ``ValueType``: dims that are not constant are None;
    the shape is None when not even the rank is known, or for a value that is not a tensor
    (then ``dtype`` is its kind: ``listType``, ``dictionaryType``...). Raises :class:`CorruptSpec`
    for a rank above :data:`MAX_RANK`."""
    if value_type.WhichOneof("type") != "tensorType":
        return None, value_type.WhichOneof("type") or "unknown"
    t = value_type.tensorType
    dtype = enum_dtype(t, "dataType")
    if t.rank < 0:
        return None, dtype
    if t.rank > MAX_RANK:
        raise CorruptSpec(f"a tensor declares rank {t.rank} (more than {MAX_RANK}): the spec is corrupt")
    dims = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in t.dimensions)
    return dims if len(dims) == t.rank else tuple([None] * t.rank), dtype


def spec_io(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of a saved ``.mlpackage`` read from its spec (works on any host):
    ``[{"name", "shape", "dtype", "kind"}]`` with ``kind`` one of tensor / image / dictionary /
    string."""
    desc = load_spec(path, "checking a Core ML package").description

    def row(f: Any) -> dict:
        x = feature(f)
        return {"name": x.name, "shape": list(x.shape), "dtype": x.dtype, "kind": x.kind}

    return [row(f) for f in desc.input], [row(f) for f in desc.output]
