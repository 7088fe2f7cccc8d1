"""Repository backends, registered by URL scheme the way a third-party backend would be.

`open_backend("REPO")` gives the server's append-only access; `open_backend(..., operator=
True)` the operator's (prune). A plug-in registers its own scheme with `register_backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from phivault.backup.backends.base import AppendOnlyBackend, OperatorBackend
from phivault.errors import ConfigError

BackendFactory = Callable[[str, bool, dict[str, Any]], AppendOnlyBackend]

_REGISTRY: dict[str, BackendFactory] = {}

__all__ = [
    "AppendOnlyBackend",
    "BackendFactory",
    "OperatorBackend",
    "open_backend",
    "open_operator_backend",
    "register_backend",
]


def register_backend(scheme: str, factory: BackendFactory, *, replace: bool = False) -> None:
    if scheme in _REGISTRY and not replace:
        raise ConfigError(f"a backup backend is already registered for {scheme!r}")
    _REGISTRY[scheme] = factory


def _scheme(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep else "file"


def open_backend(url: str, *, operator: bool = False, **options: Any) -> AppendOnlyBackend:
    factory = _REGISTRY.get(_scheme(url))
    if factory is None:
        raise ConfigError("unsupported backup repository: use a directory or s3://bucket/prefix")
    return factory(url, operator, options)


def open_operator_backend(url: str, **options: Any) -> OperatorBackend:
    backend = open_backend(url, operator=True, **options)
    return backend  # type: ignore[return-value]


def _local(url: str, operator: bool, options: dict[str, Any]) -> AppendOnlyBackend:
    from phivault.backup.backends.local import LocalBackend, LocalOperatorBackend

    path = Path(url.removeprefix("file://")).expanduser()
    return LocalOperatorBackend(path) if operator else LocalBackend(path)


def _s3(url: str, operator: bool, options: dict[str, Any]) -> AppendOnlyBackend:
    from phivault.backup.backends.s3 import S3Backend, S3OperatorBackend, S3Options

    opts = options.get("s3") or S3Options.from_env(operator=operator)
    if operator:
        return S3OperatorBackend(url, opts, options.get("server_s3"))
    return S3Backend(url, opts)


register_backend("file", _local)
register_backend("s3", _s3)
