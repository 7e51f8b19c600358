"""int64_to_int32: argmax maps, token-id inputs, index buffers, arange and integer sums become
int32 and int64 constants that do not fit in int32 are refused. Integer outputs are compared for
equality everywhere; float outputs for equality in the program and within fp32 rounding through
the exporters (see ``_assert_same``)."""

import numpy as np
import pytest
import torch
from torch import nn

from edgekit.converters.passes import int64_to_int32 as p64
from edgekit.converters.passes import run_pipeline
from _models2d import ConvBN, export, ops
from numeric import Bound, THREADS, assert_close, fp32_bounds

pytestmark = pytest.mark.numeric


class SegHead(nn.Module):
    """conv → argmax over channels: a segmentation head's label map (int64 in torch)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x):
        return self.conv(x).argmax(1)


class Tokens(nn.Module):
    """int64 token ids → embedding + positions (index_select of arange) and a count of non-padding
    tokens (a sum of bools, int64 in torch)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.emb = nn.Embedding(16, 4)
        self.pos = nn.Parameter(torch.randn(8, 4))

    def forward(self, t):
        e = self.emb(t) + self.pos.index_select(0, torch.arange(t.shape[1]))
        return e, (t > 0).sum(1)


class ChannelOrder(nn.Module):
    """A registered int64 index buffer (RGB → BGR) used by index_select, then a conv."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.register_buffer("order", torch.tensor([2, 1, 0]))
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x.index_select(1, self.order))


class OneHot(nn.Module):
    """one_hot refuses int32 in eager torch: the pass keeps a local cast to int64 before it."""

    def forward(self, t):
        return nn.functional.one_hot(t, 6).float().sum(1)


class BitCast(nn.Module):
    def forward(self, t):
        return t.view(torch.float64) * 2  # the bits of int64 values: no int32 form


class Offset(nn.Module):
    def __init__(self, value: int, as_buffer: bool):
        super().__init__()
        self.value, self.as_buffer = value, as_buffer
        self.register_buffer("offset", torch.tensor([value, 1]))

    def forward(self, t):
        return t * 3 + (self.offset if self.as_buffer else self.value)


def _tokens() -> torch.Tensor:
    return torch.tensor([[3, 15, 0, 7, 1, 0]])  # 15 = last embedding row, 0 = padding


CASES = {  # name -> (model, example inputs)
    "seg": (SegHead, lambda: (torch.randn(1, 3, 6, 6),)),
    "tokens": (Tokens, lambda: (_tokens(),)),
    "buffer": (ChannelOrder, lambda: (torch.randn(1, 3, 5, 5),)),
}


def _case(name):
    make, inputs = CASES[name]
    return make().eval(), inputs()


def _int32(xs):
    return tuple(x.int() if x.dtype == torch.int64 else x for x in xs)


def _float_bounds(model, xs):
    """The source's measured float32 bound per output (integer outputs are compared exactly)."""
    return fp32_bounds(model, *xs)


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _assert_same(got, want, what, bounds=None):
    """Integer outputs exactly (int32 where the source has int64). Float outputs exactly in the
    program (the rewrite leaves float ops as they were); through an exporter within ``bounds``
    (the source's measured float32 bound per output: XNNPACK/ORT kernels sum in another order)."""
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        g = g.numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
        w = w.detach().numpy()
        if w.dtype.kind == "f":
            assert_close(g, w, bounds[i] if bounds else Bound.exact(), f"{what}[{i}]")
            continue
        assert g.dtype == (np.int32 if w.dtype == np.int64 else w.dtype), f"{what}[{i}]: {g.dtype} for {w.dtype}"
        assert g.shape == w.shape and np.array_equal(g.astype(w.dtype), w), f"{what}[{i}]: {g} != {w}"


def _dtypes(program):
    return {n.name: n.meta["val"].dtype for n in program.graph_module.graph.nodes
            if n.op == "placeholder" and isinstance(n.meta.get("val"), torch.Tensor)}


# ---------------------------------------------------------------------------------- program


def test_argmax_head():
    model, (x,) = _case("seg")
    ep = export(model, x)
    assert p64.check(ep) is None
    out = p64.rewrite(ep)
    assert ops(ep) == {"aten.conv2d.default": 1, "aten.argmax.default": 1}
    assert ops(out) == {"aten.conv2d.default": 1, "aten.argmax.default": 1, "aten._to_copy.default": 1}
    assert [n.name for n in p64.int64_nodes(ep)] == ["argmax"] and p64.int64_nodes(out) == []
    assert p64.check(out) is not None  # nothing left to narrow (argmax's own output is cast at once)
    for inp in (x, x * 1e3, -x, torch.zeros_like(x)):
        with torch.no_grad():
            _assert_same(out.module()(inp), model(inp), "seg")


def test_int64_input_becomes_int32():
    model, (t,) = _case("tokens")
    ep = export(model, t)
    before = ops(ep)
    out = p64.rewrite(ep)
    after = ops(out)
    assert _dtypes(ep)["t"] == torch.int64 and _dtypes(out)["t"] == torch.int32  # the artifact takes int32
    assert [n.name for n in p64.int64_nodes(ep)] == ["t", "arange", "sum_1"] and p64.int64_nodes(out) == []
    assert after["aten.embedding.default"] == before["aten.embedding.default"] == 1
    assert after["aten.index_select.default"] == 1
    assert [n.kwargs.get("dtype") for n in out.graph_module.graph.nodes
            if str(n.target) in ("aten.arange.default", "aten.sum.dim_IntList")] == [torch.int32] * 2
    for ids in (t, torch.zeros_like(t), torch.full_like(t, 15), torch.tensor([[1, 2, 3, 4, 5, 6]])):
        with torch.no_grad():
            _assert_same(out.module()(ids.int()), model(ids), "tokens")
    assert _dtypes(ep)["t"] == torch.int64  # the source program is not mutated


def test_int64_buffer_becomes_int32_constant():
    model, (x,) = _case("buffer")
    ep = export(model, x)
    assert ep.state_dict["order"].dtype == torch.int64
    out = p64.rewrite(ep)
    consts = {**out.state_dict, **out.constants}
    idx = [v for v in consts.values() if not v.dtype.is_floating_point]
    assert len(idx) == 1 and idx[0].dtype == torch.int32 and idx[0].tolist() == [2, 1, 0]
    assert p64.int64_nodes(out) == [] and ops(out)["aten.index_select.default"] == 1
    with torch.no_grad():
        _assert_same(out.module()(x), model(x), "buffer")


def test_local_cast_kept_for_ops_that_need_int64():
    model = OneHot().eval()
    t = torch.tensor([[0, 5, 2, 2]])
    out = p64.rewrite(export(model, t))
    nodes = {n.name: n for n in out.graph_module.graph.nodes}
    hot = next(n for n in nodes.values() if n.target == torch.ops.aten.one_hot.default)
    cast = hot.args[0]
    assert cast.target == torch.ops.aten._to_copy.default and cast.kwargs["dtype"] == torch.int64  # right before
    assert cast.args[0].name == "t" and _dtypes(out)["t"] == torch.int32
    assert p64.int64_nodes(out) == [] and "kept for ops that need int64" in p64.check(out)
    with torch.no_grad():
        _assert_same(out.module()(t.int()), model(t), "one_hot")


def test_float_model_not_applied():
    ep = export(ConvBN().eval(), torch.randn(1, 3, 8, 8))
    assert p64.check(ep) == "the program has no int64 tensors"
    not_applied = {}
    prog, applied = run_pipeline(ep, None, ["int64_to_int32"], not_applied=not_applied)
    assert prog is ep and applied == [] and not_applied == {"int64_to_int32": "the program has no int64 tensors"}


def test_dynamic_shapes_wait_for_static_shapes():
    x = torch.randn(2, 3, 6, 6)
    ep = torch.export.export(SegHead().eval(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("n", max=8)}})
    assert "static_shapes" in p64.check(ep)


@pytest.mark.parametrize("as_buffer", [True, False], ids=["buffer", "literal"])
def test_out_of_range_refused(as_buffer):
    big = 2**40 + 5
    ep = export(Offset(big, as_buffer).eval(), torch.tensor([1, 2]))
    reason = p64.check(ep)
    assert reason and "outside int32" in reason and str(big) in reason, reason
    prog, applied = run_pipeline(ep, None, ["int64_to_int32"], not_applied={})
    assert prog is ep and applied == []
    assert p64.check(export(Offset(2**31 - 1, as_buffer).eval(), torch.tensor([1, 2]))) is None  # fits: applies


def test_bitcast_refused():
    assert "reinterprets the bits" in p64.check(export(BitCast().eval(), torch.tensor([1, 2])))


def test_litert_alone_wraps_what_the_pass_refuses(tmp_path):
    """Why refusing matters: litert-torch narrows int64 by itself and wraps 2**40 + 5 to 5."""
    litert_torch = pytest.importorskip("litert_torch")
    t = torch.tensor([1, 2])
    model = Offset(2**40 + 5, as_buffer=False).eval()
    edge = litert_torch.convert(export(model, t).module(), (t,))
    got = np.asarray(edge(t.int()))
    assert got.tolist() == [8, 11] and model(t).tolist() != got.tolist()


# ---------------------------------------------------------------------------- real exporters


def _tflite_int64(path) -> list[str]:
    from ai_edge_litert import schema_py_generated as S
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return [t.name.decode() for g in model.subgraphs for t in g.tensors if t.type == S.TensorType.INT64]


@pytest.mark.parametrize("name", list(CASES))
def test_tflite_exact_without_int64(name, tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    import edgekit

    model, xs = _case(name)
    module = p64.rewrite(export(model, *xs)).module()
    module.training = False
    path = tmp_path / f"{name}.tflite"
    litert_torch.convert(module, _int32(xs)).export(str(path))
    assert _tflite_int64(path) == []
    with edgekit.load(path, backend="litert", threads=THREADS) as s:
        assert [i.dtype for i in s.inputs] == [("int32" if x.dtype == torch.int64 else "float32") for x in xs]
        for k in range(3):
            inp = tuple(x if x.dtype == torch.int64 else torch.randn_like(x) * 10**k for x in xs)
            with torch.no_grad():
                want = model(*inp)
            got = s(*[x.numpy() for x in _int32(inp)])
            got = [got[o.name] for o in s.outputs] if isinstance(got, dict) else got
            _assert_same(got, want, f"tflite {name}", _float_bounds(model, inp))


def _onnx_int64(model) -> dict[str, list[str]]:
    """int64 values of an onnx_ir model: graph inputs/outputs, computed (with the producing op)
    and constants."""
    vals = list(model.graph.inputs) + [v for node in model.graph for v in node.outputs]
    found: dict[str, list[str]] = {"io": [], "computed": [], "constant": []}
    for v in dict.fromkeys(vals):
        if v.dtype is not None and v.dtype.name == "INT64":
            if v in model.graph.inputs or v in model.graph.outputs:
                found["io"].append(v.name)
            elif v.producer() is not None:
                found["computed"].append(v.producer().op_type)
    found["constant"] = [v.name for v in model.graph.initializers.values() if v.dtype.name == "INT64"]
    return found


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_int64_only_where_the_spec_wants_it(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, xs = _case(name)
    ep = export(model, *xs)
    before = _onnx_int64(torch.onnx.export(ep, xs, dynamo=True).model)
    prog = torch.onnx.export(p64.rewrite(ep), _int32(xs), dynamo=True)
    after = _onnx_int64(prog.model)
    # ArgMax: int64 by the spec. Constants are not counted: torchlib casts index_select's index to
    # int64 (the buffer case then has one int64 initializer, the spec would accept int32)
    assert after["io"] == [] and set(after["computed"]) <= {"ArgMax"}, after
    if name != "buffer":  # an int64 input or output, a computed int64 tensor before
        assert before["io"], before
    prog.save(str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    feed = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), _int32(xs))}
    with torch.no_grad():
        _assert_same(sess.run(None, feed), model(*xs), f"onnx {name}", _float_bounds(model, xs))


def test_convert_records_the_pass(tmp_path):
    pytest.importorskip("litert_torch")
    from edgekit.converters.api import convert

    result = convert(SegHead().eval(), formats="tflite", passes=["static_shapes", "int64_to_int32"],
                     input_shapes=[(1, 3, 8, 8)], out=tmp_path / "seg", bench_runs=0)
    conv = result.manifest.extra["convert"]
    assert conv["passes"] == ["int64_to_int32"]
    assert conv["passes_not_applied"] == {"static_shapes": "every input shape is already static"}
    art = result.manifest.artifact_for("tflite")
    assert "int64_to_int32" in art.passes
    assert [o.dtype for o in art.outputs] == ["int32"]  # what the file has (the source returns int64)
    assert art.verification["status"] == "passed"
    assert art.verification["outputs"]["output"]["max_abs"] == 0.0  # label maps identical on every case
    assert _tflite_int64(result.bundle / art.path) == []


def test_convert_int64_token_input(tmp_path):
    """An int64 input through convert: every artifact takes int32, verification feeds the int64
    cases narrowed to it (all values fit), and the outputs match the source exactly."""
    pytest.importorskip("litert_torch")
    from edgekit.converters.api import convert

    program = torch.export.export(Tokens().eval(), (_tokens(),))
    result = convert(program, formats="onnx,tflite", passes=["int64_to_int32"], out=tmp_path / "tok", bench_runs=0)
    assert result.exit_code == 0, [(a.format, a.reason) for a in result.artifacts]
    for fmt in ("onnx", "tflite"):
        art = result.manifest.artifact_for(fmt)
        assert [i.dtype for i in art.inputs] == ["int32"], (fmt, art.inputs)
        assert art.verification["status"] == "passed", (fmt, art.verification)
