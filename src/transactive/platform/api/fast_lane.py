"""The bid route's fast lane: a well-formed bid skips FastAPI's per-request machinery.

Issue 13 asks for 2,000 bids/s over HTTP on 2 cores. Measured in-process (no sockets), a bid
costs about 490 µs of CPU through FastAPI 0.165, of which the bid writer (checks, inserts,
audit, commit) is about 270 µs: the rest is routing over every router, resolving the route's
dependencies, validating the response and the middleware layers, the same for every bid. Bids
are almost all of the traffic, so this ASGI middleware takes ``POST /api/v1/bids`` itself when
the request is exactly what the route would accept without a word, and hands everything else,
untouched, to the route:

- the body within ``max_body_bytes`` and declared JSON (``Content-Type: application/json``);
- one ``Authorization: Bearer`` token that :func:`~transactive.platform.api.deps.token_claims`'s
  own check (:func:`~transactive.platform.api.deps.claims_of`) accepts;
- one ``Idempotency-Key`` of the route's form (:data:`~.routes.bids.IDEMPOTENCY_KEY_PATTERN`);
- a body that ``json.loads`` reads and :class:`~transactive.platform.schemas.BidCreate`
  validates, as FastAPI reads and validates it.

Such a request goes straight to the same :class:`~.bid_writer.BidWriter` the route uses, and
its answer, or its refusal through the app's own exception handlers, is what the route would
send (same status, headers and body: tested by sending every request both ways). A request that
fails any test above is replayed into the app (the body already read is given back first), so
every error answer (401, 413, 422 with FastAPI's detail) is the route's own. The OpenAPI
document still describes the route; the lane changes no contract.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pydantic
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transactive.platform.api.bid_writer import BidSubmitter
from transactive.platform.api.deps import API_PREFIX, claims_of
from transactive.platform.api.limits import _replay
from transactive.platform.errors import PlatformError
from transactive.platform.schemas import BidCreate

__all__ = ["BidFastLane"]

_PATH = f"{API_PREFIX}/bids"
_JSON = re.compile(rb"^application/json\s*(;.*)?$", re.IGNORECASE)


class BidFastLane:
    """ASGI middleware: well-formed bid submissions go straight to the bid writer."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, key_pattern: str, key_max: int
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._key = re.compile(key_pattern)
        self._key_max = key_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a well-formed bid submission; pass every other request on unchanged."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != _PATH:
            await self.app(scope, receive, send)
            return
        headers = _single_headers(scope)
        if headers is None:
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length")
        content_type = headers.get(b"content-type", b"")
        if (
            length is None
            or not length.isdigit()
            or int(length) > self.max_body_bytes
            or not _JSON.match(content_type)
        ):
            await self.app(scope, receive, send)
            return
        body, replay = await _read_body(receive, int(length))
        if body is None:
            await self.app(scope, replay, send)
            return
        taken = await self._try(scope, headers, body, replay, send)
        if not taken:
            await self.app(scope, replay, send)

    async def _try(
        self,
        scope: Scope,
        headers: dict[bytes, bytes],
        body: bytes,
        receive: Receive,
        send: Send,
    ) -> bool:
        """Submit the bid and answer it; False when the route must answer instead (nothing sent)."""
        app_state = scope["app"].state  # Starlette puts the app in the scope before middleware
        key_raw = headers.get(b"idempotency-key")
        authorization = headers.get(b"authorization")
        if key_raw is None or authorization is None:
            return False
        try:
            key = key_raw.decode("ascii")
            auth_text = authorization.decode("latin-1")
        except UnicodeDecodeError:
            return False
        if not (1 <= len(key) <= self._key_max) or not self._key.fullmatch(key):
            return False
        now = app_state.clock()
        try:
            claims = claims_of(app_state, auth_text, now)
        except PlatformError:
            return False
        try:
            bid_in = BidCreate.model_validate(json.loads(body))
        except (ValueError, pydantic.ValidationError):  # JSONDecodeError is a ValueError
            return False
        writer: BidSubmitter = app_state.bid_writer
        request = Request(scope, receive)
        try:
            bid, created = await writer.submit(
                claims=claims, bid_in=bid_in, idempotency_key=key, now=now
            )
        except Exception as exc:
            handler = _handler_for(scope, exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response: Response = await answer if inspect.isawaitable(answer) else answer
            await response(scope, receive, send)
            return True
        response = Response(
            content=bid.model_dump_json(),
            status_code=201 if created else 200,
            media_type="application/json",
        )
        await response(scope, receive, send)
        return True


def _single_headers(scope: Scope) -> dict[bytes, bytes] | None:
    """The request's headers by lower-case name; None when a header the lane reads repeats."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in found and name in _READ:
            return None
        found[name] = value
    return found


_READ = frozenset((b"content-length", b"content-type", b"authorization", b"idempotency-key"))


async def _read_body(receive: Receive, declared: int) -> tuple[bytes | None, Receive]:
    """The whole body (None if the client went away or sent more than declared), and a receive.

    The receive gives the app what was read, then the client's own messages.
    """
    chunks: list[bytes] = []
    size = 0
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, _replay(messages, receive)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > declared:
            return None, _replay(messages, receive)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    whole: Message = {"type": "http.request", "body": body, "more_body": False}
    return body, _replay([whole], receive)


def _handler_for(scope: Scope, exc: Exception) -> Any:
    """The app's exception handler for ``exc`` (by its class's MRO), as Starlette finds it."""
    handlers = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
