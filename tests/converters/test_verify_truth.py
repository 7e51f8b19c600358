"""Verification that tells the truth: an artifact as close as float32 allows passes whatever its
output's magnitude (a detector's sigmoid map of ~1e-4), a wrong layout, colour order, normalisation
or an error of 1e-3 of the output's range fails, a metric that means nothing on a case says so,
fp16 bounds are derived from the measured fp32 ones, int8 is judged on scores, and the cases are
drawn in the model's declared input domain.

The artifacts here are real: each generated model is exported with ``torch.onnx.export`` and run by
``edgekit.load`` (onnxruntime), against the torch source in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from numeric import Bound, assert_close  # noqa: E402

from edgekit.converters import verify as V  # noqa: E402
from edgekit.converters.capture.reference import torch_reference, torch_reference64  # noqa: E402
from edgekit.converters.criteria import FP16_SCALE, NOT_MEANINGFUL, SCORE_ABS  # noqa: E402
from edgekit.converters.preprocess import FoldSpec  # noqa: E402

pytestmark = pytest.mark.numeric

U32 = 2.0 ** -24


class Detector(torch.nn.Module):
    """conv → ReLU → conv → sigmoid score map whose logits come from a difference of two channels
    near ``offset`` (float32 keeps ~u·offset of them: ~6e-4 at 1e4), shifted to ``bias``: the map is
    ~sigmoid(bias) everywhere, ~1e-4 for bias -9, and its float32 error is ~1e-3 of its value."""

    def __init__(self, channels: int = 6, offset: float = 1e4, bias: float = -9.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.b = torch.nn.Conv2d(channels, 2, 3, padding=1)
        with torch.no_grad():
            self.a.weight.copy_(torch.randn(self.a.weight.shape, generator=g) * 0.3)
            self.a.bias.zero_()
            self.b.weight.copy_(torch.randn(self.b.weight.shape, generator=g) * 0.05)
            self.b.bias.copy_(torch.tensor([offset, offset]))
        self.bias = bias

    def forward(self, x):
        h = self.b(torch.relu(self.a(x)))
        return torch.sigmoid(h[:, :1] - h[:, 1:] + self.bias)


def _onnx(model, shape, path):
    torch.onnx.export(model, (torch.rand(*shape),), str(path), input_names=["input"], output_names=["output"],
                      dynamo=False)
    return path


def _verify(path, model, cases, precision="fp32", task="other", loader=None, output_names=("output",)):
    v, session = V.verify_artifact(path, cases, torch_reference(model), output_names=list(output_names),
                                   precision=precision, task=task, reference64=torch_reference64(model), loader=loader)
    session.close()
    return v


class Wrapped:
    """A real session whose inputs or outputs are changed: a wrong conversion, made on purpose."""

    def __init__(self, inner, feed=lambda x: x, out=lambda y: y):
        self.inner, self.feed, self.out = inner, feed, out
        self.inputs, self.outputs = inner.inputs, inner.outputs

    def run(self, feed):
        got = self.inner.run({k: self.feed(v) for k, v in feed.items()})
        return {k: self.out(v) for k, v in got.items()}

    def close(self):
        self.inner.close()


def _perturb(y, scale=None):
    """An error of 1e-3 of the output's range (``scale``, else max|y|) at its largest element: the
    smallest effect of a wrong layout, normalisation or op."""
    y = np.array(y, copy=True)
    idx = np.unravel_index(int(np.argmax(np.abs(y))), y.shape)
    y[idx] += np.float32(1e-3 * (scale if scale is not None else np.abs(y).max()))
    return y


@pytest.mark.parametrize("shape,offset,bias", [((1, 3, 16, 16), 1e4, -9.0), ((1, 3, 24, 32), 1e3, -9.0),
                                               ((2, 3, 12, 20), 1e4, -7.0)])
def test_tiny_sigmoid_map_passes_and_wrong_conversions_fail(tmp_path, shape, offset, bias):
    import edgekit

    model = Detector(offset=offset, bias=bias).eval()
    path = _onnx(model, shape, tmp_path / "det.onnx")
    pre = {"value_range": [0.0, 1.0], "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25]}
    cases = V.make_cases([shape], [np.dtype(np.float32)], task="other", preprocess=pre, fold=None,
                         example=[np.random.default_rng(3).random(shape, dtype=np.float32)])
    v = _verify(path, model, cases)
    m = v["outputs"]["output"]
    assert v["status"] == "passed", v.get("reason")
    assert m["ref_max_abs"] < 1e-2  # non-vacuity: the map is tiny everywhere (sigmoid(-7) = 9e-4)
    # every case was held to its own measured bound, and that bound is below 1e-3 of a score's range
    assert all(c["max_abs"] <= c["bound"] for c in m["cases"]) and m["bound_of_range"] < 1e-3, m["cases"]
    # what the relative table this replaces demanded (1e-4 of max|source|) is below what float32
    # guarantees for this source: its own float32 error exceeds it (the user's detector failed so)
    assert m["bound"] > 1e-4 * m["ref_max_abs"], m
    wrong = {
        "BGR instead of RGB": dict(feed=lambda x: np.ascontiguousarray(x[:, ::-1])),
        "normalisation left out": dict(feed=lambda x: (x * np.float32(0.25) + np.float32(0.4)).astype(np.float32)),
        "H and W swapped": dict(feed=lambda x: np.ascontiguousarray(np.swapaxes(x, 2, 3)).reshape(x.shape)),
        "1e-3 of the range off": dict(out=lambda y: _perturb(y, 1.0)),  # a score's range is [0, 1]
    }
    for what, change in wrong.items():
        bad = _verify(path, model, cases, loader=lambda p, c=change: Wrapped(edgekit.load(p), **c))
        assert bad["status"] == "failed" and "> bound" in bad["reason"], (what, bad.get("reason"))


@pytest.mark.parametrize("shape,act", [((1, 3, 8, 8), "relu"), ((1, 4, 12, 10), "gelu"), ((3, 3, 16, 16), "tanh")])
def test_errors_of_a_thousandth_of_the_range_fail_on_generated_models(tmp_path, shape, act):
    """Generated conv nets of several shapes and activations: the onnxruntime artifact passes its
    measured bound; the same artifact 1e-3 of the output's range off at one element fails."""
    import edgekit

    torch.manual_seed(shape[1])
    layer = {"relu": torch.nn.ReLU(), "gelu": torch.nn.GELU(), "tanh": torch.nn.Tanh()}[act]
    model = torch.nn.Sequential(torch.nn.Conv2d(shape[1], 8, 3, padding=1), layer, torch.nn.Conv2d(8, 5, 1)).eval()
    path = _onnx(model, shape, tmp_path / "m.onnx")
    cases = V.make_cases([shape], [np.dtype(np.float32)], task="other", preprocess={}, fold=None)
    v = _verify(path, model, cases)
    assert v["status"] == "passed", v.get("reason")
    bad = _verify(path, model, cases, loader=lambda p: Wrapped(edgekit.load(p), out=_perturb))
    assert bad["status"] == "failed" and "output 'output' max abs error" in bad["reason"], bad.get("reason")


def test_constant_output_makes_cosine_and_psnr_not_meaningful():
    """An output that is 0 on every case (a ReLU of a negative input): cosine and PSNR are 'not
    meaningful' there (neither passed nor failed), and the max-abs bound still catches an artifact
    that is not 0."""

    def ref32(xs):
        x = np.asarray(xs[0], np.float32)
        return [np.maximum(-np.abs(x) - np.float32(1), np.float32(0)), x * np.float32(2)]

    def ref64(xs):
        x = np.asarray(xs[0], np.float64)
        return [np.maximum(-np.abs(x) - 1, 0), x * 2]

    class Session:
        def __init__(self, eps):
            self.eps = np.float32(eps)
            self.inputs = [type("S", (), {"name": "input"})()]
            self.outputs = [type("S", (), {"name": n})() for n in ("zero", "image")]

        def run(self, feed):
            z, y = ref32([feed["input"]])
            return {"zero": z + self.eps, "image": y}

        def close(self):
            pass

    cases = V.make_cases([(1, 3, 6, 6)], [np.dtype(np.float32)], task="super-resolve", preprocess={}, fold=None)
    v, _ = V.verify_artifact(None, cases, ref32, output_names=["zero", "image"], precision="fp32", task="super-resolve",
                             loader=lambda p: Session(0.0), reference64=ref64)
    z = v["outputs"]["zero"]
    assert v["status"] == "passed", v.get("reason")
    assert z["cosine"] == NOT_MEANINGFUL and z["psnr_db"] == NOT_MEANINGFUL
    assert z["not_meaningful"]["cosine"] == [c.name for c in cases]
    assert all(c["cosine"] == NOT_MEANINGFUL and c["max_abs"] <= c["bound"] for c in z["cases"])
    assert any("'zero'" in n and "not meaningful" in n for n in v["notes"])
    assert isinstance(v["outputs"]["image"]["cosine"], float)  # the other output keeps its numbers
    assert "cosine not meaningful" in V.metric_line(type("A", (), {"verification": v})())  # first output: zero
    bad, _ = V.verify_artifact(None, cases, ref32, output_names=["zero", "image"], precision="fp32",
                               task="super-resolve", loader=lambda p: Session(1e-6), reference64=ref64)
    # a bound of 8 u max|0| = 0: any non-zero value fails
    assert bad["status"] == "failed" and "output 'zero' max abs error" in bad["reason"]


def test_fp16_bound_is_the_measured_fp32_bound_scaled_by_float16_round_off():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 3, 3)).eval()
    cases = V.make_cases([(1, 3, 10, 10)], [np.dtype(np.float32)], task="other", preprocess={}, fold=None)
    ref, ref64 = torch_reference(model), torch_reference64(model)

    class Half:
        inputs = [type("S", (), {"name": "input"})()]
        outputs = [type("S", (), {"name": "output"})()]

        def run(self, feed):  # the model in float16 arithmetic: what an fp16 artifact computes
            half = __import__("copy").deepcopy(model).half()
            with torch.no_grad():
                return {"output": half(torch.from_numpy(feed["input"]).half()).float().numpy()}

    v, _ = V.verify_artifact(None, cases, ref, output_names=["output"], precision="fp16", task="other",
                             loader=lambda p: Half(), reference64=ref64)
    assert v["status"] == "passed", v.get("reason")
    for rec, case in zip(v["outputs"]["output"]["cases"], cases):
        want = Bound.measured(ref(case.source)[0], ref64(case.source)[0]).atol * FP16_SCALE
        assert_close(rec["bound"], want, Bound.exact("the same float64 products"), case.name)
        assert rec["max_abs"] > Bound.measured(ref(case.source)[0], ref64(case.source)[0]).atol  # really fp16


def _scores_session(moved):
    """A session returning a fixed score map with some scores moved."""

    class S:
        inputs = [type("S", (), {"name": "input"})()]
        outputs = [type("S", (), {"name": "det/scores"})()]

        def run(self, feed):
            return {"det/scores": moved(feed["input"])}

    return S()


def _score_ref(xs):
    x = np.asarray(xs[0], np.float32)
    return [(1 / (1 + np.exp(-(x * 4 - 2)))).astype(np.float32)]


@pytest.mark.parametrize("frm,to", [(0.18, 0.31), (0.91, 0.02)])
def test_int8_score_moves_fail_with_the_output_named_and_what_to_try(frm, to):
    cases = V.make_cases([(1, 1, 4, 4)], [np.dtype(np.float32)], task="other", preprocess={}, fold=None, normal=False)

    def moved(x):
        y = _score_ref([x])[0].copy()
        y.flat[int(np.argmin(np.abs(y - frm)))] = to  # the score nearest frm becomes to
        return y

    def ref(xs):
        y = _score_ref(xs)[0].copy()
        y.flat[int(np.argmin(np.abs(y - frm)))] = frm
        return [y]

    v, _ = V.verify_artifact(None, cases, ref, output_names=["det/scores"], precision="int8", task="other",
                             loader=lambda p: _scores_session(lambda x: moved(x)))
    assert v["status"] == "failed"
    line = v["reason"]
    assert f"output 'det/scores': int8 moves a score from {frm:.3g} to {to:.3g}" in line, line
    assert "--calibration" in v["hint"] and "int16" in v["hint"] and "float" in v["hint"]
    # a small move is kept: int8 step-sized noise on every score
    kept, _ = V.verify_artifact(None, cases, _score_ref, output_names=["det/scores"], precision="int8", task="other",
                                loader=lambda p: _scores_session(lambda x: np.round(_score_ref([x])[0] * 255) / 255))
    assert kept["status"] == "passed" and kept["outputs"]["det/scores"]["score"]["max_delta"] <= SCORE_ABS


def test_int8_classifier_judged_on_softmax_scores_and_top1():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 5)).astype(np.float32) * 3

    def logits(xs):
        return [np.asarray(xs[0], np.float32).reshape(1, -1) @ w]

    cases = V.make_cases([(1, 12)], [np.dtype(np.float32)], task="classify", preprocess={}, fold=None, normal=False)
    swap = lambda y: y[:, ::-1].copy()  # noqa: E731 - the classes reversed: top-1 and scores move
    bad, _ = V.verify_artifact(None, cases, logits, output_names=["logits"], precision="int8", task="classify",
                               loader=lambda p: type("S", (), {
                                   "inputs": [type("T", (), {"name": "x"})()],
                                   "outputs": [type("T", (), {"name": "logits"})()],
                                   "run": lambda self, f: {"logits": swap(logits([f["x"]])[0])}})())
    assert bad["status"] == "failed" and bad["outputs"]["logits"]["score"]["kind"] == "logits"
    assert "moves a score" in bad["reason"]


def test_random_cases_are_drawn_in_the_declared_domain():
    """A model that expects [-1, 1] gets random inputs in [-1, 1]; one with mean/std gets random
    pixels normalised by them (so (x * std + mean) is a pixel / 255 in the value range)."""
    shape = (1, 3, 6, 6)
    cases = V.make_cases([shape], [np.dtype(np.float32)], task="other", preprocess={"value_range": [-1.0, 1.0]},
                         fold=None, normal=False)
    randoms = [c for c in cases if c.origin == "random"]
    assert randoms and all(-1.0 <= c.source[0].min() and c.source[0].max() <= 1.0 for c in randoms)
    assert any(c.source[0].min() < -0.5 for c in randoms)  # not [0, 1]: the negative half is used
    pre = {"value_range": [-1.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    cases = V.make_cases([shape], [np.dtype(np.float32)], task="other", preprocess=pre, fold=None, normal=False)
    a, b = FoldSpec.from_preprocess(pre).affine(3)
    for c in (c for c in cases if c.origin == "random"):
        assert "normalised as declared" in c.what
        px = (c.source[0].astype(np.float64) - b[None, :, None, None]) / a[None, :, None, None]
        # float32 rounding of values of magnitude <= 3, divided by a = 2/255/0.5
        assert_close(px, np.rint(px), Bound.roundoff(3.0 / a.min(), depth=2), "pixels behind the random case")
        assert 0 <= np.rint(px).min() and np.rint(px).max() <= 255
    record = V.describe_cases(cases, pre)
    assert record["counts"]["random"] == 3 and "mean [0.5, 0.5, 0.5]" in record["domain"]


def test_coreml_name_map_follows_coremltools_sanitising():
    names = V.coreml_name_map(["image.in", "0x"], ["softmax_11.tmp_0", "det/sigmoid.map", "int8", "a.b", "a_b"])
    assert names == {"image.in": "image_in", "0x": "var_0x", "softmax_11.tmp_0": "softmax_11_tmp_0",
                     "det/sigmoid.map": "det_sigmoid_map", "int8": "int8_workaround", "a.b": "a_b", "a_b": "a_b"}
    assert V.coreml_name_map([], ["a.b", "a/b"]) == {"a.b": "a_b", "a/b": "a_b_0"}
    try:  # the rule is coremltools' own: check it against the installed version where it is importable
        from coremltools.converters.mil.mil.passes.defs.preprocess import NameSanitizer
    except Exception:  # noqa: BLE001 - no coremltools: the table above stands
        return
    sanitizer = NameSanitizer(prefix="var_")
    for n in ["image.in", "0x", "softmax_11.tmp_0", "det/sigmoid.map", "int8", "a.b", "a/b"]:
        assert sanitizer.sanitize_name(n) == V.coreml_name_map(["image.in", "0x", "softmax_11.tmp_0",
                                                                "det/sigmoid.map", "int8", "a.b", "a/b"], [])[n], n
