"""Benchmark: what the verdict's evidence costs against the search it follows.

Runs the README's example job (digits, random search, 20 trials x 20 epochs over rate, layers, units
and learning rate, seed 42) in this process on a fresh SQLite store, as the worker runs it
(`tuner.search.run_search`), and times its phases from the inside: the search (every trial, packed as
the job asks), the confirmation (the runs over seeds, the smaller network, the report), keeping the
models, and MC dropout on the served model. Prints each phase's seconds and the ratio
confirmation / search (issue 24's target: under 1x on the template).

Usage: python bench/cost_of_evidence.py [--repeats N] [--confirm-top K] [--heldout F] [--trials T]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch_store import scratch_store  # noqa: E402

from service.jobs import submit_job  # noqa: E402
from store import jobs as q  # noqa: E402
from store.spec import JobSpec  # noqa: E402
from tuner import search  # noqa: E402

OWNER = "bench"


def readme_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": "digits dropout",
        "dataset_id": "digits",
        "algorithm": "random",
        "max_trials": args.trials,
        "objective": {"metric": "val_loss", "direction": "min"},
        "search_space": {
            "dropout_rate": {"min": 0.0, "max": 0.7, "step": 0.1},
            "dropout_layers": {"min": 0, "max": 3},
            "units": {"values": [64, 128, 256]},
            "learning_rate": {"min": 0.0001, "max": 0.01, "sampling": "log"},
        },
        "model": {"hidden_layers": 3, "units": 128, "activation": "relu"},
        "training": {"epochs": 20, "batch_size": 32, "validation_split": 0.2, "heldout_split": args.heldout},
        "repeats": args.repeats,
        "confirm_top": args.confirm_top,
        "seed": 42,
    }


def timed(phases: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--confirm-top", type=int, default=3)
    parser.add_argument("--heldout", type=float, default=0.2)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    phases: dict[str, float] = {}
    search.packed_search.run = timed(phases, "search", search.packed_search.run)  # type: ignore[method-assign]
    search.confirm.conclude = timed(phases, "confirmation", search.confirm.conclude)  # type: ignore[method-assign]
    search.keep.keep_models = timed(phases, "keep models", search.keep.keep_models)  # type: ignore[method-assign]
    search.served_mc.add_mc_figures = timed(phases, "MC dropout", search.served_mc.add_mc_figures)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        settings, db = scratch_store(Path(folder))
        job = submit_job(db, JobSpec.model_validate(readme_spec(args)), settings, OWNER, OWNER)
        with db.session() as session:
            q.claim_next_job(session, "bench-worker")
        started = time.perf_counter()
        outcome = search.run_search(db, settings, job.id)
        total = time.perf_counter() - started
        with db.session(readonly=True) as session:
            stored = q.get_job(session, job.id)
            execution, sentence = stored.execution, (stored.report or {}).get("verdict", {}).get("sentence")
    print(f"outcome {outcome.name}; trains {execution}")
    print(f"verdict: {sentence}")
    for name, seconds in phases.items():
        print(f"{name:>13}: {seconds:7.1f} s")
    print(f"{'total':>13}: {total:7.1f} s")
    runs = (args.confirm_top + 2) * args.repeats
    print(
        f"confirmation / search = {phases['confirmation'] / phases['search']:.2f}x "
        f"(about {runs} confirmation runs against {args.trials} trials; target under 1x)"
    )


if __name__ == "__main__":
    main()
