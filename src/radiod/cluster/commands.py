"""`radiod proxy-config` and `radiod cluster`: the command line of the cluster tools."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from radiod.cluster.proxy import configured_upstreams, render_nginx
from radiod.cluster.supervisor import ClusterError, run_cluster
from radiod.config import load_config

__all__ = ["ClusterError", "add_commands"]
# Where a system nginx keeps the generated config's pid and temp files by default.
DEFAULT_RUNTIME = Path("/var/lib/nginx/radiod")


def add_commands(
    commands: argparse._SubParsersAction, config_path: Callable[[argparse.Namespace], Path | None]
) -> None:
    """Add `proxy-config` and `cluster` to radiod's subcommands."""
    proxy = commands.add_parser(
        "proxy-config", help="print the nginx config for [cluster] nodes (deploy/nginx.conf.j2)"
    )
    proxy.add_argument("--config", type=Path, help="config file (default: ./config.toml)")
    proxy.add_argument("--listen", help="nginx listen address (default: cluster.proxy_host:port)")
    proxy.add_argument(
        "--runtime", type=Path, default=DEFAULT_RUNTIME, help="folder for nginx pid/temp files"
    )
    proxy.set_defaults(func=lambda args: _proxy_config(args, config_path(args)))
    cluster = commands.add_parser(
        "cluster", help="run cluster.instances radiod instances behind nginx (make serve-cluster)"
    )
    cluster.add_argument("--config", type=Path, help="config file (default: ./config.toml)")
    cluster.set_defaults(func=lambda args: _cluster(config_path(args)))


def _proxy_config(args: argparse.Namespace, path: Path | None) -> int:
    config = load_config(path)
    listen = args.listen or f"{config.cluster.proxy_host}:{config.cluster.proxy_port}"
    sys.stdout.write(
        render_nginx(
            configured_upstreams(config),
            listen=listen,
            runtime=args.runtime,
            connections_per_ip=config.limits.connections_per_ip,
            error_log="/var/log/nginx/radiod-error.log",
        )
    )
    return 0


def _cluster(path: Path | None) -> int:
    return asyncio.run(run_cluster(load_config(path), path))
