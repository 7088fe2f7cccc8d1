"""Settings: the data directory's phivault.toml, overridden by environment variables.

Every limit has a safe default; docs/CONFIGURATION.md lists them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from phivault.errors import ConfigError

CONFIG_FILE = "phivault.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    db_url: str | None = None  # None: SQLite inside the data directory
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    base_path: str = "/fhir"
    max_body_bytes: int = 16 * 1024 * 1024
    default_page_size: int = 50
    max_page_size: int = 1000
    # DELETE [type]?condition deletes at most this many matches (412 beyond); 1: one only
    max_conditional_deletes: int = 1
    public_base_url: str | None = None  # e.g. https://fhir.clinic.example/fhir behind a proxy
    # Limits and timeouts against slow or hostile clients (docs/CONFIGURATION.md).
    max_url_bytes: int = 32 * 1024  # request target (path and query): 414 beyond
    max_header_bytes: int = 64 * 1024  # all header names and values together: 431 beyond
    max_header_count: int = 100  # 431 beyond
    header_timeout_s: float = 10.0  # request line and headers must arrive within this: 408
    body_timeout_s: float = 60.0  # the whole body must arrive within this: 408
    keep_alive_timeout_s: int = 5  # an idle kept-alive connection is closed after this
    max_connections: int = 512  # open connections and requests at once: 503 beyond

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE


_INT_FIELDS = {
    "port",
    "workers",
    "max_body_bytes",
    "default_page_size",
    "max_page_size",
    "max_conditional_deletes",
}
_ENV = {
    "db_url": "PHIVAULT_DB",
    "max_body_bytes": "PHIVAULT_MAX_BODY_BYTES",
    "public_base_url": "PHIVAULT_PUBLIC_BASE_URL",
    "max_url_bytes": "PHIVAULT_MAX_URL_BYTES",
    "max_header_bytes": "PHIVAULT_MAX_HEADER_BYTES",
    "max_header_count": "PHIVAULT_MAX_HEADER_COUNT",
    "header_timeout_s": "PHIVAULT_HEADER_TIMEOUT_S",
    "body_timeout_s": "PHIVAULT_BODY_TIMEOUT_S",
    "keep_alive_timeout_s": "PHIVAULT_KEEP_ALIVE_TIMEOUT_S",
    "max_connections": "PHIVAULT_MAX_CONNECTIONS",
}
_LIMIT_INTS = {
    "max_url_bytes",
    "max_header_bytes",
    "max_header_count",
    "keep_alive_timeout_s",
    "max_connections",
}
_FLOAT_FIELDS = {"header_timeout_s", "body_timeout_s"}


def resolve_data_dir(value: str | os.PathLike[str] | None) -> Path:
    raw = value if value is not None else os.environ.get("PHIVAULT_DATA")
    if not raw:
        raise ConfigError("no data directory: pass --data DIR or set PHIVAULT_DATA")
    return Path(raw).expanduser().resolve()


def load_settings(data_dir: Path, **overrides: Any) -> Settings:
    settings = Settings(data_dir=data_dir)
    path = data_dir / CONFIG_FILE
    if path.exists():
        try:
            loaded = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{CONFIG_FILE} is not valid TOML") from None
        settings = _apply(settings, loaded.get("server", {}))
    env = {name: os.environ[var] for name, var in _ENV.items() if os.environ.get(var)}
    settings = _apply(settings, env)
    return _apply(settings, {k: v for k, v in overrides.items() if v is not None})


def _apply(settings: Settings, values: dict[str, Any]) -> Settings:
    known = {f.name for f in fields(Settings)} - {"data_dir"}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} in {CONFIG_FILE}")
        if key in _INT_FIELDS or key in _LIMIT_INTS:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"setting {key!r} must be an integer") from None
            if value <= 0:
                raise ConfigError(f"setting {key!r} must be positive")
        if key in _FLOAT_FIELDS:
            value = _seconds(key, value)
        clean[key] = value
    return replace(settings, **clean)


def _seconds(key: str, value: Any) -> float:
    """A timeout: a positive, finite number of seconds (bool is not a number here)."""
    if isinstance(value, bool):
        raise ConfigError(f"setting {key!r} must be a number of seconds")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r} must be a number of seconds") from None
    if not 0 < seconds < 86_400:
        raise ConfigError(f"setting {key!r} must be between 0 and 86400 seconds")
    return seconds
