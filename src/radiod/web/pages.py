"""`GET /`: the player page, with the health thresholds from config rendered in."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from radiod.web.keys import CONFIG

routes = web.RouteTableDef()


@routes.get("/")
@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, object]:
    config = request.app[CONFIG]
    return {
        "health": config.health,
        "stream": config.stream,
        "endpoints": {
            "createSession": "/create-session",
            "events": "/events",
            "stream": "/stream",
            "sessions": "/sessions",
        },
    }
