"""The ONNX importer judged by ONNX's own backend node test cases, and the README's numbers.

ONNX ships a test case for every op and attribute variant it specifies
(``onnx.backend.test.case.node``: a model, its inputs and the outputs ONNX's reference computes).
:func:`results` runs every case whose ops are all in the importer's table through
:func:`~edgekit.converters.onnx_import.import_onnx` — graph inputs read only as shape parameters
(:data:`PARAM_SLOTS`) become initializers, as exports write them, and the other inputs' shapes
come from the data set — and sorts it into one of four outcomes:

``passed``
    every output equals the expected one: integer and bool outputs exactly, float outputs within
    the imported module's own measured float32 bound (its float32 run against its ``.double()``
    run, ``FACTOR`` × that error plus the output's rounding — :class:`edgekit.numerics.Bound`).
``refused``
    the importer refused the case cleanly: a :class:`~edgekit.errors.ConversionError` raised by a
    converter on purpose (a ``NodeError``), one line naming the node and the attribute
    (``name=value``) or input (``'name'``) it does not implement.
``wrong`` / ``error``
    a wrong result, or a failure that is not a clean refusal (a converter crashing, the module
    failing to run). Both are bugs; the test suite fails on them.

Cases outside what the importer claims are listed in :data:`OUT_OF_SCOPE` (by name, with the
reason) or caught by :func:`scope_reason`'s rules (input and output types), and not run.

``python -m edgekit.converters.onnx_import.coverage`` prints the counts;
``--write-readme`` rewrites them in README.md between the ``onnx-coverage`` marker comments,
``--check`` exits 1 when the README's numbers differ from a fresh run. ``docs/onnx_import.md``
describes the rules and what the cases found.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["Case", "Result", "OUT_OF_SCOPE", "cases", "scope_reason", "run_case", "results", "counts",
           "readme_paragraph", "update_readme", "main"]

# ONNX element types the importer claims: float32, the integer types and bool.
# (uint16/32/64 are refused at import: PyTorch holds them but has no CPU kernels for most ops.)
CLAIMED_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                  12: "uint32", 13: "uint64"}

OUT_OF_SCOPE: dict[str, str] = {
    # filled below by reason; one place for every case that is skipped by name
}


def _skip(reason: str, *names: str) -> None:
    for n in names:
        OUT_OF_SCOPE[n] = reason


_skip("training mode (the importer builds inference graphs: Dropout is the identity, BatchNormalization uses the "
      "running statistics)",
      "test_dropout_default_mask", "test_dropout_default_mask_ratio", "test_training_dropout",
      "test_training_dropout_default", "test_training_dropout_default_mask", "test_training_dropout_mask",
      "test_training_dropout_zero_ratio", "test_training_dropout_zero_ratio_mask",
      "test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode")

# Inputs ONNX's cases feed at run time that exports write as constants (initializers or Constant
# nodes): a Resize's scales, a Reshape's shape, a reduction's axes, ... The importer needs them
# constant (TFLite and CoreML need static shapes), so the harness turns such a graph input into an
# initializer holding the data set's value when every consumer reads it in one of these slots.
PARAM_SLOTS: dict[str, set[int]] = {
    **{r: {1} for r in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                        "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
    "Resize": {1, 2, 3}, "Upsample": {1}, "Pad": {1, 2, 3}, "Reshape": {1}, "Slice": {1, 2, 3, 4},
    "Unsqueeze": {1}, "Squeeze": {1}, "Split": {1}, "Range": {0, 1, 2}, "ConstantOfShape": {0}, "Tile": {1},
    "Expand": {1}, "CumSum": {1},
}

# Cases whose inputs and expected outputs ONNX typed by hand, rounded to a few decimals, the
# outputs computed from the unrounded inputs. For a case of averages (1-Lipschitz in the largest
# input change) the bound adds half a unit of the last decimal for the inputs' rounding and half a
# unit for the outputs'. ONNX's ReferenceEvaluator and ONNX Runtime compute what the importer does
# on the rounded inputs (0.2840444 where 0.2841 is typed).
TYPED_DECIMALS: dict[str, int] = {
    "test_averagepool_2d_ceil_last_window_starts_on_pad": 4,
}

MARK_BEGIN = "<!-- onnx-coverage:begin (python -m edgekit.converters.onnx_import.coverage --write-readme) -->"
MARK_END = "<!-- onnx-coverage:end -->"


@dataclass
class Case:
    name: str
    model: Any  # onnx.ModelProto
    data_sets: list  # [(inputs, outputs)]
    ops: tuple[str, ...]


@dataclass
class Result:
    name: str
    status: str  # passed | refused | wrong | error
    detail: str = ""
    errors: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def _all_cases() -> tuple:
    """Every ONNX backend node case whose ops are all in the importer's table (generated by
    ``onnx.backend.test.case.node.collect_testcases``, which computes the expected outputs)."""
    import numpy as np
    from onnx.backend.test.case.node import collect_testcases

    from edgekit.converters.onnx_import import SUPPORTED_OPS

    supported = set(SUPPORTED_OPS)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        found = collect_testcases(None)
    out = []
    for tc in found:
        if tc.kind != "node" or tc.model is None:
            continue
        ops = tuple(sorted({n.op_type for n in tc.model.graph.node if n.domain in ("", "ai.onnx")}))
        if any(n.domain not in ("", "ai.onnx") for n in tc.model.graph.node) or not set(ops) <= supported:
            continue
        out.append(Case(tc.name, tc.model, list(tc.data_sets or []), ops))
    return tuple(sorted(out, key=lambda c: c.name))


def cases() -> list[Case]:
    return list(_all_cases())


def scope_reason(case: Case) -> str | None:
    """Why ``case`` is outside what the importer claims, or ``None``."""
    if case.name in OUT_OF_SCOPE:
        return OUT_OF_SCOPE[case.name]
    g = case.model.graph
    for vi in list(g.input) + list(g.output):
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value")
            return f"{kind} types (the importer takes and returns tensors)"
    for vi in list(g.input) + list(g.output):
        elem = vi.type.tensor_type.elem_type
        if elem not in CLAIMED_DTYPES:
            import onnx

            name = onnx.TensorProto.DataType.Name(elem).lower()
            return f"{name} tensors (the importer claims float32, the integer types and bool)"
    opset = next((o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 7:
        return f"opset {opset} (the importer reads opset 7 and newer)"
    if not case.data_sets:
        return "no test data"
    for inputs, outputs in case.data_sets:
        if any(0 in np_shape(a) for a in list(inputs) + list(outputs)):
            return "zero-size tensors (TFLite and CoreML have none; the importer needs every dim positive)"
    return None


def np_shape(a: Any) -> tuple:
    return tuple(getattr(a, "shape", ()))


def _param_inputs(model: Any) -> set[str]:
    """Graph inputs read only in :data:`PARAM_SLOTS` (exports write them as constants)."""
    slots: dict[str, list[bool]] = {}
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name:
                slots.setdefault(name, []).append(i in PARAM_SLOTS.get(n.op_type, ()))
    return {vi.name for vi in model.graph.input if slots.get(vi.name) and all(slots[vi.name])}


def prepare(case: Case, k: int) -> tuple[Any, list, dict]:
    """Data set ``k`` of ``case``: (the model with its parameter inputs as initializers, the
    remaining inputs' arrays, ``input_shapes`` for them)."""
    import numpy as np
    from onnx import numpy_helper

    inputs, _ = case.data_sets[k]
    model = case.model
    params = _param_inputs(model)
    names = [vi.name for vi in model.graph.input if vi.name not in {i.name for i in model.graph.initializer}]
    by_name = dict(zip(names, inputs))
    if params:
        model = copy.deepcopy(model)
        keep = [vi for vi in model.graph.input if vi.name not in params]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        model.graph.initializer.extend(numpy_helper.from_array(np.asarray(by_name[p]), p) for p in sorted(params))
    feeds = [np.asarray(by_name[n]) for n in names if n not in params]
    shapes = {n: tuple(np.asarray(by_name[n]).shape) for n in names if n not in params}
    return model, feeds, shapes


def _outputs(y: Any) -> list:
    return list(y) if isinstance(y, (tuple, list)) else [y]


def _refusal_problem(e: BaseException) -> str | None:
    """``None`` when ``e`` is a clean refusal: an EdgekitError from a converter's NodeError,
    naming the node, in one line."""
    from edgekit.converters.onnx_import.builder import NodeError
    from edgekit.errors import ConversionError

    msg = str(e)
    if not isinstance(e, ConversionError):
        return f"{type(e).__name__}, not a ConversionError: {msg}"
    if re.search(r"\[import\] input '[^']+' is uint(16|32|64),", msg) and "\n" not in msg.strip():
        return None  # the builder's refusal of an input type, naming the input
    if not isinstance(e.__cause__, NodeError) and " op not supported" not in msg:
        return f"not a deliberate refusal: {msg}"
    if not re.search(r"node \d+ .*\(ai\.onnx::\w+\)", msg):
        return f"the message does not name the node: {msg}"
    what = msg.split("::", 1)[-1]
    if not re.search(r"\w+=|'[^']+'", what):
        return f"the message names no attribute (name=value) or input ('name'): {msg}"
    if "\n" in msg.strip():
        return f"the message is not one line: {msg}"
    return None


def run_case(case: Case) -> Result:
    """Import ``case``'s model and compare every data set's outputs with ONNX's expected ones."""
    import numpy as np
    import torch

    from edgekit.converters.onnx_import import import_onnx
    from edgekit.numerics import Bound

    imported: dict = {}
    for k, (_, expected) in enumerate(case.data_sets):
        model, feeds, shapes = prepare(case, k)
        key = model.SerializeToString() + repr(sorted(shapes.items())).encode()
        if key not in imported:
            try:
                imp = import_onnx(model, input_shapes=shapes)
            except Exception as e:  # noqa: BLE001 — sorted, not hidden: a non-clean refusal is an 'error'
                problem = _refusal_problem(e)
                if problem is None:
                    return Result(case.name, "refused", str(e).splitlines()[0])
                return Result(case.name, "error", problem)
            imported[key] = [imp, None]
        imp, m64 = imported[key]
        xs = [torch.from_numpy(np.array(a, copy=True)) for a in feeds]
        try:
            with torch.no_grad(), np.errstate(all="ignore"):
                got = [o.numpy() for o in _outputs(imp.module(*xs))]
        except Exception as e:  # noqa: BLE001
            return Result(case.name, "error", f"data set {k}: the module failed: {type(e).__name__}: {e}")
        got64 = None
        if any(g.dtype.kind == "f" for g in got):
            x64 = [x.double() if x.is_floating_point() else x for x in xs]
            try:
                if m64 is None:
                    m64 = imported[key][1] = copy.deepcopy(imp.module).double()
                with torch.no_grad():
                    got64 = [o.numpy() for o in _outputs(m64(*x64))]
            except Exception:  # noqa: BLE001
                got64 = None
        if len(got) != len(expected):
            return Result(case.name, "wrong", f"data set {k}: {len(got)} outputs, ONNX expects {len(expected)}")
        for i, (g, e) in enumerate(zip(got, expected)):
            e = np.asarray(e)
            what = f"data set {k} output {i}"
            if g.dtype != e.dtype:
                return Result(case.name, "wrong", f"{what}: dtype {g.dtype}, ONNX expects {e.dtype}")
            if g.shape != e.shape:
                return Result(case.name, "wrong", f"{what}: shape {list(g.shape)}, ONNX expects {list(e.shape)}")
            if g.dtype.kind != "f":
                bound = Bound.exact("integer/bool output")
            elif got64 is not None and got64[i].shape == g.shape:
                bound = Bound.measured(g, got64[i])
                if case.name in TYPED_DECIMALS:
                    unit = 10.0 ** -TYPED_DECIMALS[case.name]
                    bound = Bound(bound.atol + unit, f"{bound.how} + {unit:g} (inputs and expected outputs typed "
                                                     f"to {TYPED_DECIMALS[case.name]} decimals, half a unit each)")
            else:
                return Result(case.name, "error", f"{what}: the module has no float64 run to bound its float32 error")
            msg = bound.check(g, e, what)
            if msg is not None:
                return Result(case.name, "wrong", msg)
    return Result(case.name, "passed")


_RESULTS: dict[str, Result] = {}


def result(case: Case) -> Result:
    """:func:`run_case`, run once per process."""
    if case.name not in _RESULTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _RESULTS[case.name] = run_case(case)
    return _RESULTS[case.name]


def results() -> tuple[dict[str, Result], dict[str, str]]:
    """(results of the in-scope cases by name, reasons of the out-of-scope cases by name)."""
    res, out = {}, {}
    for c in cases():
        why = scope_reason(c)
        if why is not None:
            out[c.name] = why
        else:
            res[c.name] = result(c)
    return res, out


_CATEGORIES = (("other element types (float16/64, bfloat16, float8, 2- and 4-bit, string)",
                "tensors (the importer claims"), ("zero-size tensors", "zero-size"),
               ("training mode", "training mode"), ("opsets before 7", "(the importer reads opset 7"),
               ("sequence and optional types", "(the importer takes and returns tensors)"))


def category(reason: str) -> str:
    """The README's short name for an out-of-scope reason."""
    return next((name for name, key in _CATEGORIES if key in reason), "other")


def counts(res: dict[str, Result], out: dict[str, str]) -> dict[str, Any]:
    n: dict[str, Any] = {"cases": len(res) + len(out), "passed": 0, "refused": 0, "wrong": 0, "error": 0,
                         "out_of_scope": len(out)}
    for r in res.values():
        n[r.status] += 1
    by: dict[str, int] = {}
    for why in out.values():
        by[category(why)] = by.get(category(why), 0) + 1
    n["out_of_scope_by"] = dict(sorted(by.items(), key=lambda kv: (-kv[1], kv[0])))
    return n


def readme_paragraph(n: dict[str, Any]) -> str:
    import onnx

    bad = n["wrong"] + n["error"]
    tail = "" if not bad else f" {bad} are still wrong or crash."
    scope = ", ".join(f"{v} {k}" for k, v in n["out_of_scope_by"].items())
    return (f"Judged by ONNX {onnx.__version__}'s own backend node test cases ({n['cases']} whose ops are all in "
            f"the importer's table; shape inputs the cases feed at run time, such as a Resize's scales or a "
            f"reduction's axes, given as constants as exports write them): **{n['passed']} pass** (integer "
            f"outputs exact, float outputs within the imported graph's own measured float32 bound), "
            f"**{n['refused']} are refused** in one line naming the node and the attribute or input not "
            f"implemented, {n['out_of_scope']} are out of scope ({scope}).{tail}")


_NUM_RE = re.compile(r"^([ \t]*)" + re.escape(MARK_BEGIN) + r"\n.*?^[ \t]*" + re.escape(MARK_END), re.S | re.M)


def readme_path() -> Path:
    return Path(__file__).resolve().parents[2] / "README.md"


def update_readme(text: str, n: dict[str, int]) -> str:
    """``text`` with the paragraph between the markers rewritten for ``n`` (kept at the markers'
    indentation, so the paragraph may sit inside a list item)."""
    if len(_NUM_RE.findall(text)) != 1:
        raise ValueError(f"README.md should hold one {MARK_BEGIN!r} ... {MARK_END!r} pair")
    return _NUM_RE.sub(lambda m: f"{m.group(1)}{MARK_BEGIN}\n{m.group(1)}{readme_paragraph(n)}\n"
                                 f"{m.group(1)}{MARK_END}", text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgekit.converters.onnx_import.coverage",
                                description="Run ONNX's backend node cases through edgekit's ONNX importer.")
    p.add_argument("--write-readme", action="store_true", help="rewrite the numbers in README.md")
    p.add_argument("--check", action="store_true", help="exit 1 when README.md's numbers differ")
    p.add_argument("-v", "--verbose", action="store_true", help="list every refused, wrong and failing case")
    a = p.parse_args(argv)
    try:
        import onnx.backend.test.case.node  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"error: the coverage run needs onnx (with its backend test cases) and torch: {e} "
              "(pip install 'edgekit[convert]')", file=sys.stderr)
        return 1
    res, out = results()
    n = counts(res, out)
    for r in sorted(res.values(), key=lambda r: (r.status, r.name)):
        if r.status in ("wrong", "error") or (a.verbose and r.status == "refused"):
            print(f"{r.status:8s} {r.name}: {r.detail}")
    if a.verbose:
        for name, why in sorted(out.items()):
            print(f"{'skipped':8s} {name}: {why}")
    print(" ".join(f"{k}={v}" for k, v in n.items() if k != "out_of_scope_by"), n["out_of_scope_by"])
    path = readme_path()
    if a.write_readme or a.check:
        try:
            text = path.read_text()
            new = update_readme(text, n)
        except (OSError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
        if a.check and new != text:
            print(f"error: {path}: the ONNX coverage numbers are stale; run "
                  "python -m edgekit.converters.onnx_import.coverage --write-readme", file=sys.stderr)
            return 1
        if a.write_readme and new != text:
            path.write_text(new)
    return 1 if n["wrong"] + n["error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
