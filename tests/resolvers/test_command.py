"""The command resolver runs real child processes (sys.executable) and must clean up after them."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.resolvers.base import EpisodeNotFound, ResolverError
from bridge.resolvers.command import CommandResolver
from tests.resolvers.util import make_request


def script(tmp_path: Path, body: str, name: str = "helper.py") -> str:
    path = tmp_path / name
    path.write_text("import json, os, sys, time\n" + body)
    return str(path)


def make(argv: list[str], **options: Any) -> CommandResolver:
    return CommandResolver({"argv": argv, **options})


async def test_bare_url_line(tmp_path: Path) -> None:
    helper = script(tmp_path, "print()\nprint('  https://cdn.example/v.mp4?t=' + sys.argv[1])\nprint('ignored')\n")
    resolved = await make([sys.executable, helper, "{slug}"]).resolve(make_request("show"))
    assert resolved.url == "https://cdn.example/v.mp4?t=show"
    assert resolved.resolver == "command" and resolved.headers is None


async def test_json_answer(tmp_path: Path) -> None:
    helper = script(
        tmp_path,
        "print(json.dumps({'url': 'https://cdn.example/' + sys.argv[1], 'headers': {'Referer': 'https://p/'},"
        " 'provider': 'VOE', 'expires_at': '2030-01-01T00:00:00Z'}))\n",
    )
    resolved = await make([sys.executable, helper, "{season:02d}x{episode:02d}"]).resolve(make_request(season=1, episode=7))
    assert resolved.url == "https://cdn.example/01x07"
    assert resolved.headers == {"Referer": "https://p/"}
    assert resolved.provider == "VOE"
    assert resolved.expires_at == "2030-01-01T00:00:00.000000Z"


async def test_exit_1_reports_the_stderr_tail(tmp_path: Path) -> None:
    helper = script(tmp_path, "sys.stderr.write('noise\\n' * 500 + 'provider said: boom\\n')\nsys.exit(1)\n")
    with pytest.raises(ResolverError) as caught:
        await make([sys.executable, helper]).resolve(make_request())
    message = str(caught.value)
    assert not isinstance(caught.value, EpisodeNotFound)
    assert "exited with 1" in message and message.endswith("provider said: boom")
    assert len(message) < 400


async def test_exit_3_means_episode_not_found(tmp_path: Path) -> None:
    helper = script(tmp_path, "sys.stderr.write('no such episode')\nsys.exit(3)\n")
    with pytest.raises(EpisodeNotFound, match="no such episode"):
        await make([sys.executable, helper]).resolve(make_request())


@pytest.mark.parametrize(
    ("stdout", "message"),
    [("", "is empty"), ("not a url\n", "not an absolute http"), ("{broken", "not JSON"), ('{"nourl": 1}', "no string 'url'")],
)
async def test_unusable_output(tmp_path: Path, stdout: str, message: str) -> None:
    helper = script(tmp_path, f"sys.stdout.write({stdout!r})\n")
    with pytest.raises(ResolverError, match=message):
        await make([sys.executable, helper]).resolve(make_request())


async def test_output_is_capped(tmp_path: Path) -> None:
    helper = script(tmp_path, "sys.stdout.write('https://x/' + 'a' * 3_000_000)\n")
    with pytest.raises(ResolverError, match="output exceeds 1048576 bytes"):
        await make([sys.executable, helper]).resolve(make_request())


def _gone(pid: int) -> bool:
    """Dead, or a zombie waiting for an init that may never reap it in a container."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="process groups are POSIX")
async def test_timeout_kills_the_process_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids.json"
    helper = script(
        tmp_path,
        "import subprocess\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r}, 'w').write(json.dumps([os.getpid(), child.pid]))\n"
        "time.sleep(60)\n",
    )
    started = time.monotonic()
    with pytest.raises(ResolverError, match=r"no answer within 0\.5s; process group killed"):
        await make([sys.executable, helper], timeout_seconds=0.5).resolve(make_request())
    assert time.monotonic() - started < 3
    parent, child = json.loads(pids.read_text())
    deadline = time.monotonic() + 3
    while not (_gone(parent) and _gone(child)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(parent), "the helper survived its timeout"
    assert _gone(child), "the helper's child survived the timeout"


async def test_placeholders_are_literal_arguments_without_a_shell(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("still here")
    out = tmp_path / "argv.json"
    helper = script(tmp_path, f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\nprint('https://x/ok')\n")
    slug = f"x; rm -rf {victim} && touch {tmp_path}/pwned $(touch {tmp_path}/pwned2) `id`"
    resolver = make(
        [sys.executable, helper, "{slug}", "--lang={language}", "{previous_url}", "{provider}", "{reason}", "{site}/{slug}"]
    )
    await resolver.resolve(make_request(slug, language="German Sub", previous_url=None, reason="plex"))
    assert json.loads(out.read_text()) == [slug, "--lang=German Sub", "", "", "plex", f"example.org/{slug}"]
    assert victim.read_text() == "still here"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


async def test_braces_in_values_are_not_formatted_again(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    helper = script(tmp_path, f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\nprint('https://x/ok')\n")
    await make([sys.executable, helper, "{slug}", "{{literal}}"]).resolve(make_request("{site}{0}"))
    assert json.loads(out.read_text()) == ["{site}{0}", "{literal}"]


async def test_env_is_added_to_the_inherited_environment(tmp_path: Path) -> None:
    helper = script(tmp_path, "print('https://x/' + os.environ['HELPER_TOKEN'] + '/' + str('PATH' in os.environ))\n")
    resolved = await make([sys.executable, helper], env={"HELPER_TOKEN": "abc"}).resolve(make_request())
    assert resolved.url == "https://x/abc/True"


async def test_format_spec_on_a_missing_value_is_a_resolver_error(tmp_path: Path) -> None:
    helper = script(tmp_path, "print('https://x/')\n")
    with pytest.raises(ResolverError, match="cannot build the command line"):
        await make([sys.executable, helper, "{season:02d}"]).resolve(make_request(season=None))
