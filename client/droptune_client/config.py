"""Where the client finds the server and its token: flags, then environment, then the config file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from droptune_client.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None


def config_path() -> Path:
    """`$XDG_CONFIG_HOME/droptune/config.json`, by default under `~/.config`."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "droptune" / "config.json"


def read_config(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"the config file {path} does not hold a JSON object")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_config(url: str, token: str, path: Path | None = None) -> Path:
    """Save the URL and token, readable by the user only (the token is a password)."""
    path = path or config_path()
    if not path.parent.exists():
        # Its own folder is the user's alone too, whatever the umask (0777 under umask 000); a
        # folder that already exists, theirs to arrange, is left as it is.
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
    # Created with 0600 from the start, so the token is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "token": token}, out, indent=2)
        out.write("\n")
    os.chmod(path, 0o600)  # an existing file keeps its old mode through os.open
    return path


def resolve(url: str | None = None, token: str | None = None) -> Settings:
    """Explicit values win over DROPTUNE_URL / DROPTUNE_TOKEN, which win over the config file."""
    url = url or os.environ.get("DROPTUNE_URL")
    token = token or os.environ.get("DROPTUNE_TOKEN")
    file = read_config() if url is None or token is None else {}  # not read (nor a bad one refused) unless needed
    chosen_url = url or file.get("url") or DEFAULT_URL
    chosen_token = token or file.get("token") or None
    return Settings(chosen_url.rstrip("/"), chosen_token)
