from datetime import UTC, datetime, timedelta

import pytest

from bridge.mappings import Identity, MappingStore
from bridge.timeutil import to_iso


def add(store: MappingStore, n: int, **extra):  # type: ignore[no-untyped-def]
    return store.upsert({
        "strm_path": f"/lib/show/S01E{n:02d}.strm",
        "resolved_url": f"http://cdn.test/{n}.mp4",
        "site": "aniworld.to", "slug": "show", "season": 1, "episode": n, "language": "German Dub",
        **extra,
    })


def test_upsert_inserts_then_updates_by_path_and_stamps(store: MappingStore) -> None:
    first = add(store, 1)
    assert first["id"] == 1 and first["created_at"] == first["updated_at"]
    assert first["provider"] == "" and first["state"] == "unknown" and first["fail_count"] == 0
    again = store.upsert({"strm_path": "/lib/show/S01E01.strm", "resolved_url": "http://cdn.test/new.mp4"})
    assert again["id"] == 1
    assert again["resolved_url"] == "http://cdn.test/new.mp4"
    assert again["slug"] == "show"  # untouched fields keep their values
    assert again["updated_at"] >= first["updated_at"]
    assert again["created_at"] == first["created_at"]
    assert store.count() == 1


def test_lookups(store: MappingStore) -> None:
    for n in range(1, 4):
        add(store, n)
    add(store, 1, strm_path="/lib/show/S02E01.strm", season=2, resolved_url="http://cdn.test/s2e1.mp4")
    assert store.get(2)["episode"] == 2
    assert store.get(999) is None
    assert store.by_path("/lib/show/S01E03.strm")["episode"] == 3
    assert store.by_path("/nope.strm") is None
    assert [m["id"] for m in store.by_url("http://cdn.test/2.mp4")] == [2]
    identity = Identity("aniworld.to", "show", 1, 2, "German Dub", "")
    assert [m["id"] for m in store.by_identity(identity)] == [2]
    assert store.by_identity(Identity("aniworld.to", "show", 1, 2, "English Sub", "")) == []
    assert [m["id"] for m in store.by_series("aniworld.to", "show")] == [1, 2, 3, 4]
    assert [m["id"] for m in store.by_series("aniworld.to", "show", 2)] == [4]
    assert [m["id"] for m in store.by_episode(None, "show", 1, 3)] == [3]


def test_item_id_lookups(store: MappingStore) -> None:
    m = add(store, 1, jellyfin_item_id="a" * 32, plex_rating_key="123")
    assert store.by_jellyfin_item("a" * 32)["id"] == m["id"]
    assert store.by_plex_rating_key("123")["id"] == m["id"]


def test_stale_selects_expired_expiring_and_dead(store: MappingStore) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    add(store, 1, expires_at=to_iso(now - timedelta(minutes=1)))
    add(store, 2, expires_at=to_iso(now + timedelta(minutes=10)))
    add(store, 3, expires_at=to_iso(now + timedelta(days=1)))
    add(store, 4, state="dead")
    add(store, 5)
    assert [m["id"] for m in store.stale(0, now=now)] == [1, 4]
    assert [m["id"] for m in store.stale(3600, now=now)] == [1, 2, 4]


def test_update_and_refresh_log(store: MappingStore) -> None:
    m = add(store, 1)
    store.update(m["id"], {"state": "ok", "fail_count": 0, "resolved_headers": {"Referer": "http://x"}})
    assert store.get(m["id"])["resolved_headers"] == {"Referer": "http://x"}
    store.log_refresh(m["id"], trigger="manual", reason="dead", outcome="refreshed", old_url="a", new_url="b")
    history = store.refresh_history(m["id"])
    assert history[0]["outcome"] == "refreshed" and history[0]["trigger"] == "manual"


def test_bad_writes_rejected(store: MappingStore) -> None:
    with pytest.raises(ValueError, match="strm_path"):
        store.upsert({"resolved_url": "http://x"})
    with pytest.raises(ValueError, match="unknown"):
        store.upsert({"strm_path": "/a.strm", "colour": "red"})
    with pytest.raises(ValueError, match="state"):
        store.upsert({"strm_path": "/a.strm", "state": "weird"})
    assert store.count() == 0


def test_search_filters_and_pages(store: MappingStore) -> None:
    for n in range(1, 6):
        add(store, n, state="ok" if n % 2 else "dead")
    rows, total = store.search(state="dead")
    assert total == 2 and [r["episode"] for r in rows] == [2, 4]
    rows, total = store.search(path="/lib/show/", limit=2, offset=2)
    assert total == 5 and [r["episode"] for r in rows] == [3, 4]
    assert store.search(path="/other/")[1] == 0


def test_path_lookup_uses_index(store: MappingStore) -> None:
    plan = store.conn.execute("explain query plan select * from mappings where strm_path = ?", ("/x",)).fetchall()
    assert "idx_mappings_strm_path" in plan[0][3] or "sqlite_autoindex" in plan[0][3]
