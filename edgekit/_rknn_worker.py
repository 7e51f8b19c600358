"""Runs inside the user's rknn-toolkit2 interpreter, never inside edgekit's (see :mod:`edgekit.rknn`).

rknn-toolkit2 pins NumPy <= 1.26, ONNX <= 1.18 and torch <= 2.4, so it lives in an interpreter of its
own. edgekit starts this file there as a script: it imports only the standard library, NumPy, ONNX
and ``rknn.api`` (never edgekit), reads a job (JSON), and writes its result (JSON) and the outputs
(``.npy``) into the job's folder.

Job: ``{"onnx": path, "rknn": path, "platform": "rk3588", "inputs": [[npy, ...] per case],
"workdir": path}``. Result: versions, whether the ONNX was re-expressed at a lower opset (the
toolkit reads opset <= 19), the op table of the toolkit's build log (one row per op: index, type,
data type, NPU or CPU, cycles, the ONNX node it came from), and one list of output files per case.
Every failure is one line in ``result["error"]`` and exit code 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import traceback

MAX_OPSET = 19  # the newest ONNX opset rknn-toolkit2 2.x loads


@contextlib.contextmanager
def _captured(log_path):
    """Send file descriptors 1 and 2 (the toolkit's C++ logger writes there) to ``log_path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


_ROW = re.compile(r"^(?:D RKNN: \[[^\]]*\]\s*)?(\d+)\s+(\S+)\s+(\S+)\s+(NPU|CPU)\s+(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_op_table(log_text):
    """The op table the toolkit prints while it builds (verbose): ``ID OpType DataType Target
    InputShape OutputShape Cycles(DDR/NPU/Total) RW(KB) FullName``."""
    ops, in_table = [], False
    for raw in log_text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        body = re.sub(r"^D RKNN: \[[^\]]*\]\s*", "", line)
        if body.startswith("ID") and "OpType" in body and "Target" in body:
            in_table, ops = True, []  # the last table printed is the final one
            continue
        if not in_table:
            continue
        m = _ROW.match(line)
        if m is None:
            if ops and not body.startswith("-") and body.strip():
                in_table = False
            continue
        rest = m.group(5).split()
        cycles = next((r for r in rest if re.fullmatch(r"\d+/\d+/\d+", r)), None)
        ops.append({"index": int(m.group(1)), "op": m.group(2), "dtype": m.group(3), "on": m.group(4).lower(),
                    "cycles_ddr_npu_total": [int(c) for c in cycles.split("/")] if cycles else None,
                    "name": rest[-1] if rest else ""})
    return ops


def last_error(log_text):
    """The toolkit's last error line (``E <message>``), without the version banner it also prints as one."""
    errors = [ln[2:].strip() for ln in (_ANSI.sub("", raw).strip() for raw in log_text.splitlines())
              if ln.startswith("E ") and not ln.startswith("E rknn-toolkit2 version")]
    return errors[-1] if errors else None


def run(job):
    import importlib.metadata as md

    import numpy as np
    import onnx

    work = job["workdir"]
    log_path = os.path.join(work, "rknn_build.log")
    result = {"versions": {d: md.version(d) for d in ("rknn-toolkit2", "numpy", "onnx")}}
    model = onnx.load(job["onnx"])
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    onnx_path = job["onnx"]
    if opset > MAX_OPSET:
        from onnx import version_converter

        lowered = version_converter.convert_version(model, MAX_OPSET)
        onnx.checker.check_model(lowered)
        onnx_path = os.path.join(work, "model_opset%d.onnx" % MAX_OPSET)
        onnx.save(lowered, onnx_path)
        result["opset"] = {"source": opset, "converted_to": MAX_OPSET}
    else:
        result["opset"] = {"source": opset}

    from rknn.api import RKNN

    with _captured(log_path):
        rknn = RKNN(verbose=True)
        steps = [("config", lambda: rknn.config(target_platform=job["platform"])),
                 ("load_onnx", lambda: rknn.load_onnx(model=onnx_path)),
                 ("build", lambda: rknn.build(do_quantization=False)),
                 ("export_rknn", lambda: rknn.export_rknn(job["rknn"])),
                 ("init_runtime (simulator)", lambda: rknn.init_runtime())]
        failed = None
        for name, step in steps:
            ret = step()
            if ret not in (0, None):
                failed = f"rknn-toolkit2 {name} returned {ret}"
                break
        outputs = []
        if failed is None:
            for i, files in enumerate(job["inputs"]):
                arrays = [np.load(f) for f in files]
                layout = "nchw" if arrays and all(a.ndim == 4 for a in arrays) else None  # edgekit's ONNX is NCHW
                outs = rknn.inference(inputs=arrays, data_format=layout)
                if outs is None:
                    failed = f"the simulator returned no output for case {i}"
                    break
                names = []
                for k, o in enumerate(outs):
                    path = os.path.join(work, f"out_{i}_{k}.npy")
                    np.save(path, np.asarray(o))
                    names.append(path)
                outputs.append(names)
        rknn.release()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    result["ops"] = parse_op_table(text)
    result["outputs"] = outputs
    if failed:
        result["error"] = failed + (f": {why}" if (why := last_error(text)) else "")
    return result


def main(argv):
    with open(argv[1], encoding="utf-8") as f:
        job = json.load(f)
    try:
        result = run(job)
    except Exception as e:  # one line for edgekit; the traceback stays in the job folder
        with open(os.path.join(job["workdir"], "worker_traceback.txt"), "w", encoding="utf-8") as f:
            traceback.print_exc(file=f)
        result = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}
    with open(os.path.join(job["workdir"], "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
