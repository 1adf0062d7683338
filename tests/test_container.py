"""The Docker image, really built with podman and run: healthy, not root, and its data survives a new container.

Follows recipes/container-test.md. The base image (Debian's python3, standing in for python:3.12-slim, since no
registry is reachable) is cached between runs; the app image, the containers and the volume are removed at the
end. Without podman (or root for debootstrap) the test is skipped, except under CI=true, where it fails.
"""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.containers import (APP_IMAGE, RUN_FLAGS, build_app_image, build_base_image, podman, podman_path)

IN_CI = os.environ.get("CI", "").lower() == "true"


def _require_podman() -> None:
    missing = None
    if podman_path() is None:
        missing = "podman is not installed (apt-get install podman buildah debootstrap runc ...; .ci/run does it)"
    elif os.geteuid() != 0:
        missing = "building the base image needs root (debootstrap, chroot, mount)"
    if missing:
        if IN_CI:
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_healthy(port: int, name: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = http("GET", f"http://127.0.0.1:{port}/healthz")
            if status == 200:
                return body
            last = status
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    logs = podman("logs", name, check=False).stderr[-3000:]
    raise AssertionError(f"/healthz never answered 200 ({last}); container log:\n{logs}")


def run_container(name: str, port: int, volume: str, library: Path) -> None:
    podman("run", "-d", "--name", name, *RUN_FLAGS, "-p", f"127.0.0.1:{port}:8765", "-v", f"{volume}:/data",
           "-v", f"{library}:/media", "-e", "STRM_BRIDGE_LIBRARY_ROOTS=/media", APP_IMAGE, timeout=120)


def test_image_builds_runs_healthy_as_non_root_and_keeps_its_data(tmp_path: Path) -> None:
    _require_podman()
    started = time.monotonic()
    base_seconds = build_base_image()
    app_seconds = build_app_image()
    tag = f"{os.getpid()}-{int(time.time())}"
    volume, first, second = f"strm-bridge-test-data-{tag}", f"strm-bridge-test-a-{tag}", f"strm-bridge-test-b-{tag}"
    library = tmp_path / "media"
    (library / "Show" / "Season 1").mkdir(parents=True)
    strm = library / "Show" / "Season 1" / "Show S01E01.strm"
    strm.write_text("https://cdn.example/show/1.mp4\n")
    for path in (tmp_path, library, library / "Show", library / "Show" / "Season 1"):
        path.chmod(0o777)  # the container's user (uid 1000) reads and rewrites files here
    strm.chmod(0o666)
    try:
        inspect = podman("image", "inspect", "-f", "{{.Config.User}}|{{json .Config.Volumes}}|{{json .Config.Healthcheck}}"
                         "|{{json .Config.Env}}", APP_IMAGE).stdout.strip()
        user, volumes, healthcheck, env = inspect.split("|", 3)
        assert user == "strm"
        assert "/data" in json.loads(volumes)
        assert "/healthz" in " ".join(json.loads(healthcheck)["Test"])  # --format docker keeps HEALTHCHECK
        assert "STRM_BRIDGE_SERVER_HOST=0.0.0.0" in json.loads(env) and "STRM_BRIDGE_DATA=/data" in json.loads(env)

        port = free_port()
        podman("volume", "create", volume)
        run_container(first, port, volume, library)
        health = wait_healthy(port, first)
        assert health["status"] == "ok"
        assert podman("exec", first, "id", "-u").stdout.strip() == "1000"
        status_line = [line for line in podman("exec", first, "cat", "/proc/1/status").stdout.splitlines()
                       if line.startswith("Uid:")][0]
        assert status_line.split()[1:] == ["1000"] * 4, status_line  # PID 1 (strm-bridge) is not root
        assert podman("healthcheck", "run", first, check=False).returncode == 0
        token = podman("exec", first, "cat", "/data/api-token").stdout.strip()  # generated at first start
        assert len(token) >= 32
        status, created = http("POST", f"http://127.0.0.1:{port}/api/mappings", token,
                               {"strm_path": "/media/Show/Season 1/Show S01E01.strm",
                                "resolved_url": "https://cdn.example/show/1.mp4", "site": "example", "slug": "show",
                                "season": 1, "episode": 1})
        assert status in (200, 201), created
        podman("stop", "-t", "10", first, timeout=60)
        podman("rm", first)

        port = free_port()
        run_container(second, port, volume, library)  # a new container on the same volume
        assert wait_healthy(port, second)["mappings"] == 1
        status, again = http("GET", f"http://127.0.0.1:{port}/api/mappings/{created['id']}", token)
        assert status == 200 and again["strm_path"] == "/media/Show/Season 1/Show S01E01.strm"
        assert podman("exec", second, "cat", "/data/api-token").stdout.strip() == token
    finally:
        for name in (first, second):
            podman("rm", "-f", "-t", "5", name, check=False, timeout=60)
        podman("volume", "rm", "-f", volume, check=False, timeout=60)
        podman("rmi", "-f", APP_IMAGE, check=False, timeout=120)
    total = time.monotonic() - started
    print(f"container test: base image {base_seconds:.1f} s (0 = cached), app image {app_seconds:.1f} s, "
          f"total {total:.1f} s")
