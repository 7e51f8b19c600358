"""hardswish_decompose: float32 HARD_SWISH in a written .tflite → ADD(RELU6), MUL(1/6), MUL.

Tolerances (see the pass's docstring): against the exact value (float64) the rewritten op is off
by at most 3.5·2⁻²⁴·|y| and not at all for |x| ≥ 3; against the file's original HARD_SWISH
kernel (itself off by up to 2.75·2⁻²⁴·|x|) by at most the sum, 6.25·2⁻²⁴·|x|.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import hardswish_decompose as H
from _models2d import run_tflite as _run, tflite_ops
from numeric import assert_close, assert_matches, fp32_bound

pytestmark = pytest.mark.numeric

pytest.importorskip("litert_torch")

U = 2.0 ** -24  # float32 unit roundoff
N = 4096  # elements of the flat test input


class HardSwish(nn.Module):
    """The op alone on a flat input: every test value reaches HARD_SWISH as given."""

    def forward(self, x):
        return nn.functional.hardswish(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)

    def forward(self, x):
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class MobileNetV3Block(nn.Module):
    """conv → hardswish → SE (hardsigmoid gate) → conv → hardswish, as in MobileNetV3."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.hs1 = nn.Conv2d(3, 8, 3, padding=1), nn.Hardswish()
        self.se = SqueezeExcite(8)
        self.c2, self.hs2 = nn.Conv2d(8, 4, 1), nn.Hardswish()
        with torch.no_grad():
            self.c2.weight.mul_(8)  # so that the second hardswish also sees |x| > 3

    def forward(self, x):
        return self.hs2(self.c2(self.se(self.hs1(self.c1(x)))))


def _inputs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((1, 3, 8, 8)) * s).astype(np.float32) for s in (0.3, 1.0, 5.0)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import litert_torch

    d = tmp_path_factory.mktemp("hswish")
    out = {}
    image = torch.zeros(1, 3, 8, 8)
    for name, model, x in (("op", HardSwish(), torch.zeros(1, N)), ("mnv3", MobileNetV3Block(), image),
                           ("relu", nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()), image)):
        litert_torch.convert(model.eval(), (x,)).export(str(d / f"{name}.tflite"))
        out[name] = d / f"{name}.tflite"
    return out


def _rewritten(src, tmp_path):
    work = shutil.copy(src, tmp_path / "m.tflite")
    assert H.check(work) is None
    assert H.rewrite(work) == work  # in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]  # no temporary left behind
    return work


def _assert_wellformed(path) -> None:
    """Unique tensor names; every op reads only graph inputs, constants or earlier outputs."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for g in model.subgraphs:
        names = [t.name for t in g.tensors]
        assert len(set(names)) == len(names)
        ready = set(g.inputs) | {i for i, t in enumerate(g.tensors) if model.buffers[t.buffer].data is not None}
        for op in g.operators:
            assert all(i in ready for i in op.inputs if i >= 0), [names[i] for i in op.inputs]
            ready |= set(op.outputs)
    assert all(max(c.builtinCode, c.deprecatedBuiltinCode) != 117 for c in model.operatorCodes)  # HARD_SWISH code gone


def test_matches_exact_hardswish_and_original_kernel(files, tmp_path):
    src = files["op"]
    assert tflite_ops(src) == ["HARD_SWISH"]
    out = _rewritten(src, tmp_path)
    assert tflite_ops(out) == ["ADD", "MUL", "MUL"]
    _assert_wellformed(out)
    edges = np.array([-3, 3, 0, -0.0, 1e-30, -1e-30, 1e6, -1e6, 1e30, -1e30], np.float32)
    edges = np.concatenate([edges, np.nextafter(edges[:2], np.float32(0)), np.nextafter(edges[:2], np.float32(9))])
    x = np.concatenate([edges, np.linspace(-8, 8, N - edges.size, dtype=np.float32)]).reshape(1, N)
    got, orig = _run(out, x).astype(np.float64), _run(src, x).astype(np.float64)
    x64 = x.astype(np.float64)
    exact = x64 * np.clip(x64 + 3, 0, 6) / 6
    assert (x64 < -3).sum() > 100 and (np.abs(x64) < 3).sum() > 100 and (x64 > 3).sum() > 100
    assert np.all(np.abs(got - exact) <= 3.5 * U * np.abs(exact))
    saturated = np.abs(x64) >= 3
    np.testing.assert_array_equal(got[saturated], np.where(x64 > 0, x64, 0.0)[saturated])  # exact branches
    assert np.all(np.abs(got - orig) <= 6.25 * U * np.abs(x64))
    assert not np.array_equal(got, orig)  # the kernels do round differently: the bound is needed


def test_mobilenet_v3_block(files, tmp_path):
    src = files["mnv3"]
    before = tflite_ops(src)
    assert before.count("HARD_SWISH") == 2, before
    out = _rewritten(src, tmp_path)
    after = tflite_ops(out)
    assert "HARD_SWISH" not in after
    assert after.count("ADD") == before.count("ADD") + 2 and after.count("MUL") == before.count("MUL") + 4
    _assert_wellformed(out)

    model, seen = MobileNetV3Block().eval(), []
    for m in (model.hs1, model.hs2):
        m.register_forward_hook(lambda mod, args, res: seen.append(args[0].detach().reshape(-1)))
    for x in _inputs():
        got = _run(out, x)
        # the rewritten file and the original compute one function in float32: the source's bound
        assert_close(got, _run(src, x), fp32_bound(model, x), "rewritten vs original file")
        assert_matches(got, model, x, what="rewritten file vs torch")
    for acts in (torch.cat(seen[0::2]), torch.cat(seen[1::2])):  # each HARD_SWISH saw all three branches
        assert (acts < -3).any() and ((acts > -3) & (acts < 3)).any() and (acts > 3).any()


def test_not_applied_without_hardswish(files, tmp_path):
    work = shutil.copy(files["relu"], tmp_path / "m.tflite")
    before = work.read_bytes()
    assert H.check(work) == "the model has no HARD_SWISH"
    H.rewrite(work)
    assert work.read_bytes() == before


def test_quantized_hardswish_is_left_alone(files, tmp_path):
    from ai_edge_quantizer import quantizer, recipe

    def int8(src, dest):
        q = quantizer.Quantizer(str(src), recipe.static_wi8_ai8())
        data = {"serving_default": [{"args_0": x} for x in _inputs()]}
        q.quantize(q.calibrate(data, num_threads=1), serialize_to_path=str(dest), enable_progress_report=False)
        return dest

    q = int8(files["mnv3"], tmp_path / "q.tflite")
    assert tflite_ops(q).count("HARD_SWISH") == 2
    assert H.check(q) == "its 2 HARD_SWISH op(s) are quantized; only float32 HARD_SWISH is decomposed"
    # the order that works for int8 targets: decompose the float file, then quantize
    (tmp_path / "f").mkdir()
    decomposed = _rewritten(files["mnv3"], tmp_path / "f")
    assert "HARD_SWISH" not in tflite_ops(int8(decomposed, tmp_path / "qd.tflite"))


def test_failed_write_leaves_the_file_untouched(files, tmp_path, monkeypatch):
    from ai_edge_litert.tools import flatbuffer_utils

    work = shutil.copy(files["op"], tmp_path / "m.tflite")
    before = work.read_bytes()

    def broken(model, path):
        Path(path).write_bytes(b"TFL3 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(flatbuffer_utils, "write_model", broken)
    with pytest.raises(OSError):
        H.rewrite(work)
    assert work.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_through_convert(tmp_path):
    from edgekit.bundle import read_manifest
    from edgekit.converters.api import convert

    r = convert(MobileNetV3Block().eval(), formats="tflite", passes=["hardswish_decompose"], out=tmp_path / "b",
                input_shapes=[[1, 3, 8, 8]], bench_runs=0)
    art = read_manifest(r.bundle).artifact_for("tflite")
    assert "hardswish_decompose" in art.passes, art.passes
    assert art.verification["status"] == "passed", art.verification
    assert "HARD_SWISH" not in tflite_ops(r.bundle / "model.tflite")
    assert "hardswish_decompose" not in read_manifest(r.bundle).extra["convert"]["passes_not_applied"]
