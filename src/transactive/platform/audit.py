"""The audit log in the database: every accepted message and state change, hash-chained.

Hu et al. 2019, §3.1.1: the platform's interfaces are observable and auditable. Each accepted
create, update and state change appends one :class:`~transactive.platform.models.AuditRecord` in
the same transaction as the change itself (so a change is durable and logged, or neither); the
record's hash covers its sequence number, time, actor, kind, canonical payload and the previous
record's hash (:mod:`transactive.platform.audit_chain`, the pure part). :func:`verify_database`
reads the log in insertion order (primary key) and reports every record that was edited, removed
or reordered, by its sequence number. :func:`append_many` appends a batch's records in one bulk
insert (the links computed in memory from the head, in order; the payload stored as the
canonical text its hash covers): the chain is the one :func:`append` would make one by one.

Writers are serialised: :func:`lock_chain` takes PostgreSQL's transaction-scoped advisory lock
(``pg_advisory_xact_lock``, PostgreSQL manual §9.27.10) before a writing transaction reads what
it will change; on SQLite the ``BEGIN IMMEDIATE`` of :func:`transactive.platform.db.make_engine`
already holds the database's write lock. So the chain has no forks and check-then-insert rules
(idempotency keys, one active bid per contract) hold under concurrent requests.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from transactive.platform import audit_chain
from transactive.platform import db as platform_db
from transactive.platform.models import AuditRecord
from transactive.platform.schemas import AuditVerification

__all__ = [
    "CHAIN_LOCK_KEY",
    "COLUMNS",
    "append",
    "append_many",
    "chain_rows",
    "head",
    "holds_chain_lock",
    "list_records",
    "lock_chain",
    "mark_chain_locked",
    "verify_database",
]

#: The advisory lock key of the audit chain on PostgreSQL (any constant; "TXAU" in ASCII).
CHAIN_LOCK_KEY = 0x54584155

#: The chain's last record (built once: building a statement costs more than running it).
_HEAD = sa.select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)

#: Records read per batch when verifying a long log.
_VERIFY_BATCH = 10_000


def lock_chain(session: Session) -> None:
    """Serialise writers: hold the chain's lock until the transaction ends.

    PostgreSQL: ``pg_advisory_xact_lock`` (released at commit or rollback), asked once per
    transaction (a batch's steps each make sure of it; every ask is a round trip). SQLite:
    nothing to do, the transaction began with ``BEGIN IMMEDIATE``.
    """
    if session.get_bind().dialect.name != "postgresql" or holds_chain_lock(session):
        return
    session.execute(sa.select(sa.func.pg_advisory_xact_lock(CHAIN_LOCK_KEY)))
    mark_chain_locked(session)


def mark_chain_locked(session: Session) -> None:
    """Note that the session's transaction took the chain's lock itself (a pipelined ask)."""
    session.info[_CHAIN_LOCKED] = session.get_transaction()


#: ``session.info`` key: the transaction that holds the chain's lock.
_CHAIN_LOCKED = "transactive.chain_locked"


def holds_chain_lock(session: Session) -> bool:
    """Whether the session's transaction holds the chain's lock (PostgreSQL)."""
    transaction = session.get_transaction()
    return transaction is not None and session.info.get(_CHAIN_LOCKED) is transaction


def head(session: Session) -> audit_chain.ChainRecord | None:
    """The last record of the chain (only its ``seq`` and ``hash`` are read), None when empty."""
    head = session.execute(_HEAD).first()
    if head is None:
        return None
    return audit_chain.ChainRecord(int(head.seq), "", None, "", "", "", str(head.hash))


def append(
    session: Session,
    *,
    actor_member_id: int | None,
    kind: str,
    payload: Mapping[str, Any],
) -> AuditRecord:
    """Append one record to the chain in the session's transaction.

    Parameters
    ----------
    session : Session
        The transaction of the change being logged.
    actor_member_id : int or None
        Who caused it (None: the platform itself, e.g. a scheduled gate closure).
    kind : str
        What happened (``member.created``, ``bid.submitted``, ``interval.cleared``, ...).
    payload : mapping
        The accepted message or the change, JSON-serialisable (canonicalised for the hash).

    Returns
    -------
    AuditRecord
        The new record (flushed: ``seq`` and ``hash`` are set).

    """
    lock_chain(session)
    at = datetime.now(UTC)  # the time of logging (the caller's clock is in the payload)
    body = dict(payload)
    link = audit_chain.next_record(
        head(session),
        at_iso=audit_chain.iso_utc(at),
        actor=actor_member_id,
        kind=kind,
        payload=body,
    )
    record = AuditRecord(
        seq=link.seq,
        at=at,
        actor_member_id=actor_member_id,
        kind=kind,
        payload=body,
        prev_hash=link.prev_hash,
        hash=link.hash,
    )
    session.add(record)
    session.flush()
    return record


def append_many(
    session: Session, records: Sequence[tuple[int | None, str, Mapping[str, Any]]]
) -> list[str]:
    """Append records to the chain in the given order, in one INSERT, in the session's transaction.

    The same chain as :func:`append` called once per record (the links are computed in memory
    from the head, in order): a batch of bids is logged as its submissions would be one by one.

    Parameters
    ----------
    session : Session
        The transaction of the changes being logged.
    records : sequence of (actor_member_id, kind, payload)
        As the arguments of :func:`append`.

    Returns
    -------
    list of str
        The hash of each new record (the last is the chain's new head).

    """
    if not records:
        return []
    lock_chain(session)
    to_db = platform_db.driver_time(session)
    rows = chain_rows(head(session), records, at=datetime.now(UTC))
    platform_db.bulk_insert(
        session,
        AuditRecord.__table__,
        COLUMNS,
        [(r[0], to_db(r[1]), *r[2:7], to_db(r[7])) for r in rows],
    )
    return [str(r[6]) for r in rows]


def chain_rows(
    prev: audit_chain.ChainRecord | None,
    records: Sequence[tuple[int | None, str, Mapping[str, Any]]],
    *,
    at: datetime,
    text_keys: bool = False,
) -> list[tuple[Any, ...]]:
    """The rows of ``records`` linked after ``prev`` (the chain's head), all logged ``at``.

    Each row holds the values of the audit table's columns (seq, at, actor_member_id, kind,
    payload as its canonical text, prev_hash, hash, created_at), the times aware.
    ``text_keys``: see :func:`transactive.platform.audit_chain.canonical_json`.
    """
    at_iso = audit_chain.iso_utc(at)
    rows: list[tuple[Any, ...]] = []
    for actor, kind, payload in records:
        prev = audit_chain.next_record(
            prev, at_iso=at_iso, actor=actor, kind=kind, payload=payload, text_keys=text_keys
        )
        # the payload is stored as its canonical text (what the hash covers)
        rows.append((prev.seq, at, actor, kind, prev.payload_json, prev.prev_hash, prev.hash, at))
    return rows


#: The columns :func:`append_many` writes, in its rows' order.
COLUMNS = ("seq", "at", "actor_member_id", "kind", "payload", "prev_hash", "hash", "created_at")


def _chain_records(session: Session) -> Iterator[audit_chain.ChainRecord]:
    rows = session.execute(
        sa.select(
            AuditRecord.seq,
            AuditRecord.at,
            AuditRecord.actor_member_id,
            AuditRecord.kind,
            AuditRecord.payload,
            AuditRecord.prev_hash,
            AuditRecord.hash,
        )
        .order_by(AuditRecord.id)
        .execution_options(yield_per=_VERIFY_BATCH)
    )
    for r in rows:
        yield audit_chain.ChainRecord(
            seq=int(r.seq),
            at_iso=audit_chain.iso_utc(r.at),
            actor=None if r.actor_member_id is None else int(r.actor_member_id),
            kind=str(r.kind),
            payload_json=audit_chain.canonical_json(r.payload),
            prev_hash=str(r.prev_hash),
            hash=str(r.hash),
        )


def verify_database(session: Session) -> AuditVerification:
    """Check the whole chain: every edited, removed or reordered record, by its seq.

    The records are read in insertion order (primary key), so a record moved by renumbering
    shows up out of order, a deleted one as a gap and a broken link, an edited one (any field,
    the payload included) as a hash that does not match its content.
    """
    problems = audit_chain.verify(_chain_records(session))
    n = int(session.scalar(sa.select(sa.func.count()).select_from(AuditRecord)) or 0)
    head_hash = session.scalar(
        sa.select(AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    )
    return AuditVerification(
        ok=not problems, n_records=n, head_hash=head_hash, problems=list(problems)
    )


def list_records(session: Session, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
    """Records with ``seq > after_seq``, oldest first, at most ``limit`` (for paging the log)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return list(
        session.scalars(
            sa.select(AuditRecord)
            .where(AuditRecord.seq > after_seq)
            .order_by(AuditRecord.seq)
            .limit(limit)
        )
    )
