// New job and upload forms. The server validates; its errors appear beside their fields.
import { api, clearErrors, counted, createOnce, fmtValue, h, showErrors } from "./common.js";
import { inputsText, networkMetrics, siteName, sitesCount } from "./network-facts.js";
import { wireUploadForm } from "./upload.js";

const form = document.getElementById("job-form");
const datasetSelect = document.getElementById("f-dataset");
const metricSelect = document.getElementById("f-metric");
const networkSelect = document.getElementById("f-network");
const layersMax = document.getElementById("f-layers-max");
let datasets = [];
let networks = [];
// The model fields of each kind of network (store/spec.py's TEMPLATE_FIELDS and NETWORK_FIELDS): a job
// on the user's network may not send the template's, nor a template job the network's.
const TEMPLATE_FIELDS = ["hidden_layers", "units", "activation"];
const NETWORK_FIELDS = ["network_id", "dropout_sites", "dropout_order", "dropout_kind"];

async function loadDatasets(selectId) {
  const { ok, data } = await api("/api/v1/datasets");
  if (!ok) return;
  datasets = data;
  datasetSelect.replaceChildren(...data.map((d) =>
    h("option", { value: d.id }, `${d.name} — ${d.task}, ${counted(d.n_samples, "sample")}${d.format === "builtin" ? "" : ` (${d.format})`}`)));
  const wanted = selectId || new URLSearchParams(location.search).get("dataset");
  if (wanted && data.some((d) => d.id === wanted)) datasetSelect.value = wanted;
  updateMetrics();
}

async function loadNetworks() {
  const { ok, data } = await api("/api/v1/networks");
  if (!ok) return;
  networks = data;
  networkSelect.replaceChildren(networkSelect.options[0],
    ...data.map((n) => h("option", { value: n.id }, `${n.name} — ${n.model_class}, input ${inputsText(n)}, ${sitesCount(n)}`)));
  const wanted = new URLSearchParams(location.search).get("network");
  if (wanted && data.some((n) => n.id === wanted)) networkSelect.value = wanted;
  applyNetwork();
}

const chosenNetwork = () => networks.find((n) => n.id === networkSelect.value) || null;

/** Show the fields of the network chosen: the template's (hidden layers, units, the units search) or
 * the user's network's (the order its sites fill in; the kind of dropout after its convolutions, where
 * it has any). Fields hidden are disabled too, so the form neither sends nor requires them. Dropout
 * layers reach at most the network's sites, and the objective lists what its training reports. */
function applyNetwork() {
  const network = chosenNetwork();
  const spatial = network?.dropout_sites.some((s) => !s.layer && s.kind !== "Dropout");
  const show = (field, on) => {
    field.hidden = !on;
    for (const input of field.querySelectorAll("input, select")) input.disabled = !on;
  };
  for (const field of form.querySelectorAll(".template-only")) show(field, !network);
  for (const field of form.querySelectorAll(".network-only")) show(field, Boolean(network) && (!field.classList.contains("spatial-only") || spatial));
  const about = document.getElementById("network-about");
  document.getElementById("network-fit").textContent = "";
  if (!network) {
    layersMax.removeAttribute("max");
    document.getElementById("layers-hint").textContent = "at most Hidden layers";
    about.replaceChildren("Or one of your own Keras networks: upload it on the ", h("a", { href: "/networks" }, "Networks"), " page.");
  } else {
    const sites = network.dropout_sites.length;
    layersMax.max = String(sites);
    if (Number(layersMax.value) > sites) layersMax.value = String(sites);
    document.getElementById("layers-hint").textContent = `at most ${sites}: the network's dropout sites`;
    const opt = network.compile?.optimizer;
    const trains = opt ? ` It trains with its own ${opt.class_name}${opt.learning_rate != null ? ` (learning rate ${fmtValue(opt.learning_rate)})` : ""}.` : "";
    about.replaceChildren(`${sitesCount(network)}${sites ? `: ${network.dropout_sites.map(siteName).join(", ")}` : ""}.${trains} `,
      h("a", { href: `/networks#${encodeURIComponent(network.id)}` }, "Its layers"));
  }
  updateMetrics();
}

function updateMetrics() {
  const dataset = datasets.find((d) => d.id === datasetSelect.value);
  const network = chosenNetwork();
  const taskMetrics = dataset ? dataset.metrics : ["val_loss"];
  const metrics = network ? networkMetrics(network, taskMetrics) : taskMetrics;
  const current = metricSelect.value;
  metricSelect.replaceChildren(...metrics.map((m) => h("option", { value: m }, m)));
  metricSelect.value = metrics.includes(current) ? current : "val_loss";
}

const num = (value) => (value === "" ? undefined : Number(value));

function specFromForm() {
  const f = new FormData(form);
  const rate = { min: num(f.get("rate_min")), max: num(f.get("rate_max")) };
  if (f.get("rate_step") !== "") rate.step = num(f.get("rate_step"));
  const space = {
    dropout_rate: rate,
    dropout_layers: { min: num(f.get("layers_min")), max: num(f.get("layers_max")) },
  };
  const units = String(f.get("units_values") || "").split(",").map((s) => s.trim()).filter(Boolean);
  if (units.length) space.units = { values: units.map(Number) };
  if (f.get("lr_min") !== "" || f.get("lr_max") !== "") {
    space.learning_rate = { min: num(f.get("lr_min")), max: num(f.get("lr_max")), sampling: "log" };
  }
  const networkId = String(f.get("network_id") || "");
  const model = networkId
    ? { network_id: networkId, dropout_order: f.get("dropout_order"), ...(f.get("dropout_kind") ? { dropout_kind: f.get("dropout_kind") } : {}) }
    : { hidden_layers: num(f.get("hidden_layers")), units: num(f.get("model_units")) };
  return {
    name: String(f.get("name") || ""),
    dataset_id: String(f.get("dataset_id") || ""),
    algorithm: f.get("algorithm"),
    max_trials: num(f.get("max_trials")),
    objective: { metric: f.get("metric") },
    search_space: space,
    model,
    training: { epochs: num(f.get("epochs")), batch_size: num(f.get("batch_size")), validation_split: num(f.get("validation_split")) },
    seed: num(f.get("seed")),
    pack_size: packSize(f.get("pack_size")),
  };
}

/** "auto", or a whole number as typed (the server refuses anything else, beside the field). */
function packSize(value) {
  const text = String(value || "").trim();
  return text === "auto" || !/^\d+$/.test(text) ? text : Number(text);
}

/** An error for each required field left empty, all at once: an empty field is never sent, where the
 * service would fill in its default without the user knowing. */
function missingFields() {
  return [...form.querySelectorAll("input[required], select[required]")]
    .filter((input) => !input.disabled && !input.value.trim())
    .map((input) => ({ loc: [input.closest("[data-loc]").dataset.loc], msg: "required: enter a value" }));
}

// "Run again" (`/new?from=<job id>`): the form filled in from that job's spec, and the spec's settings
// that the form has no field for (activation, early stopping, repeats, packs…) kept as they were.
let rerunOf = null;

/** The form's spec over the job's it reruns: objects the form fills in part (model, training) are
 * merged field by field; the rest, the search space and objective included, come from the form. */
function withRerun(spec) {
  if (!rerunOf) return spec;
  const merged = { ...rerunOf, ...spec };
  for (const key of ["model", "training"]) merged[key] = { ...rerunOf[key], ...spec[key] };
  // The form's network decides which model fields go; a job on another network than the one rerun
  // takes that network's learning rate and sites (or the template's default rate), not the old ones.
  for (const key of spec.model.network_id ? TEMPLATE_FIELDS : NETWORK_FIELDS) delete merged.model[key];
  if ((rerunOf.model.network_id ?? null) !== (spec.model.network_id ?? null)) {
    delete merged.model.learning_rate;
    delete merged.model.dropout_sites;
  }
  // A listed range (`values: [...]`) shows as its lowest and highest value; left so, it is sent as listed.
  merged.search_space = { ...spec.search_space };
  for (const [name, { range, shown }] of Object.entries(listedRanges)) {
    const now = spec.search_space[name];
    if (now && now.min === shown.min && now.max === shown.max && now.step === undefined) merged.search_space[name] = range;
  }
  return merged;
}

// The rerun job's ranges given as lists, which the form (min, max, step) cannot show: name -> the
// range and the min and max the form shows for it.
const listedRanges = {};

function fillFromSpec(spec) {
  const set = (name, value) => { if (value !== undefined && value !== null) form.elements[name].value = String(value); };
  const bounds = (range) => (range?.values ? { min: Math.min(...range.values), max: Math.max(...range.values) } : range || {});
  for (const name of ["dropout_rate", "dropout_layers"]) {
    const range = spec.search_space[name];
    if (range?.values) listedRanges[name] = { range, shown: bounds(range) };
  }
  set("name", `${spec.name || "job"} (again)`);
  if (datasets.some((d) => d.id === spec.dataset_id)) datasetSelect.value = spec.dataset_id;
  const networkId = spec.model.network_id;
  networkSelect.value = networkId && networks.some((n) => n.id === networkId) ? networkId : "";
  applyNetwork();
  if (networkSelect.value) {
    set("dropout_order", spec.model.dropout_order);
    if (!form.elements.dropout_kind.disabled) set("dropout_kind", spec.model.dropout_kind);
  }
  set("algorithm", spec.algorithm);
  set("max_trials", spec.max_trials);
  set("seed", spec.seed);
  set("pack_size", spec.pack_size);
  if ([...metricSelect.options].some((o) => o.value === spec.objective.metric)) set("metric", spec.objective.metric);
  const rate = bounds(spec.search_space.dropout_rate);
  set("rate_min", rate.min); set("rate_max", rate.max);
  form.elements.rate_step.value = rate.step ?? "";
  const layers = bounds(spec.search_space.dropout_layers);
  set("layers_min", layers.min); set("layers_max", layers.max);
  form.elements.units_values.value = spec.search_space.units?.values?.join(", ") ?? "";
  form.elements.lr_min.value = spec.search_space.learning_rate?.min ?? "";
  form.elements.lr_max.value = spec.search_space.learning_rate?.max ?? "";
  set("hidden_layers", spec.model.hidden_layers); set("model_units", spec.model.units);
  set("epochs", spec.training.epochs); set("batch_size", spec.training.batch_size);
  set("validation_split", spec.training.validation_split);
}

const submitOnce = createOnce(); // a submit sent again after a lost answer makes no second job
const LOST = "The connection failed before the server answered. Submit again: if the job was created, you are taken to it.";
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const missing = missingFields();
  if (missing.length) { showErrors(form, missing); return; }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const spec = JSON.stringify(withRerun(specFromForm()));
    const { ok, data, status } = await submitOnce("/api/v1/jobs", {
      method: "POST", headers: { "content-type": "application/json" }, body: spec,
    }, spec);
    if (ok) { location.href = `/jobs/${data.id}`; return; }
    showErrors(form, data?.detail, `The server answered ${status}.`);
  } catch {
    showErrors(form, null, LOST);
  } finally {
    button.disabled = false;
  }
});

datasetSelect.addEventListener("change", updateMetrics);
networkSelect.addEventListener("change", applyNetwork);

// The plan hint under Max trials: what the spec as typed would run (a grid's size among it), from
// POST /api/v1/jobs/plan, which counts as the search does. Asked for once typing pauses.
const planHint = document.getElementById("plan-hint");
let planTimer = null;
let planAsked = 0;

function planText(plan, spec) {
  const { networks, trials_planned: planned } = plan;
  if (spec.algorithm === "grid") {
    if (planned < networks) return `${counted(networks, "grid point")}; Max trials ${spec.max_trials} runs only the first ${planned}.`;
    return `${counted(networks, "grid point")}: every one runs.`;
  }
  if (spec.algorithm === "hyperband") return `Hyperband's schedule runs up to ${counted(planned, "trial")}.`;
  const space = networks === null ? "a continuous space" : `a space of ${counted(networks, "distinct network")}`;
  return `Up to ${counted(planned, "trial")}, drawn from ${space}.`;
}

// The pack size hint: what a pack means for the algorithm chosen. A Bayesian search learns from each
// pack's results before it chooses the next, so its packs are small (store/bayesian.py).
const packHint = document.getElementById("pack-hint");
const PACK_HINT = packHint.textContent;

function packText(plan, spec) {
  const packs = plan.bayesian;
  if (!packs) return PACK_HINT;
  return `Bayesian: a first pack of its ${counted(packs.initial_points, "initial random point")}, then packs of `
    + `${packs.pack_size} chosen together${spec.pack_size === "auto" ? " (auto)" : ""}, each after the one before has `
    + "ended, so it learns between them; 1 trains one at a time, each chosen after all before it.";
}

async function updatePlan() {
  const asked = ++planAsked;
  if (missingFields().length) { planHint.textContent = ""; return; }
  const spec = withRerun(specFromForm());
  const { ok, data } = await api("/api/v1/jobs/plan", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(spec),
  });
  if (asked !== planAsked) return; // a later edit's answer is on its way
  planHint.textContent = ok ? planText(data, spec) : "";
  packHint.textContent = ok ? packText(data, spec) : PACK_HINT;
  // A network that does not fit the dataset (its input or output shape) is said at once, under it.
  const detail = !ok && Array.isArray(data?.detail) ? data.detail : [];
  const misfit = detail.find((d) => (d.loc || []).join(".") === "body.model.network_id");
  document.getElementById("network-fit").textContent = misfit ? misfit.msg : "";
}

form.addEventListener("input", () => { clearTimeout(planTimer); planTimer = setTimeout(updatePlan, 300); });
form.addEventListener("change", () => { clearTimeout(planTimer); planTimer = setTimeout(updatePlan, 300); });

wireUploadForm(document.getElementById("upload-form"), async (dataset) => {
  await loadDatasets(dataset.id);
  return "It is selected above.";
});

await Promise.all([loadDatasets(), loadNetworks()]);
const rerunId = new URLSearchParams(location.search).get("from");
if (rerunId) {
  const { ok, data } = await api(`/api/v1/jobs/${encodeURIComponent(rerunId)}`);
  if (ok) {
    rerunOf = data.spec;
    fillFromSpec(data.spec);
    const gone = data.spec.model.network_id && !networkSelect.value
      ? ` Its network (${data.spec.model.network_id}) is deleted: droptune's template is chosen instead.` : "";
    document.getElementById("rerun-note").textContent =
      `Filled in from "${data.spec.name}". Settings this form has no field for are kept as that job had them.${gone}` +
      Object.entries(listedRanges).map(([name, { range }]) =>
        ` Its ${name.replace("_", " ")} values (${range.values.join(", ")}) are kept unless you change that range's min, max or step.`).join("");
    document.getElementById("rerun-note").hidden = false;
  }
}
await updatePlan();
