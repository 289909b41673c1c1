"""A real nginx in front of real `radiod serve` processes, as `radiod proxy-config` sets it up.

`start_cluster` starts the instances (each with its node name, one shared secret, the proxy
trusted), renders deploy/nginx.conf.j2 for their ports and starts Debian's nginx on a free
loopback port in the foreground. With `netns=True` every instance runs in a network
namespace of its own, reached through a veth pair the test makes: separate hosts, as far
as the network can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from radiod.cluster.proxy import Upstream, render_nginx
from radiod.cluster.supervisor import ClusterError, find_nginx
from tests.conftest import free_ports
from tests.reliability.conftest import RadiodProcess, wait_for

SECRET = "one secret for every instance behind the proxy"
# Instances in network namespaces listen here, each on its own veth address.
NETNS_PORT = 8000


def nginx_or_skip() -> str:
    try:
        return find_nginx()
    except ClusterError as exc:
        pytest.skip(f"{exc} (`make test` installs it)")


class Nginx:
    """nginx in the foreground with a generated config, logging to files in `folder`."""

    def __init__(self, folder: Path, upstreams: list[Upstream]) -> None:
        folder.mkdir(exist_ok=True)
        self.folder = folder
        self.port = free_ports()
        self.access_log = folder / "access.log"
        self.error_log = folder / "error.log"
        config = render_nginx(
            upstreams,
            listen=f"127.0.0.1:{self.port}",
            runtime=folder,
            connections_per_ip=64,
            foreground=True,
            error_log=str(self.error_log),
            access_log=str(self.access_log),
            workers=1,
        )
        (folder / "nginx.conf").write_text(config)
        argv = [nginx_or_skip(), "-p", str(folder), "-c", str(folder / "nginx.conf")]
        self.process = subprocess.Popen(
            [*argv, "-e", str(self.error_log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def started(self) -> None:
        async def answers() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"nginx exited: {self.error_log.read_text()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return True
            return False

        await wait_for(answers, 20, "nginx to listen")

    def wait_listening(self, timeout: float = 20.0) -> None:
        """`started` for sync callers (Playwright's sync API runs its own loop in the thread)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"nginx exited: {self.error_log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"nginx not listening after {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Namespaces:
    """`ip netns` namespaces and veth pairs made for one test, removed afterwards."""

    names: list[str] = field(default_factory=list)
    host_addresses: list[str] = field(default_factory=list)  # the host's end of each pair

    @staticmethod
    def available() -> str | None:
        """Why namespaces cannot be used here, or None."""
        if shutil.which("ip") is None:
            return "the `ip` command (iproute2) is missing"
        if os.geteuid() != 0:
            return "making network namespaces needs root"
        return None

    def make(self, index: int) -> tuple[str, str, str]:
        """Namespace `index`: (its name, the host's veth address, the instance's address)."""
        name = f"radiodt{index}-{free_ports()}"
        host, inner = f"10.213.{index}.1", f"10.213.{index}.2"
        outside, inside = f"rdh{index}-{name[-5:]}", f"rdn{index}-{name[-5:]}"
        self.names.append(name)
        self.host_addresses.append(host)
        for command in (
            ["ip", "netns", "add", name],
            ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
            ["ip", "link", "set", inside, "netns", name],
            ["ip", "addr", "add", f"{host}/30", "dev", outside],
            ["ip", "link", "set", outside, "up"],
            ["ip", "netns", "exec", name, "ip", "addr", "add", f"{inner}/30", "dev", inside],
            ["ip", "netns", "exec", name, "ip", "link", "set", inside, "up"],
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
        return name, host, inner

    def remove(self) -> None:
        for name in self.names:
            # Deleting the namespace deletes its veth end, and with it the host's end.
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        self.names.clear()
        self.host_addresses.clear()


@dataclass
class Instance:
    """One radiod of the cluster: its node, the address the proxy reaches, its process."""

    node: str
    host: str
    port: int
    process: RadiodProcess

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Cluster:
    instances: list[Instance]
    nginx: Nginx
    restart: Callable[[Instance], Awaitable[Instance]]

    @property
    def url(self) -> str:
        return self.nginx.url

    def instance(self, node: str) -> Instance:
        return next(i for i in self.instances if i.node == node)

    def log_paths(self) -> list[Path]:
        return [i.process.log_path for i in self.instances]


def instance_sections(node: str, trusted: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """An instance's config: its node, the shared secret, the proxy trusted; admission off
    (it paces new sessions at three a second, which these tests are not about)."""
    server = {"node": node, "secret": SECRET, "trusted_proxies": [trusted]}
    merged: dict[str, dict[str, Any]] = {"server": server, "session": {"max_encoder_load": 0}}
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return merged
