"""``checkpoint trust``: build a signed trust bundle (CP1 issuer keys, EU DSCs, revoked pass ids) and show one."""

from __future__ import annotations

import base64
from pathlib import Path

import click

from edge.cli.common import publisher_public_key_option, reports_errors
from sync.wire.fsutil import write_atomic
from sync.wire.keyfiles import load_ed25519_private, load_ed25519_public


def _read_cert(path: Path) -> bytes:
    """DER bytes of a certificate file (DER, PEM, or bare base64 as in the DCC test data)."""
    raw = path.read_bytes()
    if raw.startswith(b"0\x82") or raw.startswith(b"0\x81"):
        return raw
    text = b"".join(line for line in raw.splitlines() if line and not line.startswith(b"-----"))
    return base64.b64decode(text)


@click.group()
def trust() -> None:
    """Trust bundles: which keys may sign passes."""


@trust.command("build")
@click.option("--publisher-key", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Publisher Ed25519 private key (PEM) that signs the bundle.")
@click.option("--issuer-key", "issuer_keys", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="CP1 issuer key file (only its public half goes in the bundle); repeatable.")
@click.option("--dsc", "dscs", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="EU DCC signing certificate (DER, PEM or base64); repeatable.")
@click.option("--revoke", "revoked", multiple=True, help="Revoked pass id; repeatable.")
@click.option("--version", "version", type=int, required=True, help="Bundle version (increase every time).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@reports_errors
def build(publisher_key: Path, issuer_keys: tuple[Path, ...], dscs: tuple[Path, ...], revoked: tuple[str, ...],
          version: int, out: Path) -> None:
    """Make a signed trust bundle."""
    from edge.passes.issuer import IssuerKey
    from edge.passes.trust import TrustedKey, build_trust_envelope

    keys = [IssuerKey.load(p).trusted_key() for p in issuer_keys]
    keys += [TrustedKey.from_certificate(_read_cert(p)) for p in dscs]
    blob = build_trust_envelope(keys, load_ed25519_private(publisher_key), version, revoked)
    write_atomic(out, blob)  # the server may be serving this file right now
    click.echo(f"trust bundle version={version} keys={len(keys)} revoked={len(revoked)} file={out}")


@trust.command("show")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@publisher_public_key_option
@reports_errors
def show(path: Path, publisher_public_key: Path) -> None:
    """Verify a trust bundle and list its keys."""
    from edge.passes.trust import load_trust_file

    store = load_trust_file(path, [load_ed25519_public(publisher_public_key)])
    click.echo(f"version={store.version} issued_at={store.issued_at} keys={len(store)} "
               f"revoked={len(store.revoked_pass_ids)}")
    for key in store.all_keys():
        click.echo(f"  {key.source} kid={key.kid.hex()} issuer={key.issuer} alg={key.algorithm or '-'} "
                   f"from={key.not_before} to={key.not_after} usages={''.join(sorted(key.usages)) or 'any'}")
