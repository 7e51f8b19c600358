"""``edgekit compile``: an int8 TFLite model (or a bundle's) compiled by a vendor NPU compiler,
the compiled file kept as an artifact of its own and what the compiler reports in the manifest.

Today the compiler is Arm's Vela for the Ethos-U55/U65/U85 (:mod:`edgekit.vela`). The compiled
``model_vela.tflite`` is an artifact with ``format: "tflite"``, the accelerator as its ``target``,
``compiled_by`` (Vela's version, the accelerator, the system configuration and memory mode of
Vela's ``Arm/vela.ini``, the source artifact and its sha256) and ``npu``: the ops Vela put on
the NPU and on the CPU (by type and index, each CPU op with Vela's reason), MACs, cycles,
estimated inference time, SRAM/DRAM/flash use, and weights before and after Vela's encoding.
Its verification is ``skipped``: the ``ethos-u`` custom op it holds runs only on the NPU, so
``edgekit.load`` never picks it on a host (the source artifact beside it is the verified one).

Where it is written:

- a bundle folder, in place: under the folder's lock, ``model_vela.tflite`` is written beside
  the other artifacts (atomically; an earlier compile edgekit recorded is replaced, a file of
  that name edgekit did not write is refused), then the manifest;
- with ``out``: a new bundle (built in a staging folder and moved into place, see
  :func:`edgekit.bundle.staging_dir`) holding the source bundle's artifacts, or the source
  ``.tflite`` as ``model.tflite``, and the compiled one;
- a bare ``.tflite`` without ``out``: nothing; the report is returned.

Example::

    >>> r = compile("sr/", "ethos-u55-256")                               # doctest: +SKIP
    >>> r.report.cycles["npu"], len(r.report.cpu_ops)                      # doctest: +SKIP
    (1812124, 0)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, UsageError

__all__ = ["compile", "compile_into", "CompileResult", "COMPILED_NAME", "check_int8", "compiled_slot", "describe", "summary_line"]

COMPILED_NAME = "model_vela.tflite"
_INT_DTYPES = {"int8", "uint8", "int16"}


@dataclass
class CompileResult:
    """What :func:`compile` did: the Vela report, the model it compiled, and where the compiled
    artifact went (``bundle``/``artifact`` are None when nothing was written)."""

    report: Any  # edgekit.vela.VelaReport
    source: Path
    bundle: Path | None = None
    artifact: Any = None  # edgekit.bundle.Artifact
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "bundle": str(self.bundle) if self.bundle else None,
                "artifact": self.artifact.path if self.artifact is not None else None,
                "compiled_by": self.artifact.extra.get("compiled_by") if self.artifact is not None else None,
                "npu": self.report.to_dict(), "notes": list(self.notes)}


def compile(model: str | os.PathLike, target: str, *, system_config: str | None = None,
            memory_mode: str | None = None, out: str | os.PathLike | None = None,
            force: bool = False, rknn_python: str | os.PathLike | None = None) -> CompileResult:
    """Compile ``model`` (a ``.tflite`` file or a bundle folder with an int8 TFLite artifact) for
    the Ethos-U ``target`` (``ethos-u55-128``, ``ethos-u55-256``, ``ethos-u65-256``,
    ``ethos-u85-256``, or any other of Vela's accelerator configurations) and record the result
    (see the module docstring for where). ``system_config``/``memory_mode``: names from Vela's
    ``Arm/vela.ini`` (default: Vela's own for the accelerator family). ``force``: ``out`` may hold
    an edgekit bundle to replace.

    A Rockchip ``target`` (``rk3588``, ...: :data:`edgekit.rknn.PLATFORMS`) compiles the bundle's
    fp32 ONNX with rknn-toolkit2 in the interpreter ``rknn_python`` (or ``$EDGEKIT_RKNN_PYTHON``),
    into the bundle (:func:`edgekit.rknn.compile_rknn`).

    Raises :class:`UsageError` (unknown accelerator or configuration, a non-TFLite file),
    :class:`EdgekitError` for a float model (with the command that makes an int8 one) or when
    Vela fails, :class:`~edgekit.errors.MissingDependency` without Vela.
    """
    from edgekit._fs import existing, same_file
    from edgekit.bundle import is_bundle, read_manifest
    from edgekit.rknn import PLATFORMS as ROCKCHIP
    from edgekit.vela import ACCELERATORS, require_vela, resolve_system

    if target in ROCKCHIP:
        return _compile_rknn(model, target, out=out, system_config=system_config, memory_mode=memory_mode,
                             python=rknn_python)
    if rknn_python is not None:
        raise UsageError("--rknn-python is for Rockchip targets", hint=f"one of {', '.join(ROCKCHIP)}")
    if target not in ACCELERATORS:
        raise UsageError(f"unknown NPU target '{target}'",
                         hint=f"an Ethos-U ({', '.join(ACCELERATORS)}: Vela's --accelerator-config) or a Rockchip "
                              f"NPU ({', '.join(ROCKCHIP)})")
    src = existing(Path(model))
    folder = src if is_bundle(src) else None
    if folder is None and src.is_dir():
        from edgekit.bundle import MANIFEST_NAME

        raise UsageError(f"a folder without {MANIFEST_NAME} is not an edgekit bundle", where=src,
                         hint="pass a .tflite file or a folder written by `edgekit convert`")
    if out is not None and folder is not None and Path(out).exists() and same_file(out, folder):
        out = None  # --out names the bundle itself: compile in place
    require_vela()
    resolve_system(target, system_config, memory_mode)  # usage errors before any work
    if folder is not None:
        manifest = read_manifest(folder)
        artifact = _source_artifact(manifest, folder)
        tflite = _artifact_file(folder, artifact)
    else:
        if src.suffix.lower() != ".tflite":
            raise UsageError(f"Vela compiles TFLite models, not '{src.suffix or src.name}'", where=src,
                             hint=f"convert it first: edgekit convert {src} --to tflite --precision int8 --target ethos-u")
        manifest, artifact, tflite = None, None, src
    check_int8(tflite)
    work = Path(tempfile.mkdtemp(prefix="edgekit-compile-"))
    try:
        from edgekit.vela import run_vela

        report = run_vela(tflite, target, system_config=system_config, memory_mode=memory_mode, workdir=work, keep=True)
        result = CompileResult(report, tflite)
        if out is not None:
            _write_new_bundle(result, Path(out), force, folder, manifest)
        elif folder is not None:
            _write_in_place(result, folder)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Record:
    """A compiler's report already in its manifest form (rknn-toolkit2's)."""

    record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.record


def _compile_rknn(model: str | os.PathLike, platform: str, *, out: Any, system_config: Any, memory_mode: Any,
                  python: Any) -> CompileResult:
    from edgekit.bundle import Artifact
    from edgekit.rknn import compile_rknn

    if out is not None or system_config is not None or memory_mode is not None:
        raise UsageError("--out, --system-config and --memory-mode are for Ethos-U targets",
                         hint=f"edgekit compile BUNDLE --target {platform} writes into the bundle")
    artifact = Artifact.from_dict(compile_rknn(model, platform, python=python))
    folder = Path(model)
    return CompileResult(_Record(artifact.extra["npu"]), folder / artifact.extra["compiled_by"]["source"],
                         bundle=folder, artifact=artifact)


def compile_into(folder: Path, manifest: Any, target: str, *, system_config: str | None = None,
                 memory_mode: str | None = None) -> CompileResult:
    """Compile the int8 TFLite artifact of a bundle that is being built (``folder`` is private to
    the caller, e.g. a conversion's staging folder) and add the compiled artifact to ``manifest``
    and to the folder. Used by ``edgekit convert --compile``; the caller writes the manifest."""
    from edgekit.vela import run_vela

    artifact = _source_artifact(manifest, folder)
    tflite = _artifact_file(folder, artifact)
    check_int8(tflite)
    work = Path(tempfile.mkdtemp(prefix="edgekit-compile-"))
    try:
        report = run_vela(tflite, target, system_config=system_config, memory_mode=memory_mode, workdir=work, keep=True)
        result = CompileResult(report, tflite, bundle=folder)
        shutil.copyfile(report.compiled, folder / COMPILED_NAME)
        result.artifact = _compiled_artifact(report, folder / COMPILED_NAME, artifact, tflite)
        manifest.artifacts = [a for a in manifest.artifacts if a.path != COMPILED_NAME] + [result.artifact]
        manifest.tools["ethos-u-vela"] = report.version
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_int8(path: Path) -> None:
    """A one-line error for a model Vela cannot put on the NPU at all: one whose ops compute in
    float (no op makes an 8- or 16-bit integer activation)."""
    from edgekit.lint.readers import read_graph

    graph = read_graph(path)
    made = [t.dtype for op in graph.ops for t in op.outputs if not t.const]
    if any(d in _INT_DTYPES for d in made):
        return
    floats = sorted({d for d in made if d.startswith("float")}) or sorted(set(made)) or ["unknown"]
    raise EdgekitError(f"a {'/'.join(floats)} model: the Ethos-U NPU runs int8 (or int16) models only, so Vela "
                       "would leave every op on the CPU", where=path,
                       hint="convert with --precision int8, e.g. edgekit convert SOURCE --to tflite --precision int8 "
                            "--target ethos-u --out DIR")


def _source_artifact(manifest: Any, folder: Path) -> Any:
    """The bundle's TFLite artifact to compile: not itself compiled, int8 when there is one."""
    from edgekit.bundle import MANIFEST_NAME

    candidates = [a for a in manifest.artifacts if a.format == "tflite" and "compiled_by" not in a.extra]
    if not candidates:
        raise EdgekitError("the bundle has no TFLite artifact to compile", where=folder / MANIFEST_NAME,
                           hint="convert with --to tflite --precision int8 --target ethos-u")
    int8 = [a for a in candidates if a.precision == "int8"]
    if not int8:
        raise EdgekitError(f"{candidates[0].path} is a {candidates[0].precision} model: the Ethos-U NPU runs int8 "
                           "models only", where=folder,
                           hint="convert with --precision int8, e.g. edgekit convert SOURCE --to tflite --precision int8 "
                                "--target ethos-u --out DIR")
    return int8[0]


def _artifact_file(folder: Path, artifact: Any) -> Path:
    from edgekit._fs import contained_path, regular_file
    from edgekit.bundle import MANIFEST_NAME

    return regular_file(contained_path(folder, artifact.path, folder / MANIFEST_NAME, "artifact path"),
                        hint="re-run `edgekit convert`")


def _compiled_artifact(report: Any, path: Path, source: Any | None, source_file: Path) -> Any:
    """The manifest entry of the compiled file."""
    from edgekit.bundle import Artifact, sha256_file
    from edgekit.runtimes.modelfile import read_model

    info = read_model(path)
    inputs = list(source.inputs) if source is not None else list(info.inputs)
    outputs = list(source.outputs) if source is not None else list(info.outputs)
    extra: dict[str, Any] = {}
    if source is not None:
        for key in ("quantized_io",):
            if key in source.extra:
                extra[key] = source.extra[key]
    else:
        q = _quantized_io(info)
        if q:
            extra["quantized_io"] = q
    extra["compiled_by"] = {
        "vela": report.version, "accelerator": report.accelerator, "system_config": report.system_config,
        "memory_mode": report.memory_mode, "config_file": "Arm/vela.ini",
        "source": source.path if source is not None else source_file.name, "source_sha256": sha256_file(source_file),
    }
    extra["npu"] = report.to_dict()
    where = f"the {report.accelerator} NPU"
    return Artifact(
        path=path.name, format="tflite", inputs=inputs, outputs=outputs, target=report.accelerator,
        precision=source.precision if source is not None else "int8", passes=[f"vela {report.version}"],
        verification={"status": "skipped", "reason": f"compiled for {where}: its ethos-u custom op runs only there "
                                                    f"(the source {extra['compiled_by']['source']} is what runs here)"},
        size_bytes=path.stat().st_size, sha256=sha256_file(path),
        source_layouts=dict(source.source_layouts) if source is not None else {}, extra=extra)


def _quantized_io(info: Any) -> dict[str, dict[str, Any]]:
    """``quantized_io`` of a bare TFLite file, from what ``read_model`` reads (per-tensor only)."""
    out: dict[str, dict[str, Any]] = {}
    quant = (info.extra or {}).get("quantization") or {}
    specs = {t.name: t for t in (*info.inputs, *info.outputs)}
    for name, q in quant.items():
        scale, zp = list(q.get("scale") or []), list(q.get("zero_point") or [])
        spec = specs.get(name)
        if len(scale) == 1 and len(zp) == 1 and spec is not None and spec.dtype in _INT_DTYPES and scale[0] > 0:
            out[name] = {"scale": float(scale[0]), "zero_point": int(zp[0]), "dtype": spec.dtype}
    return out


def compiled_slot(folder: Path, manifest: Any, name: str, hint: str) -> Any:
    """The manifest entry of the compiled artifact ``name`` in ``folder`` (None when there is
    none); a usage error when a file of that name is there that edgekit did not record as compiled
    (never written over). Call it under the folder's lock."""
    owner = next((a for a in manifest.artifacts if a.path == name), None)
    if os.path.lexists(folder / name) and (owner is None or "compiled_by" not in owner.extra):
        raise UsageError(f"holds {name}, which is not a compiled artifact edgekit recorded", where=folder, hint=hint)
    return owner


def _write_in_place(result: CompileResult, folder: Path) -> None:
    """Write the compiled file and its manifest entry into the bundle ``folder``, under its lock;
    never over a file edgekit did not write."""
    from edgekit._fs import atomic_path, folder_lock
    from edgekit.bundle import read_manifest, write_manifest

    with folder_lock(folder):
        manifest = read_manifest(folder)  # again, under the lock: what is there now
        dest = folder / COMPILED_NAME
        owner = compiled_slot(folder, manifest, COMPILED_NAME, hint="move that file away, or write a new bundle "
                                                                    "with --out DIR")
        source = _source_artifact(manifest, folder)
        source_file = _artifact_file(folder, source)
        from edgekit.bundle import sha256_file

        if sha256_file(source_file) != sha256_file(result.source):
            raise EdgekitError(f"{source.path} changed while Vela compiled it; nothing was written", where=folder,
                               hint="run edgekit compile again")
        with atomic_path(dest) as tmp:
            shutil.copyfile(result.report.compiled, tmp)
        if owner is not None:
            result.notes.append(f"replaced the earlier {COMPILED_NAME} (compiled for "
                                f"{owner.extra['compiled_by'].get('accelerator', '?')})")
        result.artifact = _compiled_artifact(result.report, dest, source, source_file)
        manifest.artifacts = [a for a in manifest.artifacts if a.path != COMPILED_NAME] + [result.artifact]
        manifest.tools["ethos-u-vela"] = result.report.version
        write_manifest(folder, manifest)
        result.bundle = folder


def _write_new_bundle(result: CompileResult, out: Path, force: bool, folder: Path | None, manifest: Any) -> None:
    """A new bundle at ``out``: the source bundle's artifacts (or the source file as
    ``model.tflite``) and the compiled one."""
    from edgekit import __version__
    from edgekit._fs import contained_path
    from edgekit.bundle import MANIFEST_NAME, Artifact, Manifest, sha256_file, staging_dir, write_manifest
    from edgekit.runtimes.modelfile import read_model

    with staging_dir(out, force=force) as tmp:
        if folder is not None:
            new = Manifest.from_dict(manifest.to_dict())
            new.artifacts = [a for a in new.artifacts if a.path != COMPILED_NAME]
            for a in new.artifacts:
                src = contained_path(folder, a.path, folder / MANIFEST_NAME, "artifact path")
                dst = tmp / a.path
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dst)
                else:
                    shutil.copyfile(src, dst)
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(src.with_name(src.name + ".data"), dst.with_name(dst.name + ".data"))
            source = _source_artifact(new, tmp)
        else:
            dst = tmp / "model.tflite"
            shutil.copyfile(result.source, dst)
            info = read_model(dst)
            source = Artifact(path="model.tflite", format="tflite", inputs=list(info.inputs), outputs=list(info.outputs),
                              precision="int8", size_bytes=dst.stat().st_size, sha256=sha256_file(dst))
            q = _quantized_io(info)
            if q:
                source.extra["quantized_io"] = q
            tools = {"edgekit": __version__}
            new = Manifest(name=result.source.stem, task="other",
                           source={"kind": "file", "ref": str(result.source), "weights_sha256": None},
                           artifacts=[source], tools=tools,
                           created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        shutil.copyfile(result.report.compiled, tmp / COMPILED_NAME)
        result.artifact = _compiled_artifact(result.report, tmp / COMPILED_NAME, source, tmp / source.path)
        new.artifacts.append(result.artifact)
        new.tools["ethos-u-vela"] = result.report.version
        write_manifest(tmp, new)
    result.bundle = out


def describe(npu: dict[str, Any]) -> list[str]:
    """Human lines for a compiled artifact's ``npu`` record (``edgekit compile``, ``edgekit inspect``)."""
    from edgekit._fmt import human_size

    if (npu.get("compiler") or {}).get("name") == "rknn-toolkit2":
        from edgekit.rknn import describe as describe_rknn

        return describe_rknn(npu)

    ops = npu.get("ops") or {}
    cyc = npu.get("cycles") or {}
    mem = npu.get("memory") or {}
    w = npu.get("weights") or {}
    clock = npu.get("core_clock_hz") or 0
    comp = npu.get("compiler") or {}
    lines = [f"Vela {comp.get('version', '?')} · {npu.get('accelerator')} · {npu.get('system_config')}"
             + (f" ({clock / 1e6:g} MHz)" if clock else "") + f" · {npu.get('memory_mode')}"]
    total = ops.get("total") or 0
    share = f" ({100 * ops.get('npu', 0) / total:.0f}%)" if total else ""
    lines.append(f"ops: {ops.get('npu', 0)} of {total} on the NPU{share}, {ops.get('cpu', 0)} on the CPU")
    for c in ops.get("cpu_ops") or []:
        lines.append(f"  CPU {c.get('op')} #{c.get('index')}: {' — '.join(c.get('reasons') or [])}")
    t = npu.get("inference_time_s")
    by_type = cyc.get("npu_by_op_type") or {}
    top = ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in list(by_type.items())[:4] if v)
    lines.append(f"NPU cycles: {cyc.get('npu', 0) / 1e6:.2f} M (total {cyc.get('total', 0) / 1e6:.2f} M)"
                 + (f"; {top}" if top else ""))
    if t:
        lines.append(f"estimated inference: {t * 1e3:.2f} ms ({1 / t:.1f} inferences/s); {npu.get('macs', 0) / 1e6:.0f} M MACs")
    parts = [f"{k.replace('_bytes', '').replace('_', ' ')} {human_size(v)}" for k, v in mem.items() if v]
    lines.append("memory: " + (", ".join(parts) if parts else "none reported"))
    if w:
        lines.append(f"weights: {human_size(w.get('original_bytes'))} -> {human_size(w.get('encoded_bytes'))} encoded")
    return lines


def summary_line(npu: dict[str, Any]) -> str:
    """One line: ``ethos-u55-256: 17/17 ops on the NPU, 3.65 M NPU cycles, 7.31 ms``."""
    ops = npu.get("ops") or {}
    t = npu.get("inference_time_s") or 0
    return (f"{npu.get('accelerator')}: {ops.get('npu', 0)}/{ops.get('total', 0)} ops on the NPU, "
            f"{(npu.get('cycles') or {}).get('npu', 0) / 1e6:.2f} M NPU cycles, {t * 1e3:.2f} ms "
            f"({npu.get('system_config')})")
