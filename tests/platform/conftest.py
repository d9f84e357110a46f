"""Fixtures of the platform's tests: migrated databases on SQLite and PostgreSQL, and a world.

Databases (each migrated with :func:`transactive.platform.db.upgrade`, the real migrations):

- ``sqlite_db``: a SQLite file in ``tmp_path`` (WAL, foreign keys on).
- ``postgres_db``: a fresh schema in the ``test`` database of the PostgreSQL server at
  127.0.0.1:5432 (user ``postgres``, trust auth), dropped after the test. A missing server makes
  the test FAIL (an error in the fixture), never skip.
- ``db``: parametrized over both back ends (``db[sqlite]``, ``db[postgresql]``): a test taking
  ``db`` runs on each.

Each yields a :class:`PlatformDb`: ``url``, ``engine``, ``factory`` (a sessionmaker) and
``backend``; ``with db.begin() as session: ...`` is one committed transaction.

A world on a database: ``world`` (from ``db``) admits a platform operator, a DSO, a network owner,
a retailer (the supplier) and four prosumers, and returns a :class:`World` of their ids;
``make_market(db, world, feeder=..., **terms)`` defines a market with the world's parties and
returns its id; ``NOW`` is the fixed clock the tests pass as ``now``, and ``START`` the start of
the first interval they open (gate closed at ``START``, so bids before it are in time).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from transactive.platform import crud
from transactive.platform import db as platform_db
from transactive.platform.schemas import MarketCreate, MarketKind, MemberCreate, Role

#: The PostgreSQL server the tests run against (CI and development alike).
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: A fixed clock: the first interval starts an hour later.
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
START = NOW + timedelta(hours=1)
#: A stand-in for a hashed client secret (the tests of auth hash real ones).
SECRET_HASH = "scrypt$test$not-a-secret"


@dataclass(frozen=True)
class PlatformDb:
    """A migrated database: its URL, engine and session factory."""

    url: str
    engine: sa.Engine
    factory: sessionmaker[Session]
    backend: str

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """One transaction: committed at the end of the block, rolled back on an exception."""
        with self.factory.begin() as session:
            yield session


@pytest.fixture
def sqlite_db(tmp_path: Any) -> Iterator[PlatformDb]:
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    platform_db.upgrade(url)
    engine = platform_db.make_engine(url)
    yield PlatformDb(url, engine, platform_db.make_session_factory(engine), "sqlite")
    engine.dispose()


@contextmanager
def fresh_postgres_schema(server_url: str = POSTGRES_URL) -> Iterator[PlatformDb]:
    """A new schema on the server, migrated; dropped at the end. No server: an error, not a skip."""
    schema = f"tx_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # raises OperationalError when the server is missing
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            url = f"{server_url}?options=-csearch_path%3D{schema}"
            platform_db.upgrade(url)
            engine = platform_db.make_engine(url)
            try:
                factory = platform_db.make_session_factory(engine)
                yield PlatformDb(url, engine, factory, "postgresql")
            finally:
                engine.dispose()
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


@pytest.fixture
def postgres_db() -> Iterator[PlatformDb]:
    with fresh_postgres_schema() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> PlatformDb:
    name = "sqlite_db" if request.param == "sqlite" else "postgres_db"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class World:
    """Member ids of a small platform."""

    operator: int
    dso: int
    owner: int
    retailer: int
    prosumers: tuple[int, ...]


def admit(session: Session, name: str, role: Role, public_key: str | None = None) -> int:
    member_in = MemberCreate(name=name, role=role, public_key_ed25519=public_key)
    return crud.create_member(session, member_in=member_in, client_secret_hash=SECRET_HASH).id


@pytest.fixture
def world(db: PlatformDb) -> World:
    with db.begin() as s:
        return World(
            operator=admit(s, "operator", Role.PLATFORM_OPERATOR),
            dso=admit(s, "dso", Role.DSO),
            owner=admit(s, "wires", Role.NETWORK_OWNER),
            retailer=admit(s, "retailer", Role.RETAILER),
            prosumers=tuple(admit(s, f"home {k}", Role.PROSUMER) for k in range(4)),
        )


def make_market(db: PlatformDb, world: World, *, feeder: str | None = None, **terms: Any) -> int:
    """A real-time market with the world's parties; ``terms`` override MarketCreate fields."""
    fields: dict[str, Any] = {
        "name": "rt",
        "kind": MarketKind.REAL_TIME,
        "feeder": feeder,
        "interval_s": 300,
        "price_cap_per_kwh": 1.0,
        "price_floor_per_kwh": 0.0,
        "supply_price_per_kwh": 0.10,
        "supply_capacity_kw": 5000.0,
        "imbalance_price_per_kwh": 0.2,
        "transaction_fee_per_kwh": 0.001,
        "dispatch_fee_per_kwh": 0.002,
        "dso_member_id": world.dso,
        "network_owner_member_id": world.owner,
        "supplier_member_id": world.retailer,
    }
    fields.update(terms)
    with db.begin() as s:
        return crud.create_market(s, market_in=MarketCreate(**fields), currency="USD").id
