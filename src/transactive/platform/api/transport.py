"""uvicorn's HTTP protocol with each response sent in one write: headers and body together.

uvicorn writes a response's status line and headers to the socket when the app sends
``http.response.start``, and its body when the app sends ``http.response.body``: two ``send``
system calls per response, and two TCP segments (uvicorn sets ``TCP_NODELAY``), so the client
wakes up and reads twice too. On loopback the kernel does the receiver's TCP work inside the
sender's call: py-spy sampled 29 % of the server process inside those two writes while bids
were submitted (uvicorn 0.54, httptools, uvloop; the fast lane's answer is one start and one
body). The protocol here gives uvicorn's HTTP protocol a transport whose writes made in one
turn of the event loop are joined and written once at the end of that turn
(:class:`CoalescingTransport`): an app's start and body, sent one after the other without
waiting, leave as one write. Nothing waits longer than the turn of the loop it was written in,
and the writes keep their order; closing the transport writes what is pending first. This is
the write coalescing of Nagle's algorithm (RFC 896) without its wait for an acknowledgement.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport whose writes within one event-loop turn go out as one write.

    Every other attribute is the wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` to write at the end of this turn of the loop, after what came before."""
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        """:meth:`write` each item."""
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is pending now, in one write (nothing, once the transport is closing)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        """The wrapped transport's buffer and what waits for the end of the turn."""
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        """Write what is pending, then end the stream."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Write what is pending, then close."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """The httptools protocol of uvicorn on a :class:`CoalescingTransport`.

    For ``uvicorn.Config(http=...)``: the class, or its import path
    ``"transactive.platform.api.transport:CoalescingHttpToolsProtocol"``.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """The connection as uvicorn makes it, on the coalescing transport."""
        super().connection_made(cast(asyncio.Transport, CoalescingTransport(transport, self.loop)))
