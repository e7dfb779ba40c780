"""Many workers sharing one PostgreSQL: every job runs exactly once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.conftest import backend_database, small_job
from tests.e2e.conftest import Service, start_service, stop_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def three_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with backend_database("postgresql") as url:
        svc = start_service(tmp_path_factory.mktemp("droptune-three-workers"), url, workers=3)
        try:
            yield svc
        finally:
            stop_service(svc)


def test_three_workers_run_nine_jobs_each_exactly_once(three_workers: Service) -> None:
    svc = three_workers
    submitted = [
        svc.submit(small_job("iris", name=f"many {i}", max_trials=2, training={"epochs": 2}, seed=i))
        for i in range(9)
    ]
    finished = [svc.wait(job["id"], timeout=400) for job in submitted]
    assert [job["status"] for job in finished] == ["succeeded"] * 9
    trials = {job["id"]: svc.trials(job["id"]) for job in finished}
    assert all(len(t) == 2 and {x["status"] for x in t} == {"completed"} for t in trials.values())
    assert sum(len(t) for t in trials.values()) == 18
    # Each job was claimed by exactly one worker, once, and the work was shared out.
    claims: Counter[str] = Counter()
    claimed_by: dict[str, str] = {}
    for i in range(3):
        for job_id in re.findall(r"job ([0-9a-f]{32}) claimed", (svc.data_dir / f"worker-{i}.log").read_text()):
            claims[job_id] += 1
            claimed_by[job_id] = f"e2e-{i}"
    assert claims == Counter({job["id"]: 1 for job in submitted})
    assert len(set(claimed_by.values())) >= 2
