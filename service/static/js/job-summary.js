// Job page: the header (name, status, buttons), the search's facts and the best trial's card.
import { badge, counted, fmtTime, fmtValue, h, isActive, timingText } from "./common.js";
import { formatNumber } from "./charts.js";
import { allTrials, hpNames, state, trialHref } from "./job-state.js";
import { sitesCount } from "./network-facts.js";

export function renderHeader() {
  const job = state.job;
  document.title = `${job.name} · droptune`;
  document.getElementById("job-name").textContent = job.name;
  document.getElementById("job-status").replaceChildren(badge(job.status));
  document.getElementById("cancel-button").hidden = !isActive(job.status);
  document.getElementById("delete-button").hidden = isActive(job.status);
  document.getElementById("download-menu").hidden = false;
  const rerun = document.getElementById("rerun-link");
  rerun.href = `/new?from=${encodeURIComponent(job.id)}`;
  rerun.hidden = false;
  // Models are kept when a job ends with its search done (GET /api/v1/jobs/{id}/models).
  for (const item of document.querySelectorAll(".model-download")) item.hidden = job.status !== "succeeded";
  const err = document.getElementById("job-error");
  err.hidden = !job.error || job.status === "cancelled";
  err.textContent = job.error ? `Cause: ${job.error}` : "";
  err.classList.toggle("error-notice", job.status === "failed");
}

export function showMissing(message) {
  document.getElementById("job-name").textContent = message;
  document.title = `${message} · droptune`;
  state.job = null;
  document.getElementById("verdict").hidden = true;
}

/** The dataset's name (linked to the datasets page), task and size; its id where it was deleted. */
function datasetText(spec) {
  const ds = state.dataset;
  if (!ds) return state.job.dataset_id ? spec.dataset_id : `${spec.dataset_id} (deleted)`;
  return [h("a", { href: "/datasets", title: ds.id, "data-dataset": ds.id }, ds.name), ` (${ds.task}, ${counted(ds.n_samples, "sample")})`];
}

/** What the job trains: the user's network, its name linked to its layers on the networks page (its id
 * where it was deleted since), or droptune's template, "template: 2 × 64 units, relu". */
function modelText(spec) {
  const m = spec.model;
  if (!m.network_id) {
    const size = spec.search_space.units ? counted(m.hidden_layers, "hidden layer") : `${m.hidden_layers} × ${m.units} units`;
    return `template: ${size}, ${m.activation}`;
  }
  // How the job places its dropout, where it differs from the defaults.
  const how = [
    m.dropout_sites ? `; dropout at ${m.dropout_sites.join(", ")}` : "",
    m.dropout_order === "from_output" ? "; sites filled from the output" : "",
    m.dropout_kind === "dropout" ? "; plain Dropout only" : "",
  ].join("");
  const n = state.network;
  if (n === null) return `network ${m.network_id} (deleted)${how}`;
  if (!n) return `network ${m.network_id}${how}`;
  const link = h("a", { href: `/networks#${encodeURIComponent(n.id)}`, title: n.id, "data-network": n.id }, n.name);
  return ["network ", link, ` (${n.model_class}, ${sitesCount(n)})`, how];
}

function rangeText(r) {
  if (!r) return null;
  if (r.values) return `one of ${r.values.map(fmtValue).join(", ")}`;
  let text = `${fmtValue(r.min)} to ${fmtValue(r.max)}`;
  if (r.step && r.step !== 1) text += `, step ${fmtValue(r.step)}`;
  if (r.sampling === "log") text += ", log scale";
  return text;
}

function progressEpochs(progress) {
  return progress.epochs_planned ? `${progress.epochs_done} of ${progress.epochs_planned} epochs` : "";
}

export function renderSpec() {
  const { spec, progress } = state.job;
  const rows = [
    ["Dataset", datasetText(spec)],
    ["Algorithm", spec.algorithm],
    ["Objective", `${spec.objective.direction === "max" ? "maximize" : "minimize"} ${spec.objective.metric}`],
    ["Progress", [`${progress.finished} of ${counted(progress.planned, "trial")}`, progressEpochs(progress)].filter(Boolean).join("; "),
      timingText(state.job) ? "; " : "", h("span", { "data-timing": "job" }, timingText(state.job))],
    ["Dropout rate", rangeText(spec.search_space.dropout_rate)],
    ["Dropout layers", rangeText(spec.search_space.dropout_layers)],
    spec.model.network_id ? null : ["Units", rangeText(spec.search_space.units) || `${spec.model.units} (fixed)`],
    ["Learning rate", rangeText(spec.search_space.learning_rate) || `${fmtValue(spec.model.learning_rate)} (fixed)`],
    ["Model", modelText(spec)],
    ["Training", trainingText(spec)],
    state.job.execution ? ["Trains", executionText(state.job.execution)] : null,
    ["Created", fmtTime(state.job.created_at)],
    ["Finished", fmtTime(state.job.finished_at)],
  ];
  const grid = gridText();
  if (grid) rows.splice(4, 0, ["Grid", grid]);
  if (state.job.crashes) rows.splice(4, 0, ["Crashes", `the search process died ${state.job.crashes} time(s); resumed from its saved state`]);
  document.getElementById("spec").replaceChildren(...rows.filter(Boolean).flatMap(([k, ...v]) => [h("dt", {}, k), h("dd", {}, ...v)]));
}

const TRAINERS = {
  template_pack: "packed: the template's fused network",
  vectorized_pack: "packed: one vectorised step for all",
  fit: "one trial at a time",
};

/** How the trials train, from the job's `execution`: packed, K at a time, or one at a time, with
 * the reason where the job allowed packs, then on which backend and device ("on jax, cpu"; jobs
 * recorded before backends were recorded say nothing of it). A Bayesian search packs its initial
 * random points first, then a few points chosen together, so that each pack learns from the ones before. */
function executionText(execution) {
  const where = execution.backend ? ` (on ${execution.backend}, ${execution.device || "an unknown device"})` : "";
  return trainerText(execution) + where;
}

function trainerText(execution) {
  const trainer = TRAINERS[execution.trainer] || execution.trainer;
  if (execution.reason) return `${trainer}: ${execution.reason}`;
  const bayesian = execution.bayesian;
  if (bayesian) {
    return `${trainer}: first its ${counted(bayesian.initial_points, "initial random point")} (up to ${execution.pack_size} together), `
      + `then packs of up to ${bayesian.pack_size} chosen together from the results before them`;
  }
  return execution.pack_size > 1 ? `${trainer} (up to ${execution.pack_size} trials together)` : trainer;
}

/** A grid search's coverage: "8 of 18 grid points"; when Max trials cuts the grid short, it says so
 * and which dropout rates the trials reached (the Dropout rate row is the space, not what ran). */
function gridText() {
  const { spec, search_space: space } = state.job;
  if (spec.algorithm !== "grid" || !space.networks) return null;
  const points = Math.min(spec.max_trials, space.networks);
  const text = `${points} of ${counted(space.networks, "grid point")}`;
  if (points >= space.networks) return `${text}: every point`;
  const rates = allTrials().map((t) => t.hyperparameters.dropout_rate ?? 0);
  const reached = rates.length ? `; dropout rates tried: ${fmtValue(Math.min(...rates))} to ${fmtValue(Math.max(...rates))}` : "";
  return `${text}: Max trials (${spec.max_trials}) cuts the grid short; set it to ${space.networks} to try every point${reached}`;
}

export function renderBest() {
  const best = state.job.best;
  const box = document.getElementById("best-card");
  if (!best) {
    const why = isActive(state.job.status)
      ? "No completed trial yet."
      : `No trial completed as a candidate before the job ended (${state.job.status}).`;
    box.replaceChildren(h("p", { class: "muted" }, why));
    return;
  }
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

/** Epochs, batch, the validation data (a split or a dataset of its own) and any class weights. */
function trainingText(spec) {
  const t = spec.training;
  const validation = spec.validation_dataset_id ? `validated on ${spec.validation_dataset_id}` : `validation ${t.validation_split}`;
  const weights = t.class_weight == null ? ""
    : `, class weights ${t.class_weight === "balanced" ? "balanced" : Object.entries(t.class_weight).map(([c, w]) => `${c}: ${w}`).join(", ")}`;
  return `${counted(t.epochs, "epoch")}, batch ${t.batch_size}, ${validation}${weights}`;
}
