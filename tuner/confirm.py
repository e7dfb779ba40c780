"""After the search: confirm its best configurations over seeds, and store the job's report.

The best `confirm_top` dropout configurations of the search and the baseline (the no-dropout
network with the best dropout configuration's units and learning rate, so the comparison isolates
dropout) are trained again, `repeats` seeds each, as one pack: each run is a slice with its own
initialisation and dropout draws (the pack shares one batch order). The recommended configuration
is the best confirmed mean; for it a second pack trains the smaller-network arm (no dropout,
round(n(1 - p)) units in each layer that had dropout, the same seeds), and its best-seed model gives
the MC-dropout figures (the best confirmed dropout configuration's, where no dropout is recommended).
`store.report.build_report` turns all of it into the report.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from models.dropout_net import HpValues
from models.mc_dropout import mc_dropout
from models.packed_net import PackedNet, SliceConfig, plain_model, slice_seed
from store import jobs as q
from store.db import Database
from store.report import TrialFigures, build_report, figures_of, has_dropout, label
from store.report_schema import McDropout, Report, Run
from store.spec import dropout_in, resolve_space
from tuner.pack_training import PackTrainer
from tuner.recording import Recorder
from tuner.setup import Prepared

log = logging.getLogger(__name__)


def trial_figures(db: Database, job_id: str) -> list[TrialFigures]:
    with db.session(readonly=True) as session:
        return figures_of(q.all_trials(session, job_id))


def conclude(db: Database, job_id: str, prepared: Prepared, recorder: Recorder, status: str = "succeeded") -> Report:
    """Confirm, compute the report and store it with the job."""
    spec = prepared.spec
    names = spec.hyperparameter_names()
    trials = trial_figures(db, job_id)
    runs: list[Run] = []
    mc: McDropout | None = None
    if spec.repeats > 0:
        runs, mc = confirm(trials, prepared, recorder)
    report = build_report(
        job_id=job_id,
        status=status,
        final=True,
        objective=spec.objective.metric,
        direction=spec.objective.direction or "min",
        names=names,
        repeats=spec.repeats,
        trials=trials,
        runs=runs,
        mc=mc,
        baseline_candidate=resolve_space(spec.search_space).baseline_candidate,
    )
    with db.session() as session:
        q.set_report(session, job_id, report.model_dump(mode="json"))
    log.info("job %s: %s", job_id, report.verdict.sentence)
    return report


def _arms(trials: list[TrialFigures], prepared: Prepared) -> list[tuple[str, dict[str, Any]]]:
    """The configurations to confirm: the best distinct dropout ones, then their baseline."""
    spec = prepared.spec
    names = spec.hyperparameter_names()
    sign = 1.0 if (spec.objective.direction or "min") == "min" else -1.0
    ranked = sorted(
        (t for t in trials if t.score is not None and t.candidate and has_dropout(t.hyperparameters)),
        key=lambda t: sign * float(t.score),  # type: ignore[arg-type]
    )
    arms: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for trial in ranked:
        name = label(trial.hyperparameters, names)
        if name not in seen and len(arms) < spec.confirm_top:
            seen.add(name)
            arms.append(("candidate", trial.hyperparameters))
    best = arms[0][1] if arms else {}
    baseline = {n: None for n in names} | {"dropout_layers": 0}
    for extra in ("units", "learning_rate"):
        if extra in names and extra in best:
            baseline[extra] = best[extra]
    arms.append(("baseline", baseline))
    return arms


def confirm(trials: list[TrialFigures], prepared: Prepared, recorder: Recorder) -> tuple[list[Run], McDropout | None]:
    spec = prepared.spec
    seeds = [spec.seed * 1_000 + 1 + r for r in range(spec.repeats)]
    arms = _arms(trials, prepared)
    runs, trainer = _train(prepared, recorder, [(arm, hp, seed) for arm, hp in arms for seed in seeds])
    sign = 1.0 if (spec.objective.direction or "min") == "min" else -1.0
    # What the report may recommend: the candidates, and the baseline where the user's space holds it.
    baseline_candidate = resolve_space(spec.search_space).baseline_candidate
    eligible = {
        r.label
        for r in runs
        if r.score is not None and (r.arm == "candidate" or (r.arm == "baseline" and baseline_candidate))
    }
    if not eligible:
        return runs, None
    scores = {n: [r.score for r in runs if r.label == n and r.score is not None] for n in eligible}
    means = {n: sign * float(np.mean(values)) for n, values in scores.items()}
    hp_of = {r.label: r.hyperparameters for r in runs}
    best_label = min(means, key=lambda n: means[n])
    best_hp = hp_of[best_label]
    # MC dropout needs dropout: where no dropout is recommended, the best dropout configuration's.
    with_dropout = [n for n in means if has_dropout(hp_of[n])]
    mc_label = best_label if has_dropout(best_hp) or not with_dropout else min(with_dropout, key=lambda n: means[n])
    mc_hp = hp_of[mc_label]
    mc = _mc(prepared, runs, trainer, mc_label, mc_hp) if spec.mc_samples else None
    if has_dropout(best_hp):
        smaller = _smaller_network(best_hp, prepared)
        more, _ = _train(prepared, recorder, [("smaller", smaller, seed) for seed in seeds])
        runs += more
    return runs, mc


def _smaller_network(hp: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
    """No dropout, and round(n(1 - p)) units in each layer that had a dropout layer after it."""
    config = prepared.config
    units = int(hp.get("units") or config.units)
    rate, layers = dropout_in(hp)
    widths = [max(1, round(units * (1 - rate))) if i < layers else units for i in range(config.hidden_layers)]
    smaller = {n: None for n in hp} | {"dropout_layers": 0, "layer_units": widths}
    if "learning_rate" in hp:
        smaller["learning_rate"] = hp["learning_rate"]
    return smaller


def _slice(hp: dict[str, Any], prepared: Prepared) -> SliceConfig:
    config = prepared.config
    base = SliceConfig.from_hp(HpValues(hp), config)
    widths = hp.get("layer_units")
    if widths:
        return SliceConfig(base.dropout_rate, base.dropout_layers, max(widths), base.learning_rate, tuple(widths))
    return base


def _train(
    prepared: Prepared, recorder: Recorder, planned: list[tuple[str, dict[str, Any], int]]
) -> tuple[list[Run], PackTrainer]:
    """Train every (arm, configuration, seed) as one pack; one run each."""
    spec, config = prepared.spec, prepared.config
    names = spec.hyperparameter_names()
    slices = [_slice(hp, prepared) for _, hp, _ in planned]
    net = PackedNet(config, slices, seeds=[slice_seed(seed, i) for i, (_, _, seed) in enumerate(planned)])
    trainer = PackTrainer(
        net,
        prepared.fit_args,
        prepared.fit_kwargs["validation_data"],
        batch_size=spec.training.batch_size,
        objective=spec.objective.metric,
        direction=spec.objective.direction or "min",
        patience=spec.training.early_stopping_patience,
        seed=planned[0][2],
    )
    log.info("confirming: a pack of %d runs", len(planned))
    for number in range(1, spec.training.epochs + 1):
        if not any(r.active for r in trainer.results):
            break
        trainer.run_epoch(number)
        recorder.check_running()  # a cancel, a time limit or a lost job stops the confirmation too
    runs = []
    for (arm, hp, seed), result in zip(planned, trainer.results, strict=True):
        ok = result.failure is None and result.best_value is not None and math.isfinite(result.best_value)
        name = label(hp, names) if arm != "smaller" else f"no dropout, {'/'.join(map(str, hp['layer_units']))} units"
        runs.append(
            Run(
                arm=arm,  # type: ignore[arg-type]
                label=name,
                hyperparameters=hp,
                seed=seed,
                status="completed" if ok else "failed",
                score=result.best_value if ok else None,
                best_epoch=result.best_epoch if ok else None,
                error=None if ok else (result.failure or "the objective was not a finite number"),
                history=[_finite(result.history[e]) for e in sorted(result.history)],
            )
        )
    return runs, trainer


def _finite(row: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in row.items()}


def _mc(
    prepared: Prepared, runs: list[Run], trainer: PackTrainer, best_label: str, best_hp: dict[str, Any]
) -> McDropout | None:
    """MC dropout on a configuration's best seed, at its best epoch."""
    spec, config = prepared.spec, prepared.config
    sign = 1.0 if (spec.objective.direction or "min") == "min" else -1.0
    mine = [(k, r) for k, r in enumerate(runs) if r.label == best_label and r.score is not None]
    if not mine:
        return None
    k, _ = min(mine, key=lambda pair: sign * float(pair[1].score))  # type: ignore[arg-type]
    model = plain_model(HpValues(best_hp), config, trainer.best_weights(k))
    x_val, y_val = prepared.fit_kwargs["validation_data"]
    figures = mc_dropout(
        model, x_val, y_val, config.task, config.n_classes, spec.objective.metric, spec.mc_samples, spec.seed
    )
    return McDropout(
        samples=spec.mc_samples,
        label=best_label,
        deterministic=figures.deterministic,
        mc=figures.mc,
        spread=figures.spread,
        calibration=dict(figures.calibration),
    )
