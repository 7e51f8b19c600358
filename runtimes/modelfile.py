"""Read, validate and summarise a model file in pure Python, before any native runtime sees it.

Native loaders trust their input: a truncated ``.tflite`` can crash the interpreter, a
random ``.onnx`` gives an opaque error. :func:`read_model` checks the file's structure with
bounds checks (TFLite flatbuffer, ONNX protobuf, ORT flatbuffer) and summarises it: inputs
and outputs, an op histogram, tensor ranks and dtypes, external data files. It needs neither
the ``onnx`` package nor a runtime, so ``edgekit inspect`` and the backends share it; every
problem is an :class:`~edgekit.errors.InvalidModelFile` whose one-line message names the file
and the part that is wrong.

Example::

    >>> info = read_model("mobilenet_v2.tflite")                  # doctest: +SKIP
    >>> info.inputs[0], info.op_histogram["CONV_2D"], info.max_rank  # doctest: +SKIP
    (TensorSpec(name='serving_default_args_0', shape=(1, 3, 224, 224), dtype='float32', layout=None), 35, 4)
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import InvalidModelFile
from edgekit.runtimes._flatbuffer import Malformed, file_identifier
from edgekit.runtimes.base import TensorSpec

__all__ = ["ModelInfo", "read_model", "sniff_format", "MODEL_FORMATS"]

MODEL_FORMATS = ("tflite", "onnx", "ort")
_SUFFIX = {".tflite": "tflite", ".onnx": "onnx", ".ort": "ort"}


@dataclass
class ModelInfo:
    """What a model file holds, read without running it.

    ``op_histogram`` maps op names to counts over every (sub)graph: TFLite builtin names
    (``"CONV_2D"``; custom ops by their custom code), ONNX ``op_type`` (``"Conv"``; prefixed by
    the domain when not the default one, ``"com.microsoft::FusedConv"``). ``tensor_ranks`` and
    ``tensor_dtypes`` count tensors by rank and dtype among the tensors whose type the file
    records (all of them in TFLite; in ONNX the inputs, outputs, ``value_info`` entries and
    initializers). ``external_files`` are the data files an ONNX model reads, relative to its
    folder (all checked to exist and be long enough). ``extra`` holds format details (schema,
    opsets, producer, signatures, quantization of inputs and outputs...).
    """

    format: str
    path: Path
    size_bytes: int  # the model file plus its external data files
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    op_histogram: dict[str, int] = field(default_factory=dict)
    tensor_ranks: dict[int, int] = field(default_factory=dict)
    tensor_dtypes: dict[str, int] = field(default_factory=dict)
    external_files: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_rank(self) -> int:
        """Highest tensor rank recorded in the file (0 when none is recorded)."""
        return max(self.tensor_ranks, default=0)

    @property
    def num_ops(self) -> int:
        return sum(self.op_histogram.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for ``edgekit inspect --json``)."""
        return {
            "format": self.format,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "num_ops": self.num_ops,
            "op_histogram": dict(self.op_histogram),
            "max_rank": self.max_rank,
            "tensor_ranks": {str(k): v for k, v in self.tensor_ranks.items()},
            "tensor_dtypes": dict(self.tensor_dtypes),
            "external_files": list(self.external_files),
            "extra": self.extra,
        }


def sniff_format(head: bytes) -> str | None:
    """The model format the first bytes of a file show (``"tflite"``, ``"ort"``, ``"zip"``...), or None."""
    ident = file_identifier(head)
    if ident == b"TFL3":
        return "tflite"
    if ident == b"ORTM":
        return "ort"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] in (b"{", b"["):
        return "json"
    return None


def read_model(path: str | os.PathLike, format: str | None = None) -> ModelInfo:
    """Validate the model file at ``path`` and summarise it.

    ``format`` (``"tflite"``, ``"onnx"``, ``"ort"``) defaults to the one the suffix names.
    Raises :class:`~edgekit.errors.ModelFileNotFound` for a missing path and
    :class:`~edgekit.errors.InvalidModelFile` for a folder, an empty, truncated or corrupt
    file, a file whose content is another format than its suffix says, or an ONNX model whose
    external data files are missing or short. Never loads a native runtime.
    """
    from edgekit._fs import regular_file

    p = Path(path)
    if p.is_dir() and p.exists():
        raise InvalidModelFile(p, "is a folder, not a model file")
    regular_file(p)
    fmt = format or _SUFFIX.get(p.suffix.lower())
    if fmt not in MODEL_FORMATS:
        raise InvalidModelFile(p, f"unknown model format '{p.suffix or '(no suffix)'}'",
                               hint="read_model reads .tflite, .onnx and .ort files")
    try:
        size = p.stat().st_size
        if size == 0:
            raise InvalidModelFile(p, "empty file (0 bytes)")
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            seen = sniff_format(data[:8])
            if seen is not None and seen != fmt:
                what = {"tflite": "a TFLite flatbuffer", "ort": "an ORT-format model", "zip": "a zip archive",
                        "json": "a JSON file"}[seen]
                raise InvalidModelFile(p, f"named .{fmt} but it is {what}",
                                       hint="rename it to its real suffix, or pass the right file")
            if fmt == "tflite":
                from edgekit.runtimes.tflite_file import read_tflite

                fields = read_tflite(p, data)
            elif fmt == "onnx":
                from edgekit.runtimes.onnx_file import read_onnx

                fields = read_onnx(p, data)
            else:
                from edgekit.runtimes.onnx_file import read_ort

                fields = read_ort(p, data)
    except Malformed as e:
        other = _really_onnx(p) if fmt != "onnx" else None
        if other:
            raise InvalidModelFile(p, f"named .{fmt} but it is an ONNX model ({other})",
                                   hint="rename it to .onnx, or pass the right file") from None
        raise InvalidModelFile(p, f"invalid {fmt} model: {e}") from None
    except (struct.error, IndexError, TypeError, RecursionError) as e:  # a check missed: still one line, no crash
        raise InvalidModelFile(p, f"corrupt {fmt} file ({type(e).__name__}: {e})") from None
    except (OSError, ValueError) as e:  # unreadable file; mmap of special files
        raise InvalidModelFile(p, f"cannot read the file ({e})") from None
    size += sum((p.parent / f).stat().st_size for f in fields["external_files"])
    return ModelInfo(format=fmt, path=p, size_bytes=size, **fields)


def _really_onnx(p: Path) -> str | None:
    """A short description when ``p`` parses as an ONNX model (a file with the wrong suffix),
    else None. ONNX has no magic number, so only a full parse can tell."""
    from edgekit.runtimes.onnx_file import read_onnx

    try:
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            fields = read_onnx(p, data)
    except Exception:  # noqa: BLE001 - not ONNX either: the caller reports its own format's error
        return None
    ops = sum(fields["op_histogram"].values())
    return f"{ops} ops, inputs {', '.join(s.name for s in fields['inputs']) or 'none'}"
