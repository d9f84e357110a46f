"""The platform's tables (issue 13).

Members, markets, intervals, contracts, bids (and their points), awards, meter readings,
accounts, double entries and the hash-chained audit log, as in
:mod:`transactive.platform.models` at this revision.

Revision ID: 0001
Revises:
Create Date: 2026-12-01 21:57:32.893373
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "platform_operator",
                "dso",
                "tso",
                "network_owner",
                "retailer",
                "aggregator",
                "prosumer",
                name="role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "admitted",
                "suspended",
                "removed",
                name="member_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("client_secret_hash", sa.String(length=512), nullable=False),
        sa.Column("public_key_ed25519", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member")),
        sa.UniqueConstraint("client_id", name=op.f("uq_member_client_id")),
    )
    op.create_table(
        "audit_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_member_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_member_id"], ["member.id"], name=op.f("fk_audit_record_actor_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_record")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_record_seq")),
    )
    op.create_table(
        "market",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "real_time",
                "day_ahead",
                "flexibility",
                name="market_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("feeder", sa.String(length=500), nullable=True),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("gate_closure_lead_s", sa.Integer(), nullable=False),
        sa.Column("price_cap_per_kwh", sa.Double(), nullable=False),
        sa.Column("price_floor_per_kwh", sa.Double(), nullable=False),
        sa.Column("supply_price_per_kwh", sa.Double(), nullable=True),
        sa.Column("supply_capacity_kw", sa.Double(), nullable=True),
        sa.Column("imbalance_price_per_kwh", sa.Double(), nullable=False),
        sa.Column("transaction_fee_per_kwh", sa.Double(), nullable=False),
        sa.Column("dispatch_fee_per_kwh", sa.Double(), nullable=False),
        sa.Column("network_import_per_kwh", sa.Double(), nullable=False),
        sa.Column("network_export_per_kwh", sa.Double(), nullable=False),
        sa.Column("loss_price_per_kwh", sa.Double(), nullable=False),
        sa.Column("dso_member_id", sa.Integer(), nullable=True),
        sa.Column("network_owner_member_id", sa.Integer(), nullable=True),
        sa.Column("supplier_member_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("currency_exponent", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dso_member_id"], ["member.id"], name=op.f("fk_market_dso_member_id_member")
        ),
        sa.ForeignKeyConstraint(
            ["network_owner_member_id"],
            ["member.id"],
            name=op.f("fk_market_network_owner_member_id_member"),
        ),
        sa.ForeignKeyConstraint(
            ["supplier_member_id"], ["member.id"], name=op.f("fk_market_supplier_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market")),
    )
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "member",
                "market",
                name="account_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("market_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'member' AND member_id IS NOT NULL AND market_id IS NULL) OR "
            "(kind = 'market' AND market_id IS NOT NULL AND member_id IS NULL)",
            name=op.f("ck_account_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_account_market_id_market")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_account_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("market_id", name=op.f("uq_account_market_id")),
        sa.UniqueConstraint("member_id", name=op.f("uq_account_member_id")),
        sa.UniqueConstraint("name", name=op.f("uq_account_name")),
    )
    op.create_table(
        "contract",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("market_id", sa.Integer(), nullable=False),
        sa.Column("bus", sa.String(length=200), nullable=False),
        sa.Column("meter_id", sa.String(length=200), nullable=False),
        sa.Column("max_power_kw", sa.Double(), nullable=False),
        sa.Column("represents", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_contract_market_id_market")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_contract_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract")),
    )
    op.create_index(op.f("ix_contract_member_id"), "contract", ["member_id"], unique=False)
    op.create_table(
        "interval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("market_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gate_closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "open",
                "gate_closed",
                "cleared",
                "checked",
                "settled",
                name="interval_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("clearing_price_per_kwh", sa.Double(), nullable=True),
        sa.Column("clearing_quantity_kw", sa.Double(), nullable=True),
        sa.Column("supply_kw", sa.Double(), nullable=True),
        sa.Column("locational_price_per_kwh", sa.JSON(), nullable=True),
        sa.Column("secure", sa.Boolean(), nullable=True),
        sa.Column("n_rounds", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_interval_market_id_market")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interval")),
        sa.UniqueConstraint("market_id", "start", name=op.f("uq_interval_market_id_start")),
    )
    op.create_table(
        "award",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interval_id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("bus", sa.String(length=200), nullable=False),
        sa.Column("power_kw", sa.Double(), nullable=False),
        sa.Column("energy_kwh", sa.Double(), nullable=False),
        sa.Column("price_per_kwh", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_award")),
        sa.UniqueConstraint(
            "interval_id", "contract_id", name=op.f("uq_award_interval_id_contract_id")
        ),
    )
    op.create_index(op.f("ix_award_member_id"), "award", ["member_id"], unique=False)
    op.create_table(
        "bid",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interval_id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "replaced",
                "withdrawn",
                name="bid_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contract.id"], name=op.f("fk_bid_contract_id_contract")
        ),
        sa.ForeignKeyConstraint(
            ["interval_id"], ["interval.id"], name=op.f("fk_bid_interval_id_interval")
        ),
        sa.ForeignKeyConstraint(["member_id"], ["member.id"], name=op.f("fk_bid_member_id_member")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bid")),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name=op.f("uq_bid_member_id_idempotency_key")
        ),
    )
    op.create_index("ix_bid_interval_id_status", "bid", ["interval_id", "status"], unique=False)
    op.create_index(
        "uq_bid_active_interval_contract",
        "bid",
        ["interval_id", "contract_id"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interval_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "energy",
                "imbalance",
                "ancillary",
                "transaction_fee",
                "dispatch_fee",
                "network_fee",
                "congestion_rent",
                "rounding",
                name="entry_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("debit_account_id", sa.Integer(), nullable=False),
        sa.Column("credit_account_id", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_entry_amount_positive")),
        sa.ForeignKeyConstraint(
            ["credit_account_id"], ["account.id"], name=op.f("fk_entry_credit_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"], ["account.id"], name=op.f("fk_entry_debit_account_id_account")
        ),
        sa.ForeignKeyConstraint(
            ["interval_id"], ["interval.id"], name=op.f("fk_entry_interval_id_interval")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry")),
    )
    op.create_index(
        op.f("ix_entry_credit_account_id"), "entry", ["credit_account_id"], unique=False
    )
    op.create_index(op.f("ix_entry_debit_account_id"), "entry", ["debit_account_id"], unique=False)
    op.create_index(op.f("ix_entry_interval_id"), "entry", ["interval_id"], unique=False)
    op.create_table(
        "meter_reading",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("interval_id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("energy_kwh", sa.Double(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contract.id"], name=op.f("fk_meter_reading_contract_id_contract")
        ),
        sa.ForeignKeyConstraint(
            ["interval_id"], ["interval.id"], name=op.f("fk_meter_reading_interval_id_interval")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_meter_reading_member_id_member")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_reading")),
        sa.UniqueConstraint(
            "interval_id", "contract_id", name=op.f("uq_meter_reading_interval_id_contract_id")
        ),
    )
    op.create_table(
        "bid_point",
        sa.Column("bid_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("price_per_kwh", sa.Double(), nullable=False),
        sa.Column("power_kw", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["bid_id"], ["bid.id"], name=op.f("fk_bid_point_bid_id_bid")),
        sa.PrimaryKeyConstraint("bid_id", "seq", name=op.f("pk_bid_point")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("bid_point")
    op.drop_table("meter_reading")
    op.drop_index(op.f("ix_entry_interval_id"), table_name="entry")
    op.drop_index(op.f("ix_entry_debit_account_id"), table_name="entry")
    op.drop_index(op.f("ix_entry_credit_account_id"), table_name="entry")
    op.drop_table("entry")
    op.drop_index("uq_bid_active_interval_contract", table_name="bid")
    op.drop_index("ix_bid_interval_id_status", table_name="bid")
    op.drop_table("bid")
    op.drop_index(op.f("ix_award_member_id"), table_name="award")
    op.drop_table("award")
    op.drop_table("interval")
    op.drop_index(op.f("ix_contract_member_id"), table_name="contract")
    op.drop_table("contract")
    op.drop_table("account")
    op.drop_table("market")
    op.drop_table("audit_record")
    op.drop_table("member")
