"""How many sessions do two radiod instances behind nginx hold, against one? What does the
proxy itself cost per listener?

    .venv/bin/python bench/cluster.py                    # short: ~1-2 minutes
    .venv/bin/python bench/cluster.py --full             # full: until admission says full
                                                         # (up to 200 sessions), 60 s holds

For 1 and then 2 instances behind Debian's nginx (the config `radiod proxy-config` renders),
sessions are created through the proxy, each with a listener reading its stream through the
proxy, until every instance refuses (admission control: `session.max_encoder_load`, the
server's own judgement of what it can encode in real time) for `--full-after` seconds, or
`--max-sessions` is reached. Then each session gets `--listeners` listeners in all and the
cluster is held for `--hold` seconds: the listeners that keep 95% of real time are counted,
and the CPU of nginx's worker over the hold, divided by listener-seconds, is the proxy's own
cost per listener-second (beside the instances' CPU per listener-second, same window).

Listeners are asyncio Protocols that only count bytes, in this process; nginx and every
radiod are separate processes, so /proc gives each its own CPU. On a shared 2-core machine the
two instances compete with everything else: compare the ratio within one run, not the
absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from radiod.cluster.proxy import Upstream, render_nginx
from radiod.cluster.supervisor import find_nginx

HOST = "127.0.0.1"
BYTES_PER_SECOND = 16_000  # 128 kb/s MP3
REAL_TIME_FRACTION = 0.95
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


class Counter(asyncio.Protocol):
    """A listener that only counts the bytes of its response."""

    def __init__(self) -> None:
        self.received = 0
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True


async def listen(port: int, session_id: str) -> Counter:
    loop = asyncio.get_running_loop()
    transport, counter = await loop.create_connection(Counter, HOST, port)
    request = f"GET /stream?session={session_id} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n"
    transport.write(request.encode())
    return counter


def create_session(port: int) -> tuple[int, str, int]:
    """(status, session id or "", Retry-After) of one POST /create-session through the proxy."""
    request = urllib.request.Request(f"http://{HOST}:{port}/create-session", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())["sessionId"], 0
    except urllib.error.HTTPError as exc:
        return exc.code, "", int(exc.headers.get("Retry-After") or 1)


@dataclass
class Cluster:
    """`count` radiod instances and nginx in front, in `folder`."""

    count: int
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    proxy_port: int = 0
    nginx: subprocess.Popen[bytes] | None = None

    def start(self, library: str) -> None:
        secret = "bench"
        upstreams = []
        for index in range(self.count):
            node, port = f"bench-{index + 1}", free_port()
            env = {
                **os.environ,
                "RADIOD_SERVER__PORT": str(port),
                "RADIOD_SERVER__NODE": json.dumps(node),
                "RADIOD_SERVER__SECRET": json.dumps(secret),
                "RADIOD_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]',
                "RADIOD_LIBRARY__PATH": json.dumps(library),
                "RADIOD_LIMITS__CREATE_BURST": "0",
                "RADIOD_LOG__FILE": json.dumps(str(self.folder / f"{node}.log")),
            }
            argv = [sys.executable, "-m", "radiod", "serve"]
            self.processes.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL))
            upstreams.append(Upstream(node, HOST, port))
        self.proxy_port = free_port()
        conf = self.folder / "nginx.conf"
        conf.write_text(
            render_nginx(
                upstreams,
                listen=f"{HOST}:{self.proxy_port}",
                runtime=self.folder,
                foreground=True,
                error_log=str(self.folder / "error.log"),
                workers=1,
            )
        )
        argv = [find_nginx(), "-p", str(self.folder), "-c", str(conf), "-e", "stderr"]
        self.nginx = subprocess.Popen(argv)
        deadline = time.monotonic() + 60
        for up in upstreams:
            while not _answers(up.port):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{up.node} did not start")
                time.sleep(0.2)

    def proxy_cpu(self) -> float:
        assert self.nginx is not None
        return sum(cpu_seconds(p) for p in [self.nginx.pid, *children(self.nginx.pid)])

    def instances_cpu(self) -> float:
        """Every instance's CPU seconds, its worker processes (where the encoding is) included."""
        return sum(cpu_seconds(pid) for p in self.processes for pid in [p.pid, *children(p.pid)])

    def stop(self) -> None:
        for process in [self.nginx, *self.processes]:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM if process is self.nginx else signal.SIGINT)
        for process in [self.nginx, *self.processes]:
            if process is not None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False


async def fill(cluster: Cluster, args: argparse.Namespace) -> tuple[list[str], list[Counter]]:
    """Create sessions, one listener each, until all refuse for `full_after` s or the cap."""
    sessions: list[str] = []
    listeners: list[Counter] = []
    refused_since: float | None = None
    while len(sessions) < args.max_sessions:
        status, session_id, retry = await asyncio.to_thread(create_session, cluster.proxy_port)
        if status == 201:
            refused_since = None
            sessions.append(session_id)
            listeners.append(await listen(cluster.proxy_port, session_id))
            continue
        now = time.monotonic()
        refused_since = refused_since or now
        if now - refused_since >= args.full_after:
            break
        await asyncio.sleep(min(retry, 1))
    return sessions, listeners


async def hold(cluster: Cluster, args: argparse.Namespace) -> dict[str, float]:
    """Fill, add listeners, hold: capacity, real-time listeners and CPU per listener-second."""
    sessions, listeners = await fill(cluster, args)
    for index in range(len(sessions) * (args.listeners - 1)):
        listeners.append(await listen(cluster.proxy_port, sessions[index % len(sessions)]))
    await asyncio.sleep(6)  # the 4 s bursts go out before the window starts
    before = [c.received for c in listeners]
    proxy0, radiod0, t0 = cluster.proxy_cpu(), cluster.instances_cpu(), time.monotonic()
    await asyncio.sleep(args.hold)
    seconds = time.monotonic() - t0
    proxy, radiod = cluster.proxy_cpu() - proxy0, cluster.instances_cpu() - radiod0
    rates = [(c.received - b) / seconds for c, b in zip(listeners, before, strict=True)]
    kept = [rate >= REAL_TIME_FRACTION * BYTES_PER_SECOND for rate in rates]
    # Listener i is on session i % sessions: a session holds when all its listeners do.
    late = {i % len(sessions) for i, ok in enumerate(kept) if not ok} if sessions else set()
    listener_seconds = len(listeners) * seconds
    return {
        "sessions": len(sessions),
        "real_time_sessions": len(sessions) - len(late),
        "listeners": len(listeners),
        "real_time_listeners": sum(kept),
        "proxy_cpu_ms_per_listener_second": 1000 * proxy / listener_seconds,
        "radiod_cpu_ms_per_listener_second": 1000 * radiod / listener_seconds,
        "proxy_cores": proxy / seconds,
        "radiod_cores": radiod / seconds,
    }


def refusals(folder: Path) -> dict[str, int]:
    """Why the instances refused sessions (admission reasons, from their logs)."""
    counts: dict[str, int] = {}
    for log in folder.glob("bench-*.log"):
        for line in log.read_text().splitlines():
            if '"session.admission_refused"' in line:
                reason = json.loads(line).get("reason", "?")
                counts[reason] = counts.get(reason, 0) + 1
    return counts


async def run(count: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="radiod-bench-cluster-") as folder:
        cluster = Cluster(count, Path(folder))
        try:
            await asyncio.to_thread(cluster.start, args.library)
            figures = await hold(cluster, args)
            print(f"{count} instance(s), refusals: {refusals(Path(folder))}")
            return figures
        finally:
            await asyncio.to_thread(cluster.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="200 sessions max, 60 s holds")
    parser.add_argument("--max-sessions", type=int, default=24)
    parser.add_argument("--full-after", type=float, default=12.0, help="refused this long = full")
    parser.add_argument("--listeners", type=int, default=5, help="listeners per session")
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--library", default="", help="music folder (default: the demo)")
    args = parser.parse_args()
    if args.full:
        args.max_sessions, args.hold, args.full_after = 200, 60.0, 20.0
    if shutil.which("nginx", path="/usr/sbin:/usr/bin:/usr/local/sbin") is None:
        raise SystemExit("nginx not found: apt-get install nginx (make system-deps)")
    results = {count: asyncio.run(run(count, args)) for count in (1, 2)}
    for count, figures in results.items():
        print(f"{count} instance(s): " + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))
    one, two = results[1], results[2]
    print(
        f"capacity, 2 instances / 1: {two['sessions'] / max(one['sessions'], 1):.2f} "
        f"({two['sessions']} vs {one['sessions']} sessions; cap {args.max_sessions})"
    )
    print(
        f"nginx CPU per listener-second: {two['proxy_cpu_ms_per_listener_second']:.3f} ms "
        f"(radiod instances: {two['radiod_cpu_ms_per_listener_second']:.3f} ms, same window)"
    )


if __name__ == "__main__":
    main()
