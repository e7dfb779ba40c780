"""`Idempotency-Key` on the creating operations (service/idempotency.py, store/idempotency.py), through
the real app on SQLite and PostgreSQL: a repeat of a submit or an upload with the same key answers the
first call's 201 and body and creates nothing; a new key creates anew; the same key with another request
is a 422 naming the header; keys are per owner and live a day; repeats racing each other create one
object; and the Python client's retries after a gateway's 504 do not create a second job."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from droptune_client.client import Client
from service import datasets as dataset_logic
from service import jobs as job_logic
from service.app import create_app
from service.idempotency import Replay
from store import idempotency as keys
from store.config import Settings
from store.db import ConflictError, Database
from store.spec import JobSpec
from store.tables import Dataset, IdempotencyKey, Job
from tests.conftest import classification_csv, issue_token, small_job

Json = dict[str, Any]
HEADER = "Idempotency-Key"
KEY = "3f6c1d9e-5b7a-4c2e-9d1f-8a0b2c4e6f80"


class Service:
    """The app on the test's database, and a client per owner signed in with a token of their own."""

    def __init__(self, stack: ExitStack, settings: Settings) -> None:
        self.app = create_app(settings, prepare=False)  # `db` is migrated and holds the built-ins
        self.db = Database(settings.resolved_database_url)
        self._stack = stack

    def client(self, owner: str = "alice") -> TestClient:
        client = self._stack.enter_context(TestClient(self.app))
        client.headers["Authorization"] = f"Bearer {issue_token(self.db.url, owner)}"
        return client

    def count(self, table: type[Job] | type[Dataset], owner: str = "alice") -> int:
        with self.db.session(readonly=True) as session:
            query = select(func.count()).select_from(table).where(table.owner == owner)
            return int(session.scalar(query) or 0)


@pytest.fixture
def make_service(db: Database, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    with ExitStack() as stack:
        yield lambda **kw: Service(stack, Settings(data_dir=tmp_path, database_url=db.url, **kw))


@pytest.fixture
def svc(make_service: Callable[..., Service]) -> Service:
    return make_service()


def submit(client: TestClient, key: str | None = KEY, **overrides: Any) -> httpx.Response:
    headers = {HEADER: key} if key is not None else {}
    return client.post("/api/v1/jobs", json=small_job(**overrides), headers=headers)


def upload(client: TestClient, key: str | None = KEY, data: bytes | None = None, **form: str) -> httpx.Response:
    headers = {HEADER: key} if key is not None else {}
    files = {"file": ("pets.csv", data if data is not None else classification_csv())}
    return client.post("/api/v1/datasets", files=files, data=form, headers=headers)


def created(response: httpx.Response) -> Json:
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def refused_for_the_key(response: httpx.Response) -> Json:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["header", "idempotency-key"]
    return error  # type: ignore[no-any-return]


# --- repeats ----------------------------------------------------------------------------------------


def test_a_repeated_submit_answers_the_first_job_and_creates_none(svc: Service) -> None:
    alice = svc.client()
    first = submit(alice)
    again = submit(alice)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert svc.count(Job) == 1


def test_a_repeated_upload_answers_the_first_dataset_and_creates_none(svc: Service) -> None:
    alice = svc.client()
    first = upload(alice, name="pets")
    again = upload(alice, name="pets")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert svc.count(Dataset) == 1


def test_a_repeat_answers_the_job_as_it_was_created_though_it_changed_since(svc: Service) -> None:
    alice = svc.client()
    job = created(submit(alice))
    assert alice.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert created(submit(alice)) == job


def test_a_repeat_at_the_active_job_limit_answers_the_first_job_not_429(
    make_service: Callable[..., Service],
) -> None:
    svc = make_service(max_active_jobs_per_owner=1)
    alice = svc.client()
    job = created(submit(alice))
    assert created(submit(alice)) == job
    assert submit(alice, key="another").status_code == 429


def test_each_new_key_and_a_call_without_one_create_anew(svc: Service) -> None:
    alice = svc.client()
    jobs = [created(submit(alice, key=key)) for key in ("one", "two", None, None, "one")]
    datasets = [created(upload(alice, key=key)) for key in ("three", "four", None, None, "three")]
    for made in (jobs, datasets):
        assert len({m["id"] for m in made[:4]}) == 4 and made[4] == made[0]
    assert svc.count(Job) == svc.count(Dataset) == 4


# --- the same key with another request ----------------------------------------------------------------


def test_the_same_key_with_another_spec_is_refused_and_creates_nothing(svc: Service) -> None:
    alice = svc.client()
    created(submit(alice, max_trials=3))
    error = refused_for_the_key(submit(alice, max_trials=4))
    assert "different request" in error["msg"]
    assert svc.count(Job) == 1


def test_the_same_key_with_another_file_or_form_is_refused(svc: Service) -> None:
    alice = svc.client()
    created(upload(alice, name="pets"))
    refused_for_the_key(upload(alice, name="cats"))
    refused_for_the_key(upload(alice, data=classification_csv(seed=1), name="pets"))
    assert svc.count(Dataset) == 1


def test_a_submit_s_key_is_refused_for_an_upload(svc: Service) -> None:
    alice = svc.client()
    created(submit(alice))
    refused_for_the_key(upload(alice))
    assert svc.count(Dataset) == 0


def test_a_spec_sent_with_its_keys_in_another_order_is_the_same_request(svc: Service) -> None:
    alice = svc.client()
    job = created(submit(alice))
    reordered = dict(reversed(list(small_job().items())))
    again = alice.post("/api/v1/jobs", json=reordered, headers={HEADER: KEY})
    assert created(again) == job and svc.count(Job) == 1


@pytest.mark.parametrize(
    "key",
    ["x" * 256, "two words", "caf\u00e9".encode(), "tab\there"],
    ids=["over 255 characters", "a space", "not ASCII", "a control character"],
)
def test_a_malformed_key_is_refused_naming_the_header(svc: Service, key: str | bytes) -> None:
    alice = svc.client()
    response = alice.post("/api/v1/jobs", json=small_job(), headers={HEADER: key})  # type: ignore[dict-item]
    refused_for_the_key(response)
    assert svc.count(Job) == 0


def test_a_key_of_255_printable_characters_is_accepted(svc: Service) -> None:
    alice = svc.client()
    key = "".join(chr(33 + i % 94) for i in range(255))
    job = created(submit(alice, key=key))
    assert created(submit(alice, key=key)) == job


# --- owners and time ------------------------------------------------------------------------------------


def test_another_owner_s_same_key_is_independent(svc: Service) -> None:
    alice, bob = svc.client("alice"), svc.client("bob")
    alices = created(submit(alice, max_trials=3))
    bobs = created(submit(bob, max_trials=4))  # another request: it would be refused were the key shared
    assert bobs["id"] != alices["id"] and bobs["spec"]["max_trials"] == 4
    assert created(submit(alice, max_trials=3)) == alices
    assert (svc.count(Job, "alice"), svc.count(Job, "bob")) == (1, 1)


def age_keys(db: Database, by: dt.timedelta) -> None:
    """Make every stored key `by` older."""
    with db.session() as session:
        for row in session.scalars(select(IdempotencyKey)):
            row.created_at -= by


def test_a_key_older_than_a_day_acts_anew_and_answers_its_new_result_after(svc: Service) -> None:
    alice = svc.client()
    first = created(submit(alice))
    age_keys(svc.db, dt.timedelta(hours=24, minutes=1))
    second = submit(alice)
    assert created(second)["id"] != first["id"] and "Idempotent-Replayed" not in second.headers
    assert created(submit(alice)) == second.json()
    assert svc.count(Job) == 2


def test_a_key_younger_than_a_day_still_answers(svc: Service) -> None:
    alice = svc.client()
    first = created(upload(alice))
    age_keys(svc.db, dt.timedelta(hours=23, minutes=59))
    assert created(upload(alice)) == first and svc.count(Dataset) == 1


def test_an_owner_s_expired_keys_are_purged_when_it_stores_another(svc: Service) -> None:
    alice, bob = svc.client("alice"), svc.client("bob")
    for key in ("old-1", "old-2"):
        created(submit(alice, key=key))
        created(submit(bob, key=key))
    age_keys(svc.db, dt.timedelta(days=2))
    created(submit(alice, key="new"))
    with svc.db.session(readonly=True) as session:
        kept = session.execute(select(IdempotencyKey.owner, IdempotencyKey.key)).tuples().all()
    assert sorted(kept) == [("alice", "new"), ("bob", "old-1"), ("bob", "old-2")]


def test_a_failed_first_call_stores_no_key_and_its_retry_acts(make_service: Callable[..., Service]) -> None:
    svc = make_service(max_active_jobs_per_owner=1)
    alice = svc.client()
    busy = created(submit(alice, key="busy"))
    assert submit(alice).status_code == 429
    assert alice.post(f"/api/v1/jobs/{busy['id']}/cancel").status_code == 200
    job = created(submit(alice))  # the same key, once the limit allows
    assert job["id"] != busy["id"] and svc.count(Job) == 2
    assert created(submit(alice)) == job  # and now it has an answer, though the limit is reached again


# --- repeats racing each other --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "table", "checks"), [(submit, Job, 2), (upload, Dataset, 1)], ids=["submit", "upload"]
)
def test_a_repeat_that_missed_the_first_answer_fails_on_its_key_and_answers_it(
    svc: Service, monkeypatch: pytest.MonkeyPatch, send: Any, table: type[Job] | type[Dataset], checks: int
) -> None:
    """As when both calls checked the key before either stored it: the unique key decides."""
    alice = svc.client()
    first = created(send(alice))
    find, misses = keys.find, [None] * checks  # the repeat's checks before it writes find nothing
    monkeypatch.setattr(keys, "find", lambda *args: misses.pop() if misses else find(*args))
    again = send(alice)
    assert created(again) == first and again.headers.get("Idempotent-Replayed") == "true"
    assert not misses and svc.count(table) == 1


ROUNDS = 5


def race(calls: int, call: Callable[[], object]) -> list[str]:
    """Run `call` from `calls` threads at once; each outcome is "created", "replayed", "conflict" or
    the unexpected error."""
    barrier = threading.Barrier(calls)
    outcomes = [""] * calls

    def run(i: int) -> None:
        barrier.wait()
        try:
            call()
            outcomes[i] = "created"
        except Replay:
            outcomes[i] = "replayed"
        except ConflictError:  # a 409: retried with its key, it gets the winner's answer
            outcomes[i] = "conflict"
        except Exception as exc:  # anything else is a bug the test reports
            outcomes[i] = f"unexpected {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=run, args=(i,)) for i in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_submits_racing_with_one_key_create_one_job(db: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=db.url)
    spec = JobSpec.model_validate(small_job())
    for n in range(ROUNDS):
        outcomes = race(3, lambda n=n: job_logic.submit_job(db, spec, settings, "racer", "racer", f"key-{n}"))
        assert sorted(outcomes) == ["created", "replayed", "replayed"]
    with db.session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == ROUNDS


def test_uploads_racing_with_one_key_add_one_dataset(db: Database, tmp_path: Path) -> None:
    """The uploads parse and store their file side by side (puts of one key take turns in the
    database's artifact store); the key's row lets one add its dataset and the others get its answer."""
    settings = Settings(data_dir=tmp_path, database_url=db.url)
    data = classification_csv()
    for n in range(ROUNDS):
        outcomes = race(
            3, lambda n=n: dataset_logic.register_upload(db, settings, "racer", data, None, "a.csv", None, f"key-{n}")
        )
        assert sorted(outcomes) == ["created", "replayed", "replayed"], outcomes
    with db.session(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Dataset).where(Dataset.owner == "racer")) == ROUNDS


# --- the Python client's retries ------------------------------------------------------------------------


class GatewayLosingAnswers:
    """A gateway in front of the real app that passes each request on and answers the first `lose` of
    them 504 whatever the app did, as one does when the app's answer comes back too late."""

    def __init__(self, app: TestClient, lose: int) -> None:
        self.app = app
        self.lose = lose
        self.keys: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get(HEADER))
        answer = self.app.send(request)
        if self.lose:
            self.lose -= 1
            return httpx.Response(504, text="gateway timeout")
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def client_behind(svc: Service, gateway: GatewayLosingAnswers) -> Client:
    token = issue_token(svc.db.url, "alice")
    return Client(str(gateway.app.base_url), token, transport=httpx.MockTransport(gateway), sleep=lambda _: None)


def test_a_submit_retried_after_a_gateway_s_504_creates_one_job(svc: Service) -> None:
    gateway = GatewayLosingAnswers(svc.client(), lose=2)
    job = client_behind(svc, gateway).submit(small_job())
    assert len(gateway.keys) == 3 and len(set(gateway.keys)) == 1 and gateway.keys[0]
    assert svc.count(Job) == 1
    with svc.db.session(readonly=True) as session:
        assert session.scalar(select(Job.id)) == job["id"]


def test_an_upload_retried_after_a_gateway_s_504_adds_one_dataset(svc: Service) -> None:
    gateway = GatewayLosingAnswers(svc.client(), lose=1)
    dataset = client_behind(svc, gateway).upload(classification_csv(), filename="pets.csv")
    assert len(gateway.keys) == 2 and gateway.keys[0] == gateway.keys[1]
    assert svc.count(Dataset) == 1 and dataset["name"] == "pets"


def test_each_client_call_sends_a_key_of_its_own(svc: Service) -> None:
    gateway = GatewayLosingAnswers(svc.client(), lose=0)
    client = client_behind(svc, gateway)
    first, second = client.submit(small_job()), client.submit(small_job())
    assert first["id"] != second["id"] and len(set(gateway.keys)) == 2
