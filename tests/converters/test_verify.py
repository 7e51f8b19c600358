"""Comparison helpers, tolerance tables, verification cases, the pre-processing fold and the
rewrite hook — the pieces under ``edgekit convert``, tested without exporting anything."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numeric import Bound, assert_close

from edgekit.converters import verify as V
from edgekit.converters.layouts import layout_for_rank, permutation, to_nhwc
from edgekit.converters.preprocess import FoldSpec, normalise

pytestmark = pytest.mark.numeric

U64 = 2.0 ** -53
"""float64's unit round-off: the metrics are computed in float64."""
U32 = 2.0 ** -24


def test_compare_names_the_worst_element():
    ref = np.zeros((1, 3, 4, 5), np.float32)
    out = ref.copy()
    out[0, 2, 1, 3] = 0.5
    ref[0, 0, 0, 0] = 2.0
    out[0, 0, 0, 0] = 2.0
    m = V.compare(ref, out)
    assert m["worst"] == {"index": [0, 2, 1, 3], "reference": 0.0, "artifact": 0.5}
    assert m["max_abs"] == 0.5 and m["max_rel"] == 0.25  # 0.5 / 2.0: exact in binary
    assert m["cosine"] < 1.0  # any difference in direction puts the cosine below its maximum, 1


def test_compare_shape_mismatch_and_non_finite():
    with pytest.raises(ValueError, match=r"shape \[1, 2\], the source's is \[1, 3\]"):
        V.compare(np.zeros((1, 3)), np.zeros((1, 2)), "logits")
    out = np.ones((2, 2))
    out[1, 0] = np.nan
    m = V.compare(np.ones((2, 2)), out)
    assert m["max_abs"] == math.inf and m["worst"]["index"] == [1, 0]


def test_psnr_and_frame_psnr():
    ref = np.zeros((1, 3, 8, 8))
    assert V.psnr(ref, ref) == math.inf
    # float64 round-off of a mean of squares and a logarithm (0.01 itself is not exact in binary)
    assert_close(V.psnr(ref, ref + 0.01), 40.0, Bound.roundoff(40.0, reduction=ref.size, depth=3, unit=U64), "psnr")
    video = np.zeros((1, 3, 4, 2, 2))
    noisy = video.copy()
    noisy[:, :, 2] += 0.1
    frames = V.frame_psnr(video, noisy, peak=1.0)
    assert_close(frames[2], 20.0, Bound.roundoff(20.0, reduction=noisy[:, :, 2].size, depth=3, unit=U64), "frame psnr")
    assert frames[0] == math.inf


def test_top1_counts_only_decisive_rows():
    ref = np.array([[0.0, 1.0, 5.0], [1.0, 1.0000001, 0.0]])
    out = np.array([[0.0, 1.0, 4.9], [1.0, 0.9, 0.0]])
    assert V.top1(ref, out, margin=1e-3) == (1, 1)  # the near-tie row does not count
    assert V.top1(ref, out[:, [0, 2, 1]], margin=1e-3) == (0, 1)


def test_tolerances_say_how_each_bound_is_made():
    """fp32 bounds are measured, fp16 ones derived from them, int8 ones stated and judged on the task."""
    from edgekit.converters.criteria import FP16_SCALE, SCORE_ABS

    for task in ("classify", "super-resolve", "decode-video", "other"):
        t32, t16, t8 = (V.tolerance_for(p, task) for p in ("fp32", "fp16", "int8"))
        assert (t32.bound, t16.bound, t8.bound) == ("measured", "measured-fp16", "stated")
        assert t32.cosine is None and t32.max_rel is None  # fp32: the measured bound alone decides
        assert t8.score_abs == SCORE_ABS and all("how" in t.to_dict() for t in (t32, t16, t8))
    assert V.tolerance_for("fp32", "classify").top1 == 1.0 and V.tolerance_for("int8", "classify").top1 == 1.0
    assert V.tolerance_for("int8", "super-resolve").psnr_db is not None
    assert FP16_SCALE == 2.0 ** 13  # U16 / U32, exact powers of two


class FakeSession:
    """A session computing ``fn`` of its one input."""

    def __init__(self, fn):
        self.fn = fn
        self.inputs = [type("S", (), {"name": "input"})()]
        self.outputs = [type("S", (), {"name": "output"})()]

    def run(self, feed):
        return {"output": self.fn(feed["input"])}

    def close(self):
        pass


def test_verify_artifact_fails_on_a_wrong_artifact():
    """A fake session that computes something else: the verdict names output, case, index and
    the bound with its derivation."""
    cases = V.make_cases([(1, 3, 8, 8)], [np.dtype(np.float32)], task="other", preprocess={}, fold=None)
    ident32 = lambda xs: [np.asarray(xs[0], np.float32)]  # noqa: E731
    ident64 = lambda xs: [np.asarray(xs[0], np.float64)]  # noqa: E731
    v, _ = V.verify_artifact(None, cases, ident32, output_names=["output"], precision="fp32", task="other",
                             loader=lambda p: FakeSession(lambda x: x * np.float32(1.01)), reference64=ident64)
    assert v["status"] == "failed"
    assert "output 'output' max abs error" in v["reason"] and "> bound" in v["reason"], v["reason"]
    assert "float32-vs-float64 error" in v["reason"]  # the derivation is named
    # x * 1.01 in float32 rounds twice (the constant and the product), each by at most u * 1.01
    # of max|x|; the float64 difference and division add nothing at float32's scale
    assert_close(v["outputs"]["output"]["max_rel"], 0.01, Bound.roundoff(1.01, depth=2), "max_rel")
    # an identity's float32 run is exact, so each case's bound is the output-rounding floor alone
    for rec, case in zip(v["outputs"]["output"]["cases"], cases):
        assert rec["case"] == case.name
        assert_close(rec["bound"], 8 * U32 * float(np.abs(case.source[0]).max()),
                     Bound.exact("8 x (0 + 2**-24 x a float32 value): powers of two, exact in float64"), case.name)
    # and the same session passes when it is right
    v2, _ = V.verify_artifact(None, cases, lambda xs: [xs[0] * np.float32(1.01)], output_names=["output"],
                              precision="fp32", task="other", reference64=lambda xs: [xs[0] * 1.01],
                              loader=lambda p: FakeSession(lambda x: x * np.float32(1.01)))
    assert v2["status"] == "passed", v2.get("reason")


def test_cases_include_negative_values_and_a_photo():
    cases = V.make_cases([(1, 3, 24, 32)], [np.dtype(np.float32)], task="super-resolve",
                         preprocess={"value_range": [0.0, 1.0]}, fold=None)
    names = [c.name for c in cases]
    assert names == ["random-0", "random-1", "random-normal", "photo:astronaut"]
    assert cases[2].source[0].min() < 0
    photo = cases[-1].source[0]
    # not a flat image: the astronaut photo's values spread over the range (std 0.29 of it here);
    # 0.05 only rules out a constant or nearly constant fill
    assert photo.shape == (1, 3, 24, 32) and 0.0 <= photo.min() and photo.max() <= 1.0 and photo.std() > 0.05


def test_folded_cases_feed_pixels_to_the_artifact_and_normalised_to_the_source():
    fold = FoldSpec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), input_layout="NHWC")
    cases = V.make_cases([(1, 3, 8, 8)], [np.dtype(np.float32)], task="classify",
                         preprocess={"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}, fold=fold)
    for c in cases:
        px = c.artifact[0]
        assert px.shape == (1, 8, 8, 3) and px.max() <= 255 and px.min() >= 0
        assert_close(c.source[0], normalise(px.transpose(0, 3, 1, 2), fold),
                     Bound.exact("the same float64 steps on the same pixels"), c.name)


def test_fold_module_matches_the_step_by_step_normalisation():
    torch = pytest.importorskip("torch")
    from edgekit.converters.preprocess import fold_module

    for spec in (FoldSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
                 FoldSpec(value_range=(-1.0, 1.0), color_order="BGR", input_layout="NHWC"),
                 FoldSpec()):
        folded = fold_module(torch.nn.Identity(), spec, 3)
        px = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7)).astype(np.float32)
        feed = px.transpose(0, 2, 3, 1).copy() if spec.input_layout == "NHWC" else px
        with torch.no_grad():
            got = folded(torch.from_numpy(feed)).numpy()
        # pixels * a + b in float32 against the float64 steps: a, b, the product and the sum each
        # round once, at most at the largest of |255 a|, |b| and |result| (the reference rounds
        # once to float32 too)
        a, b = spec.affine(3)
        want = normalise(px, spec)
        scale = max(255 * np.abs(a).max(), np.abs(b).max(), np.abs(want).max())
        assert_close(got, want, Bound.roundoff(scale, depth=4), f"fold {spec}")
    assert FoldSpec(color_order="BGR").to_manifest()["folded_ops"][0] == "flip RGB->BGR"


def test_layout_letters():
    assert [layout_for_rank(r) for r in (2, 4, 5)] == ["NC", "NCHW", "NCTHW"]
    assert layout_for_rank(4, "NHWC") == "NHWC" and layout_for_rank(2, "NCHW") == "NC"
    assert layout_for_rank(6) is None
    assert to_nhwc("NCTHW") == "NTHWC" and permutation("NCHW", "NHWC") == (0, 2, 3, 1)


def test_rewrite_hook_is_identity_without_target():
    from edgekit.converters.passes import run_pipeline
    from edgekit.errors import UsageError

    obj = object()
    assert run_pipeline(obj, None) == (obj, [])
    with pytest.raises(UsageError, match="no-such-npu"):
        run_pipeline(obj, "no-such-npu")


def test_exporter_error_messages_name_the_op_and_the_line():
    from edgekit.converters.exporters import export_failure, location_in, op_named_in

    tflite = ("Failed to run converter passes: /src/model.py:306:0: error: failed to legalize operation 'tfl.pow' "
              "that was explicitly marked illegal")
    assert op_named_in(tflite) == "tfl.pow" and location_in(tflite) == "/src/model.py:306"
    assert op_named_in("NotImplementedError: Unsupported fx node upsample_nearest3d, kind x") == "upsample_nearest3d"
    err = export_failure("tflite", ValueError(tflite), rank5=True)
    text = str(err)
    assert text.startswith("/src/model.py:306: [export] tflite: litert-torch cannot express op 'tfl.pow'")
    assert "--target generic-npu" in text and "\n" not in text


def test_parse_shape():
    from edgekit.converters.capture import parse_shape
    from edgekit.errors import UsageError

    assert parse_shape("1x3x224x224") == (1, 3, 224, 224) and parse_shape("2,8") == (2, 8)
    for bad in ("", "1x0x3", "ax3", "1x-3"):
        with pytest.raises(UsageError):
            parse_shape(bad)


def test_infer_task():
    from edgekit.converters.capture import infer_task

    assert infer_task(None, [(1, 3, 32, 32)], [(1, 10)]) == "classify"
    assert infer_task(None, [(1, 3, 20, 28)], [(1, 3, 60, 84)]) == "super-resolve"
    assert infer_task(None, [(1, 3, 20, 28)], [(1, 3, 20, 28)]) == "other"
    assert infer_task("decode-video", [(1, 16, 2, 8, 8)], [(1, 3, 3, 64, 64)]) == "decode-video"


def test_tf_select_ops_are_named():
    from edgekit.converters.exporters import op_named_in

    text = ("Failed to export flatbuffer: \nSome ops are not supported by the native TFLite runtime\nTF Select ops: "
            "Conv3D\nDetails:\n\ttf.Conv3D(tensor<1x2x8x8x4xf32>, tensor<3x3x3x1x4xf32>) -> (tensor<1x2x8x8x4xf32>)")
    assert op_named_in(text) == "Conv3D (depthwise), available only as a TF Select op"


def test_ill_conditioned_source_widens_its_own_bound_and_says_so():
    """A source whose own float32 result is far from the exact one (catastrophic cancellation):
    an artifact with other rounding passes, because the measured bound is the source's own error;
    the verification notes that the bound is wide; a wrong artifact still fails."""

    def f32(xs, offset=5000.0):
        x = xs[0].astype(np.float32)
        return [((x + np.float32(offset)) - np.float32(offset)) * np.float32(10.0)]

    def f64(xs):
        return [xs[0].astype(np.float64) * 10.0]

    cases = V.make_cases([(1, 64)], [np.dtype(np.float32)], task="other", preprocess={}, fold=None)
    rounding = FakeSession(lambda x: f32([x], offset=9000.0)[0])  # another rounding grid, same maths
    v, _ = V.verify_artifact(None, cases, f32, output_names=["output"], precision="fp32", task="other",
                             loader=lambda p: rounding, reference64=f64)
    m = v["outputs"]["output"]
    assert v["status"] == "passed", v.get("reason")
    # the source's own error (half a float32 step at 5000, ~2.4e-4 of its scale) is far above the
    # round-off of a well-conditioned function of three float32 steps, and the bound follows it
    assert m["bound_of_range"] > Bound.roundoff(1.0, depth=3).atol
    assert m["bound_of_range"] >= 1e-3 and any("cannot be told from rounding" in n for n in v["notes"]), v
    wrong = FakeSession(lambda x: f32([x])[0] * np.float32(1.05))
    v2, _ = V.verify_artifact(None, cases, f32, output_names=["output"], precision="fp32", task="other",
                              loader=lambda p: wrong, reference64=f64)
    assert v2["status"] == "failed" and "> bound" in v2["reason"]
