"""The demo's attacks on the lists: what an SD card in hand or a man in the middle can no longer do."""

from __future__ import annotations

import json
from collections.abc import Callable

from edge.config import Config
from edge.device.appliance import Appliance
from edge.devtools.demo.world import Central
from edge.lists.policy import default_policy, sign_policy
from edge.scan.light import Fault
from edge.scan.light.base import NullLight
from edge.verdict import Decision, Reason, Verdict


def _faults(device: Appliance) -> set[Fault]:
    return {fault for probe in device.health_probes() for fault in probe()}


def _show(verdict: Verdict) -> str:
    return f"{verdict.decision.value}/{verdict.reason.value}"


def attack_the_lists(central: Central, config: Config, f0_pass: str, say: Callable[[str], None]) -> list[str]:
    """Edit the card's risk store and serve a policy for another checkpoint; return what went wrong
    (empty when every attack was refused and the device repaired itself)."""
    problems: list[str] = []
    manifest = config.resolve(config.risk.path) / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["segments"] = []  # same version and digest: the edit that used to let the F0 case PASS
    manifest.write_text(json.dumps(data), encoding="utf-8")
    device = Appliance(config, light=NullLight())  # a restart reads the card again
    try:
        verdict = device.verifier.verify(f0_pass)
        faults = _faults(device)
        say(f"      risk store on the card edited (empty segment list): F0 case {_show(verdict)}, "
            f"lamp fault {'list_damaged' if Fault.LIST_DAMAGED in faults else 'none'}")
        if (verdict.reason, Fault.LIST_DAMAGED in faults) != (Reason.RISK_LIST_DAMAGED, True):
            problems.append(f"edited risk store: got {_show(verdict)} and faults {sorted(faults)}")
        assert device.sync is not None
        # as the daemon does: a server that says "slow down" (429, the demo syncs often) is waited for
        repaired = device.sync.sync_until_done(deadline_s=60)
        verdict = device.verifier.verify(f0_pass)
        say(f"      next sync installed {repaired.installed}: F0 case {_show(verdict)}")
        if verdict.decision is not Decision.REFUSE or Fault.LIST_DAMAGED in _faults(device):
            problems.append(f"after the repairing sync: got {_show(verdict)}")

        published = central.settings.data_dir / "published" / "policy.cpenv"  # type: ignore[operator]
        assert central.settings.publisher_key is not None
        other = default_policy("hn-zone-2", 2, ("hn-zone-2",))
        published.write_bytes(sign_policy(other, central.settings.publisher_key))
        served = device.sync.sync_until_done(deadline_s=60)
        say(f"      a validly signed policy for zone-2 checkpoints served: installed {served.installed}, "
            f"policy in use version {device.verifier.policy_version}")
        if ("policy", 2) in served.installed or device.verifier.policy_version != 1:
            problems.append("a policy for other checkpoints was installed")
        floor = device.floor
        say(f"      anti-rollback floor (kept apart from the lists): trust {floor.get('trust')}, "
            f"policy {floor.get('policy')}, risk {floor.get('risk')}")
    finally:
        device.close()
    return problems
