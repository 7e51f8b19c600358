"""The web app in a real Chromium: the page's pre-processing is edgekit.preprocess's, its model
outputs are edgekit.load's on the same pixels, camera frames flow (at most one in flight) with
WebAssembly threads under COOP/COEP, the overlay names the backend, a refused or absent camera
gives the message, nothing is fetched from outside the app, no horizontal scroll on a phone."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import numpy as np
import pytest
from web_helpers import CHROMIUM, CHROMIUM_ARGS, open_app
from numeric import Bound, assert_close, fp32_bound

import tiny_models

BACKENDS = {"ort-wasm": ("onnx", "onnxruntime-web wasm EP"), "litert-wasm": ("tflite", "LiteRT.js wasm")}


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def decode(t: dict) -> np.ndarray:
    dtype = {"Float32Array": np.float32, "Uint8Array": np.uint8, "Int8Array": np.int8,
             "Int32Array": np.int32}[t["dtype"]]
    return np.frombuffer(base64.b64decode(t["data"]), dtype).reshape(t["shape"]).copy()


def frame(h: int = 150, w: int = 200) -> np.ndarray:
    """A fixed RGB frame: a crop of a shipped photo (real edges and colours)."""
    from edgekit.assets import load_photo

    photo = load_photo("coffee")
    return np.ascontiguousarray(photo[:h, :w])


@pytest.fixture
def no_opencv(monkeypatch):
    """The reference path of edgekit.preprocess (NumPy); OpenCV's fixed point may differ by a level."""
    monkeypatch.setitem(sys.modules, "cv2", None)


def python_tensor(bundle: Path, fmt: str, img: np.ndarray) -> np.ndarray:
    from edgekit.bundle import read_manifest
    from edgekit.preprocess import Preprocess

    m = read_manifest(bundle)
    t = m.artifact_for(fmt).inputs[0]
    return Preprocess.for_input(t.shape, t.dtype, t.layout, m.preprocess, m.task).to_tensor(img)[0]


# -- the page's pre-processing is edgekit.preprocess ------------------------------------------------------
SPECS = [  # (shape, dtype, layout, preprocess, task, image (h, w))
    ((1, 3, 32, 32), "float32", "NCHW", {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "classify",
     (150, 200)),
    ((1, 48, 64, 3), "float32", "NHWC", {"color_order": "BGR", "value_range": [-1, 1]}, "super-resolve", (97, 151)),
    ((1, 3, 40, 60), "uint8", "NCHW", {"resize": "stretch"}, "other", (30, 45)),  # bilinear upscale
    ((1, 56, 56, 1), "int8", "NHWC", {"resize": "pad"}, "classify", (120, 77)),  # grey, letterbox
    ((1, 3, 64, 64), "float32", "NCHW", {"folded": True, "input_value_range": [0, 255]}, "classify", (64, 64)),
]


@pytest.mark.numeric
def test_preprocess_js_is_edgekit_preprocess(servers, browser, no_opencv):
    """Every step of static/preprocess.js against edgekit.preprocess on real pixels: crop + area,
    colour order and value range, stretch + bilinear upscale, uint8, luma + pad + int8, folded."""
    from edgekit.preprocess import Preprocess

    page = open_app(browser, servers["sr"].url, "camera=0")
    try:
        rng = np.random.default_rng(0)
        for shape, dtype, layout, pre, task, (h, w) in SPECS:
            img = frame(h, w) if h <= 150 else rng.integers(0, 256, (h, w, 3), np.uint8)
            expected = Preprocess.for_input(shape, dtype, layout, pre, task).to_tensor(img)[0]
            got = page.evaluate(
                """([shape, dtype, layout, pre, task, img, h, w]) => {
                  const bin = atob(img); const rgb = Uint8Array.from(bin, (c) => c.charCodeAt(0));
                  const spec = edgekit.pre.specFor(shape, dtype, layout, pre, task);
                  const x = edgekit.pre.toTensor(spec, rgb, h, w);
                  const bytes = new Uint8Array(x.data.buffer);
                  let s = ""; for (const b of bytes) s += String.fromCharCode(b);
                  return {dtype: x.data.constructor.name, data: btoa(s), shape: x.shape};
                }""", [list(shape), dtype, layout, pre, task, b64(img), h, w])
            actual = decode(got)
            assert actual.shape == expected.shape, (shape, actual.shape, expected.shape)
            assert actual.dtype == expected.dtype, (shape, actual.dtype)
            assert_close(actual, expected, Bound.exact("the same arithmetic in float64, cast once"), f"{shape} {pre}")
        # from_tensor: an image output back to pixels
        out = rng.uniform(-0.2, 1.2, (1, 3, 20, 30)).astype(np.float32)
        expected = Preprocess.for_output({"value_range": [0, 1], "color_order": "BGR"}).from_tensor(out)
        rgba = page.evaluate(
            """([data, shape]) => {
              const bin = atob(data); const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
              const r = edgekit.pre.fromTensor({outputRange: [0, 1], outputColorOrder: "BGR"},
                                               new Float32Array(bytes.buffer), shape, "NCHW");
              return Array.from(r.rgba);
            }""", [b64(out), list(out.shape)])
        got = np.asarray(rgba, np.uint8).reshape(20, 30, 4)[:, :, :3]
        assert_close(got, expected, Bound.exact("from_tensor: the same rounding"), "from_tensor")
    finally:
        page.close()


# -- the page runs the bundle as edgekit.load does -----------------------------------------------------------
@pytest.mark.numeric
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("name", ["sr", "cls"])
def test_page_matches_edgekit_load(name, backend, tiny_bundles, servers, browser, no_opencv):
    import edgekit

    fmt, label = BACKENDS[backend]
    bundle = tiny_bundles[name]
    page = open_app(browser, servers[name].url, f"backend={backend}", frames=3)
    try:
        stats = page.evaluate("edgekit.stats()")
        assert stats["message"] is None and stats["error"] is None, stats
        assert stats["backend"] == backend and stats["frames"] >= 3, stats
        assert stats["crossOriginIsolated"] and stats["threads"] > 1, stats  # WASM threads under COOP/COEP
        overlay = page.inner_text("#overlay")
        assert label in overlay and f"{stats['threads']} threads" in overlay and "inference p50" in overlay, overlay
        if name == "cls":
            assert page.locator("#top5 li").count() == 5
            assert any(lbl in page.inner_text("#top5") for lbl in tiny_models.LABELS)

        img = frame()
        r = page.evaluate("([d, h, w]) => edgekit.infer(d, h, w)", [b64(img), *img.shape[:2]])
        x = decode(r["input"])
        assert_close(x, python_tensor(bundle, fmt, img), Bound.exact("edgekit.preprocess in JavaScript"),
                     "page input tensor")
        y_page = decode(r["outputs"][0])
        with edgekit.load(bundle / f"model.{fmt}", threads=1) as s:
            y_ref = next(iter(s.run({s.inputs[0].name: x}).values()))
        model = tiny_models.tiny_sr() if name == "sr" else tiny_models.tiny_classifier()
        bound = fp32_bound(model, x)
        assert_close(y_page, y_ref, bound, f"{backend} output vs edgekit.load")
        assert not page.errors, page.errors
        origin = servers[name].url
        assert all(u.startswith(origin) or u.startswith(("data:", "blob:")) for u in page.requests), \
            [u for u in page.requests if not u.startswith(origin)]
    finally:
        page.close()


@pytest.mark.numeric
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_video_decoder_page_matches_edgekit_load(backend, tiny_bundles, servers, browser):
    """decode-video: the page plays decoded latents (no camera) and shows every frame; its output
    for a given latent is edgekit.load's."""
    import edgekit

    fmt, label = BACKENDS[backend]
    page = open_app(browser, servers["vd"].url, f"backend={backend}", frames=3)
    try:
        stats = page.evaluate("edgekit.stats()")
        assert stats["message"] is None and stats["error"] is None and stats["task"] == "decode-video", stats
        assert label in page.inner_text("#overlay")
        n, c, t, h, w = tiny_models.LATENT_SHAPE
        assert page.evaluate("[view.width, view.height]") == [t * 2 * w, 2 * h]  # T frames side by side
        z = np.random.default_rng(3).standard_normal(tiny_models.LATENT_SHAPE).astype(np.float32)
        y_page = decode(page.evaluate("([d, s]) => edgekit.run(d, s)", [b64(z), list(z.shape)])[0])
        with edgekit.load(tiny_bundles["vd"] / f"model.{fmt}", threads=1) as s:
            y_ref = next(iter(s.run({s.inputs[0].name: z}).values()))
        assert_close(y_page, y_ref, fp32_bound(tiny_models.tiny_video_decoder(), z), f"{backend} decoder output")
        assert not page.errors, page.errors
    finally:
        page.close()


def test_without_coop_coep_there_is_one_thread(web_apps, browser):
    """The same folder from a server without the isolation headers: the page is not cross-origin
    isolated, both runtimes fall back to one thread and the overlay says so (what `app serve`'s
    headers are for)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler,
                                                                      directory=str(web_apps["sr"])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://localhost:{server.server_address[1]}/"
        for backend in BACKENDS:
            page = open_app(browser, url, f"backend={backend}&camera=0")
            stats = page.evaluate("edgekit.stats()")
            assert stats["crossOriginIsolated"] is False and stats["threads"] == 1, stats
            assert "1 thread" in page.inner_text("#overlay")
            page.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("backend", ["litert-wasm", "ort-wasm"])
def test_one_frame_in_flight_and_phone_layout(backend, servers, browser):
    """A phone-sized viewport: no horizontal scroll; never more than one inference in flight (the
    page prepares the next frame meanwhile, but does not start it)."""
    page = open_app(browser, servers["sr"].url, f"backend={backend}", viewport={"width": 390, "height": 844},
                    frames=4)
    try:
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
            page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        page.evaluate("""() => { const s = edgekit.state, run = s.runner.run.bind(s.runner);
            window.__inflight = 0; window.__maxInflight = 0;
            s.runner.run = async (...a) => { __inflight++; __maxInflight = Math.max(__maxInflight, __inflight);
              try { return await run(...a); } finally { __inflight--; } }; }""")
        n = page.evaluate("edgekit.stats().frames")
        page.wait_for_function(f"() => edgekit.stats().frames >= {n + 4}", timeout=30000)
        assert page.evaluate("__maxInflight") == 1
        assert page.evaluate("edgekit.stats().fps") > 0
    finally:
        page.close()


def test_camera_is_the_back_one_and_switches(servers, browser):
    """The page asks for the back camera (facingMode environment) and the button switches to the
    front one and back."""
    page = browser.new_page()
    try:
        page.add_init_script("""(() => { const md = navigator.mediaDevices, get = md.getUserMedia.bind(md);
            window.__asked = []; md.getUserMedia = (c) => { __asked.push(c.video.facingMode.ideal); return get(c); }; })()""")
        page.goto(servers["cls"].url)
        page.wait_for_function("() => window.edgekit && edgekit.stats().frames >= 1", timeout=60000)
        page.click("#flip")
        page.wait_for_function("() => __asked.length >= 2", timeout=10000)
        page.click("#flip")
        page.wait_for_function("() => __asked.length >= 3", timeout=10000)
        assert page.evaluate("__asked") == ["environment", "user", "environment"]
        page.wait_for_function("() => edgekit.stats().frames >= 3", timeout=60000)  # frames still flow
    finally:
        page.close()


def test_file_picker_and_backend_switch(servers, browser, tmp_path):
    """A picked image is the source when there is no camera; the backend switch reloads the page
    on the other runtime, which then says so in the overlay."""
    import cv2

    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(frame(), cv2.COLOR_RGB2BGR))
    page = open_app(browser, servers["cls"].url, "camera=0")
    try:
        assert page.evaluate("edgekit.stats().backend") == "ort-wasm"
        page.set_input_files("#file", str(path))
        page.wait_for_function("() => edgekit.stats().frames >= 1", timeout=30000)
        assert page.locator("#top5 li").count() == 5
        with page.expect_navigation():
            page.select_option("#backend", "litert-wasm")
        page.wait_for_function("() => window.edgekit && edgekit.stats().label !== null", timeout=30000)
        assert "LiteRT.js" in page.inner_text("#overlay")
    finally:
        page.close()


def test_int8_bundle_runs_on_onnx_and_says_why(need_browser, browser, tmp_path_factory):
    """An int8 bundle from edgekit.convert: its TFLite file is int8 inside and at its inputs, which
    LiteRT.js refuses to compile, so `app web` ships the ONNX (QDQ) artifact, says so in one line,
    and the page runs it and offers no LiteRT.js backend."""
    import edgekit
    from edgekit.webapp import build
    from web_helpers import Server

    root = tmp_path_factory.mktemp("int8")
    bundle = root / "bundle"
    edgekit.convert(tiny_models.tiny_classifier(), "onnx,tflite", bundle, input_shapes=[tiny_models.CLS_SHAPE],
                    task="classify", mean=tiny_models.CLS_MEAN, std=tiny_models.CLS_STD, precision="int8",
                    bench_runs=0, verify=False)
    result = build(bundle, root / "web")
    assert result.formats == ["onnx"], result
    assert len(result.notes) == 1 and "model.tflite has int8" in result.notes[0] and "model.onnx" in result.notes[0]
    server = Server(result.out)
    try:
        page = open_app(browser, server.url, "", frames=3)
        stats = page.evaluate("edgekit.stats()")
        assert stats["message"] is None and stats["backend"] == "ort-wasm", stats
        assert "litert-wasm" not in page.evaluate("Array.from(document.querySelectorAll('#backend option'), o => o.value)")
        assert page.locator("#top5 li").count() == 5
        page.close()
    finally:
        server.close()


@pytest.mark.parametrize("case", ["refused", "absent"])
def test_camera_refused_or_absent_says_so(case, servers, playwright_session):
    extra = ["--deny-permission-prompts", "--use-fake-device-for-media-stream"] if case == "refused" \
        else ["--use-fake-ui-for-media-stream"]  # no fake device: this machine has no camera
    b = playwright_session.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra])
    try:
        page = b.new_page()
        page.goto(servers["cls"].url)
        page.wait_for_function("() => window.edgekit && edgekit.stats().message !== null", timeout=30000)
        text = page.inner_text("#message")
        assert page.is_visible("#message")
        assert ("refused" in text) if case == "refused" else ("No camera" in text), text
        assert "file" in text  # and says what to do instead
    finally:
        b.close()


def test_webgpu_on_swiftshader():
    pytest.skip("WebGPU on SwiftShader is not stable here: Chromium offers an adapter and a manual run of the tiny "
                "SR model on onnxruntime-web's webgpu EP took 2 s a frame, but the same run under pytest hung past "
                "5 minutes twice, and a 240x320 SR model did not finish a frame within 60 s (docs/web.md)")


@pytest.mark.slow
@pytest.mark.numeric
def test_default_sr_bundle_in_the_browser(playwright_session, browser, tmp_path, no_opencv):
    """The shipped quicksrnet_small_x2 bundle, built and served as a user would: camera frames run
    on ORT-web WASM and its output for a fixed frame is edgekit.load's (a-priori fp32 bound: its
    longest conv reduction and conv depth read from the ONNX graph)."""
    import onnx

    import edgekit
    from web_helpers import REPO, Server
    from edgekit.webapp import build

    bundle = REPO / "apps" / "camera" / "default_bundle"
    out = build(bundle, tmp_path / "web").out
    server = Server(out)
    try:
        page = open_app(browser, server.url, "backend=ort-wasm", frames=3)
        stats = page.evaluate("edgekit.stats()")
        assert stats["message"] is None and stats["threads"] > 1, stats
        img = frame(240, 320)
        r = page.evaluate("([d, h, w]) => edgekit.infer(d, h, w)", [b64(img), 240, 320])
        x = decode(r["input"])
        assert_close(x, python_tensor(bundle, "onnx", img), Bound.exact("edgekit.preprocess in JavaScript"), "input")
        with edgekit.load(bundle / "model.onnx", threads=1) as s:
            y_ref = next(iter(s.run({s.inputs[0].name: x}).values()))
        graph = onnx.load(str(bundle / "model.onnx")).graph
        weights = {t.name: t.dims for t in graph.initializer}
        convs = [n for n in graph.node if n.op_type == "Conv"]
        longest = max(int(np.prod(weights[n.input[1]][1:])) for n in convs)
        bound = Bound.roundoff(float(np.abs(y_ref).max()), longest, len(convs))
        assert_close(decode(r["outputs"][0]), y_ref, bound, "quicksrnet_small_x2 on ORT-web vs edgekit.load")
        page.close()
    finally:
        server.close()
