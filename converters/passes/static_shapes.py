"""static_shapes: a program exported with dynamic dimensions is re-exported at its example
shapes, so every shape is a constant and the shape arithmetic folds away.

Before (``torch.export`` with ``dynamic_shapes``; batch ``s0`` symbolic)::

    n = sym_size(x, 0)                # SHAPE / GATHER at run time in ONNX and TFLite
    y = view(conv(x), [n, -1])

After (the example's batch, say 1)::

    y = view(conv(x), [1, -1])        # a constant-shape RESHAPE

Edge TPU, Ethos-U (Vela: "tensors must not be dynamic") and NNAPI compile fixed shapes only, and
run-time shape arithmetic is what leaves ``Shape``/``Gather`` ops and int64 index tensors in
exported graphs. The program is re-exported from its own module (``program.module()``) at the
example inputs recorded in ``program.example_inputs``: the same function restricted to those
shapes, exactly. docs/accelerators.md, rewrite 14.
"""

from __future__ import annotations

import torch

from edgekit.converters.passes._fx import LAYOUT_META

__all__ = ["check", "rewrite", "symbolic_inputs"]


def symbolic_inputs(program: torch.export.ExportedProgram) -> dict[str, list[int]]:
    """{user input name: [indices of its symbolic dimensions]}."""
    users = set(map(str, program.graph_signature.user_inputs))
    out = {}
    for n in program.graph_module.graph.nodes:
        val = n.meta.get("val")
        if n.op == "placeholder" and n.name in users and isinstance(val, torch.Tensor):
            dims = [i for i, d in enumerate(val.shape) if not isinstance(d, int)]
            if dims:
                out[n.name] = dims
    return out


def check(program: torch.export.ExportedProgram) -> str | None:
    if symbolic_inputs(program):
        if not program.example_inputs:
            return "dynamic dimensions but no example inputs recorded to fix them to"
        return None
    return "every input shape is already static"


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    args, kwargs = program.example_inputs
    module = program.module()
    module.training = False  # an ExportedProgram's module refuses .eval()
    ep = torch.export.export(module, tuple(args), dict(kwargs))
    meta = program.graph_module.meta.get(LAYOUT_META)
    if meta:
        ep.graph_module.meta[LAYOUT_META] = meta
    return ep
