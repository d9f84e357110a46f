"""The request body limit: a body larger than ``max_body_bytes`` is answered 413 before parsing.

A pure ASGI middleware (no ``BaseHTTPMiddleware``, which costs a task per request): a declared
``Content-Length`` above the limit is refused at once; otherwise the body is read, counting as it
arrives (so a chunked body without a length cannot slip past), and handed to the app from a
buffer. RFC 9110 §15.5.14 (413 Content Too Large). FastAPI's own ``max_body_size`` is not used:
it answers a declared oversize length with a ``text/plain`` body, and every 4xx of this API is
JSON ``{"detail": ...}`` naming the problem.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit"]


class BodySizeLimit:
    """Refuse HTTP request bodies above ``max_body_bytes`` with 413 and a ``detail`` naming it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the limit and pass it on, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse(send, f"the body declares {declared} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body_bytes:
                await self._refuse(send, f"the body exceeds {self.max_body_bytes} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, send: Send, what: str) -> None:
        body = json.dumps(
            {
                "detail": {
                    "code": "payload_too_large",
                    "message": f"{what}; the limit is {self.max_body_bytes} bytes "
                    "(TRANSACTIVE_MAX_BODY_BYTES)",
                }
            }
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the buffered messages first, then the client's own (disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
