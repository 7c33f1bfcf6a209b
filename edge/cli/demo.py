"""``checkpoint demo``: the whole path once, for real, on loopback, with embedded defaults.

A central server (SQLite) publishes a signed trust list, policy and risk list; a checkpoint
device is provisioned, enrolls, syncs, and its real daemon loop reads camera-like frames of nine
travellers from the replay source; every decision is committed to the scan log before the
(terminal) lamp shows it; the log is synced up, and the server's copy is compared record by record.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import click

from edge.device.appliance import Appliance
from edge.device.daemon import DecisionEvent
from edge.devtools.demo.attacks import attack_the_lists
from edge.devtools.demo.scenario import Traveller
from edge.devtools.demo.tracing import TraceOutcome, trace_f0
from edge.devtools.demo.world import Central, demo_now, make_travellers, provision_device, render_frames
from edge.verdict import Reason


@dataclass
class DemoOutcome:
    """What happened, for the summary and for the end-to-end test."""

    travellers: list[Traveller]
    events: list[DecisionEvent] = field(default_factory=list)
    device_records: list[dict] = field(default_factory=list)
    server_records: list[dict] = field(default_factory=list)
    daemon_exit: int | None = None
    server_url: str = ""
    #: what went wrong when the lists were attacked after the run (empty: every attack refused)
    attack_problems: list[str] = field(default_factory=list)
    #: the F0 case traced, the contacts published as F1 and refused at their next scan
    trace: TraceOutcome | None = None

    @property
    def mismatches(self) -> list[str]:
        """Every way the run differs from what must happen; empty when the demo succeeded."""
        problems = []
        for t in self.travellers:
            decided = [e for e in self.events if e.text == t.text]
            if len(decided) != 1:
                problems.append(f"{t.label}: decided {len(decided)} times, expected exactly once")
                continue
            got = decided[0]
            if (got.shown, got.verdict.reason) != (t.expected, t.expected_reason):
                problems.append(f"{t.label}: got {got.shown.value}/{got.verdict.reason.value}, "
                                f"expected {t.expected.value}/{t.expected_reason.value}")
        if len(self.device_records) != len(self.events):
            problems.append(f"scan log holds {len(self.device_records)} records for {len(self.events)} decisions")
        device = [(int(r["seq"]), _hex(r["hash"])) for r in self.device_records]
        server = [(int(r["seq"]), _hex(r["hash"])) for r in self.server_records]
        if device != server:
            problems.append(f"server holds {len(server)} records, device {len(device)}: they differ")
        if self.daemon_exit not in (0, None):
            problems.append(f"daemon exited with {self.daemon_exit}")
        problems.extend(self.attack_problems)
        problems.extend(self.trace.problems if self.trace else ["the F1 trace did not run"])
        return problems


def _labels(outcome: DemoOutcome) -> dict[bytes, str]:
    """The holder value the server stores for each traveller (the server's record of each decision)."""
    by_text = {p.text: p.label for p in outcome.travellers}
    labels = {}
    for event, record in zip(outcome.events, outcome.server_records, strict=False):
        if record["holder_hash"]:
            labels[bytes(record["holder_hash"])] = by_text.get(event.text, "unexpected code")
    return labels


def _hex(value: object) -> str:
    return value.hex() if isinstance(value, bytes | bytearray) else str(value)


def run_demo(workdir: Path, out: TextIO, *, db_url: str | None = None, serve: bool = False) -> DemoOutcome:
    """Run the demo in ``workdir``; write the narrative to ``out``; return the outcome."""
    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    workdir = workdir.resolve()  # the device's config is read later from its own folder: no relative paths
    started = time.monotonic()
    now = demo_now()
    central = Central.create(workdir / "server", db_url=db_url)
    central.publish(now)
    url = central.start()
    say(f"[1/7] central server on {url} (db {central.settings.db_url.split('?')[0]}): published signed "
        "trust list (a CP1 issuer, VN and DE DCC signers), a policy naming this checkpoint, and a risk "
        "list covering CP1 and VN DCCs (1 F0 by citizen id and vaccine-passport UCI, 1 F1; ids keyed with "
        f"the server's identifier key {central.id_key.key_id}, which no device holds)")
    appliance = None
    try:
        people = make_travellers(central, now)
        frames = render_frames(workdir / "frames", people)
        config = provision_device(workdir / "device", central, url, workdir / "frames")
        say(f"[2/7] issued {len(people)} passes, rendered {frames} camera-like frames (perspective, blur, noise, "
            f"glare); provisioned device {config.device.id}")

        outcome = DemoOutcome(people, server_url=url)
        appliance = Appliance(config, light_stream=out, on_decision=outcome.events.append)
        assert appliance.sync is not None
        appliance.sync.ensure_enrolled()  # with the bundle's token file, as a device on the road does
        first = appliance.sync.sync_until_done(deadline_s=30)
        say(f"[3/7] device enrolled its own key and synced: installed {first.installed}; "
            f"clock trusted: {appliance.clock.trusted()}")

        say("[4/7] daemon running on the replay camera; each decision is committed before the lamp shows it:")
        labels = {p.text: p for p in people}
        def narrate(event: DecisionEvent) -> None:
            person = labels.get(event.text)
            name = person.label if person else "unexpected code"
            say(f"          {name:<26} {event.shown.value:<6} {event.verdict.reason.value:<18} "
                f"{event.latency_ms:6.1f} ms  {event.verdict.message_vi} / {event.verdict.message_en}")
        appliance.daemon.on_decision = lambda e: (outcome.events.append(e), narrate(e))
        outcome.daemon_exit = appliance.run()

        pushed = appliance.sync.sync_until_done(deadline_s=30)
        outcome.device_records = appliance.scanlog.records()
        from sync.server.storage import open_storage
        storage = open_storage(central.settings.db_url)
        try:
            outcome.server_records = storage.records(config.device.id)
        finally:
            storage.close()
        latencies = [e.latency_ms for e in outcome.events]
        say(f"[5/7] synced: server acknowledged up to seq {pushed.acked_seq}")
        appliance.close()
        appliance = None
        say("[6/7] F1 tracing: the F0 case was refused above; who was at this checkpoint with them?")
        outcome.trace = trace_f0(central, url, config, workdir, _labels(outcome), people, now, say)
        say("[7/7] the lists attacked (the device restarts on an edited card, then is served another "
            "checkpoint's validly signed policy):")
        f0_case = next(p for p in people if p.expected_reason is Reason.RISK_F0)
        outcome.attack_problems = attack_the_lists(central, config, f0_case.text, say)
        say("")
        say(f"decisions: {len(outcome.events)}   frame-to-light latency median "
            f"{statistics.median(latencies) if latencies else 0:.1f} ms, max {max(latencies, default=0):.1f} ms")
        say(f"device scan log: {len(outcome.device_records)} records, chain head "
            f"{_hex(outcome.device_records[-1]['hash'])[:16] if outcome.device_records else '-'}")
        say(f"server:          {len(outcome.server_records)} records, chain head "
            f"{_hex(outcome.server_records[-1]['hash'])[:16] if outcome.server_records else '-'}")
        problems = outcome.mismatches
        if problems:
            say("DEMO FAILED:")
            for p in problems:
                say(f"  - {p}")
        else:
            say("the server holds exactly the device's records (same seqs, same hashes); "
                f"every verdict was as expected. {time.monotonic() - started:.1f} s")
        if serve:
            password = central.add_account("demo", "admin")
            say(f"\nserver stays up: open {url}/ in a browser and log in as 'demo' (role admin), password "
                f"{password} . Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return outcome
    finally:
        if appliance is not None:
            appliance.close()
        central.stop()


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's files here (default: a temporary folder, removed afterwards).")
@click.option("--db", "db_url", default=None, help="Server database URL (default: SQLite in the workdir).")
@click.option("--serve", is_flag=True, help="Keep the server (and its dashboard) up until Ctrl-C.")
def demo(workdir: Path | None, db_url: str | None, serve: bool) -> None:
    """End-to-end demo: central server, one device, nine travellers; exits non-zero on any mismatch."""
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="checkpoint-demo-")) if temporary else workdir
    root.mkdir(parents=True, exist_ok=True)
    try:
        outcome = run_demo(root, sys.stdout, db_url=db_url, serve=serve)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    if outcome.mismatches:
        sys.exit(1)
