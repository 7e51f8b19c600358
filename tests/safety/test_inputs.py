"""Inputs never reach outside the bundle, every malformed manifest is one line with the field,
model files with the wrong kind, wire type or suffix are named as such, memory is bounded by the
model, user numbers are bounded, non-finite weights are named, pickled code is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from safety_cli import copy_bundle, one_line_error, run_cli

import edgekit
from edgekit.bundle import read_manifest
from edgekit.errors import InvalidModelFile


def _with_path(bundle: Path, tmp_path: Path, value) -> Path:
    b = copy_bundle(bundle, tmp_path / "b")
    data = json.loads((b / "edgekit.json").read_text())
    data["artifacts"][0]["path"] = value
    (b / "edgekit.json").write_text(json.dumps(data))
    return b


# -- paths from a manifest ------------------------------------------------------------------------
ESCAPES = ["../../x.onnx", "/etc/passwd", "../b/model.onnx/../../outside.onnx", ".", "", 123, None, "sub/../../x.onnx"]


@pytest.mark.parametrize("value", ESCAPES, ids=[repr(v) for v in ESCAPES])
def test_no_command_opens_a_manifest_path_outside_the_bundle(tiny_bundle, tmp_path, value):
    (tmp_path / "x.onnx").write_bytes((tiny_bundle / "model.onnx").read_bytes())  # a real model outside
    b = _with_path(tiny_bundle, tmp_path, value)
    with pytest.raises(InvalidModelFile):
        edgekit.load(b)
    for cmd in (["inspect", b], ["inspect", b, "--json"], ["bench", b, "--runs", "1"]):
        r = run_cli(*cmd)
        if cmd[0] == "inspect" and r.returncode == 0:  # inspect reports a bad artifact, it does not open it
            assert "leaves its folder" in r.stdout or "names no file" in r.stdout or "must be" in r.stdout \
                or "absolute" in r.stdout, r.stdout
            assert "Add" not in r.stdout and "Conv" not in r.stdout  # nothing was read from the outside file
            continue
        one_line_error(r, 1)


def test_a_symlink_inside_the_bundle_to_a_file_outside_is_refused(tiny_bundle, tmp_path):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((tiny_bundle / "model.onnx").read_bytes())
    b = copy_bundle(tiny_bundle, tmp_path / "b")
    (b / "model.onnx").unlink()
    (b / "model.onnx").symlink_to(outside)
    with pytest.raises(InvalidModelFile, match="leaves its folder"):
        edgekit.load(b)
    r = run_cli("inspect", b, "--json")
    assert r.returncode == 0 and "leaves its folder" in json.loads(r.stdout)["artifacts"][0]["error"]


def test_mlpackage_manifest_paths_stay_inside_the_package(tmp_path):
    from edgekit.inspect import inspect_model

    pkg = tmp_path / "m.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    secret = tmp_path / "secret.mlmodel"
    secret.write_bytes(b"not for you")
    for root in ("../../secret.mlmodel", "/etc/passwd", 7, ""):
        (pkg / "Manifest.json").write_text(json.dumps({
            "rootModelIdentifier": "a", "itemInfoEntries": {"a": {"path": root}}}))
        with pytest.raises(InvalidModelFile) as e:
            inspect_model(pkg, placement=False)
        assert "\n" not in str(e.value) and "Manifest.json" in str(e.value), e.value


def test_a_core_ml_spec_declaring_an_absurd_rank_is_one_line_at_once(tmp_path):
    """A mutated rank (805,306,367 in one fuzz case) made lint and inspect build a shape that long:
    minutes of CPU and gigabytes. The readers refuse ranks above MAX_RANK as a corrupt spec."""
    ct = pytest.importorskip("coremltools")
    from coremltools.converters.mil import Builder as mb

    from edgekit.runtimes.coreml_spec import MAX_RANK, spec_file

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 4, 4))])
    def prog(x):
        return mb.relu(x=x, name="y")

    pkg = tmp_path / "m.mlpackage"
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15).save(str(pkg))
    spec_path = spec_file(pkg)
    spec = ct.utils.load_spec(str(pkg))
    fn = spec.mlProgram.functions["main"]
    block = next(iter(fn.block_specializations.values()))
    block.operations[-1].outputs[0].type.tensorType.rank = 805306367
    spec_path.write_bytes(spec.SerializeToString())
    for command in ("lint", "inspect"):
        r = run_cli(command, pkg, timeout=60)
        line = one_line_error(r, 1)
        assert "rank 805306367" in line and f"more than {MAX_RANK}" in line and "model.mlmodel" in line, line


# -- the manifest's schema -------------------------------------------------------------------------
def _mutate(data, where, value):
    obj = data
    for k in where[:-1]:
        obj = obj[k]
    obj[where[-1]] = value
    return data


SCHEMA_CASES = [
    (("artifacts", 0, "path"), 123, "artifacts[0].path: must be a string"),
    (("artifacts", 0, "path"), None, "artifacts[0].path: must be a string"),
    (("edgekit_manifest",), 0, "edgekit_manifest: must be 1"),
    (("edgekit_manifest",), -3, "edgekit_manifest: must be 1"),
    (("edgekit_manifest",), "1", "edgekit_manifest: must be 1"),
    (("edgekit_manifest",), 1.0, "edgekit_manifest: must be 1"),
    (("edgekit_manifest",), 99, "newer than this edgekit understands"),
    (("artifacts", 0, "inputs", 0, "shape"), [1, 3, 10**13, 8], "inputs[0].shape[2]"),
    (("artifacts", 0, "inputs", 0, "shape"), [2**30, 2**30, 8, 8], "inputs[0].shape: holds"),
    (("artifacts", 0, "inputs", 0, "shape"), [1, -7, 8, 8], "inputs[0].shape[1]"),
    (("artifacts", 0, "inputs", 0, "layout"), "NCHQ", "uses Q"),
    (("artifacts", 0, "inputs", 0, "layout"), "NCH", "names 3 dimensions, the shape has 4"),
    (("artifacts", 0, "inputs", 0, "layout"), "NNHW", "layout"),
    (("artifacts", 0, "inputs", 0, "dtype"), "float33", "inputs[0].dtype: must be one of"),
    (("artifacts", 0, "format"), "exe", "artifacts[0].format"),
    (("artifacts", 0, "quantized_io"), {"x": {"scale": "big", "zero_point": 0}}, "quantized_io.x.scale"),
    (("artifacts", 0, "quantized_io"), {"x": {"scale": float("nan"), "zero_point": 0}}, "quantized_io.x.scale"),
    (("artifacts", 0, "quantized_io"), {"x": {"scale": 0.5, "zero_point": 0.5}}, "quantized_io.x.zero_point"),
    (("preprocess", "std"), [0.2, 0.0, 0.2], "preprocess.std[1]: must be > 0"),
    (("preprocess", "value_range"), [0], "preprocess.value_range: must have 2 items"),
    (("task",), "teleport", "task: must be one of"),
    (("artifacts",), {"0": 1}, "artifacts: must be a list"),
    (("tools",), ["edgekit"], "tools: must be an object"),
]


@pytest.mark.parametrize("where,value,message", SCHEMA_CASES, ids=[f"{'.'.join(map(str, w))}={v!r:.20}"
                                                                     for w, v, _ in SCHEMA_CASES])
def test_malformed_manifests_are_one_line_with_the_field(tiny_bundle, tmp_path, where, value, message):
    b = copy_bundle(tiny_bundle, tmp_path / "b")
    data = json.loads((b / "edgekit.json").read_text())
    data["artifacts"][0]["inputs"][0]["layout"] = "NCHW"
    (b / "edgekit.json").write_text(json.dumps(_mutate(data, where, value)))
    with pytest.raises(InvalidModelFile) as e:
        read_manifest(b)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    one_line_error(run_cli("inspect", b), 1)


def test_deeply_nested_and_huge_manifests(tiny_bundle, tmp_path):
    b = copy_bundle(tiny_bundle, tmp_path / "b")
    (b / "edgekit.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InvalidModelFile, match="nested too deeply"):
        read_manifest(b)
    with open(b / "edgekit.json", "wb") as f:  # a sparse 100 MB file: refused by its size, never read
        f.truncate(100 << 20)
    with pytest.raises(InvalidModelFile, match="MB manifest"):
        read_manifest(b)


# -- model files ----------------------------------------------------------------------------------
def _onnx_with_bad_raw_data_wire_type(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.runtimes.onnx_file import _encode_varint

    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w])
    data = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    i = data.find(bytes([0x4A]) + _encode_varint(len(w.raw_data)) + w.raw_data)  # raw_data: field 9, bytes
    assert i > 0
    path.write_bytes(data[:i] + bytes([0x48]) + data[i + 1:])  # field 9, wire type 0 (varint)
    return path


def test_model_file_errors_name_the_real_cause(tiny_bundle, tmp_path):
    onnx_bytes = (tiny_bundle / "model.onnx").read_bytes()
    cases = {}
    (tmp_path / "onnx_named.tflite").write_bytes(onnx_bytes)
    cases["onnx_named.tflite"] = "named .tflite but it is an ONNX model"
    (tmp_path / "loop.onnx").symlink_to(tmp_path / "loop.onnx")
    cases["loop.onnx"] = "symlink loop"
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "gone.onnx")
    cases["dangling.onnx"] = "symlink to a missing file"
    os.mkfifo(tmp_path / "fifo.onnx")
    cases["fifo.onnx"] = "FIFO"
    _onnx_with_bad_raw_data_wire_type(tmp_path / "wire.onnx")
    cases["wire.onnx"] = "raw_data has protobuf wire type 0"
    for name, want in cases.items():
        for cmd in ("inspect", "bench"):
            r = run_cli(cmd, tmp_path / name, timeout=60)  # a FIFO opened for reading would block forever
            line = one_line_error(r, 1)
            assert want in line, (name, cmd, line)


def test_onnxruntime_log_lines_never_precede_the_one_line_error(tmp_path):
    """A model that loads but fails in onnxruntime at run time (a Reshape to a size the input
    does not have): onnxruntime logs its own coloured, multi-line error before raising; only
    edgekit's one line may reach the terminal."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6]),
                           helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "bad_run.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.savez(tmp_path / "feed.npz", x=np.ones(6, np.float32), s=np.array([4, 4], np.int64))
    r = run_cli("run", path, "--input", tmp_path / "feed.npz")
    line = one_line_error(r, 1)
    assert "Reshape" in line
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == [line], r.stderr
    assert "\x1b[" not in r.stderr


# -- memory bounded by the model, not the file -------------------------------------------------------
def test_inspect_of_a_2gb_onnx_made_of_a_doc_string_stays_small(tiny_bundle, tmp_path):
    """The file: the bundle's model plus a 1.9 GB doc string (a sparse file: no disk used).
    ``edgekit inspect`` (with its lint summary) reads the structure only: its peak RSS is that of
    inspecting the model without the doc string, plus less than 64 MB."""
    from edgekit.runtimes.onnx_file import _encode_varint

    src = (tiny_bundle / "model.onnx").read_bytes()
    small, big = tmp_path / "small.onnx", tmp_path / "big.onnx"
    small.write_bytes(src)
    n = 1_900_000_000
    with open(big, "wb") as f:
        f.write(src + b"\x32" + _encode_varint(n))  # ModelProto.doc_string (field 6)
        f.truncate(len(src) + 1 + len(_encode_varint(n)) + n)

    def peak_mb(path):
        code = ("import resource, sys; from edgekit.cli import main\n"
                "try:\n    main(['inspect', sys.argv[1], '--json'])\nexcept SystemExit as e:\n    assert not e.code\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return float(r.stdout.strip().splitlines()[-1])

    base, huge = peak_mb(small), peak_mb(big)
    assert huge < base + 64, f"peak RSS {huge:.0f} MB for the 1.9 GB file, {base:.0f} MB without the doc string"


# -- user numbers ---------------------------------------------------------------------------------
def test_absurd_sizes_and_shapes_are_usage_errors(tiny_source):
    r = run_cli("demo", "--size", "99999x99999", "--headless")
    assert "--size must be WIDTHxHEIGHT" in one_line_error(r, 2)
    r = run_cli("convert", f"{tiny_source}:build", "--input-shape", "1x3x100000x100000", "--to", "onnx", "--out", "o")
    assert "too large" in one_line_error(r, 2)


def test_more_threads_than_cpus_is_a_warning(tiny_bundle):
    cpus = len(os.sched_getaffinity(0))
    r = run_cli("bench", tiny_bundle, "--runs", "1", "--warmup", "0", "--threads", str(cpus + 3))
    assert r.returncode == 0, r.stderr
    assert f"edgekit: warning: --threads {cpus + 3} is more than the {cpus} CPU(s)" in r.stderr


# -- weights ----------------------------------------------------------------------------------------
INF_SOURCE = """
import torch

def build():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    with torch.no_grad():
        m[0].weight[1, 2, 0, 1] = float("{value}")
    return m, (torch.rand(1, 3, 8, 8),)
"""


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_non_finite_weights_are_named_before_anything_runs(tmp_path, value):
    src = tmp_path / "net.py"
    src.write_text(INF_SOURCE.format(value=value))
    r = run_cli("convert", f"{src}:build", "--to", "onnx,tflite", "--out", tmp_path / "o")
    line = one_line_error(r, 1)
    assert "weight '0.weight' holds 1 non-finite value(s)" in line and "[1, 2, 0, 1]" in line, line
    assert not (tmp_path / "o").exists()


def test_masks_with_minus_inf_in_buffers_are_not_weights(tmp_path):
    torch = pytest.importorskip("torch")

    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mask", torch.full((4, 4), float("-inf")).triu(1))
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.softmax(self.lin(x) + self.mask, -1)

    result = edgekit.convert(Masked().eval(), formats="onnx", out=tmp_path / "m", input_shapes=[(4, 4)],
                             bench_runs=0)
    assert result.ok


def test_pickled_code_is_refused_with_the_reason(tmp_path):
    torch = pytest.importorskip("torch")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"w": Evil()}, tmp_path / "evil.pth")
    r = run_cli("convert", "mobilenet_v2", "--weights", tmp_path / "evil.pth", "--to", "onnx", "--out", tmp_path / "o")
    line = one_line_error(r, 1)
    assert "pickled Python objects" in line and "arbitrary code" in line and "state_dict" in line, line
    assert "pwned" not in r.stdout + r.stderr
