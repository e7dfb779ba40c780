// One trial: hyperparameters, timings, error, and its per-epoch metrics as a table and charts.
import { badge, conditionalGet, epochsText, errorSummary, runningTrialText, fmtDuration, fmtTime, fmtValue, h, idsFromPath, poll, showNotFound } from "./common.js";
import { PALETTE, formatNumber, lineChart } from "./charts.js";

const { jobId, number } = idsFromPath(); // each null when malformed
let trial = null;
const get = conditionalGet(); // polls of an unchanged trial are 304s

async function refresh() {
  const [t, j] = await Promise.all([get(`/api/v1/jobs/${jobId}/trials/${number}`), get(`/api/v1/jobs/${jobId}`)]);
  if (!t.ok) { showMissing(t.status); return; }
  trial = t.data;
  const job = j.ok ? j.data : null;
  document.title = `Trial ${trial.number} · droptune`;
  const back = document.getElementById("back-link");
  back.href = `/jobs/${jobId}`;
  back.textContent = `← ${job ? job.name : "Job"}`;
  document.getElementById("trial-title").textContent = `Trial ${trial.number}`;
  document.getElementById("trial-status").replaceChildren(badge(trial.status));
  // The cause first, in the error style; the traceback folded under it.
  document.getElementById("trial-error").hidden = !trial.error;
  document.getElementById("trial-cause").textContent = errorSummary(trial.error);
  document.getElementById("trial-traceback").textContent = trial.error || "";
  const facts = (id, rows) => document.getElementById(id).replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  facts("trial-hps", Object.entries(trial.hyperparameters).map(([k, v]) => [k.replace("_", " "), fmtValue(v)]));
  const metric = job?.spec.objective.metric || "score";
  facts("trial-facts", [
    [metric, formatNumber(trial.score)], ["Best epoch", trial.best_epoch ?? "–"], ["Epochs run", trial.status === "running" ? runningTrialText(trial, trial.epochs_done, job) : epochsText(trial.epochs_done, job)],
    ["Started", fmtTime(trial.started_at)], ["Finished", fmtTime(trial.finished_at)], ["Duration", fmtDuration(trial.duration_s)],
    ...(trial.pack_share_s != null ? [["Share of its pack", `${fmtDuration(trial.pack_share_s)} (its pack's time over the trials it trained together)`]] : []),
  ]);
  const keys = [...new Set(trial.history.flatMap((e) => Object.keys(e)))].filter((k) => k !== "epoch").sort();
  const table = document.getElementById("epochs-table");
  table.tHead.replaceChildren(h("tr", {}, h("th", { scope: "col" }, "epoch"), keys.map((k) => h("th", { scope: "col", class: "num" }, k))));
  table.tBodies[0].replaceChildren(...trial.history.map((e) => h("tr", { class: e.epoch === trial.best_epoch ? "best" : null },
    h("td", {}, e.epoch === trial.best_epoch ? `${e.epoch} (best)` : e.epoch), keys.map((k) => h("td", { class: "num" }, formatNumber(e[k]))))));
  const lossUnit = keys.includes("mae") ? "mean squared error, target units²" : "cross-entropy, nats";
  lineChart(document.getElementById("loss-chart"), {
    xLabel: "epoch", yLabel: `loss (${lossUnit})`, title: "Loss per epoch",
    series: [
      { key: "loss", label: "training loss", color: PALETTE[0], dashed: true, hollow: true, points: trial.history.map((e) => [e.epoch, e.loss]) },
      { key: "val_loss", label: "validation loss", color: PALETTE[0], points: trial.history.map((e) => [e.epoch, e.val_loss]) },
    ],
  });
  const other = keys.find((k) => !k.startsWith("val_") && k !== "loss");
  document.getElementById("metric-title").textContent = other ? `${capitalised(other)} per epoch` : "Metric per epoch";
  const unit = other === "accuracy" ? "fraction correct, 0–1" : "target units";
  lineChart(document.getElementById("metric-chart"), {
    xLabel: "epoch", yLabel: other ? `${other} (${unit})` : "", title: `${capitalised(other)} per epoch`,
    series: other ? [
      { key: other, label: `training ${other}`, color: PALETTE[2], dashed: true, hollow: true, points: trial.history.map((e) => [e.epoch, e[other]]) },
      { key: `val_${other}`, label: `validation ${other}`, color: PALETTE[2], points: trial.history.map((e) => [e.epoch, e[`val_${other}`]]) },
    ] : [],
  });
}

/** "Accuracy" for "accuracy": a heading's first letter, the metric's name kept. */
function capitalised(name) {
  return name ? name[0].toUpperCase() + name.slice(1) : name;
}

function showMissing(status = 404) {
  trial = null;
  const title = document.getElementById("trial-title");
  if (status === 404) {
    showNotFound(title, "Trial");
  } else {
    title.textContent = "Could not load the trial";
    document.title = "Could not load the trial · droptune";
  }
}

if (jobId === null || number === null) {
  showMissing();
} else {
  await refresh();
  poll(refresh, () => (trial && trial.status === "running" ? 2000 : null)).start();
}
