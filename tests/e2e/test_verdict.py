"""The verdict end to end: a real search, its confirmation runs over seeds, the stored report, and
its figures recomputed from the stored trials and runs."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import small_job
from tests.e2e.conftest import ON_SQLITE_ONLY, WORKER_BACKEND, Service
from tests.e2e.test_models import download, evaluate

pytestmark = [pytest.mark.e2e, ON_SQLITE_ONLY]


@pytest.mark.backends
def test_a_finished_job_has_a_report_backed_by_its_confirmation_runs(service: Service, tmp_path: Path) -> None:
    svc = service
    spec = small_job(
        "iris", max_trials=6, repeats=3, confirm_top=2, mc_samples=10, training={"epochs": 8, "batch_size": 32}
    )
    job = svc.wait(svc.submit(spec)["id"], timeout=600)
    assert job["status"] == "succeeded", job["error"]
    assert job["execution"]["backend"] == WORKER_BACKEND
    report = svc.client.get(f"/api/v1/jobs/{job['id']}/report").json()
    assert report["final"] and report["repeats"] == 3

    trials = svc.trials(job["id"])
    # The baseline first, without a rate; no network twice.
    assert trials[0]["hyperparameters"] == {"dropout_rate": None, "dropout_layers": 0}
    networks = [(t["hyperparameters"]["dropout_rate"], t["hyperparameters"]["dropout_layers"]) for t in trials]
    assert len(set(networks)) == len(networks)

    # Every confirmed configuration's figures, recomputed from its runs.
    runs = defaultdict(list)
    for run in report["runs"]:
        runs[(run["arm"], run["label"])].append(run)
        assert len(run["history"]) >= 1
        if run["status"] == "completed":
            losses = [row["val_loss"] for row in run["history"]]
            assert run["best_epoch"] == int(np.argmin(losses)) + 1
            # chosen on its own validation rows, scored on the held-out rows
            assert math.isclose(run["validation_score"], min(losses), rel_tol=1e-6)
            assert run["score"] is not None and math.isfinite(run["score"])
    # Iris's 150 rows: 30 held out (0.2), each seed's own split of the other 120 (96 + 24).
    assert report["scored_on"] == {"heldout_rows": 30, "validation_rows": 24, "training_rows": 96, "own_splits": True}
    assert "Scores are on 30 held-out rows the search never saw" in report["verdict"]["sentence"]
    assert len({tuple(row["val_loss"] for row in r["history"]) for r in report["runs"]}) == len(report["runs"])
    arms = {arm for arm, _ in runs}
    assert {"candidate", "baseline"} <= arms
    assert all(len(group) == 3 for group in runs.values())
    assert sorted({r["seed"] for r in report["runs"]}) == sorted({r["seed"] for r in runs[next(iter(runs))]})
    for confirmed in report["confirmed"]:
        group = [r for r in runs[(confirmed["arm"], confirmed["label"])] if r["score"] is not None]
        scores = [r["score"] for r in group]
        assert math.isclose(confirmed["score"]["mean"], float(np.mean(scores)), rel_tol=1e-9)
        assert math.isclose(confirmed["score"]["sd"], float(np.std(scores, ddof=1)), rel_tol=1e-9)
        # The gap subtracts the training loss measured with dropout off, after training.
        assert confirmed["gap_training_loss"] == "dropout_off"
        gaps = [r["history"][r["best_epoch"] - 1]["val_loss"] - r["train_loss_at_best"] for r in group]
        assert math.isclose(confirmed["gap_at_best"]["mean"], float(np.mean(gaps)), rel_tol=1e-9)
    recommended = report["recommended"]
    assert recommended is not None and recommended["recommended"]
    candidates = [c for c in report["confirmed"] if c["candidate"] and c["arm"] != "smaller"]
    best = min(candidates, key=lambda c: c["score"]["mean"])  # what the smaller network and MC dropout use

    # Iris is learned: every candidate beats predicting the class frequencies, so the dropout question stands.
    assert report["reference"]["no_better_than_reference"] is False
    assert any(c["beats_reference"] for c in candidates)

    # The verdict's difference: the baseline's mean minus the named dropout configuration's.
    verdict = report["verdict"]
    assert verdict["answer"] in {"helps", "no_evidence", "hurts"}
    baseline = next(c for c in report["confirmed"] if c["arm"] == "baseline")
    dropout = next(c for c in report["confirmed"] if c["label"] == verdict["dropout"])
    assert math.isclose(
        verdict["difference"]["estimate"], baseline["score"]["mean"] - dropout["score"]["mean"], rel_tol=1e-9
    )
    low, high = verdict["difference"]["low"], verdict["difference"]["high"]
    if verdict["answer"] == "helps":  # a configuration shown better, and recommended
        assert low > 0 and recommended["hyperparameters"]["dropout_layers"] > 0
        assert recommended["versus_baseline"]["low"] > 0
    elif verdict["answer"] == "hurts":  # every configuration worse on its own interval: none recommended
        assert high < 0 and recommended["label"] == "no dropout"
    else:  # could not tell apart: the simplest network of those not shown to learn nothing
        assert low <= 0 and "could not be told apart" in verdict["sentence"]
        eligible = [c for c in candidates if c["beats_reference"] is not False]

        def simple(c: dict[str, Any]) -> tuple[int, float, float]:
            values = c["hyperparameters"]
            return values["dropout_layers"], values["dropout_rate"] or 0.0, c["score"]["mean"]

        simplest = min(eligible, key=simple)
        assert recommended["label"] == simplest["label"]

    # Effects by layer count, recomputed from the stored trials.
    by_layers = defaultdict(list)
    for t in trials:
        if t["status"] == "completed":
            by_layers[str(t["hyperparameters"]["dropout_layers"])].append(t["score"])
    for level in report["effects"]["by_layers"]:
        assert math.isclose(level["score"]["mean"], float(np.mean(by_layers[level["value"]])), rel_tol=1e-9)
    shares = report["effects"]["variance_explained"]
    assert set(shares) >= {"dropout_rate", "dropout_layers", "residual"}
    assert math.isclose(sum(shares.values()), 1.0)  # sequential sums of squares add up

    # The smaller network, for the best confirmed mean where that has dropout.
    if best["hyperparameters"]["dropout_layers"]:
        smaller = report["smaller_network"]
        assert smaller is not None and len(runs[("smaller", smaller["label"])]) == 3
        assert smaller["versus"] == best["label"]

    # MC dropout on the model the job serves: its figures are that model's, or it has no dropout to sample.
    served = recommended["trial"]
    mc = report["mc_dropout"]
    if recommended["hyperparameters"]["dropout_layers"]:
        assert mc is not None and mc["samples"] == 10 and mc["model"] == f"trial {served}"
        assert mc["label"] == recommended["label"] and mc["spread"] > 0
        assert set(mc["calibration"]) == {"ece", "ece_mc"} and mc["pass_seeds"] == 5
        low, high = mc["noise"]["ece_mc"]
        assert low <= mc["calibration"]["ece_mc"] <= high
        path = download(svc, f"/api/v1/jobs/{job['id']}/model", tmp_path / "served.keras")
        assert mc["rows"] == 30  # on the held-out rows: the search chose the served model on the validation rows
        assert math.isclose(evaluate(path, spec, rows="heldout")["loss"], mc["deterministic"], rel_tol=1e-4)
    else:
        assert mc is None and report["mc_dropout_note"].startswith("MC dropout does not apply")
