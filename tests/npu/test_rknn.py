"""rknn-toolkit2 through a separate interpreter: the protocol, the op table, agreement and errors.

CI has no rknn-toolkit2 interpreter (the toolkit pins NumPy <= 1.26 and torch <= 2.4), so most
tests stand one in: edgekit's own Python with a stand-in ``rknn`` package on its path that
builds nothing, prints the toolkit's op table and "simulates" in float16 through onnxruntime.
That exercises everything edgekit does (the job, the worker, the log parsing, the comparison, the
one-line errors). ``test_real_toolkit`` runs the real one when ``EDGEKIT_RKNN_PYTHON`` names it.
"""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest
import torch

from edgekit import rknn
from edgekit._rknn_worker import parse_op_table
from edgekit.errors import EdgekitError, UsageError

# The build log's op table as rknn-toolkit2 2.5.0 prints it (verbose) for quicksrnet_small_x2 at 128x128.
TABLE = """\
D RKNN: [14:49:49.929] ------------------------------------------------------------------------------
D RKNN: [14:49:49.929]                          Network Layer Information Table
D RKNN: [14:49:49.929] ------------------------------------------------------------------------------
D RKNN: [14:49:49.929] ID   OpType             DataType Target InputShape                               OutputShape            Cycles(DDR/NPU/Total)    RW(KB)       FullName
D RKNN: [14:49:49.929] ------------------------------------------------------------------------------
D RKNN: [14:49:49.929] 0    InputOperator      FLOAT16  CPU    \\                                        (1,3,128,128)          0/0/0                    0            InputOperator:input
D RKNN: [14:49:49.929] 1    ConvClip           FLOAT16  NPU    (1,3,128,128),(32,3,3,3),(32)            (1,32,128,128)         48686/294912/294912      100          Conv:node_conv2d
D RKNN: [14:49:49.929] 2    ConvTranspose      FLOAT16  NPU    (1,12,128,128),(12,3,2,2)                (1,3,256,256)          110841/262144/262144     512          ConvTranspose:node_pixel_shuffle_2deconv
D RKNN: [14:49:49.929] 3    Sin                FLOAT16  CPU    (1,3,256,256)                            (1,3,256,256)          0/0/0                    768          Sin:node_sin
D RKNN: [14:49:49.929] 4    OutputOperator     FLOAT16  CPU    (1,3,256,256)                            \\                      0/0/0                    2048         OutputOperator:output
D RKNN: [14:49:49.929] ------------------------------------------------------------------------------
D RKNN: [14:49:49.929] <<<<<<<< end: rknn::RKNNModelRegCmdbuildPass
D RKNN: [14:49:49.931] 1   ConvClip       input      FLOAT16   NC1HWC2      (1,3,128,128)  (1,4,128,128,3) | 0x0 0x1 0x1
"""


def test_parse_op_table():
    ops = parse_op_table("\x1b[1;33mI\x1b[0m noise\n" + TABLE)
    assert [o["index"] for o in ops] == [0, 1, 2, 3, 4]  # the memory table after it is not read as ops
    assert [o["on"] for o in ops] == ["cpu", "npu", "npu", "cpu", "cpu"]
    assert ops[1] == {"index": 1, "op": "ConvClip", "dtype": "FLOAT16", "on": "npu",
                      "cycles_ddr_npu_total": [48686, 294912, 294912], "name": "Conv:node_conv2d"}
    assert ops[3]["name"] == "Sin:node_sin"
    assert parse_op_table("no table here") == []


FAKE_RKNN = '''
"""Stand-in for rknn-toolkit2's API (tests only): float16 "simulation" through onnxruntime."""
import os, sys
import numpy as np

TABLE = {table!r}

class RKNN:
    def __init__(self, verbose=False):
        self.verbose = verbose
    def config(self, target_platform=None, **kw):
        self.platform = target_platform
        return 0
    def load_onnx(self, model, **kw):
        import onnx
        m = onnx.load(model)
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) <= 19, "opset > 19"
        self.model = model
        return 0
    def build(self, do_quantization=False, **kw):
        if os.environ.get("FAKE_RKNN_FAIL"):
            print("\\x1b[1;31mE\\x1b[0m build: Unsupported op type 'FancyOp'", flush=True)
            return -1
        os.write(1, TABLE.encode())  # the toolkit's C++ logger writes to the file descriptor
        return 0
    def export_rknn(self, path):
        open(path, "wb").write(b"RKNN fake")
        return 0
    def init_runtime(self, **kw):
        import onnxruntime as ort
        self.sess = ort.InferenceSession(self.model, providers=["CPUExecutionProvider"])
        return 0
    def inference(self, inputs, data_format=None):
        names = [i.name for i in self.sess.get_inputs()]
        feed = {{n: np.asarray(a, np.float16).astype(np.float32) for n, a in zip(names, inputs)}}
        outs = self.sess.run(None, feed)
        if os.environ.get("FAKE_RKNN_WRONG"):
            outs = [o[..., ::-1].copy() for o in outs]
        return [np.asarray(o, np.float16).astype(np.float32) for o in outs]
    def release(self):
        pass
'''


@pytest.fixture(scope="module")
def fake_interpreter(tmp_path_factory):
    """edgekit's Python with a stand-in ``rknn`` package (and its distribution metadata) on its path."""
    root = tmp_path_factory.mktemp("fake_rknn")
    site = root / "site"
    (site / "rknn" / "api").mkdir(parents=True)
    (site / "rknn" / "__init__.py").write_text("")
    (site / "rknn" / "api" / "__init__.py").write_text(FAKE_RKNN.format(table=TABLE.replace(
        "Sin                FLOAT16  CPU", "Sin                FLOAT16  NPU")))
    dist = site / "rknn_toolkit2-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rknn-toolkit2\nVersion: 0.0.1\n")
    script = root / "python"
    script.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    script.chmod(0o755)
    return str(script)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3 * 4, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(torch.relu(self.conv(x)))


@pytest.fixture(scope="module")
def sr_bundle(tmp_path_factory):
    """A small fp32 ONNX super-resolution bundle made by edgekit convert."""
    from edgekit.converters.api import convert

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("rknn_bundle") / "sr"
    convert(_Net().eval(), out=out, formats=("onnx",), input_shapes=[(1, 3, 16, 16)], task="super-resolve",
            bench_runs=0)
    return out


def test_rknn_check_through_the_worker(sr_bundle, fake_interpreter, tmp_path, monkeypatch):
    monkeypatch.delenv("FAKE_RKNN_FAIL", raising=False)
    monkeypatch.delenv("FAKE_RKNN_WRONG", raising=False)
    r = rknn.rknn_check(sr_bundle, "rk3588", python=fake_interpreter, rknn_out=tmp_path / "m.rknn")
    assert (tmp_path / "m.rknn").read_bytes() == b"RKNN fake"
    assert r["compiler"] == {"name": "rknn-toolkit2", "version": "0.0.1"}
    assert r["ops"]["total"] == 3 and r["ops"]["npu"] == 3 and r["ops"]["cpu"] == 0  # I/O operators not counted
    assert r["opset"]["source"] >= 18
    ag = r["agreement"]
    assert ag["status"] == "passed", ag["failures"]
    assert {c["case"] for c in ag["cases"]} >= {"random-0", "random-1"} and all(c["psnr_db"] > 40 for c in ag["cases"])


def test_rknn_check_reports_wrong_outputs(sr_bundle, fake_interpreter, monkeypatch):
    monkeypatch.setenv("FAKE_RKNN_WRONG", "1")
    r = rknn.rknn_check(sr_bundle, "rk3588", python=fake_interpreter)
    assert r["agreement"]["status"] == "failed"
    assert "PSNR" in r["agreement"]["failures"][0] and "random-0" in r["agreement"]["failures"][0]


def test_rknn_check_errors(sr_bundle, fake_interpreter, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RKNN_FAIL", "1")
    with pytest.raises(EdgekitError, match=r"rknn-toolkit2 \(rk3588\): rknn-toolkit2 build returned -1: "
                                           r"build: Unsupported op type 'FancyOp'") as e:
        rknn.rknn_check(sr_bundle, "rk3588", python=fake_interpreter)
    assert "\n" not in str(e.value)
    monkeypatch.delenv("EDGEKIT_RKNN_PYTHON", raising=False)
    with pytest.raises(UsageError, match="--rknn-python PATH or set EDGEKIT_RKNN_PYTHON"):
        rknn.rknn_check(sr_bundle, "rk3588")
    with pytest.raises(UsageError, match="unknown Rockchip platform 'rk9999'"):
        rknn.rknn_check(sr_bundle, "rk9999", python=fake_interpreter)
    with pytest.raises(EdgekitError, match="cannot start"):
        rknn.rknn_check(sr_bundle, "rk3588", python=str(tmp_path / "no-python"))


def test_agreement_criteria():
    ref = np.linspace(0, 1, 40, dtype=np.float32).reshape(1, 40)
    assert rknn.agreement([[ref]], [[ref + 1e-4]], "super-resolve", ["c"])["status"] == "passed"
    assert rknn.agreement([[ref]], [[ref + 0.05]], "super-resolve", ["c"])["status"] == "failed"
    assert rknn.agreement([[ref]], [[ref[:, ::-1]]], "classify", ["c"])["status"] == "failed"
    assert rknn.agreement([[ref]], [[ref * 1.001]], "classify", ["c"])["status"] == "passed"
    assert rknn.agreement([[ref]], [[ref[:, :20]]], "other", ["c"])["failures"][0].startswith("c output 0: shape")


@pytest.mark.skipif(not os.environ.get("EDGEKIT_RKNN_PYTHON"), reason="EDGEKIT_RKNN_PYTHON names no rknn-toolkit2 interpreter")
def test_real_toolkit(sr_bundle, tmp_path):
    r = rknn.rknn_check(sr_bundle, "rk3588", rknn_out=tmp_path / "m.rknn")
    assert r["agreement"]["status"] == "passed", r["agreement"]["failures"]
    assert r["ops"]["cpu"] == 0 and (tmp_path / "m.rknn").stat().st_size > 0


def test_last_error_skips_the_version_banner():
    from edgekit._rknn_worker import last_error

    log = ("\x1b[1;31mE\x1b[0m \x1b[1;31mload_onnx: Unsupport onnx opset 20, need <= 19!\x1b[0m\n"
           "I ===================== WARN(0) =====================\n"
           "\x1b[1;31mE\x1b[0m \x1b[1;31mrknn-toolkit2 version: 2.5.0\x1b[0m\n")
    assert last_error(log) == "load_onnx: Unsupport onnx opset 20, need <= 19!"
    assert last_error("I all fine\n") is None


def test_agreement_names_float16_underflow():
    ref = np.linspace(1e-9, 5e-9, 10, dtype=np.float32).reshape(1, 10)  # an untrained classifier's tiny logits
    r = rknn.agreement([[ref]], [[np.zeros_like(ref)]], "classify", ["photo"])
    assert r["status"] == "failed" and "below float16's smallest normal" in r["failures"][0]


def _invoke(*args):
    from typer.testing import CliRunner

    from edgekit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_compile_rknn_into_the_bundle(sr_bundle, fake_interpreter, tmp_path, monkeypatch):
    """edgekit compile BUNDLE --target rk3588: the .rknn kept as an artifact the runtime never picks,
    its report in the manifest, shown by inspect, replaced by a second compile; foreign files refused."""
    import json
    import shutil

    import edgekit
    from edgekit.bundle import read_manifest

    monkeypatch.delenv("FAKE_RKNN_FAIL", raising=False)
    monkeypatch.delenv("FAKE_RKNN_WRONG", raising=False)
    bundle = tmp_path / "b"
    shutil.copytree(sr_bundle, bundle)
    r = _invoke("compile", bundle, "--target", "rk3588", "--rknn-python", fake_interpreter)
    assert r.exit_code == 0, r.output
    assert "3 of 3 on the NPU (100%)" in r.output and "simulator vs onnxruntime: passed" in r.output
    art = read_manifest(bundle).artifact_for("rknn")
    assert art.path == "model_rk3588.rknn" and art.target == "rk3588" and art.precision == "fp16"
    assert art.verification["status"] == "passed" and art.extra["compiled_by"]["rknn-toolkit2"] == "0.0.1"
    assert (bundle / art.path).read_bytes() == b"RKNN fake"
    assert edgekit.load(bundle).info.path.name == "model.onnx"  # the host never runs the NPU file

    shown = _invoke("inspect", bundle, "--json")
    assert shown.exit_code == 0, shown.output
    entry = next(a for a in json.loads(shown.stdout)["artifacts"] if a["path"] == art.path)
    assert entry["npu"]["ops"]["npu"] == 3 and "error" not in entry

    again = _invoke("compile", bundle, "--target", "rk3588", "--rknn-python", fake_interpreter, "--json")
    assert again.exit_code == 0, again.output
    assert [a.path for a in read_manifest(bundle).artifacts].count(art.path) == 1

    (bundle / "model_rk3576.rknn").write_bytes(b"the user's own file")
    refused = _invoke("compile", bundle, "--target", "rk3576", "--rknn-python", fake_interpreter)
    assert refused.exit_code == 2 and "not a compiled artifact edgekit recorded" in refused.output
    assert (bundle / "model_rk3576.rknn").read_bytes() == b"the user's own file"

    for args, words in ((("--out", tmp_path / "o"), "are for Ethos-U targets"),
                        ((), "EDGEKIT_RKNN_PYTHON")):
        monkeypatch.delenv("EDGEKIT_RKNN_PYTHON", raising=False)
        bad = _invoke("compile", bundle, "--target", "rk3588", *args)
        assert bad.exit_code == 2 and words in bad.output and "Traceback" not in bad.output
