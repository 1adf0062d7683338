"""The dashboard driven in real headless Chromium (Debian's, through Playwright for Python) against a live bridge.

Each test logs in as a user would; screenshots of the main pages go to $STRM_BRIDGE_SCREENSHOTS, else
build/screenshots/ (gitignored).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator
from urllib.request import Request, urlopen

import pytest

from bridge.strm import read_strm
from tests.dashboard_harness import LiveBridge

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect
Page = playwright_sync.Page

CHROMIUM = "/usr/lib/chromium/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
SHOTS = Path(os.environ.get("STRM_BRIDGE_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "build" / "screenshots")
WAIT_MS = 15_000
FIXTURES = Path(__file__).parent / "fixtures" / "jellyfin"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Playwright started and stopped by this module: the sync API runs an event loop in this thread while it
    is up, which would break the pytest-asyncio tests that follow if it stayed up for the whole session (as
    pytest-playwright's session-scoped fixtures keep it)."""
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveBridge]:
    bridge = LiveBridge(tmp_path).start()
    try:
        yield bridge
    finally:
        bridge.stop()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, live: LiveBridge, token: str | None = None) -> None:
    page.goto(f"{live.base_url}/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("#token", token or live.token)
    page.click("#login")


def library(live: LiveBridge) -> dict[str, dict[str, Any]]:
    """Two series; frieren season 1 has expired links (the provider answers 403), one already marked dead."""
    rows = {}
    rows["f1"] = live.add_episode("frieren", 1, 1, expired=True, state="dead")
    for e in (2, 3, 4, 5):
        rows[f"f{e}"] = live.add_episode("frieren", 1, e, expired=True)
    rows["f2_1"] = live.add_episode("frieren", 2, 1, expired=False)
    rows["o1"] = live.add_episode("oshi-no-ko", 1, 1, expired=False)
    rows["o2"] = live.add_episode("oshi-no-ko", 1, 2, expired=False)
    return rows


def test_login_refuses_a_wrong_token_then_shows_health(page: Page, live: LiveBridge, console_errors: list[str]) -> None:
    library(live)
    log_in(page, live, token="not-the-token-at-all")
    expect(page.locator(".error")).to_have_text("That is not the API token.")
    expect(page).to_have_url(re.compile(r"/login"))
    assert not [c for c in page.context.cookies() if c["name"] == "strm_bridge_session"]
    shot(page, "01-login-refused")
    assert console_errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    console_errors.clear()  # the refused login answers 401, which the browser reports; nothing else may fail

    page.fill("#token", live.token)
    page.click("#login")
    expect(page).to_have_url(f"{live.base_url}/")
    expect(page.locator('.tile[data-state="dead"] .count')).to_have_text("1")
    expect(page.locator('.tile[data-state="ok"] .count')).to_have_text("7")
    expect(page.locator("svg.chart")).to_be_visible()
    expect(page.locator("#expired-count")).to_have_text("5")  # frieren season 1: expired a minute ago
    assert page.locator("svg.chart rect.bar").count() == 24
    cookie = next(c for c in page.context.cookies() if c["name"] == "strm_bridge_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot(page, "02-health")

    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(f"{live.base_url}/ui/mappings")
    expect(page).to_have_url(re.compile(r"/login\?next=/ui/mappings"))
    assert console_errors == []


def test_search_and_refresh_one_episode(page: Page, live: LiveBridge, console_errors: list[str]) -> None:
    rows = library(live)
    log_in(page, live)
    page.goto(f"{live.base_url}/ui/mappings")
    expect(page.locator("tr.episode")).to_have_count(8)
    page.fill("#search", "oshi")
    expect(page.locator("tr.episode")).to_have_count(2)
    expect(page.locator("#result-count")).to_contain_text("2 mapping(s) matching “oshi”")
    page.fill("#search", "frieren S01E01")  # the file name: the search covers paths too
    expect(page.locator("tr.episode")).to_have_count(1)
    row = page.locator(f"#mapping-{rows['f1']['id']}")
    expect(row.locator(".badge")).to_have_text("dead")
    shot(page, "03-mappings-search")

    row.locator("button.refresh-episode").click()
    expect(row.locator(".badge")).to_have_text("ok", timeout=WAIT_MS)
    expect(row.locator(".outcome")).to_contain_text("refreshed")
    stored = live.mapping(rows["f1"]["id"])
    assert stored["state"] == "ok" and stored["resolved_url"] != rows["f1"]["resolved_url"]
    assert read_strm(stored["strm_path"]) == stored["resolved_url"]
    shot(page, "04-episode-refreshed")
    assert console_errors == []


def test_refresh_a_season_and_watch_its_progress(page: Page, live: LiveBridge, console_errors: list[str]) -> None:
    rows = library(live)
    log_in(page, live)
    page.goto(f"{live.base_url}/ui/mappings?q=frieren")
    season = page.locator('tr.season[data-slug="frieren"][data-season="1"]')
    season.locator("button.refresh-season").click()
    job = page.locator("#activity .job")
    expect(job).to_have_attribute("data-state", "running")  # five resolves of 0.25 s, one at a time
    expect(job.locator("progress")).to_have_attribute("max", "5")
    seen = set()
    for _ in range(200):
        text = job.locator(".progress-text").text_content() or ""
        seen.add(text)
        if job.get_attribute("data-state") == "done":
            break
        page.wait_for_timeout(50)
    expect(job).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    expect(job.locator(".progress-text")).to_have_text("5 / 5")
    expect(job.locator(".counts")).to_contain_text("5 refreshed")
    assert len(seen) >= 2, seen  # the page showed intermediate progress, not only the end
    # the table reloads when the job is done: every season 1 row shows ok
    for e in range(1, 6):
        expect(page.locator(f"#mapping-{rows[f'f{e}']['id']} .badge")).to_have_text("ok", timeout=WAIT_MS)
    assert live.mapping(rows["f2_1"]["id"])["resolved_url"] == rows["f2_1"]["resolved_url"]  # season 2 untouched
    shot(page, "05-season-refreshed")
    assert console_errors == []


def test_check_marks_a_dead_link(page: Page, live: LiveBridge, console_errors: list[str]) -> None:
    rows = library(live)
    live.run(lambda: live.provider.remove_episode("oshi-no-ko/1/2"))  # the CDN now answers 404
    log_in(page, live)
    expect(page.locator('.tile[data-state="dead"] .count')).to_have_text("1")
    page.click("#check-all")
    check = page.locator("#check-result .check")
    expect(check).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    expect(check.locator(".progress-text")).to_have_text("8 / 8")
    # five expired links (403 past their expiry, the frieren S1 ones) and the removed one are dead
    expect(check.locator(".counts")).to_contain_text("6 dead")
    expect(check.locator(".problems")).to_contain_text(f"mapping {rows['o2']['id']}: dead (HTTP 404)")
    expect(page.locator('.tile[data-state="dead"] .count')).to_have_text("6", timeout=WAIT_MS)
    stored = live.mapping(rows["o2"]["id"])
    assert stored["state"] == "dead" and stored["last_status"] == "dead" and stored["last_checked_at"]
    assert live.mapping(rows["o1"]["id"])["state"] == "ok"
    shot(page, "06-check-done")

    page.goto(f"{live.base_url}/ui/mappings?state=dead")
    expect(page.locator("tr.episode")).to_have_count(6)
    expect(page.locator(f"#mapping-{rows['o2']['id']} .badge")).to_have_text("dead")
    assert console_errors == []


def test_integrations_page(page: Page, live: LiveBridge, console_errors: list[str]) -> None:
    log_in(page, live)
    page.click("text=Integrations")
    expect(page).to_have_url(f"{live.base_url}/ui/integrations")
    jellyfin = page.locator('#components tr[data-name="jellyfin"]')
    expect(jellyfin.locator(".reach")).to_have_attribute("data-reachable", "yes", timeout=WAIT_MS)
    expect(page.locator('#components tr[data-name="plex"]')).to_contain_text("not configured")
    expect(page.locator('#components tr[data-name="slow-fake"]')).to_contain_text("in process", timeout=WAIT_MS)
    source = page.locator("#source-jellyfin")
    expect(source.locator('[data-field="url"]')).to_have_text(f"{live.base_url}/webhooks/jellyfin")
    expect(source.locator('[data-field="header"]').nth(1)).to_have_text("X-Api-Key: jellyfin-hook-token-1234")
    source.locator("summary").click()
    expect(source.locator('[data-field="template"]')).to_contain_text("NotificationType")
    expect(page.locator("#source-plex [data-field=url]")).to_have_text(
        f"{live.base_url}/webhooks/plex?token={live.token}")
    expect(page.locator(".warning")).to_contain_text("loopback")
    shot(page, "07-integrations")

    # something to show on the log page: a refresh from the dashboard and a webhook from Jellyfin
    rows = library(live)
    page.goto(f"{live.base_url}/ui/mappings?q=frieren+S01E01")
    page.locator(f"#mapping-{rows['f1']['id']} button.refresh-episode").click()
    expect(page.locator(f"#mapping-{rows['f1']['id']} .outcome")).to_contain_text("refreshed", timeout=WAIT_MS)
    webhook = Request(f"{live.base_url}/webhooks/jellyfin", method="POST",
                      data=(FIXTURES / "template_playback_start.json").read_bytes(),
                      headers={"Content-Type": "application/json", "X-Api-Key": "jellyfin-hook-token-1234"})
    assert urlopen(webhook, timeout=10).status == 202

    page.click("text=Refresh log")
    expect(page.locator("h1").first).to_have_text("Refresh log")
    expect(page.locator("#refresh-log tbody tr").first).to_contain_text("refreshed")
    page.reload()
    expect(page.locator("#events tbody tr").first).to_contain_text("jellyfin", timeout=WAIT_MS)
    shot(page, "08-log")
    assert console_errors == []


def teardown_module() -> None:
    if SHOTS.exists() and not any(SHOTS.iterdir()):
        shutil.rmtree(SHOTS)


def test_convert_a_season_to_stable_links(page: Page, tmp_path: Path, console_errors: list[str]) -> None:
    """Preview first (nothing written), then the real run with its outcome shown in place: the files hold /play/ links."""
    from bridge.play.signing import play_link_id

    live = LiveBridge(tmp_path, public_url=True).start()
    try:
        rows = library(live)
        before = {key: read_strm(row["strm_path"]) for key, row in rows.items()}
        log_in(page, live)
        page.goto(f"{live.base_url}/ui/mappings?q=frieren")
        season = page.locator('tr.season[data-slug="frieren"][data-season="1"]')
        season.locator("button.convert-stable-season").click()
        preview = page.locator("#activity .convert.preview")
        expect(preview).to_have_attribute("data-would", "5", timeout=WAIT_MS)
        assert {key: read_strm(row["strm_path"]) for key, row in rows.items()} == before  # the dry run wrote nothing
        preview.locator("button.convert-confirm").click()
        run = page.locator("#activity .convert[data-state]")
        expect(run).to_have_attribute("data-state", "done", timeout=WAIT_MS)
        expect(run.locator(".progress-text")).to_have_text("5 / 5")
        expect(run.locator(".counts")).to_contain_text("5 converted")
        for e in range(1, 6):
            row = rows[f"f{e}"]
            written = read_strm(row["strm_path"])
            assert written.startswith(f"{live.base_url}/play/{row['id']}?sig="), written
            assert play_link_id(written) == row["id"]
        for key in ("f2_1", "o1", "o2"):  # season 2 and the other series untouched
            assert read_strm(rows[key]["strm_path"]) == before[key]
        shot(page, "07-season-converted")
        assert console_errors == []
    finally:
        live.stop()
