"""`python -m service`: run the API with uvicorn on DROPTUNE_HOST:DROPTUNE_PORT, in DROPTUNE_API_WORKERS
processes."""

from __future__ import annotations

import logging
import os
from typing import Any

import uvicorn

from service.app import prepare_database
from service.auth import check_exposure
from service.metrics import use_multiprocess_dir
from store.config import Settings, get_settings


def api_workers(settings: Settings) -> int:
    """The setting, else one process per CPU this process may use, at most 4: requests are mostly
    Python, so one process serves about one core."""
    if settings.api_workers is not None:
        return settings.api_workers
    return max(1, min(4, len(os.sched_getaffinity(0))))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    check_exposure(settings.host, settings.auth)
    prepare_database(settings)  # once, here: worker processes migrating at once would race
    processes = api_workers(settings)
    use_multiprocess_dir(settings, processes)  # before they start: /metrics then sums their request figures
    where: dict[str, Any] = (
        {"fd": settings.listen_fd} if settings.listen_fd is not None else {"host": settings.host, "port": settings.port}
    )
    uvicorn.run(
        "service.app:prepared_app",
        factory=True,
        workers=processes,
        **where,
        log_level="info",
    )


if __name__ == "__main__":
    main()
