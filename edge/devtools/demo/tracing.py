"""The demo's F1 trace, end to end: a tracer on the central server traces the F0 case from the
device's own synced scans, publishes the contacts as F1 through the signed risk list (dry run
first), and the device, after its next sync, refuses a contact it had let through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import requests

from edge.config import Config
from edge.device.appliance import Appliance
from edge.device.daemon import DecisionEvent
from edge.devtools.demo.scenario import F0_ID, Traveller
from edge.devtools.demo.world import Central, render_frames
from edge.scan.light.base import NullLight
from edge.verdict import Decision, Reason

#: the contacts' F1 listing lasts this long (the tracer's choice)
F1_DAYS = 14
#: whom the demo shows again at the checkpoint after the F1 list reached it (a CP1 pass that was green before)
RESCANNED = ("vaccinated resident",)


@dataclass
class TraceOutcome:
    """What the trace step did, for the narrative and the end-to-end test."""

    visits: int = 0
    contacts: list[str] = field(default_factory=list)        # traveller labels, closest first
    dry_run_new: list[str] = field(default_factory=list)
    unlistable: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    risk_version: int = 0
    installed: list[tuple[str, int]] = field(default_factory=list)
    rescans: list[DecisionEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Tracer:
    """A tracer's session on the admin API (what a browser or a script of the health office does)."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        answer = requests.post(f"{url}/admin/api/login", json={"username": username, "password": password},
                               timeout=10)
        answer.raise_for_status()
        body = answer.json()
        self.headers = {"Authorization": f"Bearer {body['token']}", "X-CSRF-Token": body["csrf_token"]}

    def post(self, path: str, body: dict) -> dict:
        answer = requests.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {answer.status_code} {answer.text[:300]}")
        return answer.json()


def trace_f0(central: Central, url: str, config: Config, workdir: Path, labels: dict[bytes, str],
             people: list[Traveller], now: datetime, say: Callable[[str], None]) -> TraceOutcome:
    """Trace the F0 case over the demo's scans, publish the contacts as F1, re-scan two of them.

    ``labels``: the holder values the server stores -> which traveller (the demo knows; a tracer
    sees keyed values only).
    """
    outcome = TraceOutcome()
    name = lambda hex_holder: labels.get(bytes.fromhex(hex_holder), f"holder {hex_holder[:12]}")  # noqa: E731
    tracer = _Tracer(url, "tracer", central.add_account("tracer", "tracer"))
    found = tracer.post("/admin/api/trace", {"citizen_id": F0_ID, "since": (now - timedelta(hours=1)).isoformat(),
                                             "until": (now + timedelta(hours=1)).isoformat(), "window_min": 30})
    outcome.visits = len(found["visits"])
    outcome.contacts = [name(c["holder"]) for c in found["contacts"]]
    where = ", ".join(f"{v['checkpoint_id']} {v['at'][11:19]} {v['decision']}" for v in found["visits"])
    say(f"      a tracer (role tracer, over the admin API) traces the F0 case by citizen id, ±30 min: "
        f"{outcome.visits} visit(s) ({where}); {len(found['contacts'])} candidate contact(s), closest first:")
    for c in found["contacts"]:
        say(f"          {name(c['holder']):<28} {c['holder'][:12]}…  closest {c['closest_min']:4.1f} min  "
            f"{c['times']}×  {', '.join(c['checkpoints'])}")
    chosen = [c["holder"] for c in found["contacts"]]
    if not chosen:
        outcome.problems.append("the trace found no contacts of the F0 case")
        return outcome
    until = (now + timedelta(days=F1_DAYS)).date().isoformat()
    dry = tracer.post("/admin/api/trace/publish", {"holders": chosen, "until": until, "dry_run": True})
    outcome.dry_run_new, outcome.kept = [name(h) for h in dry["new"]], [name(h) for h in dry["kept"]]
    outcome.unlistable = [name(h) for h in dry["unlistable"]]
    kept = f" ({', '.join(outcome.kept)}: already F0, an F0 stays F0)" if outcome.kept else ""
    say(f"      the tracer selects them all; dry run of publishing them as F1 until {until}: new {len(dry['new'])} "
        f"({', '.join(outcome.dry_run_new)}), changed {len(dry['changed'])} "
        f"({', '.join(name(h) for h in dry['changed']) or '-'}), kept {len(dry['kept'])}{kept}; not listable "
        f"{len(dry['unlistable'])} ({', '.join(name(h) for h in dry['unlistable']) or '-'}: vaccine passports, "
        "which devices look up by certificate hash: the health authority lists them by UCI)")
    done = tracer.post("/admin/api/trace/publish", {"holders": chosen, "until": until, "dry_run": False})
    outcome.risk_version = done["version"]
    say(f"      published: signed risk list version {done['version']} (the audit trail records both, by 'tracer')")

    again = [p for p in people if p.label in RESCANNED]
    frames = render_frames(workdir / "frames-after-trace", again, seed=11)
    replay = config.camera.model_copy(update={"path": workdir / "frames-after-trace"})
    device = Appliance(config.model_copy(update={"camera": replay}), light=NullLight(),
                       on_decision=outcome.rescans.append)
    try:
        assert device.sync is not None
        synced = device.sync.sync_until_done(deadline_s=30)
        outcome.installed = list(synced.installed)
        say(f"      the device syncs: installed {outcome.installed}; the {', '.join(RESCANNED)} shows up again "
            f"({frames} frames, the same daemon path):")
        device.run()
        device.sync.sync_until_done(deadline_s=30)  # the new decisions go up too
    finally:
        device.close()
    for person in again:
        decided = [e for e in outcome.rescans if e.text == person.text]
        shown = f"{decided[0].shown.value}/{decided[0].verdict.reason.value}" if decided else "not decided"
        say(f"          {person.label:<28} before {person.expected.value:<6} now {shown}")
        if len(decided) != 1 or (decided[0].shown, decided[0].verdict.reason) != (Decision.REFUSE, Reason.RISK_F1):
            outcome.problems.append(f"after the F1 publication, {person.label}: {shown}, expected refuse/risk_f1")
    if ("risk", outcome.risk_version) not in outcome.installed:
        outcome.problems.append(f"the device did not install risk list version {outcome.risk_version}")
    return outcome
