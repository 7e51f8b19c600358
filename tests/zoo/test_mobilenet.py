"""MobileNet V1/V2/V3: torchvision's state-dict layout and logits, the papers' sizes, config.

The torchvision reference data in ``tests/data/torchvision_ref/`` was made once with real
torchvision by ``tests/data/make_torchvision_reference.py``; torchvision is not needed here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from numeric import Bound, assert_close, fp32_bound

from edgekit import zoo
from edgekit.errors import ZooError
from edgekit.zoo import mobilenet as mb
from edgekit.zoo.registry import count_macs, count_params

REF_DIR = Path(__file__).parents[1] / "data" / "torchvision_ref"
TV_MODELS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
ALL = ("mobilenet_v1", *TV_MODELS)

pytestmark = pytest.mark.numeric


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((REF_DIR / "reference.json").read_text())


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(REF_DIR / "reference.safetensors"))


@pytest.fixture(scope="module")
def reference_input(meta, reference) -> torch.Tensor:
    x = reference["input_uint8"].float() / 255
    return mb.normalize(x, meta["mean"], meta["std"])


# ---------------------------------------------------------------------------------------------
# torchvision compatibility
# ---------------------------------------------------------------------------------------------


def test_reference_files_are_intact(meta):
    assert meta["mean"] == list(mb.IMAGENET_MEAN) and meta["std"] == list(mb.IMAGENET_STD)
    for name, info in meta["models"].items():
        digest = hashlib.sha256((REF_DIR / info["weights"]).read_bytes()).hexdigest()
        assert digest == info["weights_sha256"], f"{info['weights']} changed since it was generated"


@pytest.mark.parametrize("index", [0, 1, 2], ids=["default", "cfg1", "cfg2"])
@pytest.mark.parametrize("name", TV_MODELS)
def test_state_dict_layout_is_torchvisions(name, index, meta):
    """Same keys, in the same order, with the same shapes as torchvision's module of that config."""
    layout = meta["layouts"][name][index]
    model = zoo.create(name, **layout["config"])
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    theirs = layout["state_dict"]
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"{name} {layout['config']}: entry {i}: ours {a}, torchvision {b}"
    assert len(ours) == len(theirs), f"{name} {layout['config']}: {len(ours)} entries vs torchvision's {len(theirs)}"
    assert count_params(model) == layout["params"]


@pytest.mark.parametrize("name", TV_MODELS)
def test_torchvision_weights_give_torchvisions_logits(name, meta, reference, reference_input):
    """A torchvision state dict loads with no key changes (load is strict) and the logits match."""
    info = meta["models"][name]
    model = zoo.create(name, weights=REF_DIR / info["weights"], **info["config"])
    with torch.no_grad():
        logits = model(reference_input)
    expected = reference[f"{name}.logits"]
    # the reference is discriminating: two inputs give clearly different logits
    assert (expected[0] - expected[1]).abs().max() > 0.05
    assert expected.abs().max() > 0.1
    # the stored logits are one float32 run of the same function (torchvision's module, on another
    # machine): within this model's own measured float32 error on the same input
    bound = fp32_bound(model, reference_input)
    assert_close(logits, expected, bound, f"{name} vs torchvision {meta['torchvision']}")
    assert logits.argmax(1).tolist() == info["argmax"]

    # and the comparison can fail: one BatchNorm eps changed (V3 uses 1e-3, V2 1e-5) moves the
    # logits far beyond the bound
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.eps = 1e-5 if bn.eps == 1e-3 else 1e-3
    with torch.no_grad():
        assert bound.check(model(reference_input), expected) is not None


# ---------------------------------------------------------------------------------------------
# the papers' numbers: conv/linear parameters (the papers leave BatchNorm out) within 3 % or the
# papers' rounding to 0.1 M, multiply-adds within 2 %
# ---------------------------------------------------------------------------------------------

PAPER = [
    # name, width, params (M), multiply-adds (M), source
    ("mobilenet_v1", 1.0, 4.2, 569, "Howard 2017, Table 6"),
    ("mobilenet_v1", 0.75, 2.6, 325, "Howard 2017, Table 6"),
    ("mobilenet_v1", 0.5, 1.3, 149, "Howard 2017, Table 6"),
    ("mobilenet_v1", 0.25, 0.5, 41, "Howard 2017, Table 6"),
    ("mobilenet_v2", 1.0, 3.4, 300, "Sandler 2018, Table 4"),
    ("mobilenet_v3_large", 1.0, 5.4, 219, "Howard 2019, Table 3"),
    ("mobilenet_v3_small", 1.0, 2.5, 56, "Howard 2019, Table 3"),
]


@pytest.mark.parametrize("name, width, params_m, macs_m, source", PAPER)
def test_sizes_match_the_papers(name, width, params_m, macs_m, source):
    model = zoo.create(name, width_mult=width)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    params = sum(p.numel() for m in layers for p in m.parameters()) / 1e6
    macs = count_macs(model, torch.zeros(1, 3, 224, 224)) / 1e6
    assert abs(params - params_m) <= max(0.03 * params_m, 0.05), (
        f"{name} x{width}: {params:.3f} M conv/linear params, {source} says {params_m}")
    assert abs(macs - macs_m) <= 0.02 * macs_m, f"{name} x{width}: {macs:.1f} M MACs, {source} says {macs_m}"


def test_v1_has_28_layers_with_13_depthwise_convs():
    """Howard 2017, section 3: counting depthwise and pointwise convs separately, 28 layers."""
    model = zoo.create("mobilenet_v1")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) + len(linears) == 28
    depthwise = [c for c in convs if c.groups == c.in_channels == c.out_channels and c.groups > 1]
    assert len(depthwise) == 13 and all(c.kernel_size == (3, 3) for c in depthwise)
    assert [c.stride[0] for c in depthwise] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


def test_v3_blocks_use_se_hardsigmoid_and_hardswish():
    model = zoo.create("mobilenet_v3_large")
    se = [m for m in model.modules() if isinstance(m, mb.SqueezeExcitation)]
    assert len(se) == 8  # Howard 2019, Table 1: SE in 8 of the 15 bottlenecks
    assert all(isinstance(m.scale_activation, torch.nn.Hardsigmoid) for m in se)
    assert sum(isinstance(m, torch.nn.Hardswish) for m in model.modules()) > 10
    small = zoo.create("mobilenet_v3_small")
    assert sum(isinstance(m, mb.SqueezeExcitation) for m in small.modules()) == 9  # Table 2


# ---------------------------------------------------------------------------------------------
# config, inputs, labels, export
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_width_classes_and_dropout_are_configurable(name):
    x = torch.randn(2, 3, 64, 64)
    model = zoo.create(name, width_mult=0.5, num_classes=7, dropout=0.5)
    assert not model.training
    with torch.no_grad():
        assert tuple(model(x).shape) == (2, 7)
    assert count_params(model) < zoo.card(name).params / 2
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(d.p == 0.5 for d in drops)
    convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c % 8 == 0 for c in convs), f"{name}: channel counts not multiples of 8: {sorted(set(convs))}"


@pytest.mark.parametrize("cfg, what", [
    ({"width_mult": 0}, "width_mult"), ({"width_mult": -1.0}, "width_mult"), ({"num_classes": 0}, "num_classes"),
    ({"num_classes": 2.5}, "num_classes"), ({"dropout": 1.0}, "dropout"), ({"width": 0.5}, "width"),
])
@pytest.mark.parametrize("name", ALL)
def test_bad_config_is_a_one_line_zoo_error(name, cfg, what):
    with pytest.raises(ZooError) as e:
        zoo.create(name, **cfg)
    text = str(e.value)
    assert what in text and name in text and "\n" not in text


def test_pretrained_points_to_torchvision_weights():
    with pytest.raises(ZooError) as e:
        zoo.create("mobilenet_v3_large", pretrained=True)
    text = str(e.value)
    assert "weights=" in text and "https://download.pytorch.org/models/mobilenet_v3_large" in text


def test_example_inputs_are_normalised_images():
    (x,) = zoo.example_inputs("mobilenet_v2")
    assert tuple(x.shape) == (1, 3, 224, 224)
    mean = torch.tensor(mb.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(mb.IMAGENET_STD).view(1, 3, 1, 1)
    image = x * std + mean
    # back in [0, 1] up to four float32 roundings of values <= 1 (normalise, un-normalise)
    slack = Bound.roundoff(1.0, reduction=1, depth=4).atol
    assert image.min() >= -slack and image.max() <= 1 + slack
    assert image.std() > 0.2  # uniform [0, 1) pixels: std 1/sqrt(12) = 0.29


def test_imagenet_labels():
    labels = mb.imagenet_labels()
    assert len(labels) == 1000 == len(set(labels))
    assert labels[0] == "tench" and labels[1] == "goldfish" and labels[999] == "toilet tissue"
    assert mb.IMAGENET_CLASSES is labels
    assert zoo.card("mobilenet_v2").num_classes == len(labels)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "mobilenet_v3_small" else [pytest.mark.slow])
                                  for n in ALL])
def test_exports_with_torch_export(name):
    """The converters start from torch.export; the modules must capture as they are."""
    model = zoo.create(name, width_mult=0.25, num_classes=10)
    x = torch.randn(1, 3, 64, 64)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert_close(program.module()(x), model(x), fp32_bound(model, x), f"{name}: exported vs eager")
