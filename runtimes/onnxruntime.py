"""ONNX Runtime backend: ``.onnx`` (with external data) and ``.ort`` files.

The CPU execution provider is the default. ``accelerator`` names another EP, by its full name
(``"CUDAExecutionProvider"``) or a short one (``"cuda"``, ``"coreml"``, ``"qnn"``,
``"openvino"``, ``"dml"``, ``"xnnpack"``, ``"nnapi"``, ``"tensorrt"``, ``"webgpu"``); it must
be installed (``onnxruntime.get_available_providers()``). ORT silently runs what an EP cannot
take on the CPU EP; ``strict=True`` turns that into an error (session config
``session.disable_cpu_ep_fallback``).

Placement: with only the CPU EP every node runs there, and ``op_counts`` counts the nodes of
the file. With another EP, where each node runs is only visible by profiling:
``placement_detail=True`` runs the model once with profiling on and counts the kernels each
EP executed (after ORT's fusions); otherwise ``op_counts`` is ``"unknown"``.

Other input sizes (:meth:`~edgekit.runtimes.base.Session.output_shapes_for`): a dim the file
declares static is never resized (onnxruntime refuses the feed, and a graph exported at one size
may hold that size in constants). Shapes the dynamic dims allow are tried once on zeros, which
gives the output shapes and catches sizes the graph cannot take (an odd size through a stride-2
encoder and a decoder that concatenates); static output shapes need no run.

Example::

    >>> s = edgekit.load("m.onnx", accelerator="coreml", strict=True)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BackendUnavailable, EdgekitError, InvalidModelFile, UsageError, debug_enabled, first_line
from edgekit.runtimes.base import Placement, Session, TensorSpec
from edgekit.runtimes.modelfile import read_model

__all__ = ["FORMATS", "available", "open_session", "OrtSession", "execution_provider", "infer_types"]

FORMATS = ("onnx", "ort")
CPU_EP = "CPUExecutionProvider"
_ALIASES = {
    "auto": CPU_EP, "cpu": CPU_EP, "none": CPU_EP,
    "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider", "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider", "coreml": "CoreMLExecutionProvider", "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider", "dml": "DmlExecutionProvider", "directml": "DmlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider", "nnapi": "NnapiExecutionProvider", "webgpu": "WebGpuExecutionProvider",
    "acl": "ACLExecutionProvider", "armnn": "ArmNNExecutionProvider", "vitisai": "VitisAIExecutionProvider",
}
# ORT type strings ("tensor(float)") -> NumPy dtype names.
_ORT_DTYPES = {"float": "float32", "double": "float64"}


def available() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "the onnxruntime backend needs the onnxruntime package — install it with: pip install onnxruntime"
    return None


def execution_provider(accelerator: str) -> str:
    """The EP name an ``accelerator`` value means (``"cuda"`` -> ``"CUDAExecutionProvider"``)."""
    if accelerator.endswith("ExecutionProvider"):
        return accelerator
    try:
        return _ALIASES[accelerator.lower()]
    except KeyError:
        raise UsageError(f"unknown onnxruntime accelerator '{accelerator}'",
                         hint=f"use an execution provider name or one of: {', '.join(_ALIASES)}") from None


def open_session(path: Path, threads: int, accelerator: str = "auto", *, strict: bool = False,
                 placement_detail: bool = False, provider_options: dict[str, Any] | None = None,
                 **options: Any) -> "OrtSession":
    if options:
        raise UsageError(f"unknown option(s) for the onnxruntime backend: {', '.join(sorted(options))}",
                         hint="onnxruntime takes strict=, placement_detail= and provider_options=")
    return OrtSession(Path(path), threads, accelerator, strict=strict, placement_detail=placement_detail,
                      provider_options=provider_options)


class OrtSession(Session):
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int, accelerator: str, *, strict: bool = False,
                 placement_detail: bool = False, provider_options: dict[str, Any] | None = None):
        import onnxruntime as ort

        t0 = time.perf_counter()
        self.path, self.threads = path, threads
        fmt = "ort" if path.suffix.lower() == ".ort" else "onnx"
        self.info = read_model(path, fmt)  # never hand a malformed protobuf to the runtime
        ep = execution_provider(accelerator)
        installed = ort.get_available_providers()
        if ep not in installed:
            raise BackendUnavailable(f"execution provider {ep} is not in this onnxruntime build "
                                     f"(it has {', '.join(installed)})", where=path,
                                     hint="install the onnxruntime package built with it (e.g. onnxruntime-gpu), "
                                     "or use accelerator='auto'")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # fatal only: ORT's own error lines (multi-line, coloured) would precede edgekit's one-line error
        # for the same failure; the fallback warning is reported through placement. EDGEKIT_DEBUG shows all.
        so.log_severity_level = 0 if debug_enabled() else 4
        ort.set_default_logger_severity(0 if debug_enabled() else 4)
        providers: list[Any] = [(ep, provider_options) if provider_options else ep]
        if ep != CPU_EP:
            if strict:
                so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
            else:
                providers.append(CPU_EP)
        profile_dir = None
        if placement_detail:
            profile_dir = tempfile.mkdtemp(prefix="edgekit-ort-profile-")
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(profile_dir, "profile")
        try:
            sess = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:  # ORT raises its own pybind exception types
            _cleanup(profile_dir)
            message = first_line(e)
            if strict and ep != CPU_EP and "fallback" in message.lower():
                raise BackendUnavailable(f"strict: {ep} cannot run every node ({message})", where=path,
                                         hint="rewrite the model for the target (`edgekit lint`), or drop strict=True") from None
            raise InvalidModelFile(path, f"onnxruntime cannot load it: {message}") from None
        self._sess = sess
        self.inputs = [_spec(a) for a in sess.get_inputs()]
        self.outputs = [_spec(a) for a in sess.get_outputs()]
        self._output_names = [s.name for s in self.outputs]
        used = sess.get_providers()
        if strict and ep != CPU_EP and ep not in used:
            raise BackendUnavailable(f"strict: {ep} was not used (session providers: {', '.join(used)})", where=path)
        self.placement = self._placement(used, profile_dir)
        self.init_ms = (time.perf_counter() - t0) * 1e3  # validation, session creation (and profiling run)

    def _placement(self, used: list[str], profile_dir: str | None) -> Placement:
        notes = [f"providers: {', '.join(used)}"]
        accelerator = used[0]
        if profile_dir is not None:
            try:
                from edgekit.runtimes.bench import random_feed

                self._sess.run(self._output_names, random_feed(self.inputs))
                counts = _profile_counts(self._sess.end_profiling())
                notes.append("kernels counted by profiling one run (after ORT's graph fusions)")
                return Placement(self.backend, accelerator, counts, notes)
            except Exception as e:  # a model that needs real inputs, or a profile format change
                notes.append(f"profiling failed ({first_line(e)})")
                return Placement(self.backend, accelerator, "unknown", notes)
            finally:
                _cleanup(profile_dir)
        if used == [CPU_EP]:
            notes.append("nodes counted in the model file (ORT fuses some before running)")
            return Placement(self.backend, accelerator, {CPU_EP: self.info.num_ops}, notes)
        notes.append("nodes an EP cannot take run on CPUExecutionProvider; pass placement_detail=True to count "
                     "them, strict=True to refuse")
        return Placement(self.backend, accelerator, "unknown", notes)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self._sess.run(self._output_names, feed)
        except Exception as e:  # e.g. a size a dynamic dim cannot take
            raise EdgekitError(f"onnxruntime failed to run it: {first_line(e)}", where=self.path) from None
        return dict(zip(self._output_names, values))

    def _output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[Any, ...]] | None:
        declared = super()._output_shapes(shapes)  # None when a static dim differs: never resized
        if declared is None or all(s.is_static for s in self.outputs):
            return declared
        try:
            feed = {s.name: np.zeros(shapes[s.name], np.dtype(s.dtype)) for s in self.inputs}
        except TypeError:  # a non-tensor or non-NumPy input type: the declared shapes are all we know
            return declared
        try:
            values = self._sess.run(self._output_names, feed)
        except Exception:  # noqa: BLE001 - ORT's own exception types: this size does not run
            return None
        return {name: tuple(int(d) for d in np.shape(v)) for name, v in zip(self._output_names, values)}

    def _close(self) -> None:
        self._sess = None


def _spec(arg: Any) -> TensorSpec:
    t = arg.type  # "tensor(float)", "seq(tensor(float))", "map(...)"
    if t.startswith("tensor(") and t.endswith(")"):
        name = t[len("tensor("):-1]
        dtype = _ORT_DTYPES.get(name, name)
    else:
        dtype = t
    shape = tuple(d if isinstance(d, (int, str)) else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, dtype)


def infer_types(data: Any, keep_elements: int = 64) -> dict[str, Any]:
    """The dtype and shape onnxruntime's shape inference (the ONNX inference functions, run when
    it loads a model) gives every node output of the main graph of the ONNX model ``data``
    (bytes or an ``mmap`` of a file :func:`~edgekit.runtimes.modelfile.read_model` validated),
    as :class:`~edgekit.runtimes.onnx_file.OnnxValue` by name. Nothing runs and no weight loads
    (:func:`~edgekit.runtimes.onnx_file.shape_probe`); a second load with ``Shape`` probes tells
    scalars from tensors of unknown rank, which onnxruntime reports alike. Raises
    :class:`~edgekit.errors.EdgekitError` when onnxruntime cannot load the graph (an op it does
    not know, an invalid node)."""
    from edgekit.runtimes.onnx_file import RANK_PROBE, OnnxValue, shape_probe

    def outputs(rank_of: tuple[str, ...] = ()) -> dict[str, Any]:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node as written
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.log_severity_level = 0 if debug_enabled() else 4
        ort.set_default_logger_severity(0 if debug_enabled() else 4)
        try:
            sess = ort.InferenceSession(shape_probe(data, keep_elements, rank_of), so, providers=[CPU_EP])
        except Exception as e:  # ORT raises its own pybind exception types
            raise EdgekitError(f"onnxruntime cannot load the graph: {first_line(e)}") from None
        return {a.name: a for a in sess.get_outputs()}

    args = outputs()
    types = {}
    for name, arg in args.items():
        spec = _spec(arg)
        tensor = arg.type.startswith("tensor(")
        types[name] = OnnxValue(name, spec.dtype if tensor else "onnx_type_0", spec.shape if tensor else None)
    ambiguous = tuple(n for n, v in types.items() if v.shape == ())
    if ambiguous:  # a scalar, or a tensor whose rank is unknown: the length of its Shape tells
        probes = outputs(ambiguous)
        for name in ambiguous:
            rank = (probes[RANK_PROBE + name].shape or [None])[0]
            if not isinstance(rank, int) or rank != 0:
                types[name].shape = None
    return types


def _profile_counts(profile_file: str) -> dict[str, int]:
    """Nodes executed per EP, from an ORT profile (``*_kernel_time`` events carry the provider)."""
    with open(profile_file, encoding="utf-8") as f:
        events = json.load(f)
    nodes: dict[str, str] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            nodes[name] = e.get("args", {}).get("provider", "unknown")
    counts: dict[str, int] = {}
    for provider in nodes.values():
        counts[provider] = counts.get(provider, 0) + 1
    return counts


def _cleanup(folder: str | None) -> None:
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
