"""``checkpoint policy``: write the default policy or a profile, sign a policy file, show a signed
one, publish each checkpoint's own policy from the profiles the registry names."""

from __future__ import annotations

import getpass
import json
from collections import Counter
from pathlib import Path

import click

from edge.cli.common import publisher_public_key_option, reports_errors
from sync.wire.fsutil import write_atomic
from sync.wire.keyfiles import load_ed25519_private, load_ed25519_public


@click.group()
def policy() -> None:
    """Checkpoint policies (signed JSON)."""


@policy.command("default")
@click.option("--zone", default="hn-zone-1", show_default=True, help="The checkpoint's zone.")
@click.option("--version", "version", type=int, default=1, show_default=True)
@click.option("--checkpoint", "checkpoints", multiple=True,
              help="Checkpoint id or group the policy applies to (repeat; default: the zone as a group).")
@click.option("--profile", "as_profile", is_flag=True,
              help="Print a profile instead (no version, no checkpoints): save it as PROFILES/<name>.json "
                   "for 'checkpoint policy publish'.")
@reports_errors
def default(zone: str, version: int, checkpoints: tuple[str, ...], as_profile: bool) -> None:
    """Print the demo policy (Hanoi 2021 zones) as JSON, to edit and then seal."""
    from edge.lists.policy import PolicyProfile, default_policy

    policy = default_policy(zone, version, checkpoints or None)
    if as_profile:
        profile = PolicyProfile(**policy.model_dump(exclude={"version", "checkpoints"}))
        click.echo(profile.to_json_bytes().decode())
        return
    click.echo(policy.to_json_bytes().decode())


@policy.command("schema")
def schema() -> None:
    """Print the JSON schema of a policy document (for writing or checking one by hand)."""
    from edge.lists.policy import policy_json_schema

    click.echo(policy_json_schema())


@policy.command("seal")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--publisher-key", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@reports_errors
def seal_command(source: Path, publisher_key: Path, out: Path) -> None:
    """Validate a policy JSON file and write it as a signed envelope."""
    from edge.lists.policy import parse_policy, sign_policy

    parsed = parse_policy(source.read_bytes())
    blob = sign_policy(parsed, load_ed25519_private(publisher_key))
    write_atomic(out, blob)  # the server may be serving this file right now
    click.echo(f"policy version={parsed.version} zone={parsed.checkpoint_zone} "
               f"checkpoints={','.join(parsed.checkpoints)} file={out}")


@policy.command("show")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@publisher_public_key_option
@reports_errors
def show(path: Path, publisher_public_key: Path) -> None:
    """Verify a signed policy and print it."""
    from edge.lists.policy import load_policy_file

    parsed = load_policy_file(path, [load_ed25519_public(publisher_public_key)], None)
    click.echo(parsed.to_json_bytes().decode())


@policy.command("publish")
@click.option("--profiles", "profiles_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of policy profiles, one <profile>.json each (see 'checkpoint policy default --profile').")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("server-data"),
              show_default=True, help="The central server's data directory (registry, publisher key).")
@click.option("--db", "db_url", default=None, help="The server's database, for the audit trail "
              "(default: DATA_DIR/server.sqlite).")
@click.option("--dry-run", is_flag=True, help="Say what would be sealed; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (each checkpoint's version).")
@reports_errors
def publish(profiles_dir: Path, data_dir: Path, db_url: str | None, dry_run: bool, as_json: bool) -> None:
    """Seal and publish each registry checkpoint's own policy from the profile its row names.

    Each policy names its checkpoint alone (a device refuses any other). Only checkpoints whose
    rules changed get a new version; checkpoints without a profile keep the fleet-wide policy.
    Every profile and registry name is checked before anything is written.
    """
    from edge.lists.policy_profiles import load_profiles, seal_per_checkpoint
    from sync.server.published import checkpoint_policy_path, fleet_policy_path, published_version
    from sync.server.registry import REGISTRY_FILE, Registry
    from sync.server.settings import ServerSettings
    from sync.server.storage import open_storage
    from sync.wire.fsutil import write_atomic

    settings = ServerSettings.from_data_dir(data_dir, db_url=db_url)
    if settings.publisher_key is None:
        raise click.ClickException(f"{data_dir} has no publisher key: 'checkpoint server init' makes one")
    registry = Registry.load(data_dir)
    if not registry.checkpoints:
        raise click.ClickException(f"no registry in {data_dir / REGISTRY_FILE}: load the checkpoints file first "
                                   "('checkpoint server registry checkpoints.csv')")
    profiles = load_profiles(profiles_dir)
    assignments = [(c.checkpoint_id, c.policy) for c in registry.checkpoints.values() if c.policy]

    def current(checkpoint_id: str) -> bytes | None:
        path = checkpoint_policy_path(data_dir, checkpoint_id)
        return path.read_bytes() if path.is_file() else None

    sealed = seal_per_checkpoint(assignments, profiles, current, settings.publisher_key,
                                 floor=published_version(fleet_policy_path(data_dir)) or 0)
    changed = [s for s in sealed if s.changed]
    if not dry_run:
        for s in changed:
            write_atomic(checkpoint_policy_path(data_dir, s.checkpoint_id), s.blob or b"")
        if changed:
            storage = open_storage(settings.db_url)
            try:
                storage.audit(f"cli:{getpass.getuser()}", "policy_publish", str(profiles_dir), "ok",
                              f"{len(changed)} of {len(sealed)} checkpoint policies sealed", "cli")
            finally:
                storage.close()
    fleet_wide = len(registry.checkpoints) - len(assignments)
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "fleet_wide": fleet_wide, "checkpoints": [
            {"checkpoint_id": s.checkpoint_id, "profile": s.profile, "version": s.version, "previous": s.previous,
             "changed": s.changed} for s in sealed]}, ensure_ascii=False))
        return
    per_profile = Counter(s.profile for s in sealed)
    new = Counter(s.profile for s in changed)
    verb = "would seal" if dry_run else "sealed"
    for name in sorted(per_profile):
        click.echo(f"profile {name}: {per_profile[name]} checkpoint(s), {verb} {new[name]}, "
                   f"unchanged {per_profile[name] - new[name]}")
    click.echo(f"{len(changed)} checkpoint policy(ies) {verb}; {fleet_wide} checkpoint(s) without a profile keep "
               "the fleet-wide policy" + ("" if dry_run else "; devices install theirs at their next sync"))
