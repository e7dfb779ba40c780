"""The report's MC-dropout figures, of the model the job serves.

`GET /jobs/{id}/model` and `/predict` serve one model (`store.kept_models.job_model`: the refit one,
else the recommended configuration's trial, else the best kept trial); its MC-dropout figures are
computed on it once the job has kept its models, on the job's validation rows, so that what the
report says of MC dropout holds for what users download. T passes are a sample: the figures are
computed for `PASS_SEEDS` seeds of T passes each, and their range is reported as the sampling noise.
A served model without dropout has no MC figures, and the report says so instead.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import keras

from models.mc_dropout import McFigures, mc_dropout
from store import jobs as q
from store import kept_models as km
from store.artifacts import ArtifactStore, download
from store.db import Database
from store.errors import NotFoundError
from store.report_schema import McDropout, Report
from store.spec import task_metric
from tuner.setup import Prepared

log = logging.getLogger(__name__)

PASS_SEEDS = 5  # sets of T passes whose spread shows the figures' sampling noise


def add_mc_figures(db: Database, store: ArtifactStore, job_id: str, prepared: Prepared) -> None:
    """Compute the served model's MC-dropout figures (or why there are none) into the stored report."""
    spec = prepared.spec
    if not spec.mc_samples:
        return
    with db.session(readonly=True) as session:
        job = q.get_job(session, job_id)
        stored = job.report
        scores = {t.number: t.score for t in q.all_trials(session, job_id)}
        try:
            served = km.job_model(session, job, scores)
        except NotFoundError:
            return
        key, kind, trial = served.artifact_key, served.kind, served.trial_number
    name = f"trial {trial} refit" if kind == km.REFIT else f"trial {trial}"
    if stored is None:
        return
    report = Report.model_validate(stored)
    mc, note = None, None
    metric = spec.objective.metric
    if metric.removeprefix("val_") not in ("loss", task_metric(prepared.config.task)):
        note = f"MC-dropout figures are computed for the loss and {task_metric(prepared.config.task)} only"
    else:
        with tempfile.TemporaryDirectory(prefix="droptune-mc-") as tmp:
            model = keras.saving.load_model(download(store, key, Path(tmp) / "model.keras"), safe_mode=True)
        if not _drops(model):
            note = f"MC dropout does not apply: the model this job serves ({name}) has no dropout to sample"
        else:
            recommended = report.recommended
            label = recommended.label if recommended is not None and recommended.trial == trial else name
            recorder = prepared.recorder(db, job_id)
            recorder.report_phase("mc_dropout", "running", planned=PASS_SEEDS)
            mc = _figures(model, prepared, name, label)
            recorder.report_phase("mc_dropout", "done", add=PASS_SEEDS)
            if kind == km.REFIT and prepared.heldout is None:
                note = "the refit model trained on the validation rows too: its figures on them are optimistic"
    if mc is None:
        prepared.recorder(db, job_id).report_phase("mc_dropout", "skipped")
    update = {"mc_dropout": mc, "mc_dropout_note": note}
    with db.session() as session:
        q.set_report(session, job_id, report.model_copy(update=update).model_dump(mode="json"))
    log.info("job %s: %s", job_id, note or f"MC-dropout figures of {name}, T={spec.mc_samples}")


def _figures(model: keras.Model, prepared: Prepared, name: str, label: str) -> McDropout:
    spec, config = prepared.spec, prepared.config
    # On the held-out rows where the job has them: the search chose the served model on the validation rows.
    x_val, y_val = prepared.heldout if prepared.heldout is not None else prepared.fit_kwargs["validation_data"]
    runs: list[McFigures] = [
        mc_dropout(model, x_val, y_val, config.task, config.n_classes, spec.objective.metric, spec.mc_samples, seed)
        for seed in range(spec.seed, spec.seed + PASS_SEEDS)
    ]
    first = runs[0]
    noise = {"mc": (min(r.mc for r in runs), max(r.mc for r in runs))}
    noise["spread"] = (min(r.spread for r in runs), max(r.spread for r in runs))
    for figure in first.calibration:
        values = [r.calibration[figure] for r in runs]
        noise[figure] = (min(values), max(values))
    return McDropout(
        samples=spec.mc_samples,
        label=label,
        deterministic=first.deterministic,
        mc=first.mc,
        spread=first.spread,
        calibration=dict(first.calibration),
        model=name,
        rows=len(y_val),
        pass_seeds=PASS_SEEDS,
        noise=noise,
    )


def _drops(model: keras.Model) -> bool:
    """Whether any dropout layer of the model drops anything."""
    layers = [model]
    found = False
    while layers:
        layer = layers.pop()
        if isinstance(layer, keras.layers.Dropout) and float(layer.rate) > 0:
            found = True
        layers.extend(getattr(layer, "layers", []))
    return found
