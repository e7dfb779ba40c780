// Datasets page: every dataset the caller sees (built-ins, then uploads), what it holds, how big its
// stored file is and which jobs use it; an upload form; and a delete button per upload, whose refusal
// (409: a queued or running job uses it) is shown beside that dataset's row.
import { changedListing, counted, deleteListed, fmtBytes, fmtTime, h, poll, refusalRow, showFlash } from "./common.js";
import { wireUploadForm } from "./upload.js";

const tbody = document.querySelector("#datasets-table tbody");
const flashBox = document.getElementById("flash");
const loadError = document.getElementById("load-error");
const COLUMNS = 8;
const SHOWN_LABELS = 6; // class labels listed in the table; the rest are counted (all in the tooltip, up to TITLE_LABELS)
const TITLE_LABELS = 100;
showFlash(flashBox);

let datasets = [];
const listing = { shown: "" }; // the list last drawn (see changedListing)
const refusals = new Map(); // dataset id -> why its delete was refused, shown under its row

function shapeText(d) {
  const text = `${d.n_samples.toLocaleString("en")} × ${d.n_features.toLocaleString("en")}`;
  return d.input_shape.length > 1 ? `${text} (${d.input_shape.join("×")})` : text;
}

function classesCell(d) {
  if (d.task !== "classification" || !d.class_labels) return h("span", { class: "muted" }, "– (regression)");
  const labels = d.class_labels;
  const listed = labels.slice(0, SHOWN_LABELS).join(", ");
  const more = labels.length > SHOWN_LABELS ? ` and ${labels.length - SHOWN_LABELS} more` : "";
  const title = labels.slice(0, TITLE_LABELS).join(", ") + (labels.length > TITLE_LABELS ? ", …" : "");
  return [h("span", { "data-classes": labels.length }, String(labels.length)),
    h("div", { class: "muted labels", title }, listed + more)];
}

function usedByCell(d) {
  if (!d.job_count) return h("span", { class: "muted" }, "no jobs");
  const active = d.active_job_count ? `, ${d.active_job_count} active` : "";
  return `${counted(d.job_count, "job")}${active}`;
}

function row(d) {
  const builtin = d.format === "builtin";
  return h("tr", { "data-dataset": d.id },
    h("td", { class: "name-cell", "data-label": "Name" },
      h("span", { class: "ds-name" }, d.name), builtin ? h("span", { class: "tag" }, "built in") : null,
      h("div", { class: "muted ds-id" }, d.format === "csv" ? `${d.id} · target ${d.target}` : d.id)),
    h("td", { "data-label": "Task" }, d.task),
    h("td", { "data-label": "Samples × features", title: "samples × features" }, shapeText(d)),
    h("td", { "data-label": "Classes" }, classesCell(d)),
    h("td", { class: "num", "data-label": "Size" },
      fmtBytes(d.size_bytes) ?? h("span", { class: "muted", title: builtin ? "ships with scikit-learn" : "not recorded" }, "–")),
    h("td", { "data-label": "Used by", "data-used-by": `${d.job_count}/${d.active_job_count}` }, usedByCell(d)),
    h("td", { "data-label": "Created" }, builtin ? h("span", { class: "muted" }, "built in") : fmtTime(d.created_at)),
    h("td", { class: "actions" }, builtin ? null : h("button", {
      type: "button", class: "danger", "data-delete": d.id, "aria-label": `Delete dataset ${d.name}`,
      onclick: () => remove(d),
    }, "Delete")),
  );
}

function render() {
  tbody.replaceChildren(...datasets.flatMap((d) => [row(d), refusalRow(d, refusals, COLUMNS)]).filter(Boolean));
}

async function refresh() {
  const data = await changedListing("/api/v1/datasets", "datasets", loadError, listing);
  if (data === null) return;
  datasets = data;
  for (const id of refusals.keys()) if (!data.some((d) => d.id === id)) refusals.delete(id);
  render();
}

async function remove(d) {
  const gone = await deleteListed("dataset", d, { used: "used", refusals, flashBox });
  if (gone === null) return;
  if (!gone) render(); // the refusal now, even if the list itself has not changed
  listing.shown = "";
  await refresh();
  if (!gone) tbody.querySelector(`[data-delete="${CSS.escape(d.id)}"]`)?.focus();
}

wireUploadForm(document.getElementById("upload-form"), async () => { await refresh(); return ""; });

await refresh();
// Jobs start and end elsewhere: "used by" is brought up to date every 10 s.
poll(refresh, () => 10000).start();
