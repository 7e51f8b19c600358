"""Session-scoped zoo fixtures: every registered model is built and run on its example inputs
once per test session, whichever tests ask for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch


@dataclass
class Built:
    """A zoo model in its default config, its example inputs and the output they give."""

    name: str
    model: torch.nn.Module
    inputs: tuple
    output: Any


@pytest.fixture(scope="session")
def built_model() -> Callable[[str], Built]:
    from edgekit import zoo

    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            torch.manual_seed(0)
            model = zoo.create(name)
            inputs = zoo.example_inputs(name)
            with torch.no_grad():
                output = model(*inputs)
            cache[name] = Built(name, model, inputs, output)
        return cache[name]

    return get
