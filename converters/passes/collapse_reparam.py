"""collapse_reparam: re-parameterised linear branches collapse into one conv.

Two forms, both exact in real arithmetic (float32 rounding only, the folded weights computed in
float64 and rounded once):

1. A linear conv chain, as in SESR's collapsible linear blocks (Bhardwaj et al. 2022,
   https://arxiv.org/abs/2103.09404) written literally.

   Before::

       y = conv2d(x, E, b_E, k×k, stride 1)      # expand to p channels, no non-linearity
       z = conv2d(y, P, b_P, 1×1)                # project to o channels
       z = z + x                                 # optional identity residual (o == i)

   After::

       z = conv2d(x, W, b, k×k, stride 1)        # W[o,i] = Σ_p P[o,p]·E[p,i] (+ I at the centre tap)
                                                 # b = P·b_E + b_P

   The 1×1 conv is pointwise, so the first conv's zero padding carries over.
   Only where the collapsed conv costs no more MACs than the chain (``k²·i·o ≤ k²·i·p + p·o``):
   true for SESR's expand-then-project blocks, false for e.g. MobileNetV2's projection 1×1
   followed by the next block's expansion 1×1 (32→16→96), which stays two convs; 1×1 → 1×1
   pairs through a narrower middle (a bottleneck boundary, not an expanded branch) are left
   alone too (MobileNetV3-small's 16→16→72 would be cheaper collapsed, but it is the model's
   architecture, not a training-time re-parameterisation).

2. Weight arithmetic left in the graph: a block that computes its collapsed weight from its
   parameters at every call (SESR's training form, RepVGG-style online re-parameterisation)
   exports as einsum/add ops on parameters feeding a conv. Every op whose inputs are all
   parameters or constants is evaluated once here and becomes a constant.

BatchNorms inside branches are folded first (``fold_batchnorm`` runs before this pass).
docs/accelerators.md, rewrite 8.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils._pytree as pytree

from edgekit.converters.passes import _fx

__all__ = ["check", "rewrite", "chains", "weight_ops"]

aten = torch.ops.aten
_CONV = aten.conv2d.default
_ADD = {aten.add.Tensor}
_NONDETERMINISTIC = {"rand", "randn", "randint", "dropout", "bernoulli", "normal", "uniform", "empty"}


def _conv_args(node: torch.fx.Node) -> dict[str, Any]:
    a = list(node.args) + [None] * (7 - len(node.args))
    ks = _fx.node_shape(a[1]) if isinstance(a[1], torch.fx.Node) else None
    return {"x": a[0], "w": a[1], "b": a[2], "stride": list(a[3] or [1, 1]), "padding": list(a[4] or [0, 0]),
            "dilation": list(a[5] or [1, 1]), "groups": a[6] or 1, "kshape": ks}


def _plain(c: dict[str, Any]) -> bool:
    stride = c["stride"] if len(c["stride"]) == 2 else c["stride"] * 2
    dilation = c["dilation"] if len(c["dilation"]) == 2 else c["dilation"] * 2
    return stride == [1, 1] and dilation == [1, 1] and c["groups"] == 1 and isinstance(c["padding"], list)


def _param_nodes(program: torch.export.ExportedProgram) -> set[str]:
    sig = program.graph_signature
    user = set(map(str, sig.user_inputs))
    return {n.name for n in program.graph_module.graph.nodes if n.op == "placeholder" and n.name not in user}


def weight_ops(program: torch.export.ExportedProgram) -> list[torch.fx.Node]:
    """Ops whose tensor inputs are all parameters/constants (evaluated once by the pass)."""
    const = _param_nodes(program)
    found = []
    for n in program.graph_module.graph.nodes:
        if n.op != "call_function" or any(k in str(n.target) for k in _NONDETERMINISTIC):
            continue
        ins = [a for a in pytree.tree_leaves((n.args, n.kwargs)) if isinstance(a, torch.fx.Node)]
        if ins and all(a.name in const for a in ins) and isinstance(n.meta.get("val"), torch.Tensor):
            const.add(n.name)
            found.append(n)
    return found


def chains(program: torch.export.ExportedProgram) -> list[tuple[torch.fx.Node, torch.fx.Node, torch.fx.Node | None]]:
    """``[(expand_conv, project_conv, residual_add or None)]``."""
    out = []
    for n in program.graph_module.graph.nodes:
        if n.op != "call_function" or n.target != _CONV:
            continue
        c2 = _conv_args(n)
        first = c2["x"]
        if not (isinstance(first, torch.fx.Node) and first.target == _CONV and len(first.users) == 1):
            continue
        c1 = _conv_args(first)
        k2 = c2["kshape"]
        if not (_plain(c1) and _plain(c2) and k2 and tuple(k2[2:]) == (1, 1) and list(c2["padding"]) in ([0, 0], [0])):
            continue
        k1 = c1["kshape"]
        o, p, i = k2[0], k2[1], k1[1] if k1 else 0
        kk = k1[2] * k1[3] if k1 else 0
        if not k1 or kk * i * o > kk * i * p + p * o:  # only when one conv is no more work than two
            continue
        if kk == 1 and p <= max(i, o):  # a 1×1 → 1×1 pair that is not an expansion: a bottleneck
            continue                    # boundary (MobileNetV2/V3 project → next expand), not a branch
        add = None
        if len(n.users) == 1:
            (u,) = n.users
            x = c1["x"]
            if u.target in _ADD and len(u.args) == 2 and set(u.args) == {n, x} and u.kwargs.get("alpha", 1) == 1:
                k1 = c1["kshape"]
                pad = c1["padding"] if len(c1["padding"]) == 2 else c1["padding"] * 2
                if k1 and k1[2] % 2 and k1[3] % 2 and pad == [k1[2] // 2, k1[3] // 2] \
                        and _fx.node_shape(u) == _fx.node_shape(x):
                    add = u
        out.append((first, n, add))
    return out


def check(program: torch.export.ExportedProgram) -> str | None:
    if chains(program) or any(str(n.target) != "aten.detach.default" for n in weight_ops(program)):
        return None
    return "no linear conv→1×1 conv chain and no weight arithmetic in the graph"


class _Collapser(_fx.Retracer):
    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__(program)
        self.weight_names = {n.name for n in weight_ops(program)}
        found = chains(program)
        self.expand = {a.name for a, _, _ in found}
        self.project = {b.name: (a, r) for a, b, r in found}
        self.residual = {r.name: b.name for _, b, r in found if r is not None}
        self.values: dict[int, torch.Tensor] = {}  # id(constant tensor) -> itself (folded weights)
        self.collapsed: dict[str, torch.Tensor] = {}  # project conv -> its output (for the residual add)
        self.deferred: dict[str, tuple] = {}  # expand conv -> (x, E, b_E, has bias), taken when it runs

    def value(self, arg: Any) -> torch.Tensor | None:
        if isinstance(arg, torch.Tensor) and id(arg) in self.values:
            return arg
        return self.concrete(arg)

    def handle(self, node: torch.fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.name in self.weight_names:
            concrete = pytree.tree_map(lambda a: self.value(a) if isinstance(a, (_fx.Attr, torch.Tensor)) else a,
                                       (args, kwargs))
            if any(v is None for v in pytree.tree_leaves(concrete)
                   if not isinstance(v, (int, float, bool, str, torch.dtype, torch.device, torch.memory_format))):
                return NotImplemented
            t = self.const(f"w_{node.name}", lambda: node.target(*concrete[0], **concrete[1]))  # once, eagerly
            self.values[id(t)] = t
            return t
        if node.name in self.expand:  # not computed: it becomes part of the collapsed conv
            a = list(args) + [None] * (3 - len(args))
            self.deferred[node.name] = (self.resolve(a[0]), self.value(a[1]),
                                        self.value(a[2]) if a[2] is not None else None, a[2] is not None)
            return ("deferred", node.name)
        if node.name in self.project:
            first, add = self.project[node.name]
            x, e, be, has_be = self.deferred.pop(first.name)
            c1 = _conv_args(first)
            p = self.value(args[1])
            bp = self.value(args[2]) if len(args) > 2 and args[2] is not None else None
            if e is None or p is None or (has_be and be is None) or \
                    (len(args) > 2 and args[2] is not None and bp is None):
                raise RuntimeError(f"collapse_reparam: weights of {first.name}/{node.name} are not constant")

            def folded() -> tuple[torch.Tensor, torch.Tensor]:
                w = torch.einsum("op,pikl->oikl", p.double()[:, :, 0, 0], e.double())
                b = torch.zeros(w.shape[0], dtype=torch.float64)
                if be is not None:
                    b = b + p.double()[:, :, 0, 0] @ be.double()
                if bp is not None:
                    b = b + bp.double()
                if add is not None:
                    kh, kw = w.shape[2] // 2, w.shape[3] // 2
                    w[:, :, kh, kw] += torch.eye(w.shape[0], w.shape[1], dtype=torch.float64)
                return w.to(e.dtype), b.to(e.dtype)

            w = self.const(f"{node.name}_w_collapsed", lambda: folded()[0])
            b = self.const(f"{node.name}_b_collapsed", lambda: folded()[1])
            out = aten.conv2d.default(x, w, b, [1, 1], c1["padding"])
            if add is not None:
                self.collapsed[node.name] = out
            return out
        if node.name in self.residual:  # the identity is in the collapsed weight
            return self.collapsed[self.residual[node.name]]
        return NotImplemented


def rewrite(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    return _Collapser(program).export()
