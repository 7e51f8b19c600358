"""Capture: turn a SOURCE into a module, example inputs and everything the manifest must say.

A source is one of

- a zoo name (``mobilenet_v2``), built with :func:`edgekit.zoo.create`;
- ``path/to/file.py:callable`` or ``package.module:callable``; the callable takes no
  arguments and returns an ``nn.Module`` or ``(module, example_inputs)``;
- a ``.pt2`` file written by ``torch.export.save``;
- an ``.onnx`` file (ONNX → ONNX is optimised directly; ONNX → TFLite/CoreML goes through
  the ONNX importer, :mod:`edgekit.converters.onnx_import`);
- in the Python API also an ``nn.Module`` or ``ExportedProgram`` object.

The user's module is never mutated: capture works on a deep copy in eval mode, which is
also the *reference* that verification compares every artifact against. :func:`export_program`
then runs ``torch.export`` on a thin wrapper that gives inputs and outputs stable names
(``input``, ``logits``/``output``...) so that all three formats agree on them. When
``torch.export`` cannot trace a model, the error names the cause (e.g. data-dependent
control flow) and the user's file and line.

Example::

    >>> cap = capture("mobilenet_v2", input_shapes=[(1, 3, 96, 96)])   # doctest: +SKIP
    >>> program = export_program(cap)                                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from edgekit.bundle import sha256_file
from edgekit.converters.layouts import layout_for_rank
from edgekit.converters.preprocess import FoldSpec, fold_module
from edgekit.errors import ConversionError, EdgekitError, ModelFileNotFound, UsageError, first_line

__all__ = ["Captured", "capture", "export_program", "parse_shape", "infer_task"]

STAGE = "capture"
_CALLABLE = re.compile(r"^(?P<target>.+):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass
class Captured:
    """A source made ready for export.

    ``module`` is the eval-mode deep copy of the source (the verification reference; for an
    ONNX source the imported torch module, or None when no torch path is needed);
    ``reference`` computes the source's outputs from NumPy inputs (the deep copy, or
    onnxruntime on the original ``.onnx``). ``preprocess`` is the manifest's unfolded
    pre-/post-processing (layout, value range, mean/std, colour order, labels, scale factor).
    """

    name: str
    module: Any
    example_inputs: tuple
    input_names: list[str]
    output_names: list[str]
    input_layouts: list[str | None]
    output_layouts: list[str | None]
    task: str
    source: dict[str, Any]
    card: Any = None
    preprocess: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None
    reference64: Callable[[Sequence[np.ndarray]], list[np.ndarray]] | None = None

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(t.shape) for t in self.example_inputs]

    def fold_spec(self, input_layout: str = "NCHW") -> FoldSpec:
        """The :class:`FoldSpec` of this source's normalisation, or a usage error naming what is
        missing (folding needs an image input of rank 4 and a known value range)."""
        shapes = self.input_shapes
        if len(shapes) != 1 or len(shapes[0]) != 4:
            raise UsageError(f"--fold-preprocess needs one image input (N, C, H, W); {self.name} takes "
                             f"{', '.join(str(list(s)) for s in shapes)}", hint="convert without --fold-preprocess")
        p = self.preprocess
        if p.get("value_range") is None and p.get("mean") is None:
            raise UsageError(f"--fold-preprocess needs the input normalisation of {self.name}, which is not known",
                             hint="pass --mean and --std (and the value range the model expects)")
        return FoldSpec.from_preprocess(p, input_layout)


# --------------------------------------------------------------------------------------------
# Shapes


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x3x224x224"`` (or ``1,3,224,224``) → ``(1, 3, 224, 224)``; a usage error otherwise."""
    parts = re.split(r"[x,×]", text.strip().lower())
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise UsageError(f"cannot read input shape '{text}'", hint="write it as 1x3x224x224 (positive integers)")
    if len(dims) > MAX_RANK or math.prod(dims) > MAX_INPUT_ELEMENTS:
        raise UsageError(f"input shape '{text}' is too large ({len(dims)} dims, {math.prod(dims):.3g} elements; "
                         f"at most {MAX_RANK} dims and {MAX_INPUT_ELEMENTS:.3g} elements)",
                         hint="conversion runs the model on this shape: use the size the device will see")
    return dims


MAX_RANK = 8
MAX_INPUT_ELEMENTS = 1 << 30  # 4 GiB of float32 for one example input: past this, tracing alone exhausts memory


# --------------------------------------------------------------------------------------------
# Sources


def capture(
    source: Any,
    *,
    weights: str | os.PathLike | None = None,
    pretrained: bool = False,
    input_shapes: Sequence[Sequence[int]] | None = None,
    task: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
) -> Captured:
    """Resolve ``source`` (see the module docstring) to a :class:`Captured`.

    ``input_shapes`` overrides the example inputs' shapes (one per input); ``task``, ``mean``
    and ``std`` override or complete what a model card says.
    """
    shapes = [tuple(int(d) for d in s) for s in input_shapes] if input_shapes else None
    kind, ref = _classify(source)
    if pretrained and kind != "zoo":
        raise UsageError("--pretrained only applies to zoo models", where=_display(source),
                         hint="pass --weights PATH to load a state dict into your module")
    if kind == "onnx":
        if weights is not None:
            raise UsageError("--weights does not apply to an ONNX source (its weights are in the file)", where=ref)
        cap = _capture_onnx(Path(ref), shapes, seed)
    elif kind == "zoo":
        cap = _capture_zoo(ref, weights, pretrained, shapes, seed)
    else:
        if kind == "file":
            obj, src = _call_factory_from_file(ref)
        elif kind == "module":
            obj, src = _call_factory_from_module(ref)
        elif kind == "exported-program":
            obj, src = _load_pt2(Path(ref)), {"kind": kind, "ref": ref, "sha256": sha256_file(ref)}
        else:  # a Python object given to the API
            obj, src = source, {"kind": kind, "ref": type(source).__name__}
        cap = _capture_object(obj, src, weights, shapes, seed)
    _complete(cap, task, mean, std)
    return cap


def _display(source: Any) -> str:
    return source if isinstance(source, (str, os.PathLike)) else type(source).__name__


def _classify(source: Any) -> tuple[str, str]:
    """(kind, reference) of a source: zoo | file | module | exported-program | onnx | object."""
    if not isinstance(source, (str, os.PathLike)):
        try:
            import torch
        except ImportError:  # pragma: no cover - the convert extra is missing
            from edgekit.errors import MissingDependency

            raise MissingDependency("torch", "edgekit convert", extra="convert") from None
        if isinstance(source, (torch.nn.Module, torch.export.ExportedProgram)):
            return "object", type(source).__name__  # in memory: captured as given, nothing to load
        raise UsageError(f"cannot convert a {type(source).__name__}",
                         hint="pass a zoo name, file.py:callable, package.module:callable, a .pt2/.onnx file, "
                              "an nn.Module or an ExportedProgram")
    text = os.fspath(source)
    suffix = Path(text).suffix.lower()
    if suffix in (".onnx", ".pt2"):
        if not Path(text).is_file():
            raise ModelFileNotFound(text)
        return ("onnx" if suffix == ".onnx" else "exported-program"), text
    m = _CALLABLE.match(text)
    if m:
        target = m["target"]
        if target.endswith(".py") or "/" in target or os.sep in target:
            return "file", text
        if _DOTTED.match(target):
            return "module", text
        raise UsageError(f"cannot read source '{text}'", hint="write path/to/file.py:callable or package.module:callable")
    if Path(text).exists():
        raise UsageError(f"cannot convert '{text}' (not a .onnx or .pt2 file)",
                         hint="for a Python file, name the callable that builds the model: file.py:make_model")
    return "zoo", text


def _capture_zoo(name: str, weights: Any, pretrained: bool, shapes: list | None, seed: int) -> Captured:
    from edgekit import zoo

    card = zoo.card(name)  # raises ZooError with "did you mean" for unknown names
    module = zoo.create(name, pretrained=pretrained, weights=weights)
    if shapes:
        inputs = _random_inputs(shapes, zoo.example_inputs(name), card.value_range, seed)
    else:
        inputs = tuple(zoo.example_inputs(name))
    if pretrained:
        wsha = card.weights_sha256 or sha256_file(Path(zoo.registry.WEIGHTS_DIR) / card.weights)
        wref = f"edgekit:{card.weights}"
    elif weights is not None:
        wsha, wref = sha256_file(weights), str(weights)
    else:
        wsha, wref = None, None
    src = {"kind": "zoo", "ref": name, "weights": wref, "weights_sha256": wsha,
           "pretrained": bool(pretrained), "paper": card.paper}
    cap = _from_module(module, inputs, src, name=name, card=card)
    return cap


def _capture_object(obj: Any, src: dict[str, Any], weights: Any, shapes: list | None, seed: int) -> Captured:
    import torch

    where = src["ref"]
    inputs: tuple | None = None
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], (torch.nn.Module, torch.export.ExportedProgram)):
        obj, given = obj
        inputs = (given,) if isinstance(given, torch.Tensor) else tuple(given) if isinstance(given, (tuple, list)) else None
        if inputs is None or not all(isinstance(t, torch.Tensor) for t in inputs):
            raise ConversionError(STAGE, "the example inputs returned with the module are not a tensor or a tuple of tensors",
                                  where=where, hint="return (module, (tensor, ...))")
    if isinstance(obj, torch.export.ExportedProgram):
        program = obj
        if weights is not None:
            raise UsageError("--weights does not apply to an exported program (its weights are inside)", where=where)
        if inputs is None:
            inputs = _program_example_inputs(program)
        module: Any = program.module()
        names = [str(n) for n in program.graph_signature.user_inputs]
    elif isinstance(obj, torch.nn.Module):
        module = copy.deepcopy(obj)  # the user's module is never touched
        if obj.training:
            src["note"] = "the source module was in training mode; it was converted (and verified) in eval mode"
        module.eval()
        names = None
    else:
        got = "None" if obj is None else type(obj).__name__
        raise ConversionError(STAGE, f"the callable returned {got}, not an nn.Module", where=where,
                              hint="return an nn.Module, or (module, example_inputs)")
    if weights is not None:
        from edgekit.zoo.registry import load_weights

        load_weights(module, weights, where=f"{where} ← {weights}")
        src["weights"], src["weights_sha256"] = str(weights), sha256_file(weights)
    if shapes:
        inputs = _random_inputs(shapes, inputs, None, seed)
    if inputs is None:
        raise ConversionError(STAGE, "the callable returned a module without example inputs", where=where,
                              hint="pass --input-shape 1x3x224x224 (one per input), or return (module, example_inputs)")
    name = _name_of(src)
    return _from_module(module, tuple(inputs), src, name=name, card=None, input_names=names)


def _name_of(src: dict[str, Any]) -> str:
    ref = str(src.get("ref", "model"))
    attr = ref.rsplit(":", 1)[-1] if ":" in ref else Path(ref).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", attr) or "model"


def _random_inputs(shapes: list, like: tuple | None, value_range: Any, seed: int) -> tuple:
    """Seeded random tensors of ``shapes`` with the dtypes of ``like`` (float32 by default),
    uniform in ``value_range`` (``[0, 1)`` when unknown)."""
    import torch

    if like is not None and len(like) != len(shapes):
        raise UsageError(f"got {len(shapes)} --input-shape value(s), the model takes {len(like)} input(s)",
                         hint="pass one --input-shape per input, in order")
    g = torch.Generator().manual_seed(seed)
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    out = []
    for i, shape in enumerate(shapes):
        dtype = like[i].dtype if like is not None else torch.float32
        if dtype.is_floating_point:
            out.append((torch.rand(shape, generator=g) * (hi - lo) + lo).to(dtype))
        else:
            out.append(torch.randint(0, 2, shape, generator=g).to(dtype))
    return tuple(out)


def _program_example_inputs(program: Any) -> tuple:
    """Example inputs of an ExportedProgram: the stored ones, else random tensors of the
    placeholders' static shapes."""
    import torch

    stored = getattr(program, "example_inputs", None)
    if stored and stored[0] and not stored[1]:
        return tuple(stored[0])
    specs = [s for s in program.graph_signature.input_specs if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    by_name = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    out = []
    g = torch.Generator().manual_seed(0)
    for s in specs:
        val = by_name[s.arg.name].meta.get("val")
        if val is None or not all(isinstance(d, int) for d in val.shape):
            raise ConversionError(STAGE, f"input '{s.arg.name}' of the exported program has a dynamic shape",
                                  hint="pass --input-shape for every input")
        out.append(torch.rand(tuple(val.shape), generator=g).to(val.dtype))
    return tuple(out)


# -- file.py:callable and package.module:callable ---------------------------------------------


def _call_factory_from_file(ref: str) -> tuple[Any, dict[str, Any]]:
    path_text, attr = ref.rsplit(":", 1)
    path = Path(path_text)
    if not path.is_file():
        raise ModelFileNotFound(path, hint="check the path before ':callable'")
    src = {"kind": "file", "ref": ref, "sha256": sha256_file(path)}
    with _isolated_import(path) as module:
        factory = _get_attr(module, attr, ref, str(path))
        return _call_factory(factory, ref), src


def _call_factory_from_module(ref: str) -> tuple[Any, dict[str, Any]]:
    module_name, attr = ref.rsplit(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConversionError(STAGE, f"cannot import module '{module_name}' ({e})", where=ref,
                              hint="install the package, or pass path/to/file.py:callable") from None
    except Exception as e:
        raise ConversionError(STAGE, f"importing '{module_name}' raised {type(e).__name__}: {first_line(e)}",
                              where=_user_location(e) or ref, hint="fix the error in the module") from None
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
                                  where=_user_location(e, folder) or path, hint="fix the error in the file") from None
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
        raise ConversionError(STAGE, f"calling it raised TypeError: {first_line(e)}", where=_user_location(e) or ref) from None
    except Exception as e:
        raise ConversionError(STAGE, f"calling it raised {type(e).__name__}: {first_line(e)}",
                              where=_user_location(e) or ref, hint="fix the error in the model code") from None


def _load_pt2(path: Path) -> Any:
    """``torch.export.load`` with pickled objects refused (torch falls back to an unsafe
    ``torch.load(weights_only=False)`` for custom objects; edgekit never runs pickled code)."""
    import torch

    real_load = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    torch.load = safe_load
    try:
        return torch.export.load(str(path))
    except Exception as e:
        from edgekit.zoo.registry import pickled_code_refusal

        refused = pickled_code_refusal(e)
        if refused:
            raise ConversionError(STAGE, refused, where=path,
                                  hint="export the program without custom pickled objects (torch.export.save)") from None
        raise ConversionError(STAGE, f"cannot load the exported program ({type(e).__name__}: {first_line(e)})",
                              where=path, hint="save it with torch.export.save from the same torch version; "
                                               "programs that need pickled custom objects are refused") from None
    finally:
        torch.load = real_load


# -- ONNX ------------------------------------------------------------------------------------


def _check_finite_initializers(model: Any, path: Path) -> None:
    """:func:`_check_finite_weights` for an ONNX file: no NaN in any float initializer, no ±Inf
    in the weights of Conv/ConvTranspose/Gemm/MatMul/BatchNormalization (masks elsewhere may
    hold -inf)."""
    from onnx import TensorProto, numpy_helper

    weight_ops = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"}
    weights = {n for node in model.graph.node if node.op_type in weight_ops for n in node.input[1:]}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    for init in model.graph.initializer:
        if init.data_type not in floats or init.data_location == TensorProto.EXTERNAL:
            continue
        a = numpy_helper.to_array(init).astype(np.float64)
        bad = ~np.isfinite(a) if init.name in weights else np.isnan(a)
        if bad.any():
            idx = [int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)] if a.ndim else []
            raise ConversionError(STAGE, f"initializer '{init.name}' holds {int(bad.sum())} non-finite value(s) "
                                  f"(the first at {idx}: {a[tuple(idx)] if idx else a})", where=path,
                                  hint="the weights are broken; fix them before converting")


def _capture_onnx(path: Path, shapes: list | None, seed: int) -> Captured:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        from edgekit.errors import InvalidModelFile

        raise InvalidModelFile(path, f"not a readable ONNX model ({first_line(e)})") from None
    _check_finite_initializers(model, path)
    init_names = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    np_dtypes = {1: np.float32, 10: np.float16, 11: np.float64, 7: np.int64, 6: np.int32, 2: np.uint8, 3: np.int8, 9: np.bool_}
    if shapes and len(shapes) != len(graph_inputs):
        raise UsageError(f"got {len(shapes)} --input-shape value(s), {path.name} takes {len(graph_inputs)} input(s)",
                         where=path)
    rng = np.random.default_rng(seed)
    arrays = []
    for i, vi in enumerate(graph_inputs):
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if shapes:
            if len(shapes[i]) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shapes[i])):
                raise UsageError(f"--input-shape {list(shapes[i])} does not fit input '{vi.name}' of shape "
                                 f"{[d if d is not None else '?' for d in dims]}", where=path)
            dims = list(shapes[i])
        if any(d is None or d < 1 for d in dims):
            raise UsageError(f"input '{vi.name}' has a dynamic shape {[d if d else '?' for d in dims]}", where=path,
                             hint="pass --input-shape for every input")
        dt = np_dtypes.get(tt.elem_type)
        if dt is None:
            raise ConversionError(STAGE, f"input '{vi.name}' has an ONNX element type ({tt.elem_type}) edgekit cannot feed",
                                  where=path)
        arrays.append(rng.random(dims).astype(dt) if np.issubdtype(dt, np.floating) else rng.integers(0, 2, dims).astype(dt))
    import torch

    inputs = tuple(torch.from_numpy(a) for a in arrays)
    src = {"kind": "onnx", "ref": str(path), "sha256": sha256_file(path),
           "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}
    out_names = [o.name for o in model.graph.output]
    out_ranks = [len(o.type.tensor_type.shape.dim) for o in model.graph.output]
    cap = Captured(
        name=path.stem, module=None, example_inputs=inputs,
        input_names=[vi.name for vi in graph_inputs], output_names=out_names,
        input_layouts=[layout_for_rank(len(a.shape)) for a in arrays],
        output_layouts=[layout_for_rank(r) for r in out_ranks],
        task="other", source=src, onnx_path=path,
    )
    cap.reference = _onnx_reference(path)
    outs = cap.reference(arrays)
    cap.task = infer_task(None, [tuple(a.shape) for a in arrays], [tuple(o.shape) for o in outs])
    cap.output_layouts = [layout_for_rank(o.ndim) for o in outs]
    cap.output_shapes = [tuple(o.shape) for o in outs]
    return cap


def _onnx_reference(path: Path) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The source's outputs: onnxruntime (through ``edgekit.load``) on the original file."""
    state: dict[str, Any] = {}

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if "session" not in state:
            import edgekit

            state["session"] = edgekit.load(path, backend="onnxruntime")
        s = state["session"]
        out = s.run({spec.name: a for spec, a in zip(s.inputs, arrays)})
        return [out[spec.name] for spec in s.outputs]

    return run


def import_onnx_module(cap: Captured) -> None:
    """Fill ``cap.module`` from the ONNX importer (needed for ONNX → TFLite / CoreML)."""
    if cap.module is not None or cap.onnx_path is None:
        return
    try:
        from edgekit.converters.onnx_import import import_onnx
    except ImportError as e:
        raise ConversionError(STAGE, f"the ONNX importer is not available ({first_line(e)})", where=cap.onnx_path,
                              hint="convert this .onnx to onnx only, or convert from the PyTorch model") from None
    shapes = {name: tuple(t.shape) for name, t in zip(cap.input_names, cap.example_inputs)}
    try:
        imported = import_onnx(cap.onnx_path, input_shapes=shapes)
    except EdgekitError:
        raise
    except Exception as e:
        raise ConversionError(STAGE, f"importing the ONNX graph into torch failed ({type(e).__name__}: {first_line(e)})",
                              where=cap.onnx_path) from None
    cap.module = imported.module


# -- shared ----------------------------------------------------------------------------------


def _check_finite_weights(module: Any, where: str) -> None:
    """Refuse weights that are not finite, naming the tensor, before anything runs on them (an
    Inf weight otherwise shows up as one artifact failing verification and another passing by
    luck). Every parameter must be finite; buffers may hold ±inf (attention masks do) but not NaN."""
    import torch

    named = [(n, t, True) for n, t in module.named_parameters()] + [(n, t, False) for n, t in module.named_buffers()]
    for name, t, is_param in named:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.device.type == "meta":
            continue
        bad = ~torch.isfinite(t) if is_param else torch.isnan(t)
        if bool(bad.any()):
            flat = int(bad.flatten().nonzero()[0])
            idx = [int(i) for i in torch.unravel_index(torch.tensor(flat), t.shape)] if t.dim() else []
            kinds = sorted({"NaN" if torch.isnan(v) else ("+Inf" if v > 0 else "-Inf") for v in t[bad][:1000]})
            raise ConversionError(STAGE, f"weight '{name}' holds {int(bad.sum())} non-finite value(s) "
                                  f"({'/'.join(kinds)}; the first at {idx})", where=where,
                                  hint="the weights are broken (a diverged training run, a bad checkpoint); "
                                       "fix them before converting")


def _from_module(module: Any, inputs: tuple, src: dict[str, Any], *, name: str, card: Any,
                 input_names: list[str] | None = None) -> Captured:
    """Run the module once (checks the inputs fit, finds the outputs) and fill a Captured."""
    import torch
    import torch.utils._pytree as pytree

    where = src.get("ref", name)
    _check_finite_weights(module, where)
    try:
        with torch.no_grad():
            out = module(*inputs)
    except Exception as e:
        shapes = ", ".join(str(list(t.shape)) for t in inputs)
        raise ConversionError(STAGE, f"running the model on inputs of shape {shapes} raised {type(e).__name__}: "
                              f"{first_line(e)}", where=_user_location(e) or where,
                              hint="check --input-shape (and the weights)") from None
    leaves = pytree.tree_leaves(out)
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        raise ConversionError(STAGE, "the model's outputs are not tensors (or a tuple/dict of tensors)", where=where)
    in_shapes = [tuple(t.shape) for t in inputs]
    out_shapes = [tuple(t.shape) for t in leaves]
    task = card.task if card is not None else infer_task(None, in_shapes, out_shapes)
    out_names = _output_names(out, len(leaves), task)
    if input_names is None or len(input_names) != len(inputs):
        input_names = _input_names(module, len(inputs))
    in_hint = card.layout if card is not None else None
    # An output of the input's rank (SR images, decoded video) shares its layout unless the card says.
    out_hint = (getattr(card, "output_layout", None) if card is not None else None) or in_hint
    cap = Captured(
        name=name, module=module, example_inputs=tuple(inputs),
        input_names=input_names, output_names=out_names,
        input_layouts=[layout_for_rank(len(s), in_hint) for s in in_shapes],
        output_layouts=[layout_for_rank(len(s), out_hint) for s in out_shapes],
        task=task, source=src, card=card, output_shapes=out_shapes,
    )
    cap.reference = _torch_reference(module)
    cap.reference64 = _torch_reference64(module)
    return cap


def _torch_reference(module: Any) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.utils._pytree as pytree

        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [t.detach().cpu().numpy() for t in pytree.tree_leaves(out)]

    return run


def _torch_reference64(module: Any) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The source in float64 (a copy made on first use): verification's second opinion for
    ill-conditioned models."""
    state: dict[str, Any] = {}

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.utils._pytree as pytree

        if "m" not in state:
            state["m"] = copy.deepcopy(module).double()
        xs = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        with torch.no_grad():
            out = state["m"](*[x.double() if x.is_floating_point() else x for x in xs])
        return [t.detach().cpu().numpy() for t in pytree.tree_leaves(out)]

    return run


def _input_names(module: Any, n: int) -> list[str]:
    if n == 1:
        return ["input"]
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= n and len(set(params[:n])) == n:
        return [_identifier(p) for p in params[:n]]
    return [f"input_{i}" for i in range(n)]


def _output_names(out: Any, n: int, task: str) -> list[str]:
    if isinstance(out, dict) and len(out) == n and all(isinstance(k, str) for k in out):
        return [_identifier(k) for k in out]
    if n == 1:
        return ["logits" if task == "classify" else "output"]
    return [f"output_{i}" for i in range(n)]


def _identifier(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else f"t_{s}"


def infer_task(card_task: str | None, in_shapes: list[tuple], out_shapes: list[tuple]) -> str:
    """The card's task, else one read from the shapes: a single (N, K) output → classify; an
    image output whose H and W are an integer multiple (> 1) of the input's with the same
    channels → super-resolve; otherwise other."""
    if card_task:
        return card_task
    if len(out_shapes) == 1 and len(in_shapes) >= 1:
        o, i = out_shapes[0], in_shapes[0]
        if len(o) == 2 and o[1] > 1:
            return "classify"
        if len(o) == 4 and len(i) == 4 and o[1] == i[1] and o[2] % i[2] == 0 and o[2] > i[2] \
                and o[3] * i[2] == o[2] * i[3]:
            return "super-resolve"
    return "other"


def _complete(cap: Captured, task: str | None, mean: Any, std: Any) -> None:
    """Fill ``cap.preprocess`` (the manifest's pre-/post-processing) from the card and the
    overrides; overrides are recorded as such."""
    from edgekit.bundle import TASKS

    if task is not None:
        if task not in TASKS:
            raise UsageError(f"unknown task '{task}'", hint=f"choose one of: {', '.join(TASKS)}")
        cap.task = task
    card = cap.card
    p: dict[str, Any] = {"layout": cap.input_layouts[0] if cap.input_layouts else None}
    if card is not None:
        p.update(color_order=card.color_order, value_range=list(card.value_range),
                 mean=list(card.mean) if card.mean else None, std=list(card.std) if card.std else None,
                 scale_factor=card.scale_factor)
        labels = getattr(card, "labels", None) or _zoo_labels(card)
        if labels:
            p["labels"] = list(labels)
    elif cap.task == "super-resolve" and cap.output_shapes and len(cap.output_shapes[0]) == 4:
        p["scale_factor"] = cap.output_shapes[0][2] // cap.input_shapes[0][2]
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise UsageError("pass --mean and --std together")
        p.update(mean=[float(v) for v in mean], std=[float(v) for v in std], color_order=p.get("color_order", "RGB"))
        if p.get("value_range") is None:
            p["value_range"] = [0.0, 1.0]
    if cap.input_shapes and len(cap.input_shapes[0]) >= 4:
        p["input_size"] = list(cap.input_shapes[0][-2:])
    cap.preprocess = {k: v for k, v in p.items() if v is not None}
    cap.preprocess["folded"] = False


def _zoo_labels(card: Any) -> list[str] | None:
    """Class names for a zoo classifier, from its family module's label helper (``labels(name)``
    or ``imagenet_labels()``) when the count matches the card's classes."""
    if card.task != "classify":
        return None
    from edgekit.zoo.registry import FAMILIES

    module_name = FAMILIES.get(card.family)
    if module_name is None:
        return None
    module = importlib.import_module(module_name)
    for helper, args in (("labels", (card.name,)), ("imagenet_labels", ())):
        fn = getattr(module, helper, None)
        if not callable(fn):
            continue
        try:
            labels = list(fn(*args))
        except Exception:  # noqa: BLE001 - a card without labels is fine
            continue
        if labels and (card.num_classes is None or len(labels) == card.num_classes):
            return labels
    return None


# --------------------------------------------------------------------------------------------
# torch.export


class _NamedIO:
    """Factory of the wrapper that gives a module named inputs (keyword arguments) and a dict
    of named outputs, so ONNX, TFLite and CoreML all use the same tensor names."""

    @staticmethod
    def wrap(module: Any, input_names: list[str], output_names: list[str]) -> Any:
        import torch
        import torch.utils._pytree as pytree

        class NamedIO(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = module

            def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
                out = self.model(*[inputs[n] for n in input_names])
                return dict(zip(output_names, pytree.tree_leaves(out)))

        wrapper = NamedIO()
        wrapper.training = False  # not .eval(): an ExportedProgram's module refuses train()/eval()
        return wrapper


def export_program(cap: Captured, fold: FoldSpec | None = None, *, for_image_input: bool = False) -> tuple[Any, dict]:
    """``torch.export`` the captured module (with the pre-processing of ``fold`` prepended).

    Returns ``(exported_program, kwargs)`` where ``kwargs`` maps the input names to the example
    tensors the program was traced with (raw pixels 0..255 when folding). Untraceable models
    raise a :class:`ConversionError` naming the cause and the user's file and line.
    """
    import torch

    if cap.module is None:
        import_onnx_module(cap)
    module = cap.module
    inputs = cap.example_inputs
    if fold is not None:
        channels = int(inputs[0].shape[1])
        module = fold_module(module, fold, channels, for_image_input=for_image_input)
        g = torch.Generator().manual_seed(1)
        pixels = torch.randint(0, 256, tuple(inputs[0].shape), generator=g).to(torch.float32)
        if fold.input_layout == "NHWC" and not for_image_input:
            pixels = pixels.permute(0, 2, 3, 1).contiguous()
        inputs = (pixels,)
    wrapper = _NamedIO.wrap(module, cap.input_names, cap.output_names)
    kwargs = dict(zip(cap.input_names, inputs))
    try:
        with _quiet_torch_logs():
            program = torch.export.export(wrapper, (), kwargs=kwargs, strict=False)
    except Exception as e:
        raise explain_export_error(e, cap) from None
    return program, kwargs


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    import logging

    names = ("torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes", "torch._dynamo")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def explain_export_error(e: BaseException, cap: Captured) -> ConversionError:
    """One line for a ``torch.export`` failure: the cause in words, the user's file and line."""
    text = str(e)
    name = type(e).__name__
    where = _user_location(e) or _location_in_message(text) or str(cap.source.get("ref", cap.name))
    if "data-dependent" in text or "GuardOnDataDependent" in name or "DataDependent" in name:
        cause = "data-dependent control flow (Python `if`/`while` or int() on a tensor's value)"
        hint = "make the branch independent of tensor values, or express it with torch.where / torch.cond"
    elif "Unsupported" in name or "not supported" in text.lower():
        cause = f"a construct torch.export does not support ({first_line(e)})"
        hint = "rewrite that line with tensor operations"
    else:
        cause = f"{name}: {first_line(e)}"
        hint = "make the model traceable by torch.export (see the PyTorch export docs); EDGEKIT_DEBUG=1 shows the trace"
    return ConversionError(STAGE, f"torch.export cannot trace the model: {cause}", where=where, hint=hint)



def _location_in_message(text: str) -> str | None:
    m = re.search(r'File "([^"]+)", line (\d+)', text)
    if m and "site-packages" not in m[1]:
        return f"{m[1]}:{m[2]}"
    return None


def _user_location(e: BaseException, folder: str | None = None) -> str | None:
    """``file:line (function)`` of the innermost frame of the traceback that is the user's
    code (not torch, not edgekit, not the standard library)."""
    import edgekit

    skip = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(edgekit.__file__)),
            os.path.dirname(os.__file__)]
    try:
        import torch

        skip.append(os.path.dirname(torch.__file__))
    except ImportError:  # pragma: no cover
        pass
    best = None
    for frame in traceback.extract_tb(e.__traceback__):
        fn = os.path.abspath(frame.filename)
        if "site-packages" in fn or any(fn.startswith(s) for s in skip) or fn.startswith("<"):
            continue
        if folder and not fn.startswith(folder):
            continue
        best = f"{frame.filename}:{frame.lineno} ({frame.name})"
    return best
