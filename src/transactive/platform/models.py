"""The platform's tables: SQLAlchemy 2 typed ORM (``Mapped[...]``), one class per table.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.1 and Table 1: member, contract, transaction (bids, awards, meter readings)
and settlement (accounts, double entries) management, with an audit log. The columns follow
:mod:`transactive.platform.schemas` (the ``XPublic`` models read these rows with
``from_attributes``) and DESIGN.md's conventions: snake_case, integer primary keys, units in the
names, money as integers of the smallest currency unit (``BIGINT``), timestamps timezone-aware
UTC (:class:`UtcDateTime`, also on SQLite, which has no time zones), ``created_at`` on each table.

Alembic's revisions (``platform/migrations/versions``) create exactly these tables; a test
compares the migrated schema with this metadata, so a change here needs a new revision.

``bid.points`` keeps a bid's curve as the message received it (for the API and the audit) and is
also what clearing reads, as one table of numbers that the database makes of every active bid's
points (revision 0005: no second copy of each curve in a table of its own);
``interval.locational_price_per_kwh`` / ``supply_kw`` keep what the security check and settlement
need.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from transactive.platform.schemas import (
    AccountKind,
    BidStatus,
    EntryKind,
    IntervalState,
    MarketKind,
    MemberStatus,
    Role,
)

__all__ = [
    "Account",
    "AuditRecord",
    "Award",
    "Base",
    "Bid",
    "Contract",
    "Entry",
    "Interval",
    "Market",
    "Member",
    "MeterReading",
    "UtcDateTime",
    "utc_now",
]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, to the microsecond (what the database keeps)."""
    return datetime.now(UTC)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every back end.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC and read back with ``tzinfo=UTC``. A naive datetime is refused (DESIGN.md: timezone-aware
    timestamps at the edges), never silently taken as local time.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive on SQLite); refuse naive datetimes."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"timestamps must be timezone-aware, got naive {value!r}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[StrEnum], name: str) -> sa.Enum:
    """A string column holding the enum's values, with a CHECK constraint (portable)."""
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base of the platform's tables."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(UtcDateTime(), default=utc_now, nullable=False)


# ---------------------------------------------------------------------------------- members


class Member(Base):
    """A member of the platform with a role and client credentials (hashed secret only)."""

    __tablename__ = "member"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    status: Mapped[MemberStatus] = mapped_column(_enum(MemberStatus, "member_status"))
    client_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    client_secret_hash: Mapped[str] = mapped_column(sa.String(512))
    public_key_ed25519: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = _created_at()


# ---------------------------------------------------------------------------------- markets


class Market(Base):
    """A market the operator defines: its interval length, limits, supply, fees and parties."""

    __tablename__ = "market"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[MarketKind] = mapped_column(_enum(MarketKind, "market_kind"))
    feeder: Mapped[str | None] = mapped_column(sa.String(500))
    interval_s: Mapped[int]
    gate_closure_lead_s: Mapped[int]
    price_cap_per_kwh: Mapped[float]
    price_floor_per_kwh: Mapped[float]
    supply_price_per_kwh: Mapped[float | None]
    supply_capacity_kw: Mapped[float | None]
    imbalance_price_per_kwh: Mapped[float]
    transaction_fee_per_kwh: Mapped[float]
    dispatch_fee_per_kwh: Mapped[float]
    network_import_per_kwh: Mapped[float]
    network_export_per_kwh: Mapped[float]
    loss_price_per_kwh: Mapped[float]
    dso_member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id"))
    network_owner_member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id"))
    supplier_member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id"))
    currency: Mapped[str] = mapped_column(sa.String(3))
    #: Digits of the currency's minor unit (ISO 4217: 2 for USD): money is integers of it.
    currency_exponent: Mapped[int]
    created_at: Mapped[datetime] = _created_at()


class Interval(Base):
    """One market interval and its state; the clearing outcome once cleared and checked."""

    __tablename__ = "interval"
    __table_args__ = (sa.UniqueConstraint("market_id", "start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    market_id: Mapped[int] = mapped_column(sa.ForeignKey("market.id"))
    start: Mapped[datetime] = mapped_column(UtcDateTime())
    end: Mapped[datetime] = mapped_column(UtcDateTime())
    gate_closes_at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[IntervalState] = mapped_column(_enum(IntervalState, "interval_state"))
    clearing_price_per_kwh: Mapped[float | None]
    clearing_quantity_kw: Mapped[float | None]
    #: The substation's delivery into the market (kW, + import), from the clearing.
    supply_kw: Mapped[float | None]
    #: Bus -> clearing price plus the DSO's surcharge there, for every bus with an award.
    locational_price_per_kwh: Mapped[dict[str, float] | None] = mapped_column(sa.JSON)
    secure: Mapped[bool | None]
    n_rounds: Mapped[int | None]
    #: The DSO's last security check (its final round): the voltage of every feeder node (p.u.,
    #: in the feeder's node order) and the loading of every branch (per cent of its rating, in
    #: branch order; None where the branch has no rating). None before a network check.
    node_vm_pu: Mapped[list[float] | None] = mapped_column(sa.JSON)
    branch_loading_pct: Mapped[list[float | None] | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = _created_at()


# --------------------------------------------------------------------------------- contracts


class Contract(Base):
    """A member's standing terms in one market: bus, meter, power limit, represented parties."""

    __tablename__ = "contract"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id"), index=True)
    market_id: Mapped[int] = mapped_column(sa.ForeignKey("market.id"))
    bus: Mapped[str] = mapped_column(sa.String(200))
    meter_id: Mapped[str] = mapped_column(sa.String(200))
    max_power_kw: Mapped[float]
    represents: Mapped[list[str]] = mapped_column(sa.JSON)
    active: Mapped[bool]
    created_at: Mapped[datetime] = _created_at()


# -------------------------------------------------------------------------------------- bids


class Bid(Base):
    """One accepted bid submission (a curve for one contract in one interval)."""

    __tablename__ = "bid"
    __table_args__ = (
        sa.UniqueConstraint("member_id", "idempotency_key"),
        # a contract's latest bid in an interval, read by every submission (revision 0002)
        sa.Index("ix_bid_interval_id_contract_id_version", "interval_id", "contract_id", "version"),
        # at most one active bid per contract and interval (partial unique index)
        sa.Index(
            "uq_bid_active_interval_contract",
            "interval_id",
            "contract_id",
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    interval_id: Mapped[int] = mapped_column(sa.ForeignKey("interval.id"))
    contract_id: Mapped[int] = mapped_column(sa.ForeignKey("contract.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id"))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    content_hash: Mapped[str] = mapped_column(sa.String(64))
    #: The points as received: ``[{"price_per_kwh": p, "power_kw": q}, ...]``.
    points: Mapped[list[dict[str, float]]] = mapped_column(sa.JSON)
    signature: Mapped[str | None] = mapped_column(sa.String(200))
    status: Mapped[BidStatus] = mapped_column(_enum(BidStatus, "bid_status"))
    version: Mapped[int]
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = _created_at()


class Award(Base):
    """A contract's cleared power in an interval, at its locational price.

    Awards are derived rows: the lifecycle writes them only from the interval's active bids, read
    in the same transaction, and each bid references its interval, contract and member with
    foreign keys. The award table itself carries none: with 100,000 awards per interval,
    PostgreSQL's per-row foreign-key triggers tripled the time of writing them (measured: COPY of
    100,000 awards 2.6 s with the three keys, 0.8 s without), against the issue's 5 s for an
    interval's clearing, check and settlement.
    """

    __tablename__ = "award"
    __table_args__ = (sa.UniqueConstraint("interval_id", "contract_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    interval_id: Mapped[int]
    contract_id: Mapped[int]
    member_id: Mapped[int] = mapped_column(index=True)
    bus: Mapped[str] = mapped_column(sa.String(200))
    power_kw: Mapped[float]
    energy_kwh: Mapped[float]
    price_per_kwh: Mapped[float]
    created_at: Mapped[datetime] = _created_at()


class MeterReading(Base):
    """A contract's metered energy in an interval (once per contract and interval)."""

    __tablename__ = "meter_reading"
    __table_args__ = (sa.UniqueConstraint("interval_id", "contract_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    interval_id: Mapped[int] = mapped_column(sa.ForeignKey("interval.id"))
    contract_id: Mapped[int] = mapped_column(sa.ForeignKey("contract.id"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("member.id"))
    energy_kwh: Mapped[float]
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = _created_at()


# -------------------------------------------------------------------------------- settlement


class Entry(Base):
    """One double entry: ``amount_minor`` (> 0) debited to one account and credited to another."""

    __tablename__ = "entry"
    __table_args__ = (sa.CheckConstraint("amount_minor > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    interval_id: Mapped[int] = mapped_column(sa.ForeignKey("interval.id"), index=True)
    kind: Mapped[EntryKind] = mapped_column(_enum(EntryKind, "entry_kind"))
    debit_account_id: Mapped[int] = mapped_column(sa.ForeignKey("account.id"), index=True)
    credit_account_id: Mapped[int] = mapped_column(sa.ForeignKey("account.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(sa.BigInteger)
    memo: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = _created_at()


class Account(Base):
    """A member's account with the platform, or a market's clearing account.

    ``balance_minor`` (debits minus credits) is computed by the database when the row is loaded
    (correlated sums over ``entry``), never stored, so it cannot drift from the entries.
    """

    __tablename__ = "account"
    __table_args__ = (
        sa.CheckConstraint(
            "(kind = 'member' AND member_id IS NOT NULL AND market_id IS NULL) OR "
            "(kind = 'market' AND market_id IS NOT NULL AND member_id IS NULL)",
            name="owner",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AccountKind] = mapped_column(_enum(AccountKind, "account_kind"))
    member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id"), unique=True)
    market_id: Mapped[int | None] = mapped_column(sa.ForeignKey("market.id"), unique=True)
    #: The ledger's key: ``member:<id>`` or ``market:<id>``.
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    currency: Mapped[str] = mapped_column(sa.String(3))
    created_at: Mapped[datetime] = _created_at()
    balance_minor: Mapped[int] = column_property(
        sa.type_coerce(
            sa.select(sa.func.coalesce(sa.func.sum(Entry.amount_minor), 0))
            .where(Entry.debit_account_id == id)
            .correlate_except(Entry)
            .scalar_subquery()
            - sa.select(sa.func.coalesce(sa.func.sum(Entry.amount_minor), 0))
            .where(Entry.credit_account_id == id)
            .correlate_except(Entry)
            .scalar_subquery(),
            sa.BigInteger,
        )
    )


# ------------------------------------------------------------------------------------- audit


class AuditRecord(Base):
    """One link of the hash chain (:mod:`transactive.platform.audit_chain`)."""

    __tablename__ = "audit_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(unique=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor_member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("member.id"))
    kind: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = _created_at()
