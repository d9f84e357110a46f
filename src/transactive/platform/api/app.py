"""The platform's REST API: :func:`create_app` builds the FastAPI application from ``Settings``.

Shaped like FastAPI's full-stack template (``app/main.py`` and ``app/api/main.py``): one router
per entity under ``/api/v1``, the database and the signing key on ``app.state``, and handlers
that turn every refusal into a 4xx whose body is ``{"detail": ...}`` naming the problem, never a
500:

- :class:`~transactive.platform.errors.PlatformError` → its status and
  ``{"code", "message", "problems"}`` (401 also carries ``WWW-Authenticate: Bearer``, RFC 6750
  §3);
- :class:`~transactive.errors.ValidationError` (a bad signature, a bad public key) → 422 with
  every problem;
- pydantic's request validation (malformed JSON, wrong types, a missing header) → 422 with its
  list, as FastAPI answers;
- a body above ``max_body_bytes`` → 413 (:class:`~transactive.platform.api.limits.BodySizeLimit`);
- a write that lost a race on a unique constraint → 409; the database busy beyond its timeout
  → 503 with ``Retry-After``.

The app does not migrate the database: ``transactive serve`` runs
:func:`transactive.platform.db.upgrade` before it starts the server.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from transactive.errors import ValidationError
from transactive.platform import openadr, web
from transactive.platform.api.bid_writer import BidSubmitter, BidWriter
from transactive.platform.api.deps import API_PREFIX, Clock, DbSlots, TokenCache
from transactive.platform.api.fast_lane import BidFastLane
from transactive.platform.api.limits import BodySizeLimit
from transactive.platform.api.routes import (
    accounts,
    audit,
    bids,
    contracts,
    intervals,
    markets,
    members,
    meter_readings,
    token,
)
from transactive.platform.api.writer_process import RemoteBidWriter
from transactive.platform.db import make_engine, make_read_engine, make_session_factory
from transactive.platform.errors import PlatformError
from transactive.platform.schemas import Unprocessable
from transactive.platform.settings import Settings

__all__ = ["app_from_environment", "create_app"]

_log = logging.getLogger("transactive.platform.api")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The platform's API on the database of ``settings`` (read from the environment if None).

    Parameters
    ----------
    settings : Settings, optional
        Database, signing key, token lifetime, body limit, currency.
    clock : callable, optional
        The time of each request (timezone-aware); the system's UTC clock by default. Tests pass
        a controlled clock to cross a gate closure or an expiry without waiting.

    Raises
    ------
    ValidationError
        No usable token signing key (see :meth:`Settings.resolve_secret_key`).

    """
    settings = Settings() if settings is None else settings
    secret_key = settings.resolve_secret_key()
    engine = make_engine(settings.database_url)

    sessions = make_session_factory(engine)
    read_engine = make_read_engine(engine)
    bid_writer: BidSubmitter
    if settings.bid_writer_socket is not None:  # the server's writer process writes the bids
        bid_writer = RemoteBidWriter(settings.bid_writer_socket)
    else:
        bid_writer = BidWriter(sessions, max_batch=settings.bid_batch_max)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # what start-up made lives as long as the server: kept out of the collector's full
        # passes, whose pauses over every module, route and model showed in the p99 latency
        gc.freeze()
        yield
        bid_writer.close()
        if read_engine.dialect.name == "sqlite":  # its own connections (PostgreSQL: shared)
            read_engine.dispose()
        engine.dispose()

    app = FastAPI(
        title="transactive platform",
        version="1",
        summary="The weakly-centralized transactive energy platform (Hu et al. 2019, §3.1.1)",
        description=(
            "Members, contracts, markets and intervals, bids, clearing with the DSO's security "
            "check, settlement (Table 1) and the audit log. Authenticate with OAuth2 client "
            f"credentials at `{API_PREFIX}/token`. Power in kW (+ consumption), energy in kWh, "
            f"prices in currency/kWh, money in integers of the smallest unit of "
            f"{settings.currency}."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.secret_key = secret_key
    app.state.engine = engine
    app.state.sessions = sessions
    # read-only transactions that never wait for the writer (make_read_engine)
    app.state.read_sessions = make_session_factory(read_engine)
    app.state.bid_writer = bid_writer
    # requests holding connections at once: below the pool's 5 + 10 (the page's live feed and
    # the SQLite bid writer's own engine take theirs outside requests)
    app.state.db_slots = DbSlots(10)
    app.state.token_cache = TokenCache()
    app.state.clock = clock or _utc_now
    # the bid route first: a request is matched against the routers in this order, and bids are
    # most of the traffic (FastAPI 0.165 tries every included router's routes in turn)
    for module in (
        bids,
        token,
        members,
        markets,
        intervals,
        contracts,
        meter_readings,
        accounts,
        audit,
    ):
        # every 422 is either FastAPI's list of issues or the platform's refusal: the document
        # says both (FastAPI would declare only the first)
        app.include_router(
            module.router,
            prefix=API_PREFIX,
            responses={422: {"model": Unprocessable, "description": "Unprocessable request"}},
        )
    openadr.install(app)  # OpenADR 3.1 VTN under its own prefix (issue 15)
    web.install(app)  # the operator's page, its fragments and static assets (issue 15)
    _add_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    if settings.bid_fast_lane:  # outside the body limit: it checks the size itself
        app.add_middleware(
            BidFastLane,
            max_body_bytes=settings.max_body_bytes,
            key_pattern=bids.IDEMPOTENCY_KEY_PATTERN,
            key_max=bids.IDEMPOTENCY_KEY_MAX,
        )
    return app


def app_from_environment() -> FastAPI:
    """The app on the settings of the environment (each worker of ``transactive serve``)."""
    return create_app(Settings())


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PlatformError)
    async def platform_error(_request: Request, exc: PlatformError) -> JSONResponse:
        headers = None
        if exc.status == 401:
            challenge = 'Bearer realm="transactive"'
            if exc.code != "not_authenticated":  # RFC 6750 §3: no error code without a token
                description = exc.message.replace('"', "'")
                challenge += f', error="{exc.code}", error_description="{description}"'
            headers = {"WWW-Authenticate": challenge}
        elif exc.status == 503:  # the bid writer process is out of reach for now
            headers = {"Retry-After": "1"}
        return JSONResponse({"detail": exc.detail()}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(
        _request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        # FastAPI's own answer, made strict JSON: the echoed input may hold NaN or infinity
        # (Python's JSON reader takes them), which its handler cannot serialise (a 500)
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(ValidationError)
    async def validation_error(_request: Request, exc: ValidationError) -> JSONResponse:
        detail = {
            "code": "invalid",
            "message": str(exc),
            "problems": [str(p) for p in exc.problems],
        }
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(sqlalchemy.exc.IntegrityError)
    async def integrity_error(
        _request: Request, exc: sqlalchemy.exc.IntegrityError
    ) -> JSONResponse:
        _log.info("integrity error answered 409: %s", exc.orig)
        detail = {
            "code": "conflict",
            "message": "the request conflicts with one committed at the same time; read the "
            "current state and retry",
        }
        return JSONResponse({"detail": detail}, status_code=409)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def operational_error(
        _request: Request, exc: sqlalchemy.exc.OperationalError
    ) -> JSONResponse:
        _log.warning("database unavailable, answered 503: %s", exc.orig)
        detail = {"code": "unavailable", "message": "the database is busy or unreachable; retry"}
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})


def _json_safe(value: Any) -> Any:
    """The value with every non-finite float written as a string (strict JSON, RFC 8259 §6)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
