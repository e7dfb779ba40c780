// Job page: the verdict, spec, best trial, trials table and four charts; live while the job runs.
import { api, badge, download, errorSummary, fmtDuration, fmtTime, fmtValue, h, idsFromPath, isActive, poll } from "./common.js";
import { PALETTE, formatNumber, heatmap, lineChart, scatterChart } from "./charts.js";
import { verdictPanel } from "./verdict.js";

const { jobId } = idsFromPath(); // null when the URL holds no well-formed job id
const state = {
  job: null, dataset: null, trials: [], details: new Map(), ticked: new Set(),
  sort: { key: "number", dir: "asc" }, filter: "", page: 0,
};
// Rows per table page: the charts show every trial; the table pages so that a job of thousands of
// trials still renders in well under a second.
const PAGE_SIZE = 100;
const HP_ORDER = ["dropout_rate", "dropout_layers", "units", "learning_rate"];

// --- labels with units -------------------------------------------------------------------------

function metricLabel(metric) {
  const task = state.dataset?.task;
  const base = metric.replace(/^val_/, "");
  const split = metric.startsWith("val_") ? "validation" : "training";
  const unit = {
    loss: task === "regression" ? "mean squared error, target units²" : "cross-entropy, nats",
    accuracy: "fraction correct, 0–1",
    mae: "mean absolute error, target units",
  }[base] || "";
  return `${split} ${base} (${unit})`;
}

// --- data --------------------------------------------------------------------------------------

async function loadTrials() {
  const all = [];
  for (let offset = 0; ; offset += 1000) {
    const { ok, data } = await api(`/api/v1/jobs/${jobId}/trials?limit=1000&offset=${offset}`);
    if (!ok) return null;
    all.push(...data.items);
    if (all.length >= data.total || !data.items.length) return all;
  }
}

async function loadDetail(number, force) {
  if (!force && state.details.has(number)) return state.details.get(number);
  const { ok, data } = await api(`/api/v1/jobs/${jobId}/trials/${number}`);
  if (ok) state.details.set(number, data);
  return ok ? data : null;
}

function hpNames() {
  const space = state.job.spec.search_space;
  return HP_ORDER.filter((name) => space[name]);
}

function direction() { return state.job.spec.objective.direction || "min"; }

/** The values a discrete float range allows, as the worker computes them; null for a continuous one. */
function rateValues(range) {
  if (range.values) return range.values;
  if (!range.step || range.min === range.max) return range.min === range.max ? [range.min] : null;
  const out = [];
  for (let i = 0; ; i++) {
    const v = range.sampling === "log" ? range.min * range.step ** i : range.min + i * range.step;
    if (v > range.max * (1 + 1e-9) + 1e-12) break;
    out.push(Number(v.toFixed(12)));
  }
  return out;
}

function curveTrials() {
  // Best first, then ticked trials, then any trial still training (its curve grows live).
  const numbers = [];
  if (state.job.best) numbers.push(state.job.best.number);
  for (const n of state.ticked) if (!numbers.includes(n)) numbers.push(n);
  for (const t of state.trials) if (t.status === "running" && !numbers.includes(t.number)) numbers.push(t.number);
  return numbers;
}

async function refresh() {
  const trialsLoaded = loadTrials();
  const { ok, status, data: job } = await api(`/api/v1/jobs/${jobId}`);
  if (!ok) {
    showMissing(status === 404 ? "Job not found" : "Could not load the job");
    return;
  }
  state.job = job;
  // While the trials load: the dataset (for axis units) and the best trial's curve.
  const side = [];
  if (!state.dataset && job.dataset_id) {
    side.push(api(`/api/v1/datasets/${job.dataset_id}`).then((ds) => { if (ds.ok) state.dataset = ds.data; }));
  }
  if (job.best) side.push(loadDetail(job.best.number, isActive(job.status)));
  const [trials] = await Promise.all([trialsLoaded, ...side]);
  if (trials) state.trials = trials;
  const running = new Set(state.trials.filter((t) => t.status === "running").map((t) => t.number));
  await Promise.all(curveTrials().map((n) => loadDetail(n, running.has(n) || !state.details.get(n)?.finished_at)));
  render();
}

function showMissing(message) {
  document.getElementById("job-name").textContent = message;
  document.title = `${message} · droptune`;
  state.job = null;
  document.getElementById("verdict").hidden = true;
}

const trialHref = (number) => `/jobs/${jobId}/trials/${number}`;
const verdict = jobId === null ? null : verdictPanel(jobId, trialHref);

// --- rendering -----------------------------------------------------------------------------------

function render() {
  const job = state.job;
  document.title = `${job.name} · droptune`;
  document.getElementById("job-name").textContent = job.name;
  document.getElementById("job-status").replaceChildren(badge(job.status));
  document.getElementById("cancel-button").hidden = !isActive(job.status);
  document.getElementById("delete-button").hidden = isActive(job.status);
  document.getElementById("download-menu").hidden = false;
  // Models are kept when a job ends with its search done (GET /api/v1/jobs/{id}/models).
  for (const item of document.querySelectorAll(".model-download")) item.hidden = job.status !== "succeeded";
  const err = document.getElementById("job-error");
  err.hidden = !job.error || job.status === "cancelled";
  err.textContent = job.error ? `Cause: ${job.error}` : "";
  verdict.update(job);
  renderSpec();
  renderBest();
  renderTable();
  renderCharts();
}

function rangeText(r) {
  if (!r) return null;
  if (r.values) return `one of ${r.values.map(fmtValue).join(", ")}`;
  let text = `${fmtValue(r.min)} to ${fmtValue(r.max)}`;
  if (r.step && r.step !== 1) text += `, step ${fmtValue(r.step)}`;
  if (r.sampling === "log") text += ", log scale";
  return text;
}

function renderSpec() {
  const { spec, progress } = state.job;
  const rows = [
    ["Dataset", state.dataset ? `${state.dataset.name} (${state.dataset.task}, ${state.dataset.n_samples} samples)` : spec.dataset_id],
    ["Algorithm", spec.algorithm],
    ["Objective", `${spec.objective.direction === "max" ? "maximize" : "minimize"} ${spec.objective.metric}`],
    ["Progress", `${progress.finished} of ${progress.planned} trials`],
    ["Dropout rate", rangeText(spec.search_space.dropout_rate)],
    ["Dropout layers", rangeText(spec.search_space.dropout_layers)],
    ["Units", rangeText(spec.search_space.units) || `${spec.model.units} (fixed)`],
    ["Learning rate", rangeText(spec.search_space.learning_rate) || `${spec.model.learning_rate} (fixed)`],
    ["Model", `${spec.model.hidden_layers} hidden layers, ${spec.model.activation}`],
    ["Training", `${spec.training.epochs} epochs, batch ${spec.training.batch_size}, validation ${spec.training.validation_split}`],
    ["Created", fmtTime(state.job.created_at)],
    ["Finished", fmtTime(state.job.finished_at)],
  ];
  if (state.job.crashes) rows.splice(4, 0, ["Crashes", `the search process died ${state.job.crashes} time(s); resumed from its saved state`]);
  document.getElementById("spec").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function renderBest() {
  const best = state.job.best;
  const box = document.getElementById("best-card");
  if (!best) { box.replaceChildren(h("p", { class: "muted" }, "No completed trial yet.")); return; }
  const metric = state.job.spec.objective.metric;
  const rows = [
    ["Trial", h("a", { href: trialHref(best.number) }, `#${best.number}`)],
    ["Dropout rate", fmtValue(best.hyperparameters.dropout_rate)],
    ["Dropout layers", fmtValue(best.hyperparameters.dropout_layers)],
    ...hpNames().filter((n) => !n.startsWith("dropout")).map((n) => [n.replace("_", " "), fmtValue(best.hyperparameters[n])]),
    [metric, formatNumber(best.score)],
    ["Best epoch", best.best_epoch ?? "–"],
  ];
  for (const [k, v] of Object.entries(best.metrics || {})) if (k !== metric) rows.push([k, formatNumber(v)]);
  box.replaceChildren(h("dl", { class: "facts", "data-best-trial": best.number }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

function sortedTrials() {
  const { key, dir } = state.sort;
  const rows = state.trials.filter((t) => !state.filter || t.status === state.filter);
  const sign = dir === "asc" ? 1 : -1;
  const value = (t) => (key === "score" ? t.score : key === "duration" ? t.duration_s : t.number);
  return rows.sort((a, b) => {
    const va = value(a), vb = value(b);
    if (va === null || va === undefined) return vb === null || vb === undefined ? a.number - b.number : 1;
    if (vb === null || vb === undefined) return -1;
    return (va - vb) * sign || a.number - b.number;
  });
}

function renderTable() {
  const names = hpNames();
  const metric = state.job.spec.objective.metric;
  const sortButton = (key, label) => {
    const active = state.sort.key === key;
    const aria = active ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none";
    return h("button", { class: "sort", "data-sort": key, "aria-sort": aria, "aria-label": `Sort by ${label}` }, label);
  };
  const th = (attrs, ...children) => h("th", { scope: "col", ...attrs }, ...children);
  const table = document.getElementById("trials-table");
  table.tHead.replaceChildren(h("tr", {},
    th({}, h("span", { class: "muted" }, "Curve")), th({}, sortButton("number", "#")), th({}, "Status"),
    names.map((n) => th({}, n.replace("_", " "))),
    th({ class: "num" }, sortButton("score", metric)), th({ class: "num" }, "Best epoch"),
    th({ class: "num" }, sortButton("duration", "Duration")), th({}, "Error")));
  const all = sortedTrials();
  const pages = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const rows = all.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  table.tBodies[0].replaceChildren(...rows.map((t) => trialRow(t, names)));
  const shown = all.length ? `${state.page * PAGE_SIZE + 1}–${state.page * PAGE_SIZE + rows.length} of ${all.length}` : "0";
  const filtered = all.length === state.trials.length ? "" : ` (${state.trials.length} in all)`;
  document.getElementById("trial-count").textContent = `trials ${shown}${filtered}`;
  document.getElementById("page-prev").disabled = state.page === 0;
  document.getElementById("page-next").disabled = state.page >= pages - 1;
  document.getElementById("pager").hidden = pages === 1;
}

/** One row of the trials table, built as nodes: errors and values are text, never markup. */
function trialRow(t, names) {
  const error = t.error
    ? h("details", {}, h("summary", {}, errorSummary(t.error)), h("pre", { class: "error" }, t.error))
    : null;
  const tick = h("input", {
    type: "checkbox", class: "tick", "data-number": t.number, checked: state.ticked.has(t.number),
    "aria-label": `Show trial ${t.number} in the learning curves`,
  });
  return h("tr", { "data-trial": t.number },
    h("td", {}, tick),
    h("td", {}, h("a", { href: trialHref(t.number) }, t.number)),
    h("td", {}, badge(t.status)),
    names.map((n) => h("td", { class: "num" }, t.hyperparameters[n] === undefined ? "–" : fmtValue(t.hyperparameters[n]))),
    h("td", { class: "num" }, formatNumber(t.score)),
    h("td", { class: "num" }, t.best_epoch ?? "–"),
    h("td", { class: "num" }, fmtDuration(t.duration_s)),
    h("td", { class: "error-cell" }, error));
}

function renderCharts() {
  renderCurves();
  renderSearchCharts();
}

function renderCurves() {
  const job = state.job;
  const series = [];
  curveTrials().forEach((number, i) => {
    const detail = state.details.get(number);
    if (!detail) return;
    const colour = PALETTE[i % PALETTE.length];
    const tag = number === job.best?.number ? "best, " : detail.status === "running" ? "running, " : "";
    const name = `trial ${number} (${tag}rate ${fmtValue(detail.hyperparameters.dropout_rate)}, ${detail.hyperparameters.dropout_layers} layers)`;
    series.push({ key: `${number}:loss`, label: `${name}: training`, color: colour, dashed: true, points: detail.history.map((e) => [e.epoch, e.loss]) });
    series.push({ key: `${number}:val_loss`, label: `${name}: validation`, color: colour, points: detail.history.map((e) => [e.epoch, e.val_loss]) });
  });
  lineChart(document.getElementById("curves-chart"), {
    series, xLabel: "epoch", yLabel: `loss (${metricLabel("loss").split("(")[1]}`, title: "Training and validation loss per epoch",
  });
}

function renderSearchCharts() {
  const job = state.job;
  const metric = job.spec.objective.metric;
  const completed = state.trials.filter((t) => t.status === "completed" && Number.isFinite(t.score));
  const layerValues = [...new Set(state.trials.map((t) => t.hyperparameters.dropout_layers))].sort((a, b) => a - b);
  const layerColour = (l) => PALETTE[layerValues.indexOf(l) % PALETTE.length];

  // Objective against dropout rate, one colour per number of dropout layers.
  // A network without dropout has no rate (null): it is drawn at rate 0, where it belongs.
  const rateOf = (t) => t.hyperparameters.dropout_rate ?? 0;
  const rate = job.spec.search_space.dropout_rate;
  const rateBounds = rate.values ? [Math.min(0, ...rate.values), Math.max(...rate.values)] : [Math.min(0, rate.min), rate.max];
  const pad = (rateBounds[1] - rateBounds[0]) * 0.05 || 0.05;
  scatterChart(document.getElementById("rate-chart"), {
    points: completed.map((t) => ({
      key: t.number, x: rateOf(t), y: t.score, color: layerColour(t.hyperparameters.dropout_layers),
      href: trialHref(t.number),
      title: `trial ${t.number}: ${t.hyperparameters.dropout_layers ? `dropout rate ${fmtValue(t.hyperparameters.dropout_rate)}, ${t.hyperparameters.dropout_layers} dropout layers` : "no dropout"}, ${metric} ${formatNumber(t.score)}`,
    })),
    xDomain: [rateBounds[0] - pad, rateBounds[1] + pad],
    legendItems: layerValues.map((l) => ({ label: `${l} dropout layer${l === 1 ? "" : "s"}`, color: layerColour(l) })),
    xLabel: "dropout rate (fraction of units dropped)", yLabel: metricLabel(metric), title: `${metric} against dropout rate`,
  });

  // Heatmap of the best objective over dropout rate x dropout layers.
  const distinct = [...new Set(state.trials.map(rateOf))].sort((a, b) => a - b);
  const listed = rateValues(rate);
  const allowed = listed && !listed.includes(0) ? [0, ...listed] : listed;
  const discrete = allowed !== null || distinct.length <= 10;
  const bins = discrete ? (allowed || distinct) : Array.from({ length: 10 }, (_, i) => rateBounds[0] + ((rateBounds[1] - rateBounds[0]) * i) / 10);
  const binOf = (v) => {
    if (discrete) return bins.indexOf(v);
    const width = (rateBounds[1] - rateBounds[0]) / 10 || 1;
    return Math.min(9, Math.max(0, Math.floor((v - rateBounds[0]) / width)));
  };
  // The canonical space's layer counts: 0 (the baseline) always among them.
  const layerAxis = job.search_space.dropout_layers;
  const cellBest = new Map();
  for (const t of completed) {
    const key = `${binOf(rateOf(t))},${layerAxis.indexOf(t.hyperparameters.dropout_layers)}`;
    const prev = cellBest.get(key);
    if (prev === undefined || (direction() === "min" ? t.score < prev.score : t.score > prev.score)) cellBest.set(key, t);
  }
  const xLabels = discrete ? bins.map(fmtValue) : bins.map((b) => `${fmtValue(b)}–`);
  heatmap(document.getElementById("heatmap-chart"), {
    xLabels, yLabels: layerAxis.map(String), better: direction(), valueLabel: metric,
    cells: [...cellBest.entries()].map(([key, t]) => {
      const [xi, yi] = key.split(",").map(Number);
      return { xi, yi, value: t.score, title: `dropout rate ${xLabels[xi]}, ${layerAxis[yi]} layers: best ${metric} ${formatNumber(t.score)} (trial ${t.number})` };
    }),
    xLabel: "dropout rate (fraction of units dropped)", yLabel: "dropout layers (count)", title: `best ${metric} by dropout rate and layers`,
  });

  // Optimization history with the best-so-far line.
  const byNumber = [...completed].sort((a, b) => a.number - b.number);
  const bestSoFar = [];
  let best = null;
  for (const t of byNumber) {
    if (best === null || (direction() === "min" ? t.score < best : t.score > best)) best = t.score;
    bestSoFar.push([t.number, best]);
  }
  scatterChart(document.getElementById("history-chart"), {
    points: byNumber.map((t) => ({ key: t.number, x: t.number, y: t.score, color: PALETTE[5], href: trialHref(t.number), title: `trial ${t.number}: ${metric} ${formatNumber(t.score)}` })),
    lines: [{ key: "best-so-far", label: "best so far", color: PALETTE[4], points: bestSoFar, step: true }],
    legendItems: [{ label: `${metric} of a trial`, color: PALETTE[5] }],
    xLabel: "trial number", yLabel: metricLabel(metric), title: `${metric} by trial number`, integerX: true,
  });
}

// --- events ----------------------------------------------------------------------------------------

document.getElementById("trials-table").addEventListener("click", (event) => {
  const button = event.target.closest("button.sort");
  if (!button) return;
  const key = button.dataset.sort;
  const bestFirst = key === "score" ? (direction() === "min" ? "asc" : "desc") : "asc";
  state.sort = state.sort.key === key
    ? { key, dir: state.sort.dir === "asc" ? "desc" : "asc" }
    : { key, dir: bestFirst };
  renderTable();
  document.querySelector(`button.sort[data-sort="${key}"]`)?.focus();
});

document.getElementById("trials-table").addEventListener("change", async (event) => {
  if (!event.target.classList.contains("tick")) return;
  const number = Number(event.target.dataset.number);
  if (event.target.checked) { state.ticked.add(number); await loadDetail(number, false); } else state.ticked.delete(number);
  renderCurves();
});

document.getElementById("trial-filter").addEventListener("change", (event) => {
  state.filter = event.target.value;
  state.page = 0;
  renderTable();
});

for (const [id, step] of [["page-prev", -1], ["page-next", 1]]) {
  document.getElementById(id).addEventListener("click", () => { state.page += step; renderTable(); });
}

document.getElementById("cancel-button").addEventListener("click", async () => {
  if (!confirm(`Cancel job "${state.job.name}"? Finished trials are kept.`)) return;
  const { ok, data } = await api(`/api/v1/jobs/${jobId}/cancel`, { method: "POST" });
  if (!ok) alert(data?.detail?.[0]?.msg || "Could not cancel the job.");
  await refresh();
});

document.getElementById("delete-button").addEventListener("click", async () => {
  if (!confirm(`Delete job "${state.job.name}" and all its trials? This cannot be undone.`)) return;
  const { ok, data } = await api(`/api/v1/jobs/${jobId}`, { method: "DELETE" });
  if (ok) location.href = "/";
  else alert(data?.detail?.[0]?.msg || "Could not delete the job.");
});

// The Download menu: each item fetches its file with the token and saves it.
const downloadMenu = document.getElementById("download-menu");
downloadMenu.addEventListener("click", async (event) => {
  const item = event.target.closest("button[data-download]");
  if (!item) return;
  downloadMenu.open = false;
  item.disabled = true;
  try {
    const { ok, data } = await download(`/api/v1/jobs/${jobId}/${item.dataset.download}`, `${jobId}-${item.dataset.name}`);
    if (!ok) alert(data?.detail?.[0]?.msg || "Could not download the file.");
  } finally {
    item.disabled = false;
  }
});
document.addEventListener("click", (event) => { if (!downloadMenu.contains(event.target)) downloadMenu.open = false; });
downloadMenu.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && downloadMenu.open) { downloadMenu.open = false; downloadMenu.querySelector("summary").focus(); }
});

if (jobId === null) {
  showMissing("Job not found");
} else {
  await refresh();
  poll(refresh, () => (state.job && isActive(state.job.status) ? 2000 : null)).start();
}
