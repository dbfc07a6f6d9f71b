"""Where the command line finds the gateway and its API key.

Address: `--gateway`, else `ATELIER_GATEWAY`, else 127.0.0.1:50051.
API key: `--api-key`, else `ATELIER_API_KEY`, else the key file (`ATELIER_API_KEY_FILE`,
default `$XDG_CONFIG_HOME/atelier/api_key`, i.e. ~/.config/atelier/api_key), which
`atelier up` writes with a development key so that `atelier generate` just works.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_GATEWAY = "127.0.0.1:50051"


def default_gateway() -> str:
    return os.environ.get("ATELIER_GATEWAY") or DEFAULT_GATEWAY


def api_key_file() -> Path:
    if os.environ.get("ATELIER_API_KEY_FILE"):
        return Path(os.environ["ATELIER_API_KEY_FILE"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "atelier" / "api_key"


def signing_dir() -> Path:
    """Where `atelier up` keeps its development signing chain, whose CA `atelier verify` trusts."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "atelier" / "signing"


def default_api_key() -> str | None:
    if os.environ.get("ATELIER_API_KEY"):
        return os.environ["ATELIER_API_KEY"]
    try:
        return api_key_file().read_text().strip() or None
    except OSError:
        return None


def save_api_key(key: str, path: Path | None = None) -> Path:
    """Store a key where `default_api_key` finds it, readable by its owner only."""
    path = path or api_key_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path
