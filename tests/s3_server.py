"""A real local S3 server for the tests of the S3 artifact store: moto's server mode, run as a process
of its own (`python -m moto.server`) and spoken to over HTTP by boto3 as AWS would be, through the
standard AWS variables. Not moto's in-process mock of boto3.

Test modules that need it import the fixtures: `from tests.s3_server import s3_endpoint, s3_bucket`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.ports import free_port


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL, on a free port of 127.0.0.1, for one test module."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    for _ in range(3):  # the free port may be taken between finding it and the server binding it
        port = free_port()
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            if _serves(endpoint, server):
                yield endpoint
                return
        finally:
            server.terminate()
            server.wait(timeout=30)
    pytest.fail(f"the local S3 server did not start: {log.read_text()[-2000:]}")


def _serves(endpoint: str, server: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket's name, with the standard AWS variables pointing boto3 at the local server."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    import boto3

    bucket = f"droptune-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


def s3_keys(bucket: str) -> list[str]:
    """Every key in the bucket."""
    import boto3

    return [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
