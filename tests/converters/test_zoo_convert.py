"""Every zoo model converts to all three formats and verifies (slow: one conversion per model).

Small inputs keep it affordable: classifiers at 96×96, SR nets at 32×32, video decoders at an
8×8 latent. The video decoders are 5-D (NCTHW, Conv3d): a format whose converter cannot
express one of their ops must fail *cleanly* — the artifact is recorded as export-failed
with a one-line reason pointing at the NPU rewrites (--target generic-npu) — and the other formats must
still be written and verified.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from numeric import assert_verified  # noqa: E402

from edgekit import zoo  # noqa: E402
from edgekit.bundle import read_manifest  # noqa: E402

pytestmark = pytest.mark.numeric

SMALL = {"classify": (1, 3, 96, 96), "super-resolve": (1, 3, 32, 32), "decode-video": (1, 16, 2, 8, 8)}


def _small_shape(name: str) -> tuple[int, ...]:
    card = zoo.card(name)
    shape = SMALL[card.task]
    return (1, card.input_shape[1], *shape[2:])


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.list_models())
def test_zoo_model_converts_to_every_format(converted, name):
    r = converted(name, formats="onnx,tflite,coreml", input_shapes=[_small_shape(name)], bench_runs=0)
    m = read_manifest(r.bundle)
    card = zoo.card(name)
    assert m.task == card.task
    by_fmt = {a.format: a for a in r.artifacts}
    for fmt, st in by_fmt.items():
        if st.status == "export-failed":
            assert card.task == "decode-video", f"{name} {fmt}: {st.reason}"
            assert "--target generic-npu" in st.reason and "\n" not in st.reason
            continue
        assert st.status in ("passed", "skipped"), f"{name} {fmt}: {st.status} {st.reason}"
        art = m.artifact_for(fmt)
        assert art.inputs[0].layout == card.layout
        if st.status == "passed":  # every output within the tolerance the verification recorded
            assert_verified(art.verification, f"{name} {fmt}")
    # ONNX expresses every zoo model.
    assert by_fmt["onnx"].status == "passed"
    if card.task != "decode-video":
        assert by_fmt["tflite"].status == "passed" and by_fmt["coreml"].status in ("passed", "skipped")


@pytest.mark.slow
def test_mobilenet_v2_with_user_weights_via_cli(tmp_path):
    """`edgekit convert mobilenet_v2 --weights tv.pth` with a torchvision-layout state dict whose
    BatchNorm statistics are not the identity (so logits are O(1) and top-1 is decisive)."""
    import json

    import torch
    from typer.testing import CliRunner

    from edgekit.cli import app

    model = zoo.create("mobilenet_v2")
    g = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = torch.rand(v.shape, generator=g) * 0.5 + 0.5
        elif k.endswith("running_mean") or k.endswith(".bias"):
            state[k] = (torch.rand(v.shape, generator=g) - 0.5) * 0.2
        elif k.startswith("classifier") and k.endswith("weight"):
            state[k] = torch.randn(v.shape, generator=g) * 0.05
    weights = tmp_path / "tv.pth"
    torch.save(state, weights)
    out = tmp_path / "mnv2"
    r = CliRunner().invoke(app, ["convert", "mobilenet_v2", "--weights", str(weights), "--to", "onnx,tflite,coreml",
                                 "--out", str(out), "--input-shape", "1x3x96x96", "--json", "--bench-runs", "3"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    m = read_manifest(out)
    assert m.source["weights_sha256"] and len(m.preprocess["labels"]) == 1000
    for fmt in ("onnx", "tflite"):
        v = m.artifact_for(fmt).verification
        assert_verified(v, f"mobilenet_v2 {fmt}")
        # counts, not tolerances: top-1 was decisive (and agreed) on at least 3 of the verification cases
        assert v["top1_agreement"] == 1.0 and v["top1_decisive_cases"] >= 3
        # non-vacuity, not a bound: the BatchNorm statistics above give O(1) logits; 0.1 only rules
        # out near-zero logits, for which max_rel and top-1 would say nothing
        assert v["outputs"]["logits"]["ref_max_abs"] > 0.1
    assert {a["format"]: a["status"] for a in d["artifacts"]}["coreml"] in ("passed", "skipped")


@pytest.mark.slow
def test_quicksrnet_pretrained(converted):
    card = zoo.card("quicksrnet_small_x2")
    if card.weights is None:
        pytest.skip("quicksrnet_small_x2 ships no weights yet")
    r = converted("quicksrnet_small_x2", formats="onnx,tflite,coreml", pretrained=True, input_shapes=[(1, 3, 48, 64)])
    assert r.exit_code == 0, [a.to_dict() for a in r.artifacts]
    m = read_manifest(r.bundle)
    assert m.source["pretrained"] is True and m.source["weights_sha256"] == card.weights_sha256
    for fmt in ("onnx", "tflite"):
        assert_verified(m.artifact_for(fmt).verification, f"quicksrnet_small_x2 {fmt}")
