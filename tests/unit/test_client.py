"""The command line and Python client (`client/droptune_client`) without a server: API errors as
one-line messages, retries with backoff, where settings come from, tables, progress and exit codes.
The server's side is faked with httpx.MockTransport; tests/e2e/test_cli.py runs the real one."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from droptune_client import cli, config
from droptune_client.client import Client, Snapshot
from droptune_client.errors import ApiError, ConnectionFailed, Exit
from droptune_client.progress import ProgressPrinter
from droptune_client.table import table, trial_rows

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real config file or environment leaks into a test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DROPTUNE_URL", raising=False)
    monkeypatch.delenv("DROPTUNE_TOKEN", raising=False)


class Recorder:
    """A fake server: answers each request with the next of `answers` and records the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def error(status: int, *items: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"detail": list(items)}, headers=headers)


def make_client(server: Handler, sleeps: list[float] | None = None, attempts: int = 5) -> Client:
    sleep = sleeps.append if sleeps is not None else (lambda _: None)
    return Client(
        "http://droptune.test", "dtk_x", transport=httpx.MockTransport(server), sleep=sleep, attempts=attempts
    )


def failure(server: Handler, call: Callable[[Client], Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(make_client(server, attempts=1))
    return caught.value


# --- errors ---------------------------------------------------------------------------------------


def test_a_422_names_each_field_without_the_body_prefix() -> None:
    server = Recorder(
        error(
            422,
            {"type": "value_error", "loc": ["body", "search_space", "dropout_layers"], "msg": "max 4 is above 3"},
            {"type": "missing", "loc": ["body", "dataset_id"], "msg": "Field required"},
        )
    )
    exc = failure(server, lambda c: c.submit({}))
    assert str(exc) == "422 invalid input: search_space.dropout_layers: max 4 is above 3; dataset_id: Field required"
    assert exc.exit_code == Exit.USAGE and exc.detail[0]["loc"][-1] == "dropout_layers"


def test_list_indices_in_a_location_read_as_subscripts() -> None:
    server = Recorder(error(422, {"loc": ["body", "search_space", "units", "values", 0], "msg": "too big"}))
    assert "search_space.units.values[0]: too big" in str(failure(server, lambda c: c.submit({})))


def test_a_401_says_how_to_sign_in_and_exits_with_the_auth_code() -> None:
    server = Recorder(error(401, {"loc": ["header", "authorization"], "msg": "unknown token"}))
    exc = failure(server, lambda c: c.jobs())
    assert str(exc).startswith("401 not authenticated: authorization: unknown token")
    assert "droptune login" in str(exc) and exc.exit_code == Exit.AUTH


def test_a_403_is_an_auth_failure_too() -> None:
    server = Recorder(error(403, {"loc": ["header", "origin"], "msg": "cross-site"}))
    assert failure(server, lambda c: c.cancel("j1")).exit_code == Exit.AUTH


def test_a_bare_404_names_the_request() -> None:
    exc = failure(Recorder(error(404, {"type": "not_found", "msg": "Not Found"})), lambda c: c.job("nope"))
    assert str(exc) == "404 not found: GET /api/v1/jobs/nope" and exc.exit_code == Exit.USAGE


@pytest.mark.parametrize(
    ("status", "msg", "expected"),
    [
        (409, "the job is running; cancel it first", "409 conflict: the job is running; cancel it first"),
        (413, "the upload is over 10 MiB", "413 too large: file: the upload is over 10 MiB"),
    ],
)
def test_conflicts_and_size_limits_keep_the_server_s_reason(status: int, msg: str, expected: str) -> None:
    loc = ["body", "file"] if status == 413 else None
    exc = failure(Recorder(error(status, {"loc": loc, "msg": msg})), lambda c: c.delete("j1"))
    assert str(exc) == expected and exc.exit_code == Exit.USAGE


def test_a_non_json_error_body_gives_its_first_line() -> None:
    server = Recorder(httpx.Response(502, text="<html>bad gateway\nnginx</html>"))
    exc = failure(server, lambda c: c.jobs())
    assert str(exc) == "502 bad gateway: <html>bad gateway" and exc.exit_code == Exit.UNAVAILABLE


# --- retries --------------------------------------------------------------------------------------


def test_429_is_retried_after_the_seconds_retry_after_asks() -> None:
    busy = error(429, {"msg": "too many active jobs"}, headers={"Retry-After": "7"})
    sleeps: list[float] = []
    server = Recorder(busy, busy, httpx.Response(201, json={"id": "j1"}))
    assert make_client(server, sleeps).submit({"dataset_id": "iris"}) == {"id": "j1"}
    assert sleeps == [7.0, 7.0] and len(server.requests) == 3


def test_a_long_retry_after_is_capped() -> None:
    sleeps: list[float] = []
    server = Recorder(error(503, {"msg": "db"}, headers={"Retry-After": "3600"}), httpx.Response(200, json=[]))
    make_client(server, sleeps).datasets()
    assert sleeps == [30.0]


def test_retries_are_bounded_and_the_last_answer_is_the_error() -> None:
    busy = error(429, {"msg": "too many active jobs"}, headers={"Retry-After": "1"})
    sleeps: list[float] = []
    server = Recorder(*[busy] * 3)
    with pytest.raises(ApiError) as caught:
        make_client(server, sleeps, attempts=3).submit({})
    assert caught.value.status == 429 and caught.value.exit_code == Exit.UNAVAILABLE
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_connection_errors_are_retried_with_growing_backoff() -> None:
    refused = httpx.ConnectError("connection refused")
    sleeps: list[float] = []
    server = Recorder(refused, refused, refused, httpx.Response(200, json={"owner": "a", "auth": True}))
    assert make_client(server, sleeps).me()["owner"] == "a"
    # Full jitter: each delay lies in [0, base * 2^attempt].
    assert len(sleeps) == 3 and all(0 <= s <= 0.5 * 2**i for i, s in enumerate(sleeps))


def test_an_unreachable_server_is_a_connection_failure_after_the_last_attempt() -> None:
    server = Recorder(*[httpx.ConnectError("connection refused")] * 4)
    with pytest.raises(ConnectionFailed) as caught:
        make_client(server, attempts=4).jobs()
    assert "cannot reach http://droptune.test (GET /api/v1/jobs)" in str(caught.value)
    assert caught.value.exit_code == Exit.UNAVAILABLE and len(server.requests) == 4


def test_a_post_without_a_key_that_may_have_reached_the_server_is_not_sent_twice() -> None:
    server = Recorder(httpx.ReadTimeout("timed out"), httpx.Response(200, json={"id": "j2"}))
    with pytest.raises(ConnectionFailed):
        make_client(server).cancel("j2")
    assert len(server.requests) == 1 and "idempotency-key" not in server.requests[0].headers


def keys_sent(server: Recorder) -> list[str | None]:
    return [r.headers.get("idempotency-key") for r in server.requests]


@pytest.mark.parametrize("call", [lambda c: c.submit({}), lambda c: c.upload(b"a,b\n1,2\n")], ids=["submit", "upload"])
def test_a_create_sends_one_idempotency_key_on_every_retry(call: Callable[[Client], Any]) -> None:
    """A gateway's 504 may come after the job or dataset was made: the retry's key makes the service
    answer it with the first result instead of making another."""
    lost = httpx.Response(504, text="gateway timeout")
    server = Recorder(lost, httpx.ReadTimeout("timed out"), error(409, {"msg": "raced"}), httpx.Response(201, json={}))
    call(make_client(server))
    [key] = set(keys_sent(server))
    assert len(server.requests) == 4 and key and len(key) <= 255 and key.isascii()


def test_each_create_call_has_a_key_of_its_own() -> None:
    server = Recorder(*[httpx.Response(201, json={"id": "j"})] * 2)
    client = make_client(server)
    client.submit({})
    client.submit({})
    first, second = keys_sent(server)
    assert first and second and first != second


def test_a_get_that_timed_out_is_retried() -> None:
    server = Recorder(httpx.ReadTimeout("timed out"), httpx.Response(200, json={"id": "j1"}))
    assert make_client(server).job("j1") == {"id": "j1"} and len(server.requests) == 2


def test_the_token_is_sent_as_a_bearer() -> None:
    server = Recorder(httpx.Response(200, json=[]))
    make_client(server).datasets()
    assert server.requests[0].headers["authorization"] == "Bearer dtk_x"


# --- settings -------------------------------------------------------------------------------------


def test_login_writes_a_file_only_its_owner_can_read(tmp_path: Path) -> None:
    path = config.write_config("http://a:1", "dtk_file")
    assert path == tmp_path / "config" / "droptune" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://a:1", "token": "dtk_file"}


def test_login_makes_the_config_folder_private_whatever_the_umask(tmp_path: Path) -> None:
    before = os.umask(0)
    try:
        path = config.write_config("http://a:1", "dtk_file")
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_config_file_is_made_private_when_rewritten(tmp_path: Path) -> None:
    path = config.config_path()
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o644)
    config.write_config("http://a:1", "dtk_file")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_environment_wins_over_the_file_and_flags_over_both(monkeypatch: pytest.MonkeyPatch) -> None:
    config.write_config("http://file:1", "dtk_file")
    assert config.resolve() == config.Settings("http://file:1", "dtk_file")
    monkeypatch.setenv("DROPTUNE_URL", "http://env:2/")
    monkeypatch.setenv("DROPTUNE_TOKEN", "dtk_env")
    assert config.resolve() == config.Settings("http://env:2", "dtk_env")
    assert config.resolve("http://flag:3", None) == config.Settings("http://flag:3", "dtk_env")
    assert config.resolve(None, "dtk_flag") == config.Settings("http://env:2", "dtk_flag")


def test_without_any_setting_the_url_is_the_local_default() -> None:
    assert config.resolve() == config.Settings(config.DEFAULT_URL, None)


# --- tables and progress --------------------------------------------------------------------------


def test_a_table_aligns_numbers_right_and_text_left() -> None:
    rows = [
        {"number": 0, "status": "completed", "dropout_rate": None, "score": 0.123456},
        {"number": 12, "status": "failed", "dropout_rate": 0.25, "score": None},
    ]
    assert table(rows).splitlines() == [
        "number  status     dropout_rate   score",
        "     0  completed             -  0.1235",
        "    12  failed             0.25       -",
    ]


def test_trial_rows_put_hyperparameters_and_metrics_in_columns() -> None:
    trial = {
        "number": 3,
        "status": "completed",
        "hyperparameters": {"dropout_rate": 0.1, "dropout_layers": 1},
        "score": 0.2,
        "best_epoch": 2,
        "metrics": {"val_loss": 0.2, "val_accuracy": 0.9},
        "duration_s": 1.5,
        "started_at": "2026-01-01T00:00:00",
        "error": None,
    }
    assert list(trial_rows([trial])[0]) == [
        "number", "status", "dropout_rate", "dropout_layers", "score", "best_epoch",
        "val_loss", "val_accuracy", "duration_s", "started_at", "error",
    ]  # fmt: skip


def job(status: str, finished: int, best: float | None = None, started: str = "2026-01-01T00:00:00") -> dict[str, Any]:
    return {
        "id": "j1",
        "status": status,
        "progress": {"finished": finished, "planned": 4},
        "best": None if best is None else {"number": 0, "score": best},
        "spec": {"objective": {"metric": "val_loss"}, "training": {"epochs": 5}},
        "started_at": started,
        "finished_at": None,
        "error": None,
    }


class Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_off_a_terminal_progress_prints_a_line_per_change_only() -> None:
    stream, t0 = Stream(), 1767225600.0  # 2026-01-01T00:00:00Z
    printer = ProgressPrinter(stream)  # type: ignore[arg-type]
    running = {"number": 1, "epochs_done": 2}
    printer(Snapshot(job("running", 1, 0.5), running, t0 + 10))
    printer(Snapshot(job("running", 1, 0.5), running, t0 + 11))  # only the clock moved
    printer(Snapshot(job("succeeded", 4, 0.25), None, t0 + 40))
    lines = stream.text.splitlines()
    assert lines == [
        "job j1: running  trials 1/4  trial 1 epoch 2/5  best val_loss 0.5 (trial 0)  elapsed 0:10  left ~0:30",
        "job j1: succeeded  trials 4/4  best val_loss 0.25 (trial 0)  elapsed 0:40",
    ]


def test_on_a_terminal_progress_redraws_one_line_with_a_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stream = Stream()
    printer = ProgressPrinter(stream, live=True)  # type: ignore[arg-type]
    printer(Snapshot(job("running", 2), None, 1767225600.0 + 5))
    printer(Snapshot(job("running", 2), None, 1767225600.0 + 6))
    assert stream.text.count("\r") == 2 and "\n" not in stream.text
    assert "[##########..........]" in stream.text and "elapsed 0:06" in stream.text


def test_on_a_narrow_terminal_the_least_important_parts_go_so_it_does_not_wrap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    stream = Stream()
    ProgressPrinter(stream, live=True)(Snapshot(job("running", 2, 0.5), None, 1767225600.0 + 5))  # type: ignore[arg-type]
    line = stream.text.removeprefix("\r")
    assert len(line) <= 39
    # The status and the times survive; the job's id, the best score and the count go first.
    assert line == "running  elapsed 0:05  left ~0:05"


def phased(width_epoch: int = 17) -> dict[str, Any]:
    """A job as a server with phases shows it: 20 trials training together at epoch 17 of 20."""
    packed = job("running", 0, 0.09778)
    packed["progress"] = {
        "finished": 0,
        "planned": 20,
        "epochs_done": 320,
        "epochs_planned": 900,
        "phase": "search",
        "phases": [{"name": "search", "label": "search"}],
        "pack": {"size": 20, "what": "trials", "epoch": width_epoch, "epochs": 20},
        "eta_s": 95.4,
    }
    return packed


@pytest.mark.parametrize("columns", [80, 200])
def test_a_pack_shows_as_trials_training_together_with_the_server_s_estimate(
    monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    stream = Stream()
    ProgressPrinter(stream, live=True)(Snapshot(phased(), None, 1767225600.0 + 64))  # type: ignore[arg-type]
    line = stream.text.removeprefix("\r")
    assert len(line) <= columns - 1
    assert "running" in line and "elapsed 1:04" in line and "left ~1:35" in line
    assert "search: 20 trials together, epoch 17/20" in line
    if columns == 200:
        assert "[#######.............]" in line  # 320 of 900 epochs
        assert "best val_loss 0.09778 (trial 0)" in line and line.startswith("job j1 ")


# --- the command line's exit codes ----------------------------------------------------------------


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Recorder]]:
    """Point the CLI's Client at a fake server."""
    servers: list[Recorder] = []

    def install(*answers: httpx.Response | Exception) -> Recorder:
        server = Recorder(*answers)
        servers.append(server)
        real = cli.Client

        def client(url: str | None, token: str | None) -> Client:
            return real(url, token, transport=httpx.MockTransport(server), sleep=lambda _: None)

        monkeypatch.setattr(cli, "Client", client)
        return server

    yield install


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("failed", 1), ("cancelled", 3)])
def test_follow_exits_with_the_job_s_outcome(fake_cli: Callable[..., Recorder], status: str, code: int) -> None:
    fake_cli(httpx.Response(200, json={**job(status, 4, 0.3), "finished_at": "2026-01-01T00:01:00"}))
    assert cli.main(["follow", "j1"]) == code


def test_an_api_error_prints_one_line_on_stderr_and_exits_2(
    fake_cli: Callable[..., Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cli(error(409, {"type": "conflict", "msg": "the job has already finished"}))
    assert cli.main(["cancel", "j1"]) == Exit.USAGE
    assert capsys.readouterr().err == "droptune: 409 conflict: the job has already finished\n"


def test_an_unreachable_server_exits_4(fake_cli: Callable[..., Recorder], capsys: pytest.CaptureFixture[str]) -> None:
    fake_cli(*[httpx.ConnectError("connection refused")] * 5)
    assert cli.main(["jobs"]) == Exit.UNAVAILABLE
    assert "cannot reach" in capsys.readouterr().err


def test_a_refused_token_exits_5(fake_cli: Callable[..., Recorder]) -> None:
    fake_cli(error(401, {"loc": ["header", "authorization"], "msg": "unknown token"}))
    assert cli.main(["jobs"]) == Exit.AUTH


def test_bad_usage_exits_2_and_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["trials"])
    assert caught.value.code == Exit.USAGE
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert "3  the job was cancelled" in help_text and "5  not authenticated" in help_text


def test_a_spec_that_is_not_json_exits_2_before_any_request(
    fake_cli: Callable[..., Recorder], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = fake_cli()
    spec = tmp_path / "spec.json"
    spec.write_text("{not json")
    assert cli.main(["submit", str(spec)]) == Exit.USAGE
    assert server.requests == [] and "spec.json is not valid" in capsys.readouterr().err


def test_jobs_json_prints_the_api_s_items(
    fake_cli: Callable[..., Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cli(httpx.Response(200, json={"items": [job("queued", 0)], "total": 1, "limit": 50, "offset": 0}))
    assert cli.main(["jobs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "j1"


def test_url_and_token_may_come_before_or_after_the_command() -> None:
    args = cli.parser().parse_args(["--url", "http://a:1", "login", "--token", "dtk_t"])
    assert (args.url, args.token) == ("http://a:1", "dtk_t")
    args = cli.parser().parse_args(["datasets", "list"])
    assert (args.url, args.token) == (None, None)


def test_a_broken_config_file_is_ignored_when_the_environment_has_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = config.config_path()
    path.parent.mkdir(parents=True)
    path.write_text("{broken")
    with pytest.raises(config.UsageError, match="cannot read the config file"):
        config.resolve()
    monkeypatch.setenv("DROPTUNE_URL", "http://env:2")
    monkeypatch.setenv("DROPTUNE_TOKEN", "dtk_env")
    assert config.resolve() == config.Settings("http://env:2", "dtk_env")


def test_a_report_in_the_api_s_schema_renders_its_verdict_and_figures() -> None:
    from droptune_client.report import render_report
    from store import report_schema as rs

    def stats(mean: float, n: int = 5) -> rs.Stats:
        return rs.Stats(n=n, mean=mean, sd=0.01, low=mean - 0.02, high=mean + 0.02)

    def confirmed(arm: str, label: str, mean: float, recommended: bool) -> rs.Confirmed:
        return rs.Confirmed(
            arm=arm, label=label, hyperparameters={}, trial=0, candidate=True, recommended=recommended,  # type: ignore[arg-type]
            score=stats(mean), best_epoch=stats(7.0), gap_at_best=None, gap_at_last=None,
        )  # fmt: skip

    report = rs.Report(
        job_id="j1",
        status="succeeded",
        final=True,
        computed_at="2026-01-01T00:00:00",
        objective="val_loss",
        direction="min",
        confidence=0.9,
        repeats=5,
        verdict=rs.Verdict(
            answer="helps",
            sentence="Dropout helps: rate 0.2 after 1 layer.",
            method="welch",
            difference=rs.Interval(estimate=0.03, low=0.01, high=0.05),
            dropout="rate 0.2 x 1",
            recommended="rate 0.2 x 1",
        ),
        recommended=None,
        confirmed=[
            confirmed("candidate", "rate 0.2 x 1", 0.31, True),
            confirmed("baseline", "no dropout", 0.34, False),
        ],
        effects=rs.Effects(
            by_rate=[rs.Level(value="none", score=stats(0.34, 1))],
            by_layers=[],
            variance_explained={"dropout_rate": 0.5},
            trials=4,
        ),
        convergence=None,
        smaller_network=None,
        mc_dropout=rs.McDropout(
            samples=30,
            label="rate 0.2 x 1",
            deterministic=0.31,
            mc=0.3,
            spread=0.02,
            calibration={"ece": 0.05, "ece_mc": 0.04},
            model="trial 3",
            rows=30,
            pass_seeds=5,
            noise={"mc": (0.29, 0.32), "spread": (0.02, 0.02), "ece": (0.05, 0.05), "ece_mc": (0.03, 0.06)},
        ),
        runs=[],
    )
    text = render_report(report.model_dump(mode="json"))
    lines = text.splitlines()
    assert lines[:2] == ["verdict:     helps", "             Dropout helps: rate 0.2 after 1 layer."]
    # The advantage is named so that its sign reads right; "±" is labelled an sd.
    assert "advantage:   0.03 [0.01, 0.05]  (dropout over no dropout: baseline val_loss - dropout's" in text
    assert "recommended: rate 0.2 x 1" in text
    assert any(line.startswith("candidate  rate 0.2 x 1") and "0.31 ± 0.01 sd (n=5)" in line for line in lines)
    assert any("90% CI" in line for line in lines)  # the report's own level names its intervals
    assert "by rate:   none: 0.34 ± 0.01 sd (n=1)" in text and "dropout_rate 50%" in text
    assert "eta squared of each alone: may overlap" in text  # a report from before the sequential shares
    # MC dropout of the served model, each figure with its range over 5 sets of T passes.
    assert (
        "MC dropout (T=30 passes, rate 0.2 x 1, served model trial 3): deterministic 0.31, mc 0.3 [0.29, 0.32], "
        "spread 0.02 [0.02, 0.02]; ece 0.05 [0.05, 0.05], ece_mc 0.04 [0.03, 0.06]; [ranges over 5 sets of passes]"
    ) in text
