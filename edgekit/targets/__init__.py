"""Target profiles: what an accelerator accepts, as data.

One TOML file per accelerator in this folder (``generic-npu.toml``, ``edgetpu.toml``, ...)
lists the dtypes it computes in, the highest tensor rank, the layout, whether shapes must be
static, per model format the ops it runs (with constraints) and the ops it refuses (with the
reason and the pass that removes them), the vendor documents the rules come from, and
``pipeline``: the ordered rewrite passes ``edgekit convert --target NAME`` applies. Shared
texts (why a rule matters, which pass removes which op) live in ``_defaults.toml``; a profile
overrides them where its vendor says something more specific.

:mod:`edgekit.lint` checks a model against a profile; nothing here imports a
model library, so ``load_target`` is cheap and safe on a Raspberry Pi.

A profile file (keys are validated on load; a typo is an error, not a silent no-op)::

    name = "ethos-u"                  # the file stem
    title = "Arm Ethos-U55/U65 (Vela)"
    summary = "one line"
    formats = ["tflite"]              # model formats the accelerator's toolchain takes
    dtypes = ["int8", "uint8", "int16"]   # activation (non-constant tensor) dtypes
    io_dtypes = ["float32"]           # optional: also accepted on the model's inputs and outputs
    warn_dtypes = ["float32"]         # optional: dtypes that run, but off the fast path (warnings)
    max_rank = 4                      # higher-rank activations are errors
    preferred_rank = 4                # optional: ranks above it (up to max_rank) are warnings
    layout = "NHWC"                   # "NHWC", "NCHW" or "any"
    static_shapes = true
    quantized = true                  # integer-only accelerator (enables quantization advice)
    max_dim = 65535                   # optional: largest dimension
    batch_one = true                  # optional: batch must be 1
    max_nonunit_dims = 3              # optional: dims > 1 per tensor (Edge TPU)
    pipeline = ["fold_batchnorm", ...]    # pass ids in run order, checked on load against the pass
                                      # registry (edgekit.converters.passes.PASSES, docs/passes.md)
    [[sources]]                       # vendor documents (title, url, optional note)
    [why]                             # rule id -> why it matters here
    [fixes]                           # op or "dtype.<dtype>" / "rank.<n>" -> pass id
    [advice]                          # same keys -> what to do when no pass can
    [patterns.<name>]                 # decomposed-op patterns (pixel_shuffle, silu, prelu_decomposed)
    [tflite] / [onnx] / [coreml]      # per format:
    policy = "closed"                 #   "closed": only listed ops run; "open": all but the forbidden
    allowed = ["ADD", ...]            #   ops that run with no constraint
    [tflite.constraints.CONV_2D]      #   ops that run within limits (keys in CONSTRAINT_KEYS)
    [tflite.forbidden.CONV_3D]        #   ops that never run, with why / fix / advice / severity

Example::

    >>> t = load_target("ethos-u")
    >>> t.max_rank, t.layout, "CONV_3D" in t.ops["tflite"].forbidden
    (4, 'NHWC', True)
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, Mapping

from edgekit.errors import EdgekitError, UsageError

__all__ = [
    "TargetProfile", "FormatRules", "OpRule", "Source", "load_target", "list_targets",
    "CONSTRAINT_KEYS", "RULES", "SEVERITIES", "FORMATS", "DEFAULT_TARGET",
]

DEFAULT_TARGET = "generic-npu"
FORMATS = ("tflite", "onnx", "coreml")
SEVERITIES = ("error", "warning")

# Rule ids a finding can carry (see edgekit.lint for what each checks).
RULES = (
    "format", "rank", "dynamic-shape", "dtype", "max-dim", "batch", "nonunit-dims", "layout",
    "op-not-supported", "op-forbidden", "op-constraint", "pixel-shuffle", "prelu-decomposed", "silu",
)

# Constraint keys an op rule may carry; lint checks each (a key lint cannot check is a bug).
CONSTRAINT_KEYS: Mapping[str, str] = MappingProxyType({
    "max_stride": "every stride <= N",
    "strides_in": "every stride one of the list",
    "max_dilation": "every dilation <= N",
    "half_pixel_centers": "resize half_pixel_centers must equal the value",
    "align_corners": "resize align_corners must equal the value",
    "not_align_and_half_pixel": "resize: align_corners and half_pixel_centers not both set",
    "resize_factors": "resize: equal integer H/W factor from the list (or unchanged size)",
    "min_block_size": "DEPTH_TO_SPACE / SPACE_TO_DEPTH block size >= N",
    "min_input_rank": "rank of input 0 >= N",
    "max_input_rank": "rank of input 0 <= N",
    "hw_axes_only": "reduce / pad only over the H and W axes of an NHWC rank-4 tensor",
    "unit_strides": "STRIDED_SLICE strides all 1",
    "no_slice_masks": "STRIDED_SLICE masks named in the list (ellipsis, new_axis, shrink_axis) are 0",
    "max_elements": "input 0 has at most N elements",
    "max_nonunit_dims": "input 0 has at most N dims > 1",
    "no_fused_activation": "no fused activation function",
    "fused_activations": "fused activation one of the list",
    "index_dtypes": "gather indices dtype one of the list",
    "beta_one": "SOFTMAX beta == 1",
    "mode": "ONNX DepthToSpace mode equals the value",
    "bias_required": "convolution has a bias input",
    "max_kernel": "every kernel (filter) size <= N",
    "kernel_rank": "convolution / pooling has exactly N spatial kernel dims",
    "const_inputs": "these input positions are constants",
    "perms": "TRANSPOSE permutation one of the list",
})

_TOP_KEYS = {
    "name", "title", "summary", "formats", "dtypes", "io_dtypes", "warn_dtypes", "max_rank", "preferred_rank", "layout", "static_shapes",
    "quantized", "max_dim", "batch_one", "max_nonunit_dims", "pipeline", "sources", "why", "fixes", "advice",
    "patterns",
    *FORMATS,
}
_RULE_META = {"why", "fix", "advice", "severity", "note"}
_FORMAT_KEYS = {"policy", "allowed", "constraints", "forbidden"}
_PATTERNS = ("pixel_shuffle", "prelu_decomposed", "silu")


@dataclass(frozen=True)
class Source:
    """A document a profile's rules come from."""

    title: str
    url: str
    note: str = ""


@dataclass(frozen=True)
class OpRule:
    """What a profile says about one op (or pattern): its constraints, and if it is broken or
    refused, why that matters on the accelerator, the pass that fixes it (``fix``, a pass id)
    or ``advice`` when no pass can, and how bad it is (``severity``)."""

    op: str
    constraints: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""
    fix: str | None = None
    advice: str = ""
    severity: str = "error"
    note: str = ""


@dataclass(frozen=True)
class FormatRules:
    """The op table of one model format: ``policy`` ``"closed"`` (only ``allowed`` and
    ``constraints`` ops run) or ``"open"`` (everything but ``forbidden`` runs)."""

    format: str
    policy: str
    allowed: frozenset[str]
    constraints: Mapping[str, OpRule]
    forbidden: Mapping[str, OpRule]

    def status(self, op: str) -> tuple[str, OpRule | None]:
        """``("forbidden", rule)``, ``("constrained", rule)``, ``("allowed", None)`` or
        ``("unlisted", None)`` (an op a closed table does not run)."""
        if op in self.forbidden:
            return "forbidden", self.forbidden[op]
        if op in self.constraints:
            return "constrained", self.constraints[op]
        if op in self.allowed or self.policy == "open":
            return "allowed", None
        return "unlisted", None


@dataclass(frozen=True)
class TargetProfile:
    """An accelerator's rules (see the module docstring for the file format)."""

    name: str
    title: str
    summary: str
    sources: tuple[Source, ...]
    formats: tuple[str, ...]
    dtypes: tuple[str, ...]
    max_rank: int
    layout: str
    static_shapes: bool
    pipeline: tuple[str, ...]
    ops: Mapping[str, FormatRules]
    why: Mapping[str, str]
    fixes: Mapping[str, str]
    advice: Mapping[str, str]
    patterns: Mapping[str, OpRule]
    preferred_rank: int | None = None
    io_dtypes: tuple[str, ...] = ()
    warn_dtypes: tuple[str, ...] = ()
    quantized: bool = False
    max_dim: int | None = None
    batch_one: bool = False
    max_nonunit_dims: int | None = None

    def why_for(self, rule: str) -> str:
        """Why breaking ``rule`` matters on this accelerator (profile text, else the shared default)."""
        return self.why.get(rule, "")

    def fix_for(self, key: str) -> str | None:
        """The pass id that removes ``key`` (an op name, ``dtype.<name>`` or ``rank.<n>``), or None."""
        return self.fixes.get(key)

    def advice_for(self, key: str) -> str:
        """What to do about ``key`` when no pass fixes it ("" when the profile says nothing)."""
        return self.advice.get(key, "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``edgekit lint --list-targets --json``)."""
        return {
            "name": self.name, "title": self.title, "summary": self.summary, "formats": list(self.formats),
            "dtypes": list(self.dtypes), "io_dtypes": list(self.io_dtypes), "warn_dtypes": list(self.warn_dtypes),
            "max_rank": self.max_rank, "preferred_rank": self.preferred_rank,
            "layout": self.layout, "static_shapes": self.static_shapes, "quantized": self.quantized,
            "max_dim": self.max_dim, "batch_one": self.batch_one, "max_nonunit_dims": self.max_nonunit_dims,
            "pipeline": list(self.pipeline),
            "sources": [{"title": s.title, "url": s.url, **({"note": s.note} if s.note else {})} for s in self.sources],
            "ops": {fmt: {"policy": r.policy, "allowed": sorted(r.allowed), "constrained": sorted(r.constraints),
                          "forbidden": sorted(r.forbidden)} for fmt, r in self.ops.items()},
        }


class ProfileError(EdgekitError):
    """A target profile file that does not follow the schema (a bug in edgekit's data)."""


def list_targets() -> list[str]:
    """Names of the shipped target profiles, sorted."""
    return sorted(p.name[: -len(".toml")] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".toml") and not p.name.startswith("_"))


def load_target(name: str) -> TargetProfile:
    """The profile called ``name`` (e.g. ``"generic-npu"``); a :class:`~edgekit.errors.UsageError`
    naming the known targets when there is none."""
    if name not in list_targets():
        raise UsageError(f"unknown target '{name}'", hint=f"known targets: {', '.join(list_targets())}")
    return _load(name)


@functools.lru_cache(maxsize=None)
def _load(name: str) -> TargetProfile:
    data = _read(f"{name}.toml")
    defaults = _defaults()
    where = f"edgekit/targets/{name}.toml"
    _check_keys(data, _TOP_KEYS, where)
    if data.get("name") != name:
        raise ProfileError(f"name = {data.get('name')!r} does not match the file name", where=where)
    for key in ("title", "summary", "formats", "dtypes", "max_rank", "layout", "static_shapes", "pipeline", "sources"):
        if key not in data:
            raise ProfileError(f"missing required key '{key}'", where=where)
    formats = tuple(data["formats"])
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ProfileError(f"unknown format(s) {bad}", where=where)
    if data["layout"] not in ("NHWC", "NCHW", "any"):
        raise ProfileError(f"layout must be NHWC, NCHW or any, not {data['layout']!r}", where=where)
    sources = tuple(Source(s["title"], s.get("url", ""), s.get("note", "")) for s in data["sources"])
    if not sources:
        raise ProfileError("a profile cites at least one source", where=where)
    pipeline = tuple(data["pipeline"])
    _check_pipeline(name, pipeline, where)

    why = {**defaults.get("why", {}), **data.get("why", {})}
    fixes = {**_flatten(defaults.get("fixes", {})), **_flatten(data.get("fixes", {}))}
    advice = {**_flatten(defaults.get("advice", {})), **_flatten(data.get("advice", {}))}
    ops: dict[str, FormatRules] = {}
    for fmt in formats:
        section = data.get(fmt, {"policy": "open"})
        _check_keys(section, _FORMAT_KEYS, f"{where} [{fmt}]")
        policy = section.get("policy", "open")
        if policy not in ("open", "closed"):
            raise ProfileError(f"[{fmt}] policy must be 'open' or 'closed'", where=where)
        constraints = {op: _op_rule(op, spec, fixes, f"{where} [{fmt}.constraints.{op}]", constrained=True)
                       for op, spec in section.get("constraints", {}).items()}
        forbidden = {op: _op_rule(op, spec, fixes, f"{where} [{fmt}.forbidden.{op}]", constrained=False)
                     for op, spec in section.get("forbidden", {}).items()}
        overlap = set(forbidden) & (set(constraints) | set(section.get("allowed", [])))
        if overlap:
            raise ProfileError(f"[{fmt}] ops both forbidden and allowed: {sorted(overlap)}", where=where)
        ops[fmt] = FormatRules(fmt, policy, frozenset(section.get("allowed", [])), MappingProxyType(constraints),
                               MappingProxyType(forbidden))
    patterns = {}
    for pname, spec in data.get("patterns", {}).items():
        if pname not in _PATTERNS:
            raise ProfileError(f"unknown pattern '{pname}' (known: {', '.join(_PATTERNS)})", where=where)
        patterns[pname] = _op_rule(pname, spec, fixes, f"{where} [patterns.{pname}]", constrained=False)
    return TargetProfile(
        name=name, title=data["title"], summary=data["summary"], sources=sources, formats=formats,
        dtypes=tuple(data["dtypes"]), max_rank=int(data["max_rank"]), layout=data["layout"],
        static_shapes=bool(data["static_shapes"]), pipeline=pipeline,
        ops=MappingProxyType(ops), why=MappingProxyType(why), fixes=MappingProxyType(fixes), advice=MappingProxyType(advice),
        patterns=MappingProxyType(patterns), preferred_rank=data.get("preferred_rank"),
        io_dtypes=tuple(data.get("io_dtypes", ())), warn_dtypes=tuple(data.get("warn_dtypes", ())),
        quantized=bool(data.get("quantized", False)), max_dim=data.get("max_dim"),
        batch_one=bool(data.get("batch_one", False)), max_nonunit_dims=data.get("max_nonunit_dims"),
    )


def _check_pipeline(name: str, pipeline: tuple[str, ...], where: str) -> None:
    """A profile's pipeline follows the pass registry: known ids, each once, stages in the order
    they run, every pass after the ones its spec says must come first; and only exact passes
    (approximate ones are opt-in, with --passes). The registry is plain data: no model library."""
    from edgekit.converters.passes import PASSES, pipeline_problem

    if not all(isinstance(p, str) for p in pipeline):
        raise ProfileError("pipeline must be a list of pass ids", where=where)
    problem = pipeline_problem(pipeline)
    approx = [] if problem else [p for p in pipeline if not PASSES[p].exact]
    if approx:
        problem = f"pipeline includes the approximate pass(es) {', '.join(approx)}; default pipelines are exact"
    if problem:
        raise ProfileError(problem, where=name, hint=f"fix the pipeline in {where}")


def _op_rule(op: str, spec: Any, fixes: Mapping[str, str], where: str, constrained: bool) -> OpRule:
    if not isinstance(spec, dict):
        raise ProfileError("expected a table", where=where)
    keys = set(spec) - _RULE_META
    unknown = keys - set(CONSTRAINT_KEYS) if constrained else keys
    if unknown:
        raise ProfileError(f"unknown key(s) {sorted(unknown)}", where=where)
    if constrained and not keys:
        raise ProfileError("a constrained op names at least one constraint (else list it under allowed)", where=where)
    severity = spec.get("severity", "error")
    if severity not in SEVERITIES:
        raise ProfileError(f"severity must be one of {SEVERITIES}", where=where)
    fix = spec.get("fix", None if constrained else fixes.get(op))
    if not constrained and not fix and not spec.get("advice"):
        raise ProfileError("a refused op names the pass that removes it (fix) or advice", where=where)
    return OpRule(op=op, constraints=MappingProxyType({k: spec[k] for k in keys}), why=spec.get("why", ""),
                  fix=fix or None, advice=spec.get("advice", ""), severity=severity, note=spec.get("note", ""))


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ProfileError(f"unknown key(s) {sorted(unknown)}", where=where)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"dtype": {"int64": "p"}}`` -> ``{"dtype.int64": "p"}``."""
    out: dict[str, str] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


@functools.lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    data = _read("_defaults.toml")
    _check_keys(data, {"why", "fixes", "advice"}, "edgekit/targets/_defaults.toml")
    return data


def _read(filename: str) -> dict[str, Any]:
    try:
        return tomllib.loads(resources.files(__name__).joinpath(filename).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"invalid TOML: {e}", where=f"edgekit/targets/{filename}") from None
