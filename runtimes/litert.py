"""LiteRT (TFLite) backend: ``ai_edge_litert``'s Interpreter, ``tflite_runtime`` as fallback.

``ai-edge-litert`` is preferred; ``tflite-runtime`` (frozen at 2.14, the only wheel for 32-bit
Raspberry Pi OS) is used only when it is the one installed. The interpreter's Python default
is one thread; edgekit always passes ``num_threads`` (all physical cores unless asked).

Accelerators (``accelerator=``):

- ``"auto"`` / ``"xnnpack"``: the builtin kernels with XNNPACK, LiteRT's default CPU delegate.
- ``"none"`` / ``"cpu"``: builtin kernels only (no default delegate).
- ``"edgetpu"`` or a delegate library (``"libedgetpu.so.1"``, ``"/path/libfoo_delegate.so"``):
  loaded with ``load_delegate(library, delegate_options)``; XNNPACK takes what it leaves.

Placement: after allocation the interpreter's node list holds the original ops plus one
``DELEGATE`` node per delegated partition. Walking back from each partition's outputs to its
inputs gives the ops it replaced, so ``placement.op_counts`` is exact per delegate (``"CPU"``
counts the builtin kernels). Delegate nodes that exist before allocation belong to the
external delegate; those added by allocation to XNNPACK. ``strict=True`` raises when any op
is left on the builtin CPU kernels while a delegate was asked for.

Run path: ``set_tensor``/``invoke``/``get_tensor`` on cached tensor indices, the same calls a
bare interpreter loop makes (see ``benchmarks/runtime_overhead.py``).

Other input sizes: a feed whose shape differs from the declared one (dynamic dims, or a size
:meth:`~edgekit.runtimes.base.Session.output_shapes_for` accepted) runs on an interpreter of its
own, made once per size with ``resize_tensor_input`` and allocated again, and kept
(:data:`SIZES_KEPT` of them, least recently used dropped); the declared-size interpreter is never
touched, so a size LiteRT refuses leaves the session as it was. Declared-static dims are resized
too, but only through ``output_shapes_for``: LiteRT runs many fully convolutional graphs at
other sizes (XNNPACK re-plans convolutions and transposed convolutions); a graph that holds its
size in constants (a reshape, a resize to a fixed size) fails to allocate or keeps its output
shape, and ``edgekit.tiling`` then runs the image in tiles instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BackendUnavailable, EdgekitError, InvalidModelFile, UsageError, debug_enabled, first_line
from edgekit.runtimes.base import Placement, Session, TensorSpec
from edgekit.runtimes.modelfile import read_model

__all__ = ["FORMATS", "available", "open_session", "LiteRTSession", "runtime_package", "SIZES_KEPT"]

FORMATS = ("tflite",)
SIZES_KEPT = 3  # interpreters kept for input sizes other than the declared one
_EDGETPU = {"linux": "libedgetpu.so.1", "darwin": "libedgetpu.1.dylib", "win32": "edgetpu.dll"}


def _interpreter_module() -> tuple[Any, str]:
    """(the module holding Interpreter and load_delegate, its package name)."""
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter  # type: ignore[import-not-found]

        return interpreter, "tflite-runtime"
    except ImportError:
        raise BackendUnavailable(
            "the LiteRT backend needs ai-edge-litert (or tflite-runtime)",
            hint="install it with: pip install ai-edge-litert  (32-bit Raspberry Pi OS: pip install tflite-runtime 'numpy<2')",
        ) from None


def runtime_package() -> str | None:
    """Which interpreter package this backend uses here, or None when neither is installed."""
    try:
        return _interpreter_module()[1]
    except BackendUnavailable:
        return None


def available() -> str | None:
    try:
        _interpreter_module()
    except BackendUnavailable as e:
        return str(e)
    return None


def open_session(path: Path, threads: int, accelerator: str = "auto", *, strict: bool = False,
                 delegate_options: dict[str, Any] | None = None, **options: Any) -> "LiteRTSession":
    if options:
        raise UsageError(f"unknown option(s) for the litert backend: {', '.join(sorted(options))}",
                         hint="litert takes strict= and delegate_options=")
    return LiteRTSession(Path(path), threads, accelerator, strict=strict, delegate_options=delegate_options)


def _delegate_library(accelerator: str) -> str | None:
    """The delegate library an ``accelerator`` names, or None for the builtin CPU choices."""
    a = accelerator.strip()
    if a.lower() in ("auto", "xnnpack", "none", "cpu"):
        return None
    if a.lower() == "edgetpu":
        return _EDGETPU.get(sys.platform, "libedgetpu.so.1")
    if any(s in a for s in (".so", ".dylib", ".dll", os.sep)):
        return a
    raise UsageError(f"unknown LiteRT accelerator '{accelerator}'",
                     hint="use auto, xnnpack, none, edgetpu, or the path of a TFLite delegate library")


# What LiteRT's C++ side prints on every load; shown only with EDGEKIT_DEBUG=1.
_NATIVE_CHATTER = ("Created TensorFlow Lite XNNPACK delegate", "Initialized TensorFlow Lite runtime")


@contextlib.contextmanager
def _native_stderr_filtered(captured: list[str]):
    """Capture what native code writes to file descriptor 2 while loading, minus LiteRT's
    informational chatter, into ``captured``: the caller puts it into its error message on
    failure and passes it on to stderr on success (so the CLI's one-line errors stay one line)."""
    if debug_enabled():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters, some test runners)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode("utf-8", "replace").splitlines()
            captured.extend(ln for ln in lines if ln.strip() and not any(c in ln for c in _NATIVE_CHATTER))


class LiteRTSession(Session):
    backend = "litert"

    def __init__(self, path: Path, threads: int, accelerator: str, *, strict: bool = False,
                 delegate_options: dict[str, Any] | None = None):
        t0 = time.perf_counter()
        self.path, self.threads = path, threads
        info = read_model(path, "tflite")  # never hand a malformed flatbuffer to the interpreter
        module, self.runtime = _interpreter_module()
        library = _delegate_library(accelerator)
        kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
        if accelerator.lower() in ("none", "cpu"):
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if library:
            try:
                kwargs["experimental_delegates"] = [module.load_delegate(library, delegate_options or {})]
            except (ValueError, OSError, RuntimeError) as e:
                raise BackendUnavailable(f"cannot load the TFLite delegate '{library}' ({first_line(e)})",
                                         where=path, hint="install the delegate's runtime library, or use "
                                         "accelerator='auto'") from None
        self._module, self._kwargs, self._library, self._delegate_options = module, kwargs, library, delegate_options
        self._sized: OrderedDict[tuple[tuple[int, ...], ...], Any] = OrderedDict()
        native_log: list[str] = []
        try:
            with _native_stderr_filtered(native_log):
                interp = module.Interpreter(**kwargs)
                n_before = interp._interpreter.NumNodes() if hasattr(interp, "_interpreter") else None
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            detail = next((line for line in native_log if "ERROR" in line), "")
            raise InvalidModelFile(path, f"LiteRT cannot load it: {first_line(e)}{' (' + detail + ')' if detail else ''}",
                                   hint="check `edgekit inspect` for unsupported ops, or re-export the model") from None
        if native_log:
            sys.stderr.write("\n".join(native_log) + "\n")
        self._interp = self._primary = interp
        try:
            in_details, out_details = interp.get_input_details(), interp.get_output_details()
        except (ValueError, RuntimeError) as e:  # UnicodeDecodeError is a ValueError
            raise InvalidModelFile(path, f"LiteRT cannot describe its tensors: {first_line(e)}") from None
        self.inputs = [_spec(d) for d in in_details]
        self.outputs = [_spec(d) for d in out_details]
        self._in = [(d["index"], d["name"]) for d in in_details]
        self._out = [(d["index"], d["name"]) for d in out_details]
        self._shapes = {d["name"]: tuple(int(x) for x in d["shape"]) for d in in_details}
        self._declared = tuple(self._shapes[name] for _, name in self._in)
        self.info = info
        accel_name = library or ("none (builtin CPU kernels)" if accelerator.lower() in ("none", "cpu") else "XNNPACK")
        self.placement = _placement(interp, n_before, accel_name, library, self.runtime)
        self.init_ms = (time.perf_counter() - t0) * 1e3  # validation, interpreter, allocation, placement
        if strict and accelerator.lower() not in ("none", "cpu"):
            on_cpu = self.placement.op_counts.get("CPU", 0) if isinstance(self.placement.op_counts, dict) else None
            if on_cpu is None or on_cpu:
                what = f"{on_cpu} op(s) run on the builtin CPU kernels" if on_cpu else "op placement cannot be read"
                self.close()
                raise BackendUnavailable(f"strict: {accel_name} does not run the whole model ({what}; "
                                         f"{'; '.join(self.placement.notes)})", where=path,
                                         hint="rewrite the model for the target (`edgekit lint`), or drop strict=True")

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        interp = self._interp
        for _, name in self._in:
            if feed[name].shape != self._shapes[name]:  # another size: its own interpreter
                interp = self._switch(tuple(tuple(feed[n].shape) for _, n in self._in))
                break
        for index, name in self._in:
            interp.set_tensor(index, feed[name])
        try:
            interp.invoke()
        except RuntimeError as e:
            raise EdgekitError(f"LiteRT failed to run it: {first_line(e)}", where=self.path) from None
        return {name: interp.get_tensor(index) for index, name in self._out}

    def _switch(self, key: tuple[tuple[int, ...], ...]) -> Any:
        """Make the interpreter for input shapes ``key`` the current one (``self._interp``)."""
        interp = self._primary if key == self._declared else self._at(key)
        self._interp = interp
        self._shapes = {name: shape for (_, name), shape in zip(self._in, key)}
        return interp

    def _at(self, key: tuple[tuple[int, ...], ...]) -> Any:
        """The interpreter for input shapes ``key`` (not the declared ones), made and allocated
        once and kept (least recently used dropped beyond :data:`SIZES_KEPT`)."""
        interp = self._sized.get(key)
        if interp is not None:
            self._sized.move_to_end(key)
            return interp
        kwargs = dict(self._kwargs)
        native_log: list[str] = []
        try:
            with _native_stderr_filtered(native_log):
                if self._library:  # a delegate instance per interpreter
                    kwargs["experimental_delegates"] = [self._module.load_delegate(self._library,
                                                                                   self._delegate_options or {})]
                interp = self._module.Interpreter(**kwargs)
                for (index, _), shape in zip(self._in, key):
                    interp.resize_tensor_input(index, list(shape), strict=False)
                interp.allocate_tensors()
        except (ValueError, RuntimeError, OSError) as e:
            shapes = ", ".join(str(list(k)) for k in key)
            raise UsageError(f"LiteRT cannot run input shape(s) {shapes}: {first_line(e)}", where=self.path,
                             hint="feed the shape the model declares (edgekit.tiling runs larger images in "
                             "tiles)") from None
        self._sized[key] = interp
        while len(self._sized) > SIZES_KEPT:  # one in use stays alive through self._interp
            self._sized.popitem(last=False)
        return interp

    def _output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[Any, ...]] | None:
        key = tuple(shapes[name] for _, name in self._in)
        if key == self._declared:
            interp = self._primary
        else:
            try:
                interp = self._at(key)
            except UsageError:
                return None
        by_index = {int(d["index"]): tuple(int(x) for x in d["shape"]) for d in interp.get_output_details()}
        return {name: by_index[index] for index, name in self._out}

    def _close(self) -> None:
        self._interp = self._primary = None
        self._sized.clear()


def _spec(d: dict[str, Any]) -> TensorSpec:
    sig = d.get("shape_signature")
    dims = sig if sig is not None and len(sig) == len(d["shape"]) else d["shape"]
    return TensorSpec(d["name"], tuple(None if int(x) < 0 else int(x) for x in dims), np.dtype(d["dtype"]).name)


def _placement(interp: Any, n_before: int | None, accel_name: str, library: str | None, runtime: str) -> Placement:
    notes = [f"runtime: {runtime}"]
    try:
        nodes = interp._get_ops_details()
    except Exception as e:  # private API: absent or different in other interpreter versions
        notes.append(f"op placement unreadable ({type(e).__name__})")
        return Placement("litert", accel_name, "unknown", notes)
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in originals for t in n["outputs"]}
    delegated: dict[int, str] = {}
    for n in nodes:
        if n["op_name"] != "DELEGATE":
            continue
        owner = library if (library and n_before is not None and n["index"] < n_before) else "XNNPACK"
        stop = {int(t) for t in n["inputs"]}
        todo = [int(t) for t in n["outputs"]]
        while todo:
            t = todo.pop()
            node = producer.get(t)
            if t in stop or node is None or node in delegated:
                continue
            delegated[node] = owner
            todo.extend(int(x) for x in nodes[node]["inputs"] if int(x) >= 0)
    counts: dict[str, int] = {}
    for owner in delegated.values():
        counts[owner] = counts.get(owner, 0) + 1
    cpu = [n["op_name"] for n in originals if n["index"] not in delegated]
    counts["CPU"] = len(cpu)
    partitions = sum(1 for n in nodes if n["op_name"] == "DELEGATE")
    if partitions:
        notes.append(f"{partitions} delegated partition(s)")
    if cpu:
        hist: dict[str, int] = {}
        for op in cpu:
            hist[op] = hist.get(op, 0) + 1
        notes.append("on CPU: " + ", ".join(f"{k}×{v}" for k, v in hist.items()))
    if interp.num_subgraphs() > 1:
        notes.append("counts cover the primary subgraph only")
    return Placement("litert", accel_name, counts, notes)
