"""Target profiles: every shipped profile loads, is complete, names real ops and known passes,
and says what the issue and the vendor documents say for the rules that matter most."""

from __future__ import annotations

import inspect

import pytest

from edgekit.errors import UsageError
from edgekit.targets import CONSTRAINT_KEYS, FORMATS, ProfileError, list_targets, load_target

from edgekit.converters.passes import PASSES, pipeline_problem  # noqa: E402

EXPECTED = {"generic-npu", "edgetpu", "tflite-gpu", "nnapi", "qnn-htp", "ane", "ethos-u"}
# Every pass id a profile names must be registered (edgekit.converters.passes.PASSES). The order
# of a pipeline is checked against the registry's ``after`` constraints (tests/passes/test_pass_contract.py).
KNOWN_PASSES = set(PASSES)


def test_the_seven_profiles_ship():
    assert set(list_targets()) == EXPECTED  # _defaults.toml is shared data, not a target


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_is_complete(name):
    t = load_target(name)
    assert t.name == name and t.title and len(t.summary) > 20
    assert t.sources and all(s.title for s in t.sources)
    assert any(s.url.startswith("https://") for s in t.sources), "cite at least one vendor document by URL"
    assert t.formats and set(t.formats) <= set(FORMATS) and set(t.ops) == set(t.formats)
    assert t.dtypes and t.layout in ("NHWC", "NCHW", "any") and 3 <= t.max_rank <= 6
    assert t.static_shapes is True
    assert t.pipeline and len(set(t.pipeline)) == len(t.pipeline)
    assert set(t.pipeline) <= KNOWN_PASSES, set(t.pipeline) - KNOWN_PASSES
    assert all(PASSES[p].exact for p in t.pipeline), "default pipelines are exact"
    assert pipeline_problem(t.pipeline) is None
    if "nhwc_boundary" in t.pipeline:  # the last rewrite of the program; file-level passes follow export
        program_passes = [p for p in t.pipeline if PASSES[p].stage == "program"]
        assert program_passes[-1] == "nhwc_boundary"
    for key in ("rank", "dynamic-shape", "dtype"):
        assert t.why_for(key), f"{name}: why does rule {key} matter?"
    for fmt, rules in t.ops.items():
        for op, rule in {**rules.constraints, **rules.forbidden}.items():
            assert rule.fix or rule.advice or op in rules.constraints, (name, fmt, op)
            assert rule.fix is None or rule.fix in KNOWN_PASSES, (name, fmt, op, rule.fix)
            assert set(rule.constraints) <= set(CONSTRAINT_KEYS)
        if rules.policy == "closed":
            assert rules.allowed, f"{name} [{fmt}] is closed but allows nothing"
    for pattern in t.patterns.values():
        assert pattern.fix in KNOWN_PASSES or (pattern.fix is None and pattern.advice)
    for key, fix in t.fixes.items():
        assert fix in ("", "@rank") or fix in KNOWN_PASSES, (name, key, fix)


def _tflite_ops() -> set[str]:
    from ai_edge_litert import schema_py_generated as schema

    return {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")}


TFLITE_CUSTOM = {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_op_names_are_real_tflite_and_onnx_ops(name):
    t = load_target(name)
    builtins = _tflite_ops()
    if "tflite" in t.ops:
        r = t.ops["tflite"]
        names = set(r.allowed) | set(r.constraints) | set(r.forbidden)
        assert names - TFLITE_CUSTOM <= builtins, sorted(names - TFLITE_CUSTOM - builtins)
    if "onnx" in t.ops:
        defs = pytest.importorskip("onnx").defs
        r = t.ops["onnx"]
        names = set(r.allowed) | set(r.constraints) | set(r.forbidden)
        assert all(defs.has(op) for op in names), sorted(op for op in names if not defs.has(op))


def test_fix_table_keys_name_real_ops():
    """``[fixes]`` keys are ops (TFLite, ONNX or MIL), ``<op>.<role>``, ``dtype.*``, ``rank.*`` or ``shape.*``."""
    onnx_defs = pytest.importorskip("onnx").defs
    builtins = _tflite_ops()
    mil = {"gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis", "select", "tile"}
    roles = {"repeat", "repeat_4d", "scatter", "high_rank", "non_layout", "layout", "const_index"}
    for key in load_target("generic-npu").fixes:
        head, _, tail = key.partition(".")
        if head in ("dtype", "rank", "shape"):
            continue
        assert head in builtins or onnx_defs.has(head) or head in mil, key
        assert not tail or tail in roles, key


def test_every_constraint_key_is_checked_by_lint():
    from edgekit import lint

    source = inspect.getsource(lint._violations)
    missing = [k for k in CONSTRAINT_KEYS if f'"{k}"' not in source]
    assert not missing, f"constraint keys lint never reads: {missing}"


def test_generic_npu_says_what_the_issue_says():
    t = load_target("generic-npu")
    assert (t.max_rank, t.layout, t.static_shapes) == (4, "NHWC", True)
    tfl = t.ops["tflite"]
    for op in ("CONV_3D", "GATHER", "GATHER_ND", "SCATTER_ND", "BROADCAST_TO", "TRANSPOSE"):
        assert tfl.status(op)[0] == "forbidden", op
    assert tfl.status("CONV_3D")[1].fix == "conv3d_to_conv2d"
    assert tfl.status("DEPTH_TO_SPACE")[0] == "constrained"
    assert tfl.status("CONV_2D")[0] == "allowed"
    assert tfl.status("SOME_NEW_OP")[0] == "unlisted"  # closed table
    assert t.patterns["pixel_shuffle"].fix == "pixel_shuffle_to_depth_to_space"
    assert t.patterns["pixel_shuffle"].severity == "error"
    assert t.ops["onnx"].status("Conv")[1].constraints["kernel_rank"] == 2


def test_vendor_specific_rules():
    edgetpu, ethos, gpu, nnapi = (load_target(n) for n in ("edgetpu", "ethos-u", "tflite-gpu", "nnapi"))
    assert edgetpu.dtypes == ("int8", "uint8") and edgetpu.quantized and edgetpu.max_nonunit_dims == 3
    assert edgetpu.ops["tflite"].constraints["RESIZE_NEAREST_NEIGHBOR"].constraints == {"half_pixel_centers": False}
    for t in (edgetpu, ethos):
        status, rule = t.ops["tflite"].status("DEPTH_TO_SPACE")
        assert status == "forbidden" and rule.fix == "pixel_shuffle_to_transpose_conv"
        assert t.patterns["pixel_shuffle"].fix == "pixel_shuffle_to_transpose_conv"
    assert ethos.ops["tflite"].constraints["DEPTHWISE_CONV_2D"].constraints["max_stride"] == 3  # Vela 5.2: CONV_2D strides > 3 run with VALID padding
    assert ethos.max_dim == 65535 and ethos.batch_one
    assert gpu.ops["tflite"].status("TRANSPOSE")[0] == "allowed"
    assert gpu.patterns["pixel_shuffle"].severity == "warning"
    assert gpu.ops["tflite"].constraints["SLICE"].constraints == {"min_input_rank": 3, "max_input_rank": 4}
    assert nnapi.ops["tflite"].status("CONV_3D")[0] == "forbidden"
    assert load_target("qnn-htp").ops["tflite"].policy == "open"
    ane = load_target("ane")
    assert ane.formats == ("coreml",) and ane.preferred_rank == 4 and ane.max_rank == 5


def test_unknown_target_is_a_usage_error_naming_the_known_ones():
    with pytest.raises(UsageError, match="known targets: ane, edgetpu"):
        load_target("npu-9000")


def test_a_broken_profile_is_reported_not_ignored(monkeypatch):
    import edgekit.targets as targets

    good = targets._read("ethos-u.toml")
    cases = [
        ({**good, "max_rnak": 4}, r"unknown key\(s\) \['max_rnak'\]"),
        ({**good, "tflite": {**good["tflite"], "constraints": {"CONV_2D": {"max_strid": 3}}}}, "max_strid"),
        ({**good, "tflite": {**good["tflite"], "forbidden": {"CONV_3D": {"why": "no"}}}}, "fix"),  # CONV_3D has a default fix
        ({**good, "tflite": {**good["tflite"], "forbidden": {"MATRIX_DIAG": {"why": "no"}}}}, "names the pass"),
        ({**good, "layout": "NWHC"}, "layout"),
        ({**good, "sources": []}, "source"),
    ]
    # The CONV_3D case is valid (the shared defaults give its fix); the others must fail.
    for data, pattern in cases:
        monkeypatch.setattr(targets, "_read", lambda filename, data=data: data if filename == "ethos-u.toml"
                            else targets.tomllib.loads(targets.resources.files(targets.__name__)
                                                       .joinpath(filename).read_text()))
        targets._load.cache_clear()
        if pattern == "fix":
            assert load_target("ethos-u").ops["tflite"].forbidden["CONV_3D"].fix == "conv3d_to_conv2d"
        else:
            with pytest.raises(ProfileError, match=pattern):
                load_target("ethos-u")
    targets._load.cache_clear()
