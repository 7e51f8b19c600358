"""Open an edgekit bundle: pick the best artifact for this host, and speak the source's layout.

:func:`open_bundle` reads ``edgekit.json``, drops artifacts whose verification failed or
whose backend cannot run here, orders the rest by :func:`~edgekit.runtimes.registry.host_preference`
(verified before unverified), opens the first and records the choice on the session
(``session.artifact``, ``session.manifest``, ``session.bundle``, ``session.skipped``). Tensor
layouts the manifest records are set on ``session.inputs``/``outputs``.

Layouts. An artifact may take its tensors in another layout than its source model, e.g. a
video decoder rewritten for an NPU takes ``THWC`` where the PyTorch source took ``NCTHW``; the
manifest says so in ``artifact.source_layouts`` (tensor name → source layout). With
``io_layout="source"`` (the default when the artifact has source layouts) the session's specs
are in the source layout and it translates at the boundary, by letters:

- letters are permuted (``NCTHW`` → ``THWC`` is a transpose),
- a letter on one side only must have size 1 and is dropped or inserted (``N`` above),
- a parenthesised group is one dimension holding several letters, outermost first:
  ``(NT)HWC`` folds frames into the batch dimension, and is split back on the way out.
  When a group's letters cannot all be sized from the specs, ``N`` (batch) is taken as 1.

``io_layout="artifact"`` keeps the artifact's own layout (no copies at the boundary).

Quantized I/O. An int8 artifact (``--precision int8``) takes and returns integers; the manifest
records each tensor's ``(scale, zero_point)`` in ``artifact.extra["quantized_io"]``, and with
``io_layout="source"`` the session takes and returns float32 as the source did
(:class:`QuantizedIOSession`); ``"artifact"`` gives the raw integers.

Example::

    >>> s = edgekit.load("decoder_bundle/")                    # doctest: +SKIP
    >>> s.inputs[0].layout, s.artifact.inputs[0].layout        # doctest: +SKIP
    ('NCTHW', 'THWC')
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgekit.errors import BackendUnavailable, FeedError, InvalidModelFile, ModelFileNotFound, UsageError
from edgekit.runtimes.base import Dim, Session, TensorSpec

__all__ = ["open_bundle", "choose_artifact", "LayoutMap", "parse_layout", "LayoutSession", "QuantizedIOSession", "source_io"]

IO_LAYOUTS = ("source", "artifact")


# -- choosing an artifact -----------------------------------------------------------------------
def choose_artifact(manifest: Any, backend: str = "auto") -> tuple[Any, str, list[tuple[str, str]]]:
    """The artifact to open here, the backend to open it with, and why each other one was skipped.

    ``manifest`` is an :class:`edgekit.bundle.Manifest`. Raises
    :class:`~edgekit.errors.BackendUnavailable` when none can run, listing every reason.
    """
    from edgekit.runtimes.registry import backend_module, backends_for_format, host_preference

    order = [*host_preference(), "null"]
    explicit = backend_module(backend) if backend != "auto" else None  # unknown names fail here
    candidates = []
    skipped: list[tuple[str, str]] = []
    for i, a in enumerate(manifest.artifacts):
        status = a.verification.get("status", "not-run")
        if status == "failed":
            reason = a.verification.get("reason")
            skipped.append((a.path, "verification failed" + (f" ({reason})" if reason else "")))
            continue
        if "compiled_by" in a.extra:  # an NPU compiler's output (edgekit compile): runs only on that NPU
            skipped.append((a.path, f"compiled for {a.target}: runs only on that NPU"))
            continue
        if explicit is not None:
            if a.format not in explicit.FORMATS:
                skipped.append((a.path, f"backend '{backend}' does not open {a.format} models"))
                continue
            name = backend
        else:
            names = backends_for_format(a.format)
            if not names:
                skipped.append((a.path, f"no backend opens format '{a.format}'"))
                continue
            name = names[0]
        why_not = backend_module(name).available()
        if why_not:
            skipped.append((a.path, why_not))
            continue
        rank = order.index(a.format) if a.format in order else len(order)
        candidates.append((rank, 0 if status == "passed" else 1, i, a, name))
    if not candidates:
        why = "; ".join(f"{p}: {r}" for p, r in skipped)
        raise BackendUnavailable(f"no artifact of this bundle can run here ({why})",
                                 hint="convert for a format this host runs, or install its backend")
    candidates.sort(key=lambda c: c[:3])
    _, _, _, artifact, name = candidates[0]
    skipped += [(c[3].path, f"ranked after {artifact.path}") for c in candidates[1:]]
    return artifact, name, skipped


def open_bundle(folder: str | os.PathLike, backend: str = "auto", threads: int | None = None,
                accelerator: str = "auto", *, io_layout: str | None = None, **options: Any) -> Session:
    """Open the best artifact of bundle ``folder`` for this host (see the module docstring).

    ``backend`` restricts the choice to artifacts that backend opens. ``io_layout``:
    ``"source"`` or ``"artifact"``; None means ``"source"`` when the chosen artifact records
    source layouts. Other ``options`` go to the backend (e.g. ``strict=True``).
    """
    from edgekit.bundle import MANIFEST_NAME, read_manifest
    from edgekit.runtimes.host import default_threads
    from edgekit.runtimes.registry import backend_module

    folder = Path(folder)
    if io_layout is not None and io_layout not in IO_LAYOUTS:
        raise UsageError(f"io_layout must be 'source' or 'artifact', got {io_layout!r}")
    manifest = read_manifest(folder)
    if not manifest.artifacts:
        raise InvalidModelFile(folder / MANIFEST_NAME, "the bundle lists no artifacts", hint="re-run `edgekit convert`")
    artifact, name, skipped = choose_artifact(manifest, backend)
    from edgekit._fs import contained_path

    path = contained_path(folder, artifact.path, folder / MANIFEST_NAME, "artifact path")
    if not path.exists():
        raise ModelFileNotFound(path, hint="the bundle is incomplete; re-run `edgekit convert`")
    session = backend_module(name).open_session(path, threads=threads or default_threads(), accelerator=accelerator,
                                                **options)
    try:
        session.inputs = _with_layouts(session.inputs, artifact.inputs, path, "inputs")
        session.outputs = _with_layouts(session.outputs, artifact.outputs, path, "outputs")
        session.__dict__.pop("_input_index", None)  # specs changed: rebuild the feed index
        if io_layout is None:
            io_layout = "source" if (artifact.source_layouts or artifact.extra.get("quantized_io")) else "artifact"
        if io_layout == "source":
            session = source_io(session, artifact)
    except BaseException:
        session.close()
        raise
    session.artifact, session.manifest, session.bundle, session.skipped = artifact, manifest, folder, skipped
    return session


def source_io(session: Session, artifact: Any) -> Session:
    """``session`` (on ``artifact``'s file, specs carrying the manifest's layouts) speaking its
    source's dtypes and layouts: float32 for quantized I/O, then the source layouts."""
    quantized = artifact.extra.get("quantized_io")
    if quantized:
        session = QuantizedIOSession(session, quantized)
    if artifact.source_layouts:
        session = LayoutSession(session, artifact.source_layouts)
    return session


def _with_layouts(actual: list[TensorSpec], declared: list[TensorSpec], path: Path, what: str) -> list[TensorSpec]:
    """The session's specs with the manifest's layouts (and names); mismatches are errors."""
    if not declared:
        return actual
    if len(declared) != len(actual):
        raise InvalidModelFile(path, f"the manifest lists {len(declared)} {what}, the model has {len(actual)}",
                               hint="re-run `edgekit convert`; the bundle and its artifact disagree")
    by_name = {s.name: s for s in actual}
    pairs = [(by_name[d.name], d) for d in declared] if all(d.name in by_name for d in declared) \
        else list(zip(actual, declared))  # names differ (e.g. signature names): match by position
    out = []
    for a, d in pairs:
        if a.dtype != d.dtype or a.rank != d.rank:
            raise InvalidModelFile(path, f"{what[:-1]} '{a.name}' is {a.dtype}{list(a.shape)} in the model but "
                                   f"{d.dtype}{list(d.shape)} in the manifest", hint="re-run `edgekit convert`")
        out.append(replace(a, layout=d.layout or a.layout))
    return out


# -- layouts --------------------------------------------------------------------------------------
_LAYOUT_RE = re.compile(r"^(?:[A-Z]|\([A-Z]{2,}\))+$")


def parse_layout(layout: str) -> list[str]:
    """``"(NT)HWC"`` → ``["NT", "H", "W", "C"]``: one string of letters per dimension."""
    if not isinstance(layout, str) or not _LAYOUT_RE.match(layout):
        raise UsageError(f"bad layout {layout!r}", hint="use capital letters, one per dimension, "
                         "with (..) around letters folded into one dimension, e.g. NCHW or (NT)HWC")
    groups = re.findall(r"\(([A-Z]+)\)|([A-Z])", layout)
    dims = [a or b for a, b in groups]
    letters = "".join(dims)
    if len(set(letters)) != len(letters):
        raise UsageError(f"bad layout {layout!r}: a letter appears twice")
    return dims


@dataclass
class LayoutMap:
    """Moves arrays from layout ``src`` to layout ``dst`` by letters (see the module docstring).

    ``sizes`` gives letter sizes known in advance (static dims of the destination spec), used
    to split a folded source dimension. Plans are cached per input shape.
    """

    src: str
    dst: str
    sizes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._src, self._dst = parse_layout(self.src), parse_layout(self.dst)
        self._plans: dict[tuple[int, ...], tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def letter_sizes(self, shape: Sequence[Dim]) -> dict[str, Dim]:
        """Size of every letter of ``src`` for an array (or spec) of ``shape`` in ``src``."""
        if len(shape) != len(self._src):
            raise FeedError(f"layout {self.src} has {len(self._src)} dimensions, the array has {len(shape)}")
        out: dict[str, Dim] = {}
        for group, d in zip(self._src, shape):
            if len(group) == 1:
                out[group] = d
                continue
            known = {c: self.sizes[c] for c in group if isinstance(self.sizes.get(c), int)}
            unknown = [c for c in group if c not in known]
            if len(unknown) > 1 and "N" in unknown:  # batch folded in: edge models run batch 1
                known["N"] = 1
                unknown.remove("N")
            if not isinstance(d, int):
                out.update({c: known.get(c) for c in group})
                continue
            rest = math.prod(known.values())
            if len(unknown) > 1:
                raise UsageError(f"cannot split dimension ({group}) of size {d}: sizes of {', '.join(unknown)} unknown",
                                 hint="give all but one of them a static size in the manifest")
            if unknown and (rest == 0 or d % rest):
                raise FeedError(f"dimension ({group}) of size {d} is not a multiple of {rest}")
            if not unknown and rest != d:
                raise FeedError(f"dimension ({group}) has size {d}, expected {rest}")
            out.update(known)
            if unknown:
                out[unknown[0]] = d // rest
        return out

    def shape(self, shape: Sequence[Dim]) -> tuple[Dim, ...]:
        """The ``dst`` shape of a ``src`` shape (dims may be symbolic: a name or None)."""
        sizes = self.letter_sizes(shape)
        for c, s in sizes.items():
            if c not in "".join(self._dst) and isinstance(s, int) and s != 1:
                raise UsageError(f"layout {self.src} → {self.dst}: letter {c} has size {s}, "
                                 f"but {self.dst} has no {c}", hint="only size-1 letters can be dropped; fold it "
                                 "into another dimension with (..)")
        out: list[Dim] = []
        for group in self._dst:
            dims = [sizes.get(c, 1) for c in group]  # letters src lacks have size 1
            if len(dims) == 1:
                out.append(dims[0])
            else:
                out.append(math.prod(dims) if all(isinstance(x, int) for x in dims) else None)
        return tuple(out)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        plan = self._plans.get(x.shape)
        if plan is None:
            sizes = self.letter_sizes(x.shape)
            dst_letters = "".join(self._dst)
            kept = [c for c in "".join(self._src) if c in dst_letters]
            dropped = {c: s for c, s in sizes.items() if c not in dst_letters and s != 1}
            if dropped:
                c, s = next(iter(dropped.items()))
                raise FeedError(f"letter {c} of layout {self.src} has size {s}; layout {self.dst} has no {c}, "
                                "so it must be 1")
            perm = tuple(kept.index(c) for c in dst_letters if c in kept)
            plan = self._plans[x.shape] = (tuple(sizes[c] for c in kept), perm, self.shape(x.shape))  # type: ignore[misc]
        atoms, perm, out_shape = plan
        y = x.reshape(atoms)
        if perm != tuple(range(len(perm))):
            y = y.transpose(perm)
        return np.ascontiguousarray(y.reshape(out_shape))


class _Wrapper(Session):
    """A session over another one (``inner``): same file, threads, backend and placement;
    closing it closes ``inner``. Subclasses translate at the boundary in ``_run``."""

    def __init__(self, inner: Session):
        self.inner = inner
        self.path, self.threads, self.init_ms = inner.path, inner.threads, inner.init_ms
        self.backend, self.placement = inner.backend, inner.placement

    def _close(self) -> None:
        self.inner.close()

    def _output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[Dim, ...]] | None:
        return self.inner.output_shapes_for(shapes)  # same names and shapes on both sides


class QuantizedIOSession(_Wrapper):
    """A session on an int8 (or uint8/int16) artifact that takes and returns float32 like its
    source: inputs are quantized with the file's ``(scale, zero_point)`` (rounded to nearest,
    saturated), outputs dequantized, so apps never hand-quantize. ``quant`` is the artifact's
    ``quantized_io`` manifest entry: ``{tensor name: {"scale", "zero_point", "dtype"}}``."""

    def __init__(self, inner: Session, quant: Mapping[str, Mapping[str, Any]]):
        super().__init__(inner)
        self._quant = {name: (float(q["scale"]), int(q["zero_point"])) for name, q in quant.items()}
        for spec in (*inner.inputs, *inner.outputs):
            if spec.name in self._quant and not np.issubdtype(np.dtype(spec.dtype), np.integer):
                raise InvalidModelFile(inner.path, f"quantized_io lists '{spec.name}', which is {spec.dtype} in the model",
                                       hint="re-run `edgekit convert`")
        self._dtypes = {s.name: np.dtype(s.dtype) for s in (*inner.inputs, *inner.outputs)}
        self.inputs = [replace(s, dtype="float32") if s.name in self._quant else s for s in inner.inputs]
        self.outputs = [replace(s, dtype="float32") if s.name in self._quant else s for s in inner.outputs]

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inner_feed = {}
        for name, x in feed.items():
            if name in self._quant:
                scale, zero = self._quant[name]
                info = np.iinfo(self._dtypes[name])
                x = np.clip(np.rint(np.asarray(x, np.float32) / scale) + zero, info.min, info.max).astype(info.dtype)
            inner_feed[name] = x
        out = self.inner.run(inner_feed)
        for name, y in out.items():
            if name in self._quant:
                scale, zero = self._quant[name]
                out[name] = (y.astype(np.float32) - zero) * np.float32(scale)
        return out


class LayoutSession(_Wrapper):
    """A session in its source model's layouts, translating to and from the artifact's at the boundary."""

    def __init__(self, inner: Session, source_layouts: Mapping[str, str]):
        super().__init__(inner)
        self._to_artifact: dict[str, LayoutMap] = {}
        self._to_source: dict[str, LayoutMap] = {}
        names = {s.name for s in (*inner.inputs, *inner.outputs)}
        unknown = [n for n in source_layouts if n not in names]
        if unknown:
            raise InvalidModelFile(inner.path, f"source_layouts names tensor(s) {', '.join(map(repr, unknown))}, "
                                   f"which the model does not have", hint="fix edgekit.json or re-run `edgekit convert`")
        self.inputs = [self._source_spec(s, source_layouts, self._to_artifact, inbound=True) for s in inner.inputs]
        self.outputs = [self._source_spec(s, source_layouts, self._to_source, inbound=False) for s in inner.outputs]

    def _source_spec(self, spec: TensorSpec, layouts: Mapping[str, str], maps: dict[str, LayoutMap],
                     inbound: bool) -> TensorSpec:
        src = layouts.get(spec.name)
        if not src or src == spec.layout:
            return spec
        if not spec.layout:
            raise InvalidModelFile(self.path, f"source_layouts gives '{spec.name}' the source layout {src}, but "
                                   "the manifest records no artifact layout for it", hint="re-run `edgekit convert`")
        shape = LayoutMap(spec.layout, src).shape(spec.shape)  # the source shape of this tensor
        if inbound:  # source -> artifact; the artifact's static letter sizes help split folds
            known = {c: d for c, d in zip(parse_layout(spec.layout), spec.shape) if len(c) == 1 and isinstance(d, int)}
            maps[spec.name] = LayoutMap(src, spec.layout, known)
        else:  # artifact -> source; the source shape sizes the letters of a folded artifact dim
            known = {c: d for c, d in zip(parse_layout(src), shape) if len(c) == 1 and isinstance(d, int)}
            maps[spec.name] = LayoutMap(spec.layout, src, known)
        return TensorSpec(spec.name, shape, spec.dtype, src)

    def _output_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[Dim, ...]] | None:
        try:
            inner = {k: (self._to_artifact[k].shape(v) if k in self._to_artifact else v) for k, v in shapes.items()}
        except (FeedError, UsageError):  # a shape the layouts cannot map (a folded dim that does not divide)
            return None
        if not all(all(isinstance(d, int) for d in v) for v in inner.values()):
            return None
        out = self.inner.output_shapes_for(inner)
        if out is None:
            return None
        return {k: (self._to_source[k].shape(v) if k in self._to_source else v) for k, v in out.items()}

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        to_artifact = self._to_artifact
        inner_feed = {k: (to_artifact[k](v) if k in to_artifact else v) for k, v in feed.items()}
        out = self.inner.run(inner_feed)
        to_source = self._to_source
        return {k: (to_source[k](v) if k in to_source else v) for k, v in out.items()}

