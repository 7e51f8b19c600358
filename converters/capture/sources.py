"""Source resolution: what kind of source a string or object is (zoo name, ``file.py:callable``,
``package.module:callable``, ``.pt2``, ``.onnx``, an in-memory module), ``--input-shape``
parsing, and zoo models, modules and exported programs made into a :class:`Captured`."""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any

from edgekit.bundle import sha256_file
from edgekit.converters.capture.captured import STAGE, Captured
from edgekit.converters.capture.finite_weights import check_finite_weights
from edgekit.converters.capture.naming import infer_task, name_inputs, name_of, name_outputs
from edgekit.converters.capture.reference import torch_reference, torch_reference64
from edgekit.converters.capture.reparam import fold_reparam
from edgekit.converters.capture.user_code import user_location
from edgekit.converters.layouts import layout_for_rank
from edgekit.errors import ConversionError, ModelFileNotFound, UsageError, first_line

__all__ = ["MAX_RANK", "MAX_INPUT_ELEMENTS", "parse_shape", "classify", "display", "capture_zoo", "capture_object",
           "load_pt2"]

_CALLABLE = re.compile(r"^(?P<target>.+):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


MAX_RANK = 8
MAX_INPUT_ELEMENTS = 1 << 30  # 4 GiB of float32 for one example input: past this, tracing alone exhausts memory


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


def display(source: Any) -> str:
    """The source as messages name it: the string or path, else the object's type name."""
    return source if isinstance(source, (str, os.PathLike)) else type(source).__name__


def classify(source: Any) -> tuple[str, str]:
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


def capture_zoo(name: str, weights: Any, pretrained: bool, shapes: list | None, seed: int) -> Captured:
    """A zoo model (its card, built with :func:`edgekit.zoo.create`) as a :class:`Captured`."""
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


def capture_object(obj: Any, src: dict[str, Any], weights: Any, shapes: list | None, seed: int) -> Captured:
    """An ``nn.Module``, an ``ExportedProgram`` or ``(either, example_inputs)`` (what a factory
    returned, or what the API was given) as a :class:`Captured`; a module is deep-copied first."""
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
    name = name_of(src)
    return _from_module(module, tuple(inputs), src, name=name, card=None, input_names=names)


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


def load_pt2(path: Path) -> Any:
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


def _from_module(module: Any, inputs: tuple, src: dict[str, Any], *, name: str, card: Any,
                 input_names: list[str] | None = None) -> Captured:
    """Run the module once (checks the inputs fit, finds the outputs) and fill a Captured."""
    import torch
    import torch.utils._pytree as pytree

    where = src.get("ref", name)
    check_finite_weights(module, where)
    try:
        with torch.no_grad():
            out = module(*inputs)
    except Exception as e:
        shapes = ", ".join(str(list(t.shape)) for t in inputs)
        raise ConversionError(STAGE, f"running the model on inputs of shape {shapes} raised {type(e).__name__}: "
                              f"{first_line(e)}", where=user_location(e) or where,
                              hint="check --input-shape (and the weights)") from None
    leaves = pytree.tree_leaves(out)
    if not leaves or not all(isinstance(t, torch.Tensor) for t in leaves):
        raise ConversionError(STAGE, "the model's outputs are not tensors (or a tuple/dict of tensors)", where=where)
    in_shapes = [tuple(t.shape) for t in inputs]
    out_shapes = [tuple(t.shape) for t in leaves]
    task = card.task if card is not None else infer_task(None, in_shapes, out_shapes)
    out_names = name_outputs(out, len(leaves), task)
    if input_names is None or len(input_names) != len(inputs):
        input_names = name_inputs(module, len(inputs))
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
    cap.reference = torch_reference(module)
    cap.reference64 = torch_reference64(module)
    # the model's own eval-mode fold (RepVGG-style blocks), on a copy: the unfolded module stays the reference
    cap.module, calls, refused = fold_reparam(module, tuple(inputs))
    if calls:
        src["reparameterized"] = calls
    if refused:
        src["reparameterize_refused"] = refused
    return cap
