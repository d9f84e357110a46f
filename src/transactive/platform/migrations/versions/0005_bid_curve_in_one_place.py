"""A bid's curve in one place, and one index less on bids (issue 13, bid submission speed).

Every accepted bid wrote its curve twice: as the message received (``bid.points``, JSON) and as
one ``bid_point`` row per breakpoint, each row with its primary-key entry and a foreign-key check
against its bid, so that clearing could read the interval's points as one table of numbers. The
database reads that table out of ``bid.points`` itself (SQLite's ``json_each``, PostgreSQL's
``json_array_elements ... WITH ORDINALITY``: :func:`transactive.platform.service.interval_curves`),
so the copy goes: a bid is one row again.

``ix_bid_interval_id_status`` goes too: every query on an interval's bids by status asks for the
active ones, which the partial unique index ``uq_bid_active_interval_contract`` (interval and
contract where active) answers, and the rest are served by
``ix_bid_interval_id_contract_id_version`` (revision 0002). The index cost an entry for every
bid and another for every replacement.

The downgrade rebuilds ``bid_point`` from ``bid.points`` and the index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.drop_table("bid_point")
    op.drop_index("ix_bid_interval_id_status", table_name="bid")


def downgrade() -> None:
    """Revert this revision (``bid_point`` filled again from every bid's ``points``)."""
    op.create_index("ix_bid_interval_id_status", "bid", ["interval_id", "status"], unique=False)
    bid_point = op.create_table(
        "bid_point",
        sa.Column("bid_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("price_per_kwh", sa.Double(), nullable=False),
        sa.Column("power_kw", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bid_id"], ["bid.id"], name=op.f("fk_bid_point_bid_id_bid")),
        sa.PrimaryKeyConstraint("bid_id", "seq", name=op.f("pk_bid_point")),
    )
    if bid_point is None:  # pragma: no cover - create_table returns the table it made
        raise RuntimeError("alembic did not return the bid_point table it created")
    bind = op.get_bind()
    bids = sa.table("bid", sa.column("id"), sa.column("points"))
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    for bid_id, points in bind.execute(sa.select(bids.c.id, bids.c.points)):
        curve = json.loads(points) if isinstance(points, str) else points
        rows.extend(
            {
                "bid_id": bid_id,
                "seq": seq,
                "price_per_kwh": float(point["price_per_kwh"]),
                "power_kw": float(point["power_kw"]),
                "created_at": now,
            }
            for seq, point in enumerate(curve)
        )
    if rows:
        op.bulk_insert(bid_point, rows)
