"""Re-parameterised blocks (RepVGG/MobileOne-style) that rebuild their deploy weight inside
``forward`` from ``.data``: torch.export refuses them ("fake tensor in the exported program
constant's list"). Capture runs the model's own eval-mode fold on a copy (kept only when it keeps
the outputs), and without a usable fold says in one line which parameters, where, and how to fold."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from edgekit.converters.capture import capture, export_program
from edgekit.converters.capture.reparam import HOOKS, find_hooks, fold_reparam
from edgekit.errors import ConversionError
from numeric import assert_matches

MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class RepBlock(nn.Module):
        """Training: 3x3 + 1x1 + identity branches; eval: the one folded 3x3, rebuilt every call."""

        def __init__(self, c=4):
            super().__init__()
            self.w3 = nn.Parameter(torch.randn(c, c, 3, 3) * 0.2)
            self.w1 = nn.Parameter(torch.randn(c, c, 1, 1) * 0.2)
            self.b = nn.Parameter(torch.randn(c) * 0.1)
            self.deployed = None

        def folded(self):
            w = self.w3.data + F.pad(self.w1.data, (1, 1, 1, 1))  # READS DATA
            eye = torch.eye(w.shape[0]).reshape(w.shape[0], w.shape[0], 1, 1)
            return w + F.pad(eye, (1, 1, 1, 1))

        def deploy_conv(self, weight):
            conv = nn.Conv2d(self.w3.shape[1], self.w3.shape[0], 3, padding=1)
            conv.weight.data = weight
            conv.bias.data = self.b.data.clone()
            return conv

        def forward(self, x):
            if self.deployed is not None:
                return self.deployed(x)
            if self.training:
                return F.conv2d(x, self.w3, self.b, padding=1) + F.conv2d(x, self.w1) + x
            return F.conv2d(x, self.folded(), self.b, padding=1)


    class Switch(RepBlock):
        def switch_to_deploy(self):
            self.deployed = self.deploy_conv(self.folded())


    class Fuse(RepBlock):
        def fuse(self):
            return self.deploy_conv(self.folded())


    class DropsBranch(RepBlock):
        def switch_to_deploy(self):
            self.deployed = self.deploy_conv(self.w3.data.clone())  # forgets the 1x1 and identity branches


    class Raises(RepBlock):
        def reparameterize(self):
            raise RuntimeError("needs the training statistics")


    class TakesArgument(RepBlock):
        def switch_to_deploy(self, path):  # not a no-argument fold: never called
            raise AssertionError("called")


    def net(cls):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 1), cls(), nn.ReLU(), cls())


    def make_switch():
        return net(Switch), (torch.rand(1, 3, 8, 8),)


    def make_fuse():
        return net(Fuse), (torch.rand(1, 3, 8, 8),)


    def make_plain():
        return net(RepBlock), (torch.rand(1, 3, 8, 8),)


    def make_drops():
        return net(DropsBranch), (torch.rand(1, 3, 8, 8),)


    def make_raises():
        return net(Raises), (torch.rand(1, 3, 8, 8),)


    def make_takes_argument():
        return net(TakesArgument), (torch.rand(1, 3, 8, 8),)
''')


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reparam") / "rep_models.py"
    path.write_text(MODELS)
    return path


def _line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


def _source(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("rep_models_direct", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, inputs = getattr(mod, f"make_{name}")()
    return model.eval(), inputs


@pytest.mark.numeric
@pytest.mark.parametrize("name,calls", [("switch", ["1.switch_to_deploy()", "3.switch_to_deploy()"]),
                                        ("fuse", ["1.fuse()", "3.fuse()"])])
def test_model_fold_is_run_and_the_program_keeps_the_function(models, name, calls):
    cap = capture(f"{models}:make_{name}")
    assert cap.source["reparameterized"] == calls
    assert "reparameterize_refused" not in cap.source
    program, kwargs = export_program(cap)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "aten.conv2d.default" in targets
    model, (x,) = _source(models, name)  # the unfolded model: the function to keep
    with torch.no_grad():
        got = program.module()(**kwargs)
    assert_matches(list(got.values())[0], model, x, what=f"{name} folded program")


def test_fold_runs_on_a_copy(models):
    model, inputs = _source(models, "switch")
    folded, calls, refused = fold_reparam(model, inputs)
    assert calls and refused is None and folded is not model
    assert model[1].deployed is None and folded[1].deployed is not None  # the user's module is untouched


def test_fuse_returning_a_module_replaces_the_block(models):
    model, inputs = _source(models, "fuse")
    folded, calls, _ = fold_reparam(model, inputs)
    assert calls == ["1.fuse()", "3.fuse()"]
    assert type(folded[1]) is torch.nn.Conv2d and type(model[1]).__name__ == "Fuse"


def test_only_no_argument_hooks_and_outermost_modules(models):
    model, _ = _source(models, "takes_argument")
    assert find_hooks(model) == []
    model, _ = _source(models, "switch")
    assert find_hooks(model) == [("1", "switch_to_deploy"), ("3", "switch_to_deploy")]
    assert HOOKS[0] == "switch_to_deploy"
    # a plain nn.Module has none of the hook names as its own methods
    assert find_hooks(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))) == []


def test_without_a_fold_the_error_names_the_parameters_the_line_and_the_fold(models):
    cap = capture(f"{models}:make_plain")
    assert "reparameterized" not in cap.source
    with pytest.raises(ConversionError) as e:
        export_program(cap)
    msg = str(e.value)
    assert "\n" not in msg and "lifted_tensor" not in msg
    assert f"rep_models.py:{_line_of(models, 'READS DATA')} (folded)" in msg
    assert "1.w3, 1.w1, 3.w3, 3.w1" in msg and "`.data`" in msg
    assert "switch_to_deploy()" in msg  # how to fold it


def test_a_fold_that_changes_the_outputs_is_refused_and_the_error_says_so(models):
    cap = capture(f"{models}:make_drops")
    refused = cap.source["reparameterize_refused"]
    assert "1.switch_to_deploy(), 3.switch_to_deploy() changed the outputs" in refused and "exported unfolded" in refused
    assert "reparameterized" not in cap.source
    with pytest.raises(ConversionError) as e:
        export_program(cap)
    msg = str(e.value)
    assert "\n" not in msg and "changed the outputs" in msg and "make that fold keep the outputs" in msg


def test_a_fold_that_raises_is_refused_with_its_error(models):
    cap = capture(f"{models}:make_raises")
    assert "raised RuntimeError: needs the training statistics" in cap.source["reparameterize_refused"]
    with pytest.raises(ConversionError, match="needs the training statistics"):
        export_program(cap)


@pytest.mark.slow
@pytest.mark.numeric
def test_convert_end_to_end_verifies_against_the_unfolded_model(models, converted):
    result = converted(f"{models}:make_switch", formats="onnx,tflite")
    assert result.ok, [(a.format, a.status, a.to_dict()) for a in result.artifacts]
