"""Typed application state shared by the handlers (aiohttp `AppKey`s)."""

from __future__ import annotations

from aiohttp import web

from radiod.audio.runner import MixerHost
from radiod.config import Config
from radiod.sessions import SessionRegistry

CONFIG = web.AppKey("config", Config)
REGISTRY = web.AppKey("registry", SessionRegistry)
MIXERS = web.AppKey("mixers", MixerHost)  # where sessions' audio is encoded
STARTED = web.AppKey("started", float)  # wall-clock start, for uptime
