"""static_shapes: dynamic dimensions fixed to the example's, shape arithmetic folded."""

import pytest
import torch
from torch import nn

from edgekit.converters.passes import static_shapes
from _models2d import export, ops
from numeric import Bound, assert_close

pytestmark = pytest.mark.numeric


class Flatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(y.reshape(y.shape[0], -1))


def _dynamic():
    torch.manual_seed(0)
    model = Flatten().eval()
    x = torch.randn(2, 3, 6, 6)
    batch = torch.export.Dim("batch", min=1, max=64)
    return model, x, torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})


def test_dynamic_batch_becomes_static():
    model, x, ep = _dynamic()
    assert static_shapes.symbolic_inputs(ep) == {"x": [0]}
    assert ops(ep)["aten.sym_size.int"] >= 1
    assert static_shapes.check(ep) is None
    out = static_shapes.rewrite(ep)
    assert static_shapes.symbolic_inputs(out) == {}
    assert ops(out)["aten.sym_size.int"] == 0
    for n in out.graph_module.graph.nodes:
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert all(isinstance(d, int) for d in val.shape), (n.name, val.shape)
    with torch.no_grad():
        for inp in (x, x * 1e3, torch.zeros_like(x)):
            assert_close(out.module()(inp), model(inp), Bound.exact(), "static")


def test_static_program_not_applied():
    ep = export(Flatten().eval(), torch.randn(1, 3, 6, 6))
    assert static_shapes.check(ep) == "every input shape is already static"
