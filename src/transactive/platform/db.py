"""Engines, sessions and migrations of the platform's database (SQLite or PostgreSQL).

- SQLite (the embedded default): every connection runs in WAL mode (readers never block the
  writer; SQLite manual, "Write-Ahead Logging"), with foreign keys enforced (they are off by
  default in SQLite, "SQLite Foreign Key Support" §2), ``synchronous=FULL`` by default (a
  committed transaction survives a power loss: an acknowledged message is durable; ``NORMAL`` on
  request, see :func:`make_engine`) and a ``busy_timeout``
  so a writer waits for another instead of failing at once. Every transaction starts with
  ``BEGIN IMMEDIATE``: it takes the write lock before it reads, so a read-then-write transaction
  never fails half-way with ``SQLITE_BUSY_SNAPSHOT`` when another writer committed in between
  (SQLAlchemy's SQLite dialect documentation, "Serializable isolation / Savepoints / Transactional
  DDL", the pysqlite recipe).
- PostgreSQL through psycopg 3 (``postgresql+psycopg://``; a ``postgresql://`` URL is read as
  that). Writers are serialised by the audit chain's transaction-scoped advisory lock
  (:func:`transactive.platform.audit.lock_chain`).

:func:`upgrade` runs the Alembic migrations shipped in ``platform/migrations`` programmatically
(no ``alembic.ini`` needed), to the newest revision; running it again changes nothing.

:func:`bulk_insert` writes many rows in the session's transaction through the driver:
``executemany`` on SQLite (one prepared statement); on PostgreSQL one multi-row ``INSERT`` for
what a batch of bids writes (one round trip) and ``COPY ... FROM STDIN`` for more (PostgreSQL
manual, "COPY" and §14.4.2 "Use COPY": the fastest way to load many rows; psycopg 3's
``Cursor.copy``). The bid path writes a batch's bids, points and audit records this way: row by
row through SQLAlchemy's type processing, or as PostgreSQL statements one per row, cost more than
the checks themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform.models import UtcDateTime

__all__ = [
    "MIGRATIONS_DIR",
    "SQLITE_BUSY_TIMEOUT_MS",
    "SQLITE_CACHE_KIB",
    "SQLITE_SYNCHRONOUS",
    "bulk_insert",
    "current_revision",
    "driver_time",
    "head_revision",
    "make_engine",
    "make_read_engine",
    "make_session_factory",
    "normalize_url",
    "upgrade",
]

#: The Alembic scripts, shipped inside the package (found after ``pip install``).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: SQLite's page cache per connection (KiB): an interval of 100,000 bids is read in one pass.
SQLITE_CACHE_KIB = 65_536

#: How long a SQLite writer waits for the write lock before giving up (ms).
SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> str:
    """The URL with its driver made explicit: PostgreSQL URLs use psycopg 3.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``; other drivers of
    PostgreSQL (psycopg2, asyncpg) are refused, and so is any back end other than SQLite and
    PostgreSQL, naming the URL's back end.
    """
    text = url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url
    parsed = make_url(text)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise ValueError(
                f"database URL {parsed!r}: PostgreSQL is used through psycopg 3 "
                f"(postgresql+psycopg://), not {driver!r}"
            )
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise ValueError(f"database URL {parsed!r}: SQLite is used through pysqlite")
        return parsed.render_as_string(hide_password=False)
    raise ValueError(
        f"database URL {parsed!r}: the platform runs on sqlite or postgresql, not {backend!r}"
    )


#: SQLite's ``synchronous`` settings the platform accepts (SQLite manual, "PRAGMA synchronous").
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")


def _sqlite_on_connect(synchronous: str, busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        _on_sqlite_connect(dbapi_connection, synchronous, busy_timeout_ms)

    return on_connect


def _on_sqlite_connect(dbapi_connection: Any, synchronous: str, busy_timeout_ms: int) -> None:
    # pysqlite's own transaction handling is switched off; SQLAlchemy's "begin" event below
    # emits BEGIN IMMEDIATE instead (SQLAlchemy SQLite dialect docs, pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    **kwargs: Any,
) -> Engine:
    """An engine for the platform's database at ``url`` (SQLite or PostgreSQL).

    SQLite connections get WAL, foreign keys, ``synchronous``, ``busy_timeout`` and
    ``BEGIN IMMEDIATE`` transactions (see the module docstring); an in-memory SQLite database is
    refused (each connection would see its own empty database). ``kwargs`` go to
    :func:`sqlalchemy.create_engine` (``echo``, pool options).

    ``sqlite_synchronous``: ``"FULL"`` (default) syncs the WAL at every commit, so an
    acknowledged transaction survives a power loss; ``"NORMAL"`` syncs only at checkpoints: the
    database cannot be corrupted and survives the process crashing, but the last transactions
    may roll back after a power loss or an operating-system crash (SQLite manual, "PRAGMA
    synchronous" and "Write-Ahead Logging" §"Performance Considerations"). About 3 ms less per
    commit on this machine's disk.

    ``sqlite_busy_timeout_ms``: how long a connection waits for another writer before SQLite
    answers "database is locked" (0: at once, for a caller that waits elsewhere, as the bid
    writer does on its event loop).
    """
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(
            f"sqlite_synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}, "
            f"got {sqlite_synchronous!r}"
        )
    normalized = normalize_url(url)
    parsed = make_url(normalized)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or "mode=memory" in str(parsed):
            raise ValueError(
                f"database URL {url!r}: an in-memory SQLite database cannot be shared by the "
                "platform's connections; give a file (sqlite:///path/to/platform.db)"
            )
        engine = sa.create_engine(normalized, **kwargs)
        sa.event.listen(
            engine, "connect", _sqlite_on_connect(sqlite_synchronous, sqlite_busy_timeout_ms)
        )
        sa.event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    # a connection is tested before each use (a restarted server leaves stale ones) unless
    # the caller says otherwise
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(normalized, **kwargs)


#: The most values one PostgreSQL INSERT of :func:`bulk_insert` carries; more go by COPY.
_VALUES_MAX = 20_000


def bulk_insert(
    session: Session, table: sa.FromClause, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (values of ``columns``, in order) into ``table``, in the transaction.

    Values go to the driver as they are, so they must be what it takes for the column: ``str``,
    ``int``, ``float``, ``None``, JSON as its text, an enum as its value, and a timestamp from
    :func:`driver_time`. Column defaults of the ORM (``created_at``) are not applied: give them.
    """
    if not isinstance(table, sa.Table):
        raise TypeError(f"bulk_insert writes into a table, got {table!r}")
    if not rows:
        return
    connection = session.connection()
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    target = connection.dialect.identifier_preparer.format_table(table)
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "postgresql" and len(rows) * len(columns) <= _VALUES_MAX:
            # one round trip (COPY takes two: its start, then its data and end); what a batch
            # of bids writes is far below the limit of 65,535 parameters a statement
            marks = "(" + ", ".join("%s" for _ in columns) + ")"
            cursor.execute(
                f"INSERT INTO {target} ({names}) VALUES {', '.join(marks for _ in rows)}",
                [value for row in rows for value in row],
            )
        elif connection.dialect.name == "postgresql":
            with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO {target} ({names}) VALUES ({marks})", rows)
    finally:
        cursor.close()


def _sqlite_reader_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun below, deferred
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()


def _sqlite_reader_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN")  # deferred: a read snapshot, no write lock


def make_read_engine(engine: Engine) -> Engine:
    """An engine for read-only transactions on ``engine``'s database.

    SQLite: its own connections whose transactions are a plain deferred ``BEGIN`` with
    ``PRAGMA query_only``: WAL readers read a snapshot and never wait for the writer, nor take
    the write lock every ``BEGIN IMMEDIATE`` transaction of :func:`make_engine` takes (SQLite
    manual, "Write-Ahead Logging" §2.2), so reads run side by side with each other and with the
    bid writer. PostgreSQL: the same engine with ``postgresql_readonly`` (``SET TRANSACTION
    READ ONLY``). Dispose of a SQLite read engine when done (``engine is not`` the argument).
    """
    if engine.dialect.name != "sqlite":
        return engine.execution_options(postgresql_readonly=True)
    reader = sa.create_engine(engine.url)
    sa.event.listen(reader, "connect", _sqlite_reader_connect)
    sa.event.listen(reader, "begin", _sqlite_reader_begin)
    return reader


def driver_time(session: Session) -> Callable[[datetime], Any]:
    """How an aware time goes to the driver for a ``UtcDateTime`` column (:func:`bulk_insert`).

    What SQLAlchemy would bind: PostgreSQL takes the aware datetime; SQLite its naive UTC text.
    """
    dialect = session.get_bind().dialect
    column = UtcDateTime()
    if dialect.name == "sqlite":
        # SQLAlchemy's SQLite DATETIME text ("%Y-%m-%d %H:%M:%S.%f" of the naive UTC time) by
        # datetime's C isoformat: a bid batch converts a dozen times, and the generic path
        # (TypeDecorator, then the dialect's %-formatting of a dict) was 4 % of the server's CPU
        def sqlite_text(at: datetime) -> str:
            value = column.process_bind_param(at, dialect)  # refuses a naive datetime
            if value is None:
                raise ValueError("a UtcDateTime column's time is missing (None)")
            return value.isoformat(" ", "microseconds")

        return sqlite_text
    processor = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)

    def convert(at: datetime) -> Any:
        value = column.process_bind_param(at, dialect)
        return value if processor is None else processor(value)

    return convert


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine`` that keep loaded rows usable after commit.

    Use as ``with factory.begin() as session: ...``: one transaction that commits when the block
    ends and rolls back on an exception, so a request is either fully done (and audited) or not
    at all.
    """
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % (URL-encoded characters) must be doubled
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run the platform's Alembic migrations on ``url`` up to ``revision`` (the newest).

    Idempotent: on a database already at the revision nothing happens. The SQLite file is
    created when missing.
    """
    command.upgrade(_alembic_config(url), revision)


def head_revision() -> str:
    """The newest revision shipped with the package."""
    head = ScriptDirectory.from_config(_alembic_config("sqlite:///unused.db")).get_current_head()
    if head is None:  # pragma: no cover - the package ships revisions
        raise RuntimeError(f"no Alembic revisions in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database at ``engine`` is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
