"""Settings from the environment: empty variables fall back to defaults, `none` clears a limit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from store.config import Settings, keras_env


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPTUNE_TRIAL_TIMEOUT_S", "")
    monkeypatch.setenv("DROPTUNE_WORKER_THREADS", "")
    settings = Settings()
    assert settings.trial_timeout_s == 3600.0
    assert settings.worker_threads is None


def test_none_clears_the_trial_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPTUNE_TRIAL_TIMEOUT_S", "none")
    assert Settings().trial_timeout_s is None


def test_authentication_is_on_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DROPTUNE_AUTH", raising=False)
    assert Settings().auth is True
    monkeypatch.setenv("DROPTUNE_AUTH", "false")
    assert Settings().auth is False


def test_the_keras_backend_is_tensorflow_unless_jax_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DROPTUNE_KERAS_BACKEND", raising=False)
    assert Settings().keras_backend == "tensorflow"
    monkeypatch.setenv("DROPTUNE_KERAS_BACKEND", "jax")
    assert Settings().keras_backend == "jax"
    monkeypatch.setenv("DROPTUNE_DATA_DIR", "/srv/droptune")
    assert keras_env(Settings()) == {
        "KERAS_BACKEND": "jax",
        "JAX_COMPILATION_CACHE_DIR": "/srv/droptune/jax-cache",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.1",
    }
    monkeypatch.setenv("DROPTUNE_KERAS_BACKEND", "tensorflow")
    assert keras_env(Settings()) == {"KERAS_BACKEND": "tensorflow"}


def test_an_unknown_keras_backend_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPTUNE_KERAS_BACKEND", "torch")
    with pytest.raises(ValidationError, match="DROPTUNE_KERAS_BACKEND must be one of tensorflow, jax, not 'torch'"):
        Settings()
