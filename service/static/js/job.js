// Job page: wires the parts together. It reads the job and its trials (job-api.js) into the page's
// state (job-state.js), renders them (job-summary.js, job-table.js, job-charts.js) and handles the
// page's controls. While the job runs it polls every 2 s, incrementally and conditionally; the user
// may pause that, and a hidden tab asks nothing.
import { download, flash, idsFromPath, isActive, poll, received, showNotFound, tickTimings } from "./common.js";
import { jobApi } from "./job-api.js";
import { renderCharts, renderCurves } from "./job-charts.js";
import { renderProgress } from "./job-progress.js";
import { renderReference } from "./job-reference.js";
import { curveTrials, direction, mergeTrials, state } from "./job-state.js";
import { renderBest, renderHeader, renderSpec, showMissing } from "./job-summary.js";
import { renderTable } from "./job-table.js";
import { verdictPanel } from "./verdict.js";

const { jobId } = idsFromPath(); // null when the URL holds no well-formed job id
state.jobId = jobId;
const api = jobId === null ? null : jobApi(jobId);
const verdict = jobId === null ? null : verdictPanel(jobId, (number) => `/jobs/${jobId}/trials/${number}`);
let rendered = false;

async function loadDetail(number, force) {
  if (!force && state.details.has(number)) return state.details.get(number);
  const { ok, data } = await api.trial(number); // conditional: an unchanged trial costs a 304
  if (ok) state.details.set(number, data);
  return ok ? data : null;
}

async function refresh() {
  const trialsLoaded = api.changedTrials();
  const { ok, status, data: job, changed } = await api.job();
  if (!ok) {
    if (status === 404) notFound();
    else showMissing("Could not load the job");
    return;
  }
  state.job = received(job);
  // While the trials load: the dataset (for axis units), the network it trains (its name) and the
  // best trial's curve.
  const side = [];
  if (!state.dataset && job.dataset_id) {
    side.push(api.dataset(job.dataset_id).then((ds) => { if (ds.ok) state.dataset = ds.data; }));
  }
  const networkId = job.spec.model.network_id;
  if (networkId && state.network === undefined) {
    // null: deleted since (the job keeps its results); asked again on a failure of another kind.
    side.push(api.network(networkId).then((n) => { if (n.ok || n.status === 404) state.network = n.ok ? n.data : null; }));
  }
  if (job.best) side.push(loadDetail(job.best.number, isActive(job.status)));
  const [trials] = await Promise.all([trialsLoaded, ...side]);
  if (trials) mergeTrials(trials);
  const running = new Set([...state.trials.values()].filter((t) => t.status === "running").map((t) => t.number));
  await Promise.all(curveTrials().map((n) => loadDetail(n, running.has(n) || !state.details.get(n)?.finished_at)));
  if (rendered && !changed && !trials?.length && !running.size) return; // nothing new to draw
  render();
}

function render() {
  renderHeader();
  renderProgress(state.job);
  verdict.update(state.job);
  renderSpec();
  renderBest();
  renderReference(state.job);
  renderTable();
  renderCharts();
  renderPolling();
  rendered = true;
}

// --- polling: every 2 s while the job runs, unless paused; nothing while the tab is hidden ---------

const poller = poll(refresh, () => (state.job && isActive(state.job.status) && !state.paused ? 2000 : null));
tickTimings(() => state.job); // the clock runs between polls

function renderPolling() {
  const active = Boolean(state.job && isActive(state.job.status));
  const button = document.getElementById("poll-toggle");
  button.hidden = !active;
  button.textContent = state.paused ? "Resume updates" : "Pause updates";
  button.setAttribute("aria-pressed", String(state.paused));
  document.getElementById("poll-note").textContent = !active ? "" : state.paused ? "Updates paused." : "Updating every 2 s.";
}

document.getElementById("poll-toggle").addEventListener("click", async () => {
  state.paused = !state.paused;
  renderPolling();
  if (state.paused) {
    poller.stop();
  } else {
    await refresh();
    poller.start();
  }
});

document.addEventListener("visibilitychange", async () => {
  if (document.hidden) { poller.stop(); return; }
  // Shown again: catch up at once, then go on while the job runs.
  if (!state.paused && state.job && isActive(state.job.status)) { await refresh(); poller.start(); }
});

// --- the table's and the page's controls --------------------------------------------------------

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
  const { ok, data } = await api.cancel();
  if (!ok) alert(data?.detail?.[0]?.msg || "Could not cancel the job.");
  await refresh();
});

document.getElementById("delete-button").addEventListener("click", async () => {
  if (!confirm(`Delete job "${state.job.name}" and all its trials? This cannot be undone.`)) return;
  const { ok, data } = await api.remove();
  if (ok) {
    flash(`Deleted job "${state.job.name}" and its trials.`);
    location.href = "/";
  } else alert(data?.detail?.[0]?.msg || "Could not delete the job.");
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

function notFound() {
  showMissing("Job not found");
  showNotFound(document.getElementById("job-name"), "Job");
}

if (jobId === null) {
  notFound();
} else {
  await refresh();
  poller.start();
}
