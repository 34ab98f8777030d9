"""Typed application state (aiohttp AppKeys): the one place naming what the app holds."""

from __future__ import annotations

from aiohttp import web

from service.api.metrics import Metrics
from service.api.websocket import Hub
from service.core.settings import Settings
from service.runs.manager import RunManager

SETTINGS = web.AppKey("settings", Settings)
STARTED = web.AppKey("started", float)
MANAGER = web.AppKey("manager", RunManager)
HUB = web.AppKey("hub", Hub)
METRICS = web.AppKey("metrics", Metrics)
ORIGINS = web.AppKey("origins", tuple)  # allowed WebSocket Origins; empty = the server's own
