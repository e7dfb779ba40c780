// Networks page: the caller's own Keras networks (their class, layers, weights, input and dropout sites,
// and which jobs train them); under each row, its layers with the dropout sites marked and its compile
// settings, opened by its "Layers" button or by the address /networks#<id>; an upload form whose
// refusal (422: the layer or the reason) is shown beside the file; and a delete button per network,
// whose refusal (409: a queued or running job trains it) is shown beside that network's row.
import {
  changedListing, clearErrors, counted, createOnce, deleteListed, fmtBytes, fmtTime, fmtValue, formSignature, h, poll, refusalRow,
  showErrors, showFlash,
} from "./common.js";
import { inputsText, shapeText, siteKinds, sitesCount } from "./network-facts.js";
const uploadOnce = createOnce(); // an upload sent again after a lost answer makes no second network

const tbody = document.querySelector("#networks-table tbody");
const empty = document.getElementById("no-networks");
const flashBox = document.getElementById("flash");
const loadError = document.getElementById("load-error");
const form = document.getElementById("network-form");
const result = document.getElementById("network-result");
const COLUMNS = 9;
showFlash(flashBox);

let networks = [];
const listing = { shown: "" }; // the list last drawn (see changedListing)
const refusals = new Map(); // network id -> why its delete was refused, shown under its row
const expanded = new Set(); // networks whose layers are shown

const muted = (text, title) => h("span", { class: "muted", title }, text);

function usedByCell(n) {
  if (!n.job_count) return muted("no jobs");
  const active = n.active_job_count ? `, ${n.active_job_count} active` : "";
  return `${counted(n.job_count, "job")}${active}`;
}

function row(n) {
  const open = expanded.has(n.id);
  return h("tr", { "data-network": n.id },
    h("td", { class: "name-cell", "data-label": "Name" },
      h("span", { class: "net-name" }, n.name),
      h("div", { class: "muted net-id" }, [n.id, fmtBytes(n.size_bytes)].filter(Boolean).join(" · "))),
    h("td", { "data-label": "Model" }, n.model_class, h("div", { class: "muted small" }, `Keras ${n.keras_version}`)),
    h("td", { class: "num", "data-label": "Layers" }, String(n.layers.length)),
    h("td", { class: "num", "data-label": "Parameters" },
      n.parameters === null ? muted("–", "the file does not record its shapes") : n.parameters.toLocaleString("en")),
    h("td", { class: "wrap", "data-label": "Input" }, inputsText(n)),
    h("td", { class: "wrap", "data-label": "Dropout sites", "data-sites": n.dropout_sites.length },
      String(n.dropout_sites.length), h("div", { class: "muted small" }, siteKinds(n))),
    h("td", { "data-label": "Used by", "data-used-by": `${n.job_count}/${n.active_job_count}` }, usedByCell(n)),
    h("td", { class: "when", "data-label": "Created" }, fmtTime(n.created_at)),
    h("td", { class: "actions" },
      h("button", {
        type: "button", class: "toggle", "data-toggle": n.id, "aria-expanded": String(open), "aria-controls": `layers-${n.id}`,
        "aria-label": `Layers of network ${n.name}`, onclick: () => toggle(n.id),
      }, "Layers"),
      h("button", {
        type: "button", class: "danger", "data-delete": n.id, "aria-label": `Delete network ${n.name}`,
        onclick: () => remove(n),
      }, "Delete")),
  );
}

/** Each layer's dropout marks, by layer name: "+ SpatialDropout2D after" on the layer droptune adds
 * one after, "searched" on the network's own dropout layer; numbered from the input, as "number of
 * dropout layers" fills them (by default). */
function siteMarks(n) {
  const marks = new Map();
  n.dropout_sites.forEach((site, i) => {
    const name = site.layer ?? site.after;
    const mark = site.layer
      ? h("span", { class: "site own", "data-site": i + 1, title: "the network's own dropout layer: a search sets its rate" }, `searched (site ${i + 1})`)
      : h("span", { class: "site added", "data-site": i + 1, title: `droptune adds a ${site.kind} layer after this one` }, `+ ${site.kind} after (site ${i + 1})`);
    marks.set(name, [...(marks.get(name) || []), mark]);
  });
  return marks;
}

function compileFacts(n) {
  const c = n.compile || {};
  const rows = [
    ["Inputs", n.inputs.map((i) => `${i.name}: ${shapeText(i.shape)} ${i.dtype}`).join("; ")],
    ["Outputs", n.outputs.join(", ")],
  ];
  if (!c.loss && !c.optimizer && !c.metrics) {
    rows.push(["Compiled", "no: a job compiles it with the task's loss and metric, and Adam"]);
  } else {
    const opt = c.optimizer;
    const rate = opt?.learning_rate != null ? `, learning rate ${fmtValue(opt.learning_rate)}` : "";
    rows.push(["Loss", c.loss ?? "–"], ["Optimizer", opt ? `${opt.class_name}${rate}` : "–"],
      ["Metrics", c.metrics?.length ? c.metrics.join(", ") : "none"]);
  }
  rows.push(["Dropout sites", `${sitesCount(n)}, filled from the input (a job may fill them from the output)`]);
  return h("dl", { class: "facts compile", "data-compile": n.id }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function layersTable(n) {
  const marks = siteMarks(n);
  const heads = ["Layer", "Class", "Output shape", "Parameters", "Dropout"];
  return h("div", { class: "table-wrap" }, h("table", { class: "layers-table", "aria-label": `Layers of ${n.name}` },
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col", class: t === "Parameters" ? "num" : null }, t)))),
    h("tbody", {}, n.layers.map((layer) => h("tr", { "data-layer": layer.name },
      h("td", { "data-label": "Layer" }, layer.name),
      h("td", { "data-label": "Class" }, layer.class_name),
      h("td", { "data-label": "Output shape" }, shapeText(layer.output_shape) ?? muted("–", "not recorded in the file")),
      h("td", { class: "num", "data-label": "Parameters" },
        layer.parameters === null ? muted("–", "not recorded in the file") : layer.parameters.toLocaleString("en")),
      h("td", { "data-label": "Dropout", class: "sites" }, marks.get(layer.name) || null))))));
}

function layersRow(n) {
  return h("tr", { class: "layers-row", id: `layers-${n.id}`, "data-layers-for": n.id, hidden: !expanded.has(n.id) },
    h("td", { colspan: COLUMNS },
      h("div", { class: "layers-panel" },
        compileFacts(n),
        layersTable(n),
        h("p", {}, h("a", { href: `/new?network=${encodeURIComponent(n.id)}` }, `New job with ${n.name}`)))));
}

function render() {
  tbody.replaceChildren(...networks.flatMap((n) => [row(n), layersRow(n), refusalRow(n, refusals, COLUMNS)]).filter(Boolean));
  empty.hidden = networks.length > 0;
}

/** Show or hide a network's layers, in place (the focus stays on its button); the address says which
 * network is open, so that it can be linked to. */
function toggle(id, open = !expanded.has(id)) {
  if (open) expanded.add(id); else expanded.delete(id);
  document.getElementById(`layers-${id}`).hidden = !open;
  tbody.querySelector(`[data-toggle="${CSS.escape(id)}"]`).setAttribute("aria-expanded", String(open));
  history.replaceState(null, "", open ? `#${encodeURIComponent(id)}` : location.pathname);
}

async function refresh() {
  const data = await changedListing("/api/v1/networks", "networks", loadError, listing);
  if (data === null) return;
  networks = data;
  for (const id of [...refusals.keys(), ...expanded]) {
    if (!data.some((n) => n.id === id)) { refusals.delete(id); expanded.delete(id); }
  }
  render();
}

async function remove(n) {
  const gone = await deleteListed("network", n, { used: "trained", refusals, flashBox });
  if (gone === null) return;
  if (!gone) render(); // the refusal now, even if the list itself has not changed
  listing.shown = "";
  await refresh();
  if (!gone) tbody.querySelector(`[data-delete="${CSS.escape(n.id)}"]`)?.focus();
  else document.getElementById("main").focus(); // its row, and the button, are gone
}

// The upload: the file is required here (an empty file input would be sent as an empty file); the
// name, left empty, is not sent (the file's name stands in).
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  if (!form.elements.file.files.length) {
    showErrors(form, [{ loc: ["file"], msg: "required: choose a .keras file" }]);
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  result.textContent = "Uploading…";
  try {
    const body = new FormData(form);
    if (!String(body.get("name") || "").trim()) body.delete("name");
    const { ok, data, status } = await uploadOnce("/api/v1/networks", { method: "POST", body }, formSignature(body));
    if (!ok) { result.textContent = ""; showErrors(form, data?.detail, `The server answered ${status}.`); return; }
    form.reset();
    expanded.add(data.id);
    listing.shown = "";
    await refresh();
    const weights = data.parameters === null ? "" : `, ${data.parameters.toLocaleString("en")} parameters`;
    result.textContent = `Uploaded "${data.name}": ${data.model_class}, ${counted(data.layers.length, "layer")}${weights}, ${sitesCount(data)}. Its layers are shown above.`;
  } finally {
    button.disabled = false;
  }
});

/** `/networks#<id>` (the job page links so): that network's layers, open and in view. */
function openFromAddress() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (!id || !networks.some((n) => n.id === id)) return;
  toggle(id, true);
  const target = tbody.querySelector(`tr[data-network="${CSS.escape(id)}"]`);
  target.scrollIntoView({ block: "start" });
  target.querySelector("[data-toggle]").focus({ preventScroll: true });
}

await refresh();
openFromAddress();
window.addEventListener("hashchange", openFromAddress);
// Jobs start and end elsewhere: "used by" is brought up to date every 10 s.
poll(refresh, () => 10000).start();
