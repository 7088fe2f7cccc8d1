"""Limits and timeouts: safe defaults, set in phivault.toml or the environment, and
refused when they make no sense (a limit of 0, a negative or endless timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phivault.api.connection_limits import ConnectionLimits
from phivault.config import Settings, load_settings
from phivault.errors import ConfigError

ENV = (
    "PHIVAULT_MAX_URL_BYTES",
    "PHIVAULT_MAX_HEADER_BYTES",
    "PHIVAULT_MAX_HEADER_COUNT",
    "PHIVAULT_HEADER_TIMEOUT_S",
    "PHIVAULT_BODY_TIMEOUT_S",
    "PHIVAULT_KEEP_ALIVE_TIMEOUT_S",
    "PHIVAULT_MAX_CONNECTIONS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_bounded(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert 0 < s.max_url_bytes <= 64 * 1024
    assert 0 < s.max_header_bytes <= 1024 * 1024
    assert 0 < s.max_header_count <= 1000
    assert 0 < s.header_timeout_s <= 60
    assert 0 < s.body_timeout_s <= 600
    assert 0 < s.keep_alive_timeout_s <= 60
    assert 0 < s.max_connections <= 10_000


def test_toml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "phivault.toml").write_text(
        "[server]\nmax_url_bytes = 4096\nheader_timeout_s = 2.5\nbody_timeout_s = 30\n"
    )
    s = load_settings(tmp_path)
    assert (s.max_url_bytes, s.header_timeout_s, s.body_timeout_s) == (4096, 2.5, 30.0)
    monkeypatch.setenv("PHIVAULT_HEADER_TIMEOUT_S", "0.5")
    monkeypatch.setenv("PHIVAULT_MAX_HEADER_COUNT", "20")
    s = load_settings(tmp_path)
    assert (s.header_timeout_s, s.max_header_count, s.max_url_bytes) == (0.5, 20, 4096)
    limits = ConnectionLimits.of(s)
    assert (limits.header_timeout_s, limits.max_header_count) == (0.5, 20)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_header_bytes = 0", "positive"),
        ("max_connections = -1", "positive"),
        ("max_url_bytes = 'lots'", "integer"),
        ("header_timeout_s = 0", "between"),
        ("body_timeout_s = -3", "between"),
        ("body_timeout_s = inf", "between"),
        ("body_timeout_s = nan", "between"),
        ("header_timeout_s = true", "seconds"),
        ("header_timeout_s = 'soon'", "seconds"),
    ],
)
def test_nonsense_is_refused(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "phivault.toml").write_text(f"[server]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_settings_defaults_match_the_documented_table() -> None:
    text = (Path(__file__).parents[1] / "docs" / "CONFIGURATION.md").read_text()
    defaults = Settings(data_dir=Path())
    for name in ("max_url_bytes", "max_header_bytes", "max_header_count", "header_timeout_s",
                 "body_timeout_s", "keep_alive_timeout_s", "max_connections"):  # fmt: skip
        assert f"`{name}`" in text, name
    assert "| 32 KiB |" in text and defaults.max_url_bytes == 32 * 1024
    assert "| 64 KiB |" in text and defaults.max_header_bytes == 64 * 1024
