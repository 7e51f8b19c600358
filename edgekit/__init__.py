"""edgekit: put efficient vision models on devices.

Convert a trained PyTorch (or ONNX) model to ONNX, TFLite/LiteRT and CoreML, rewrite it so
NPUs and GPU delegates run all of it, verify every artifact against its source, lint it
against accelerator profiles, and run it through one small runtime API.

The runtime side is light: ``import edgekit`` and ``edgekit.load(...)`` need numpy and one
backend (onnxruntime or ai-edge-litert), never torch. Converter entry points import their
heavy libraries only when called.

Example::

    >>> import edgekit
    >>> session = edgekit.load("bundle/")               # doctest: +SKIP
    >>> print(edgekit.bench(session, runs=50))           # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> "module:attribute", resolved on first use so that `import edgekit` stays light.
_LAZY = {
    "load": "edgekit.runtimes.registry:load",
    "bench": "edgekit.runtimes.bench:bench",
    "convert": "edgekit.converters.api:convert",
    "compile": "edgekit.compiler:compile",
    "Session": "edgekit.runtimes.base:Session",
    "TensorSpec": "edgekit.runtimes.base:TensorSpec",
    "zoo": "edgekit.zoo",
    "errors": "edgekit.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from edgekit import errors, zoo
    from edgekit.compiler import compile
    from edgekit.converters.api import convert
    from edgekit.runtimes.base import Session, TensorSpec
    from edgekit.runtimes.bench import bench
    from edgekit.runtimes.registry import load


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    import importlib

    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
