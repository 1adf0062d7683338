"""Dashboard auth and edges over HTTP: session cookie, CSRF, the guard's rules, input validation, the pages."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_app
from bridge.web.session import COOKIE_NAME, SessionSigner
from tests.appfactory import AUTH, TOKEN, make_services
from tests.refresh_helpers import add_mapping

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, library_root: Path):  # type: ignore[no-untyped-def]
    services = make_services(tmp_path, roots=[library_root])
    client = await aiohttp_client(create_app(services))
    client.services = services
    return client


async def log_in(client: Any) -> tuple[str, str]:
    """(cookie value, CSRF token) of a fresh session."""
    response = await client.post("/login", data={"token": TOKEN, "next": "/ui/mappings"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/ui/mappings"
    cookie = response.cookies[COOKIE_NAME]
    page = await (await client.get("/", cookies={COOKIE_NAME: cookie.value})).text()
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)  # type: ignore[union-attr]
    return cookie.value, csrf


async def test_login_page_and_static_files_are_open(client) -> None:  # type: ignore[no-untyped-def]
    page = await client.get("/login")
    assert page.status == 200 and page.content_type == "text/html"
    text = await page.text()
    assert 'name="token"' in text and "htmx.min.js" in text
    script = re.search(r'src="(/static/htmx\.min\.js[^"]*)"', text).group(1)  # type: ignore[union-attr]
    served = await client.get(script)
    assert served.status == 200 and b"htmx" in await served.read()
    assert (await client.get("/static/style.css")).status == 200
    assert (await client.get("/static/%2e%2e/openapi.json")).status in (401, 403, 404)  # never served open


async def test_no_session_redirects_a_page_load_and_refuses_anything_else(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/ui/mappings?q=x", headers=HTML, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login?next=/ui/mappings"
    for method, path in (("GET", "/ui/mappings"), ("GET", "/"), ("POST", "/ui/refresh"), ("POST", "/ui/check"),
                         ("POST", "/ui/convert"), ("GET", "/ui/converts/0123456789abcdef"),
                         ("GET", "/ui/jobs/0123456789abcdef"), ("POST", "/logout")):
        refused = await client.request(method, path, allow_redirects=False)
        assert refused.status == 401, (method, path)
        assert (await refused.json())["error"] == "unauthorized"
    # the API token does not open the dashboard either: it takes the session only
    assert (await client.get("/ui/mappings", headers=AUTH)).status == 401


async def test_wrong_token_is_refused_and_sets_no_cookie(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/login", data={"token": "wrong-token-xxxxxxxx"}, allow_redirects=False)
    assert response.status == 401 and "That is not the API token." in await response.text()
    assert COOKIE_NAME not in response.cookies
    assert (await client.post("/login", data={"token": "x" * 600}, allow_redirects=False)).status == 400


async def test_session_cookie_attributes_and_safe_next(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/login", data={"token": TOKEN, "next": "//evil.example/x"}, allow_redirects=False)
    assert response.headers["Location"] == "/"  # only a path on this site
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert TOKEN not in header


async def test_cookie_is_not_accepted_on_the_api(client) -> None:  # type: ignore[no-untyped-def]
    cookie, _ = await log_in(client)
    for path in ("/api/mappings", "/api/events", "/openapi.json", "/metrics"):
        response = await client.get(path, cookies={COOKIE_NAME: cookie})
        assert response.status == 401, path
    assert (await client.get("/api/mappings", headers=AUTH)).status == 200


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(client, library_root: Path,  # type: ignore[no-untyped-def]
                                                                 fake_provider) -> None:
    m = add_mapping(client.services.store, library_root, fake_provider, 1)
    before = client.services.store.get(m["id"])
    cookie, csrf = await log_in(client)
    jar = {COOKIE_NAME: cookie}
    for headers, data in (({}, {"id": str(m["id"])}),
                          ({"X-CSRF-Token": "not-the-csrf-token"}, {"id": str(m["id"])}),
                          ({}, {"id": str(m["id"]), "csrf_token": "wrong"})):
        refused = await client.post("/ui/refresh", data=data, headers=headers, cookies=jar)
        assert refused.status == 403 and (await refused.json())["error"] == "csrf_failed"
    assert (await client.post("/ui/check", data={"all": "1"}, cookies=jar)).status == 403
    assert (await client.post("/logout", cookies=jar, allow_redirects=False)).status == 403
    assert client.services.store.get(m["id"]) == before and fake_provider.resolve_calls == []

    # a CSRF token of another session does not do either
    _, other_csrf = await log_in(client)
    assert other_csrf != csrf
    assert (await client.post("/ui/refresh", data={"id": str(m["id"])}, headers={"X-CSRF-Token": other_csrf},
                              cookies=jar)).status == 403
    # the right one, as header or as form field
    ok = await client.post("/ui/refresh", data={"id": "999999", "csrf_token": csrf}, cookies=jar)
    assert ok.status == 404 and (await ok.json())["error"] == "not_found"


async def test_tampered_expired_and_logged_out_sessions_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    cookie, csrf = await log_in(client)
    payload, mac = cookie.split(".")
    for bad in (payload + "." + mac[:-2] + "AA", payload[:-1] + "x." + mac, "garbage", "a.b.c", "." * 3000):
        assert (await client.get("/ui/log", cookies={COOKIE_NAME: bad})).status == 401, bad
    signer = SessionSigner(TOKEN, lifetime_seconds=60)
    _, old = signer.issue(now=time.time() - 120)
    assert (await client.get("/ui/log", cookies={COOKIE_NAME: old})).status == 401
    _, other_key = SessionSigner("another-api-token-123").issue()
    assert (await client.get("/ui/log", cookies={COOKIE_NAME: other_key})).status == 401

    assert (await client.get("/ui/log", cookies={COOKIE_NAME: cookie})).status == 200
    out = await client.post("/logout", data={"csrf_token": csrf}, cookies={COOKIE_NAME: cookie}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert (await client.get("/ui/log", cookies={COOKIE_NAME: cookie})).status == 401  # revoked


async def test_bad_input_is_a_json_4xx(client) -> None:  # type: ignore[no-untyped-def]
    cookie, csrf = await log_in(client)
    jar, post = {COOKIE_NAME: cookie}, {"X-CSRF-Token": csrf}
    for query in ("page=abc", "page=-1", "state=bogus", "q=" + "x" * 201, "q=ab%00cd", "q=%1Bxyz"):
        response = await client.get(f"/ui/mappings?{query}", cookies=jar)
        assert response.status == 400 and (await response.json())["error"] == "invalid_field", query
    for data in ({}, {"id": "x"}, {"site": "fake"}, {"site": "fake", "slug": "s", "season": "-3"},
                 {"slug": "y" * 201, "site": "a"}):
        response = await client.post("/ui/refresh", data=data, headers=post, cookies=jar)
        assert response.status == 400, data
        assert set(await response.json()) == {"error", "detail"}
    assert (await client.get("/ui/jobs/0123456789abcdef", cookies=jar)).status == 404
    assert (await client.get("/ui/jobs/not-a-job", cookies=jar)).status == 404
    assert (await client.get("/ui/checks/0123456789abcdef", cookies=jar)).status == 404
    assert (await client.get("/ui/integrations/99/status", cookies=jar)).status == 404


async def test_pages_render_with_data(client, library_root: Path, fake_provider) -> None:  # type: ignore[no-untyped-def]
    store = client.services.store
    rows = [add_mapping(store, library_root, fake_provider, e, expired=False) for e in (1, 2, 3)]
    store.update(rows[1]["id"], {"state": "dead", "expires_at": "2000-01-01T00:00:00.000000Z"})
    store.log_refresh(rows[0]["id"], trigger="manual", reason="dashboard", outcome="refreshed",
                      old_url="https://cdn.example/a?sig=SECRET1", new_url="https://cdn.example/b?sig=SECRET2")
    cookie, _ = await log_in(client)
    jar = {COOKIE_NAME: cookie}
    health = await (await client.get("/", cookies=jar)).text()
    assert re.search(r'data-state="dead">\s*<span class="count">1</span>', health)
    assert re.search(r'data-state="ok">\s*<span class="count">2</span>', health)
    assert 'id="expired-count">1<' in health and "<svg" in health
    table = await (await client.get("/ui/mappings?q=S01E02", cookies=jar, headers={"HX-Request": "true",
                                                                                     "HX-Target": "mapping-table"})).text()
    assert table.startswith('\n<div id="mapping-table"') or table.lstrip().startswith('<div id="mapping-table"')
    assert f'id="mapping-{rows[1]["id"]}"' in table and f'id="mapping-{rows[0]["id"]}"' not in table
    log = await (await client.get("/ui/log", cookies=jar)).text()
    assert "https://cdn.example/a?…" in log and "SECRET1" not in log and "SECRET2" not in log
    page = await client.get("/ui/integrations", cookies=jar)
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"


def test_search_index_follows_inserts_renames_and_deletes(db) -> None:  # type: ignore[no-untyped-def]
    from bridge.mappings import MappingStore
    from bridge.web.queries import mapping_page

    store = MappingStore(db)
    a = store.upsert({"strm_path": "/media/Frieren/S01E01.strm", "slug": "frieren", "site": "aniworld.to",
                      "season": 1, "episode": 1})
    store.upsert({"strm_path": "/media/Oshi/S01E01.strm", "slug": "oshi-no-ko", "site": "aniworld.to",
                  "season": 1, "episode": 1})
    assert [r["id"] for r in mapping_page(db.conn, q="FRIER").rows] == [a["id"]]  # case-insensitive substring
    assert mapping_page(db.conn, q="S01E01").total == 2
    assert mapping_page(db.conn, q='no"quote').total == 0  # quotes are data, not query syntax
    db.conn.execute("update mappings set strm_path = '/media/Sousou/S01E01.strm', slug = 'sousou' where id = ?",
                    (a["id"],))
    store.update(a["id"], {"state": "dead"})  # a state change leaves the index alone
    assert mapping_page(db.conn, q="frieren").total == 0 and mapping_page(db.conn, q="sousou").total == 1
    assert mapping_page(db.conn, q="sousou", state="dead").total == 1
    assert mapping_page(db.conn, q="sousou", state="ok").total == 0
    db.conn.execute("delete from mappings where id = ?", (a["id"],))
    assert mapping_page(db.conn, q="sousou").total == 0 and mapping_page(db.conn, q="oshi").total == 1
    assert mapping_page(db.conn, q="os").total == 1  # two characters: a plain substring scan
    assert mapping_page(db.conn, q="/media/").total == 1 and mapping_page(db.conn, q="/media/Oshi/").total == 1
    assert mapping_page(db.conn, q="/Oshi").total == 0  # a leading slash means a path prefix, not a substring
    plan = " ".join(str(r) for r in db.conn.execute("explain query plan select state, count(*) from mappings group by state"))
    assert "idx_mappings_state" in plan


async def test_series_and_stale_refresh_start_jobs_and_report_progress(aiohttp_client, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                        library_root: Path, fake_provider) -> None:
    import asyncio

    services = make_services(tmp_path, text=(
        f'[refresh]\ncooldown_seconds = 0\nresolvers = ["http"]\n[resolvers.http]\nurl = "{fake_provider.base_url}/resolve"\n'),
        roots=[library_root])
    client = await aiohttp_client(create_app(services))
    rows = [add_mapping(services.store, library_root, fake_provider, e) for e in (1, 2)]  # expired links
    rows.append(add_mapping(services.store, library_root, fake_provider, 3, slug="other"))
    cookie, csrf = await log_in(client)
    jar, post = {COOKIE_NAME: cookie}, {"X-CSRF-Token": csrf}

    async def run(form: dict[str, str]) -> str:
        fragment = await (await client.post("/ui/refresh", data=form, headers=post, cookies=jar)).text()
        poll = re.search(r'hx-get="(/ui/jobs/[0-9a-f]{16}[^"]*)"', fragment)
        assert poll, fragment
        for _ in range(200):
            fragment = await (await client.get(poll.group(1).replace("&amp;", "&"), cookies=jar)).text()
            if 'data-state="done"' in fragment:
                return fragment
            await asyncio.sleep(0.05)
        raise AssertionError(fragment)

    done = await run({"site": "fake", "slug": "show"})
    assert "2 / 2" in done and "2 refreshed" in done and "Refresh show" in done
    assert services.store.get(rows[2]["id"])["resolved_url"] == rows[2]["resolved_url"]  # another series
    services.store.update(rows[2]["id"], {"state": "dead"})
    done = await run({"stale": "1"})
    assert "1 / 1" in done and "1 refreshed" in done and "everything stale" in done
    assert services.store.get(rows[2]["id"])["state"] == "ok"
    nothing = await (await client.post("/ui/refresh", data={"stale": "1"}, headers=post, cookies=jar)).text()
    assert "nothing to refresh" in nothing


async def _poll_convert(client: Any, jar: dict[str, str], fragment: str) -> str:
    """Follow a running conversion's own polling URL until it says it is done (deadline, not a fixed sleep)."""
    deadline = time.monotonic() + 30
    while 'data-state="running"' in fragment:
        assert time.monotonic() < deadline, fragment
        poll = re.search(r'hx-get="(/ui/converts/[0-9a-f]{16}[^"]*)"', fragment).group(1)  # type: ignore[union-attr]
        answer = await client.get(poll.replace("&amp;", "&"), cookies=jar)
        assert answer.status == 200
        fragment = await answer.text()
    return fragment


async def test_convert_a_season_to_stable_links_and_back(aiohttp_client, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                         library_root: Path, fake_provider) -> None:
    from bridge.play.signing import play_link_id
    from bridge.strm import read_strm
    from tests.play.test_convert import RecordingTarget

    public = "http://bridge.lan:8765"
    from bridge.config import load_config
    from bridge.wiring import build_services
    from tests.appfactory import write_config

    config = write_config(tmp_path, roots=[library_root])
    config.write_text(config.read_text().replace("[server]\n", f'[server]\npublic_url = "{public}"\n', 1))
    target = RecordingTarget()
    services = build_services(load_config(config, env={}), extra_targets={"recorder": target})
    client = await aiohttp_client(create_app(services))
    season1 = [add_mapping(services.store, library_root, fake_provider, e, expired=False) for e in (1, 2, 3)]
    other = add_mapping(services.store, library_root, fake_provider, 1, slug="other", expired=False)
    before = {m["strm_path"]: Path(m["strm_path"]).read_bytes() for m in season1 + [other]}
    cookie, csrf = await log_in(client)
    jar, post = {COOKIE_NAME: cookie}, {"X-CSRF-Token": csrf}
    form = {"to": "stable", "site": "fake", "slug": "show", "season": "1"}

    page = await (await client.get("/ui/mappings", cookies=jar)).text()
    assert page.count("Convert to stable links") == 4 and page.count("Back to direct URLs") == 4  # 2 series, 2 seasons

    # CSRF enforced: no token, a wrong one; nothing written
    for headers, data in (({}, form), ({"X-CSRF-Token": "wrong"}, form), ({}, {**form, "run": "1", "csrf_token": "x"})):
        refused = await client.post("/ui/convert", data=data, headers=headers, cookies=jar)
        assert refused.status == 403 and (await refused.json())["error"] == "csrf_failed"

    # bad input: a clear JSON 400
    for bad in ({**form, "to": "sideways"}, {**form, "run": "yes"}, {"to": "stable", "season": "1"},
                {**form, "season": "-1"}):
        answer = await client.post("/ui/convert", data=bad, headers=post, cookies=jar)
        assert answer.status == 400 and set(await answer.json()) == {"error", "detail"}, bad

    # the dry run counts, changes nothing and queues nothing
    preview = await client.post("/ui/convert", data=form, headers=post, cookies=jar)
    assert preview.status == 200
    text = await preview.text()
    assert 'data-would="3"' in text and "3 would_convert" in text and "Convert 3 file(s)" in text
    assert {p: Path(p).read_bytes() for p in before} == before and target.sent == []
    confirm = re.search(r"hx-vals='([^']+)'", text).group(1)  # type: ignore[union-attr]
    import html
    import json
    assert json.loads(html.unescape(confirm)) == {**form, "run": "1"}

    # the real run: background, polled to the end, every file of the season rewritten through the safe writer
    started = await client.post("/ui/convert", data=json.loads(html.unescape(confirm)), headers=post, cookies=jar)
    assert started.status == 200
    done = await _poll_convert(client, jar, await started.text())
    assert 'data-state="done"' in done and "3 converted" in done and "3 media-server refresh(es) queued" in done
    for m in season1:
        written = read_strm(m["strm_path"])
        assert written.startswith(f"{public}/play/{m['id']}?sig=") and play_link_id(written) == m["id"]
        assert Path(m["strm_path"]).read_text().endswith("\n")
        assert services.store.get(m["id"])["resolved_url"] == m["resolved_url"]  # the row keeps the direct URL
        assert not list(Path(m["strm_path"]).parent.glob("*.tmp*"))  # temp file renamed, none left over
    assert Path(other["strm_path"]).read_bytes() == before[other["strm_path"]]  # another series untouched
    assert sorted(p["path"] for p in target.sent) == sorted(m["strm_path"] for m in season1)  # rescans queued

    again = await client.post("/ui/convert", data=form, headers=post, cookies=jar)
    assert "nothing would change" in await again.text()

    # and back to the direct URLs: the files hold exactly what they held before
    back = await client.post("/ui/convert", data={**form, "to": "direct", "run": "1"}, headers=post, cookies=jar)
    finished = await _poll_convert(client, jar, await back.text())
    assert "3 converted" in finished and "back to direct URLs" in finished
    assert {p: Path(p).read_bytes() for p in before} == before
    assert (await client.get("/ui/converts/0123456789abcdef", cookies=jar)).status == 404
    await services.stop()


async def test_convert_to_stable_without_public_url_explains_instead_of_failing(client, library_root: Path,  # type: ignore[no-untyped-def]
                                                                                fake_provider) -> None:
    m = add_mapping(client.services.store, library_root, fake_provider, 1, expired=False)
    before = Path(m["strm_path"]).read_bytes()
    cookie, csrf = await log_in(client)
    for run in ("", "1"):
        answer = await client.post("/ui/convert", data={"to": "stable", "site": "fake", "slug": "show", "run": run},
                                   headers={"X-CSRF-Token": csrf}, cookies={COOKIE_NAME: cookie})
        assert answer.status == 200
        text = await answer.text()
        assert 'class="convert needs-config"' in text and "server.public_url is not set" in text
    assert Path(m["strm_path"]).read_bytes() == before
    direct = await client.post("/ui/convert", data={"to": "direct", "site": "fake", "slug": "show"},
                               headers={"X-CSRF-Token": csrf}, cookies={COOKIE_NAME: cookie})
    assert direct.status == 200 and "nothing would change" in await direct.text()  # direct needs no public URL
