"""The `command` resolver: run a user's script to get a fresh URL.

Each element of `argv` may hold placeholders {site} {slug} {season} {episode} {language} {provider}
{source_url} {previous_url} {strm_path} {reason} (missing values become ''), substituted per argument; no
shell is involved, so a slug like `x; rm -rf /` reaches the script as one literal argument.

The script prints either a bare URL (the first non-empty line) or a JSON object like the http resolver's
answer: {"url", "headers"?, "provider"?, "expires_at"?}. Exit codes: 0 success; 3 means "this episode does not
exist there" (EpisodeNotFound, the chain stops asking for this episode); any other non-zero exit is a failure
reported with the tail of stderr. On timeout the whole process group is killed, helpers it spawned included.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import string
from typing import Any

from bridge.resolvers._common import MIB, Options, is_http_url, parse_json_answer, redact_url, request_fields, tail
from bridge.resolvers.base import EpisodeNotFound, Resolved, ResolverContext, ResolveRequest, ResolverError

OPTIONS = ("argv", "timeout_seconds", "env", "max_output_bytes")
PLACEHOLDERS = (
    "site", "slug", "season", "episode", "language", "provider", "source_url", "previous_url", "strm_path", "reason",
)
EXIT_NOT_FOUND = 3
_REAP_SECONDS = 5.0
_STDERR_KEEP = 16 * 1024
log = logging.getLogger(__name__)
_SAMPLE: dict[str, Any] = {name: "x" for name in PLACEHOLDERS} | {"season": 1, "episode": 1}


def _check_placeholders(opts: Options, argv: list[str]) -> None:
    """Refuse `{slug.__class__}` or `{sluh}` at start-up rather than at the first refresh."""
    for index, arg in enumerate(argv):
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(arg) if field is not None]
        except ValueError as exc:
            raise ValueError(f"{opts.key('argv')}[{index}]: {exc} (write {{{{ and }}}} for literal braces)") from None
        for field in fields:
            if field not in PLACEHOLDERS:
                raise ValueError(
                    f"{opts.key('argv')}[{index}]: unknown placeholder {{{field}}} (known: {', '.join(PLACEHOLDERS)})"
                )
        try:
            arg.format_map(_SAMPLE)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{opts.key('argv')}[{index}]: {exc}") from None


class CommandResolver:
    name: str

    def __init__(self, options: dict[str, Any], context: ResolverContext | None = None, name: str = "command") -> None:
        opts = Options(name, options, OPTIONS)
        self.name = name
        self.argv: list[str] = opts.string_list("argv")
        _check_placeholders(opts, self.argv)
        program = self.argv[0]
        if "{" not in program and shutil.which(program) is None:
            raise ValueError(f"{opts.key('argv')}[0]: program {program!r} not found or not executable")
        self.timeout = opts.number("timeout_seconds", 30.0)
        self.extra_env = opts.string_dict("env")
        self.max_bytes = opts.integer("max_output_bytes", MIB, minimum=1)

    def command_line(self, request: ResolveRequest) -> list[str]:
        values = {key: ("" if value is None else value) for key, value in request_fields(request).items()}
        try:
            return [arg.format_map(values) for arg in self.argv]
        except (ValueError, TypeError) as exc:
            raise ResolverError(f"{self.name}: cannot build the command line: {exc}") from None

    async def resolve(self, request: ResolveRequest) -> Resolved:
        argv = self.command_line(request)
        env = {**os.environ, **self.extra_env} if self.extra_env else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ResolverError(f"{self.name}: cannot start {argv[0]!r}: {exc}") from None
        try:
            stdout, stderr, code = await asyncio.wait_for(self._communicate(proc), self.timeout)
        except asyncio.TimeoutError:
            raise ResolverError(f"{self.name}: no answer within {self.timeout:g}s; process group killed") from None
        finally:
            # Timeout, oversize output or cancellation: leave no helper (or its children) running.
            if proc.returncode is None:
                _kill_group(proc)
            await self._reap(proc)
        if code == EXIT_NOT_FOUND:
            raise EpisodeNotFound(f"{self.name}: episode not found (exit 3)" + _stderr_suffix(stderr))
        if code != 0:
            raise ResolverError(f"{self.name}: exited with {code}" + _stderr_suffix(stderr))
        return self._parse(stdout)

    async def _communicate(self, proc: asyncio.subprocess.Process) -> tuple[bytes, bytes, int]:
        assert proc.stdout is not None and proc.stderr is not None
        stderr_task = asyncio.ensure_future(_read_tail(proc.stderr))
        try:
            chunks: list[bytes] = []
            size = 0
            while chunk := await proc.stdout.read(64 * 1024):
                size += len(chunk)
                if size > self.max_bytes:
                    raise ResolverError(f"{self.name}: output exceeds {self.max_bytes} bytes")
                chunks.append(chunk)
            code = await proc.wait()
            return b"".join(chunks), await stderr_task, code
        finally:
            if not stderr_task.done():
                stderr_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stderr_task

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        """wait() returns only once both pipes reach EOF, so drain them; a pipe kept open by an escaped grandchild
        must not hang the refresh, hence the bound."""

        async def drain(stream: asyncio.StreamReader | None) -> None:
            if stream is not None:
                while await stream.read(64 * 1024):
                    pass

        try:
            await asyncio.wait_for(asyncio.gather(drain(proc.stdout), drain(proc.stderr), proc.wait()), _REAP_SECONDS)
        except asyncio.TimeoutError:
            log.warning("%s: helper pid %s left a pipe open after exiting; not waiting for it", self.name, proc.pid)

    def _parse(self, stdout: bytes) -> Resolved:
        text = stdout.decode("utf-8", "replace").strip()
        where = f"{self.name}: output"
        if text.startswith("{"):
            return parse_json_answer(text.encode(), self.name, where)
        line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not line:
            raise ResolverError(f"{where} is empty")
        if not is_http_url(line):
            raise ResolverError(f"{where} is not an absolute http(s) URL: {redact_url(line)[:200]!r}")
        return Resolved(url=line, resolver=self.name)

    async def close(self) -> None:
        """Nothing is kept between calls: each resolve starts and reaps its own process."""


async def _read_tail(stream: asyncio.StreamReader) -> bytes:
    """Drain stderr so the child never blocks on a full pipe, keeping only the end."""
    kept = b""
    while chunk := await stream.read(64 * 1024):
        kept = (kept + chunk)[-_STDERR_KEEP:]
    return kept


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass


def _stderr_suffix(stderr: bytes) -> str:
    text = tail(stderr)
    return f": {text}" if text else ""
