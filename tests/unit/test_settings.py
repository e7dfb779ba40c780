"""Settings from the environment: empty variables fall back to defaults, `none` clears a limit."""

from __future__ import annotations

import pytest

from store.config import Settings


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
