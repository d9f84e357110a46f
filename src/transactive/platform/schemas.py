"""The platform's data contract: one pydantic model family per entity, as the API speaks them.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.1 and Table 1: the weakly-centralized platform manages members,
contracts, transactions (bids, awards) and settlement, observably and auditably. Shaped like
FastAPI's full-stack template: for each entity ``XCreate`` (what a caller sends to make one),
``XUpdate`` (what may change, every field optional) and ``XPublic`` (what the API returns).

Conventions (DESIGN.md): power kW (positive consumption), energy kWh, prices currency/kWh,
money as integers of the smallest currency unit (``*_minor``), timestamps timezone-aware UTC.
Bid curves travel in the project's long point form (:meth:`transactive.curves.BidCurves.to_points`):
an ordered list of ``(price_per_kwh, power_kw)`` points per bid, prices non-decreasing and power
non-increasing; a single point is a block bid.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = [
    "AccountKind",
    "AccountPublic",
    "AuditRecordPublic",
    "AuditVerification",
    "AwardPublic",
    "BidCreate",
    "BidPoint",
    "BidPublic",
    "BidStatus",
    "BusAggregatePublic",
    "ContractCreate",
    "ContractPublic",
    "ContractUpdate",
    "EntryKind",
    "EntryPublic",
    "IntervalPublic",
    "IntervalState",
    "IntervalsCreate",
    "MarketCreate",
    "MarketKind",
    "MarketPublic",
    "MarketUpdate",
    "MemberCreate",
    "MemberCreated",
    "MemberPublic",
    "MemberStatus",
    "MemberUpdate",
    "MeterReadingCreate",
    "MeterReadingPublic",
    "PricePublic",
    "Refusal",
    "Role",
    "Token",
    "Unprocessable",
    "ValidationIssue",
]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
#: A row id: the tables key rows by SQL INTEGER (32 bits on PostgreSQL, 64 on SQLite), so a
#: number outside 32 bits names no row and is refused (422) before it reaches the database
RowId = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


# ---------------------------------------------------------------------------------- members


class Role(StrEnum):
    """Roles of the weakly-centralized system (Hu et al. 2019, §3.1.1, Fig. 5)."""

    PLATFORM_OPERATOR = "platform_operator"
    DSO = "dso"
    TSO = "tso"
    NETWORK_OWNER = "network_owner"
    RETAILER = "retailer"
    AGGREGATOR = "aggregator"
    PROSUMER = "prosumer"


class MemberStatus(StrEnum):
    """A member is admitted by the operator, may be suspended (cannot sign in) and removed.

    A removed member is kept (its records stay auditable) but can never sign in again.
    """

    ADMITTED = "admitted"
    SUSPENDED = "suspended"
    REMOVED = "removed"


class MemberCreate(_Model):
    """What the operator sends to admit a member."""

    name: Name
    role: Role
    #: Ed25519 public key, raw 32 bytes in base64; when set, the member's bids must be signed.
    public_key_ed25519: str | None = None


class MemberUpdate(_Model):
    """What the operator may change of a member."""

    name: Name | None = None
    status: MemberStatus | None = None
    public_key_ed25519: str | None = None


class MemberPublic(_Public):
    """A member as the API shows it (never its secret)."""

    id: int
    name: str
    role: Role
    status: MemberStatus
    client_id: str
    public_key_ed25519: str | None
    created_at: datetime


class MemberCreated(MemberPublic):
    """Returned once, at admission: the only time the client secret is shown."""

    client_secret: str


class Token(BaseModel):
    """OAuth2 access token (RFC 6749 §4.4, client credentials grant; §5.1 response)."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int


# ---------------------------------------------------------------------------------- markets


class MarketKind(StrEnum):
    """The markets the operator can define (issue 13)."""

    REAL_TIME = "real_time"  # a 5-minute double auction per feeder
    DAY_AHEAD = "day_ahead"  # hourly or quarter-hourly intervals; one gate per delivery day
    FLEXIBILITY = "flexibility"  # the DSO buys congestion relief (load decrease / DG increase)


class MarketCreate(_Model):
    """A market's standing terms: feeder, interval, limits, supply and Table 1 fees."""

    name: Name
    kind: MarketKind
    #: A feeder :func:`transactive.network.load_feeder` knows (``case33bw``, a SimBench code);
    #: the DSO's security check runs on it. None: no network check (a flexibility market).
    feeder: str | None = None
    interval_s: int = Field(default=300, gt=0, le=86400)
    #: The gate closes this long before the interval starts.
    gate_closure_lead_s: int = Field(default=0, ge=0, le=30 * 86400)  # at most 30 days
    price_cap_per_kwh: float = Field(gt=0)
    price_floor_per_kwh: float = 0.0
    #: The substation's offer (the wholesale price) and its import capacity; None: no supply
    #: (only members trade).
    supply_price_per_kwh: float | None = None
    supply_capacity_kw: float | None = Field(default=None, gt=0)
    #: Metered deviations from the award pay or earn this price (currency/kWh).
    imbalance_price_per_kwh: float = Field(ge=0)
    #: Table 1 fees, per kWh traded by each member (bought or sold): transaction management to the
    #: platform operator, dispatch management to the system operator.
    transaction_fee_per_kwh: float = Field(default=0.0, ge=0)
    dispatch_fee_per_kwh: float = Field(default=0.0, ge=0)
    #: Network service (transactive.settlement.NetworkTariff's use-of-system rates and loss price).
    network_import_per_kwh: float = Field(default=0.0, ge=0)
    network_export_per_kwh: float = 0.0
    loss_price_per_kwh: float = Field(default=0.0, ge=0)
    dso_member_id: RowId | None = None
    network_owner_member_id: RowId | None = None
    #: The counterparty of the substation's supply and of imbalances (a retailer or the TSO).
    supplier_member_id: RowId | None = None


class MarketUpdate(_Model):
    """What the operator may change of a market."""

    name: Name | None = None
    imbalance_price_per_kwh: float | None = Field(default=None, ge=0)
    transaction_fee_per_kwh: float | None = Field(default=None, ge=0)
    dispatch_fee_per_kwh: float | None = Field(default=None, ge=0)


class MarketPublic(_Public):
    """A market as the API shows it."""

    id: int
    name: str
    kind: MarketKind
    feeder: str | None
    interval_s: int
    gate_closure_lead_s: int
    price_cap_per_kwh: float
    price_floor_per_kwh: float
    supply_price_per_kwh: float | None
    supply_capacity_kw: float | None
    imbalance_price_per_kwh: float
    transaction_fee_per_kwh: float
    dispatch_fee_per_kwh: float
    network_import_per_kwh: float
    network_export_per_kwh: float
    loss_price_per_kwh: float
    dso_member_id: RowId | None
    network_owner_member_id: RowId | None
    supplier_member_id: RowId | None
    currency: str


class IntervalState(StrEnum):
    """Every interval moves forward through these states, never back (issue 13)."""

    OPEN = "open"
    GATE_CLOSED = "gate_closed"
    CLEARED = "cleared"
    CHECKED = "checked"  # the DSO's security check confirmed the (surcharged) clearing
    SETTLED = "settled"


#: The years an interval may start in (UTC).
START_YEARS = (1970, 9000)


class IntervalsCreate(_Model):
    """Open ``count`` consecutive intervals of the market from ``start`` (aligned to interval_s)."""

    start: AwareDatetime
    count: int = Field(default=1, ge=1, le=10000)

    @field_validator("start")
    @classmethod
    def _within_the_calendar(cls, start: datetime) -> datetime:
        # the gate (start less the lead) and the ends (start plus count intervals) must stay
        # inside the calendar; no market runs outside these years
        if not START_YEARS[0] <= start.astimezone(UTC).year <= START_YEARS[1]:
            raise ValueError(
                f"must lie between the years {START_YEARS[0]} and {START_YEARS[1]} (UTC)"
            )
        return start


class IntervalPublic(_Public):
    """One market interval and the outcome of its clearing."""

    id: int
    market_id: RowId
    start: datetime
    end: datetime
    gate_closes_at: datetime
    state: IntervalState
    clearing_price_per_kwh: float | None
    clearing_quantity_kw: float | None
    secure: bool | None
    n_rounds: int | None


# --------------------------------------------------------------------------------- contracts


class ContractCreate(_Model):
    """A member's standing terms in one market: its bus, meter and limit."""

    member_id: RowId
    market_id: RowId
    #: The feeder bus (pandapower bus name or index as a string) the meter is connected to.
    bus: Name
    meter_id: Name
    max_power_kw: float = Field(gt=0)
    #: An aggregator's contract lists the devices or prosumers it represents.
    represents: list[Name] = Field(default_factory=list, max_length=100000)


class ContractUpdate(_Model):
    """What the operator may change of a contract."""

    max_power_kw: float | None = Field(default=None, gt=0)
    represents: list[Name] | None = None
    active: bool | None = None


class ContractPublic(_Public):
    """A contract as the API shows it."""

    id: int
    member_id: RowId
    market_id: RowId
    bus: str
    meter_id: str
    max_power_kw: float
    represents: list[str]
    active: bool


# -------------------------------------------------------------------------------------- bids


class BidPoint(_Model):
    """One breakpoint of a bid curve."""

    price_per_kwh: float = Field(allow_inf_nan=False)
    power_kw: float = Field(allow_inf_nan=False)


class BidCreate(_Model):
    """A bid curve for an open interval, under one of the member's contracts."""

    interval_id: RowId
    contract_id: RowId
    points: list[BidPoint] = Field(min_length=1, max_length=64)
    #: base64 Ed25519 signature of :func:`transactive.platform.auth.bid_signing_bytes` of this bid.
    signature: str | None = None


class BidStatus(StrEnum):
    """A bid is active until replaced by a newer one or withdrawn."""

    ACTIVE = "active"
    REPLACED = "replaced"
    WITHDRAWN = "withdrawn"


class BidPublic(_Public):
    """A bid as the API shows it (to its member and the operator only)."""

    id: int
    interval_id: RowId
    contract_id: RowId
    member_id: RowId
    idempotency_key: str
    points: list[BidPoint]
    status: BidStatus
    version: int  # 1 for the contract's first bid in the interval, +1 per replacement
    submitted_at: datetime


class AwardPublic(_Public):
    """What a contract was awarded in a cleared (and checked) interval."""

    interval_id: RowId
    contract_id: RowId
    member_id: RowId
    bus: str
    power_kw: float
    energy_kwh: float
    price_per_kwh: float  # the clearing price plus the DSO's surcharge at the bus


class PricePublic(_Public):
    """What is published to every member once an interval is cleared."""

    interval_id: RowId
    state: IntervalState
    clearing_price_per_kwh: float
    locational_price_per_kwh: dict[str, float]  # bus -> price


class BusAggregatePublic(_Public):
    """The DSO's view (paper §3.2): per bus, the aggregate of the curves, never one member's."""

    bus: str
    n_bids: int
    points: list[BidPoint]


class MeterReadingCreate(_Model):
    """A contract's metered energy over one interval (+ consumed, − injected)."""

    interval_id: RowId
    contract_id: RowId
    energy_kwh: float = Field(allow_inf_nan=False)


class MeterReadingPublic(_Public):
    """A meter reading as the API shows it."""

    id: int
    interval_id: RowId
    contract_id: RowId
    member_id: RowId
    energy_kwh: float
    received_at: datetime


# -------------------------------------------------------------------------------- settlement


class AccountKind(StrEnum):
    """The ledger's account kinds."""

    MEMBER = "member"  # a member's account with the platform: debits are what it owes
    MARKET = "market"  # the market's clearing account: zero after every settled interval


class EntryKind(StrEnum):
    """Settlement items of Hu et al. 2019, Table 1 (TE column)."""

    ENERGY = "energy"  # energy charges and credits at the (locational) price
    IMBALANCE = "imbalance"  # metered minus awarded, at the imbalance price
    ANCILLARY = "ancillary"  # ancillary-service payments (flexibility market awards)
    TRANSACTION_FEE = "transaction_fee"  # to the platform operator
    DISPATCH_FEE = "dispatch_fee"  # to the system operator
    NETWORK_FEE = "network_fee"  # to the network owner (use of system, losses)
    CONGESTION_RENT = "congestion_rent"  # the surcharges' surplus, to the DSO
    ROUNDING = "rounding"  # the clearing account's sub-unit residual, to the platform operator


class AccountPublic(_Public):
    """An account and its balance."""

    id: int
    kind: AccountKind
    member_id: RowId | None
    market_id: RowId | None
    name: str
    balance_minor: int  # sum of debits minus sum of credits
    currency: str


class EntryPublic(_Public):
    """One double-entry posting: the amount moves from the credit to the debit account."""

    id: int
    interval_id: RowId
    kind: EntryKind
    debit_account_id: RowId
    credit_account_id: RowId
    amount_minor: int = Field(gt=0)
    memo: str


# ------------------------------------------------------------------------------------- audit


class AuditRecordPublic(_Public):
    """One record of the hash-chained audit log."""

    seq: int
    at: datetime
    actor_member_id: RowId | None
    kind: str
    payload: dict[str, object]
    prev_hash: str
    hash: str


class AuditVerification(BaseModel):
    """The outcome of checking the audit chain end to end."""

    ok: bool
    n_records: int
    head_hash: str | None
    #: Every problem found: the sequence number and what is wrong there (edited, removed,
    #: reordered, broken link).
    problems: list[str]


# ------------------------------------------------------------------------------ 422 answers


class ValidationIssue(BaseModel):
    """One problem of a malformed request, as FastAPI's request validation reports it."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class Refusal(BaseModel):
    """The platform's own refusal (:class:`~transactive.platform.errors.PlatformError`)."""

    code: str
    message: str
    problems: list[str] = []


class Unprocessable(BaseModel):
    """A 422 answer: the request's validation issues, or the platform's refusal of its content."""

    detail: list[ValidationIssue] | Refusal
