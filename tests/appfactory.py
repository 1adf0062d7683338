"""Building a real app on a temp database for tests; the same wiring `serve` uses."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.config import load_config
from bridge.services import Services
from bridge.wiring import build_services

TOKEN = "test-api-token-0123456789"


def write_config(tmp_path: Path, text: str = "", roots: list[Path] | None = None) -> Path:
    roots_line = f"roots = {[str(r) for r in roots]!r}".replace("'", '"') if roots else ""
    path = tmp_path / "strm-bridge.toml"
    path.write_text(
        f'[server]\napi_token = "{TOKEN}"\n[database]\npath = "{tmp_path / "data" / "bridge.db"}"\n'
        f"[library]\n{roots_line}\n{text}"
    )
    return path


def make_services(tmp_path: Path, text: str = "", roots: list[Path] | None = None, env: dict[str, Any] | None = None) -> Services:
    config = load_config(write_config(tmp_path, text, roots), env=env or {})
    return build_services(config)


AUTH = {"Authorization": f"Bearer {TOKEN}"}
