"""Tests parametrised over the whole zoo registry: registering a model is getting it tested.

Every model builds in eval mode, runs on its example inputs with an output of the right shape for
its task, has a complete card whose params/MACs are what the default model measures, refuses
``pretrained=True`` clearly when no weights ship, and round-trips weights through .pth and
.safetensors. Weight-loading errors are one-line ZooErrors.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from numeric import Bound, assert_close

from edgekit import zoo
from edgekit.errors import ZooError
from edgekit.zoo.registry import FAMILIES, WEIGHTS_DIR, count_macs, count_params, load_weights

NAMES = zoo.list_models()
TASKS = ("classify", "super-resolve", "decode-video")
CLASSIFIERS = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
VIDEO_SPATIAL_SCALE = 8  # video VAE decoders upsample latents 8x in height and width
SMALL = {"width_mult": 0.25, "num_classes": 10}  # a quick classifier to load weights into


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text, f"error message is not one line: {text!r}"
    return text


# ---------------------------------------------------------------------------------------------
# the registry itself
# ---------------------------------------------------------------------------------------------


def test_list_models_is_sorted_unique_and_has_the_classifiers():
    assert NAMES == sorted(set(NAMES))
    assert set(CLASSIFIERS) <= set(NAMES)
    by_task = [n for task in TASKS for n in zoo.list_models(task)]
    assert sorted(by_task) == NAMES, "a model has a task outside classify / super-resolve / decode-video"
    assert set(zoo.list_models("classify")) >= set(CLASSIFIERS)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ZooError) as e:
        zoo.create("mobilenet_v22")
    assert "did you mean" in one_line(e.value) and "mobilenet_v2" in str(e.value)
    with pytest.raises(ZooError) as e:
        zoo.card("no-such-model-anywhere")
    assert "edgekit zoo list" in one_line(e.value)
    with pytest.raises(ZooError):
        zoo.example_inputs("mobilenet_v4")


def test_bad_config_keyword_is_a_zoo_error():
    with pytest.raises(ZooError) as e:
        zoo.create("mobilenet_v2", depth_multiplier=2)
    assert "depth_multiplier" in one_line(e.value) and "mobilenet_v2" in str(e.value)


def test_pretrained_and_weights_together_are_refused(tmp_path):
    with pytest.raises(ZooError) as e:
        zoo.create("mobilenet_v2", pretrained=True, weights=tmp_path / "w.pth")
    assert "not both" in one_line(e.value)


# ---------------------------------------------------------------------------------------------
# per model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_builds_in_eval_mode(name, built_model):
    model = built_model(name).model
    assert isinstance(model, torch.nn.Module)
    training = [n for n, m in model.named_modules() if m.training]
    assert not training, f"{name}: modules left in training mode: {training[:5]}"


@pytest.mark.parametrize("name", NAMES)
def test_example_inputs_match_the_card_and_are_seeded(name, built_model):
    card = zoo.card(name)
    inputs = built_model(name).inputs
    assert isinstance(inputs, tuple) and inputs, f"{name}: example_inputs must be a non-empty tuple"
    assert tuple(inputs[0].shape) == tuple(card.input_shape), f"{name}: input {tuple(inputs[0].shape)} vs card"
    assert inputs[0].dtype == torch.float32
    again = zoo.example_inputs(name)
    for a, b in zip(inputs, again):
        assert a.dtype == b.dtype, f"{name}: example_inputs dtype {a.dtype} then {b.dtype}"
        assert_close(a, b, Bound.exact("seeded: the same numbers every call"), f"{name}: example_inputs are not reproducible")


@pytest.mark.parametrize("name", NAMES)
def test_runs_with_an_output_of_the_right_shape(name, built_model):
    card = zoo.card(name)
    b = built_model(name)
    out = b.output
    assert isinstance(out, torch.Tensor), f"{name}: output is a {type(out).__name__}, expected one tensor"
    bad = (~torch.isfinite(out)).sum().item()
    assert bad == 0, f"{name}: {bad} non-finite output values"
    x = b.inputs[0]
    assert out.shape[0] == x.shape[0], f"{name}: batch {x.shape[0]} in, {out.shape[0]} out"
    if card.output_layout:
        assert out.dim() == len(card.output_layout), f"{name}: output rank {out.dim()} vs {card.output_layout}"
    if card.task == "classify":
        assert tuple(out.shape) == (x.shape[0], card.num_classes), f"{name}: logits {tuple(out.shape)}"
        assert out.std() > 0, f"{name}: every logit is the same"
        return
    scale = card.scale_factor if card.task == "super-resolve" else VIDEO_SPATIAL_SCALE
    want = (x.shape[-2] * scale, x.shape[-1] * scale)
    assert tuple(out.shape[-2:]) == want, f"{name}: output H, W {tuple(out.shape[-2:])}, expected {want}"
    lo, hi = card.value_range
    if card.task == "super-resolve":  # the SR nets end in a clip to the value range: exact in float32
        assert out.min() >= lo and out.max() <= hi, (
            f"{name}: output spans [{out.min():.4f}, {out.max():.4f}], card says [{lo}, {hi}]")


@pytest.mark.parametrize("name", NAMES)
def test_card_is_complete(name):
    card = zoo.card(name)
    assert card.name == name
    assert card.family in FAMILIES, f"{name}: family {card.family!r} not in FAMILIES"
    assert card.task in TASKS
    for field in ("paper", "layout", "license", "color_order"):
        assert str(getattr(card, field)).strip(), f"{name}: empty card field {field}"
    assert "http" in card.paper, f"{name}: the paper field should carry a link"
    assert len(card.layout) == len(card.input_shape) and set(card.layout) <= set("NCTHW")
    assert all(isinstance(d, int) and d > 0 for d in card.input_shape)
    assert card.output_layout and set(card.output_layout) <= set("NCTHW"), f"{name}: output_layout"
    lo, hi = card.value_range
    assert lo < hi
    assert card.params > 0 and card.macs > 0, f"{name}: params/macs not measured"
    assert all(isinstance(d, int) and d > 0 for d in card.macs_input)
    channels = card.input_shape[card.layout.index("C")]
    if card.task == "classify":
        assert card.num_classes and card.num_classes > 1
        assert card.mean is not None and card.std is not None, f"{name}: classifiers need mean/std"
    if card.mean is not None or card.std is not None:
        assert len(card.mean) == len(card.std) == channels and all(s > 0 for s in card.std)
    if card.task == "super-resolve":
        assert isinstance(card.scale_factor, int) and card.scale_factor >= 2
    assert (card.weights is None) == (card.weights_sha256 is None), f"{name}: weights and sha256 go together"
    json.dumps(card.to_dict())  # the manifest and `zoo list --json` must be able to carry it


@pytest.mark.parametrize("name", NAMES)
def test_card_params_and_macs_are_measured(name, built_model):
    card = zoo.card(name)
    model = built_model(name).model
    params = count_params(model)
    assert params == card.params, f"{name}: card says {card.params:,} params, the default model has {params:,}"
    g = torch.Generator().manual_seed(0)
    macs = count_macs(model, torch.rand(card.macs_input, generator=g))
    assert math.isclose(macs, card.macs, rel_tol=0.01), (
        f"{name}: card says {card.macs:,} MACs at {card.macs_input}, measured {macs:,}")


@pytest.mark.parametrize("name", NAMES)
def test_pretrained(name, built_model):
    card = zoo.card(name)
    if card.weights is None:
        with pytest.raises(ZooError) as e:
            zoo.create(name, pretrained=True)
        assert "weights=" in one_line(e.value) and name in str(e.value)
        return
    path = WEIGHTS_DIR / card.weights
    assert path.is_file(), f"{name}: shipped weights {path} missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.weights_sha256, f"{name}: sha256 of {path}"
    model = zoo.create(name, pretrained=True)
    assert not model.training
    fresh = built_model(name).model.state_dict()
    loaded = model.state_dict()
    assert any(not torch.equal(loaded[k], fresh[k]) for k in loaded if loaded[k].is_floating_point()), (
        f"{name}: pretrained=True gave the same tensors as a fresh init")


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip(name, fmt, built_model, tmp_path):
    g = torch.Generator().manual_seed(1)
    state = {k: (v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.is_floating_point() else v)
             .detach().clone().contiguous() for k, v in built_model(name).model.state_dict().items()}
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    loaded = zoo.create(name, weights=path).state_dict()
    assert list(loaded) == list(state)
    for k, v in state.items():
        assert loaded[k].dtype == v.dtype, f"{name} {k}: saved {v.dtype}, loaded {loaded[k].dtype}"
        assert_close(loaded[k], v, Bound.exact("weights saved and loaded: bytes, no arithmetic"), f"{name} {k}")


def test_checkpoint_wrapping_a_state_dict_loads(tmp_path):
    """Training scripts often save {"state_dict": ..., "epoch": ...}; a str path works too."""
    state = zoo.create("mobilenet_v2", **SMALL).state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = zoo.create("mobilenet_v2", weights=str(path), **SMALL).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


# ---------------------------------------------------------------------------------------------
# weights that must be refused, each with a one-line ZooError
# ---------------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this would create a file: weights_only=True must refuse it before that."""

    marker: Path | None = None

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "evil.pth"
    torch.save({"features.0.0.weight": payload}, path)
    with pytest.raises(ZooError) as e:
        zoo.create("mobilenet_v2", weights=path, **SMALL)
    assert not marker.exists(), "loading weights executed pickled code"
    assert "evil.pth" in one_line(e.value)


@pytest.mark.parametrize("case", ["missing", "garbage-pth", "garbage-safetensors", "suffix", "other-model",
                                  "other-width", "not-a-dict"])
def test_bad_weights_give_one_line(case, tmp_path):
    name = "mobilenet_v2"
    if case == "missing":
        path, expect = tmp_path / "nope.pth", "not found"
    elif case == "garbage-pth":
        path, expect = tmp_path / "w.pth", "cannot read weights"
        path.write_bytes(b"\x00not a zip or pickle\n" * 50)
    elif case == "garbage-safetensors":
        path, expect = tmp_path / "w.safetensors", "cannot read weights"
        path.write_bytes(b"{\"broken\": header}\n" * 20)
    elif case == "suffix":
        path, expect = tmp_path / "w.npy", "unknown weights format"
        path.write_bytes(b"123")
    elif case == "other-model":
        path, expect = tmp_path / "v3.pth", "missing key"
        torch.save(zoo.create("mobilenet_v3_small", **SMALL).state_dict(), path)
    elif case == "other-width":
        path, expect = tmp_path / "wide.pth", "shape mismatch"
        torch.save(zoo.create(name, width_mult=0.5, num_classes=10).state_dict(), path)
    else:
        path, expect = tmp_path / "list.pth", "not a state dict"
        torch.save([torch.zeros(3)], path)
    with pytest.raises(ZooError) as e:
        zoo.create(name, weights=path, **SMALL)
    text = one_line(e.value)
    assert expect in text and path.name in text, text


def test_load_weights_is_strict_and_names_the_keys(tmp_path):
    model = zoo.create("mobilenet_v2", **SMALL)
    state = model.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["classifier.1.bias"]
    path = tmp_path / "w.pth"
    torch.save(state, path)
    with pytest.raises(ZooError) as e:
        load_weights(model, path)
    text = one_line(e.value)
    assert "classifier.1.bias" in text and "extra.weight" in text

