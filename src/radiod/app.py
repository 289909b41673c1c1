"""The application factory: routes, middleware, and the registry's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web

from radiod.audio.loudness_sweep import loudness_sweep_ctx
from radiod.audio.pool import WorkerPool, worker_count
from radiod.audio.runner import LocalMixers
from radiod.catalog import Catalog, as_catalog
from radiod.config import Config
from radiod.library import LiveLibrary, Track
from radiod.metrics import METRICS, Metrics, count_response
from radiod.sessions import SessionRegistry
from radiod.web import (
    api,
    covers,
    events,
    faults,
    health_reports,
    metrics_route,
    pages,
    share,
    stream,
)
from radiod.web.context import context_middleware, set_client_cookie
from radiod.web.guards import CREATE_LIMITER, CreateLimiter, guard_middleware
from radiod.web.keys import CONFIG, MIXERS, REGISTRY, STARTED
from radiod.web.session_cookie import set_session_cookie

log = structlog.get_logger(__name__)

# The page's templates and static files: `web/` at the top of the repository, shipped as the
# package data `radiod.page` (pyproject.toml), so they are found in a plain install too.
WEB_ROOT = Path(str(importlib.resources.files("radiod.page")))
# aiohttp's access log, through the same structlog pipeline: request line, status, bytes, seconds.
ACCESS_LOG_FORMAT = '"%r" %s %b %Tf'


def create_app(config: Config, tracks: Catalog | Sequence[Track]) -> web.Application:
    """An application serving `tracks` with `config`; sessions live as long as it runs.

    `tracks` is shared by every session: a track one session finds unplayable is left out
    for all of them. A fixed list becomes a `FixedCatalog`.
    """
    catalog = as_catalog(tracks)
    # The guards run inside the context middleware, so their refusals are logged in context.
    app = web.Application(middlewares=[context_middleware, guard_middleware(config.server)])
    app[CONFIG] = config
    app[CREATE_LIMITER] = CreateLimiter(config.limits)
    app[STARTED] = time.time()
    app[covers.TRACK_INDEX] = covers.TrackIndex(catalog)
    app[METRICS] = metrics = Metrics()
    app[health_reports.REPORT_LIMITER] = health_reports.ReportLimiter()
    app.on_response_prepare.append(set_client_cookie)
    app.on_response_prepare.append(count_response)
    app.on_response_prepare.append(set_session_cookie)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(WEB_ROOT / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.add_routes(pages.routes)
    app.add_routes(api.routes)
    app.add_routes(events.routes)
    app.add_routes(stream.routes)
    app.add_routes(share.routes)
    app.add_routes(covers.routes)
    app.add_routes(health_reports.routes)
    app.add_routes(metrics_route.routes)
    if config.testing.fault_hooks:
        log.warning("server.fault_hooks_enabled")
        app.add_routes(faults.routes)
    app.router.add_static("/static/", WEB_ROOT / "static")

    async def mixers_ctx(app: web.Application) -> AsyncIterator[None]:
        workers = worker_count(config.audio)
        if workers == 0:
            app[MIXERS] = LocalMixers(catalog, config.audio, config.stream, metrics.worker())
            yield
            return
        pool = WorkerPool(config, catalog, workers, metrics)
        await pool.start()
        app[MIXERS] = pool
        try:
            yield
        finally:
            await pool.close()

    async def registry_ctx(app: web.Application) -> AsyncIterator[None]:
        registry = SessionRegistry(config, catalog, metrics, app[MIXERS])
        app[REGISTRY] = registry
        metrics.count_sessions(registry.sessions)
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

    async def rescan_ctx(app: web.Application) -> AsyncIterator[None]:
        interval = config.library.rescan_seconds
        task = None
        if isinstance(catalog, LiveLibrary) and interval > 0:
            task = asyncio.create_task(_rescan_forever(catalog, interval))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(mixers_ctx)  # torn down last: sessions close before their workers
    app.cleanup_ctx.append(registry_ctx)
    app.cleanup_ctx.append(rescan_ctx)
    app.cleanup_ctx.append(loudness_sweep_ctx(config.audio, catalog))
    app.on_shutdown.append(end_sessions)
    return app


async def _rescan_forever(library: LiveLibrary, interval: float) -> None:
    """Keep `library` up to date with its folder: new music appears without a restart."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        try:
            await loop.run_in_executor(None, library.rescan)  # stats and probes block
        except Exception:
            # A scan that hit something unforeseen must not end rescanning for good.
            log.exception("library.rescan_failed")
