"""keras-tuner's resume state through the store (`tuner.resume_state`): mirrored as trials end, and
restored into an empty work dir on another host, where keras-tuner reloads it as its own."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras_tuner as kt

from store.artifacts import ArtifactStore, DatabaseArtifacts, StoredArtifact
from store.db import Database
from tuner.resume_state import mirror, restore, state_prefix

COMPLETED = kt.engine.trial.TrialStatus.COMPLETED


class CountingStore:
    """The database store, counting puts by key."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store, self.puts = store, []

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        self.puts.append(key)
        return self.store.put(key, chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def tuner_over(directory: Path, *, overwrite: bool) -> kt.Tuner:
    hp = kt.HyperParameters()
    hp.Float("dropout_rate", 0.0, 0.5)
    return kt.RandomSearch(
        hypermodel=lambda _hp: None,  # never built: the trials below are ended by hand
        objective="val_loss",
        max_trials=10,
        hyperparameters=hp,
        directory=str(directory),
        project_name="search",
        overwrite=overwrite,
    )


def finish(tuner: kt.Tuner, loss: float) -> str:
    """One trial through the oracle as a search runs it: created, scored, ended, the tuner saved."""
    trial = tuner.oracle.create_trial(tuner.tuner_id)
    tuner.oracle.update_trial(trial.trial_id, {"val_loss": loss})
    trial.status = COMPLETED
    tuner.oracle.end_trial(trial)
    tuner.save()
    return str(trial.trial_id)


def test_a_finished_trial_is_in_the_store_and_another_host_reloads_the_search_from_it(
    db: Database, tmp_path: Path
) -> None:
    store = CountingStore(DatabaseArtifacts(db))
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    tuner = tuner_over(host_a, overwrite=True)
    mirror(tuner, store, "job1", host_a)  # type: ignore[arg-type]
    tuner.save()
    assert store.puts == [state_prefix("job1") + "search/tuner0.json"]

    running = tuner.oracle.create_trial(tuner.tuner_id)
    assert len(store.puts) == 1  # a trial handed out is not sent: were it lost, it would only run again
    running.status = COMPLETED
    tuner.oracle.update_trial(running.trial_id, {"val_loss": 0.5})
    tuner.oracle.end_trial(running)
    tuner.save()
    # Sent once it has left the ongoing trials: its file, then the oracle's (a state listing it as
    # ongoing would have it run again); the tuner's own file is unchanged, so not sent again.
    assert store.puts[1:] == [
        state_prefix("job1") + f"search/trial_{running.trial_id}/trial.json",
        state_prefix("job1") + "search/oracle.json",
    ]
    second = finish(tuner, 0.25)

    assert restore(store, "job1", host_b, "search")  # type: ignore[arg-type]
    reloaded = tuner_over(host_b, overwrite=False)
    trials = reloaded.oracle.trials
    assert sorted(trials) == sorted([running.trial_id, second])
    assert all(t.status == COMPLETED for t in trials.values())
    assert reloaded.oracle.get_best_trials(1)[0].trial_id == second
    assert reloaded.oracle.ongoing_trials == {}
    before = set(trials)
    assert reloaded.oracle.create_trial("tuner0").trial_id not in before  # the search goes on from there


def test_a_host_that_has_the_state_keeps_its_own_and_nothing_stored_restores_nothing(
    db: Database, tmp_path: Path
) -> None:
    store = DatabaseArtifacts(db)
    tuner = tuner_over(tmp_path, overwrite=True)
    mirror(tuner, store, "job2", tmp_path)
    finish(tuner, 0.5)
    assert not restore(store, "job2", tmp_path, "search")  # its own work dir is as new as the store
    assert not restore(store, "job3", tmp_path / "elsewhere", "search")
    assert not (tmp_path / "elsewhere").exists()
