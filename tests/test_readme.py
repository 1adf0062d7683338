"""The README's promises that code can check: the commands, the configuration reference, the example file."""
from __future__ import annotations

import re
from pathlib import Path

from bridge.config import SECTIONS, load_config
from bridge.config_reference import END, START, render, rows
from bridge.wiring import build_resolvers

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.S)


def test_the_first_two_commands_work_on_a_stock_debian() -> None:
    install, test = (block.strip() for block in sh_blocks()[:2])
    assert install.startswith("python3 -m venv ") and "pip install ." in install and install.endswith("strm-bridge serve")
    assert test.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert "Python 3.11" in README and "python3-venv" in README
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == test, ".ci/run must run exactly the README's test command"


def test_configuration_reference_matches_the_code() -> None:
    block = README[README.index(START):README.index(END) + len(END)]
    assert block == render(), "README's configuration reference is stale: run `python -m bridge.config_reference README.md`"
    documented = {key for key, *_ in rows()}
    for section, cls in SECTIONS.items():
        for name in cls.__dataclass_fields__:
            assert f"{section}.{name}" in documented
    assert "| `refresh.resolvers` | list of string | `[]` |" in block


def test_example_configuration_loads(tmp_path: Path) -> None:
    config = load_config(REPO / "strm-bridge.example.toml", env={"STRM_BRIDGE_DATA": str(tmp_path)})
    assert config.library.roots == ["/media/strm"] and config.refresh.resolvers == ["http", "redirect"]
    assert [type(r).__name__ for r in build_resolvers(config)] == ["HttpResolver", "RedirectResolver"]
    assert config.jellyfin.path_map and config.library.series


def test_license_is_mit() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert 'license = { text = "MIT" }' in (REPO / "pyproject.toml").read_text()
