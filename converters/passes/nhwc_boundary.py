"""nhwc_boundary: the model takes and gives channels-last tensors (NHWC), with no layout
TRANSPOSE left inside the TFLite graph.

Before (what litert-torch makes of an NCHW program: it computes convolutions in NHWC and
transposes wherever the program's NCHW tensors meet them, at the boundary and around ops it
keeps in NCHW, such as a residual ADD with the input)::

    input (N,C,H,W) → TRANSPOSE → CONV_2D → TRANSPOSE → ADD(·, input) → output (N,C,H,W)

After (the program is wrapped: ``x_nhwc.permute(0,3,1,2)`` in front, ``.permute(0,2,3,1)`` behind,
and litert-torch's layout optimisation cancels every permute against its NHWC kernels)::

    input (N,H,W,C) → CONV_2D → ADD(·, input) → output (N,H,W,C)

Exact: the same ops on the same values; only who transposes changes — the caller, whose pixels
are usually NHWC already (camera frames, bitmaps). Every 4-D tensor of the interface whose
layout has C second (``NCHW``; ``TCHW`` after ``frames_to_batch``) moves C last (``NHWC``,
``THWC``). The change is recorded in ``graph_module.meta["edgekit_io_layouts"]`` (the same
contract the 5-D passes use: ``{"source": ..., "artifact": ...}`` per input name / output
index), from which the converter writes the manifest's layouts and ``source_layouts`` so
that ``edgekit.load(bundle)`` still accepts and returns the source layout. All three formats get
the NHWC interface (ONNX and CoreML keep one Transpose at each end, since their Conv is NCHW
by definition; lint accepts a boundary Transpose there). The current layouts are the
``artifact`` entries of that same meta (the converter seeds it with the captured layouts, so a
``--fold-preprocess --input-layout NHWC`` input is left alone) and default to NCHW for 4-D
float tensors (docs/accelerators.md, rewrite 13).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import nn

from edgekit.converters.passes._fx import LAYOUT_META

__all__ = ["check", "rewrite", "plan"]


def _user_inputs(program: torch.export.ExportedProgram) -> list[tuple[str, Any]]:
    spec = program.graph_signature
    vals = {n.name: n.meta.get("val") for n in program.graph_module.graph.nodes if n.op == "placeholder"}
    return [(str(n), vals.get(str(n))) for n in spec.user_inputs]


def _user_outputs(program: torch.export.ExportedProgram) -> list[Any]:
    out = next(n for n in program.graph_module.graph.nodes if n.op == "output")
    flat = pytree.tree_leaves(out.args[0])
    n_user = len(program.graph_signature.user_outputs)
    return [getattr(x, "meta", {}).get("val") for x in flat[-n_user:]] if n_user else []


def _layouts(program: torch.export.ExportedProgram) -> tuple[dict[str, str], dict[str, str], dict, dict]:
    io = program.graph_module.meta.get(LAYOUT_META) or {}
    ins = {k: v["artifact"] for k, v in io.get("inputs", {}).items()}
    outs = {str(k): v["artifact"] for k, v in io.get("outputs", {}).items()}
    return ins, outs, dict(io.get("inputs", {})), {str(k): v for k, v in io.get("outputs", {}).items()}


def _channels_last(layout: str | None, val: Any) -> str | None:
    """The channels-last form of a 4-D layout with C second, else None."""
    if not isinstance(val, torch.Tensor) or val.dim() != 4 or not val.dtype.is_floating_point:
        return None
    layout = layout or "NCHW"
    if len(layout) != 4 or layout[1] != "C":
        return None
    return layout[0] + layout[2:] + layout[1]


def plan(program: torch.export.ExportedProgram) -> tuple[dict[str, tuple[str, str]], dict[int, tuple[str, str]]]:
    """``({input name: (layout, new layout)}, {output index: (layout, new layout)})``."""
    ins, outs, _, _ = _layouts(program)
    pin = {}
    for name, val in _user_inputs(program):
        new = _channels_last(ins.get(name), val)
        if new:
            pin[name] = (ins.get(name) or "NCHW", new)
    pout = {}
    for i, val in enumerate(_user_outputs(program)):
        new = _channels_last(outs.get(str(i)), val)
        if new:
            pout[i] = (outs.get(str(i)) or "NCHW", new)
    return pin, pout


def check(program: torch.export.ExportedProgram) -> str | None:
    pin, pout = plan(program)
    if pin or pout:
        return None
    return "no 4-D float input or output with channels second (already channels-last, or not an image model)"


def _perm(src: str, dst: str) -> list[int]:
    return [src.index(c) for c in dst]


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    pin, pout = plan(program)
    names = [n for n, _ in _user_inputs(program)]
    keywords = bool(program.example_inputs and program.example_inputs[1])
    inner = program.module()

    class ChannelsLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def run(self, *xs: torch.Tensor) -> Any:
            # contiguous: a channels-last-strided view would make decompositions emit as_strided gathers
            xs = tuple(x.permute(*_perm(pin[n][1], pin[n][0])).contiguous() if n in pin else x for n, x in zip(names, xs))
            out = self.inner(**dict(zip(names, xs))) if keywords else self.inner(*xs)
            leaves, spec = pytree.tree_flatten(out)
            leaves = [y.permute(*_perm(pout[i][0], pout[i][1])) if i in pout else y for i, y in enumerate(leaves)]
            return pytree.tree_unflatten(leaves, spec)

    params = ", ".join(names)
    src = (f"def forward(self, *, {params}):\n    return self.run({params})\n" if keywords
           else f"def forward(self, {params}):\n    return self.run({params})\n")
    scope: dict[str, Any] = {}
    exec(src, scope)  # the new program keeps the source's input names (and keyword inputs)
    ChannelsLast.forward = scope["forward"]
    args, kwargs = program.example_inputs
    values = list(kwargs[n] for n in names) if keywords else list(args)
    values = [v.permute(*_perm(pin[n][0], pin[n][1])).contiguous() if n in pin else v for n, v in zip(names, values)]
    mod = ChannelsLast()
    mod.training = False  # an ExportedProgram's module refuses .eval()
    if keywords:
        ep = torch.export.export(mod, (), dict(zip(names, values)))
    else:
        ep = torch.export.export(mod, tuple(values))
    _, _, io_in, io_out = _layouts(program)
    meta = {"inputs": dict(io_in), "outputs": dict(io_out)}
    for n, (old, new) in pin.items():
        meta["inputs"][n] = {"source": io_in.get(n, {}).get("source", old), "artifact": new}
    for i, (old, new) in pout.items():
        meta["outputs"][str(i)] = {"source": io_out.get(str(i), {}).get("source", old), "artifact": new}
    ep.graph_module.meta[LAYOUT_META] = meta
    return ep
