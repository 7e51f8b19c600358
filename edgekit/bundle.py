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

Writes are atomic: :func:`staging_dir` builds the bundle in a temporary sibling folder and
renames it into place only when everything was written.

Example::

    >>> m = read_manifest("out")                                   # doctest: +SKIP
    >>> m.artifact_for("tflite").inputs[0].layout                   # doctest: +SKIP
    'NHWC'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgekit._fs import atomic_path, umask
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidModelFile(path, f"unreadable manifest ({e})") from None
    if not isinstance(data, dict):
        raise InvalidModelFile(path, "manifest is not a JSON object")
    return Manifest.from_dict(data, where=path)


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> Path:
    """Write ``folder/edgekit.json`` atomically (temporary file, then rename)."""
    path = Path(folder) / MANIFEST_NAME
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def staging_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success it replaces ``out``.

    An existing non-empty ``out`` is refused unless ``force``. On any error the temporary
    folder is removed and ``out`` is left exactly as it was.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError("output path exists and is not a folder", where=out, hint="choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError("output folder is not empty", where=out, hint="pass --force to replace it, or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700; the finished bundle is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError as e:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgekitError(f"could not move the finished bundle into place ({e})", where=out) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
