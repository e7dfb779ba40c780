"""Benchmark: a user's own CNN searched by droptune against the same user's own keras-tuner script.

The network is bench/digits_cnn.py's (Conv2D 16, max pooling, Conv2D 32, global average pooling,
Dense 64, Dense 10 softmax; Adam, sparse categorical cross-entropy, accuracy), on digits as 8x8x1
images scaled to [0, 1]. It is uploaded as a `.keras` file (`POST /api/v1/networks`, no dropout
layers: droptune puts its default sites in, SpatialDropout2D after the pooling, Dropout after the
global pooling and after Dense 64) and the images as an NPZ dataset (the built-in `digits` is
tabular, 64 features). The job: random search over the dropout rate (0..0.7, step 0.1) and the
number of dropout layers (0..3), 20 trials x 10 epochs, batch 32, validation split 0.2, seed 42,
`pack_size` auto, repeats 0. The user's script (bench/bare_search.py ... cnn) is a `build(hp)` that
rebuilds the CNN with that dropout at those sites and `kt.RandomSearch` over the same space, split,
trials, epochs and batch size.

Both are timed from the outside, wall clock, alternating (bench/service_vs_bare.py's `compare`): the
script from launch to exit, process start and TensorFlow import included; the service from POST
/jobs to the job reading `succeeded`, with the API and an idle worker already running, and warm: one
untimed 1-trial job first, as a worker has its launcher's TensorFlow imported after its first job
(`--cold` leaves it out). Target: the service at most 0.35x the script's median (issue 23). The
script's best val_loss also runs on seeds 43 and 44, and the service's best (seed 42) is checked
against that spread; as the script trains the network without dropout once per trial that draws it
(0 layers, or rate 0) and droptune once, each side's scores for it are printed too. Then the job's
`execution` (which trainer ran, K) and where its time went: its store's timestamps (claim, the search
process starting up, each epoch of the pack, the end) and its search log.

Last, in this process (the service stopped): seconds per configuration of this CNN, with the dropout
sites and build droptune uses (`tuner.packs.pack_network`), trained by `models.vector_pack` directly
at K = 1, 4, 8, 16, 32 for the search's epochs, against plain `fit`s (bench/vector_pack.py's timing;
plain fits at most `--plain-max` configurations per K, its time per configuration not depending on K).
Usage: python bench/network_vs_bare.py [--repeats N] [--trials T] [--epochs E] [--cold] [--ks K ...]
       [--k-repeats R] [--plain-max N] [--skip-search | --skip-ks]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import re
import statistics
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from digits_cnn import cnn, images
from local_service import local_service
from service_vs_bare import SEED, SPREAD_SEEDS, Comparison, Run, compare, header, run_bare, run_service, spec

from store.config import Settings
from tuner.cpus import configure_threads

TARGET = 0.35  # issue 23: the service at most 0.35x the user's script for the CNN
RATES = [round(0.1 * i, 1) for i in range(8)]  # the search space's dropout rates (service_vs_bare)


def network_file(directory: Path) -> bytes:
    path = directory / "digits_cnn.keras"
    cnn().save(path)
    return path.read_bytes()


def dataset_file() -> bytes:
    x, y = images()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=x, y=y)
    return buffer.getvalue()


def upload(client: httpx.Client, path: str, name: str, data: bytes) -> dict[str, Any]:
    answer = client.post(path, files={"file": (name, data)}, data={"name": name})
    if answer.status_code != 201:
        raise RuntimeError(f"{path}: {answer.status_code} {answer.text}")
    return answer.json()  # type: ignore[no-any-return]


# -- where the service's time went ----------------------------------------------------------------


def moment(value: str | dt.datetime) -> float:
    """A stored timestamp (UTC; SQLite may hand it back naive, or as text) in seconds."""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def timeline(database: Path, run: Run) -> dict[str, float]:
    """Seconds of each phase of the job `run` ran, from the timestamps its store recorded."""
    from sqlalchemy import create_engine, func, select

    from store.tables import Epoch, Job, Trial

    engine = create_engine(f"sqlite:///{database}")
    job_id = run.job["id"]
    with engine.connect() as db:
        created, started, finished = db.execute(
            select(Job.created_at, Job.started_at, Job.finished_at).where(Job.id == job_id)
        ).one()
        first_trial, last_trial = db.execute(
            select(func.min(Trial.started_at), func.max(Trial.finished_at)).where(Trial.job_id == job_id)
        ).one()
        epochs = db.execute(
            select(func.max(Epoch.recorded_at))
            .join(Trial, Trial.id == Epoch.trial_id)
            .where(Trial.job_id == job_id)
            .group_by(Epoch.epoch)
            .order_by(Epoch.epoch)
        ).scalars()
        marks = [moment(m) for m in (created, started, first_trial, *epochs, last_trial, finished)]
    engine.dispose()
    spans = np.diff(marks)
    return {
        "POST to claimed": spans[0],
        "claimed to first trial begun": spans[1],
        "epoch 1 (as recorded)": spans[2],
        "each later epoch (mean)": float(np.mean(spans[3:-2])) if len(spans) > 5 else math.nan,
        "last epoch to last trial ended": spans[-2],
        "last trial ended to job finished": spans[-1],
        "job finished to seen succeeded": run.seconds - (marks[-1] - marks[0]),
        "in all (client)": run.seconds,
    }


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \[\d+\] \w+ [\w.]+: (.*)$")


def milestones(logs: Path, run: Run) -> None:
    """The job's search log, each line at its second from the job's creation (a run of "trial N
    began" lines as one)."""
    created = moment(run.job["created_at"])
    began: list[float] = []
    print(f"  the search process's log, seconds from POST /jobs (job {run.job['id']}):")
    for line in (logs / f"job-{run.job['id']}.log").read_text().splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        at = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() - created  # local time
        if re.match(r"trial \S+ began", match[2]):
            began.append(at)
            continue
        if began:
            print(f"  {began[0]:8.2f} .. {began[-1]:.2f}  {len(began)} trials began")
            began = []
        text = match[2] if len(match[2]) <= 110 else f"{match[2][:60]} ... {match[2][-45:]}"
        print(f"  {at:8.2f}  {text}")


def print_profile(data_dir: Path, runs: list[Run]) -> None:
    spans = [timeline(data_dir / "droptune.db", run) for run in runs]
    print("\nwhere the service's time went, seconds (from its store's timestamps; one column per run)")
    for name in spans[0]:
        print(f"  {name:34s} " + " ".join(f"{s[name]:8.2f}" for s in spans))
    milestones(data_dir / "logs", runs[0])


# -- per configuration, the pack alone --------------------------------------------------------------


def per_k(network_bytes: bytes, sites: list[str], threads: int, args: argparse.Namespace) -> None:
    """Seconds per configuration of the CNN trained by `models.vector_pack` at each K, against plain
    fits, built as droptune builds the uploaded network (its default sites, `pack_network`)."""
    from vector_pack import Reused, run, table, time_plain, time_vector

    from models.user_network import NetworkBuild
    from models.vector_pack import SliceSpec
    from store.network_files import read_network
    from store.network_sites import job_sites
    from tuner.packs import pack_network
    from tuner.setup import split

    summary = read_network(network_bytes, len(network_bytes))
    with zipfile.ZipFile(io.BytesIO(network_bytes)) as archive:
        config = json.loads(archive.read("config.json"))
    found = job_sites(summary, None, "from_input", "auto")
    if [site.after for site in found] != sites:
        raise RuntimeError(f"the sites found here {found} are not the service's {sites}")
    build = NetworkBuild(config, tuple(found), "classification", 10, 1e-3, summary)
    network = pack_network(build)
    x, y = images()
    x_train, x_val, y_train, y_val = split(x, y, "classification", 0.2, SEED)
    data = (x_train, y_train, x_val, y_val)
    rng = np.random.default_rng(SEED)

    def specs(k: int) -> list[SliceSpec]:
        values = [{"dropout_rate": rng.choice(RATES), "dropout_layers": rng.integers(0, 4)} for _ in range(k)]
        return [SliceSpec(tuple(map(float, build.rates(v))), SEED * 1000 + i) for i, v in enumerate(values)]

    time_vector(network, specs(2), data, 1)  # warm-up, untimed: TensorFlow's first graphs and kernels
    time_plain(network, specs(1), data, 1)
    reused = Reused(network, data)
    print(
        f"\nthe CNN as droptune packs it, digits {len(x_train)} training images, batch 32, {args.epochs} epochs, "
        f"{threads} TensorFlow threads; {args.k_repeats} round(s), variants interleaved, best of the rounds; "
        f"plain fits at most {args.plain_max} configurations per K"
    )
    best = run(
        {
            "vector": lambda k: time_vector(network, specs(k), data, args.epochs),
            "reused": lambda k: reused.time(specs(k), args.epochs),
            "plain": lambda k: time_plain(network, specs(k)[: args.plain_max], data, args.epochs),
        },
        args.ks,
        args.k_repeats,
    )
    table("cnn (droptune's sites: " + ", ".join(sites) + ")", best, args.ks, args.epochs)


def no_dropout(values: dict[str, Any]) -> bool:
    """Whether a trial's values build the network without dropout (droptune trains that one once)."""
    return not values.get("dropout_layers") or not values.get("dropout_rate")


def print_no_dropout(client: httpx.Client, result: Comparison) -> None:
    """The network without dropout, as each side trained it: the script once per trial that drew it
    (any rate with 0 layers, or rate 0), droptune once (its canonical space)."""
    print("\nthe network without dropout (0 layers, or rate 0), best val_loss of each time it was trained:")
    for seed, run in zip((SEED, *SPREAD_SEEDS), result.seeds, strict=True):
        scores = sorted(score for values, score in run.trials if no_dropout(values))
        print(
            f"  bare, seed {seed}: {len(scores)} of {len(run.trials)} trials: " + ", ".join(f"{v:.4f}" for v in scores)
        )
    job = result.service[0].job
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials", params={"limit": 500}).json()["items"]
    scores = sorted(t["score"] for t in trials if no_dropout(t["hyperparameters"]) and t["score"] is not None)
    print(f"  droptune, seed {SEED}: {len(scores)} of {len(trials)} trials: " + ", ".join(f"{v:.4f}" for v in scores))


def search_vs_bare(client: httpx.Client, data_dir: Path, body: dict[str, Any], args: argparse.Namespace) -> None:
    if not args.cold:
        warm = run_service(
            client, {**body, "name": "warm-up", "max_trials": 1, "training": {**body["training"], "epochs": 1}}
        )
        print(
            f"warm-up job (1 trial x 1 epoch, not timed below), so the worker's launcher has TensorFlow imported "
            f"as an idle worker's has after its first job: {warm.seconds:.2f} s"
        )
    result = compare(
        "cnn",
        client,
        body,
        lambda seed: run_bare("digits", args.trials, args.epochs, seed, network="cnn"),
        args.repeats,
        TARGET,
    )
    for i, run in enumerate(result.service):
        print(f"  service run {i + 1} execution: {json.dumps(run.job['execution'])}")
    ratios = [s.seconds / b.seconds for s, b in zip(result.service, result.bare, strict=True)]
    listed = ", ".join(f"{r:.3f}" for r in ratios)
    print(f"  per-pair ratios: {listed} (median {statistics.median(ratios):.3f})")
    print_no_dropout(client, result)
    print_profile(data_dir, result.service)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each side")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cold", action="store_true", help="no warm-up job: the first timed search starts cold")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--k-repeats", type=int, default=1, help="rounds of the per-K timing")
    parser.add_argument("--plain-max", type=int, default=1, help="plain fits per K in the per-K timing")
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-search", action="store_true", help="only the per-K timing")
    skip.add_argument("--skip-ks", action="store_true", help="only the search against the script")
    args = parser.parse_args()
    header()
    # Before any TensorFlow op in this process: sized as the worker's search process sizes its pools.
    threads = configure_threads(Settings().worker_threads)
    with tempfile.TemporaryDirectory() as scratch:
        network_bytes = network_file(Path(scratch))
        data_dir = Path(scratch) / "service"
        data_dir.mkdir()
        with local_service(data_dir=str(data_dir)) as client:
            network = upload(client, "/api/v1/networks", "digits_cnn.keras", network_bytes)
            dataset = upload(client, "/api/v1/datasets", "digits_8x8x1.npz", dataset_file())
            sites = [site["after"] for site in network["dropout_sites"]]
            kinds = ", ".join(f"{site['kind']} after {site['after']}" for site in network["dropout_sites"])
            print(f"network {network['id']}: dropout sites {kinds}")
            print(f"dataset {dataset['id']}: {dataset['n_samples']} samples of {dataset['input_shape']}")
            if not args.skip_search:
                body = spec(dataset["id"], args.trials, args.epochs, {"network_id": network["id"]})
                search_vs_bare(client, data_dir, body, args)
    if not args.skip_ks:
        per_k(network_bytes, sites, threads, args)


if __name__ == "__main__":
    main()
