"""End to end (slow): the video passes, then litert-torch, torch.onnx (dynamo) and coremltools on
both zoo decoders. The TFLite has no CONV_3D, no tensor above rank 4, no GATHER*/BROADCAST_TO and
matches the source; the ONNX is rank ≤ 4 and matches the source; CoreML converts."""

from functools import lru_cache

import numpy as np
import pytest
import torch

from edgekit import zoo
from edgekit.runtimes.modelfile import read_model
from _video_models import export, latent, to_artifact, from_artifact, video_pipeline
from numeric import assert_matches

pytestmark = [pytest.mark.slow, pytest.mark.numeric]
Z = (1, 16, 2, 8, 8)
DECODERS = {"ref": ("video_decoder_ref", {}), "turbo": ("video_decoder_turbo", {}),
            "turbo-permute8d": ("video_decoder_turbo", {"upsample": "permute8d"})}


@lru_cache(maxsize=None)
def rewritten(key):
    name, kw = DECODERS[key]
    model = zoo.create(name, **kw).eval()
    out, applied, _ = video_pipeline(export(model, latent(Z)))
    return model, out


@lru_cache(maxsize=None)
def tflite_file(key, tmp):
    import litert_torch

    _, out = rewritten(key)
    mod = out.module()
    mod.training = False
    path = f"{tmp}/{key}.tflite"
    litert_torch.convert(mod, (to_artifact(out, latent(Z)),)).export(path)
    return path


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("video_e2e"))


@pytest.mark.parametrize("key", list(DECODERS))
def test_tflite_npu_clean_and_exact(key, tmp):
    from ai_edge_litert.interpreter import Interpreter

    model, out = rewritten(key)
    path = tflite_file(key, tmp)
    info = read_model(path)
    hist = info.op_histogram
    bad = {k: v for k, v in hist.items() if k in ("CONV_3D", "BROADCAST_TO") or k.startswith("GATHER")}
    assert bad == {} and info.max_rank <= 4, (bad, info.max_rank)
    z = latent(Z, seed=5)
    it = Interpreter(path)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], to_artifact(out, z).numpy())
    it.invoke()
    y = torch.from_numpy(np.array(it.get_tensor(it.get_output_details()[0]["index"])))
    with torch.no_grad():
        assert_matches(from_artifact(out, y), model, z, what=f"{key} tflite")


@pytest.mark.parametrize("key", ["ref", "turbo"])
def test_onnx_rank4_and_exact(key, tmp):
    import onnxruntime as ort

    model, out = rewritten(key)
    path = f"{tmp}/{key}.onnx"
    torch.onnx.export(out, (to_artifact(out, latent(Z)),), dynamo=True).save(path)
    info = read_model(path)
    assert info.max_rank <= 4 and "Gather" not in info.op_histogram and "Expand" not in info.op_histogram
    sess = ort.InferenceSession(path)
    z = latent(Z, seed=6)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: to_artifact(out, z).numpy()})
    with torch.no_grad():
        assert_matches(from_artifact(out, torch.from_numpy(y)), model, z, what=f"{key} onnx")


@pytest.mark.parametrize("key", ["ref", "turbo"])
def test_coreml_converts(key):
    ct = pytest.importorskip("coremltools")
    _, out = rewritten(key)
    ml = ct.convert(out.run_decompositions({}), convert_to="mlprogram")
    assert ml is not None
