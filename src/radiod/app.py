"""The application factory: routes, middleware, and the registry's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web

from radiod.config import Config
from radiod.library import Track
from radiod.sessions import SessionRegistry
from radiod.web import api, events, faults, pages, stream
from radiod.web.context import context_middleware, set_client_cookie
from radiod.web.keys import CONFIG, REGISTRY, STARTED

log = structlog.get_logger(__name__)

# The page's templates and static files live at the top of the repository (`web/`).
WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
# aiohttp's access log, through the same structlog pipeline: request line, status, bytes, seconds.
ACCESS_LOG_FORMAT = '"%r" %s %b %Tf'


def create_app(config: Config, tracks: Sequence[Track]) -> web.Application:
    """An application serving `tracks` with `config`; sessions live as long as it runs."""
    app = web.Application(middlewares=[context_middleware])
    app[CONFIG] = config
    app[STARTED] = time.time()
    app.on_response_prepare.append(set_client_cookie)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(WEB_ROOT / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.add_routes(pages.routes)
    app.add_routes(api.routes)
    app.add_routes(events.routes)
    app.add_routes(stream.routes)
    if config.testing.fault_hooks:
        log.warning("server.fault_hooks_enabled")
        app.add_routes(faults.routes)
    app.router.add_static("/static/", WEB_ROOT / "static")

    async def registry_ctx(app: web.Application) -> AsyncIterator[None]:
        registry = SessionRegistry(config, tracks)
        app[REGISTRY] = registry
        registry.start_reaper()
        sampler = asyncio.create_task(registry.admission.run())
        yield
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await registry.close()  # idempotent: on_shutdown has normally done it already

    async def end_sessions(app: web.Application) -> None:
        # on_shutdown runs before aiohttp waits for handlers: ending the rings and SSE
        # queues lets every open stream and event response finish cleanly.
        await app[REGISTRY].close()

    app.cleanup_ctx.append(registry_ctx)
    app.on_shutdown.append(end_sessions)
    return app
