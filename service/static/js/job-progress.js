// Job page: the job's progress, phase by phase (the search, the confirmation runs, the smaller network,
// MC dropout), each as epochs done of planned with its time and estimate, and what trains now. Shown
// above the verdict while the job runs, so its first screen says how far it is (on a phone too), and
// below it once the job has ended.
import { fmtDuration, h, isActive, packText, timingText } from "./common.js";

const STATES = { waiting: "to come", running: "running", done: "done", skipped: "not needed" };

function phaseRow(phase) {
  const unit = phase.unit === "passes" ? "sets of passes" : "epochs";
  const counts = phase.state === "skipped" ? "–" : `${phase.done} of ${phase.state === "done" ? phase.done : `at most ${phase.planned}`} ${unit}`;
  const time = phase.seconds === null || phase.seconds === undefined ? "–" : fmtDuration(phase.seconds);
  const left = phase.eta_s === null || phase.eta_s === undefined ? "–" : `about ${fmtDuration(phase.eta_s)}`;
  return h("tr", { "data-phase": phase.name, "data-state": phase.state },
    h("th", { scope: "row" }, phase.label),
    h("td", {}, STATES[phase.state]),
    h("td", {}, phase.state === "skipped" ? null : h("progress", { max: Math.max(1, phase.planned), value: phase.done, "aria-label": `${phase.label}: ${counts}` }), " ", counts),
    h("td", { class: "num" }, time),
    h("td", { class: "num" }, phase.state === "running" || phase.state === "waiting" ? left : "–"));
}

/** Draw the Progress panel from the job's `progress` (hidden before the job starts). */
export function renderProgress(job) {
  const panel = document.getElementById("progress-panel");
  const progress = job.progress;
  if (!job.started_at || !progress.phases?.length) { panel.hidden = true; return; }
  panel.hidden = false;
  // Running: first, so the first screen says how far it is. Ended: after the verdict, its answer first.
  const verdict = document.getElementById("verdict");
  if (isActive(job.status)) verdict.before(panel);
  else verdict.after(panel);
  const now = progress.phases.find((p) => p.name === progress.phase);
  const headline = isActive(job.status) && now
    ? [h("strong", {}, now.label), packText(progress.pack) ? `: ${packText(progress.pack)}` : ""]
    : [h("strong", {}, "Ended")];
  document.getElementById("progress-body").replaceChildren(
    h("p", { class: "progress-now", "data-progress-now": "" }, ...headline,
      h("span", { class: "muted" }, " · "),
      h("span", { class: "muted", "data-timing": "job" }, timingText(job))),
    h("p", {},
      h("progress", { class: "wide", max: Math.max(1, progress.epochs_planned), value: progress.epochs_done, "aria-label": "the whole job's epochs" }),
      ` ${progress.epochs_done} of ${isActive(job.status) ? "at most " : ""}${progress.epochs_planned} epochs, all phases`),
    h("div", { class: "table-wrap" }, h("table", { id: "phases-table" },
      h("thead", {}, h("tr", {}, ...["Phase", "State", "Work", "Time", "Left"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...progress.phases.map(phaseRow)))),
  );
}
