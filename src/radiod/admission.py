"""Admission control: admit a new session only if the process can still encode it in real time.

`max_sessions` bounds memory, not CPU: on the 2-core development machine mixer threads fell
behind real time at 30 sessions with the bundled LAME (DESIGN §8) and hold ~50 with the
system's, both below the default of 100, and what a machine holds changes with the codec,
the bitrate and whatever else runs on it. So before a session is created the server asks
`Admission` whether one more fits:

- **Measured load.** A sampler reads the process's CPU time (`time.process_time()`: every
  thread, mixers and the event loop) every `SAMPLE_SECONDS` and keeps `WINDOW_SECONDS` of
  samples; the load is CPU seconds per wall second over that window, in cores. It includes
  what the mixers really cost at this bitrate and codec, on this machine, with these
  listeners, and nothing has to be estimated from a benchmark.
- **Reservations.** A session's cost shows in that window only once its mixer has been
  running for the whole window. A storm creates hundreds of sessions before any mixer has
  produced a byte, so every session not yet *settled* (mixer running throughout the window)
  reserves a per-session cost: the measured cost of a settled session (CPU over settled
  mixers, once there are `MEASURED_MIN_SESSIONS`), never less than `SESSION_COST_ESTIMATE`.
  Counted, not tracked per session: `settled` is the least number of running mixers seen in
  the window.
- **Budget.** `session.max_encoder_load` (cores). Mixers are threads of one process, so the
  budget is not simply the number of cores: PyAV releases the GIL while encoding, but every
  Python step of every mixer and of the event loop queues for the one GIL: measured on 2
  cores, mixer threads underran at 1.5 cores of process CPU (DESIGN §8), while 47 sessions
  held real time at 0.70. The default of 1.0 keeps the process on the safe side of that
  wall; raise it with worker processes or on a machine measured to hold more.
- **Lateness.** CPU seconds cannot see every overload: on a shared machine the process may get
  less than its budget, and then mixers fall behind real time at a low measured load. So
  each running mixer's lead (stream time produced minus the wall clock) is sampled too; a
  lead more than `LAG_LIMIT_SECONDS` below its best in the window means the mixer is late,
  and no session is admitted until a whole window passed with every mixer on time.
- **Start pace.** A mixer's first seconds cost far more than its steady state: it encodes its
  4 s burst as fast as it can, and while it does, every other mixer waits for the GIL. The
  window cannot see that coming, so at most `STARTS_PER_WINDOW` sessions are admitted per
  `START_WINDOW_SECONDS`. Measured here (tests/reliability/test_storm.py): 15 sessions
  started within 2 s beside two playing ones delayed those by 0.3-0.75 s; 5 a second, none;
  3 a second keeps a margin.

A session is admitted when no mixer is late, the start pace allows it and
`load + (unsettled + 1) * cost <= budget`; otherwise `OverloadedError`, answered `503` with
`Retry-After`. Sessions that are never played keep their reservation until they are reaped:
a listener may attach any time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

SAMPLE_SECONDS = 0.25
# Long enough to average out a mixer's 4 s start-up burst and the 0.25 s chunk cadence, short
# enough that a storm's sessions count as measured a few seconds after they started.
WINDOW_SECONDS = 5.0
# Cores reserved for a session whose cost is not measured yet. Measured 2026-12-01 on the
# 2-core machine: 47 MP3 128 kb/s sessions (system libmp3lame), one listener each, at 0.70
# cores without a gap, ~0.015 a session; twice that errs on the side of refusing.
SESSION_COST_ESTIMATE = 0.03
# Below this many settled mixers, the process's own base load (event loop, logging) would
# dominate CPU per mixer: the estimate is used instead.
MEASURED_MIN_SESSIONS = 5
# A mixer's lead drops by one chunk (0.25 s) between its chunks; this much more is lateness.
LAG_LIMIT_SECONDS = 0.5
START_WINDOW_SECONDS = 1.0
STARTS_PER_WINDOW = 3


class Paced(Protocol):
    """What admission reads of a mixer (`radiod.audio.runner.Mixer`)."""

    @property
    def running(self) -> bool: ...

    @property
    def stream_time(self) -> float: ...


class OverloadedError(Exception):
    """One more session would not be encoded in real time; try again after `retry_after`.

    Attributes:
        reason: `late` (a mixer is behind), `starting` (the start pace) or `load` (the budget).
        figures: what the decision was made on, for the log line.
    """

    def __init__(self, reason: str, retry_after: int, **figures: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.figures = figures


@dataclass(frozen=True, slots=True)
class LoadSample:
    """The process's CPU seconds and running mixers at one moment."""

    t: float
    cpu: float
    running: int


@dataclass(frozen=True, slots=True)
class Load:
    """What the window measured.

    Attributes:
        cores: CPU seconds per wall second over the window.
        settled: mixers that ran throughout the window (their cost is inside `cores`).
        per_session: the cost reserved for each session not yet settled.
    """

    cores: float
    settled: int
    per_session: float


class Admission:
    """Decides whether one more session can be encoded in real time.

    Args:
        budget: `session.max_encoder_load` in cores; 0 turns admission control off.
        mixers: every session's mixer, now.
        cpu_clock: the process's CPU seconds (all threads).
    """

    def __init__(
        self,
        budget: float,
        mixers: Callable[[], Iterable[Paced]],
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.budget = budget
        self._mixers = mixers
        self._cpu_clock = cpu_clock
        self._samples: deque[LoadSample] = deque()
        # Each running mixer's (time, lead) samples in the window; a stopped one is forgotten,
        # so its fresh burst after a restart is not mistaken for its pace.
        self._leads: dict[Paced, deque[tuple[float, float]]] = {}
        self._late_at = -math.inf  # when a mixer was last seen late, and by how much
        self._late_by = 0.0
        self._starts: deque[float] = deque()
        self.sample()

    def sample(self) -> None:
        """Record CPU, running mixers and their leads now; forget what left the window."""
        now = time.monotonic()
        horizon = now - WINDOW_SECONDS
        leads: dict[Paced, deque[tuple[float, float]]] = {}
        lag = 0.0
        for mixer in self._mixers():
            if not mixer.running:
                continue
            history = leads[mixer] = self._leads.get(mixer) or deque()
            lead = mixer.stream_time - now
            history.append((now, lead))
            while history[0][0] < horizon:
                history.popleft()
            lag = max(lag, max(best for _, best in history) - lead)
        self._leads = leads
        if lag > LAG_LIMIT_SECONDS:
            self._late_at, self._late_by = now, lag
        self._samples.append(LoadSample(now, self._cpu_clock(), len(leads)))
        while len(self._samples) > 2 and self._samples[1].t <= horizon:
            self._samples.popleft()

    async def run(self) -> None:
        """Sample forever (a task for the application's lifetime)."""
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            self.sample()

    def load(self) -> Load:
        """The window's load, settled mixers and per-session cost, as of the last sample."""
        first, last = self._samples[0], self._samples[-1]
        span = last.t - first.t
        if span < SAMPLE_SECONDS:
            return Load(cores=0.0, settled=0, per_session=SESSION_COST_ESTIMATE)
        cores = (last.cpu - first.cpu) / span
        # Only a full window says a mixer ran throughout it.
        full = span >= WINDOW_SECONDS - 2 * SAMPLE_SECONDS
        settled = min(s.running for s in self._samples) if full else 0
        measured = cores / settled if settled >= MEASURED_MIN_SESSIONS else 0.0
        return Load(cores, settled, max(measured, SESSION_COST_ESTIMATE))

    def check(self, sessions: int) -> None:
        """Raise OverloadedError unless a session beyond `sessions` existing ones fits."""
        if self.budget <= 0:
            return
        self.sample()
        now = time.monotonic()
        if now - self._late_at < WINDOW_SECONDS:
            raise OverloadedError("late", math.ceil(WINDOW_SECONDS), lag=round(self._late_by, 3))
        while self._starts and self._starts[0] <= now - START_WINDOW_SECONDS:
            self._starts.popleft()
        if len(self._starts) >= STARTS_PER_WINDOW:
            raise OverloadedError(
                "starting", math.ceil(START_WINDOW_SECONDS), starts=len(self._starts)
            )
        load = self.load()
        unsettled = max(sessions - load.settled, 0)
        reserved = (unsettled + 1) * load.per_session
        if load.cores + reserved > self.budget:
            raise OverloadedError(
                "load",
                math.ceil(WINDOW_SECONDS),
                load=round(load.cores, 3),
                reserved=round(reserved, 3),
                budget=self.budget,
            )
        self._starts.append(now)
