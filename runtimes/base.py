"""The Session protocol every backend implements, and the specs it speaks in.

A :class:`Session` is a loaded model: ``inputs``/``outputs`` describe its tensors
(:class:`TensorSpec`), ``run(feed)`` maps input names to arrays and returns output names to
arrays, ``placement`` tells where it actually ran. Backends subclass :class:`Session` and
implement ``_run`` (and ``_close``); feed validation, single-input calls and context-manager
use live here once.

Other input sizes. ``run`` takes the shapes the input specs accept: static dims as declared,
dynamic dims (a name or None) any size. :meth:`Session.output_shapes_for` asks whether the
session can run other shapes and what it then returns; :meth:`Session.resizable` is the yes/no
of it for one input. Backends answer from the runtime: onnxruntime runs a dynamic model once on
zeros of the shape (a model may still refuse sizes its dims allow) and never resizes a
declared-static dim; LiteRT resizes the interpreter's input (``resize_tensor_input``) and
allocates, in a separate interpreter per size (cached), even for declared-static dims — many
fully convolutional graphs run so, graphs whose shapes are constants (a reshape, a resize to a
fixed size) refuse or keep their old output shape, which the caller checks. A shape answered
yes is accepted by ``run`` from then on.

Example::

    >>> import edgekit, numpy as np
    >>> with edgekit.load("model.tflite") as s:                       # doctest: +SKIP
    ...     y = s(np.zeros(s.inputs[0].shape, s.inputs[0].dtype))
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import FeedError, UsageError

__all__ = ["TensorSpec", "Placement", "Session"]

Dim = int | str | None  # a static size, a symbolic name, or unknown


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: ``shape`` holds ints for static dims and a name or None for
    dynamic ones; ``dtype`` is a NumPy dtype name (``"float32"``, ``"int8"``, ``"float16"``);
    ``layout`` is letters such as ``"NCHW"`` or ``"NHWC"``, or None when unknown."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str
    layout: str | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) and d >= 0 for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d["dtype"], d.get("layout"))

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        return all(not isinstance(want, int) or want < 0 or want == got for want, got in zip(self.shape, shape))


@dataclass
class Placement:
    """Where a session's work actually runs.

    ``accelerator`` is the delegate or execution provider in use (``"XNNPACK"``,
    ``"CPUExecutionProvider"``, ``"libedgetpu.so.1"``); ``op_counts`` maps each of them (and
    ``"CPU"`` for the reference kernels) to how many ops it runs, or is the string
    ``"unknown"`` when the backend cannot tell.
    """

    backend: str
    accelerator: str
    op_counts: dict[str, int] | str = "unknown"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if isinstance(self.op_counts, dict):
            where = ", ".join(f"{k}: {v} ops" for k, v in self.op_counts.items())
        else:
            where = "op placement unknown"
        return f"{self.backend} / {self.accelerator} ({where})"


class Session:
    """A loaded model. Backends set ``path``, ``backend``, ``threads``, ``inputs``, ``outputs``,
    ``placement`` and ``init_ms`` in ``__init__`` and implement :meth:`_run` and :meth:`_close`."""

    backend: str = "base"
    path: Path
    threads: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    placement: Placement
    init_ms: float = 0.0
    # Set by edgekit.runtimes.bundle_session.open_bundle when the session comes from a bundle.
    artifact: Any = None  # the edgekit.bundle.Artifact chosen
    manifest: Any = None  # the bundle's edgekit.bundle.Manifest

    _closed: bool = False
    _input_index: dict[str, TensorSpec]

    # -- backend interface -------------------------------------------------------------------
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - backends override when they hold resources
        pass

    # -- public API --------------------------------------------------------------------------
    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``feed`` maps every input name to an array of its shape and dtype."""
        if self._closed:
            raise UsageError("this session is closed", where=self.path, hint="open a new one with edgekit.load")
        return self._run(self._check_feed(feed))

    def output_shapes_for(self, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[Dim, ...]] | None:
        """The output shapes of a run on inputs of ``input_shapes`` (every input name → a
        shape of ints), or None when this session cannot run them (see the module docstring).
        Answers are cached per shape; once answered, ``run`` accepts feeds of these shapes.
        Output dims the backend cannot tell without the data stay symbolic (a name or None)."""
        index = self._index()
        shapes = {str(n): tuple(int(d) for d in s) for n, s in input_shapes.items()}
        if set(shapes) != set(index):
            raise FeedError(f"output_shapes_for needs a shape for every input ({', '.join(map(repr, index))}), "
                            f"got {', '.join(map(repr, shapes)) or 'none'}", where=self.path)
        key = tuple(shapes[n] for n in index)
        answers = self.__dict__.setdefault("_shape_answers", {})
        if key not in answers:
            ranks_ok = all(len(shapes[n]) == index[n].rank and min(shapes[n], default=1) >= 0 for n in index)
            out = self._output_shapes(shapes) if ranks_ok else None
            answers[key] = None if out is None else {k: tuple(v) for k, v in out.items()}
            if out is not None:
                extra = self.__dict__.setdefault("_extra_shapes", {})
                for n, shape in shapes.items():
                    if not index[n].accepts_shape(shape):
                        extra.setdefault(n, set()).add(shape)
        found = answers[key]
        return None if found is None else dict(found)

    def resizable(self, shape: Sequence[int], name: str | None = None) -> bool:
        """Whether input ``name`` (the only input when None) can be fed at ``shape``: its spec
        accepts it, or the backend can resize the runtime's input to it
        (:meth:`output_shapes_for`, which also says what the outputs then are)."""
        if len(self.inputs) != 1:
            raise FeedError(f"resizable() answers for single-input models; this one takes {len(self.inputs)}",
                            where=self.path, hint="use output_shapes_for() with a shape for every input")
        spec = self.inputs[0]
        if name is not None and name != spec.name:
            raise FeedError(f"unknown input {name!r} (the model takes {spec.name!r})", where=self.path)
        return self.output_shapes_for({spec.name: shape}) is not None

    def __call__(self, *arrays: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        """Positional call: ``session(x)`` for a single-input model returns its single output
        (or the output dict when there are several)."""
        if len(arrays) != len(self.inputs):
            raise FeedError(
                f"model takes {len(self.inputs)} inputs ({', '.join(s.name for s in self.inputs)}), got {len(arrays)}",
                where=self.path,
                hint="pass one array per input, or call run() with a dict",
            )
        out = self.run({spec.name: a for spec, a in zip(self.inputs, arrays)})
        return next(iter(out.values())) if len(out) == 1 else out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.inputs)
        return f"<{type(self).__name__} {self.path.name} [{ins}] on {self.placement}>"

    # -- shared helpers ----------------------------------------------------------------------
    def _output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[Dim, ...]] | None:
        """Backend hook of :meth:`output_shapes_for`: here, the declared output shapes when every
        input spec accepts its shape (dynamic dims stay symbolic), else None. Backends that can
        learn more (run the model, allocate for the shape, resize the runtime's input) override it."""
        index = self._index()
        if not all(index[n].accepts_shape(s) for n, s in shapes.items()):
            return None
        return {s.name: tuple(s.shape) for s in self.outputs}

    def _index(self) -> dict[str, TensorSpec]:
        index = self.__dict__.get("_input_index")
        if index is None:
            index = self._input_index = {s.name: s for s in self.inputs}
        return index

    def _check_feed(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate names, shapes and dtypes; raise one FeedError naming every problem.

        Fast path (a dict of exactly the inputs, as arrays of the right dtype and static shape):
        a few comparisons per input and no copies, so that ``run`` costs little more than the
        runtime's own call (see ``benchmarks/runtime_overhead.py``).
        """
        fast = self.__dict__.get("_fast_specs")
        if fast is None or self.__dict__.get("_fast_for") is not self.inputs:
            fast = self._fast_specs = [(s.name, np.dtype(s.dtype) if _is_numpy_dtype(s.dtype) else None,
                                        tuple(s.shape) if s.is_static else None) for s in self.inputs]
            self._fast_for = self.inputs
        if type(feed) is dict and len(feed) == len(fast):
            for name, dtype, shape in fast:
                arr = feed.get(name)
                if dtype is None or shape is None or type(arr) is not np.ndarray or arr.dtype != dtype or arr.shape != shape:
                    break
            else:
                return feed
        return self._check_feed_slow(feed)

    def _check_feed_slow(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(feed, Mapping):
            raise FeedError(f"feed must be a dict of input name to array, got {type(feed).__name__}", where=self.path)
        index = self._index()
        extra = self.__dict__.get("_extra_shapes") or {}
        problems = []
        missing = [n for n in index if n not in feed]
        unknown = [n for n in feed if n not in index]
        if missing:
            problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
        if unknown:
            problems.append(f"unknown input(s) {', '.join(map(repr, unknown))} (the model takes {', '.join(map(repr, index))})")
        checked: dict[str, np.ndarray] = {}
        for name, value in feed.items():
            spec = index.get(name)
            if spec is None:
                continue
            arr = value if isinstance(value, np.ndarray) else np.asarray(value)
            if arr.dtype.name != spec.dtype:
                problems.append(f"input '{name}' has dtype {arr.dtype.name}, the model wants {spec.dtype}")
            elif not spec.accepts_shape(arr.shape) and tuple(arr.shape) not in extra.get(name, ()):
                problems.append(f"input '{name}' has shape {list(arr.shape)}, the model wants {list(spec.shape)}")
            checked[name] = arr
        if problems:
            raise FeedError("; ".join(problems), where=self.path, hint="see `edgekit inspect` for the model's inputs")
        return checked


def _is_numpy_dtype(name: str) -> bool:
    try:
        np.dtype(name)
        return True
    except TypeError:
        return False


class Stopwatch:
    """Milliseconds since creation: ``with Stopwatch() as sw: ...; sw.ms``."""

    def __enter__(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        self.ms = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter() - self._t0) * 1e3
