"""Say where droptune answers, once it does: `make run` starts this beside the API.

uvicorn prints "Uvicorn running on ..." as soon as it binds the port, before its worker processes
have imported the app: a browser opened then waits ten seconds or so. This polls the API's /healthz
and prints the dashboard's address when the API answers (or says it gave up)."""

from __future__ import annotations

import sys
import time

import httpx

from store.config import get_settings

TIMEOUT_S = 120.0


def main() -> int:
    settings = get_settings()
    if settings.listen_fd is not None:
        return 0  # a socket handed over by a supervisor: it knows where it listens
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}"
    give_up = time.monotonic() + TIMEOUT_S
    while time.monotonic() < give_up:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code < 500:
                print(f"droptune is ready: the dashboard at {url}/ and the API at {url}/api/v1", flush=True)
                return 0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    print(f"droptune: the API did not answer at {url} within {TIMEOUT_S:.0f} s; see the log above", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
