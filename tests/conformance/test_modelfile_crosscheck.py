"""``read_model`` (pure-Python, bounds-checked readers) agrees with the reference parsers.

Every committed conformance model — written by torch.onnx, litert-torch, onnx.helper, the TFLite
schema builder, ORT's ORT-format writer and coremltools — is read twice: by edgekit and by the
generated TFLite schema (``ai_edge_litert.schema_py_generated``), the ``onnx`` package,
onnxruntime itself, or (when the case was generated) coremltools, whose reading ``case.json``
records. The Core ML packages are read on every OS, though only macOS runs them.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.runtimes.modelfile import read_model

from conformance_support import read_file_info


def _tflite_reference(path):
    from ai_edge_litert import schema_py_generated as s

    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    m = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    ops = []
    for oc in m.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        ops.append(oc.customCode.decode() if code == s.BuiltinOperator.CUSTOM else names[code])
    hist, ranks = {}, {}
    for sg in m.subgraphs:
        for op in sg.operators or []:
            hist[ops[op.opcodeIndex]] = hist.get(ops[op.opcodeIndex], 0) + 1
        for t in sg.tensors:
            n = 0 if t.shape is None else len(t.shape)
            ranks[n] = ranks.get(n, 0) + 1
    sg = m.subgraphs[0]

    def spec(i):
        t = sg.tensors[i]
        dims = t.shapeSignature if t.shapeSignature is not None and len(t.shapeSignature) else t.shape
        return t.name.decode(), tuple(None if d < 0 else int(d) for d in dims), dtypes[t.type]

    return [spec(i) for i in sg.inputs], [spec(i) for i in sg.outputs], hist, ranks


def _onnx_reference(path):
    import onnx
    from onnx import helper

    m = onnx.load(str(path), load_external_data=False)
    g = m.graph
    inits = {t.name for t in g.initializer}

    def spec(v):
        tt = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        return v.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name

    hist = {}
    for n in g.node:
        hist[n.op_type] = hist.get(n.op_type, 0) + 1
    external = sorted({e.value for t in g.initializer for e in t.external_data if e.key == "location"})
    return [spec(v) for v in g.input if v.name not in inits], [spec(v) for v in g.output], hist, external


def _all_files(cases):
    return [(c.name, fmt, p) for c in cases.values() for fmt, p in c.files.items()]


def test_tflite_reader_agrees_with_the_schema(conformance_cases):
    files = [p for _, fmt, p in _all_files(conformance_cases) if fmt == "tflite"]
    assert len(files) >= 5
    for path in files:
        info = read_model(path)
        ins, outs, hist, ranks = _tflite_reference(path)
        assert [(t.name, t.shape, t.dtype) for t in info.inputs] == ins, path.name
        assert [(t.name, t.shape, t.dtype) for t in info.outputs] == outs, path.name
        assert info.op_histogram == hist, path.name
        assert info.tensor_ranks == dict(sorted(ranks.items())), path.name


def test_tflite_reader_agrees_with_the_interpreter(conformance_cases):
    from ai_edge_litert.interpreter import Interpreter

    for _, fmt, path in _all_files(conformance_cases):
        if fmt != "tflite":
            continue
        info = read_model(path)
        it = Interpreter(model_path=str(path))
        assert [t.name for t in info.inputs] == [d["name"] for d in it.get_input_details()]
        assert [list(t.shape) for t in info.outputs] == [d["shape_signature"].tolist() for d in it.get_output_details()]
        assert [t.dtype for t in info.outputs] == [np.dtype(d["dtype"]).name for d in it.get_output_details()]
        assert info.extra["signatures"].keys() == it.get_signature_list().keys()


def test_onnx_reader_agrees_with_the_onnx_package(conformance_cases):
    pytest.importorskip("onnx")
    files = [p for _, fmt, p in _all_files(conformance_cases) if fmt == "onnx"]
    assert len(files) >= 5
    externals = 0
    for path in files:
        info = read_model(path)
        ins, outs, hist, external = _onnx_reference(path)
        assert [(t.name, t.shape, t.dtype) for t in info.inputs] == ins, path.name
        assert [(t.name, t.shape, t.dtype) for t in info.outputs] == outs, path.name
        assert info.op_histogram == hist, path.name
        assert sorted(info.external_files) == external, path.name
        externals += bool(external)
        assert info.size_bytes == path.stat().st_size + sum((path.parent / f).stat().st_size for f in external)
    assert externals >= 3, "the torch exports should keep their weights in external data files"


def test_ort_reader_agrees_with_onnxruntime(conformance_cases):
    import onnxruntime as ort

    files = [p for _, fmt, p in _all_files(conformance_cases) if fmt == "ort"]
    assert files
    for path in files:
        info = read_model(path)
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [(t.name, list(t.shape)) for t in info.inputs] == [(i.name, i.shape) for i in s.get_inputs()]
        assert [t.name for t in info.outputs] == [o.name for o in s.get_outputs()]
        assert info.num_ops > 0


def test_case_json_matches_what_edgekit_reads(conformance_cases):
    """The tensors ``case.json`` records for each file (read by onnxruntime, the LiteRT interpreter
    or coremltools when the case was generated) are what edgekit's readers find: ``read_model``,
    and for .mlpackage ``edgekit.inspect.read_coreml``. Without coremltools the Core ML reader
    cannot parse the spec; it must then still report the package's files and say why."""
    from edgekit.inspect import read_coreml

    checked = {"coreml": 0, "other": 0}
    for case in conformance_cases.values():
        listed = {f for entry in case.meta["formats"].values() for f in entry["files"]}
        present = {f.relative_to(case.folder).as_posix() for f in case.folder.rglob("*") if f.is_file()}
        assert present - {"case.json", "inputs.npz", "expected.npz"} == listed, case.folder
        for fmt, path in case.files.items():
            entry = case.meta["formats"][fmt]
            if fmt == "coreml":
                info = read_coreml(path)
                assert info["size_bytes"] == sum((case.folder / f).stat().st_size for f in entry["files"]), path
                assert sorted(info["external_files"]) == ["Data/com.apple.CoreML/weights/weight.bin"], info
                note = info["extra"].get("note", "")
                if "coremltools is not installed" in note:
                    assert info["inputs"] == info["outputs"] == [], info
                    continue
                assert info["extra"]["model_type"] == "mlProgram" and info["num_ops"] > 0, info
            got = read_file_info(fmt, path)
            assert (got.inputs, got.outputs) == case.spec(fmt), f"{case.name}/{fmt}: {path}"
            checked["coreml" if fmt == "coreml" else "other"] += 1
    assert checked["other"] >= 12, checked
