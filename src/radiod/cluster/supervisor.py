"""`radiod cluster` (make serve-cluster): nginx in front of N local radiod instances.

Started, watched and stopped together: each child runs in its own session (so Ctrl-C
reaches the supervisor alone, which then stops every child in order) and dies with the
supervisor even if the supervisor is killed (Linux `PR_SET_PDEATHSIG`). If any child exits
on its own, the others are stopped too: a half cluster is not left running unnoticed.
Every child's output is shown side by side, each line prefixed with its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from radiod.cluster.proxy import Upstream, loopback_upstreams, render_nginx
from radiod.config import Config

# How long a child gets to stop after its signal before it is killed.
STOP_TIMEOUT_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


class ClusterError(Exception):
    """Something the user can fix (nginx missing); printed as one line."""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, however it dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def find_nginx() -> str:
    """The nginx binary; Debian puts it in /usr/sbin, which a user's PATH may lack."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ClusterError("nginx not found: apt-get install nginx (or run `make system-deps`)")
    return found


def instance_env(config: Config, upstream: Upstream, secret: str) -> dict[str, str]:
    """The environment that makes one `radiod serve` an instance of the local cluster."""
    overrides = {
        "SERVER__HOST": upstream.host,
        "SERVER__PORT": upstream.port,
        "SERVER__NODE": upstream.node,
        # One secret for all, so each verifies the cookies the others signed.
        "SERVER__SECRET": secret,
        "SERVER__TRUSTED_PROXIES": ["127.0.0.1"],
        # The proxy enforces the per-address connection cap (deploy/nginx.conf.j2).
        "LOG__FILE": "",
    }
    # TOML values (config.py parses overrides as TOML), so strings stay strings.
    return {**os.environ, **{f"RADIOD_{k}": json.dumps(v) for k, v in overrides.items()}}


@dataclass
class Child:
    """One process of the cluster and the task copying its output."""

    name: str
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]


async def _pump(name: str, stream: asyncio.StreamReader, out: TextIO) -> None:
    prefix = f"{name:>8} | "
    while line := await stream.readline():
        out.write(prefix + line.decode("utf-8", "backslashreplace"))
        out.flush()


async def _spawn(name: str, argv: Sequence[str], env: dict[str, str], out: TextIO) -> Child:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    assert process.stdout is not None
    return Child(name, process, asyncio.create_task(_pump(name, process.stdout, out)))


async def _stop(child: Child, signum: int) -> None:
    if child.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.process.send_signal(signum)
        try:
            await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            child.process.kill()
            await child.process.wait()
    await child.pump


async def run_cluster(config: Config, config_path: Path | None, out: TextIO = sys.stdout) -> int:
    """Run the local cluster until Ctrl-C/SIGTERM (0) or until a child exits by itself (1)."""
    nginx = find_nginx()
    upstreams = loopback_upstreams(config)
    secret = config.server.secret or secrets.token_urlsafe(32)
    listen = f"{config.cluster.proxy_host}:{config.cluster.proxy_port}"
    serve = [sys.executable, "-m", "radiod", "serve"]
    if config_path is not None:
        serve += ["--config", str(config_path)]
    with tempfile.TemporaryDirectory(prefix="radiod-nginx-") as runtime:
        conf = Path(runtime) / "nginx.conf"
        conf.write_text(
            render_nginx(
                upstreams,
                listen=listen,
                runtime=Path(runtime),
                connections_per_ip=config.limits.connections_per_ip,
                foreground=True,
            )
        )
        instances = [
            await _spawn(u.node, serve, instance_env(config, u, secret), out) for u in upstreams
        ]
        argv = [nginx, "-p", runtime, "-c", str(conf), "-e", "stderr"]
        proxy = await _spawn("nginx", argv, dict(os.environ), out)
        addresses = ", ".join(u.address for u in upstreams)
        _say(out, f"http://{listen}/ -> {addresses} (Ctrl-C stops all)")
        failed = await _watch([*instances, proxy])
        if failed:
            _say(out, f"{', '.join(failed)} exited by itself: stopping the others")
        # The proxy first (fast shutdown: its endless responses would hold a graceful one),
        # then the instances (SIGINT: stop now; SIGTERM would drain).
        await _stop(proxy, signal.SIGTERM)
        await asyncio.gather(*(_stop(c, signal.SIGINT) for c in instances))
        _say(out, "stopped")
    return 1 if failed else 0


def _say(out: TextIO, text: str) -> None:
    out.write(f"{'cluster':>8} | {text}\n")
    out.flush()


async def _watch(children: list[Child]) -> list[str]:
    """Wait for SIGINT/SIGTERM or for a child to exit; the names of children that exited."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    waits = [asyncio.ensure_future(c.process.wait()) for c in children]
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return [c.name for c in children if c.process.returncode is not None]
