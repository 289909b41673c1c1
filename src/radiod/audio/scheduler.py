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
one for all its sessions. A step that blocks (a slow disk) delays the others' production on
the same scheduler by as long; their burst (4 s), and the second a shared scheduler's producers
make ahead (`producer.HOLD_SECONDS`), are the margin.

Delivery is not delayed with it: chunks made ahead are handed over at their time by a second,
releasing thread, which does nothing else. A new session's first step (opening files,
decoding a crossfade's worth of audio) takes hundreds of milliseconds on a loaded machine
(a worker's steps of ~4 ms of CPU took up to ~400 ms of wall time at load average 7-9);
with one thread, every other session's next chunk waited behind it. The releasing thread
runs only while some chunk is held, so an in-process mixer (which holds nothing) never
starts one.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from radiod.audio.producer import Producer


@dataclass(eq=False)
class _Role:
    """One of the scheduler's two threads: how it picks a producer and what it does to it."""

    name: str
    choose: Callable[[], Producer | None]  # waits under the lock; None: the thread ends
    work: Callable[[Producer], None]  # runs outside the lock
    thread: threading.Thread | None = None
    current: Producer | None = None  # being worked on, outside the lock


class Scheduler:
    """Steps its active producers, each `burst` seconds ahead of the wall clock."""

    def __init__(self, name: str = "radiod-mixer") -> None:
        self._cond = threading.Condition(threading.RLock())
        self._producers: list[Producer] = []
        self._stepper = _Role(name, self._next, lambda p: p.context.run(p.step))
        # A copy of the context: the stepping thread may be inside the producer's own context
        # right now, and a context can be entered by one thread at a time.
        self._releaser = _Role(
            f"{name}-release", self._next_release, lambda p: p.context.copy().run(p.release)
        )

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
        roles = (self._stepper, self._releaser)
        if threading.current_thread() in [role.thread for role in roles]:
            return  # called from a sink on one of the scheduler's own threads
        while any(role.current is producer for role in roles):
            self._cond.wait()

    def _wake(self) -> None:
        self._start(self._stepper)
        self._cond.notify_all()

    def _start(self, role: _Role) -> None:
        if role.thread is None:
            role.thread = threading.Thread(
                target=self._serve, args=(role,), name=role.name, daemon=True
            )
            role.thread.start()

    def _serve(self, role: _Role) -> None:
        while True:
            with self._cond:
                producer = role.choose()
                if producer is None:
                    role.thread = None
                    self._cond.notify_all()
                    return
                role.current = producer
            try:
                role.work(producer)
            finally:
                with self._cond:
                    role.current = None
                    if role is self._stepper and producer.release_due() < math.inf:
                        self._start(self._releaser)
                    self._cond.notify_all()

    def _next(self) -> Producer | None:
        """The producer to step now (of those due, the least `rank`), waiting until one is
        due; None when none is active."""
        while True:
            now = time.monotonic()
            active = [p for p in self._producers if p.active]
            if not active:
                return None
            ready = [p for p in active if p.due() <= now]
            if ready:
                return min(ready, key=Producer.rank)
            self._cond.wait(min(p.due() for p in active) - now)

    def _next_release(self) -> Producer | None:
        """A producer whose oldest held chunk is due, waiting until one is; None when nothing
        is held and nothing is being stepped (a step may hold more)."""
        while True:
            when = math.inf
            for producer in self._producers:
                if producer.release_due() <= time.monotonic():
                    return producer
                when = min(when, producer.release_due())
            if when == math.inf and self._stepper.thread is None:
                return None
            self._cond.wait(None if when == math.inf else when - time.monotonic())
