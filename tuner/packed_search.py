"""Packed search: keras-tuner's search loop, K trials at a time, trained as one fused model.

The loop is keras-tuner's own (`BaseTuner.search`) with one change: it asks the oracle for up to K
trials before training (one tuner id per slot, as parallel trial processes do, so the oracle still
decides every trial: Bayesian optimisation hallucinates the pending ones, grid search walks its
grid (`tuner.oracles`), Hyperband hands out the trials its brackets can start now, packed by their
shared epoch budget, and answers IDLE while it must wait for other processes' trials). The pack's
trials go through the tuner's own hooks (`on_trial_begin`, `on_trial_end`), so they are recorded,
scored and saved exactly as unpacked ones; their epochs are recorded together, one write per epoch.

A completed trial's best-epoch weights go to the artifact store (`tuner.keep`), in the plain model's
layout; Hyperband continues a trial from them, on whichever host the trial it continues ran.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.errors import FatalError

from models.dropout_net import ModelConfig
from models.packed_net import PackedNet, SliceConfig, cost, slice_seed
from store.config import Settings
from store.spec import MAX_PACK_SIZE, JobSpec, planned_trials
from tuner.pack_training import PackTrainer
from tuner.setup import Prepared
from tuner.trial_weights import slice_weights, store_slice_weights

log = logging.getLogger(__name__)

TrialStatus = kt.engine.trial.TrialStatus
# `auto` packs no more than this: past it a pack's step is arithmetic, not overhead (bench/pack_sizes.py).
AUTO_MAX_PACK = 32
# `auto` keeps one pack step under about this many floating-point operations, for the same reason.
AUTO_STEP_FLOPS = 2e9
IDLE_WAIT_S = 0.5  # the oracle is waiting for other processes' trials (parallel Hyperband)


def pack_size(spec: JobSpec, config: ModelConfig, settings: Settings) -> int:
    """Trials per pack for this job: the spec's, or `auto`'s capped at each trial process's share
    of the planned trials."""
    if spec.pack_size != "auto":
        return spec.pack_size
    # k trial processes share the job's trials: one must not take them all.
    share = math.ceil(planned_trials(spec) / spec.parallel_trials)
    return max(1, min(auto_pack_size(config, spec, settings.pack_memory_mb), share))


def auto_pack_size(config: ModelConfig, spec: JobSpec, memory_mb: float) -> int:
    """As many trials as the memory budget holds, while a step stays overhead-bound, at most 32."""
    units = max(spec.search_space.units.candidate_values()) if spec.search_space.units else config.units
    size = cost(config, int(units))
    batch = spec.training.batch_size
    # Weights, best-epoch copy, Adam's two moments and the gradient; a training batch's activations
    # forward and backward (the validation pass has its own fixed budget, in the trainer).
    per_trial = 4 * (5 * size.parameters + 4 * batch * size.activations)
    by_memory = int(memory_mb * 2**20 // per_trial)
    by_compute = int(AUTO_STEP_FLOPS // (3 * size.flops * batch))  # backward costs about twice forward
    return max(1, min(AUTO_MAX_PACK, MAX_PACK_SIZE, by_memory, by_compute))


def run(tuner: kt.Tuner, prepared: Prepared, settings: Settings, workdir: Path) -> None:
    """The job's search in this process: packed, or keras-tuner's own loop when packs hold one."""
    size = pack_size(prepared.spec, prepared.config, settings)
    if prepared.network is not None:
        # The fused pack is the template's; a user's network trains trial by trial for now.
        log.info("training one trial at a time: packs hold droptune's template network only")
        size = 1
    if size == 1:
        tuner.search(*prepared.fit_args, **prepared.fit_kwargs)
    else:
        log.info("training packs of up to %d trials", size)
        search(tuner, prepared, size)


def search(tuner: kt.Tuner, prepared: Prepared, size: int) -> None:
    """Run the tuner's search in packs of up to `size` trials, until the oracle says stop."""
    tuner.oracle.verbose = 0  # keras-tuner's progress printing; the store has it all
    # Recycling bounds what TensorFlow leaks per model built, and a pack is one model: count packs.
    tuner.recorder.recycle_after *= size
    # keras-tuner reloads a work dir only where the tuner's own file exists, which it first writes as
    # a trial ends: without it, a search stopped in its first pack would begin again from scratch.
    tuner.save()
    tuner.on_search_begin()
    while True:
        trials, stopped = _take_trials(tuner, size)
        if not trials:
            if stopped:
                break
            time.sleep(IDLE_WAIT_S)
            continue
        for group in _by_epoch_budget(trials, prepared):
            run_pack(tuner, group, prepared)
    tuner.on_search_end()


def _take_trials(tuner: kt.Tuner, size: int) -> tuple[list[kt.engine.trial.Trial], bool]:
    """Up to `size` new trials from the oracle, and whether it said the search is over."""
    tuner.pre_create_trial()  # a cancel, a limit, or this process's trial quota: stop before a pack
    trials: list[kt.engine.trial.Trial] = []
    for slot in range(size):
        trial = tuner.oracle.create_trial(f"{tuner.tuner_id}-{slot}")
        if trial.status == TrialStatus.STOPPED:
            return trials, True
        if trial.status == TrialStatus.IDLE:
            break
        trials.append(trial)
    return trials, False


def _budget(trial: kt.engine.trial.Trial, prepared: Prepared) -> tuple[int, int]:
    """The epochs a trial trains: Hyperband's round budget, else the job's."""
    values = trial.hyperparameters.values
    return int(values.get("tuner/initial_epoch", 0)), int(values.get("tuner/epochs", prepared.spec.training.epochs))


def _by_epoch_budget(trials: list[Any], prepared: Prepared) -> list[list[Any]]:
    groups: dict[tuple[int, int], list[Any]] = {}
    for trial in trials:
        groups.setdefault(_budget(trial, prepared), []).append(trial)
    return list(groups.values())


def run_pack(tuner: kt.Tuner, trials: list[Any], prepared: Prepared) -> None:
    """Train `trials` as one pack; each ends through the tuner's hooks as soon as it is done."""
    spec, config = prepared.spec, prepared.config
    first_epoch, last_epoch = _budget(trials[0], prepared)
    tuner.recorder.begin_pack()
    for trial in trials:
        tuner.on_trial_begin(trial)
    tuner.recorder.end_pack()
    net = PackedNet(
        config,
        [SliceConfig.from_hp(t.hyperparameters, config) for t in trials],
        seeds=[slice_seed(spec.seed, int(t.trial_id)) for t in trials],
    )
    x_val, y_val = prepared.fit_kwargs["validation_data"]
    trainer = PackTrainer(
        net,
        prepared.fit_args,
        (x_val, y_val),
        batch_size=spec.training.batch_size,
        objective=spec.objective.metric,
        direction=spec.objective.direction or "min",
        patience=spec.training.early_stopping_patience,
        seed=slice_seed(spec.seed, int(trials[0].trial_id)),
        sample_weight=prepared.sample_weight(),
    )
    for k, trial in enumerate(trials):
        parent = trial.hyperparameters.values.get("tuner/trial_id")
        if parent is not None:
            weights = slice_weights(tuner.recorder.artifacts, tuner.recorder.job_id, int(parent))
            if weights is not None:
                net.load_slice(k, weights)
            else:
                trainer.fail(k, f"the weights of trial {parent}, which it continues, were not kept")
    ended = {k for k, result in enumerate(trainer.results) if not result.active}
    _end_all(tuner, trials, trainer, sorted(ended), first_epoch)
    log.info(
        "pack of %d trials (%s), epochs %d-%d",
        len(trials),
        ", ".join(t.trial_id for t in trials),
        first_epoch + 1,
        last_epoch,
    )
    for number in range(first_epoch + 1, last_epoch + 1):
        if len(ended) == len(trials):
            break
        finished = trainer.run_epoch(number)
        live = [(t, number - 1, trainer.results[k].history[number]) for k, t in enumerate(trials) if k not in ended]
        tuner.recorder.epochs_ended(live)  # raises at a cancel or a limit: unfinished trials stay unended
        _end_all(tuner, trials, trainer, finished, first_epoch)
        ended.update(finished)
    _end_all(tuner, trials, trainer, [k for k in range(len(trials)) if k not in ended], first_epoch)


def _end_all(tuner: kt.Tuner, trials: list[Any], trainer: PackTrainer, slices: list[int], first_epoch: int) -> None:
    """End these slices' trials, every one of them, even when the oracle stops the search while
    ending one (too many failures in a row): each is recorded as what it was, then the stop goes on."""
    stop: Exception | None = None
    for k in slices:
        try:
            _end(tuner, trials[k], trainer, k, first_epoch)
        except Exception as exc:
            if isinstance(exc, FatalError):  # cancelled, lost, a limit: nothing more is written
                raise
            stop = stop or exc
    if stop is not None:
        raise stop


def _end(tuner: kt.Tuner, trial: Any, trainer: PackTrainer, k: int, first_epoch: int) -> None:
    """Report slice k's outcome to the oracle and end its trial through the tuner's hook."""
    result = trainer.results[k]
    if result.failure:
        trial.status, trial.message = TrialStatus.FAILED, result.failure
    elif result.best_epoch is None or result.best_value is None or not math.isfinite(result.best_value):
        trial.status = TrialStatus.FAILED
        trial.message = f"the objective {trainer.objective} was not a finite number (training diverged)"
    else:
        # keras-tuner's step is the best epoch's index within this fit, as its History gives it.
        step = result.best_epoch - first_epoch - 1
        tuner.oracle.update_trial(trial.trial_id, result.history[result.best_epoch], step=step)
        recorder = tuner.recorder
        store_slice_weights(recorder.artifacts, recorder.job_id, int(trial.trial_id), trainer.best_weights(k))
        trial.status = TrialStatus.COMPLETED
    tuner.recorder.share_time(trial.trial_id, result.seconds)
    tuner.on_trial_end(trial)
