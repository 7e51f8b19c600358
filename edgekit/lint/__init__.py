"""``edgekit lint``: check a model file against a target profile and report every violation.

:func:`lint` reads a ``.tflite``, ``.onnx`` or ``.mlpackage`` from any tool (op by op, see
:mod:`edgekit.lint.readers`) and applies the rules of a target profile
(:mod:`edgekit.targets`). The rules are generic; everything target-specific (ranks, dtypes,
op tables, constraints, reasons, fixes) is profile data. Each :class:`Finding` says where the
problem is (op type and index or node name, tensor), which rule it breaks, why that matters on
the accelerator, and the rewrite pass that fixes it (``fix_pass``) or, when no pass can,
``advice``.

Rules (ids as in ``Finding.rule``):

- ``format``: the accelerator's toolchain does not take this format.
- ``rank``: an activation of rank > ``max_rank`` (error) or > ``preferred_rank`` (warning),
  named once with the op that produces it and the ops that consume it.
- ``dynamic-shape``: a dynamic dim on a model input, or the first dynamic tensor inside.
- ``dtype``: activations of a dtype the accelerator does not compute in (one finding per
  dtype, with the count and the tensors).
- ``max-dim`` / ``batch`` / ``nonunit-dims``: hardware shape limits (Ethos-U, Edge TPU).
- ``layout``: for NHWC targets, an NCHW model boundary or a layout TRANSPOSE (classified as
  boundary or internal). ONNX and Core ML are channels-first by definition: their boundary is
  not checked (the runtime's execution provider picks the storage), internal layout transposes are.
  An ONNX Transpose that only swaps a MatMul operand's last two axes is noted, not flagged.
- ``op-forbidden`` / ``op-not-supported``: ops the profile refuses, or that a closed op table
  does not list.
- ``op-constraint``: an op outside the limits its profile entry sets (strides,
  ``half_pixel_centers``, block size, ranks, axes...).
- ``pixel-shuffle``: a pixel shuffle decomposed into RESHAPE/TRANSPOSE chains.
- ``prelu-decomposed``: PReLU split into RELU/NEG/MUL/SUB (litert-torch does this).
- ``silu``: x * sigmoid(x) on a quantized target (advice: it quantizes badly).

Errors make the model fail the target (``edgekit lint`` exits 3); warnings are reported and
fail only with ``strict``.

Example::

    >>> report = lint("decoder.tflite", "generic-npu")        # doctest: +SKIP
    >>> report.passed, report.summary["by_rule"]              # doctest: +SKIP
    (False, {'rank': 237, 'op-forbidden': 64, ...})
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from math import prod
from pathlib import Path
from typing import Any, Iterable

from edgekit.lint.readers import Graph, Op, Tensor, flat, read_graph
from edgekit.targets import DEFAULT_TARGET, OpRule, TargetProfile, load_target

__all__ = ["Finding", "LintReport", "lint", "lint_graph", "lint_summary"]

_CHAIN_OPS = {"RESHAPE", "TRANSPOSE", "Reshape", "Transpose", "reshape", "transpose"}
_TRANSPOSE = {"TRANSPOSE", "Transpose", "transpose"}
# ops that only move data and can lift a rank-<=4 tensor above the target's rank
_LIFT_OPS = {"RESHAPE", "Reshape", "reshape", "EXPAND_DIMS", "Unsqueeze", "expand_dims", "TRANSPOSE", "Transpose",
             "transpose", "BROADCAST_TO", "Expand", "TILE", "Tile", "tile"}
_BROADCAST_OPS = {"BROADCAST_TO", "Expand", "TILE", "Tile", "tile"}
_SCATTER_OPS = {"SCATTER_ND", "ScatterND", "ScatterElements", "Scatter", "scatter", "scatter_nd", "scatter_along_axis"}
_SELECT_OPS = {"SELECT", "SELECT_V2", "Where", "select"}
_PAD_OPS = {"PAD", "PADV2", "Pad", "pad"}
_QUANT_OPS = {"QUANTIZE", "DEQUANTIZE", "QuantizeLinear", "DequantizeLinear", "cast"}
_ACTIVATION_FREE = {"NONE", None}


@dataclass
class Finding:
    """One violation. ``op`` is the op type (or None for a model-level finding), ``index_or_node``
    the op index (TFLite) or node name (ONNX, Core ML), ``tensor`` the tensor concerned,
    ``fix_pass`` the rewrite pass that removes the violation (None when no pass can: then
    ``advice`` says what to do)."""

    rule: str
    severity: str
    op: str | None
    index_or_node: int | str | None
    tensor: str | None
    message: str
    why: str
    fix_pass: str | None
    advice: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        if self.op is None:
            return self.tensor or "model"
        if isinstance(self.index_or_node, int):
            return f"{self.op} #{self.index_or_node}"
        return f"{self.op} '{self.index_or_node}'" if self.index_or_node else self.op

    @property
    def fix_text(self) -> str:
        """The pass, or ``none: <advice>``."""
        return self.fix_pass if self.fix_pass else f"none: {self.advice or 'change the model'}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["where"] = self.where
        return d


@dataclass
class LintReport:
    """The findings of one model against one target, and a summary (counts by severity and rule)."""

    path: Path
    target: str
    format: str
    findings: list[Finding]
    num_ops: int
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def passed(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    @property
    def summary(self) -> dict[str, Any]:
        by_rule: dict[str, int] = {}
        for f in self.findings:
            by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
        passes: list[str] = []
        for f in self.findings:
            if f.fix_pass and f.fix_pass not in passes:
                passes.append(f.fix_pass)
        return {
            "target": self.target, "format": self.format, "path": str(self.path), "ops": self.num_ops,
            "errors": len(self.errors), "warnings": len(self.warnings), "passed": self.passed,
            "by_rule": dict(sorted(by_rule.items(), key=lambda kv: -kv[1])), "fix_passes": passes,
        }

    def summary_line(self) -> str:
        s = self.summary
        if not self.findings:
            return f"{self.path.name}: clean for {self.target} ({s['ops']} ops)"
        verdict = "passes" if self.passed else "fails"
        return (f"{self.path.name} {verdict} {self.target}: {s['errors']} error(s), {s['warnings']} warning(s) "
                f"in {s['ops']} ops")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "summary": self.summary, "findings": [f.to_dict() for f in self.findings],
                "notes": list(self.notes)}


def reconcile_fixes(report: LintReport, applied: Iterable[str] = (), declined: dict[str, str] | None = None) -> LintReport:
    """Make the proposed fixes agree with what a conversion already did (its manifest): a pass
    that ran and declined is not proposed again — the finding says why it declined; a pass that
    ran and still left the finding is named as such. ``applied``: passes that ran on the
    artifact; ``declined``: pass id → the reason it did not apply. Changes ``report`` in place."""
    declined = dict(declined or {})
    applied = set(applied)
    for f in report.findings:
        if f.fix_pass in declined:
            f.advice = f"{f.fix_pass} was tried and did not apply: {declined[f.fix_pass]}"
            f.details["declined_pass"] = f.fix_pass
            f.fix_pass = None
        elif f.fix_pass in applied:
            f.advice = f"{f.fix_pass} ran on this artifact and left this op (a form it does not recognise)"
            f.details["applied_pass"] = f.fix_pass
            f.fix_pass = None
    return report


def lint(path: str | os.PathLike, target: str | TargetProfile = DEFAULT_TARGET) -> LintReport:
    """Check the model at ``path`` against ``target`` (a name or a loaded profile).

    Raises :class:`~edgekit.errors.EdgekitError` subclasses for a missing or unreadable file or
    an unknown target; violations are findings, never exceptions.
    """
    profile = load_target(target) if isinstance(target, str) else target
    return lint_graph(read_graph(path), profile)


def lint_graph(graph: Graph, profile: TargetProfile) -> LintReport:
    """Apply every rule of ``profile`` to an already-read :class:`Graph`."""
    ctx = _Context(graph, profile)
    if graph.format not in profile.formats:
        ctx.add("format", "error", None, None,
                f"{profile.title} does not take {graph.format} models (it takes: {', '.join(profile.formats)})",
                fix=None, advice=f"export {' or '.join(profile.formats)} for this target")
    _check_dynamic(ctx)
    _check_rank(ctx)
    _check_dtypes(ctx)
    covered = _check_patterns(ctx)
    _check_shape_limits(ctx, covered)
    covered |= _check_layout(ctx, covered)
    covered |= _matmul_operand_transposes(ctx)
    if graph.format in profile.ops:
        _check_ops(ctx, covered)
    return LintReport(graph.path, profile.name, graph.format, ctx.findings, len(graph.ops), [*graph.notes, *ctx.notes])


# -- shared plumbing ----------------------------------------------------------------------------

class _Context:
    def __init__(self, graph: Graph, profile: TargetProfile):
        self.g = graph
        self.t = profile
        self.findings: list[Finding] = []
        self.notes: list[str] = []

    def add(self, rule: str, severity: str, op: Op | None, tensor: Tensor | None, message: str, *,
            fix: str | None, advice: str = "", why: str = "", details: dict[str, Any] | None = None) -> None:
        self.findings.append(Finding(
            rule=rule, severity=severity, op=op.type if op else None,
            index_or_node=(op.name or op.index) if op else None, tensor=tensor.name if tensor else None,
            message=message, why=why or self.t.why_for(rule), fix_pass=fix,
            advice=advice if (advice or fix) else self.t.advice_for("op"), details=details or {},
        ))

    def activations(self) -> Iterable[Tensor]:
        """Non-constant tensors an op produces or a graph input is."""
        seen: set[str] = set()
        for t in self.g.inputs:
            if t.key not in seen:
                seen.add(t.key)
                yield t
        for op in self.g.ops:
            for t in op.outputs:
                if not t.const and t.key not in seen:
                    seen.add(t.key)
                    yield t

    def producer(self, t: Tensor) -> Op | None:
        return self.g.producers.get(t.key)

    def consumers(self, t: Tensor) -> list[Op]:
        return self.g.consumers.get(t.key, [])

    def op_at(self, t: Tensor) -> Op | None:
        """The op a tensor finding points at: its producer, else its first consumer."""
        return self.producer(t) or next(iter(self.consumers(t)), None)


def _refs(ops: Iterable[Op], limit: int = 8) -> list[str]:
    refs = [op.ref for op in ops]
    return refs if len(refs) <= limit else [*refs[:limit], f"... {len(refs) - limit} more"]


# -- tensor rules ---------------------------------------------------------------------------------

def _check_dynamic(ctx: _Context) -> None:
    if not ctx.t.static_shapes:
        return
    fix = ctx.t.fix_for("shape.dynamic")
    dynamic_inputs = False
    for t in ctx.g.inputs:
        if t.is_dynamic:
            dynamic_inputs = True
            dims = [i for i, d in enumerate(t.shape or ()) if d is None]
            ctx.add("dynamic-shape", "error", ctx.op_at(t), t,
                    f"model input '{t.short}' {t.shape_text()} has dynamic dim(s) {dims}", fix=fix,
                    details={"dims": dims})
    if dynamic_inputs:
        return
    # Static inputs but dynamic tensors inside: report where dynamism starts (data-dependent shapes).
    for op in ctx.g.ops:
        for t in op.outputs:
            if t.is_dynamic and not any(i is not None and i.is_dynamic for i in op.inputs):
                ctx.add("dynamic-shape", "error", op, t,
                        f"{op.ref} makes '{t.short}' {t.shape_text()} dynamic from static inputs (a data-dependent shape)",
                        fix=fix)


def _rank_fix(profile: TargetProfile, rank: int) -> str | None:
    for r in range(rank, 4, -1):
        fix = profile.fix_for(f"rank.{r}")
        if fix:
            return fix
    keys = sorted(int(k.split(".")[1]) for k in profile.fixes if k.startswith("rank.") and k[5:].isdigit())
    return profile.fix_for(f"rank.{keys[-1]}") if keys and rank > keys[-1] else None


def _lift(ctx: _Context, t: Tensor) -> tuple[Op | None, set[str]]:
    """The op that made a tensor above the target's rank out of tensors at or below it, found by
    walking back through the ops that keep it above; and the op types on the way. ``(None, …)``
    when the walk ends at a graph input (a video clip, say)."""
    types: set[str] = set()
    seen: set[str] = set()
    cur: Tensor | None = t
    while cur is not None and cur.key not in seen:
        seen.add(cur.key)
        p = ctx.producer(cur)
        if p is None:
            return None, types
        types.add(p.type)
        ins = [i for i in p.inputs if i is not None and not i.const and i.rank is not None]
        high = [i for i in ins if i.rank > ctx.t.max_rank]  # type: ignore[operator]
        if not high:
            return (p if ins else None), types
        cur = high[0]
    return None, types


def _from_high_input(ctx: _Context, t: Tensor | None) -> bool:
    """Whether ``t`` depends on a model input above the target's rank (a video clip): then the
    rank-5 tensors made from its frames are the clip's, which ``frames_to_batch`` folds."""
    keys = ctx.__dict__.get("_high_input_tensors")
    if keys is None:
        keys = {i.key for i in ctx.g.inputs if (i.rank or 0) > ctx.t.max_rank}
        if keys:
            for op in ctx.g.ops:  # ops are in topological order
                if any(i is not None and i.key in keys for i in op.inputs):
                    keys |= {o.key for o in op.outputs}
        ctx.__dict__["_high_input_tensors"] = keys
    return t is not None and t.key in keys


def _lifted(ctx: _Context, t: Tensor) -> tuple[bool, set[str]]:
    """Whether ``t`` (above the target's rank) was made by data movement from a rank-<=4 tensor of
    an image model, and the op types around it."""
    lift, types = _lift(ctx, t)
    if lift is None or lift.type not in _LIFT_OPS or _from_high_input(ctx, t):
        return False, types
    return True, types


def _downstream(ctx: _Context, t: Tensor) -> tuple[bool, set[str]]:
    """Whether every path from ``t`` (above the target's rank) through data-movement ops comes back
    to the target's rank before any other op reads it; and the op types on the way."""
    types: set[str] = set()
    ok = True
    stack, seen = [t], set()
    while stack:
        cur = stack.pop()
        if cur.key in seen:
            continue
        seen.add(cur.key)
        users = ctx.consumers(cur)
        if not users:
            ok = False  # a rank-5+ model output
        for u in users:
            types.add(u.type)
            if u.type not in _LIFT_OPS or not u.outputs:
                ok = False
                continue
            for out in u.outputs:
                if (out.rank or 0) > ctx.t.max_rank:
                    stack.append(out)
    return ok, types


def _shuffle_chain_kind(ctx: _Context, t: Tensor) -> str | None:
    """"2d" / "3d" when ``t`` is inside a pixel-shuffle RESHAPE/TRANSPOSE chain."""
    cache = ctx.__dict__.setdefault("_shuffle_tensors", None)
    if cache is None:
        cache = {}
        for chain, kind, _ in _pixel_shuffle_chains(ctx.g):
            for op in chain:
                for out in op.outputs:
                    cache[out.key] = kind
        ctx.__dict__["_shuffle_tensors"] = cache
    return cache.get(t.key)


def _rank_fix_for(ctx: _Context, t: Tensor) -> str | None:
    """The pass that brings ``t`` to the target's rank: by what made it. A pixel-shuffle chain is
    its pass's; data movement lifted from a rank-<=4 tensor is ``high_rank_views_to_4d``
    (``[fixes.rank] views``), or ``repeat_interleave_to_4d`` when it broadcasts (``repeat``); a
    rank-5 clip and what is computed on it, the rank fixes by rank (``frames_to_batch``, …)."""
    rank = t.rank or 0
    kind = _shuffle_chain_kind(ctx, t)
    if kind == "2d" and "pixel_shuffle" in ctx.t.patterns:
        return ctx.t.patterns["pixel_shuffle"].fix
    if kind is None:
        lifted, types = _lifted(ctx, t)
        if lifted:
            types |= _downstream(ctx, t)[1]
            fix = ctx.t.fix_for("rank.repeat" if types & _BROADCAST_OPS else "rank.views")
            if fix:
                return fix
    return _rank_fix(ctx.t, rank)


def _check_rank(ctx: _Context) -> None:
    hard, soft = ctx.t.max_rank, ctx.t.preferred_rank
    for t in ctx.activations():
        rank = t.rank
        if rank is None or rank <= (soft if soft is not None else hard):
            continue
        severity = "error" if rank > hard else "warning"
        producer = ctx.producer(t)
        consumers = ctx.consumers(t)
        limit = hard if rank > hard else soft
        where = (f"made by {producer.ref}" if producer else "a model input") + \
                (f", used by {', '.join(_refs(consumers, 4))}" if consumers else ", a model output")
        ctx.add("rank", severity, ctx.op_at(t), t,
                f"rank-{rank} tensor '{t.short}' {t.shape_text()} (limit {limit}): {where}",
                fix=_rank_fix_for(ctx, t), details={
                    "rank": rank, "shape": list(t.shape or ()), "producer": producer.ref if producer else None,
                    "consumers": [op.ref for op in consumers]})


def _is_io(ctx: _Context, t: Tensor) -> bool:
    """A model input or output (where ``io_dtypes`` are also accepted)."""
    return t.key in ctx.g.boundary


def _check_dtypes(ctx: _Context) -> None:
    by_dtype: dict[str, list[Tensor]] = {}
    allowed = set(ctx.t.dtypes)
    io_allowed = allowed | set(ctx.t.io_dtypes)
    for t in ctx.activations():
        if t.dtype in ("unknown", "str"):
            continue
        if _is_io(ctx, t):
            bad = t.dtype not in io_allowed or (t.dtype in ctx.t.warn_dtypes and t.dtype not in ctx.t.io_dtypes)
        else:
            bad = t.dtype not in allowed or t.dtype in ctx.t.warn_dtypes
        if bad:
            by_dtype.setdefault(t.dtype, []).append(t)
    for dtype, tensors in by_dtype.items():
        first = tensors[0]
        producers: dict[str, int] = {}
        for t in tensors:
            p = ctx.producer(t)
            kind = p.type if p else "model input"
            producers[kind] = producers.get(kind, 0) + 1
        made_by = ", ".join(f"{k} x{n}" for k, n in sorted(producers.items(), key=lambda kv: -kv[1])[:6])
        severity = "warning" if dtype in ctx.t.warn_dtypes else "error"
        fix = ctx.t.fix_for(f"dtype.{dtype}")
        ctx.add("dtype", severity, ctx.op_at(first), first,
                f"{len(tensors)} {dtype} activation tensor(s) (accepted: {', '.join(ctx.t.dtypes)}); made by {made_by}",
                fix=fix, advice=ctx.t.advice_for(f"dtype.{dtype}"),
                details={"dtype": dtype, "count": len(tensors), "tensors": [t.name for t in tensors[:50]],
                         "producers": producers})


def _check_shape_limits(ctx: _Context, covered: set[int]) -> None:
    t_ = ctx.t
    groups: dict[str, list[Tensor]] = {"max-dim": [], "batch": [], "nonunit-dims": []}
    for t in ctx.activations():
        producer = ctx.producer(t)
        if producer is not None and id(producer) in covered and t.key not in ctx.g.boundary:
            continue  # inside a pattern already reported (e.g. a pixel-shuffle chain)
        dims = [d for d in (t.shape or ()) if d is not None]
        if t_.max_dim is not None and any(d > t_.max_dim for d in dims):
            groups["max-dim"].append(t)
        if t_.batch_one and t.rank == 4 and t.shape and t.shape[0] is not None and t.shape[0] > 1:
            groups["batch"].append(t)
        if t_.max_nonunit_dims is not None and sum(1 for d in dims if d > 1) > t_.max_nonunit_dims \
                and (t.rank or 0) <= t_.max_rank:  # higher ranks are already rank findings
            groups["nonunit-dims"].append(t)
    texts = {
        "max-dim": lambda t: f"dimension above {t_.max_dim}",
        "batch": lambda t: "batch > 1",
        "nonunit-dims": lambda t: f"more than {t_.max_nonunit_dims} dims larger than 1",
    }
    fixes = {"max-dim": None, "batch": None, "nonunit-dims": t_.fix_for("rank.5")}
    advice = {"max-dim": "tile the input or reduce the resolution", "batch": "run one image per inference",
              "nonunit-dims": "keep tensors at (1, H, W, C)"}
    for rule, tensors in groups.items():
        if not tensors:
            continue
        first = tensors[0]
        ctx.add(rule, "error", ctx.op_at(first), first,
                f"{len(tensors)} tensor(s) with {texts[rule](first)}, e.g. '{first.short}' {first.shape_text()}",
                fix=fixes[rule], advice=advice[rule],
                details={"count": len(tensors), "tensors": [f"{t.short} {t.shape_text()}" for t in tensors[:50]]})


# -- patterns -----------------------------------------------------------------------------------

def _check_patterns(ctx: _Context) -> set[int]:
    """Pattern findings; returns the ids of ops a pattern covers (not reported again op by op)."""
    covered: set[int] = set()
    rule = ctx.t.patterns.get("pixel_shuffle")
    for chain, kind, info in _pixel_shuffle_chains(ctx.g):
        if rule is None:
            continue
        covered |= {id(op) for op in chain}
        first, last = chain[0], chain[-1]
        ops = ", ".join(f"{op.type} #{op.index}" if not op.name else op.ref for op in chain)
        fix = rule.fix
        if kind == "3d":
            fix = ctx.t.fix_for("rank.6") or fix
        ctx.add("pixel-shuffle", rule.severity, first, first.inputs[0],
                f"{'3-D ' if kind == '3d' else ''}pixel shuffle x{info['r']} as {len(chain)} RESHAPE/TRANSPOSE ops "
                f"({ops}): {first.inputs[0].shape_text()} -> {last.outputs[0].shape_text()}",
                fix=fix, advice=rule.advice, why=rule.why, details={"ops": [op.ref for op in chain], **info})
    prelu = ctx.t.patterns.get("prelu_decomposed")
    if prelu is not None:
        for ops in _prelu_patterns(ctx.g):
            covered |= {id(op) for op in ops}
            ctx.add("prelu-decomposed", prelu.severity, ops[-1], ops[-1].outputs[0],
                    f"PReLU as {'/'.join(op.type for op in ops)} ({', '.join(op.ref for op in ops)})",
                    fix=prelu.fix, advice=prelu.advice, why=prelu.why)
    silu = ctx.t.patterns.get("silu")
    quantized = ctx.t.quantized or any(t.dtype in ("int8", "uint8", "int16") for t in ctx.activations())
    if silu is not None and quantized:  # advice about int8 accuracy: only where the model is or must be integer
        for op, gate in _silu_patterns(ctx.g):
            ctx.add("silu", silu.severity, op, op.outputs[0],
                    f"SiLU (x * sigmoid(x)): {op.ref}" + (f" with {gate.ref}" if gate is not op else ""),
                    fix=silu.fix, advice=silu.advice, why=silu.why)
    return covered


def _chains(graph: Graph) -> list[list[Op]]:
    """Maximal runs of RESHAPE/TRANSPOSE ops, each feeding only the next."""
    chains = []
    for op in graph.ops:
        if op.type not in _CHAIN_OPS or not op.inputs or op.inputs[0] is None:
            continue
        prev = graph.producers.get(op.inputs[0].key)
        if prev is not None and prev.type in _CHAIN_OPS and len(graph.consumers.get(prev.outputs[0].key, [])) == 1:
            continue  # not the start of a run
        chain = [op]
        while True:
            nxt = graph.consumers.get(chain[-1].outputs[0].key, []) if chain[-1].outputs else []
            if len(nxt) != 1 or nxt[0].type not in _CHAIN_OPS or chain[-1].outputs[0].key in graph.boundary:
                break
            chain.append(nxt[0])
        chains.append(chain)
    return chains


def _pixel_shuffle_chains(graph: Graph) -> list[tuple[list[Op], str, dict[str, Any]]]:
    found = []
    for chain in _chains(graph):
        if len(chain) < 2 or not any(op.type in _TRANSPOSE for op in chain):
            continue
        src, dst = chain[0].inputs[0], chain[-1].outputs[0]
        if src is None or not src.shape or not dst.shape or None in src.shape or None in dst.shape:
            continue
        match = _depth_to_space(tuple(src.shape), tuple(dst.shape))  # type: ignore[arg-type]
        if match:
            found.append((chain, *match))
    return found


def _layouts(shape: tuple[int, ...]) -> list[tuple[str, dict[str, int]]]:
    if len(shape) == 4:
        n, a, b, c = shape
        return [("NHWC", {"n": n, "t": 1, "h": a, "w": b, "c": c}), ("NCHW", {"n": n, "t": 1, "c": a, "h": b, "w": c})]
    if len(shape) == 5:
        n, a, b, c, d = shape
        return [("NTHWC", {"n": n, "t": a, "h": b, "w": c, "c": d}), ("NCTHW", {"n": n, "c": a, "t": b, "h": c, "w": d})]
    return []


def _depth_to_space(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[str, dict[str, Any]] | None:
    """``("2d" | "3d", info)`` when ``src -> dst`` is a depth-to-space (pixel shuffle) by some r >= 2."""
    if prod(src) != prod(dst):
        return None
    for in_layout, a in _layouts(src):
        for out_layout, b in _layouts(dst):
            if a["n"] != b["n"] or b["h"] % a["h"] or b["w"] % a["w"]:
                continue
            r, rw = b["h"] // a["h"], b["w"] // a["w"]
            st = b["t"] // a["t"] if a["t"] and b["t"] % a["t"] == 0 else 0
            if r != rw or r < 1 or st < 1 or (r == 1 and st == 1):
                continue
            if a["c"] == b["c"] * r * r * st:
                kind = "3d" if st > 1 else "2d"
                return kind, {"r": r, "temporal": st, "in_layout": in_layout, "out_layout": out_layout}
    return None


def _prelu_patterns(graph: Graph) -> list[list[Op]]:
    """``relu(x) - w * relu(-x)`` (litert-torch's PReLU): SUB(RELU(x), MUL(w, relu(-x))), where
    relu(-x) is RELU(NEG(x)) or, after TFLite's fusions, MUL(x, -1) with a fused RELU."""
    out = []
    for sub in graph.ops:
        if sub.type not in ("SUB", "Sub") or len(sub.inputs) != 2 or None in sub.inputs:
            continue
        pos, mul = (graph.producers.get(t.key) for t in sub.inputs)  # type: ignore[union-attr]
        if pos is None or mul is None or pos.type not in ("RELU", "Relu") or mul.type not in ("MUL", "Mul") \
                or not pos.inputs or pos.inputs[0] is None:
            continue
        for t in mul.inputs:
            if t is None or t.const:
                continue
            found = _relu_of_negation(graph, t)
            if found is not None and found[1] == pos.inputs[0].key:
                out.append([*found[0], mul, pos, sub])
                break
    return out


def _relu_of_negation(graph: Graph, t: Tensor) -> tuple[list[Op], str] | None:
    """The ops computing ``relu(-x)`` into ``t`` and the key of ``x``, or None."""
    p = graph.producers.get(t.key)
    if p is None or not p.inputs or p.inputs[0] is None:
        return None
    if p.type in ("RELU", "Relu"):
        neg = graph.producers.get(p.inputs[0].key)
        if neg is not None and neg.type in ("NEG", "Neg") and neg.inputs and neg.inputs[0] is not None:
            return [neg, p], neg.inputs[0].key
        return None
    if p.type == "MUL" and p.attrs.get("fused_activation") == "RELU" and len(p.inputs) == 2:
        for x, k in ((p.inputs[0], p.inputs[1]), (p.inputs[1], p.inputs[0])):
            if x is not None and k is not None and k.const and k.value is not None \
                    and all(v == -1 for v in flat(k.value)):
                return [p], x.key
    return None


def _silu_patterns(graph: Graph) -> list[tuple[Op, Op]]:
    """SiLU as one op (ONNX ``Silu``-like customs, MIL ``silu``) or ``MUL(x, LOGISTIC(x))``."""
    out = []
    for op in graph.ops:
        if op.type.lower() in ("silu", "swish"):
            out.append((op, op))
            continue
        if op.type not in ("MUL", "Mul", "mul") or len(op.inputs) != 2 or None in op.inputs:
            continue
        a, b = op.inputs
        for x, s in ((a, b), (b, a)):
            gate = graph.producers.get(s.key)  # type: ignore[union-attr]
            if gate is not None and gate.type in ("LOGISTIC", "Sigmoid", "sigmoid") and gate.inputs \
                    and gate.inputs[0] is not None and gate.inputs[0].key == x.key:  # type: ignore[union-attr]
                out.append((op, gate))
                break
    return out


# -- layout -------------------------------------------------------------------------------------

def _is_layout_perm(perm: list[int] | None) -> bool:
    """A rotation by one of the trailing ``k >= 3`` axes: NCHW <-> NHWC and their 5-D cousins."""
    if not perm:
        return False
    n = len(perm)
    for k in range(1, n - 2):  # the batch axis stays first
        if perm[:k] != list(range(k)):
            continue
        tail = list(range(k, n))
        if perm[k:] in (tail[1:] + tail[:1], tail[-1:] + tail[:-1]):
            return True
    return False


def _check_layout(ctx: _Context, covered: set[int]) -> set[int]:
    """NHWC targets: NCHW boundaries and layout transposes. Returns the ops it reported or cleared."""
    g, t = ctx.g, ctx.t
    done: set[int] = set()
    if t.layout != "NHWC" or g.format == "coreml":
        return done
    fix = t.fix_for("TRANSPOSE") or "nhwc_boundary"
    why = t.why_for("layout")
    for op in g.ops:
        if op.type not in _TRANSPOSE or id(op) in covered or not op.inputs or op.inputs[0] is None:
            continue
        perm = op.attrs.get("perm")
        if not _is_layout_perm(perm) or _matmul_operand(ctx, op):
            continue
        src, dst = op.inputs[0], op.outputs[0]
        at_input = src.key in g.boundary or _through_quant(g, src)
        at_output = dst.key in g.boundary
        n = len(perm)
        to_channels_first, to_channels_last = [0, n - 1, *range(1, n - 1)], [0, *range(2, n), 1]
        if g.format == "onnx" and ((at_input and perm == to_channels_first) or (at_output and perm == to_channels_last)):
            done.add(id(op))  # ONNX ops are NCHW by definition: an NHWC interface needs this one transpose
            continue
        done.add(id(op))
        if g.format == "onnx":  # inside a channels-first graph: a data shuffle no pass of the boundary removes
            ctx.add("layout", "error", op, src, f"internal layout transpose {op.ref} (perm {perm}) on '{src.short}' "
                    f"{src.shape_text()}", fix=_fix(ctx, op, None), why=why,
                    advice=t.advice_for("Transpose.layout"), details={"perm": perm, "position": "internal"})
            continue
        if at_input:
            text = f"the model input '{src.short}' {src.shape_text()} is NCHW: {op.ref} (perm {perm}) turns it NHWC"
        elif at_output:
            text = f"the model output '{dst.short}' {dst.shape_text()} is NCHW: {op.ref} (perm {perm}) turns it back"
        else:
            text = f"internal layout transpose {op.ref} (perm {perm}) on '{src.short}' {src.shape_text()}"
        ctx.add("layout", "error", op, src, text, fix=fix, why=why,
                details={"perm": perm, "position": "input" if at_input else "output" if at_output else "internal"})
    if g.format == "onnx":
        return done  # an NCHW boundary is ONNX's own layout: the runtime's EP chooses the storage
    # A pixel-shuffle chain that ends in NCHW at the model output also leaves an NCHW boundary.
    for f in list(ctx.findings):
        if f.rule == "pixel-shuffle" and f.details.get("out_layout") in ("NCHW", "NCTHW"):
            last = f.details["ops"][-1]
            op = next((o for o in g.ops if o.ref == last), None)
            if op is not None and op.outputs and op.outputs[0].key in g.boundary:
                ctx.add("layout", "error", op, op.outputs[0],
                        f"the model output '{op.outputs[0].short}' {op.outputs[0].shape_text()} is NCHW (the pixel "
                        "shuffle chain ends in NCHW)", fix=fix, details={"position": "output"})
    return done


def _matmul_operand_transposes(ctx: _Context) -> set[int]:
    """ONNX: a Transpose that swaps the last two axes of a MatMul operand is the matmul's own
    transpose flag (ONNX MatMul has none; onnxruntime fuses it into FusedMatMul, QNN into
    MatMul(transpose_in0/1), Core ML into matmul(transpose_x/y)): no data moves, so it is noted,
    not flagged, where the profile runs MatMul at all."""
    g = ctx.g
    if g.format != "onnx" or "onnx" not in ctx.t.ops or ctx.t.ops["onnx"].status("MatMul")[0] != "allowed":
        return set()
    found = []
    for op in g.ops:
        perm = op.attrs.get("perm") if op.type in _TRANSPOSE else None
        if not perm or len(perm) < 2 or list(perm) != [*range(len(perm) - 2), len(perm) - 1, len(perm) - 2]:
            continue
        users = ctx.consumers(op.outputs[0]) if op.outputs else []
        if users and all(u.type == "MatMul" for u in users) and op.outputs[0].key not in g.boundary:
            found.append(op)
    if found:
        ctx.notes.append(f"{len(found)} Transpose(s) swap the last two axes of a MatMul operand ({', '.join(_refs(found, 3))}): "
                         "the matmul's transpose flag, fused by onnxruntime (FusedMatMul) and NPU compilers; not a layout change")
    return {id(op) for op in found}


def _through_quant(g: Graph, t: Tensor) -> bool:
    p = g.producers.get(t.key)
    return p is not None and p.type in _QUANT_OPS and bool(p.inputs) and p.inputs[0] is not None \
        and p.inputs[0].key in g.boundary


# -- op tables and constraints -----------------------------------------------------------------------

def _role(ctx: _Context, op: Op) -> str | None:
    """What an op is doing, where that decides the pass that removes it: ``repeat`` (a
    BROADCAST_TO / gather that copies data out, as nearest upsampling exports), ``const_index``
    (a gather of activations by constant indices: a fixed selection), ``high_rank`` (its input
    has more dims than the target takes), ``non_layout`` (a TRANSPOSE that is not NCHW<->NHWC), ``layout`` (one that is),
    ``scatter`` (a write into part of a tensor: a scatter, a SELECT by a constant mask, the PAD
    that feeds it and the transposes around a scatter), ``repeat_4d`` (a broadcast of a tensor
    lifted from rank <= 4 by reshapes: repeat_interleave / expand of a 4-D tensor)."""
    x = op.inputs[0] if op.inputs else None
    y = op.outputs[0] if op.outputs else None
    if x is None or y is None:
        return None
    if _is_scatter_part(ctx, op):
        return "scatter"
    if op.type in _BROADCAST_OPS and (x.rank or 0) > ctx.t.max_rank:
        if _lifted(ctx, x)[0] and _downstream(ctx, y)[0]:
            return "repeat_4d"
    if op.type in ("BROADCAST_TO", "Expand", "TILE", "Tile"):
        # expand-then-reshape into a spatial map (>= 3 dims above 1) is repeat_interleave-style
        # upsampling; into (N, C, 1, 1) it is a per-channel statistic (GroupNorm exports this way).
        for c in ctx.consumers(y):
            shape = c.outputs[0].shape if c.type in ("RESHAPE", "Reshape") and c.outputs else None
            if shape and sum(1 for d in shape if d is None or d > 1) >= 3:
                return "repeat"
    if op.type in ("GATHER", "GATHER_ND", "Gather", "GatherND", "GatherElements", "gather", "gather_nd"):
        if x.shape and y.shape and None not in x.shape and None not in y.shape and prod(y.shape) > prod(x.shape):  # type: ignore[arg-type]
            return "repeat"
        index = op.inputs[1] if len(op.inputs) > 1 and ctx.g.format != "coreml" else None
        if index is not None and index.const and not x.const:
            return "const_index"
    if x.rank is not None and x.rank > ctx.t.max_rank:
        return "high_rank"
    if op.type in _TRANSPOSE and op.attrs.get("perm") is not None:
        return "layout" if _is_layout_perm(op.attrs["perm"]) and not _matmul_operand(ctx, op) else "non_layout"
    return None


_MATMUL_OPS = {"BATCH_MATMUL", "MatMul", "matmul"}


def _matmul_operand(ctx: _Context, op: Op) -> bool:
    """An internal transpose read only by matmuls of two activations: attention's heads and keys
    moved into place (``q @ k.transpose(-2, -1)`` after a head split is perm [0, 2, 3, 1]), not a
    layout change, whatever its permutation looks like."""
    if not op.outputs or op.outputs[0].key in ctx.g.boundary or (op.inputs and op.inputs[0] is not None
                                                                 and op.inputs[0].key in ctx.g.boundary):
        return False
    stack, seen = [op.outputs[0]], set()
    while stack:  # through reshapes that merge the batch dims for the matmul
        t = stack.pop()
        if t.key in seen:
            continue
        seen.add(t.key)
        users = ctx.consumers(t)
        if not users:
            return False
        for u in users:
            if u.type in ("RESHAPE", "Reshape", "reshape", "SQUEEZE", "Squeeze", "EXPAND_DIMS", "Unsqueeze") and u.outputs:
                stack.append(u.outputs[0])
            elif u.type not in _MATMUL_OPS or any(i is None or i.const for i in u.inputs[:2]):
                return False  # a matmul by weights is a linear layer on tokens: a layout change
    return True


def _const_select(op: Op) -> bool:
    return op.type in _SELECT_OPS and bool(op.inputs) and op.inputs[0] is not None and op.inputs[0].const


def _is_scatter_part(ctx: _Context, op: Op) -> bool:
    """A write into part of a tensor as exporters spell it: ONNX ScatterND (with a Transpose on
    each side when the written dim is not the first), TFLite PAD of the new part + SELECT by a
    constant mask, a Where by a constant mask."""
    if op.type in _SCATTER_OPS or _const_select(op):
        return True
    users = ctx.consumers(op.outputs[0]) if op.outputs else []
    if op.type in _PAD_OPS:
        return any(_const_select(u) for u in users)
    if op.type in _TRANSPOSE:
        prod_ = ctx.producer(op.inputs[0]) if op.inputs and op.inputs[0] is not None else None
        return any(u.type in _SCATTER_OPS for u in users) or (prod_ is not None and prod_.type in _SCATTER_OPS)
    return False


def _fix(ctx: _Context, op: Op, fallback: str | None) -> str | None:
    """The pass for ``op``: the profile's ``<OP>.<role>`` entry (an empty entry: no pass can), else
    ``fallback``, else (for an op on too-high-rank tensors) the rank fix."""
    role = _role(ctx, op)
    if role is not None and f"{op.type}.{role}" in ctx.t.fixes:
        specific = ctx.t.fixes[f"{op.type}.{role}"]
        if specific == "@rank" and op.inputs and op.inputs[0] is not None:
            return _rank_fix_for(ctx, op.inputs[0])
        return specific or None
    if fallback is None and role == "high_rank" and op.inputs and op.inputs[0] is not None:
        return _rank_fix_for(ctx, op.inputs[0])
    return fallback


def _check_ops(ctx: _Context, covered: set[int]) -> None:
    rules = ctx.t.ops[ctx.g.format]
    for op in ctx.g.ops:
        if id(op) in covered or (ctx.g.format == "onnx" and op.type == "Constant"):
            continue
        status, rule = rules.status(op.type)
        if status == "allowed":
            continue
        if status == "unlisted":
            fix = _fix(ctx, op, ctx.t.fix_for(op.type))
            ctx.add("op-not-supported", "error", op, op.outputs[0] if op.outputs else None,
                    f"not in {ctx.t.name}'s {ctx.g.format} op table{_op_detail(op)}", fix=fix,
                    advice="" if fix else ctx.t.advice_for("op"))
            continue
        assert rule is not None
        if status == "forbidden":
            role = _role(ctx, op)
            ctx.add("op-forbidden", rule.severity, op, op.outputs[0] if op.outputs else None,
                    f"not run by {ctx.t.name}{_op_detail(op)}", fix=_fix(ctx, op, rule.fix),
                    advice=ctx.t.advice_for(f"{op.type}.{role}") or rule.advice,
                    why=rule.why or ctx.t.why_for("op-forbidden"))
            continue
        for message in _violations(ctx, op, rule):
            ctx.add("op-constraint", rule.severity, op, op.inputs[0] if op.inputs else None,
                    message, fix=_fix(ctx, op, rule.fix), advice=rule.advice,
                    why=rule.why or (f"{ctx.t.title}: {rule.note}." if rule.note else "") or ctx.t.why_for("op-constraint"))


def _op_detail(op: Op) -> str:
    if op.type in _TRANSPOSE and op.attrs.get("perm") is not None and op.inputs and op.inputs[0] is not None:
        return f" (perm {op.attrs['perm']} on {op.inputs[0].shape_text()})"
    if op.inputs and op.inputs[0] is not None and op.inputs[0].shape is not None:
        return f" (input {op.inputs[0].shape_text()})"
    return ""


def _spatial_axes(layout: str, rank: int) -> set[int]:
    if rank != 4:
        return set()
    return {1, 2} if layout == "NHWC" else {2, 3}


def _violations(ctx: _Context, op: Op, rule: OpRule) -> list[str]:
    """Messages for each constraint of ``rule`` that ``op`` breaks (constraints lint cannot check
    for lack of information, e.g. a non-constant permutation, are skipped)."""
    c, a = rule.constraints, op.attrs
    x = op.inputs[0] if op.inputs else None
    out: list[str] = []
    strides = a.get("strides")
    if "max_stride" in c and strides and max(strides) > c["max_stride"]:
        out.append(f"stride {'x'.join(map(str, strides))} exceeds {c['max_stride']}")
    if "strides_in" in c and strides and any(s not in c["strides_in"] for s in strides):
        out.append(f"stride {'x'.join(map(str, strides))} is not one of {c['strides_in']}")
    dil = a.get("dilations")
    if "max_dilation" in c and dil and max(dil) > c["max_dilation"]:
        out.append(f"dilation {'x'.join(map(str, dil))} exceeds {c['max_dilation']}")
    kernel = a.get("kernel")
    if "max_kernel" in c and kernel and max(kernel) > c["max_kernel"]:
        out.append(f"kernel {'x'.join(map(str, kernel))} exceeds {c['max_kernel']}")
    if "kernel_rank" in c and a.get("kernel_rank") is not None and a["kernel_rank"] != c["kernel_rank"]:
        out.append(f"{a['kernel_rank']}-D kernel {'x'.join(map(str, kernel or ()))} (only {c['kernel_rank']}-D runs)")
    applies_resize = a.get("nearest", True)
    for key in ("half_pixel_centers", "align_corners"):
        if key in c and key in a and bool(a[key]) != bool(c[key]) and (applies_resize or op.type != "Resize"):
            out.append(f"{key}={a[key]} (must be {c[key]})")
    if c.get("not_align_and_half_pixel") and a.get("align_corners") and a.get("half_pixel_centers"):
        out.append("align_corners and half_pixel_centers both set")
    if "resize_factors" in c and x is not None and op.outputs:
        msg = _resize_factor_violation(x, op.outputs[0], c["resize_factors"], ctx.g.layout)
        if msg:
            out.append(msg)
    if "min_block_size" in c and a.get("block_size") is not None and a["block_size"] < c["min_block_size"]:
        out.append(f"block size {a['block_size']} (needs >= {c['min_block_size']})")
    if "mode" in c and a.get("mode") is not None and a["mode"] != c["mode"]:
        out.append(f"mode {a['mode']} (runs as {c['mode']})")
    rank = x.rank if x is not None else None
    if "min_input_rank" in c and rank is not None and rank < c["min_input_rank"]:
        out.append(f"rank-{rank} input (needs rank >= {c['min_input_rank']})")
    if "max_input_rank" in c and rank is not None and rank > c["max_input_rank"]:
        out.append(f"rank-{rank} input {x.shape_text()} (needs rank <= {c['max_input_rank']})")  # type: ignore[union-attr]
    if c.get("hw_axes_only") and rank is not None and rank != 4 and (a.get("axes") is not None or a.get("paddings")):
        out.append(f"works on a rank-{rank} tensor {x.shape_text()} (only the H and W axes of a rank-4 tensor)")  # type: ignore[union-attr]
    elif c.get("hw_axes_only") and rank is not None:
        hw = _spatial_axes(ctx.g.layout, rank)
        axes = a.get("axes")
        if axes is not None:
            bad = sorted({ax % rank for ax in axes} - hw) if rank else []
            if bad or not hw:
                out.append(f"reduces axes {axes} of a rank-{rank} tensor (only H and W of a rank-4 NHWC/NCHW tensor)")
        pads = a.get("paddings")
        if pads is not None:
            bad = [i for i, p in enumerate(pads) if any(p) and i not in hw]
            if bad:
                out.append(f"pads axes {bad} (paddings {pads}; only H and W)")
    if c.get("unit_strides") and a.get("slice_strides") and any(s != 1 for s in a["slice_strides"]):
        out.append(f"slice strides {a['slice_strides']} (all must be 1)")
    masks = a.get("slice_masks") or {}
    set_masks = [m for m in c.get("no_slice_masks", []) if masks.get(m)]
    if set_masks:
        out.append(f"{', '.join(m + '_mask' for m in set_masks)} set")
    if x is not None and x.shape is not None and None not in x.shape:
        if "max_elements" in c and prod(x.shape) > c["max_elements"]:  # type: ignore[arg-type]
            out.append(f"{prod(x.shape)} elements (at most {c['max_elements']})")  # type: ignore[arg-type]
        if "max_nonunit_dims" in c and sum(1 for d in x.shape if d and d > 1) > c["max_nonunit_dims"]:
            out.append(f"input {x.shape_text()} has more than {c['max_nonunit_dims']} dims larger than 1")
    act = a.get("fused_activation")
    if c.get("no_fused_activation") and act not in _ACTIVATION_FREE:
        out.append(f"fused activation {act}")
    if "fused_activations" in c and act is not None and act not in c["fused_activations"]:
        out.append(f"fused activation {act} (accepted: {', '.join(c['fused_activations'])})")
    if "index_dtypes" in c and a.get("index_dtype") and a["index_dtype"] not in c["index_dtypes"]:
        out.append(f"{a['index_dtype']} indices (accepted: {', '.join(c['index_dtypes'])})")
    if c.get("beta_one") and a.get("beta") is not None and abs(a["beta"] - 1.0) > 1e-6:
        out.append(f"beta {a['beta']} (must be 1)")
    if c.get("bias_required") and a.get("has_bias") is False:
        out.append("no bias input")
    if "const_inputs" in c:
        bad = [i for i in c["const_inputs"] if i < len(op.inputs) and op.inputs[i] is not None
               and not op.inputs[i].const]  # type: ignore[union-attr]
        if bad:
            out.append(f"input(s) {bad} are not constant")
    if "perms" in c and a.get("perm") is not None and a["perm"] not in c["perms"]:
        out.append(f"permutation {a['perm']} is not one of {c['perms']}")
    return out


def _resize_factor_violation(x: Tensor, y: Tensor, factors: list[int], layout: str) -> str | None:
    if x.rank != 4 or y.rank != 4 or not x.shape or not y.shape or None in (*x.shape, *y.shape):
        return None
    (h, w), (oh, ow) = ((x.shape[1], x.shape[2]), (y.shape[1], y.shape[2])) if layout == "NHWC" else \
        ((x.shape[2], x.shape[3]), (y.shape[2], y.shape[3]))
    if (h, w) == (oh, ow) or (h, w) == (1, 1):
        return None
    if oh % h == 0 and ow % w == 0 and oh // h == ow // w and oh // h in factors:  # type: ignore[operator]
        return None
    return f"resizes {h}x{w} -> {oh}x{ow} (only equal x{'/x'.join(map(str, factors))} scaling)"


def lint_summary(path: str | os.PathLike, target: str = DEFAULT_TARGET) -> dict[str, Any] | None:
    """A short lint verdict for ``edgekit inspect``: ``{"target", "passed", "errors", "warnings",
    "by_rule", "fix_passes"}``, ``{"target", "error"}`` when the file cannot be linted (e.g. a
    Core ML model without coremltools), or None for formats lint does not read (``.ort``)."""
    from edgekit.lint.readers import LINT_FORMATS
    from edgekit.errors import EdgekitError

    p = Path(path)
    if p.suffix.lower() not in LINT_FORMATS:
        return None
    try:
        s = lint(p, target).summary
    except EdgekitError as e:
        return {"target": target, "error": str(e)}
    return {k: s[k] for k in ("target", "passed", "errors", "warnings", "by_rule", "fix_passes")}
