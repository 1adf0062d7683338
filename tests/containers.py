"""Building and running the Docker image with podman on machines that reach no container registry.

The steps follow the shared recipe (recipes/container-test.md): a base image made from Debian packages stands
in for `python:3.12-slim` and is passed as `BASE`; every podman call carries the flags this sandbox needs. The
Debian mirror is read from apt's own configuration at run time and is never written to a file or a log.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BASE_IMAGE = "localhost/strm-bridge-pybase:bookworm"
APP_IMAGE = "localhost/strm-bridge:test"
SUITE = "bookworm"
GLOBAL_FLAGS = ["--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
REPO = Path(__file__).resolve().parents[1]


class ContainerError(RuntimeError):
    pass


def podman_path() -> str | None:
    return shutil.which("podman")


def podman(*args: str, timeout: float = 600, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *GLOBAL_FLAGS, *args], capture_output=True, text=True, timeout=timeout,
                          input=input)
    if check and proc.returncode != 0:
        raise ContainerError(f"podman {args[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False, timeout=60).returncode == 0


def debian_mirror() -> str:
    """The mirror apt is configured with (deb822 `URIs:` first, then sources.list), without printing it."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        text = Path(path).read_text(errors="replace")
        for block in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", block, re.M) and "security" not in block.split("Suites:", 1)[1].split("\n", 1)[0]:
                match = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if match:
                    return match.group(1)
    if os.path.exists("/etc/apt/sources.list"):
        for line in Path("/etc/apt/sources.list").read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise ContainerError("no Debian mirror found in apt's configuration")


def _run(args: list[str], timeout: float = 900) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ContainerError(f"{args[0]} {args[1] if len(args) > 1 else ''} failed ({proc.returncode}): "
                             f"{proc.stderr[-1500:]}")


def build_base_image() -> float:
    """debootstrap + Debian's python3 → a local image; returns seconds spent (0 when it was cached)."""
    if image_exists(BASE_IMAGE):
        return 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="strm-bridge-rootfs-", dir="/var/tmp") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), debian_mirror()], timeout=1200)
        certs = rootfs / "usr" / "local" / "share" / "ca-certificates"
        certs.mkdir(parents=True, exist_ok=True)
        for cert in glob.glob("/usr/local/share/ca-certificates/*.crt"):
            shutil.copy(cert, certs)  # outgoing HTTPS passes a proxy with its own CA: pip in the build needs it
        proc_dir = rootfs / "proc"
        _run(["mount", "-t", "proc", "proc", str(proc_dir)])
        try:
            env = ["env", "DEBIAN_FRONTEND=noninteractive"]
            _run(["chroot", str(rootfs), *env, "apt-get", "update"], timeout=600)
            _run(["chroot", str(rootfs), *env, "apt-get", "install", "-y", "--no-install-recommends",
                  "python3", "python3-venv", "python3-pip", "ca-certificates", "curl"], timeout=900)
            _run(["chroot", str(rootfs), "update-ca-certificates"])
            _run(["chroot", str(rootfs), "apt-get", "clean"])
        finally:
            subprocess.run(["umount", str(proc_dir)], capture_output=True)
        shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        (rootfs / "var" / "lib" / "apt" / "lists").mkdir(parents=True, exist_ok=True)
        for mirror_file in [rootfs / "etc" / "apt" / "sources.list", *rootfs.glob("etc/apt/sources.list.d/*")]:
            mirror_file.unlink(missing_ok=True)  # it names the mirror
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:  # closes the pipe
            imported = subprocess.run(["podman", *GLOBAL_FLAGS, "import", "-", BASE_IMAGE], stdin=tar.stdout,
                                      capture_output=True, text=True, timeout=600)
        if imported.returncode != 0:
            raise ContainerError(f"podman import failed: {imported.stderr[-1500:]}")
    return time.monotonic() - started


def build_app_image() -> float:
    started = time.monotonic()
    podman("build", "--format", "docker", "--build-arg", f"BASE={BASE_IMAGE}", "-t", APP_IMAGE, str(REPO),
           timeout=1800)
    return time.monotonic() - started
