"""The `phivault` command: one module per command group, each thin over the library."""

from __future__ import annotations

import click

from phivault import __version__
from phivault.cli.alerts_cmd import alerts
from phivault.cli.audit_cmd import audit
from phivault.cli.backup_cmd import backup
from phivault.cli.bench_cmd import bench
from phivault.cli.demo_cmd import demo
from phivault.cli.import_cmd import import_
from phivault.cli.init_cmd import init
from phivault.cli.keys_cmd import keys
from phivault.cli.reindex_cmd import reindex_cmd
from phivault.cli.serve_cmd import serve
from phivault.cli.token_cmd import token
from phivault.cli.user_cmd import user


@click.group()
@click.version_option(__version__, prog_name="phivault")
def cli() -> None:
    """phivault: a secure-by-default FHIR R4 health-data server."""


cli.add_command(init)
cli.add_command(serve)
cli.add_command(import_)
cli.add_command(demo)
cli.add_command(keys)
cli.add_command(reindex_cmd)
cli.add_command(user)
cli.add_command(token)
cli.add_command(audit)
cli.add_command(backup)
cli.add_command(alerts)
cli.add_command(bench)


def main() -> None:
    cli(prog_name="phivault")
