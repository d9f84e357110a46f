"""A node's own copy of the ledger: its SQLite store of blocks and of what they did.

Every node keeps every block of the stream, one row per stream message, as a record of the
audit hash chain (:mod:`transactive.platform.audit_chain`: canonical JSON, SHA-256 over
length-prefixed fields; Haber & Stornetta 1991, §5.1): ``seq`` is the stream sequence number,
``at_iso`` the time the ordering service stored the message (the same for every node), ``actor``
the proposer, ``kind`` ``genesis``, ``block.applied`` or ``block.refused``, and the payload the
message itself (base64, so a malformed one is kept byte for byte) and the contract's outcome
(:class:`~transactive.ledger.contract.BlockOutcome`). Every node computes the same record for
the same message, so the chain's head is the same on every honest node and a copy that differs
shows in its head (:func:`recomputed_head`).

Beside the chain, tables for reading (``tx``, ``trade``, ``posting``) hold what the outcomes say,
written in the same transaction as their block (derived rows: :func:`derived_rows`;
``ledger verify`` checks them against a replay). SQLite in WAL mode with ``synchronous=NORMAL``:
a committed block survives a killed process (SQLite's WAL documentation, §"Performance
considerations": only a power loss may lose the last commits, and the node then fetches them
again from the stream).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transactive.platform.audit_chain import GENESIS, ChainRecord, canonical_json, record_hash

__all__ = [
    "KIND_APPLIED",
    "KIND_GENESIS",
    "KIND_REFUSED",
    "Store",
    "derived_rows",
    "make_record",
    "payload_of",
    "recomputed_head",
]

KIND_GENESIS = "genesis"
KIND_APPLIED = "block.applied"
KIND_REFUSED = "block.refused"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS block (
    seq INTEGER PRIMARY KEY, at_iso TEXT NOT NULL, actor TEXT, kind TEXT NOT NULL,
    payload_json TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tx (
    seq INTEGER NOT NULL, idx INTEGER NOT NULL, tx_id TEXT, author TEXT, kind TEXT,
    status TEXT NOT NULL, reason TEXT, PRIMARY KEY (seq, idx)
);
CREATE TABLE IF NOT EXISTS trade (
    seq INTEGER NOT NULL, idx INTEGER NOT NULL, n INTEGER NOT NULL,
    interval_start_s INTEGER NOT NULL, buyer TEXT NOT NULL, seller TEXT NOT NULL,
    energy_kwh REAL NOT NULL, price_per_kwh REAL NOT NULL, PRIMARY KEY (seq, idx, n)
);
CREATE TABLE IF NOT EXISTS posting (
    seq INTEGER NOT NULL, idx INTEGER NOT NULL, n INTEGER NOT NULL,
    interval_start_s INTEGER NOT NULL, debit TEXT NOT NULL, credit TEXT NOT NULL,
    amount_minor INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (seq, idx, n)
);
"""

#: Rows for the reading tables, per table name, from one block's outcome.
DerivedRows = dict[str, list[tuple[Any, ...]]]


def make_record(
    prev: ChainRecord | None, seq: int, at_iso: str, raw: bytes, outcome: dict[str, Any]
) -> ChainRecord:
    """The chain record of stream message ``seq`` (its bytes and the contract's outcome).

    The kind follows the outcome's status (``genesis``, ``applied``, ``refused``); the actor is
    the block's proposer (None for a message that names none).
    """
    status = outcome["status"]
    kind = {"genesis": KIND_GENESIS, "applied": KIND_APPLIED}.get(status, KIND_REFUSED)
    payload_json = canonical_json(
        {"message_b64": base64.b64encode(raw).decode("ascii"), "outcome": outcome}
    )
    actor = outcome.get("proposer")
    prev_hash = GENESIS if prev is None else prev.hash
    digest = record_hash(seq, at_iso, actor, kind, payload_json, prev_hash)
    return ChainRecord(seq, at_iso, actor, kind, payload_json, prev_hash, digest)


def derived_rows(seq: int, outcome: dict[str, Any]) -> DerivedRows:
    """The ``tx``, ``trade`` and ``posting`` rows of one block's outcome."""
    rows: DerivedRows = {"tx": [], "trade": [], "posting": []}
    for tx in outcome.get("txs", ()):
        idx = tx["index"]
        rows["tx"].append(
            (seq, idx, tx["tx_id"], tx["author"], tx["kind"], tx["status"], tx["reason"])
        )
        effects = tx["effects"]
        for n, trade in enumerate(effects.get("trades", ())):
            rows["trade"].append(
                (
                    seq,
                    idx,
                    n,
                    trade["interval_start_s"],
                    trade["buyer"],
                    trade["seller"],
                    trade["energy_kwh"],
                    trade["price_per_kwh"],
                )
            )
        for n, posting in enumerate(effects.get("postings", ())):
            rows["posting"].append(
                (
                    seq,
                    idx,
                    n,
                    effects["interval_start_s"],
                    posting["debit"],
                    posting["credit"],
                    posting["amount_minor"],
                    posting["reason"],
                )
            )
    return rows


def recomputed_head(records: Iterator[ChainRecord] | Sequence[ChainRecord]) -> tuple[int, str]:
    """The number of records and the chain's head recomputed from their contents alone.

    Each hash is computed afresh over the stored fields and the hash computed before it (never
    the stored hashes), so an edited, removed, inserted or reordered record anywhere gives
    another head than an intact copy of the same length.
    """
    head = GENESIS
    count = 0
    for rec in records:
        head = record_hash(rec.seq, rec.at_iso, rec.actor, rec.kind, rec.payload_json, head)
        count += 1
    return count, head


@dataclass
class Store:
    """A node's SQLite store (one connection, owned by the node's event loop)."""

    path: Path
    conn: sqlite3.Connection

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Store:
        """Open (and for writing, create) a store.

        Raises
        ------
        FileNotFoundError
            A read-only open of a file that does not exist.

        """
        path = Path(path)
        if read_only:
            if not path.exists():
                raise FileNotFoundError(f"no ledger store at {path}")
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        else:
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        conn.execute("PRAGMA busy_timeout=10000")
        return cls(path, conn)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table (None if unset)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def append(self, blocks: Sequence[tuple[ChainRecord, dict[str, Any]]]) -> None:
        """Store records and their derived rows in one transaction (all or none)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for rec, outcome in blocks:
                conn.execute(
                    "INSERT INTO block VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.seq,
                        rec.at_iso,
                        rec.actor,
                        rec.kind,
                        rec.payload_json,
                        rec.prev_hash,
                        rec.hash,
                    ),
                )
                rows = derived_rows(rec.seq, outcome)
                conn.executemany("INSERT INTO tx VALUES (?, ?, ?, ?, ?, ?, ?)", rows["tx"])
                conn.executemany("INSERT INTO trade VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows["trade"])
                conn.executemany(
                    "INSERT INTO posting VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows["posting"]
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def records(self) -> Iterator[ChainRecord]:
        """Every record in storage order (by ``seq``, the primary key)."""
        for row in self.conn.execute(
            "SELECT seq, at_iso, actor, kind, payload_json, prev_hash, hash FROM block ORDER BY seq"
        ):
            yield ChainRecord(*row)

    def last(self) -> ChainRecord | None:
        """The last record stored, or None."""
        row = self.conn.execute(
            "SELECT seq, at_iso, actor, kind, payload_json, prev_hash, hash FROM block "
            "ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else ChainRecord(*row)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a reading table (``tx``, ``trade``, ``posting``), ordered by key."""
        if table not in ("tx", "trade", "posting"):
            raise ValueError(f"no reading table {table!r}")
        keys = "seq, idx" if table == "tx" else "seq, idx, n"
        return list(self.conn.execute(f"SELECT * FROM {table} ORDER BY {keys}"))


def payload_of(record: ChainRecord) -> tuple[bytes, dict[str, Any]]:
    """A record's message bytes and recorded outcome.

    Raises
    ------
    ValueError
        The payload is not the JSON a node writes (edited beyond reading).

    """
    payload = json.loads(record.payload_json)
    if not isinstance(payload, dict) or set(payload) != {"message_b64", "outcome"}:
        raise ValueError("its payload is not {message_b64, outcome}")
    raw = base64.b64decode(payload["message_b64"], validate=True)
    outcome = payload["outcome"]
    if not isinstance(outcome, dict):
        raise ValueError("its outcome is not an object")
    return raw, outcome
