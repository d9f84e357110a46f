"""The database layer: migrations on both back ends, SQLite's settings, constraints, URLs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

import transactive.platform
from tests.platform.conftest import SECRET_HASH, PlatformDb
from transactive.platform import db as platform_db
from transactive.platform.models import Base, Member, UtcDateTime
from transactive.platform.schemas import MemberStatus, Role

TABLES = {
    "member",
    "market",
    "interval",
    "contract",
    "bid",
    "award",
    "meter_reading",
    "account",
    "entry",
    "audit_record",
    "openadr_ven",
    "openadr_report",
}


def test_migrations_create_every_table_as_the_models_say(db: PlatformDb) -> None:
    names = set(sa.inspect(db.engine).get_table_names())
    assert names == TABLES | {"alembic_version"}
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []
    assert platform_db.current_revision(db.engine) == platform_db.head_revision()


def test_upgrade_twice_is_harmless(db: PlatformDb) -> None:
    with db.begin() as s:
        s.add(
            Member(
                name="a",
                role=Role.PROSUMER,
                status=MemberStatus.ADMITTED,
                client_id="c1",
                client_secret_hash=SECRET_HASH,
            )
        )
    platform_db.upgrade(db.url)
    platform_db.upgrade(db.url)
    assert platform_db.current_revision(db.engine) == platform_db.head_revision()
    with db.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Member)) == 1


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(sqlite_db: PlatformDb) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == (
            platform_db.SQLITE_BUSY_TIMEOUT_MS
        )
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_foreign_keys_and_checks_are_enforced(db: PlatformDb) -> None:
    with pytest.raises(sa.exc.IntegrityError), db.begin() as s:
        s.execute(
            sa.text(
                "INSERT INTO contract (member_id, market_id, bus, meter_id, max_power_kw, "
                "represents, active, created_at) VALUES (999, 999, '1', 'm', 1.0, '[]', true, "
                ":t)"
            ),
            {"t": datetime(2025, 1, 1)},
        )
    with pytest.raises(sa.exc.IntegrityError), db.begin() as s:
        s.execute(
            sa.text(
                "INSERT INTO member (name, role, status, client_id, client_secret_hash, "
                "created_at) VALUES ('x', 'emperor', 'admitted', 'c', 'h', :t)"
            ),
            {"t": datetime(2025, 1, 1)},
        )


def test_timestamps_are_aware_utc_and_naive_ones_are_refused(db: PlatformDb) -> None:
    with db.begin() as s:
        m = Member(
            name="a",
            role=Role.DSO,
            status=MemberStatus.ADMITTED,
            client_id="c2",
            client_secret_hash=SECRET_HASH,
        )
        s.add(m)
    with db.begin() as s:
        created = s.scalars(sa.select(Member.created_at)).one()
    assert created.tzinfo is not None and created.utcoffset() == UTC.utcoffset(None)
    with pytest.raises(sa.exc.StatementError, match="timezone-aware"), db.begin() as s:
        s.add(
            Member(
                name="b",
                role=Role.DSO,
                status=MemberStatus.ADMITTED,
                client_id="c3",
                client_secret_hash=SECRET_HASH,
                created_at=datetime(2025, 1, 1),
            )
        )


def test_urls_are_normalised_and_wrong_ones_named() -> None:
    assert platform_db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert platform_db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert platform_db.normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="psycopg 3"):
        platform_db.normalize_url("postgresql+psycopg2://u@h/d")
    with pytest.raises(ValueError, match="not 'mysql'"):
        platform_db.normalize_url("mysql://u@h/d")
    with pytest.raises(ValueError, match="in-memory"):
        platform_db.make_engine("sqlite://")


def test_the_migrations_ship_inside_the_package() -> None:
    package = platform_db.MIGRATIONS_DIR.parent
    assert package == platform_db.MIGRATIONS_DIR.parent.resolve()
    assert str(package) == str(next(iter(transactive.platform.__path__)))
    assert (platform_db.MIGRATIONS_DIR / "env.py").is_file()
    assert (platform_db.MIGRATIONS_DIR / "script.py.mako").is_file()
    assert list((platform_db.MIGRATIONS_DIR / "versions").glob("0001_*.py"))


def test_sqlite_durability_is_chosen_explicitly(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'normal.db'}"
    engine = platform_db.make_engine(url, sqlite_synchronous="NORMAL")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()
    with pytest.raises(ValueError, match="sqlite_synchronous must be one of FULL, NORMAL"):
        platform_db.make_engine(url, sqlite_synchronous="OFF")


@given(
    at=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    )
)
@settings(max_examples=300, deadline=None)
def test_the_sqlite_time_text_is_what_sqlalchemy_binds(at: datetime) -> None:
    """``driver_time`` on SQLite: the text SQLAlchemy's own bind of a UtcDateTime gives."""
    engine = sa.create_engine("sqlite://")
    with Session(engine) as s:
        convert = platform_db.driver_time(s)
        dialect = engine.dialect
        generic = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
        assert generic is not None
        expected = generic(UtcDateTime().process_bind_param(at, dialect))
        assert convert(at) == expected
        with pytest.raises(ValueError, match="timezone-aware"):
            convert(at.replace(tzinfo=None))
