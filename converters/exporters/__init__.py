"""Exporters: one module per format, each ``export(request) -> ExportResult``.

``EXPORTERS`` maps a format to the module that writes it (imported lazily: each pulls in a
heavy library — torch.onnx + onnxscript, litert-torch, coremltools). An exporter takes the
captured (and rewritten) ``ExportedProgram`` with its named example inputs, writes one file
and reports the format-level passes it ran. It never changes the program it is given.

Failures raise :class:`~edgekit.errors.ConversionError` at stage ``export`` with one line:
the format, the op the format cannot express when the tool names one, and what to do. The
converters' own chatter (absl logs, progress bars, MLIR dumps) is captured by
:func:`tool_output` and only shown in those errors (last lines) or with ``EDGEKIT_DEBUG=1``.

Example::

    >>> from edgekit.converters.exporters import ExportRequest, export        # doctest: +SKIP
    >>> export("tflite", ExportRequest(program, kwargs, ["input"], ["logits"], dest=Path("m.tflite")))
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgekit.errors import ConversionError, UsageError, debug_enabled

__all__ = ["EXPORTERS", "ORDER", "ExportRequest", "ExportResult", "export", "tool_output", "export_failure"]

EXPORTERS: dict[str, str] = {
    "onnx": "edgekit.converters.exporters.onnx",
    "tflite": "edgekit.converters.exporters.tflite",
    "coreml": "edgekit.converters.exporters.coreml",
}
ORDER = ("onnx", "tflite", "coreml")
PRECISIONS = ("fp32", "fp16")


@dataclass
class ExportRequest:
    """What an exporter needs.

    ``program``: the ExportedProgram (inputs are keyword arguments named ``input_names``,
    outputs a dict named ``output_names``); ``kwargs``: its example inputs. ``onnx_source``:
    an ``.onnx`` file to optimise instead of exporting ``program`` (ONNX → ONNX).
    ``image_input``: CoreML only — ``{"color_layout": "RGB"|"BGR"}`` makes the first input an
    ``ImageType`` (pre-processing folded); ``labels`` then adds a ``ClassifierConfig``.
    ``program_fp16``: the half-precision program (fp32 inputs/outputs, fp16 inside) for
    exporters that implement fp16 that way (ONNX).
    """

    program: Any
    kwargs: dict[str, Any]
    input_names: list[str]
    output_names: list[str]
    dest: Path
    precision: str = "fp32"
    task: str = "other"
    onnx_source: Path | None = None
    image_input: dict[str, Any] | None = None
    labels: list[str] | None = None
    program_fp16: Any = None


@dataclass
class ExportResult:
    """An exported file and what was done to it at the format level."""

    path: Path
    passes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def export(fmt: str, request: ExportRequest) -> ExportResult:
    """Write ``request.dest`` in format ``fmt`` with its exporter module."""
    if fmt not in EXPORTERS:
        raise UsageError(f"unknown format '{fmt}'", hint=f"choose from: {', '.join(ORDER)}")
    if request.precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{request.precision}'", hint=f"choose from: {', '.join(PRECISIONS)}")
    module = importlib.import_module(EXPORTERS[fmt])
    return module.export(request)


class CapturedOutput:
    """Text the tools wrote to stdout/stderr while captured (see :func:`tool_output`)."""

    text: str = ""

    def tail(self, n: int = 3) -> str:
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return " | ".join(lines[-n:])


@contextlib.contextmanager
def tool_output() -> Iterator[CapturedOutput]:
    """Redirect file descriptors 1 and 2 (C++ logs too) and Python's ``sys.stdout``/``sys.stderr``
    into a temporary buffer for the block.

    With ``EDGEKIT_DEBUG=1`` nothing is captured. The captured text is available afterwards
    (also when the block raised) for error messages.
    """
    captured = CapturedOutput()
    if debug_enabled():
        yield captured
        return
    import io

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    py_log = io.StringIO()  # Python-level writes (also when sys.stdout is not fd 1, e.g. under a test runner)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(py_log), contextlib.redirect_stderr(py_log):
                yield captured
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            log.seek(0)
            captured.text = log.read().decode("utf-8", "replace") + py_log.getvalue()


# Patterns in tool errors that name an op the format cannot express.
_OP_PATTERNS = (
    re.compile(r"convert function for op '([^']+)' not implemented"),
    re.compile(r"Unsupported fx node ([A-Za-z0-9_.]+)"),
    re.compile(r"failed to legalize operation '([^']+)'"),
    re.compile(r"'(tfl\.[a-z_0-9]+)' op"),
    re.compile(r"Unsupported (?:op|operator)[: ]+'?([A-Za-z0-9_.:]+)'?"),
    re.compile(r"No lowering found for:?\s*'?([A-Za-z0-9_.:]+)"),
    re.compile(r"(aten[.:][A-Za-z0-9_.]+)"),
)


def op_named_in(text: str) -> str | None:
    """The op a converter's error names, when it names one."""
    select = re.search(r"TF Select ops: ([A-Za-z0-9_, ]+)", text)
    if select:  # lowered to TensorFlow ops that LiteRT's builtin runtime does not have
        ops = select.group(1).strip()
        depthwise = re.search(r"tf\.Conv3D\([^)]*tensor<\d+x\d+x\d+x1x\d+x", text)
        return f"{ops}{' (depthwise)' if depthwise else ''}, available only as a TF Select op"
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group(1)
    return None


_LOCATION = re.compile(r"([^\s\"':]+\.py):(\d+)(?::\d+)?: error")


def location_in(text: str) -> str | None:
    """``file.py:line`` of the model code a converter's error points at, when it does."""
    m = _LOCATION.search(text)
    return f"{m.group(1)}:{m.group(2)}" if m else None


def export_failure(fmt: str, e: BaseException, log: CapturedOutput | None = None, *,
                   rank5: bool = False) -> ConversionError:
    """A one-line :class:`ConversionError` for an exporter that raised ``e``."""
    if isinstance(e, ConversionError):
        return e
    text = f"{e}\n{log.text if log else ''}"
    from edgekit.errors import first_line

    first = first_line(e)
    op = op_named_in(text)
    tool = {"onnx": "torch.onnx", "tflite": "litert-torch", "coreml": "coremltools"}[fmt]
    if op:
        msg = f"{fmt}: {tool} cannot express op '{op}'"
    else:
        msg = f"{fmt}: {tool} failed ({type(e).__name__}: {first})"
    if rank5:
        hint = "this model has 5-D (video) tensors; use --target generic-npu for NPU-friendly rewrites, " \
               "or drop this format"
    elif op:
        hint = "replace that op in the model, or drop this format from --to"
    else:
        hint = "run with EDGEKIT_DEBUG=1 for the converter's log"
    return ConversionError("export", msg, where=location_in(text), hint=hint)
