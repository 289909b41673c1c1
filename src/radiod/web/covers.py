"""`GET /tracks/{track_id}/cover`: a track's cover image, with validators for browser caches.

The image is read off the event loop (a tag can hold megabytes, a file can sit on a slow
disk) each time it is asked for: browsers keep it for `COVER_MAX_AGE_SECONDS` and then
revalidate with `If-None-Match`, which costs a read but no transfer. The ETag is a hash of
the image bytes, so a changed file or folder image gets a new one.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from radiod.artwork import read_cover
from radiod.catalog import Catalog
from radiod.library import Track
from radiod.web.context import json_error

routes = web.RouteTableDef()

# Track IDs are the first 12 hex digits of a SHA-1 (library.probe_file).
TRACK_ID_RE = re.compile(r"[0-9a-f]{12}")
# A day: covers change rarely, and an ETag revalidation after that is cheap.
COVER_MAX_AGE_SECONDS = 86400


class TrackIndex:
    """Tracks by ID over a catalog that changes: rebuilt when the catalog's tuple changes."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._seen: tuple[Track, ...] | None = None
        self._by_id: dict[str, Track] = {}

    def get(self, track_id: str) -> Track | None:
        tracks = self._catalog.tracks()
        if tracks is not self._seen:
            self._by_id = {track.track_id: track for track in tracks}
            self._seen = tracks
        return self._by_id.get(track_id)


TRACK_INDEX = web.AppKey("track_index", TrackIndex)


@routes.get("/tracks/{track_id}/cover")
async def cover(request: web.Request) -> web.Response:
    track_id = request.match_info["track_id"]
    if not TRACK_ID_RE.fullmatch(track_id):
        return json_error(400, "Malformed track id")
    track = request.app[TRACK_INDEX].get(track_id)
    if track is None:
        return json_error(404, "Track not found")
    image = await asyncio.get_running_loop().run_in_executor(None, read_cover, track.path)
    if image is None:
        return json_error(404, "Track has no cover")
    headers = {
        "ETag": image.etag,
        "Cache-Control": f"public, max-age={COVER_MAX_AGE_SECONDS}",
    }
    if _matches(request.headers.get("If-None-Match", ""), image.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=image.data, content_type=image.content_type, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, RFC 9110 13.1.2)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
