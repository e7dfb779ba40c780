// Jobs list: refreshes itself every 2 s while any job is queued or running (conditionally: an unchanged
// page of jobs is a 304), and shows PAGE jobs more each time "Load more" is pressed.
import { api, badge, conditionalGet, counted, fmtTime, h, isActive, poll, showFlash, timingText } from "./common.js";
import { formatNumber } from "./charts.js";

const tbody = document.querySelector("#jobs-table tbody");
const filter = document.getElementById("status-filter");
const note = document.getElementById("refresh-note");
const PAGE = 200;
showFlash(document.getElementById("flash"));
const get = conditionalGet();
let anyActive = false;
let wanted = PAGE; // jobs shown: one page, and one more per "Load more"

function row(job) {
  const { finished, planned } = job.progress;
  const metric = job.spec.objective.metric;
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `/jobs/${job.id}` }, job.name)),
    h("td", {}, job.dataset_id ?? h("span", { class: "muted" }, "deleted")),
    h("td", {}, job.algorithm),
    h("td", {}, badge(job.status)),
    h("td", {},
      h("progress", { max: planned, value: finished, "aria-label": `${finished} of ${counted(planned, "trial")} finished` }),
      ` ${finished} / ${planned}`,
      isActive(job.status) ? h("div", { class: "muted timing", "data-timing": "" }, timingText(job)) : null),
    h("td", { class: "num", title: metric }, job.best ? `${formatNumber(job.best.score)} ${metric}` : "–"),
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
    jobs.push(...data.items);
    total = data.total;
    if (offset + PAGE >= total) break;
  }
  tbody.replaceChildren(...jobs.map(row));
  document.getElementById("jobs-empty").hidden = jobs.length > 0;
  document.getElementById("jobs-count").textContent = total > PAGE ? `${jobs.length} of ${total} jobs` : "";
  document.getElementById("load-more").hidden = jobs.length >= total;
  anyActive = jobs.some((j) => isActive(j.status));
  note.textContent = anyActive ? "Updating every 2 s while jobs run." : "";
}

// Every 2 s while a job is queued or running; otherwise every 10 s, to notice jobs submitted elsewhere.
filter.addEventListener("change", () => { wanted = PAGE; refresh(); });
document.getElementById("load-more").addEventListener("click", () => { wanted += PAGE; refresh(); });
await refresh();
poll(refresh, () => (anyActive ? 2000 : 10000)).start();
