"""Prometheus metrics of one application: what an operator graphs and alerts on.

Every app has its own `CollectorRegistry`, never prometheus-client's global one, so several
apps in one process (the tests) count apart. The figures come from three places:

- gauges are read at scrape time from the sessions themselves, so nothing is kept in step;
- counters are fed by the part that sees the event: a mixer through a `WorkerStats` (the
  `audio/stats.py` `MixerStats`), the ring when it skips a slow reader, the write policy when it
  drops a client, the page's health reports;
- HTTP responses are counted when they start (`count_response`), by the route's canonical
  path, never the raw URL, so a client cannot mint label values.

Mixers report under a `worker` label: "inline" for the mixer threads of this process. A
mixer worker process feeds its figures through `Metrics.worker(name)` the same way, so its
encode speed shows beside the others'.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

INLINE_WORKER = "inline"
# The encode speed gauge covers this much recent production: long enough to hold several
# chunks of every running mixer, short enough to show a machine getting busy.
SPEED_WINDOW_SECONDS = 30
# Route label of a request no route matched (404, 405): one value, whatever the URL was.
UNMATCHED_ROUTE = "unmatched"
# The route whose answers are also counted by status on their own.
CREATE_SESSION_ROUTE = "/create-session"


class CountedSession(Protocol):
    """What the session gauges read from a session."""

    @property
    def listener_count(self) -> int: ...

    @property
    def event_client_count(self) -> int: ...


class _SpeedWindow:
    """Audio produced and time spent producing it, per second, over the last window.

    Called from mixer threads (and, for a worker process, from whoever relays its figures);
    read by a scrape on the event loop: hence the lock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seconds: deque[list[float]] = deque()  # [second, audio, busy]

    def add(self, audio_seconds: float, busy_seconds: float) -> None:
        second = float(int(self._clock()))
        with self._lock:
            if self._seconds and self._seconds[-1][0] == second:
                entry = self._seconds[-1]
                entry[1] += audio_seconds
                entry[2] += busy_seconds
            else:
                self._seconds.append([second, audio_seconds, busy_seconds])
            self._forget(second)

    def realtime_factor(self) -> float | None:
        """Seconds of audio made per second of work in the window; None without work."""
        with self._lock:
            self._forget(float(int(self._clock())))
            audio = sum(entry[1] for entry in self._seconds)
            busy = sum(entry[2] for entry in self._seconds)
        return audio / busy if busy > 0 else None

    def _forget(self, now: float) -> None:
        while self._seconds and self._seconds[0][0] <= now - SPEED_WINDOW_SECONDS:
            self._seconds.popleft()


class WorkerStats:
    """The `MixerStats` (audio/stats.py) for every mixer of one worker (thread-safe).

    Args:
        metrics: the app's metrics.
        worker: the label its figures carry ("inline" for this process's threads).
    """

    def __init__(self, metrics: Metrics, worker: str) -> None:
        self._chunks = metrics.chunks.labels(worker)
        self._audio = metrics.encode_audio.labels(worker)
        self._busy = metrics.encode_busy.labels(worker)
        self._underruns = metrics.underruns.labels(worker)
        self._pipeline_failed = metrics.mixer_crashes.labels(worker, "pipeline_failed")
        self._session_failed = metrics.mixer_crashes.labels(worker, "session_failed")
        self._track_failures = metrics.track_failures.labels(worker)
        self.speed = _SpeedWindow()

    def chunk_produced(self, audio_seconds: float, busy_seconds: float, chunks: int = 1) -> None:
        """`chunks` chunks of `audio_seconds` in all took `busy_seconds` of wall time."""
        self._chunks.inc(chunks)
        self._audio.inc(audio_seconds)
        self._busy.inc(busy_seconds)
        self.speed.add(audio_seconds, busy_seconds)

    def underrun(self) -> None:
        self._underruns.inc()

    def pipeline_failed(self) -> None:
        self._pipeline_failed.inc()

    def mixer_failed(self) -> None:
        self._session_failed.inc()

    def tracks_failed(self, count: int) -> None:
        self._track_failures.inc(count)


class _LiveFigures(Collector):
    """Gauges computed at scrape time: sessions, their clients, and each worker's speed."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        sessions = self._metrics.sessions()
        yield GaugeMetricFamily("radiod_sessions", "Sessions alive.", value=len(sessions))
        yield GaugeMetricFamily(
            "radiod_listeners",
            "Open /stream connections, every session.",
            value=sum(s.listener_count for s in sessions),
        )
        yield GaugeMetricFamily(
            "radiod_event_clients",
            "Open /events connections, every session.",
            value=sum(s.event_client_count for s in sessions),
        )
        speed = GaugeMetricFamily(
            "radiod_encode_realtime_factor",
            f"Seconds of audio produced per second of mixer work, last {SPEED_WINDOW_SECONDS} s.",
            labels=["worker"],
        )
        for worker, stats in self._metrics.workers().items():
            factor = stats.speed.realtime_factor()
            if factor is not None:
                speed.add_metric([worker], factor)
        yield speed


class Metrics:
    """One application's metrics: a registry of its own and the counters fed into it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._workers: dict[str, WorkerStats] = {}
        self._workers_lock = threading.Lock()
        self._sessions: Callable[[], Sequence[CountedSession]] = list
        counter = self._counter
        self.chunks = counter("radiod_chunks_produced", "Audio chunks encoded.", "worker")
        self.encode_audio = counter(
            "radiod_encode_audio_seconds", "Seconds of audio encoded.", "worker"
        )
        self.encode_busy = counter(
            "radiod_encode_busy_seconds", "Wall seconds mixers spent producing audio.", "worker"
        )
        self.underruns = counter(
            "radiod_mixer_underruns",
            "A mixer fell behind the wall clock, so its listeners ran dry.",
            "worker",
        )
        self.mixer_crashes = counter(
            "radiod_mixer_crashes",
            "Mixer failures: pipeline_failed (rebuilt), session_failed (the session ended).",
            "worker",
            "kind",
        )
        self.track_failures = counter(
            "radiod_track_failures", "Tracks that could not be played.", "worker"
        )
        self.reader_skips = counter(
            "radiod_listener_skips", "Slow listeners skipped forward to the live point."
        )
        self.skipped_audio = counter(
            "radiod_listener_skipped_seconds", "Audio slow listeners were skipped past."
        )
        self.drops = counter(
            "radiod_slow_client_drops", "Clients dropped for taking no data.", "channel"
        )
        self.create_session = counter(
            "radiod_create_session_responses", "POST /create-session answers.", "status"
        )
        self.http = counter("radiod_http_responses", "HTTP responses.", "route", "status")
        self.client_reports = counter(
            "radiod_client_reports", "Health reports the pages sent, accepted.", "kind"
        )
        self.client_restarts = counter(
            "radiod_client_restarts", "Full restarts the pages reported.", "reason"
        )
        self.client_stalled = counter(
            "radiod_client_stall_seconds", "Buffering the pages reported, seconds."
        )
        self.client_refused = counter(
            "radiod_client_reports_refused", "Health reports refused.", "reason"
        )
        self.registry.register(_LiveFigures(self))

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def count_sessions(self, sessions: Callable[[], Sequence[CountedSession]]) -> None:
        """Where the session gauges read from (the session registry, once it exists)."""
        self._sessions = sessions

    def sessions(self) -> Sequence[CountedSession]:
        return self._sessions()

    def worker(self, name: str = INLINE_WORKER) -> WorkerStats:
        """The stats every mixer of worker `name` reports to (one object per worker)."""
        with self._workers_lock:
            stats = self._workers.get(name)
            if stats is None:
                stats = self._workers[name] = WorkerStats(self, name)
            return stats

    def workers(self) -> dict[str, WorkerStats]:
        with self._workers_lock:
            return dict(self._workers)

    def listener_skipped(self, seconds: float) -> None:
        """The ring moved a slow reader to the live point past `seconds` of audio."""
        self.reader_skips.inc()
        self.skipped_audio.inc(seconds)

    def client_dropped(self, channel: str) -> None:
        """A client that took nothing for the write timeout was dropped (`audio`, `events`)."""
        self.drops.labels(channel).inc()


METRICS = web.AppKey("metrics", Metrics)


def route_label(request: web.Request) -> str:
    """The route's canonical path (`/sessions/{session_id}`), never the URL a client chose."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


async def count_response(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: count every response when its status goes out.

    A signal rather than a middleware: a stream's status is sent hours before its handler
    returns, and responses aiohttp makes itself (an unhandled error) are counted too.
    """
    metrics = request.app[METRICS]
    route, status = route_label(request), str(response.status)
    metrics.http.labels(route, status).inc()
    if route == CREATE_SESSION_ROUTE:
        metrics.create_session.labels(status).inc()
