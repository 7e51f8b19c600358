// The edgekit web app: one page for any bundle. Everything model-specific comes from
// bundle/edgekit.json (task, tensors, pre/post-processing, labels); runtimes are loaded from
// vendor/ (onnxruntime-web, LiteRT.js), never from a CDN.
import * as pre from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const WINDOW = 120; // latencies kept for the p50s
const MAX_SIDE = 1280; // frames larger than this are scaled down when grabbed

const state = {
  manifest: null, artifact: null, spec: null, runner: null, backend: null, backendLabel: "", threads: 1,
  frames: 0, infer: [], e2e: [], done: [], busy: false, source: null, facing: params.get("facing") || "environment",
  split: 0.5, error: null, last: null,
};

function p50(xs) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function showMessage(text) {
  const m = $("message");
  m.textContent = text;
  m.hidden = !text;
}

// -- runtimes ---------------------------------------------------------------------------------
function defaultThreads() {
  const want = Number(params.get("threads") || 0);
  if (!self.crossOriginIsolated) return 1;
  return want > 0 ? want : Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
}

async function ortRunner(art, webgpu) {
  const ort = await import(webgpu ? "./vendor/ort/ort.webgpu.min.mjs" : "./vendor/ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = new URL("./vendor/ort/", location.href).href;
  ort.env.wasm.numThreads = defaultThreads();
  // wasm: run in onnxruntime-web's proxy worker, so the page grabs and pre-processes the next frame
  // and draws the last result while the model runs (?proxy=0 runs it on the main thread)
  ort.env.wasm.proxy = !webgpu && params.get("proxy") !== "0";
  ort.env.logLevel = "error";
  const ep = webgpu ? "webgpu" : "wasm";
  const session = await ort.InferenceSession.create(`bundle/${art.path}`,
    { executionProviders: [ep], graphOptimizationLevel: "all" });
  const threads = ort.env.wasm.numThreads; // what the runtime settled on (1 without isolation)
  const inName = session.inputNames[0];
  const outNames = session.outputNames;
  const dtype = art.inputs[0].dtype;
  return {
    name: webgpu ? "ort-webgpu" : "ort-wasm",
    label: webgpu ? "onnxruntime-web webgpu EP" : `onnxruntime-web wasm EP, ${threads} thread${threads > 1 ? "s" : ""}`,
    threads: webgpu ? 0 : threads,
    async run(data, shape) {
      const result = await session.run({ [inName]: new ort.Tensor(dtype, data, shape) });
      return outNames.map((n) => ({ name: n, data: result[n].data, shape: Array.from(result[n].dims) }));
    },
  };
}

async function litertRunner(art) {
  const lrt = await import("./vendor/litert/core/index.js");
  const relaxed = (await lrt.supportsFeature("relaxedSimd")) && self.crossOriginIsolated;
  const threads = relaxed ? defaultThreads() : 1;
  await lrt.loadLiteRt(new URL("./vendor/litert/core/", location.href).href, { threads: threads > 1 });
  const model = await lrt.loadAndCompile(`bundle/${art.path}`, { accelerator: "wasm", cpuOptions: { numThreads: threads } });
  const threaded = performance.getEntriesByType("resource").some((e) => e.name.includes("litert_wasm_threaded"));
  const used = threaded ? threads : 1;
  const outs = model.getOutputDetails();
  return {
    name: "litert-wasm",
    label: `LiteRT.js wasm (XNNPACK), ${used} thread${used > 1 ? "s" : ""}`,
    threads: used,
    async run(data, shape) {
      const input = new lrt.Tensor(data, shape);
      let results;
      try {
        results = await model.run([input]);
      } finally {
        input.delete();
      }
      const out = results.map((t, i) => {
        const r = { name: outs[i].name, data: t.toTypedArray().slice(), shape: Array.from(t.type.layout.dimensions) };
        t.delete();
        return r;
      });
      return out;
    },
  };
}

function backendsFor(manifest) {
  const formats = new Set(manifest.artifacts.map((a) => a.format));
  const list = [];
  if (formats.has("onnx")) list.push("ort-wasm");
  if (formats.has("tflite")) list.push("litert-wasm");
  if (formats.has("onnx") && navigator.gpu) list.push("ort-webgpu");
  return list;
}

async function makeRunner(backend) {
  const fmt = backend === "litert-wasm" ? "tflite" : "onnx";
  const art = state.manifest.artifacts.find((a) => a.format === fmt);
  state.artifact = art;
  const t = art.inputs[0];
  if (state.manifest.task === "decode-video") {
    // a latent in, frames out: the page plays decoded latents (no camera)
    const p = state.manifest.preprocess || {};
    state.spec = null;
    state.latent = { shape: t.shape, z0: gaussian(t.shape, 1), z1: gaussian(t.shape, 2), phase: 0 };
    state.outSpec = { outputRange: (p.value_range || [0, 1]).map(Number),
                      outputColorOrder: String(p.color_order || "RGB").toUpperCase() };
  } else {
    state.spec = pre.specFor(t.shape, t.dtype, t.layout, state.manifest.preprocess, state.manifest.task);
  }
  return backend === "litert-wasm" ? litertRunner(art) : ortRunner(art, backend === "ort-webgpu");
}

// -- latents (decode-video) ----------------------------------------------------------------------
function gaussian(shape, seed) {
  // mulberry32 + Box-Muller: the same latents on every load
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = shape.reduce((x, y) => x * y, 1);
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) z[i] = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return z;
}

async function processLatent() {
  const t0 = performance.now();
  const L = state.latent;
  const c = Math.cos(L.phase);
  const s = Math.sin(L.phase);
  L.phase += 0.08; // a slow walk on the circle through z0 and z1: every point is N(0, 1)
  const z = new Float32Array(L.z0.length);
  for (let i = 0; i < z.length; i++) z[i] = c * L.z0[i] + s * L.z1[i];
  const t1 = performance.now();
  const outputs = await state.runner.run(z, L.shape);
  const ms = performance.now() - t1;
  renderVideo(outputs[0]);
  finishFrame(t0, ms);
}

// Decoded frames side by side (up to 4 a row).
function renderVideo(o) {
  const lay = state.artifact.outputs[0].layout;
  const dims = Object.fromEntries(Array.from(lay, (ch, i) => [ch, o.shape[i]]));
  const { T, H, W, C } = dims;
  const cols = Math.min(T, 4);
  const rows = Math.ceil(T / cols);
  if (view.width !== cols * W || view.height !== rows * H) {
    view.width = cols * W;
    view.height = rows * H;
  }
  for (let t = 0; t < T; t++) {
    let frame, layout;
    if (lay === "NCTHW") {
      frame = new Float32Array(C * H * W);
      for (let ch = 0; ch < C; ch++) frame.set(o.data.subarray((ch * T + t) * H * W, (ch * T + t + 1) * H * W), ch * H * W);
      layout = "CHW";
    } else {
      frame = o.data.subarray(t * H * W * C, (t + 1) * H * W * C);
      layout = "HWC";
    }
    const shape = layout === "CHW" ? [C, H, W] : [H, W, C];
    const { rgba } = pre.fromTensor(state.outSpec, frame, shape, layout);
    viewCtx.putImageData(new ImageData(rgba, W, H), (t % cols) * W, Math.floor(t / cols) * H);
  }
}

// -- one frame ----------------------------------------------------------------------------------
const grab = document.createElement("canvas");
const grabCtx = grab.getContext("2d", { willReadFrequently: true });

function pixelsOf(source, sw, sh) {
  const k = Math.min(1, MAX_SIDE / Math.max(sw, sh));
  const w = Math.max(1, Math.round(sw * k));
  const h = Math.max(1, Math.round(sh * k));
  if (grab.width !== w || grab.height !== h) {
    grab.width = w;
    grab.height = h;
  }
  grabCtx.drawImage(source, 0, 0, w, h);
  const rgba = grabCtx.getImageData(0, 0, w, h).data;
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return { rgb, h, w };
}

// Pre-process, run and return everything (the test hook uses this directly).
async function infer(rgb, h, w) {
  const x = pre.toTensor(state.spec, rgb, h, w);
  const t0 = performance.now();
  // a copy: the ORT proxy transfers (detaches) the buffer it is given, and callers read x.data
  const outputs = await state.runner.run(x.data.slice(), x.shape);
  const ms = performance.now() - t0;
  return { x, outputs, ms };
}

async function processFrame(source, sw, sh) {
  const t0 = performance.now();
  const { rgb, h, w } = pixelsOf(source, sw, sh);
  const r = await infer(rgb, h, w);
  render(r, rgb, h, w);
  finishFrame(t0, r.ms);
}

// Grab and pre-process the current video frame (or null if there is none).
function prepareVideo() {
  if (!(video.readyState >= 2 && video.videoWidth)) return null;
  const t0 = performance.now();
  const { rgb, h, w } = pixelsOf(video, video.videoWidth, video.videoHeight);
  return { t0, rgb, h, w, x: pre.toTensor(state.spec, rgb, h, w) };
}

// Camera / video: a pipeline of depth one. Frame N+1 is grabbed and pre-processed, and frame N-1
// drawn, while the runtime works on frame N; only one inference is ever in flight and only the
// newest prepared frame is kept (the ORT proxy worker runs the model off the main thread).
async function videoLoop(src) {
  let next = prepareVideo();
  while (state.source === src) {
    if (!next) {
      await new Promise(requestAnimationFrame);
      next = prepareVideo();
      continue;
    }
    const cur = next;
    next = null;
    const t1 = performance.now();
    const running = state.runner.run(cur.x.data, cur.x.shape).then((outputs) => ({ outputs, ms: performance.now() - t1 }));
    await new Promise((r) => setTimeout(r, 0)); // let the runtime post the input to its worker first
    next = prepareVideo();
    const { outputs, ms } = await running;
    if (state.source !== src) break;
    render({ x: cur.x, outputs, ms }, cur.rgb, cur.h, cur.w);
    finishFrame(cur.t0, ms);
    if (next && performance.now() - next.t0 > 1000) next = prepareVideo(); // stale after a stall
  }
}

function finishFrame(t0, ms) {
  const t1 = performance.now();
  state.frames += 1;
  state.infer.push(ms);
  state.e2e.push(t1 - t0);
  state.done.push(t1);
  for (const xs of [state.infer, state.e2e, state.done]) if (xs.length > WINDOW) xs.shift();
  updateOverlay();
}

// -- views --------------------------------------------------------------------------------------
const view = $("view");
const viewCtx = view.getContext("2d");
const scratch = document.createElement("canvas");

function probabilities(v) {
  let sum = 0;
  let inRange = true;
  for (const p of v) {
    sum += p;
    if (!(p >= 0 && p <= 1)) inRange = false;
  }
  if (inRange && Math.abs(sum - 1) < 1e-3) return Array.from(v);
  const m = Math.max(...v);
  const e = Array.from(v, (z) => Math.exp(z - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((z) => z / s);
}

function renderClassify(r, rgb, h, w) {
  // the frame, with the crop the model saw outlined
  const img = new ImageData(w, h);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    img.data[i] = rgb[j];
    img.data[i + 1] = rgb[j + 1];
    img.data[i + 2] = rgb[j + 2];
    img.data[i + 3] = 255;
  }
  if (view.width !== w || view.height !== h) {
    view.width = w;
    view.height = h;
  }
  viewCtx.putImageData(img, 0, 0);
  const [y0, x0, bh, bw] = r.x.model.box;
  viewCtx.strokeStyle = "#4c9";
  viewCtx.lineWidth = Math.max(2, w / 200);
  viewCtx.strokeRect(x0 + 1, y0 + 1, bw - 2, bh - 2);
  const out = r.outputs[0].data;
  const probs = probabilities(out);
  const labels = state.manifest.preprocess?.labels || [];
  const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
  const list = $("top5");
  list.hidden = false;
  list.replaceChildren(...order.map(([p, i]) => {
    const li = document.createElement("li");
    li.textContent = `${labels[i] ?? `class ${i}`}  ${(100 * p).toFixed(1)}%`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(100 * p)}px`;
    li.append(bar);
    return li;
  }));
  state.last = { top: order.map(([p, i]) => ({ index: i, label: labels[i] ?? null, p })) };
}

function renderImage(r) {
  const o = r.outputs[0];
  const art = state.artifact;
  const outSpec = { outputRange: state.spec.outputRange, outputColorOrder: state.spec.outputColorOrder };
  const { rgba, h, w } = pre.fromTensor(outSpec, o.data, o.shape, art.outputs[0]?.layout);
  if (view.width !== w || view.height !== h) {
    view.width = w;
    view.height = h;
  }
  const sr = new ImageData(rgba, w, h);
  if (state.manifest.task !== "super-resolve") {
    viewCtx.putImageData(sr, 0, 0);
    return;
  }
  // bicubic of the model's own input, at the output size, on the right of the split
  const m = r.x.model;
  const small = new ImageData(m.w, m.h);
  for (let i = 0, j = 0; j < m.img.length; i += 4, j += 3) {
    small.data[i] = m.img[j];
    small.data[i + 1] = m.img[j + 1];
    small.data[i + 2] = m.img[j + 2];
    small.data[i + 3] = 255;
  }
  scratch.width = m.w;
  scratch.height = m.h;
  scratch.getContext("2d").putImageData(small, 0, 0);
  viewCtx.imageSmoothingEnabled = true;
  viewCtx.imageSmoothingQuality = "high";
  viewCtx.drawImage(scratch, 0, 0, w, h);
  const sx = Math.round(state.split * w);
  viewCtx.putImageData(sr, 0, 0, 0, 0, sx, h);
  viewCtx.fillStyle = "#fff";
  viewCtx.fillRect(sx - 1, 0, 2, h);
  viewCtx.font = `${Math.max(12, Math.round(h / 28))}px system-ui, sans-serif`;
  viewCtx.fillStyle = "rgba(0,0,0,.55)";
  viewCtx.fillRect(4, h - 26, 86, 22);
  viewCtx.fillRect(w - 90, h - 26, 86, 22);
  viewCtx.fillStyle = "#fff";
  viewCtx.fillText("model", 10, h - 9);
  viewCtx.fillText("bicubic", w - 84, h - 9);
}

function render(r, rgb, h, w) {
  if (state.manifest.task === "classify") renderClassify(r, rgb, h, w);
  else renderImage(r);
}

function updateOverlay() {
  const now = performance.now();
  const recent = state.done.filter((t) => now - t <= 1000 + 1e-6);
  const span = recent.length > 1 ? (recent[recent.length - 1] - recent[0]) / 1000 : 0;
  const fps = span > 0 ? (recent.length - 1) / span : 0;
  $("overlay").textContent =
    `${state.runner.label}\n` +
    `inference p50 ${p50(state.infer).toFixed(1)} ms · end-to-end p50 ${p50(state.e2e).toFixed(1)} ms\n` +
    `${fps.toFixed(1)} FPS · frame ${state.frames}`;
}

function stats() {
  const now = performance.now();
  const recent = state.done.filter((t) => now - t <= 1000);
  const span = recent.length > 1 ? (recent[recent.length - 1] - recent[0]) / 1000 : 0;
  return {
    backend: state.backend, label: state.runner?.label ?? null, threads: state.runner?.threads ?? null,
    crossOriginIsolated: self.crossOriginIsolated, frames: state.frames, inferP50: p50(state.infer),
    e2eP50: p50(state.e2e), fps: span > 0 ? (recent.length - 1) / span : 0, error: state.error,
    // FPS over the same frames as the p50s (the last WINDOW frames)
    fpsWindow: state.done.length > 1 ? (1000 * (state.done.length - 1)) / (state.done.at(-1) - state.done[0]) : 0,
    message: $("message").hidden ? null : $("message").textContent, task: state.manifest?.task ?? null,
    last: state.last, inferTimes: [...state.infer],
  };
}

// -- sources --------------------------------------------------------------------------------------
const video = $("video");

function cameraMessage(e) {
  const name = e && e.name;
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Camera access was refused. Allow the camera for this page in the browser's site settings and reload, or pick an image or video file above.";
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError")
    return "No camera found on this device. Pick an image or video file above.";
  if (name === "NotReadableError")
    return "The camera is in use by another app. Close it and reload, or pick a file above.";
  return `The camera could not be opened (${name || e}). Pick an image or video file above.`;
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    showMessage("This page cannot use the camera here: browsers allow it only over HTTPS or on localhost. Pick an image or video file above.");
    return;
  }
  if (video.srcObject) for (const t of video.srcObject.getTracks()) t.stop();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: state.facing }, width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false,
    });
    video.srcObject = stream;
    video.src = "";
    await video.play();
    state.source = { kind: "camera" };
    showMessage("");
  } catch (e) {
    state.source = null;
    showMessage(cameraMessage(e));
  }
}

async function openFile(file) {
  if (video.srcObject) {
    for (const t of video.srcObject.getTracks()) t.stop();
    video.srcObject = null;
  }
  const url = URL.createObjectURL(file);
  if (file.type.startsWith("video/")) {
    video.src = url;
    video.loop = true;
    await video.play();
    state.source = { kind: "video" };
  } else {
    const bitmap = await createImageBitmap(file);
    state.source = { kind: "image", bitmap, pending: true };
  }
  showMessage("");
}

function tick() {
  const src = state.source;
  if (!state.busy && state.runner && src) {
    let args = null;
    if (src.kind === "camera" || src.kind === "video") {
      state.busy = true;
      videoLoop(src)
        .catch((e) => {
          state.error = String(e?.message || e);
          showMessage(`inference failed: ${state.error}`);
          state.source = null;
        })
        .finally(() => { state.busy = false; });
    } else if (src.kind === "latent") {
      state.busy = true;
      processLatent()
        .catch((e) => {
          state.error = String(e?.message || e);
          showMessage(`inference failed: ${state.error}`);
          state.source = null;
        })
        .finally(() => { state.busy = false; });
    } else if (src.kind === "image" && src.pending) {
      src.pending = false; // a still image runs once (again after a tap on an SR split)
      args = [src.bitmap, src.bitmap.width, src.bitmap.height];
    }
    if (args) {
      state.busy = true; // at most one frame in flight
      processFrame(...args)
        .catch((e) => {
          state.error = String(e?.message || e);
          showMessage(`inference failed: ${state.error}`);
          state.source = null;
        })
        .finally(() => { state.busy = false; });
    }
  }
  requestAnimationFrame(tick);
}

// -- start ----------------------------------------------------------------------------------------
async function main() {
  const res = await fetch("bundle/edgekit.json");
  state.manifest = await res.json();
  const m = state.manifest;
  document.title = `${m.name} · edgekit`;
  $("title").textContent = `${m.name} · ${m.task}`;
  const available = backendsFor(m);
  const asked = params.get("backend");
  state.backend = available.includes(asked) ? asked : available[0];
  const sel = $("backend");
  for (const b of available) sel.append(new Option(b, b, false, b === state.backend));
  sel.addEventListener("change", () => {
    params.set("backend", sel.value);
    location.search = params.toString();
  });
  $("flip").addEventListener("click", () => {
    state.facing = state.facing === "environment" ? "user" : "environment";
    startCamera();
  });
  $("file").addEventListener("change", (ev) => ev.target.files[0] && openFile(ev.target.files[0]));
  view.addEventListener("pointerdown", (ev) => {
    const r = view.getBoundingClientRect();
    state.split = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    if (state.source?.kind === "image") state.source.pending = true;
  });
  $("hint").textContent = m.task === "super-resolve"
    ? `left of the line: the model (×${m.preprocess?.scale_factor ?? "?"}); right: bicubic of the same input. Tap to move the line.`
    : "";
  try {
    state.runner = await makeRunner(state.backend);
  } catch (e) {
    state.error = String(e?.message || e);
    showMessage(`${state.backend} could not load the model: ${state.error}`);
    $("overlay").textContent = `${state.backend}: failed`;
    return;
  }
  $("overlay").textContent = `${state.runner.label}\nwaiting for a frame…`;
  if (m.task === "decode-video") {
    $("flip").hidden = true;
    $("file").closest("label").hidden = true;
    $("hint").textContent = `decoded frames of latents drawn from N(0, 1), walking slowly (input ${state.latent.shape.join("x")})`;
    if (params.get("play") !== "0") state.source = { kind: "latent" };
  } else if (params.get("camera") !== "0") await startCamera();
  requestAnimationFrame(tick);
}

const ready = main().catch((e) => {
  state.error = String(e?.message || e);
  showMessage(`the app could not start: ${state.error}`);
});

function b64(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// For tests and benchmarks: run a given RGB image (base64 HxWx3 uint8) through the page's own
// pre-processing and runtime; tensors come back as base64 of their bytes.
window.edgekit = {
  ready, state, stats, pre,
  async infer(rgbB64, h, w) {
    const bin = atob(rgbB64);
    const rgb = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) rgb[i] = bin.charCodeAt(i);
    const r = await infer(rgb, h, w);
    const enc = (t) => ({ dtype: t.constructor.name, data: b64(t) });
    return {
      input: { shape: r.x.shape, ...enc(r.x.data) }, ms: r.ms,
      outputs: r.outputs.map((o) => ({ name: o.name, shape: o.shape, ...enc(o.data) })),
    };
  },
  // Run the runtime on a given float32 tensor (a latent): outputs as in infer.
  async run(b64Data, shape) {
    const bin = atob(b64Data);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const outputs = await state.runner.run(new Float32Array(bytes.buffer), shape);
    return outputs.map((o) => ({ name: o.name, shape: o.shape, dtype: o.data.constructor.name, data: b64(o.data) }));
  },
  async bench(rgbB64, h, w, runs) {
    const bin = atob(rgbB64);
    const rgb = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const times = [];
    for (let i = 0; i < runs; i++) times.push((await infer(rgb, h, w)).ms);
    return times;
  },
};
