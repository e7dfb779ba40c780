// Jobs list: refreshes itself every 2 s while any job is queued or running (conditionally: an unchanged
// page of jobs is a 304), and shows PAGE jobs more each time "Load more" is pressed.
import { api, badge, conditionalGet, counted, fmtTime, h, isActive, poll, received, showFlash, tickTimings, timingText } from "./common.js";
import { formatNumber } from "./charts.js";

const tbody = document.querySelector("#jobs-table tbody");
const filter = document.getElementById("status-filter");
const note = document.getElementById("refresh-note");
const PAGE = 200;
showFlash(document.getElementById("flash"));
const get = conditionalGet();
let anyActive = false;
let shown = new Map(); // job id -> its JSON as last drawn, for the clock that ticks between polls
let wanted = PAGE; // jobs shown: one page, and one more per "Load more"
const datasetNames = new Map(); // dataset id -> name, from GET /api/v1/datasets
let namesLoaded = false;
const unnamed = new Set(); // ids looked up and not found: not asked for again

/** The names of the datasets `jobs` use: fetched once, and again only when a job names a dataset not
 * seen yet (a new upload). Until they come, and for a dataset the list lacks, the id stands in. */
async function loadDatasetNames(jobs) {
  const unknown = (j) => j.dataset_id && !datasetNames.has(j.dataset_id) && !unnamed.has(j.dataset_id);
  if (namesLoaded && !jobs.some(unknown)) return;
  const { ok, data } = await api("/api/v1/datasets");
  if (!ok) return;
  for (const d of data) datasetNames.set(d.id, d.name);
  namesLoaded = true;
  for (const j of jobs) if (unknown(j)) unnamed.add(j.dataset_id);
}

function datasetCell(job) {
  if (!job.dataset_id) return h("span", { class: "muted", title: job.spec.dataset_id }, "deleted");
  const name = datasetNames.get(job.dataset_id);
  return name ? h("a", { href: "/datasets", title: job.dataset_id, "data-dataset": job.dataset_id }, name) : job.dataset_id;
}

/** Beside a best score no better than a trivial predictor's (the API's `no_better_than_reference`). */
function noBetterMark(job) {
  if (!job.no_better_than_reference) return null;
  const guess = job.reference?.scores?.[job.spec.objective.metric];
  return h("div", { class: "no-better", "data-no-better": "" }, `no better than guessing (${formatNumber(guess)})`);
}

function row(job) {
  const { finished, planned, epochs_done: done, epochs_planned: all, phase } = job.progress;
  const metric = job.spec.objective.metric;
  // Work is counted in epochs across the whole job (a pack of 20 trials moves the bar each epoch).
  const bar = all ? { max: all, value: done } : { max: planned, value: finished };
  const phaseName = phase && phase !== "search" ? job.progress.phases.find((p) => p.name === phase)?.label : null;
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `/jobs/${job.id}` }, job.name)),
    h("td", {}, datasetCell(job)),
    h("td", {}, job.algorithm),
    h("td", {}, badge(job.status)),
    h("td", {},
      h("progress", { ...bar, "aria-label": `${finished} of ${counted(planned, "trial")} finished; ${done} of ${all} epochs` }),
      ` ${finished} / ${planned}`,
      phaseName ? h("div", { class: "muted" }, phaseName) : null,
      isActive(job.status) ? h("div", { class: "muted timing", "data-timing": job.id }, timingText(job)) : null),
    h("td", { class: "num", title: metric }, job.best ? `${formatNumber(job.best.score)} ${metric}` : "–", noBetterMark(job)),
    h("td", {}, fmtTime(job.created_at)),
  );
}

// Workers alive (by heartbeat) and, when jobs are queued with none alive, a warning saying why nothing runs.
async function refreshHealth() {
  const { data } = await api("/healthz");
  const workers = data?.workers;
  document.getElementById("workers-note").textContent =
    workers === null || workers === undefined ? "" : `${workers} worker${workers === 1 ? "" : "s"} alive`;
  const banner = data?.warning ? [h("p", { class: "banner warning" }, `Warning: ${data.warning}`)] : [];
  document.getElementById("health-banner").replaceChildren(...banner);
}

async function refresh() {
  refreshHealth().catch(() => {}); // the jobs list is what matters; health shows on the next refresh
  const jobs = [];
  let total = 0;
  for (let offset = 0; offset < wanted; offset += PAGE) {
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (filter.value) params.set("status", filter.value);
    const { ok, data } = await get(`/api/v1/jobs?${params}`);
    if (!ok) { note.textContent = "Could not load jobs; retrying."; return; }
    jobs.push(...data.items.map((job) => received(job)));
    total = data.total;
    if (offset + PAGE >= total) break;
  }
  await loadDatasetNames(jobs).catch(() => {});
  tbody.replaceChildren(...jobs.map(row));
  document.getElementById("jobs-empty").hidden = jobs.length > 0;
  document.getElementById("jobs-count").textContent = total > PAGE ? `${jobs.length} of ${total} jobs` : "";
  document.getElementById("load-more").hidden = jobs.length >= total;
  shown = new Map(jobs.map((j) => [j.id, j]));
  anyActive = jobs.some((j) => isActive(j.status));
  note.textContent = anyActive ? "Updating every 2 s while jobs run." : "";
}

// Every 2 s while a job is queued or running; otherwise every 10 s, to notice jobs submitted elsewhere.
filter.addEventListener("change", () => { wanted = PAGE; refresh(); });
document.getElementById("load-more").addEventListener("click", () => { wanted += PAGE; refresh(); });
await refresh();
poll(refresh, () => (anyActive ? 2000 : 10000)).start();
tickTimings((element) => shown.get(element.dataset.timing));
