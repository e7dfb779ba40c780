// Job page: the trivial-predictor reference. The API gives what a trivial predictor scores on the
// job's own split (`reference`) and decides whether the models did no better than that
// (`no_better_than_reference`: from the report's confirmed means once the job has one, else from the
// search's best score, as `reference_basis` says; nothing is compared here). When they did not, a
// warning in the error style leads the page; the reference's score is a row of the Search card.
import { formatNumber } from "./charts.js";
import { h } from "./common.js";

/** Show or hide the warning, and add the reference's row to the Search card (after renderSpec). */
export function renderReference(job) {
  const metric = job.spec.objective.metric;
  const reference = job.reference;
  const score = reference?.scores?.[metric];
  const warning = document.getElementById("reference-warning");
  const confirmed = job.reference_basis === "confirmation";
  const flagged = job.no_better_than_reference === true && (confirmed || Boolean(job.best)) && score !== undefined;
  warning.hidden = !flagged;
  const what = confirmed
    ? `No confirmed configuration's mean ${metric} over seeds is shown better than a trivial predictor's`
    : `The best ${metric} (${formatNumber(job.best?.score)}) is no better than a trivial predictor's`;
  warning.textContent = flagged
    ? `${what} (${formatNumber(score)}), one ${reference.description}: these models learned nothing useful. ` +
      "Check the learning rate and the data."
    : "";
  const facts = document.getElementById("spec");
  for (const node of facts.querySelectorAll("[data-reference]")) node.remove();
  if (score === undefined) return;
  facts.append(
    h("dt", { "data-reference": "" }, "Trivial predictor"),
    h("dd", { "data-reference": "", title: reference.description }, `${metric} ${formatNumber(score)} (${reference.description})`),
  );
}
