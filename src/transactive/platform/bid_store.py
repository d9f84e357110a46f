"""What a batch of bids reads from the database and writes to it, on each back end.

:func:`transactive.platform.crud.submit_bids` decides every submission of a batch in memory
(replay, conflict, refusal, replacement, version, audit links); this module does its I/O: one
:func:`read` of everything the rules look at, one :func:`write` of what they decided, in the
caller's transaction with the audit chain's lock held.

- Any back end (SQLite): SQLAlchemy statements built once, one after the other; SQLite runs
  them in-process, so a statement costs a library call.
- PostgreSQL: every statement is a network round trip and SQLAlchemy's execution of one costs
  more CPU than PostgreSQL's answer to it. The batch's reads are independent of each other, and
  so are its writes, so each group goes in ONE round trip through the driver's pipeline mode
  (libpq's pipeline, PostgreSQL protocol §55.2.4 "Pipelining"; psycopg 3 ``Connection.pipeline``):
  the chain's advisory lock first, then the reads, answered in order once the lock is held.
  Lists are bound as arrays (``= ANY(%b)``, ``unnest``), so every statement's text is the same
  whatever the batch's size and psycopg prepares it once per connection (its
  ``prepare_threshold``) instead of PostgreSQL parsing and planning it for each batch; and in
  PostgreSQL's binary format (``%b``), which psycopg writes without escaping each element (its
  text format runs a regular expression over every string of an array: 16 JSON payloads cost
  540 us of CPU as text, 57 us as binary, measured). Measured
  in the writer: a batch of 16 bids went from 15 round trips and 8.2 ms of the writer's CPU to
  3 round trips and (see DESIGN.md's figures) a fraction of it.

Bid ids: on PostgreSQL the batch reserves one value of the table's sequence per distinct
idempotency key, read with the other reads (a replayed or refused key leaves a gap, as a rolled
back insert does); on SQLite the largest id plus one onwards (the write lock is held).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from transactive.platform import audit, audit_chain
from transactive.platform import db as platform_db
from transactive.platform.models import (
    AuditRecord,
    Bid,
    Contract,
    Interval,
    Market,
    Member,
)
from transactive.platform.schemas import (
    BidStatus,
    IntervalState,
    MarketKind,
    MemberStatus,
    Role,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "AUDIT_COLUMNS",
    "BID_COLUMNS",
    "BatchReads",
    "BatchWrites",
    "ContractTerms",
    "IntervalTerms",
    "LatestBid",
    "MarketTerms",
    "StoredBid",
    "read",
    "write",
]


class IntervalTerms(NamedTuple):
    """What the rules read of an interval."""

    id: int
    market_id: int
    state: IntervalState
    gate_closes_at: datetime


class ContractTerms(NamedTuple):
    """What the rules read of a contract."""

    id: int
    member_id: int
    market_id: int
    active: bool
    max_power_kw: float


class MarketTerms(NamedTuple):
    """What the rules read of a market."""

    id: int
    price_floor_per_kwh: float
    price_cap_per_kwh: float
    kind: MarketKind
    dso_member_id: int | None


class StoredBid(NamedTuple):
    """A stored bid whose key a submission of the batch uses (read whole: it may be replayed)."""

    id: int
    interval_id: int
    contract_id: int
    member_id: int
    idempotency_key: str
    points: list[dict[str, float]]
    status: BidStatus
    version: int
    submitted_at: datetime
    content_hash: str


class LatestBid(NamedTuple):
    """The latest version of an (interval, contract)'s bids."""

    id: int
    interval_id: int
    contract_id: int
    version: int
    status: BidStatus
    content_hash: str


@dataclass(frozen=True, eq=False)
class BatchReads:
    """Everything a batch's rules read, in the batch's transaction (the chain's lock held).

    ``by_key`` and ``latest`` may hold rows no submission asks for (lists bind as separate
    member and key, interval and contract lists); the caller keeps the pairs it asked for.
    ``ids`` gives unused bid ids in increasing order, at least one per distinct key asked.
    """

    members: dict[int, Member]
    by_key: Sequence[Bid | StoredBid]
    intervals: dict[int, IntervalTerms]
    contracts: dict[int, ContractTerms]
    markets: dict[int, MarketTerms]
    latest: Sequence[LatestBid]
    audit_head: audit_chain.ChainRecord | None
    ids: Iterator[int]


@dataclass(frozen=True, eq=False)
class BatchWrites:
    """What a batch decided: bids replaced, new bids (each with its curve), the audit records.

    Rows are tuples in the order of :data:`BID_COLUMNS` and :data:`AUDIT_COLUMNS`; timestamps
    aware (converted for the driver here), JSON as its text.
    """

    replaced_ids: Sequence[int]
    bids: Sequence[tuple[Any, ...]]
    audit_rows: Sequence[tuple[Any, ...]]


#: The columns of a new bid, in :attr:`BatchWrites.bids` order.
BID_COLUMNS = (
    "id",
    "interval_id",
    "contract_id",
    "member_id",
    "idempotency_key",
    "content_hash",
    "points",
    "signature",
    "status",
    "version",
    "submitted_at",
    "created_at",
)
#: The columns of a new audit record (as :func:`transactive.platform.audit.append_many`).
AUDIT_COLUMNS = audit.COLUMNS
_BID_TIMES = (10, 11)
_AUDIT_TIMES = (1, 7)


def read(
    session: Session,
    *,
    key_pairs: Sequence[tuple[int, str]],
    bid_pairs: Sequence[tuple[int, int]],
    with_members: bool,
) -> BatchReads:
    """Take the audit chain's lock and read what a batch's rules need.

    Parameters
    ----------
    session : Session
        In its transaction.
    key_pairs : sequence of (member id, idempotency key)
        The batch's keys: the bids stored under them are read; one new id is reserved for each.
    bid_pairs : sequence of (interval id, contract id)
        The intervals (with their markets) and contracts the batch names, and the latest bid of
        each pair.
    with_members : bool
        Also read the keys' members (else ``members`` is empty).

    """
    key_pairs, bid_pairs = list(dict.fromkeys(key_pairs)), list(dict.fromkeys(bid_pairs))
    if session.get_bind().dialect.name == "postgresql":
        return _read_postgresql(
            session, key_pairs=key_pairs, bid_pairs=bid_pairs, with_members=with_members
        )
    if session.get_bind().dialect.name == "sqlite":
        return _read_sqlite(
            session, key_pairs=key_pairs, bid_pairs=bid_pairs, with_members=with_members
        )
    return _read_sqlalchemy(
        session, key_pairs=key_pairs, bid_pairs=bid_pairs, with_members=with_members
    )


def write(session: Session, writes: BatchWrites) -> None:
    """Write a batch's decisions in the caller's transaction.

    Replacements go before the inserts, so the partial unique index on active bids sees one
    active bid per (interval, contract) at a time.
    """
    if not writes.bids:
        return
    if session.get_bind().dialect.name == "postgresql":
        _write_postgresql(session, writes)
        return
    convert = platform_db.driver_time(session)
    converted: dict[datetime, Any] = {}  # a batch's rows share their few request times

    def to_db(at: datetime) -> Any:
        value = converted.get(at)
        if value is None:
            value = converted[at] = convert(at)
        return value

    if writes.replaced_ids and session.get_bind().dialect.name == "sqlite":
        # a fixed text on the driver's connection, as the reads (see the SQLite section):
        # building and compiling the UPDATE ... IN (...) was a tenth of the server's CPU
        ids = list(writes.replaced_ids)
        _sqlite_run(
            session,
            f"UPDATE bid SET status = ? WHERE id IN ({_sqlite_marks(len(ids), 1)})",
            [BidStatus.REPLACED.value, *ids],
        )
    elif writes.replaced_ids:
        bids = sa.table("bid", sa.column("id"), sa.column("status"))
        session.execute(
            sa.update(bids)
            .where(bids.c.id.in_(list(writes.replaced_ids)))
            .values(status=BidStatus.REPLACED.value)
        )
    for table, columns, rows, times in (
        (Bid.__table__, BID_COLUMNS, writes.bids, _BID_TIMES),
        (AuditRecord.__table__, AUDIT_COLUMNS, writes.audit_rows, _AUDIT_TIMES),
    ):
        platform_db.bulk_insert(session, table, columns, [_timed(r, times, to_db) for r in rows])


def _timed(
    row: tuple[Any, ...], times: tuple[int, ...], to_db: Callable[[datetime], Any]
) -> tuple[Any, ...]:
    values = list(row)
    for k in times:
        values[k] = to_db(values[k])
    return tuple(values)


# ------------------------------------------------------------------------------- SQLAlchemy


@dataclass(frozen=True)
class _Queries:
    members: sa.Select[Member]
    by_key: sa.Select[Bid]
    intervals: sa.Select[int, int, IntervalState, datetime]
    contracts: sa.Select[int, int, int, bool, float]
    markets: sa.Select[int, float, float, MarketKind, int | None]
    latest: sa.Select[int, int, int, int, BidStatus, str]
    max_id: sa.Select[int]


@functools.cache
def _queries() -> _Queries:
    """The statements, built once (building one costs more than running it on SQLite)."""

    def ids(name: str) -> sa.BindParameter[Any]:
        return sa.bindparam(name, expanding=True)

    top = (
        sa.select(Bid.interval_id, Bid.contract_id, sa.func.max(Bid.version).label("version"))
        .where(Bid.interval_id.in_(ids("interval_ids")), Bid.contract_id.in_(ids("contract_ids")))
        .group_by(Bid.interval_id, Bid.contract_id)
        .subquery()
    )
    return _Queries(
        members=sa.select(Member).where(Member.id.in_(ids("ids"))),
        # (member, key) IN (...) asked as member IN (...) AND key IN (...): lists of scalars bind
        # far faster than a list of row values; the few extra rows are dropped by the caller
        by_key=sa.select(Bid).where(
            Bid.member_id.in_(ids("member_ids")), Bid.idempotency_key.in_(ids("keys"))
        ),
        # the columns the rules read (Core rows: an ORM object costs more than its checks)
        intervals=sa.select(
            Interval.id, Interval.market_id, Interval.state, Interval.gate_closes_at
        ).where(Interval.id.in_(ids("ids"))),
        contracts=sa.select(
            Contract.id,
            Contract.member_id,
            Contract.market_id,
            Contract.active,
            Contract.max_power_kw,
        ).where(Contract.id.in_(ids("ids"))),
        markets=sa.select(
            Market.id,
            Market.price_floor_per_kwh,
            Market.price_cap_per_kwh,
            Market.kind,
            Market.dso_member_id,
        ).where(Market.id.in_(ids("ids"))),
        # each (interval, contract)'s latest bid: its largest version (read off the index
        # ix_bid_interval_id_contract_id_version), joined back to its row
        latest=sa.select(
            Bid.id, Bid.interval_id, Bid.contract_id, Bid.version, Bid.status, Bid.content_hash
        ).join(
            top,
            sa.and_(
                Bid.interval_id == top.c.interval_id,
                Bid.contract_id == top.c.contract_id,
                Bid.version == top.c.version,
            ),
        ),
        # no coalesce() around it: SQLite answers a bare max() of the key from the index
        max_id=sa.select(sa.func.max(Bid.id)),
    )


def _read_sqlalchemy(
    session: Session,
    *,
    key_pairs: Sequence[tuple[int, str]],
    bid_pairs: Sequence[tuple[int, int]],
    with_members: bool,
) -> BatchReads:
    member_ids = list({m for m, _ in key_pairs})
    keys = list({k for _, k in key_pairs})
    interval_ids = list({i for i, _ in bid_pairs})
    contract_ids = list({c for _, c in bid_pairs})
    audit.lock_chain(session)
    q = _queries()
    members = (
        {m.id: m for m in session.scalars(q.members, {"ids": list(member_ids)})}
        if with_members and member_ids
        else {}
    )
    by_key = list(session.scalars(q.by_key, {"member_ids": list(member_ids), "keys": list(keys)}))
    intervals = {
        r.id: IntervalTerms(*r) for r in session.execute(q.intervals, {"ids": list(interval_ids)})
    }
    contracts = {
        r.id: ContractTerms(*r) for r in session.execute(q.contracts, {"ids": list(contract_ids)})
    }
    market_ids = list({iv.market_id for iv in intervals.values()})
    markets = (
        {r.id: MarketTerms(*r) for r in session.execute(q.markets, {"ids": market_ids})}
        if market_ids
        else {}
    )
    latest = (
        [
            LatestBid(*r)
            for r in session.execute(
                q.latest,
                {"interval_ids": list(intervals), "contract_ids": list(contracts)},
            )
        ]
        if intervals and contracts
        else []
    )
    top = session.scalar(q.max_id)
    return BatchReads(
        members=members,
        by_key=by_key,
        intervals=intervals,
        contracts=contracts,
        markets=markets,
        latest=latest,
        audit_head=audit.head(session),
        ids=itertools.count(1 if top is None else int(top) + 1),
    )


# ----------------------------------------------------------------------------------- SQLite

# SQLite runs a statement as a library call, so SQLAlchemy's compilation and result processing
# of the six reads cost more than SQLite's answers (profiled under load: the reads were 17 % of
# the server's CPU, SQLite's own work under a fifth of that). The same reads as fixed texts run
# on the driver's connection, whose statement cache (Python's sqlite3, ``cached_statements``)
# prepares each text once; only the length of an IN list varies, up to the writer's batch size.
# Exact pairs as a VALUES table driving the join (CROSS JOIN fixes SQLite's join order: "The
# SQLite Query Optimizer Overview" §7.3), each pair one probe of the unique index (member_id,
# idempotency_key) or of ix_bid_interval_id_contract_id_version. A row-value IN over VALUES
# ``(member_id, key) IN (VALUES ...)`` was planned as a scan of the whole index: under load it
# was half of the server's CPU.


def _sqlite_run(session: Session, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
    """``sql`` on the session's SQLite driver connection, in its transaction; its rows.

    The driver's errors come out as SQLAlchemy's, as if SQLAlchemy had run the statement (the
    app answers them so: 409 on a constraint, 503 when the database is busy).
    """
    connection = session.connection()
    dbapi = connection.connection.driver_connection
    if dbapi is None:  # pragma: no cover - a checked-out connection has its driver's
        raise RuntimeError("the session's connection has no driver connection")
    errors = connection.dialect.loaded_dbapi.Error
    try:
        return list(dbapi.execute(sql, parameters))
    except errors as exc:
        raise sa.exc.DBAPIError.instance(sql, parameters, exc, errors) from exc


@functools.cache
def _sqlite_marks(n: int, width: int) -> str:
    """``(?, ?), (?, ?), ...``: ``n`` rows of ``width`` parameters (``?, ?`` for width 1)."""
    if width == 1:
        return ", ".join("?" for _ in range(n))
    row = "(" + ", ".join("?" for _ in range(width)) + ")"
    return ", ".join(row for _ in range(n))


def _sqlite_time(text: str) -> datetime:
    """A ``UtcDateTime`` value as SQLAlchemy stores it on SQLite (naive UTC text), read aware."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _read_sqlite(
    session: Session,
    *,
    key_pairs: Sequence[tuple[int, str]],
    bid_pairs: Sequence[tuple[int, int]],
    with_members: bool,
) -> BatchReads:
    member_ids = list({m for m, _ in key_pairs}) if with_members else []
    interval_ids = list({i for i, _ in bid_pairs})
    contract_ids = list({c for _, c in bid_pairs})
    audit.lock_chain(session)  # nothing to do on SQLite: the transaction began IMMEDIATE

    def rows(sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return _sqlite_run(session, sql, parameters)

    member_rows = (
        rows(
            "SELECT id, name, role, status, client_id, public_key_ed25519 FROM member "
            f"WHERE id IN ({_sqlite_marks(len(member_ids), 1)})",
            member_ids,
        )
        if member_ids
        else []
    )
    by_key_rows = (
        rows(
            f"WITH k(member_id, idempotency_key) AS (VALUES {_sqlite_marks(len(key_pairs), 2)}) "
            "SELECT b.id, b.interval_id, b.contract_id, b.member_id, b.idempotency_key, "
            "b.points, b.status, b.version, b.submitted_at, b.content_hash FROM k CROSS JOIN bid "
            "AS b ON b.member_id = k.member_id AND b.idempotency_key = k.idempotency_key",
            [v for pair in key_pairs for v in pair],
        )
        if key_pairs
        else []
    )
    interval_rows = (
        rows(
            "SELECT i.id, i.market_id, i.state, i.gate_closes_at, m.price_floor_per_kwh, "
            "m.price_cap_per_kwh, m.kind, m.dso_member_id FROM interval AS i "
            f"JOIN market AS m ON m.id = i.market_id WHERE i.id IN "
            f"({_sqlite_marks(len(interval_ids), 1)})",
            interval_ids,
        )
        if interval_ids
        else []
    )
    contract_rows = (
        rows(
            "SELECT id, member_id, market_id, active, max_power_kw FROM contract "
            f"WHERE id IN ({_sqlite_marks(len(contract_ids), 1)})",
            contract_ids,
        )
        if contract_ids
        else []
    )
    # each pair's row at its largest version (two probes of the version index per pair)
    latest_rows = (
        rows(
            f"WITH p(interval_id, contract_id) AS (VALUES {_sqlite_marks(len(bid_pairs), 2)}) "
            "SELECT b.id, b.interval_id, b.contract_id, b.version, b.status, b.content_hash "
            "FROM p CROSS JOIN bid AS b ON b.interval_id = p.interval_id "
            "AND b.contract_id = p.contract_id AND b.version = (SELECT max(version) FROM bid "
            "AS v WHERE v.interval_id = p.interval_id AND v.contract_id = p.contract_id)",
            [v for pair in bid_pairs for v in pair],
        )
        if bid_pairs
        else []
    )
    head_rows = rows("SELECT seq, hash FROM audit_record ORDER BY seq DESC LIMIT 1")
    top = rows("SELECT max(id) FROM bid")[0][0]
    return _batch_reads(
        member_rows,
        [(*r[:5], json.loads(r[5]), *r[6:]) for r in by_key_rows],
        interval_rows,
        [(r[0], r[1], r[2], bool(r[3]), r[4]) for r in contract_rows],
        latest_rows,
        head_rows[0] if head_rows else None,
        itertools.count(1 if top is None else int(top) + 1),
        to_time=_sqlite_time,
    )


def _batch_reads(
    member_rows: Sequence[Sequence[Any]],
    by_key_rows: Sequence[Sequence[Any]],
    interval_rows: Sequence[Sequence[Any]],
    contract_rows: Sequence[Sequence[Any]],
    latest_rows: Sequence[Sequence[Any]],
    head_row: Sequence[Any] | None,
    ids: Iterator[int],
    *,
    to_time: Callable[[Any], datetime],
) -> BatchReads:
    """The reads of a batch from the driver's rows (the columns of the fixed texts, in order).

    ``to_time`` reads the driver's timestamp as an aware UTC datetime (SQLite gives text).
    """
    intervals: dict[int, IntervalTerms] = {}
    markets: dict[int, MarketTerms] = {}
    for r in interval_rows:
        intervals[r[0]] = IntervalTerms(r[0], r[1], IntervalState(r[2]), to_time(r[3]))
        markets[r[1]] = MarketTerms(r[1], r[4], r[5], MarketKind(r[6]), r[7])
    return BatchReads(
        members={
            int(r[0]): Member(
                id=r[0],
                name=r[1],
                role=Role(r[2]),
                status=MemberStatus(r[3]),
                client_id=r[4],
                public_key_ed25519=r[5],
            )
            for r in member_rows
        },
        by_key=[
            StoredBid(
                r[0], r[1], r[2], r[3], r[4], r[5], BidStatus(r[6]), r[7], to_time(r[8]), r[9]
            )
            for r in by_key_rows
        ],
        intervals=intervals,
        contracts={r[0]: ContractTerms(*r) for r in contract_rows},
        markets=markets,
        latest=[LatestBid(r[0], r[1], r[2], r[3], BidStatus(r[4]), r[5]) for r in latest_rows],
        audit_head=(
            None
            if head_row is None
            else audit_chain.ChainRecord(int(head_row[0]), "", None, "", "", "", str(head_row[1]))
        ),
        ids=ids,
    )


# ------------------------------------------------------------------------------- PostgreSQL

# Table names quoted: "interval" is a reserved word. The search path decides the schema.
#
# Every lookup by a list of keys is a LATERAL probe with LIMIT 1 per key (each key is unique)
# driven by ``unnest`` of the batch's array, which the planner cannot turn into a join. psycopg
# prepares a statement on its fifth run and PostgreSQL then keeps one generic plan for the
# connection's life, made with the statistics of that moment: on a new database, those of empty
# tables, where a scan is the cheapest plan. As plain joins (or ``id = ANY(%b)``) the plans made
# then scanned every row ever after: the (member, key) read hashed the whole bid table, each
# batch's read growing with every bid stored (0.6 -> 2.7 ms over 26,000 bids, measured), and
# the replacement UPDATE below took 6-9 ms a batch after 20,000 bids. A test asks PostgreSQL for
# the generic plan of each read on empty tables.
_PG_LOCK = "SELECT pg_advisory_xact_lock(%b)"
_PG_MEMBERS = (
    "SELECT r.id, r.name, r.role, r.status, r.client_id, r.public_key_ed25519 "
    "FROM unnest(%b::int8[]) AS k(id) CROSS JOIN LATERAL ("
    'SELECT * FROM "member" WHERE member.id = k.id LIMIT 1) AS r'
)
# exact (member, key) and (interval, contract) pairs, each one index probe: lists of members and
# keys apart (ANY and ANY) made PostgreSQL scan every bid of the members, 1.4 ms a batch
_PG_BY_KEY = (
    "SELECT b.id, b.interval_id, b.contract_id, b.member_id, b.idempotency_key, b.points, "
    "b.status, b.version, b.submitted_at, b.content_hash "
    "FROM unnest(%b::int8[], %b::text[]) AS k(member_id, idempotency_key) CROSS JOIN LATERAL ("
    'SELECT * FROM "bid" WHERE bid.member_id = k.member_id '
    "AND bid.idempotency_key = k.idempotency_key LIMIT 1) AS b"
)
# an interval's market is read with it: the markets' ids are not known before this answer
_PG_INTERVALS = (
    "SELECT r.id, r.market_id, r.state, r.gate_closes_at, r.price_floor_per_kwh, "
    "r.price_cap_per_kwh, r.kind, r.dso_member_id "
    "FROM unnest(%b::int8[]) AS k(id) CROSS JOIN LATERAL ("
    "SELECT i.id, i.market_id, i.state, i.gate_closes_at, m.price_floor_per_kwh, "
    'm.price_cap_per_kwh, m.kind, m.dso_member_id FROM "interval" AS i '
    'JOIN "market" AS m ON m.id = i.market_id WHERE i.id = k.id LIMIT 1) AS r'
)
_PG_CONTRACTS = (
    "SELECT r.id, r.member_id, r.market_id, r.active, r.max_power_kw "
    "FROM unnest(%b::int8[]) AS k(id) CROSS JOIN LATERAL ("
    'SELECT * FROM "contract" WHERE contract.id = k.id LIMIT 1) AS r'
)
# each pair's largest version: one backward probe of ix_bid_interval_id_contract_id_version
_PG_LATEST = (
    "SELECT l.id, l.interval_id, l.contract_id, l.version, l.status, l.content_hash "
    "FROM unnest(%b::int8[], %b::int8[]) AS p(interval_id, contract_id) CROSS JOIN LATERAL ("
    'SELECT id, interval_id, contract_id, version, status, content_hash FROM "bid" '
    "WHERE bid.interval_id = p.interval_id AND bid.contract_id = p.contract_id "
    "ORDER BY version DESC LIMIT 1) AS l"
)
_PG_HEAD = 'SELECT seq, hash FROM "audit_record" ORDER BY seq DESC LIMIT 1'
_PG_IDS = "SELECT nextval(pg_get_serial_sequence('bid', 'id')) FROM generate_series(1, %b)"
# run unprepared (planned for its ids each time, on the table's current size): an UPDATE has no
# LATERAL probe, and its generic plan made on an empty table scanned every bid (see above)
_PG_REPLACE = 'UPDATE "bid" SET status = %b WHERE id = ANY(%b::int8[])'
# rows as one array per column: the same text for every batch size (prepared once)
_PG_INSERT_BIDS = (
    f'INSERT INTO "bid" ({", ".join(BID_COLUMNS)}) '
    "SELECT id, interval_id, contract_id, member_id, idempotency_key, content_hash, "
    "points::json, signature, status, version, submitted_at, created_at FROM unnest("
    "%b::int8[], %b::int8[], %b::int8[], %b::int8[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::int8[], %b::timestamptz[], %b::timestamptz[]) AS t("
    f"{', '.join(BID_COLUMNS)})"
)
_PG_INSERT_AUDIT = (
    f'INSERT INTO "audit_record" ({", ".join(AUDIT_COLUMNS)}) '
    "SELECT seq, at, actor_member_id, kind, payload::json, prev_hash, hash, created_at "
    "FROM unnest(%b::int8[], %b::timestamptz[], %b::int8[], %b::text[], %b::text[], "
    f"%b::text[], %b::text[], %b::timestamptz[]) AS t({', '.join(AUDIT_COLUMNS)})"
)


def _driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under the session's transaction (begun by SQLAlchemy)."""
    dbapi = session.connection().connection.driver_connection
    if dbapi is None:  # pragma: no cover - a checked-out connection has its driver's
        raise RuntimeError("the session's connection has no driver connection")
    return cast("psycopg.Connection[Any]", dbapi)


@contextmanager
def _driver_errors(session: Session, statement: str) -> Iterator[None]:
    """The driver's errors as SQLAlchemy's, as if SQLAlchemy had run the statements.

    So the app answers them as it answers any statement's (409 on a unique constraint, 503 when
    the database is gone) and a connection the server closed is dropped from the pool, not
    handed to the next transaction (SQLAlchemy invalidates it only for errors it sees itself).
    """
    import psycopg  # noqa: PLC0415 (only the PostgreSQL path loads the driver)

    try:
        yield
    except psycopg.Error as exc:
        connection = session.connection()
        dbapi = connection.connection.dbapi_connection
        gone = connection.dialect.is_disconnect(cast(Any, exc), dbapi, None)
        if gone:
            connection.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            statement, None, exc, psycopg.Error, connection_invalidated=gone
        ) from exc


def _read_postgresql(
    session: Session,
    *,
    key_pairs: Sequence[tuple[int, str]],
    bid_pairs: Sequence[tuple[int, int]],
    with_members: bool,
) -> BatchReads:
    member_ids = list({m for m, _ in key_pairs}) if with_members else []
    interval_ids = list({i for i, _ in bid_pairs})
    contract_ids = list({c for _, c in bid_pairs})
    conn = _driver_connection(session)
    lock = not audit.holds_chain_lock(session)
    with _driver_errors(session, "the bid batch's reads"), conn.pipeline():
        cursors = [conn.cursor() for _ in range(7)]
        members_c, by_key_c, intervals_c, contracts_c, latest_c, head_c, ids_c = cursors
        if lock:  # first: every read below is answered once the lock is held
            conn.cursor().execute(_PG_LOCK, (audit.CHAIN_LOCK_KEY,))
        members_c.execute(_PG_MEMBERS, (member_ids,))
        by_key_c.execute(_PG_BY_KEY, ([m for m, _ in key_pairs], [k for _, k in key_pairs]))
        intervals_c.execute(_PG_INTERVALS, (interval_ids,))
        contracts_c.execute(_PG_CONTRACTS, (contract_ids,))
        latest_c.execute(_PG_LATEST, ([i for i, _ in bid_pairs], [c for _, c in bid_pairs]))
        head_c.execute(_PG_HEAD)
        ids_c.execute(_PG_IDS, (len(key_pairs),))
        member_rows = members_c.fetchall()
        by_key_rows = by_key_c.fetchall()
        interval_rows = intervals_c.fetchall()
        contract_rows = contracts_c.fetchall()
        latest_rows = latest_c.fetchall()
        head_row = head_c.fetchone()
        id_rows = ids_c.fetchall()
    if lock:
        audit.mark_chain_locked(session)
    for c in cursors:
        c.close()
    return _batch_reads(
        member_rows,
        by_key_rows,
        interval_rows,
        contract_rows,
        latest_rows,
        head_row,
        iter(sorted(int(r[0]) for r in id_rows)),
        to_time=_utc,
    )


def _utc(at: datetime) -> datetime:
    """A timestamptz as the ORM reads it (``UtcDateTime``: aware, in UTC)."""
    return at.astimezone(UTC)


def _columns(rows: Sequence[tuple[Any, ...]], n: int) -> list[list[Any]]:
    """Rows as one list per column (what ``unnest`` takes)."""
    if not rows:
        return [[] for _ in range(n)]
    return [list(column) for column in zip(*rows, strict=True)]


def _write_postgresql(session: Session, writes: BatchWrites) -> None:
    conn = _driver_connection(session)
    with (
        _driver_errors(session, "the bid batch's writes"),
        conn.pipeline(),
        conn.cursor() as cursor,
    ):
        if writes.replaced_ids:
            cursor.execute(
                _PG_REPLACE, (BidStatus.REPLACED.value, list(writes.replaced_ids)), prepare=False
            )
        cursor.execute(_PG_INSERT_BIDS, _columns(writes.bids, len(BID_COLUMNS)))
        if writes.audit_rows:
            cursor.execute(_PG_INSERT_AUDIT, _columns(writes.audit_rows, len(AUDIT_COLUMNS)))
