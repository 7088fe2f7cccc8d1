"""The `phivault` command: one module per command group, each thin over the library."""

from __future__ import annotations

import click

from phivault import __version__
from phivault.cli.demo_cmd import demo
from phivault.cli.import_cmd import import_
from phivault.cli.init_cmd import init
from phivault.cli.serve_cmd import serve


@click.group()
@click.version_option(__version__, prog_name="phivault")
def cli() -> None:
    """phivault: a secure-by-default FHIR R4 health-data server."""


cli.add_command(init)
cli.add_command(serve)
cli.add_command(import_)
cli.add_command(demo)


def main() -> None:
    cli(prog_name="phivault")
