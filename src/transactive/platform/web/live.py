"""The page's live view: one watcher per process, Server-Sent Events to every open page.

Every accepted message and state change appends one audit record in its own transaction
(:mod:`transactive.platform.audit`), so the head of the log (``max(seq)``, one read of the
unique index on ``seq``) moves exactly when something the page shows may have changed, whichever
process of ``transactive serve --workers N`` made the change, on SQLite and PostgreSQL alike.
:class:`ChangeFeed` polls it every ``poll_s`` (200 ms) while at least one page listens (and
stops when the last one leaves); when it moves, one grouped read of the records since
(``kind`` per range of ``seq``, again on the index) says which fragments changed
(:func:`topics_of`), and every listener is told their names and the new head.

:func:`event_stream` is the body of ``GET /ui/events`` (WHATWG HTML, §9.2 "Server-sent events"):
each message is ``id: <head seq>`` and ``data: {"seq": ..., "topics": [...]}``; a comment every
``keepalive_s`` keeps proxies from closing the stream. A stream ends after ``max_age_s`` (10 s)
and the browser reconnects (``retry:``) with ``Last-Event-ID``, whose missed topics are sent
first; so a server that shuts down waits for no stream longer than that, and a reconnect
loses nothing.
A listener's pending topics are a set, so a slow page gets one message with everything that
changed, never a growing queue. The listener is removed when its stream ends or the client goes
away (the stream's task is cancelled, and ``finally`` unsubscribes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform.models import AuditRecord

__all__ = ["ALL_TOPICS", "ChangeFeed", "Listener", "event_stream", "topics_of"]

_log = logging.getLogger("transactive.platform.web")

#: The page's fragments that a change can touch.
ALL_TOPICS = frozenset({"market", "curves", "map", "accounts", "audit"})

#: Which fragments each kind of audit record touches (every record touches the audit state).
_TOPICS_BY_PREFIX: tuple[tuple[str, frozenset[str]], ...] = (
    ("interval.gate_closed", frozenset({"market"})),
    ("interval.cleared", frozenset({"market", "curves", "accounts"})),
    ("interval.checked", frozenset({"market", "curves", "map", "accounts"})),
    ("interval.settled", frozenset({"market", "accounts"})),
    ("intervals.", frozenset({"market"})),
    ("market.", frozenset({"market", "curves", "map"})),
    ("member.", frozenset({"accounts"})),
    ("contract.", frozenset({"accounts"})),
    ("bid.", frozenset({"accounts"})),
    ("meter_reading.", frozenset({"accounts"})),
)


def topics_of(kinds: Iterable[str]) -> frozenset[str]:
    """The fragments that records of these kinds change (always the audit state)."""
    topics = {"audit"}
    for kind in kinds:
        for prefix, touched in _TOPICS_BY_PREFIX:
            if kind.startswith(prefix):
                topics |= touched
                break
    return frozenset(topics)


class Listener:
    """One open page: the topics changed since it was last told, and the head seq."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.seq = 0
        self._ready = asyncio.Event()

    def tell(self, seq: int, topics: Iterable[str]) -> None:
        """Add changed topics (merged with any not yet sent)."""
        self.pending |= set(topics)
        self.seq = max(self.seq, seq)
        self._ready.set()

    async def next(self, timeout_s: float) -> tuple[int, frozenset[str]] | None:
        """The head seq and the topics changed since the last call; None after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return None
        self._ready.clear()
        topics, self.pending = frozenset(self.pending), set()
        return self.seq, topics


_HEAD = sa.select(sa.func.max(AuditRecord.seq))


class ChangeFeed:
    """The process's one watcher of the audit head, and the pages it tells.

    Parameters
    ----------
    sessions : sessionmaker
        The app's session factory (each poll is one short read-only transaction, in a thread so
        that a slow database never stalls the event loop).
    poll_s : float
        Time between polls of the head while anyone listens.

    """

    def __init__(self, sessions: sessionmaker[Session], poll_s: float = 0.2) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.sessions = sessions
        self.poll_s = poll_s
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._head: int | None = None
        self.polls = 0

    # the database reads (run in a worker thread)

    def head_seq(self) -> int:
        """The seq of the log's last record (0 when empty)."""
        with self.sessions.begin() as session:
            return int(session.scalar(_HEAD) or 0)

    def kinds_since(self, after_seq: int, through_seq: int) -> list[str]:
        """The distinct kinds of the records in ``(after_seq, through_seq]``."""
        with self.sessions.begin() as session:
            return list(
                session.scalars(
                    sa.select(AuditRecord.kind)
                    .where(AuditRecord.seq > after_seq, AuditRecord.seq <= through_seq)
                    .group_by(AuditRecord.kind)
                )
            )

    async def changes_since(self, after_seq: int) -> tuple[int, frozenset[str]]:
        """The head now and what changed after ``after_seq`` (a page reconnecting)."""
        head = await asyncio.to_thread(self.head_seq)
        if head < after_seq:  # another database, or the log was cut: everything may differ
            return head, ALL_TOPICS
        if head == after_seq:
            return head, frozenset()
        kinds = await asyncio.to_thread(self.kinds_since, after_seq, head)
        return head, topics_of(kinds)

    # listeners

    async def subscribe(self) -> Listener:
        """A new listener; the watcher starts with the first."""
        listener = Listener()
        if self._head is None:
            self._head = await asyncio.to_thread(self.head_seq)
        listener.seq = self._head
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="transactive-web-change-feed")
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        """Forget a listener; the watcher stops with the last."""
        self.listeners.discard(listener)
        if not self.listeners and self._task is not None:
            self._task.cancel()
            self._task = None
            self._head = None

    async def close(self) -> None:
        """Stop the watcher (the app's shutdown)."""
        self.listeners.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.poll_s * min(2**failures, 25))
            try:
                head = await asyncio.to_thread(self.head_seq)
                self.polls += 1
                last = self._head if self._head is not None else head
                if head != last:
                    if head < last:
                        topics = ALL_TOPICS
                    else:
                        topics = topics_of(await asyncio.to_thread(self.kinds_since, last, head))
                    self._head = head
                    for listener in list(self.listeners):
                        listener.tell(head, topics)
                failures = 0
            except sqlalchemy.exc.SQLAlchemyError as exc:  # the database away: keep trying
                failures += 1
                _log.warning("the page's change feed could not read the audit head: %s", exc)


def _message(seq: int, topics: Iterable[str]) -> str:
    data = json.dumps({"seq": seq, "topics": sorted(topics)}, separators=(",", ":"))
    return f"id: {seq}\ndata: {data}\n\n"


async def event_stream(
    feed: ChangeFeed,
    *,
    last_event_id: int | None,
    keepalive_s: float = 15.0,
    max_age_s: float = 10.0,
    retry_ms: int = 300,
    gone: Callable[[], Awaitable[object]] | None = None,
) -> AsyncGenerator[str, None]:
    """The text of one page's event stream (see the module docstring).

    ``gone`` returns when the client has gone away (the route waits for ASGI's
    ``http.disconnect``): the stream then ends at once instead of at its next write.
    """
    loop_time = asyncio.get_running_loop().time
    listener = await feed.subscribe()
    left_task = None if gone is None else asyncio.ensure_future(gone())
    try:
        yield f"retry: {retry_ms}\n: transactive live view\n\n"
        if last_event_id is None:
            yield f"id: {listener.seq}\n\n"  # sets the browser's Last-Event-ID, dispatches nothing
        else:
            head, topics = await feed.changes_since(last_event_id)
            yield _message(head, topics) if topics else f"id: {head}\n\n"
        ends_at = loop_time() + max_age_s
        while (left := ends_at - loop_time()) > 0:
            waiting = asyncio.ensure_future(listener.next(min(keepalive_s, left)))
            if left_task is not None:
                await asyncio.wait({waiting, left_task}, return_when=asyncio.FIRST_COMPLETED)
                if left_task.done():
                    waiting.cancel()
                    return
            told = await waiting
            if told is None:
                yield ": keep-alive\n\n"
                continue
            seq, topics = told
            yield _message(seq, topics)
    finally:
        if left_task is not None:
            left_task.cancel()
        feed.unsubscribe(listener)
