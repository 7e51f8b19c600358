"""edgekit.tiling: images of any size through fixed-size models.

The proof of the tiling: generated fully convolutional SR nets (NumPy, float64, each conv a fixed
sequence of multiply-adds per output pixel, so a pixel is computed the same way at any image size)
with known receptive-field radii. Tiled with the measured overlap, the stitched output equals the
whole-image output exactly; with less overlap than the receptive field, exactly the pixels within
it of a seam differ. Then a converted bundle (ONNX + TFLite made at 128x128): a 640x480 photo comes
back at 1280x960 through ``ImageRunner``, ``edgekit run`` and the camera demo, equal to the torch
source run on the whole photo, and each says how it ran.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numeric import THREADS, Bound, assert_close, assert_matches

from edgekit.preprocess import Preprocess
from edgekit.runtimes.base import TensorSpec
from edgekit.runtimes.null import session_from_callable
from edgekit.tiling import ImageRunner, tile_cuts, tile_starts

pytestmark = pytest.mark.numeric


# -- the grid -------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,tile,overlap", [
    (640, 128, 2), (480, 128, 2), (128, 128, 5), (129, 128, 0), (300, 64, 31), (1000, 37, 9), (37, 40, 3),
    *[(int(n), int(t), int(k)) for n, t, k in zip(np.random.default_rng(3).integers(1, 700, 12),
                                                  np.random.default_rng(4).integers(8, 90, 12),
                                                  np.random.default_rng(5).integers(0, 4, 12))],
])
def test_every_pixel_comes_from_a_tile_that_holds_its_receptive_field(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    cuts = tile_cuts(starts, length, tile)
    assert cuts[0] == 0 and cuts[-1] == length and list(cuts) == sorted(cuts)
    if length <= tile:
        assert starts == (0,)
        return
    assert len(starts) == 1 + math.ceil((length - tile) / (tile - 2 * overlap))
    assert starts[0] == 0 and starts[-1] == length - tile and all(0 <= s <= length - tile for s in starts)
    for i, s in enumerate(starts):
        a, b = cuts[i], cuts[i + 1]
        assert s <= a < b <= s + tile  # a non-empty part, inside the tile
        assert a == 0 or a - s >= overlap  # at least `overlap` from an inner edge
        assert b == length or s + tile - b >= overlap


def test_an_overlap_of_half_a_tile_is_refused():
    from edgekit.errors import UsageError

    with pytest.raises(UsageError, match="overlap"):
        tile_starts(100, 16, 8)


# -- generated fully convolutional SR nets --------------------------------------------------------
def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int) -> np.ndarray:
    """Zero-padded 'same' convolution of ``x`` (C, H, W) in float64, one multiply-add per tap and
    input channel in a fixed order: every output pixel is the same sequence of roundings whatever
    the image's size."""
    o, c, k, _ = w.shape
    p = dilation * (k - 1) // 2
    h, wd = x.shape[1:]
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    acc = np.repeat(b[:, None, None], h * wd, axis=1).reshape(o, h, wd)
    for dy in range(k):
        for dx in range(k):
            for ci in range(c):
                acc += w[:, ci, dy, dx][:, None, None] * xp[ci, dy * dilation:dy * dilation + h,
                                                           dx * dilation:dx * dilation + wd][None]
    return acc


class SRNet:
    """Convs (kernel, dilation, channels) with ReLUs between, the last to ``3 * s * s`` channels,
    then depth-to-space by ``s``. Receptive-field radius: the sum of ``dilation * (kernel - 1) / 2``."""

    def __init__(self, layers, scale: int, seed: int = 0, global_mean: bool = False):
        rng = np.random.default_rng(seed)
        self.scale, self.global_mean = scale, global_mean
        self.params = []
        c = 3
        for i, (k, d, out) in enumerate(layers):
            out = 3 * scale * scale if i == len(layers) - 1 else out
            w = rng.standard_normal((out, c, k, k)) / math.sqrt(c * k * k)
            self.params.append((w, rng.standard_normal(out) * 0.1, d))
            c = out
        self.radius = sum(d * (w.shape[2] - 1) // 2 for w, _, d in self.params)

    def __call__(self, x: np.ndarray) -> np.ndarray:  # (1, 3, H, W) -> (1, 3, sH, sW)
        y = x[0].astype(np.float64)
        for i, (w, b, d) in enumerate(self.params):
            y = _conv(y, w, b, d)
            if i < len(self.params) - 1:
                y = np.maximum(y, 0)
            if i == 0 and self.global_mean:  # a receptive field as wide as the image
                y = y + y.mean(axis=(1, 2), keepdims=True)
        s, (_, h, w) = self.scale, y.shape
        y = y.reshape(3, s, s, h, w).transpose(0, 3, 1, 4, 2).reshape(3, h * s, w * s)
        return y[None]

    def session(self, tile: tuple[int, int]):
        """A fixed-shape session of this net at ``tile`` (what an NPU artifact is)."""
        th, tw = tile
        s = self.scale
        return session_from_callable(lambda feed: {"y": self(feed["x"])},
                                     [TensorSpec("x", (1, 3, th, tw), "float64", "NCHW")],
                                     [TensorSpec("y", (1, 3, th * s, tw * s), "float64", "NCHW")])


NETS = {  # name: (layers, scale) — radii 2, 5, 4, 4
    "x2_two_convs": ([(3, 1, 6), (3, 1, 0)], 2),
    "x3_dilated": ([(5, 1, 6), (3, 2, 6), (3, 1, 0)], 3),
    "x1_wide_dilation": ([(3, 1, 4), (1, 1, 4), (3, 3, 0)], 1),
    "x2_four_convs": ([(3, 1, 8), (3, 1, 8), (3, 1, 8), (3, 1, 0)], 2),
}
RADII = {"x2_two_convs": 2, "x3_dilated": 5, "x1_wide_dilation": 4, "x2_four_convs": 4}


def _runner(net: SRNet, tile, overlap=None, policy="native") -> ImageRunner:
    session = net.session(tile)
    pre = Preprocess.for_input(session.inputs[0].shape, "float64", "NCHW", {"resize": policy}, "super-resolve")
    return ImageRunner(session, pre, overlap=overlap)


def _exact_mask(runner: ImageRunner, height: int, width: int, radius: int, scale: int) -> np.ndarray:
    """Output pixels whose receptive field (``radius``) lies inside the tile that contributes them,
    or crosses only the image's own edges: there, a tile computes what the whole image does."""
    grid = runner.plan(height, width).grid
    ok = np.zeros((height, width), bool)
    cy, cx = tile_cuts(grid.ys, height, grid.tile[0]), tile_cuts(grid.xs, width, grid.tile[1])
    for i, y0 in enumerate(grid.ys):
        for j, x0 in enumerate(grid.xs):
            ys, xs = np.arange(cy[i], cy[i + 1]), np.arange(cx[j], cx[j + 1])
            th, tw = grid.tile
            good_y = ((ys - radius >= y0) | (y0 == 0)) & ((ys + radius < y0 + th) | (y0 + th >= height))
            good_x = ((xs - radius >= x0) | (x0 == 0)) & ((xs + radius < x0 + tw) | (x0 + tw >= width))
            ok[np.ix_(ys, xs)] = good_y[:, None] & good_x[None, :]
    return ok.repeat(scale, 0).repeat(scale, 1)


@pytest.mark.parametrize("name", sorted(NETS))
def test_the_measured_receptive_radius_is_the_conv_stack_sum(name):
    net = SRNet(*NETS[name])
    assert net.radius == RADII[name]
    runner = _runner(net, (24, 28))
    plan = runner.plan(61, 83)
    assert plan.mode == "tiled" and plan.grid.overlap == net.radius and plan.radius_measured


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("size", [(61, 83), (40, 97), (24, 29)])
def test_tiles_equal_the_whole_image_exactly(name, size):
    net = SRNet(*NETS[name], seed=len(name))
    runner = _runner(net, (24, 28))
    x = np.random.default_rng(7).standard_normal((1, 3, *size))
    plan = runner.plan(*size)
    assert plan.mode == "tiled" and plan.note.startswith(f"tiled {plan.grid.shape[0]}x{plan.grid.shape[1]}")
    y = runner.run({"x": x})["y"]
    assert y.shape == (1, 3, size[0] * net.scale, size[1] * net.scale)
    assert_close(y, net(x), Bound.exact(), f"{name}: {plan.note}")


@pytest.mark.parametrize("name", sorted(NETS))
def test_with_less_overlap_only_pixels_within_the_receptive_field_of_a_seam_differ(name):
    net = SRNet(*NETS[name], seed=3)
    size = (61, 83)
    runner = _runner(net, (24, 28), overlap=net.radius - 1)
    plan = runner.plan(*size)
    assert plan.grid.overlap == net.radius - 1 and not plan.radius_measured
    x = np.random.default_rng(8).standard_normal((1, 3, *size))
    y, whole = runner.run({"x": x})["y"], net(x)
    exact = _exact_mask(runner, *size, net.radius, net.scale)
    assert_close(y[..., exact], whole[..., exact], Bound.exact(), "away from the seams")
    assert (~exact).any() and not np.array_equal(y[..., ~exact], whole[..., ~exact])  # too little overlap shows


def test_an_image_smaller_than_a_tile_is_exact_away_from_its_padded_edges():
    net = SRNet(*NETS["x2_two_convs"])
    runner = _runner(net, (24, 28))
    x = np.random.default_rng(9).standard_normal((1, 3, 15, 50))  # shorter than a tile, wider than two
    plan = runner.plan(15, 50)
    assert plan.mode == "tiled" and plan.grid.padded and "padded" in plan.note
    y, whole = runner.run({"x": x})["y"], net(x)
    keep = (15 - net.radius) * net.scale  # rows at least the radius above the padded bottom edge
    assert_close(y[..., :keep, :], whole[..., :keep, :], Bound.exact(), "above the padded edge")


def test_a_receptive_field_as_wide_as_the_image_falls_back_to_crop():
    net = SRNet(*NETS["x2_two_convs"], global_mean=True)
    runner = _runner(net, (24, 28))
    plan = runner.plan(61, 83)
    assert plan.mode == "crop" and "receptive field spans" in plan.reason and plan.runs_at == (24, 28)
    img = np.random.default_rng(1).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    x, notes = runner.to_tensor(img)
    assert x.shape == (1, 3, 24, 28) and notes[0].startswith("cannot run 83x61 at its own size")
    assert runner.run({"x": x})["y"].shape == (1, 3, 48, 56)


def test_policies_that_do_not_keep_the_size_run_once_at_the_model_size():
    net = SRNet(*NETS["x2_two_convs"])
    runner = _runner(net, (24, 28), policy="stretch")
    img = np.random.default_rng(1).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    x, notes = runner.to_tensor(img)
    assert x.shape == (1, 3, 24, 28) and runner.plan(61, 83).mode == "stretch" and "resize to 28x24" in notes[0]
    runner.run({"x": x})
    assert runner.last_plan.mode == "stretch" and net.session((24, 28)).inputs[0].shape == (1, 3, 24, 28)


# -- a converted bundle: ImageRunner, `edgekit run` and the demo ----------------------------------
TILE = 128


@pytest.fixture(scope="module")
def sr_bundle(tmp_path_factory):
    """A tiny SR net (conv 3x3 → ReLU → conv 3x3 → pixel shuffle x2: receptive-field radius 2)
    converted to ONNX and TFLite at 1x3x128x128 by edgekit.convert."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("litert_torch")
    import edgekit

    class TinySR(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 12, 3, padding=1)

        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(self.c2(torch.relu(self.c1(x))), 2)

    torch.manual_seed(0)
    model = TinySR().eval()
    out = tmp_path_factory.mktemp("sr") / "sr_bundle"
    result = edgekit.convert(model, formats="onnx,tflite", out=out, input_shapes=[(1, 3, TILE, TILE)],
                             task="super-resolve", bench_runs=0)
    assert result.ok, [a.to_dict() for a in result.artifacts]
    return out, model


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A shipped photo at 640x480 (area resize), as an array and a PNG."""
    from edgekit.assets import load_photo
    from edgekit.imageio import write_image
    from edgekit.preprocess import resize

    img = resize(load_photo("coffee"), 480, 640)
    return img, write_image(tmp_path_factory.mktemp("photo") / "photo.png", img)


def _whole(model, img: np.ndarray) -> np.ndarray:
    """The torch source on the whole image: the [0, 1] float NCHW tensor of the spec."""
    return (img.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1)[None].copy()


@pytest.mark.parametrize("backend", ["litert", "onnxruntime"])
def test_a_640x480_photo_comes_back_at_1280x960_equal_to_the_whole_image(sr_bundle, photo, backend):
    import edgekit

    folder, model = sr_bundle
    img, _ = photo
    with edgekit.load(folder, backend=backend, threads=THREADS) as session:
        assert session.inputs[0].shape == (1, 3, TILE, TILE) and not session.resizable((1, 3, 480, 640))
        runner = ImageRunner.for_session(session, session.manifest.preprocess, session.manifest.task)
        x, notes = runner.to_tensor(img)
        assert x.shape == (1, 3, 480, 640)
        assert notes[0] == "tiled 6x4: 128x128 tiles overlapping by 2 px (the receptive-field radius, measured)"
        y = runner.run({session.inputs[0].name: x})
    (out,) = y.values()
    assert out.shape == (1, 3, 960, 1280)
    assert_matches(out, model, _whole(model, img), what=f"{backend} tiled 6x4 vs torch on the whole photo")


def test_edgekit_run_says_it_tiled_and_writes_1280x960(sr_bundle, photo, tmp_path):
    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.imageio import read_image

    folder, model = sr_bundle
    img, png = photo
    out = tmp_path / "hr.png"
    r = CliRunner().invoke(app, ["run", str(folder), "--input", str(png), "--output", str(out), "--json",
                                 "--threads", str(THREADS)])
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["spatial"]["mode"] == "tiled" and s["spatial"]["tiles"] == [6, 4] and s["spatial"]["overlap"] == 2
    assert s["spatial"]["image"] == [640, 480] and s["spatial"]["model_input"] == [128, 128]
    assert s["input_notes"][0].startswith("tiled 6x4") and s["outputs"][0]["shape"] == [1, 3, 960, 1280]
    hr = read_image(out)
    assert hr.shape == (960, 1280, 3)
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(_whole(model, img)))[0].numpy().transpose(1, 2, 0)
    assert_close(hr, np.clip(np.rint(ref * 255), 0, 255), Bound.quantised(1, "uint8 pixels"), "edgekit run png")
    human = CliRunner().invoke(app, ["run", str(folder), "--input", str(png), "--output", str(tmp_path / "h.png")])
    assert human.exit_code == 0 and "tiled 6x4" in human.stdout


def test_the_demo_upscales_frames_at_their_own_size_and_says_how(sr_bundle, photo, tmp_path):
    pytest.importorskip("cv2")
    import edgekit
    from edgekit.apps.camera.app import DemoOptions, run_demo
    from edgekit.apps.camera.tasks import make_task
    from edgekit.imageio import read_image

    folder, model = sr_bundle
    img, _ = photo
    # the task on one 640x480 frame: the model view is the torch source on the whole frame
    with edgekit.load(folder, threads=THREADS) as session:
        task = make_task("upscale", session)
        assert task.output_size((640, 480)) == (1280, 960)
        assert task.spatial_line() == "tiled 6x4, overlap 2 (128x128 model)"
        frame = np.ascontiguousarray(img[:, :, ::-1])  # BGR
        job = task.prepare(frame)
        view = task.render(frame, job, task.model.run(job.feed), "model").image
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(_whole(model, img)))[0].numpy().transpose(1, 2, 0)[:, :, ::-1]
    # the demo's blob is the spec's multiply-add rounded once more in float32: one level at most
    assert_close(view[:900], np.clip(np.rint(ref * 255), 0, 255)[:900], Bound.quantised(1, "uint8 pixels"),
                 "demo model view (above its corner label)")

    # the whole demo, headless: a 640x480 virtual camera, and its default frame size
    snap = tmp_path / "snap.png"
    result = run_demo(DemoOptions(task="upscale", model=str(folder), size=(640, 480), headless=True, frames=2,
                                  no_record=True, snapshot=snap, threads=THREADS), log=lambda m: None)
    s = result.summary
    assert s["output_size"] == [1280, 960] and s["frame_size"] == [640, 480]
    assert s["spatial"]["mode"] == "tiled" and s["spatial"]["tiles"] == [6, 4] and s["spatial"]["overlap"] == 2
    assert read_image(snap).shape == (960, 1280, 3)
    default = run_demo(DemoOptions(task="upscale", model=str(folder), headless=True, frames=2, no_record=True,
                                   threads=THREADS), log=lambda m: None).summary
    assert default["frame_size"] == [320, 240] and default["output_size"] == [640, 480]
    assert default["spatial"]["tiles"] == [3, 2]
