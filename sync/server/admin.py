"""The admin side: login, the dashboard and the admin API, by role, every action in the audit trail.

Browsers log in at ``/login`` and carry a session cookie; every form that changes something
carries the session's CSRF token. Scripts ``POST /admin/api/login`` and send the returned token
as ``Authorization: Bearer``. Roles and what they may do: ``accounts.GRANTS``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from sync.server.accounts import (
    AccountError,
    Permission,
    Principal,
    add_user,
    check_password,
    open_session,
    principal_for,
)
from sync.server.dashboard import render_audit, render_dashboard, render_login, render_token
from sync.server.enrollment import DEFAULT_TOKEN_TTL_S, EnrollmentError, issue_token
from sync.server.fleet.routes import fleet_routes
from sync.server.publish.risk import RiskPublisher, RiskPublishError
from sync.server.published import UPLOADABLE, published_lists, published_version
from sync.server.registry import RegistryFile
from sync.server.settings import ServerSettings
from sync.server.storage import SQLStorage
from sync.server.trace import TraceError, publish_f1, trace, trace_csv, trace_json, trace_summary, traced_holder
from sync.wire.envelope import EnvelopeError, open_envelope
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic
from sync.wire.protocol import DEVICE_ID_PATTERN, ErrorBody

log = logging.getLogger(__name__)

SESSION_COOKIE = "cp_session"
CSRF_HEADER = "X-CSRF-Token"
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


class _Denied(CheckpointError):
    """Not logged in (401), or logged in without the permission (403), or no CSRF token (403)."""

    def __init__(self, status: int, error: str, detail: str, *, html: bool):
        super().__init__(detail)
        self.status, self.error, self.detail, self.html = status, error, detail, html


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Model):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginResult(_Model):
    username: str
    role: str
    token: str
    csrf_token: str
    expires_at: int


LoginRefusal = Literal["rate_limited", "refused"]


class RevokeRequest(_Model):
    reason: str = Field(min_length=1, max_length=500)


class UserRequest(_Model):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: str = Field(min_length=1, max_length=16)


class TokenRequest(_Model):
    ttl_s: int = Field(DEFAULT_TOKEN_TTL_S, ge=60, le=365 * 24 * 3600)
    replace_key: bool = False


class TraceRequest(_Model):
    citizen_id: str | None = Field(None, min_length=1, max_length=64)
    uci: str | None = Field(None, min_length=1, max_length=128)
    since: datetime
    until: datetime
    window_min: int = Field(30, ge=1, le=720)


class ExportRequest(TraceRequest):
    format: Literal["csv", "json"] = "csv"


class PublishF1Request(_Model):
    holders: list[str] = Field(min_length=1, max_length=5000)
    until: date
    dry_run: bool = True


class TokenResult(_Model):
    device_id: str
    token: str
    expires_in_s: int


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def admin_routes(app: FastAPI, settings: ServerSettings, store: SQLStorage) -> None:
    """Add the login pages, dashboard and ``/admin/api`` to ``app``."""
    limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
    login_failures = parse_many(settings.limits.login_failures)

    @app.exception_handler(_Denied)
    async def _denied(request: Request, exc: _Denied) -> Response:
        log.warning("event=admin_denied path=%s client=%s reason=%s action=refused", request.url.path,
                    _client(request), exc.detail)
        if exc.html and exc.status == 401:
            return RedirectResponse("/login", status_code=303)
        if exc.html:
            return HTMLResponse(f"<!doctype html><p>{exc.detail}</p>", status_code=exc.status)
        return JSONResponse(ErrorBody(error=exc.error, detail=exc.detail).model_dump(), status_code=exc.status)

    async def principal(request: Request, *, html: bool) -> Principal:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            who = await run_in_threadpool(principal_for, store, auth.removeprefix("Bearer ").strip(),
                                          via_cookie=False)
        else:
            who = await run_in_threadpool(principal_for, store, request.cookies.get(SESSION_COOKIE, ""),
                                          via_cookie=True)
        if who is None:
            raise _Denied(401, "login_required", "log in first", html=html)
        return who

    async def require(request: Request, permission: Permission, *, html: bool = False,
                      form: dict[str, str] | None = None) -> Principal:
        """The logged-in user if allowed; for a state-changing request, also its CSRF token."""
        who = await principal(request, html=html)
        if not who.may(permission):
            await run_in_threadpool(store.audit, f"user:{who.username}", f"denied:{permission.value}",
                                    request.url.path, "denied", f"role {who.role.value}", _client(request))
            raise _Denied(403, "forbidden", f"role {who.role.value} may not {permission.value}", html=html)
        if request.method not in ("GET", "HEAD"):
            presented = request.headers.get(CSRF_HEADER) or (form or {}).get("csrf_token")
            if not who.csrf_ok(presented):
                await run_in_threadpool(store.audit, f"user:{who.username}", "csrf_refused", request.url.path,
                                        "denied", "missing or wrong CSRF token", _client(request))
                raise _Denied(403, "csrf", "missing or wrong CSRF token", html=html)
        return who

    def audit(who: Principal | str, request: Request, action: str, target: str, outcome: str,
              detail: str = "") -> Any:
        actor = who if isinstance(who, str) else f"user:{who.username}"
        return run_in_threadpool(store.audit, actor, action, target, outcome, detail, _client(request))

    async def form_of(request: Request) -> dict[str, str]:
        """An urlencoded form (the guard capped and read the body already)."""
        try:
            fields = parse_qs((await request.body()).decode(), max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            return {}
        return {k: v[0] for k, v in fields.items()}

    async def login(request: Request, username: str, password: str) -> LoginResult | LoginRefusal:
        """A new session, or why not (failures are counted per client address and user name)."""
        client = _client(request)
        key = f"{client}|{username[:64]}"
        if not all(limiter.test(limit, "login", key) for limit in login_failures):
            await audit(f"user:{username[:64]}", request, "login", username[:64], "rate_limited")
            return "rate_limited"
        role = await run_in_threadpool(check_password, store, username, password)
        if role is None:
            for limit in login_failures:
                limiter.hit(limit, "login", key)
            await audit(f"user:{username[:64]}", request, "login", username[:64], "refused")
            return "refused"
        session = await run_in_threadpool(open_session, store, username, settings.session_ttl_s)
        await audit(f"user:{username}", request, "login", username, "ok", f"role {role.value}")
        return LoginResult(username=username, role=role.value, token=session.token, csrf_token=session.csrf_token,
                           expires_at=session.expires_at)

    def set_cookie(response: Response, result: LoginResult) -> None:
        response.set_cookie(SESSION_COOKIE, result.token, max_age=settings.session_ttl_s, httponly=True,
                            secure=settings.secure_cookies, samesite="strict", path="/")

    # -- browser pages ------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page() -> HTMLResponse:
        return HTMLResponse(render_login())

    @app.post("/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        form = await form_of(request)
        result = await login(request, form.get("username", ""), form.get("password", ""))
        if result == "rate_limited":
            return HTMLResponse(render_login("Too many failed logins: wait a minute."), status_code=429)
        if not isinstance(result, LoginResult):
            return HTMLResponse(render_login("Wrong user name or password."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, result)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout_form(request: Request) -> Response:
        who = await require(request, Permission.VIEW, html=True, form=await form_of(request))
        await run_in_threadpool(store.end_session, who.session_hash)
        await audit(who, request, "logout", who.username, "ok")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        who = await require(request, Permission.VIEW, html=True)
        devices = await run_in_threadpool(store.fleet)
        revoked = await run_in_threadpool(store.revocations)
        lists = await run_in_threadpool(published_lists, settings)
        return HTMLResponse(render_dashboard(devices, datetime.now(UTC), lists, user=who.username,
                                             role=who.role.value, csrf_token=who.csrf_token,
                                             may_operate=who.may(Permission.OPERATE),
                                             may_audit=who.may(Permission.AUDIT), revoked=revoked))

    async def require_view(request: Request) -> Principal:
        return await require(request, Permission.VIEW, html=True)

    fleet_routes(app, store, RegistryFile(settings.data_dir), require_view)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    async def audit_page(request: Request) -> HTMLResponse:
        await require(request, Permission.AUDIT, html=True)
        return HTMLResponse(render_audit(await run_in_threadpool(store.audit_log, 500)))

    @app.post("/devices/{device_id}/{action}", include_in_schema=False)
    async def device_form(request: Request, device_id: str, action: str) -> Response:
        form = await form_of(request)
        who = await require(request, Permission.OPERATE, html=True, form=form)
        if action == "revoke":
            await revoke_device(who, request, device_id, form.get("reason") or "revoked from the dashboard")
        elif action == "readmit":
            await readmit_device(who, request, device_id)
        else:
            return HTMLResponse("<!doctype html><p>unknown action</p>", status_code=404)
        return RedirectResponse("/", status_code=303)

    @app.post("/tokens", include_in_schema=False)
    async def token_form(request: Request) -> Response:
        form = await form_of(request)
        who = await require(request, Permission.OPERATE, html=True, form=form)
        device_id = form.get("device_id", "").strip()
        if not _DEVICE_ID.fullmatch(device_id):
            return HTMLResponse("<!doctype html><p>not a device id</p>", status_code=422)
        token = await issue_token_as(who, request, device_id, DEFAULT_TOKEN_TTL_S, form.get("replace_key") == "1",
                                     html=True)
        return HTMLResponse(render_token(device_id, token, DEFAULT_TOKEN_TTL_S),
                            headers={"Cache-Control": "no-store"})

    # -- actions shared by pages and API --------------------------------------------------------
    async def issue_token_as(who: Principal, request: Request, device_id: str, ttl_s: int, replace_key: bool, *,
                             html: bool = False) -> str:
        try:
            token = await run_in_threadpool(lambda: issue_token(store, device_id, ttl_s=ttl_s,
                                                                replace_key=replace_key))
        except EnrollmentError as exc:
            await audit(who, request, "issue_token", device_id, "refused", str(exc))
            raise _Denied(409, "refused", str(exc), html=html) from None
        await audit(who, request, "issue_token", device_id, "ok", f"ttl_s={ttl_s} replace_key={replace_key}")
        return token

    def checked_device_id(device_id: str) -> str:
        if not _DEVICE_ID.fullmatch(device_id):
            raise _Denied(422, "bad_request", "not a device id", html=False)
        return device_id

    async def revoke_device(who: Principal, request: Request, device_id: str, reason: str) -> bool:
        checked_device_id(device_id)
        changed = await run_in_threadpool(store.revoke, device_id, reason, f"user:{who.username}")
        await audit(who, request, "revoke", device_id, "ok" if changed else "already_revoked", reason)
        log.warning("event=device_revoked device=%s by=%s reason=%s action=every request of it is refused", device_id,
                    who.username, reason)
        return changed

    async def readmit_device(who: Principal, request: Request, device_id: str) -> bool:
        checked_device_id(device_id)
        changed = await run_in_threadpool(store.readmit, device_id)
        await audit(who, request, "readmit", device_id, "ok" if changed else "not_revoked")
        log.warning("event=device_readmitted device=%s by=%s action=its requests are served again", device_id,
                    who.username)
        return changed

    # -- admin API ----------------------------------------------------------------------------------
    @app.post("/admin/api/login", response_model=LoginResult, responses={401: {"model": ErrorBody}})
    async def api_login(request: Request) -> Response:
        try:
            req = LoginRequest.model_validate_json(await request.body())
        except ValidationError:
            return JSONResponse(ErrorBody(error="bad_request", detail="body: {username, password}").model_dump(),
                                status_code=422)
        result = await login(request, req.username, req.password)
        if result == "rate_limited":
            return JSONResponse(ErrorBody(error="rate_limited", detail="too many failed logins").model_dump(),
                                status_code=429, headers={"Retry-After": "60"})
        if not isinstance(result, LoginResult):
            return JSONResponse(ErrorBody(error="unauthorized", detail="wrong user name or password").model_dump(),
                                status_code=401)
        response = JSONResponse(result.model_dump())
        set_cookie(response, result)
        return response

    @app.post("/admin/api/logout")
    async def api_logout(request: Request) -> dict:
        who = await require(request, Permission.VIEW)
        await run_in_threadpool(store.end_session, who.session_hash)
        await audit(who, request, "logout", who.username, "ok")
        return {"ok": True}

    @app.get("/admin/api/fleet")
    async def api_fleet(request: Request) -> list[dict]:
        await require(request, Permission.VIEW)
        devices = await run_in_threadpool(store.fleet)
        revoked = await run_in_threadpool(store.revocations)
        # with records lost for good (pruned on the device before a restored server held them) and chain forks
        return [{**asdict(d), "open_forks": d.open_forks, "revoked": d.device_id in revoked} for d in devices]

    @app.get("/admin/api/audit")
    async def api_audit(request: Request, limit: int = Query(200, ge=1, le=10_000)) -> list[dict]:
        await require(request, Permission.AUDIT)
        return [asdict(e) for e in await run_in_threadpool(store.audit_log, limit)]

    @app.post("/admin/api/devices/{device_id}/revoke")
    async def api_revoke(request: Request, device_id: str) -> dict:
        who = await require(request, Permission.OPERATE)
        try:
            req = RevokeRequest.model_validate_json(await request.body())
        except ValidationError:
            raise _Denied(422, "bad_request", "body: {reason}", html=False) from None
        return {"device_id": device_id, "revoked": True,
                "changed": await revoke_device(who, request, device_id, req.reason)}

    @app.post("/admin/api/devices/{device_id}/readmit")
    async def api_readmit(request: Request, device_id: str) -> dict:
        who = await require(request, Permission.OPERATE)
        return {"device_id": device_id, "revoked": False, "changed": await readmit_device(who, request, device_id)}

    @app.post("/admin/api/devices/{device_id}/token", response_model=TokenResult)
    async def api_token(request: Request, device_id: str) -> TokenResult:
        who = await require(request, Permission.OPERATE)
        checked_device_id(device_id)
        try:
            req = TokenRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError:
            raise _Denied(422, "bad_request", "body: {ttl_s, replace_key}", html=False) from None
        token = await issue_token_as(who, request, device_id, req.ttl_s, req.replace_key)
        return TokenResult(device_id=device_id, token=token, expires_in_s=req.ttl_s)

    @app.put("/admin/api/published/{kind}")
    async def api_publish(request: Request, kind: str) -> dict:
        """Publish a signed trust list or policy (made with ``checkpoint trust build`` / ``policy seal``)."""
        who = await require(request, Permission.OPERATE)
        if kind not in UPLOADABLE or settings.data_dir is None or settings.publisher_key is None:
            raise _Denied(404, "not_found", f"publishable: {', '.join(UPLOADABLE)}", html=False)
        blob = await request.body()
        path = settings.data_dir / "published" / f"{kind}.cpenv"
        try:
            envelope = open_envelope(blob, kind, [settings.publisher_key.public_key()])
        except EnvelopeError as exc:
            await audit(who, request, f"publish_{kind}", str(path.name), "refused", str(exc))
            raise _Denied(422, "bad_envelope", str(exc), html=False) from None
        current = published_version(path) or 0
        if envelope.version <= current:
            await audit(who, request, f"publish_{kind}", path.name, "refused",
                        f"version {envelope.version} is not newer than {current}")
            raise _Denied(409, "not_newer", f"version {envelope.version} is not newer than published {current}",
                          html=False)
        await run_in_threadpool(write_atomic, path, blob)
        await audit(who, request, f"publish_{kind}", path.name, "ok", f"version {current} -> {envelope.version}")
        log.info("event=list_published kind=%s version=%d by=%s action=devices install it at their next sync", kind,
                 envelope.version, who.username)
        return {"kind": kind, "version": envelope.version, "previous": current}

    @app.get("/admin/api/trace")
    async def api_trace(request: Request, holder: str = Query(..., pattern=r"^[0-9a-fA-F]{32}$")) -> list[dict]:
        """Where and when a holder (16-byte holder-id hash, hex) was scanned: tracer role only, audited."""
        who = await require(request, Permission.TRACE)
        rows = await run_in_threadpool(store.records_of_holder, bytes.fromhex(holder))
        await audit(who, request, "trace", holder.lower(), "ok", f"{len(rows)} records")
        return [dict(zip(("device_id", "seq", "wall_time", "decision", "reason"), r, strict=True)) for r in rows]

    async def traced(request: Request, who: Principal, action: str, model: type[TraceRequest]) -> tuple:
        """Run the trace a tracer's body asks for; audit it (who, query, how many results) as ``action``."""
        try:
            req = model.model_validate_json(await request.body())
            holder = traced_holder(citizen_id=req.citizen_id, uci=req.uci, key=settings.identifier_key)
            result = await run_in_threadpool(trace, store, RegistryFile(settings.data_dir).current(), holder,
                                             req.since, req.until, timedelta(minutes=req.window_min))
        except (ValidationError, TraceError) as exc:
            fields = ", format" if model is ExportRequest else ""
            detail = (str(exc) if isinstance(exc, TraceError)
                      else f"body: {{citizen_id or uci, since, until, window_min{fields}}}")
            await audit(who, request, action, "-", "refused", detail[:200])
            raise _Denied(422, "bad_request", detail[:300], html=False) from None
        await audit(who, request, action, holder.hex(), "ok", trace_summary(result, req.window_min))
        return req, result

    @app.post("/admin/api/trace")
    async def api_trace_contacts(request: Request) -> dict:
        """A holder's visits in a period and the candidate contacts (tracer role only, audited).

        Body: ``{"citizen_id" | "uci", "since", "until", "window_min"}``; the citizen id is keyed
        here and never stored; the answer carries keyed values only.
        """
        who = await require(request, Permission.TRACE)
        _req, result = await traced(request, who, "trace", TraceRequest)
        return trace_json(result)

    @app.post("/admin/api/trace/export")
    async def api_trace_export(request: Request) -> Response:
        """The trace as a file to take away (``format``: csv or json): the only way results leave the
        server. Tracer role only; audited as ``trace_export`` (who, when, the query, how many results)."""
        who = await require(request, Permission.TRACE)
        req, result = await traced(request, who, "trace_export", ExportRequest)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"trace-{result.holder.hex()[:8]}-{stamp}.{req.format}"
        if req.format == "csv":
            body, media = trace_csv(result), "text/csv; charset=utf-8"
        else:
            body, media = json.dumps(trace_json(result), ensure_ascii=False), "application/json"
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                         "Cache-Control": "no-store"})

    @app.post("/admin/api/trace/publish")
    async def api_trace_publish(request: Request) -> dict:
        """Publish selected contacts as F1 until a date (``dry_run`` first shows what would change).

        Tracer role only, audited; goes out as the next signed risk-list version.
        """
        who = await require(request, Permission.TRACE)
        try:
            req = PublishF1Request.model_validate_json(await request.body())
            holders = [bytes.fromhex(h) for h in req.holders]
        except (ValidationError, ValueError):
            raise _Denied(422, "bad_request", "body: {holders: [32 hex digits...], until: YYYY-MM-DD, dry_run}",
                          html=False) from None
        if settings.data_dir is None or settings.publisher_key is None:
            raise _Denied(409, "no_publisher", "this server has no publisher key or data directory", html=False)
        publisher = RiskPublisher(settings.data_dir / "risk", settings.publisher_key)
        try:
            dcc = await run_in_threadpool(store.dcc_holders, holders)
            plan, version = await run_in_threadpool(lambda: publish_f1(publisher, holders, req.until,
                                                                       dry_run=req.dry_run, dcc=dcc))
        except (TraceError, RiskPublishError) as exc:
            await audit(who, request, "publish_f1", f"{len(holders)} holders", "refused", str(exc)[:200])
            raise _Denied(409, "refused", str(exc)[:300], html=False) from None
        outcome = "dry_run" if req.dry_run else "ok"
        await audit(who, request, "publish_f1", f"{len(holders)} holders", outcome,
                    f"new {len(plan.new)}, changed {len(plan.changed)}, kept {len(plan.kept)}, "
                    f"not listable (DCC) {len(plan.unlistable)}, until {req.until}, "
                    f"risk version {version}")
        return {"dry_run": req.dry_run, "version": version, "until": req.until.isoformat(),
                "new": [h.hex() for h in plan.new], "changed": [h.hex() for h in plan.changed],
                "kept": [h.hex() for h in plan.kept], "unlistable": [h.hex() for h in plan.unlistable]}

    @app.post("/admin/api/users")
    async def api_add_user(request: Request) -> dict:
        """Create an account or reset one (password, role); its sessions end. Admin role only."""
        who = await require(request, Permission.AUDIT)
        try:
            req = UserRequest.model_validate_json(await request.body())
        except ValidationError:
            raise _Denied(422, "bad_request", "body: {username, password, role}", html=False) from None
        try:
            await run_in_threadpool(add_user, store, req.username, req.password, req.role)
        except AccountError as exc:
            await audit(who, request, "user_add", req.username, "refused", str(exc))
            raise _Denied(422, "bad_request", str(exc), html=False) from None
        await audit(who, request, "user_add", req.username, "ok", f"role {req.role}")
        return {"username": req.username, "role": req.role}

    @app.post("/admin/api/users/{username}/disable")
    async def api_disable_user(request: Request, username: str) -> dict:
        who = await require(request, Permission.AUDIT)
        changed = await run_in_threadpool(store.disable_user, username[:64])
        await audit(who, request, "user_disable", username[:64], "ok" if changed else "no_such_user")
        if not changed:
            raise _Denied(404, "not_found", "no such user", html=False)
        return {"username": username, "disabled": True}

    @app.get("/admin/api/openapi.json", include_in_schema=False)
    async def api_schema(request: Request) -> Response:
        await require(request, Permission.VIEW)
        return Response(json.dumps(app.openapi()), media_type="application/json")
