// Job page: its four charts (learning curves, objective by rate, the rate x layers heatmap, the
// optimization history), drawn from the page's state.
import { counted, fmtValue } from "./common.js";
import { PALETTE, SHAPES, formatNumber, heatmap, lineChart, scatterChart } from "./charts.js";
import { allTrials, curveTrials, direction, metricLabel, rateValues, state, trialHref } from "./job-state.js";

export function renderCharts() {
  renderCurves();
  renderSearchCharts();
}

export function renderCurves() {
  const job = state.job;
  const series = [];
  curveTrials().forEach((number, i) => {
    const detail = state.details.get(number);
    if (!detail) return;
    // Each trial its own colour and marker shape (colour alone pairs up under colour-blindness);
    // training dashed with hollow markers, validation solid with filled ones.
    const colour = PALETTE[i % PALETTE.length], shape = SHAPES[i % SHAPES.length], href = trialHref(number);
    const tag = number === job.best?.number ? "best, " : detail.status === "running" ? "running, " : "";
    const name = `trial ${number} (${tag}rate ${fmtValue(detail.hyperparameters.dropout_rate)}, ${counted(detail.hyperparameters.dropout_layers, "layer")})`;
    series.push({ key: `${number}:loss`, label: `${name}: training`, color: colour, shape, href, dashed: true, hollow: true, points: detail.history.map((e) => [e.epoch, e.loss]) });
    series.push({ key: `${number}:val_loss`, label: `${name}: validation`, color: colour, shape, href, points: detail.history.map((e) => [e.epoch, e.val_loss]) });
  });
  lineChart(document.getElementById("curves-chart"), {
    series, xLabel: "epoch", yLabel: `loss (${metricLabel("loss").split("(")[1]}`, title: "Training and validation loss per epoch",
  });
}

function renderSearchCharts() {
  const job = state.job;
  const metric = job.spec.objective.metric;
  const completed = allTrials().filter((t) => t.status === "completed" && Number.isFinite(t.score));
  const layerValues = [...new Set(allTrials().map((t) => t.hyperparameters.dropout_layers))].sort((a, b) => a - b);
  const layerColour = (l) => PALETTE[layerValues.indexOf(l) % PALETTE.length];
  const layerShape = (l) => SHAPES[layerValues.indexOf(l) % SHAPES.length];

  // Objective against dropout rate, one colour and one marker shape per number of dropout layers;
  // trials at the same rate (a grid's) are spread a little sideways so that none hides another.
  // A network without dropout has no rate (null): it is drawn at rate 0, where it belongs.
  const rateOf = (t) => t.hyperparameters.dropout_rate ?? 0;
  const rate = job.spec.search_space.dropout_rate;
  const rateBounds = rate.values ? [Math.min(0, ...rate.values), Math.max(...rate.values)] : [Math.min(0, rate.min), rate.max];
  const pad = (rateBounds[1] - rateBounds[0]) * 0.05 || 0.05;
  scatterChart(document.getElementById("rate-chart"), {
    points: completed.map((t) => ({
      key: t.number, x: rateOf(t), y: t.score, color: layerColour(t.hyperparameters.dropout_layers), shape: layerShape(t.hyperparameters.dropout_layers),
      href: trialHref(t.number),
      title: `trial ${t.number}: ${t.hyperparameters.dropout_layers ? `dropout rate ${fmtValue(t.hyperparameters.dropout_rate)}, ${counted(t.hyperparameters.dropout_layers, "dropout layer")}` : "no dropout"}, ${metric} ${formatNumber(t.score)}`,
    })),
    xDomain: [rateBounds[0] - pad, rateBounds[1] + pad], jitter: 8,
    legendItems: layerValues.map((l) => ({ label: `${l} dropout layer${l === 1 ? "" : "s"}`, color: layerColour(l), shape: layerShape(l) })),
    xLabel: "dropout rate (fraction of units dropped)", yLabel: metricLabel(metric), title: `${metric} against dropout rate`,
  });

  // Heatmap of the best objective over dropout rate x dropout layers.
  const distinct = [...new Set(allTrials().map(rateOf))].sort((a, b) => a - b);
  const listed = rateValues(rate);
  const allowed = listed && !listed.includes(0) ? [0, ...listed] : listed;
  const discrete = allowed !== null || distinct.length <= 10;
  const bins = discrete ? (allowed || distinct) : Array.from({ length: 10 }, (_, i) => rateBounds[0] + ((rateBounds[1] - rateBounds[0]) * i) / 10);
  const binWidth = (rateBounds[1] - rateBounds[0]) / 10 || 1;
  const binOf = (v) => {
    if (discrete) return bins.indexOf(v);
    return Math.min(9, Math.max(0, Math.floor((v - rateBounds[0]) / binWidth)));
  };
  // Which cells a trial can fall in: with 0 dropout layers there is no dropout, whose rate is drawn
  // at 0; with some, a rate of the canonical space, which holds only rates above 0 (null: none).
  const positive = job.search_space.dropout_rate;
  const allowedRate = (v) => positive !== null && v > 0 &&
    (positive.values ? positive.values.includes(v) : v >= positive.min - 1e-12 && v <= positive.max + 1e-12);
  const possible = (xi, layers) => {
    if (layers === 0) return binOf(0) === xi;
    if (positive === null) return false;
    if (discrete) return allowedRate(bins[xi]);
    const lo = rateBounds[0] + xi * binWidth;
    return positive.values ? positive.values.some((v) => binOf(v) === xi) : lo + binWidth > positive.min && lo <= positive.max;
  };
  const whyNot = (xi, layers) => (layers === 0 ? "0 dropout layers means no dropout (drawn at rate 0)"
    : discrete && bins[xi] === 0 ? "a dropout layer's rate is above 0 (rate 0 is the network without dropout)"
      : "a rate outside the search space");
  // The canonical space's layer counts: 0 (the baseline) always among them.
  const layerAxis = job.search_space.dropout_layers;
  const cellBest = new Map();
  for (const t of completed) {
    const key = `${binOf(rateOf(t))},${layerAxis.indexOf(t.hyperparameters.dropout_layers)}`;
    const prev = cellBest.get(key);
    if (prev === undefined || (direction() === "min" ? t.score < prev.score : t.score > prev.score)) cellBest.set(key, t);
  }
  const xLabels = discrete ? bins.map(fmtValue) : bins.map((b) => `${fmtValue(b)}–`);
  const place = (xi, yi) => `dropout rate ${xLabels[xi]}, ${counted(layerAxis[yi], "layer")}`;
  const untried = [], impossible = [];
  xLabels.forEach((_, xi) => layerAxis.forEach((layers, yi) => {
    if (cellBest.has(`${xi},${yi}`)) return;
    if (possible(xi, layers)) untried.push({ xi, yi, title: `${place(xi, yi)}: untried, no completed trial` });
    else impossible.push({ xi, yi, title: `${place(xi, yi)}: not possible, ${whyNot(xi, layers)}` });
  }));
  heatmap(document.getElementById("heatmap-chart"), {
    xLabels, yLabels: layerAxis.map(String), better: direction(), valueLabel: metric,
    cells: [...cellBest.entries()].map(([key, t]) => {
      const [xi, yi] = key.split(",").map(Number);
      return { xi, yi, value: t.score, href: trialHref(t.number), title: `${place(xi, yi)}: best ${metric} ${formatNumber(t.score)} (trial ${t.number})` };
    }),
    untried, impossible, impossibleLabel: "n/a: no trial can fall there (0 dropout layers is the network without dropout, drawn at rate 0; a dropout layer's rate is above 0)",
    xLabel: "dropout rate (fraction of units dropped)", yLabel: "dropout layers (count)", title: `best ${metric} by dropout rate and layers`,
  });

  // Optimization history with the best-so-far line.
  const byNumber = [...completed].sort((a, b) => a.number - b.number);
  const bestSoFar = [];
  let best = null;
  for (const t of byNumber) {
    if (best === null || (direction() === "min" ? t.score < best : t.score > best)) best = t.score;
    bestSoFar.push([t.number, best]);
  }
  scatterChart(document.getElementById("history-chart"), {
    points: byNumber.map((t) => ({ key: t.number, x: t.number, y: t.score, color: PALETTE[5], href: trialHref(t.number), title: `trial ${t.number}: ${metric} ${formatNumber(t.score)}` })),
    lines: [{ key: "best-so-far", label: "best so far", color: PALETTE[4], points: bestSoFar, step: true }],
    legendItems: [{ label: `${metric} of a trial`, color: PALETTE[5] }],
    xLabel: "trial number", yLabel: metricLabel(metric), title: `${metric} by trial number`, integerX: true,
  });
}
