// Verdict panel on the job page: does dropout help, which configuration to use, and the evidence
// (GET /api/v1/jobs/{id}/report; its shape is store/report_schema.py). Built as nodes, never markup.
import { api, h, isActive, poll } from "./common.js";
import { formatNumber, intervalChart } from "./charts.js";

// Text on every badge, so the answer never rests on its colour.
const ANSWERS = {
  helps: "dropout helps",
  no_evidence: "no evidence",
  hurts: "dropout hurts",
  nothing_learned: "nothing learned",
  unconfirmed: "unconfirmed",
  pending: "pending",
};
const CALIBRATION = {
  ece: "expected calibration error, dropout off",
  ece_mc: "expected calibration error, MC-averaged",
  coverage_2sd: "share of targets within ±2 predictive sd",
};
// After the job ends, the final report may lag its status by a moment: ask again this often, this many times.
const SETTLE_MS = 3000;
const SETTLE_TRIES = 20;

// --- formatting ----------------------------------------------------------------------------------

const num = formatNumber; // 4 significant digits; null -> "–"
// "±" is a standard deviation over seeds, and says so.
const meanSd = (s) => (!s ? "–" : s.sd === null || s.sd === undefined ? num(s.mean) : `${num(s.mean)} ± ${num(s.sd)} sd`);
const interval = (low, high) => (low === null && high === null ? "–" : `[${num(low)}, ${num(high)}]`);
const statsInterval = (s) => (s ? interval(s.low, s.high) : "–");
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const words = (key) => key.replaceAll("_", " ").replaceAll(":", " × ");
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
const better = (report) => (report.direction === "max" ? "higher is better" : "lower is better");
// An advantage is > 0 when the first named does better, whichever way the objective goes: say how it is taken.
const advantageOf = (report, first, second) => (report.direction === "max"
  ? `${first}'s ${report.objective} − ${second}'s`
  : `${second}'s ${report.objective} − ${first}'s`);
// The verdict's interval: simultaneous when several dropout configurations were compared with the baseline.
const simultaneous = (verdict) => (verdict.comparisons > 1 && verdict.answer !== "hurts"
  ? ` (simultaneous over the ${verdict.comparisons} dropout configurations compared)` : "");
// The level of the report's intervals as a percentage, read from the report itself.
const level = (report) => `${+(report.confidence * 100).toFixed(1)}%`;

function facts(rows) {
  return h("dl", { class: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** A table in its own scrolling box, so a wide one never widens the page. */
function table(label, head, rows) {
  return h("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": label },
    h("table", {},
      h("thead", {}, h("tr", {}, head.map(([text, attrs]) => h("th", { scope: "col", ...attrs }, text)))),
      h("tbody", {}, rows)));
}

// --- sections ----------------------------------------------------------------------------------

function summary(report, trialHref) {
  const { verdict } = report;
  const nodes = [
    h("div", { class: "verdict-head" },
      h("span", { class: `badge answer answer-${verdict.answer}`, "data-answer": verdict.answer }, ANSWERS[verdict.answer] || words(verdict.answer)),
      h("p", { class: "verdict-sentence", "data-testid": "verdict-sentence" }, verdict.sentence)),
  ];
  const failed = report.runs.filter((r) => r.status !== "completed").length;
  const context = report.final
    ? `Final report. Each configuration was trained again with ${plural(report.repeats, "seed")}` +
      (report.runs.length ? ` (${plural(report.runs.length, "confirmation run")}, ${failed} failed).` : ".")
    : `Provisional: from the ${plural(report.effects.trials, "completed trial")} so far. The verdict comes once the search and its confirmation runs end.`;
  nodes.push(h("p", { class: "muted verdict-meta" },
    h("span", { "data-testid": "verdict-objective" }, `Objective: ${report.objective}, ${better(report)}. `), context));
  if (verdict.notes?.length) {
    nodes.push(h("ul", { class: "notes", "aria-label": "caveats" },
      verdict.notes.map((n) => h("li", { "data-note": n.kind }, n.text))));
  }
  if (verdict.difference) {
    const d = verdict.difference;
    const dropout = verdict.dropout ? ` (${verdict.dropout})` : "";
    nodes.push(h("p", { class: "verdict-difference" },
      `Dropout's advantage over no dropout${dropout}, ${advantageOf(report, "dropout", "no dropout")}: ${num(d.estimate)}, ` +
      `${level(report)} interval ${interval(d.low, d.high)}${simultaneous(verdict)}; above 0: dropout does better.`,
      verdict.detectable !== null && verdict.detectable !== undefined
        ? ` Could not be told apart; the smallest advantage these runs could have detected (80% power): ${num(verdict.detectable)}.`
        : "",
      verdict.method ? h("span", { class: "muted" }, ` Interval: ${verdict.method}.`) : null));
  }
  const ref = report.reference;
  if (ref) {
    nodes.push(h("p", { class: "muted verdict-reference", "data-testid": "verdict-reference" },
      `Trivial predictor, ${ref.description}: ${report.objective} ${num(ref.score)}. ` +
      (ref.no_better_than_reference === true ? "No confirmed configuration is shown better than it."
        : ref.no_better_than_reference === false ? "Configurations shown better than it are marked in the table."
          : "Too few runs to tell whether the configurations beat it.")));
  }
  const rec = report.recommended;
  if (!rec && !report.final) return nodes; // the meta line says when it comes
  nodes.push(h("h3", {}, "Recommended configuration"));
  nodes.push(rec
    ? h("div", { id: "recommended" }, facts([
      ["Configuration", configLabel(rec, trialHref)],
      [report.objective, `${meanSd(rec.score)} over ${plural(rec.score.n, "seed")}`],
      [`${level(report)} interval`, statsInterval(rec.score)],
      ["Best epoch", meanSd(rec.best_epoch)],
    ]))
    : h("p", { class: "muted" }, "No configuration is recommended."));
  return nodes;
}

function configLabel(c, trialHref) {
  if (c.trial === null || c.trial === undefined) return c.label;
  return h("span", {}, c.label, " ", h("a", { href: trialHref(c.trial), "aria-label": `trial ${c.trial}` }, `#${c.trial}`));
}

function confirmedTable(report, trialHref) {
  if (!report.confirmed.length) return report.final ? [h("h3", {}, "Confirmed configurations"), h("p", { class: "muted" }, "No confirmation runs.")] : [];
  const nodes = [h("h3", {}, "Confirmed configurations")];
  const dropoutOff = report.confirmed.every((c) => c.gap_training_loss === "dropout_off");
  const gapTitle = dropoutOff
    ? "validation loss minus training loss, both measured with dropout off on the run's own split"
    : "validation loss minus training loss (training loss as Keras reports it, with dropout on, so dropout's noise shrinks the gap)";
  const head = [
    ["Configuration"], ["Arm"], ["Search space"],
    [`${report.objective} mean ± sd`, { class: "num" }], [`${level(report)} interval`, { class: "num" }],
    ["Best epoch (mean)", { class: "num" }],
    ["Gap at best", { class: "num", title: `${gapTitle}, at the best epoch` }],
    ["Gap at last", { class: "num", title: `${gapTitle}, at the last epoch trained` }],
    [`Advantage over no dropout`, { class: "num", title: `${advantageOf(report, "this configuration", "no dropout")}, ` +
      `${level(report)} interval simultaneous over the dropout configurations compared; > 0: dropout does better. ` +
      "p: Holm's adjusted one-sided p-value of doing better" }],
    ["Beats trivial predictor", { title: "its mean is shown better than the trivial predictor's score on the same split" }],
  ];
  const yesNo = (v) => (v === true ? "yes" : v === false ? "no" : "–");
  const recommended = report.recommended?.label;
  const rows = report.confirmed.map((c) => h("tr", { "data-arm": c.arm, "data-label": c.label, class: c.arm === "baseline" ? "baseline" : null },
    h("th", { scope: "row" }, configLabel(c, trialHref),
      c.arm === "baseline" ? h("span", { class: "tag" }, "baseline") : null,
      (c.recommended ?? c.label === recommended) ? h("span", { class: "tag recommended" }, "recommended") : null),
    h("td", {}, c.arm),
    h("td", {}, c.candidate ? "candidate" : "reference only"),
    h("td", { class: "num" }, meanSd(c.score), h("span", { class: "muted" }, ` (n=${c.score.n})`)),
    h("td", { class: "num" }, statsInterval(c.score)),
    h("td", { class: "num" }, num(c.best_epoch?.mean)),
    h("td", { class: "num", title: c.gap_at_best ? `sd ${num(c.gap_at_best.sd)}` : null }, num(c.gap_at_best?.mean)),
    h("td", { class: "num", title: c.gap_at_last ? `sd ${num(c.gap_at_last.sd)}` : null }, num(c.gap_at_last?.mean)),
    h("td", { class: "num", "data-versus": "" }, c.versus_baseline
      ? `${num(c.versus_baseline.estimate)} ${interval(c.versus_baseline.low, c.versus_baseline.high)}` +
        (c.p_adjusted !== null && c.p_adjusted !== undefined ? ` (p ${num(c.p_adjusted)})` : "")
      : "–"),
    h("td", { "data-beats": "" }, yesNo(c.beats_reference))));
  nodes.push(table("Confirmed configurations", head, rows));
  return nodes;
}

function effects(report) {
  const { effects: e, objective } = report;
  const block = (key, title, levels, name) => {
    const chart = h("div", { class: "chart small", id: `effect-${key}-chart` });
    const rows = levels.map((l) => h("tr", { "data-level": l.value },
      h("th", { scope: "row" }, name(l.value)),
      h("td", { class: "num" }, l.score.n),
      h("td", { class: "num" }, meanSd(l.score)),
      h("td", { class: "num" }, statsInterval(l.score))));
    const box = h("div", { class: "effect", id: `effect-${key}` }, h("h4", {}, title), chart,
      table(`${objective} ${title.toLowerCase()}`, [["Value"], ["n", { class: "num" }], ["mean ± sd", { class: "num" }], [`${level(report)} interval`, { class: "num" }]], rows));
    intervalChart(chart, {
      rows: levels.map((l) => ({
        key: l.value, label: name(l.value), estimate: l.score.mean, low: l.score.low, high: l.score.high,
        title: `${name(l.value)}: mean ${objective} ${meanSd(l.score)}, ${level(report)} interval ${statsInterval(l.score)}, n=${l.score.n}`,
      })),
      xLabel: `mean ${objective} (${better(report)})`, title: `mean ${objective} ${title.toLowerCase()}, with ${level(report)} intervals`,
    });
    return box;
  };
  // Sequential sums of squares depend on their order: keep it. Older reports (eta squared each) by size.
  const sequential = e.variance_method === "sequential";
  const shares = Object.entries(e.variance_explained)
    .sort(([a, x], [b, y]) => (a === "residual") - (b === "residual") || (sequential ? 0 : y - x));
  const method = sequential
    ? "Sequential sums of squares, in this order: each row is what it explains beyond the rows above it, " +
      "so the order matters; with the residual they add up to 100%. The residual is what none explains: " +
      "seed noise, and anything the search's trials cannot separate (with one trial per rate × layers " +
      "cell, noise is counted as interaction and the residual shows 0)."
    : "Each hyperparameter's eta squared on its own (a report computed before the shares were sequential): " +
      "on a random search they overlap and need not add up to 100%.";
  return [
    h("h3", {}, "Effects in the search"),
    h("p", { class: "muted" }, `Mean ${objective} of the ${plural(e.trials, "completed search trial")} at each value, with ${level(report)} intervals.`),
    h("div", { class: "subgrid wide" },
      block("rate", "By dropout rate", e.by_rate, (v) => (v === "none" ? "no dropout" : v)),
      block("layers", "By dropout layers", e.by_layers, (v) => v),
      h("div", { class: "effect", id: "variance-explained" },
        h("h4", {}, "Variance explained"),
        shares.length
          ? h("ul", { class: "shares" }, shares.map(([k, v]) => h("li", { "data-key": k },
            h("span", {}, k === "residual" ? "residual (what none explains)" : words(k)), h("span", { class: "num" }, pct(v)))))
          : h("p", { class: "muted" }, "Not enough trials yet."),
        shares.length ? h("p", { class: "muted", "data-testid": "variance-method" }, method) : null)),
  ];
}

function convergence(c) {
  return h("div", { class: "effect", id: "convergence" }, h("h4", {}, "Convergence"), h("p", {}, c.sentence),
    facts([
      ["Best epoch, dropout", meanSd(c.with_dropout)],
      ["Best epoch, none", meanSd(c.without_dropout)],
      ["Ratio", c.ratio ? `${num(c.ratio.estimate)} ${interval(c.ratio.low, c.ratio.high)}` : "–"],
    ]));
}

function smaller(s, report) {
  const d = s.difference;
  const told = !d || d.low === null ? "–"
    : d.low > 0 ? "dropout does better" : d.high < 0 ? "the smaller network does better" : "could not tell apart";
  const versus = s.versus || report.recommended?.label || "the dropout configuration";
  return h("div", { class: "effect", id: "smaller-network" }, h("h4", {}, "Smaller network instead"), h("p", {}, s.sentence),
    facts([
      ["Configuration", s.label],
      ["Units per layer", s.units.length ? s.units.join(", ") : "–"],
      [report.objective, s.score ? meanSd(s.score) : "–"],
      [h("span", { title: `${advantageOf(report, versus, "the smaller network")}; > 0: dropout does better` },
        `Advantage of ${versus} over it`),
      d ? `${num(d.estimate)} ${interval(d.low, d.high)}` : "–"],
      ["Result", h("span", { "data-testid": "smaller-result" }, told)],
      ...(s.detectable !== null && s.detectable !== undefined
        ? [["Detectable (80% power)", num(s.detectable)]] : []),
    ]));
}

/** A figure with its sampling noise: its range over `pass_seeds` sets of T passes, where known. */
function noisy(m, key, value) {
  const range = m.noise && m.noise[key];
  return range ? `${num(value)} (${num(range[0])} to ${num(range[1])} over ${m.pass_seeds} sets of passes)` : num(value);
}

function mcDropout(m, report) {
  const of = m.model ? `${m.label}, the model this job serves (${m.model})` : m.label;
  const rows = m.rows ? ` on ${plural(m.rows, "validation row")}` : "";
  return h("div", { class: "effect", id: "mc-dropout" }, h("h4", {}, "MC dropout"),
    h("p", { class: "muted" }, `${of}: dropout kept on at prediction, averaged over T = ${plural(m.samples, "pass", "passes")}${rows}.`),
    facts([
      [`${report.objective}, dropout off`, h("span", { "data-testid": "mc-deterministic" }, num(m.deterministic))],
      [`${report.objective}, MC-averaged`, h("span", { "data-testid": "mc-objective" }, noisy(m, "mc", m.mc))],
      ["Predictive spread (sd)", h("span", { "data-testid": "mc-spread" }, noisy(m, "spread", m.spread))],
      ...Object.entries(m.calibration).map(([k, v]) => [h("abbr", { title: CALIBRATION[k] || words(k) }, k), h("span", { "data-calibration": k }, noisy(m, k, v))]),
    ]),
    report.mc_dropout_note ? h("p", { class: "muted", "data-testid": "mc-note" }, report.mc_dropout_note) : null);
}

function mcNote(note) {
  return h("div", { class: "effect", id: "mc-dropout" }, h("h4", {}, "MC dropout"), h("p", { class: "muted", "data-testid": "mc-note" }, note));
}

function render(body, report, trialHref) {
  const extra = [
    report.convergence ? convergence(report.convergence) : null,
    report.smaller_network ? smaller(report.smaller_network, report) : null,
    report.mc_dropout ? mcDropout(report.mc_dropout, report) : report.mc_dropout_note ? mcNote(report.mc_dropout_note) : null,
  ].filter(Boolean);
  body.replaceChildren(
    ...summary(report, trialHref),
    ...confirmedTable(report, trialHref),
    ...effects(report),
    ...(extra.length ? [h("h3", {}, "More evidence"), h("div", { class: "subgrid" }, extra)] : []));
  body.dataset.final = String(report.final);
}

// --- the panel -----------------------------------------------------------------------------------

/**
 * The panel in #verdict. `update(job)` on every job refresh: the report is fetched again only when
 * the job's status or finished-trial count changed, and never again once it is final.
 */
export function verdictPanel(jobId, trialHref) {
  const section = document.getElementById("verdict");
  const body = document.getElementById("verdict-body");
  let report = null, seen = null, job = null, request = 0, tries = 0;

  async function load() {
    const mine = ++request;
    const { ok, status, data } = await api(`/api/v1/jobs/${jobId}/report`);
    if (mine !== request) return; // a later request answers instead
    if (status === 404) { section.hidden = true; return; }
    section.hidden = false;
    if (!ok) {
      if (!report) body.replaceChildren(h("p", { class: "muted" }, "Could not load the report."));
      return;
    }
    report = data;
    render(body, report, trialHref);
  }

  const settle = poll(async () => { if (report?.final) return; tries += 1; await load(); },
    () => (job && !isActive(job.status) && !report?.final && tries < SETTLE_TRIES ? SETTLE_MS : null));

  return {
    update(next) {
      job = next;
      if (report?.final) return;
      const key = `${job.status}:${job.progress.finished}`;
      if (key !== seen) { seen = key; load(); }
      if (!isActive(job.status)) settle.start();
    },
  };
}
