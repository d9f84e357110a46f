"""Refusals on the OpenADR paths, in the specification's ``problem`` shape (RFC 7807).

OpenADR 3.1.0 answers every 4xx and 5xx with ``components.schemas.problem`` (Zalando's profile of
RFC 7807 "Problem Details for HTTP APIs": ``type``, ``title``, ``status``, ``detail``,
``instance``), media type ``application/problem+json`` (RFC 7807 §3), not the platform's
``{"detail": ...}``. :class:`ProblemRoute` is the route class of the VTN's router: every exception
a route or its dependencies raise becomes a problem here, so the app's own handlers (which keep
the ``{"detail": ...}`` shape for ``/api/v1``) never see them:

- :class:`~transactive.platform.errors.PlatformError` → its status; ``detail`` is its message and
  ``problems`` (an extension member, RFC 7807 §3.2) every problem it listed. A 422 of the platform
  (well-formed, unacceptable content) is answered 400: the specification's operations declare
  400 for a malformed or invalid request and no 422;
- FastAPI's request validation (malformed JSON, a wrong type, ``limit`` above 50) → 400 naming
  every field and where it is (``body.resources.0.intervals``);
- :class:`~transactive.errors.ValidationError` → 400 with every problem;
- a write that lost a race on a unique constraint → 409; the database busy → 503 with
  ``Retry-After``.

401 answers carry ``WWW-Authenticate: Bearer`` (RFC 6750 §3); the error codes of RFC 6750 §3.1
(``invalid_token``, ``insufficient_scope``) are in the challenge and in the problem's ``code``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from http import HTTPStatus
from typing import Any

import sqlalchemy.exc
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from transactive.errors import ValidationError
from transactive.platform.errors import PlatformError

__all__ = ["PROBLEM_MEDIA_TYPE", "ProblemRoute", "problem_response", "validation_problems"]

PROBLEM_MEDIA_TYPE = "application/problem+json"

_log = logging.getLogger("transactive.platform.openadr")


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    problems: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """An RFC 7807 answer: ``type`` about:blank, the status's ``title``, ``detail``, ``instance``.

    ``instance`` is the request's absolute URL (the specification's schema wants an absolute
    URI); ``code`` and ``problems`` are extension members (RFC 7807 §3.2).
    """
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": str(request.url),
    }
    if code is not None:
        body["code"] = code
    if problems:
        body["problems"] = list(problems)
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def validation_problems(errors: Sequence[Any]) -> list[str]:
    """FastAPI's request validation errors as ``where: why`` lines (``body.resources.0: ...``)."""
    out = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        out.append(f"{where}: {error.get('msg', 'invalid')}")
    return out


def _bearer_challenge(exc: PlatformError) -> dict[str, str]:
    challenge = 'Bearer realm="transactive"'
    if exc.code != "not_authenticated":  # RFC 6750 §3: no error code without a token
        description = exc.message.replace('"', "'")
        challenge += f', error="{exc.code}", error_description="{description}"'
    return {"WWW-Authenticate": challenge}


def _answer(request: Request, exc: Exception) -> Response:
    if isinstance(exc, PlatformError):
        status = 400 if exc.status == 422 else exc.status
        headers = _bearer_challenge(exc) if exc.status == 401 else None
        return problem_response(
            request, status, exc.message, code=exc.code, problems=exc.problems, headers=headers
        )
    if isinstance(exc, RequestValidationError):
        problems = validation_problems(exc.errors())
        return problem_response(
            request,
            400,
            "the request is malformed: " + "; ".join(problems),
            code="invalid_request",
            problems=problems,
        )
    if isinstance(exc, ValidationError):
        problems = [str(p) for p in exc.problems]
        return problem_response(request, 400, str(exc), code="invalid", problems=problems)
    if isinstance(exc, HTTPException):
        headers = None if exc.headers is None else dict(exc.headers)
        return problem_response(request, exc.status_code, str(exc.detail), headers=headers)
    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        _log.info("integrity error answered 409: %s", exc.orig)
        return problem_response(
            request,
            409,
            "the request conflicts with one committed at the same time; read the current state "
            "and retry",
            code="conflict",
        )
    if isinstance(exc, sqlalchemy.exc.OperationalError):
        _log.warning("database unavailable, answered 503: %s", exc.orig)
        return problem_response(
            request,
            503,
            "the database is busy or unreachable; retry",
            code="unavailable",
            headers={"Retry-After": "1"},
        )
    raise exc


_HANDLED = (
    PlatformError,
    RequestValidationError,
    ValidationError,
    HTTPException,
    sqlalchemy.exc.IntegrityError,
    sqlalchemy.exc.OperationalError,
)


class ProblemRoute(APIRoute):
    """A route whose refusals (its own and its dependencies') are RFC 7807 problems."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The default handler, with every refusal turned into a problem answer."""
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except _HANDLED as exc:
                return _answer(request, exc)

        return answer
