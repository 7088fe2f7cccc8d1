"""Options and error handling shared by every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from phivault.config import resolve_data_dir
from phivault.errors import PhivaultError
from phivault.vault import Vault, key_source, open_vault

F = TypeVar("F", bound=Callable[..., Any])

data_option = click.option(
    "--data",
    "data",
    envvar="PHIVAULT_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (or PHIVAULT_DATA).",
)
key_file_option = click.option(
    "--key-file",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the key-encryption key (or PHIVAULT_KEY_FILE; else PHIVAULT_PASSPHRASE).",
)
db_option = click.option(
    "--db",
    "db",
    default=None,
    help="Database URL: postgresql://... (or PHIVAULT_DB); default SQLite.",
)


def handle_errors(func: F) -> F:
    """Turn phivault errors into a one-line message and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PhivaultError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def open_from_cli(data: Path | None, key_file: Path | None, **overrides: Any) -> Vault:
    data_dir = resolve_data_dir(data)
    return open_vault(data_dir, key_source(key_file=key_file), **overrides)
