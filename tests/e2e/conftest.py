"""Browser end-to-end fixtures: a real radiod server, its JSON log, and Debian's Chromium.

Every test starts its own `python -m radiod serve` subprocess on a free loopback port
(`radiod(**overrides)`), reads the server's JSON log as it grows (`server.log`), and drives
the player page in a fresh Chromium context (`open_player(server)`). The page's console is
captured: any JS console error or uncaught exception fails the test (and the console is
printed when a test fails, or always with RADIOD_E2E_CONSOLE=1). Network errors that
Chromium prints to the console ("Failed to load resource: …") fail it too, unless the
test says it causes them on purpose (`player.console.allow_network_errors()`).

Playwright's sync API is used from plain (sync) tests, which pytest-asyncio's auto mode
leaves alone; no asyncio loop runs while they do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
# Demo tracks this long: a minute of playback crosses a few track changes.
DEMO_TRACK_SECONDS = 20.0
SERVER_START_TIMEOUT = 60.0
# The machine is shared and has two cores: bounds are generous, waits are on conditions.
DEFAULT_WAIT = 30.0


# -- the server's JSON log -------------------------------------------------------------


class ServerLog:
    """The JSON lines a server (or several, in turn) appended to one file, read as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    def refresh(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return self.lines
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "<not json>", "raw": raw.decode(errors="replace")}
            self.lines.append(line)
        return self.lines

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Lines with this `event` name whose fields equal `match`."""
        return [
            line
            for line in self.refresh()
            if (event is None or line.get("event") == event)
            and all(line.get(k) == v for k, v in match.items())
        ]

    @staticmethod
    def time_of(line: dict[str, Any]) -> float:
        """A line's `ts` (ISO-8601 UTC) as epoch seconds, comparable with time.time()."""
        return datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()

    def wait_for(
        self, event: str, *, count: int = 1, timeout: float = DEFAULT_WAIT, **match: Any
    ) -> list[dict[str, Any]]:
        """Block until `count` matching lines exist; fail with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(event, **match)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                tail = "\n".join(json.dumps(line) for line in self.lines[-25:])
                raise AssertionError(
                    f"server log: wanted {count}x {event} {match} within {timeout}s, "
                    f"found {len(found)}; last lines:\n{tail}"
                )
            time.sleep(0.1)


# -- the server process -------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])  # a JSON array of strings is valid TOML
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in table.items()) + "\n"
        for name, table in sections.items()
    )
    tomllib.loads(text)  # fail here, not in the server, if the writer is wrong
    path.write_text(text)


@dataclass
class RadiodServer:
    """One `python -m radiod serve` subprocess (restartable on the same port)."""

    workdir: Path
    sections: dict[str, dict[str, Any]]
    log: ServerLog = field(init=False)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.sections.setdefault("log", {})["file"] = str(self.log_path)
        self.log = ServerLog(self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> RadiodServer:
        sections = {k: dict(v) for k, v in self.sections.items()}
        sections.setdefault("server", {})["port"] = self.port  # 0 the first time: any free port
        config = self.workdir / "config.toml"
        write_config(config, sections)
        self._stderr = self._stderr_path(self.starts).open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "radiod", "serve", "--config", str(config)],
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.starts += 1
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            started = self.log.events("server.started")
            if len(started) >= self.starts:
                self.port = int(started[-1]["port"])
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = self._stderr_path(self.starts - 1).read_text(errors="replace")
                raise RuntimeError(f"radiod did not start:\n{output[-3000:]}")
            time.sleep(0.05)

    def _stderr_path(self, n: int) -> Path:
        return self.workdir / f"stderr-{n}.txt"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful: streams and SSE end cleanly), then SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._stderr.close()

    def restart(self) -> RadiodServer:
        """Stop and start again on the same port (the sessions are gone, the address is not)."""
        self.stop()
        return self.start()

    def audit(self) -> dict[str, Any]:
        """`radiod audit --json` over this server's log: exit 0 (clean) or 1 (splits found)."""
        result = subprocess.run(
            [sys.executable, "-m", "radiod", "audit", "--json", str(self.log_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        assert (result.returncode == 0) == report["clean"]
        return report

    def post(self, path: str) -> dict[str, Any]:
        """POST to the server (fault hooks, controls) and return its JSON answer."""
        import urllib.request

        request = urllib.request.Request(self.url.rstrip("/") + path, method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")


@pytest.fixture(scope="session")
def e2e_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from radiod.demo import generate_demo_library

    dest = tmp_path_factory.mktemp("demo-library")
    generate_demo_library(dest, seconds=DEMO_TRACK_SECONDS)
    return dest


def _merge(base: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]]) -> None:
    for section, table in overrides.items():
        base.setdefault(section, {}).update(table)


@pytest.fixture
def radiod(
    tmp_path: Path, e2e_library: Path, loudness_cache: Path
) -> Iterator[Callable[..., RadiodServer]]:
    """Factory: `radiod(session={"idle_timeout_seconds": 5})` starts a server with overrides."""
    servers: list[RadiodServer] = []

    def start(**overrides: dict[str, Any]) -> RadiodServer:
        sections: dict[str, dict[str, Any]] = {
            "server": {"host": "127.0.0.1", "port": 0},
            "library": {"path": str(e2e_library)},
            "audio": {"loudness_cache": str(loudness_cache)},
            "log": {"format": "json", "level": "info"},
            "testing": {"fault_hooks": True},
        }
        _merge(sections, overrides)
        server = RadiodServer(tmp_path / f"server-{len(servers)}", sections)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
    # Whatever a test did to the page, the logs must never show a split session.
    for server in servers:
        report = server.audit()
        summary = report["summary"]
        print(
            f"\n[e2e-audit] clean={report['clean']} sessions={summary['sessions']}"
            f" restarts={summary['restarts']} untagged={summary['untagged']}"
            f" orphans={summary['sessions_without_audio']}+{summary['events_without_audio']}"
        )
        assert report["clean"], f"radiod audit found split sessions in {server.log_path}"


# -- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Console:
    """What the page printed. `errors` fail the test; network errors only when not allowed."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    network_errors: list[str] = field(default_factory=list)
    network_errors_allowed: bool = False

    def allow_network_errors(self) -> None:
        """This test breaks the network on purpose; Chromium's "Failed to load resource" is fine."""
        self.network_errors_allowed = True

    def on_message(self, message: Any) -> None:
        self.lines.append(f"{time.time():.3f} {message.type}: {message.text}")
        if message.type == "error":
            if message.text.startswith("Failed to load resource"):
                self.network_errors.append(message.text)
            else:
                self.errors.append(message.text)

    def on_page_error(self, error: Any) -> None:
        self.lines.append(f"{time.time():.3f} pageerror: {error}")
        self.errors.append(f"uncaught: {error}")

    def problems(self) -> list[str]:
        return self.errors + ([] if self.network_errors_allowed else self.network_errors)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@dataclass
class HttpRequest:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int | None = None


class Player:
    """The player page in its own browser context, with its console and network log."""

    def __init__(self, context: Any, server: RadiodServer) -> None:
        self.context = context
        self.server = server
        self.page = context.new_page()
        self.console = Console()
        self.requests: list[HttpRequest] = []
        self.loads = 0
        self._by_request: dict[Any, HttpRequest] = {}
        self.page.on("console", self.console.on_message)
        self.page.on("pageerror", self.console.on_page_error)
        self.page.on("load", self._on_load)
        self.page.on("request", self._on_request)
        self.page.on("response", self._on_response)

    def _on_load(self, _page: Any) -> None:
        self.loads += 1

    def _on_request(self, request: Any) -> None:
        url = urlsplit(request.url)
        record = HttpRequest(
            at=time.time(),
            method=request.method,
            path=url.path,
            query={k: v[0] for k, v in parse_qs(url.query).items()},
            headers=dict(request.headers),
        )
        self.requests.append(record)
        self._by_request[request] = record

    def _on_response(self, response: Any) -> None:
        record = self._by_request.get(response.request)
        if record is not None:
            record.status = response.status

    # -- driving the page ------------------------------------------------------------------
    def open(self) -> Player:
        self.page.goto(self.server.url)
        self.wait("window.radiod && window.radiod.state.sseStatus === 'connected'")
        return self

    def reload(self) -> None:
        self.page.reload()
        self.wait("window.radiod && window.radiod.state.sseStatus === 'connected'")

    def press_play(self) -> float:
        """Press play like a user (the button) and return when, in epoch seconds."""
        clicked = time.time()
        self.page.click("#btn-play")
        return clicked

    def wait(self, expression: str, timeout: float = DEFAULT_WAIT, arg: Any = None) -> Any:
        """Wait until a JS expression (or `arg => …` function) is truthy in the page."""
        handle = self.page.wait_for_function(
            expression, arg=arg, timeout=timeout * 1000, polling=100
        )
        return handle.json_value()

    def wait_playing(self, seconds: float = 1.0, timeout: float = DEFAULT_WAIT) -> dict[str, Any]:
        """Wait until currentTime has advanced by `seconds` from now on the current source."""
        start = self.page.evaluate("document.getElementById('audio').currentTime")
        self.wait(
            "([start, s]) => { const st = window.radiod.state;"
            " return st.audioStatus === 'connected' && st.currentTime >= start + s; }",
            timeout=timeout,
            arg=[start, seconds],
        )
        return self.state()

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("window.radiod.state")

    def debug(self, name: str) -> list[dict[str, Any]]:
        """`history`, `switches`, `waits` or `anchors` from window.radiod."""
        return self.page.evaluate(f"window.radiod.{name}")

    def reached(self, channel: str, status: str, after: float) -> dict[str, Any]:
        """The first `window.radiod.history` entry of `channel` reaching `status` at or after
        `after` (epoch seconds); entries carry `at` in the page's Date.now() milliseconds."""
        history = self.debug("history")
        for entry in history:
            if (entry["channel"], entry["status"]) == (channel, status) and (
                entry["at"] >= after * 1000
            ):
                return entry
        raise AssertionError(f"{channel} never became {status!r} after {after}: {history}")

    def http(self, path: str) -> list[HttpRequest]:
        return [r for r in self.requests if r.path == path]

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path))
        return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def open_player(browser: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., Player]]:
    """Factory: `open_player(server)` opens the page with fresh storage (nothing cached)."""
    players: list[Player] = []

    def open_(server: RadiodServer, *, viewport: dict[str, int] | None = None) -> Player:
        context = browser.new_context(viewport=viewport or {"width": 1100, "height": 820})
        player = Player(context, server)
        players.append(player)
        return player

    yield open_

    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    problems: list[str] = []
    for n, player in enumerate(players):
        if failed or os.environ.get("RADIOD_E2E_CONSOLE"):
            if failed:
                try:
                    player.screenshot(f"{request.node.name}-{n}-failure.png")
                except Exception as exc:  # the page may be what broke
                    print(f"(no screenshot: {exc})")
            print(f"--- console of page {n} ---")
            print("\n".join(player.console.lines[-80:]))
        problems += player.console.problems()
        player.context.close()
    if problems:
        pytest.fail("the page logged console errors:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def metrics(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Print measured numbers (visible with -s) and keep them in artifacts/metrics.jsonl."""

    def record(**values: Any) -> None:
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}
        print(f"\n[e2e] {request.node.name}: " + ", ".join(f"{k}={v}" for k, v in rounded.items()))
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps({"test": request.node.name, "at": time.time(), **rounded}) + "\n")

    return record
