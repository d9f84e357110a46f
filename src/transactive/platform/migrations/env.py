"""Alembic environment of the platform's database (run by :func:`transactive.platform.db.upgrade`).

Online mode connects with :func:`transactive.platform.db.make_engine` (SQLite in WAL with
foreign keys on; PostgreSQL through psycopg 3), or uses the connection a caller put in
``config.attributes["connection"]``. Offline mode (``alembic upgrade --sql``) writes the SQL.
SQLite runs migrations in batch mode, the only way it can alter a table (Alembic, "Running
Batch Migrations for SQLite").
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from transactive.platform.db import make_engine
from transactive.platform.models import Base
from transactive.platform.openadr import models as _openadr_models  # noqa: F401 (its tables)

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Write the migrations' SQL for the configured URL without connecting."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on a new engine for the URL."""
    given = config.attributes.get("connection")
    if given is not None:
        _configure_and_run(given)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("the Alembic config has no sqlalchemy.url")
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _configure_and_run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
