"""Arm's Ethos-U compiler, Vela, run on a TFLite file: what it places on the NPU, what it leaves on
the Cortex-M CPU and why, and what it estimates the NPU takes (cycles, time, memory).

Vela (PyPI ``ethos-u-vela``, ``pip install "edgekit[ethos-u]"``) runs in a child process through
its command line, ``python -m ethosu.vela``, the interface Arm keeps stable across releases, with
the configuration file it ships (``Arm/vela.ini``): the system configurations there (clock,
memory bandwidths) and memory modes are used by name; edgekit never makes up a clock. Without
``system_config``/``memory_mode`` the ones Vela itself falls back to for the accelerator family
are named explicitly (:data:`DEFAULT_SYSTEM`), so every number says which system it is for.

One run gives, in a temporary folder:

- ``model_vela.tflite``: the compiled model (an ``ethos-u`` custom op holding the NPU command
  stream, plus any op left on the CPU);
- ``model_summary_<system>.csv``: cycles, inference time, MACs, SRAM/DRAM/flash use, weights
  before and after Vela's encoding;
- ``model_debug.xml`` (``--enable-debug-db``): per source op (``ext_key`` = op index in the input
  file) what Vela made of it, its cycles and MACs; ops Vela left to the CPU are ``Passthrough``;
- on stdout, for each op left on the CPU, ``Warning (supported operators) operator: OP, ofm:
  'NAME'``, then ``Reason: ...`` and the constraint it broke, in Vela's words.

:func:`run_vela` reads them into a :class:`VelaReport`. Example::

    >>> report = run_vela("sr/model.tflite", "ethos-u55-256")            # doctest: +SKIP
    >>> report.cpu_ops, report.cycles["npu"], report.inference_time_s    # doctest: +SKIP
    ([], 3647132, 0.00731)
"""

from __future__ import annotations

import configparser
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, MissingDependency, UsageError

__all__ = ["ACCELERATORS", "DEFAULT_SYSTEM", "CONFIG_FILE", "VelaOp", "VelaReport", "vela_version", "require_vela",
           "system_configs", "resolve_system", "run_vela", "parse_cpu_warnings"]

# Vela's --accelerator-config values (Vela 5.2).
ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
                "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048")
# The system configuration and memory mode Vela falls back to, per family, when none is given
# (Vela prints "No system configuration specified. Using a default of ..."); named here so that
# the output says which system its numbers are for.
DEFAULT_SYSTEM = {
    "ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
    "ethos-u65": ("Ethos_U65_Client_Server", "Dedicated_Sram_384KB"),
    "ethos-u85": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB"),
}
CONFIG_FILE = "Arm/vela.ini"  # shipped with Vela (ethosu/config_files/Arm/vela.ini)
PACKAGE = "ethos-u-vela"
TIMEOUT_S = 1800.0

_WARNING = re.compile(r"^Warning \(supported operators\) operator: (?P<op>\S+), ofm: '(?P<ofm>.*)'\s*$")


def vela_version() -> str | None:
    """The installed Vela's version, or None when it is not installed."""
    from importlib import metadata, util

    if util.find_spec("ethosu") is None or util.find_spec("ethosu.vela") is None:
        return None
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return None


def require_vela(purpose: str = "compiling for Ethos-U") -> str:
    """The installed Vela's version; a one-line error naming the install command when absent."""
    version = vela_version()
    if version is None:
        raise MissingDependency(PACKAGE, purpose, extra="ethos-u")
    return version


def _config_path() -> Path:
    from importlib import util

    spec = util.find_spec("ethosu")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "config_files" / CONFIG_FILE
        if path.is_file():
            return path
    raise EdgekitError(f"Vela's configuration file {CONFIG_FILE} is missing from the installed {PACKAGE}",
                       hint=f"reinstall it: pip install --force-reinstall '{PACKAGE}'")


def system_configs() -> dict[str, dict[str, str]]:
    """``{"system": {name: core clock text}, "memory": {name: description}}`` from Vela's
    ``Arm/vela.ini``."""
    parser = configparser.ConfigParser()
    parser.read(_config_path(), encoding="utf-8")
    systems, memory = {}, {}
    for section in parser.sections():
        kind, _, name = section.partition(".")
        if kind == "System_Config":
            systems[name] = parser.get(section, "core_clock", fallback="")
        elif kind == "Memory_Mode":
            memory[name] = parser.get(section, "arena_cache_size", fallback="")
    return {"system": systems, "memory": memory}


def resolve_system(accelerator: str, system_config: str | None = None,
                   memory_mode: str | None = None) -> tuple[str, str]:
    """The system configuration and memory mode to compile with: the ones given (checked against
    Vela's ``Arm/vela.ini``), else Vela's own defaults for the accelerator's family. Usage errors
    name the known values."""
    if accelerator not in ACCELERATORS:
        raise UsageError(f"unknown Ethos-U accelerator '{accelerator}'",
                         hint=f"one of {', '.join(ACCELERATORS)} (Vela's --accelerator-config)")
    family = accelerator.rsplit("-", 1)[0]
    default_system, default_memory = DEFAULT_SYSTEM[family]
    known = system_configs()
    system = system_config or default_system
    memory = memory_mode or default_memory
    if system not in known["system"]:
        raise UsageError(f"unknown system configuration '{system}'",
                         hint=f"Vela's {CONFIG_FILE} has: {', '.join(sorted(known['system']))}")
    if memory not in known["memory"]:
        raise UsageError(f"unknown memory mode '{memory}'",
                         hint=f"Vela's {CONFIG_FILE} has: {', '.join(sorted(known['memory']))}")
    return system, memory


@dataclass
class VelaOp:
    """One op of the input file: ``on`` is ``"npu"`` or ``"cpu"``; for a CPU op, ``reasons`` are
    Vela's (its ``Reason:`` line, then the constraint it names); ``cycles`` and ``macs`` Vela's
    estimate for the NPU ops made from it (0 for an op folded away, e.g. a RESHAPE)."""

    index: int
    op: str
    on: str
    reasons: list[str] = field(default_factory=list)
    cycles: int = 0
    macs: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "op": self.op, "on": self.on}
        if self.reasons:
            d["reasons"] = list(self.reasons)
        if self.on == "npu":
            d["cycles"], d["macs"] = self.cycles, self.macs
        return d


@dataclass
class VelaReport:
    """What one Vela run said about one model (see the module docstring)."""

    version: str
    accelerator: str
    system_config: str
    memory_mode: str
    core_clock_hz: float
    ops: list[VelaOp]
    vela_counts: dict[str, int]
    macs: int
    cycles: dict[str, int]
    inference_time_s: float
    memory: dict[str, int]
    weights: dict[str, int]
    compiled: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_ops(self) -> list[VelaOp]:
        return [o for o in self.ops if o.on == "cpu"]

    @property
    def npu_ops(self) -> list[VelaOp]:
        return [o for o in self.ops if o.on == "npu"]

    @property
    def npu_share(self) -> float:
        """The fraction of the input file's ops Vela placed on the NPU."""
        return len(self.npu_ops) / len(self.ops) if self.ops else 0.0

    def cycles_by_op(self) -> dict[str, int]:
        """NPU cycles per op type, largest first."""
        out: dict[str, int] = {}
        for o in self.npu_ops:
            out[o.op] = out.get(o.op, 0) + o.cycles
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        by_type: dict[str, dict[str, int]] = {"npu": {}, "cpu": {}}
        for o in self.ops:
            by_type[o.on][o.op] = by_type[o.on].get(o.op, 0) + 1
        return {
            "compiler": {"name": "vela", "version": self.version},
            "accelerator": self.accelerator, "system_config": self.system_config, "memory_mode": self.memory_mode,
            "config_file": CONFIG_FILE, "core_clock_hz": self.core_clock_hz,
            "ops": {"total": len(self.ops), "npu": len(self.npu_ops), "cpu": len(self.cpu_ops),
                    "npu_by_type": by_type["npu"], "cpu_by_type": by_type["cpu"],
                    "cpu_ops": [o.to_dict() for o in self.cpu_ops],
                    "npu_ops": [o.to_dict() for o in self.npu_ops],
                    "vela_counts": dict(self.vela_counts)},
            "macs": self.macs,
            "cycles": {**self.cycles, "npu_by_op_type": self.cycles_by_op()},
            "inference_time_s": self.inference_time_s,
            "inferences_per_second": (1.0 / self.inference_time_s) if self.inference_time_s > 0 else None,
            "memory": dict(self.memory),
            "weights": dict(self.weights),
            "notes": list(self.notes),
        }


def run_vela(model: str | os.PathLike, accelerator: str, *, system_config: str | None = None,
             memory_mode: str | None = None, workdir: str | os.PathLike | None = None,
             keep: bool = False) -> VelaReport:
    """Compile the TFLite file ``model`` for ``accelerator`` with Vela and read what it reports.

    The compiled file is left at ``report.compiled`` when ``keep`` (in ``workdir``, a temporary
    folder by default, which the caller then removes); otherwise every file Vela wrote is removed.
    Raises :class:`~edgekit.errors.MissingDependency` without Vela, :class:`UsageError` for an
    unknown accelerator, system configuration or memory mode, and :class:`EdgekitError` with
    Vela's own message when it fails on the model.
    """
    from edgekit._fs import regular_file

    version = require_vela()
    src = regular_file(model)
    system, memory = resolve_system(accelerator, system_config, memory_mode)
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="edgekit-vela-")) if own_dir else Path(workdir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        staged = work / "in" / "model.tflite"  # Vela names its outputs after the input's stem
        staged.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, staged)
        out_dir = work / "out"
        cmd = [sys.executable, "-m", "ethosu.vela", str(staged), "--accelerator-config", accelerator,
               "--config", CONFIG_FILE, "--system-config", system, "--memory-mode", memory,
               "--output-dir", str(out_dir), "--enable-debug-db"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=work,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
        except subprocess.TimeoutExpired:
            raise EdgekitError(f"Vela did not finish within {TIMEOUT_S:.0f} s", where=src) from None
        if proc.returncode != 0:
            raise EdgekitError(f"Vela {version} failed: {_vela_error(proc.stdout, proc.stderr)}", where=src,
                               hint="the model may use an op or shape Vela cannot compile; "
                                    f"`edgekit lint {src} --target ethos-u` names the ops it would leave on the CPU")
        report = _read_outputs(out_dir, src, proc.stdout, version, accelerator, system, memory)
        if keep:
            report.compiled = out_dir / "model_vela.tflite"
        return report
    finally:
        if own_dir and not keep:
            shutil.rmtree(work, ignore_errors=True)


def _vela_error(stdout: str, stderr: str) -> str:
    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    text = errors[-1] if errors else (lines[-1] if lines else "no message")
    return " ".join(text.split())[:300]


def parse_cpu_warnings(stdout: str) -> list[tuple[str, str, list[str]]]:
    """``[(op type, ofm name, [reason, constraint...])]`` from Vela's stdout, in the order printed."""
    out: list[tuple[str, str, list[str]]] = []
    current: list[str] | None = None
    for line in stdout.splitlines():
        m = _WARNING.match(line)
        if m:
            current = []
            out.append((m["op"], m["ofm"], current))
            continue
        if current is None:
            continue
        text = line.strip()
        if not text or text.startswith("Warning") or text.startswith("Network summary"):
            current = None
            continue
        current.append(text[len("Reason:"):].strip() if text.startswith("Reason:") else text)
    return out


def _read_outputs(out_dir: Path, src: Path, stdout: str, version: str, accelerator: str, system: str,
                  memory: str) -> VelaReport:
    from edgekit.lint.readers import read_graph

    summary_path = out_dir / f"model_summary_{system}.csv"
    if not summary_path.is_file():
        raise EdgekitError(f"Vela {version} wrote no summary ({summary_path.name})", where=src)
    with open(summary_path, newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    tables = _debug_tables(out_dir / "model_debug.xml")
    graph = read_graph(src)
    main_ops = [op for op in graph.ops if op.subgraph == 0]
    notes: list[str] = []

    index_of: dict[str, int] = {}  # debug db source id -> op index in the input file
    for r in tables.get("source", []):
        index_of[r["id"]] = int(r["ext_key"])
    placement: dict[int, str] = {}
    cycles: dict[int, int] = {}
    macs: dict[int, int] = {}
    for r in tables.get("perf", []):
        i = index_of.get(r["source_id"])
        if i is None:
            continue
        if r["operator"] == "Passthrough":
            placement[i] = "cpu"
        else:
            placement.setdefault(i, "npu")
            cycles[i] = cycles.get(i, 0) + _int(r.get("op_cycles"))
            macs[i] = macs.get(i, 0) + _int(r.get("mac_count"))
    ops = [VelaOp(op.index, op.type, placement.get(op.index, "npu"), cycles=cycles.get(op.index, 0),
                  macs=macs.get(op.index, 0)) for op in main_ops]
    if not tables.get("source"):
        notes.append("Vela wrote no per-op table: every op is counted on the NPU")
    _attach_reasons(ops, main_ops, parse_cpu_warnings(stdout), notes)

    kib = lambda key: int(round(float(row.get(key) or 0) * 1024))  # noqa: E731 - Vela reports KiB
    return VelaReport(
        version=version, accelerator=accelerator, system_config=row.get("system_config") or system,
        memory_mode=row.get("memory_mode") or memory, core_clock_hz=float(row.get("core_clock") or 0),
        ops=ops,
        vela_counts={"npu": _count(stdout, "NPU operators"), "cpu": _count(stdout, "CPU operators")},
        macs=_int(row.get("nn_macs")),
        cycles={"npu": _int(row.get("cycles_npu")), "total": _int(row.get("cycles_total")),
                "sram_access": _int(row.get("cycles_sram_access")), "dram_access": _int(row.get("cycles_dram_access")),
                "on_chip_flash_access": _int(row.get("cycles_on_chip_flash_access")),
                "off_chip_flash_access": _int(row.get("cycles_off_chip_flash_access"))},
        inference_time_s=float(row.get("inference_time") or 0),
        memory={"sram_bytes": kib("sram_memory_used"), "dram_bytes": kib("dram_memory_used"),
                "on_chip_flash_bytes": kib("on_chip_flash_memory_used"),
                "off_chip_flash_bytes": kib("off_chip_flash_memory_used")},
        weights={"original_bytes": _int(row.get("total_original_weights")),
                 "encoded_bytes": _int(row.get("total_npu_encoded_weights"))},
        notes=notes,
    )


def _attach_reasons(ops: list[VelaOp], graph_ops: list[Any], warnings: list[tuple[str, str, list[str]]],
                    notes: list[str]) -> None:
    """Give each CPU op Vela's reasons: a warning names the op type and its output tensor; where
    two ops share both, they are matched in order."""
    taken: set[int] = set()
    by_index = {o.index: o for o in ops}
    for op_type, ofm, reasons in warnings:
        candidates = [g.index for g in graph_ops if g.type == op_type and g.index not in taken
                      and any(t.name == ofm for t in g.outputs)]
        candidates = candidates or [g.index for g in graph_ops if g.type == op_type and g.index not in taken
                                    and by_index[g.index].on == "cpu"]
        if not candidates:
            notes.append(f"Vela warned about {op_type} '{ofm}', which is not an op of the input file")
            continue
        cpu_first = sorted(candidates, key=lambda i: by_index[i].on != "cpu")
        i = cpu_first[0]
        taken.add(i)
        by_index[i].reasons = list(reasons) or ["(no reason given)"]
        by_index[i].on = "cpu"
    table = _vela_table()
    for o in ops:
        if o.on == "cpu" and not o.reasons:
            o.reasons = ["Unsupported opType (not in Vela's op table; Vela printed no warning for it)"
                         if table is not None and o.op not in table else "(Vela gave no reason)"]


def _vela_table() -> set[str] | None:
    """The TFLite ops the installed Vela can place on an Ethos-U55/U65 (None if unknown)."""
    try:
        from ethosu.vela.tflite_mapping import optype_to_builtintype
        from ethosu.vela.tflite_supported_operators import TFLiteSupportedOperators
    except Exception:  # noqa: BLE001 - only used to word a reason
        return None
    return {str(optype_to_builtintype(t)) for t in TFLiteSupportedOperators.supported_operators}


def _count(stdout: str, label: str) -> int:
    m = re.search(rf"^{label} = (\d+)", stdout, re.M)
    return int(m.group(1)) if m else 0


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _debug_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """The CSV tables of Vela's debug database (``<table name="..."><![CDATA[csv]]></table>``)."""
    if not path.is_file():
        return {}
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return {}
    out: dict[str, list[dict[str, str]]] = {}
    for table in root.iter("table"):
        text = (table.text or "").strip()
        if text:
            out[table.get("name", "")] = list(csv.DictReader(text.splitlines()))
    return out


# Lint rules whose error findings mean an op Vela leaves on the CPU (ethos-u profile): an op not
# in Vela's table or outside a constraint it states, and any op reading or writing a tensor of a
# type the NPU has no feature maps for. Layout, rank and pattern findings are about NPU time.
CPU_RULES = ("op-not-supported", "op-forbidden", "op-constraint", "dtype", "dynamic-shape")


def predict_cpu_ops(report: Any, graph: Any = None) -> dict[int, list[str]]:
    """What ``edgekit lint --target ethos-u`` predicts Vela leaves on the Cortex-M CPU, without
    running Vela: ``{op index: [why, in the profile's (Vela's) words]}`` for the ops of the main
    subgraph. ``report``: a :class:`~edgekit.lint.LintReport` of a TFLite file; ``graph`` its
    :class:`~edgekit.lint.readers.Graph` (read from ``report.path`` when None)."""
    if report.format != "tflite":
        return {}
    if graph is None:
        from edgekit.lint.readers import read_graph

        graph = read_graph(report.path)
    ops = [op for op in graph.ops if op.subgraph == 0]
    by_index = {op.index: op for op in ops}
    out: dict[int, list[str]] = {}
    for f in report.findings:
        if f.severity != "error" or f.rule not in CPU_RULES:
            continue
        why = f.why or f.message
        if f.rule in ("dtype", "dynamic-shape"):
            names = set(f.details.get("tensors") or ([f.tensor] if f.tensor else []))
            for op in ops:
                touched = [t for t in (*op.inputs, *op.outputs) if t is not None and not t.const]
                if any(t.name in names for t in touched):
                    out.setdefault(op.index, []).append(why)
        elif isinstance(f.index_or_node, int) and f.index_or_node in by_index:
            out.setdefault(f.index_or_node, []).append(why)
    return {i: list(dict.fromkeys(w)) for i, w in sorted(out.items())}
