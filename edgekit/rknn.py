"""Rockchip's NPU compiler, rknn-toolkit2, run in an interpreter of the user's choosing.

rknn-toolkit2 (x86-64 wheels; RK3588, RK3576, RK3566/RK3568, RK3562 targets) converts ONNX to
``.rknn`` and runs a simulator of the NPU on the host, offline. It pins NumPy <= 1.26, ONNX <= 1.18
and torch <= 2.4, so it cannot share edgekit's environment: the user names an interpreter where
it is installed (``--rknn-python PATH`` or ``EDGEKIT_RKNN_PYTHON``; ``edgekit doctor`` says how
to make one). edgekit never installs anything into it; it starts :mod:`edgekit._rknn_worker` there
as a script, which talks back through files in a private folder.

:func:`rknn_check` takes a bundle's fp32 ONNX artifact (the one edgekit verified against the
source), has the toolkit build it for the platform (float models run in float16 on these NPUs),
runs the simulator on verification inputs made as ``edgekit convert`` makes them (seeded random
inputs in the declared domain and, for image models, a photo through the bundle's
pre-processing), and compares every output with onnxruntime's on the same ONNX file. It reports
the toolkit's op table (each op's type, data type, NPU or CPU, cycles) and the agreement, judged by
the fp16 criteria of the task (PSNR for super-resolution, top-1 for classifiers, cosine otherwise).

Example::

    >>> r = rknn_check("sr/", "rk3588", python="~/rknn-venv/bin/python")   # doctest: +SKIP
    >>> r["ops"]["npu"], r["ops"]["cpu"], r["agreement"]["status"]          # doctest: +SKIP
    (5, 0, 'passed')
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import EdgekitError, UsageError

__all__ = ["PLATFORMS", "rknn_check", "resolve_python", "agreement"]

PLATFORMS = ("rk3588", "rk3576", "rk3568", "rk3566", "rk3562")
# What the simulator's float16 must reach against onnxruntime's float32, by task (stated: the
# NPU computes every layer in float16, so the error compounds with depth; an SR net or decoder
# that agrees to these PSNRs is visually identical, and a classifier must keep its top-1).
PSNR_DB = {"super-resolve": 40.0, "decode-video": 35.0}
COSINE = 0.999
FP16_TINY = float(np.finfo(np.float16).tiny)  # 6.1e-05
# Operators the toolkit adds around every graph to move tensors in and out; they do no math.
_IO_OPS = {"InputOperator", "OutputOperator"}


def resolve_python(python: str | os.PathLike | None) -> str:
    """The interpreter that has rknn-toolkit2: ``python``, else ``$EDGEKIT_RKNN_PYTHON``, else a usage error."""
    from edgekit.doctor import RKNN_HOWTO, RKNN_PYTHON_ENV

    chosen = str(python) if python else os.environ.get(RKNN_PYTHON_ENV, "")
    if not chosen:
        raise UsageError(f"rknn-toolkit2 runs in an interpreter of its own: pass --rknn-python PATH or set "
                         f"{RKNN_PYTHON_ENV}", hint=f"make one: {RKNN_HOWTO}")
    return os.path.expanduser(chosen)


def rknn_check(bundle: str | os.PathLike, platform: str = "rk3588", *, python: str | os.PathLike | None = None,
               rknn_out: str | os.PathLike | None = None, n_random: int = 2, timeout: float = 1800.0) -> dict[str, Any]:
    """Build the bundle's fp32 ONNX with rknn-toolkit2 for ``platform``, run its simulator on
    verification inputs and compare with onnxruntime. ``rknn_out``: where to keep the ``.rknn``
    file (not kept when None). Returns a JSON-ready report; raises :class:`EdgekitError` with one
    line when the toolkit fails (its log's last error line)."""
    from edgekit.bundle import MANIFEST_NAME, read_manifest
    from edgekit.doctor import RKNN_HOWTO, rknn_status

    if platform not in PLATFORMS:
        raise UsageError(f"unknown Rockchip platform '{platform}'", hint=f"use one of {', '.join(PLATFORMS)}")
    folder = Path(bundle)
    manifest = read_manifest(folder)
    onnx_art = next((a for a in manifest.artifacts if a.format == "onnx" and a.precision == "fp32"
                     and "compiled_by" not in a.extra), None)
    if onnx_art is None:
        raise EdgekitError("the bundle has no fp32 ONNX artifact for rknn-toolkit2 to convert",
                           where=folder / MANIFEST_NAME, hint="convert with --to onnx (fp32)")
    from edgekit._fs import contained_path, regular_file

    onnx_file = regular_file(contained_path(folder, onnx_art.path, folder / MANIFEST_NAME, "artifact path"),
                             hint="re-run `edgekit convert`")
    interpreter = resolve_python(python)
    status = rknn_status(interpreter)
    if not status.get("ok"):
        raise EdgekitError(status["error"], where=interpreter, hint=f"make one: {RKNN_HOWTO}")

    cases = _cases(manifest, onnx_art, n_random)
    with tempfile.TemporaryDirectory(prefix="edgekit-rknn-") as tmp:
        work = Path(tmp)
        inputs = []
        for i, case in enumerate(cases):
            files = []
            for k, a in enumerate(case.artifact):
                np.save(work / f"in_{i}_{k}.npy", a)
                files.append(str(work / f"in_{i}_{k}.npy"))
            inputs.append(files)
        target = Path(rknn_out) if rknn_out is not None else work / "model.rknn"
        job = {"onnx": str(onnx_file.resolve()), "rknn": str(target.resolve()), "platform": platform,
               "inputs": inputs, "workdir": str(work)}
        (work / "job.json").write_text(json.dumps(job))
        # Run from a copy in the private folder: started from edgekit's package folder, the script's
        # folder would come first on that interpreter's sys.path and edgekit's modules (inspect.py)
        # would shadow the standard library's.
        worker = work / "rknn_worker.py"
        worker.write_bytes(Path(__file__).with_name("_rknn_worker.py").read_bytes())
        try:
            proc = subprocess.run([interpreter, str(worker), str(work / "job.json")], capture_output=True,
                                  text=True, timeout=timeout, cwd=work)
        except subprocess.TimeoutExpired:
            raise EdgekitError(f"rknn-toolkit2 did not finish in {timeout:.0f} s", where=onnx_file) from None
        result_file = work / "result.json"
        if not result_file.is_file():
            tail = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()]
            raise EdgekitError(f"the rknn-toolkit2 worker stopped without a result (exit {proc.returncode}"
                               + (f": {tail[-1].strip()[:300]}" if tail else "") + ")", where=interpreter)
        result = json.loads(result_file.read_text())
        if result.get("error"):
            raise EdgekitError(f"rknn-toolkit2 ({platform}): {result['error']}", where=onnx_file,
                               hint="the toolkit's message; a model it cannot build stays on the CPU backends")
        outputs = [[np.load(f) for f in files] for files in result["outputs"]]
    ops = result.get("ops") or []
    compute = [o for o in ops if o["op"] not in _IO_OPS]
    on_cpu = [o for o in compute if o["on"] == "cpu"]
    report: dict[str, Any] = {
        "compiler": {"name": "rknn-toolkit2", "version": result["versions"].get("rknn-toolkit2")},
        "platform": platform, "python": interpreter, "source": onnx_art.path, "opset": result.get("opset"),
        "ops": {"total": len(compute), "npu": len(compute) - len(on_cpu), "cpu": len(on_cpu),
                "cpu_ops": [{"index": o["index"], "op": o["op"], "name": o["name"]} for o in on_cpu],
                "table": ops},
        "agreement": agreement(_reference(onnx_file, cases), outputs, manifest.task, [c.name for c in cases]),
        "notes": ["float models run in float16 on Rockchip NPUs; the simulator computes as the NPU does "
                  "(its cycle counts are the toolkit's estimate, not a measurement on a board)"],
    }
    if result.get("opset", {}).get("converted_to"):
        report["notes"].append(f"the toolkit reads ONNX opset <= {result['opset']['converted_to']}: the bundle's "
                               f"opset-{result['opset']['source']} ONNX was re-expressed by onnx's version converter")
    if rknn_out is not None:
        report["rknn"] = str(rknn_out)
    return report


def _cases(manifest: Any, art: Any, n_random: int) -> list[Any]:
    from edgekit.converters.verify import make_cases

    shapes = [tuple(int(d) if isinstance(d, int) and d > 0 else 1 for d in t.shape) for t in art.inputs]
    dtypes = [np.dtype(t.dtype) for t in art.inputs]
    return make_cases(shapes, dtypes, task=manifest.task, preprocess=manifest.preprocess, fold=None,
                      n_random=n_random, normal=False)


def _reference(onnx_file: Path, cases: list[Any]) -> list[list[np.ndarray]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return [[np.asarray(o) for o in sess.run(None, dict(zip(names, c.artifact)))] for c in cases]


def agreement(references: list[list[np.ndarray]], outputs: list[list[np.ndarray]], task: str,
              names: list[str]) -> dict[str, Any]:
    """Per case and output: max abs / cosine / PSNR of the simulator against onnxruntime, and a
    verdict by the task's fp16 criterion (:data:`PSNR_DB`, top-1 for ``classify``, else :data:`COSINE`)."""
    from edgekit.converters.verify import compare, psnr

    cases, failures = [], []
    for name, refs, outs in zip(names, references, outputs):
        if len(refs) != len(outs):
            failures.append(f"{name}: {len(outs)} outputs, the ONNX has {len(refs)}")
            continue
        for k, (ref, out) in enumerate(zip(refs, outs)):
            out = np.asarray(out, np.float32).reshape(ref.shape) if out.size == ref.size else out
            if out.shape != ref.shape:
                failures.append(f"{name} output {k}: shape {list(out.shape)}, the ONNX's is {list(ref.shape)}")
                continue
            m = compare(ref, out)
            entry = {"case": name, "output": k, "max_abs": m["max_abs"], "cosine": m["cosine"]}
            if task in PSNR_DB:
                peak = max(float(np.abs(ref).max()), 1.0)
                entry["psnr_db"] = round(psnr(ref, out, peak), 2)
                ok = entry["psnr_db"] >= PSNR_DB[task]
                why = f"PSNR {entry['psnr_db']} dB < {PSNR_DB[task]} dB"
            elif task == "classify":
                ok = int(np.argmax(ref)) == int(np.argmax(out))
                why = f"top-1 {int(np.argmax(out))}, the ONNX's is {int(np.argmax(ref))}"
            else:
                ok = m["cosine"] >= COSINE
                why = f"cosine {m['cosine']:.6f} < {COSINE}"
            entry["ok"] = bool(ok)
            cases.append(entry)
            if not ok:
                if m["ref_max_abs"] < FP16_TINY:
                    why += (f" (the ONNX's outputs are at most {m['ref_max_abs']:.2g}, below float16's smallest normal "
                            f"{FP16_TINY:.2g}: the NPU's float16 cannot hold them; untrained weights?)")
                failures.append(f"{name} output {k}: {why}")
    criterion = (f"PSNR >= {PSNR_DB[task]} dB" if task in PSNR_DB else "same top-1" if task == "classify"
                 else f"cosine >= {COSINE}")
    return {"status": "failed" if failures else "passed", "criterion": criterion + " against onnxruntime (float32)",
            "cases": cases, "failures": failures}


def compiled_name(platform: str) -> str:
    return f"model_{platform}.rknn"


def compile_rknn(bundle: str | os.PathLike, platform: str, *, python: str | os.PathLike | None = None) -> dict[str, Any]:
    """:func:`rknn_check` a bundle, then keep the ``.rknn`` in it as an artifact of its own
    (``format: "rknn"``, ``target`` the platform, ``precision`` fp16, ``compiled_by`` the toolkit
    and its source, ``npu`` the report) with the simulator's agreement as its verification; under
    the bundle's lock, never over a file edgekit did not write. Returns the manifest entry."""
    from edgekit._fs import atomic_path, existing, folder_lock
    from edgekit.bundle import MANIFEST_NAME, Artifact, is_bundle, read_manifest, sha256_file, write_manifest
    from edgekit.compiler import compiled_slot

    folder = existing(Path(bundle))
    if not is_bundle(folder):
        raise UsageError(f"rknn-toolkit2 compiles a bundle's ONNX artifact; this is not a folder with {MANIFEST_NAME}",
                         where=folder, hint="convert first: edgekit convert SOURCE --to onnx --out DIR")
    name = compiled_name(platform)
    source = next((a for a in read_manifest(folder).artifacts if a.format == "onnx" and a.precision == "fp32"
                   and "compiled_by" not in a.extra), None)
    source_sha = sha256_file(folder / source.path) if source is not None else None
    with tempfile.TemporaryDirectory(prefix="edgekit-rknn-out-") as tmp:
        built = Path(tmp) / name
        report = rknn_check(folder, platform, python=python, rknn_out=built)
        report.pop("rknn", None)
        with folder_lock(folder):
            manifest = read_manifest(folder)  # again, under the lock: what is there now
            dest = folder / name
            compiled_slot(folder, manifest, name, hint="move that file away and run edgekit compile again")
            src = next((a for a in manifest.artifacts if a.path == report["source"]), None)
            if src is None or sha256_file(folder / src.path) != source_sha:
                raise EdgekitError(f"{report['source']} changed while rknn-toolkit2 compiled it; nothing was written",
                                   where=folder, hint="run edgekit compile again")
            with atomic_path(dest) as part:
                part.write_bytes(built.read_bytes())
            version = report["compiler"]["version"] or "?"
            ag = report["agreement"]
            verification = {"status": ag["status"], "how": "rknn-toolkit2's NPU simulator against onnxruntime on "
                            f"{src.path}: {ag['criterion']}", "cases": len(ag["cases"])}
            if ag["failures"]:
                verification["reason"] = ag["failures"][0]
            art = Artifact(path=name, format="rknn", inputs=list(src.inputs), outputs=list(src.outputs), target=platform,
                           precision="fp16", passes=[f"rknn-toolkit2 {version}"], verification=verification,
                           size_bytes=dest.stat().st_size, sha256=sha256_file(dest),
                           extra={"compiled_by": {"rknn-toolkit2": version, "platform": platform, "source": src.path,
                                                  "source_sha256": source_sha},
                                  "npu": report})
            manifest.artifacts = [a for a in manifest.artifacts if a.path != name] + [art]
            manifest.tools["rknn-toolkit2"] = version
            write_manifest(folder, manifest)
    return art.to_dict()


def describe(npu: dict[str, Any]) -> list[str]:
    """Human lines for an rknn artifact's ``npu`` record (``edgekit compile``, ``edgekit inspect``)."""
    ops, ag = npu.get("ops") or {}, npu.get("agreement") or {}
    comp = npu.get("compiler") or {}
    total = ops.get("total") or 0
    lines = [f"rknn-toolkit2 {comp.get('version', '?')} · {npu.get('platform')} · float16",
             f"ops: {ops.get('npu', 0)} of {total} on the NPU" + (f" ({100 * ops.get('npu', 0) / total:.0f}%)" if total
                                                                  else "") + f", {ops.get('cpu', 0)} on the CPU"]
    for c in ops.get("cpu_ops") or []:
        lines.append(f"  CPU {c.get('op')} #{c.get('index')} ({c.get('name')})")
    cycles = [o["cycles_ddr_npu_total"][2] for o in ops.get("table") or [] if o.get("cycles_ddr_npu_total")]
    if cycles:
        lines.append(f"estimated cycles (the toolkit's table): {sum(cycles) / 1e6:.2f} M")
    worst = min((c.get("psnr_db", c.get("cosine")) for c in ag.get("cases") or []), default=None)
    lines.append(f"simulator vs onnxruntime: {ag.get('status')} ({ag.get('criterion')})"
                 + (f"; worst case {worst}" if worst is not None else ""))
    lines += [f"  {f}" for f in ag.get("failures") or []]
    lines += [f"note: {n}" for n in npu.get("notes") or []]
    return lines
