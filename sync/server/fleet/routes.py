"""The commanders' pages on the admin side: ``/fleet`` and ``/checkpoints/{id}`` (viewer role and up).

Built from the registry (``server registry``), the devices' last heartbeats and the hourly roll-up
(the fleet's own rows for its charts, each device's rows for a checkpoint);
a device that is enrolled but in no registry row is shown under its own id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from sync.server.fleet.activity import LOCAL, activity, day_counts
from sync.server.fleet.health import CheckpointHealth, checkpoint_health, device_health
from sync.server.fleet.pages import (
    LANGS,
    CheckpointPage,
    FleetFilter,
    FleetPage,
    RecentDecision,
    render_checkpoint,
    render_fleet,
)
from sync.server.fleet.sharing import AlarmBoard
from sync.server.registry import Checkpoint, RegistryFile, device_checkpoint
from sync.server.storage import SQLStorage
from sync.wire.protocol import Heartbeat, wall_instant

RequireView = Callable[[Request], Awaitable[object]]


def _fleet(store: SQLStorage, registry: RegistryFile, now: datetime, only: str | None = None) -> list[CheckpointHealth]:
    """Every checkpoint of the registry (and every enrolled device the registry lacks) with its
    health; with ``only``, that checkpoint alone (its page parses no other device's heartbeat)."""
    known = registry.current().checkpoints
    devices: dict[str, list[str]] = {cid: c.device_ids for cid, c in known.items() if only in (None, cid)}
    for device_id in store.device_ids():
        cid = device_checkpoint(device_id)
        if cid in known:
            if cid in devices and device_id not in devices[cid]:
                devices[cid].append(device_id)
        elif only in (None, device_id):
            devices.setdefault(device_id, [device_id])
    beats = store.heartbeats([d for ids in devices.values() for d in ids] if only is not None else None)
    out = []
    for cid, ids in devices.items():
        checkpoint = known.get(cid) or Checkpoint(cid, cid, "")
        healths = []
        for device_id in ids:
            received, body = beats.get(device_id, (None, None))
            beat = Heartbeat.model_validate_json(body) if body else None
            healths.append(device_health(device_id, beat, received, now))
        out.append(checkpoint_health(checkpoint, healths))
    return out


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang", "vi")
    return lang if lang in LANGS else "vi"


def fleet_routes(app: FastAPI, store: SQLStorage, registry: RegistryFile, require_view: RequireView) -> None:
    """Add the fleet view and the per-checkpoint page."""
    alarms_board = AlarmBoard(store, registry.current)

    @app.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
    async def fleet_page(request: Request) -> HTMLResponse:
        await require_view(request)
        now = datetime.now(UTC)
        checkpoints = await run_in_threadpool(_fleet, store, registry, now)
        midnight = now.astimezone(LOCAL).replace(hour=0, minute=0, second=0, microsecond=0)
        rows = await run_in_threadpool(store.hourly_counts, midnight - timedelta(days=6))
        today = await run_in_threadpool(store.decisions_since, midnight)
        per = {c.checkpoint.checkpoint_id: day_counts(today, [d.device_id for d in c.devices]) for c in checkpoints}
        q = request.query_params
        chosen = FleetFilter(district=q.get("district", "")[:100], zone=q.get("zone", "")[:100],
                             health=q.get("health", "")[:20], sort=q.get("sort", "health")[:20])
        _at, alarms = await run_in_threadpool(alarms_board.current, now)
        return HTMLResponse(render_fleet(FleetPage(checkpoints, activity(rows, now), per, now, _lang(request),
                                                   chosen, alarms)))

    @app.get("/checkpoints/{checkpoint_id}", response_class=HTMLResponse, include_in_schema=False)
    async def checkpoint_page(request: Request, checkpoint_id: str) -> HTMLResponse:
        await require_view(request)
        now = datetime.now(UTC)
        found = [c for c in await run_in_threadpool(_fleet, store, registry, now, checkpoint_id)
                 if c.checkpoint.checkpoint_id == checkpoint_id]
        if not found:
            return HTMLResponse("<!doctype html><p>no such checkpoint</p>", status_code=404)
        health = found[0]
        device_ids = [d.device_id for d in health.devices]
        rows = await run_in_threadpool(store.hourly_counts, now - timedelta(days=8), device_ids)
        recent = [RecentDecision(wall_instant(at), d, decision, reason, kind)
                  for d, at, decision, reason, kind in await run_in_threadpool(store.recent_decisions, device_ids)]
        return HTMLResponse(render_checkpoint(CheckpointPage(health, activity(rows, now, set(device_ids)), recent,
                                                             now, _lang(request))))


