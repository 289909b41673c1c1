"""Configuration: defaults, overrides, and one clear line for every mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from radiod.config import Config, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_toml_is_the_defaults() -> None:
    assert load_config(REPO / "config.toml", environ={}) == Config()


def test_defaults_match_the_contract() -> None:
    config = parse_config({})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8000)
    assert (config.audio.codec, config.audio.bitrate, config.audio.sample_rate) == (
        "mp3",
        128,
        44100,
    )
    assert config.stream.burst_seconds == 4.0
    assert (config.health.degraded_after_ms, config.health.dead_after_ms) == (8000, 12000)
    assert config.health.check_interval_ms == 2000
    assert config.testing.fault_hooks is False
    assert (config.limits.create_burst, config.limits.create_per_minute) == (20, 4.0)
    assert config.limits.connections_per_ip == 64
    assert config.session.unattached_timeout_seconds == 30.0
    assert (config.server.keepalive_timeout_seconds, config.server.header_timeout_seconds) == (
        15.0,
        10.0,
    )
    assert config.server.allowed_hosts == config.server.allowed_origins == ()


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    config = parse_config({"audio": {"crossfade_seconds": 0}})
    assert config.audio.crossfade_seconds == 0.0
    assert isinstance(config.audio.crossfade_seconds, float)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"server": {"port": "8000"}}, "server.port = '8000': expected an integer"),
        ({"server": {"port": 70000}}, "server.port = 70000: expected a value between 0 and 65535"),
        ({"server": {"prot": 1}}, "server.prot: unknown key"),
        ({"sever": {"port": 1}}, "[sever]: unknown section"),
        ({"audio": {"codec": "wav"}}, "audio.codec = 'wav': expected one of 'mp3', 'opus', 'aac'"),
        (
            {"audio": {"crossfade_seconds": True}},
            "audio.crossfade_seconds = True: expected a number",
        ),
        ({"log": {"level": 3}}, "log.level = 3: expected a string"),
        (
            {"audio": {"mp3_quality": 10}},
            "audio.mp3_quality = 10: expected a value between 0 and 9",
        ),
        ({"audio": {"mp3_quality": 2.5}}, "audio.mp3_quality = 2.5: expected an integer"),
        (
            {"testing": {"fault_hooks": "yes"}},
            "testing.fault_hooks = 'yes': expected true or false",
        ),
        ({"audio": {"codec": "opus"}}, "audio.sample_rate = 44100: expected 48000"),
        ({"server": 5}, "[server]: expected a table"),
        (
            {"server": {"allowed_hosts": "example.com"}},
            "server.allowed_hosts = 'example.com': expected a list of strings",
        ),
        ({"server": {"allowed_hosts": [1]}}, "server.allowed_hosts = [1]: expected a list"),
        (
            {"server": {"allowed_origins": ["example.com"]}},
            "server.allowed_origins: 'example.com': expected scheme://host[:port]",
        ),
        (
            {"server": {"allowed_origins": ["https://example.com/app"]}},
            "server.allowed_origins: 'https://example.com/app': expected scheme://host[:port]",
        ),
        ({"limits": {"create_burst": -1}}, "limits.create_burst = -1: expected a value between"),
        (
            {"server": {"header_timeout_seconds": 0}},
            "server.header_timeout_seconds = 0.0: expected a value between 0.5 and 3600.0",
        ),
        (
            {"health": {"dead_after_ms": 5000}},
            "health.dead_after_ms = 5000: expected more than health.degraded_after_ms",
        ),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_expectation(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert str(caught.value).startswith(message)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 8001\n")
    env = {"RADIOD_SERVER__PORT": "9000", "RADIOD_LIBRARY__PATH": "/music", "HOME": "/x"}
    config = load_config(path, environ=env)
    assert config.server.port == 9000
    assert config.library.path == "/music"


def test_lists_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\nallowed_origins = ["https://radio.example.com:8443"]\n')
    env = {"RADIOD_SERVER__ALLOWED_HOSTS": '["radio.example.com", "radio.lan"]'}
    config = load_config(path, environ=env)
    assert config.server.allowed_origins == ("https://radio.example.com:8443",)
    assert config.server.allowed_hosts == ("radio.example.com", "radio.lan")


def test_bad_environment_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"session.max_sessions = 'lots': expected an integer"):
        load_config(None, environ={"RADIOD_SESSION__MAX_SESSIONS": "lots"})


def test_unreadable_and_invalid_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nport=1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken, environ={})


def _radiod(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "radiod", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_with_a_bad_value_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[audio]\nbitrate = "fast"\n')
    result = _radiod("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "radiod: error: audio.bitrate = 'fast': expected an integer\n"


def test_serve_with_a_missing_library_is_a_clear_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[library]\npath = "{tmp_path / "nowhere"}"\n')
    result = _radiod("serve", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"library path {tmp_path / 'nowhere'} does not exist" in result.stderr
