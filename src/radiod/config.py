"""Load and validate radiod's configuration.

`config.toml` is read with `tomllib` into frozen dataclasses. Every value is checked
at start-up against the type and range declared on its field, so a typo fails with one
line that names the key, the value and what was expected, rather than surfacing later
as a traceback deep inside the mixer. Environment variables of the form
`RADIOD_<SECTION>__<KEY>` override the file (`RADIOD_SERVER__PORT=9000`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radiod.node import node_problem

ENV_PREFIX = "RADIOD_"


class ConfigError(Exception):
    """A configuration value is missing, unknown or out of range; the message is user-facing."""


def _spec(
    default: Any,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """A dataclass field whose validation rules travel with it, so the schema lives in one place.

    `check` returns why a (well-typed) value is wrong, or None; for a list, per item.
    """
    metadata = {"min": min, "max": max, "choices": choices, "check": check}
    return field(default=default, metadata=metadata)


def _network_problem(value: str) -> str | None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return "expected an IP address or network, e.g. '127.0.0.1' or '10.0.0.0/8'"
    return None


def _upstream_problem(value: str) -> str | None:
    name, _, address = value.partition("=")
    host, _, port = address.rpartition(":")
    if node_problem(name) is None and name and host and port.isdigit() and 0 < int(port) < 65536:
        return None
    return "expected 'node=host:port', e.g. 'radio-a=10.0.0.11:8000'"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = _spec("127.0.0.1")
    port: int = _spec(8000, min=0, max=65535)
    # Host names this server answers for besides its bound host, localhost and IP literals
    # (any port); "*" allows every Host. Guards against DNS rebinding (web/guards.py).
    allowed_hosts: tuple[str, ...] = _spec(())
    # Other origins (scheme://host[:port]) whose pages may POST to this server.
    allowed_origins: tuple[str, ...] = _spec(())
    # An idle kept-alive connection is closed after this (aiohttp's default is an hour).
    keepalive_timeout_seconds: float = _spec(15.0, min=0.5, max=3600.0)
    # A request's line and headers must arrive this soon after the connection opens.
    header_timeout_seconds: float = _spec(10.0, min=0.5, max=3600.0)
    # Signs the client cookie. Empty: a random secret per start-up, so cookies last one
    # server run; instances behind one proxy must share the same secret.
    secret: str = _spec("")
    # This instance's name: in every session ID, log line and the proxy's map (radiod.node).
    # Empty: derived from host and port.
    node: str = _spec("", check=node_problem)
    # Peers whose X-Forwarded-For is believed (the proxy): addresses or networks. Per-IP
    # limits then count the client it names, and the connection cap spares the proxy.
    trusted_proxies: tuple[str, ...] = _spec((), check=_network_problem)
    # SIGTERM: refuse new sessions, let live listeners play up to this long, then end their
    # sessions (`session_ended`, reason `draining`) so pages restart elsewhere. 0: stop now.
    drain_seconds: float = _spec(0.0, min=0.0, max=86400.0)
    # "uvloop": cheaper socket writes (radiod/loops.py); "auto": uvloop when installed.
    # asyncio's by default: only it logs running out of descriptors (libuv drops quietly).
    event_loop: str = _spec("asyncio", choices=("auto", "uvloop", "asyncio"))


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    # Empty means: use (and generate on first run) the built-in demo library.
    path: str = _spec("")
    # How often the folder is rescanned for added, changed and deleted files (only new or
    # changed files are probed, so a rescan of an unchanged library is a stat per file).
    # 0 = never: the library is what start-up found.
    rescan_seconds: float = _spec(30.0, min=0.0, max=86400.0)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    codec: str = _spec("mp3", choices=("mp3", "opus", "aac"))
    bitrate: int = _spec(128, min=32, max=320)  # kb/s
    sample_rate: int = _spec(44100, choices=(22050, 32000, 44100, 48000))
    channels: int = _spec(2, choices=(1, 2))
    crossfade_seconds: float = _spec(2.5, min=0.0, max=10.0)
    # Even loudness (audio/loudness.py): every track brought to `loudness_target` LUFS, its
    # true peak kept at or under `loudness_true_peak` dBTP; ReplayGain tags win over measuring.
    loudness: bool = _spec(True)
    loudness_target: float = _spec(-16.0, min=-40.0, max=-5.0)
    loudness_true_peak: float = _spec(-1.0, min=-20.0, max=0.0)
    # The measurements' cache file; empty: $XDG_CACHE_HOME/radiod/loudness.sqlite3.
    loudness_cache: str = _spec("")
    # LAME's compression level (-q) for mp3: 0 slowest/best .. 9 fastest. 5 keeps LAME's
    # psychoacoustic noise shaping at ~1.3x the speed of its default 3; 7 and above turn it
    # off. The CPU each level costs: README "Audio cost".
    mp3_quality: int = _spec(5, min=0, max=9)
    # Processes that encode sessions (audio/pool.py): -1 = one per core, 0 = none (every
    # mixer a thread of the HTTP process, which shares one GIL: ~25 sessions on 2 cores).
    workers: int = _spec(-1, min=-1, max=1024)


@dataclass(frozen=True, slots=True)
class StreamConfig:
    # 4 s: measured in headless Chromium, a 1 s burst blips waiting->playing every ~2 s; 4 s none.
    burst_seconds: float = _spec(4.0, min=0.5, max=30.0)
    ring_seconds: float = _spec(30.0, min=5.0, max=600.0)
    # How long a mixer keeps running after its last audio listener left (a reload is not a stop).
    stop_grace_seconds: float = _spec(5.0, min=0.0, max=3600.0)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    idle_timeout_seconds: float = _spec(300.0, min=0.1, max=86400.0)
    max_sessions: int = _spec(100, min=1, max=100000)
    # A session that never had an audio listener or events client frees its slot this soon.
    unattached_timeout_seconds: float = _spec(30.0, min=0.1, max=86400.0)
    # Cores of process CPU the sessions may use (radiod.admission); 0 = admission control
    # off, only max_sessions. Not the core count: mixer threads share one GIL, and on 2 cores
    # they underran at 1.5 cores while 47 sessions held real time at 0.70 (DESIGN §8).
    max_encoder_load: float = _spec(1.0, min=0.0, max=1024.0)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    # `POST /create-session` per client address and per client cookie: a burst, then a
    # steady rate (token buckets). 0 in either key turns the limit off.
    create_burst: int = _spec(20, min=0, max=100000)
    create_per_minute: float = _spec(4.0, min=0.0, max=100000.0)
    # Concurrent connections per client address (an IPv6 /64 counts as one); 0 = no cap.
    connections_per_ip: int = _spec(64, min=0, max=1000000)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    degraded_after_ms: int = _spec(8000, min=100, max=600000)
    dead_after_ms: int = _spec(12000, min=100, max=600000)
    check_interval_ms: int = _spec(2000, min=50, max=60000)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    # Addresses or networks (CIDR) that may read GET /metrics; behind a proxy every client
    # has the proxy's address, so list only what reaches radiod directly.
    allowed_ips: tuple[str, ...] = _spec(("127.0.0.1", "::1"))
    # A bearer token that also opens GET /metrics, from any address; empty: none.
    token: str = _spec("")


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = _spec("json", choices=("json", "console"))
    level: str = _spec("info", choices=("debug", "info", "warning", "error"))
    file: str = _spec("")  # empty: stderr


@dataclass(frozen=True, slots=True)
class TestingConfig:
    # Fault hooks let the browser tests make the server misbehave on purpose
    # (stop feeding a listener, cut an SSE connection). Never on by default.
    fault_hooks: bool = _spec(False)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    # `radiod cluster` (make serve-cluster): this many instances on loopback ports
    # `first_port`, `first_port + 1`, ..., behind nginx on `proxy_host`:`proxy_port`.
    instances: int = _spec(2, min=1, max=64)
    first_port: int = _spec(8001, min=1, max=65535)
    proxy_host: str = _spec("127.0.0.1")
    proxy_port: int = _spec(8080, min=1, max=65535)
    # `radiod proxy-config` for instances on other hosts: "node=host:port" each; empty:
    # the loopback instances above.
    nodes: tuple[str, ...] = _spec((), check=_upstream_problem)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    library: LibraryConfig = field(default_factory=LibraryConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    testing: TestingConfig = field(default_factory=TestingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some keys of one section changed, validated like the file."""
        current = dataclasses.asdict(getattr(self, section))
        current.update(values)
        return dataclasses.replace(self, **{section: _build_section(section, current)})


_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_ORIGIN_RE = re.compile(r"https?://[^/?#\s]+")


def _check_value(key: str, value: Any, kind: Any, meta: Mapping[str, Any]) -> Any:
    """Return `value` coerced to `kind`, or raise ConfigError naming `key`."""
    if typing.get_origin(kind) is tuple:  # tuple[str, ...]: a TOML array of strings
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} = {value!r}: expected a list of strings")
        for item in value:
            _check_rule(key, item, meta)
        return tuple(value)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{key} = {value!r}: expected {_TYPE_NAMES[kind]}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{key} = {value!r}: expected one of {allowed}")
    low, high = meta.get("min"), meta.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{key} = {value!r}: expected a value between {low} and {high}")
    _check_rule(key, value, meta)
    return value


def _check_rule(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    check = meta.get("check")
    problem = check(value) if check is not None else None
    if problem is not None:
        raise ConfigError(f"{key} = {value!r}: {problem}")


def _build_section(section: str, raw: Mapping[str, Any]) -> Any:
    cls = _SECTIONS[section]
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{section}.{key}: unknown key (known keys of [{section}]: {', '.join(known)})"
            )
    values = {
        name: _check_value(f"{section}.{name}", raw[name], hints[name], known[name].metadata)
        for name in known
        if name in raw
    }
    return cls(**values)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`RADIOD_SERVER__PORT=9000` -> {"server": {"port": 9000}}; TOML values when they parse."""
    out: dict[str, dict[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out.setdefault(section, {})[key] = value
    return out


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Validate a decoded TOML document (plus environment overrides) into a Config."""
    merged: dict[str, dict[str, Any]] = {}
    for source in (raw, _env_overrides(environ or {})):
        for section, table in source.items():
            if section not in _SECTIONS:
                raise ConfigError(f"[{section}]: unknown section (known: {', '.join(_SECTIONS)})")
            if not isinstance(table, Mapping):
                raise ConfigError(f"[{section}]: expected a table of keys, got {table!r}")
            merged.setdefault(section, {}).update(table)
    config = Config(**{name: _build_section(name, table) for name, table in merged.items()})
    if config.audio.codec == "opus" and config.audio.sample_rate != 48000:
        rate = config.audio.sample_rate
        raise ConfigError(f"audio.sample_rate = {rate}: expected 48000 when audio.codec = 'opus'")
    for origin in config.server.allowed_origins:
        if not _ORIGIN_RE.fullmatch(origin):
            raise ConfigError(
                f"server.allowed_origins: {origin!r}: expected scheme://host[:port], "
                "e.g. 'https://radio.example.com'"
            )
    for entry in config.metrics.allowed_ips:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"metrics.allowed_ips: {entry!r}: expected an IP address or network, "
                "e.g. '127.0.0.1' or '10.0.0.0/8'"
            ) from None
    if config.health.dead_after_ms <= config.health.degraded_after_ms:
        raise ConfigError(
            f"health.dead_after_ms = {config.health.dead_after_ms}: expected more than "
            f"health.degraded_after_ms ({config.health.degraded_after_ms})"
        )
    return config


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (or only defaults and the environment when None)."""
    env = os.environ if environ is None else environ
    if path is None:
        return parse_config({}, env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(raw, env)
