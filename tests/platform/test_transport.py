"""The server's coalescing transport: a response's writes in one loop turn leave as one write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
import uvicorn

from transactive.platform.api.transport import CoalescingHttpToolsProtocol, CoalescingTransport


class _Recording:
    """A transport that records what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False
        self.extra = {"peername": ("127.0.0.1", 1)}

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


async def _turn() -> None:
    await asyncio.sleep(0)


def test_writes_in_one_turn_leave_as_one_write_in_order() -> None:
    async def main() -> None:
        raw = _Recording()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        head, body = b"HTTP/1.1 201 Created\r\n\r\n", b'{"id": 1}'
        t.write(head)
        t.write(memoryview(body))
        t.write(b"")  # nothing to write: no write
        assert raw.writes == []  # not before the end of the turn
        assert t.get_write_buffer_size() == 7 + len(head) + len(body)
        await _turn()
        assert raw.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"id": 1}']
        # another turn, another write; writelines is writes
        t.writelines([b"a", b"b"])
        await _turn()
        t.write(b"c")
        await _turn()
        assert raw.writes[1:] == [b"ab", b"c"]
        # the wrapped transport's other attributes are its own
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)

    asyncio.run(main())


def test_close_and_eof_write_what_is_pending_first() -> None:
    async def main() -> None:
        raw = _Recording()
        t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"last words")
        t.close()
        assert raw.events == ["write", "close"] and raw.writes == [b"last words"]
        await _turn()  # the scheduled flush finds nothing left
        assert raw.writes == [b"last words"]
        # a closing transport is written nothing more
        t.write(b"too late")
        await _turn()
        assert raw.writes == [b"last words"]
        raw2 = _Recording()
        t2 = CoalescingTransport(raw2, asyncio.get_running_loop())  # type: ignore[arg-type]
        t2.write(b"x")
        t2.write_eof()
        assert raw2.events == ["write", "eof"]

    asyncio.run(main())


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = (await receive())["body"]
    answer = b"echo:" + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))],
        }
    )
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def server() -> Any:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=CoalescingHttpToolsProtocol, log_level="error"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield port
    srv.should_exit = True
    thread.join(10)


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
                  .split(b":")[1])  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_uvicorn_answers_whole_responses_on_a_kept_alive_connection(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        for k in range(3):
            body = b"bid %d" % k
            sock.sendall(
                b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            answer = _response(sock)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(b"\r\n\r\necho:" + body)
        # a malformed request is answered (uvicorn's own 400) and the connection closed
        sock.sendall(b"NOT HTTP\r\n\r\n")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 400")
