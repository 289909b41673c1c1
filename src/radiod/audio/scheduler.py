"""`Scheduler`: one thread that steps many `Producer`s, earliest deadline first.

Why one thread for many sessions: in a worker process, a thread per session would queue
every Python step of every mixer for the one GIL (DESIGN §7: one encoder fell from 27x to
2.8x realtime beside one busy thread). One thread stepping them in turn has no such
contention, and its order is a policy we choose rather than the GIL's: the producer with the
least audio in hand (the earliest `Producer.due`) goes first. That is fair at start-up for
free: fifty sessions started together each get a first chunk before any gets a second, so
no session's listener waits for another's whole burst.

The thread exists only while some producer is active and ends when none is, so an idle
scheduler holds no thread and needs no closing. The in-process mode gives each session a
scheduler of its own (a thread per session, as radiod always had); a worker process runs
one for all its sessions. A step that blocks (a slow disk) delays the others on the same
scheduler by as long; their burst (4 s) is the margin.
"""

from __future__ import annotations

import contextvars
import threading
import time

from radiod.audio.producer import Producer


class Scheduler:
    """Steps its active producers, each `burst` seconds ahead of the wall clock."""

    def __init__(self, name: str = "radiod-mixer") -> None:
        self._name = name
        self._cond = threading.Condition(threading.RLock())
        self._producers: list[Producer] = []
        self._current: Producer | None = None  # being stepped, outside the lock
        self._thread: threading.Thread | None = None

    def held(self) -> threading.Condition:
        """`with scheduler.held():` no step is chosen until the block ends, so several
        starts made in it are seen together (reentrant: the methods below may be called)."""
        return self._cond

    def add(self, producer: Producer) -> None:
        with self._cond:
            self._producers.append(producer)

    def start(self, producer: Producer) -> bool:
        """Start (or resume, with a fresh burst) `producer`; False if it failed for good.

        The caller's contextvars (the session's `session_id`) go with every step."""
        with self._cond:
            if producer.failed:
                return False
            if not producer.running:
                producer.start(contextvars.copy_context())
            self._wake()
        return True

    def prime(self, producer: Producer) -> None:
        """Have `producer` make its header and first chunk now, without starting it."""
        with self._cond:
            producer.prime(contextvars.copy_context())
            self._wake()

    def stop(self, producer: Producer) -> bool:
        """Stop stepping `producer` and hand over what it holds; waits for a step under way.
        Whether it was running."""
        with self._cond:
            self._wait_idle(producer)
            was_running = producer.running
            producer.running = False
            producer.context.run(producer.flush)
            return was_running

    def remove(self, producer: Producer) -> None:
        """Forget `producer` and release its pipeline (after any step under way)."""
        with self._cond:
            self._wait_idle(producer)
            producer.running = False
            if producer in self._producers:
                self._producers.remove(producer)
        producer.close()

    def _wait_idle(self, producer: Producer) -> None:
        if threading.current_thread() is self._thread:
            return  # called from a sink on the scheduler's own thread
        while self._current is producer:
            self._cond.wait()

    def _wake(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _next(self) -> tuple[Producer, bool] | None:
        """What to do now, waiting until something is due: (producer, whether to release its
        held chunks rather than make one); None when nothing is active or held."""
        while True:
            chosen: tuple[Producer, bool] | None = None
            when = float("inf")
            for producer in self._producers:
                if producer.release_due() <= when:  # releases first: they cost nothing
                    chosen, when = (producer, True), producer.release_due()
                if producer.active and producer.due() < when:
                    chosen, when = (producer, False), producer.due()
            if chosen is None or when == float("inf"):
                return None
            wait = when - time.monotonic()
            if wait <= 0:
                return chosen
            self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            with self._cond:
                chosen = self._next()
                if chosen is None:
                    self._thread = None
                    self._cond.notify_all()
                    return
                producer, release = chosen
                self._current = producer
            try:
                producer.context.run(producer.release if release else producer.step)
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()
