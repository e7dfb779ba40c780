"""How every worker-side process logs: one format, so the lines of a job's log read alike."""

from __future__ import annotations

import logging

# The process id: a parallel job's trial processes all write into the job's one log file.
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
