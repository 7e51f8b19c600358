"""The model zoo: efficient vision models with model cards and (for the SR nets) trained weights.

Example::

    >>> from edgekit import zoo
    >>> zoo.list_models()[:2]                                     # doctest: +SKIP
    ['espcn_x2', 'mobilenet_v1']
    >>> net = zoo.create("quicksrnet_small_x2", pretrained=True)  # doctest: +SKIP
    >>> (x,) = zoo.example_inputs("quicksrnet_small_x2")          # doctest: +SKIP
    >>> net(x).shape                                               # doctest: +SKIP
    torch.Size([1, 3, 256, 256])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import ZooError
from edgekit.zoo.cards import build_index, card_from_dict, load_index
from edgekit.zoo.registry import WEIGHTS_DIR, ModelCard, all_entries, get_entry, load_weights, register_model

__all__ = ["list_models", "create", "example_inputs", "card", "default_config", "register_model", "ModelCard"]


def list_models(task: str | None = None) -> list[str]:
    """Names of every registered model, sorted; only those of ``task`` when given (from the card
    index, without importing torch)."""
    index = load_index()
    if index is None:
        return sorted(n for n, e in all_entries().items() if task is None or e.card.task == task)
    return sorted(n for n, e in index.items() if task is None or e["card"]["task"] == task)


def _indexed(name: str) -> dict[str, Any]:
    index = load_index()
    if index is None:
        return {"card": get_entry(name).card.to_dict(), "config": None}
    if name not in index:
        import difflib

        close = difflib.get_close_matches(name, index, n=3)
        raise ZooError(f"unknown zoo model '{name}'",
                       hint=f"did you mean {', '.join(close)}?" if close else "see `edgekit zoo list`")
    return index[name]


def card(name: str) -> ModelCard:
    """The model card of ``name`` (from the card index: no torch needed)."""
    index = load_index()
    return get_entry(name).card if index is None else card_from_dict(_indexed(name)["card"])


def default_config(name: str) -> dict[str, Any]:
    """The options ``create(name, **cfg)`` accepts, with their defaults (from the factory's
    signature, recorded in the card index), e.g. ``{"width_mult": 1.0, "num_classes": 1000}``."""
    entry = _indexed(name)
    if entry["config"] is not None:
        return dict(entry["config"])
    return build_index()[name]["config"]


def create(name: str, pretrained: bool = False, weights: str | Path | None = None, **cfg: Any):
    """Build zoo model ``name`` in eval mode.

    ``pretrained=True`` loads the weights shipped with edgekit (an error for models that have
    none: pass ``weights=PATH``); ``weights`` loads a ``.pth``/``.pt`` state dict or a
    ``.safetensors`` file. ``cfg`` goes to the model's factory (``width_mult``,
    ``num_classes``, ``scale``, ``config``...).
    """
    entry = get_entry(name)
    if pretrained and weights is not None:
        raise ZooError("pass either pretrained=True or weights=PATH, not both", where=name)
    if pretrained:
        if entry.card.weights is None:
            source = f"; compatible weights: {entry.card.weights_source}" if entry.card.weights_source else ""
            raise ZooError("no weights ship with this model", where=name,
                           hint="pass weights=PATH (CLI: --weights PATH) with a .pth/.pt state dict or "
                                f".safetensors file{source}")
        if cfg:
            raise ZooError(f"the shipped weights are for the default config; cannot combine them with {sorted(cfg)}",
                           where=name, hint="drop the config options, or pass your own weights=PATH")
        weights = WEIGHTS_DIR / entry.card.weights
    try:
        model = entry.factory(**cfg)
    except TypeError as e:
        raise ZooError(f"bad config for this model ({e})", where=name, hint="see `edgekit zoo info NAME`") from None
    if weights is not None:
        load_weights(model, weights, where=f"{name} ← {weights}")
    return model.eval()


def example_inputs(name: str, **cfg: Any) -> tuple:
    """The tensors ``create(name, **cfg)`` takes, seeded so that calls agree."""
    entry = get_entry(name)
    if entry.example_inputs is not None:
        return tuple(entry.example_inputs(**cfg))
    import torch

    c = entry.card
    g = torch.Generator().manual_seed(0)
    lo, hi = c.value_range
    return (torch.rand(c.input_shape, generator=g) * (hi - lo) + lo,)
