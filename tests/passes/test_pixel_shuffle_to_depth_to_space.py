"""pixel_shuffle_to_depth_to_space: any pixel shuffle (every spelling) becomes edgekit.depth_to_space
with its producers' channels permuted CRD → DCR (or a 1×1 permutation conv where they cannot be),
exact, and each format emits its native depth-to-space op."""

import numpy as np
import pytest
import torch

from edgekit.converters.passes import _custom_ops, _fx
from edgekit.converters.passes import pixel_shuffle_to_depth_to_space as P
from _models2d import AnchoredShuffle, ConvShuffle, export, ops, run, tflite_ops
from _sr_variants import GATHERED, PERMUTED, SPELLINGS, ShuffleHead, make
from numeric import Bound, assert_close, assert_matches

pytestmark = pytest.mark.numeric

PS, D2S = "aten.pixel_shuffle.default", "edgekit.depth_to_space.default"


def test_dcr_permutation_matches_the_definition():
    """new (i·r+j)·C+c reads old c·r²+i·r+j, and the op is DCR depth-to-space."""
    c, r = 3, 2
    perm = _custom_ops.dcr_channel_perm(c * r * r, r)
    for i in range(r):
        for j in range(r):
            for ch in range(c):
                assert perm[(i * r + j) * c + ch] == ch * r * r + i * r + j
    x = torch.arange(1 * 12 * 2 * 2, dtype=torch.float32).reshape(1, 12, 2, 2)
    out = torch.ops.edgekit.depth_to_space(x, 2)
    for i in range(2):
        for j in range(2):
            for ch in range(3):
                assert torch.equal(out[0, ch, i::2, j::2], x[0, (i * 2 + j) * 3 + ch])
    assert torch.equal(torch.ops.edgekit.depth_to_space(x[:, perm], 2), torch.nn.functional.pixel_shuffle(x, 2))


@pytest.mark.parametrize("stages,r,act", [(1, 2, True), (2, 2, True), (1, 3, False), (1, 4, True)])
def test_rewrite_is_exact(stages, r, act):
    torch.manual_seed(stages * 10 + r)
    model = ConvShuffle(c=3, r=r, stages=stages, act=act).eval()
    x = torch.randn(1, 3, 6, 5)
    ep = export(model, x)
    assert P.check(ep) is None
    out = P.rewrite(ep)
    before, after = ops(ep), ops(out)
    assert before[PS] == stages and after[PS] == 0
    assert after[D2S] == stages and after["aten.conv2d.default"] == before["aten.conv2d.default"]
    assert set(after) <= set(before) | {D2S}, after  # no gather/index op: the permutation is in the weights
    with torch.no_grad():
        for inp in (x, x * 1e3, torch.zeros_like(x), torch.full_like(x, -7.0)):
            assert_close(run(out, inp), model(inp), Bound.exact(), f"stages={stages} r={r}")  # bit-identical


def test_sum_of_conv_branches_is_permuted_alike():
    """SESR adds an anchor conv of the input to its tail conv before the shuffle: both convs'
    output channels are permuted, the sum stays channel-aligned."""
    torch.manual_seed(3)
    model = AnchoredShuffle().eval()
    x = torch.rand(1, 3, 5, 7)
    ep = export(model, x)
    assert P.check(ep) is None
    out = P.rewrite(ep)
    assert ops(out)[PS] == 0 and ops(out)[D2S] == 1 and ops(out)["aten.conv2d.default"] == 3
    with torch.no_grad():
        for inp in (x, x * 10, torch.zeros_like(x)):
            assert_close(run(out, inp), model(inp), Bound.exact(), "anchored")


def test_input_program_is_not_mutated():
    model = ConvShuffle().eval()
    ep = export(model, torch.randn(1, 3, 4, 4))
    before = ops(ep)
    P.rewrite(ep)
    assert ops(ep) == before


@pytest.mark.parametrize("producer", PERMUTED + GATHERED)
@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_spelling_after_every_producer(producer, spelling):
    """Recognised by what it computes: the same DEPTH_TO_SPACE whatever spells the shuffle; the
    producers are permuted where a walk back through channel-wise ops reaches convs, else one 1×1
    permutation conv is added (none for an already-DCR rearrange). Bit-identical either way."""
    model, x = make(producer, spelling, r=2, seed=len(producer) + len(spelling))
    ep = export(model, x)
    graph = str(ep.graph)
    assert P.check(ep) is None
    assert str(ep.graph) == graph, "check must not change the program"
    (sh,), skipped = P.find_shuffles(ep)
    assert skipped == [] and sh.r == 2
    out = P.rewrite(ep)
    before, after = ops(ep), ops(out)
    assert after[D2S] == 1 and after[PS] == 0
    assert not {k for k in after if "permute" in k or "view" in k or "reshape" in k or "transpose" in k}, after
    assert _fx.max_rank(out) == 4
    extra = 0 if sh.identity or producer in PERMUTED else 1
    assert after["aten.conv2d.default"] == before["aten.conv2d.default"] + extra, (before, after)
    if not sh.identity:
        assert (sh.region is not None) == (producer in PERMUTED), sh.gather_why
    with torch.no_grad():
        for inp in (x, x * 1e3, torch.zeros_like(x), -x):
            assert_close(run(out, inp), model(inp), Bound.exact(), f"{producer}/{spelling}")


@pytest.mark.parametrize("r,shape", [(3, (1, 4, 4, 5)), (4, (2, 4, 3, 3)), (2, (3, 4, 7, 2))])
@pytest.mark.parametrize("spelling", ["functional", "view6", "transposed_block"])
def test_block_sizes_and_shapes(r, shape, spelling):
    torch.manual_seed(r)
    model = ShuffleHead("prelu", spelling, r=r).eval()
    x = torch.randn(*shape)
    out = P.rewrite(export(model, x))
    assert ops(out)[D2S] == 1
    with torch.no_grad():
        assert_close(run(out, x), model(x), Bound.exact(), f"r={r} {shape}")


@pytest.mark.parametrize("producer,why", [("input", "graph input"), ("grouped", "grouped"),
                                          ("shared", "also used by"), ("concat", "mixes or moves channels")])
def test_gather_conv_names_why_producers_stay(producer, why):
    model, x = make(producer, "functional")
    (sh,), _ = P.find_shuffles(export(model, x))
    assert sh.region is None and why in sh.gather_why, sh.gather_why


class NotADepthToSpace(torch.nn.Module):
    """Views that move data but are no depth-to-space: H and W swapped, and a space-to-depth."""

    def forward(self, x):
        b, c, h, w = x.shape
        return x.view(b, c, h, w, 1, 1).permute(0, 1, 3, 2, 4, 5).reshape(b, c, w, h), torch.pixel_unshuffle(x, 2)


class Shuffle3dInput(torch.nn.Module):
    def forward(self, x):  # pixel_shuffle of an unbatched (C, H, W) tensor
        return torch.nn.functional.pixel_shuffle(x[0], 2)


@pytest.mark.parametrize("model,x,reason", [
    (torch.nn.Conv2d(3, 3, 1), torch.randn(1, 3, 4, 4), "the model has no pixel shuffle"),
    (NotADepthToSpace(), torch.randn(1, 4, 4, 6), "the model has no pixel shuffle"),
    (Shuffle3dInput(), torch.randn(1, 8, 4, 4), "pixel_shuffle: not on a 4-D tensor"),
])
def test_not_applied_with_reason(model, x, reason):
    ep = export(model.eval(), x)
    graph = str(ep.graph)
    why = P.check(ep)
    assert why is not None and reason in why, why
    assert str(ep.graph) == graph


@pytest.mark.parametrize("producer,spelling", [("prelu", "view6"), ("input", "functional"), ("residual", "nhwc")])
def test_variants_through_tflite_and_onnx(producer, spelling, tmp_path):
    """The rewritten variants as artifacts: DEPTH_TO_SPACE / DepthToSpace(DCR), no TRANSPOSE in
    TFLite's body and no Transpose/Reshape in ONNX, matching the source."""
    litert_torch = pytest.importorskip("litert_torch")
    ort = pytest.importorskip("onnxruntime")
    from edgekit.converters.passes import nhwc_boundary, prelu_restore

    model, x = make(producer, spelling, seed=5)
    out = P.rewrite(export(model, x))
    prog = prelu_restore.rewrite(out) if producer == "prelu" else out
    onnx = torch.onnx.export(prog, (x,), dynamo=True, custom_translation_table=_custom_ops.onnx_translations())
    kinds = [n.op_type for n in onnx.model.graph]
    assert kinds.count("DepthToSpace") == 1 and "Transpose" not in kinds and "Reshape" not in kinds, kinds
    onnx.save(str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    with torch.no_grad():
        assert_matches(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], model, x, what="onnx")
    _custom_ops.register_litert()
    module = nhwc_boundary.rewrite(prog).module()
    module.training = False
    xn = x.permute(0, 2, 3, 1).contiguous()
    edge = litert_torch.convert(module, (xn,))
    edge.export(str(tmp_path / "m.tflite"))
    names = tflite_ops(tmp_path / "m.tflite")
    assert names.count("DEPTH_TO_SPACE") == 1 and "TRANSPOSE" not in names and "RESHAPE" not in names, names
    with torch.no_grad():
        assert_matches(np.asarray(edge(xn)).transpose(0, 3, 1, 2), model, x, what="tflite")


@pytest.fixture(scope="module")
def two_stage():
    torch.manual_seed(0)
    model = ConvShuffle(c=3, r=2, stages=2).eval()
    x = torch.randn(1, 3, 8, 8)
    return model, x, P.rewrite(export(model, x))


def test_tflite_emits_depth_to_space(two_stage, tmp_path):
    litert_torch = pytest.importorskip("litert_torch")
    model, x, out = two_stage
    _custom_ops.register_litert()
    module = out.module()
    module.training = False
    edge = litert_torch.convert(module, (x,))
    edge.export(str(tmp_path / "m.tflite"))
    names = tflite_ops(tmp_path / "m.tflite")
    assert names.count("DEPTH_TO_SPACE") == 2
    assert names.count("TRANSPOSE") == 2, names  # only the NCHW boundary (nhwc_boundary removes it)
    assert "RESHAPE" not in names
    with torch.no_grad():
        assert_matches(np.asarray(edge(x)), model, x, what="tflite")


def test_onnx_emits_dcr_depth_to_space(two_stage, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, x, out = two_stage
    prog = torch.onnx.export(out, (x,), dynamo=True, custom_translation_table=_custom_ops.onnx_translations())
    nodes = [n for n in prog.model.graph]
    d2s = [n for n in nodes if n.op_type == "DepthToSpace"]
    assert len(d2s) == 2 and all(n.attributes["mode"].value == "DCR" for n in d2s)
    assert not any(n.op_type in ("Transpose", "Reshape") for n in nodes)
    prog.save(str(tmp_path / "m.onnx"))
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert_matches(got, model, x, what="onnx")


def test_coreml_emits_mil_depth_to_space(two_stage):
    """coremltools' TensorFlow frontend maps TF DepthToSpace (DCR) straight onto MIL depth_to_space,
    which is what fixes its order; prediction needs macOS, so the op list is checked here."""
    ct = pytest.importorskip("coremltools")
    model, x, out = two_stage
    _custom_ops.register_coreml()
    prog = out.run_decompositions(_custom_ops.coreml_decompositions())
    ml = ct.convert(prog, inputs=[ct.TensorType(name="x", shape=tuple(x.shape))], convert_to="mlprogram")
    kinds = [op.op_type for op in ml._get_mil_internal().functions["main"].operations]
    assert kinds.count("depth_to_space") == 2
    assert not {"reshape", "transpose", "pixel_shuffle"} & set(kinds), kinds


class FrameInterleave(torch.nn.Module):
    """Two conv → pixel_shuffle branches whose frames (batch items) are interleaved by slices and a
    dim-0 cat (video_decoder_turbo's temporal upsampling), then an RMSNorm over channels and a
    residual conv."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.Conv2d(4, 16, 3, padding=1)
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        a, b = torch.nn.functional.pixel_shuffle(self.a(x), 2), torch.nn.functional.pixel_shuffle(self.b(x), 2)
        y = torch.cat([b[0:1], a[1:2], b[1:]], 0)
        y = y * torch.rsqrt(y.pow(2).mean(1, keepdim=True) + 1e-6)
        return y + self.conv(torch.relu(y))


def test_frame_gather_moves_before_depth_to_space(tmp_path):
    """cat(d2s(a)[i], d2s(b)[j], …) → d2s(cat(a[i], b[j], …)): exact, one DEPTH_TO_SPACE fewer, and
    litert-torch no longer keeps the frames, the norm and the residual add in NCHW."""
    litert_torch = pytest.importorskip("litert_torch")
    from edgekit.converters.passes import nhwc_boundary

    torch.manual_seed(3)
    model = FrameInterleave().eval()
    x = torch.randn(2, 4, 8, 8)
    ep = export(model, x)
    # "before": the same rewrite without the frame-gather move
    variants = {"before": P._Rewriter(ep, move_gathers=False).export(), "after": P.rewrite(ep)}
    assert list(P.frame_gathers(ep, {s.end.name: s.r for s in P.find_shuffles(ep)[0]}).values())[0][0][1:] == (0, 1)
    assert ops(variants["before"])[D2S] == 2 and ops(variants["after"])[D2S] == 1
    _custom_ops.register_litert()
    xn = x.permute(0, 2, 3, 1).contiguous()
    names = {}
    for label, prog in variants.items():
        with torch.no_grad():
            assert_matches(run(prog, x), model, x, what=f"{label} program")
        module = nhwc_boundary.rewrite(prog).module()
        module.training = False
        edge = litert_torch.convert(module, (xn,))
        edge.export(str(tmp_path / f"{label}.tflite"))
        names[label] = tflite_ops(tmp_path / f"{label}.tflite")
        with torch.no_grad():
            got = np.asarray(edge(xn)).transpose(0, 3, 1, 2)
            assert_matches(got, model, x, what=f"{label} tflite")
    assert names["before"].count("TRANSPOSE") >= 2, names["before"]
    assert names["after"].count("TRANSPOSE") == 0 and names["after"].count("DEPTH_TO_SPACE") == 1, names["after"]
