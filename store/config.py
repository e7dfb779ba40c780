"""Settings shared by the API and the worker, read from `DROPTUNE_*` environment variables."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The Keras 3 backends a search or predictor process may run on (Keras reads `KERAS_BACKEND`).
KerasBackend = Literal["tensorflow", "jax"]
KERAS_BACKENDS: tuple[KerasBackend, ...] = ("tensorflow", "jax")


class Settings(BaseSettings):
    """Every knob droptune has. Validated once, when first asked for."""

    # An empty variable means the default; `none` clears an optional limit (DROPTUNE_TRIAL_TIMEOUT_S=none).
    model_config = SettingsConfigDict(
        env_prefix="DROPTUNE_", extra="ignore", env_ignore_empty=True, env_parse_none_str="none"
    )

    data_dir: Path = Field(Path("var"), description="Uploaded datasets, keras-tuner work dirs, SQLite file.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite at DATA_DIR/droptune.db.")
    # Where uploaded datasets, models and keras-tuner's resume state are kept: empty means in the
    # database itself; `s3://bucket/prefix` an S3-compatible bucket (see store/artifacts.py).
    artifacts_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # A listening TCP socket inherited from the parent (systemd-style socket activation, or a test
    # that bound a free port and keeps it): served instead of binding HOST:PORT, so no other process
    # can take the port between its choice and the bind. HOST still decides the exposure check.
    listen_fd: int | None = Field(None, ge=0)
    # API processes `python -m service` runs (uvicorn workers, each with its own predictor child);
    # empty means one per CPU, at most 4.
    api_workers: int | None = Field(None, ge=1, le=64)
    # Every /api route needs `Authorization: Bearer <token>` (tokens: `python -m service.tokens`).
    # Turning it off is for one user on this machine: the service then refuses a non-loopback host.
    auth: bool = True
    # Host names the API answers for besides the loopback ones (localhost, 127.0.0.1, ::1), comma-
    # separated; `*.example.com` covers its subdomains, `*` any name. Empty: any name with
    # authentication on; only the loopback ones with it off, so that a web page on a domain that
    # rebinds its DNS to this machine is not "same origin" and cannot drive a service with no tokens.
    allowed_hosts: str = ""
    # Client addresses that may read GET /metrics without a token (a Prometheus server's), as
    # comma-separated CIDR blocks or addresses: `10.0.0.0/8,127.0.0.1`. Empty: it needs a token.
    metrics_allow: str = ""

    # Caps on what one job may ask for.
    max_trials_cap: int = 500
    epochs_cap: int = 1000
    batch_size_cap: int = 8192
    units_cap: int = 2048
    hidden_layers_cap: int = 16
    parallel_trials_cap: int = 8
    max_model_parameters: int = 20_000_000  # weights of the largest model a job's search may build
    upload_max_bytes: int = 200 * 1024 * 1024
    network_max_bytes: int = 100 * 1024 * 1024  # an uploaded .keras network file, weights included
    # Every other request body (job specs and the like): read only up to this, then 413.
    json_max_bytes: int = 1024 * 1024
    dataset_max_rows: int = 2_000_000
    dataset_max_features: int = 100_000
    dataset_max_bytes: int = 512 * 1024 * 1024  # an upload's arrays, once decompressed
    # Queued plus running jobs one owner may have; past it, submitting answers 429 with Retry-After.
    max_active_jobs_per_owner: int = 10
    retry_after_s: int = 30

    # Worker behaviour.
    poll_interval_s: float = 0.5
    heartbeat_interval_s: float = 10.0
    heartbeat_grace_s: float = 60.0  # a running job silent this long is handed back to the queue
    cancel_grace_s: float = 30.0
    stop_grace_s: float = 8.0  # on SIGTERM, how long the search may take to reach an epoch boundary
    # TensorFlow leaks a little memory per trial even with clear_session: a search process hands over
    # to a fresh one (which reloads keras-tuner's state) after this many trials; 0 never recycles.
    recycle_after_trials: int = 20
    # A job whose search process dies (crash, kill, lost worker) more often than this ends `failed`.
    max_job_crashes: int = 3
    # A trial running longer than this (a hung one whose worker still beats) is killed and recorded
    # failed, and the search moves on; None: no limit. A job may ask for less (its own `trial_timeout_s`),
    # not for more.
    trial_timeout_s: float | None = 3600.0
    keep_tuner_dirs: bool = False
    # The Keras backend of the processes the worker starts (searches, trial processes) and of the
    # predictor: they get it as `KERAS_BACKEND` (`keras_env`). The API and the worker import neither.
    keras_backend: KerasBackend = "tensorflow"
    # Fork each search process from a launcher that has imported TensorFlow, Keras and keras-tuner
    # once (tuner/launcher.py), instead of starting `python -m tuner.search` and importing them anew
    # (the README's "Warm start" gives what it saves). False starts every search cold.
    warm_start: bool = True
    # Memory a packed search may give one pack's weights, optimizer state and activations; with
    # `pack_size: auto` the pack holds as many trials as fit (see tuner/packed_search.py).
    pack_memory_mb: float = Field(256.0, gt=0)
    # Where a parallel job's oracle listens; other hosts' trial processes connect to it, so set it to
    # an address they can reach (the oracle's address and key are published in the store).
    oracle_host: str = "127.0.0.1"
    # TensorFlow threads per search process; empty means the CPU quota of the worker's cgroup.
    worker_threads: int | None = None
    # Workers `make run` (`python -m tuner.supervise`) keeps alive; empty means one per 4 CPUs of the
    # quota, each worker's searches then using their share of the CPUs.
    workers: int | None = None

    # Predictions (POST /api/v1/jobs/{id}/predict) and SavedModel exports run in a predictor process
    # (`python -m tuner.predictor`), never in the API. Empty URL: each API process starts its own on
    # a Unix socket under DATA_DIR/run; else the URL of one running elsewhere (e.g. on a worker host).
    predictor_url: str = ""
    # A shared secret the predictor asks of every call; a predictor on a non-loopback address needs one.
    # The API gives its own local predictor a fresh one.
    predictor_token: str = ""
    predictor_models: int = Field(8, ge=1)  # models a predictor keeps loaded, the most recently used
    predictor_start_timeout_s: float = Field(60.0, gt=0)  # a local predictor must answer within this of its start
    predictor_timeout_s: float = Field(60.0, gt=0)  # one prediction or export, a model load included
    predict_max_rows: int = Field(10_000, ge=1)  # rows one prediction request may send
    # A prediction request's body (JSON rows or a CSV/NPZ upload); other JSON bodies keep json_max_bytes.
    predict_max_bytes: int = Field(64 * 1024 * 1024, ge=1)

    @field_validator("keras_backend", mode="before")
    @classmethod
    def _check_backend(cls, value: object) -> object:
        # Said here, not in pydantic's words, so that a typo names the variable to fix.
        if value not in KERAS_BACKENDS:
            raise ValueError(f"DROPTUNE_KERAS_BACKEND must be one of {', '.join(KERAS_BACKENDS)}, not {value!r}")
        return value

    @field_validator("metrics_allow")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        networks_of(value)  # refuse a malformed block at start, not at the first scrape
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: str) -> str:
        for name in host_names_of(value):
            if not HOST_PATTERN.fullmatch(name):
                raise ValueError(f"{name!r} is not a host name, `*.` and a domain, or `*`")
        return value

    @property
    def allowed_host_names(self) -> list[str]:
        return host_names_of(self.allowed_hosts)

    @property
    def metrics_allow_networks(self) -> list[IPNetwork]:
        return networks_of(self.metrics_allow)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'droptune.db').resolve()}"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def tuner_dir(self) -> Path:
        return self.data_dir / "tuner"


# JAX compiles each new pack's epoch (about a second on a CPU); its persistent cache keeps the compiled
# code by the computation's fingerprint, so the next pack or job of the same network loads it instead.
JAX_CACHE_MIN_COMPILE_S = "0.1"


def keras_env(settings: Settings) -> dict[str, str]:
    """The variables that make a child process's Keras run on the configured backend (on JAX, with
    its compilation cache in the data dir)."""
    env: dict[str, str] = {"KERAS_BACKEND": settings.keras_backend}
    if settings.keras_backend == "jax":
        env["JAX_COMPILATION_CACHE_DIR"] = str((settings.data_dir / "jax-cache").resolve())
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = JAX_CACHE_MIN_COMPILE_S
    return env


HOST_PATTERN = re.compile(r"\*|(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]|[0-9a-f:]*:[0-9a-f:.]+")


def host_names_of(text: str) -> list[str]:
    """`a.example.com, *.internal` as lower-case names."""
    return [item.strip().lower().rstrip(".") for item in text.split(",") if item.strip()]


def networks_of(text: str) -> list[IPNetwork]:
    """`10.0.0.0/8, 127.0.0.1` as networks (an address is a block of one); ValueError if malformed."""
    return [ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
