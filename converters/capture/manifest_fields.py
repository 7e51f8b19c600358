"""What the manifest says about a capture beyond its tensors: the task (the user's override)
and the unfolded pre-/post-processing (layout, value range, mean/std, colour order, labels,
scale factor) from the model card and the user's overrides."""

from __future__ import annotations

import importlib
from typing import Any

from edgekit.converters.capture.captured import Captured
from edgekit.errors import UsageError

__all__ = ["fill_manifest_fields", "check_value_range"]


def fill_manifest_fields(cap: Captured, task: str | None, mean: Any, std: Any, value_range: Any = None) -> None:
    """Apply the ``task`` override and fill ``cap.preprocess`` (the manifest's pre-/post-processing)
    from the card and the overrides (``mean``/``std`` together; ``value_range`` the range before
    them); overrides are recorded as such."""
    from edgekit.bundle import TASKS

    if task is not None:
        if task not in TASKS:
            raise UsageError(f"unknown task '{task}'", hint=f"choose one of: {', '.join(TASKS)}")
        cap.task = task
    card = cap.card
    p: dict[str, Any] = {"layout": cap.input_layouts[0] if cap.input_layouts else None}
    if card is not None:
        p.update(color_order=card.color_order, value_range=list(card.value_range),
                 mean=list(card.mean) if card.mean else None, std=list(card.std) if card.std else None,
                 scale_factor=card.scale_factor)
        labels = getattr(card, "labels", None) or _zoo_labels(card)
        if labels:
            p["labels"] = list(labels)
    elif cap.task == "super-resolve" and cap.output_shapes and len(cap.output_shapes[0]) == 4:
        p["scale_factor"] = cap.output_shapes[0][2] // cap.input_shapes[0][2]
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise UsageError("pass --mean and --std together")
        p.update(mean=[float(v) for v in mean], std=[float(v) for v in std], color_order=p.get("color_order", "RGB"))
        if p.get("value_range") is None:
            p["value_range"] = [0.0, 1.0]
    if value_range is not None:
        lo, hi = check_value_range(value_range)
        p.update(value_range=[lo, hi], color_order=p.get("color_order", "RGB"))
    overrides = [n for n, v in (("mean", mean), ("std", std), ("value_range", value_range)) if v is not None]
    if overrides:
        p["overridden"] = overrides
    if cap.input_shapes and len(cap.input_shapes[0]) >= 4:
        p["input_size"] = list(cap.input_shapes[0][-2:])
    cap.preprocess = {k: v for k, v in p.items() if v is not None}
    cap.preprocess["folded"] = False


def check_value_range(value_range: Any) -> tuple[float, float]:
    """``(lo, hi)`` of a ``--value-range``, or a usage error."""
    vals = [float(v) for v in value_range]
    if len(vals) != 2 or not all(map(lambda v: v == v and abs(v) != float("inf"), vals)) or vals[0] >= vals[1]:
        raise UsageError(f"--value-range must be two finite numbers LO,HI with LO < HI, got {vals}",
                         hint="e.g. --value-range 0,1 or --value-range -1,1")
    return vals[0], vals[1]


def _zoo_labels(card: Any) -> list[str] | None:
    """Class names for a zoo classifier, from its family module's label helper (``labels(name)``
    or ``imagenet_labels()``) when the count matches the card's classes."""
    if card.task != "classify":
        return None
    from edgekit.zoo.registry import FAMILIES

    module_name = FAMILIES.get(card.family)
    if module_name is None:
        return None
    module = importlib.import_module(module_name)
    for helper, args in (("labels", (card.name,)), ("imagenet_labels", ())):
        fn = getattr(module, helper, None)
        if not callable(fn):
            continue
        try:
            labels = list(fn(*args))
        except Exception:  # noqa: BLE001 - a card without labels is fine
            continue
        if labels and (card.num_classes is None or len(labels) == card.num_classes):
            return labels
    return None
