"""Benchmark: what keeping files in the store costs a packed search.

A job's search now writes each completed trial's weights, keras-tuner's state files and, at the end,
its kept `.keras` models to the artifact store. This runs the same packed search (digits, 24 trials of
10 epochs, 3 hidden layers of 128, `pack_size: auto`, models kept for the best 3) in this process
through `tuner.search.run_search`, alternately with the real artifact store (the database) and with a
store that keeps nothing, and prints each run's wall time and the ratio of the medians. The target
is at most 1.05. TensorFlow's import is not timed; every run builds its tuner and models afresh.
Usage: python bench/store_overhead.py [--rounds N] [--trials T] [--epochs E] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402,F401  (imported before timing)

from store import jobs as q  # noqa: E402
from store import kept_models as km  # noqa: E402
from store import migrate  # noqa: E402
from store.artifacts import ArtifactStore, StoredArtifact  # noqa: E402
from store.catalog import ensure_builtin_datasets  # noqa: E402
from store.config import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from store.errors import NotFoundError  # noqa: E402
from store.spec import JobSpec, planned_trials  # noqa: E402
from tuner import keep as keep_module  # noqa: E402
from tuner import parallel, recording, search  # noqa: E402
from tuner.cpus import configure_threads  # noqa: E402

T = TypeVar("T")


class Timed:
    """The real artifact store, timing every call: the share of a run spent on its files."""

    seconds = 0.0
    by_kind: dict[str, float] = {}  # by what the file is: weights, tuner (state), models

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def _timed(self, key: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            took = time.perf_counter() - started
            Timed.seconds += took
            kind = key.split("/")[2] if key.startswith("jobs/") and key.count("/") >= 2 else key.split("/")[0]
            Timed.by_kind[kind] = Timed.by_kind.get(kind, 0.0) + took

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        return self._timed(key, lambda: self.store.put(key, chunks))

    def read(self, key: str) -> Iterator[bytes]:
        return iter(self._timed(key, lambda: list(self.store.read(key))))

    def exists(self, key: str) -> bool:
        return self._timed(key, lambda: self.store.exists(key))

    def delete_prefix(self, prefix: str) -> int:
        return self._timed(prefix + "x", lambda: self.store.delete_prefix(prefix))


making = [0.0, 0.0]  # the last run's keep_models wall time, and the store's time within it


class NothingKept:
    """An artifact store that keeps nothing: the search without the cost of its files."""

    def put(self, key: str, chunks: Iterable[bytes]) -> StoredArtifact:
        size = sum(len(c) for c in chunks)
        return StoredArtifact(key, size, "")

    def read(self, key: str) -> Iterator[bytes]:
        raise NotFoundError("stored file", key)

    def exists(self, key: str) -> bool:
        return False

    def delete_prefix(self, prefix: str) -> int:
        return 0


def spec(trials: int, epochs: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "store overhead",
            "dataset_id": "digits",
            "algorithm": "random",
            "max_trials": trials,
            "search_space": {
                "dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1},
                "dropout_layers": {"min": 0, "max": 3},
            },
            "model": {"hidden_layers": 3, "units": 128},
            "training": {"epochs": epochs, "batch_size": 32},
            "seed": 42,
            "repeats": 0,
            "keep_models": 3,
        }
    )


def run_once(db: Database, settings: Settings, job_spec: JobSpec, keep: bool) -> tuple[float, float]:
    """The run's wall time, and the part of it spent on files (store calls, and making the models)."""
    with db.session() as session:
        job_id = q.create_job(session, job_spec, planned_trials(job_spec)).id
    with db.session() as session:
        claimed = q.claim_next_job(session, "bench")
        assert claimed is not None and claimed.id == job_id
    real, real_keep = search.artifact_store, keep_module.keep_models
    Timed.seconds, Timed.by_kind = 0.0, {}
    making_models = [0.0, 0.0]  # wall time of keep_models, and the store's time within it

    def timed_keep(*args: Any, **kwargs: Any) -> None:
        started, in_store = time.perf_counter(), Timed.seconds
        real_keep(*args, **kwargs)
        making_models[:] = [time.perf_counter() - started, Timed.seconds - in_store]

    def store_of(db: Database, url: str) -> ArtifactStore:
        return Timed(real(db, url)) if keep else NothingKept()

    for module in (search, recording, parallel):
        module.artifact_store = store_of  # type: ignore[attr-defined]
    keep_module.keep_models = timed_keep  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        outcome = search.run_search(db, settings, job_id)
        seconds = time.perf_counter() - started
    finally:
        for module in (search, recording, parallel):
            module.artifact_store = real  # type: ignore[attr-defined]
        keep_module.keep_models = real_keep  # type: ignore[assignment]
    assert outcome.value == "succeeded", outcome
    with db.session(readonly=True) as session:
        models = len(km.list_models(session, job_id))
    assert models == (3 if keep else 0), models
    making[:] = making_models
    return seconds, Timed.seconds + making_models[0] - making_models[1] if keep else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=args.database_url)
        url = settings.resolved_database_url
        migrate.upgrade(url)
        db = Database(url)
        with db.session() as session:
            ensure_builtin_datasets(session)
        configure_threads(settings.worker_threads)
        job_spec = spec(args.trials, args.epochs)
        run_once(db, settings, spec(4, 1), keep=True)  # warm-up: traces, caches, first connections
        times: dict[bool, list[float]] = {False: [], True: []}
        shares: list[float] = []
        for round_ in range(args.rounds):
            for keep in (False, True):
                seconds, on_files = run_once(db, settings, job_spec, keep)
                times[keep].append(seconds)
                line = f"round {round_ + 1}: {'store   ' if keep else 'no files'} {seconds:7.2f} s"
                if keep:
                    shares.append(on_files / seconds)
                    line += f"  ({on_files:.2f} s of it on files: {100 * on_files / seconds:.1f}%;"
                    line += " store calls by kind " + ", ".join(f"{k} {v:.2f} s" for k, v in Timed.by_kind.items())
                    line += f"; making the models {making[0] - making[1]:.2f} s)"
                print(line, flush=True)
        backend = url.split(":", 1)[0]
        none, kept = statistics.median(times[False]), statistics.median(times[True])
        print(f"\n{backend}: {args.trials} trials x {args.epochs} epochs, packed (auto), 3 models kept")
        ratio = kept / none
        print(f"median without files {none:.2f} s, with the store {kept:.2f} s: ratio {ratio:.3f} (target <= 1.05)")
        print(f"time on files, measured inside the runs: median {100 * statistics.median(shares):.1f}% of a run")


if __name__ == "__main__":
    main()
