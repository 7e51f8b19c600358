"""prelu_restore: PReLU stays one op in every format (TFLite ``PRELU``, ONNX ``PRelu``).

Before (what litert-torch emits for ``aten.prelu``, on purpose: the split form runs on GPUs
that lack PRELU)::

    RELU(x) ─┐
    x → NEG → RELU → MUL(α) → SUB        (or RELU, MUL, MUL, SUB after constant folding)

After::

    PRELU(x, α)                           # α: (1, 1, C) on the NHWC tensor

The pass replaces ``aten.prelu(x, α)`` in the program by ``edgekit.prelu(x, α)`` — the same
function, kept opaque so that no exporter decomposes it — and each exporter lowers that to its
native op (see ``_custom_ops``). Exact: ``prelu(x) = x if x ≥ 0 else α·x`` is computed by the same
formula (one multiply), where the split form computes ``relu(x) − α·relu(−x)`` (also exact,
but four ops and three memory passes). PRELU is native on the TFLite GPU delegate, NNAPI,
Hexagon and Ethos-U; docs/accelerators.md, rewrite 11. Stage ``program`` (the registry first
planned a TFLite flatbuffer pass; preventing the split is simpler and helps ONNX too).
"""

from __future__ import annotations

from typing import Any

import torch

from edgekit.converters.passes import _custom_ops, _fx

__all__ = ["check", "rewrite"]

_PRELU = torch.ops.aten.prelu.default


def _prelus(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    return [n for n in program.graph_module.graph.nodes if n.op == "call_function" and n.target == _PRELU]


def check(program: torch.export.ExportedProgram) -> str | None:
    nodes = _prelus(program)
    if not nodes:
        return "the model has no PReLU"
    bad = [n.name for n in nodes if (_fx.node_shape(n.args[0]) or ()).__len__() != 4]
    if len(bad) == len(nodes):
        return f"its PReLU(s) {', '.join(bad)} are not on 4-D tensors"
    return None


class _Restorer(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.names = {n.name for n in _prelus(program) if len(_fx.node_shape(n.args[0]) or ()) == 4}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.names:
            x, w = self.resolve(args)
            return _custom_ops.PRELU(x, w)
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Restorer(program).export()
