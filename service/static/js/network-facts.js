// A user's network (GET /api/v1/networks/{id}) as the pages show it: its shapes, its dropout sites and
// the metrics its training reports. No fetching, no DOM.
import { counted } from "./common.js";

/** A shape as Keras prints it, the batch dimension first: [8, 8, 1] -> "(None, 8, 8, 1)"; null where
 * the file does not record it. */
export function shapeText(shape) {
  if (!shape) return null;
  return `(${["None", ...shape.map((d) => (d === null ? "None" : String(d)))].join(", ")})`;
}

/** "(None, 4) float32", each input's, joined. */
export function inputsText(network) {
  return network.inputs.map((i) => `${shapeText(i.shape)} ${i.dtype}`).join("; ");
}

/** A site in a sentence: "after wide_relu" where droptune adds a layer, the network's own layer's name
 * where it is the network's. */
export function siteName(site) {
  return site.layer ?? `after ${site.after}`;
}

/** What the sites are: "2 added Dropout", "2 added SpatialDropout2D, 1 added Dropout", "1 own Dropout". */
export function siteKinds(network) {
  const counts = new Map();
  for (const site of network.dropout_sites) {
    const key = `${site.layer ? "own" : "added"} ${site.kind}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  return [...counts].map(([key, n]) => `${n} ${key}`).join(", ");
}

/** "2 dropout sites", "no dropout sites". */
export function sitesCount(network) {
  const n = network.dropout_sites.length;
  return n ? counted(n, "dropout site") : "no dropout sites";
}

/** What a job training the network may optimize: its loss and compiled metrics, each on the
 * validation split too (service/networks.py's network_metrics); a network saved uncompiled trains
 * with the task's metric, so the dataset's own list (`taskMetrics`) holds. */
export function networkMetrics(network, taskMetrics) {
  const listed = network.compile?.metrics || [];
  if (!listed.length) return taskMetrics;
  const compiled = listed.filter((m) => typeof m === "string");
  return ["loss", ...compiled, "val_loss", ...compiled.map((m) => `val_${m}`)];
}
