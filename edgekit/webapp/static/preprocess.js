// The JavaScript of edgekit/preprocess.py: one specification of how a camera frame becomes a
// model input, and an image output becomes a picture. Same steps, same arithmetic (float64,
// floor(x + 0.5) for lengths, round half to even for uint8 results); tests/apps/web checks it
// against the Python module element by element.

export const LUMA = [0.299, 0.587, 0.114];
const DEFAULT_POLICY = { classify: "crop", "super-resolve": "native" };
const SIZE_KEEPING = ["native", "tile"];
const IMAGE_LAYOUTS = ["NCHW", "NHWC", "CHW", "HWC"];

const round = (x) => Math.floor(x + 0.5);
// NumPy's rint: round half to even.
export function rint(x) {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function cropBox(height, width, outH, outW) {
  if (width * outH > outW * height) {
    const cw = Math.max(1, round((height * outW) / outH));
    return [0, Math.floor((width - cw) / 2), height, cw];
  }
  const ch = Math.max(1, round((width * outH) / outW));
  return [Math.floor((height - ch) / 2), 0, ch, width];
}

function fit(height, width, outH, outW) {
  const s = Math.min(outH / height, outW / width);
  return [Math.max(1, Math.min(outH, round(height * s))), Math.max(1, Math.min(outW, round(width * s)))];
}

// Sparse weights: for each output index, [firstSourceIndex, [w0, w1, ...]].
function areaWeights(nIn, nOut) {
  const scale = nIn / nOut;
  const rows = [];
  for (let o = 0; o < nOut; o++) {
    const lo = o * scale;
    const hi = lo + scale;
    const k0 = Math.floor(lo);
    const ws = [];
    for (let k = k0; k < nIn && k < hi; k++) {
      const ov = Math.min(hi, k + 1) - Math.max(lo, k);
      ws.push(ov > 0 ? ov / scale : 0);
    }
    rows.push([k0, ws]);
  }
  return rows;
}

function bilinearWeights(nIn, nOut) {
  const rows = [];
  for (let o = 0; o < nOut; o++) {
    const x = Math.min(Math.max((o + 0.5) * (nIn / nOut) - 0.5, 0), nIn - 1);
    const lo = Math.floor(x);
    const hi = Math.min(lo + 1, nIn - 1);
    const f = x - lo;
    rows.push(hi === lo ? [lo, [1 - f + f]] : [lo, [1 - f, f]]);
  }
  return rows;
}

// Resize an HxWxC uint8 image (Uint8Array, row-major) to outH x outW (step 3).
export function resize(img, h, w, c, outH, outW) {
  if (h === outH && w === outW) return img;
  const area = outH <= h && outW <= w;
  const weights = area ? areaWeights : bilinearWeights;
  const wy = weights(h, outH);
  const wx = weights(w, outW);
  // along H first (as the reference does), in float64
  const tmp = new Float64Array(outH * w * c);
  for (let o = 0; o < outH; o++) {
    const [k0, ws] = wy[o];
    const dst = o * w * c;
    for (let j = 0; j < ws.length; j++) {
      const wt = ws[j];
      if (wt === 0) continue;
      const src = (k0 + j) * w * c;
      for (let i = 0; i < w * c; i++) tmp[dst + i] += wt * img[src + i];
    }
  }
  const out = new Uint8Array(outH * outW * c);
  const clampRint = (x) => {
    const f = Math.floor(x);
    const d = x - f;
    const r = d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
    return r < 0 ? 0 : r > 255 ? 255 : r;
  };
  if (c === 3) {
    // the camera case: three accumulators, the same float64 sums in the same order as below
    for (let o = 0; o < outH; o++) {
      for (let p = 0; p < outW; p++) {
        const [k0, ws] = wx[p];
        let a0 = 0, a1 = 0, a2 = 0;
        for (let j = 0; j < ws.length; j++) {
          const wt = ws[j];
          if (wt === 0) continue;
          const src = (o * w + k0 + j) * 3;
          a0 += wt * tmp[src];
          a1 += wt * tmp[src + 1];
          a2 += wt * tmp[src + 2];
        }
        const dst = (o * outW + p) * 3;
        out[dst] = clampRint(a0);
        out[dst + 1] = clampRint(a1);
        out[dst + 2] = clampRint(a2);
      }
    }
    return out;
  }
  const acc = new Float64Array(c);
  for (let o = 0; o < outH; o++) {
    for (let p = 0; p < outW; p++) {
      const [k0, ws] = wx[p];
      acc.fill(0);
      for (let j = 0; j < ws.length; j++) {
        const wt = ws[j];
        if (wt === 0) continue;
        const src = (o * w + k0 + j) * c;
        for (let ch = 0; ch < c; ch++) acc[ch] += wt * tmp[src + ch];
      }
      const dst = (o * outW + p) * c;
      for (let ch = 0; ch < c; ch++) out[dst + ch] = Math.min(255, Math.max(0, rint(acc[ch])));
    }
  }
  return out;
}

export function guessLayout(shape) {
  const isC = (d) => d === 1 || d === 3;
  if (shape.length === 4) {
    if (isC(shape[1]) && !isC(shape[3])) return "NCHW";
    if (isC(shape[3]) && !isC(shape[1])) return "NHWC";
    if (isC(shape[1]) && isC(shape[3])) return shape[1] === 3 ? "NCHW" : "NHWC";
  }
  if (shape.length === 3) {
    if (isC(shape[0]) && !isC(shape[2])) return "CHW";
    if (isC(shape[2])) return "HWC";
  }
  return null;
}

const isDim = (d) => Number.isInteger(d) && d > 0;

export function imageLayout(shape, layout) {
  if (IMAGE_LAYOUTS.includes(layout) && layout.length === shape.length) {
    const c = shape[layout.indexOf("C")];
    return c === 1 || c === 3 || !isDim(c) ? layout : null;
  }
  if (layout != null && !IMAGE_LAYOUTS.includes(layout)) return null;
  return guessLayout(shape);
}

function sizeOf(value, layout) {
  if (Number.isInteger(value)) return [value, value];
  if (Array.isArray(value) && value.every(Number.isInteger)) {
    if (value.length === 2) return [value[0], value[1]];
    if (value.length === layout.length) return [value[layout.indexOf("H")], value[layout.indexOf("W")]];
  }
  return null;
}

// The spec for one image input, from the input's shape/dtype/layout and edgekit.json's
// preprocess section and task (Preprocess.for_input).
export function specFor(shape, dtype, layout, pre, task) {
  pre = pre || {};
  const lay = imageLayout(shape, layout || pre.layout || null);
  if (lay == null) throw new Error(`the model input of shape [${shape}] is not an image`);
  const c = shape[lay.indexOf("C")];
  const channels = isDim(c) ? c : 3;
  const h = shape[lay.indexOf("H")];
  const w = shape[lay.indexOf("W")];
  const size = isDim(h) && isDim(w) ? [h, w] : sizeOf(pre.input_size, lay);
  const policy = pre.resize || DEFAULT_POLICY[task] || "stretch";
  const folded = !!pre.folded;
  const sourceRange = (pre.value_range || [0, 1]).map(Number);
  let valueRange, color, mean, std;
  if (folded) {
    valueRange = (pre.input_value_range || [0, 255]).map(Number);
    color = String(pre.input_color_order || "RGB");
    mean = null;
    std = null;
  } else {
    valueRange = sourceRange;
    color = String(pre.color_order || "RGB");
    mean = pre.mean != null ? pre.mean.map(Number) : null;
    std = pre.std != null ? pre.std.map(Number) : null;
  }
  const spec = {
    layout: lay, size, channels, dtype: String(dtype), colorOrder: color.toUpperCase(), valueRange, mean, std,
    policy, folded, outputRange: sourceRange, outputColorOrder: String(pre.color_order || "RGB").toUpperCase(),
  };
  spec.affine = affine(spec);
  return spec;
}

// Step 5 as numbers: per-channel a, b with input = px * a + b (float64).
export function affine(spec) {
  const [lo, hi] = spec.valueRange;
  const n = spec.channels;
  const mean = spec.mean || [0];
  const std = spec.std || [1];
  if (![1, n].includes(mean.length) || ![1, n].includes(std.length))
    throw new Error(`preprocess mean/std have ${mean.length}/${std.length} values for a ${n}-channel input`);
  const a = [];
  const b = [];
  for (let i = 0; i < n; i++) {
    const m = mean.length === 1 ? mean[0] : mean[i];
    const s = std.length === 1 ? std[0] : std[i];
    if (s === 0 || hi === lo) throw new Error("preprocess has a zero std or an empty value_range");
    a.push((hi - lo) / 255.0 / s);
    b.push((lo - m) / s);
  }
  return { a, b };
}

// Steps 2-3: {img, h, w, box} — the image at the model's size and the source rectangle used
// (box: [y0, x0, h, w] of the source, for drawing the bicubic comparison of the same pixels).
export function geometry(spec, img, h, w, anySize = false) {
  const full = [0, 0, h, w];
  if (spec.size == null || (anySize && SIZE_KEEPING.includes(spec.policy))) return { img, h, w, box: full };
  const [outH, outW] = spec.size;
  if (h === outH && w === outW) return { img, h, w, box: full };
  if (spec.policy === "pad") {
    const [fh, fw] = fit(h, w, outH, outW);
    const small = resize(img, h, w, 3, fh, fw);
    const out = new Uint8Array(outH * outW * 3);
    const y0 = Math.floor((outH - fh) / 2);
    const x0 = Math.floor((outW - fw) / 2);
    for (let y = 0; y < fh; y++) out.set(small.subarray(y * fw * 3, (y + 1) * fw * 3), ((y0 + y) * outW + x0) * 3);
    return { img: out, h: outH, w: outW, box: full };
  }
  let src = img, sh = h, sw = w, box = full;
  if (spec.policy === "crop" || SIZE_KEEPING.includes(spec.policy)) {
    const [y0, x0, ch, cw] = cropBox(h, w, outH, outW);
    box = [y0, x0, ch, cw];
    if (ch !== h || cw !== w) {
      src = new Uint8Array(ch * cw * 3);
      for (let y = 0; y < ch; y++) src.set(img.subarray(((y0 + y) * w + x0) * 3, ((y0 + y) * w + x0 + cw) * 3), y * cw * 3);
      sh = ch;
      sw = cw;
    }
  }
  return { img: resize(src, sh, sw, 3, outH, outW), h: outH, w: outW, box };
}

// Steps 4-6 on an image at the model's size: a typed array in the input's layout and dtype.
export function encode(spec, img, h, w) {
  const n = spec.channels;
  const hw = h * w;
  let px = img; // HxWxn uint8 in the model's channel order
  if (n === 1) {
    px = new Uint8Array(hw);
    for (let i = 0; i < hw; i++) {
      const g = img[3 * i] * LUMA[0] + img[3 * i + 1] * LUMA[1] + img[3 * i + 2] * LUMA[2];
      px[i] = Math.min(255, Math.max(0, rint(g)));
    }
  } else if (spec.colorOrder === "BGR") {
    px = new Uint8Array(hw * 3);
    for (let i = 0; i < hw; i++) {
      px[3 * i] = img[3 * i + 2];
      px[3 * i + 1] = img[3 * i + 1];
      px[3 * i + 2] = img[3 * i];
    }
  }
  let out;
  const dt = spec.dtype;
  if (dt === "uint8") out = new Uint8Array(hw * n);
  else if (dt === "int8") out = new Int8Array(hw * n);
  else if (dt === "float32" || dt === "float16") out = new Float32Array(hw * n);
  else throw new Error(`cannot feed an image to a ${dt} input`);
  const planar = spec.layout === "NCHW" || spec.layout === "CHW";
  const { a, b } = spec.affine;
  if (out instanceof Float32Array) {
    // one loop per channel, no per-element branches: the same float64 px * a + b
    for (let c = 0; c < n; c++) {
      const ac = a[c], bc = b[c];
      const o0 = planar ? c * hw : c, os = planar ? 1 : n;
      for (let i = 0, j = c, o = o0; i < hw; i++, j += n, o += os) out[o] = px[j] * ac + bc;
    }
    return out;
  }
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < n; c++) {
      const v = px[i * n + c];
      const x = dt === "uint8" ? v : dt === "int8" ? v - 128 : v * a[c] + b[c];
      out[planar ? c * hw + i : i * n + c] = x;
    }
  }
  return out;
}

// An HxWx3 uint8 RGB image -> {tensor, shape, model: {img, h, w, box}}.
export function toTensor(spec, img, h, w, anySize = false) {
  const g = geometry(spec, img, h, w, anySize);
  const data = encode(spec, g.img, g.h, g.w);
  const dims = { N: 1, C: spec.channels, H: g.h, W: g.w };
  const shape = Array.from(spec.layout, (ch) => dims[ch]);
  return { data, shape, model: g };
}

// An image-like output (typed array + shape [+ layout]) -> {rgba: Uint8ClampedArray, h, w}.
export function fromTensor(spec, data, shape, layout) {
  const lay = imageLayout(shape, layout);
  if (lay == null) throw new Error(`an output of shape [${shape}] is not an image`);
  const l = lay.startsWith("N") ? lay.slice(1) : lay;
  const s = lay.startsWith("N") ? shape.slice(1) : shape;
  const h = s[l.indexOf("H")];
  const w = s[l.indexOf("W")];
  const c = s[l.indexOf("C")];
  const planar = l === "CHW";
  const [lo, hi] = spec.outputRange;
  const k = 255.0 / (hi - lo);
  const isU8 = data instanceof Uint8Array;
  const bgr = c === 3 && spec.outputColorOrder === "BGR";
  const rgba = new Uint8ClampedArray(h * w * 4);
  const hw = h * w;
  if (!isU8) {
    // the float case (every SR frame) as one tight loop per channel: rint inlined, same results
    for (let ch = 0; ch < 3; ch++) {
      const srcC = c === 1 ? 0 : bgr ? 2 - ch : ch;
      const off = planar ? srcC * hw : srcC;
      const step = planar ? 1 : c;
      for (let i = 0, j = off, o = ch; i < hw; i++, j += step, o += 4) {
        const x = (data[j] - lo) * k;
        const f = Math.floor(x);
        const d = x - f;
        const r = d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
        rgba[o] = r < 0 ? 0 : r > 255 ? 255 : r;
      }
    }
    for (let o = 3; o < rgba.length; o += 4) rgba[o] = 255;
    return { rgba, h, w };
  }
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const srcC = c === 1 ? 0 : bgr ? 2 - ch : ch;
      const v = data[planar ? srcC * h * w + i : i * c + srcC];
      rgba[4 * i + ch] = isU8 ? v : Math.min(255, Math.max(0, rint((v - lo) * k)));
    }
    rgba[4 * i + 3] = 255;
  }
  return { rgba, h, w };
}
