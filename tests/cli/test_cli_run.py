"""`edgekit run`: outputs equal the PyTorch source; images are preprocessed as the manifest says."""

from __future__ import annotations

import json

import numpy as np
import pytest


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
def test_run_npy_matches_torch(cli, models, tmp_path, key, assert_close):
    if key not in models.files:
        pytest.skip(f"{key} not built (converter missing)")
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    s = _run_json(cli, models[key], "--input", tmp_path / "x.npy", "--output", out, "--threads", "1")
    y = np.load(out)
    assert_close(y, _torch_out(models.torch["classifier"], x), atol=1e-4, what=key)
    assert s["outputs"][0]["shape"] == [1, 5]
    assert s["outputs"][0]["min"] == pytest.approx(float(y.min()))
    assert s["outputs"][0]["max"] == pytest.approx(float(y.max()))
    assert s["latency_ms"] > 0 and s["threads"] == 1 and s["saved"] == str(out)


def test_run_default_output_is_saved_in_cwd(cli, models, tmp_path, monkeypatch, assert_close):
    monkeypatch.chdir(tmp_path)
    x = np.zeros((1, 3, 16, 16), np.float32)
    np.save(tmp_path / "zeros.npy", x)
    result = cli("run", models["classifier_onnx"], "-i", tmp_path / "zeros.npy")
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / "zeros.out.npy"
    assert saved.is_file() and "logits" in result.stdout and str(saved) in result.stdout
    assert_close(np.load(saved), _torch_out(models.torch["classifier"], x), atol=1e-5, what="zeros")


def test_run_two_outputs_go_to_npz(cli, models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    y = np.full((1, 4), 2, np.float32)
    np.savez(tmp_path / "feed.npz", x=x, y=y)
    s = _run_json(cli, models["two_in_onnx"], "-i", tmp_path / "feed.npz")
    assert s["saved"].endswith("feed.out.npz")
    with np.load(s["saved"]) as out:
        np.testing.assert_array_equal(out["sum"], x + y)
        np.testing.assert_array_equal(out["prod"], x * y)


def _reference_preprocess(img: np.ndarray, size: int, mean, std) -> np.ndarray:
    """Independent of edgekit.imageio: Pillow bilinear resize (with reducing box filter) is not
    what OpenCV INTER_AREA does, so compare through a tolerance on the logits instead."""
    from PIL import Image

    small = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), np.float32) / 255.0
    x = (small - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def test_run_bundle_image_top5(cli, models, image_file, assert_close):
    from edgekit.imageio import read_image

    s = _run_json(cli, models["bundle"], "--input", image_file, "--output", image_file.parent / "logits.npy")
    assert [t["label"] for t in s["top5"]] and len(s["top5"]) == 5
    scores = [t["score"] for t in s["top5"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert any("mean" in n for n in s["input_notes"])
    logits = np.load(image_file.parent / "logits.npy")
    # The label ranking follows the logits the model produced.
    assert [t["index"] for t in s["top5"]] == list(np.argsort(-logits[0], kind="stable")[:5])
    assert {t["label"] for t in s["top5"]} == set(models.labels)
    # Preprocessing matches an independent implementation (resize filters differ slightly).
    ref = _torch_out(models.torch["classifier"], _reference_preprocess(read_image(image_file), 16, models.mean, models.std))
    assert_close(logits, ref, atol=0.05, what="bundle logits vs independent preprocessing")
    human = cli("run", models["bundle"], "--input", image_file, "--output", image_file.parent / "l2.npy")
    assert human.exit_code == 0 and "Top-5" in human.stdout and models.labels[s["top5"][0]["index"]] in human.stdout


def test_run_image_in_image_out(cli, models, tmp_path, image_file, assert_close):
    from edgekit.imageio import read_image, resize

    out = tmp_path / "hr.png"
    s = _run_json(cli, models["sr_onnx"], "-i", image_file, "-o", out)
    assert s["outputs"][0]["shape"] == [1, 3, 16, 16]
    hr = read_image(out)
    assert hr.shape == (16, 16, 3)
    # The same image through torch: resize to the 8x8 input, [0, 1] floats, NCHW.
    x = (resize(read_image(image_file), 8, 8).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    ref = _torch_out(models.torch["sr"], np.ascontiguousarray(x))[0].transpose(1, 2, 0)
    expected = np.clip(np.rint(ref * 255), 0, 255)
    assert_close(hr.astype(np.float32), expected, atol=1.0, what="sr png")


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
