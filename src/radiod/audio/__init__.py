"""Audio: decode → mix → encode in a mixer thread, fanned out to listeners through a ring.

`ring` is transport (who gets which bytes); `decode`, `encode` and `mixer` are format.
Import the pieces from their modules (`radiod.audio.ring.Ring`, `radiod.audio.runner.Mixer`).
This module itself imports nothing heavy, so `prefer_system_lame()` can run before PyAV.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import sys
from pathlib import Path

# Opt out with RADIOD_SYSTEM_LAME=0.
SYSTEM_LAME_ENV = "RADIOD_SYSTEM_LAME"


def _lame_version(library: str) -> str | None:
    try:
        lame = ctypes.CDLL(library)
    except OSError:
        return None
    lame.get_lame_version.restype = ctypes.c_char_p
    return lame.get_lame_version().decode()


def _bundled_lame() -> str | None:
    spec = importlib.util.find_spec("av")
    if spec is None or spec.origin is None:
        return None
    libs = Path(spec.origin).parent.parent / "av.libs"
    found = sorted(libs.glob("libmp3lame*.so*"))
    return str(found[0]) if found else None


def prefer_system_lame() -> str | None:
    """Make PyAV encode MP3 with the OS's libmp3lame rather than the copy in PyAV's wheel.

    Measured on this machine (LAME 3.100 both, 128 kb/s, compression level 5): the wheel's
    copy encodes at ~30x realtime, Debian's at ~100x; Debian's ffmpeg CLI uses the latter.
    Loading the system library RTLD_GLOBAL before `av` is imported makes the wheel's
    libavcodec bind its lame_* calls to it. Done only when the two report the same LAME
    version (the API is then the same), and only before `av` is imported; call it first
    thing at start-up.

    Returns:
        The library now used, or None when nothing was changed.
    """
    if os.environ.get(SYSTEM_LAME_ENV, "1") == "0" or "av" in sys.modules:
        return None
    system = ctypes.util.find_library("mp3lame")
    bundled = _bundled_lame()
    if system is None or bundled is None:
        return None
    version = _lame_version(system)
    if version is None or version != _lame_version(bundled):
        return None
    ctypes.CDLL(system, mode=ctypes.RTLD_GLOBAL)
    return system
