"""The nginx config that shards sessions over radiod instances (deploy/nginx.conf.j2).

nginx, not HAProxy: Debian's nginx routes on a regex of the query argument, the path and a
cookie with one `map` each (HAProxy needs `url_param` plus ACLs per node for the same), its
`proxy_buffering off` and per-location timeouts fit endless responses, `proxy_next_upstream
... non_idempotent` retries a refused `POST /create-session` elsewhere, and it is the proxy
most operators (and ingress-nginx on Kubernetes) already run.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from radiod.config import Config, ConfigError
from radiod.node import node_name

TEMPLATE = "nginx.conf.j2"
# How long nginx leaves a balanced instance alone after it failed (refused, 502, 503).
FAIL_TIMEOUT_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Upstream:
    """One radiod instance: its node name and the address the proxy reaches it on."""

    node: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def loopback_upstreams(config: Config) -> list[Upstream]:
    """`cluster.instances` instances on 127.0.0.1 from `cluster.first_port` (make serve-cluster).

    Named `local-1`, `local-2`, ...: `radiod cluster` gives each instance its name.
    """
    first = config.cluster.first_port
    return [
        Upstream(f"local-{i + 1}", "127.0.0.1", first + i) for i in range(config.cluster.instances)
    ]


def configured_upstreams(config: Config) -> list[Upstream]:
    """`cluster.nodes` ("node=host:port" each), or the loopback instances when empty."""
    if not config.cluster.nodes:
        return loopback_upstreams(config)
    upstreams = []
    for entry in config.cluster.nodes:
        node, _, address = entry.partition("=")
        host, _, port = address.rpartition(":")
        upstreams.append(Upstream(node, host.strip("[]"), int(port)))
    names = [u.node for u in upstreams]
    if len(set(names)) != len(names):
        raise ConfigError(f"cluster.nodes = {list(config.cluster.nodes)!r}: node names repeat")
    return upstreams


def node_of(config: Config) -> str:
    """The node name an instance with `config` uses (what the proxy's map must say)."""
    return node_name(config.server.node, config.server.host, config.server.port)


def render_nginx(
    upstreams: Sequence[Upstream],
    *,
    listen: str,
    runtime: Path,
    connections_per_ip: int = 0,
    foreground: bool = False,
    error_log: str = "stderr",
    access_log: str = "",
    workers: int | str = "auto",
) -> str:
    """The nginx config for `upstreams`, listening on `listen` ("host:port").

    Args:
        upstreams: the instances; at least one.
        listen: nginx `listen` value.
        runtime: a folder nginx may write (pid file, temp files).
        connections_per_ip: nginx `limit_conn` per client address (0: none); radiod leaves
            this cap to the proxy (`server.trusted_proxies`).
        foreground: `daemon off;` (a supervisor watches nginx).
        error_log: nginx `error_log` target.
        access_log: a path for an access log naming the node of each request ("": off).
        workers: nginx `worker_processes`.
    """
    if not upstreams:
        raise ConfigError("cluster: no instances to proxy to")
    source = importlib.resources.files("radiod.deploy").joinpath(TEMPLATE).read_text("utf-8")
    template = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    return template.from_string(source).render(
        upstreams=upstreams,
        listen=listen,
        runtime=runtime,
        connections_per_ip=connections_per_ip,
        foreground=foreground,
        error_log=error_log,
        access_log=access_log,
        workers=workers,
        worker_connections=8192,
        fail_timeout=FAIL_TIMEOUT_SECONDS,
    )
