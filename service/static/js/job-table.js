// Job page: the trials table, built with DOM calls (errors and values are text, never markup).
import { badge, errorSummary, fmtDuration, fmtValue, h, runningTrialText, trialDuration } from "./common.js";
import { formatNumber } from "./charts.js";
import { hpNames, sortedTrials, state, trialHref } from "./job-state.js";

// Rows per table page: the charts show every trial; the table pages so that a job of thousands of
// trials still renders in well under a second.
const PAGE_SIZE = 100;

export function renderTable() {
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
    // The score beside the status, before the hyperparameters: on a phone the columns that matter
    // come first, and the rest scroll inside the table's panel.
    th({}, h("span", { class: "muted" }, "Curve")), th({}, sortButton("number", "#")), th({}, "Status"),
    th({ class: "num" }, sortButton("score", metric)),
    names.map((n) => th({}, n.replace("_", " "))),
    th({ class: "num" }, "Best epoch"),
    th({ class: "num" }, sortButton("duration", "Duration")), th({}, "Error")));
  const all = sortedTrials();
  const pages = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const rows = all.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
  table.tBodies[0].replaceChildren(...rows.map((t) => trialRow(t, names)));
  const shown = all.length ? `${state.page * PAGE_SIZE + 1}–${state.page * PAGE_SIZE + rows.length} of ${all.length}` : "0";
  const filtered = all.length === state.trials.size ? "" : ` (${state.trials.size} in all)`;
  document.getElementById("trial-count").textContent = `trials ${shown}${filtered}`;
  document.getElementById("page-prev").disabled = state.page === 0;
  document.getElementById("page-next").disabled = state.page >= pages - 1;
  document.getElementById("pager").hidden = pages === 1;
}

/** One row of the trials table. */
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
    h("td", { class: "num" }, formatNumber(t.score)),
    names.map((n) => h("td", { class: "num" }, t.hyperparameters[n] === undefined ? "–" : fmtValue(t.hyperparameters[n]))),
    h("td", { class: "num" }, t.best_epoch ?? "–"),
    h("td", { class: "num", "data-col": "duration", title: t.pack_share_s != null ? `trained in a pack: its share of the pack's time ${fmtDuration(t.pack_share_s)}` : null }, trialDuration(t), runningEpochs(t)),
    h("td", { class: "error-cell" }, error));
}

/** Under a running trial's time so far: how many epochs it has finished and about how long it has
 * left, where the page holds its history. */
function runningEpochs(t) {
  const detail = state.details.get(t.number);
  if (t.status !== "running" || !detail) return null;
  return h("div", { class: "muted", "data-epochs": "" }, runningTrialText(t, detail.history.length, state.job));
}
