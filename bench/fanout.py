"""What does one more listener cost radiod, next to Debian's Icecast on the same machine?

    .venv/bin/python bench/fanout.py [--listeners 1000] [--sessions 1] [--seconds 10]
                                     [--loop asyncio|uvloop|both] [--all] [--no-icecast]

`--all` runs every scenario of issue 12 (1,000 and 4,000 listeners on one session, 200
sessions of 20) on both event loops, with Icecast at 1,000 and 4,000; about 6 minutes.
A short run for development: `--listeners 300 --seconds 5 --loop asyncio`. The bench
raises its RLIMIT_NOFILE (inherited by radiod, Icecast and the load generator) to fit.

DESIGN §7 sets the bar: Icecast 2.4 fans one 128 kb/s MP3 out to 1,000 loopback listeners at
~6% of one core, ~0.06 ms CPU per listener-second and ~1.8 kB RSS per listener. Why the
benchmark has the shape it has:

- A real `radiod serve` subprocess, not the app in-process: the cost that matters includes
  aiohttp's parser, transports and the log pipeline, and nothing else may share its GIL or
  its /proc CPU account.
- The listeners live in a separate load-generator process (asyncio Protocols that only
  count bytes), so the server's utime+stime is the server's alone.
- A session's mixer encodes whether one or a thousand listen. So a baseline is measured first
  with one listener per session (mixer + ring + one writer each), then the rest attach; the
  CPU and RSS difference divided by the added listeners is the fan-out cost per listener.
  The baseline divided by the sessions is the cost of a session.
- Bytes per listener per second is the check that the figures mean anything: 128 kb/s MP3
  is 16,000 B/s (radiod's chunked framing adds ~0.2%). Mixers that cannot keep real time
  (the GIL, two cores, many encoders) show up as less: as a session pace below 1.0.
- Many mixers make the whole process's CPU too noisy for a per-listener difference, so the
  event-loop thread's CPU is also reported alone (the loop is the main thread; /proc's
  per-thread counters), and `GET /healthz` is timed during each window: with many mixer
  threads the loop waits for the GIL (DESIGN §7).
- Icecast runs in the same invocation, after radiod, with the same load generator, so both
  sides meet the same kernel, CPU and loopback. Its source is a pre-encoded 128 kb/s CBR MP3
  sent by `ffmpeg -re -c:a copy`: ffmpeg's own CPU is not Icecast's and should not steal
  the two cores from it either. Icecast has one mount whatever `--sessions` says: it is the
  reference for fan-out, not for mixing.

Everything binds and connects to 127.0.0.1 only. With the defaults a run takes under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanout_targets import LOOPS, SCENARIOS, raise_nofile, targets_table

HOST = "127.0.0.1"
BYTES_PER_SECOND = 16_000  # 128 kb/s MP3
SHORT_FRACTION = 0.95  # a listener below 95% of that over the window fell behind
SETTLE_SECONDS = 2.0  # after attaching: let the 4 s bursts go out before measuring
BASE_SECONDS = 5.0  # the mixer-only baseline window
ATTACH_TIMEOUT_SECONDS = 20.0
# Icecast 2.4 listens with a backlog of 5 and accepts ~400 connections/s: faster connects
# overflow its accept queue and then sit out SYN retransmits (1, 3, 7, 15 s...). radiod
# listens with a backlog of 4096 (cli.LISTEN_BACKLOG), so its listeners connect unpaced,
# as they would after a restart.
ICECAST_CONNECT_INTERVAL_SECONDS = 0.005
PING_INTERVAL_SECONDS = 0.1  # GET /healthz during each window, for its p99
STEADY_TIMEOUT_SECONDS = 6.0  # beyond this the sources cannot keep real time
BURST_SECONDS = 4.0  # radiod's default `stream.burst_seconds`
CLK_TCK = os.sysconf("SC_CLK_TCK")
ICECAST_PASSWORD = "fanoutbench"
FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error"]
ICY_COPY = ["-c:a", "copy", "-content_type", "audio/mpeg", "-f", "mp3"]
MP3_128K = ["-c:a", "libmp3lame", "-b:a", "128k", "-id3v2_version", "0"]
STARTED = time.monotonic()
DESIGN_BAR = {"cpu_pct": 6.0, "ms_per_listener_s": 0.06, "kb_per_listener": 1.8}

RADIOD_CONFIG = """\
[server]
host = "127.0.0.1"
port = 0
event_loop = "{loop}"

[library]
path = ""

[session]
max_sessions = {max_sessions}
idle_timeout_seconds = 3600
max_encoder_load = 0

[limits]
create_burst = 0
connections_per_ip = 0

[log]
format = "json"
level = "info"
file = {log}
"""

ICECAST_CONFIG = """\
<icecast>
  <location>bench</location>
  <admin>bench@localhost</admin>
  <limits>
    <clients>{clients}</clients>
    <sources>2</sources>
    <queue-size>524288</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password>
    <relay-password>{password}</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>{password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>{port}</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>{logdir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
  </logging>
  <security>
    <chroot>0</chroot>{changeowner}
  </security>
</icecast>
"""
# Icecast refuses to run as root unless told whom to become (Debian's package creates them).
ICECAST_CHANGEOWNER = """
    <changeowner><user>icecast2</user><group>icecast</group></changeowner>"""


# -- the load generator (child process) ----------------------------------------------------
class _Listener(asyncio.Protocol):
    """One listener: send the request, count every byte, keep none of them."""

    def __init__(self, request: bytes, first: asyncio.Future[None]) -> None:
        self.request = request
        self.first = first
        self.transport: asyncio.Transport | None = None
        self.bytes = 0
        self.status = b""
        self.closed = False
        self.error = ""

    @property
    def ok(self) -> bool:
        return b" 200 " in self.status

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.status = data.split(b"\r\n", 1)[0]
            if not self.first.done():
                self.first.set_result(None)
        self.bytes += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.first.done():
            self.first.set_result(None)


def _request(path: str, port: int) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: fanout-bench\r\n\r\n"
    return head.encode()


async def _connect(listener: _Listener, port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(delay)
    try:
        await loop.create_connection(lambda: listener, HOST, port)
        await asyncio.wait_for(asyncio.shield(listener.first), ATTACH_TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        listener.error = type(exc).__name__
    if not listener.ok and not listener.error:
        listener.error = listener.status.decode(errors="replace") or "closed before a response"


async def _attach(
    listeners: list[_Listener], port: int, paths: list[str], interval: float
) -> dict[str, Any]:
    """Open `paths`, `interval` seconds apart, and wait for each one's first bytes."""
    loop = asyncio.get_running_loop()
    new = [_Listener(_request(p, port), loop.create_future()) for p in paths]
    listeners.extend(new)
    started = time.monotonic()
    await asyncio.gather(
        *(_connect(listener, port, i * interval) for i, listener in enumerate(new))
    )
    errors = Counter(listener.error for listener in new if listener.error)
    return {
        "ok": sum(listener.ok for listener in new),
        "failed": sum(bool(listener.error) for listener in new),
        "seconds": time.monotonic() - started,
        "errors": dict(errors.most_common(3)),
    }


def _snapshot(listeners: list[_Listener]) -> dict[str, Any]:
    return {
        "t": time.monotonic(),
        "bytes": [listener.bytes for listener in listeners],
        "closed": [listener.closed for listener in listeners],
    }


async def _loadgen() -> None:
    """Serve `attach` / `snap` / `quit` commands, one JSON line each way, on stdin/stdout."""
    listeners: list[_Listener] = []
    while line := await asyncio.to_thread(sys.stdin.readline):
        command = json.loads(line)
        if command["op"] == "attach":
            reply = await _attach(listeners, **command["args"])
        elif command["op"] == "snap":
            reply = _snapshot(listeners)
        else:
            break
        print(json.dumps(reply), flush=True)
    for listener in listeners:
        if listener.transport is not None:
            listener.transport.abort()


class LoadGen:
    """The parent's handle on the load-generator process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def _call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died")
        return json.loads(line)

    def attach(self, port: int, paths: list[str], interval: float) -> dict[str, Any]:
        args = {"port": port, "paths": paths, "interval": interval}
        return self._call(op="attach", args=args)

    def snap(self) -> dict[str, Any]:
        return self._call(op="snap")

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self._call(op="quit")
        stop_process(self.proc, signal.SIGTERM)


def say(message: str) -> None:
    """Progress on stderr, so a minute of silence is not mistaken for a hang."""
    print(f"[{time.monotonic() - STARTED:5.1f} s] {message}", file=sys.stderr, flush=True)


# -- /proc ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (all threads, dead ones included), RSS, and CPU seconds per live thread."""

    t: float
    cpu: float
    rss_kb: int
    threads: dict[int, tuple[str, float]]


def _stat_cpu(text: str) -> tuple[str, float]:
    """(comm, utime+stime seconds) from a /proc stat line; comm may hold spaces or ')'."""
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _threads(pid: int) -> dict[int, tuple[str, float]]:
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may end while we look
            threads[int(task.name)] = _stat_cpu((task / "stat").read_text())
    return threads


def sample(pid: int) -> ProcSample:
    _, cpu = _stat_cpu(Path(f"/proc/{pid}/stat").read_text())
    return ProcSample(time.monotonic(), cpu, _rss_kb(pid), _threads(pid))


def thread_groups(pid: int, before: ProcSample, after: ProcSample) -> dict[str, float]:
    """CPU seconds by role: the event loop (the main thread) and every other thread."""
    groups: Counter[str] = Counter()
    for tid, (name, cpu) in after.threads.items():
        # Python 3.11 gives threads no OS names: mixers and executor threads look alike.
        role = "loop" if tid == pid else "other threads"
        groups[role] += cpu - before.threads.get(tid, (name, 0.0))[1]
    return dict(groups)


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs: is the two-core machine saturated?"""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# -- measuring a window --------------------------------------------------------------------
Pinger = Callable[[], float]  # one request to the server; returns its answer time


@dataclass
class Window:
    """One steady-state measurement of a server under a fixed set of listeners."""

    seconds: float
    cpu: float
    rss_kb: int
    rates: list[float]  # bytes/s of each listener, in attach order
    dropped: int
    groups: dict[str, float]
    loadgen_cpu: float
    system_pct: float
    latencies: list[float] = field(default_factory=list)

    @property
    def cpu_rate(self) -> float:
        return self.cpu / self.seconds


def _rates(before: dict[str, Any], after: dict[str, Any]) -> list[float]:
    span = after["t"] - before["t"]
    return [(b - a) / span for a, b in zip(before["bytes"], after["bytes"], strict=True)]


def _wait(seconds: float, ping: Pinger | None) -> list[float]:
    """Sleep `seconds`; with `ping`, time a request every PING_INTERVAL_SECONDS meanwhile."""
    deadline = time.monotonic() + seconds
    latencies = []
    while time.monotonic() < deadline:
        if ping is not None:
            latencies.append(ping())
        time.sleep(min(PING_INTERVAL_SECONDS, max(deadline - time.monotonic(), 0.0)))
    return latencies


def measure(pid: int, loadgen: LoadGen, seconds: float, ping: Pinger | None) -> Window:
    """Sample the server, the listeners and the machine `seconds` apart."""
    s0, g0, b0, sys0 = sample(pid), sample(loadgen.pid), loadgen.snap(), system_busy()
    latencies = _wait(seconds, ping)
    s1, g1, b1, sys1 = sample(pid), sample(loadgen.pid), loadgen.snap(), system_busy()
    span = s1.t - s0.t
    return Window(
        seconds=span,
        cpu=s1.cpu - s0.cpu,
        rss_kb=s1.rss_kb,
        rates=_rates(b0, b1),
        dropped=sum(b1["closed"]),
        groups=thread_groups(pid, s0, s1),
        loadgen_cpu=(g1.cpu - g0.cpu) / span,
        system_pct=100 * (sys1[0] - sys0[0]) / max(sys1[1] - sys0[1], 1),
        latencies=latencies,
    )


def wait_steady(loadgen: LoadGen, started: float) -> str:
    """Wait until every listener so far has its burst plus real time since `started`.

    radiod opens with a 4 s burst and then keeps pace. A mixer still behind that (catching up)
    would put its catch-up work into the baseline. Returns a note if the wait timed out.
    """
    deadline = time.monotonic() + STEADY_TIMEOUT_SECONDS
    while True:
        snap = loadgen.snap()
        due = (snap["t"] - started + BURST_SECONDS - 1.0) * BYTES_PER_SECOND
        behind = sum(b < due for b in snap["bytes"])
        if not behind:
            return ""
        if time.monotonic() > deadline:
            return f"{behind} baseline listener(s) still behind real time when the baseline began"
        time.sleep(0.5)


@dataclass
class Result:
    """A server's figures: baseline window, full window, and what its log had to say."""

    name: str
    listeners: int
    base_listeners: int
    sessions: int
    idle_rss_kb: int
    base: Window
    full: Window
    attach: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def added(self) -> int:
        return max(self.listeners - self.base_listeners, 1)

    @property
    def ms_per_listener_s(self) -> float:
        return (self.full.cpu_rate - self.base.cpu_rate) * 1000 / self.added

    @property
    def kb_per_listener(self) -> float:
        return (self.full.rss_kb - self.base.rss_kb) / self.added


@dataclass
class Load:
    """How to load a server: its pid and port, every listener's path, and the baseline's size."""

    pid: int
    port: int
    paths: list[str]
    base_count: int
    ping: Pinger | None = None
    # radiod's mixers start with the first listener and must catch up first; Icecast's
    # source (ffmpeg -re) is already live.
    wait_steady: bool = False
    connect_interval: float = 0.0


def run_load(load: Load, seconds: float) -> tuple[int, Window, Window, list[Any], str]:
    """Attach the baseline listeners, measure; attach the rest, measure."""
    loadgen = LoadGen()
    try:
        idle_rss = sample(load.pid).rss_kb
        started = time.monotonic()
        base_paths = load.paths[: load.base_count]
        attach = [loadgen.attach(load.port, base_paths, load.connect_interval)]
        say(f"{load.base_count} baseline listener(s) attached: {attach[0]}")
        time.sleep(SETTLE_SECONDS)
        note = wait_steady(loadgen, started) if load.wait_steady else ""
        base = measure(load.pid, loadgen, BASE_SECONDS, load.ping)
        rest = load.paths[load.base_count :]
        attach.append(loadgen.attach(load.port, rest, load.connect_interval))
        say(f"{len(load.paths) - load.base_count} more listeners attached: {attach[1]}")
        time.sleep(SETTLE_SECONDS)
        full = measure(load.pid, loadgen, seconds, load.ping)
        say("measured")
    finally:
        loadgen.close()
    return idle_rss, base, full, attach, note


# -- processes -----------------------------------------------------------------------------
def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    """Ask one process we started to stop, by its pid; kill it if it will not."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy


def http_json(port: int, method: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", method=method)
    with _OPENER.open(request, timeout=10) as response:
        return json.loads(response.read())


# -- radiod --------------------------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen[Any]
    port: int
    log: Path
    stderr: Path


def _wait_started(proc: subprocess.Popen[Any], log: Path, stderr: Path) -> int:
    """The port from the `server.started` line (the first run may generate the demo library)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"radiod exited with {proc.returncode}:\n{_tail(stderr)}")
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                if '"server.started"' in line:
                    return int(json.loads(line)["port"])
        time.sleep(0.1)
    raise RuntimeError("radiod did not log server.started within 180 s")


def start_radiod(tmp: Path, sessions: int, loop: str) -> Server:
    tmp.mkdir()
    log, stderr, config = tmp / "radiod.log", tmp / "radiod.stderr", tmp / "radiod.toml"
    text = RADIOD_CONFIG.format(max_sessions=sessions + 10, log=json.dumps(str(log)), loop=loop)
    config.write_text(text)
    # Only this file configures the server: no RADIOD_* overrides from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADIOD_")}
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radiod", "serve", "--config", str(config)],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        return Server(proc, _wait_started(proc, log, stderr), log, stderr)
    except BaseException:
        stop_process(proc)
        raise


def _healthz_time(port: int) -> float:
    """Seconds `GET /healthz` takes: the event loop's responsiveness (it waits for the GIL)."""
    t0 = time.monotonic()
    # A loop too busy to answer within urllib's 10 s is a figure (a very late answer), not a
    # reason to stop the bench: with mixers as threads, 200 sessions starve the loop (§8).
    with contextlib.suppress(OSError):
        http_json(port, "GET", "/healthz")
    return time.monotonic() - t0


def bench_radiod(tmp: Path, listeners: int, sessions: int, seconds: float, loop: str) -> Result:
    server = start_radiod(tmp / f"radiod-{loop}-{listeners}x{sessions}", sessions, loop)
    say(f"radiod on {loop} serving on port {server.port}")
    try:
        ids = [
            http_json(server.port, "POST", "/create-session")["sessionId"] for _ in range(sessions)
        ]
        # Listener i goes to session i % sessions: the first `sessions` are the baseline.
        paths = [f"/stream?session={ids[i % sessions]}&listener=bench{i}" for i in range(listeners)]
        ping = lambda: _healthz_time(server.port)  # noqa: E731
        load = Load(server.proc.pid, server.port, paths, sessions, ping, wait_steady=True)
        idle, base, full, attach, note = run_load(load, seconds)
    finally:
        stop_process(server.proc)
    notes = [note] if note else []
    notes += scan_radiod_log(server.log, server.stderr)
    name = f"radiod {loop}"
    return Result(name, listeners, sessions, sessions, idle, base, full, attach, notes)


def scan_radiod_log(log: Path, stderr: Path) -> list[str]:
    """Warnings, errors and tracebacks in the server's log, counted by event."""
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    watched = ("stream.reader_skipped", "stream.slow_client_dropped")
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            counts["non-JSON line"] += 1
            continue
        level, event = record.get("level"), str(record.get("event"))[:80]
        if level in ("warning", "error", "critical") or "exception" in record:
            key = f"{level} {event}" + (" (traceback)" if "exception" in record else "")
            counts[key] += 1
            examples.setdefault(key, line[:400])
    notes = [f"{sum(n for k, n in counts.items() if w in k)} x {w}" for w in watched]
    notes += [f"{n} x {key}  e.g. {examples[key]}" for key, n in counts.most_common(8)]
    if stderr.exists() and stderr.stat().st_size:
        notes.append(f"server stderr: {_tail(stderr, 10)}")
    return notes


# -- icecast -------------------------------------------------------------------------------
def _apt(*args: str) -> tuple[bool, str]:
    """Run apt-get; (succeeded, its last line of stderr)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            ["apt-get", *args], env=env, capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        return False, f"apt-get {args[0]} timed out"
    return done.returncode == 0, (done.stderr.strip().splitlines() or [""])[-1]


def ensure_icecast() -> tuple[str | None, str]:
    """Debian's icecast2 binary, installing it when root; else (None, why not)."""
    if binary := shutil.which("icecast2"):
        return binary, ""
    if os.geteuid() != 0:
        return None, "icecast2 is not installed and this is not root, so it cannot be apt-get'd"
    ok, why = _apt("install", "-y", "icecast2")
    if not ok:  # a stale package list, or no registry at all
        _apt("update")
        ok, why = _apt("install", "-y", "icecast2")
    if binary := shutil.which("icecast2"):
        return binary, ""
    return None, f"`apt-get install icecast2` failed (registry unreachable?): {why}"


def make_source_mp3(tmp: Path) -> Path:
    """20 s of 128 kb/s CBR MP3: a demo track if there is one, else a tone."""
    out = tmp / "source.mp3"
    demo = sorted((Path.home() / ".cache/radiod/demo").glob("*.mp3"))
    source = ["-i", str(demo[0])] if demo else ["-f", "lavfi", "-i", "sine=frequency=440"]
    # `-map 0:a`: the demo MP3s carry a cover picture, which a bare MP3 for Icecast can't.
    audio = ["-map", "0:a", "-t", "20", "-ar", "44100", "-ac", "2", *MP3_128K]
    subprocess.run(
        [*FFMPEG, "-y", *source, *audio, str(out)],
        check=True,
        timeout=120,
    )
    return out


def start_icecast(binary: str, tmp: Path, listeners: int) -> Server:
    port, logdir = _free_port(), tmp / "icecast"
    logdir.mkdir()
    # Icecast drops root for the icecast2 user, which must still reach its log folder.
    for folder in (tmp.parent, tmp):
        folder.chmod(0o755)
    logdir.chmod(0o777)
    config = tmp / "icecast.xml"
    config.write_text(
        ICECAST_CONFIG.format(
            clients=listeners + 20,
            password=ICECAST_PASSWORD,
            port=port,
            logdir=logdir,
            changeowner=ICECAST_CHANGEOWNER if os.geteuid() == 0 else "",
        )
    )
    stderr = tmp / "icecast.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [binary, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
    return Server(proc, port, logdir / "error.log", stderr)


def start_source(mp3: Path, port: int, tmp: Path) -> subprocess.Popen[Any]:
    url = f"icecast://source:{ICECAST_PASSWORD}@{HOST}:{port}/live"
    with (tmp / "ffmpeg.stderr").open("wb") as err:
        return subprocess.Popen(
            [*FFMPEG, "-re", "-stream_loop", "-1", "-i", str(mp3), *ICY_COPY, url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def wait_mount(port: int, timeout: float = 15.0) -> bool:
    """True once GET /live answers 200, i.e. the source is connected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 2) as sock:
            sock.sendall(b"GET /live HTTP/1.0\r\n\r\n")
            if b" 200 " in sock.recv(256).split(b"\r\n", 1)[0]:
                return True
        time.sleep(0.3)
    return False


def bench_icecast(tmp: Path, listeners: int, seconds: float) -> Result | str:
    """Icecast's figures, or why it could not be measured."""
    binary, why = ensure_icecast()
    if binary is None:
        return why
    mp3 = make_source_mp3(tmp)
    server = start_icecast(binary, tmp, listeners)
    say(f"icecast2 starting on port {server.port}")
    source = None
    try:
        source = start_source(mp3, server.port, tmp)
        if not wait_mount(server.port):
            return f"icecast mount never came up: {_tail(server.stderr)} {_tail(server.log)}"
        paths = ["/live"] * listeners
        load = Load(server.proc.pid, server.port, paths, 1, ping=None, wait_steady=False)
        load.connect_interval = ICECAST_CONNECT_INTERVAL_SECONDS
        idle, base, full, attach, note = run_load(load, seconds)
    finally:
        if source is not None:
            stop_process(source, signal.SIGTERM)
        stop_process(server.proc, signal.SIGTERM)
    notes = [note] if note else []
    notes += [
        f"error.log: {line}"
        for line in _tail(server.log, 5).splitlines()
        # Icecast 2.4 says this of every MP3 mount: its "generic" handler is format_mp3.
        if line and "Falling back to generic minimal handler" not in line
    ]
    return Result("icecast2", listeners, 1, 1, idle, base, full, attach, notes)


# -- report --------------------------------------------------------------------------------
def _rate_cells(w: Window) -> list[str]:
    short = sum(r < BYTES_PER_SECOND * SHORT_FRACTION for r in w.rates)
    return [
        f"{statistics.fmean(w.rates):,.0f}" if w.rates else "-",
        f"{min(w.rates):,.0f}" if w.rates else "-",
        str(short),
    ]


def _others(w: Window) -> float:
    """% of one core used by neither the server nor the load generator: a shared machine."""
    return w.system_pct * (os.cpu_count() or 1) - 100 * (w.cpu_rate + w.loadgen_cpu)


def _column(r: Result) -> list[str]:
    b, f = r.base, r.full
    return [
        f"{r.listeners} / {r.sessions}",
        f"{100 * f.cpu_rate:.1f}",
        f"{100 * b.cpu_rate:.1f}",
        f"{r.ms_per_listener_s:.4f}",
        f"{r.kb_per_listener:.1f}",
        f"{r.idle_rss_kb / 1024:.1f} / {b.rss_kb / 1024:.1f} / {f.rss_kb / 1024:.1f}",
        *_rate_cells(f),
        str(f.dropped),
        " + ".join(f"{a['seconds']:.1f}" for a in r.attach),
        str(sum(a["failed"] for a in r.attach)),
        f"{100 * f.loadgen_cpu:.0f}",
        f"{_others(b):.0f} / {_others(f):.0f}",
    ]


ROWS = [
    "listeners / sessions",
    "CPU % of one core (all listeners)",
    "CPU % baseline (1 listener/session)",
    "ms CPU per listener-second",
    "kB RSS per listener",
    "RSS MB idle / baseline / full",
    "bytes/listener/s, mean",
    "bytes/listener/s, min",
    "listeners < 95% of 16,000 B/s",
    "listeners disconnected by the end",
    "attach seconds (base + rest)",
    "failed attaches",
    "load generator CPU %",
    "other processes' CPU % base / full",
]


def _table(columns: dict[str, list[str]]) -> str:
    width = max(len(row) for row in ROWS)
    lines = ["".join([" " * width, *(f"  {name:>20}" for name in columns)])]
    for i, row in enumerate(ROWS):
        lines.append("".join([row.ljust(width), *(f"  {c[i]:>20}" for c in columns.values())]))
    return "\n".join(lines)


def _latency(w: Window) -> str:
    if not w.latencies:
        return ""
    ms = sorted(1000 * x for x in w.latencies)
    return f"; GET /healthz answered in p50 {ms[len(ms) // 2]:.0f} ms, max {ms[-1]:.0f} ms"


def _paces(w: Window, sessions: int) -> list[float]:
    """Each session's audio per wall second, from what its listeners received (1.0 = real time)."""
    return [statistics.fmean(w.rates[s::sessions]) / BYTES_PER_SECOND for s in range(sessions)]


def _window_lines(label: str, w: Window, sessions: int) -> list[str]:
    split = ", ".join(f"{k} {100 * v / w.seconds:.1f}%" for k, v in sorted(w.groups.items()))
    paces = _paces(w, sessions)
    return [
        f"{label} CPU by thread: {split}{_latency(w)}",
        f"{label} session pace (audio s per wall s, ±{0.25 / w.seconds:.2f} from 0.25 s chunks):"
        f" min {min(paces):.3f}, mean {statistics.fmean(paces):.3f}, max {max(paces):.3f};"
        f" {sum(p < SHORT_FRACTION for p in paces)} of {sessions} below {SHORT_FRACTION}",
    ]


def _loop_ms(r: Result) -> float:
    """ms of event-loop-thread CPU per added listener-second."""
    b, f = r.base, r.full
    delta = f.groups.get("loop", 0.0) / f.seconds - b.groups.get("loop", 0.0) / b.seconds
    return 1000 * delta / r.added


def _radiod_details(r: Result) -> list[str]:
    b, f = r.base, r.full
    per_session = 100 * b.cpu_rate / r.sessions
    lines = [
        f"per session (baseline / sessions): {per_session:.2f}% of a core"
        f" = {10 * per_session:.1f} ms CPU per session-second",
        f"event-loop thread alone: {_loop_ms(r):.4f} ms CPU per listener-second"
        " (free of the mixers' noise)",
    ]
    if abs(f.cpu_rate - b.cpu_rate) < 0.1 * b.cpu_rate:
        lines.append(
            "NOTE: the added listeners cost less than 10% of the mixers' CPU, so the per-listener"
            " CPU and RSS figures above are within the mixers' noise; read the event-loop one"
        )
    for label, w in (("baseline", b), ("full", f)):
        lines += _window_lines(label, w, r.sessions)
    return lines


def report(radiods: list[Result], icecast: Result | str) -> None:
    columns = {r.name: _column(r) for r in radiods}
    if isinstance(icecast, Result):
        columns["icecast2 (measured)"] = _column(icecast)
    print(_table(columns))
    for radiod in radiods:
        print(f"\n{radiod.name}:")
        for line in _radiod_details(radiod):
            print(f"  {line}")
        if isinstance(icecast, Result):
            ice = max(icecast.ms_per_listener_s, 1e-9)
            ratio_rss = radiod.kb_per_listener / max(icecast.kb_per_listener, 1e-9)
            print(
                f"  radiod / icecast: {radiod.ms_per_listener_s / ice:.2f}x CPU per"
                f" listener-second ({_loop_ms(radiod) / ice:.2f}x counting radiod's event loop"
                f" alone), {ratio_rss:.1f}x RSS per listener"
            )
    if isinstance(icecast, Result):
        if any(r.sessions > 1 for r in radiods):
            print("(icecast serves one mount: it is the fan-out reference, not a mixing one)")
    else:
        print(f"\nicecast2 not measured: {icecast}")
        print(
            "reference from DESIGN.md §7, not measured in this run: Icecast 2.4, 1,000 listeners,"
            f" ~{DESIGN_BAR['cpu_pct']:.0f}% of one core, ~{DESIGN_BAR['ms_per_listener_s']} ms"
            f" CPU per listener-second, ~{DESIGN_BAR['kb_per_listener']} kB RSS per listener"
        )
    print()
    print(targets_table(radiods, icecast))
    for result in (*radiods, icecast):
        if isinstance(result, Result) and result.notes:
            print(f"\n{result.name} log:")
            print("\n".join(f"  {note}" for note in result.notes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="steady-state window")
    parser.add_argument("--loop", choices=[*LOOPS, "both"], default="both", help="radiod's loop")
    parser.add_argument("--all", action="store_true", help=f"every scenario: {SCENARIOS}")
    parser.add_argument("--no-icecast", action="store_true", help="skip the reference")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        asyncio.run(_loadgen())
        return 0
    scenarios = SCENARIOS if args.all else [(args.listeners, args.sessions)]
    if not all(1 <= sessions < listeners for listeners, sessions in scenarios):
        parser.error("need 1 <= --sessions < --listeners")
    say(raise_nofile(max(listeners for listeners, _ in scenarios)))
    loops = LOOPS if args.loop == "both" else [args.loop]
    tmp = Path(tempfile.mkdtemp(prefix="radiod-fanout-"))
    icecast: dict[int, Result | str] = {}
    try:
        for listeners, sessions in scenarios:
            radiods = [bench_radiod(tmp, listeners, sessions, args.seconds, loop) for loop in loops]
            if listeners not in icecast:
                icecast[listeners] = "skipped (--no-icecast)"
                if not args.no_icecast:
                    where = tmp / f"icecast-{listeners}"
                    where.mkdir()
                    icecast[listeners] = bench_icecast(where, listeners, args.seconds)
            print(f"\n=== {listeners} listeners on {sessions} session(s) ===")
            report(radiods, icecast[listeners])
    finally:
        if args.keep:
            print(f"\nlogs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
