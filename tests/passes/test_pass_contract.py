"""The contract every registered pass keeps, checked over the registry (``PASSES``), and the
ordering rules every pipeline keeps: the target profiles' (checked when they load) and explicit
``--passes`` lists (checked before any work)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import edgekit.converters.passes as registry
import edgekit.targets as targets
from edgekit.converters.passes import PASSES, STAGES, module_name, pipeline_problem, validate_selection
from edgekit.errors import UsageError
from edgekit.targets import FORMATS, ProfileError, list_targets, load_target

IDS = list(PASSES)
PROGRAM_IDS = [p for p in IDS if PASSES[p].stage == "program"]
TFLITE_IDS = [p for p in IDS if PASSES[p].stage == "tflite"]

# The marker a pass's docstring shows its rewrite with: a line starting "Before" and a later
# one starting "After", each a label ending in ":" (an aside in parentheses or after a comma may
# come first), e.g. "Before::", "    before:  x → HARD_SWISH → y", "After (frames in batch)::".
BEFORE = re.compile(r"^[ \t]*before\b(?:[ \t]*\([^)]*\))?[^:\n]*:", re.I | re.M)
AFTER = re.compile(r"^[ \t]*after\b(?:[ \t]*\([^)]*\))?[^:\n]*:", re.I | re.M)


@pytest.fixture(scope="module")
def linear_program() -> torch.export.ExportedProgram:
    """Linear + ReLU on a (1, 8) input: nothing any program pass rewrites (no conv, no 4-D
    interface, no int64, static shapes)."""
    torch.manual_seed(0)
    return torch.export.export(nn.Sequential(nn.Linear(8, 4), nn.ReLU()).eval(), (torch.zeros(1, 8),))


@pytest.fixture(scope="module")
def plain_tflite(tmp_path_factory) -> Path:
    """Conv + ReLU as litert-torch writes it: no HARD_SWISH, no nearest resize, no RELU_0_TO_1."""
    litert_torch = pytest.importorskip("litert_torch")
    path = tmp_path_factory.mktemp("contract") / "plain.tflite"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()).eval()
    litert_torch.convert(model, (torch.zeros(1, 3, 8, 8),)).export(str(path))
    return path


# -- each registered pass -----------------------------------------------------------------------


@pytest.mark.parametrize("pass_id", IDS)
def test_module_is_named_by_its_id_and_imports(pass_id):
    module = importlib.import_module(module_name(pass_id))
    assert module.__name__ == f"edgekit.converters.passes.{pass_id}"
    assert Path(module.__file__).name == f"{pass_id}.py"
    assert callable(module.check) and callable(module.rewrite)


def test_every_pass_file_is_registered():
    folder = Path(registry.__file__).parent
    files = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
    assert files == set(PASSES), (files - set(PASSES), set(PASSES) - files)


def test_docs_table_lists_every_pass_in_registry_order():
    """The unknown-pass error sends users to docs/passes.md's table: it must hold every id, in order."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "passes.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Every pass"):].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (program|tflite) \|", section, flags=re.M)
    assert rows == [(pid, spec.stage) for pid, spec in PASSES.items()]


@pytest.mark.parametrize("pass_id", IDS)
def test_docstring_shows_before_and_after(pass_id):
    source = Path(importlib.import_module(module_name(pass_id)).__file__).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    before = BEFORE.search(doc)
    assert before, f"{pass_id}: no 'Before' block in the docstring"
    assert AFTER.search(doc, before.end()), f"{pass_id}: no 'After' block after its 'Before' block"


@pytest.mark.parametrize("pass_id", PROGRAM_IDS)
def test_program_pass_check_gives_a_reason_where_it_does_not_apply(pass_id, linear_program):
    graph = str(linear_program.graph)
    reason = importlib.import_module(module_name(pass_id)).check(linear_program)
    assert isinstance(reason, str) and reason.strip(), reason
    assert str(linear_program.graph) == graph, "check must not change the program"


@pytest.mark.parametrize("pass_id", TFLITE_IDS)
def test_tflite_pass_check_gives_a_reason_where_it_does_not_apply(pass_id, plain_tflite):
    data = plain_tflite.read_bytes()
    reason = importlib.import_module(module_name(pass_id)).check(plain_tflite)
    assert isinstance(reason, str) and reason.strip(), reason
    assert plain_tflite.read_bytes() == data, "check must not change the file"


@pytest.mark.parametrize("pass_id", IDS)
def test_spec_is_complete_and_exactness_follows_the_id(pass_id):
    spec = PASSES[pass_id]
    assert spec.stage in STAGES
    assert spec.formats is None or (spec.formats and set(spec.formats) <= set(FORMATS))
    assert spec.exact is (not pass_id.startswith("approx_")), "approx_ passes, and only they, are not exact"
    for first, reason in spec.after.items():
        assert first in PASSES and first != pass_id, first
        assert isinstance(reason, str) and len(reason.split()) >= 4, f"{pass_id} after {first}: say why"
        assert STAGES.index(PASSES[first].stage) <= STAGES.index(spec.stage), \
            f"{pass_id} cannot run after {first}, a pass of a later stage"


def test_after_constraints_form_no_cycle():
    state: dict[str, str] = {}  # id -> "open" while on the path, "done" once finished

    def visit(p: str, path: tuple[str, ...]) -> None:
        if state.get(p) == "done":
            return
        assert state.get(p) != "open", "cycle: " + " → ".join((*path, p))
        state[p] = "open"
        for first in PASSES[p].after:
            visit(first, (*path, p))
        state[p] = "done"

    for p in PASSES:
        visit(p, ())


# -- every target pipeline ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_targets())
def test_target_pipeline_keeps_every_constraint(name):
    pipeline = load_target(name).pipeline
    assert pipeline_problem(pipeline) is None
    for later in pipeline:
        for first in PASSES[later].after:
            if first in pipeline:
                assert pipeline.index(first) < pipeline.index(later), (name, first, later)
    stages = [STAGES.index(PASSES[p].stage) for p in pipeline]
    assert stages == sorted(stages), f"{name}: program-stage passes first, then the tflite stage"
    assert all(PASSES[p].exact for p in pipeline)


# -- pipelines the registry refuses -------------------------------------------------------------


@pytest.fixture
def profile_with(monkeypatch):
    """``profile_with(name, pipeline)``: load_target(name) reads a copy of its TOML with that
    pipeline instead (the shipped profiles again after the test)."""
    real = targets._read

    def use(name: str, pipeline: list[str]):
        data = {**real(f"{name}.toml"), "pipeline": pipeline}
        monkeypatch.setattr(targets, "_read", lambda filename: data if filename == f"{name}.toml" else real(filename))
        targets._load.cache_clear()
        return lambda: load_target(name)

    yield use
    targets._load.cache_clear()


def test_misordered_profile_is_refused_naming_both_passes_and_the_reason(profile_with):
    pipeline = list(load_target("generic-npu").pipeline)
    pipeline[0], pipeline[1] = pipeline[1], pipeline[0]
    assert pipeline[:2] == ["collapse_reparam", "fold_batchnorm"]
    load = profile_with("generic-npu", pipeline)
    with pytest.raises(ProfileError) as e:
        load()
    msg = str(e.value)
    assert msg.startswith("generic-npu: pipeline runs 'collapse_reparam' before 'fold_batchnorm', which must come first (")
    assert PASSES["collapse_reparam"].after["fold_batchnorm"] in msg and "edgekit/targets/generic-npu.toml" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("pipeline,pattern", [
    (["fold_batchnorm", "hardswish_decompose", "mean_to_avgpool"],
     r"lists the tflite-stage pass 'hardswish_decompose' before the program-stage pass 'mean_to_avgpool'"),
    (["fold_batchnorm", "fold_batchnorm"], r"lists 'fold_batchnorm' twice"),
    (["fold_batchnorm", "fold_batchnrom"], r"unknown pass\(es\) fold_batchnrom"),
    (["fold_batchnorm", "approx_gelu_tanh"], r"approximate pass\(es\) approx_gelu_tanh"),
])
def test_profile_breaking_other_rules_is_refused(profile_with, pipeline, pattern):
    load = profile_with("ethos-u", pipeline)
    with pytest.raises(ProfileError, match=r"^ethos-u: .*" + pattern):
        load()


def test_explicit_passes_are_checked_before_any_work():
    with pytest.raises(UsageError) as e:
        validate_selection(None, ["static_shapes", "frames_to_batch", "groupnorm_decompose"])
    msg = str(e.value)
    assert msg.startswith("--passes: pipeline runs 'frames_to_batch' before 'groupnorm_decompose', which must come first (")
    assert e.value.exit_code == 2
    # a constraint binds only when both passes are in the list; approximate passes may be asked for
    assert validate_selection(None, ["collapse_reparam"]) == ["collapse_reparam"]
    assert validate_selection(None, ["approx_gelu_tanh", "prelu_restore"]) == ["approx_gelu_tanh", "prelu_restore"]
    assert validate_selection("generic-npu", skip=["fold_batchnorm"])[0] == "collapse_reparam"
