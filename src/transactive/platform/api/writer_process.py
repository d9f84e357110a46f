"""One bid writer for every server process: the writer runs in a process of its own.

With ``transactive serve --workers N`` each server process used to have its own
:class:`~transactive.platform.api.bid_writer.BidWriter`, and the writers took turns on the
database (the audit chain is one sequence: SQLite's write lock, PostgreSQL's advisory lock).
A writer holds its turn through its whole batch (reads, about 50-200 µs of Python per bid,
writes, commit), so the turns ran one after the other, the batches got smaller (each process saw
only its own share of the requests) and a second process only added the waiting: measured with
``benchmarks/bench_platform.py --skip-interval``, 1,085 bids/s with two processes against
1,222 with one (SQLite), 705 against 865 (PostgreSQL), while the HTTP stack alone doubled.

So the supervisor (:func:`transactive.platform.workers.serve_workers`) starts one more process,
the writer, before the server processes: :func:`run_writer` serves a Unix socket in a private
directory, and each server process's app submits to it through :class:`RemoteBidWriter`
(the same ``submit`` as the in-process writer). The server processes read, authenticate and
validate requests in parallel; the writer takes every submission waiting from all of them and
commits them as one batch (group commit, as before). Its answer, the bid or the refusal raised
in the writer, is raised in the server process as it would have been in process, so every
answer is the route's own (tested both ways). Measured the same way, two server processes and
the writer: SQLite 3,016 -> 3,653-3,809 bids/s (p99 13-14 ms), PostgreSQL 1,366 -> 2,404
(p99 19 ms), on a faster hour of the shared machine than the figures above.

The wire: each message is a 4-byte big-endian length and a pickle (protocol 5) of a request
``(id, claims, bid, idempotency key, request time)`` or of an answer ``(id, ok, value)``. Both
ends are this package, started by one supervisor, on a socket only its user can reach (a
directory of mode 0700 from :func:`tempfile.mkdtemp`); nothing else is ever unpickled. The
writes of one event-loop turn are sent together (one system call for a batch's answers).

Failures: a writer that dies is restarted by the supervisor on the same socket; the
submissions waiting on it are answered 503 (``unavailable``, with ``Retry-After``). Whether such
a bid was committed is unknown to its client, which is what the idempotency key is for: the
retry with the same key returns the first answer if the first write went through. A server
process connects on its first submission and again after a lost connection, trying for
:data:`CONNECT_TIMEOUT_S` (the writer may be starting).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import logging
import os
import pickle
import signal
import struct
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy.exc

from transactive.errors import ValidationError
from transactive.platform.auth import TokenClaims
from transactive.platform.errors import PlatformError
from transactive.platform.schemas import BidCreate, BidPublic

__all__ = [
    "CONNECT_TIMEOUT_S",
    "SOCKET_NAME",
    "RemoteBidWriter",
    "WriterUnavailable",
    "run_writer",
    "writer_directory",
]

_log = logging.getLogger("transactive.platform.api")

#: How long a server process tries to reach the writer before it answers 503 (s).
CONNECT_TIMEOUT_S = 10.0

#: The socket's name in the writer's directory.
SOCKET_NAME = "bid-writer.sock"

_HEADER = struct.Struct(">I")
#: The largest message either end accepts (a bid is bounded by the body limit, 1 MiB by default).
_MAX_MESSAGE = 64 * 1024 * 1024
_PROTOCOL = 5


def writer_directory() -> Path:
    """A new directory only this user can enter (mode 0700), for the writer's socket."""
    return Path(tempfile.mkdtemp(prefix="transactive-writer-"))


class WriterUnavailable(PlatformError):
    """503: the bid writer process cannot be reached (it is starting or was restarted)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "unavailable", message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (WriterUnavailable, (self.message,))


def _frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class _Framed(asyncio.Protocol):
    """Length-prefixed pickles in both directions; the writes of one loop turn sent at once."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._inbox = bytearray()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def send(self, message: object) -> None:
        """Queue a message; it leaves with the others of this loop turn."""
        self._outbox.append(_frame(message))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._outbox and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._outbox))
        self._outbox.clear()

    def data_received(self, data: bytes) -> None:
        self._inbox += data
        inbox = self._inbox
        start = 0
        while len(inbox) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(inbox, start)
            if size > _MAX_MESSAGE:
                _log.error("bid writer: a message of %d bytes; closing the connection", size)
                assert self.transport is not None
                self.transport.close()
                return
            end = start + _HEADER.size + size
            if len(inbox) < end:
                break
            message = pickle.loads(memoryview(inbox)[start + _HEADER.size : end])
            start = end
            self.received(message)
        del inbox[:start]

    def received(self, message: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# ----------------------------------------------------------------- the server processes' side


def _portable(exc: BaseException) -> BaseException:
    """The answer's exception as it can cross to the server process and be answered there.

    The platform's refusals travel as they are. A database error travels as the SQLAlchemy
    class the app's handlers answer (409 for a lost race on a unique constraint, 503 for a busy
    or unreachable database), carrying the driver's message: the driver's own exception holds a
    connection and does not pickle.
    """
    if isinstance(exc, PlatformError | ValidationError):
        return exc
    if isinstance(exc, sqlalchemy.exc.IntegrityError | sqlalchemy.exc.OperationalError):
        return type(exc)(None, None, Exception(str(exc.orig)))
    return RuntimeError(f"the bid writer failed: {type(exc).__name__}: {exc}")


class _ClientProtocol(_Framed):
    def __init__(self, on_lost: Callable[[_ClientProtocol], None]) -> None:
        super().__init__()
        self.waiting: dict[int, asyncio.Future[tuple[BidPublic, bool]]] = {}
        self._on_lost = on_lost

    def received(self, message: Any) -> None:
        request_id, ok, value = message
        future = self.waiting.pop(request_id, None)
        if future is None or future.done():  # its request was cancelled
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(
                    WriterUnavailable(
                        "the connection to the bid writer was lost before its answer; retry "
                        "with the same Idempotency-Key (it returns the first answer if the bid "
                        "was written)"
                    )
                )
        self.waiting.clear()
        self._on_lost(self)


class RemoteBidWriter:
    """The bid writer of another process, reached on its Unix socket ``path``.

    The same ``submit`` as :class:`~transactive.platform.api.bid_writer.BidWriter`: the answer
    is the writer's, its refusals raised here. One connection per event loop (a server has
    one), opened on the first submission.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._connections: dict[asyncio.AbstractEventLoop, _ClientProtocol] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Task[_ClientProtocol]] = {}
        self._next_id = 0

    def close(self) -> None:
        """Close the connections (the app's shutdown)."""
        for loop, protocol in list(self._connections.items()):
            transport = protocol.transport
            if transport is None:
                continue
            if not loop.is_closed():  # a closed loop (a test client's) closed its own
                transport.close()
        self._connections.clear()

    def _forget(self, loop: asyncio.AbstractEventLoop, lost: _ClientProtocol) -> None:
        if self._connections.get(loop) is lost:  # not a newer connection of the same loop
            del self._connections[loop]

    async def _connection(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        protocol = self._connections.get(loop)
        if protocol is not None and protocol.transport is not None:
            return protocol
        task = self._connecting.get(loop)
        if task is None:
            task = loop.create_task(self._connect(loop))
            self._connecting[loop] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._connecting.pop(loop, None)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _ClientProtocol:
        deadline = loop.time() + CONNECT_TIMEOUT_S
        pause = 0.01
        while True:
            try:
                _, protocol = await loop.create_unix_connection(
                    lambda: _ClientProtocol(lambda lost: self._forget(loop, lost)),
                    self.path,
                )
            except OSError as exc:
                if loop.time() + pause > deadline:
                    raise WriterUnavailable(
                        f"the bid writer at {self.path} cannot be reached ({exc}); retry"
                    ) from exc
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            self._connections[loop] = protocol
            return protocol

    async def submit(
        self, *, claims: TokenClaims, bid_in: BidCreate, idempotency_key: str, now: datetime
    ) -> tuple[BidPublic, bool]:
        """Send a submission to the writer and wait for its answer (see ``BidWriter.submit``)."""
        protocol = await self._connection()
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[tuple[BidPublic, bool]] = asyncio.get_running_loop().create_future()
        protocol.waiting[request_id] = future
        protocol.send((request_id, claims, bid_in, idempotency_key, now))
        try:
            return await future
        finally:
            protocol.waiting.pop(request_id, None)


# ------------------------------------------------------------------------- the writer's side


class _WriterProtocol(_Framed):
    def __init__(self, writer: Any) -> None:
        super().__init__()
        self._writer = writer

    def received(self, message: Any) -> None:
        request_id, claims, bid_in, idempotency_key, now = message
        future = self._writer.enqueue(
            claims=claims, bid_in=bid_in, idempotency_key=idempotency_key, now=now
        )
        future.add_done_callback(lambda f: self._answer(request_id, f))

    def _answer(self, request_id: int, future: asyncio.Future[tuple[BidPublic, bool]]) -> None:
        if future.cancelled():  # pragma: no cover - the writer never cancels
            return
        exc = future.exception()
        if exc is None:
            self.send((request_id, True, future.result()))
            return
        portable = _portable(exc)
        try:
            self.send((request_id, False, portable))
        except (pickle.PicklingError, TypeError, AttributeError) as failed:
            _log.error("bid writer: an answer that does not pickle (%r): %s", portable, failed)
            self.send((request_id, False, RuntimeError(f"the bid writer failed: {portable}")))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _serve(path: str, writer: Any, ready: Callable[[], None] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if os.path.exists(path):  # a writer before this one died (the supervisor restarted it)
        os.unlink(path)
    server = await loop.create_unix_server(lambda: _WriterProtocol(writer), path)
    os.chmod(path, 0o600)
    _log.info("Bid writer process [%d] on %s", os.getpid(), path)
    if ready is not None:
        ready()
    gc.freeze()  # what start-up made lives as long as the process (see the app's lifespan)
    try:
        await stop.wait()
    finally:
        # the supervisor stops the writer after the server processes, which finished their
        # requests: what is still queued is written and answered before the process ends
        server.close()
        if writer.busy():
            await writer.drain()
        await asyncio.sleep(0)  # the last answers' write (queued for the end of the loop turn)


def run_writer(path: str, ready: Callable[[], None] | None = None) -> None:
    """The writer process: a :class:`BidWriter` on the environment's settings, served at ``path``.

    Runs until SIGTERM, then finishes the batch being written. ``ready`` is called once the
    socket accepts connections.
    """
    from transactive.platform import db  # noqa: PLC0415 - in the spawned process
    from transactive.platform.api.bid_writer import BidWriter  # noqa: PLC0415
    from transactive.platform.settings import Settings  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    settings = Settings()
    engine = db.make_engine(settings.database_url)
    writer = BidWriter(db.make_session_factory(engine), max_batch=settings.bid_batch_max)
    try:
        if importlib.util.find_spec("uvloop") is not None:  # optional, as for uvicorn
            uvloop = importlib.import_module("uvloop")
            uvloop.run(_serve(path, writer, ready))
        else:
            asyncio.run(_serve(path, writer, ready))
    finally:
        writer.close()
        engine.dispose()
