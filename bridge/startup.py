"""Starting `serve`: check what a user can get wrong before anything is created, then say what is configured.

The order matters: the resolver chain and the database folder are checked and the port is bound before the
database, the token or a single background task exists, so a mistake ends in one line and leaves nothing
behind, and "listening" is printed only once the socket really listens.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from bridge.cli_errors import UserError
from bridge.config import Config
from bridge.redact import redact_url

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def check_database_location(path: str) -> None:
    """The database's folder must exist or be creatable and be writable; say which key moves it."""
    db_path = Path(path)
    hint = "set [database] path (STRM_BRIDGE_DATABASE_PATH) or STRM_BRIDGE_DATA to a writable folder"
    if db_path.is_dir():
        raise UserError(f"database.path: {path} is a folder, not a file; {hint}")
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"database.path: cannot create the folder {db_path.parent} ({exc.strerror}); {hint}") from None
    if not os.access(db_path.parent, os.W_OK | os.X_OK):
        raise UserError(f"database.path: the folder {db_path.parent} is not writable; {hint}")
    if db_path.exists() and not os.access(db_path, os.R_OK | os.W_OK):
        raise UserError(f"database.path: {path} exists but is not readable and writable by this user; {hint}")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line that names the cause and the key to change."""
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"server.host: cannot bind to {host!r} ({exc.strerror}); use an address of this machine, "
                        "0.0.0.0 for every interface or 127.0.0.1") from None
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"server.port: {where} is already in use (another strm-bridge?); stop it or choose "
                            "another port with --port or [server] port") from None
        if exc.errno == errno.EACCES:
            raise UserError(f"server.port: no permission to listen on {where} (ports below 1024 need root); "
                            "choose a port above 1024 with --port or [server] port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UserError(f"server.host: {host} is not an address of this machine; use one of its addresses, "
                            "0.0.0.0 or 127.0.0.1 with --host or [server] host") from None
        raise UserError(f"server.host/server.port: cannot listen on {where} ({exc.strerror})") from None
    sock.setblocking(False)
    return sock


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_addresses() -> set[str]:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    addresses = set(names)
    for name in names:
        try:
            addresses.update(info[4][0] for info in socket.getaddrinfo(name, None))
        except OSError:
            continue
    return addresses


def is_on_this_host(url: str, local: Callable[[], set[str]] = _local_addresses) -> bool:
    """Whether a media server at `url` could reach a bridge bound to loopback (it runs on this machine)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host or _is_loopback_host(host):
        return True
    return host in local()


def media_servers(config: Config) -> list[tuple[str, str]]:
    return [(name, getattr(config, name).url) for name in ("jellyfin", "plex", "emby") if getattr(config, name).url]


def summary(config: Config, host: str, port: int, local: Callable[[], set[str]] = _local_addresses) -> list[str]:
    """What is configured and what is missing, one short line each; `serve` prints it and refuses nothing."""
    lines = [f"configuration: {config.source or 'none (built-in defaults)'}",
             f"database: {config.database.path}"]
    roots = config.library.roots
    if roots:
        lines.append(f"library: {len(roots)} root(s): {', '.join(roots)}")
    else:
        lines.append("library: no roots ([library] roots): nothing can be healed, every .strm path is refused")
    chain = config.refresh.resolvers
    if chain:
        lines.append(f"resolvers: {', '.join(chain)}")
    else:
        lines.append("resolvers: none ([refresh] resolvers): dead links are found but cannot be re-resolved")
    servers = media_servers(config)
    if servers:
        lines.append("media servers: " + ", ".join(f"{name} {redact_url(url)}" for name, url in servers))
    else:
        lines.append("media servers: none ([jellyfin], [plex] or [emby] url): webhooks cannot be traced to files "
                     "and nothing is rescanned")
    if _is_loopback_host(host):
        remote = [(name, url) for name, url in servers if not is_on_this_host(url, local)]
        for name, url in remote:
            lines.append(f"warning: bound to {host} but {name} ({redact_url(url)}) is not on this host, so its webhooks cannot "
                         "reach strm-bridge; set [server] host = \"0.0.0.0\" (STRM_BRIDGE_SERVER_HOST) or --host")
    return lines
