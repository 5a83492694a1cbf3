"""Liveness and metrics: ``/healthz`` (503 with the problems when data is not stored) and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitord.daemon.web.auth import web_of
from monitord.daemon.web.models import Health

router = APIRouter()


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(request: Request) -> Response:
    core = web_of(request).core
    health = getattr(core.store, "health", None)  # a queueing backend knows its state
    problems: list[str] = health() if health is not None else []
    fleet = web_of(request).fleet
    extra = {"fleet": fleet.summary()} if fleet is not None else {}
    if problems:
        return JSONResponse({"status": "unhealthy", "problems": problems, **extra}, status_code=503)
    return JSONResponse({"status": "ok", **extra})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = web_of(request).core.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
