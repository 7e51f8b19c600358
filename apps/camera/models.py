"""Which model the demo runs: ``--model`` resolved to something :func:`edgekit.load` opens.
(The shipped bundle itself is the data folder ``default_bundle/`` beside this module.)

- nothing: for ``upscale``, the bundle shipped inside the package (``default_bundle/``:
  quicksrnet_small_x2 with its trained weights, TFLite and ONNX, input 1x3x240x320 → 480x640),
  so the demo runs on a Raspberry Pi without torch; for ``classify``, the zoo's mobilenet_v2
  (no trained weights ship with it: its predictions are meaningless, and the demo says so);
- a bundle folder or a model file (``.tflite``, ``.onnx``, ``.ort``, ``.mlpackage``): used as is;
- a zoo name: converted with :func:`edgekit.convert` on first use and cached under the user
  cache directory (``$XDG_CACHE_HOME/edgekit/demo`` or ``~/.cache/edgekit/demo``), keyed by the
  model, its weights, the input size and the edgekit version. Only this path imports torch,
  and a host without it gets a one-line :class:`~edgekit.errors.MissingDependency`.

:func:`precheck_model` refuses, before anything is opened or converted, a bundle or zoo model
made for another task (a classifier for ``upscale``, a video decoder for either): a one-line
usage error (exit 2) naming it, its task and what to pass instead. Bare model files are judged
by their tensors once loaded (:func:`edgekit.apps.camera.tasks.check_model_fits`).

Example::

    >>> resolve_model(None, "upscale").path.name                      # doctest: +SKIP
    'default_bundle'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import DemoError, MissingDependency, ModelFileNotFound

__all__ = ["DEFAULT_BUNDLE_DIR", "DEFAULT_MODELS", "DEFAULT_SR_INPUT", "ResolvedModel", "resolve_model", "cache_dir",
           "default_bundle_ready", "precheck_model"]

DEFAULT_BUNDLE_DIR = Path(__file__).with_name("default_bundle")
DEFAULT_SR_MODEL = "quicksrnet_small_x2"
DEFAULT_SR_INPUT = (1, 3, 240, 320)  # NCHW: a 320x240 frame in, 640x480 out
DEFAULT_MODELS = {"upscale": DEFAULT_SR_MODEL, "classify": "mobilenet_v2"}
_ZOO_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODEL_SUFFIXES = (".onnx", ".ort", ".tflite", ".mlpackage", ".mlmodel", ".json")


@dataclass
class ResolvedModel:
    path: Path  # a bundle folder or a model file
    name: str  # shown in the overlay
    origin: str  # "shipped" | "path" | "zoo-cache" | "zoo-converted"
    note: str | None = None  # something the user should know (e.g. untrained weights)


def cache_dir() -> Path:
    """Where converted zoo models are kept: ``$XDG_CACHE_HOME/edgekit/demo`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgekit" / "demo"


def default_bundle_ready() -> bool:
    from edgekit.bundle import is_bundle

    return is_bundle(DEFAULT_BUNDLE_DIR)


def resolve_model(spec: str | None, task: str, *, progress=None) -> ResolvedModel:
    """Resolve ``--model`` for ``task`` (``upscale`` or ``classify``); ``progress(msg)`` is told
    about a first-use conversion (it takes a while)."""
    if spec is None:
        if task == "upscale":
            if not default_bundle_ready():
                raise DemoError("the default model bundle is missing from this install", where=DEFAULT_BUNDLE_DIR,
                                hint="reinstall edgekit, or regenerate it with "
                                     "`python -m edgekit.apps.camera.make_default_bundle`, or pass --model")
            return ResolvedModel(DEFAULT_BUNDLE_DIR, DEFAULT_SR_MODEL, "shipped")
        return _zoo(DEFAULT_MODELS[task], task, progress)
    path = Path(spec).expanduser()
    if path.exists():
        return ResolvedModel(path, _display_name(path), "path")
    if _ZOO_NAME.match(spec) and not path.suffix:
        if task == "upscale" and spec == DEFAULT_SR_MODEL and default_bundle_ready():
            return ResolvedModel(DEFAULT_BUNDLE_DIR, DEFAULT_SR_MODEL, "shipped")
        return _zoo(spec, task, progress)
    raise ModelFileNotFound(path, hint="pass a bundle folder, a .tflite/.onnx file, or a zoo name (`edgekit zoo list`)")


def precheck_model(spec: str | None, task: str) -> None:
    """Refuse ``--model`` when what it names says it is made for another task than ``task``:
    a bundle folder by its manifest, a zoo name by its model card (no torch needed). Anything
    else (a bare file, a path that does not exist, a malformed manifest) is left to
    :func:`resolve_model` and :func:`edgekit.load`, which say what is wrong with it."""
    from edgekit.apps.camera.tasks import check_manifest_task

    if spec is None:
        return
    path = Path(spec).expanduser()
    if path.exists():
        from edgekit.bundle import is_bundle, read_manifest

        if is_bundle(path):
            try:
                manifest = read_manifest(path)
            except Exception:  # edgekit.load reports a malformed manifest, with its reason
                return
            check_manifest_task(task, manifest, spec)
        return
    if _ZOO_NAME.match(spec) and not path.suffix:
        _check_card(spec, task)


def _check_card(name: str, task: str) -> None:
    """A zoo model made for another task than ``task``: the usage error of
    :func:`~edgekit.apps.camera.tasks.check_manifest_task` (unknown names: the zoo's own error)."""
    from types import SimpleNamespace

    from edgekit import zoo
    from edgekit.apps.camera.tasks import check_manifest_task

    card = zoo.card(name)  # raises ZooError with "did you mean" for unknown names
    check_manifest_task(task, SimpleNamespace(task=card.task, name=name), name, what="zoo model")


def _display_name(path: Path) -> str:
    from edgekit.bundle import is_bundle, read_manifest

    if is_bundle(path):
        try:
            return read_manifest(path).name
        except Exception:  # a malformed manifest is reported by edgekit.load, with its reason
            return path.name
    return path.stem if path.suffix.lower() in _MODEL_SUFFIXES else path.name


def _zoo(name: str, task: str, progress) -> ResolvedModel:
    """A zoo model as a bundle in the cache, converted on first use."""
    _check_card(name, task)  # a model of another task is refused before torch is needed
    try:
        import torch  # noqa: F401 - only to give the precise message below
    except ImportError:
        raise MissingDependency("torch", f"converting zoo model '{name}' for the demo (first use)",
                                extra="convert") from None
    from edgekit import __version__, zoo
    from edgekit.bundle import is_bundle

    card = zoo.card(name)
    shape = tuple(DEFAULT_SR_INPUT) if task == "upscale" else tuple(card.input_shape)
    pretrained = card.weights is not None
    weights_tag = (card.weights_sha256 or "shipped")[:12] if pretrained else "untrained"
    key = f"{name}-{'x'.join(map(str, shape))}-{weights_tag}-edgekit{__version__}"
    out = cache_dir() / key
    note = None if pretrained else (f"{name} has no trained weights in edgekit: its predictions are meaningless "
                                    "(pass --model with a trained bundle or model file)")
    if is_bundle(out):
        return ResolvedModel(out, name, "zoo-cache", note)
    if progress is not None:
        progress(f"converting zoo model {name} for the demo (first use; cached in {out}) ...")
    import edgekit

    out.parent.mkdir(parents=True, exist_ok=True)
    edgekit.convert(name, formats=["tflite", "onnx"], out=out, input_shapes=[shape], pretrained=pretrained)
    return ResolvedModel(out, name, "zoo-converted", note)
