"""collapse_reparam: linear conv → 1×1 conv chains (+ identity) and weight arithmetic on
parameters collapse into single convs with constant weights."""

import pytest
import torch
from torch import nn

from edgekit import zoo
from edgekit.converters.passes import collapse_reparam as C
from edgekit.zoo.sr import LinearBlock
from _models2d import export, ops, run
from numeric import assert_matches

pytestmark = pytest.mark.numeric

CONV, ADD = "aten.conv2d.default", "aten.add.Tensor"


class Expanded(nn.Module):
    """A SESR linear block written literally (two convs, optional residual), then a ReLU."""

    def __init__(self, residual: bool, expand_bias: bool = False):
        super().__init__()
        self.block = LinearBlock(4, 4, 3, 16, residual)
        if expand_bias:
            self.block.expand = nn.Conv2d(4, 16, 3, padding=1, bias=True)
        with torch.no_grad():
            self.block.project.bias.uniform_(-1, 1)

    def forward(self, x):
        return torch.relu(self.block.forward_expanded(x))


class NotLinear(nn.Module):
    """A ReLU between the convs: not a linear chain; must stay two convs."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("residual,expand_bias", [(True, False), (False, False), (False, True)])
def test_linear_chain_collapses(residual, expand_bias):
    torch.manual_seed(0)
    model = Expanded(residual, expand_bias).eval()
    x = torch.randn(2, 4, 9, 7)
    ep = export(model, x)
    assert C.check(ep) is None
    out = C.rewrite(ep)
    assert ops(ep)[CONV] == 2 and ops(out)[CONV] == 1
    assert ops(out)[ADD] == 0 and ops(ep)[ADD] == int(residual)
    with torch.no_grad():
        for inp in (x, x * 100, torch.zeros_like(x), -x):
            assert_matches(run(out, inp), model, inp, what=f"residual={residual}")


def test_sesr_training_form_becomes_the_deploy_graph():
    """SESR's training form computes collapsed weights online (einsum + identity on parameters);
    after the pass its graph has the deploy form's ops and the same outputs."""
    torch.manual_seed(0)
    train = zoo.create("sesr_m5_x2", training_form=True).eval()
    x = torch.rand(1, 3, 16, 16)
    ep = export(train, x)
    assert ops(ep)["aten.einsum.default"] > 0
    out = C.rewrite(ep)
    deploy_ops = ops(export(zoo.create("sesr_m5_x2").eval(), x))
    assert ops(out) == deploy_ops
    with torch.no_grad():
        for inp in (x, torch.zeros_like(x), torch.ones_like(x)):
            assert_matches(run(out, inp), train, inp, what="sesr")


def test_not_applied_with_reason():
    ep = export(NotLinear().eval(), torch.randn(1, 3, 8, 8))
    assert C.check(ep) == "no linear conv→1×1 conv chain and no weight arithmetic in the graph"
