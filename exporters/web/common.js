// Shared by the playground page (`zoo serve`, GET /) and the in-browser export
// (`zoo export --formats web`): the same grid layout, latent interpolation and uint8
// conversion as the Python side (exporters/images.py, zoo/plots.py), so a picture drawn here
// equals the PNG the server or `zoo sample` writes for the same images.

/** numpy.rint: round half to even (Math.round rounds half up). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** images.to_uint8: float [-1, 1] -> uint8 [0, 255], clipped, rounded half to even. */
export function toUint8(values) {
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    out[i] = Math.min(255, Math.max(0, roundHalfEven((values[i] + 1) * 127.5)));
  }
  return out;
}

/** zoo.plots.slerp: spherical interpolation from a to b at each fraction in ts.
 *  Returns one Float32Array of ts.length * a.length values (row-major). */
export function slerp(a, b, ts) {
  const d = a.length;
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < d; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  const cosine = dot / (Math.sqrt(na) * Math.sqrt(nb) + 1e-12);
  const omega = Math.acos(Math.min(1, Math.max(-1, cosine)));
  const out = new Float32Array(ts.length * d);
  ts.forEach((t, row) => {
    let wa, wb;
    if (Math.sin(omega) < 1e-6) { wa = 1 - t; wb = t; }
    else { wa = Math.sin((1 - t) * omega) / Math.sin(omega); wb = Math.sin(t * omega) / Math.sin(omega); }
    for (let i = 0; i < d; i++) out[row * d + i] = wa * a[i] + wb * b[i];
  });
  return out;
}

/** Evenly spaced fractions 0 .. 1 (numpy.linspace(0, 1, count)). */
export function linspace(count) {
  return Array.from({ length: count }, (_, i) => (count === 1 ? 0 : i / (count - 1)));
}

/** images.make_grid onto a canvas: uint8 NHWC `pixels` (flat), `shape` [n, h, w, c],
 *  white 2-pixel padding, `columns` wide (default: ceil(sqrt(n))). One canvas pixel per
 *  image pixel; enlarge with CSS (image-rendering: pixelated), never by resampling. */
export function drawGrid(canvas, pixels, shape, columns = null, padding = 2) {
  const [n, h, w, c] = shape;
  columns = columns || Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / columns);
  canvas.width = columns * (w + padding) + padding;
  canvas.height = rows * (h + padding) + padding;
  const context = canvas.getContext("2d");
  const picture = context.createImageData(canvas.width, canvas.height);
  picture.data.fill(255);
  for (let k = 0; k < n; k++) {
    const top = padding + Math.floor(k / columns) * (h + padding);
    const left = padding + (k % columns) * (w + padding);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const source = ((k * h + y) * w + x) * c;
        const target = ((top + y) * canvas.width + left + x) * 4;
        for (let ch = 0; ch < 3; ch++) picture.data[target + ch] = pixels[source + (c === 1 ? 0 : ch)];
      }
    }
  }
  context.putImageData(picture, 0, 0);
}

/** Save what a canvas shows as a PNG file. */
export function downloadCanvas(canvas, filename) {
  const link = document.createElement("a");
  link.download = filename;
  link.href = canvas.toDataURL("image/png");
  link.click();
}

/** Show a failure as text on the page (empty message: hide it). */
export function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}
