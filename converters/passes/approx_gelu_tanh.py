"""approx_gelu_tanh: GELU becomes its tanh approximation, written as MUL/ADD/LOGISTIC (approximate).

Most NPUs have neither a GELU nor an Erf op (the Edge TPU, Ethos-U, NNAPI; see the target
profiles), so an exact GELU ends the accelerated segment. This pass replaces every
``aten.gelu`` (``approximate='none'``, the erf form, and ``approximate='tanh'``) by::

    before:  GELU(x) = x·Φ(x) = ½·x·(1 + erf(x/√2))

    after:   x·σ(x·(a + b·x²))        a = 2·√(2/π), b = 2·√(2/π)·0.044715
             x → MUL(x, x) → MUL(b) → ADD(a) → MUL(x) → LOGISTIC → MUL(x)

which is the tanh approximation ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) rewritten with
½(1 + tanh z) = σ(2z) and the polynomial factored (one multiply fewer than x³ as x·x·x).

Why this form (checked with litert-torch 0.10 and torch.onnx.export(dynamo=True), torch 2.13):
``aten.gelu(approximate='tanh')`` still becomes a ``GELU`` op in TFLite and ``Gelu`` in ONNX,
and the tanh form written out op by op is fused back into one ``GELU`` by the LiteRT converter
(ONNX keeps it as Mul/Tanh/Add). The sigmoid form survives both exporters as plain ops: TFLite
``MUL, MUL, ADD, MUL, LOGISTIC, MUL``; ONNX ``Mul, Mul, Add, Mul, Sigmoid, Mul``. No GELU or Erf
is left in either artifact. ``x³`` is written as ``x·x²``, not ``pow`` (POW is rarer on NPUs).

Error bound, measured on a dense grid (24·10⁶ points on [−12, 12], float64): the tanh
approximation differs from exact GELU by at most 4.73e-4 (absolute, at |x| ≈ 2.70), by less than
1.3e-6 for |x| ≥ 5 and less than 1e-14 for |x| ≥ 8. Evaluating the form above in float32 adds at
most 5.2e-7 in PyTorch, 3.4e-7 in TFLite (XNNPACK) and 6.5e-7 in ONNX Runtime (against the
formula in float64, |x| ≤ 12). The pass's bound is therefore ``|y − GELU(x)| ≤ 4.8e-4`` for
every x. Large |x| are safe: once x² overflows (float32, and float16 above 256) the sigmoid
saturates, giving y = x for x > 0 and y = −0 for x < 0, never NaN. For a source that already
uses ``approximate='tanh'`` the rewrite is the same function, exact up to float32 rounding
(≤ 1e-6·max(1, |x|)). Opt-in only (``--passes approx_gelu_tanh``), never in a default pipeline:
a network trained with exact GELU sees its activations move by up to 4.8e-4 each.

A hand-written erf GELU (``aten.erf`` outside ``aten.gelu``) is not matched; :func:`check` says so.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from edgekit.converters.passes import _fx

__all__ = ["check", "rewrite", "gelu_tanh"]

_GELU = torch.ops.aten.gelu.default
_ERF = torch.ops.aten.erf.default
_A = 2.0 * math.sqrt(2.0 / math.pi)
_B = _A * 0.044715


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU as ``x·σ(x·(a + b·x²))`` (aten ops, for the re-trace)."""
    aten = _fx.aten
    inner = aten.add.Tensor(aten.mul.Tensor(aten.mul.Tensor(x, x), _B), _A)
    return aten.mul.Tensor(x, aten.sigmoid.default(aten.mul.Tensor(x, inner)))


def _nodes(program: torch.export.ExportedProgram, target: Any) -> list[torch.fx.Node]:
    return [n for n in program.graph_module.graph.nodes if n.op == "call_function" and n.target == target]


def check(program: torch.export.ExportedProgram) -> str | None:
    if _nodes(program, _GELU):
        return None
    erfs = len(_nodes(program, _ERF))
    if erfs:
        return f"the model has no GELU (its {erfs} erf op(s) are not part of an aten.gelu and are left alone)"
    return "the model has no GELU"


class _Approximator(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.names = {n.name for n in _nodes(program, _GELU)}

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.names:
            return gelu_tanh(self.resolve(args[0]))
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Approximator(program).export()
