"""The ``checkpoint`` command line: one entry point for device, central server and tools."""

from __future__ import annotations

import logging
import sys

import click

from edge import __version__
from edge.lazycli import LazyGroup

#: Each area owns its commands in its own module; add one line here to register a command.
COMMANDS: dict[str, str] = {
    "demo": "edge.demo.cli:demo",
    "run": "edge.daemon_cli:run",
    "verify": "edge.verify_cli:verify",
    "issue": "edge.passes.issue_cli:issue",
    "keys": "edge.passes.issue_cli:keys",
    "decode": "edge.decode_cli:decode",
    "status": "edge.status:status_command",
    "bench": "edge.bench.cli:bench",
    "server": "sync.server.cli:server",
    "sync": "sync.client_cli:sync",
    "conformance": "edge.conformance:conformance",
    "risk": "edge.risk.cli:risk",
    "policy": "edge.policy_cli:policy",
    "trust": "edge.trust_cli:trust",
    "provision": "edge.provision:provision",
}


def configure_logging(verbose: int) -> None:
    """Structured key=value logs on stderr; journald adds timestamps on the device."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="checkpoint")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Offline-first checkpoint appliance: verify QR passes, drive lamps, log and sync."""
    configure_logging(verbose)


if __name__ == "__main__":
    main()
