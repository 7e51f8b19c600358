"""RESIZE_NEAREST_NEIGHBOR without ``half_pixel_centers`` for integer scale factors (TFLite stage).

litert-torch lowers ``upsample_nearest2d`` to ``RESIZE_NEAREST_NEIGHBOR`` with
``half_pixel_centers=True`` (op version 3). The Edge TPU compiler rejects that version and NNAPI
rejects the flag below Android 11. For an integer factor ``s`` (output size = s · input size,
``align_corners`` off) the flag changes nothing::

    before:  in = floor((out + 0.5) / s)        (TFLite's half-pixel nearest)
    after:   in = floor(out / s)

and ``(out mod s + 0.5) / s < 1`` for every ``out``, so both pick ``out // s``: the pass is
exact. It clears the flag on every such op and lowers the operator code's version from 3 to 1
(2 for int8) when no op of that code still needs version 3. Non-integer factors are left alone.

Example (``.tflite`` in, same path out, rewritten atomically)::

    >>> path = rewrite(Path("model.tflite"))          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from edgekit._fs import atomic_path

__all__ = ["check", "rewrite"]

_OP = "RESIZE_NEAREST_NEIGHBOR"


def _targets(model) -> list[tuple[object, object]]:
    """(operator, its options) for every half-pixel nearest resize by integer factors."""
    from ai_edge_litert import schema_py_generated as schema

    found = []
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
            if builtin != schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR:
                continue
            opts = op.builtinOptions
            if opts is None or not opts.halfPixelCenters or opts.alignCorners:
                continue
            src = graph.tensors[op.inputs[0]].shape
            dst = graph.tensors[op.outputs[0]].shape
            if src is None or dst is None or len(src) != 4 or len(dst) != 4:
                continue
            h, w, oh, ow = int(src[1]), int(src[2]), int(dst[1]), int(dst[2])
            if min(h, w, oh, ow) <= 0 or oh % h or ow % w:
                continue
            found.append((op, opts))
    return found


def check(path: Path) -> str | None:
    from ai_edge_litert.tools import flatbuffer_utils

    if not _targets(flatbuffer_utils.read_model(str(path))):
        return f"no {_OP} with half_pixel_centers and an integer scale factor"
    return None


def rewrite(path: Path) -> Path:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    model = flatbuffer_utils.read_model(str(path))
    for _, opts in _targets(model):
        opts.halfPixelCenters = False
    still_v3, int8 = set(), set()
    for g in model.subgraphs or []:
        for op in g.operators or []:
            if op.builtinOptions is not None and getattr(op.builtinOptions, "halfPixelCenters", False):
                still_v3.add(op.opcodeIndex)
            if g.tensors[op.inputs[0]].type == schema.TensorType.INT8:
                int8.add(op.opcodeIndex)
    for index, code in enumerate(model.operatorCodes):
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        if builtin == schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR and code.version == 3 and index not in still_v3:
            code.version = 2 if index in int8 else 1  # the versions without half-pixel centers
    with atomic_path(path) as tmp:
        flatbuffer_utils.write_model(model, str(tmp))
    return path
