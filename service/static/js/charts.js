// Small SVG charts for the dashboard: line, scatter (with optional lines) and heatmap.
// Every mark carries a data attribute (data-series, data-trial, data-cell) so tests and screen
// readers can tell what was drawn. No dependencies; works offline.

const NS = "http://www.w3.org/2000/svg";
// Okabe-Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"];

function el(name, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
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

// Axes, gridlines and labels; returns scales and the plot group.
function frame(container, opts) {
  const width = opts.width || 640, height = opts.height || 300;
  const m = opts.margin || { top: 12, right: 16, bottom: 44, left: 64 };
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": opts.title || "" }, container);
  const [x0, x1] = opts.xDomain, [y0, y1] = opts.yDomain;
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  const x = (v) => m.left + ((v - x0) / (x1 - x0 || 1)) * pw;
  const y = (v) => m.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  const axes = el("g", { class: "axes" }, svg);
  for (const t of opts.xTicks || niceTicks(x0, x1, 6)) {
    if (t < x0 || t > x1) continue;
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
  return { svg, plot, x, y };
}

function legend(container, items) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const item of items) {
    const span = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch" + (item.dashed ? " dashed" : "");
    swatch.style.background = item.color;
    swatch.style.color = item.color;
    span.append(swatch, item.label);
    box.appendChild(span);
  }
  container.appendChild(box);
}

function empty(container, message) {
  container.replaceChildren();
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = message;
  container.appendChild(p);
}

/** Lines: series = [{key, label, color, dashed, points: [[x, y], ...]}]. */
export function lineChart(container, { series, xLabel, yLabel, title, emptyText = "No data yet." }) {
  const all = series.flatMap((s) => s.points);
  const finite = all.filter((p) => Number.isFinite(p[1]));
  // A diverged run's history is all NaN: say so, rather than draw empty 0-1 axes and a legend.
  if (!finite.length) return empty(container, all.length ? "Every value is NaN or infinite: nothing to draw." : emptyText);
  const xs = all.map((p) => p[0]), ys = finite.map((p) => p[1]);
  const xDomain = [Math.min(...xs), Math.max(Math.max(...xs), Math.min(...xs) + 1)];
  const integerTicks = niceTicks(xDomain[0], xDomain[1], 8).filter((t) => Number.isInteger(t));
  const { plot, x, y } = frame(container, { xDomain, yDomain: extent(ys), xLabel, yLabel, title, xTicks: integerTicks });
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    const g = el("g", { "data-series": s.key }, plot);
    el("title", {}, g, s.label);
    el("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "6 4" : null }, g);
    for (const p of pts) el("circle", { cx: x(p[0]), cy: y(p[1]), r: pts.length > 60 ? 0 : 2.5, fill: s.color }, g);
  }
  legend(container, series.filter((s) => s.points.length));
}

/**
 * Points: [{key, x, y, color, title, href}], optional lines: [{key, label, color, points, step}].
 * Each point is a circle with data-trial=key; with href it is a link.
 */
export function scatterChart(container, { points, lines = [], xLabel, yLabel, title, legendItems = [], xDomain, xTicks, xFormat, integerX = false, emptyText = "No completed trials yet." }) {
  const finite = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (!finite.length) return empty(container, emptyText);
  const ys = finite.map((p) => p.y).concat(lines.flatMap((l) => l.points.map((p) => p[1])));
  const domain = xDomain || extent(finite.map((p) => p.x));
  const ticks = xTicks || (integerX ? niceTicks(domain[0], domain[1], 8).filter(Number.isInteger) : undefined);
  const { plot, x, y } = frame(container, { xDomain: domain, yDomain: extent(ys), xLabel, yLabel, title, xTicks: ticks, xFormat });
  for (const line of lines) {
    const pts = line.points;
    if (!pts.length) continue;
    let d = `M${x(pts[0][0]).toFixed(1)},${y(pts[0][1]).toFixed(1)}`;
    for (let i = 1; i < pts.length; i++) {
      if (line.step) d += `H${x(pts[i][0]).toFixed(1)}`;
      d += `${line.step ? "V" : "L"}${line.step ? y(pts[i][1]).toFixed(1) : `${x(pts[i][0]).toFixed(1)},${y(pts[i][1]).toFixed(1)}`}`;
    }
    const g = el("g", { "data-series": line.key }, plot);
    el("path", { d, fill: "none", stroke: line.color, "stroke-width": 2 }, g);
  }
  const r = finite.length > 300 ? 3 : 4.5;
  for (const p of finite) {
    const parent = p.href ? el("a", { href: p.href }, plot) : plot;
    const c = el("circle", { cx: x(p.x).toFixed(1), cy: y(p.y).toFixed(1), r, fill: p.color, "fill-opacity": 0.8, stroke: "#fff", "stroke-width": 0.8, "data-trial": p.key }, parent);
    el("title", {}, c, p.title);
  }
  legend(container, legendItems.concat(lines.map((l) => ({ label: l.label, color: l.color }))));
}

/** Heatmap: cells [{xi, yi, value, title}] over xLabels x yLabels; `better` is "min" or "max". */
export function heatmap(container, { xLabels, yLabels, cells, xLabel, yLabel, valueLabel, better = "min", title }) {
  const values = cells.map((c) => c.value).filter(Number.isFinite);
  if (!values.length) return empty(container, "No completed trials yet.");
  const width = 640, height = 300, m = { top: 12, right: 16, bottom: 44, left: 64 };
  container.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title || "" }, container);
  const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
  const cw = pw / xLabels.length, ch = ph / yLabels.length;
  const lo = Math.min(...values), hi = Math.max(...values);
  // Darker is better, whichever the direction. Shade by rank, not by value, so that one diverged
  // trial does not wash every other cell into the same colour.
  const ranked = [...values].sort((a, b) => (better === "min" ? b - a : a - b));
  const goodness = (v) => (ranked.length === 1 ? 1 : ranked.indexOf(v) / (ranked.length - 1));
  const shade = (v) => `hsl(214 70% ${92 - goodness(v) * 62}%)`;
  const g = el("g", { class: "marks" }, svg);
  for (const c of cells) {
    if (!Number.isFinite(c.value)) continue;
    const rx = m.left + c.xi * cw, ry = m.top + ph - (c.yi + 1) * ch;
    const rect = el("rect", { x: rx + 1, y: ry + 1, width: cw - 2, height: ch - 2, fill: shade(c.value), "data-cell": `${c.xi},${c.yi}` }, g);
    el("title", {}, rect, c.title);
    if (cw > 38 && ch > 18) {
      const light = goodness(c.value) > 0.55;
      // A class, not a style attribute: the Content-Security-Policy allows no inline styles.
      el("text", { x: rx + cw / 2, y: ry + ch / 2 + 4, "text-anchor": "middle", class: light ? "cell-value light" : "cell-value" }, g, formatNumber(c.value));
    }
  }
  const axes = el("g", { class: "axes" }, svg);
  const every = Math.ceil(xLabels.length / 10);
  xLabels.forEach((label, i) => {
    if (i % every === 0) el("text", { x: m.left + (i + 0.5) * cw, y: m.top + ph + 16, "text-anchor": "middle" }, axes, label);
  });
  yLabels.forEach((label, i) => el("text", { x: m.left - 6, y: m.top + ph - (i + 0.5) * ch + 4, "text-anchor": "end" }, axes, label));
  el("rect", { x: m.left, y: m.top, width: pw, height: ph, fill: "none", stroke: "#c5cbd3" }, axes);
  el("text", { class: "axis-label", x: m.left + pw / 2, y: height - 6, "text-anchor": "middle" }, axes, xLabel);
  el("text", { class: "axis-label", transform: `translate(14 ${m.top + ph / 2}) rotate(-90)`, "text-anchor": "middle" }, axes, yLabel);
  legend(container, [
    { label: `best ${valueLabel}: ${formatNumber(better === "min" ? lo : hi)}`, color: shade(better === "min" ? lo : hi) },
    { label: `worst: ${formatNumber(better === "min" ? hi : lo)}`, color: shade(better === "min" ? hi : lo) },
  ]);
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
