// The in-browser page of `zoo export --formats web`: runs generator.onnx with onnxruntime-web
// (WASM) from this folder, with nothing behind it but a static file server. What it feeds the
// model and how it turns outputs into pixels is what manifest.json says: latents from the
// page's own seeded PRNG (mulberry32 + Box-Muller: numpy's generator cannot be reproduced
// here), uint8 and grid layout by common.js (the rules exporters/images.py follows).
import * as ort from "./ort.wasm.min.mjs";
import { drawGrid, downloadCanvas, linspace, showError, slerp, toUint8 } from "./common.js";

// A plain static server sends no cross-origin-isolation headers, so no SharedArrayBuffer and
// no WASM threads; the .mjs/.wasm files come from this page's own folder, never a CDN.
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = new URL("./", import.meta.url).href;

const UINT32 = 2 ** 32;
const $ = (id) => document.getElementById(id);

/** mulberry32: a 32-bit seeded PRNG; returns a function giving uint32 values. */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** (n, dim) standard-normal latents, row-major, from seed (manifest.json "latents"): each
 *  pair of uniforms u1, u2 gives r*cos(2 pi u2), r*sin(2 pi u2), r = sqrt(-2 ln(1 - u1)). */
export function latents(seed, n, dim) {
  const next = mulberry32(seed);
  const out = new Float32Array(n * dim);
  for (let i = 0; i < out.length; i += 2) {
    const u1 = next() / UINT32, u2 = next() / UINT32;
    const r = Math.sqrt(-2 * Math.log(1 - u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** An integer from a form field in [low, high], or an Error naming the value received. */
function integerField(id, what, low, high) {
  const text = $(id).value.trim();
  const value = Number(text);
  if (text === "" || !Number.isInteger(value) || value < low || value > high) {
    throw new Error(`${what} must be an integer from ${low} to ${high}, got ${JSON.stringify(text)}`);
  }
  return value;
}

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

class Page {
  constructor(manifest, session) {
    this.manifest = manifest;
    this.session = session;
    this.shape = manifest.image_shape;
    [this.zName, this.labelName] = manifest.input_names;
    this.outputName = manifest.output_names[0];
    const labelSpec = manifest.inputs[1];
    this.labelType = labelSpec && labelSpec.dtype === "int64" ? "int64" : "int32";
  }

  labelsFor(n) {
    if (!this.manifest.num_classes) return null;
    const choice = $("label").value;
    return Array.from({ length: n }, (_, i) => (choice === "cycle" ? i % this.manifest.num_classes : Number(choice)));
  }

  /** The generator on latents z (Float32Array, n * latent_dim) and labels -> uint8 NHWC. */
  async run(z, labels, n) {
    const feeds = { [this.zName]: new ort.Tensor("float32", z, [n, this.manifest.latent_dim]) };
    if (this.labelName) {
      const data = this.labelType === "int64" ? BigInt64Array.from(labels, BigInt) : Int32Array.from(labels);
      feeds[this.labelName] = new ort.Tensor(this.labelType, data, [n]);
    }
    const outputs = await this.session.run(feeds);
    return toUint8(outputs[this.outputName].data);
  }

  async show(kind, canvas, z, labels, n, columns, detail) {
    const started = performance.now();
    const pixels = await this.run(z, labels, n);
    const ms = performance.now() - started;
    const shape = [n, ...this.shape];
    drawGrid(canvas, pixels, shape, columns);
    canvas.style.width = `${canvas.width * Math.max(1, Math.min(4, Math.floor(720 / canvas.width)))}px`;
    window.genzooLastRun = { kind, z: Array.from(z), labels, shape, columns: columns || null, ms, ...detail };
    return ms;
  }

  async generate() {
    const max = this.manifest.max_images;
    const n = integerField("n", "images", 1, max);
    const seed = integerField("seed", "seed", 0, UINT32 - 1);
    const labels = this.labelsFor(n);
    const ms = await this.show("grid", $("grid"), latents(seed, n, this.manifest.latent_dim), labels, n, null, { seed });
    this.gridSeed = seed;
    $("download").disabled = false;
    return `${n} images in ${ms.toFixed(1)} ms (seed ${seed}${labels ? `, ${describeLabels(labels)}` : ""})`;
  }

  async interpolate() {
    const steps = integerField("steps", "steps", 2, this.manifest.max_images);
    const seed = integerField("seed", "seed", 0, UINT32 - 1);
    const dim = this.manifest.latent_dim;
    const z = slerp(latents(seed, 1, dim), latents((seed + 1) % UINT32, 1, dim), linspace(steps));
    const label = this.manifest.num_classes ? this.labelsFor(1)[0] : null;
    const labels = label === null ? null : Array(steps).fill(label);
    const ms = await this.show("strip", $("strip"), z, labels, steps, steps, { seed });
    const which = label === null ? "" : `, class ${label}`;
    return `${steps} steps from seed ${seed} to ${(seed + 1) % UINT32}${which} in ${ms.toFixed(1)} ms`;
  }
}

function describeLabels(labels) {
  return labels.every((label) => label === labels[0]) ? `class ${labels[0]}` : "each class in turn";
}

/** Run one action: status while it runs, its summary or its error as text afterwards. */
async function act(action, busyText) {
  const body = document.body;
  body.dataset.state = "busy";
  $("status").textContent = busyText;
  showError($("error"), "");
  try {
    $("status").textContent = await action();
  } catch (error) {
    $("status").textContent = "Failed.";
    showError($("error"), error && error.message ? error.message : String(error));
  } finally {
    body.dataset.state = "ready";
    body.dataset.runs = String(Number(body.dataset.runs || 0) + 1);
  }
}

async function load() {
  const response = await fetch("manifest.json");
  if (!response.ok) throw new Error(`manifest.json: HTTP ${response.status}`);
  const manifest = await response.json();
  const model = await fetch(manifest.model);
  if (!model.ok) throw new Error(`${manifest.model}: HTTP ${model.status}`);
  const bytes = new Uint8Array(await model.arrayBuffer());
  const expected = manifest.artifacts[manifest.model].sha256;
  if (globalThis.crypto && crypto.subtle) {  // only in a secure context (https, localhost)
    const found = await sha256Hex(bytes);
    if (found !== expected) {
      throw new Error(`${manifest.model} has sha256 ${found.slice(0, 12)}..., manifest.json says ${expected.slice(0, 12)}... (corrupt or replaced file)`);
    }
  }
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  return new Page(manifest, session);
}

function describe(manifest) {
  $("family").textContent = manifest.family;
  document.title = `genzoo ${manifest.family} in the browser`;
  $("n").max = manifest.max_images;
  $("steps").max = manifest.max_images;
  $("steps").value = manifest.interpolation_steps;
  $("seed").max = UINT32 - 1;
  if (manifest.num_classes) {
    for (let k = 0; k < manifest.num_classes; k++) $("label").add(new Option(`class ${k}`, String(k)));
    $("class-field").hidden = false;
  }
  const note = manifest.latents.note;
  $("seed-note").textContent = `${note[0].toUpperCase()}${note.slice(1)} (PRNG: ${manifest.latents.prng}).`;
  $("recipe").textContent = `Latents: ${manifest.latents.recipe}. Pixels: ${manifest.uint8}.`;
  const info = manifest.artifacts[manifest.model];
  $("versions").textContent = `onnxruntime-web ${manifest.onnxruntime_web.version} (WebAssembly, ${ort.env.wasm.numThreads} thread); ${manifest.model} sha256 ${info.sha256.slice(0, 16)}...`;
}

async function main() {
  let page;
  try {
    page = await load();
  } catch (error) {
    document.body.dataset.state = "error";
    $("status").textContent = "The generator could not be loaded.";
    showError($("error"), error && error.message ? error.message : String(error));
    return;
  }
  describe(page.manifest);
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => page.generate(), "Generating...");
  });
  $("new-seed").addEventListener("click", () => {
    $("seed").value = String(crypto.getRandomValues(new Uint32Array(1))[0]);
    act(() => page.generate(), "Generating...");
  });
  $("interpolate").addEventListener("click", () => act(() => page.interpolate(), "Interpolating..."));
  $("download").addEventListener("click", () => downloadCanvas($("grid"), `${page.manifest.family}-seed${page.gridSeed}.png`));
  await act(() => page.generate(), "Generating...");
}

main();
