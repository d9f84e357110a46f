"""The OpenADR 3.1 VTN's tables (issue 15): registered VENs, their reports, and an audit index.

``openadr_ven`` holds the VENs members' clients register (``POST /openadr3/3.1.0/vens``);
``openadr_report`` the reports they send, as received, with the ids of the meter readings their
USAGE values became. ``ix_audit_record_kind_seq`` lets the VTN read when each interval was
cleared and checked (its events' ``createdDateTime`` / ``modificationDateTime``) from the audit
chain without scanning every bid's record (:mod:`transactive.platform.openadr.models`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "openadr_ven",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("ven_name", sa.String(length=128), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_openadr_ven_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_openadr_ven")),
        sa.UniqueConstraint("ven_name", name=op.f("uq_openadr_ven_ven_name")),
    )
    op.create_index(op.f("ix_openadr_ven_member_id"), "openadr_ven", ["member_id"], unique=False)
    op.create_table(
        "openadr_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("client_name", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("program_id", sa.String(length=128), nullable=False),
        sa.Column("report_name", sa.String(length=500), nullable=True),
        sa.Column("payload_descriptors", sa.JSON(), nullable=True),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("meter_reading_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_openadr_report_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_openadr_report")),
    )
    op.create_index(
        op.f("ix_openadr_report_member_id"), "openadr_report", ["member_id"], unique=False
    )
    op.create_index(
        op.f("ix_openadr_report_event_id"), "openadr_report", ["event_id"], unique=False
    )
    op.create_index("ix_audit_record_kind_seq", "audit_record", ["kind", "seq"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_audit_record_kind_seq", table_name="audit_record")
    op.drop_index(op.f("ix_openadr_report_event_id"), table_name="openadr_report")
    op.drop_index(op.f("ix_openadr_report_member_id"), table_name="openadr_report")
    op.drop_table("openadr_report")
    op.drop_index(op.f("ix_openadr_ven_member_id"), table_name="openadr_ven")
    op.drop_table("openadr_ven")
