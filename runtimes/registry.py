"""Backends by name, imported lazily, and :func:`load`, the one entry point of the runtime.

``BACKENDS`` maps a backend name to the module that implements it; a module is imported only
when that backend is used, so ``import edgekit`` costs numpy and nothing else. Each backend
module exposes ``open_session(path, threads, accelerator, **options) -> Session``,
``available() -> str | None`` (None when usable, else why not) and ``FORMATS`` (the formats it
opens).

Example::

    >>> import edgekit
    >>> s = edgekit.load("out/")            # a bundle: the best artifact for this host  # doctest: +SKIP
    >>> s = edgekit.load("m.onnx", backend="onnxruntime", threads=2)                      # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from edgekit.errors import BackendUnavailable, InvalidModelFile, UsageError
from edgekit.runtimes.base import Session
from edgekit.runtimes.host import is_macos, default_threads

__all__ = ["BACKENDS", "load", "model_format", "backend_module", "available_backends", "backends_for_format"]

BACKENDS: dict[str, str] = {
    "onnxruntime": "edgekit.runtimes.onnxruntime",
    "litert": "edgekit.runtimes.litert",
    "coreml": "edgekit.runtimes.coreml",
    "null": "edgekit.runtimes.null",
}
# Which backend opens a format, best first.
FORMAT_BACKENDS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime",),
    "ort": ("onnxruntime",),
    "tflite": ("litert",),
    "coreml": ("coreml",),
    "null": ("null",),
}


def backend_module(name: str) -> ModuleType:
    """Import the module of backend ``name``; unknown names are a usage error listing the known ones."""
    try:
        module_path = BACKENDS[name]
    except KeyError:
        raise UsageError(
            f"unknown backend '{name}'", hint=f"choose one of: auto, {', '.join(b for b in BACKENDS if b != 'null')}"
        ) from None
    return importlib.import_module(module_path)


def available_backends() -> dict[str, str | None]:
    """Every backend name → None when it can run here, else the reason it cannot."""
    out: dict[str, str | None] = {}
    for name in BACKENDS:
        try:
            out[name] = backend_module(name).available()
        except ImportError as e:  # a backend module that cannot even import
            out[name] = str(e)
    return out


def backends_for_format(fmt: str) -> tuple[str, ...]:
    return FORMAT_BACKENDS.get(fmt, ())


def load(
    path: str | os.PathLike,
    backend: str = "auto",
    threads: int | None = None,
    accelerator: str = "auto",
    **options,
) -> Session:
    """Open a model file (.onnx, .ort, .tflite, .mlpackage) or an edgekit bundle folder.

    ``backend="auto"`` picks the backend from the file's format (for a bundle: the best
    verified artifact this host can run). ``threads=None`` uses every physical core
    (or ``EDGEKIT_THREADS`` when set).
    ``accelerator`` selects a delegate or execution provider (``"auto"``: the backend's best
    available CPU path; e.g. ``"xnnpack"``, ``"none"``, ``"CUDAExecutionProvider"``, or a
    path to an external TFLite delegate such as ``libedgetpu.so.1``). Backend-specific
    ``options`` (e.g. ``strict=True`` for onnxruntime) are passed through.
    """
    from edgekit.bundle import is_bundle

    p = Path(path)
    from edgekit._fs import existing

    existing(p)
    if threads is None:
        threads = default_threads()
    elif not isinstance(threads, int) or threads < 1:
        raise UsageError(f"threads must be a positive integer, got {threads!r}")

    if is_bundle(p):
        from edgekit.runtimes.bundle_session import open_bundle

        return open_bundle(p, backend=backend, threads=threads, accelerator=accelerator, **options)

    fmt = model_format(p)
    if backend == "auto":
        backend = backends_for_format(fmt)[0]
    module = backend_module(backend)
    if fmt not in module.FORMATS:
        raise UsageError(
            f"backend '{backend}' cannot open {fmt} models", where=p,
            hint=f"use backend {' or '.join(backends_for_format(fmt))} (or 'auto')",
        )
    why_not = module.available()
    if why_not:
        raise BackendUnavailable(why_not, where=p)
    return module.open_session(p, threads=threads, accelerator=accelerator, **options)


def model_format(path: str | os.PathLike) -> str:
    """The format of an existing model path (not a bundle), or a one-line error saying why the
    path is not a model edgekit opens: an unknown suffix, a folder that is not an .mlpackage."""
    from edgekit.bundle import format_of

    p = Path(path)
    fmt = format_of(p)
    if fmt is None:
        if p.is_dir():
            raise InvalidModelFile(p, "a folder that is neither an edgekit bundle nor an .mlpackage",
                                   hint="pass a model file or a folder written by `edgekit convert`")
        raise InvalidModelFile(p, f"unknown model format '{p.suffix or '(no suffix)'}'",
                               hint="edgekit opens .onnx, .ort, .tflite and .mlpackage files")
    if p.is_dir() and fmt != "coreml":
        raise InvalidModelFile(p, f"is a folder, not a {fmt} file", hint=f"pass the .{fmt} file itself")
    return fmt


def host_preference() -> tuple[str, ...]:
    """Formats in the order this host runs them best (for bundles)."""
    return ("coreml", "tflite", "onnx", "ort") if is_macos() else ("tflite", "onnx", "ort", "coreml")
