"""Packed search: keras-tuner's search loop, K trials at a time, trained as one pack (`tuner.packs`).

The loop is keras-tuner's own (`BaseTuner.search`) with one change: it asks the oracle for up to K
trials before training (one tuner id per slot, as parallel trial processes do, so the oracle still
decides every trial: Bayesian optimisation hallucinates the pending ones, and packs first its initial
random points, then a few points chosen together (`store.bayesian`), grid search walks its
grid (`tuner.oracles`), Hyperband hands out the trials its brackets can start now, packed by their
shared epoch budget, and answers IDLE while it must wait for other processes' trials). The pack's
trials go through the tuner's own hooks (`on_trial_begin`, `on_trial_end`), so they are recorded,
scored and saved exactly as unpacked ones; their epochs are recorded together, one write per epoch.

A completed trial's best-epoch weights go to the artifact store (`tuner.keep`): the template's in the
plain model's layout, a network's as keras-tuner checkpoints an unpacked trial. Hyperband continues a
trial from them, on whichever host the trial it continues ran.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.errors import FatalError

from store import jobs as q
from store.config import Settings
from tuner.packs import Pack, Packer, PackSizes, plan
from tuner.setup import Prepared

log = logging.getLogger(__name__)

TrialStatus = kt.engine.trial.TrialStatus
IDLE_WAIT_S = 0.5  # the oracle is waiting for other processes' trials (parallel Hyperband)


def run(tuner: kt.Tuner, prepared: Prepared, settings: Settings, workdir: Path) -> None:
    """The job's search in this process: in packs, or keras-tuner's own loop one trial at a time
    (packs of one, or a network that cannot train in a pack: the job records why)."""
    decided = plan(prepared, settings)
    recorder = tuner.recorder
    with recorder.db.session() as session:
        q.set_execution(session, recorder.job_id, decided.execution.model_dump(mode="json"))
    if decided.packer is None:
        tuner.search(*prepared.fit_args, **prepared.fit_kwargs)
    else:
        log.info("training packs of up to %d trials (%s)", decided.execution.pack_size, decided.execution.trainer)
        search(tuner, prepared, decided.packer, decided.sizes)


def search(tuner: kt.Tuner, prepared: Prepared, packer: Packer, sizes: PackSizes) -> None:
    """Run the tuner's search in packs of `sizes`, until the oracle says stop."""
    tuner.oracle.verbose = 0  # keras-tuner's progress printing; the store has it all
    # Recycling bounds what TensorFlow leaks per model built, and a pack is one model: count packs.
    tuner.recorder.recycle_after *= sizes.largest
    # Trials made so far: those this oracle reloaded, then the highest id taken (a parallel job's
    # oracle is in another process; its trials' ids count them all).
    made = len(tuner.oracle.trials)
    # keras-tuner reloads a work dir only where the tuner's own file exists, which it first writes as
    # a trial ends: without it, a search stopped in its first pack would begin again from scratch.
    tuner.save()
    tuner.on_search_begin()
    while True:
        trials, stopped = _take_trials(tuner, sizes.next(made))
        made = max([made, *(int(t.trial_id) + 1 for t in trials)])
        if not trials:
            if stopped:
                break
            time.sleep(IDLE_WAIT_S)
            continue
        for group in _by_epoch_budget(trials, prepared):
            run_pack(tuner, group, prepared, packer)
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


def run_pack(tuner: kt.Tuner, trials: list[Any], prepared: Prepared, packer: Packer) -> None:
    """Train `trials` as one pack; each ends through the tuner's hooks as soon as it is done."""
    first_epoch, last_epoch = _budget(trials[0], prepared)
    tuner.recorder.begin_pack()
    for trial in trials:
        tuner.on_trial_begin(trial)
    tuner.recorder.end_pack()
    pack = packer.start(tuner, trials, first_epoch)
    ended = {k for k, result in enumerate(pack.results) if not result.active}
    _end_all(tuner, trials, pack, sorted(ended), first_epoch)
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
        finished = pack.run_epoch(number)
        live = [(t, number - 1, pack.results[k].history[number]) for k, t in enumerate(trials) if k not in ended]
        tuner.recorder.epochs_ended(live)  # raises at a cancel or a limit: unfinished trials stay unended
        _end_all(tuner, trials, pack, finished, first_epoch)
        ended.update(finished)
    _end_all(tuner, trials, pack, [k for k in range(len(trials)) if k not in ended], first_epoch)


def _end_all(tuner: kt.Tuner, trials: list[Any], pack: Pack, slices: list[int], first_epoch: int) -> None:
    """End these slices' trials, every one of them, even when the oracle stops the search while
    ending one (too many failures in a row): each is recorded as what it was, then the stop goes on."""
    stop: Exception | None = None
    for k in slices:
        try:
            _end(tuner, trials[k], pack, k, first_epoch)
        except Exception as exc:
            if isinstance(exc, FatalError):  # cancelled, lost, a limit: nothing more is written
                raise
            stop = stop or exc
    if stop is not None:
        raise stop


def _end(tuner: kt.Tuner, trial: Any, pack: Pack, k: int, first_epoch: int) -> None:
    """Report slice k's outcome to the oracle and end its trial through the tuner's hook."""
    result = pack.results[k]
    if result.failure:
        trial.status, trial.message = TrialStatus.FAILED, result.failure
    elif result.best_epoch is None or result.best_value is None or not math.isfinite(result.best_value):
        trial.status = TrialStatus.FAILED
        trial.message = f"the objective {pack.objective} was not a finite number (training diverged)"
    else:
        # keras-tuner's step is the best epoch's index within this fit, as its History gives it.
        step = result.best_epoch - first_epoch - 1
        tuner.oracle.update_trial(trial.trial_id, result.history[result.best_epoch], step=step)
        pack.keep(k, tuner, trial)
        trial.status = TrialStatus.COMPLETED
    tuner.recorder.share_time(trial.trial_id, result.seconds)
    tuner.on_trial_end(trial)
