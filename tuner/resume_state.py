"""keras-tuner's resume state, mirrored into the artifact store, so a job whose worker died resumes
from its finished trials on any host, not only on the one whose disk holds the work dir.

keras-tuner keeps a search's state as JSON files in its project dir: the oracle's `oracle.json`,
one `trial_<id>/trial.json` per trial, and the tuner's `<tuner id>.json`; with them a new tuner
reloads the search (`overwrite=False`), finished trials done and interrupted ones to run again.
`mirror` copies each of those files to the store right after keras-tuner writes it (only when it
changed), and `restore` writes them back into an empty work dir before the tuner is made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras_tuner as kt

from store.artifacts import ArtifactStore, download, job_prefix, put_bytes, read_bytes
from tuner.kt_internals import on_saves, oracle_file, trial_file, tuner_file

ORACLE_FILE = "oracle.json"


def state_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}tuner/"


def mirror(tuner: kt.Tuner, store: ArtifactStore, job_id: str, root: Path) -> None:
    """From now on, the state files the tuner and its oracle save go to the store as well.

    keras-tuner saves from inside its own methods (`create_trial`, `update_trial`, `end_trial`, the
    tuner's `save`); `kt_internals.on_saves` hears each of those saves. Files are sent once a trial
    has left the ongoing ones, not at each of keras-tuner's several saves per trial: a stored state
    that lags behind by trials still running only has them run again, as a reload does anyway, while
    a finished trial is in the store before its process takes another.
    """
    oracle = tuner.oracle
    uploaded: dict[str, bytes] = {}
    dirty: dict[str, Path] = {}
    ongoing_before: set[str] = set()  # the ongoing trials at the oracle's previous save

    def upload(file: Path) -> None:
        data = file.read_bytes()
        relative = file.resolve().relative_to(root.resolve()).as_posix()
        if uploaded.get(relative) != data:
            put_bytes(store, state_prefix(job_id) + relative, data)
            uploaded[relative] = data

    def flush_if_a_trial_ended() -> None:
        # keras-tuner saves the oracle as a trial ends, then again once it has left the ongoing trials
        # (the tuner's save after `end_trial`; the oracle server's): only that second save is sent,
        # since a state that still lists the trial as ongoing would have it run again on reload.
        nonlocal ongoing_before
        ongoing = {trial.trial_id for trial in oracle.ongoing_trials.values()}
        left, ongoing_before = ongoing_before - ongoing, ongoing
        if not left:
            return
        for file in dirty.values():  # trial files first: the oracle's file names them
            upload(file)
        dirty.clear()
        upload(oracle_file(oracle))

    def dirty_trial(trial: Any) -> None:
        path = trial_file(oracle, trial.trial_id)
        dirty[str(path)] = path

    # After the tuner's own save (which saved the oracle first): a restored work dir reloads only with it.
    on_saves(tuner, flush_if_a_trial_ended, dirty_trial, lambda: upload(tuner_file(tuner)))


def restore(store: ArtifactStore, job_id: str, root: Path, project: str, tuner_id: str = "tuner0") -> bool:
    """Write the stored state of the project dir `root/project` back where there is none on this
    host. True if it did. The oracle's file comes last: a tuner reloads only a work dir that has it
    (and its tuner file), so a restore cut short leaves a work dir that starts afresh instead."""
    if (root / project / ORACLE_FILE).exists():
        return False  # this host has the state already (a recycled or handed-back search)
    prefix = state_prefix(job_id)
    oracle_key = f"{prefix}{project}/{ORACLE_FILE}"
    if not store.exists(oracle_key):
        return False
    oracle_state = json.loads(read_bytes(store, oracle_key))
    for trial_id in oracle_state.get("start_order", []):
        relative = f"{project}/trial_{trial_id}/trial.json"
        if store.exists(prefix + relative):
            download(store, prefix + relative, root / relative)
    tuner_file = f"{project}/{tuner_id}.json"
    if store.exists(prefix + tuner_file):
        download(store, prefix + tuner_file, root / tuner_file)
    download(store, oracle_key, root / project / ORACLE_FILE)
    return True
