"""Where the bridge may connect: never to its own listener, and only where `[refresh]` allows.

A resolver answer, a redirect or a registered URL can point at the bridge itself (`http://127.0.0.1:<port>/…`,
`localhost`, a userinfo trick, a name that resolves to a local address). Probing or writing such a URL makes
the bridge call its own API, with whatever token the URL carries. Every outgoing connection of the probe, the
resolvers and the writer's URL check goes through one `Egress`: a custom aiohttp connector checks each
connection (each redirect hop opens its own) after the host name is resolved, so no spelling gets past it.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["Egress", "EgressDenied", "HostRule", "parse_rules"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_WILDCARDS = ("", "0.0.0.0", "::")
_NAME_TTL_SECONDS = 60.0
_MAX_CACHED_NAMES = 4096


class EgressDenied(aiohttp.ClientConnectionError):
    """A connection the bridge refuses to open; a ClientError, so callers treat it as a connection failure."""

    def __init__(self, host: str, port: int | None, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        where = f"{host}:{port}" if port is not None else host
        super().__init__(f"refused to connect to {where}: {reason}")


def _host_port(url: str) -> tuple[str, int]:
    """Host and port as a connection would use them; an unparseable URL is refused like a denied host."""
    try:
        parts = urlsplit(url)
        return parts.hostname or "", parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise EgressDenied(url[:80], None, "unparseable URL") from None


@dataclass(frozen=True)
class HostRule:
    """A host name (`example.com`, `.example.com` or `*.example.com` for its subdomains too), an IP or a CIDR."""

    text: str
    network: IPNetwork | None = None
    name: str | None = None
    subdomains: bool = False

    def matches_name(self, host: str) -> bool:
        if self.name is None:
            return False
        host = host.rstrip(".").lower()
        return host == self.name or (self.subdomains and host.endswith("." + self.name))

    def matches_ip(self, ip: IPAddress) -> bool:
        return self.network is not None and ip.version == self.network.version and ip in self.network


def parse_rules(values: Iterable[str], key: str) -> list[HostRule]:
    """Raises ValueError naming the key and the entry, so config can refuse it at start-up."""
    rules = []
    for index, raw in enumerate(values):
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            raise ValueError(f"{key}[{index}]: expected a host name, an IP address or a CIDR range, got {raw!r}")
        try:
            network = ipaddress.ip_network(text.strip("[]"), strict=False)
        except ValueError:
            network = None
        if network is not None:
            rules.append(HostRule(text, network=network))
            continue
        name = text.lower().rstrip(".")
        subdomains = name.startswith(("*.", "."))
        name = name.lstrip("*").lstrip(".")
        if not name or any(c in name for c in "/:@ ") or "*" in name:
            raise ValueError(f"{key}[{index}]: {raw!r} is not a host name, an IP address or a CIDR range")
        rules.append(HostRule(text, name=name, subdomains=subdomains))
    return rules


def _ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


@dataclass
class Egress:
    deny: Sequence[HostRule] = ()
    allow: Sequence[HostRule] = ()
    """Empty: every host that is not denied. Otherwise only these (the bridge's own listener never)."""
    listeners: set[tuple[str, int]] = field(default_factory=set)
    _local: dict[IPAddress, bool] = field(default_factory=dict, repr=False)
    _resolved: dict[tuple[str, int], tuple[float, list[str]]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_lists(cls, deny_hosts: Iterable[str] = (), allow_hosts: Iterable[str] = ()) -> Egress:
        return cls(parse_rules(deny_hosts, "refresh.deny_hosts"), parse_rules(allow_hosts, "refresh.allow_hosts"))

    # ---- the bridge's own listener --------------------------------------------------------------------
    def add_listener(self, host: str, port: int) -> None:
        """Called with the configured and with every actually bound address; cheap to call again."""
        self.listeners.add((host or "", int(port)))

    def note_socket(self, sockname: Any) -> None:
        """From a request's transport: the address a client reached us on (covers an ephemeral port)."""
        if isinstance(sockname, tuple) and len(sockname) >= 2 and (sockname[0], sockname[1]) not in self.listeners:
            self.listeners.add((str(sockname[0]), int(sockname[1])))

    def _is_local(self, ip: IPAddress) -> bool:
        """Loopback, unspecified (connecting to 0.0.0.0 reaches this host) or assigned to one of its interfaces."""
        if ip.is_loopback or ip.is_unspecified:
            return True
        known = self._local.get(ip)
        if known is None:
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe_socket:
                    probe_socket.bind((str(ip), 0))  # succeeds only for an address this host owns
                known = True
            except OSError:
                known = False
            self._local[ip] = known
        return known

    def is_self(self, ip: IPAddress, port: int) -> bool:
        for host, bound_port in self.listeners:
            if bound_port != port:
                continue
            bound = _ip(host) if host not in _WILDCARDS else None
            if bound is not None and bound == ip:
                return True
            # a wildcard listener, or another local address on the same port: every local address reaches us
            if self._is_local(ip):
                return True
        return False

    # ---- checks ---------------------------------------------------------------------------------------
    def check_name(self, host: str, port: int | None) -> None:
        """The rules that a host name alone decides (before resolving)."""
        for rule in self.deny:
            if rule.matches_name(host):
                raise EgressDenied(host, port, f"matches refresh.deny_hosts {rule.text!r}")

    def check_address(self, host: str, address: str, port: int) -> None:
        ip = _ip(address)
        if ip is None:
            raise EgressDenied(host, port, f"unusable address {address!r}")
        if self.is_self(ip, port):
            raise EgressDenied(host, port, "that is strm-bridge's own listener")
        for rule in self.deny:
            if rule.matches_ip(ip):
                raise EgressDenied(host, port, f"matches refresh.deny_hosts {rule.text!r}")
        if self.allow and not any(rule.matches_ip(ip) or rule.matches_name(host) for rule in self.allow):
            raise EgressDenied(host, port, "not in refresh.allow_hosts")

    def check_literal(self, url: str) -> None:
        """The checks that need no name lookup, for request edges that must answer at once (POST /api/mappings):
        the name rules, and the address when the host is an IP literal or a loopback name."""
        host, port = _host_port(url)
        self.check_name(host, port)
        name = host.rstrip(".").lower()
        ip = _ip(host) or (ipaddress.ip_address("127.0.0.1") if name == "localhost" or name.endswith(".localhost")
                           else None)
        if ip is not None:
            self.check_address(host, str(ip), port)

    async def check_url(self, url: str) -> None:
        """The writer's check: the URL's host, resolved, must be a place the bridge may send a player to."""
        host, port = _host_port(url)
        if not host:
            raise EgressDenied(url[:80], None, "no host")
        self.check_name(host, port)
        if _ip(host) is not None:
            self.check_address(host, host, port)
            return
        for address in await self._addresses(host, port):
            self.check_address(host, address, port)

    async def _addresses(self, host: str, port: int) -> list[str]:
        """Resolved for a minute: a bulk refresh writes thousands of URLs on a handful of hosts.

        A name that does not resolve here gives no address to refuse (nor one the bridge could reach); the
        probe, when on, judges it; the guarded connector refuses it should it ever resolve to the bridge.
        """
        key = (host.lower(), port)
        now = time.monotonic()
        cached = self._resolved.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            # "localhost." is the same name as "localhost"; some resolvers only answer the undotted form
            name = host.rstrip(".") or host
            infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
            addresses = sorted({str(info[4][0]) for info in infos})
        except (OSError, UnicodeError):
            addresses = []
        if len(self._resolved) >= _MAX_CACHED_NAMES:
            self._resolved.clear()
        self._resolved[key] = (now + _NAME_TTL_SECONDS, addresses)
        return addresses

    # ---- aiohttp plumbing -----------------------------------------------------------------------------
    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        return GuardedConnector(self, **kwargs)

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """A ClientSession whose every connection, redirects included, passes this guard."""
        connector_args = kwargs.pop("connector_args", {})
        return aiohttp.ClientSession(connector=self.connector(**connector_args), **kwargs)


class GuardedResolver(AbstractResolver):
    """Checks what a host name resolves to; aiohttp skips resolvers for IP literals (the connector checks those)."""

    def __init__(self, egress: Egress, inner: AbstractResolver | None = None) -> None:
        self.egress = egress
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            self.egress.check_address(host, result["host"], result["port"] or port)
        return results

    async def close(self) -> None:
        await self.inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """Every connection (a fresh one, a pooled one, each redirect hop) is checked before it is used.

    Host names are checked by the resolver when they are resolved; a name served from the DNS cache was checked
    when it entered it.
    """

    def __init__(self, egress: Egress, **kwargs: Any) -> None:
        kwargs.setdefault("resolver", GuardedResolver(egress))
        super().__init__(**kwargs)
        self.egress = egress

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        host = req.url.raw_host or ""
        port = req.url.port or (443 if req.url.scheme == "https" else 80)
        self.egress.check_name(host, port)
        if _ip(host) is not None:
            self.egress.check_address(host, host, port)
        return await super().connect(req, traces, timeout)
