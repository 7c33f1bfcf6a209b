"""The ``checkpoint`` command line: one entry point for device, central server and tools."""

from __future__ import annotations

import logging
import sys

import click

from edge import __version__
from edge.cli.lazy import LazyGroup

#: Each area owns its commands in its own module; add one line here to register a command.
COMMANDS: dict[str, str] = {
    "demo": "edge.cli.demo:demo",
    "run": "edge.cli.run:run",
    "verify": "edge.cli.verify:verify",
    "issue": "edge.cli.issue:issue",
    "keys": "edge.cli.keys:keys",
    "decode": "edge.cli.decode:decode",
    "status": "edge.cli.status:status_command",
    "screen": "edge.cli.screen:screen",
    "legend": "edge.cli.legend:legend",
    "config": "edge.cli.config:config_group",
    "doctor": "edge.cli.doctor:doctor",
    "device-key": "edge.cli.device_key:device_key",
    "release": "edge.cli.release:release",
    "update": "edge.cli.update:update",
    "bench": "edge.cli.bench:bench",
    "server": "edge.cli.server:server",
    "sync": "edge.cli.sync:sync",
    "conformance": "edge.cli.conformance:conformance",
    "risk": "edge.cli.risk:risk",
    "policy": "edge.cli.policy:policy",
    "trust": "edge.cli.trust:trust",
    "valuesets": "edge.cli.valuesets:valuesets",
    "provision": "edge.cli.provision:provision",
    "log": "edge.cli.log:log",
    "trace": "edge.cli.trace:trace",
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

