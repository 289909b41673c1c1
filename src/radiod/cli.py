"""`radiod serve | demo | audit`: the command line.

User mistakes (a bad config value, a missing library, a port in use) end with one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from aiohttp import web

from radiod.app import ACCESS_LOG_FORMAT, create_app
from radiod.audio.pool import WorkerStartError
from radiod.audit import cli as audit_cli
from radiod.cluster import commands as cluster_cli
from radiod.config import Config, ConfigError, load_config
from radiod.demo import default_demo_dir, generate_demo_library
from radiod.drain import until_stopped
from radiod.library import LibraryError, LiveLibrary
from radiod.logs import configure_logging
from radiod.loops import loop_factory
from radiod.node import node_name
from radiod.web.guards import ConnectionGuard, GuardedSite
from radiod.web.keys import REGISTRY

log = structlog.get_logger(__name__)
DEFAULT_CONFIG = Path("config.toml")
# After SIGINT/SIGTERM, how long open responses get to finish once their sessions ended.
SHUTDOWN_TIMEOUT_SECONDS = 5.0
# Connections the kernel queues before accept(): thousands of listeners may arrive at once
# (a restart, a shared link); Linux caps it at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 4096


class UsageError(Exception):
    """A problem the user can fix; printed as one line."""


def load_library(config: Config) -> LiveLibrary:
    """The configured library, or the built-in demo library (generated on first use)."""
    if config.library.path:
        return LiveLibrary.open(Path(config.library.path).expanduser())
    return LiveLibrary.open(_demo_dir())


def _demo_dir() -> Path:
    dest = default_demo_dir()
    generate_demo_library(dest)
    return dest


async def start_server(app: web.Application, config: Config) -> web.AppRunner:
    """Serve `app` on the configured address with radiod's socket rules (web/guards.py).

    The caller owns the returned runner: `await runner.cleanup()` stops it.
    """
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a client that disconnects ends its handler at once
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        keepalive_timeout=config.server.keepalive_timeout_seconds,
    )
    await runner.setup()
    guard = ConnectionGuard(
        config.limits.connections_per_ip,
        config.server.header_timeout_seconds,
        config.server.trusted_proxies,
    )
    site = GuardedSite(
        runner, config.server.host, config.server.port, guard=guard, backlog=LISTEN_BACKLOG
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(
            f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}"
        ) from None
    return runner


async def _serve(config: Config, library: LiveLibrary, loop_name: str) -> None:
    runner = await start_server(create_app(config, library), config)
    try:
        host, port = runner.addresses[0][:2]
        log.info(
            "server.started",
            url=f"http://{host}:{port}/",
            port=port,
            tracks=len(library.tracks()),
            event_loop=loop_name,
        )
        # Modules, config and the scanned library live as long as the process: kept out of
        # collection, a full collection walks only what serving made (33 ms -> ~0 at start).
        # A full collection stops the loop and, in process, every mixer thread.
        gc.freeze()
        await until_stopped(runner.app[REGISTRY], config.server.drain_seconds)
        log.info("server.stopping")
    finally:
        await runner.cleanup()
    log.info("server.stopped")


def _config_path(args: argparse.Namespace) -> Path | None:
    if args.config is None and DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return args.config


def _configured(args: argparse.Namespace) -> Config:
    config = load_config(_config_path(args))
    server = config.server
    configure_logging(
        fmt=config.log.format,
        level=config.log.level,
        path=config.log.file,
        node=node_name(server.node, server.host, server.port),
    )
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    config = _configured(args)
    loop_name, factory = loop_factory(config.server.event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(config, load_library(config), loop_name))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _configured(args)
    dest = args.dest or default_demo_dir()
    paths = generate_demo_library(dest)
    print(f"{len(paths)} demo tracks in {dest}")
    return 0


def installed_version() -> str:
    """The version of the installed distribution (pyproject.toml's, as built into the wheel)."""
    try:
        return importlib.metadata.version("radiod")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"  # run from a bare checkout with PYTHONPATH=src


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiod", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"radiod {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the player page and streams")
    serve.add_argument("--config", type=Path, help="config file (default: ./config.toml)")
    serve.set_defaults(func=cmd_serve)
    demo = commands.add_parser("demo", help="generate the built-in demo library")
    demo.add_argument("--config", type=Path, help="config file (default: ./config.toml)")
    demo.add_argument("--dest", type=Path, help="folder (default: ~/.cache/radiod/demo)")
    demo.set_defaults(func=cmd_demo)
    cluster_cli.add_commands(commands, _config_path)
    audit_cmd = commands.add_parser("audit", help="check JSON logs for split sessions")
    audit_cli.add_arguments(audit_cmd)
    audit_cmd.set_defaults(func=lambda args: audit_cli.run(args, sys.stdout))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ConfigError,
        LibraryError,
        UsageError,
        cluster_cli.ClusterError,
        WorkerStartError,
    ) as exc:
        print(f"radiod: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # `radiod audit LOG | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
