"""`Client`: the droptune REST API as Python calls."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from droptune_client import config
from droptune_client.errors import ApiError, UsageError
from droptune_client.http import Http

if TYPE_CHECKING:
    from droptune_client.search import SearchResult

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
PAGE = 1000  # the API's largest page
Progress = Callable[["Snapshot"], None]


class Snapshot:
    """What a follower sees at one poll: the job, and the trial training now (with its epochs done)."""

    def __init__(self, job: dict[str, Any], running: dict[str, Any] | None, at: float) -> None:
        self.job = job
        self.running = running
        self.at = at  # time.time() of the poll

    @property
    def finished(self) -> bool:
        return self.job["status"] in FINISHED


class Client:
    """The droptune API. `url` and `token` default to DROPTUNE_URL / DROPTUNE_TOKEN, then to the
    file `droptune login` writes. Errors are `ApiError` (with `.status` and the API's `.detail`) or
    `ConnectionFailed`; 429, 502, 503, 504 and connection failures are retried with backoff first, and
    `submit` and `upload` send an Idempotency-Key so that a retry never creates a second job or dataset
    (see `droptune_client.http.Http`)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        attempts: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = config.resolve(url, token)
        self.url = settings.url
        self.http = Http(
            settings.url, settings.token, timeout=timeout, attempts=attempts, transport=transport, sleep=sleep
        )
        self.sleep = sleep

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- account and datasets -------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self.http.json("GET", "/api/v1/me")  # type: ignore[no-any-return]

    def datasets(self) -> list[dict[str, Any]]:
        return self.http.json("GET", "/api/v1/datasets")  # type: ignore[no-any-return]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self.http.json("GET", f"/api/v1/datasets/{dataset_id}")  # type: ignore[no-any-return]

    def upload(
        self,
        data: bytes | str | Path,
        *,
        filename: str | None = None,
        name: str | None = None,
        target: str | None = None,
    ) -> dict[str, Any]:
        """Upload a CSV or NPZ, given as a path or as bytes (then `filename` says which: `.csv`/`.npz`)."""
        if not isinstance(data, bytes):
            path = Path(data)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
            filename = filename or path.name
        form = {k: v for k, v in (("name", name), ("target", target)) if v is not None}
        files = {"file": (filename or "data.csv", data)}
        return self.http.json("POST", "/api/v1/datasets", once=True, files=files, data=form)  # type: ignore[no-any-return]

    def store_dataset(self, data: bytes, *, filename: str, name: str | None = None) -> tuple[dict[str, Any], bool]:
        """Upload unless you hold a dataset with the same data already (the service compares the stored
        arrays and their description, and keeps the first one's name); returns the dataset and whether
        this call created it."""
        form = {"reuse": "true", **({"name": name} if name else {})}
        files = {"file": (filename, data)}
        response = self.http.request("POST", "/api/v1/datasets", once=True, files=files, data=form)
        return response.json(), response.status_code == 201

    def delete_dataset(self, dataset_id: str) -> None:
        self.http.request("DELETE", f"/api/v1/datasets/{dataset_id}")

    # --- networks ---------------------------------------------------------------------------------

    def networks(self) -> list[dict[str, Any]]:
        return self.http.json("GET", "/api/v1/networks")  # type: ignore[no-any-return]

    def network(self, network_id: str) -> dict[str, Any]:
        return self.http.json("GET", f"/api/v1/networks/{network_id}")  # type: ignore[no-any-return]

    def upload_network(self, model: Any, *, name: str | None = None) -> dict[str, Any]:
        """Upload your own Keras network: a `.keras` file (a path, or its bytes), or a Keras model, which
        is saved to a temporary `.keras` file first. Its layers, compile settings and dropout sites
        come back; a job trains it with `"model": {"network_id": ...}`."""
        if hasattr(model, "save") and hasattr(model, "layers"):
            with tempfile.TemporaryDirectory(prefix="droptune-network-") as tmp:
                path = Path(tmp) / f"{getattr(model, 'name', None) or 'network'}.keras"
                model.save(path)
                return self.upload_network(path, name=name or getattr(model, "name", None))
        filename = "network.keras"
        if not isinstance(model, bytes):
            path = Path(model)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
            filename = path.name
        else:
            data = model
        form = {"name": name} if name is not None else {}
        files = {"file": (filename, data)}
        return self.http.json("POST", "/api/v1/networks", once=True, files=files, data=form)  # type: ignore[no-any-return]

    def delete_network(self, network_id: str) -> None:
        self.http.request("DELETE", f"/api/v1/networks/{network_id}")

    # --- jobs -------------------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a job spec (see the README's "The job spec"); returns the queued job."""
        return self.http.json("POST", "/api/v1/jobs", once=True, json=spec)  # type: ignore[no-any-return]

    def plan(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Check a job spec as a submit would, creating nothing: what it would run (`trials_planned`...)."""
        return self.http.json("POST", "/api/v1/jobs/plan", json=spec)  # type: ignore[no-any-return]

    def jobs(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first: every job (or the first `limit`), paging through the API."""
        return list(self._pages("/api/v1/jobs", {"status": status} if status else {}, limit, 200))

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.json("GET", f"/api/v1/jobs/{job_id}")  # type: ignore[no-any-return]

    def trials(
        self,
        job_id: str,
        *,
        sort: str = "number",
        order: str = "asc",
        status: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The job's trials as the API lists them (`hyperparameters` and `metrics` nested)."""
        params: dict[str, Any] = {"sort": sort, "order": order}
        if status:
            params["status"] = status
        return list(self._pages(f"/api/v1/jobs/{job_id}/trials", params, limit, PAGE))

    def trial(self, job_id: str, number: int) -> dict[str, Any]:
        """One trial with its per-epoch `history`."""
        return self.http.json("GET", f"/api/v1/jobs/{job_id}/trials/{number}")  # type: ignore[no-any-return]

    def best(self, job_id: str) -> dict[str, Any] | None:
        """The best completed trial, or None while there is none."""
        try:
            return self.http.json("GET", f"/api/v1/jobs/{job_id}/best")  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.status == 404:
                self.job(job_id)  # an unknown job is still an error
                return None
            raise

    def report(self, job_id: str) -> dict[str, Any]:
        """The dropout verdict and its evidence (`final: false` while the job runs)."""
        return self.http.json("GET", f"/api/v1/jobs/{job_id}/report")  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.http.json("POST", f"/api/v1/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def delete(self, job_id: str) -> None:
        self.http.request("DELETE", f"/api/v1/jobs/{job_id}")

    def download_model(
        self, job_id: str, path: str | Path | None = None, *, trial: int | None = None, format: str = "keras"
    ) -> Path:
        """Save the job's model (or a kept trial's) and return where: `path`, else the server's file name
        in the current directory. `format="savedmodel"` gets the SavedModel export as a tar.gz."""
        route = f"/api/v1/jobs/{job_id}" + (f"/trials/{trial}" if trial is not None else "") + "/model"
        params = {"format": format} if format != "keras" else None
        folder = Path(path).parent if path else Path(".")
        partial = folder / f".droptune-{job_id}.part"  # renamed when whole: no half file under the real name
        try:
            with open(partial, "wb") as out:
                served = self.http.download(route, out, params)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        final = Path(path) if path else Path(Path(served or f"droptune-{job_id}.keras").name)
        return Path(partial.replace(final))

    # --- waiting --------------------------------------------------------------------------------

    def snapshot(self, job_id: str) -> Snapshot:
        job = self.job(job_id)
        running = None
        if job["status"] == "running":
            now = self.trials(job_id, status="running", sort="number", order="desc", limit=1)
            if now:
                try:
                    running = self.trial(job_id, now[0]["number"])
                except ApiError as exc:  # it may end and be gone between the two reads
                    if exc.status != 404:
                        raise
        return Snapshot(job, running, time.time())

    def wait(self, job_id: str, *, interval: float = 1.0, progress: Progress | None = None) -> dict[str, Any]:
        """Poll until the job ends, calling `progress` with each `Snapshot`; returns the final job."""
        while True:
            snap = self.snapshot(job_id)
            if progress is not None:
                progress(snap)
            if snap.finished:
                return snap.job
            self.sleep(interval)

    follow = wait

    def search(self, x: Any, y: Any, **options: Any) -> SearchResult:
        """Upload data, search, wait and return a `SearchResult`; see `droptune_client.search.search`."""
        from droptune_client.search import search  # numpy and tqdm are needed here only

        return search(self, x, y, **options)

    def _pages(self, path: str, params: dict[str, Any], limit: int | None, page: int) -> Iterator[dict[str, Any]]:
        offset, seen = 0, 0
        while True:
            size = page if limit is None else min(page, limit - seen)
            body = self.http.json("GET", path, params={**params, "limit": size, "offset": offset})
            yield from body["items"]
            seen += len(body["items"])
            offset += len(body["items"])
            if not body["items"] or offset >= body["total"] or (limit is not None and seen >= limit):
                return
