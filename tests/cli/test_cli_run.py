"""`edgekit run`: outputs equal the PyTorch source; images are preprocessed as the manifest says."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numeric import THREADS, Bound, assert_close, assert_matches, fp32_bound

pytestmark = pytest.mark.numeric


def _torch_out(module, *arrays):
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(a) for a in arrays))
    return [o.numpy() for o in out] if isinstance(out, tuple) else out.numpy()


def _run_json(cli, *args) -> dict:
    result = cli("run", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("key", ["classifier_onnx", "classifier_tflite"])
def test_run_npy_matches_torch(cli, models, tmp_path, key):
    if key not in models.files:
        pytest.skip(f"{key} not built (converter missing)")
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    s = _run_json(cli, models[key], "--input", tmp_path / "x.npy", "--output", out, "--threads", str(THREADS))
    y = np.load(out)
    assert_matches(y, models.torch["classifier"], x, what=key)
    assert s["outputs"][0]["shape"] == [1, 5]
    # the summary describes the saved array (float(min), float(max)); JSON keeps a float exactly
    assert s["outputs"][0]["min"] == float(y.min()) and s["outputs"][0]["max"] == float(y.max())
    assert s["latency_ms"] > 0 and s["threads"] == THREADS and s["saved"] == str(out)


def test_run_default_output_is_saved_in_cwd(cli, models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = np.zeros((1, 3, 16, 16), np.float32)
    np.save(tmp_path / "zeros.npy", x)
    result = cli("run", models["classifier_onnx"], "-i", tmp_path / "zeros.npy")
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / "zeros.out.npy"
    assert saved.is_file() and "logits" in result.stdout and str(saved) in result.stdout
    assert_matches(np.load(saved), models.torch["classifier"], x, what="zeros")


def test_run_two_outputs_go_to_npz(cli, models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    y = np.full((1, 4), 2, np.float32)
    np.savez(tmp_path / "feed.npz", x=x, y=y)
    s = _run_json(cli, models["two_in_onnx"], "-i", tmp_path / "feed.npz")
    assert s["saved"].endswith("feed.out.npz")
    with np.load(s["saved"]) as out:  # one float32 addition / multiplication: correctly rounded, exact
        np.testing.assert_array_equal(out["sum"], x + y)
        np.testing.assert_array_equal(out["prod"], x * y)


def _resize_weights(n_in: int, n_out: int, area: bool) -> np.ndarray:
    """(n_out, n_in) resampling matrix: area averaging (each output pixel the mean of the input
    interval it covers, fractional pixels weighted by coverage: OpenCV's INTER_AREA), or bilinear
    with half-pixel centres, edges clamped (OpenCV's INTER_LINEAR)."""
    w = np.zeros((n_out, n_in))
    s = n_in / n_out
    for i in range(n_out):
        if area:
            lo, hi = i * s, (i + 1) * s
            for k in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
                w[i, k] = max(0.0, min(hi, k + 1) - max(lo, k)) / s
        else:
            x = min(max((i + 0.5) * s - 0.5, 0.0), n_in - 1.0)
            k = int(np.floor(x))
            w[i, k] += 1 - (x - k)
            w[i, min(k + 1, n_in - 1)] += x - k
    return w


def _reference_preprocess(img: np.ndarray, size: int, mean, std) -> tuple[np.ndarray, float]:
    """Independent of edgekit.preprocess, in float64: what its table says for a classifier.
    Centre crop to the model's (square) aspect, shrink by area averaging, round to 8 bits, scale to
    [0, 1], (x - mean) / std, NCHW. Also returns how close any resampled value came to a rounding
    boundary (x.5), where float32 noise in the resize could flip a pixel by one level."""
    h, w = img.shape[:2]
    side = min(h, w)
    img = img[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    area = size <= side
    wy, wx = _resize_weights(img.shape[0], size, area), _resize_weights(img.shape[1], size, area)
    resampled = np.einsum("ih,hwc,jw->ijc", wy, img.astype(np.float64), wx)
    margin = float(np.abs(np.abs(resampled - np.floor(resampled)) - 0.5).min())
    x = (np.rint(resampled) / 255.0 - np.asarray(mean)) / np.asarray(std)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), margin


def test_run_bundle_image_top5(cli, models, image_file):
    from edgekit.imageio import read_image

    s = _run_json(cli, models["bundle"], "--input", image_file, "--output", image_file.parent / "logits.npy")
    assert [t["label"] for t in s["top5"]] and len(s["top5"]) == 5
    scores = [t["score"] for t in s["top5"]]
    assert scores == sorted(scores, reverse=True)
    # all five classes: a float64 softmax sums to 1 up to the round-off of exp, / and a 5-term sum
    assert_close(sum(scores), 1.0, Bound.roundoff(1.0, reduction=5, depth=3, unit=2.0 ** -53), "sum of top-5 scores")
    assert any("mean" in n for n in s["input_notes"])
    logits = np.load(image_file.parent / "logits.npy")
    # The label ranking follows the logits the model produced.
    assert [t["index"] for t in s["top5"]] == list(np.argsort(-logits[0], kind="stable")[:5])
    assert {t["label"] for t in s["top5"]} == set(models.labels)
    # Preprocessing matches an independent implementation of the same steps.
    clf = models.torch["classifier"]
    x, margin = _reference_preprocess(read_image(image_file), 16, models.mean, models.std)
    x32 = x.astype(np.float32)
    # The 8-bit pixels are the same on both sides unless float32 noise in the resize (values up to
    # 255, a few taps per axis) reaches a rounding boundary; a flipped pixel moves the input by
    # one level, 1 / (255 std).
    resize_noise = Bound.roundoff(255.0, reduction=16, depth=2).atol
    flip = 1 / (255 * min(models.std)) if margin <= resize_noise else 0.0
    # The float tensors then differ by the float32 rounding of scaling and normalising (three
    # roundings of values up to max|x|), and that difference reaches the logits through the model
    # at most Lipschitz-amplified: conv (sum of |weights|), ReLU and the spatial mean (1), linear.
    dx = Bound.roundoff(float(np.abs(x).max()), reduction=1, depth=3).atol + flip
    lip = float((clf.fc.weight.detach().abs() @ clf.conv.weight.detach().abs().sum((1, 2, 3))).max())
    run = fp32_bound(clf, x32)
    bound = Bound(run.atol + lip * dx, f"[{run.how}] + Lipschitz {lip:.3g} x input difference {dx:.3g}")
    assert_close(logits, _torch_out(clf, x32), bound, "bundle logits vs independent preprocessing")
    human = cli("run", models["bundle"], "--input", image_file, "--output", image_file.parent / "l2.npy")
    assert human.exit_code == 0 and "Top-5" in human.stdout and models.labels[s["top5"][0]["index"]] in human.stdout


def test_run_image_in_image_out(cli, models, tmp_path, image_file):
    from edgekit.imageio import read_image
    from edgekit.preprocess import resize

    out = tmp_path / "hr.png"
    s = _run_json(cli, models["sr_onnx"], "-i", image_file, "-o", out)
    assert s["outputs"][0]["shape"] == [1, 3, 16, 16]
    hr = read_image(out)
    assert hr.shape == (16, 16, 3)
    # The same image through torch: a bare model file has no task, so the image is stretched to
    # the 8x8 input (the table's default policy), [0, 1] floats, NCHW.
    x = (resize(read_image(image_file), 8, 8).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    ref = _torch_out(models.torch["sr"], np.ascontiguousarray(x))[0].transpose(1, 2, 0)
    expected = np.clip(np.rint(ref * 255), 0, 255)
    assert_close(hr, expected, Bound.quantised(1, "uint8 pixels"), "sr png")


@pytest.mark.parametrize("case", ["wrong_name", "wrong_shape", "wrong_dtype", "npy_for_two_inputs", "image_for_logits",
                                  "missing_input", "npy_output_for_two", "image_output_for_logits", "unknown_backend",
                                  "wrong_backend_for_format", "corrupt_npy"])
def test_run_errors_are_one_line(cli, models, tmp_path, case, one_line_error, image_file):
    x4 = np.zeros((1, 4), np.float32)
    code, needles = 1, []
    model, args = models["two_in_onnx"], []
    if case == "wrong_name":
        np.savez(tmp_path / "f.npz", x=x4, z=x4)
        args, needles = ["-i", tmp_path / "f.npz"], ["'z'", "'y'"]
    elif case == "wrong_shape":
        model = models["classifier_onnx"]
        np.save(tmp_path / "f.npy", np.zeros((3, 16, 16), np.float32))
        args, needles = ["-i", tmp_path / "f.npy"], ["shape [3, 16, 16]", "[1, 3, 16, 16]"]
    elif case == "wrong_dtype":
        model = models["classifier_onnx"]
        np.save(tmp_path / "f.npy", np.zeros((1, 3, 16, 16), np.float64))
        args, needles = ["-i", tmp_path / "f.npy"], ["float64", "float32"]
    elif case == "npy_for_two_inputs":
        np.save(tmp_path / "f.npy", x4)
        args, needles = ["-i", tmp_path / "f.npy"], ["2 inputs", "f.npy"]
    elif case == "image_for_logits":
        args, needles = ["-i", image_file], ["takes 2", "gradient.png"]
    elif case == "missing_input":
        args, needles = ["-i", tmp_path / "nothing.npy"], ["nothing.npy"]
    elif case == "npy_output_for_two":
        np.savez(tmp_path / "f.npz", x=x4, y=x4)
        args, needles, code = ["-i", tmp_path / "f.npz", "-o", tmp_path / "o.npy"], ["2 outputs", ".npz"], 2
    elif case == "image_output_for_logits":
        model = models["classifier_onnx"]
        np.save(tmp_path / "f.npy", np.zeros((1, 3, 16, 16), np.float32))
        args, code = ["-i", tmp_path / "f.npy", "-o", tmp_path / "o.png"], 2
        needles = ["no output looks like an image", "o.png"]
    elif case == "unknown_backend":
        np.savez(tmp_path / "f.npz", x=x4, y=x4)
        args, needles, code = ["-i", tmp_path / "f.npz", "--backend", "tensorrt"], ["tensorrt"], 2
    elif case == "wrong_backend_for_format":
        np.savez(tmp_path / "f.npz", x=x4, y=x4)
        args, needles, code = ["-i", tmp_path / "f.npz", "--backend", "litert"], ["litert"], 2
    else:
        (tmp_path / "f.npy").write_bytes(b"\x93NUMPY garbage")
        args, needles = ["-i", tmp_path / "f.npy"], ["f.npy"]
    result = cli("run", model, *args)
    one_line_error(result, code, *needles)
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.png").exists()


def test_run_without_input_is_a_usage_error(cli, models):
    result = cli("run", models["classifier_onnx"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
