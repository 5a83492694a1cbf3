"""The silences route group: list, add (matcher, reason, expiry; the author is the caller), expire."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from monitord.alerting.mute import Silence
from monitord.daemon.web.auth import BEARER, READS, require, require_read, web_of
from monitord.daemon.web.models import Error, SilenceBody, SilenceOut
from monitord.people.identity import Identity

router = APIRouter()


def silence_json(s: Silence, now: float) -> dict[str, Any]:
    return {**asdict(s), "matcher": s.matcher.model_dump(), "active": s.active(now)}


@router.get("/silences", response_model=list[SilenceOut], **READS)
async def list_silences(request: Request) -> list[dict[str, Any]]:
    require_read(request)
    core = web_of(request).core
    mute, now = core.pipeline.mute, core.clock.now()
    return [silence_json(s, now) for s in (mute.silences if mute else [])]


def add(request: Request, who: Identity, body: SilenceBody) -> tuple[int, Any]:
    """Add a silence as ``who``, audited: (status, answer)."""
    web = web_of(request)
    core = web.core
    mute = core.pipeline.mute
    if mute is None:
        return 404, {"error": "no muting here"}
    try:
        s = mute.add_silence(body.matcher, who.name, body.reason, body.expires_in, core.clock.now())
    except ValueError as exc:
        web.audit(request, who, "silence.add", "", 400, str(exc))
        return 400, {"error": str(exc)}
    web.audit(request, who, "silence.add", s.id, 201, f"{body.matcher.model_dump_json()}: {body.reason}")
    return 201, silence_json(s, core.clock.now())


def expire(request: Request, who: Identity, silence_id: str) -> tuple[int, Any]:
    web = web_of(request)
    mute = web.core.pipeline.mute
    if mute is None:
        return 404, {"error": "no muting here"}
    try:
        s = mute.expire(silence_id, web.core.clock.now())
    except KeyError:
        web.audit(request, who, "silence.expire", silence_id, 404)
        return 404, {"error": f"no silence {silence_id}"}
    web.audit(request, who, "silence.expire", silence_id, 200)
    return 200, silence_json(s, web.core.clock.now())


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error},
    401: {"model": Error},
    403: {"model": Error},
    404: {"model": Error},
}


@router.post("/silences", status_code=201, response_model=SilenceOut, responses=REFUSALS, dependencies=BEARER)
async def add_silence(request: Request, body: SilenceBody) -> Any:
    who = require(request, "silence")
    status, answer = add(request, who, body)
    return JSONResponse(answer, status_code=status)


@router.post(
    "/silences/{silence_id}/expire", response_model=SilenceOut, responses=REFUSALS, dependencies=BEARER
)
async def expire_silence(request: Request, silence_id: str) -> Any:
    who = require(request, "silence")
    status, answer = expire(request, who, silence_id)
    return JSONResponse(answer, status_code=status)
