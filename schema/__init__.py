"""Schema steps for strm-bridge, applied with sqlite-utils' built-in Migrations.

Each step is a function registered on `migrations`; a released step is never edited, a change is a new step.
"""
from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("strm_bridge")

MAPPING_STATES = ("ok", "dead", "refreshing", "broken", "unknown")


@migrations()
def m001_initial(db: Database) -> None:
    db["mappings"].create(
        {
            "id": int,
            "strm_path": str,
            "site": str,
            "slug": str,
            "season": int,
            "episode": int,
            "language": str,
            "provider": str,
            "source_url": str,
            "resolved_url": str,
            "resolved_headers": str,
            "provider_used": str,
            "resolved_at": str,
            "expires_at": str,
            "state": str,
            "last_status": str,
            "last_checked_at": str,
            "fail_count": int,
            "jellyfin_item_id": str,
            "plex_rating_key": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"strm_path", "created_at", "updated_at", "state", "fail_count", "provider"},
        defaults={
            "provider": "",
            "state": "unknown",
            "fail_count": 0,
        },
    )
    db["mappings"].create_index(["strm_path"], unique=True, index_name="idx_mappings_strm_path")
    db["mappings"].create_index(["resolved_url"], index_name="idx_mappings_resolved_url")
    db["mappings"].create_index(
        ["site", "slug", "season", "episode", "language", "provider"], index_name="idx_mappings_identity"
    )
    db["mappings"].create_index(["expires_at"], index_name="idx_mappings_expires_at")
    db["mappings"].create_index(["jellyfin_item_id"], index_name="idx_mappings_jellyfin_item")
    db["mappings"].create_index(["plex_rating_key"], index_name="idx_mappings_plex_rating_key")

    db["refresh_log"].create(
        {
            "id": int,
            "mapping_id": int,
            "trigger": str,
            "reason": str,
            "old_url": str,
            "new_url": str,
            "outcome": str,
            "error": str,
            "duration_ms": float,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        foreign_keys=[("mapping_id", "mappings", "id")],
    )
    db["refresh_log"].create_index(["mapping_id", "started_at"], index_name="idx_refresh_log_mapping")
    db["refresh_log"].create_index(["outcome"], index_name="idx_refresh_log_outcome")

    db["rescan_queue"].create(
        {
            "id": int,
            "target": str,
            "key": str,
            "payload": str,
            "due_at": str,
            "attempts": int,
            "last_error": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"target", "key", "due_at", "attempts"},
        defaults={"attempts": 0},
    )
    db["rescan_queue"].create_index(["target", "key"], unique=True, index_name="idx_rescan_queue_target_key")
    db["rescan_queue"].create_index(["due_at"], index_name="idx_rescan_queue_due")

    db["events"].create(
        {
            "id": int,
            "source": str,
            "kind": str,
            "item_id": str,
            "payload": str,
            "received_at": str,
            "processed_at": str,
            "outcome": str,
            "match_rule": str,
            "mapping_id": int,
            "error": str,
        },
        pk="id",
    )
    db["events"].create_index(["received_at"], index_name="idx_events_received")
    db["events"].create_index(["processed_at"], index_name="idx_events_processed")


@migrations()
def m002_jobs(db: Database) -> None:
    """Bulk refresh jobs survive a restart: the job row and each item's outcome are persisted."""
    db["jobs"].create(
        {
            "id": str,
            "kind": str,
            "params": str,
            "state": str,
            "total": int,
            "done": int,
            "created_at": str,
            "updated_at": str,
            "error": str,
        },
        pk="id",
        not_null={"state", "total", "done"},
        defaults={"done": 0, "total": 0},
    )
    db["job_items"].create(
        {"job_id": str, "mapping_id": int, "outcome": str, "detail": str, "finished_at": str},
        pk=("job_id", "mapping_id"),
    )
    db["job_items"].create_index(["job_id", "outcome"], index_name="idx_job_items_outcome")


@migrations()
def m003_emby_item_and_lighter_log(db: Database) -> None:
    """Emby item ids survive restarts like Jellyfin's; two indexes cost a write per refresh and served no
    query that the primary keys do not (refresh_log by outcome, job_items by outcome)."""
    db["mappings"].add_column("emby_item_id", str)
    db["mappings"].create_index(["emby_item_id"], index_name="idx_mappings_emby_item")
    db.execute("drop index if exists idx_refresh_log_outcome")
    db.execute("drop index if exists idx_job_items_outcome")


@migrations()
def m004_series_overrides_and_handoffs(db: Database) -> None:
    """Per-series identity set through the API (applied to future rows too), and the download-folder files
    Sonarr/Radarr imported elsewhere: a copy or hardlink left behind is not adopted a second time."""
    db["series_overrides"].create(
        {"id": int, "match": str, "site": str, "slug": str, "language": str, "provider": str, "created_at": str},
        pk="id",
        not_null={"match"},
    )
    db["series_overrides"].create_index(["match"], unique=True, index_name="idx_series_overrides_match")
    db["handoffs"].create(
        {"source_path": str, "url": str, "target_path": str, "created_at": str},
        pk="source_path",
    )


@migrations()
def m005_watch_state(db: Database) -> None:
    """When the folder watcher last saw the roots, so a restart re-reads only what changed since."""
    db["watch_state"].create({"key": str, "value": str}, pk="key")


@migrations()
def m006_dashboard_state_index_and_search(db: Database) -> None:
    """The dashboard counts mappings by state in one statement (an index serves the group-by) and searches
    slugs and paths by substring (a trigram full-text index over the two columns; triggers keep it in step on
    insert, delete and a change of slug or path only, so refreshes, which change neither, pay nothing)."""
    db["mappings"].create_index(["state"], index_name="idx_mappings_state")
    db.execute("create virtual table mappings_search using fts5(slug, strm_path, content='mappings',"
               " content_rowid='id', tokenize='trigram')")
    db.execute("insert into mappings_search(mappings_search) values ('rebuild')")
    db.execute("create trigger mappings_search_insert after insert on mappings begin"
               " insert into mappings_search(rowid, slug, strm_path) values (new.id, new.slug, new.strm_path); end")
    db.execute("create trigger mappings_search_delete after delete on mappings begin"
               " insert into mappings_search(mappings_search, rowid, slug, strm_path)"
               " values ('delete', old.id, old.slug, old.strm_path); end")
    db.execute("create trigger mappings_search_update after update of slug, strm_path on mappings"
               " when old.slug is not new.slug or old.strm_path is not new.strm_path begin"
               " insert into mappings_search(mappings_search, rowid, slug, strm_path)"
               " values ('delete', old.id, old.slug, old.strm_path);"
               " insert into mappings_search(rowid, slug, strm_path) values (new.id, new.slug, new.strm_path); end")
