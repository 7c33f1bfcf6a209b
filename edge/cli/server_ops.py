"""``checkpoint server backup|restore|retention|migrate``: operating the central server.

Each command names its data directory and database explicitly and never creates keys: a typo in
a path is an error, not a new server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from edge.cli.common import reports_errors

#: server subcommands that must not load (or create) the server's keys first
OPS_COMMANDS = ("backup", "restore", "retention", "migrate")

_DB_HELP = "sqlite:///path or postgresql://... (default: DATA_DIR/server.sqlite)"


def _db(db_url: str | None, data_dir: Path | None) -> str:
    if db_url:
        return db_url
    if data_dir is None:
        raise click.UsageError("give --db, or --data-dir for its SQLite database")
    return f"sqlite:///{data_dir / 'server.sqlite'}"


def _existing_db(db_url: str) -> str:
    """Refuse an SQLite path that does not exist (opening it would create an empty database)."""
    if db_url.startswith("sqlite:///") and not Path(db_url.removeprefix("sqlite:///")).is_file():
        raise click.ClickException(f"no database at {db_url.removeprefix('sqlite:///')}: check --db")
    return db_url


@click.command("backup")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True)
@click.option("--db", "db_url", envvar="CHECKPOINT_DB", default=None, help=_DB_HELP)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="New tar file (mode 0600): keys, published lists, risk list, database.")
@reports_errors
def backup(data_dir: Path, db_url: str | None, out: Path) -> None:
    """Back up a running server: keys, lists and a consistent copy of its database."""
    from sync.server.backup import backup as write_backup
    info = write_backup(data_dir, _db(db_url, data_dir), out)
    click.echo(f"backup {out}: {info.engine} database, {info.files} data files, taken {info.created_at}")


@click.command("restore")
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="New or empty directory.")
@click.option("--db", "db_url", envvar="CHECKPOINT_DB", default=None, help=_DB_HELP + "; must be empty")
@reports_errors
def restore(archive: Path, data_dir: Path, db_url: str | None) -> None:
    """Restore a backup into a new data directory and an empty database."""
    from sync.server.backup import restore as read_backup
    info = read_backup(archive, data_dir, _db(db_url, data_dir))
    click.echo(f"restored {archive} (taken {info.created_at}) into {data_dir}: start the server; devices "
               "send again what they logged after the backup")


@click.command("retention")
@click.option("--db", "db_url", envvar="CHECKPOINT_DB", required=True, help=_DB_HELP)
@click.option("--keep-days", type=click.IntRange(min=1), required=True,
              help="Keep records scanned in the last N days (PostgreSQL: whole months, so up to a month more).")
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
@reports_errors
def retention(db_url: str, keep_days: int, dry_run: bool) -> None:
    """Drop scan records older than --keep-days; make the coming months' partitions."""
    from sync.server.storage import open_storage
    cutoff = datetime.now(UTC) - timedelta(days=keep_days)
    storage = open_storage(_existing_db(db_url))
    try:
        result = storage.drop_records_before(cutoff, dry_run=dry_run)
    finally:
        storage.close()
    verb = "would drop" if dry_run else "dropped"
    click.echo(f"retention ({verb}): " + ", ".join(f"{k}={v}" for k, v in result.items()))


@click.command("migrate")
@click.option("--db", "db_url", envvar="CHECKPOINT_DB", required=True, help=_DB_HELP)
@reports_errors
def migrate(db_url: str) -> None:
    """Bring the database schema up to date (the server also does this when it starts)."""
    from sync.server.migrations import LATEST
    from sync.server.storage import open_storage
    storage = open_storage(_existing_db(db_url))
    try:
        version = storage.schema_version()
    finally:
        storage.close()
    click.echo(f"schema version {version} (latest {LATEST})")
