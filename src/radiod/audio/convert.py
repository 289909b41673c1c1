"""Convert decoded frames to the session's format, in blocks of a fixed size, in one thread.

PyAV's `AudioResampler` would do this job, but the filter graph it builds uses FFmpeg's
default thread count: two idle threads started for every opened track (~6 per session,
counting the track opened ahead), which `AudioResampler` gives no way to turn off. Owning the
graph (abuffer → aformat → abuffersink, FFmpeg inserts the resampler) lets it run in the
calling thread, which is the mixer's thread anyway.

Blocks come out interleaved (`flt`) and are handed on as a (channels, samples) *view* of the
frame's own buffer: no copy on the way out (PyAV's `to_ndarray` copies every block once
through `np.vstack`), and the encoder's input is already interleaved (see encode.py).
"""

from __future__ import annotations

from errno import EAGAIN

import av
import numpy as np
from av.filter import Graph

Block = np.ndarray  # float32, shape (channels, samples)


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


class BlockConverter:
    """Any audio frame in, float32 blocks of `block_size` samples out (the last one shorter).

    The graph is built from the first frame, so a file's own format, layout and rate need not
    be known in advance; a later frame in another format makes FFmpeg raise (`av.FFmpegError`),
    which the decoder reports like any corrupt packet.
    """

    def __init__(self, *, sample_rate: int, channels: int, block_size: int) -> None:
        self._rate = sample_rate
        self._channels = channels
        self._block_size = block_size
        self._graph: Graph | None = None
        # Output samples pushed and not yet pulled (estimated from the input's rate). A pull
        # the graph cannot answer raises EAGAIN, and a Python exception per decoded frame
        # showed in the profile; pulling only when a block is due keeps them rare.
        self._pending = 0.0

    def _build(self, frame: av.AudioFrame) -> Graph:
        graph = Graph()
        graph.threads = 1  # before any filter: no worker threads (FFmpeg's nb_threads == 1)
        args = {
            "sample_rate": str(frame.sample_rate),
            "sample_fmt": frame.format.name,
            "channel_layout": frame.layout.name,
        }
        if frame.time_base is not None:
            args["time_base"] = str(frame.time_base)
        source = graph.add("abuffer", **args)
        convert = graph.add(
            "aformat",
            sample_rates=str(self._rate),
            sample_fmts="flt",
            channel_layouts=_layout(self._channels),
        )
        sink = graph.add("abuffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        graph.set_audio_frame_size(self._block_size)
        return graph

    def convert(self, frame: av.AudioFrame | None) -> list[Block]:
        """The blocks ready after `frame`; None flushes what the graph holds (end of file)."""
        if self._graph is None:
            if frame is None:
                return []
            self._graph = self._build(frame)
        self._graph.push(frame)
        if frame is not None:
            self._pending += frame.samples * self._rate / frame.sample_rate
        blocks: list[Block] = []
        while frame is None or self._pending >= self._block_size:
            try:
                out = self._graph.pull()
            except EOFError:
                break
            except av.FFmpegError as exc:
                if exc.errno != EAGAIN:
                    raise
                break
            self._pending -= out.samples
            blocks.append(self._view(out))
        return blocks

    def _view(self, frame: av.AudioFrame) -> Block:
        # The frame's buffer stays alive as long as the array (numpy keeps the plane).
        count = frame.samples * self._channels
        flat = np.frombuffer(frame.planes[0], dtype=np.float32, count=count)
        return flat.reshape(frame.samples, self._channels).T
