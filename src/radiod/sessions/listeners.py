"""A session's audio listeners, and the rule for resuming a dropped connection byte-exactly.

Chromium re-requests a dropped `/stream` with `Range: bytes=N-`. When N is exactly where
that listener's last connection left off, and the ring still holds what follows, the new
connection continues the old one with nothing heard twice. `Listeners` keeps where each
connection that ended left off; `Session.attach_listener` asks it for the point to resume.
"""

from __future__ import annotations

from dataclasses import dataclass

from radiod.sessions.ids import new_token

# Dropped connections per session that can still be resumed byte-exactly.
RESUME_POINTS_LIMIT = 32


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a dropped `/stream` connection left off, so its re-request can continue it."""

    bytes_sent: int
    last_seq: int
    stream_start: float | None


class Listener:
    """One `/stream` response attached to a session.

    `id` is the name the page chose (`?listener=`): it is echoed in `listener` events and
    selects a resume point, nothing more, since any client may send any name.
    `connection_id` is made here, one per response, and keys a session's listeners, so two
    connections that share a name never remove each other.

    Its counters are read-only: the handler reports what it wrote (`sent`, `count_from`)
    and the session places it in the stream (`start`, `resume`), so what a later
    connection resumes is decided from these calls alone.
    """

    __slots__ = (
        "_bytes_sent",
        "_last_seq",
        "_resumed",
        "_stream_start",
        "client_id",
        "connection_id",
        "id",
    )

    def __init__(self, listener_id: str, client_id: str) -> None:
        self.id = listener_id
        self.client_id = client_id
        self.connection_id = new_token()
        self._stream_start: float | None = None
        self._bytes_sent = 0
        self._last_seq: int | None = None  # the last chunk written, to resume a drop
        self._resumed = False

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent

    @property
    def last_seq(self) -> int | None:
        return self._last_seq

    @property
    def stream_start(self) -> float | None:
        """The stream time of its first byte (None until it got one)."""
        return self._stream_start

    @property
    def resumed(self) -> bool:
        """True when this connection continues a dropped one (see `Listeners.resume_point`)."""
        return self._resumed

    def sent(self, count: int, last_seq: int | None = None) -> None:
        """`count` more bytes were written, through chunk `last_seq`.

        A probe (a bounded Range) passes no `last_seq`: it is not a listener, and nothing
        of it is resumed.
        """
        self._bytes_sent += count
        if last_seq is not None:
            self._last_seq = last_seq

    def count_from(self, offset: int) -> None:
        """Count bytes from `offset`: a 206 from the live point answers `bytes=offset-`, so
        a later drop of this connection can be resumed in turn."""
        self._bytes_sent = offset

    def start(self, stream_start: float) -> None:
        self._stream_start = stream_start

    def resume(self, point: ResumePoint) -> None:
        """Continue a dropped connection: its byte count, last chunk and clock."""
        self._bytes_sent, self._last_seq = point.bytes_sent, point.last_seq
        self._stream_start = point.stream_start
        self._resumed = True


class Listeners:
    """A session's listeners by connection, and where the ones that ended left off."""

    def __init__(self) -> None:
        self._by_connection: dict[str, Listener] = {}
        self._resume_points: dict[str, ResumePoint] = {}  # by listener id

    def __len__(self) -> int:
        return len(self._by_connection)

    def add(self, listener: Listener) -> None:
        self._by_connection[listener.connection_id] = listener

    def remove(self, listener: Listener) -> bool:
        """Forget a connection, keeping where it left off; False if it was gone already."""
        if listener.last_seq is not None:
            self._resume_points[listener.id] = ResumePoint(
                listener.bytes_sent, listener.last_seq, listener.stream_start
            )
            while len(self._resume_points) > RESUME_POINTS_LIMIT:
                self._resume_points.pop(next(iter(self._resume_points)))
        return self._by_connection.pop(listener.connection_id, None) is not None

    def resume_point(self, listener_id: str, resume_at: int) -> ResumePoint | None:
        """Where a re-request from byte `resume_at` continues, if exactly where it left off.

        The point is used up either way: a connection that did not resume starts afresh.
        """
        point = self._resume_points.pop(listener_id, None)
        if resume_at and point is not None and point.bytes_sent == resume_at:
            return point
        return None

    def named(self, listener_id: str | None) -> list[Listener]:
        """The connections of the listener named `listener_id`; all of them for None."""
        return [x for x in self._by_connection.values() if listener_id in (None, x.id)]

    def has_client(self, client_id: str) -> bool:
        return any(x.client_id == client_id for x in self._by_connection.values())
