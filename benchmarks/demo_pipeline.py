"""Benchmark and soak of the camera demo pipeline (``edgekit demo``), headless.

1. Efficiency = FPS × inference p50 (1.0: the pipeline adds nothing to the model's own time;
   capture, pre-processing, rendering and recording all overlap with inference) and model busy
   = FPS × mean inference (the fraction of wall time the model runs; FPS × p50 is pulled
   below it when inference times have a long tail, as on a shared CPU), on a 320x240
   clip for ``upscale`` (the shipped quicksrnet_small_x2 bundle, each backend) and ``classify``
   (zoo mobilenet_v2 at 224x224, converted into the cache on first use), recording to MP4 as
   ``edgekit demo ... --record`` does, 2 inference threads.
2. Live latency: the virtual camera paced like a 30 fps camera and like a 200 fps one
   (model-bound), with and without the just-in-time pre-fetch: end-to-end p50, dropped frames.
3. Soak: 5,000 frames of the virtual camera through the whole demo (render, overlay, MP4
   recording), RSS sampled every 250 frames; growth = last sample − sample at frame 500.

Writes ``benchmarks/results/demo_pipeline.json``. The machine this ran on may be shared:
the load average at start and end is recorded next to the numbers.

    python benchmarks/demo_pipeline.py                 # everything (~5-10 min on 2 cores)
    python benchmarks/demo_pipeline.py --quick         # 1 repeat, 1,000-frame soak
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results") / "demo_pipeline.json"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_clip(path: Path, frames: int, size=(320, 240)) -> Path:
    """A 320x240 clip cut from the virtual camera (photos, motion, noise), mp4v."""
    import cv2

    from edgekit.apps.camera.sources import VirtualCamera

    cam = VirtualCamera(size, seed=7)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for i in range(frames):
        w.write(cam.frame_at(i + 40))
    w.release()
    return path


class SampledSource:
    """Wraps a source; samples RSS every ``every`` frames from the capture thread."""

    def __init__(self, inner, every: int = 250):
        self.inner, self.every, self.samples = inner, every, []
        self.live, self.fps, self.name, self.size = inner.live, inner.fps, inner.name, inner.size
        self.n = 0

    def read(self):
        frame = self.inner.read()
        if frame is not None and self.n % self.every == 0:
            self.samples.append((self.n, round(rss_mb(), 2)))
        self.n += 1
        return frame

    def close(self):
        self.inner.close()


def run(opts, source=None) -> dict:
    from edgekit.apps.camera.app import run_demo

    return run_demo(opts, source=source, log=lambda m: None).summary


SR_MODEL: str | None = None  # --sr-model: another upscaler than the shipped bundle


def efficiency(tmp: Path, repeats: int, clip_frames: int) -> list[dict]:
    from edgekit.apps.camera.app import DemoOptions

    clip = write_clip(tmp / "clip320x240.mp4", clip_frames)
    rows = []
    configs = [("upscale", SR_MODEL, "litert"), ("upscale", SR_MODEL, "onnxruntime"),
               ("classify", "mobilenet_v2", "litert"), ("classify", "mobilenet_v2", "onnxruntime")]
    for task, model, backend in configs:
        runs = []
        for r in range(repeats):
            s = run(DemoOptions(task=task, model=model, source=str(clip), headless=True, threads=2, backend=backend,
                                record=tmp / f"{task}-{backend}-{r}.mp4"))
            runs.append(s)
        effs = [s["efficiency"] for s in runs]
        best = runs[effs.index(statistics.median(effs))] if repeats % 2 else runs[0]
        rows.append({"task": task, "model": runs[0]["model"], "backend": backend, "accelerator": runs[0]["accelerator"],
                     "frames": runs[0]["frames"], "efficiency_runs": effs, "efficiency_median": statistics.median(effs),
                     "model_busy_runs": [s["model_busy"] for s in runs],
                     "fps_runs": [s["fps"] for s in runs], "inference_ms_p50_runs": [s["inference_ms_p50"] for s in runs],
                     "e2e_ms_p50": best["e2e_ms_p50"], "stages_ms_p50": best["stages_ms_p50"],
                     "dropped_frames": best["dropped_frames"], "output_size": best["output_size"]})
        print(f"  {task:8s} {backend:11s} efficiency {effs}  model busy {[s['model_busy'] for s in runs]}  "
              f"fps {[s['fps'] for s in runs]}  "
              f"inference p50 {[s['inference_ms_p50'] for s in runs]} ms", file=sys.stderr)
    return rows


def live_latency(frames: int) -> list[dict]:
    from edgekit.apps.camera.app import DemoOptions
    from edgekit.apps.camera.sources import VirtualCamera

    rows = []
    for fps in (30.0, 200.0):
        for jit in (True, False):
            cam = VirtualCamera((320, 240), fps=fps, live=True, frames=frames)
            s = run(DemoOptions(task="upscale", model=SR_MODEL, headless=True, no_record=True, threads=2,
                                just_in_time=jit), source=cam)
            rows.append({"camera_fps": fps, "just_in_time": jit, **{k: s[k] for k in (
                "frames", "fps", "inference_ms_p50", "e2e_ms_p50", "capture_fps", "dropped_frames", "efficiency")}})
            print(f"  live {fps:5.0f} fps jit={jit!s:5}  e2e p50 {s['e2e_ms_p50']} ms  fps {s['fps']}  "
                  f"dropped {s['dropped_frames']}  efficiency {s['efficiency']}", file=sys.stderr)
    return rows


def soak(tmp: Path, frames: int) -> dict:
    from edgekit.apps.camera.app import DemoOptions
    from edgekit.apps.camera.sources import VirtualCamera

    src = SampledSource(VirtualCamera((320, 240), frames=frames, live=False))
    t0 = time.perf_counter()
    s = run(DemoOptions(task="upscale", model=SR_MODEL, headless=True, threads=2, record=tmp / "soak.mp4"), source=src)
    wall = time.perf_counter() - t0
    samples = src.samples
    base = next((mb for n, mb in samples if n >= 500), samples[0][1])
    growth = samples[-1][1] - base
    print(f"  soak {s['frames']} frames in {wall:.0f} s: RSS {samples[0][1]} → {samples[-1][1]} MB "
          f"(growth after frame 500: {growth:+.2f} MB)", file=sys.stderr)
    return {"frames": s["frames"], "wall_s": round(wall, 1), "fps": s["fps"], "inference_ms_p50": s["inference_ms_p50"],
            "efficiency": s["efficiency"], "rss_mb_samples": samples, "rss_growth_mb_after_500": round(growth, 2),
            "recording_mb": round((tmp / "soak.mp4").stat().st_size / 2**20, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repeat and a 1,000-frame soak")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--soak-frames", type=int, default=5000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["efficiency", "live", "soak"])
    ap.add_argument("--sr-model", help="upscaler bundle or file (default: the shipped quicksrnet_small_x2 bundle)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    global SR_MODEL
    SR_MODEL = args.sr_model
    repeats = 1 if args.quick else args.repeats
    soak_frames = 1000 if args.quick else args.soak_frames

    import edgekit

    report: dict = {"host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                             "edgekit": edgekit.__version__, "load_average_start": os.getloadavg()},
                    "threads": 2, "sr_model": SR_MODEL or "shipped quicksrnet_small_x2 bundle", "clip": "320x240, 120 frames cut from the virtual camera"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # the soak first, while this process holds only what the demo itself imports (the
        # classify runs convert mobilenet_v2 on first use, which imports torch)
        if "soak" not in args.skip:
            print(f"soak, {soak_frames} frames:", file=sys.stderr)
            report["soak"] = soak(tmp, soak_frames)
        if "live" not in args.skip:
            print("live virtual camera, 300 frames:", file=sys.stderr)
            report["live"] = live_latency(300)
        if "efficiency" not in args.skip:
            print("efficiency (inference time of shown frames / wall time, docs/demo.md) on a 320x240 clip, "
                  "recording:", file=sys.stderr)
            report["efficiency"] = efficiency(tmp, repeats, 120)
    report["host"]["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
