"""Messages between the HTTP process and a mixer worker: length-prefixed pickles on a socket.

One Unix socket pair per worker carries both directions: chunks, track events and log
records up, control (start, stop, skip, close) down. A frame is a 4-byte big-endian length
and a pickle (protocol 5): chunks are ~4 kB of `bytes` and a few numbers, so pickling costs
microseconds, and the values (`Chunk`, `TrackEvent`, `Track`, configs) are plain frozen
dataclasses that pickle as they are. Only the two ends of one radiod instance ever speak on
it (the pair is created by the parent and inherited by its own child), so unpickling
trusts its peer as it trusts its own memory.

The worker's side is blocking (`send`, `receive`); the HTTP side reads with asyncio
(`read_message`) and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import pickle
import select
import socket
import struct
import threading
from typing import Any

_LENGTH = struct.Struct("!I")


def frame(message: Any) -> bytes:
    """`message` as one frame: length, then pickle."""
    data = pickle.dumps(message, protocol=5)
    return _LENGTH.pack(len(data)) + data


class BlockingChannel:
    """The worker's end: `send` from any thread (frames never interleave), `receive` from one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()

    def send(self, message: Any) -> None:
        """Send one message; OSError once the parent is gone."""
        data = frame(message)
        with self._send_lock:
            self._sock.sendall(data)

    def pending(self) -> bool:
        """Whether a message (or the end of the channel) can be read without waiting."""
        return bool(select.select([self._sock], [], [], 0)[0])

    def receive(self) -> Any:
        """The next message; EOFError when the parent closed its end (it exited)."""
        (length,) = _LENGTH.unpack(self._exactly(_LENGTH.size))
        return pickle.loads(self._exactly(length))

    def _exactly(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            part = self._sock.recv(count - len(data))
            if not part:
                raise EOFError("channel closed")
            data += part
        return bytes(data)


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message from a worker; `asyncio.IncompleteReadError` when it is gone."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(length))
