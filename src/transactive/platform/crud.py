"""Create, read and update the platform's entities, each change audited in its transaction.

Hu et al. 2019, §3.1.1 and Table 1: member, contract and transaction management of the
weakly-centralized platform. Shaped like FastAPI's full-stack template: keyword-only functions
after the session, taking the ``XCreate`` / ``XUpdate`` models of
:mod:`transactive.platform.schemas` and returning ORM rows (which the ``XPublic`` models read).
The caller owns the transaction (``with factory.begin() as session: ...``): a function that
raises :class:`~transactive.platform.errors.PlatformError` leaves nothing to commit that
matters, and the caller rolls back.

Rules (issue 13):

- ``actor_member_id`` (keyword, optional) names who made the change in its audit record (the
  operator behind an API call); None records the platform itself.

- Every accepted create, update and state change appends one audit record
  (:func:`transactive.platform.audit.append`) in the same transaction; writers first take the
  chain's lock (:func:`transactive.platform.audit.lock_chain`), so the checks below see every
  committed write.
- Bids carry an idempotency key per member: the same key with the same content answers with
  the first bid (``created`` False, nothing written); the same key with other content is
  refused (409). A bid for a contract that already has an active bid in the interval replaces
  it (the old one becomes ``replaced``, the new one has the next version) until the gate closes.
  Content is the interval, the contract and the points (canonical JSON, SHA-256).
- A bid's curve is read with :meth:`transactive.curves.BidCurves.from_points` (prices
  non-decreasing, power non-increasing; a single point is a block) and must lie within the
  market's price limits and the contract's maximum power; every problem is reported (422).
- Refusals name the state: an interval that is not open, or past its gate, refuses bids (409);
  meter readings are taken once per contract, only while the interval is checked.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from transactive.curves import BidCurves
from transactive.errors import ValidationError
from transactive.market import Supply
from transactive.network import Feeder, PowerFlowRunner, load_feeder
from transactive.platform import audit, audit_chain, bid_store, gates, ledger
from transactive.platform.errors import (
    PlatformError,
    conflict,
    forbidden,
    from_validation,
    invalid,
    not_found,
    wrong_state,
)
from transactive.platform.models import (
    Account,
    Award,
    Bid,
    Contract,
    Entry,
    Interval,
    Market,
    Member,
    MeterReading,
    utc_now,
)
from transactive.platform.schemas import (
    AccountKind,
    BidCreate,
    BidPublic,
    BidStatus,
    ContractCreate,
    ContractUpdate,
    IntervalsCreate,
    IntervalState,
    MarketCreate,
    MarketKind,
    MarketUpdate,
    MemberCreate,
    MemberStatus,
    MemberUpdate,
    MeterReadingCreate,
    Role,
)

__all__ = [
    "ISO_4217_EXPONENT",
    "BidOutcome",
    "BidSubmission",
    "FeederContext",
    "batch_reads",
    "bid_content_hash",
    "create_contract",
    "create_market",
    "create_member",
    "feeder_context",
    "get_account",
    "get_bid",
    "get_contract",
    "get_interval",
    "get_market",
    "get_member",
    "get_member_by_client_id",
    "list_accounts",
    "list_awards",
    "list_bids",
    "list_contracts",
    "list_entries",
    "list_intervals",
    "list_markets",
    "list_members",
    "list_meter_readings",
    "market_supply",
    "open_intervals",
    "platform_operator",
    "record_meter_reading",
    "submit_bid",
    "submit_bids",
    "update_contract",
    "update_market",
    "update_member",
    "withdraw_bid",
]

#: Problems listed in a message before the rest are counted.
_SHOWN = 20


def _aware(now: datetime, name: str = "now") -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC)


def _listed(items: Sequence[object]) -> str:
    shown = ", ".join(str(x) for x in items[:_SHOWN])
    more = len(items) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------------- feeders


@dataclass(frozen=True, eq=False)
class FeederContext:
    """A market's feeder, loaded once per process, with what the platform needs of it.

    Attributes
    ----------
    feeder : Feeder
        The radial feeder.
    bus_node : dict of str to int
        Node of every bus a contract may name: the pandapower bus name, and its index as a
        string for buses whose name differs (a name wins over another bus's index).
    runner : PowerFlowRunner
        The power flow reused by every security check and loss allocation on this feeder.
    lock : threading.Lock
        Held while ``runner`` runs (it modifies its pandapower net).

    """

    feeder: Feeder
    bus_node: dict[str, int]
    runner: PowerFlowRunner
    lock: threading.Lock


@functools.cache
def _feeder_context(name: str) -> FeederContext:
    feeder = load_feeder(name)
    feeder.require_radial()
    bus_node: dict[str, int] = {}
    for bus, node in feeder.bus_node.items():
        bus_node.setdefault(str(bus), node)
    names = feeder.net.bus["name"] if "name" in feeder.net.bus.columns else None
    if names is not None:
        for bus, node in feeder.bus_node.items():
            value = names.get(bus)
            if isinstance(value, str) and value:
                bus_node[value] = node
    runner = PowerFlowRunner(feeder, replace_injections=True)
    return FeederContext(feeder, bus_node, runner, threading.Lock())


def feeder_context(name: str) -> FeederContext:
    """The feeder ``name`` (a built-in, a SimBench code or a file), loaded once per process.

    Raises
    ------
    PlatformError
        422 when the feeder cannot be loaded or is not radial, with every problem.

    """
    try:
        return _feeder_context(name)
    except ValidationError as exc:
        raise from_validation(f"feeder {name!r} cannot be used", exc) from exc


# ---------------------------------------------------------------------------------- members


def _checked_public_key(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise invalid(
            "public_key_ed25519 must be a raw 32-byte Ed25519 public key in base64",
            [f"public_key_ed25519: {exc}"],
        ) from exc
    return value


def create_member(
    session: Session,
    *,
    member_in: MemberCreate,
    client_secret_hash: str,
    actor_member_id: int | None = None,
) -> Member:
    """Admit a member with a generated ``client_id`` and its hashed secret.

    Its account is opened at its first settlement, in the currency of the market it settles in
    (:func:`transactive.platform.service.settle_interval`), so no currency is assumed here.
    """
    audit.lock_chain(session)
    member = Member(
        name=member_in.name,
        role=member_in.role,
        status=MemberStatus.ADMITTED,
        client_id=f"m-{secrets.token_urlsafe(12)}",
        client_secret_hash=client_secret_hash,
        public_key_ed25519=_checked_public_key(member_in.public_key_ed25519),
    )
    session.add(member)
    session.flush()
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="member.created",
        payload={
            "member_id": member.id,
            "name": member.name,
            "role": member.role.value,
            "client_id": member.client_id,
            "public_key_ed25519": member.public_key_ed25519,
        },
    )
    session.flush()
    return member


def get_member(session: Session, *, member_id: int) -> Member:
    """The member, or 404."""
    member = session.get(Member, member_id)
    if member is None:
        raise not_found("member", member_id)
    return member


def get_member_by_client_id(session: Session, *, client_id: str) -> Member | None:
    """The member with this client id, or None (the token endpoint answers per RFC 6749 §5.2)."""
    return session.scalar(sa.select(Member).where(Member.client_id == client_id))


def list_members(session: Session) -> list[Member]:
    """Every member, by id."""
    return list(session.scalars(sa.select(Member).order_by(Member.id)))


def update_member(
    session: Session,
    *,
    member: Member,
    member_in: MemberUpdate,
    actor_member_id: int | None = None,
) -> Member:
    """Rename, suspend, re-admit or remove a member, or change its public key.

    Only the fields given are changed; ``public_key_ed25519`` given as null removes the key. A
    removed member stays removed (409).
    """
    audit.lock_chain(session)
    session.refresh(member)
    given = member_in.model_fields_set
    problems = [
        f"{name}: may not be null"
        for name in ("name", "status")
        if name in given and getattr(member_in, name) is None
    ]
    if problems:
        raise invalid("member update refused", problems)
    if member.status is MemberStatus.REMOVED and given - {"name"}:
        raise wrong_state(f"member {member.id} is removed: it can never be re-admitted")
    changes: dict[str, Any] = {}
    if "name" in given and member_in.name is not None:
        member.name = changes["name"] = member_in.name
    if "status" in given and member_in.status is not None:
        member.status = member_in.status
        changes["status"] = member_in.status.value
    if "public_key_ed25519" in given:
        member.public_key_ed25519 = _checked_public_key(member_in.public_key_ed25519)
        changes["public_key_ed25519"] = member.public_key_ed25519
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="member.updated",
        payload={"member_id": member.id, "changes": changes},
    )
    return member


def platform_operator(session: Session) -> Member:
    """The platform operator who receives transaction fees: the first admitted one (lowest id).

    Raises
    ------
    PlatformError
        409 when no admitted platform operator exists.

    """
    op = session.scalar(
        sa.select(Member)
        .where(Member.role == Role.PLATFORM_OPERATOR, Member.status == MemberStatus.ADMITTED)
        .order_by(Member.id)
        .limit(1)
    )
    if op is None:
        raise conflict("no admitted platform operator: settlement has no one to pay fees to")
    return op


# ---------------------------------------------------------------------------------- markets


def _check_party(
    session: Session, problems: list[str], field: str, member_id: int | None, roles: set[Role]
) -> None:
    if member_id is None:
        return
    member = session.get(Member, member_id)
    if member is None:
        problems.append(f"{field}: member {member_id} does not exist")
    elif member.role not in roles:
        names = " or ".join(sorted(r.value for r in roles))
        problems.append(f"{field}: member {member_id} is a {member.role.value}, not a {names}")


def _check_market_terms(session: Session, market: Market | MarketCreate) -> list[str]:
    problems: list[str] = []
    if not market.price_floor_per_kwh < market.price_cap_per_kwh:
        problems.append(
            f"price_floor_per_kwh: must be below price_cap_per_kwh "
            f"({market.price_floor_per_kwh} >= {market.price_cap_per_kwh})"
        )
    if market.supply_price_per_kwh is None and market.supply_capacity_kw is not None:
        problems.append("supply_capacity_kw: given without supply_price_per_kwh")
    if market.supply_price_per_kwh is not None:
        if not (
            market.price_floor_per_kwh <= market.supply_price_per_kwh <= market.price_cap_per_kwh
        ):
            problems.append(
                f"supply_price_per_kwh: {market.supply_price_per_kwh} is outside the market's "
                f"price limits [{market.price_floor_per_kwh}, {market.price_cap_per_kwh}]"
            )
        try:
            market_supply(market)
        except ValidationError as exc:
            problems.extend(f"supply: {p}" for p in exc.problems)
        if market.supplier_member_id is None:
            problems.append(
                "supplier_member_id: a market with supply needs the supplier, the counterparty "
                "of the substation's supply and of imbalances"
            )
    if market.dispatch_fee_per_kwh > 0 and market.dso_member_id is None:
        problems.append("dso_member_id: needed to receive the dispatch fee")
    network_rates = (
        market.network_import_per_kwh,
        market.network_export_per_kwh,
        market.loss_price_per_kwh,
    )
    if any(r != 0 for r in network_rates) and market.network_owner_member_id is None:
        problems.append("network_owner_member_id: needed to receive the network fees")
    if market.loss_price_per_kwh > 0 and market.feeder is None:
        problems.append("loss_price_per_kwh: losses are allocated on a feeder; the market has none")
    _check_party(session, problems, "dso_member_id", market.dso_member_id, {Role.DSO})
    _check_party(
        session,
        problems,
        "network_owner_member_id",
        market.network_owner_member_id,
        {Role.NETWORK_OWNER, Role.DSO},
    )
    _check_party(
        session,
        problems,
        "supplier_member_id",
        market.supplier_member_id,
        {Role.RETAILER, Role.TSO, Role.AGGREGATOR},
    )
    problems.extend(gates.market_kind_problems(market))
    return problems


def market_supply(market: Market | MarketCreate) -> Supply | None:
    """The market's substation offer as :class:`transactive.market.Supply` (None: no supply).

    No capacity given means an infinite bus (``math.inf``).
    """
    if market.supply_price_per_kwh is None:
        return None
    capacity = math.inf if market.supply_capacity_kw is None else market.supply_capacity_kw
    return Supply(price_per_kwh=market.supply_price_per_kwh, capacity_kw=capacity)


#: ISO 4217 minor units of common currencies, used when ``create_market`` is given none.
ISO_4217_EXPONENT: dict[str, int] = {
    "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2,
    "INR": 2, "JPY": 0, "KRW": 0, "NOK": 2, "NZD": 2, "SEK": 2, "SGD": 2, "USD": 2, "ZAR": 2,
    "BHD": 3, "KWD": 3, "OMR": 3,
}  # fmt: skip


def create_market(
    session: Session,
    *,
    market_in: MarketCreate,
    currency: str,
    currency_exponent: int | None = None,
    actor_member_id: int | None = None,
) -> Market:
    """Define a market and its clearing account (every problem of its terms at once: 422).

    ``currency_exponent`` is the number of digits of the minor unit money is counted in
    (``Settings.currency_exponent``); when None it is the currency's ISO 4217 minor unit
    (:data:`ISO_4217_EXPONENT`), and a currency not in that table is refused without one.
    """
    audit.lock_chain(session)
    problems = _check_market_terms(session, market_in)
    exponent = ISO_4217_EXPONENT.get(currency) if currency_exponent is None else currency_exponent
    if exponent is None:
        problems.append(
            f"currency_exponent: needed for {currency!r} (not in the platform's ISO 4217 table)"
        )
    elif not 0 <= exponent <= ledger.MAX_CURRENCY_EXPONENT:
        problems.append(
            f"currency_exponent: must be 0..{ledger.MAX_CURRENCY_EXPONENT}, got {exponent}"
        )
    if market_in.feeder is not None:
        try:
            feeder_context(market_in.feeder)
        except PlatformError as exc:
            problems.extend(exc.problems or [exc.message])
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        problems.append(f"currency: must be an ISO 4217 code (three capitals), got {currency!r}")
    if problems:
        raise invalid("market refused", problems)
    market = Market(**market_in.model_dump(), currency=currency, currency_exponent=exponent)
    session.add(market)
    session.flush()
    session.add(
        Account(
            kind=AccountKind.MARKET,
            member_id=None,
            market_id=market.id,
            name=ledger.market_account(market.id),
            currency=currency,
        )
    )
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="market.created",
        payload={
            "market_id": market.id,
            "currency": currency,
            "currency_exponent": exponent,
            **market_in.model_dump(mode="json"),
        },
    )
    return market


def get_market(session: Session, *, market_id: int) -> Market:
    """The market, or 404."""
    market = session.get(Market, market_id)
    if market is None:
        raise not_found("market", market_id)
    return market


def list_markets(session: Session) -> list[Market]:
    """Every market, by id."""
    return list(session.scalars(sa.select(Market).order_by(Market.id)))


def update_market(
    session: Session,
    *,
    market: Market,
    market_in: MarketUpdate,
    actor_member_id: int | None = None,
) -> Market:
    """Change a market's name, imbalance price or fees (later settlements use them)."""
    audit.lock_chain(session)
    session.refresh(market)
    changes = {k: v for k, v in market_in.model_dump().items() if v is not None}
    for key, value in changes.items():
        setattr(market, key, value)
    problems = _check_market_terms(session, market)
    if problems:
        raise invalid("market update refused", problems)
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="market.updated",
        payload={"market_id": market.id, "changes": changes},
    )
    return market


# -------------------------------------------------------------------------------- intervals


def open_intervals(
    session: Session,
    *,
    market: Market,
    intervals_in: IntervalsCreate,
    actor_member_id: int | None = None,
) -> list[Interval]:
    """Open ``count`` consecutive intervals of the market from ``start``.

    ``start`` must be aligned to the market's interval length (a whole multiple of
    ``interval_s`` seconds since the Unix epoch, UTC); an interval that already exists is
    refused (409, listing them). Each gate closes ``gate_closure_lead_s`` before its start.
    """
    audit.lock_chain(session)
    start = _aware(intervals_in.start, "start")
    step = int(market.interval_s)
    epoch_us = round((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    if epoch_us % (step * 1_000_000) != 0:
        raise invalid(
            f"start {start.isoformat()} is not aligned to the market's {step} s intervals",
            [f"start: must be a whole multiple of {step} s since 1970-01-01T00:00:00Z"],
        )
    starts = [start + timedelta(seconds=step * k) for k in range(intervals_in.count)]
    taken = list(
        session.scalars(
            sa.select(Interval.start)
            .where(
                Interval.market_id == market.id,
                Interval.start >= starts[0],
                Interval.start <= starts[-1],
            )
            .order_by(Interval.start)
        )
    )
    if taken:
        raise conflict(
            f"market {market.id} already has {len(taken)} of these intervals "
            f"(starting {_listed([t.isoformat() for t in taken])})"
        )
    lead_s = int(market.gate_closure_lead_s)
    try:  # the market kind's gate rule (a day-ahead market closes once per delivery day)
        closes = [
            gates.gate_closes_at(market.kind, s, step, lead_s, market_id=market.id) for s in starts
        ]
    except ValidationError as exc:
        raise from_validation(f"intervals of market {market.id} refused", exc) from exc
    rows = [
        Interval(
            market_id=market.id,
            start=s,
            end=s + timedelta(seconds=step),
            gate_closes_at=g,
            state=IntervalState.OPEN,
        )
        for s, g in zip(starts, closes, strict=True)
    ]
    session.add_all(rows)
    session.flush()
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="intervals.opened",
        payload={
            "market_id": market.id,
            "start": start.isoformat(),
            "count": len(rows),
            "interval_ids": [rows[0].id, rows[-1].id],
        },
    )
    return rows


def get_interval(session: Session, *, interval_id: int) -> Interval:
    """The interval, or 404."""
    interval = session.get(Interval, interval_id)
    if interval is None:
        raise not_found("interval", interval_id)
    return interval


def list_intervals(
    session: Session, *, market_id: int, state: IntervalState | None = None
) -> list[Interval]:
    """The market's intervals by start (optionally in one state); 404 for an unknown market."""
    get_market(session, market_id=market_id)
    query = sa.select(Interval).where(Interval.market_id == market_id)
    if state is not None:
        query = query.where(Interval.state == state)
    return list(session.scalars(query.order_by(Interval.start)))


# --------------------------------------------------------------------------------- contracts


def _check_bus(market: Market, bus: str) -> None:
    if market.feeder is None:
        return
    ctx = feeder_context(market.feeder)
    if bus not in ctx.bus_node:
        known = sorted(ctx.bus_node, key=lambda b: (len(b), b))
        raise invalid(
            f"bus {bus!r} is not a bus of market {market.id}'s feeder {market.feeder!r}",
            [f"bus: unknown; the feeder's buses are {_listed(known)}"],
        )


def create_contract(
    session: Session, *, contract_in: ContractCreate, actor_member_id: int | None = None
) -> Contract:
    """A member's terms in a market; its bus must be on the market's feeder (422)."""
    audit.lock_chain(session)
    member = get_member(session, member_id=contract_in.member_id)
    market = get_market(session, market_id=contract_in.market_id)
    if member.status is not MemberStatus.ADMITTED:
        raise wrong_state(f"member {member.id} is {member.status.value}: no new contracts")
    _check_bus(market, contract_in.bus)
    contract = Contract(**contract_in.model_dump(), active=True)
    session.add(contract)
    session.flush()
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="contract.created",
        payload={"contract_id": contract.id, **contract_in.model_dump(mode="json")},
    )
    return contract


def get_contract(session: Session, *, contract_id: int) -> Contract:
    """The contract, or 404."""
    contract = session.get(Contract, contract_id)
    if contract is None:
        raise not_found("contract", contract_id)
    return contract


def list_contracts(session: Session, *, member_id: int | None = None) -> list[Contract]:
    """Every contract (or one member's), by id."""
    query = sa.select(Contract)
    if member_id is not None:
        query = query.where(Contract.member_id == member_id)
    return list(session.scalars(query.order_by(Contract.id)))


def update_contract(
    session: Session,
    *,
    contract: Contract,
    contract_in: ContractUpdate,
    actor_member_id: int | None = None,
) -> Contract:
    """Change a contract's power limit, represented parties, or deactivate it."""
    audit.lock_chain(session)
    session.refresh(contract)
    changes = {k: v for k, v in contract_in.model_dump().items() if v is not None}
    for key, value in changes.items():
        setattr(contract, key, value)
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="contract.updated",
        payload={"contract_id": contract.id, "changes": changes},
    )
    return contract


# -------------------------------------------------------------------------------------- bids


def bid_content_hash(bid_in: BidCreate) -> str:
    """SHA-256 of the bid's content (interval, contract, points) as canonical JSON."""
    content = {
        "interval_id": bid_in.interval_id,
        "contract_id": bid_in.contract_id,
        "points": [[p.price_per_kwh, p.power_kw] for p in bid_in.points],
    }
    text = audit_chain.canonical_json(content, text_keys=True)  # the keys are the ones above
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_curve(
    bid_in: BidCreate,
    market: Market | bid_store.MarketTerms,
    contract: Contract | bid_store.ContractTerms,
) -> None:
    prices = np.array([p.price_per_kwh for p in bid_in.points], dtype=np.float64)
    powers = np.array([p.power_kw for p in bid_in.points], dtype=np.float64)
    problems: list[str] = []
    try:
        curve = BidCurves.from_points(np.zeros(prices.size, dtype=np.int64), prices, powers)
        curve.check_prices_within(
            price_floor=market.price_floor_per_kwh, price_cap=market.price_cap_per_kwh
        )
    except ValidationError as exc:
        problems.extend(str(p) for p in exc.problems)
    over = np.flatnonzero(np.abs(powers) > contract.max_power_kw)
    if over.size:
        problems.append(
            f"points.power_kw: beyond the contract's maximum power {contract.max_power_kw} kW "
            f"(points {_listed(over.tolist())})"
        )
    problems.extend(
        gates.bid_side_problems(
            MarketKind(market.kind),
            dso_member_id=market.dso_member_id,
            member_id=contract.member_id,
            power_kw=powers,
        )
    )
    if problems:
        raise invalid("bid curve refused", problems)


@dataclass(frozen=True, eq=False)
class BidSubmission:
    """One bid message for :func:`submit_bids`: who sent it, the bid, its key, when it arrived.

    Attributes
    ----------
    member : Member
        The sender, read in the transaction that writes the batch.
    bid_in : BidCreate
        The bid as received.
    idempotency_key : str
        The message's key (unique per member).
    now : datetime
        When the message arrived (timezone-aware): the gate is checked against it and it is the
        bid's ``submitted_at``.

    """

    member: Member
    bid_in: BidCreate
    idempotency_key: str
    now: datetime


@dataclass(frozen=True, eq=False)
class BidOutcome:
    """The answer to one submission: the bid as it stood when answered, or the refusal.

    Attributes
    ----------
    bid : BidPublic or None
        The new bid (``created``) or the first bid of a replayed key; None when refused.
    created : bool
        Whether this submission created the bid.
    error : PlatformError or None
        The refusal (nothing was written for this submission).

    """

    bid: BidPublic | None
    created: bool
    error: PlatformError | None


@dataclass(eq=False)
class _KnownBid:
    """A bid the batch knows of: stored, or created by an earlier submission of the batch.

    ``public`` is its answer (None for a stored bid read only for its version and status: one
    that no submission of the batch replays); ``status`` is its status as the batch goes on.
    """

    id: int
    version: int
    status: BidStatus
    content_hash: str
    public: BidPublic | None
    stored: bool

    @classmethod
    def of(cls, row: Bid | bid_store.StoredBid) -> _KnownBid:
        return cls(
            row.id, row.version, row.status, row.content_hash, BidPublic.model_validate(row), True
        )

    def answer(self) -> BidPublic:
        """The bid as the API shows it now."""
        assert self.public is not None  # a replayed bid was read whole (its key matched)
        if self.public.status is self.status:
            return self.public
        return self.public.model_copy(update={"status": self.status})


def _curve_summaries(submissions: Sequence[BidSubmission]) -> list[tuple[float, float, float]]:
    """Every curve's lowest and highest price and largest |power|, read as one ``BidCurves``.

    Empty when some curve of the batch is refused by :meth:`BidCurves.from_points`: then each
    submission's curve is checked on its own (:func:`_check_curve`, which names its problems).
    """
    idx: list[int] = []
    prices: list[float] = []
    powers: list[float] = []
    for k, sub in enumerate(submissions):
        for point in sub.bid_in.points:
            idx.append(k)
            prices.append(point.price_per_kwh)
            powers.append(point.power_kw)
    try:
        curves = BidCurves.from_points(
            np.asarray(idx, dtype=np.int64), prices, powers, n_curves=len(submissions)
        )
    except ValidationError:
        return []
    low, high = curves.price_bounds()
    counts = np.bincount(np.asarray(idx, dtype=np.int64), minlength=len(submissions))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    biggest = np.maximum.reduceat(np.abs(np.asarray(powers, dtype=np.float64)), starts)
    return list(zip(low.tolist(), high.tolist(), biggest.tolist(), strict=True))


def batch_reads(
    session: Session,
    *,
    requests: Sequence[tuple[int, BidCreate, str]],
    with_members: bool,
) -> bid_store.BatchReads:
    """Take the chain's lock and read what :func:`submit_bids` needs for these requests.

    ``requests`` are (member id, bid, idempotency key); ``with_members`` also reads the members
    (the bid writer checks each request's member in the batch's transaction).
    """
    return bid_store.read(
        session,
        key_pairs=[(m, k) for m, _, k in requests],
        bid_pairs=[(b.interval_id, b.contract_id) for _, b, _ in requests],
        with_members=with_members,
    )


def submit_bids(
    session: Session,
    *,
    submissions: Sequence[BidSubmission],
    reads: bid_store.BatchReads | None = None,
) -> list[BidOutcome]:
    """Accept, replay or refuse a batch of bids in one transaction, as if one after the other.

    Group commit (issue 13's 2,000 bids/s): every rule of :func:`submit_bid` applies to each
    submission in order, and two submissions of the batch with one key, or for one contract in
    one interval, meet exactly as they would in two transactions (the second replays, conflicts
    or replaces). What is stored is read set-wise in one :func:`bid_store.read
    <transactive.platform.bid_store.read>` (one round trip on PostgreSQL), the curves are read
    as one :class:`~transactive.curves.BidCurves`, and the new bids (each with its curve) and their
    audit records (one per accepted bid, in order) are written in bulk by one
    :func:`~transactive.platform.bid_store.write`. A refused submission writes nothing; the
    others are unaffected by it.

    Parameters
    ----------
    session : Session
        The batch's transaction.
    submissions : sequence of BidSubmission
        In arrival order.
    reads : BatchReads, optional
        What :func:`batch_reads` read for these submissions (and maybe more) in this
        transaction; read here when not given.

    Returns
    -------
    list of BidOutcome
        One per submission, in order.

    """
    nows = [_aware(sub.now) for sub in submissions]
    if not submissions:
        audit.lock_chain(session)
        return []
    if reads is None:
        reads = batch_reads(
            session,
            requests=[(s.member.id, s.bid_in, s.idempotency_key) for s in submissions],
            with_members=False,
        )
    hashes = [bid_content_hash(sub.bid_in) for sub in submissions]
    known: dict[int, _KnownBid] = {}

    def remember(row: Bid | bid_store.StoredBid) -> _KnownBid:
        return known.setdefault(row.id, _KnownBid.of(row))

    keys = {(sub.member.id, sub.idempotency_key) for sub in submissions}
    by_key = {
        (row.member_id, row.idempotency_key): remember(row)
        for row in reads.by_key
        if (row.member_id, row.idempotency_key) in keys
    }
    intervals, contracts, markets = reads.intervals, reads.contracts, reads.markets
    pairs = {
        (sub.bid_in.interval_id, sub.bid_in.contract_id)
        for sub in submissions
        if sub.bid_in.interval_id in intervals and sub.bid_in.contract_id in contracts
    }
    # each pair's latest bid: every new bid gets the next version, so the active bid, if any,
    # is always the latest
    latest: dict[tuple[int, int], _KnownBid] = {}
    for r in reads.latest:
        if (r.interval_id, r.contract_id) in pairs:
            latest[(r.interval_id, r.contract_id)] = known.get(r.id) or _KnownBid(
                r.id, r.version, r.status, r.content_hash, None, True
            )
    summaries = _curve_summaries(submissions)
    ids = reads.ids

    outcomes: list[BidOutcome] = []
    created: list[_KnownBid] = []
    new_rows: list[dict[str, Any]] = []
    replaced: list[int] = []
    records: list[tuple[int | None, str, dict[str, Any]]] = []
    for k, sub in enumerate(submissions):
        member, bid_in, key, now = sub.member, sub.bid_in, sub.idempotency_key, nows[k]
        try:
            earlier = by_key.get((member.id, key))
            if earlier is not None:
                if earlier.content_hash == hashes[k]:
                    outcomes.append(BidOutcome(earlier.answer(), False, None))
                    continue
                raise conflict(
                    f"idempotency key {key!r} was already used by member {member.id} for "
                    f"bid {earlier.id} with other content"
                )
            if member.status is not MemberStatus.ADMITTED:
                raise forbidden(f"member {member.id} is {member.status.value}: it may not bid")
            interval = intervals.get(bid_in.interval_id)
            if interval is None:
                raise not_found("interval", bid_in.interval_id)
            contract = contracts.get(bid_in.contract_id)
            if contract is None:
                raise not_found("contract", bid_in.contract_id)
            _check_bid_terms(member, interval, contract, now)
            market = markets[interval.market_id]
            if not (
                summaries
                and market.kind != MarketKind.FLEXIBILITY  # whose sides are checked per bid
                and summaries[k][0] >= market.price_floor_per_kwh
                and summaries[k][1] <= market.price_cap_per_kwh
                and summaries[k][2] <= contract.max_power_kw
            ):
                _check_curve(bid_in, market, contract)  # raises naming every problem
        except PlatformError as exc:
            outcomes.append(BidOutcome(None, False, exc))
            continue
        pair = (interval.id, contract.id)
        last = latest.get(pair)
        active = last if last is not None and last.status is BidStatus.ACTIVE else None
        if active is not None:
            active.status = BidStatus.REPLACED
            if active.stored:
                replaced.append(active.id)
        points = [p.model_dump() for p in bid_in.points]
        public = BidPublic(
            id=next(ids),
            interval_id=interval.id,
            contract_id=contract.id,
            member_id=member.id,
            idempotency_key=key,
            points=bid_in.points,
            status=BidStatus.ACTIVE,
            version=1 if last is None else last.version + 1,
            submitted_at=now,
        )
        bid = _KnownBid(public.id, public.version, BidStatus.ACTIVE, hashes[k], public, False)
        latest[pair] = by_key[(member.id, key)] = bid
        created.append(bid)
        new_rows.append(
            {
                "id": public.id,
                "interval_id": interval.id,
                "contract_id": contract.id,
                "member_id": member.id,
                "idempotency_key": key,
                "content_hash": hashes[k],
                "points": points,
                "signature": bid_in.signature,
                "version": public.version,
                "submitted_at": now,
            }
        )
        outcomes.append(BidOutcome(public, True, None))
        records.append(
            (
                member.id,
                "bid.replaced" if active is not None else "bid.submitted",
                {
                    "bid_id": bid.id,
                    "interval_id": interval.id,
                    "contract_id": contract.id,
                    "member_id": member.id,
                    "idempotency_key": key,
                    "content_hash": bid.content_hash,
                    "points": points,
                    "signature": bid_in.signature,
                    "version": bid.version,
                    "replaced_bid_id": None if active is None else active.id,
                    "submitted_at": now.isoformat(),
                },
            )
        )
    if not created:
        return outcomes
    at = utc_now()
    bid_store.write(
        session,
        bid_store.BatchWrites(
            replaced_ids=replaced,
            bids=[
                (
                    row["id"],
                    row["interval_id"],
                    row["contract_id"],
                    row["member_id"],
                    row["idempotency_key"],
                    row["content_hash"],
                    json.dumps(row["points"]),
                    row["signature"],
                    bid.status.value,  # replaced already when a later submission replaced it
                    row["version"],
                    row["submitted_at"],
                    at,
                )
                for row, bid in zip(new_rows, created, strict=True)
            ],
            # the payloads above, built key by key (the points: pydantic's dumps of BidPoint)
            audit_rows=audit.chain_rows(reads.audit_head, records, at=at, text_keys=True),
        ),
    )
    return outcomes


def _check_bid_terms(
    member: Member,
    interval: Interval | bid_store.IntervalTerms,
    contract: Contract | bid_store.ContractTerms,
    now: datetime,
) -> None:
    """The contract is the member's, of the interval's market and active; the interval open."""
    if contract.member_id != member.id:
        raise forbidden(f"contract {contract.id} is not a contract of member {member.id}")
    if contract.market_id != interval.market_id:
        raise invalid(
            f"contract {contract.id} is for market {contract.market_id}, interval "
            f"{interval.id} is in market {interval.market_id}"
        )
    if not contract.active:
        raise invalid(f"contract {contract.id} is inactive")
    if interval.state is not IntervalState.OPEN:
        raise wrong_state(f"interval {interval.id} is {interval.state.value}: it takes no bids")
    if now >= interval.gate_closes_at:
        raise wrong_state(
            f"interval {interval.id} is open but its gate closed at "
            f"{interval.gate_closes_at.isoformat()} (now {now.isoformat()}): it takes no bids"
        )


def submit_bid(
    session: Session,
    *,
    member: Member,
    bid_in: BidCreate,
    idempotency_key: str,
    now: datetime,
) -> tuple[Bid, bool]:
    """Accept a bid, replay an earlier answer, or refuse (:func:`submit_bids` of one).

    Returns
    -------
    (Bid, bool)
        The bid and whether it was created now (False: the same key and content were accepted
        before, and that first bid is returned unchanged).

    Raises
    ------
    PlatformError
        409 the key was used for other content, the interval is not open or past its gate;
        404 unknown interval or contract; 403 another member's contract, or a member not
        admitted; 422 a contract of another market, an inactive contract, a bad curve.

    """
    (outcome,) = submit_bids(
        session, submissions=[BidSubmission(member, bid_in, idempotency_key, now)]
    )
    if outcome.error is not None:
        raise outcome.error
    assert outcome.bid is not None
    return session.get_one(Bid, outcome.bid.id), outcome.created


def get_bid(session: Session, *, bid_id: int) -> Bid:
    """The bid, or 404."""
    bid = session.get(Bid, bid_id)
    if bid is None:
        raise not_found("bid", bid_id)
    return bid


def withdraw_bid(session: Session, *, member: Member, bid_id: int, now: datetime) -> Bid:
    """Withdraw one's active bid before the gate closes (403 another's; 409 wrong state)."""
    now = _aware(now)
    audit.lock_chain(session)
    bid = get_bid(session, bid_id=bid_id)
    session.refresh(bid)
    if bid.member_id != member.id:
        raise forbidden(f"bid {bid.id} is not a bid of member {member.id}")
    if bid.status is not BidStatus.ACTIVE:
        raise wrong_state(f"bid {bid.id} is {bid.status.value}: only an active bid is withdrawn")
    interval = session.get_one(Interval, bid.interval_id)
    if interval.state is not IntervalState.OPEN:
        raise wrong_state(
            f"interval {interval.id} is {interval.state.value}: its bids can no longer be withdrawn"
        )
    if now >= interval.gate_closes_at:
        raise wrong_state(
            f"interval {interval.id} is open but its gate closed at "
            f"{interval.gate_closes_at.isoformat()}: its bids can no longer be withdrawn"
        )
    bid.status = BidStatus.WITHDRAWN
    audit.append(
        session,
        actor_member_id=member.id,
        kind="bid.withdrawn",
        payload={"bid_id": bid.id, "interval_id": interval.id, "at": now.isoformat()},
    )
    return bid


def list_bids(
    session: Session,
    *,
    interval_id: int | None = None,
    member_id: int | None = None,
    status: BidStatus | None = None,
) -> list[Bid]:
    """Bids by id, filtered by interval, member and status."""
    query = sa.select(Bid)
    if interval_id is not None:
        query = query.where(Bid.interval_id == interval_id)
    if member_id is not None:
        query = query.where(Bid.member_id == member_id)
    if status is not None:
        query = query.where(Bid.status == status)
    return list(session.scalars(query.order_by(Bid.id)))


# ----------------------------------------------------------------------------- meter readings


def record_meter_reading(
    session: Session, *, member: Member, reading_in: MeterReadingCreate, now: datetime
) -> MeterReading:
    """Take a contract's metered energy for a checked interval, once (409 on a second).

    The contract must be the member's (403) and have an award in the interval (409): the
    reading settles against it.
    """
    now = _aware(now)
    audit.lock_chain(session)
    interval = get_interval(session, interval_id=reading_in.interval_id)
    contract = get_contract(session, contract_id=reading_in.contract_id)
    if contract.member_id != member.id:
        raise forbidden(f"contract {contract.id} is not a contract of member {member.id}")
    if interval.state is not IntervalState.CHECKED:
        raise wrong_state(
            f"interval {interval.id} is {interval.state.value}: meter readings are taken once "
            "it is checked and until it is settled"
        )
    has_award = session.scalar(
        sa.select(Award.id).where(
            Award.interval_id == interval.id, Award.contract_id == contract.id
        )
    )
    if has_award is None:
        raise conflict(f"contract {contract.id} has no award in interval {interval.id}")
    earlier = session.scalar(
        sa.select(MeterReading.id).where(
            MeterReading.interval_id == interval.id, MeterReading.contract_id == contract.id
        )
    )
    if earlier is not None:
        raise conflict(
            f"contract {contract.id} already has meter reading {earlier} in interval {interval.id}"
        )
    reading = MeterReading(
        interval_id=interval.id,
        contract_id=contract.id,
        member_id=member.id,
        energy_kwh=reading_in.energy_kwh,
        received_at=now,
    )
    session.add(reading)
    session.flush()
    audit.append(
        session,
        actor_member_id=member.id,
        kind="meter_reading.recorded",
        payload={
            "meter_reading_id": reading.id,
            "interval_id": interval.id,
            "contract_id": contract.id,
            "energy_kwh": reading.energy_kwh,
            "received_at": now.isoformat(),
        },
    )
    return reading


def list_meter_readings(
    session: Session, *, interval_id: int, member_id: int | None = None
) -> list[MeterReading]:
    """An interval's meter readings (optionally one member's), by contract."""
    query = sa.select(MeterReading).where(MeterReading.interval_id == interval_id)
    if member_id is not None:
        query = query.where(MeterReading.member_id == member_id)
    return list(session.scalars(query.order_by(MeterReading.contract_id)))


# --------------------------------------------------------------------------- awards, accounts


def list_awards(session: Session, *, interval_id: int, member_id: int | None = None) -> list[Award]:
    """An interval's awards (optionally one member's), by contract."""
    query = sa.select(Award).where(Award.interval_id == interval_id)
    if member_id is not None:
        query = query.where(Award.member_id == member_id)
    return list(session.scalars(query.order_by(Award.contract_id)))


def list_accounts(session: Session, *, member_id: int | None = None) -> list[Account]:
    """Every account (or one member's), by id, with its balance (debits minus credits)."""
    query = sa.select(Account)
    if member_id is not None:
        query = query.where(Account.member_id == member_id)
    return list(session.scalars(query.order_by(Account.id)))


def get_account(session: Session, *, account_id: int) -> Account:
    """The account, or 404."""
    account = session.get(Account, account_id)
    if account is None:
        raise not_found("account", account_id)
    return account


def list_entries(session: Session, *, account_id: int) -> list[Entry]:
    """Every entry debiting or crediting the account, by id (404 for an unknown account)."""
    get_account(session, account_id=account_id)
    return list(
        session.scalars(
            sa.select(Entry)
            .where(
                sa.or_(Entry.debit_account_id == account_id, Entry.credit_account_id == account_id)
            )
            .order_by(Entry.id)
        )
    )
