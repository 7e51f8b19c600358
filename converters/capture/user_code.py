"""The user's model code: calling ``file.py:callable`` (imported in isolation, then removed
from ``sys.modules`` and ``sys.path``) or ``package.module:callable``, with errors that name
the user's file and line (:func:`user_location`)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from edgekit.bundle import sha256_file
from edgekit.converters.capture.captured import STAGE
from edgekit.errors import ConversionError, EdgekitError, ModelFileNotFound, first_line

__all__ = ["call_factory_from_file", "call_factory_from_module", "user_location", "frame_location"]


def call_factory_from_file(ref: str) -> tuple[Any, dict[str, Any]]:
    """``path/to/file.py:callable`` → (what the callable returned, the manifest's source record)."""
    path_text, attr = ref.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise ModelFileNotFound(path, hint="check the path before ':callable'")
    src = {"kind": "file", "ref": ref, "sha256": sha256_file(path)}
    with _isolated_import(path) as module:
        factory = _get_attr(module, attr, ref, str(path))
        return _call_factory(factory, ref), src


def call_factory_from_module(ref: str) -> tuple[Any, dict[str, Any]]:
    """``package.module:callable`` → (what the callable returned, the manifest's source record)."""
    module_name, attr = ref.rsplit(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConversionError(STAGE, f"cannot import module '{module_name}' ({e})", where=ref,
                              hint="install the package, or pass path/to/file.py:callable") from None
    except Exception as e:
        raise ConversionError(STAGE, f"importing '{module_name}' raised {type(e).__name__}: {first_line(e)}",
                              where=user_location(e) or ref, hint="fix the error in the module") from None
    src = {"kind": "module", "ref": ref}
    if getattr(module, "__file__", None):
        src["sha256"] = sha256_file(module.__file__)
    factory = _get_attr(module, attr, ref, module_name)
    return _call_factory(factory, ref), src


@contextlib.contextmanager
def _isolated_import(path: Path) -> Iterator[Any]:
    """Import ``path`` as a uniquely named module with its folder on ``sys.path``; afterwards
    remove it, and every module imported from that folder, from ``sys.modules`` and the folder
    from ``sys.path`` (objects built meanwhile keep working: they hold their globals)."""
    folder = str(path.resolve().parent)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_edgekit_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ConversionError(STAGE, "not a Python file", where=path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except EdgekitError:
            raise
        except SyntaxError as e:
            raise ConversionError(STAGE, f"syntax error: {e.msg}", where=f"{path}:{e.lineno}",
                                  hint="fix the file") from None
        except Exception as e:
            raise ConversionError(STAGE, f"importing the file raised {type(e).__name__}: {first_line(e)}",
                                  where=user_location(e, folder) or path, hint="fix the error in the file") from None
        yield module
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        for added in set(sys.modules) - before:
            mod_file = getattr(sys.modules.get(added), "__file__", None) or ""
            if added == name or (mod_file and os.path.abspath(mod_file).startswith(folder + os.sep)):
                sys.modules.pop(added, None)


def _get_attr(module: Any, attr: str, ref: str, where: str) -> Callable:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            candidates = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
            import difflib

            close = difflib.get_close_matches(attr, candidates, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else (
                f"it defines {', '.join(candidates[:6])}" if candidates else "define a function that returns the model")
            raise ConversionError(STAGE, f"'{attr}' does not exist in {where}", where=ref, hint=hint)
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConversionError(STAGE, f"'{attr}' is a {type(obj).__name__}, not a callable", where=ref,
                              hint="name a function (or class) that returns an nn.Module")
    return obj


def _call_factory(factory: Callable, ref: str) -> Any:
    try:
        return factory()
    except EdgekitError:
        raise
    except TypeError as e:
        try:
            sig = inspect.signature(factory)
            required = [p.name for p in sig.parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            required = []
        if required:
            raise ConversionError(STAGE, f"the callable needs argument(s) {', '.join(required)}", where=ref,
                                  hint="give them defaults, or wrap the call in a function without arguments") from None
        raise ConversionError(STAGE, f"calling it raised TypeError: {first_line(e)}", where=user_location(e) or ref) from None
    except Exception as e:
        raise ConversionError(STAGE, f"calling it raised {type(e).__name__}: {first_line(e)}",
                              where=user_location(e) or ref, hint="fix the error in the model code") from None


def user_location(e: BaseException, folder: str | None = None) -> str | None:
    """``file:line (function)`` of the innermost frame of the traceback that is the user's
    code (not torch, not edgekit, not the standard library)."""
    best = None
    for frame in traceback.extract_tb(e.__traceback__):
        if _is_user_file(frame.filename, folder):
            best = f"{frame.filename}:{frame.lineno} ({frame.name})"
    return best


def frame_location(frames: list) -> str | None:
    """``file:line (function)`` of the innermost user frame in ``frames`` (``inspect.stack()``
    order: innermost first), or None."""
    for frame in frames:
        if _is_user_file(frame.filename):
            return f"{frame.filename}:{frame.lineno} ({frame.function})"
    return None


def _is_user_file(filename: str, folder: str | None = None) -> bool:
    import edgekit

    # the converters' folder (this file is in converters/capture/), the edgekit package, the standard library
    converters = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    skip = [converters, os.path.dirname(os.path.abspath(edgekit.__file__)), os.path.dirname(os.__file__)]
    try:
        import torch

        skip.append(os.path.dirname(torch.__file__))
    except ImportError:  # pragma: no cover
        pass
    fn = os.path.abspath(filename)
    if "site-packages" in fn or any(fn.startswith(s) for s in skip) or filename.startswith("<"):
        return False
    return not folder or fn.startswith(folder)
