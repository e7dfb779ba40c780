"""A stand-in for `tuner.search` in tests/unit/test_launcher.py: says where and how it runs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv[1] == "sleep":
        time.sleep(600)
    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "pgid": os.getpgid(0),
                "sid": os.getsid(0),
                "comm": Path("/proc/self/comm").read_text().strip(),
                "argv": argv[1:],
                "cwd": os.getcwd(),
                "probe": os.environ.get("PROBE"),
                "stdin": sys.stdin.read(),
            }
        )
    )
    return int(argv[1])
