"""``checkpoint verify``: one QR text per stdin line -> one verdict per line (JSON with --json)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from edge.cli.common import ISO_TIME, parse_iso_time, reports_errors
from edge.scan.clock import Clock, FixedClock, SystemClock


def _clock(config, at: datetime | None) -> Clock:
    if at:
        return FixedClock(at, trusted=True)
    if config is not None and config.clock.backend == "fixed" and config.clock.fixed_at:
        return FixedClock(parse_iso_time(config.clock.fixed_at), trusted=True)
    if config is not None:  # the device's own clock: its floor, RTC and NTP settings
        from edge.device.appliance import make_clock
        return make_clock(config)
    return SystemClock()


def _build(config_path: Path | None, trust_path: Path | None, policy_path: Path | None,
           publisher_path: Path | None, clock_at: datetime | None):
    from edge.config import load_config
    from edge.device.appliance import build_verifier
    from edge.lists.policy import default_policy, load_policy_file
    from edge.passes.trust import TrustStore, load_trust_file
    from edge.scan.verifier import Verifier
    from sync.wire.keyfiles import load_ed25519_public

    if config_path is not None:
        config = load_config(config_path)
        return build_verifier(config, _clock(config, clock_at))
    publisher = [load_ed25519_public(publisher_path)] if publisher_path else []
    if (trust_path or policy_path) and not publisher:
        raise click.UsageError("--trust/--policy need --publisher-key (the pinned key that signed them)")
    trust = load_trust_file(trust_path, publisher) if trust_path else TrustStore()
    # a policy file checked by hand, not installed on a device: whichever checkpoints it names
    policy = load_policy_file(policy_path, publisher, None) if policy_path else default_policy()
    return Verifier(trust=trust, risk=None, policy=policy, clock=_clock(None, clock_at))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON verdict per line.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Device config: trust, policy, risk list and publisher key from its paths.")
@click.option("--at", "at", type=ISO_TIME, help="Verify as of this ISO-8601 time (a trusted, fixed clock).")
@click.option("--trust", "trust_path", type=click.Path(path_type=Path, dir_okay=False), help="Signed trust bundle.")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path, dir_okay=False), help="Signed policy.")
@click.option("--publisher-key", "publisher_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Publisher public key (PEM) that signed --trust/--policy.")
@reports_errors
def verify(as_json: bool, config_path: Path | None, at: datetime | None, trust_path: Path | None,
           policy_path: Path | None, publisher_path: Path | None) -> None:
    """Verify QR texts read from stdin, one per line, and print one verdict per line."""
    verifier = _build(config_path, trust_path, policy_path, publisher_path, at)
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        verdict = verifier.verify(text)
        if as_json:
            click.echo(json.dumps(verdict.to_json(), ensure_ascii=False))
        else:
            click.echo(f"{verdict.decision.value:<6} {verdict.reason.value:<24} {verdict.format or '-':<4} "
                       f"{verdict.kind or '-'}  {verdict.message_en}")
