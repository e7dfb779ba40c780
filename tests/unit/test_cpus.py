from __future__ import annotations

from pathlib import Path

from tuner.cpus import available_cpus, quota_from_cfs, quota_from_cpu_max


def test_cgroup_v2_quota_is_read_as_cpus() -> None:
    assert quota_from_cpu_max("150000 100000\n") == 1.5
    assert quota_from_cpu_max("max 100000\n") is None


def test_cgroup_v1_quota_is_read_as_cpus() -> None:
    assert quota_from_cfs("50000", "100000") == 0.5
    assert quota_from_cfs("-1", "100000") is None


def test_a_one_cpu_quota_gives_one_thread_whatever_the_host_has(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cpus(None, root=tmp_path) == 1


def test_a_fractional_quota_rounds_up(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(None, root=tmp_path) == 1


def test_no_quota_means_every_usable_core(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    import os

    assert available_cpus(None, root=tmp_path) == len(os.sched_getaffinity(0))


def test_the_setting_wins_over_the_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert available_cpus(3, root=tmp_path) == 3
