"""Dashboard pages and the htmx fragments they swap in; every handler behind a session, every POST behind CSRF."""
from __future__ import annotations

import functools
import re
from typing import Any, Awaitable, Callable

import aiohttp
import aiohttp_jinja2
from aiohttp import web

from bridge.auth import token_matches
from bridge.errors import ApiError
from bridge.health import LinkChecker
from bridge.redact import redact_url
from bridge.selection import Selection, resolve_selection
from bridge.web import queries
from bridge.web.checks import CheckRuns
from bridge.web.converts import ConvertRuns
from bridge.web.integrations import bridge_base_url, components, reachability, webhook_sources
from bridge.web.session import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, Session, SessionSigner

SIGNER: web.AppKey[SessionSigner] = web.AppKey("dashboard_signer", SessionSigner)
CHECKS: web.AppKey[CheckRuns] = web.AppKey("dashboard_checks", CheckRuns)
CONVERTS: web.AppKey[ConvertRuns] = web.AppKey("dashboard_converts", ConvertRuns)
SESSION: web.RequestKey[Session] = web.RequestKey("dashboard_session", Session)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_TEXT = 200
_RUN_ID = re.compile("[0-9a-f]{16}")
"""Job and check ids; checked in the handler, after the session, so an unknown id never skips the login."""
_SAFE_NEXT = re.compile(r"/(?!/)[A-Za-z0-9/_\-?=&.%]*")


async def read_form(request: web.Request) -> Any:
    """The posted form; a body that does not decode (bad UTF-8, broken multipart framing) is a 400."""
    try:
        return await request.post()
    except web.HTTPException:
        raise
    except (UnicodeDecodeError, ValueError, LookupError, AssertionError, aiohttp.ClientError) as exc:
        raise ApiError(400, "invalid_form", f"the form body cannot be read: {type(exc).__name__}") from None


def _form_text(form: Any, name: str, limit: int = MAX_TEXT) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{name} must be text")
    if len(value) > limit:
        raise ApiError(400, "invalid_field", f"{name} is longer than {limit} characters")
    return value.strip()


def _int_field(value: str, name: str, low: int = 0, high: int = 2**62) -> int | None:
    if value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18 or not low <= int(value) <= high:
        raise ApiError(400, "invalid_field", f"{name} must be an integer from {low} to {high}")
    return int(value)


def session_required(key: web.AppKey[Any]) -> Callable[[Handler], Handler]:
    """No session: a page load goes to the login page, anything else gets the JSON 401. POSTs need CSRF."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            signer = request.app[SIGNER]
            session = signer.verify(request.cookies.get(COOKIE_NAME))
            if session is None:
                page_load = (request.method == "GET" and "HX-Request" not in request.headers
                             and "text/html" in request.headers.get("Accept", ""))
                if page_load:
                    raise web.HTTPSeeOther(f"/login?next={request.rel_url.path}")
                raise ApiError(401, "unauthorized", "log in to the dashboard first (session cookie missing or expired)")
            if request.method == "POST":
                presented = request.headers.get(CSRF_HEADER)
                if presented is None and request.content_type in ("application/x-www-form-urlencoded",
                                                                  "multipart/form-data"):
                    presented = (await read_form(request)).get(CSRF_FIELD)  # type: ignore[assignment]
                if not signer.csrf_ok(session, presented if isinstance(presented, str) else None):
                    raise ApiError(403, "csrf_failed", "missing or wrong CSRF token: reload the page and try again")
            request[SESSION] = session
            return await handler(request)

        return wrapped

    return decorate


def _render(template: str, request: web.Request, context: dict[str, Any], status: int = 200) -> web.Response:
    session = request.get(SESSION)
    context = {"csrf": session.csrf if session else "", "path": request.path, **context}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
    return response


def add_routes(app: web.Application, key: web.AppKey[Any]) -> None:
    needs_session = session_required(key)

    def services_of(request: web.Request) -> Any:
        return request.app[key]

    # ---- login ---------------------------------------------------------------------------------------
    async def login_page(request: web.Request) -> web.Response:
        if request.app[SIGNER].verify(request.cookies.get(COOKIE_NAME)) is not None:
            raise web.HTTPSeeOther("/")
        return _render("login.html", request, {"error": "", "next": _safe_next(request.query.get("next"))})

    async def login(request: web.Request) -> web.Response:
        form = await read_form(request)
        token = _form_text(form, "token", 512)
        target = _safe_next(_form_text(form, "next", 500))
        if not token_matches(token, [services_of(request).api_token]):
            return _render("login.html", request, {"error": "That is not the API token.", "next": target},
                           status=401)
        _, cookie = request.app[SIGNER].issue()
        response = web.Response(status=303, headers={"Location": target})
        response.set_cookie(COOKIE_NAME, cookie, max_age=request.app[SIGNER].lifetime, path="/", httponly=True,
                            samesite="Strict", secure=request.secure or services_of(request).config.server.public_url
                            .startswith("https://"))
        return response

    @needs_session
    async def logout(request: web.Request) -> web.Response:
        request.app[SIGNER].revoke(request[SESSION])
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(COOKIE_NAME, path="/")
        return response

    # ---- pages ---------------------------------------------------------------------------------------
    @needs_session
    async def health(request: web.Request) -> web.Response:
        services = services_of(request)
        conn = services.store.conn
        counts = queries.state_counts(conn)
        horizon = queries.expiry_horizon(conn, services.config.refresh.sweep_margin_seconds,
                                         total=sum(counts.values()))
        return _render("health.html", request, {
            "counts": counts, "total": sum(counts.values()), "horizon": horizon,
            "margin_minutes": round(services.config.refresh.sweep_margin_seconds / 60),
            "recent": queries.refresh_log(conn, limit=8), "redact": redact_url})

    @needs_session
    async def mappings(request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        if len(q) > queries.MAX_QUERY_CHARS:
            raise ApiError(400, "invalid_field", f"q is longer than {queries.MAX_QUERY_CHARS} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in q):
            raise ApiError(400, "invalid_field", "q must not contain control characters")
        state = request.query.get("state", "")
        if state and state not in queries.SHOWN_STATES:
            raise ApiError(400, "invalid_field", f"state must be one of {', '.join(queries.SHOWN_STATES)}")
        page = _int_field(request.query.get("page", ""), "page", 1, 10**9) or 1
        result = queries.mapping_page(services_of(request).store.conn, q=q, state=state, page=page)
        template = "_mappings_table.html" if request.headers.get("HX-Target") == "mapping-table" else "mappings.html"
        return _render(template, request, {"result": result, "states": queries.SHOWN_STATES})

    @needs_session
    async def log_page(request: web.Request) -> web.Response:
        conn = services_of(request).store.conn
        return _render("log.html", request, {"log": queries.refresh_log(conn, limit=100),
                                             "events": queries.recent_events(conn, limit=100), "redact": redact_url})

    @needs_session
    async def integrations_page(request: web.Request) -> web.Response:
        services = services_of(request)
        base, warning = bridge_base_url(services.config, request.host)
        templates = getattr(services, "paste_templates", {}) or {}
        return _render("integrations.html", request, {
            "components": components(services.config, [r.name for r in services.pipeline.resolvers]), "base": base, "warning": warning,
            "sources": webhook_sources(services.config, base, services.api_token, templates, services.store.conn)})

    @needs_session
    async def integration_status(request: web.Request) -> web.Response:
        services = services_of(request)
        text = request.match_info["index"]
        index = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else None
        found = components(services.config, [r.name for r in services.pipeline.resolvers])
        if index is None or index >= len(found):
            raise ApiError(404, "not_found", "no such component")
        component = found[index]
        async with aiohttp.ClientSession(headers={"User-Agent": "strm-bridge"}) as session:
            ok, detail = await reachability(services.config, component, session)
        return _render("_reach.html", request, {"ok": ok, "detail": detail, "component": component})

    # ---- actions -------------------------------------------------------------------------------------
    def selection_from(form: Any, margin: float) -> tuple[Selection, str]:
        """The same selections as `POST /api/refresh`, from form fields; the label says what was picked."""
        if _form_text(form, "stale") == "1":
            return Selection("stale", {"margin_seconds": margin}), "everything stale"
        if _form_text(form, "all") == "1":
            return Selection("all", {}), "every mapping"
        mapping_id = _int_field(_form_text(form, "id"), "id", 1)
        if mapping_id is not None:
            return Selection("id", {"id": mapping_id}), f"mapping {mapping_id}"
        site, slug = _form_text(form, "site"), _form_text(form, "slug")
        season = _int_field(_form_text(form, "season"), "season", 0, 100_000)
        if not site or not slug:
            raise ApiError(400, "invalid_selection", "give id, site and slug (and season), stale=1 or all=1")
        label = f"{slug} season {season}" if season is not None else slug
        return Selection("series", {"site": site, "slug": slug, "season": season}), label

    @needs_session
    async def refresh(request: web.Request) -> web.Response:
        services = services_of(request)
        selection, label = selection_from(await read_form(request), services.config.refresh.sweep_margin_seconds)
        ids = resolve_selection(services.store, selection)
        if selection.kind == "id":
            if not ids:
                raise ApiError(404, "not_found", "no such mapping")
            outcome = await services.pipeline.refresh(ids[0], trigger="manual", reason="dashboard")
            row = queries.one_mapping(services.store.conn, ids[0])
            return _render("_row.html", request, {"m": row, "outcome": outcome})
        if not ids:
            return _render("_job.html", request, {"job": None, "label": label})
        job_id = services.jobs.create(ids, {"selection": selection.kind, **selection.params, "dry_run": False,
                                            "force": False, "trigger": "manual", "reason": "dashboard"})
        services.jobs.start(job_id)
        return _job_fragment(request, services, job_id, label)

    @needs_session
    async def job(request: web.Request) -> web.Response:
        services = services_of(request)
        label = request.query.get("label", "")[:MAX_TEXT]
        if not _RUN_ID.fullmatch(request.match_info["id"]):
            raise ApiError(404, "not_found", "no such job")
        return _job_fragment(request, services, request.match_info["id"], label)

    @needs_session
    async def check(request: web.Request) -> web.Response:
        services = services_of(request)
        selection, label = selection_from(await read_form(request), services.config.refresh.sweep_margin_seconds)
        ids = resolve_selection(services.store, selection)
        if not ids:
            return _render("_check.html", request, {"run": None, "label": label})
        checker = LinkChecker.from_config(services.store, services.config, services.links, services.egress)
        run = request.app[CHECKS].start(ids, checker)
        return _render("_check.html", request, {"run": run, "label": label})

    @needs_session
    async def check_status(request: web.Request) -> web.Response:
        run = request.app[CHECKS].get(request.match_info["id"]) if _RUN_ID.fullmatch(request.match_info["id"]) else None
        if run is None:
            raise ApiError(404, "not_found", "no such check (checks are kept in memory until a restart)")
        response = _render("_check.html", request, {"run": run, "label": request.query.get("label", "")[:MAX_TEXT]})
        if run.state != "running":
            response.headers["HX-Trigger"] = "mappings-changed"
        return response

    @needs_session
    async def convert_action(request: web.Request) -> web.Response:
        """Without run=1 a dry run that counts what would change; with it, the real run in the background."""
        from bridge.cli_convert import check_public_url
        from bridge.cli_errors import UserError
        from bridge.convert import TARGETS, convert

        services = services_of(request)
        form = await read_form(request)
        to = _form_text(form, "to")
        if to not in TARGETS:
            raise ApiError(400, "invalid_field", f"to must be one of {', '.join(TARGETS)}")
        real = _form_text(form, "run")
        if real not in ("", "0", "1"):
            raise ApiError(400, "invalid_field", "run must be 1 (convert) or 0 / absent (dry run)")
        selection, label = selection_from(form, services.config.refresh.sweep_margin_seconds)
        context: dict[str, Any] = {"to": to, "label": label, "needs_public_url": "", "preview": None, "run": None,
                                   "form": {"to": to, **_selection_fields(selection)}}
        public_url = services.config.server.public_url
        if to == "stable":
            try:
                check_public_url(public_url)
            except UserError as exc:  # explained where the button is, not a failure
                context["needs_public_url"] = str(exc)
                return _render("_convert.html", request, context)
        ids = resolve_selection(services.store, selection)
        if ids and real != "1":
            results = await convert(services, ids, to, public_url=public_url, dry_run=True)
            counts: dict[str, int] = {}
            for item in results:
                counts[item.outcome] = counts.get(item.outcome, 0) + 1
            context["preview"] = {"counts": counts, "would": counts.get("would_convert", 0),
                                  "problems": [r for r in results if r.outcome in ("failed", "skipped")][:20]}
        elif ids:
            context["run"] = request.app[CONVERTS].start(services, ids, to, public_url)
        return _render("_convert.html", request, context)

    @needs_session
    async def convert_status(request: web.Request) -> web.Response:
        run = request.app[CONVERTS].get(request.match_info["id"]) if _RUN_ID.fullmatch(request.match_info["id"]) else None
        if run is None:
            raise ApiError(404, "not_found", "no such conversion (they are kept in memory until a restart)")
        label = request.query.get("label", "")[:MAX_TEXT]
        response = _render("_convert.html", request, {"to": run.to, "label": label, "needs_public_url": "",
                                                      "preview": None, "run": run, "form": {}})
        if run.state != "running":
            response.headers["HX-Trigger"] = "mappings-changed"
        return response

    app.router.add_get("/", health)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/ui/mappings", mappings)
    app.router.add_get("/ui/log", log_page)
    app.router.add_get("/ui/integrations", integrations_page)
    app.router.add_get("/ui/integrations/{index}/status", integration_status)
    app.router.add_post("/ui/refresh", refresh)
    app.router.add_get("/ui/jobs/{id}", job)
    app.router.add_post("/ui/check", check)
    app.router.add_get("/ui/checks/{id}", check_status)
    app.router.add_post("/ui/convert", convert_action)
    app.router.add_get("/ui/converts/{id}", convert_status)


def _safe_next(value: str | None) -> str:
    """Only a path on this site: a login link must not send the user elsewhere."""
    if value and _SAFE_NEXT.fullmatch(value) and not value.startswith("/login"):
        return value
    return "/"


def _selection_fields(selection: Selection) -> dict[str, str]:
    """The form fields that pick `selection` again (the preview's confirm button posts them back)."""
    if selection.kind in ("stale", "all"):
        return {selection.kind: "1"}
    if selection.kind == "id":
        return {"id": str(selection.params["id"])}
    fields = {"site": selection.params["site"], "slug": selection.params["slug"]}
    if selection.params.get("season") is not None:
        fields["season"] = str(selection.params["season"])
    return fields


def _job_fragment(request: web.Request, services: Any, job_id: str, label: str) -> web.Response:
    job = services.jobs.get(job_id, items_limit=0)
    if job is None:
        raise ApiError(404, "not_found", "no such job")
    problems = services.store.conn.execute(
        "select mapping_id, outcome, detail from job_items where job_id = ? and outcome is not null"
        " and outcome not in ('refreshed', 'alive', 'unchanged', 'cooldown') order by mapping_id limit 20",
        (job_id,)).fetchall()
    response = _render("_job.html", request, {"job": job, "label": label, "problems": problems})
    if job["state"] != "running":
        response.headers["HX-Trigger"] = "mappings-changed"
    return response
