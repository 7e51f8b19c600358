"""A small declarative schema for the JSON edgekit reads, with the failing field's path in every
message (``artifacts[0].inputs[1].shape[2]: must be an integer >= -1, got 1e+20``).

A schema is built from a few node types — :class:`Str`, :class:`Int`, :class:`Num`,
:class:`Bool`, :class:`Opt`, :class:`List`, :class:`Obj`, :class:`Map`, :class:`Any_` — and
checked with :func:`validate`. :class:`Obj` names its known fields (required or not) and either
allows unknown ones (``open=True``: newer writers may add fields) or refuses them; its ``check``
hook covers rules across fields (a layout's letters must match the shape's rank). Only the
structure is checked here; meaning (which backend opens which format) stays with the code that
uses it.

Example::

    >>> validate({"n": "3"}, Obj({"n": Int(min=0)}))
    Traceback (most recent call last):
    edgekit.schema.Invalid: n: must be an integer >= 0, got '3'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Invalid", "Node", "Str", "Int", "Num", "Bool", "Opt", "List", "Obj", "Map", "Any_", "validate"]


class Invalid(ValueError):
    """A value that does not fit the schema; ``path`` is where (``a.b[2].c``)."""

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}" if path else message)


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Node:
    def check(self, value: Any, path: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Any_(Node):
    def check(self, value: Any, path: str) -> None:
        return None


@dataclass
class Str(Node):
    choices: Sequence[str] | None = None
    nonempty: bool = False
    max_len: int = 4096

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise Invalid(path, f"must be a string, got {_show(value)}")
        if self.nonempty and not value.strip():
            raise Invalid(path, "must not be empty")
        if len(value) > self.max_len:
            raise Invalid(path, f"is {len(value)} characters long (at most {self.max_len})")
        if self.choices is not None and value not in self.choices:
            raise Invalid(path, f"must be one of {', '.join(self.choices)}, got {_show(value)}")


@dataclass
class Int(Node):
    min: int | None = None
    max: int | None = None

    def check(self, value: Any, path: str) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and self.min is not None and value < self.min:
            ok = False
        if ok and self.max is not None and value > self.max:
            ok = False
        if not ok and self.min is not None and self.min == self.max:
            raise Invalid(path, f"must be {self.min}, got {_show(value)}")
        if not ok:
            bounds = " and ".join(b for b in (f">= {self.min}" if self.min is not None else "",
                                              f"<= {self.max}" if self.max is not None else "") if b)
            raise Invalid(path, f"must be an integer{' ' + bounds if bounds else ''}, got {_show(value)}")


@dataclass
class Num(Node):
    """A finite number (int or float), optionally bounded; ``positive`` excludes 0."""

    min: float | None = None
    max: float | None = None
    positive: bool = False

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Invalid(path, f"must be a finite number, got {_show(value)}")
        if self.positive and value <= 0:
            raise Invalid(path, f"must be > 0, got {_show(value)}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise Invalid(path, f"must be within [{self.min}, {self.max}], got {_show(value)}")


@dataclass
class Bool(Node):
    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, bool):
            raise Invalid(path, f"must be true or false, got {_show(value)}")


@dataclass
class Opt(Node):
    """``inner`` or null."""

    inner: Node

    def check(self, value: Any, path: str) -> None:
        if value is not None:
            self.inner.check(value, path)


@dataclass
class OneOf(Node):
    options: Sequence[Node]
    what: str

    def check(self, value: Any, path: str) -> None:
        for o in self.options:
            try:
                o.check(value, path)
                return
            except Invalid:
                continue
        raise Invalid(path, f"must be {self.what}, got {_show(value)}")


@dataclass
class List(Node):
    item: Node
    min_len: int = 0
    max_len: int = 1_000_000

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise Invalid(path, f"must be a list, got {_show(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            n = f"{self.min_len}" if self.min_len == self.max_len else f"{self.min_len} to {self.max_len}"
            raise Invalid(path, f"must have {n} items, has {len(value)}")
        for i, v in enumerate(value):
            self.item.check(v, _join(path, i))


@dataclass
class Map(Node):
    """An object whose keys are free strings and whose values all fit ``value``."""

    value: Node
    max_len: int = 100_000

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(path, f"must be an object, got {_show(value)}")
        if len(value) > self.max_len:
            raise Invalid(path, f"has {len(value)} entries (at most {self.max_len})")
        for k, v in value.items():
            self.value.check(v, _join(path, str(k)))


@dataclass
class Obj(Node):
    """An object with named ``fields`` (``name: node``; a name ending in ``!`` is required).
    ``open``: unknown fields are allowed (and not checked). ``check``: a rule across fields,
    returning ``(field, message)`` for a problem or ``None``."""

    fields: Mapping[str, Node]
    open: bool = True
    rule: Callable[[dict], tuple[str, str] | None] | None = None
    _required: set[str] = field(init=False, default_factory=set)
    _nodes: dict[str, Node] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for k, node in self.fields.items():
            name = k.rstrip("!")
            self._nodes[name] = node
            if k.endswith("!"):
                self._required.add(name)

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(path, f"must be an object, got {_show(value)}")
        for name in sorted(self._required - set(value)):
            raise Invalid(_join(path, name), "is missing")
        for k, v in value.items():
            node = self._nodes.get(k)
            if node is None:
                if not self.open:
                    raise Invalid(_join(path, str(k)), "is not a known field")
                continue
            node.check(v, _join(path, k))
        if self.rule is not None:
            problem = self.rule(value)
            if problem is not None:
                raise Invalid(_join(path, problem[0]), problem[1])


def validate(value: Any, schema: Node, path: str = "") -> None:
    """Raise :class:`Invalid` at the first value that does not fit ``schema``."""
    schema.check(value, path)
