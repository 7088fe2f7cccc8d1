"""The `[alerts]` section of phivault.toml: detector thresholds and where alerts go.

Every threshold has a default tuned on the simulated clinic (docs/DETECTION.md); a clinic
changes one only with a reason. Secrets (webhook signing key, SMTP password) are named by
environment variable, never written in the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from phivault.config import CONFIG_FILE
from phivault.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DetectSettings:
    # engine
    scan_interval_seconds: float = 5.0
    baseline_days: int = 28
    disabled: tuple[str, ...] = ()
    # unexplained access: unexplained patients per user and day before the alert is high
    unexplained_high: int = 3
    # volume: an hour's count must exceed all of: the floor, `own_factor` x the user's
    # busiest hour in the baseline, `peer_factor` x the role's typical busiest hour
    volume_floor_patients: int = 25
    volume_floor_records: int = 400
    volume_floor_searches: int = 40
    volume_floor_exports: int = 2
    volume_own_factor: float = 2.5
    volume_peer_factor: float = 3.0
    # off-hours: history needed, and patient records touched at an hour the user never works
    off_hours_min_days: int = 5
    off_hours_min_records: int = 2
    # credentials
    failed_per_account: int = 5
    failed_per_address: int = 10
    spray_accounts: int = 5
    failure_window_seconds: float = 900.0
    new_address_window_seconds: float = 7200.0
    # sabotage
    writes_per_10_minutes: int = 60
    deletes_per_10_minutes: int = 15
    # backups: overdue after this long without a successful one (0: from [backup])
    backup_overdue_minutes: int = 0
    # outputs
    min_severity: str = "low"
    jsonl_path: str | None = None
    syslog_address: str | None = None  # "/dev/log", "host:514" (UDP)
    syslog_facility: str = "auth"
    webhook_url: str | None = None
    webhook_secret_env: str | None = None
    webhook_retries: int = 5
    webhook_timeout_seconds: float = 10.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_username: str | None = None
    smtp_password_env: str | None = None


_TUPLES = {"disabled", "smtp_to"}


def load_detect_settings(data_dir: Path | None, **overrides: Any) -> DetectSettings:
    section: dict[str, Any] = {}
    path = data_dir / CONFIG_FILE if data_dir is not None else None
    if path is not None and path.exists():
        try:
            loaded: Any = tomllib.loads(path.read_text(encoding="utf-8")).get("alerts", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{CONFIG_FILE} is not valid TOML") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"the [alerts] section of {CONFIG_FILE} is not valid")
        section = loaded
    return settings_from({**section, **overrides})


def settings_from(values: dict[str, Any]) -> DetectSettings:
    known = {f.name: f for f in fields(DetectSettings)}
    clean: dict[str, Any] = {}
    defaults = DetectSettings()
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} in [alerts] of {CONFIG_FILE}")
        default = getattr(defaults, key)
        try:
            if key in _TUPLES:
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise TypeError
                value = tuple(value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError
            elif isinstance(default, int):
                value = int(value)
                if value < 0:
                    raise ValueError
            elif isinstance(default, float):
                value = float(value)
                if value < 0:
                    raise ValueError
            elif value is not None and not isinstance(value, str):
                raise TypeError
        except (TypeError, ValueError):
            raise ConfigError(f"setting {key!r} in [alerts] has the wrong type") from None
        clean[key] = value
    settings = replace(defaults, **clean)
    if settings.min_severity not in ("low", "medium", "high", "critical"):
        raise ConfigError("[alerts] min_severity must be low, medium, high or critical")
    return settings
