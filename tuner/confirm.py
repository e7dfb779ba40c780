"""After the search: confirm its best configurations over seeds, and store the job's report.

The best `confirm_top` dropout configurations of the search and the baseline (the no-dropout
network with the best dropout configuration's units and learning rate, so the comparison isolates
dropout) are trained again, `repeats` seeds each, in packs (as few as the pack memory budget
allows): each run is a slice with its own initialisation and dropout draws (a pack shares one batch
order). A user's network packs as any network does (`tuner.packs`), or trains run by run where it
cannot. For the best confirmed mean, where it has dropout, a second set of packs trains the
smaller-network arm (no dropout, round(n(1 - p)) units in each layer that had dropout, the same
seeds). `store.report.build_report` turns all of it into the report; the MC-dropout figures come
later, from the model the job serves (`tuner.served_mc`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np

from models.dropout_net import HpValues
from models.pack_network import Network, NotVectorizable, template_network, template_rates, template_shape
from models.pack_plan import SliceConfig, slice_seed
from models.user_network import NetworkBuild, build_network, compiled, narrowed, width_of
from models.vector_pack import SliceResult, SliceSpec
from store import jobs as q
from store.classes import row_weights
from store.db import Database
from store.progress import PhaseName
from store.reference import Reference, trivial_reference
from store.report import TrialFigures, build_report, figures_of, has_dropout, label
from store.report_schema import Report, Run
from store.spec import JobSpec, dropout_in, resolve_space
from store.splits import ScoredOn
from tuner import backend
from tuner.packs import (
    SliceOutcome,
    narrowed_network,
    network_refusal,
    pack_budget,
    pack_limit,
    pack_network,
    slice_spec,
    trial_cost,
    vector_pack,
)
from tuner.recording import Recorder, error_summary
from tuner.setup import Prepared, split

log = logging.getLogger(__name__)


def trial_figures(db: Database, job_id: str) -> tuple[list[TrialFigures], Reference | None]:
    """The job's trials as the report reads them, and its trivial-predictor reference (if any)."""
    with db.session(readonly=True) as session:
        stored = q.get_job(session, job_id, report=False).reference
        return figures_of(q.all_trials(session, job_id)), None if stored is None else Reference.model_validate(stored)


def conclude(db: Database, job_id: str, prepared: Prepared, recorder: Recorder, status: str = "succeeded") -> Report:
    """Confirm, compute the report and store it with the job."""
    spec = prepared.spec
    names = spec.hyperparameter_names()
    trials, reference = trial_figures(db, job_id)
    runs = confirm(trials, prepared, recorder) if spec.repeats > 0 else []
    scored_on = Splits(prepared).scored_on() if runs else None
    if prepared.heldout is not None:  # the runs are scored there: so is the trivial predictor
        config = prepared.config
        pool = np.concatenate([prepared.fit_args[1], prepared.fit_kwargs["validation_data"][1]])
        reference = trivial_reference(config.task, pool, prepared.heldout[1], config.n_classes)
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
        baseline_candidate=resolve_space(spec.search_space).baseline_candidate,
        reference=reference,
        space=resolve_space(spec.search_space),
        scored_on=scored_on,
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


def run_seeds(spec: JobSpec) -> list[int]:
    """The confirmation runs' seeds, one per repeat: each seeds a run's initialisation, dropout draws and split."""
    return [spec.seed * 1_000 + 1 + r for r in range(spec.repeats)]


def confirm(trials: list[TrialFigures], prepared: Prepared, recorder: Recorder) -> list[Run]:
    spec = prepared.spec
    seeds = run_seeds(spec)
    arms = _arms(trials, prepared)
    train = _trainer_for(prepared)
    splits = Splits(prepared)
    planned = [(arm, hp, seed) for arm, hp in arms for seed in seeds]
    recorder.report_phase("confirmation", "running", planned=len(planned) * spec.training.epochs)
    runs = _in_packs(train, splits, recorder, planned)
    recorder.report_phase("confirmation", "done")
    sign = 1.0 if (spec.objective.direction or "min") == "min" else -1.0
    # What the report may recommend: the candidates, and the baseline where the user's space holds it.
    baseline_candidate = resolve_space(spec.search_space).baseline_candidate
    eligible = {
        r.label
        for r in runs
        if r.score is not None and (r.arm == "candidate" or (r.arm == "baseline" and baseline_candidate))
    }
    if not eligible:
        recorder.report_phase("smaller_network", "skipped")
        return runs
    scores = {n: [r.score for r in runs if r.label == n and r.score is not None] for n in eligible}
    means = {n: sign * float(np.mean(values)) for n, values in scores.items()}
    hp_of = {r.label: r.hyperparameters for r in runs}
    best_label = min(means, key=lambda n: means[n])
    best_hp = hp_of[best_label]
    if has_dropout(best_hp):
        smaller = _smaller_network(best_hp, prepared)
        recorder.report_phase("smaller_network", "running", planned=len(seeds) * spec.training.epochs)
        runs += _in_packs(train, splits, recorder, [("smaller", smaller, seed) for seed in seeds])
        recorder.report_phase("smaller_network", "done")
    else:
        recorder.report_phase("smaller_network", "skipped")
    return runs


def _smaller_network(hp: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
    """No dropout, and round(n(1 - p)) units in each layer that had a dropout layer after it."""
    if prepared.network is not None:
        return _smaller_user_network(hp, prepared.network)
    config = prepared.config
    units = int(hp.get("units") or config.units)
    rate, layers = dropout_in(hp)
    widths = [max(1, round(units * (1 - rate))) if i < layers else units for i in range(config.hidden_layers)]
    smaller = {n: None for n in hp} | {"dropout_layers": 0, "layer_units": widths}
    if "learning_rate" in hp:
        smaller["learning_rate"] = hp["learning_rate"]
    return smaller


def _smaller_user_network(hp: dict[str, Any], network: NetworkBuild) -> dict[str, Any]:
    """A user's network narrowed where `hp` drops (`user_network.narrowed`): `narrowed_by` keeps the
    rates it was narrowed by, `layer_units` the narrowed layers' new widths, for the report."""
    rates = network.rates(hp)
    narrowed_config = narrowed(network.config, list(network.sites), rates)
    widths = {}
    for site, rate in zip(network.sites, rates, strict=True):
        if rate > 0 and site.sized is not None:
            widths[site.sized] = width_of(narrowed_config, site.sized)
    smaller = {n: None for n in hp} | {"dropout_layers": 0, "narrowed_by": rates, "layer_units": list(widths.values())}
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


Planned = list[tuple[str, dict[str, Any], int]]  # (arm, configuration, seed) of each run
Train = Callable[["Splits", Recorder, Planned], list[Run]]


class Splits:
    """Each confirmation run's training and validation rows (`store.splits`): its own split of the
    search's rows (its training and validation rows together, the pool), drawn from its seed, as large
    as the search's; with a validation dataset, the search's own. The same seed gives the same split,
    so every configuration at a seed trains on the same rows."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        if not prepared.own_validation:
            (x_train, y_train), (x_val, y_val) = prepared.fit_args, prepared.fit_kwargs["validation_data"]
            self.x, self.y = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
        self._validation: dict[int, np.ndarray] = {}

    @property
    def own(self) -> bool:
        """Whether each seed draws its own split (else every run has the search's)."""
        return self.y is not None

    def validation_rows(self, seed: int) -> np.ndarray:
        """Which of the pool's rows validate the runs of `seed` (a boolean mask)."""
        assert self.y is not None
        if seed not in self._validation:
            spec = self.prepared.spec
            index = np.arange(len(self.y))
            _, chosen, _, _ = split(index, self.y, self.prepared.config.task, spec.training.validation_split, seed)
            mask = np.zeros(len(self.y), bool)
            mask[chosen] = True
            self._validation[seed] = mask
        return self._validation[seed]

    def prepared_for(self, seed: int) -> Prepared:
        """The job's setup with the runs of `seed`'s split as its training and validation data."""
        if self.x is None or self.y is None:
            return self.prepared
        held = self.validation_rows(seed)
        x, y = self.x, self.y
        fit_kwargs = {**self.prepared.fit_kwargs, "validation_data": (x[held], y[held])}
        return replace(self.prepared, fit_args=(x[~held], y[~held]), fit_kwargs=fit_kwargs)

    def scored_on(self) -> ScoredOn:
        prepared = self.prepared
        validation = len(prepared.fit_kwargs["validation_data"][1])
        training = len(prepared.fit_args[1])
        if self.own:
            validation = int(self.validation_rows(run_seeds(prepared.spec)[0]).sum())
            training = len(self.y) - validation  # type: ignore[arg-type]
        heldout = 0 if prepared.heldout is None else len(prepared.heldout[1])
        return ScoredOn(heldout_rows=heldout, validation_rows=validation, training_rows=training, own_splits=self.own)


def _in_packs(train: Train, splits: Splits, recorder: Recorder, planned: Planned) -> list[Run]:
    """The runs in packs no larger than the search's `auto` packs may be (the pack memory budget,
    `tuner.packs.pack_limit`), one pack after another. The template's pack holds runs of different
    splits (each slice masks its own rows); the other trainers' hold one split's runs."""
    prepared = splits.prepared
    spec = prepared.spec
    budget = pack_budget(prepared.pack_memory_mb)
    size = pack_limit(trial_cost(spec, prepared.config, prepared.network), spec, budget)
    groups = [planned]
    if train is not _train and splits.own:
        groups = [[run for run in planned if run[2] == seed] for seed in dict.fromkeys(run[2] for run in planned)]
    runs: list[Run] = []
    for group in groups:
        for start in range(0, len(group), size):
            runs += train(splits, recorder, group[start : start + size])
    return runs


def _trainer_for(prepared: Prepared) -> Train:
    """The template's fused TensorFlow pack where it runs; else the template in vectorised packs (or
    one by one where no pack runs); a user's network its own way (`_train_network`)."""
    if prepared.network is not None:
        return _train_network
    if backend.fused_template_here():
        return _train
    return _train_template_vectorized if backend.packs_run_here() else _train_template_one_by_one


def _train(splits: Splits, recorder: Recorder, planned: Planned) -> list[Run]:
    """Train every (arm, configuration, seed) as one pack, each slice on its seed's split; one run each."""
    from models.packed_net import PackedNet
    from tuner.pack_training import PackTrainer

    prepared = splits.prepared
    spec, config = prepared.spec, prepared.config
    slices = [_slice(hp, prepared) for _, hp, _ in planned]
    net = PackedNet(config, slices, seeds=[slice_seed(seed, i) for i, (_, _, seed) in enumerate(planned)])
    held = None
    data: dict[str, Any] = {
        "train": prepared.fit_args,
        "validation": prepared.fit_kwargs["validation_data"],
        "sample_weight": prepared.sample_weight(),
    }
    if splits.own:
        assert splits.x is not None and splits.y is not None
        held = np.stack([splits.validation_rows(seed) for _, _, seed in planned])
        data = {
            "train": (splits.x, splits.y),
            "validation": (splits.x, splits.y),
            "rows": ~held,
            "validation_rows": held,
            "sample_weight": None if prepared.class_weight is None else row_weights(prepared.class_weight, splits.y),
        }
    trainer = PackTrainer(
        net,
        batch_size=spec.training.batch_size,
        objective=spec.objective.metric,
        direction=spec.objective.direction or "min",
        patience=spec.training.early_stopping_patience,
        seed=planned[0][2],
        **data,
    )
    log.info("confirming: a pack of %d runs", len(planned))
    for number in range(1, spec.training.epochs + 1):
        active = sum(r.active for r in trainer.results)
        if not active:
            break
        trainer.run_epoch(number)
        _epoch_done(recorder, planned, active, number, spec.training.epochs)
    x, y = (splits.x, splits.y) if held is not None else prepared.fit_args
    rows = None if held is None else ~held
    measured = Measured(
        None if prepared.heldout is None else trainer.evaluate_best(*prepared.heldout),
        [f["val_loss"] for f in trainer.evaluate_best(x, y, rows)],  # type: ignore[arg-type]
        [float(v) for v in trainer.evaluate(x, y, rows)[0]],  # type: ignore[arg-type]
    )
    return _runs(planned, trainer.results, spec, measured)


def _train_network(splits: Splits, recorder: Recorder, planned: Planned) -> list[Run]:
    """A user's network, the runs of one split: one vectorised pack, or one by one where it cannot pack."""
    prepared = splits.prepared_for(planned[0][2])
    assert prepared.network is not None
    reason = network_refusal(prepared.network) if backend.packs_run_here() else backend.unpacked_reason()
    if reason is None:
        try:
            return _train_network_pack(prepared, recorder, planned)
        except NotVectorizable as exc:
            reason = str(exc)
    log.info("confirming one run at a time: %s", reason)
    return _train_one_by_one(prepared, recorder, planned)


def _train_template_one_by_one(splits: Splits, recorder: Recorder, planned: Planned) -> list[Run]:
    """The template off TensorFlow, the runs of one split: each a plain `fit`."""
    log.info("confirming one run at a time: %s", backend.unpacked_reason())
    return _train_one_by_one(splits.prepared_for(planned[0][2]), recorder, planned)


def _train_template_vectorized(splits: Splits, recorder: Recorder, planned: Planned) -> list[Run]:
    """The template off TensorFlow, the runs of one split: a vectorised pack per shape of network
    (the configurations' units; the smaller arm's own widths), the runs back in their order."""
    prepared = splits.prepared_for(planned[0][2])
    config = prepared.config
    shapes: dict[str, list[int]] = {}
    for i, (_, hp, _) in enumerate(planned):
        shapes.setdefault(repr(template_shape(hp)), []).append(i)
    runs: dict[int, Run] = {}
    for members in shapes.values():
        group = [planned[i] for i in members]
        net = template_network(config, template_shape(group[0][1]))
        slices = [slice_spec(template_rates(config, hp), hp, seed) for _, hp, seed in group]
        runs.update(zip(members, _vector_runs(prepared, recorder, group, net, slices), strict=True))
    return [runs[i] for i in range(len(planned))]


def _train_network_pack(prepared: Prepared, recorder: Recorder, planned: Planned) -> list[Run]:
    """Every (arm, configuration, seed) of a user's network as one vectorised pack: the network
    with each run's rates, or (the smaller-network arm, all of one configuration) its narrowed copy."""
    network = prepared.network
    assert network is not None
    if {arm for arm, _, _ in planned} == {"smaller"}:
        hp = planned[0][1]
        learning_rate = float(hp.get("learning_rate") or network.learning_rate)
        net = narrowed_network(network, hp["narrowed_by"], learning_rate)
        slices = [SliceSpec((), seed=seed) for _, _, seed in planned]
    else:
        net = pack_network(network)
        slices = [slice_spec(network.rates(hp), hp, seed) for _, hp, seed in planned]
    return _vector_runs(prepared, recorder, planned, net, slices)


def _vector_runs(
    prepared: Prepared, recorder: Recorder, planned: Planned, net: Network, slices: list[SliceSpec]
) -> list[Run]:
    """The planned runs of one split as one vectorised pack of `net`, one slice each."""
    spec = prepared.spec
    pack = vector_pack(prepared, net, slices, seed=planned[0][2])
    log.info("confirming: a vectorised pack of %d runs", len(planned))
    for number in range(1, spec.training.epochs + 1):
        active = sum(r.active for r in pack.results)
        if not active:
            break
        pack.run_epoch(number)
        _epoch_done(recorder, planned, active, number, spec.training.epochs)
    x, y = prepared.fit_args
    measured = Measured(
        None if prepared.heldout is None else pack.evaluate(*prepared.heldout, best=True),
        [f["val_loss"] for f in pack.evaluate(x, y, best=True)],
        [f["val_loss"] for f in pack.evaluate(x, y)],
    )
    return _runs(planned, pack.results, spec, measured)


def _phase(planned: Planned) -> PhaseName:
    return "smaller_network" if all(arm == "smaller" for arm, _, _ in planned) else "confirmation"


def _epoch_done(recorder: Recorder, planned: Planned, active: int, number: int, epochs: int) -> None:
    """A pack's epoch is done: `active` runs trained it. Reported as progress; then a cancel, a time
    limit or a lost job stops the confirmation too."""
    recorder.report_phase(_phase(planned), add=active, pack=len(planned), epoch=number, epochs=epochs)


def _train_one_by_one(prepared: Prepared, recorder: Recorder, planned: Planned) -> list[Run]:
    """Each run a plain `fit` of its own, seeded: a user's network, or the template off TensorFlow."""
    spec = prepared.spec
    results, measures = [], []
    log.info("confirming: %d runs, one after another", len(planned))
    for arm, hp, seed in planned:
        keras.utils.set_random_seed(seed)
        model = _user_model(prepared, arm, hp)
        keeper = _BestEpoch(spec.objective.metric, spec.objective.direction or "min", recorder, _phase(planned))
        callbacks: list[Any] = [keeper, *prepared.fit_kwargs["callbacks"]]
        started = time.monotonic()
        try:
            kwargs = {**prepared.fit_kwargs, "callbacks": callbacks}
            model.fit(*prepared.fit_args, **kwargs)
        except (ValueError, tf_errors()) as exc:  # a run that cannot train fails alone
            keeper.result.failure = error_summary(str(exc))
        keeper.result.seconds = time.monotonic() - started
        results.append(keeper.result)
        measures.append(keeper.measure(prepared))
    measured = Measured(
        None if prepared.heldout is None else [m[0] for m in measures],
        [m[1] for m in measures],
        [m[2] for m in measures],
    )
    return _runs(planned, results, spec, measured)


def _user_model(prepared: Prepared, arm: str, hp: dict[str, Any]) -> keras.Model:
    network = prepared.network
    if arm != "smaller" or network is None:  # the template's smaller arm is its `layer_units`
        return prepared.build_model(hp)
    learning_rate = float(hp.get("learning_rate") or network.learning_rate)
    return compiled(
        build_network(narrowed(network.config, list(network.sites), hp["narrowed_by"])), network, learning_rate
    )


class _BestEpoch(keras.callbacks.Callback):  # type: ignore[misc]
    """A plain run's figures by epoch and its best epoch by the objective (ties: the earliest); a
    non-finite training loss fails it; between epochs, a cancel or limit stops it."""

    def __init__(self, objective: str, direction: str, recorder: Recorder, phase: PhaseName) -> None:
        super().__init__()
        self.objective, self.sign, self.recorder = objective, 1.0 if direction == "min" else -1.0, recorder
        self.phase = phase
        self.result = SliceResult()
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        figures = {k: float(v) for k, v in (logs or {}).items()}
        number = epoch + 1
        self.result.history[number] = figures
        loss, value = figures.get("loss", math.nan), figures.get(self.objective)
        if not math.isfinite(loss):
            self.result.failure = f"training diverged: loss is {loss} at epoch {number}"
            self.model.stop_training = True
        elif value is not None and math.isfinite(value):
            best = self.result.best_value
            if best is None or self.sign * value < self.sign * best:
                self.result.best_epoch, self.result.best_value = number, value
                self.best_weights = self.model.get_weights()
        self.recorder.report_phase(self.phase, add=1, pack=1, epoch=number, epochs=self.params.get("epochs"))

    def measure(self, prepared: Prepared) -> tuple[dict[str, float], float | None, float | None]:
        """After the run: its figures on the held-out rows at its best epoch (named as validation
        figures), and its training loss with dropout off at its best and last epochs."""
        if self.best_weights is None or self.result.failure is not None:
            return {}, None, None

        def evaluate(x: Any, y: Any) -> dict[str, float]:
            figures = self.model.evaluate(x, y, batch_size=1024, verbose=0, return_dict=True)
            return {f"val_{name}": float(value) for name, value in figures.items()}

        last = evaluate(*prepared.fit_args)["val_loss"]
        self.model.set_weights(self.best_weights)
        heldout = evaluate(*prepared.heldout) if prepared.heldout is not None else {}
        return heldout, evaluate(*prepared.fit_args)["val_loss"], last


def tf_errors() -> type[Exception]:
    """TensorFlow's runtime errors, which fail one run alone; on another backend ValueError says it."""
    if backend.name() != "tensorflow":
        return ValueError
    import tensorflow as tf

    return tf.errors.OpError  # type: ignore[no-any-return]


@dataclass
class Measured:
    """What a pack's runs were measured on after training, run by run: their figures on the held-out
    rows at their best epoch (None: the job held none out), and their loss on their own training rows
    with dropout off at their best and last epochs."""

    heldout: list[dict[str, float]] | None
    train_at_best: list[float | None]
    train_at_last: list[float | None]


def _runs(planned: Planned, results: Sequence[SliceOutcome], spec: JobSpec, measured: Measured) -> list[Run]:
    """The runs' records. Where the job held rows out, a run's score is its objective there, and
    `validation_score` its best on its own split."""
    names, objective, heldout = spec.hyperparameter_names(), spec.objective.metric, measured.heldout
    runs = []
    for i, ((arm, hp, seed), result) in enumerate(zip(planned, results, strict=True)):
        ok = result.failure is None and result.best_value is not None and math.isfinite(result.best_value)
        score = result.best_value
        error = result.failure or "the objective was not a finite number"
        if heldout is not None and ok:
            score = heldout[i].get(objective)
            if score is None or not math.isfinite(score):
                ok, error = False, f"its {objective} on the held-out rows was not a finite number"
        name = label(hp, names) if arm != "smaller" else f"no dropout, {'/'.join(map(str, hp['layer_units']))} units"
        runs.append(
            Run(
                arm=arm,  # type: ignore[arg-type]
                label=name,
                hyperparameters=hp,
                seed=seed,
                status="completed" if ok else "failed",
                score=score if ok else None,
                validation_score=result.best_value if ok and heldout is not None else None,
                train_loss_at_best=_finite_or_none(measured.train_at_best[i]) if ok else None,
                train_loss_at_last=_finite_or_none(measured.train_at_last[i]) if ok else None,
                best_epoch=result.best_epoch if ok else None,
                error=None if ok else error,
                history=[_finite(result.history[e]) for e in sorted(result.history)],
            )
        )
    return runs


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _finite(row: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in row.items()}
