"""The web app: any edgekit bundle live on a phone's camera in the browser.

``build(bundle, out)`` writes a static folder: ``index.html`` and its ES modules (from
``static/``), the bundle's ``edgekit.json`` and model files under ``bundle/``, and the browser
runtimes under ``vendor/`` (onnxruntime-web and LiteRT.js, copied from the npm packages pinned
in ``apps/web/package.json``; nothing is loaded from a CDN). The page learns everything it needs
(task, tensor names, shapes, layouts, dtypes, pre- and post-processing) from ``edgekit.json``;
``static/preprocess.js`` is the JavaScript of :mod:`edgekit.preprocess` (tested against it).

``serve(folder, port)`` serves such a folder with the two headers that make a page
cross-origin isolated (``Cross-Origin-Opener-Policy`` / ``Cross-Origin-Embedder-Policy``), which
WebAssembly threads need. See docs/web.md.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import UsageError

__all__ = ["build", "serve", "runtime_dir", "LITERT_DTYPES", "BuildResult"]

STATIC = Path(__file__).parent / "static"
REPO_WEB = Path(__file__).resolve().parents[2] / "apps" / "web"
LITERT_DTYPES = ("float32", "int32", "uint8")  # the tensor dtypes LiteRT.js accepts

# (package folder in node_modules, files relative to it, destination under vendor/)
ORT_FILES = ["dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
             "dist/ort.webgpu.min.mjs", "dist/ort-wasm-simd-threaded.asyncify.mjs",
             "dist/ort-wasm-simd-threaded.asyncify.wasm"]
LITERT_FILES = ["dist/index.js", "wasm/litert_wasm_internal.js", "wasm/litert_wasm_internal.wasm",
                "wasm/litert_wasm_threaded_internal.js", "wasm/litert_wasm_threaded_internal.wasm",
                "wasm/litert_wasm_compat_internal.js", "wasm/litert_wasm_compat_internal.wasm"]
RUNTIMES = {"onnx": [("onnxruntime-web", ORT_FILES, "ort")],
            "tflite": [("@litertjs/core", LITERT_FILES, "litert/core"),
                       ("@litertjs/wasm-utils", ["dist/index.js"], "litert/wasm-utils")]}


def runtime_dir() -> Path:
    """The ``node_modules`` folder the runtimes are copied from: ``EDGEKIT_WEB_NODE_MODULES`` when
    set, else ``apps/web/node_modules`` of the source checkout."""
    env = os.environ.get("EDGEKIT_WEB_NODE_MODULES")
    return Path(env) if env else REPO_WEB / "node_modules"


@dataclass
class BuildResult:
    out: Path
    task: str
    formats: list[str]
    notes: list[str] = field(default_factory=list)
    size_bytes: int = 0


def _tflite_refusal(art, path: Path) -> str | None:
    """Why LiteRT.js cannot run this TFLite file, or None: a tensor dtype it does not take, read
    from the file itself (an int8 bundle's manifest lists the float tensors its session takes,
    while the file's own inputs and outputs are int8), inside the graph too (LiteRT.js refuses to
    compile a model with int8 tensors)."""
    import mmap

    from edgekit.runtimes.tflite_file import read_tflite

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        info = read_tflite(path, data)
    takes = f"LiteRT.js takes only {', '.join(LITERT_DTYPES)} tensors"
    for kind, tensors in (("input", info["inputs"]), ("output", info["outputs"])):
        for t in tensors:
            if str(t.dtype) not in LITERT_DTYPES:
                return f"{art.path} has {t.dtype} {kind} '{t.name}' and {takes}"
    inner = sorted(d for d in info.get("tensor_dtypes", {}) if d in ("int8", "int16", "int4"))
    if inner:
        return f"{art.path} has {'/'.join(inner)} tensors inside and {takes}"
    return None


VIDEO_LAYOUTS = ("NCTHW", "NTHWC")


def _latent_input(art) -> str | None:
    """Why the page cannot run this video decoder (a latent in, frames out), or None."""
    if len(art.inputs) != 1:
        return f"{art.path} has {len(art.inputs)} inputs; the page feeds one latent"
    t = art.inputs[0]
    if str(t.dtype) != "float32" or not all(isinstance(d, int) and d > 0 for d in t.shape):
        return f"{art.path} input '{t.name}' ({t.dtype} {list(t.shape)}) is not a static float32 latent"
    y = art.outputs[0] if art.outputs else None
    if y is None or y.layout not in VIDEO_LAYOUTS or len(y.shape) != 5:
        return f"{art.path} output is not a video ({'/'.join(VIDEO_LAYOUTS)})"
    return None


def _image_input(art, task: str | None = None) -> str | None:
    """Why the page cannot feed this artifact a camera frame (a decode-video model: a latent),
    or None."""
    from edgekit.preprocess import image_layout

    if task == "decode-video":
        return _latent_input(art)
    if len(art.inputs) != 1:
        return f"{art.path} has {len(art.inputs)} inputs; the page feeds one image"
    t = art.inputs[0]
    if image_layout(tuple(t.shape), t.layout) is None:
        return f"{art.path} input '{t.name}' of shape {list(t.shape)} is not an image"
    if str(t.dtype) not in ("float32", "uint8", "int8"):
        return f"{art.path} input '{t.name}' is {t.dtype}; the page feeds float32, uint8 or int8 pixels"
    return None


def build(bundle: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> BuildResult:
    """Write the static web app for ``bundle`` into ``out`` (see the module docstring)."""
    from edgekit.bundle import is_bundle, read_manifest, write_manifest

    src = Path(bundle)
    if not is_bundle(src):
        raise UsageError(f"{src}: not a bundle folder (no edgekit.json)",
                         hint="pass a folder written by `edgekit convert`")
    manifest = read_manifest(src)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder", hint="choose a folder for --out")
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"{out}: folder is not empty", hint="choose an empty folder or pass --force")
    notes: list[str] = []
    chosen = {}
    for fmt in ("onnx", "tflite"):
        candidates = [a for a in manifest.artifacts if a.format == fmt and (src / a.path).is_file()]
        for art in candidates:
            why = _image_input(art, manifest.task) or (_tflite_refusal(art, src / art.path) if fmt == "tflite" else None)
            if why is None:
                chosen[fmt] = art
                break
            notes.append(why)
    if not chosen:
        reason = "; ".join(notes) or "it has no .onnx or .tflite artifact"
        raise UsageError(f"{src}: no artifact the browser can run ({reason})",
                         hint="convert with --to onnx (fp32 or int8 QDQ) or a float32/uint8 TFLite")
    if "tflite" not in chosen and any("LiteRT.js" in n for n in notes):
        notes = [n + ("; the page uses " + chosen["onnx"].path + " (onnxruntime-web)" if "LiteRT.js" in n else "")
                 for n in notes]
    modules = runtime_dir()
    missing = [f"{modules}/{pkg}/{rel}" for fmt in chosen for pkg, files, _ in RUNTIMES[fmt] for rel in files
               if not (modules / pkg / rel).is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: browser runtime file missing",
                         hint=f"run `npm ci` in {REPO_WEB} (or set EDGEKIT_WEB_NODE_MODULES to a node_modules folder)")
    if out.exists() and force:
        shutil.rmtree(out)
    (out / "bundle").mkdir(parents=True, exist_ok=True)
    for name in sorted(p.name for p in STATIC.iterdir() if p.is_file()):
        shutil.copy2(STATIC / name, out / name)
    for fmt, art in chosen.items():
        shutil.copy2(src / art.path, out / "bundle" / Path(art.path).name)
        for pkg, files, dest in RUNTIMES[fmt]:
            for rel in files:
                target = out / "vendor" / dest / Path(rel).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(modules / pkg / rel, target)
    # The page's edgekit.json: the bundle's, listing only the artifacts copied (by file name).
    manifest.artifacts = [a for a in manifest.artifacts if any(a is c for c in chosen.values())]
    for a in manifest.artifacts:
        a.path = Path(a.path).name
    write_manifest(out / "bundle", manifest)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return BuildResult(out, manifest.task, list(chosen), notes, size)


def lan_address() -> str | None:
    """This host's address on the local network (no packet is sent), or None."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def make_server(folder: str | os.PathLike, port: int = 8000, host: str = "0.0.0.0"):
    """A ``ThreadingHTTPServer`` serving ``folder`` with COOP/COEP headers (not started)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = Path(folder)
    if not (root / "index.html").is_file():
        raise UsageError(f"{root}: no index.html", hint="build the app first: edgekit app web BUNDLE --out DIR")

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                          ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                          ".tflite": "application/octet-stream", ".onnx": "application/octet-stream"}

        def end_headers(self):
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-cache")
            super().end_headers()

        def log_message(self, format, *args):  # quiet: the page's own overlay shows what matters
            pass

    try:
        return ThreadingHTTPServer((host, port), functools.partial(Handler, directory=str(root)))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e})",
                         hint="pick another --port (0 picks a free one)") from None


def serve(folder: str | os.PathLike, port: int = 8000, host: str = "0.0.0.0", echo=print) -> None:
    """Serve ``folder`` until interrupted, printing the URLs."""
    server = make_server(folder, port, host)
    actual = server.server_address[1]
    echo(f"serving {Path(folder)} at http://localhost:{actual}/", flush=True)
    lan = lan_address()
    if lan:
        echo(f"on your network: http://{lan}:{actual}/", flush=True)
    echo("note: browsers give a page the camera only over HTTPS or on localhost; on a phone use an HTTPS "
         "tunnel or reverse proxy to this port, or `adb reverse tcp:%d tcp:%d` and open localhost" % (actual, actual),
         flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def manifest_json(out: str | os.PathLike) -> dict:
    return json.loads((Path(out) / "bundle" / "edgekit.json").read_text())
