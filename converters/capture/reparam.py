"""A model's own eval-mode folding (structural re-parameterisation), run before ``torch.export``.

Re-parameterised blocks (RepVGG, ACNet, DBB, MobileOne, ECB/SESR-style SR blocks, RepLKNet) train
several branches and, for deployment, fold them into one conv. Until folded, many rebuild the
deploy weight inside ``forward`` on every call (``w = self.w3 + pad(self.w1)``), often through
``.data``, which ``torch.export`` cannot trace ("fake tensor in the exported program constant's
list"). Such blocks usually ship the fold as a method; the conventional names are :data:`HOOKS`.

:func:`fold_reparam` calls them on a *copy* (capture's eval-mode deep copy is copied again: the
user's module is never touched, and the unfolded copy stays the verification reference, so a fold
that changed the function fails verification instead of passing unnoticed). The outermost module
that has a hook is folded by it (its own subtree is its business); a hook that returns a new module
(``block.fuse() -> nn.Conv2d``) replaces the block in its parent. The folded copy is used only if it
computes what the unfolded one does on the example inputs, within the unfolded model's own float32
error (measured against its float64 run, ``edgekit.numerics.Bound.measured``); else capture keeps the
unfolded module and says why.

:func:`untraced_parameters` explains a model with no hook: the parameters whose ``.data`` forward
reads (the usual way a weight is computed outside what export traces), and the line that reads it.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

__all__ = ["HOOKS", "find_hooks", "fold_reparam", "untraced_parameters"]

# Method names re-parameterised blocks use for their eval-mode fold, most specific first.
HOOKS = ("switch_to_deploy", "reparameterize", "reparametrize", "merge_kernel", "convert_to_deploy",
         "structural_reparam", "fuse_reparam", "fuse")


def _hook_of(module: Any) -> str | None:
    """The first of :data:`HOOKS` that ``module``'s class defines and that takes no argument."""
    import torch

    for name in HOOKS:
        fn = getattr(type(module), name, None)
        if fn is None or getattr(torch.nn.Module, name, None) is fn or not callable(fn):
            continue
        try:
            params = list(inspect.signature(getattr(module, name)).parameters.values())
        except (TypeError, ValueError):
            continue
        if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            return name
    return None


def find_hooks(module: Any) -> list[tuple[str, str]]:
    """``[(submodule path, hook name)]``: the outermost modules that have a fold hook ("" is the root)."""
    found: list[tuple[str, str]] = []
    for path, sub in module.named_modules():
        if any(p == "" or path == p or path.startswith(p + ".") for p, _ in found):
            continue  # inside a module whose own hook folds it
        hook = _hook_of(sub)
        if hook is not None:
            found.append((path, hook))
    return found


def _replace(root: Any, path: str, new: Any) -> Any:
    if not path:
        return new
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, new)
    return root


def fold_reparam(module: Any, inputs: tuple) -> tuple[Any, list[str], str | None]:
    """``(module to export, hooks called as "path.hook()", note)``: a folded copy of ``module`` when
    it has hooks and the fold keeps its outputs, else ``module`` itself (with a note saying why not
    when a fold was tried)."""
    import torch
    import torch.utils._pytree as pytree

    from edgekit.errors import first_line
    from edgekit.numerics import Bound

    hooks = find_hooks(module)
    if not hooks:
        return module, [], None
    calls = [f"{path or type(module).__name__}.{hook}()" for path, hook in hooks]
    folded = copy.deepcopy(module)
    try:
        with torch.no_grad():
            for path, hook in hooks:
                sub = folded.get_submodule(path) if path else folded
                sub.eval()
                out = getattr(sub, hook)()
                if isinstance(out, torch.nn.Module) and out is not sub:
                    folded = _replace(folded, path, out)
            folded.eval()
            got = pytree.tree_leaves(folded(*inputs))
            want = pytree.tree_leaves(module(*inputs))
            want64 = pytree.tree_leaves(copy.deepcopy(module).double()(*[x.double() if x.is_floating_point() else x
                                                                        for x in inputs]))
    except Exception as e:
        return module, [], f"its fold {', '.join(calls)} raised {type(e).__name__}: {first_line(e)}; exported unfolded"
    if len(got) != len(want):
        return module, [], f"its fold {', '.join(calls)} changed the number of outputs; exported unfolded"
    for g, w, w64 in zip(got, want, want64):
        problem = Bound.measured(w.numpy(), w64.numpy()).check(g.numpy(), w.numpy(), "folded output")
        if problem:
            return module, [], f"its fold {', '.join(calls)} changed the outputs ({problem}); exported unfolded"
    return folded, calls, None


def untraced_parameters(module: Any, inputs: tuple) -> list[tuple[str, str | None]]:
    """``[(parameter name, "file:line (function)" of the read)]`` for every parameter whose ``.data``
    one forward pass reads: a weight computed from it that way is invisible to ``torch.export``."""
    import torch
    from torch.overrides import TorchFunctionMode

    from edgekit.converters.capture.user_code import frame_location

    names = {id(p): n for n, p in module.named_parameters()}
    seen: dict[str, str | None] = {}
    data_get = torch.Tensor.data.__get__

    class Reads(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            if func == data_get and args and id(args[0]) in names and names[id(args[0])] not in seen:
                seen[names[id(args[0])]] = frame_location(inspect.stack()[1:])
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Reads():
        try:
            module(*inputs)
        except Exception:  # the forward already ran once in capture; an error here only ends the search
            pass
    return list(seen.items())
