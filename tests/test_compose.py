"""docker-compose.yml and the Dockerfile say what the README promises (checked without a container engine)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from bridge.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_compose_shares_the_library_and_uses_real_keys(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    jellyfin, bridge = compose["services"]["jellyfin"], compose["services"]["strm-bridge"]
    library = [v for v in jellyfin["volumes"] if v.endswith(":/media")]
    assert library and library[0] in bridge["volumes"]  # the same folder at the same path: no path_map needed
    assert any(v.endswith(":/data") for v in bridge["volumes"]) and "strm-bridge-data" in compose["volumes"]
    assert bridge["build"] == "."
    env = {key: re.sub(r"\$\{[^}]*\}", "placeholder-value-123", str(value)) for key, value in bridge["environment"].items()}
    assert env["STRM_BRIDGE_JELLYFIN_URL"] == "http://jellyfin:8096"
    config = load_config(env={**env, "STRM_BRIDGE_DATA": str(tmp_path)})  # every variable is a real key
    assert config.library.roots == ["/media"] and config.jellyfin.api_key == "placeholder-value-123"


def test_dockerfile_contract() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE=python:3.12-slim" in text and "FROM ${BASE}" in text
    assert "python3 -m venv" in text and re.search(r"^USER strm$", text, re.M)
    assert 'VOLUME ["/data"]' in text and "STRM_BRIDGE_DATA=/data" in text and "STRM_BRIDGE_SERVER_HOST=0.0.0.0" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", text, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored
