"""The zoo registry: model cards, the ``@register_model`` decorator, and weight loading.

Families live in one file each (``FAMILIES`` maps a family to its module); a family module
registers its models with :func:`register_model` when imported. The registry imports family
modules lazily, on the first call that needs them.

Example::

    from edgekit.zoo.registry import ModelCard, register_model

    @register_model(ModelCard(name="espcn_x2", family="sr", task="super-resolve", ...))
    def espcn_x2(scale: int = 2, **cfg) -> nn.Module:
        return ESPCN(scale=scale, **cfg)
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import MissingDependency, ZooError

__all__ = ["ModelCard", "register_model", "FAMILIES", "WEIGHTS_DIR", "get_entry", "all_entries",
           "load_weights", "count_params", "count_macs"]

# family -> module that registers its models
FAMILIES: dict[str, str] = {
    "mobilenet": "edgekit.zoo.mobilenet",
    "sr": "edgekit.zoo.sr",
    "video_decoder": "edgekit.zoo.video_decoder",
}
WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class ModelCard:
    """What a user (and the converters, the demo and the manifest) must know about a model.

    ``input_shape`` is the shape of :func:`edgekit.zoo.example_inputs` (one input);
    ``layout`` its letters (``NCHW``, ``NCTHW``). ``params`` and ``macs`` are measured on the
    default config (``macs`` at ``macs_input``; a test checks them). ``weights`` names a file
    in ``edgekit/zoo/weights/`` and ``weights_sha256`` its digest, or both are None.
    ``weights_source`` says where compatible weights can be had for a model that ships none
    (e.g. torchvision's checkpoint URL); it is shown when ``pretrained=True`` cannot be served.
    """

    name: str
    family: str
    task: str  # classify | super-resolve | decode-video
    paper: str  # title and link
    input_shape: tuple[int, ...]
    layout: str
    value_range: tuple[float, float]
    license: str
    params: int
    macs: int
    macs_input: tuple[int, ...]
    output_layout: str | None = None
    color_order: str = "RGB"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale_factor: int | None = None
    num_classes: int | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    description: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. PSNR/SSIM measured by train_sr
    weights_source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> "ModelCard":
        return replace(self, **changes)


@dataclass
class _Entry:
    card: ModelCard
    factory: Callable[..., Any]
    example_inputs: Callable[..., tuple] | None


_REGISTRY: dict[str, _Entry] = {}
_LOADED = False


def register_model(card: ModelCard, example_inputs: Callable[..., tuple] | None = None):
    """Register ``factory(**cfg) -> nn.Module`` under ``card.name``.

    ``example_inputs(**cfg)`` returns the tuple of tensors the model takes; by default a
    seeded random tensor of ``card.input_shape`` in ``card.value_range``.
    """

    def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
        if card.name in _REGISTRY:
            raise ValueError(f"zoo model {card.name!r} registered twice")
        _REGISTRY[card.name] = _Entry(card, factory, example_inputs)
        return factory

    return deco


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependency("torch", "the model zoo", extra="convert") from None
    for module in FAMILIES.values():
        importlib.import_module(module)
    _LOADED = True


def all_entries() -> dict[str, _Entry]:
    _ensure_loaded()
    return dict(_REGISTRY)


def get_entry(name: str) -> _Entry:
    entries = all_entries()
    if name not in entries:
        import difflib

        close = difflib.get_close_matches(name, entries, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see `edgekit zoo list`"
        raise ZooError(f"unknown zoo model '{name}'", hint=hint)
    return entries[name]


PICKLE_HINT = ("save a plain state dict (torch.save(model.state_dict(), path)) or a .safetensors file; load the "
               "checkpoint yourself with weights_only=False only if you trust who made it")


def pickled_code_refusal(e: BaseException) -> str | None:
    """The one-line reason when ``torch.load(weights_only=True)`` refused a file because it holds
    pickled objects (which would run code when unpickled), naming the object; else None."""
    import pickle
    import re

    text = str(e)
    if not isinstance(e, pickle.UnpicklingError) and "weights only load failed" not in text.lower():
        return None
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m is None:  # the unpickler met bytes that are not a pickle at all (garbage, truncation): not code
        return None
    return (f"refused: the file holds pickled Python objects ({m.group(1)}), and unpickling them could run "
            "arbitrary code; edgekit loads only tensors")


def load_weights(model: Any, path: str | Path, *, where: str | None = None) -> Any:
    """Load a state dict from ``.pth``/``.pt`` (``weights_only=True``: no pickled code runs) or
    ``.safetensors`` into ``model``, strictly. Mismatches raise a :class:`ZooError` naming the
    keys."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ZooError("weights file not found", where=path, hint="check the --weights path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise MissingDependency("safetensors", "loading .safetensors weights", extra="convert") from None
            state = load_file(str(path))
        elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise ZooError(f"unknown weights format '{suffix}'", where=path,
                           hint="pass a .pth/.pt state dict or a .safetensors file")
    except ZooError:
        raise
    except Exception as e:  # corrupt file, pickled code refused by weights_only, ...
        refused = pickled_code_refusal(e)
        if refused:
            raise ZooError(refused, where=path, hint=PICKLE_HINT) from None
        from edgekit.errors import first_line

        detail = first_line(e)
        if "weights only load failed" in str(e).lower():  # torch's first line is about its own defaults
            detail = "not a PyTorch checkpoint: " + (str(e).split("WeightsUnpickler error:")[-1].split("Check the")[0]
                                                     .strip() or "the unpickler stopped")
        raise ZooError(f"cannot read weights ({detail})", where=path, hint=PICKLE_HINT) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ZooError(f"weights file holds a {type(state).__name__}, not a state dict", where=path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es) e.g. {wrong[0]}")
        raise ZooError("weights do not fit the model: " + "; ".join(parts), where=where or path,
                       hint="check the model name and its config (width, classes, scale)")
    model.load_state_dict(state, strict=True)
    return model


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: Any, *inputs: Any) -> int:
    """Multiply-accumulates of one forward pass, from torch's FLOP counter (FLOPs / 2): convs,
    matmuls and attention; element-wise ops are not counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return int(counter.get_total_flops() // 2)
