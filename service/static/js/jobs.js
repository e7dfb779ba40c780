// Jobs list: refreshes itself every 2 s while any job is queued or running.
import { api, badge, fmtTime, h, isActive, poll } from "./common.js";
import { formatNumber } from "./charts.js";

const tbody = document.querySelector("#jobs-table tbody");
const filter = document.getElementById("status-filter");
const note = document.getElementById("refresh-note");
let anyActive = false;

function row(job) {
  const { finished, planned } = job.progress;
  const metric = job.spec.objective.metric;
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `/jobs/${job.id}` }, job.name)),
    h("td", {}, job.dataset_id ?? h("span", { class: "muted" }, "deleted")),
    h("td", {}, job.algorithm),
    h("td", {}, badge(job.status)),
    h("td", {},
      h("progress", { max: planned, value: finished, "aria-label": `${finished} of ${planned} trials finished` }),
      ` ${finished} / ${planned}`),
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
  const params = new URLSearchParams({ limit: "200" });
  if (filter.value) params.set("status", filter.value);
  const { ok, data } = await api(`/api/v1/jobs?${params}`);
  if (!ok) { note.textContent = "Could not load jobs; retrying."; return; }
  tbody.replaceChildren(...data.items.map(row));
  document.getElementById("jobs-empty").hidden = data.items.length > 0;
  anyActive = data.items.some((j) => isActive(j.status));
  note.textContent = anyActive ? "Updating every 2 s while jobs run." : "";
}

// Every 2 s while a job is queued or running; otherwise every 10 s, to notice jobs submitted elsewhere.
filter.addEventListener("change", refresh);
await refresh();
poll(refresh, () => (anyActive ? 2000 : 10000)).start();
