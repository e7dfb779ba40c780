"""`python -m tuner`: run a worker. Start more workers by running this command more times."""

from __future__ import annotations

import argparse

from store.config import get_settings
from tuner.log_format import configure_logging
from tuner.worker import Worker


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tuner", description="droptune worker")
    parser.add_argument("--burst", action="store_true", help="exit when no queued job is left")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after running this many jobs")
    parser.add_argument("--name", default=None, help="worker id shown on the jobs it claims")
    args = parser.parse_args()
    configure_logging()
    Worker(get_settings(), burst=args.burst, max_jobs=args.max_jobs, name=args.name).work()


if __name__ == "__main__":
    main()
