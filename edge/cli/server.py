"""``checkpoint server``: create, run and administer the central server.

Only ``checkpoint server init`` creates keys or a database; every other command refuses a
missing or foreign data directory with a message saying so. Administrative commands write to
the same audit trail as the admin API (actor ``cli:<login name>``).
"""

from __future__ import annotations

import gc
import getpass
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from edge.cli.common import reports_errors
from edge.cli.server_ops import OPS_COMMANDS, backup, migrate, restore, retention

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Where:
    data_dir: Path
    db_url: str | None

    def settings(self):
        from sync.server.settings import ServerSettings
        return ServerSettings.from_data_dir(self.data_dir, db_url=self.db_url)

    def storage(self):
        from sync.server.storage import open_storage
        return open_storage(self.settings().db_url)


def _needs_server_extra() -> None:
    """The server's own dependencies are an extra: a device install does not carry them."""
    try:
        import argon2  # noqa: F401
        import limits  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"the central server needs its extra dependencies ({exc.name} is missing): "
                                   "pip install 'checkpoint-appliance[server]'") from None


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"


def _rate(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A rate in the ``limits`` library's notation, allowing at least one request per period."""
    if value is None:
        return None
    from sync.server.ratelimit import parse_rate
    try:
        parse_rate(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc} (e.g. '60/minute' or '10/second;300/hour')",
                                 param=param) from None
    return value


@click.group(invoke_without_command=True)
@click.option("--db", "db_url", default=None,
              help="sqlite:///path or postgresql://... (default: DATA_DIR/server.sqlite)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("server-data"), show_default=True,
              help="Keys, published/{trust,policy}.cpenv and risk/ (made by 'checkpoint server init').")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--serve", type=click.Choice(["all", "device", "admin"]), default="all", show_default=True,
              help="device: the device API alone (for the address devices reach); admin: dashboard and admin "
                   "API alone; all: both.")
@click.option("--insecure-cookies", is_flag=True,
              help="Send the admin session cookie over plain HTTP too (only for a loopback test set-up).")
@click.option("--header-timeout", type=click.FloatRange(min=0.1, max=600), default=None,
              help="Close a connection that has not sent its request headers in this many seconds [10].")
@click.option("--body-timeout", type=click.FloatRange(min=0.1, max=3600), default=None,
              help="Answer 408 and close when a request body takes longer than this [30].")
@click.option("--key-cache", type=click.FloatRange(min=0, max=3600), default=None,
              help="Seconds a process keeps a device key it looked up [30]; pushes are checked against the "
                   "database anyway, other requests of a revoked device are refused within this time. 0: look "
                   "the key up for every request.")
@click.option("--unknown-senders", default=None, metavar="RATE", callback=_rate,
              help="Requests naming devices that are not enrolled, per client address, before that address gets "
                   "429 for devices whose key is not remembered ['60/minute']; raise it where many checkpoints "
                   "share one address.")
@click.option("--rate-limit-storage", default="memory://", show_default=True,
              help="Where rate-limit counters live ('limits' storage URI, e.g. redis://host:6379 to share them "
                   "between server processes).")
@click.pass_context
@reports_errors
def server(ctx: click.Context, db_url: str | None, data_dir: Path, host: str, port: int, serve: str,
           insecure_cookies: bool, header_timeout: float | None, body_timeout: float | None,
           key_cache: float | None, unknown_senders: str | None, rate_limit_storage: str) -> None:
    """Run the central server (device API, and the fleet dashboard at / behind a login)."""
    if ctx.invoked_subcommand in OPS_COMMANDS:  # they name their own data directory and database
        return
    ctx.obj = _Where(data_dir, db_url)
    if ctx.invoked_subcommand is not None:
        return
    _needs_server_extra()
    import uvicorn

    from sync.server.app import create_app
    from sync.server.runner import uvicorn_config
    settings = ctx.obj.settings()
    settings.secure_cookies = not insecure_cookies
    try:
        from limits.storage import storage_from_string
        storage_from_string(rate_limit_storage)
    except Exception as exc:  # the library raises its own configuration and import errors
        raise click.ClickException(f"--rate-limit-storage {rate_limit_storage!r} is unusable: {exc}") from None
    settings.rate_limit_storage = rate_limit_storage
    limits = settings.limits
    settings.limits = replace(limits, header_timeout_s=header_timeout or limits.header_timeout_s,
                              body_timeout_s=body_timeout or limits.body_timeout_s,
                              device_key_cache_s=limits.device_key_cache_s if key_cache is None else key_cache,
                              unknown_senders_per_client=unknown_senders or limits.unknown_senders_per_client)
    app = create_app(settings, serve=serve)  # type: ignore[arg-type]
    if serve != "device" and host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("event=admin_side_exposed host=%s action=the login page and admin API answer on this address "
                    "too; run '--serve device' here and '--serve admin' on an internal address", host)
    click.echo(f"checkpoint server ({serve}) on http://{host}:{port}/ db={settings.db_url.split('?')[0]} "
               f"device key to provision: {data_dir / 'keys/server_x25519.pub.pem'}", err=True)
    # everything made so far (modules, the app, its routes and models) lives as long as the process:
    # out of the collector's sight, a full collection scans only what requests made since. Without
    # this, every full collection scanned these ~82,000 objects too: 50-220 ms stalls of every
    # request in the process, every few seconds under load (``checkpoint bench server``)
    gc.collect()
    gc.freeze()
    uvicorn.Server(uvicorn_config(app, host=host, port=port,
                                  header_timeout_s=settings.limits.header_timeout_s)).run()


@server.command("init")
@click.pass_obj
@reports_errors
def init(where: _Where) -> None:
    """Create the data directory (0700), the server's keys and its database; keeps existing keys."""
    from sync.server.settings import init_data_dir
    settings = init_data_dir(where.data_dir, db_url=where.db_url)
    click.echo(f"initialised {where.data_dir} (db {settings.db_url.split('?')[0]}); pin "
               f"{where.data_dir / 'keys/publisher_ed25519.pub.pem'} and "
               f"{where.data_dir / 'keys/server_x25519.pub.pem'} on the devices with 'checkpoint provision'")


@server.command("enroll")
@click.option("--device-id", required=True)
@click.option("--public-key", "key_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="The device's Ed25519 public key (PEM).")
@click.option("--replace", is_flag=True, help="Replace a different key already enrolled (re-provisioned device).")
@click.pass_obj
@reports_errors
def enroll(where: _Where, device_id: str, key_path: Path, replace: bool) -> None:
    """Enroll a device's public key directly in the server database (administrator path)."""
    from sync.wire.keyfiles import load_ed25519_public
    raw = load_ed25519_public(key_path).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    storage = where.storage()
    try:
        ok = storage.enroll(device_id, raw, replace=replace)
        storage.audit(_actor(), "enroll_key", device_id, "ok" if ok else "refused",
                      "replace" if replace else "", "cli")
        if not ok:
            raise click.ClickException(f"device {device_id} has another key enrolled; use --replace if intended")
    finally:
        storage.close()
    click.echo(f"enrolled {device_id}")


@server.command("token")
@click.argument("device_id")
@click.option("--ttl-days", default=30.0, show_default=True, type=click.FloatRange(min=0.001, max=365))
@click.option("--replace-key", is_flag=True, help="The token may enroll a new key over an enrolled one.")
@click.pass_obj
@reports_errors
def token(where: _Where, device_id: str, ttl_days: float, replace_key: bool) -> None:
    """Print a new one-time enrollment token for DEVICE_ID (replaces an unused older one)."""
    from sync.server.enrollment import issue_token
    storage = where.storage()
    try:
        value = issue_token(storage, device_id, ttl_s=int(ttl_days * 86400), replace_key=replace_key)
        storage.audit(_actor(), "issue_token", device_id, "ok", f"ttl_days={ttl_days} replace_key={replace_key}",
                      "cli")
    finally:
        storage.close()
    click.echo(value)


@server.command("revoke")
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (stolen card, decommissioned...): kept in the audit trail.")
@click.pass_obj
@reports_errors
def revoke(where: _Where, device_id: str, reason: str) -> None:
    """Refuse every request of DEVICE_ID from now on (its records stay)."""
    storage = where.storage()
    try:
        changed = storage.revoke(device_id, reason, _actor())
        storage.audit(_actor(), "revoke", device_id, "ok" if changed else "already_revoked", reason, "cli")
    finally:
        storage.close()
    click.echo(f"revoked {device_id}" if changed else f"{device_id} was revoked already")


@server.command("readmit")
@click.argument("device_id")
@click.option("--new-token", is_flag=True,
              help="Do not lift the revocation now: print a one-time token that enrolls a NEW key (the device "
                   "was re-provisioned) and lifts it then; the old key stays refused.")
@click.option("--ttl-days", default=7.0, show_default=True, type=click.FloatRange(min=0.001, max=365))
@click.pass_obj
@reports_errors
def readmit(where: _Where, device_id: str, new_token: bool, ttl_days: float) -> None:
    """Lift the revocation of DEVICE_ID (with its old key, or with --new-token once a new key enrolls)."""
    from sync.server.enrollment import issue_token
    storage = where.storage()
    try:
        if new_token:
            revoked = storage.revocation(device_id) is not None
            value = issue_token(storage, device_id, ttl_s=int(ttl_days * 86400), replace_key=True)
            storage.audit(_actor(), "issue_token", device_id, "ok", f"ttl_days={ttl_days} replace_key=True", "cli")
            message = (f"{device_id} stays revoked until a new key enrolls with this token" if revoked
                       else f"{device_id} was not revoked; this token may enroll a new key")
        else:
            value = None
            changed = storage.readmit(device_id)
            storage.audit(_actor(), "readmit", device_id, "ok" if changed else "not_revoked", "", "cli")
            message = f"re-admitted {device_id}" if changed else f"{device_id} was not revoked"
    finally:
        storage.close()
    click.echo(message, err=bool(value))
    if value:
        click.echo(value)


@server.group("user")
def user() -> None:
    """Dashboard and admin API accounts (roles: viewer, operator, tracer, admin)."""


@user.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["viewer", "operator", "tracer", "admin"]))
@click.password_option(envvar="CHECKPOINT_PASSWORD", help="At least 12 characters (env CHECKPOINT_PASSWORD; "
                       "prompted if absent).")
@click.pass_obj
@reports_errors
def user_add(where: _Where, username: str, role: str, password: str) -> None:
    """Create an account (or reset its password and role)."""
    _needs_server_extra()
    from sync.server.accounts import add_user
    storage = where.storage()
    try:
        add_user(storage, username, password, role)
        storage.audit(_actor(), "user_add", username, "ok", f"role {role}", "cli")
    finally:
        storage.close()
    click.echo(f"user {username} ({role}) saved")


@user.command("disable")
@click.argument("username")
@click.pass_obj
@reports_errors
def user_disable(where: _Where, username: str) -> None:
    """Disable an account and end its sessions."""
    storage = where.storage()
    try:
        changed = storage.disable_user(username)
        storage.audit(_actor(), "user_disable", username, "ok" if changed else "no_such_user", "", "cli")
    finally:
        storage.close()
    if not changed:
        raise click.ClickException(f"no user {username}")
    click.echo(f"user {username} disabled")


@user.command("list")
@click.pass_obj
@reports_errors
def user_list(where: _Where) -> None:
    storage = where.storage()
    try:
        for u in storage.users():
            click.echo(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'enabled'}")
    finally:
        storage.close()


@server.command("audit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_obj
@reports_errors
def audit(where: _Where, limit: int) -> None:
    """Print the newest entries of the audit trail."""
    storage = where.storage()
    try:
        for e in storage.audit_log(limit):
            click.echo(f"{e.at}\t{e.actor}\t{e.action}\t{e.target}\t{e.outcome}\t{e.client}\t{e.detail}")
    finally:
        storage.close()


@server.command("resolve-fork")
@click.argument("device_id")
@click.option("--by", "reviewer", default=None, help="Who reviewed the fork (default: the logged-in user).")
@click.pass_obj
@reports_errors
def resolve_fork(where: _Where, device_id: str, reviewer: str | None) -> None:
    """Mark DEVICE_ID's chain fork (its log went back: a restored card) as reviewed.

    Both versions of its records stay in the database and the device keeps syncing into its newest
    epoch either way; this clears the flag on the dashboard and in the fleet API.
    """
    who = reviewer or _actor()
    storage = where.storage()
    try:
        count = storage.resolve_forks(device_id, by=who)
        storage.audit(_actor(), "resolve_fork", device_id, "ok" if count else "no_open_fork", f"by={who}", "cli")
    finally:
        storage.close()
    if not count:
        raise click.ClickException(f"device {device_id} has no open chain fork")
    log.info("event=fork_resolved device=%s forks=%d by=%s", device_id, count, who)
    click.echo(f"resolved {count} chain fork(s) of {device_id}; both versions of its records are kept")


@server.command("registry")
@click.argument("checkpoints_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
@reports_errors
def registry(where: _Where, checkpoints_csv: Path) -> None:
    """Load the fleet's checkpoints.csv (the file provisioning used) into the server's registry.

    Checked whole before anything is replaced: one bad row, and the registry in use stays as it was.
    """
    from sync.server.registry import Registry, load_checkpoints_csv

    settings = where.settings()
    checkpoints = load_checkpoints_csv(checkpoints_csv)
    path = Registry(checkpoints).save(settings.data_dir)
    devices = sum(c.devices for c in checkpoints)
    storage = where.storage()
    try:
        storage.audit(_actor(), "registry_load", str(checkpoints_csv), "ok",
                      f"{len(checkpoints)} checkpoints, {devices} devices", "cli")
    finally:
        storage.close()
    click.echo(f"registry: {len(checkpoints)} checkpoint(s), {devices} device(s) -> {path}")


for _command in (backup, restore, retention, migrate):
    server.add_command(_command)
