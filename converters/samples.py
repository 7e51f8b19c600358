"""The user's own inputs: ``--verify-data`` (verification cases) and ``--calibration`` (int8).

Either option takes a folder or one file:

- an image (``.png``, ``.jpg``, ...; in a folder, every image) goes through
  :class:`edgekit.preprocess.Preprocess` with the bundle's pre-processing — the task's geometry,
  then the card's or ``--mean/--std/--value-range`` normalisation — exactly as ``edgekit run``
  feeds it (models with one image input only);
- a ``.npy`` holds the input of a one-input model, a ``.npz`` one array per input (by input name,
  or ``arr_0``, ``arr_1``, ... in input order); arrays are fed as they are. An array of the input's
  shape is one sample; one with an extra leading axis (``(K, *shape)``), or ``K`` in place of a batch
  of 1, is ``K`` samples. Float inputs take float arrays (cast to the input's dtype), integer inputs
  integer arrays whose values fit.

With ``--fold-preprocess`` the artifact takes pixels, so arrays are RGB pixels 0..255 in the
source's NCHW shape; the source gets them normalised.

Each problem is one line naming the file and what to do (a usage error, exit 2), found right after
capture, before anything is exported.

Example::

    >>> samples, what = load_samples(Path("val/"), option="--verify-data", ...)   # doctest: +SKIP
    >>> what
    '12 images from val/ (pre-processed as edgekit run does)'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit.errors import EdgekitError, UsageError

__all__ = ["Sample", "load_samples", "check_data_path", "load_user_data", "VERIFY_LIMIT", "CALIBRATION_LIMIT"]

VERIFY_LIMIT = 32
"""At most this many user samples become verification cases (each runs on the source, in float64
and on every artifact)."""

CALIBRATION_LIMIT = 256
"""At most this many user samples calibrate int8 (min-max ranges settle long before)."""

ARRAY_SUFFIXES = (".npy", ".npz")


@dataclass
class Sample:
    """One input: ``source`` feeds the source model; ``artifact`` the artifact (None: the same;
    pixels in the artifact's layout when pre-processing is folded)."""

    name: str
    source: list[np.ndarray]
    artifact: list[np.ndarray] | None = None


def check_data_path(path: Any, option: str) -> Path:
    """``path`` when it is a folder or a file of a kind ``option`` reads (usage error otherwise)."""
    from edgekit._fs import existing
    from edgekit.imageio import is_image_path

    p = existing(Path(path), hint=f"check the {option} path")
    if p.is_dir():
        return p
    if p.suffix.lower() in ARRAY_SUFFIXES or is_image_path(p):
        return p
    raise UsageError(f"{option} takes a folder, an image, a .npy or a .npz, not '{p.suffix or p.name}'", where=p,
                     hint="pass a folder of images, or the inputs saved with numpy.save / numpy.savez")


@dataclass(frozen=True)
class _Model:
    """What a sample must fit: the source's inputs and its pre-processing."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[np.dtype]
    preprocess: dict[str, Any]
    task: str | None
    fold: Any


def load_samples(path: Path, *, option: str, input_names: Sequence[str], input_shapes: Sequence[tuple[int, ...]],
                 dtypes: Sequence[Any], preprocess: dict[str, Any], task: str | None, fold: Any = None,
                 limit: int = VERIFY_LIMIT) -> tuple[list[Sample], str]:
    """The samples in ``path`` (a folder, an image, a .npy or .npz) and a one-line description.
    At most ``limit`` samples (the first ones, files in name order)."""
    from edgekit.imageio import is_image_path

    path = check_data_path(path, option)
    model = _Model(list(input_names), [tuple(s) for s in input_shapes], [np.dtype(d) for d in dtypes],
                   dict(preprocess), task, fold)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file()
                       and (is_image_path(p) or p.suffix.lower() in ARRAY_SUFFIXES))
        if not files:
            raise UsageError(f"{option}: the folder has no images and no .npy/.npz files", where=path,
                             hint="put images (.png, .jpg) or arrays saved with numpy.save in it")
    else:
        files = [path]
    samples: list[Sample] = []
    kinds = {"image": 0, "array": 0}
    total = 0
    for f in files:
        got = _read(f, model, option)
        kinds["image" if is_image_path(f) else "array"] += len(got)
        total += len(got)
        samples.extend(got[:max(0, limit - len(samples))])
    what = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in kinds.items() if n)
    cut = f" (the first {len(samples)} of {total})" if total > len(samples) else ""
    how = " pre-processed as edgekit run does" if kinds["image"] else ""
    return samples, f"{what} from {path}{cut}{how}"


def _read(f: Path, model: _Model, option: str) -> list[Sample]:
    from edgekit.imageio import is_image_path

    if is_image_path(f):
        return [_image_sample(f, model, option)]
    arrays = _load_arrays(f, model, option)
    return _array_samples(f, arrays, model, option)


def _image_sample(f: Path, model: _Model, option: str) -> Sample:
    """An image through the bundle's pre-processing (folded: pixels for the artifact, normalised
    for the source)."""
    from edgekit.converters.preprocess import normalise
    from edgekit.imageio import read_image
    from edgekit.preprocess import Preprocess

    if len(model.shapes) != 1 or len(model.shapes[0]) != 4:
        raise UsageError(f"{option}: an image feeds a model with one image input; this one takes "
                         f"{', '.join(str(list(s)) for s in model.shapes)}", where=f,
                         hint="pass the inputs as .npy (one input) or .npz (one array per input name)")
    shape = model.shapes[0]
    try:
        rgb = read_image(f)
        spec = Preprocess.for_input(shape, model.dtypes[0].name, "NCHW", model.preprocess, model.task)
        if model.fold is None:
            x, _ = spec.to_tensor(rgb)
            return Sample(f"data:{f.name}", [np.repeat(x, shape[0], axis=0)])
        img, _ = spec.geometry(rgb)
    except EdgekitError as e:
        raise UsageError(f"{option}: {e.message}", where=f, hint=e.hint) from None
    px = np.repeat(np.ascontiguousarray(img.transpose(2, 0, 1))[None], shape[0], axis=0)
    return Sample(f"data:{f.name}", [normalise(px, model.fold)], [_pixels_for_artifact(px, model.fold)])


def _pixels_for_artifact(px: np.ndarray, fold: Any) -> np.ndarray:
    x = px.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if fold.input_layout == "NHWC" else x


def _load_arrays(f: Path, model: _Model, option: str) -> list[np.ndarray]:
    """One array per model input, from a .npy (one-input models) or a .npz."""
    from edgekit._fs import regular_file

    regular_file(f, hint=f"check the {option} path")
    try:
        if f.suffix.lower() == ".npy":
            if len(model.names) != 1:
                raise UsageError(f"{option}: a .npy holds one array but the model takes {len(model.names)} inputs "
                                 f"({', '.join(model.names)})", where=f,
                                 hint="save one array per input name with numpy.savez")
            return [np.load(f, allow_pickle=False)]
        with np.load(f, allow_pickle=False) as data:
            keys = list(data.files)
            if set(model.names) <= set(keys):
                return [data[n] for n in model.names]
            positional = [f"arr_{i}" for i in range(len(model.names))]
            if keys == positional:
                return [data[k] for k in keys]
            raise UsageError(f"{option}: the .npz holds {keys}, the model's inputs are {model.names}", where=f,
                             hint="save one array per input, named as the model's inputs (numpy.savez(f, name=array))")
    except (OSError, ValueError, EOFError) as e:
        from edgekit.errors import first_line

        raise UsageError(f"{option}: not a readable {f.suffix} file ({first_line(e)})", where=f,
                         hint="write it with numpy.save / numpy.savez (no pickled objects)") from None


def _array_samples(f: Path, arrays: list[np.ndarray], model: _Model, option: str) -> list[Sample]:
    """Split each input's array into samples (checking shape and dtype), the same count for every input."""
    per_input = [_split(f, a, name, shape, dt, option)
                 for a, name, shape, dt in zip(arrays, model.names, model.shapes, model.dtypes)]
    counts = {len(s) for s in per_input}
    if len(counts) != 1:
        raise UsageError(f"{option}: the inputs hold different numbers of samples "
                         f"({', '.join(f'{n}: {len(s)}' for n, s in zip(model.names, per_input))})", where=f,
                         hint="give every input the same number of samples")
    n = counts.pop()
    out = []
    for i in range(n):
        source = [s[i] for s in per_input]
        label = f"data:{f.name}" + (f"[{i}]" if n > 1 else "")
        if model.fold is None:
            out.append(Sample(label, source))
            continue
        px = source[0]
        if px.dtype.kind == "f" and (np.any(px != np.rint(px)) or px.min(initial=0) < 0 or px.max(initial=0) > 255):
            raise UsageError(f"{option}: with --fold-preprocess the arrays are RGB pixels 0..255, this one has values "
                             f"in [{float(px.min()):.3g}, {float(px.max()):.3g}]", where=f,
                             hint="save the pixels (integers 0..255, NCHW), or pass the images")
        from edgekit.converters.preprocess import normalise

        px = np.clip(px, 0, 255).astype(np.uint8)
        out.append(Sample(label, [normalise(px, model.fold)], [_pixels_for_artifact(px, model.fold)]))
    return out


def _split(f: Path, a: np.ndarray, name: str, shape: tuple[int, ...], dt: np.dtype, option: str) -> list[np.ndarray]:
    """``a`` as samples of ``shape``: the shape itself (one sample), ``(K, *shape)``, or ``K`` in
    place of a batch of 1."""
    a = np.asarray(a)
    where = f"input '{name}'"
    if tuple(a.shape) == shape:
        parts = [a]
    elif a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
        parts = list(a)
    elif shape and shape[0] == 1 and a.ndim == len(shape) and tuple(a.shape[1:]) == shape[1:]:
        parts = [a[i:i + 1] for i in range(a.shape[0])]
    else:
        raise UsageError(f"{option}: {where} takes shape {list(shape)}, the array has {list(a.shape)}", where=f,
                         hint=f"save arrays of shape {list(shape)} (or (K, ...) for K samples)")
    if not parts:
        raise UsageError(f"{option}: {where}: the array holds no samples", where=f)
    if dt.kind == "f":
        if a.dtype.kind not in "fiub":
            raise UsageError(f"{option}: {where} takes {dt.name}, the array is {a.dtype}", where=f)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise UsageError(f"{option}: {where}: the array has NaN or infinite values", where=f,
                             hint="pass finite inputs")
    elif dt.kind in "iub":
        if a.dtype.kind not in "iub":
            raise UsageError(f"{option}: {where} takes {dt.name}, the array is {a.dtype} (integer values expected)",
                             where=f, hint=f"save it as {dt.name}")
        if dt.kind != "b":
            info = np.iinfo(dt)
            if a.size and (a.min() < info.min or a.max() > info.max):
                raise UsageError(f"{option}: {where} takes {dt.name}; the array's values reach "
                                 f"[{a.min()}, {a.max()}]", where=f)
    return [np.ascontiguousarray(p).astype(dt, copy=False) for p in parts]


def load_user_data(conv: Any) -> None:
    """Read ``--verify-data`` and ``--calibration`` for a captured conversion into
    ``conv.verify_samples`` / ``conv.calibration_samples`` (with their descriptions), so that a
    wrong file stops the conversion before anything is exported."""
    o, cap = conv.options, conv.captured
    dtypes = [np.dtype(str(t.dtype).replace("torch.", "")) for t in cap.example_inputs]
    common = dict(input_names=cap.input_names, input_shapes=cap.input_shapes, dtypes=dtypes,
                  preprocess=cap.preprocess, task=cap.task, fold=conv.fold)
    if o.verify_data is not None:
        conv.verify_samples = load_samples(Path(o.verify_data), option="--verify-data", limit=VERIFY_LIMIT, **common)
    if o.calibration is not None:
        conv.calibration_samples = load_samples(Path(o.calibration), option="--calibration",
                                                limit=CALIBRATION_LIMIT, **common)
