"""`strm-bridge config check`: is the configuration valid, and does each configured part really answer?

Everything here only reads: the database is opened read-only (or found missing), no token is generated, and
the resolvers are asked for an episode the library already has (or a made-up one, where "not found" still
proves the resolver answers). Integrations contribute their own checks through `bridge.wiring`.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from bridge.config import Config
from bridge.dbread import open_existing
from bridge.mappings import Identity
from bridge.redact import redact_text, redact_url
from bridge.resolvers.base import EpisodeNotFound, ResolveRequest, Resolver, ResolverError

CHECK_TIMEOUT_SECONDS = 20.0
PROBE_IDENTITY = Identity(site="strm-bridge-check", slug="config-check", season=1, episode=1, language=None)


@dataclass(frozen=True)
class Check:
    """One line of the report; `ok` None means "not configured" (neither good nor bad)."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[self.ok]
        return f"{mark}  {self.name}: {redact_text(self.detail)}"


IntegrationCheck = Callable[[Config], Awaitable[Check | None]]


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def local_checks(config: Config) -> tuple[list[Check], dict | None]:
    """Files and folders; returns the checks and a sample mapping from the database for the resolvers."""
    checks = [Check("configuration", True, config.source or "no file (built-in defaults and environment)")]
    db_path = Path(config.database.path)
    sample = None
    db = open_existing(db_path) if db_path.is_file() else None
    if db is not None:
        try:
            count = db.conn.execute("select count(*) from mappings").fetchone()[0]
            row = db.conn.execute(
                "select * from mappings where slug is not null and episode is not null order by id limit 1").fetchone()
            if row is not None:
                cursor = db.conn.execute("select * from mappings where id = ?", (row[0],))
                sample = dict(zip([c[0] for c in cursor.description], cursor.fetchone()))
            checks.append(Check("database", True, f"{db_path} ({count} mapping(s))"))
        except Exception as exc:  # an old schema or a file that is not SQLite
            checks.append(Check("database", False, f"{db_path}: cannot read it ({exc})"))
        finally:
            db.conn.close()
    else:
        parent = _nearest_existing(db_path.parent)
        if db_path.parent.exists() and not db_path.parent.is_dir():
            checks.append(Check("database", False, f"{db_path.parent} is not a folder (database.path)"))
        elif not os.access(parent, os.W_OK):
            checks.append(Check("database", False, f"{db_path}: {parent} is not writable (database.path / STRM_BRIDGE_DATA)"))
        else:
            checks.append(Check("database", True, f"{db_path} (created at first start)"))
    if not config.library.roots:
        checks.append(Check("library", False, "no roots ([library] roots): nothing can be healed"))
    for root in config.library.roots:
        if not os.path.isdir(root):
            checks.append(Check("library root", False, f"{root} does not exist or is not a folder"))
        elif not os.access(root, os.W_OK):
            checks.append(Check("library root", False, f"{root} is not writable by this user (.strm files are rewritten)"))
        else:
            checks.append(Check("library root", True, root))
    for anchor in config.library.anchors:
        ok = os.path.exists(anchor)
        checks.append(Check("anchor", ok, anchor if ok else f"{anchor} is missing: every write and rescan waits"))
    return checks, sample


async def resolver_check(resolver: Resolver, sample: dict | None, timeout: float) -> Check:
    name = f"resolver {getattr(resolver, 'name', type(resolver).__name__)}"
    if sample is not None:
        request = ResolveRequest(identity=Identity.of(sample), source_url=sample.get("source_url"),
                                 previous_url=sample.get("resolved_url"), reason="check",
                                 strm_path=sample.get("strm_path"))
        what = f"mapping {sample['id']} ({sample.get('slug')} S{sample.get('season')}E{sample.get('episode')})"
    else:
        request = ResolveRequest(identity=PROBE_IDENTITY, reason="check")
        what = "a test episode"
    try:
        resolved = await asyncio.wait_for(resolver.resolve(request), timeout)
    except EpisodeNotFound as exc:
        return Check(name, True, f"answers ({what}: not found there: {exc})")
    except (ResolverError, asyncio.TimeoutError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        if sample is None and "source_url" in detail:
            return Check(name, True, "configured; it follows each mapping's source_url (none to try yet)")
        return Check(name, False, f"{what}: {detail}")
    return Check(name, True, f"resolved {what} to {redact_url(resolved.url)}")


async def run_checks(config: Config, integration_checks: list[IntegrationCheck], resolvers: list[Resolver],
                     timeout: float = CHECK_TIMEOUT_SECONDS) -> list[Check]:
    checks, sample = local_checks(config)
    if not resolvers:
        checks.append(Check("resolvers", False, "none ([refresh] resolvers): dead links cannot be re-resolved"))

    async def guarded(check: IntegrationCheck) -> Check | None:
        try:
            return await asyncio.wait_for(check(config), timeout)
        except asyncio.TimeoutError:
            return Check(getattr(check, "__module__", "integration").split(".")[-2], False, f"no answer in {timeout:.0f} s")

    answers = await asyncio.gather(*(guarded(c) for c in integration_checks),
                                   *(resolver_check(r, sample, timeout) for r in resolvers))
    found = [a for a in answers if a is not None]
    servers = [a for a in found if a.name in ("jellyfin", "plex", "emby")]
    if not servers:
        checks.append(Check("media server", False, "none configured ([jellyfin], [plex] or [emby] url and key)"))
    checks.extend(found)
    for resolver in resolvers:
        try:
            await resolver.close()
        except Exception:
            pass
    return checks

