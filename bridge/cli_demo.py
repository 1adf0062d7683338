"""`strm-bridge demo`: the heal loop end to end on loopback, with no configuration."""
from __future__ import annotations

import tempfile
from pathlib import Path

import click


@click.command()
@click.option("--ttl", "ttl_seconds", type=click.FloatRange(1, 3600), default=20.0, show_default=True,
              help="Seconds a provider link lives.")
@click.option("--episodes", type=click.IntRange(3, 50), default=4, show_default=True, help="Episodes in the demo library.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Bridge port on 127.0.0.1 (0: a free one).")
@click.option("--dir", "workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the library and database here (default: a temporary folder, removed at the end).")
@click.option("--exit/--keep-running", "exit_after", default=False,
              help="Stop after the timeline instead of leaving the dashboard running.")
def demo(ttl_seconds: float, episodes: int, port: int, workdir: str | None, exit_after: bool) -> None:
    """Watch strm-bridge heal expired links: simulated provider and Jellyfin, real bridge, loopback only."""
    from bridge.demo.run import DemoOptions, default_color, run_demo

    def go(folder: Path) -> None:
        result = run_demo(DemoOptions(workdir=folder, ttl_seconds=ttl_seconds, episodes=episodes, port=port,
                                      keep_running=not exit_after, color=default_color()))
        if exit_after and (result.heals == 0 or result.heals < result.failed_plays):
            raise SystemExit(1)

    if workdir:
        go(Path(workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="strm-bridge-demo-") as folder:
            go(Path(folder))
