"""ICY (SHOUTcast) metadata for native players that ask for it with `Icy-MetaData: 1`.

As in Icecast, metadata is a per-listener writer wrapped around the byte stream, not a
branch in the ring: the audio bytes stay shared, and each ICY listener gets its own
interleaving, because where a block falls depends on where that listener joined.
"""

from __future__ import annotations

METAINT = 16000
# A metadata block's length byte counts 16-byte units: at most 255 * 16 bytes of text.
_MAX_BLOCK = 255 * 16


def icy_headers(name: str, description: str, genre: str) -> dict[str, str]:
    return {
        "icy-metaint": str(METAINT),
        "icy-name": name,
        "icy-description": description,
        "icy-genre": genre,
    }


def _escape(title: str) -> str:
    return title.replace("\\", "\\\\").replace("'", "\\'")


def metadata_block(title: str | None) -> bytes:
    """One ICY block: a length byte, then `StreamTitle='…';` NUL-padded to 16-byte units.

    `None` is the empty block (a single zero byte): "nothing changed".
    """
    if title is None:
        return b"\x00"
    # Cut the title before escaping, so a cut can never leave a lone backslash before `'`.
    title = title[:_MAX_BLOCK]
    while len(text := f"StreamTitle='{_escape(title)}';".encode()) > _MAX_BLOCK:
        title = title[:-1]
    units = -(-len(text) // 16)
    return bytes([units]) + text.ljust(units * 16, b"\x00")


class IcyWriter:
    """Interleaves metadata blocks into one listener's audio every `metaint` bytes.

    ICY can only carry a block at a multiple of `metaint`, so a title change is placed at
    the boundary *nearest* the byte where its track becomes audible: the writer holds
    back half an interval of audio to know what comes next. The error is therefore at
    most `metaint / 2` bytes (0.5 s at 128 kb/s, 0.2 s at 320 kb/s).
    """

    def __init__(self, metaint: int = METAINT) -> None:
        self._metaint = metaint
        self._pending = bytearray()  # audio not yet sent; it starts on an interval start
        self._marks: list[tuple[int, str]] = []  # (offset in _pending, title audible from there)
        self._sent_title: str | None = None

    def feed(self, data: bytes, title: str | None = None) -> bytes:
        """Accept audio (`title`: the track audible from its first byte); return what to send."""
        if title is not None:
            self._marks.append((len(self._pending), title))
        self._pending += data
        out = bytearray()
        horizon = self._metaint + self._metaint // 2
        while len(self._pending) >= horizon:
            out += self._pending[: self._metaint]
            due = [title for offset, title in self._marks if offset < horizon]
            self._marks = [(o - self._metaint, t) for o, t in self._marks if o >= horizon]
            title = due[-1] if due else None
            if title == self._sent_title:
                title = None
            out += metadata_block(title)
            self._sent_title = title or self._sent_title
            del self._pending[: self._metaint]
        return bytes(out)
