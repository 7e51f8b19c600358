"""The zoo's card index: every model card (and its factory's config options) as data, so that
``edgekit zoo list`` / ``zoo info`` and ``edgekit.zoo.card`` answer without importing torch.

``cards.json`` beside this file is generated from the registry (the family modules, which need
torch) and committed; ``tests/zoo/test_cards.py`` fails when it no longer matches them. After
changing a card, a factory's options or a weights file's recorded metrics, regenerate it::

    python -m edgekit.zoo.cards
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["INDEX_FILE", "load_index", "build_index", "card_from_dict"]

INDEX_FILE = Path(__file__).with_name("cards.json")
_TUPLES = ("input_shape", "value_range", "macs_input", "mean", "std")


def card_from_dict(d: dict[str, Any]) -> Any:
    """A :class:`~edgekit.zoo.registry.ModelCard` from its JSON form (lists back to tuples)."""
    from edgekit.zoo.registry import ModelCard

    return ModelCard(**{k: (tuple(v) if k in _TUPLES and v is not None else v) for k, v in d.items()})


@lru_cache(maxsize=1)
def load_index() -> dict[str, dict[str, Any]] | None:
    """``{name: {"card": {...}, "config": {...}}}`` from ``cards.json``, or None when absent."""
    try:
        return json.loads(INDEX_FILE.read_text(encoding="utf-8"))["models"]
    except (OSError, ValueError, KeyError):
        return None


def build_index() -> dict[str, dict[str, Any]]:
    """The index as the live registry says (imports the family modules, hence torch)."""
    import inspect

    from edgekit.zoo.registry import all_entries

    out = {}
    for name, entry in sorted(all_entries().items()):
        params = inspect.signature(entry.factory).parameters.values()
        config = {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        out[name] = {"card": json.loads(json.dumps(entry.card.to_dict())), "config": config}
    return out


def main() -> None:
    data = {"generated_by": "python -m edgekit.zoo.cards (from the registry; do not edit by hand)",
            "models": build_index()}
    INDEX_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {INDEX_FILE} ({len(data['models'])} models)")


if __name__ == "__main__":
    main()
