"""Names and task guessing: the model's name from its source, stable input and output tensor
names (``input``, ``logits``/``output``...) and the task read from the shapes."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

__all__ = ["name_of", "name_inputs", "name_outputs", "infer_task"]


def name_of(src: dict[str, Any]) -> str:
    """The model's name: the callable's name, or the file's stem, made filename-safe."""
    ref = str(src.get("ref", "model"))
    attr = ref.rsplit(":", 1)[-1] if ":" in ref else Path(ref).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", attr) or "model"


def name_inputs(module: Any, n: int) -> list[str]:
    """``input`` for one input; else the names of ``forward``'s parameters, or ``input_<i>``."""
    if n == 1:
        return ["input"]
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= n and len(set(params[:n])) == n:
        return [_identifier(p) for p in params[:n]]
    return [f"input_{i}" for i in range(n)]


def name_outputs(out: Any, n: int, task: str) -> list[str]:
    """A dict output's keys; else ``logits`` (classifiers) or ``output`` for one output, or ``output_<i>``."""
    if isinstance(out, dict) and len(out) == n and all(isinstance(k, str) for k in out):
        return [_identifier(k) for k in out]
    if n == 1:
        return ["logits" if task == "classify" else "output"]
    return [f"output_{i}" for i in range(n)]


def _identifier(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else f"t_{s}"


def infer_task(card_task: str | None, in_shapes: list[tuple], out_shapes: list[tuple]) -> str:
    """The card's task, else one read from the shapes: a single (N, K) output → classify; an
    image output whose H and W are an integer multiple (> 1) of the input's with the same
    channels → super-resolve; otherwise other."""
    if card_task:
        return card_task
    if len(out_shapes) == 1 and len(in_shapes) >= 1:
        o, i = out_shapes[0], in_shapes[0]
        if len(o) == 2 and o[1] > 1:
            return "classify"
        if len(o) == 4 and len(i) == 4 and o[1] == i[1] and o[2] % i[2] == 0 and o[2] > i[2] \
                and o[3] * i[2] == o[2] * i[3]:
            return "super-resolve"
    return "other"
