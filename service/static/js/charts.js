// Small SVG charts for the dashboard: line, scatter (with optional lines), heatmap and interval.
// Every mark carries a data attribute (data-series, data-trial, data-cell, data-x) so tests and screen
// readers can tell what was drawn. No dependencies; works offline; no style attributes (the CSP).
//
// Colour is never the only cue: markers differ by shape (data-shape), training and validation lines
// by dash and by hollow or filled markers, and heatmap cells carry their value as text. Each chart is
// one tab stop: the arrow keys move a highlight between its points or cells, a caption under the
// chart (aria-live) reads the highlighted one, and Enter, like a click, opens its trial.

const NS = "http://www.w3.org/2000/svg";
// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"];
// Marker shapes, used alongside the palette so that no two series differ by colour alone.
export const SHAPES = ["circle", "square", "triangle", "diamond", "triangle-down", "plus", "star", "hexagon"];
const OUTLINE = "#1d2430";

let uid = 0; // for ids (SVG patterns) unique on the page

function el(name, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

const f1 = (v) => Number(v).toFixed(1);

/** A marker of `shape` centred on (cx, cy), of about the area of a circle of radius r; data-shape names it. */
export function marker(parent, shape, cx, cy, r, attrs = {}) {
  const poly = (pts) => el("polygon", { points: pts.map(([a, b]) => `${f1(cx + a * r)},${f1(cy + b * r)}`).join(" "), ...attrs, "data-shape": shape }, parent);
  const ring = (n, radii, turn = 0) => poly(Array.from({ length: n }, (_, i) => {
    const angle = turn + (i * 2 * Math.PI) / n, rr = radii[i % radii.length];
    return [rr * Math.sin(angle), -rr * Math.cos(angle)];
  }));
  switch (shape) {
    case "square": return el("rect", { x: f1(cx - 0.89 * r), y: f1(cy - 0.89 * r), width: f1(1.78 * r), height: f1(1.78 * r), ...attrs, "data-shape": shape }, parent);
    case "triangle": return poly([[0, -1.45], [1.3, 0.8], [-1.3, 0.8]]);
    case "triangle-down": return poly([[0, 1.45], [1.3, -0.8], [-1.3, -0.8]]);
    case "diamond": return poly([[0, -1.35], [1.3, 0], [0, 1.35], [-1.3, 0]]);
    case "plus": {
      const a = 0.42, b = 1.25;
      return poly([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]);
    }
    case "star": return ring(10, [1.55, 0.68]);
    case "hexagon": return ring(6, [1.12], Math.PI / 6);
    default: return el("circle", { cx: f1(cx), cy: f1(cy), r, ...attrs, "data-shape": "circle" }, parent);
  }
}

export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const span = max - min;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
  const err = (count * step0) / span;
  const step = step0 * (err <= 0.15 ? 10 : err <= 0.35 ? 5 : err <= 0.75 ? 2 : 1);
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function extent(values, pad = 0.05) {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (lo === hi) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

// The drawing's size in SVG units: the container's own width on a narrow screen (so that text keeps
// its size instead of shrinking with the picture), else 640 wide.
function size(container, opts) {
  const avail = Math.round(container.clientWidth || 0);
  const width = opts.width || (avail >= 300 && avail < 640 ? avail : 640);
  return { width, height: opts.height || (width < 500 ? 270 : 300) };
}

// Where a chart's keyboard highlight was before a redraw (the job page redraws while a job runs).
function before(container) {
  const active = document.activeElement;
  return { focused: Boolean(active && active.tagName === "svg" && container.contains(active)), key: container.dataset.chartActive };
}

// Axes, gridlines and labels; returns scales and the plot group.
function frame(container, opts) {
  const { width, height } = size(container, opts);
  const m = opts.margin || { top: 12, right: 16, bottom: 44, left: 64 };
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": opts.title || "" }, container);
  const [x0, x1] = opts.xDomain, [y0, y1] = opts.yDomain;
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  const x = (v) => m.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const y = (v) => m.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const axes = el("g", { class: "axes" }, svg);
  const xTicks = (opts.xTicks || niceTicks(x0, x1, pw < 400 ? 4 : 6)).filter((t) => t >= x0 && t <= x1);
  for (const t of xTicks) {
    el("line", { x1: x(t), x2: x(t), y1: m.top, y2: m.top + ph, stroke: "#eef0f3" }, axes);
    el("text", { x: x(t), y: m.top + ph + 16, "text-anchor": "middle" }, axes, opts.xFormat ? opts.xFormat(t) : formatNumber(t));
  }
  for (const t of opts.yTicks || niceTicks(y0, y1, 5)) {
    if (t < y0 || t > y1) continue;
    el("line", { x1: m.left, x2: m.left + pw, y1: y(t), y2: y(t), stroke: "#eef0f3" }, axes);
    el("text", { x: m.left - 6, y: y(t) + 4, "text-anchor": "end" }, axes, formatNumber(t));
  }
  el("rect", { x: m.left, y: m.top, width: pw, height: ph, fill: "none", stroke: "#c5cbd3" }, axes);
  el("text", { class: "axis-label", x: m.left + pw / 2, y: height - 6, "text-anchor": "middle" }, axes, opts.xLabel);
  el("text", { class: "axis-label", transform: `translate(14 ${m.top + ph / 2}) rotate(-90)`, "text-anchor": "middle" }, axes, opts.yLabel);
  const plot = el("g", { class: "marks" }, svg);
  return { svg, plot, x, y, width, height };
}

// A legend swatch: a short line (solid or dashed) and/or a marker, a hatched box, or a filled box.
function swatch(item) {
  const svg = el("svg", { class: "swatch", viewBox: "0 0 28 14", width: 28, height: 14, "aria-hidden": "true", focusable: "false" });
  if (item.hatch) {
    const id = hatch(svg);
    el("rect", { x: 1, y: 1, width: 26, height: 12, fill: `url(#${id})`, stroke: "#98a2b3", "stroke-dasharray": "3 2" }, svg);
  } else if (item.fill) {
    el("rect", { x: 1, y: 1, width: 26, height: 12, fill: item.fill, stroke: "#c5cbd3" }, svg);
  }
  if (item.line) el("line", { x1: 1, x2: 27, y1: 7, y2: 7, stroke: item.color, "stroke-width": 2, "stroke-dasharray": item.dashed ? "4 3" : null }, svg);
  if (item.shape) {
    marker(svg, item.shape, 14, 7, 4.2, item.hollow
      ? { fill: "#fff", stroke: item.color, "stroke-width": 1.5 }
      : { fill: item.color, stroke: OUTLINE, "stroke-width": 0.7 });
  }
  return svg;
}

function legend(container, items) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const item of items) {
    const span = document.createElement("span");
    span.append(swatch(item), item.label);
    box.appendChild(span);
  }
  container.appendChild(box);
}

// A diagonal hatch for untried cells, defined in `svg`; returns its id.
function hatch(svg) {
  const id = `chart-hatch-${++uid}`;
  const pattern = el("pattern", { id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" }, el("defs", {}, svg));
  el("rect", { width: 6, height: 6, fill: "#f4f5f7" }, pattern);
  el("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#b8c0cc", "stroke-width": 2 }, pattern);
  return id;
}

function empty(container, message) {
  container.replaceChildren();
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = message;
  container.appendChild(p);
}

const NAV_KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"]);

/**
 * Make `svg` one tab stop. Its items ([{key, node, cx, cy, r} or {..., w, h} for a box, text, href])
 * are not tab stops: the arrow keys move a highlight between them (`move(index, key)` gives the next
 * index), a caption under the chart reads the highlighted one, and Enter or a click opens its href.
 */
function navigable(container, svg, items, move, { label, noun, prior }) {
  const readout = document.createElement("p");
  readout.className = "chart-readout muted";
  readout.setAttribute("aria-live", "polite");
  const hint = `Keyboard: Tab to the chart, then the arrow keys read its ${noun}s${items.some((it) => it.href) ? "; Enter opens a trial" : ""}.`;
  readout.textContent = hint;
  const read = (text) => { readout.textContent = text; readout.classList.remove("muted"); };
  container.appendChild(readout);
  svg.setAttribute("tabindex", "0");
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", `${label}: ${items.length} ${noun}${items.length === 1 ? "" : "s"}. ${hint.replace("Keyboard: Tab to the chart, then the", "The")}`);
  items.forEach((it, i) => it.node?.setAttribute("data-i", i));
  const ring = el("rect", { class: "focus-ring", visibility: "hidden", fill: "none" }, svg);
  let current = -1;
  const show = (i) => {
    current = i;
    const it = items[i];
    const r = it.w ? 0 : (it.r || 4) + 3.5;
    const w = it.w || 2 * r, h = it.h || 2 * r;
    for (const [k, v] of Object.entries({ x: f1(it.cx - w / 2), y: f1(it.cy - h / 2), width: f1(w), height: f1(h), rx: it.w ? 2 : f1(r) })) ring.setAttribute(k, v);
    ring.setAttribute("visibility", "visible");
    read(it.text);
    container.dataset.chartActive = it.key;
  };
  svg.addEventListener("focus", () => { if (current >= 0 || svg.matches(":focus-visible")) show(current >= 0 ? current : 0); });
  svg.addEventListener("blur", () => ring.setAttribute("visibility", "hidden"));
  svg.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      if (current >= 0 && items[current].href) { event.preventDefault(); window.location.assign(items[current].href); }
      return;
    }
    if (!NAV_KEYS.has(event.key) || !items.length) return;
    event.preventDefault();
    show(current < 0 ? 0 : move(current, event.key) ?? current);
  });
  const itemOf = (event) => {
    const node = event.target.closest?.("[data-i]");
    return node && svg.contains(node) ? items[Number(node.getAttribute("data-i"))] : null;
  };
  // A click opens the trial as its link did; with Ctrl, Cmd or Shift, or the middle button, in a new tab.
  const open = (event) => {
    const it = itemOf(event);
    if (!it?.href) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1) window.open(it.href, "_blank", "noopener");
    else window.location.assign(it.href);
  };
  svg.addEventListener("click", open);
  svg.addEventListener("auxclick", (event) => { if (event.button === 1) open(event); });
  svg.addEventListener("pointerover", (event) => { const it = itemOf(event); if (it) read(it.text); });
  // Back to where the highlight was before a redraw, and to the focus if the chart had it.
  const again = items.findIndex((it) => it.key === prior?.key);
  if (again >= 0) {
    current = again;
    if (prior.focused) { svg.focus({ preventScroll: true }); show(again); } else read(items[again].text);
  }
  return svg;
}

/** Step through `order` (item indexes) from the item at `i`, by `step`, stopping at its ends. */
function stepIn(order, i, step) {
  const at = order.indexOf(i);
  return order[Math.min(order.length - 1, Math.max(0, at + step))];
}

/**
 * Lines: series = [{key, label, color, dashed, hollow, shape, href, points: [[x, y], ...]}]. Each
 * point is a marker (data-x) of the series' shape, hollow for `hollow`; with many points only every
 * few are shown, but each can be read from the keyboard.
 */
export function lineChart(container, { series, xLabel, yLabel, title, emptyText = "No data yet." }) {
  const prior = before(container);
  const all = series.flatMap((s) => s.points);
  const finite = all.filter((p) => Number.isFinite(p[1]));
  // A diverged run's history is all NaN: say so, rather than draw empty 0-1 axes and a legend.
  if (!finite.length) return empty(container, all.length ? "Every value is NaN or infinite: nothing to draw." : emptyText);
  const xs = all.map((p) => p[0]), ys = finite.map((p) => p[1]);
  const xDomain = [Math.min(...xs), Math.max(Math.max(...xs), Math.min(...xs) + 1)];
  const integerTicks = niceTicks(xDomain[0], xDomain[1], 8).filter((t) => Number.isInteger(t));
  const { svg, plot, x, y } = frame(container, { xDomain, yDomain: extent(ys), xLabel, yLabel, title, xTicks: integerTicks });
  const items = [], rows = [];
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${f1(x(p[0]))},${f1(y(p[1]))}`).join("");
    const g = el("g", { "data-series": s.key }, plot);
    el("title", {}, g, s.label);
    el("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "6 4" : null }, g);
    const every = Math.ceil(pts.length / 15);
    const row = [];
    pts.forEach((p, i) => {
      const shown = i % every === 0 || i === pts.length - 1;
      const attrs = s.hollow ? { fill: "#fff", stroke: s.color, "stroke-width": 1.5 } : { fill: s.color, stroke: "#fff", "stroke-width": 0.8 };
      const node = marker(g, s.shape || "circle", x(p[0]), y(p[1]), 3, { ...attrs, "data-x": p[0], visibility: shown ? null : "hidden" });
      row.push(items.length);
      items.push({ key: `${s.key}@${p[0]}`, node, cx: x(p[0]), cy: y(p[1]), r: 3, x: p[0], href: s.href, text: `${s.label}: ${xLabel} ${p[0]}, ${formatNumber(p[1])}` });
    });
    rows.push(row);
  }
  // Left and right: along a line; up and down: to the next line, at the nearest x.
  const rowOf = new Map(rows.flatMap((row, r) => row.map((i) => [i, r])));
  const move = (i, key) => {
    const row = rows[rowOf.get(i)];
    if (key === "ArrowRight" || key === "ArrowLeft") return stepIn(row, i, key === "ArrowRight" ? 1 : -1);
    if (key === "Home" || key === "End") return key === "Home" ? row[0] : row[row.length - 1];
    const next = rows[Math.min(rows.length - 1, Math.max(0, rowOf.get(i) + (key === "ArrowDown" ? 1 : -1)))];
    return next.reduce((a, b) => (Math.abs(items[b].x - items[i].x) < Math.abs(items[a].x - items[i].x) ? b : a));
  };
  navigable(container, svg, items, move, { label: title || yLabel, noun: "point", prior });
  legend(container, series.filter((s) => s.points.length).map((s) => ({ label: s.label, color: s.color, dashed: s.dashed, line: true, shape: s.shape || "circle", hollow: s.hollow })));
}

/**
 * Points: [{key, x, y, color, shape, title, href}], optional lines: [{key, label, color, points, step}].
 * Each point is a marker with data-trial=key and data-shape; with href a click (or Enter) opens it.
 * `jitter` (px): points sharing an x are spread that far either side, in the order of their keys, so
 * that a grid's repeated values do not hide one another.
 */
export function scatterChart(container, { points, lines = [], xLabel, yLabel, title, legendItems = [], xDomain, xTicks, xFormat, integerX = false, jitter = 0, emptyText = "No completed trials yet." }) {
  const prior = before(container);
  const finite = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (!finite.length) return empty(container, emptyText);
  const ys = finite.map((p) => p.y).concat(lines.flatMap((l) => l.points.map((p) => p[1])));
  const domain = xDomain || extent(finite.map((p) => p.x));
  const ticks = xTicks || (integerX ? niceTicks(domain[0], domain[1], 8).filter(Number.isInteger) : undefined);
  const { svg, plot, x, y } = frame(container, { xDomain: domain, yDomain: extent(ys), xLabel, yLabel, title, xTicks: ticks, xFormat });
  for (const line of lines) {
    const pts = line.points;
    if (!pts.length) continue;
    let d = `M${f1(x(pts[0][0]))},${f1(y(pts[0][1]))}`;
    for (let i = 1; i < pts.length; i++) {
      if (line.step) d += `H${f1(x(pts[i][0]))}`;
      d += `${line.step ? "V" : "L"}${line.step ? f1(y(pts[i][1])) : `${f1(x(pts[i][0]))},${f1(y(pts[i][1]))}`}`;
    }
    const g = el("g", { "data-series": line.key }, plot);
    el("path", { d, fill: "none", stroke: line.color, "stroke-width": 2 }, g);
  }
  const offset = new Map();
  if (jitter) {
    const groups = new Map();
    for (const p of finite) { if (!groups.has(p.x)) groups.set(p.x, []); groups.get(p.x).push(p); }
    const px = [...groups.keys()].map(x).sort((a, b) => a - b);
    const gap = px.slice(1).reduce((g, v, i) => Math.min(g, v - px[i]), Infinity);
    const spread = Math.min(jitter, gap * 0.3);
    for (const group of groups.values()) {
      group.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      group.forEach((p, k) => offset.set(p, group.length > 1 ? (k / (group.length - 1) - 0.5) * 2 * spread : 0));
    }
  }
  const r = finite.length > 300 ? 3 : 4.5;
  const items = finite.map((p) => {
    const cx = x(p.x) + (offset.get(p) || 0), cy = y(p.y);
    const node = marker(plot, p.shape || "circle", cx, cy, r, {
      fill: p.color, "fill-opacity": 0.8, stroke: OUTLINE, "stroke-width": 0.7, "stroke-opacity": 0.8, "data-trial": p.key, class: p.href ? "link" : null,
    });
    el("title", {}, node, p.title);
    return { key: String(p.key), node, cx, cy, r, x: p.x, y: p.y, href: p.href, text: p.title };
  });
  // Left and right: in order of x; up and down: to the next higher or lower value.
  const order = (a, b) => items.map((_, i) => i).sort((i, j) => items[i][a] - items[j][a] || items[i][b] - items[j][b]);
  const byX = order("x", "y"), byY = order("y", "x");
  const move = (i, key) => ({
    ArrowRight: () => stepIn(byX, i, 1), ArrowLeft: () => stepIn(byX, i, -1),
    ArrowUp: () => stepIn(byY, i, 1), ArrowDown: () => stepIn(byY, i, -1),
    Home: () => byX[0], End: () => byX[byX.length - 1],
  })[key]();
  navigable(container, svg, items, move, { label: title || yLabel, noun: "point", prior });
  legend(container, legendItems.map((it) => ({ shape: "circle", ...it })).concat(lines.map((l) => ({ label: l.label, color: l.color, line: true }))));
}

// How a heatmap shades values: linear on the score's own scale (from 0 for a loss, over 0-1 for a
// fraction to maximize), or log where positive values span more than two orders of magnitude. A value
// far past the others on the worse side (beyond the quartile + 3 IQR fence) is clipped to the palest
// shade, so that one diverged trial does not wash out the rest. Returns goodness(v) in 0..1 (1 best)
// and a sentence for the legend.
function shading(values, better) {
  const lo = Math.min(...values), hi = Math.max(...values);
  const log = lo > 0 && hi / lo > 100;
  const t = log ? Math.log10 : (v) => v;
  const sorted = values.map(t).sort((a, b) => a - b);
  const q = (p) => { const k = (sorted.length - 1) * p, a = Math.floor(k); return sorted[a] + (sorted[Math.ceil(k)] - sorted[a]) * (k - a); };
  let worst = better === "min" ? hi : lo;
  let clipped = 0;
  if (values.length >= 4) {
    const iqr = q(0.75) - q(0.25);
    const fence = better === "min" ? q(0.75) + 3 * iqr : q(0.25) - 3 * iqr;
    const inside = values.filter((v) => (better === "min" ? t(v) <= fence : t(v) >= fence));
    if (iqr > 0 && inside.length < values.length) {
      clipped = values.length - inside.length;
      worst = better === "min" ? Math.max(...inside) : Math.min(...inside);
    }
  }
  let anchor = better === "min" ? lo : hi;
  if (!log && lo >= 0 && better === "min") anchor = 0;
  if (!log && lo >= 0 && hi <= 1 && better === "max") { anchor = 1; if (!clipped) worst = 0; }
  const span = t(anchor) - t(worst);
  const goodness = (v) => (span === 0 ? 1 : Math.min(1, Math.max(0, (t(v) - t(worst)) / span)));
  const how = `${log ? "log" : "linear"} scale, darkest at ${formatNumber(anchor)}, palest at ${formatNumber(worst)}`;
  const cut = clipped ? `; ${clipped} cell${clipped === 1 ? "" : "s"} worse than that drawn palest too` : "";
  return { goodness, legend: `Shade: ${how}${cut}.` };
}

/**
 * Heatmap over xLabels x yLabels: cells [{xi, yi, value, title, href}] tried; untried [{xi, yi, title}]
 * drawn hatched and marked "untried"; impossible [{xi, yi, title}] (no trial can fall there) left blank
 * but for "n/a". `better` is "min" or "max". Values are shown in the cells, shaded on their own scale.
 */
export function heatmap(container, { xLabels, yLabels, cells, untried = [], impossible = [], impossibleLabel = "n/a: not possible", xLabel, yLabel, valueLabel, better = "min", title }) {
  const prior = before(container);
  const values = cells.map((c) => c.value).filter(Number.isFinite);
  if (!values.length) return empty(container, "No completed trials yet.");
  const { width, height } = size(container, {});
  const m = { top: 12, right: 16, bottom: 44, left: 64 };
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}` }, container);
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  const cw = pw / xLabels.length, ch = ph / yLabels.length;
  const lo = Math.min(...values), hi = Math.max(...values);
  const { goodness, legend: scaleNote } = shading(values, better);
  // Darker is better, whichever the direction.
  const shade = (v) => `hsl(214 70% ${Math.round(95 - goodness(v) * 63)}%)`;
  // Labels where they fit: 11 px text (about 6.5 px a character), else 9 px, else none (the keyboard
  // still reads every cell); one size for all the values, so that none is missing among the rest.
  const fit = (chars) => (ch <= 14 ? null : chars * 6.5 < cw - 4 && ch > 18 ? "" : chars * 5.4 < cw - 3 ? " small" : null);
  const valueFit = fit(Math.max(...cells.filter((c) => Number.isFinite(c.value)).map((c) => formatNumber(c.value).length)));
  const pattern = untried.length ? hatch(svg) : null;
  const g = el("g", { class: "marks" }, svg);
  const items = [];
  const at = (xi, yi) => [m.left + xi * cw, m.top + ph - (yi + 1) * ch];
  const label = (rx, ry, text, cls, size = fit(text.length)) => (size === null ? null : el("text", { x: f1(rx + cw / 2), y: f1(ry + ch / 2 + 4), "text-anchor": "middle", class: cls + size }, g, text));
  const item = (c, node, text, href) => {
    const [rx, ry] = at(c.xi, c.yi);
    items.push({ key: `${c.xi},${c.yi}`, xi: c.xi, yi: c.yi, node, cx: rx + cw / 2, cy: ry + ch / 2, w: cw, h: ch, text, href });
  };
  for (const c of cells) {
    if (!Number.isFinite(c.value)) continue;
    const [rx, ry] = at(c.xi, c.yi);
    const rect = el("rect", { x: f1(rx + 1), y: f1(ry + 1), width: f1(cw - 2), height: f1(ch - 2), fill: shade(c.value), "data-cell": `${c.xi},${c.yi}`, "data-value": c.value, class: c.href ? "link" : null }, g);
    el("title", {}, rect, c.title);
    // A class, not a style attribute: the Content-Security-Policy allows no inline styles.
    label(rx, ry, formatNumber(c.value), goodness(c.value) > 0.6 ? "cell-value light" : "cell-value", valueFit);
    item(c, rect, c.title, c.href);
  }
  for (const c of untried) {
    const [rx, ry] = at(c.xi, c.yi);
    const rect = el("rect", { x: f1(rx + 1), y: f1(ry + 1), width: f1(cw - 2), height: f1(ch - 2), fill: `url(#${pattern})`, stroke: "#98a2b3", "stroke-dasharray": "3 2", "data-untried": `${c.xi},${c.yi}` }, g);
    el("title", {}, rect, c.title);
    label(rx, ry, "untried", "cell-note");
    item(c, rect, c.title);
  }
  for (const c of impossible) {
    const [rx, ry] = at(c.xi, c.yi);
    const node = label(rx, ry, "n/a", "cell-na");
    node?.setAttribute("data-na", `${c.xi},${c.yi}`);
    item(c, node, c.title);
  }
  const axes = el("g", { class: "axes" }, svg);
  const every = Math.ceil(xLabels.length / (pw < 400 ? 5 : 10));
  xLabels.forEach((l, i) => {
    if (i % every === 0) el("text", { x: m.left + (i + 0.5) * cw, y: m.top + ph + 16, "text-anchor": "middle" }, axes, l);
  });
  yLabels.forEach((l, i) => el("text", { x: m.left - 6, y: m.top + ph - (i + 0.5) * ch + 4, "text-anchor": "end" }, axes, l));
  el("rect", { x: m.left, y: m.top, width: pw, height: ph, fill: "none", stroke: "#c5cbd3" }, axes);
  el("text", { class: "axis-label", x: m.left + pw / 2, y: height - 6, "text-anchor": "middle" }, axes, xLabel);
  el("text", { class: "axis-label", transform: `translate(14 ${m.top + ph / 2}) rotate(-90)`, "text-anchor": "middle" }, axes, yLabel);
  // The arrow keys move over the grid: right and left along the x axis, up and down along the y.
  const byPlace = new Map(items.map((it, i) => [it.key, i]));
  const move = (i, key) => {
    const { xi, yi } = items[i];
    const [dx, dy] = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] }[key] || [0, 0];
    if (key === "Home" || key === "End") {
      const row = items.filter((it) => it.yi === yi).sort((a, b) => a.xi - b.xi);
      return byPlace.get((key === "Home" ? row[0] : row[row.length - 1]).key);
    }
    // The next cell drawn in that direction (skipping any gap), else stay.
    for (let nx = xi + dx, ny = yi + dy; nx >= 0 && ny >= 0 && nx < xLabels.length && ny < yLabels.length; nx += dx, ny += dy) {
      if (byPlace.has(`${nx},${ny}`)) return byPlace.get(`${nx},${ny}`);
    }
    return i;
  };
  items.sort((a, b) => a.yi - b.yi || a.xi - b.xi);
  byPlace.clear();
  items.forEach((it, i) => byPlace.set(it.key, i));
  navigable(container, svg, items, move, { label: title || valueLabel, noun: "cell", prior });
  const best = better === "min" ? lo : hi, worst = better === "min" ? hi : lo;
  legend(container, [
    { label: `best ${valueLabel}: ${formatNumber(best)}`, fill: shade(best) },
    { label: `worst: ${formatNumber(worst)}`, fill: shade(worst) },
    ...(untried.length ? [{ label: "untried", hatch: true }] : []),
  ]);
  const note = document.createElement("p");
  note.className = "chart-note muted";
  note.textContent = `${scaleNote}${impossible.length ? ` ${impossibleLabel}.` : ""}`;
  container.appendChild(note);
}

/**
 * Dot and whisker, one row per level: rows [{key, label, estimate, low, high, title}], the whisker
 * spanning low..high (left out where either is null). Each row's group carries data-level=key.
 */
export function intervalChart(container, { rows, xLabel, title }) {
  const finite = rows.filter((r) => Number.isFinite(r.estimate));
  if (!finite.length) return empty(container, "No completed trials yet.");
  const width = 360, row = 24, m = { top: 8, right: 12, bottom: 40, left: 104 };
  const height = m.top + m.bottom + row * finite.length;
  const xs = finite.flatMap((r) => [r.estimate, r.low, r.high]);
  const { plot, x } = frame(container, {
    width, height, margin: m, xDomain: extent(xs), yDomain: [0, 1], yTicks: [], xLabel, yLabel: "", title,
  });
  finite.forEach((r, i) => {
    const cy = m.top + row * (i + 0.5);
    const g = el("g", { "data-level": r.key }, plot);
    el("title", {}, g, r.title);
    el("text", { x: m.left - 6, y: cy + 4, "text-anchor": "end", class: "level-label" }, g, r.label);
    if (Number.isFinite(r.low) && Number.isFinite(r.high)) {
      el("line", { x1: x(r.low), x2: x(r.high), y1: cy, y2: cy, stroke: PALETTE[0], "stroke-width": 2 }, g);
      for (const end of [r.low, r.high]) el("line", { x1: x(end), x2: x(end), y1: cy - 5, y2: cy + 5, stroke: PALETTE[0], "stroke-width": 2 }, g);
    }
    el("circle", { cx: x(r.estimate), cy, r: 4.5, fill: PALETTE[0], stroke: "#fff", "stroke-width": 1 }, g);
  });
}
