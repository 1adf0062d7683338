"""The refresh pipeline against the fake provider: every classification path, single-flight, safety."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.cache import ResolveCache
from bridge.mappings import MappingStore
from bridge.resolvers.base import Resolved
from bridge.resolvers.registry import create_resolver
from bridge.strm import Library, read_strm
from bridge.timeutil import from_epoch
from tests.fakes.provider import FakeProvider
from tests.refresh_helpers import ScriptedResolver, add_mapping, failing, http_resolver, pipeline


async def fetch_status(url: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response.status


async def test_expired_403_is_reresolved_and_file_rewritten(store: MappingStore, library: Library,
                                                           library_root: Path, fake_provider: FakeProvider) -> None:
    m = add_mapping(store, library_root, fake_provider, 1)
    assert await fetch_status(m["resolved_url"]) == 403
    p = pipeline(store, library, [http_resolver(fake_provider)])
    try:
        outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    finally:
        await p.close()
    assert outcome.outcome == "refreshed", outcome.detail
    new_url = read_strm(m["strm_path"])
    assert new_url == outcome.new_url != m["resolved_url"]
    assert await fetch_status(new_url) == 200
    row = store.get(m["id"])
    assert row["resolved_url"] == new_url and row["state"] == "ok" and row["fail_count"] == 0
    assert row["provider_used"] == "fake" and row["expires_at"] > row["resolved_at"]
    log = store.refresh_history(m["id"])
    assert log[0]["outcome"] == "refreshed" and log[0]["new_url"] == new_url and log[0]["old_url"] == m["resolved_url"]
    assert len(fake_provider.resolve_calls) == 1
    body = fake_provider.resolve_calls[0]
    assert (body["slug"], body["season"], body["episode"], body["previous_url"]) == ("show", 1, 1, m["resolved_url"])


async def test_404_reresolves(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    fake_provider.add_episode("gone/1/1")
    url = fake_provider.sign("gone/1/1", ttl=3600)
    fake_provider.remove_episode("gone/1/1")
    m = add_mapping(store, library_root, fake_provider, 2, url=url)
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="jellyfin", reason="early_stop")
    await p.close()
    assert outcome.outcome == "refreshed" and outcome.probe_status is None
    assert "404" in store.refresh_history(m["id"])[0]["reason"]


async def test_live_url_is_left_alone(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    assert outcome.outcome == "alive" and fake_provider.resolve_calls == []
    forced = await p.refresh(m["id"], trigger="manual", reason="manual", force=True)
    await p.close()
    assert forced.outcome == "refreshed" and len(fake_provider.resolve_calls) == 1


async def test_403_before_predicted_expiry_backs_off(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1, expired=False, expires_at="2099-01-01T00:00:00Z")
    fake_provider.expire_all()  # the provider refuses although the URL should still be valid
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    again = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "backoff" and outcome.probe_status == "forbidden"
    assert again.outcome == "backoff"
    assert fake_provider.resolve_calls == []
    assert read_strm(m["strm_path"]) == m["resolved_url"]


async def test_403_within_clock_skew_of_the_expiry_is_the_expiry(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    """A provider whose clock runs 30 s ahead (or that rounds its expiry down) refuses the link 30 s early."""
    m = add_mapping(store, library_root, fake_provider, 1, expired=False, expires_at=from_epoch(time.time() + 30))
    fake_provider.expire_all()
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and len(fake_provider.resolve_calls) == 1
    assert read_strm(m["strm_path"]) != m["resolved_url"]


async def test_429_backs_off_honouring_retry_after(store, library, library_root) -> None:  # type: ignore[no-untyped-def]
    provider = FakeProvider(rate_limit=1, rate_window=60, retry_after=42)
    await provider.start()
    try:
        m = add_mapping(store, library_root, provider, 1)
        provider.media_requests.clear()
        await fetch_status(m["resolved_url"])  # use up the allowance
        p = pipeline(store, library, [http_resolver(provider)])
        outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
        await p.close()
    finally:
        await provider.close()
    assert outcome.outcome == "backoff" and outcome.probe_status == "rate_limited"
    assert outcome.retry_after == pytest.approx(42, abs=1)
    assert provider.resolve_calls == []


async def test_451_switches_provider(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1, expired=False, provider_used="VOE")
    fake_provider.set_mode("show/1/1", "legal")
    fake_provider.add_episode("alt/1/1")
    blocked = fake_provider.sign("show/1/1", ttl=3600)
    other = fake_provider.sign("alt/1/1", ttl=3600)

    async def by_provider(request):  # type: ignore[no-untyped-def]
        if "VOE" in request.exclude_providers and "Filemoon" not in request.exclude_providers:
            return Resolved(blocked, provider="Filemoon")
        return Resolved(other, provider="Vidoza")

    resolver = ScriptedResolver("scripted", [by_provider])
    p = pipeline(store, library, [resolver])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and outcome.provider == "Vidoza"
    assert [r.exclude_providers for r in resolver.requests] == [("VOE",), ("VOE", "Filemoon")]
    assert read_strm(m["strm_path"]) == other


async def test_timeout_reresolves_once_then_backs_off(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    fake_provider.set_mode("show/1/1", "hang")
    resolver = failing()
    p = pipeline(store, library, [resolver], probe_timeout_seconds=0.3)
    first = await p.refresh(m["id"], trigger="manual", reason="manual")
    second = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert first.outcome == "failed" and "timeout" in store.refresh_history(m["id"])[-1]["reason"]
    assert second.outcome == "backoff"
    assert len(resolver.requests) == 1


async def test_server_error_is_one_reresolve(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1, expired=False)
    fake_provider.set_mode("show/1/1", "error")
    fake_provider.add_episode("new/1/1")
    resolver = ScriptedResolver("s", [Resolved(fake_provider.sign("new/1/1", ttl=60))])
    p = pipeline(store, library, [resolver])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and len(resolver.requests) == 1


async def test_fifty_concurrent_requests_make_one_resolver_call(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcomes = await asyncio.gather(*(p.refresh(m["id"], trigger="jellyfin", reason="early_stop") for _ in range(50)))
    await p.close()
    assert len(fake_provider.resolve_calls) == 1
    assert {o.outcome for o in outcomes} == {"refreshed"}
    assert len({o.new_url for o in outcomes}) == 1
    assert [e["outcome"] for e in store.refresh_history(m["id"])] == ["refreshed"]


async def test_cooldown_then_force(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    p = pipeline(store, library, [http_resolver(fake_provider)])
    assert (await p.refresh(m["id"], trigger="manual", reason="manual")).outcome == "refreshed"
    fake_provider.expire_all()
    assert (await p.refresh(m["id"], trigger="jellyfin", reason="early_stop")).outcome == "cooldown"
    assert len(fake_provider.resolve_calls) == 1
    assert (await p.refresh(m["id"], trigger="manual", reason="manual", force=True)).outcome == "refreshed"
    await p.close()
    assert len(fake_provider.resolve_calls) == 2


@pytest.mark.parametrize("mode,fragment", [
    ("hang", "no answer within 0.5s"),
    ("error", "500"),
    ("bad_url", "http(s)"),
    ("huge", "1048576"),
    ("not_json", "JSON"),
])
async def test_bad_resolver_answers_change_nothing(store, library, library_root, fake_provider, mode, fragment) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    before = store.get(m["id"])
    fake_provider.resolve_mode = mode
    p = pipeline(store, library, [http_resolver(fake_provider, timeout=0.5)], resolver_timeout=1.0)
    started = time.monotonic()
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert time.monotonic() - started < 5
    assert outcome.outcome == "failed"
    assert read_strm(m["strm_path"]) == m["resolved_url"]
    after = store.get(m["id"])
    assert after["resolved_url"] == before["resolved_url"] and after["state"] == "dead" and after["fail_count"] == 1
    entry = store.refresh_history(m["id"])[0]
    assert entry["outcome"] == "failed" and fragment.lower() in entry["error"].lower(), entry["error"]
    assert [p.name for p in Path(m["strm_path"]).parent.iterdir()] == ["S01E01.strm"]


async def test_crashing_and_hanging_inprocess_resolvers(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)

    async def hang(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(60)

    for resolver, fragment in ((ScriptedResolver("crash", [RuntimeError("boom")]), "crashed with RuntimeError"),
                               (ScriptedResolver("slow", [hang]), "timed out")):
        p = pipeline(store, library, [resolver], resolver_timeout=0.3)
        outcome = await p.refresh(m["id"], trigger="manual", reason="manual", force=True)
        await p.close()
        assert outcome.outcome == "failed" and fragment in outcome.detail
        assert read_strm(m["strm_path"]) == m["resolved_url"]


async def test_episode_gone_everywhere_is_not_found(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    fake_provider.remove_episode("show/1/1")
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "not_found"
    assert store.get(m["id"])["state"] == "broken"


async def test_chain_falls_through_to_next_resolver(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    first = failing("first")
    p = pipeline(store, library, [first, http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and outcome.resolver == "http" and len(first.requests) == 1


async def test_new_url_must_answer_before_it_is_written(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    dead = fake_provider.sign("show/1/1", expires_at=time.time() - 5)
    p = pipeline(store, library, [ScriptedResolver("stale", [Resolved(dead)])])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "failed" and "does not answer" in outcome.detail
    assert read_strm(m["strm_path"]) == m["resolved_url"]


async def test_circuit_breaker_opens_and_half_opens(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    mappings = [add_mapping(store, library_root, fake_provider, n) for n in range(1, 6)]
    resolver = failing()
    p = pipeline(store, library, [resolver], breaker_threshold=3, breaker_reset_seconds=60, clock=lambda: now[0])
    for m in mappings[:3]:
        assert (await p.refresh(m["id"], trigger="manual", reason="manual")).outcome == "failed"
    assert p.breakers["broken"].state == "open"
    blocked = await p.refresh(mappings[3]["id"], trigger="manual", reason="manual")
    assert "circuit open" in blocked.detail and len(resolver.requests) == 3
    now[0] += 61
    assert p.breakers["broken"].state == "half_open"
    await p.refresh(mappings[4]["id"], trigger="manual", reason="manual")
    await p.close()
    assert len(resolver.requests) == 4 and p.breakers["broken"].state == "open"


async def test_mass_failure_guard_stops_rewrites(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    mappings = [add_mapping(store, library_root, fake_provider, n) for n in range(1, 8)]
    resolver = ScriptedResolver("outage", [ValueError("provider outage")] * 5 + [
        Resolved(fake_provider.sign("show/1/7", ttl=3600))])
    p = pipeline(store, library, [resolver], mass_failure_min_attempts=5, mass_failure_ratio=0.8,
                 breaker_threshold=100)
    outcomes = [await p.refresh(m["id"], trigger="sweep", reason="expiring") for m in mappings]
    await p.close()
    assert [o.outcome for o in outcomes] == ["failed"] * 5 + ["guarded"] * 2
    assert len(resolver.requests) == 5
    assert read_strm(mappings[6]["strm_path"]) == mappings[6]["resolved_url"]
    assert store.refresh_history(mappings[6]["id"])[0]["outcome"] == "guarded"


async def test_cache_serves_duplicates_until_purged(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    a = add_mapping(store, library_root, fake_provider, 1)
    dup_path = library_root / "copy" / "S01E01.strm"
    dup_path.parent.mkdir()
    dup_path.write_text(a["resolved_url"] + "\n")
    b = store.upsert({**{k: a[k] for k in ("site", "slug", "season", "episode", "language", "resolved_url")},
                      "strm_path": str(dup_path)})
    cache = ResolveCache(600)
    p = pipeline(store, library, [http_resolver(fake_provider)], cache=cache)
    first = await p.refresh(a["id"], trigger="manual", reason="manual")
    second = await p.refresh(b["id"], trigger="manual", reason="manual")
    assert first.new_url == second.new_url and len(fake_provider.resolve_calls) == 1
    assert cache.purge() == 1
    fake_provider.expire_all()  # new signatures, so the forced re-resolve yields a different URL
    third = await p.refresh(b["id"], trigger="manual", reason="manual", force=True)
    await p.close()
    assert len(fake_provider.resolve_calls) == 2 and third.outcome == "refreshed"


async def test_cache_invalidated_when_cached_url_fails(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    a = add_mapping(store, library_root, fake_provider, 1)
    cache = ResolveCache(600)
    p = pipeline(store, library, [http_resolver(fake_provider)], cache=cache, cooldown_seconds=0)
    await p.refresh(a["id"], trigger="manual", reason="manual")
    fake_provider.expire_all()  # the cached URL now answers 403, and is past no expiry: force a re-resolve
    store.update(a["id"], {"expires_at": "2000-01-01T00:00:00Z"})
    outcome = await p.refresh(a["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and len(fake_provider.resolve_calls) == 2


async def test_dry_run_touches_nothing(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    before = store.get(m["id"])
    p = pipeline(store, library, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual", dry_run=True)
    await p.close()
    assert outcome.outcome == "would_refresh"
    after = store.get(m["id"])
    # what the probe found is kept (issue 10: a dry run records its finding); nothing else changes
    assert after["state"] == "dead" and after["last_status"] == "forbidden" and after["last_checked_at"]
    changed = {"state", "last_status", "last_checked_at", "updated_at"}
    assert {k: v for k, v in after.items() if k not in changed} == {k: v for k, v in before.items() if k not in changed}
    assert fake_provider.resolve_calls == []
    assert read_strm(m["strm_path"]) == m["resolved_url"] and store.refresh_history(m["id"]) == []


async def test_redirect_and_command_resolvers_through_pipeline(store, library, library_root, fake_provider,
                                                               tmp_path: Path) -> None:
    import sys

    m = add_mapping(store, library_root, fake_provider, 1, source_url=None)
    store.update(m["id"], {"source_url": f"{fake_provider.base_url}/d/show/1/1"})
    p = pipeline(store, library, [create_resolver("redirect", {"timeout_seconds": 2})])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and fake_provider.redirect_calls == 1
    assert await fetch_status(read_strm(m["strm_path"])) == 200

    n = add_mapping(store, library_root, fake_provider, 2)
    script = tmp_path / "resolve.py"
    fresh = fake_provider.sign("show/1/2", ttl=3600)
    script.write_text(f"import sys\nassert sys.argv[1:] == ['show', '1', '2']\nprint({fresh!r})\n")
    p = pipeline(store, library, [create_resolver("command", {"argv": [sys.executable, str(script), "{slug}",
                                                                        "{season}", "{episode}"]})])
    outcome = await p.refresh(n["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "refreshed" and read_strm(n["strm_path"]) == fresh


async def test_write_refused_outside_roots_changes_nothing(store, library_root, fake_provider, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    elsewhere = Library([str(tmp_path / "other-root")])
    p = pipeline(store, elsewhere, [http_resolver(fake_provider)])
    outcome = await p.refresh(m["id"], trigger="manual", reason="manual")
    await p.close()
    assert outcome.outcome == "failed" and "outside_roots" in outcome.detail
    assert store.get(m["id"])["resolved_url"] == m["resolved_url"]
    assert read_strm(m["strm_path"]) == m["resolved_url"]


async def test_sweep_refreshes_expiring_links(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    from bridge.sweep import Sweeper
    from bridge.timeutil import from_epoch

    soon = add_mapping(store, library_root, fake_provider, 1, expired=False, expires_at=from_epoch(time.time() + 60))
    later = add_mapping(store, library_root, fake_provider, 2, expired=False, expires_at=from_epoch(time.time() + 86400))
    p = pipeline(store, library, [http_resolver(fake_provider)])
    sweeper = Sweeper(store, p, interval_seconds=0, margin_seconds=600, concurrency=2)
    outcomes = await sweeper.run_once()
    await p.close()
    assert [(o.mapping_id, o.outcome) for o in outcomes] == [(soon["id"], "refreshed")]
    assert read_strm(later["strm_path"]) == later["resolved_url"]
    assert store.refresh_history(soon["id"])[0]["trigger"] == "sweep"


async def test_recover_adopts_url_written_before_crash(store, library, library_root, fake_provider) -> None:  # type: ignore[no-untyped-def]
    m = add_mapping(store, library_root, fake_provider, 1)
    n = add_mapping(store, library_root, fake_provider, 2)
    fresh = fake_provider.sign("show/1/1", ttl=3600)
    Path(m["strm_path"]).write_text(fresh + "\n")  # the file was replaced, then the process died
    (Path(m["strm_path"]).parent / ".strm-bridge-S01E01.strm.abcd.tmp").write_text("partial")
    store.update(m["id"], {"state": "refreshing"})
    store.update(n["id"], {"state": "refreshing"})  # died before the file was replaced
    p = pipeline(store, library, [])
    report = await p.recover()
    assert {r["mapping_id"]: r["action"] for r in report} == {m["id"]: "adopted file URL", n["id"]: "restored"}
    assert store.get(m["id"])["resolved_url"] == fresh and store.get(m["id"])["state"] == "ok"
    assert store.get(n["id"])["resolved_url"] == n["resolved_url"] and store.get(n["id"])["state"] == "unknown"
    assert sorted(p.name for p in Path(m["strm_path"]).parent.iterdir()) == ["S01E01.strm", "S01E02.strm"]


async def test_recovery_queues_the_rescans_of_a_file_replaced_before_the_crash(store, library, library_root,  # type: ignore[no-untyped-def]
                                                                                fake_provider) -> None:
    """The crash kept the rescans from their commit: without them Jellyfin plays its cached dead URL for good."""
    from bridge.rescan import RescanQueue
    from tests.play.test_convert import RecordingTarget

    replaced = add_mapping(store, library_root, fake_provider, 1)
    untouched = add_mapping(store, library_root, fake_provider, 2)
    fresh = fake_provider.sign("show/1/1", ttl=3600)
    Path(replaced["strm_path"]).write_text(fresh + "\n")
    for row in (replaced, untouched):
        store.update(row["id"], {"state": "refreshing"})
    queue = RescanQueue(store.db, {"recorder": RecordingTarget()})
    p = pipeline(store, library, [])
    p.on_rewritten = lambda mapping: queue.enqueue_for(mapping, commit=False)
    report = {r["mapping_id"]: r for r in await p.recover()}
    assert report[replaced["id"]]["rescans"] == [("recorder", f"item-{replaced['id']}")]
    assert report[untouched["id"]]["action"] == "restored" and report[untouched["id"]]["rescans"] == []
    store.conn.rollback()  # nothing left uncommitted: the rescan row came with the adopted row's commit
    assert [(r["key"], r["payload"]) for r in queue.pending()] == [
        (f"item-{replaced['id']}", f'{{"path": "{replaced["strm_path"]}"}}')]
    assert store.get(replaced["id"])["resolved_url"] == fresh


async def test_recovery_keeps_the_direct_url_of_a_file_that_holds_its_stable_link(store, library, library_root,  # type: ignore[no-untyped-def]
                                                                                 fake_provider) -> None:
    """Such a file is never written (its row takes the new URLs): adopting the /play/ link would make it loop."""
    row = add_mapping(store, library_root, fake_provider, 1)
    Path(row["strm_path"]).write_text(f"http://bridge.lan:8765/play/{row['id']}?sig=abc\n")
    store.update(row["id"], {"state": "refreshing"})
    p = pipeline(store, library, [])
    p.on_rewritten = None
    assert [r["action"] for r in await p.recover()] == ["restored"]
    assert store.get(row["id"])["resolved_url"] == row["resolved_url"]


async def test_a_row_read_before_this_pipeline_refreshed_it_is_read_again(store, library, library_root,  # type: ignore[no-untyped-def]
                                                                          fake_provider) -> None:
    """Bulk jobs hand over rows read in pages; a row the pipeline changed after that read must not be trusted."""
    m = add_mapping(store, library_root, fake_provider, 1)
    resolver = ScriptedResolver("scripted", [Resolved(f"http://cdn.test/1.mp4?v={n}") for n in (1, 2, 3)])
    p = pipeline(store, library, [resolver], probe_new_url=False)
    try:
        page_row = store.get(m["id"])
        read_at = p.clock()
        first = await p.refresh(m["id"], trigger="manual", reason="manual")
        assert first.outcome == "refreshed"
        done = await p.submit(m["id"], trigger="manual", reason="forced", force=True, known=(page_row, read_at))
        second = await done
        untouched = add_mapping(store, library_root, fake_provider, 2)
        known = (store.get(untouched["id"]), p.clock())
        store.get = None  # type: ignore[assignment]  # a fresh page row is used as it is: no second read
        third = await (await p.submit(untouched["id"], trigger="manual", reason="forced", force=True, known=known))
    finally:
        await p.close()
    assert second.outcome == "refreshed"
    assert second.old_url == first.new_url != m["resolved_url"]  # the fresh row, not the page's copy
    assert third.outcome == "refreshed" and third.old_url == untouched["resolved_url"]


async def test_bulk_job_refreshes_in_batches_with_rows_from_its_pages(store, library, library_root) -> None:  # type: ignore[no-untyped-def]
    """Many items through JobRunner: every file and row agree, each row was read once per page, not per item."""
    from bridge.jobs import JobRunner

    async def fresh(request):  # type: ignore[no-untyped-def]
        return Resolved(f"http://cdn.test/{request.identity.episode}.mp4?v=new")

    resolver = ScriptedResolver("instant", [fresh])
    ids = []
    for episode in range(1, 81):
        path = library_root / "bulk" / f"S01E{episode:02d}.strm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"http://cdn.test/{episode}.mp4?v=old\n")
        ids.append(store.upsert({"strm_path": str(path), "resolved_url": f"http://cdn.test/{episode}.mp4?v=old",
                                 "site": "t", "slug": "bulk", "season": 1, "episode": episode})["id"])
    outside = library_root.parent / "elsewhere" / "S01E99.strm"  # refused mid-batch: only this item fails
    outside.parent.mkdir()
    outside.write_text("http://cdn.test/99.mp4?v=old\n")
    refused = store.upsert({"strm_path": str(outside), "resolved_url": "http://cdn.test/99.mp4?v=old", "site": "t",
                            "slug": "bulk", "season": 1, "episode": 99, "state": "ok"})["id"]
    p = pipeline(store, library, [resolver], probe_new_url=False)
    reads = []
    original_get = store.get
    store.get = lambda mapping_id: reads.append(mapping_id) or original_get(mapping_id)  # type: ignore[method-assign]
    jobs = JobRunner(store.db, p, concurrency=4)
    try:
        job_id = jobs.create([*ids[:40], refused, *ids[40:]], {"force": True, "reason": "forced"})
        await jobs.run(job_id)
    finally:
        await p.close()
    job = jobs.get(job_id)
    assert job["state"] == "done" and job["counts"] == {"refreshed": 80, "failed": 1}
    assert reads == []
    assert outside.read_text() == "http://cdn.test/99.mp4?v=old\n"
    failed_row = original_get(refused)
    assert failed_row["resolved_url"] == "http://cdn.test/99.mp4?v=old" and failed_row["state"] == "dead"
    assert "outside_roots" in store.refresh_history(refused)[0]["error"]
    for mapping_id in ids:
        row = original_get(mapping_id)
        assert read_strm(row["strm_path"]) == row["resolved_url"] == f"http://cdn.test/{row['episode']}.mp4?v=new"
        assert row["state"] == "ok"
    assert len(store.conn.execute("select * from refresh_log where outcome = 'refreshed'").fetchall()) == 80
