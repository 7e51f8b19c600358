"""The web app against native edgekit, same machine, same run.

For the shipped quicksrnet_small_x2 bundle (240x320 -> 480x640) and MobileNetV2 (224x224, the zoo
model converted into the demo's cache on first use, untrained weights: the timing is the same):

1. Inference p50 in the browser (headless Debian Chromium, the page built by ``edgekit app web``
   and served with COOP/COEP): onnxruntime-web WASM with 2 threads and LiteRT.js WASM (XNNPACK)
   with 2 threads, timed around the runtime's run call on the page's own pre-processed input
   (``edgekit.bench``, no camera running); native: ``edgekit.load(model.onnx / model.tflite,
   threads=2)`` on the same tensor.
2. The live page: the fake camera (a 640x480 Y4M clip of a shipped photo) through the whole
   page (grab, pre-processing, inference, drawing, overlay); FPS, inference and end-to-end p50
   over the same frames, and FPS x inference p50 (1.0: the page adds nothing to the model's own time; the page runs one
   frame at a time, so everything else is on top of inference).
3. ``docs/web.png``: a screenshot of the SR page (phone-sized viewport) with the live overlay.

Writes ``benchmarks/results/web.json``. The machine may be shared: the load average at start and
end is recorded next to the numbers.

    python benchmarks/web.py               # ~2-3 min on 2 cores
    python benchmarks/web.py --runs 10 --frames 15 --no-screenshot
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results") / "web.json"
SCREENSHOT = REPO / "docs" / "web.png"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
BACKENDS = {"ort-wasm": "onnx", "litert-wasm": "tflite"}
THREADS = 2


def photo_y4m(path: Path, frames: int = 60, size=(640, 480)) -> Path:
    """A clip panning over a shipped photo, 4:2:0 ``C420jpeg`` (full-range BT.601)."""
    from edgekit.assets import load_photo
    from edgekit.preprocess import resize

    w, h = size
    photo = load_photo("coffee").astype(np.float64)
    ph, pw = photo.shape[:2]
    k = max(h / ph, (w + frames * 2) / pw)
    big = resize(photo.astype(np.uint8), int(ph * k + 1), int(pw * k + 1)).astype(np.float64)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            rgb = big[:h, 2 * i:2 * i + w]
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
            planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, sub(u), sub(v))]
            f.write(b"FRAME\n" + b"".join(p.tobytes() for p in planes))
    return path


def native_p50(model: Path, x: np.ndarray, runs: int) -> tuple[float, str]:
    import edgekit

    with edgekit.load(model, threads=THREADS) as s:
        feed = {s.inputs[0].name: x}
        for _ in range(3):
            s.run(feed)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            s.run(feed)
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), f"{s.placement.backend}/{s.placement.accelerator}"


def serve(folder: Path):
    from edgekit.webapp import make_server

    server = make_server(folder, 0, "127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://localhost:{server.server_address[1]}/"


def measure(browser, name: str, bundle: Path, tmp: Path, runs: int, frames: int, shot: Path | None) -> list[dict]:
    from edgekit.webapp import build

    app = build(bundle, tmp / f"web-{name}").out
    server, url = serve(app)
    rows = []
    try:
        for backend, fmt in BACKENDS.items():
            page = browser.new_page(viewport={"width": 412, "height": 520} if shot else None)
            page.goto(f"{url}?backend={backend}&threads={THREADS}&camera=0")
            page.wait_for_function("() => window.edgekit && edgekit.stats().label !== null", timeout=120000)
            # the page's own pre-processing of a fixed frame, then timed runs of the runtime
            from edgekit.assets import load_photo
            img = np.ascontiguousarray(load_photo("coffee")[:480, :640])
            data = base64.b64encode(img.tobytes()).decode()
            r = page.evaluate("([d, h, w]) => edgekit.infer(d, h, w)", [data, *img.shape[:2]])
            x = np.frombuffer(base64.b64decode(r["input"]["data"]), np.float32).reshape(r["input"]["shape"]).copy()
            page.evaluate("([d, h, w]) => edgekit.bench(d, h, w, 3)", [data, *img.shape[:2]])  # warm-up
            times = page.evaluate("([d, h, w, n]) => edgekit.bench(d, h, w, n)", [data, *img.shape[:2], runs])
            label = page.evaluate("edgekit.stats().label")
            page.close()
            native, placement = native_p50(bundle / f"model.{fmt}", x, runs)
            # the live page on the fake camera
            page = browser.new_page(viewport={"width": 412, "height": 520} if shot else None)
            page.goto(f"{url}?backend={backend}&threads={THREADS}")
            page.wait_for_function(f"() => window.edgekit && (edgekit.stats().frames >= {frames} || "
                                   "edgekit.stats().message !== null)", timeout=300000)
            live = page.evaluate("edgekit.stats()")
            if shot is not None and backend == "ort-wasm":
                page.screenshot(path=str(shot))
            page.close()
            p50 = statistics.median(times)
            row = {"model": name, "backend": backend, "runtime": label, "browser_inference_ms_p50": round(p50, 2),
                   "native_inference_ms_p50": round(native, 2), "native": placement,
                   "browser_over_native": round(p50 / native, 2), "page_fps": round(live["fpsWindow"], 2),
                   "page_inference_ms_p50": round(live["inferP50"], 2), "page_e2e_ms_p50": round(live["e2eP50"], 2),
                   "page_fps_x_inference_p50": round(live["fpsWindow"] * live["inferP50"] / 1e3, 3),
                   "page_frames": live["frames"], "page_message": live["message"]}
            rows.append(row)
            print(f"  {name:20s} {backend:12s} browser p50 {p50:7.1f} ms  native {native:6.1f} ms ({placement})  "
                  f"page {live['fpsWindow']:.1f} FPS, e2e p50 {live['e2eP50']:.0f} ms, FPS x p50 "
                  f"{row['page_fps_x_inference_p50']}", file=sys.stderr)
    finally:
        server.shutdown()
        server.server_close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="timed runs per backend (browser and native)")
    ap.add_argument("--frames", type=int, default=30, help="camera frames through the live page")
    ap.add_argument("--no-screenshot", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    from edgekit.apps.camera.models import resolve_model

    load_start = os.getloadavg()
    models = {"quicksrnet_small_x2": REPO / "apps" / "camera" / "default_bundle",
              "mobilenet_v2": resolve_model("mobilenet_v2", "classify").path}
    with tempfile.TemporaryDirectory() as tmp_name, sync_playwright() as p:
        tmp = Path(tmp_name)
        clip = photo_y4m(tmp / "camera.y4m")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, f"--use-file-for-fake-video-capture={clip}"])
        rows = []
        for name, bundle in models.items():
            shot = SCREENSHOT if (name == "quicksrnet_small_x2" and not args.no_screenshot) else None
            rows += measure(browser, name, bundle, tmp, args.runs, args.frames, shot)
        version = browser.version
        browser.close()
    report = {"benchmark": "web", "host": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
              "browser": f"Chromium {version} (headless)", "threads": THREADS, "runs": args.runs,
              "load_average_start": load_start, "load_average_end": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}" + ("" if args.no_screenshot else f" and {SCREENSHOT}"), file=sys.stderr)


if __name__ == "__main__":
    main()
