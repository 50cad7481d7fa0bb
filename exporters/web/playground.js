// The playground page `zoo serve` answers GET / with: every picture comes from the server's
// /v1 API (POST /v1/generate, POST /v1/interpolate) as JSON uint8 images, drawn on a canvas
// with the layout of exporters/images.make_grid, so it can be downloaded and read back.
// URLs are relative, so the page also works behind a proxy under a path prefix.
import { drawGrid, downloadCanvas, showError } from "./common.js";

const $ = (selector) => document.querySelector(selector);
const MAX_SEED = 2 ** 31 - 1;
const TICK_MS = 100;

let meta = null;
let busy = false;

/** The API's answer as JSON; a non-2xx answer throws its {"error": ...} message. */
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error(`the server did not answer ${path}: ${error.message}`);
  }
  const text = await response.text();
  let reply = null;
  try { reply = JSON.parse(text); } catch { /* not JSON: reported below */ }
  if (!response.ok) {
    const message = reply && reply.error ? reply.error : text.slice(0, 300);
    throw new Error(`${response.status} ${response.statusText}: ${message}`);
  }
  if (reply === null) throw new Error(`${path} answered something that is not JSON`);
  return reply;
}

/** An input's number, or undefined when it is empty (the API's default then applies). */
function numberOf(input) {
  return input.value.trim() === "" ? undefined : Number(input.value);
}

/** Canvas pixels enlarged by a whole factor (CSS, pixelated) to fit the page width. */
function fit(canvas) {
  if (!canvas.width) return;
  const room = Math.min(canvas.parentElement.clientWidth, 640);
  const scale = Math.max(1, Math.floor(room / canvas.width));
  canvas.style.width = `${canvas.width * scale}px`;
}

function draw(canvas, reply, columns) {
  drawGrid(canvas, Uint8Array.from(reply.images.flat(3)), reply.shape, columns);
  fit(canvas);
}

/** Runs one request with the buttons off and an elapsed-time line, and shows any error. */
async function run(what, work) {
  if (busy) return;
  busy = true;
  for (const button of [$("#generate"), $("#interpolate")]) button.disabled = true;
  showError($("#error"), "");
  const start = performance.now();
  const label = meta && meta.sampling ? `sampling ${what}…` : `generating ${what}…`;
  const tick = () => {
    $("#status").textContent = `${label} ${((performance.now() - start) / 1000).toFixed(1)} s`;
  };
  tick();
  const timer = setInterval(tick, TICK_MS);
  try {
    const done = await work();
    $("#status").textContent = `${done} in ${((performance.now() - start) / 1000).toFixed(2)} s`;
  } catch (error) {
    $("#status").textContent = "";
    showError($("#error"), error.message);
  } finally {
    clearInterval(timer);
    busy = false;
    for (const button of [$("#generate"), $("#interpolate")]) button.disabled = false;
  }
}

/** Diffusion controls (steps, guidance_scale) for a request, where the model has them. */
function samplingFields() {
  const fields = {};
  if (!meta.sampling) return fields;
  fields.steps = numberOf($("#steps"));
  if (meta.sampling.guidance_scale !== null) fields.guidance_scale = numberOf($("#guidance"));
  return fields;
}

/** A style-based GAN's controls (truncation, mix, edits) for a request, where the model has
 * them; default values are left out, so the request is the plain one. */
function styleFields() {
  const fields = {};
  if (!meta.style) return fields;
  const psi = Number($("#truncation").value);
  if (psi !== 1) fields.truncation = psi;
  if ($("#mix-on").checked) {
    fields.mix = { seed_b: numberOf($("#mix-seed")), from_layer: Number($("#mix-layer").value) };
  }
  const edits = {};
  for (const slider of document.querySelectorAll("#edits input")) {
    if (Number(slider.value) !== 0) edits[slider.dataset.direction] = Number(slider.value);
  }
  if (Object.keys(edits).length) fields.edits = edits;
  return fields;
}

/** A slider's value shown beside it as it moves. */
function echo(slider, output) {
  const show = () => { output.textContent = slider.value; };
  slider.addEventListener("input", show);
  show();
}

/** Truncation, mix (seed B, crossover layer 0..num_ws) and one slider per direction. */
function setUpStyles(style) {
  $("#mix-layer").max = style.num_ws;
  $("#mix-layer").value = Math.floor(style.num_ws / 2);
  echo($("#truncation"), $("#truncation-value"));
  echo($("#mix-layer"), $("#mix-layer-value"));
  for (const [name, share] of Object.entries(style.directions)) {
    const label = document.createElement("label");
    const output = document.createElement("output");
    const slider = Object.assign(document.createElement("input"), {
      type: "range", min: "-3", max: "3", step: "0.25", value: "0",
    });
    slider.id = `edit-${name}`;
    slider.dataset.direction = name;
    label.append(`${name} (${(100 * share).toFixed(1)}%) `, output, slider);
    $("#edits").append(label);
    echo(slider, output);
  }
  $("#style-field").hidden = false;
}

function classOf() {
  return meta.num_classes ? Number($("#label").value) : undefined;
}

async function generate() {
  const n = numberOf($("#n"));
  const request = { n, seed: numberOf($("#seed")), ...samplingFields(), ...styleFields() };
  let columns = null;
  if (meta.num_classes && $("#rows-per-class").checked) {
    // n images for each class, one row each (zoo plot's classes.png layout); a bad n goes
    // to the API as typed, so its error names it
    if (Number.isInteger(n) && n > 0) {
      request.n = n * meta.num_classes;
      request.labels = Array.from({ length: request.n }, (_, i) => Math.floor(i / n));
      columns = n;
    }
  } else if (meta.num_classes) {
    request.labels = classOf();
  }
  const reply = await api("v1/generate", request);
  draw($("#grid"), reply, columns);
  $("#download").disabled = false;
  return `${reply.shape[0]} images`;
}

async function interpolate() {
  const request = {
    seed_a: numberOf($("#interp-seed-a")), seed_b: numberOf($("#interp-seed-b")),
    n: numberOf($("#interp-steps")), label: classOf(), ...samplingFields(), ...styleFields(),
  };
  const reply = await api("v1/interpolate", request);
  draw($("#strip"), reply, reply.shape[0]);
  return `${reply.shape[0]} images from seed ${request.seed_a} to seed ${request.seed_b}`;
}

function describe(m) {
  const [h, w, c] = m.image_shape;
  const parts = [`${m.family}`, `${h}×${w}×${c} images`, `latent ${m.latent_dim}`,
    m.num_classes ? `${m.num_classes} classes` : "unconditional",
    `${m.artifact} (${m.format})`, `at most ${m.max_images_json} images a request`];
  if (m.sampling) parts.push(`${m.sampling.sampler} sampler, ${m.sampling.timesteps} timesteps`);
  if (m.style) parts.push(`${m.style.num_ws} style layers`);
  return parts.join(" · ");
}

/** Shows the controls this model has, with its defaults and limits. */
function setUp(m) {
  meta = m;
  $("#family").textContent = m.family;
  $("#model").textContent = describe(m);
  $("#n").max = m.max_images_json;
  $("#interp-steps").max = m.max_images_json;
  if (m.num_classes) {
    const select = $("#label");
    for (let k = 0; k < m.num_classes; k++) select.add(new Option(String(k), String(k)));
    $("#class-field").hidden = false;
    $("#rows-field").hidden = false;
  }
  if (m.sampling) {
    $("#steps").max = m.sampling.timesteps;
    $("#steps").value = m.sampling.steps;
    $("#steps-field").hidden = false;
    if (m.sampling.guidance_scale !== null) {
      $("#guidance").value = m.sampling.guidance_scale;
      $("#guidance-field").hidden = false;
    }
  }
  if (m.style) setUpStyles(m.style);
  $("#generate").disabled = false;
  $("#interpolate").disabled = false;
}

function newSeed() {
  const value = new Uint32Array(1);
  crypto.getRandomValues(value);
  $("#seed").value = value[0] % MAX_SEED;
}

async function start() {
  $("#controls").addEventListener("submit", (event) => {
    event.preventDefault();
    run("images", generate);
  });
  $("#interp-controls").addEventListener("submit", (event) => {
    event.preventDefault();
    run("the interpolation", interpolate);
  });
  $("#new-seed").addEventListener("click", newSeed);
  $("#download").addEventListener("click", () => {
    downloadCanvas($("#grid"), `genzoo-${meta.family}-seed${$("#seed").value || "random"}.png`);
  });
  window.addEventListener("resize", () => { fit($("#grid")); fit($("#strip")); });
  try {
    setUp(await api("v1/metadata"));
    $("#status").textContent = "";
  } catch (error) {
    $("#model").textContent = "";
    showError($("#error"), `cannot read the model's metadata: ${error.message}`);
  }
}

start();
