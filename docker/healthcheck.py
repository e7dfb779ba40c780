"""Container health: the API answers /healthz; a worker is healthy while its process runs."""

import os
import sys
import urllib.request
from pathlib import Path

ROLE_FILE = Path("/tmp/droptune-role")
role = ROLE_FILE.read_text().strip() if ROLE_FILE.exists() else "api"
if role != "api":
    sys.exit(0)
try:
    port = os.environ.get("DROPTUNE_PORT", "8000")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
