"""The player page through a real nginx in front of two radiod instances: one session on both
channels, the cookie fallback across the proxy, and a killed instance's page restarting onto
the other instance within the page's dead-audio rule (12 s) plus its backoff."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from radiod.cluster.proxy import Upstream
from tests.e2e.conftest import RadiodServer
from tests.reliability.proxy import SECRET, Nginx

pytestmark = pytest.mark.e2e

# health.dead_after_ms (12 s) plus the first restart's backoff (immediate) and one retry (1 s).
RESTART_LIMIT_SECONDS = 12.0 + 1.0


@dataclass
class Front:
    """The proxy, standing where the page expects a server (`url`, `post`)."""

    nginx: Nginx
    servers: dict[str, RadiodServer]

    @property
    def url(self) -> str:
        return self.nginx.url + "/"

    def node_of(self, session_id: str) -> str:
        return session_id.split("_")[1]


@pytest.fixture
def front(radiod: Any, tmp_path: Any) -> Iterator[Front]:
    servers = {
        node: radiod(server={"node": node, "secret": SECRET, "trusted_proxies": ["127.0.0.1"]})
        for node in ("node-a", "node-b")
    }
    upstreams = [Upstream(node, "127.0.0.1", s.port) for node, s in servers.items()]
    nginx = Nginx(tmp_path / "nginx", upstreams)
    try:
        nginx.wait_listening()
        yield Front(nginx, servers)
    finally:
        nginx.stop()


def _attached(server: RadiodServer, session_id: str) -> set[str]:
    """The client ids with a channel on `session_id`, per the server's log."""
    lines = server.log.events("stream.connected", session_id=session_id)
    lines += server.log.events("events.connected", session_id=session_id)
    return {line["client_id"] for line in lines}


def test_the_page_plays_through_the_proxy_and_moves_when_its_instance_is_killed(
    front: Front, open_player: Any, metrics: Any
) -> None:
    player = open_player(front).open()
    player.console.allow_network_errors()  # the killed instance's requests fail on purpose
    player.press_play()
    state = player.wait_playing(seconds=3.0)
    session_id = state["sessionId"]
    home = front.node_of(session_id)
    other = next(node for node in front.servers if node != home)

    # One session on both channels, on the instance its ID names, and nowhere else.
    server = front.servers[home]
    server.log.wait_for("stream.connected", session_id=session_id)
    server.log.wait_for("events.connected", session_id=session_id)
    assert len(_attached(server, session_id)) == 1
    assert not front.servers[other].log.events("stream.connected")
    # The cookie fallback across the proxy: no ?session=, the signed cookie routes and names.
    fallback = player.page.evaluate(
        """() => new Promise((resolve, reject) => {
             const source = new EventSource('/events');
             source.onmessage = (m) => { source.close(); resolve(JSON.parse(m.data)); };
             source.onerror = () => { source.close(); reject(new Error('no events')); };
           })"""
    )
    assert fallback == {"type": "connected", "sessionId": session_id}

    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)
    killed = time.time()
    state = player.wait(
        "(old) => { const s = window.radiod.state;"
        " return s.sessionId && s.sessionId !== old && s.audioStatus === 'connected'"
        " && s.currentTime > 1 && s }",
        timeout=60,
        arg=session_id,
    )
    new_session = state["sessionId"]
    assert front.node_of(new_session) == other
    restart = player.reached("page", "restart", killed)
    back = player.wait_playing(seconds=2.0)
    playing_again = time.time() - killed
    restart_after = restart["at"] / 1000 - killed
    metrics(
        restart_after_s=restart_after,
        playing_again_s=playing_again,
        reason=restart.get("reason", ""),
    )
    assert restart_after <= RESTART_LIMIT_SECONDS
    assert back["sessionId"] == new_session
    survivor = front.servers[other]
    survivor.log.wait_for("stream.connected", session_id=new_session)
    survivor.log.wait_for("events.connected", session_id=new_session)
    player.screenshot("cluster-moved.png")
