"""Routes of the emulated service (skeleton: being filled in)."""

from __future__ import annotations

from fastapi import FastAPI

from sandbox.core.service import build_service_app, finish_service_app
from sandbox.core.world import World
from sandbox.management_activity.errors import ERRORS


def build_app(world: World) -> FastAPI:
    app = build_service_app(world, "management_activity", ERRORS)
    return finish_service_app(app, ERRORS)
