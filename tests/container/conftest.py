"""The images, built once per session and shared by every container test (droptune's takes minutes)."""

from __future__ import annotations

import subprocess

import pytest

from tests.container.support import podman
from tests.e2e.conftest import ROOT

DROPTUNE_TAG = "localhost/droptune:test"
POSTGRES_TAG = "localhost/droptune-postgres:test"


def build(script: str, tag: str) -> str:
    """Run one of the podman build scripts; podman's layer cache makes a rebuild quick."""
    done = subprocess.run(
        [str(ROOT / "scripts" / script), tag], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    print(f"\nimage {tag}: {size / 1e6:.0f} MB")
    return tag


@pytest.fixture(scope="session")
def image() -> str:
    """droptune's image (both roles), from scripts/podman-image.sh."""
    return build("podman-image.sh", DROPTUNE_TAG)


@pytest.fixture(scope="session")
def postgres_image() -> str:
    """PostgreSQL 15 from Debian's packages, standing in for `postgres:15` (no registry here)."""
    return build("podman-postgres-image.sh", POSTGRES_TAG)
