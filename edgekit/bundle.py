"""The bundle: a folder of artifacts plus ``edgekit.json``, the manifest that describes them.

Apps, mobile templates and ``edgekit.load`` read only the manifest; they never guess a
layout, a normalisation or a label. The manifest is versioned (:data:`MANIFEST_VERSION`).

Layout of a bundle::

    out/
      model.onnx          (those formats asked for)
      model.tflite
      model.mlpackage/
      edgekit.json        {"edgekit_manifest": 1, "task": ..., "source": ..., "preprocess": ...,
                           "artifacts": [{"path", "format", "target", "inputs", "outputs",
                                          "passes", "verification", "lint", ...}], "tools": ...}

Writes never destroy what edgekit did not write, and never show half a bundle: see
:func:`staging_dir`.

Example::

    >>> m = read_manifest("out")                                   # doctest: +SKIP
    >>> m.artifact_for("tflite").inputs[0].layout                   # doctest: +SKIP
    'NHWC'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgekit._fs import atomic_path
from edgekit.errors import EdgekitError, InvalidModelFile, ModelFileNotFound, UsageError
from edgekit.runtimes.base import TensorSpec

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "FORMATS",
    "TASKS",
    "Artifact",
    "Manifest",
    "is_bundle",
    "read_manifest",
    "write_manifest",
    "staging_dir",
    "owned_entries",
    "foreign_entry",
    "sha256_file",
    "format_of",
]

MANIFEST_NAME = "edgekit.json"
MANIFEST_VERSION = 1
TASKS = ("classify", "super-resolve", "decode-video", "other")
# format name -> file suffix of its artifact
FORMATS = {"onnx": ".onnx", "ort": ".ort", "tflite": ".tflite", "coreml": ".mlpackage"}


def format_of(path: str | os.PathLike) -> str | None:
    """The model format a path names by its suffix, or None."""
    if Path(path).name.lower().endswith(".null.json"):  # the test backend's model description
        return "null"
    suffix = Path(path).suffix.lower()
    for fmt, ext in FORMATS.items():
        if suffix == ext:
            return fmt
    if suffix == ".mlmodel":
        return "coreml"
    return None


@dataclass
class Artifact:
    """One model file of a bundle and everything known about it."""

    path: str  # relative to the bundle folder
    format: str  # onnx | ort | tflite | coreml
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    target: str | None = None
    precision: str = "fp32"
    passes: list[str] = field(default_factory=list)
    # {"status": "passed"|"failed"|"skipped", "reason": str, "metrics": {...}}
    verification: dict[str, Any] = field(default_factory=lambda: {"status": "not-run"})
    lint: dict[str, Any] = field(default_factory=dict)
    size_bytes: int | None = None
    sha256: str | None = None
    # Layout the *source* model uses for each tensor whose artifact layout differs (e.g. an
    # artifact input in THWC for a source in NCTHW). Sessions opened on the bundle translate.
    source_layouts: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return self.verification.get("status") == "passed"

    def to_dict(self) -> dict[str, Any]:
        d = {
            "path": self.path,
            "format": self.format,
            "target": self.target,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "passes": list(self.passes),
            "verification": self.verification,
            "lint": self.lint,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "source_layouts": self.source_layouts,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Artifact":
        known = {"path", "format", "target", "precision", "inputs", "outputs", "passes", "verification", "lint",
                 "size_bytes", "sha256", "source_layouts"}
        return cls(
            path=d["path"],
            format=d["format"],
            inputs=[TensorSpec.from_dict(t) for t in d.get("inputs", [])],
            outputs=[TensorSpec.from_dict(t) for t in d.get("outputs", [])],
            target=d.get("target"),
            precision=d.get("precision", "fp32"),
            passes=list(d.get("passes", [])),
            verification=dict(d.get("verification", {"status": "not-run"})),
            lint=dict(d.get("lint", {})),
            size_bytes=d.get("size_bytes"),
            sha256=d.get("sha256"),
            source_layouts=dict(d.get("source_layouts", {})),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass
class Manifest:
    """The content of ``edgekit.json``.

    ``source``: ``{"kind": "zoo"|"file"|"module"|"exported-program"|"onnx", "ref": str,
    "weights_sha256": str|None}``. ``preprocess``: ``{"layout", "color_order", "value_range",
    "mean", "std", "scale_factor", "input_size", "labels", "folded"}`` (keys a task does not use
    are left out). ``tools``: package name to version.
    """

    name: str
    task: str
    source: dict[str, Any]
    preprocess: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    version: int = MANIFEST_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def artifact_for(self, fmt: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.format == fmt), None)

    @property
    def labels(self) -> list[str] | None:
        return self.preprocess.get("labels")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "edgekit_manifest": self.version,
            "name": self.name,
            "task": self.task,
            "created": self.created,
            "source": self.source,
            "preprocess": self.preprocess,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "tools": self.tools,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | os.PathLike = MANIFEST_NAME) -> "Manifest":
        version = d.get("edgekit_manifest")
        if not isinstance(version, int):
            raise InvalidModelFile(where, "not an edgekit manifest (no 'edgekit_manifest' version field)")
        if version > MANIFEST_VERSION:
            raise InvalidModelFile(
                where, f"manifest version {version} is newer than this edgekit understands ({MANIFEST_VERSION})",
                hint="upgrade edgekit: pip install -U edgekit",
            )
        try:
            known = {"edgekit_manifest", "name", "task", "created", "source", "preprocess", "artifacts", "tools"}
            return cls(
                name=d.get("name", "model"),
                task=d.get("task", "other"),
                source=dict(d.get("source", {})),
                preprocess=dict(d.get("preprocess", {})),
                artifacts=[Artifact.from_dict(a) for a in d.get("artifacts", [])],
                tools=dict(d.get("tools", {})),
                created=d.get("created"),
                version=version,
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidModelFile(where, f"malformed manifest ({type(e).__name__}: {e})") from None


# -- the manifest's schema (checked when a manifest is read) ---------------------------------------
MAX_MANIFEST_BYTES = 64 << 20  # a manifest is kilobytes; labels of 100k classes fit many times over
MAX_DIM = 2**31 - 1  # what every runtime's int32 dims hold
MAX_ELEMENTS = 2**36  # 256 GiB of float32: beyond any model edgekit can run
LAYOUT_LETTERS = set("NCDHWTL")  # batch, channels, depth, height, width, time, length
DTYPES = ("float32", "float16", "float64", "bfloat16", "int8", "uint8", "int16", "uint16", "int32", "uint32",
          "int64", "uint64", "bool")


def _tensor_rule(t: dict) -> tuple[str, str] | None:
    shape, layout = t.get("shape"), t.get("layout")
    static = [d for d in shape if isinstance(d, int) and d >= 0]
    if static and math.prod(static) > MAX_ELEMENTS:
        return "shape", f"holds {math.prod(static):.3g} elements (at most {MAX_ELEMENTS:.3g})"
    if layout is None:
        return None
    from edgekit.runtimes.bundle_session import parse_layout

    try:
        dims = parse_layout(layout)
    except EdgekitError:
        return "layout", f"'{layout}' is not a layout: capital letters, one per dimension, e.g. NCHW or (NT)HWC"
    unknown = sorted(set("".join(dims)) - LAYOUT_LETTERS)
    if unknown:
        return "layout", f"'{layout}' uses {', '.join(unknown)}; known letters are {''.join(sorted(LAYOUT_LETTERS))}"
    if len(dims) != len(shape):
        return "layout", f"'{layout}' names {len(dims)} dimensions, the shape has {len(shape)}"
    return None


def _compiled_by_schema():
    """An artifact an NPU compiler made (``edgekit compile``): which compiler, for which system."""
    from edgekit.schema import Obj, OneOf, Opt, Str

    vela = Obj({"vela!": Str(nonempty=True, max_len=64), "accelerator!": Str(nonempty=True, max_len=64),
                "system_config": Str(max_len=256), "memory_mode": Str(max_len=256), "config_file": Str(max_len=256),
                "source": Str(max_len=1024), "source_sha256": Opt(Str(max_len=64))})
    rknn = Obj({"rknn-toolkit2!": Str(nonempty=True, max_len=64), "platform!": Str(nonempty=True, max_len=64),
                "source": Str(max_len=1024), "source_sha256": Opt(Str(max_len=64))})
    return OneOf([vela, rknn], "Vela's or rknn-toolkit2's record")


def _npu_schema():
    """What the NPU compiler reported for a compiled artifact (:mod:`edgekit.vela`, :mod:`edgekit.rknn`)."""
    from edgekit.schema import Any_, Int, List, Map, Obj, OneOf, Opt, Str

    count = Int(min=0)
    cycles = OneOf([count, Map(count)], "a cycle count, or cycle counts by op type")
    cpu_op = Obj({"index!": count, "op!": Str(max_len=128), "on": Str(choices=("npu", "cpu")),
                  "reasons": List(Str(max_len=4096), max_len=64)})
    npu_op = Obj({"index!": count, "op!": Str(max_len=128), "on": Str(choices=("npu", "cpu")), "cycles": count,
                  "macs": count})
    ops = Obj({"total!": count, "npu!": count, "cpu!": count, "npu_by_type": Map(count), "cpu_by_type": Map(count),
               "cpu_ops": List(cpu_op, max_len=100_000), "npu_ops": List(npu_op, max_len=100_000),
               "vela_counts": Map(count)})
    compiler = Obj({"name!": Str(max_len=64), "version!": Opt(Str(max_len=64))})
    rknn_op = Obj({"index!": count, "op!": Str(max_len=128), "dtype": Str(max_len=32), "on": Str(choices=("npu", "cpu")),
                   "cycles_ddr_npu_total": Opt(List(count, max_len=3)), "name": Str(max_len=4096)})
    rknn = Obj({
        "compiler!": compiler, "platform!": Str(nonempty=True, max_len=64), "python": Str(max_len=4096),
        "source": Str(max_len=1024), "opset": Map(count),
        "ops!": Obj({"total!": count, "npu!": count, "cpu!": count, "cpu_ops": List(Map(Any_()), max_len=100_000),
                     "table": List(rknn_op, max_len=100_000)}),
        "agreement": Map(Any_()), "notes": List(Str()),
    })
    return OneOf([_vela_npu(compiler, count, cycles, ops), rknn], "Vela's or rknn-toolkit2's report")


def _vela_npu(compiler, count, cycles, ops):
    from edgekit.schema import List, Map, Num, Obj, Opt, Str

    return Obj({
        "compiler": compiler,
        "accelerator!": Str(nonempty=True, max_len=64), "system_config": Str(max_len=256),
        "memory_mode": Str(max_len=256), "config_file": Str(max_len=256), "core_clock_hz": Num(min=0),
        "ops!": ops, "macs": count, "cycles": Map(cycles), "inference_time_s": Num(min=0),
        "inferences_per_second": Opt(Num(min=0)), "memory": Map(count), "weights": Map(count),
        "notes": List(Str()),
    })


def _manifest_schema():
    from edgekit.schema import Any_, Bool, Int, List, Map, Num, Obj, OneOf, Opt, Str

    dim = OneOf([Int(min=-1, max=MAX_DIM), Opt(Str(max_len=64))], "an integer in [-1, 2^31-1], a dimension name or null")
    tensor = Obj({"name!": Str(nonempty=True), "shape!": List(dim, max_len=16), "dtype!": Str(choices=DTYPES),
                  "layout": Opt(Str(max_len=32))}, rule=_tensor_rule)
    qparams = Obj({"scale!": Num(positive=True), "zero_point!": Int(min=-(2**31), max=2**31 - 1),
                   "dtype": Str(choices=("int8", "uint8", "int16", "uint16", "int32"))})
    artifact = Obj({
        "path!": Str(nonempty=True, max_len=1024), "format!": Str(choices=tuple(FORMATS) + ("null", "rknn")),
        "inputs": List(tensor, max_len=4096), "outputs": List(tensor, max_len=4096), "target": Opt(Str()),
        "precision": Str(choices=("fp32", "fp16", "int8")), "passes": List(Str()),
        "verification": Map(Any_()), "lint": Map(Any_()), "size_bytes": Opt(Int(min=0)),
        "sha256": Opt(Str(max_len=64)), "source_layouts": Map(Str(max_len=32)), "quantized_io": Map(qparams),
        "compiled_by": _compiled_by_schema(), "npu": _npu_schema(),
    })
    preprocess = Obj({
        "layout": Opt(Str(max_len=32)), "color_order": Opt(Str(choices=("RGB", "BGR", "GRAY"))),
        "value_range": Opt(List(Num(), min_len=2, max_len=2)), "mean": Opt(List(Num(), min_len=1, max_len=4)),
        "std": Opt(List(Num(positive=True), min_len=1, max_len=4)), "scale_factor": Opt(Num(positive=True, max=64)),
        "input_size": Opt(List(Int(min=1, max=MAX_DIM), max_len=4)), "labels": Opt(List(Str(max_len=1024))),
        "folded": Opt(Bool()),
    })
    return Obj({
        "edgekit_manifest!": Int(min=1, max=MANIFEST_VERSION), "name": Str(max_len=256), "task": Str(choices=TASKS),
        "created": Opt(Str()), "source": Map(Any_()), "preprocess": preprocess, "artifacts": List(artifact, max_len=64),
        "tools": Map(Str(max_len=256)),
    })


def validate_manifest(data: Any, where: str | os.PathLike) -> None:
    """Check parsed ``edgekit.json`` against the manifest schema; one-line error with the field."""
    from edgekit.schema import Invalid, validate

    if not isinstance(data, dict):
        raise InvalidModelFile(where, "manifest is not a JSON object")
    version = data.get("edgekit_manifest")
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION:
        raise InvalidModelFile(
            where, f"manifest version {version} is newer than this edgekit understands ({MANIFEST_VERSION})",
            hint="upgrade edgekit: pip install -U edgekit")
    if "edgekit_manifest" not in data:
        raise InvalidModelFile(where, "not an edgekit manifest (no 'edgekit_manifest' version field)")
    try:
        validate(data, _manifest_schema())
    except Invalid as e:
        raise InvalidModelFile(where, f"malformed manifest: {e}", hint="re-run `edgekit convert`") from None


def is_bundle(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST_NAME).is_file()


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Read ``folder/edgekit.json``; raise a one-line error for a missing or malformed one."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelFileNotFound(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise InvalidModelFile(folder, f"a folder without {MANIFEST_NAME} is not an edgekit bundle",
                               hint="pass a model file, or a folder written by `edgekit convert`")
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise InvalidModelFile(path, f"a {size / 2**20:.0f} MB manifest (at most {MAX_MANIFEST_BYTES >> 20} MB)",
                                   hint="re-run `edgekit convert`")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidModelFile(path, f"unreadable manifest ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise InvalidModelFile(path, "unreadable manifest (JSON nested too deeply)") from None
    validate_manifest(data, path)
    return Manifest.from_dict(data, where=path)


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``folder/edgekit.json`` atomically (temporary file, then rename)."""
    path = Path(folder) / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def owned_entries(manifest: Manifest) -> set[str]:
    """The top-level names a bundle's manifest accounts for: itself, each artifact (an
    ``.mlpackage`` is one folder) and the files beside an artifact that belong to it (ONNX
    external weights ``NAME.data``)."""
    names = {MANIFEST_NAME}
    for a in manifest.artifacts:
        if not isinstance(a.path, str) or not a.path:
            continue
        top = Path(a.path).parts[0] if Path(a.path).parts else ""
        if top and top not in (".", ".."):
            names.add(top)
            names.add(f"{top}.data")
    return names


def foreign_entry(folder: str | os.PathLike) -> str | None:
    """The first entry of ``folder`` (sorted) that edgekit did not write, or ``None`` when the
    folder is empty or holds only an edgekit bundle: an ``edgekit.json`` that edgekit wrote (it
    records the edgekit version under ``tools``) and the artifacts it names. Temporaries of
    running edgekit processes are not counted."""
    from edgekit._fs import is_partial

    folder = Path(folder)
    entries = sorted(e for e in os.listdir(folder) if not is_partial(e))
    if not entries:
        return None
    if MANIFEST_NAME not in entries:
        return entries[0]
    try:
        manifest = read_manifest(folder)
    except EdgekitError:
        return MANIFEST_NAME
    if "edgekit" not in manifest.tools:
        return MANIFEST_NAME
    owned = owned_entries(manifest)
    return next((e for e in entries if e not in owned), None)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """What a folder holds at its top level: name → (inode, size, mtime)."""
    from edgekit._fs import is_partial

    out = {}
    for e in os.scandir(folder):
        if is_partial(e.name):
            continue
        st = e.stat(follow_symlinks=False)
        out[e.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


@contextlib.contextmanager
def staging_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder to build a bundle in; on success it becomes ``out``.

    Nothing edgekit did not write is ever deleted or replaced:

    - ``out`` that does not exist: the bundle is built beside it and moved into place with a
      rename that fails if ``out`` appeared meanwhile (another conversion): that conversion
      keeps its bundle and this one reports that it lost.
    - ``out`` that exists: it must be empty, or (with ``force``) hold only an edgekit bundle;
      anything else is refused, naming one unexpected file, before any work. The bundle is
      built inside it (in a hidden temporary folder) and, under a lock on ``out``, swapped in
      only if ``out`` still holds exactly what it held at the start: the old manifest goes
      first (so no reader sees old and new mixed), then the old artifacts, then the new ones,
      the new manifest last. The folder itself (its inode: a shell's current folder) stays.
    - ``out`` is refused outright when it is a filesystem root, the home folder or a folder
      containing the current one. Temporaries of killed edgekit processes beside or inside
      ``out`` are removed first.

    On any error the temporary folder is removed and ``out`` is left as it was.
    """
    from edgekit._fs import (checked_destination, folder_lock, partial_path, reap_partials, rename_noreplace,
                             writable_folder)

    out = checked_destination(out)
    if out.exists() and not out.is_dir():
        raise UsageError("output path exists and is not a folder", where=out, hint="choose another --out")
    existed = out.is_dir()
    if existed:
        reap_partials(out)
        if _snapshot(out):
            if not force:
                raise UsageError("output folder is not empty", where=out,
                                 hint="pass --force to replace the edgekit bundle in it, or choose another --out")
            foreign = foreign_entry(out)
            if foreign is not None:
                raise UsageError(f"holds '{foreign}', which edgekit did not write; --force replaces only an empty "
                                 "folder or an edgekit bundle", where=out, hint="choose another --out")
        writable_folder(out)
        before = _snapshot(out)
        tmp = partial_path(out / "bundle", folder=True, within=out)
    else:
        writable_folder(out.parent, create=True)
        reap_partials(out.parent)
        tmp = partial_path(out, folder=True)
    try:
        yield tmp
        if not existed:
            try:
                rename_noreplace(tmp, out)
            except FileExistsError:
                raise EdgekitError("appeared while this conversion ran (another conversion wrote it?); this "
                                   "conversion's bundle was not written", where=out,
                                   hint="choose another --out, or run again with --force to replace it") from None
            return
        with folder_lock(out):
            now = _snapshot(out)
            if now != before:
                added, gone = sorted(set(now) - set(before)), sorted(set(before) - set(now))
                what = (f"'{added[0]}' appeared" if added else f"'{gone[0]}' disappeared" if gone else
                        f"'{next(k for k in sorted(now) if now[k] != before[k])}' changed")
                raise EdgekitError(f"{what} while this conversion ran (another conversion or program wrote there); "
                                   "this conversion's bundle was not written", where=out,
                                   hint="run again, or choose another --out")
            _swap_in(out, tmp, set(before))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(out: Path, staged: Path, old: set[str]) -> None:
    """Replace the bundle entries ``old`` of ``out`` by the entries of ``staged``: old manifest
    first, new manifest last."""
    from edgekit._fs import partial_path

    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST_NAME).unlink()
    trash = partial_path(out / "old", folder=True, within=out)
    try:
        for name in old - {MANIFEST_NAME}:
            with contextlib.suppress(FileNotFoundError):
                os.replace(out / name, trash / name)
        new = sorted(os.listdir(staged))
        for name in new:
            if name != MANIFEST_NAME:
                os.replace(staged / name, out / name)
        if MANIFEST_NAME in new:
            os.replace(staged / MANIFEST_NAME, out / MANIFEST_NAME)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of every file of a folder (an .mlpackage) in sorted path order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()
