"""The two demo tasks: what goes into the model and what comes out, read from the manifest.

:class:`FramePreprocess` turns a BGR camera frame into the model's input tensor by the rules
of :mod:`edgekit.preprocess` (the one definition ``edgekit run`` and verification use too): the
spec's crop and resize, then one OpenCV call (``cv2.dnn.blobFromImageWithParams``: colour swap,
``(x - offset) * scale`` per channel and NCHW/NHWC packing, all in C++) with the spec's per-channel
multiply-add, so pre-processing costs a fraction of a millisecond and never becomes a second
bottleneck. When
the manifest says ``folded`` (normalisation already inside the model, see
``edgekit.converters.preprocess``), the artifact takes raw pixels in ``input_value_range`` and
``input_color_order`` and only those are applied.

:class:`Upscale` renders bicubic against the model at the output resolution (split, side by
side, model only, bicubic only); :class:`Classify` renders the frame with the top-5 labels.

Frame sizes. A super-resolution model runs at the frame's own size (the ``native`` policy of
:mod:`edgekit.preprocess`) through :class:`edgekit.tiling.ImageRunner`, the mechanism
``edgekit run`` uses: as declared, with the runtime's input resized, or in overlapping tiles
whose seams do not show. :meth:`Upscale.plan` decides once per frame size; the overlay and the
run's summary say which (``tiled 3x2, overlap 2``). The pipeline runs ``task.model``, the runner
(a session for classification).
Both accept a bundle manifest or, for a bare model file, fall back to what the tensors say
(layout from the shape, RGB in [0, 1]); they never guess when the manifest speaks.

Which models fit (:func:`check_model_fits`, called by :func:`make_task`). A bundle says its
task in the manifest: ``upscale`` takes ``super-resolve``, ``classify`` takes ``classify``, and
anything else is refused with a one-line usage error naming the bundle, its task and what to
pass instead. A bare model file (or a bundle whose task is ``other``) is judged by its tensors
(:func:`kind_from_shapes`): super-resolution keeps the channel count and makes height and width
one scale factor larger; a classifier returns one vector of scores per image. A model whose
shapes cannot be told (sizes known only at run time, and the runtime cannot say) is let
through to the tasks' own checks.

Untrained weights. A bundle converted from a zoo model without trained weights (the manifest's
source says ``pretrained: false`` and no weights file) computes with random weights: the task's
:attr:`~_Task.warnings` say so, and the demo draws it on every frame (so the recording says it
too).

Example::

    >>> task = make_task("upscale", session)                    # doctest: +SKIP
    >>> job = task.prepare(frame)                                # doctest: +SKIP
    >>> outputs = session.run(job.feed)                          # doctest: +SKIP
    >>> task.render(frame, job, outputs, "split").image.shape    # doctest: +SKIP
    (480, 640, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.apps.camera._cv import cv2
from edgekit.errors import DemoError, UsageError
from edgekit.preprocess import Preprocess, crop_box, image_layout

__all__ = ["FramePreprocess", "Job", "Rendered", "Upscale", "Classify", "make_task", "check_model_fits",
           "check_manifest_task", "kind_from_shapes", "has_random_weights", "UPSCALE_VIEWS", "TASK_NAMES"]

TASK_NAMES = {"upscale": "super-resolve", "classify": "classify"}  # demo task -> manifest task
_NOUN = {"upscale": "super-resolution", "classify": "classification"}
_EXAMPLE = {"upscale": "quicksrnet_small_x2", "classify": "mobilenet_v2"}  # zoo names for the hint
RANDOM_WEIGHTS_LABEL = {"upscale": "random weights - output meaningless",
                        "classify": "random weights - labels meaningless"}
UPSCALE_VIEWS = ("split", "side-by-side", "model", "bicubic")
_FLOAT_DTYPES = ("float32", "float16")


# ---------------------------------------------------------------------------------------------
# Pre-processing
# ---------------------------------------------------------------------------------------------
@dataclass
class FramePreprocess:
    """Frame (BGR uint8, any size) → model input: the steps of :class:`edgekit.preprocess.Preprocess`
    (``spec``, the one definition shared with ``edgekit run`` and verification), done fast.

    The geometry (crop or pad, area/bilinear resize) is the spec's own, which works on BGR frames
    as on RGB images. The values are ``(pixel - offset[c]) * scale[c]`` per channel in one
    OpenCV call, with ``scale = a`` and ``offset = -b / a`` from the spec's ``px * a + b``: the same
    numbers, rounded once more in float32.
    """

    input_name: str
    spec: Preprocess
    scale: tuple[float, ...] = (1 / 255, 1 / 255, 1 / 255)
    offset: tuple[float, ...] = (0.0, 0.0, 0.0)
    _params: Any = field(default=None, repr=False)
    keep_size: bool = False  # frames keep their size (the model runs at any size: edgekit.tiling)

    @classmethod
    def from_manifest(cls, tensor: Any, pre: dict[str, Any] | None, where: str = "model",
                      task: str | None = None) -> "FramePreprocess":
        """Build from the model's input :class:`~edgekit.runtimes.base.TensorSpec` and the
        manifest's ``preprocess`` section (None for a bare model file) and task."""
        shape = tuple(tensor.shape)
        if len(shape) != 4:
            raise DemoError(f"the demo needs one image input of rank 4, this model's '{tensor.name}' has shape "
                            f"{list(shape)}", where=where)
        dtype = str(tensor.dtype)
        if dtype not in (*_FLOAT_DTYPES, "uint8"):
            raise DemoError(f"input '{tensor.name}' has dtype {dtype}; the demo feeds float32, float16 or uint8 images",
                            where=where, hint="use a float or uint8-input artifact of the model")
        try:
            spec = Preprocess.for_input(shape, dtype, tensor.layout, pre, task)
        except UsageError as e:
            raise DemoError(e.message, where=where,
                            hint=e.hint or "convert the model with `edgekit convert` so its bundle records the layout") \
                from None
        if spec.layout not in ("NCHW", "NHWC"):
            raise DemoError(f"input layout {spec.layout} is not an image layout (NCHW or NHWC)", where=where)
        if spec.channels != 3:
            raise DemoError(f"the demo feeds colour frames (3 channels); input '{tensor.name}' has {spec.channels}",
                            where=where)
        if spec.color_order not in ("RGB", "BGR"):
            raise DemoError(f"colour order {spec.color_order} is not RGB or BGR", where=where)
        if dtype == "uint8":
            return cls(tensor.name, spec, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
        try:
            a, b = spec.affine()
        except UsageError as e:
            raise DemoError(e.message, where=where, hint=e.hint) from None
        return cls(tensor.name, spec, tuple(map(float, a)), tuple(map(float, -b / a)))

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) the model takes; None: any (dynamic H and W)."""
        return None if self.spec.size is None else (self.spec.size[1], self.spec.size[0])

    @property
    def layout(self) -> str:
        return self.spec.layout

    @property
    def color_order(self) -> str:
        return self.spec.color_order

    @property
    def dtype(self) -> str:
        return self.spec.dtype

    def target_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) the model runs a frame of ``frame_size`` at."""
        return frame_size if self.keep_size else (self.size or frame_size)

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The part of ``frame`` the model sees (a view): the centre crop of the ``crop`` policy."""
        if self.spec.size is None or self.spec.policy != "crop":
            return frame
        y0, x0, h, w = crop_box(frame.shape[0], frame.shape[1], *self.spec.size)
        return frame[y0:y0 + h, x0:x0 + w]

    def low_res(self, frame: np.ndarray) -> np.ndarray:
        """The frame as the model sees it, at the size it runs (the spec's geometry)."""
        return np.ascontiguousarray(self.spec.geometry(frame, any_size=self.keep_size)[0])

    def __call__(self, low_res_bgr: np.ndarray) -> np.ndarray:
        """Tensor for an image already at the model's size (see :meth:`low_res`)."""
        cv = cv2()
        if self.dtype == "uint8":
            img = low_res_bgr[:, :, ::-1] if self.color_order == "RGB" else low_res_bgr
            x = img.transpose(2, 0, 1) if self.layout == "NCHW" else img
            return np.ascontiguousarray(x[None])
        if self._params is None:
            self._params = _blob_params(cv, self) or False
        if self._params is False:  # OpenCV < 4.8 (e.g. Debian's python3-opencv): NumPy, still vectorised
            blob = self._numpy(low_res_bgr)
        else:
            blob = cv.dnn.blobFromImageWithParams(low_res_bgr, self._params)
        return blob.astype(np.float16) if self.dtype == "float16" else blob

    def _numpy(self, low_res_bgr: np.ndarray) -> np.ndarray:
        img = low_res_bgr[:, :, ::-1] if self.color_order == "RGB" else low_res_bgr
        x = img.astype(np.float32)
        x -= np.asarray(self.offset, np.float32)
        x *= np.asarray(self.scale, np.float32)
        x = x.transpose(2, 0, 1) if self.layout == "NCHW" else x
        return np.ascontiguousarray(x[None])


def _blob_params(cv: Any, pre: FramePreprocess) -> Any:
    """``cv2.dnn.Image2BlobParams`` for ``pre`` (OpenCV >= 4.8), or None when this OpenCV lacks it."""
    if not hasattr(cv.dnn, "blobFromImageWithParams"):
        return None
    layouts = cv.dnn if hasattr(cv.dnn, "DNN_LAYOUT_NCHW") else cv  # OpenCV 4.x: cv2.dnn.*, 5.x: cv2.*
    p = cv.dnn.Image2BlobParams()
    p.scalefactor = (*pre.scale, 0.0)
    p.mean = (*pre.offset, 0.0)  # in the model's channel order (applied after swapRB)
    p.swapRB = pre.color_order == "RGB"
    p.ddepth = cv.CV_32F
    p.datalayout = layouts.DNN_LAYOUT_NCHW if pre.layout == "NCHW" else layouts.DNN_LAYOUT_NHWC
    return p


def _to_bgr_u8(y: np.ndarray, layout: str, color_order: str, value_range: tuple[float, float]) -> np.ndarray:
    """One image tensor (batch 1) → HxWx3 uint8 BGR, clipped to the value range."""
    cv = cv2()
    y = y[0]
    if layout == "NCHW":
        planes = [y[c] for c in ((2, 1, 0) if color_order == "RGB" else (0, 1, 2))]
        img = cv.merge([np.asarray(p, np.float32) for p in planes])
    else:
        img = np.ascontiguousarray((y[..., ::-1] if color_order == "RGB" else y), dtype=np.float32)
    lo, hi = value_range
    np.clip(img, lo, hi, out=img)
    # after the clip every value maps into [0, 255]: convertScaleAbs rounds and saturates
    return cv.convertScaleAbs(img, alpha=255.0 / (hi - lo), beta=-255.0 * lo / (hi - lo))


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One frame on its way through the pipeline."""

    low_res: np.ndarray  # BGR uint8 at the model's input size
    feed: dict[str, np.ndarray]


@dataclass
class Rendered:
    """A task's view of one result: the image (BGR uint8 at the output size) and, for
    classification, the top-k (label, probability) pairs the overlay lists."""

    image: np.ndarray
    top_k: list[tuple[str, float]] | None = None


class _Task:
    kind = "task"
    views: tuple[str, ...] = ("frame",)

    @property
    def random_weights(self) -> bool:
        """The bundle says the model computes with random (untrained) weights."""
        return has_random_weights(self.manifest)

    @property
    def warnings(self) -> list[str]:
        """What the overlay must say on every frame (in red): e.g. that the weights are random."""
        return [RANDOM_WEIGHTS_LABEL.get(self.kind, "random weights")] if self.random_weights else []

    def __init__(self, session: Any, model_name: str | None = None):
        self.session = session
        self.manifest = getattr(session, "manifest", None)
        self.where = str(getattr(session, "path", "model"))
        if len(session.inputs) != 1:
            raise DemoError(f"the demo feeds one image, this model takes {len(session.inputs)} inputs", where=self.where)
        self.pre_cfg = dict(self.manifest.preprocess) if self.manifest is not None else {}
        task = self.manifest.task if self.manifest is not None and self.manifest.task != "other" else \
            TASK_NAMES.get(self.kind)  # a bare model file: the demo task says what it is
        self.pre = FramePreprocess.from_manifest(session.inputs[0], self.pre_cfg if self.manifest is not None else None,
                                                 self.where, task)
        path = getattr(session, "path", None)
        self.model_name = model_name or (self.manifest.name if self.manifest is not None else None) \
            or (path.stem if hasattr(path, "stem") else "model")

    @property
    def model(self) -> Any:
        """What the pipeline runs: ``model.run(job.feed)`` (the session, or a runner over it)."""
        return self.session

    def plan(self, frame_size: tuple[int, int]) -> Any:
        """How frames of ``frame_size`` run (an :class:`edgekit.tiling.Plan`), or None when the
        task feeds every frame at the model's size."""
        return None

    def spatial_line(self) -> str | None:
        """The overlay's line on how the frame runs, when there is one to say."""
        return None

    def prepare(self, frame: np.ndarray) -> Job:
        """Frame → the model's feed (and the low-res frame the model sees)."""
        self.plan((frame.shape[1], frame.shape[0]))
        low = self.pre.low_res(frame)
        return Job(low, {self.pre.input_name: self.pre(low)})

    def output_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:  # pragma: no cover
        """(width, height) of what :meth:`render` returns for frames of ``frame_size``."""
        raise NotImplementedError

    def render(self, frame: np.ndarray, job: Job, outputs: dict[str, np.ndarray], view: str) -> Rendered:
        raise NotImplementedError  # pragma: no cover


class Upscale(_Task):
    """Super-resolution: bicubic (``cv2.resize`` INTER_CUBIC of the same low-res frame the model
    saw) against the model, at the model's output resolution.

    Views: ``split`` (left half bicubic, right half model, same pixel positions), ``side-by-side``
    (the centre half of each next to each other, 1:1 pixels), ``model``, ``bicubic``. Every view
    is the output resolution, so a recording keeps one size while the view is switched.
    """

    kind = "upscale"
    views = UPSCALE_VIEWS

    def __init__(self, session: Any, model_name: str | None = None):
        super().__init__(session, model_name)
        out = session.outputs[0]
        self.out_name = out.name
        shape = tuple(out.shape)
        if len(shape) != 4:
            raise DemoError(f"an upscaler's output must be an image of rank 4, '{out.name}' has shape {list(shape)}",
                            where=self.where)
        self.out_layout = (out.layout or self.pre.layout).upper()
        self.value_range = tuple(float(v) for v in self.pre_cfg.get("value_range", (0.0, 1.0)))
        if self.pre.dtype == "uint8":
            self.value_range = (0.0, 255.0)
        h_axis, w_axis = (2, 3) if self.out_layout == "NCHW" else (1, 2)
        static = all(isinstance(shape[a], int) and shape[a] > 0 for a in (h_axis, w_axis))
        scale = self.pre_cfg.get("scale_factor")
        if scale is None and static and self.pre.size is not None:
            scale = shape[w_axis] / self.pre.size[0]
        if scale is None:
            raise DemoError("cannot tell this model's scale factor", where=self.where,
                            hint="use a bundle from `edgekit convert` (its manifest records scale_factor)")
        self.scale = float(scale)
        self.static_out = (int(shape[w_axis]), int(shape[h_axis])) if static else None
        from edgekit.tiling import ImageRunner

        self.runner = ImageRunner(session, self.pre.spec)
        self.frame_plan: Any = None

    @property
    def model(self) -> Any:
        return self.runner

    def plan(self, frame_size: tuple[int, int]) -> Any:
        """Decide how frames of ``frame_size`` (width, height) run: at their own size (native,
        resized or tiled) when the policy keeps it and the model allows, else cut to the model's
        size; the first call for a size may probe the model (its receptive field)."""
        w, h = frame_size
        plan = self.frame_plan
        if plan is None or plan.image != (h, w):
            try:
                plan = self.runner.plan(h, w)
            except UsageError as e:
                raise DemoError(e.message, where=self.where, hint=e.hint) from None
            self.pre.keep_size = plan.keeps_size
            self.frame_plan = plan
        return plan

    def spatial_line(self) -> str | None:
        plan = self.frame_plan
        if plan is None or not self.pre.spec.keeps_size:
            return None
        h, w = plan.runs_at if plan.mode != "resized" else (self.pre.spec.size or plan.runs_at)
        return plan.short if plan.mode == "native" else f"{plan.short} ({w}x{h} model)"

    def _model_label(self) -> str:
        tag = f"x{self.scale:g}"
        return self.model_name if self.model_name.endswith(tag) else f"{self.model_name} {tag}"

    def output_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        if self.plan(frame_size).keeps_size:
            w, h = frame_size
            return round(w * self.scale), round(h * self.scale)
        if self.static_out is not None:
            return self.static_out
        w, h = self.pre.target_size(frame_size)
        return round(w * self.scale), round(h * self.scale)

    def render(self, frame: np.ndarray, job: Job, outputs: dict[str, np.ndarray], view: str) -> Rendered:
        from edgekit.apps.camera.overlay import corner_label

        cv = cv2()
        model = _to_bgr_u8(outputs[self.out_name], self.out_layout, self.pre.color_order, self.value_range)
        oh, ow = model.shape[:2]
        if view == "model":
            corner_label(model, self._model_label(), "bottom-right")
            return Rendered(model)
        bicubic = cv.resize(job.low_res, (ow, oh), interpolation=cv.INTER_CUBIC)
        if view == "bicubic":
            corner_label(bicubic, f"bicubic x{self.scale:g}", "bottom-left")
            return Rendered(bicubic)
        half = ow // 2
        if view == "side-by-side":
            x0 = ow // 4
            canvas = np.empty_like(model)
            canvas[:, :half] = bicubic[:, x0:x0 + half]
            canvas[:, half:] = model[:, x0:x0 + ow - half]
        else:  # split
            canvas = model
            canvas[:, :half] = bicubic[:, :half]
        cv.line(canvas, (half, 0), (half, oh - 1), (255, 255, 255), 1)
        corner_label(canvas, "bicubic", "bottom-left")
        corner_label(canvas, self._model_label(), "bottom-right")
        return Rendered(canvas)


class Classify(_Task):
    """Classification: the frame at its capture size, the region the model sees outlined, and
    the top-5 classes with probabilities. Labels come from the manifest; without them (or when
    their count does not match the output), class indices are shown."""

    kind = "classify"
    TOP_K = 5

    def __init__(self, session: Any, model_name: str | None = None):
        super().__init__(session, model_name)
        self.out_name = session.outputs[0].name
        labels = self.manifest.labels if self.manifest is not None else None
        self.labels = list(labels) if labels else None

    def output_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        return frame_size

    def top_k(self, logits: np.ndarray) -> list[tuple[str, float]]:
        """(label, probability) of the ``TOP_K`` best classes. Outputs that already are
        probabilities (non-negative, summing to 1) are used as they are; logits get a softmax."""
        v = np.asarray(logits, np.float64).reshape(-1)
        if not (v.min() >= 0 and abs(v.sum() - 1.0) < 1e-3):
            v = np.exp(v - v.max())
            v /= v.sum()
        k = min(self.TOP_K, v.size)
        idx = np.argpartition(-v, k - 1)[:k]
        idx = idx[np.argsort(-v[idx], kind="stable")]
        names = self.labels if self.labels and len(self.labels) == v.size else None
        return [(names[i] if names else f"class {i}", float(v[i])) for i in idx]

    def render(self, frame: np.ndarray, job: Job, outputs: dict[str, np.ndarray], view: str) -> Rendered:
        cv = cv2()
        image = frame.copy()
        crop = self.pre.crop(frame)
        if crop.shape[:2] != frame.shape[:2]:  # outline what the model sees
            y0 = (frame.shape[0] - crop.shape[0]) // 2
            x0 = (frame.shape[1] - crop.shape[1]) // 2
            cv.rectangle(image, (x0, y0), (x0 + crop.shape[1] - 1, y0 + crop.shape[0] - 1), (200, 200, 200), 1)
        return Rendered(image, self.top_k(outputs[self.out_name]))


def make_task(kind: str, session: Any, model_name: str | None = None, where: Any = None) -> _Task:
    """The task object for ``kind`` (``upscale`` or ``classify``), once :func:`check_model_fits`
    agrees the model is one (``where``: the bundle folder or file the user named, for messages)."""
    if kind not in TASK_NAMES:
        raise UsageError(f"unknown demo task '{kind}'", hint="choose upscale or classify")
    check_model_fits(kind, session, where)
    return Upscale(session, model_name) if kind == "upscale" else Classify(session, model_name)


# ---------------------------------------------------------------------------------------------
# Which models fit a task
# ---------------------------------------------------------------------------------------------
def has_random_weights(manifest: Any) -> bool:
    """True when a bundle's manifest says its model was converted from a zoo architecture with
    neither the shipped trained weights nor a weights file: its weights are a random
    initialisation. Other sources (a module, an ONNX file) carry whatever weights they had."""
    src = getattr(manifest, "source", None) or {}
    return src.get("kind") == "zoo" and not src.get("pretrained") and not src.get("weights")


def _refuse(kind: str, where: Any, what: str, fits: str | None) -> UsageError:
    """The one-line usage error for a model that is not what ``edgekit demo KIND`` runs:
    ``what`` says what it is; ``fits``, the other demo task it is made for, if any."""
    instead = f"pass a {_NOUN[kind]} bundle or model file (e.g. --model {_EXAMPLE[kind]}; `edgekit zoo list`)"
    hint = f"run `edgekit demo {fits} --model {where}`, or {instead}" if fits else instead
    return UsageError(f"{what}, not a {_NOUN[kind]} model, which `edgekit demo {kind}` runs", where=where, hint=hint)


def check_manifest_task(kind: str, manifest: Any, where: Any, what: str = "bundle") -> bool:
    """Refuse a bundle (``what``: or a zoo model, by its card) whose manifest names another
    task than ``kind``'s: a usage error naming it, its task and what to pass instead. True when
    the manifest settles it, False when its task is ``other`` (the tensors must tell)."""
    if manifest is None or manifest.task == "other":
        return False
    if manifest.task != TASK_NAMES[kind]:
        fits = next((k for k, v in TASK_NAMES.items() if v == manifest.task), None)
        raise _refuse(kind, where, f"{what} '{manifest.name}' is a {manifest.task} model", fits)
    return True


def check_model_fits(kind: str, session: Any, where: Any = None) -> None:
    """Refuse a model that is not what ``edgekit demo KIND`` runs, from the bundle's task or,
    for a bare model file (or a bundle of task ``other``), from its tensors
    (:func:`kind_from_shapes`). ``where`` names it in the message (default: the session's path)."""
    manifest = getattr(session, "manifest", None)
    if where is None:
        path = getattr(session, "path", None)
        where = path.parent if manifest is not None and hasattr(path, "parent") else (path or "model")
    if check_manifest_task(kind, manifest, where):
        return
    found, desc = kind_from_shapes(session)
    if found is None or found == TASK_NAMES[kind]:
        return
    fits = next((k for k, v in TASK_NAMES.items() if v == found), None)
    raise _refuse(kind, where, f"its tensors say it is {desc}", fits)


def _dims(shape: Any) -> str:
    return "x".join("?" if not _known(d) else str(d) for d in shape)


def _known(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d > 0


def kind_from_shapes(session: Any) -> tuple[str | None, str]:
    """What a model is by its first input and output: ``("super-resolve", description)`` when
    the output keeps the input's channels and its height and width are one factor s > 1 larger;
    ``"classify"`` when the output is one vector of scores per image (``N x K``, or ``N x K x 1 x 1``);
    ``"image"`` for another image-shaped output, ``"not-image"`` for an input that is not one
    image (a video clip, a latent, several inputs), ``"other"`` for anything else. ``None`` when
    the sizes cannot be told without running the model (dynamic dims the runtime cannot resolve).
    Dynamic sizes are resolved with :meth:`~edgekit.runtimes.base.Session.output_shapes_for`."""
    ins, outs = list(session.inputs), list(session.outputs)
    if len(ins) != 1:
        return "not-image", f"a model of {len(ins)} inputs"
    x = ins[0]
    xs = tuple(x.shape)
    lay = image_layout(xs, x.layout) if len(xs) == 4 else None
    if lay is None:
        return "not-image", f"a model whose input {_dims(xs)} is not one image"
    if not outs:
        return None, "a model without outputs"
    y = outs[0]
    ys = tuple(y.shape)
    desc = f"input {_dims(xs)}, output {_dims(ys)}"
    rest = ys[1:]
    if len(ys) in (2, 4) and all(_known(d) for d in rest) and sum(d > 1 for d in rest) == 1:
        k = max(rest)
        return "classify", f"a classifier ({desc}: {k} scores per image)"
    if len(ys) != 4:
        return "other", f"a model with {desc}"
    if not all(_known(d) for d in (*xs[1:], *ys[1:])):
        probe = tuple(d if _known(d) else (1 if i == 0 else 3 if lay[i] == "C" else 64) for i, d in enumerate(xs))
        try:
            got = session.output_shapes_for({x.name: probe})
        except Exception:  # a runtime that cannot answer: the tasks' own checks speak later
            got = None
        if got and y.name in got and all(_known(d) for d in tuple(got[y.name])[1:]):
            xs, ys = probe, tuple(got[y.name])
            desc = f"input {_dims(xs)}, output {_dims(ys)} (at a probe size)"
        else:
            return None, f"a model with {desc}"
    out_lay = y.layout if y.layout in ("NCHW", "NHWC") else lay
    c_in, h_in, w_in = (xs[lay.index(a)] for a in "CHW")
    c_out, h_out, w_out = (ys[out_lay.index(a)] for a in "CHW")
    sh, sw = h_out / h_in, w_out / w_in
    if c_out == c_in and sh == sw and sh > 1:
        return "super-resolve", f"an upscaler ({desc}: x{sh:g})"
    why = (f"{c_out} channels out of {c_in}" if c_out != c_in else
           "the input's size" if sh == sw == 1 else f"scaled x{sh:g} in height and x{sw:g} in width")
    return "image", (f"an image-to-image model ({desc}: {why}; super-resolution keeps the channels and makes "
                     "height and width one factor larger)")
