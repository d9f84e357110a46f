"""The server's one writer of bids: concurrent submissions are committed together (group commit).

Issue 13 asks for 2,000 bids/s over HTTP with p99 under 50 ms, and every acknowledged bid must be
durable and audited (a crash after the 201 never loses it). One durable transaction per bid
cannot do that: each costs a commit (a WAL sync on SQLite, a WAL flush on PostgreSQL) and about
a dozen statements, one after the other behind the audit chain's lock. So the bid route hands its
submission to this writer and awaits the answer; the writer, a task on the server's event loop,
takes every submission waiting (up to ``max_batch``), writes them in ONE transaction with
:func:`transactive.platform.crud.submit_bids` (set-wise reads, bulk inserts, the audit chain
computed in memory in batch order) and answers each request after the commit. This is the group
commit of database systems (Gray & Reuter, "Transaction Processing: Concepts and Techniques",
1993, §9.4.7; PostgreSQL's ``commit_delay`` does the same inside the server): batches form by
themselves while the previous one commits, so a lone bid waits for no timer and, under load,
the cost of a commit is shared by all the bids that arrived during the one before.

The statements and the commit run on the event loop itself. A writer thread doing the whole
batch was measured three times slower, since after each call into the driver it waited for the
event loop to give the interpreter back (the GIL's convoy effect); a thread doing only the
commit still waited up to the interpreter's switch interval (5 ms) for it, 6 ms a batch, while the
commit itself (an fsync of SQLite's WAL, 0.2 ms on this machine's disk; a WAL flush and a round
trip on PostgreSQL) takes under 1 ms: on the loop, a batch of 16 bids went from 10.7 to 4.4 ms.
That is SQLite, whose statements are calls into a library. On PostgreSQL each of a batch's dozen
statements waits for a round trip and the server's work, with the interpreter released, so there
the whole batch runs in the writer's own thread while the loop takes the next requests: 923 ->
1,063 bids/s, p99 47 -> 36 ms, measured. (On 2 cores with PostgreSQL and the client on the same
machine, a bid costs about 720 us of the server's CPU, 300 us of PostgreSQL's and 40 us of the
client's: about 1,900 bids/s if all three ran perfectly in parallel.)

Rules:

- The batch behaves exactly as its submissions one after the other, in arrival order (same key:
  replay or conflict; same contract and interval: replacement), and a refused submission writes
  nothing; see :func:`~transactive.platform.crud.submit_bids`.
- The member is read in the batch's transaction, after the chain's lock, and checked as every
  request's member is (:func:`~transactive.platform.api.deps.check_member`: 401 when unknown,
  not admitted or no longer in the token's role); its bid's Ed25519 signature is checked then
  (422), since the key it is checked with is the member's key at that moment.
- When the batch's transaction fails (a database error, a lost race with another process on a
  unique constraint), each submission is retried alone in its own transaction, so one bad
  submission costs only its own answer (409 or 503 through the app's handlers).
- One writer per app; ``transactive serve --workers N`` runs one in a process of its own for
  all N server processes (:mod:`~transactive.platform.api.writer_process`). Several writers on
  one database (separate servers, or uvicorn's own workers where there is no ``SO_REUSEPORT``)
  stay correct (the chain's lock serialises them, and every check reads the database in the
  batch's transaction: nothing is cached between batches), each committing its own batches. A
  writer waits for the others' turn without blocking its event loop: on SQLite through
  :class:`_WriterTurn` (SQLite's busy handler would stop the loop, and with it every request of
  that process, while another process writes), on PostgreSQL in its own thread, blocked on the
  advisory lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from transactive.errors import ValidationError
from transactive.platform import crud
from transactive.platform import db as platform_db
from transactive.platform.api.deps import check_member
from transactive.platform.auth import TokenClaims, verify_bid_signature
from transactive.platform.errors import PlatformError
from transactive.platform.schemas import BidCreate, BidPublic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["BidSubmitter", "BidWriter"]

_log = logging.getLogger("transactive.platform.api")

#: How soon a writer first looks again whether another process's writer has finished, and the
#: longest it waits between looks (s): the wait grows by half each time (a batch takes a few ms).
_TURN_POLL_S = (0.0002, 0.002)

#: What the writer answers a submission: (the bid, whether it was created now) or the exception
#: the request raises (PlatformError, ValidationError, or a database error).
_Answer = tuple[BidPublic, bool] | BaseException


class BidSubmitter(Protocol):
    """What the bid route needs of a writer.

    This process's :class:`BidWriter`, or the writer process's
    :class:`~transactive.platform.api.writer_process.RemoteBidWriter`.
    """

    async def submit(
        self, *, claims: TokenClaims, bid_in: BidCreate, idempotency_key: str, now: datetime
    ) -> tuple[BidPublic, bool]:
        """The bid and whether this submission created it; the refusal raised."""
        ...  # pragma: no cover - a protocol

    def close(self) -> None:
        """Release what the writer holds (the app's shutdown)."""
        ...  # pragma: no cover - a protocol


@dataclass(frozen=True, eq=False)
class _Pending:
    claims: TokenClaims
    bid_in: BidCreate
    idempotency_key: str
    now: datetime
    future: asyncio.Future[tuple[BidPublic, bool]]


def _settle(future: asyncio.Future[tuple[BidPublic, bool]], answer: _Answer) -> None:
    if future.done():  # the request was cancelled (its client went away)
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


class _WriterTurn:
    """SQLite: the bid writer takes the database's write lock without ever blocking its loop.

    Every other request's transaction also begins with ``BEGIN IMMEDIATE`` (in FastAPI's thread
    pool) and holds the write lock across its awaits, which need the event loop to go on. A
    writer that waited for that lock on the loop, in SQLite's busy handler, would stop the very
    loop the lock holder needs: the server stalled for the busy timeout times the batch (found
    by the crash-safety test's gate closure under load). So the writer's connections have no
    busy wait (their own engine, ``busy_timeout=0``): ``BEGIN IMMEDIATE`` answers "database is
    locked" at once, and the writer tries again after a growing pause on the loop
    (``asyncio.sleep``), for at most the platform's busy timeout (then the batch is answered
    503, as a busy database is everywhere). Bid writers of other server processes are taken
    turns with first through an exclusive ``flock`` on a file beside the database
    (``<db>.writers``), tried the same way. PostgreSQL's writers take turns on the audit chain's
    advisory lock in their own threads (:meth:`BidWriter._write_blocking`).
    """

    def __init__(self, engine: sa.Engine | None) -> None:
        self.dialect = engine.dialect.name if engine is not None else ""
        self._fd: int | None = None
        self.sessions: sessionmaker[Session] | None = None
        if engine is not None and self.dialect == "postgresql":
            # the writer's own connection, not tested before each batch: the test is a round
            # trip of its own (a sixth of a batch's time). A connection a restarted server left
            # stale fails its batch, which is then retried one by one on a new connection (the
            # pool drops a connection whose error says it is gone)
            unpinged = platform_db.make_engine(
                engine.url.render_as_string(hide_password=False),
                pool_pre_ping=False,
                pool_size=1,
            )
            self.sessions = platform_db.make_session_factory(unpinged)
        if engine is not None and self.dialect == "sqlite":
            nowait = platform_db.make_engine(
                engine.url.render_as_string(hide_password=False), sqlite_busy_timeout_ms=0
            )
            self.sessions = platform_db.make_session_factory(nowait)
            database = engine.url.database
            if database and fcntl is not None:
                self._fd = os.open(f"{database}.writers", os.O_RDWR | os.O_CREAT, 0o600)
        self._timeout_s = platform_db.SQLITE_BUSY_TIMEOUT_MS / 1000.0

    async def take(self, session: Session) -> None:
        """Wait for this writer's turn, then begin the batch's transaction in ``session``."""
        waited, pause = 0.0, _TURN_POLL_S[0]
        while self._fd is not None and fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited > self._timeout_s:  # the database's own refusal decides below
                    break
                await asyncio.sleep(pause)
                waited, pause = waited + pause, min(pause * 1.5, _TURN_POLL_S[1])
        while True:
            try:
                session.begin()
                session.connection()  # BEGIN IMMEDIATE: the write lock, or "locked" at once
                return
            except sa.exc.OperationalError as exc:
                session.rollback()
                if "locked" not in str(exc.orig) or waited > self._timeout_s:
                    raise
                await asyncio.sleep(pause)
                waited, pause = waited + pause, min(pause * 1.5, _TURN_POLL_S[1])

    def give(self) -> None:
        """End this process's turn (after the commit or the rollback)."""
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the writer's own connections and lock file."""
        if self.sessions is not None:
            bind = self.sessions.kw.get("bind")
            if isinstance(bind, sa.Engine):
                bind.dispose()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class BidWriter:
    """Group commit of bid submissions on the event loop, in batches of up to ``max_batch``.

    Parameters
    ----------
    sessions : sessionmaker
        The app's sessions (one transaction per batch).
    max_batch : int
        The most submissions written in one transaction.

    """

    def __init__(self, sessions: sessionmaker[Session], *, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        self._sessions = sessions
        # submissions waiting, per event loop (a server has one; a test client may run each
        # request on a loop of its own), and the loops whose writer task is running
        self._pending: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._writing: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        # batches of different loops (a test client's) take turns, and so do the processes
        self._lock = threading.Lock()
        bind = sessions.kw.get("bind")
        self._turn = _WriterTurn(bind if isinstance(bind, sa.Engine) else None)
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bid-writer")

    def close(self) -> None:
        """Release the writer's own connections (the app's shutdown)."""
        self._turn.close()
        self._db_thread.shutdown(wait=True)

    async def submit(
        self, *, claims: TokenClaims, bid_in: BidCreate, idempotency_key: str, now: datetime
    ) -> tuple[BidPublic, bool]:
        """Queue a submission and wait for its answer, given once its batch is committed.

        Returns
        -------
        (BidPublic, bool)
            The bid and whether this submission created it (False: a replay of its key).

        Raises
        ------
        PlatformError, ValidationError, sqlalchemy.exc.SQLAlchemyError
            The refusal, as the synchronous path would raise it.

        """
        return await self.enqueue(
            claims=claims, bid_in=bid_in, idempotency_key=idempotency_key, now=now
        )

    def enqueue(
        self, *, claims: TokenClaims, bid_in: BidCreate, idempotency_key: str, now: datetime
    ) -> asyncio.Future[tuple[BidPublic, bool]]:
        """Queue a submission on the running loop; its future is settled after its batch.

        What :meth:`submit` awaits; the writer process
        (:mod:`~transactive.platform.api.writer_process`) answers from the future's callback.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[BidPublic, bool]] = loop.create_future()
        self._pending.setdefault(loop, []).append(
            _Pending(claims, bid_in, idempotency_key, now, future)
        )
        if loop not in self._writing:
            self._writing[loop] = loop.create_task(self._write_all(loop))
        return future

    def busy(self) -> bool:
        """Whether submissions are waiting or being written on the running loop."""
        return asyncio.get_running_loop() in self._writing

    async def drain(self) -> None:
        """Wait until every submission queued on the running loop has been answered."""
        task = self._writing.get(asyncio.get_running_loop())
        if task is not None:
            await asyncio.shield(task)

    async def _write_all(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write what waits on ``loop``, batch after batch, until nothing is left; answer each."""
        waiting: list[_Pending] = []
        try:
            while waiting := self._pending.pop(loop, []):
                for start in range(0, len(waiting), self.max_batch):
                    batch = waiting[start : start + self.max_batch]
                    answers = await self._write(loop, batch)
                    for pending, answer in zip(batch, answers, strict=True):
                        _settle(pending.future, answer)
        except BaseException as exc:  # never leave a request waiting for good
            for pending in waiting + self._pending.pop(loop, []):
                _settle(pending.future, exc)
            raise
        finally:
            del self._writing[loop]

    async def _write(
        self, loop: asyncio.AbstractEventLoop, batch: Sequence[_Pending]
    ) -> list[_Answer]:
        """One transaction for the batch; on failure, each submission in its own.

        SQLite: the statements run on the event loop (the one thread using the interpreter
        meanwhile, so no call into the driver waits for another thread to give the interpreter
        back: the GIL's convoy effect, Beazley, "Understanding the Python GIL", PyCon 2010), the
        commit too (see the module's docstring). PostgreSQL: in the writer's own thread
        (:meth:`_write_blocking`), since each of a batch's statements waits a network round trip
        and the server's work, with the interpreter released, while the loop reads and checks
        the next requests.
        """
        if self._turn.dialect == "postgresql":
            written = await loop.run_in_executor(self._db_thread, self._write_blocking, batch)
            if written is not None:
                return written
            return [a for pending in batch for a in await self._write(loop, [pending])]
        with self._lock:
            session = (self._turn.sessions or self._sessions)()
            try:
                await self._turn.take(session)
                answers = self._apply(session, batch)
                session.commit()
                return answers
            except Exception as exc:
                session.rollback()
                if len(batch) == 1:
                    return [exc]
                _log.info(
                    "a batch of %d bids failed (%s); writing them one by one", len(batch), exc
                )
            finally:
                session.close()
                self._turn.give()
        return [answer for pending in batch for answer in await self._write(loop, [pending])]

    def _write_blocking(self, batch: Sequence[_Pending]) -> list[_Answer] | None:
        """The batch's transaction in the database thread (PostgreSQL); None: write one by one.

        A batch whose connection the server closed (a restart, an idle timeout: the writer's
        connection is not tested before each batch) is written again once on a new one. That
        is safe even when the connection went during the commit: each bid's idempotency key
        makes the second write a replay of what the first committed.
        """
        with self._lock:
            for attempt in range(2):
                session = (self._turn.sessions or self._sessions)()
                try:
                    session.begin()
                    answers = self._apply(session, batch)
                    session.commit()
                    return answers
                except Exception as exc:
                    session.rollback()
                    gone = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
                    if gone and attempt == 0:
                        _log.info("the writer's connection was closed (%s); writing again", exc)
                        continue
                    if len(batch) == 1:
                        return [exc]
                    _log.info(
                        "a batch of %d bids failed (%s); writing them one by one", len(batch), exc
                    )
                    return None
                finally:
                    session.close()
        raise AssertionError("unreachable: the second attempt returns")  # pragma: no cover

    @staticmethod
    def _apply(session: Session, batch: Sequence[_Pending]) -> list[_Answer]:
        # the chain's lock, the members and everything the rules read: one round trip on
        # PostgreSQL (transactive.platform.bid_store)
        reads = crud.batch_reads(
            session,
            requests=[(p.claims.member_id, p.bid_in, p.idempotency_key) for p in batch],
            with_members=True,
        )
        answers: list[_Answer] = [RuntimeError("not answered")] * len(batch)
        submissions: list[crud.BidSubmission] = []
        positions: list[int] = []
        for k, p in enumerate(batch):
            try:
                member = check_member(reads.members.get(p.claims.member_id), p.claims)
                if member.public_key_ed25519 is not None:
                    verify_bid_signature(
                        public_key_b64=member.public_key_ed25519,
                        bid_in=p.bid_in,
                        idempotency_key=p.idempotency_key,
                    )
            except (PlatformError, ValidationError) as exc:
                answers[k] = exc
                continue
            submissions.append(crud.BidSubmission(member, p.bid_in, p.idempotency_key, p.now))
            positions.append(k)
        outcomes = crud.submit_bids(session, submissions=submissions, reads=reads)
        for k, outcome in zip(positions, outcomes, strict=True):
            if outcome.error is not None:
                answers[k] = outcome.error
            else:
                assert outcome.bid is not None
                answers[k] = (outcome.bid, outcome.created)
        return answers
