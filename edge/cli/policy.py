"""``checkpoint policy``: write the default policy, sign a policy file, show a signed one."""

from __future__ import annotations

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
@reports_errors
def default(zone: str, version: int, checkpoints: tuple[str, ...]) -> None:
    """Print the demo policy (Hanoi 2021 zones) as JSON, to edit and then seal."""
    from edge.lists.policy import default_policy

    click.echo(default_policy(zone, version, checkpoints or None).to_json_bytes().decode())


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
