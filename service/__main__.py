"""`python -m service`: run the API with uvicorn on DROPTUNE_HOST:DROPTUNE_PORT."""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.auth import check_exposure
from store.config import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    check_exposure(settings.host, settings.auth)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
