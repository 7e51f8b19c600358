"""Run an image model at the image's own size: as declared, with the runtime's input resized, or
in overlapping tiles whose seams do not show.

A super-resolution bundle made at 128x128 and a 640x480 photo: the ``native`` policy of
:mod:`edgekit.preprocess` (the default for super-resolve) keeps the photo's size, and
:class:`ImageRunner` runs the model at it. ``edgekit run`` and the camera demo use it alike and
say which mode ran. The runner takes the first that works:

=======  ==============================================================  ===================================
mode     when                                                            what runs
=======  ==============================================================  ===================================
native   the image is the model's size, or the input's ``H``/``W`` are   one run, as the model declares it
         dynamic and the session runs the size
resized  the session can run the image's size                            one run at the image's size
         (:meth:`~edgekit.runtimes.base.Session.output_shapes_for`:
         LiteRT resizes even declared-static inputs of many fully
         convolutional graphs) and every image output scales with it
tiled    otherwise: fixed-shape artifacts (NPUs), graphs that hold       ``n x m`` runs of ``h x w`` tiles
         their size in constants                                         overlapping by ``k`` px, stitched
crop     the model cannot be tiled (below)                               the ``crop`` policy: one run at the
                                                                         model's size, said in the note
=======  ==============================================================  ===================================

The ``tile`` policy goes straight to tiles. Policies that do not keep the size (``crop``,
``stretch``, ``pad``: classifiers) run once at the model's size.

Why tiles equal the whole image. In a fully convolutional model an output pixel at input position
``p`` (output pixel ``q`` sits at ``p = q // s`` for scale ``s``) depends only on the input pixels
within ``k`` of ``p``: ``k`` is the receptive-field radius (for a plain conv stack, the sum over
layers of ``dilation * (kernel - 1) / 2``). A tile computes that pixel as the whole image does
when its receptive field lies inside the tile, or crosses the tile's edge only where that edge is
the image's edge (both then pad alike). So each tile contributes only what lies at least ``k``
from its inner edges: tiles start every ``h - 2k`` pixels, the last flush with the image's end,
and two neighbours split their overlap at its middle, which is at least ``k`` from both inner
edges (:func:`tile_starts`, :func:`tile_cuts`). Every output pixel then is the whole-image pixel,
exactly where the runtime sums a pixel's terms in the same order at both shapes, else within the
float32 rounding of the computation (``tests/test_tiling.py`` proves both). With an overlap
smaller than ``k``, the pixels within ``k`` of a seam differ; all others still match.

``k`` is measured (:func:`receptive_radius`): the model runs on a random image and on the same
image with its centre pixel changed, for two images (a ReLU that is off at a position for one
image is on for the other); the output pixels that change, mapped back to input positions, reach
``k`` from the centre. A change that reaches the tile's edge means a receptive field as wide as
the input (global pooling, attention, a norm over the image): no overlap makes tiles equal the
whole, and the runner falls back to ``crop``, saying so. A quantised model lets a change through
only where it moves an output by a step, so its measured ``k`` can be smaller than its float
model's; pass ``overlap=`` to be safe. An image smaller than a tile is padded with its edge pixels
up to the tile (the ``k`` pixels by that edge then approximate the whole image; the note says so).

Example::

    >>> runner = ImageRunner.for_session(session, manifest.preprocess, "super-resolve")  # doctest: +SKIP
    >>> x, notes = runner.to_tensor(photo)                  # 480 x 640 x 3 uint8 RGB      # doctest: +SKIP
    >>> y = runner.run({session.inputs[0].name: x})                                        # doctest: +SKIP
    >>> notes[0]                                                                           # doctest: +SKIP
    'tiled 6x4: 128x128 tiles overlapping by 2 px (the receptive-field radius, measured)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgekit.errors import FeedError, UsageError
from edgekit.preprocess import Preprocess, image_layout

__all__ = ["ImageRunner", "Plan", "TileGrid", "tile_starts", "tile_cuts", "run_tiled", "receptive_radius",
           "spatial_axes"]

Run = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def spatial_axes(layout: str) -> tuple[int, int]:
    """``(H axis, W axis)`` of an image layout (NCHW, NHWC, CHW, HWC)."""
    return layout.index("H"), layout.index("W")


# -- the grid ---------------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Where tiles of ``tile`` pixels start along an axis of ``length`` so that every pixel is at
    least ``overlap`` from the inner edges of a tile that contributes it: every
    ``tile - 2 * overlap`` pixels, the last tile flush with the end. One tile at 0 when
    ``length <= tile`` (a shorter axis is padded up to the tile)."""
    if overlap < 0 or tile - 2 * overlap < 1:
        raise UsageError(f"an overlap of {overlap} px leaves no pixel of a {tile} px tile to keep",
                         hint=f"the overlap must be below half the tile ({(tile - 1) // 2} px at most)")
    if length <= tile:
        return (0,)
    stride = tile - 2 * overlap
    starts = list(range(0, length - tile, stride))
    return (*starts, length - tile)


def tile_cuts(starts: Sequence[int], length: int, tile: int) -> tuple[int, ...]:
    """The part each tile contributes: tile ``i`` gives ``[cuts[i], cuts[i + 1])``. Neighbours
    split their overlap at its middle (at least ``overlap`` from both inner edges, see the
    module docstring)."""
    inner = [(b + a + tile) // 2 for a, b in zip(starts, starts[1:])]
    return (0, *inner, length)


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile = (h, w)`` over an image of ``size = (H, W)``, overlapping by ``overlap``
    pixels of margin on each inner edge."""

    size: tuple[int, int]
    tile: tuple[int, int]
    overlap: int
    ys: tuple[int, ...] = field(init=False)
    xs: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ys", tile_starts(self.size[0], self.tile[0], self.overlap))
        object.__setattr__(self, "xs", tile_starts(self.size[1], self.tile[1], self.overlap))

    @property
    def shape(self) -> tuple[int, int]:
        """``(columns, rows)`` of tiles (width first, like ``640x480``)."""
        return len(self.xs), len(self.ys)

    @property
    def padded(self) -> bool:
        """The image is smaller than a tile in some direction (padded with its edge pixels)."""
        return self.size[0] < self.tile[0] or self.size[1] < self.tile[1]


def run_tiled(run: Run, x: np.ndarray, grid: TileGrid, layout: str,
              outputs: Mapping[str, tuple[str, int, int]]) -> dict[str, np.ndarray]:
    """Run ``run`` on the tiles of ``grid`` over ``x`` (in ``layout``) and stitch its outputs:
    ``outputs`` maps each output name to ``(layout, scale_y, scale_x)``; each tile contributes its
    part of every output (:func:`tile_cuts` times the scale)."""
    ha, wa = spatial_axes(layout)
    H, W = grid.size
    th, tw = grid.tile
    if (x.shape[ha], x.shape[wa]) != (H, W):
        raise FeedError(f"the tiling plan is for {W}x{H}, the input is {x.shape[wa]}x{x.shape[ha]}")
    if grid.padded:  # a side shorter than the tile: repeat the edge pixels up to it
        pad = [(0, 0)] * x.ndim
        pad[ha], pad[wa] = (0, max(0, th - H)), (0, max(0, tw - W))
        x = np.pad(x, pad, mode="edge")
    cy, cx = tile_cuts(grid.ys, H, th), tile_cuts(grid.xs, W, tw)
    result: dict[str, np.ndarray] = {}
    for i, y0 in enumerate(grid.ys):
        for j, x0 in enumerate(grid.xs):
            window = [slice(None)] * x.ndim
            window[ha], window[wa] = slice(y0, y0 + th), slice(x0, x0 + tw)
            outs = run(np.ascontiguousarray(x[tuple(window)]))
            for name, (lay, sy, sx) in outputs.items():
                y = outs[name]
                oh, ow = spatial_axes(lay)
                if name not in result:
                    shape = list(y.shape)
                    shape[oh], shape[ow] = H * sy, W * sx
                    result[name] = np.empty(shape, y.dtype)
                src = [slice(None)] * y.ndim
                dst = [slice(None)] * y.ndim
                src[oh] = slice((cy[i] - y0) * sy, (cy[i + 1] - y0) * sy)
                src[ow] = slice((cx[j] - x0) * sx, (cx[j + 1] - x0) * sx)
                dst[oh], dst[ow] = slice(cy[i] * sy, cy[i + 1] * sy), slice(cx[j] * sx, cx[j + 1] * sx)
                result[name][tuple(dst)] = y[tuple(src)]
    return result


# -- the receptive field ----------------------------------------------------------------------------
def receptive_radius(run: Run, encode: Callable[[np.ndarray], np.ndarray], tile: tuple[int, int],
                     outputs: Mapping[str, tuple[str, int, int]], probes: int = 2, seed: int = 0) -> int | None:
    """The receptive-field radius ``k`` in input pixels, measured on tiles of ``tile = (h, w)``
    (see the module docstring): ``run`` maps an input tensor to the outputs, ``encode`` an
    ``h x w x 3`` uint8 RGB image to that tensor, ``outputs`` is as in :func:`run_tiled`. None
    when the change reaches a tile edge (the receptive field spans the input: tiles cannot equal
    the whole image)."""
    h, w = tile
    cy, cx = h // 2, w // 2
    rng = np.random.default_rng(seed)
    radius = 0
    for _ in range(probes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        changed = img.copy()
        changed[cy, cx] = np.where(img[cy, cx] >= 128, 0, 255)  # a change of at least half the range
        a, b = run(encode(img)), run(encode(changed))
        for name, (lay, sy, sx) in outputs.items():
            oh, ow = spatial_axes(lay)
            diff = np.asarray(a[name]) != np.asarray(b[name])
            rows = np.flatnonzero(diff.any(axis=tuple(d for d in range(diff.ndim) if d != oh))) // sy
            cols = np.flatnonzero(diff.any(axis=tuple(d for d in range(diff.ndim) if d != ow))) // sx
            if rows.size == 0:
                continue
            if rows.min() == 0 or rows.max() == h - 1 or cols.min() == 0 or cols.max() == w - 1:
                return None
            radius = max(radius, cy - int(rows.min()), int(rows.max()) - cy, cx - int(cols.min()),
                         int(cols.max()) - cx)
    return radius


# -- the runner -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How an image of ``image = (H, W)`` runs: ``mode`` (the table of the module docstring, or
    the policy's name — crop, stretch, pad — when the policy does not keep the size), the size
    the model runs at, the tile grid and overlap when tiled, and a one-line ``note``."""

    mode: str
    image: tuple[int, int]
    runs_at: tuple[int, int]
    note: str | None = None
    grid: TileGrid | None = None
    radius_measured: bool = True
    reason: str | None = None  # why a size-keeping policy fell back to crop

    @property
    def keeps_size(self) -> bool:
        return self.mode in ("native", "resized", "tiled")

    @property
    def short(self) -> str:
        """A few words for an overlay line: ``tiled 3x2, overlap 2``, ``resized to 320x240``."""
        H, W = self.image
        if self.mode == "tiled" and self.grid is not None:
            c, r = self.grid.shape
            return f"tiled {c}x{r}, overlap {self.grid.overlap}"
        if self.mode == "resized":
            return f"resized to {W}x{H}"
        if self.mode == "native":
            return f"native {W}x{H}"
        h, w = self.runs_at
        return f"{self.mode} to {w}x{h}" + (" (cannot tile)" if self.reason else "")

    def to_dict(self) -> dict[str, Any]:
        H, W = self.image
        h, w = self.runs_at
        d: dict[str, Any] = {"mode": self.mode, "image": [W, H], "model_input": [w, h]}
        if self.grid is not None:
            d.update(tiles=list(self.grid.shape), tile=[self.grid.tile[1], self.grid.tile[0]],
                     overlap=self.grid.overlap, overlap_from="measured receptive field" if self.radius_measured
                     else "given", padded=self.grid.padded)
        if self.reason:
            d["reason"] = self.reason
        if self.note:
            d["note"] = self.note
        return d


class ImageRunner:
    """Runs the one image input of ``session`` on images of any size by the policy of ``pre``
    (:class:`~edgekit.preprocess.Preprocess`): see the module docstring. ``overlap`` fixes the
    tiles' overlap (default: the measured receptive-field radius). Plans are made once per
    image size; :meth:`run` takes a feed like ``session.run`` and returns the outputs at the
    image's size (``scale`` times it for a super-resolution model)."""

    def __init__(self, session: Any, pre: Preprocess, *, overlap: int | None = None):
        if len(session.inputs) != 1:
            raise UsageError(f"an image feeds one input, the model takes {len(session.inputs)}",
                             where=getattr(session, "path", None))
        if overlap is not None and overlap < 0:
            raise UsageError(f"overlap must be 0 or more pixels, got {overlap}")
        self.session = session
        self.pre = pre
        self.input = session.inputs[0]
        self._radius = overlap
        self._radius_measured = overlap is None
        self._probed = overlap is not None
        self._plans: dict[tuple[int, int], Plan] = {}
        self.last_plan: Plan | None = None

    @classmethod
    def for_session(cls, session: Any, preprocess: Mapping[str, Any] | None = None, task: str | None = None,
                    **options: Any) -> "ImageRunner":
        """The runner for ``session``'s input with the manifest's ``preprocess`` section and task."""
        spec = session.inputs[0] if len(session.inputs) == 1 else None
        if spec is None:
            raise UsageError(f"an image feeds one input, the model takes {len(session.inputs)}",
                             where=getattr(session, "path", None))
        pre = Preprocess.for_input(tuple(spec.shape), spec.dtype, spec.layout, preprocess, task)
        return cls(session, pre, **options)

    # -- planning ---------------------------------------------------------------------------------
    def _shape(self, height: int, width: int) -> tuple[int, ...]:
        """The input shape for an image of ``height x width``: batch 1, the model's channels."""
        lay = self.pre.layout
        dims = []
        for letter, d in zip(lay, self.input.shape):
            dims.append({"H": height, "W": width, "N": 1, "C": self.pre.channels}.get(letter, d))
        return tuple(int(d) for d in dims)

    def _image_outputs(self, out_shapes: Mapping[str, Sequence[Any]], height: int, width: int) \
            -> tuple[dict[str, tuple[str, int, int]] | None, str]:
        """``{output: (layout, scale_y, scale_x)}`` when every output is an image at an integer
        scale of an input of ``height x width``; else None and why not."""
        specs = {s.name: s for s in self.session.outputs}
        found: dict[str, tuple[str, int, int]] = {}
        for name, shape in out_shapes.items():
            spec = specs.get(name)
            lay = image_layout(tuple(shape), getattr(spec, "layout", None))
            if lay is None:
                return None, f"output '{name}' of shape {list(shape)} is not an image"
            ha, wa = spatial_axes(lay)
            oh, ow = shape[ha], shape[wa]
            if not (isinstance(oh, int) and isinstance(ow, int)) or oh % height or ow % width or not oh or not ow:
                return None, f"output '{name}' ({list(shape)}) is not an integer multiple of the {width}x{height} input"
            found[name] = (lay, oh // height, ow // width)
        return found, ""

    def _output_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any] | None:
        """``session.output_shapes_for``; for a session-like object without it (an app's own
        stand-in), what its specs declare: the shapes they accept, nothing else."""
        ask = getattr(self.session, "output_shapes_for", None)
        if ask is not None:
            return ask(shapes)
        if not all(s.accepts_shape(shapes[s.name]) for s in self.session.inputs):
            return None
        return {s.name: tuple(s.shape) for s in self.session.outputs}

    def plan(self, height: int, width: int) -> Plan:
        """How an image of ``height x width`` runs (cached per size)."""
        key = (int(height), int(width))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._make_plan(*key)
        return plan

    def _make_plan(self, H: int, W: int) -> Plan:
        pre, image = self.pre, (H, W)
        if not pre.keeps_size:
            size = pre.size or image
            return Plan(pre.policy, image, size)
        name = self.input.name
        shape = self._shape(H, W)
        declared_ok = self.input.accepts_shape(shape)
        if declared_ok and self._output_shapes({name: shape}) is not None:
            why = "the model's own size" if pre.size == image else "its input size is dynamic"
            return Plan("native", image, image, f"native: the model runs at {W}x{H} ({why})")
        tile = pre.size
        if tile is None:  # dynamic dims, no recorded size, and this size does not run: nothing to tile with
            return self._crop(image, image, f"the model does not run at {W}x{H} and records no input size to tile with")
        th, tw = tile
        ref = self._output_shapes({name: self._shape(th, tw)})
        if ref is None:
            return self._crop(image, tile, f"the model does not run at its recorded size {tw}x{th}")
        scales, why_not = self._image_outputs(ref, th, tw)
        if scales is None:
            return self._crop(image, tile, why_not)
        if pre.policy == "native" and not declared_ok:
            out = self._output_shapes({name: shape})
            if out is not None and self._image_outputs(out, H, W)[0] == scales:
                return Plan("resized", image, image, f"resized: the runtime's input resized from {tw}x{th} to {W}x{H}")
        radius = self._overlap(tile, scales)
        if radius is None:
            return self._crop(image, tile, "its receptive field spans the whole input, so tiles would not equal the "
                              "whole image")
        if 2 * radius >= min(th, tw):
            return self._crop(image, tile, f"its receptive-field radius ({radius} px) is not below half its "
                              f"{tw}x{th} input")
        grid = TileGrid(image, tile, radius)
        c, r = grid.shape
        how = "the receptive-field radius, measured" if self._radius_measured else "given"
        note = f"tiled {c}x{r}: {tw}x{th} tiles overlapping by {radius} px ({how})"
        if grid.padded:
            note += f"; the {W}x{H} image is smaller than a tile, padded with its edge pixels (the last {radius} px " \
                    "by the padded edges approximate)"
        return Plan("tiled", image, tile, note, grid, self._radius_measured)

    def _crop(self, image: tuple[int, int], size: tuple[int, int], reason: str) -> Plan:
        H, W = image
        h, w = size
        return Plan("crop", image, size, f"cannot run {W}x{H} at its own size: {reason}; cut to {w}x{h} as the crop "
                    "policy does", reason=reason)

    def _overlap(self, tile: tuple[int, int], scales: dict[str, tuple[str, int, int]]) -> int | None:
        if not self._probed:
            name = self.input.name
            self._radius = receptive_radius(lambda x: self.session.run({name: x}), self.pre.encode, tile, scales)
            self._probed = True
        return self._radius

    # -- running ----------------------------------------------------------------------------------
    def to_tensor(self, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """An ``H x W x 3`` uint8 RGB image → the input tensor for :meth:`run` (at the image's
        size when the plan keeps it), and notes saying what was done (the plan's first)."""
        if image.ndim != 3:
            raise UsageError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {list(image.shape)}")
        plan = self.plan(*image.shape[:2])
        x, notes = self.pre.to_tensor(image, any_size=plan.keeps_size)
        return x, ([plan.note] if plan.note else []) + notes

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``session.run`` for inputs of any size: the plan for the input's ``H x W`` decides."""
        x = feed.get(self.input.name) if isinstance(feed, Mapping) else None
        if x is None or len(feed) != 1 or np.ndim(x) != len(self.pre.layout):
            return self.session.run(feed)  # the session names what is wrong
        ha, wa = spatial_axes(self.pre.layout)
        plan = self.last_plan = self.plan(x.shape[ha], x.shape[wa])
        if plan.mode != "tiled" or plan.grid is None:
            return self.session.run(feed)
        name = self.input.name
        tile_shape = self._shape(*plan.runs_at)
        ref = self._output_shapes({name: tile_shape}) or {}
        scales, _ = self._image_outputs(ref, *plan.runs_at)
        return run_tiled(lambda t: self.session.run({name: t}), np.asarray(x), plan.grid, self.pre.layout, scales or {})

    # session-like, so a pipeline can take the runner where it takes a session
    @property
    def inputs(self) -> list[Any]:
        return self.session.inputs

    @property
    def outputs(self) -> list[Any]:
        return self.session.outputs

