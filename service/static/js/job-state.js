// Job page: what the page knows (the job, its trials, the details of trials whose curves it draws,
// the table's sort, filter and page) and the facts derived from it. No fetching, no DOM.

export const state = {
  jobId: null, job: null, dataset: null, network: undefined, trials: new Map(), details: new Map(), ticked: new Set(),
  sort: { key: "number", dir: "asc" }, filter: "", page: 0, paused: false,
};

const HP_ORDER = ["dropout_rate", "dropout_layers", "units", "learning_rate"];

/** Merge trials from a listing (all of them, or those changed since the last poll) by number. */
export function mergeTrials(items) {
  for (const t of items) state.trials.set(t.number, t);
}

export const trialHref = (number) => `/jobs/${state.jobId}/trials/${number}`;

export function allTrials() { return [...state.trials.values()]; }

export function hpNames() {
  const space = state.job.spec.search_space;
  return HP_ORDER.filter((name) => space[name]);
}

export function direction() { return state.job.spec.objective.direction || "min"; }

export function metricLabel(metric) {
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

/** The values a discrete float range allows, as the worker computes them; null for a continuous one. */
export function rateValues(range) {
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

/** The trials whose curves are drawn: the best, then ticked ones, then any still training. */
export function curveTrials() {
  const numbers = [];
  if (state.job.best) numbers.push(state.job.best.number);
  for (const n of state.ticked) if (!numbers.includes(n)) numbers.push(n);
  for (const t of state.trials.values()) if (t.status === "running" && !numbers.includes(t.number)) numbers.push(t.number);
  return numbers;
}

/** The trials the table shows, filtered by status and sorted; trials without a value go last. */
export function sortedTrials() {
  const { key, dir } = state.sort;
  const rows = allTrials().filter((t) => !state.filter || t.status === state.filter);
  const sign = dir === "asc" ? 1 : -1;
  const value = (t) => (key === "score" ? t.score : key === "duration" ? t.duration_s : t.number);
  return rows.sort((a, b) => {
    const va = value(a), vb = value(b);
    if (va === null || va === undefined) return vb === null || vb === undefined ? a.number - b.number : 1;
    if (vb === null || vb === undefined) return -1;
    return (va - vb) * sign || a.number - b.number;
  });
}
