"""The registry: built-ins, aliases through `type`, entry-point plugins and start-up errors that name the key."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bridge.resolvers import registry
from bridge.resolvers.base import Resolved, Resolver, ResolverContext, ResolveRequest
from bridge.resolvers.command import CommandResolver
from bridge.resolvers.http import HttpResolver
from bridge.resolvers.redirect import RedirectResolver
from bridge.resolvers.registry import BUILTIN, create_chain, create_resolver
from tests.resolvers.util import make_request


def test_builtins_are_registered() -> None:
    assert set(BUILTIN) == {"http", "command", "redirect", "aniworld", "ytdlp"}


def test_create_builtin_resolvers() -> None:
    http = create_resolver("http", {"url": "http://127.0.0.1:9/resolve"})
    command = create_resolver("command", {"argv": [sys.executable, "-c", "print(1)"]})
    redirect = create_resolver("redirect", {})
    assert isinstance(http, HttpResolver) and http.name == "http"
    assert isinstance(command, CommandResolver) and command.name == "command"
    assert isinstance(redirect, RedirectResolver) and redirect.name == "redirect"
    for resolver in (http, command, redirect):
        assert isinstance(resolver, Resolver)


def test_options_are_not_mutated() -> None:
    section = {"type": "http", "url": "http://127.0.0.1:9/resolve"}
    create_resolver("mine", section)
    assert section == {"type": "http", "url": "http://127.0.0.1:9/resolve"}


def test_chain_with_alias_uses_the_named_type_and_keeps_the_instance_name() -> None:
    sections: dict[str, dict[str, Any]] = {
        "primary": {"type": "http", "url": "http://127.0.0.1:9/a", "timeout_seconds": 3},
        "backup": {"type": "http", "url": "http://127.0.0.1:9/b"},
    }
    chain = create_chain(["primary", "backup", "redirect"], sections)
    assert [type(r) for r in chain] == [HttpResolver, HttpResolver, RedirectResolver]
    assert [r.name for r in chain] == ["primary", "backup", "redirect"]
    assert chain[0].url.endswith("/a") and chain[0].timeout == 3.0  # type: ignore[attr-defined]
    assert chain[1].url.endswith("/b")  # type: ignore[attr-defined]


def test_alias_errors_name_the_alias_key() -> None:
    with pytest.raises(ValueError, match=r"resolvers\.primary\.url: required"):
        create_chain(["primary"], {"primary": {"type": "http"}})


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        create_chain(["nope"], {"mine": {"type": "http", "url": "http://127.0.0.1:9/"}})
    message = str(caught.value)
    assert "'nope'" in message
    for known in ("http", "command", "redirect", "aniworld", "ytdlp", "mine"):
        assert known in message
    with pytest.raises(ValueError, match=r"unknown resolver 'nope' \(known: .*http"):
        create_resolver("nope", {})


def test_unknown_type_names_the_type_key() -> None:
    with pytest.raises(ValueError, match=r"resolvers\.mine\.type: unknown resolver type 'htp'"):
        create_chain(["mine"], {"mine": {"type": "htp"}})


def test_duplicate_chain_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        create_chain(["redirect", "redirect"], {})


@pytest.mark.parametrize(
    ("name", "options", "key"),
    [
        ("http", {}, "resolvers.http.url"),
        ("http", {"url": "ftp://host/x"}, "resolvers.http.url"),
        ("http", {"url": "http://127.0.0.1:9/", "timeout_seconds": -1}, "resolvers.http.timeout_seconds"),
        ("http", {"url": "http://127.0.0.1:9/", "timeout_seconds": True}, "resolvers.http.timeout_seconds"),
        ("http", {"url": "http://127.0.0.1:9/", "headers": {"X": 1}}, "resolvers.http.headers"),
        ("http", {"url": "http://127.0.0.1:9/", "timout_seconds": 5}, "resolvers.http.timout_seconds"),
        ("command", {}, "resolvers.command.argv"),
        ("command", {"argv": []}, "resolvers.command.argv"),
        ("command", {"argv": "echo hi"}, "resolvers.command.argv"),
        ("command", {"argv": [sys.executable, "{sluggy}"]}, "resolvers.command.argv"),
        ("command", {"argv": [sys.executable, "{slug.__class__}"]}, "resolvers.command.argv"),
        ("command", {"argv": ["/definitely/not/here"]}, "resolvers.command.argv"),
        ("command", {"argv": [sys.executable], "env": ["A=1"]}, "resolvers.command.env"),
        ("redirect", {"max_redirects": "ten"}, "resolvers.redirect.max_redirects"),
        ("redirect", {"headers": "Authorization: x"}, "resolvers.redirect.headers"),
    ],
)
def test_bad_option_names_the_key(name: str, options: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError) as caught:
        create_resolver(name, options)
    assert str(caught.value).startswith(key + ":") or str(caught.value).startswith(key + "[")


# ---- plugins -------------------------------------------------------------------------------------------

PLUGIN_SOURCE = '''
from bridge.resolvers.base import Resolved


class EchoResolver:
    name = "echo"

    def __init__(self, options, context):
        if "prefix" not in options:
            raise ValueError("resolvers.echo.prefix: required option is missing")
        self.prefix = options["prefix"]
        self.context = context
        self.closed = False

    async def resolve(self, request):
        return Resolved(url=f"{self.prefix}/{request.identity.slug}", resolver=self.name)

    async def close(self):
        self.closed = True


def factory(options, context):
    return EchoResolver(options, context)
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real (if tiny) installed distribution on sys.path, found by importlib.metadata like a pip install."""
    module = "strm_bridge_echo_plugin_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE)
    dist = tmp_path / "strm_bridge_echo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: strm-bridge-echo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[strm_bridge.resolvers]\necho = {module}:factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


async def test_entry_point_plugin_is_created_and_resolves(installed_plugin: str) -> None:
    context = ResolverContext(user_agent="test-agent")
    resolver = create_resolver("echo", {"prefix": "http://127.0.0.1:9"}, context)
    assert type(resolver).__module__ == installed_plugin
    assert resolver.context is context  # type: ignore[attr-defined]
    resolved = await resolver.resolve(make_request("my-show"))
    assert resolved == Resolved(url="http://127.0.0.1:9/my-show", resolver="echo")
    await resolver.close()
    assert resolver.closed  # type: ignore[attr-defined]
    assert "echo" in registry.known_types()


def test_plugin_in_chain_and_through_an_alias(installed_plugin: str) -> None:
    chain = create_chain(
        ["echo", "other"],
        {"echo": {"prefix": "http://a"}, "other": {"type": "echo", "prefix": "http://b"}},
    )
    assert [r.prefix for r in chain] == ["http://a", "http://b"]  # type: ignore[attr-defined]


def test_plugin_option_error_propagates(installed_plugin: str) -> None:
    with pytest.raises(ValueError, match=r"resolvers\.echo\.prefix"):
        create_resolver("echo", {})


def _fake_entry_points(*entries: importlib.metadata.EntryPoint) -> Any:
    def entry_points(**selection: Any) -> importlib.metadata.EntryPoints:
        assert selection == {"group": registry.ENTRY_POINT_GROUP}
        return importlib.metadata.EntryPoints(entries)

    return entry_points


def make_echo(options: dict[str, Any], context: ResolverContext | None) -> Resolver:
    class Echo:
        name = "echo2"

        async def resolve(self, request: ResolveRequest) -> Resolved:
            return Resolved(url="http://127.0.0.1:9/x", resolver=self.name)

        async def close(self) -> None:
            pass

    return Echo()


def test_monkeypatched_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    good = importlib.metadata.EntryPoint("echo2", f"{__name__}:make_echo", registry.ENTRY_POINT_GROUP)
    broken = importlib.metadata.EntryPoint("broken", "no_such_module_xyz:factory", registry.ENTRY_POINT_GROUP)
    wrong = importlib.metadata.EntryPoint("wrong", f"{__name__}:not_a_resolver", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(good, broken, wrong))
    assert create_resolver("echo2", {}).name == "echo2"
    with pytest.raises(ValueError, match=r"resolvers\.broken: plugin 'no_such_module_xyz:factory' failed to load"):
        create_resolver("broken", {})
    with pytest.raises(ValueError, match=r"resolvers\.wrong: .* lacks name / resolve\(\) / close\(\)"):
        create_resolver("wrong", {})
    with pytest.raises(ValueError, match=r"known: .*broken.*echo2"):
        create_resolver("missing", {})


def not_a_resolver(options: dict[str, Any], context: ResolverContext | None) -> object:
    return object()


def test_builtin_wins_over_a_plugin_of_the_same_name(monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = importlib.metadata.EntryPoint("http", f"{__name__}:make_echo", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", _fake_entry_points(shadow))
    assert isinstance(create_resolver("http", {"url": "http://127.0.0.1:9/"}), HttpResolver)


# ---- optional extras -----------------------------------------------------------------------------------


def test_importing_the_registry_and_resolver_modules_does_not_import_the_extras() -> None:
    code = textwrap.dedent(
        """
        import sys
        import bridge.resolvers.registry, bridge.resolvers.aniworld, bridge.resolvers.ytdlp
        from bridge.resolvers.registry import create_chain
        create_chain(["http", "redirect"], {"http": {"url": "http://127.0.0.1:9/"}})
        assert "aniworld" not in sys.modules and "yt_dlp" not in sys.modules, sorted(sys.modules)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], timeout=30)


@pytest.mark.parametrize(
    ("name", "module", "message"),
    [
        ("aniworld", "aniworld", "pip install 'strm-bridge[aniworld]'"),
        ("ytdlp", "yt_dlp", "pip install 'strm-bridge[ytdlp]'"),
    ],
)
def test_missing_extra_is_a_clear_start_up_error(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str, message: str
) -> None:
    for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, loaded)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
    with pytest.raises(ValueError) as caught:
        create_resolver(name, {})
    assert str(caught.value).startswith(f"resolvers.{name}: ")
    assert message in str(caught.value)
