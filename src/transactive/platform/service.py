"""The interval lifecycle: open → gate closed → cleared → checked → settled.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.1: in the weakly-centralized mode the platform clears the market at gate
closure, the system operator checks the cleared transactions for security and confirms them or
returns them with locational surcharges, and Table 1's settlement follows the metered values.
The platform calls the project's mechanisms and never re-implements them:

- clearing: :func:`transactive.market.clear` over ONE :class:`~transactive.curves.BidCurves`
  built from every active bid's points in one query (:func:`interval_curves`; the curves' ids
  are the contract ids), with the market's :class:`~transactive.market.Supply`;
- the DSO's check: :func:`transactive.coordination.secure_clearing` on the market's feeder, each
  curve at its contract's bus (clear, AC check, surcharge, re-clear until secure); the awards
  and per-bus prices become the secure outcome's. Without a feeder the clearing is confirmed as
  it is (``secure`` stays None: no network was checked);
- settlement: :func:`transactive.platform.ledger.settle_interval` on the awards and the meter
  readings (every awarded contract needs one), with the network fees on losses allocated by
  branch current decomposition (:func:`transactive.network.branch_current_losses`,
  :func:`transactive.network.split_to_meters`) of the metered dispatch; the postings are
  persisted as double entries after checking that they sum to zero and leave the market's
  account at zero.

Each step is one function of ``(session, *, interval, now)`` that refuses an interval in any
other state (409 naming it), changes the interval and its rows, and appends one audit record,
all in the caller's transaction. Awards, entries and accounts are written with bulk inserts;
nothing loops in Python over bids except building the settlement's input records.

Conventions kept here: an interval with no active bid clears to no price and no awards (and
settles with no entries); the DSO's check uses no background load (the market's bids are the
feeder's load); the network tariff's time-of-use bands are read in UTC; an insecure outcome
after the loop's last round is recorded as checked with ``secure = False`` (the interval can
only move forward; the audit record says why).

Market kinds (:mod:`transactive.platform.gates` holds their rules and sources):

- **Real-time** and **day-ahead** intervals go through the same steps. A day-ahead market's
  intervals share one gate per delivery day (``gate_closes_at`` is set when they are opened,
  :func:`transactive.platform.gates.gate_closes_at`: midnight UTC of the delivery day minus the
  lead, the SDAC/EPEX rule) and each clears on its own curves, as the day-ahead auction does with
  hourly (or quarter-hourly) simple orders.
- **Flexibility** (Hu et al. 2019, §3.3; USEF's flexibility trading, the DSO buying flexibility):
  the DSO buys congestion relief from providers. Clearing is
  :func:`transactive.market.clear` on the DSO's buying curves and the providers' selling
  curves, with no supply; a curve on the wrong side (a provider buying, the DSO selling) is
  refused (409 naming the contracts; submission refuses it first with
  :func:`transactive.platform.gates.bid_side_problems`). The security check does not run, even
  on a market with a feeder: a relief bid is a change of a provider's power against its
  baseline, not a dispatch, and a power flow of the changes alone (no baseline load under them)
  says nothing about the feeder's limits; the DSO runs its own network analysis to decide how
  much relief it bids for, and one flexibility market serves one congestion point (USEF's), so
  relief anywhere on it is worth one price. The interval is confirmed as cleared (``secure``
  None), with that reason in the audit record. Settlement posts the awards as ANCILLARY entries
  (:mod:`transactive.platform.ledger`, rules 1', 2', 5'): the DSO debited, the providers
  credited at the clearing price; the providers' meter readings are the relief delivered (kWh,
  negative, as the DSO's measurement and verification states it against their baselines), and
  their shortfall or excess settles at the imbalance price against the DSO. The DSO's own
  contracts need no meter reading (their deviation would settle with the DSO itself); one given
  is used and posts nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from transactive.coordination import secure_clearing
from transactive.curves import BidCurves
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.network import branch_current_losses, solve_flows, split_to_meters
from transactive.platform import audit, crud, gates, ledger
from transactive.platform.db import bulk_insert, driver_time
from transactive.platform.errors import conflict, wrong_state
from transactive.platform.models import (
    Account,
    Award,
    Base,
    Bid,
    Contract,
    Entry,
    Interval,
    Market,
    MeterReading,
)
from transactive.platform.schemas import AccountKind, BidStatus, IntervalState, MarketKind
from transactive.settlement import NetworkTariff

__all__ = [
    "IntervalCurves",
    "advance",
    "check_interval",
    "clear_interval",
    "close_gate",
    "interval_curves",
    "settle_interval",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Contract ids listed in a refusal before the rest are counted.
_SHOWN = 20
_AWARD_COLUMNS = (
    "interval_id",
    "contract_id",
    "member_id",
    "bus",
    "power_kw",
    "energy_kwh",
    "price_per_kwh",
    "created_at",
)
_ENTRY_COLUMNS = (
    "interval_id",
    "kind",
    "debit_account_id",
    "credit_account_id",
    "amount_minor",
    "memo",
    "created_at",
)


def _table(model: type[Base]) -> sa.Table:
    """The model's table, for Core bulk inserts (no ORM bookkeeping per row)."""
    return cast(sa.Table, model.__table__)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    return now.astimezone(UTC)


def _require(interval: Interval, state: IntervalState, step: str) -> None:
    if interval.state is not state:
        raise wrong_state(
            f"interval {interval.id} is {interval.state.value}: {step} needs it {state.value}"
        )


def _start_step(session: Session, interval: Interval) -> Market:
    audit.lock_chain(session)
    session.refresh(interval)  # the state as committed, now that writers are serialised
    return session.get_one(Market, interval.market_id)


# ----------------------------------------------------------------------------- active curves


@dataclass(frozen=True, eq=False)
class IntervalCurves:
    """The active bids of an interval as one batch of curves, with their contracts.

    Attributes
    ----------
    curves : BidCurves
        One curve per contract with an active bid, ids = the contract ids (as strings),
        sorted by contract id.
    contract_id, member_id : (N,) int
        The contract of every curve and its member.
    bus : (N,) str
        The bus of every contract.

    """

    curves: BidCurves
    contract_id: IntArray
    member_id: IntArray
    bus: npt.NDArray[np.str_]


def _raw_rows(session: Session, statement: sa.ClauseElement) -> list[tuple[Any, ...]]:
    """All rows of a query as plain tuples from the driver's cursor (no Row objects).

    The statement's values are our own integers and enum values, rendered as literals.
    """
    connection = session.connection()
    sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _points_of_active_bids(session: Session, interval_id: int) -> sa.TextClause:
    """(bid id, seq, price, power) of every point of the interval's active bids, one row each.

    The database unnests each bid's ``points`` (the JSON array the message carried) itself:
    PostgreSQL's ``json_array_elements ... WITH ORDINALITY`` ("JSON Functions and Operators",
    PostgreSQL 15 documentation §9.16, and "Table Functions" §7.2.1.4) and SQLite's
    ``json_each`` ("JSON Functions", §4.13, whose ``key`` is the element's index); both parse the
    numbers as correctly rounded doubles (what ``json.loads`` reads back from ``json.dumps``:
    tested). The rows read off the partial unique index of active bids.
    """
    if session.get_bind().dialect.name == "postgresql":
        sql = (
            "SELECT b.id, p.seq - 1, (p.point ->> 'price_per_kwh')::float8, "
            "(p.point ->> 'power_kw')::float8 FROM bid AS b CROSS JOIN LATERAL "
            "json_array_elements(b.points) WITH ORDINALITY AS p(point, seq) "
            "WHERE b.interval_id = :interval_id AND b.status = 'active'"
        )
    else:
        sql = (
            "SELECT b.id, p.key, json_extract(p.value, '$.price_per_kwh'), "
            "json_extract(p.value, '$.power_kw') FROM bid AS b, json_each(b.points) AS p "
            "WHERE b.interval_id = :interval_id AND b.status = 'active'"
        )
    return sa.text(sql).bindparams(interval_id=int(interval_id))


#: Curves of intervals past their gate, by database URL and interval: their bids can no longer
#: change (submissions and withdrawals need the interval open), so the check reuses what the
#: clearing read. A few intervals are kept, the least recently used dropped.
_CURVES_CACHE: OrderedDict[tuple[str, int, str], IntervalCurves | None] = OrderedDict()
_CURVES_CACHE_SIZE = 4
_CURVES_LOCK = threading.Lock()


def _closed_interval_curves(session: Session, interval: Interval) -> IntervalCurves | None:
    """:func:`interval_curves` of an interval past its gate, read once per process."""
    if interval.state is IntervalState.OPEN:  # pragma: no cover - callers check the state
        raise ValueError(f"interval {interval.id} is open: its bids may still change")
    url = session.connection().engine.url.render_as_string(hide_password=True)
    # created_at tells a recreated database with the same URL and ids from the one cached
    key = (url, interval.id, interval.created_at.isoformat())
    with _CURVES_LOCK:
        if key in _CURVES_CACHE:
            _CURVES_CACHE.move_to_end(key)
            return _CURVES_CACHE[key]
    curves = interval_curves(session, interval=interval)
    with _CURVES_LOCK:
        _CURVES_CACHE[key] = curves
        while len(_CURVES_CACHE) > _CURVES_CACHE_SIZE:
            _CURVES_CACHE.popitem(last=False)
    return curves


def interval_curves(session: Session, *, interval: Interval) -> IntervalCurves | None:
    """Every active bid of the interval as ONE ``BidCurves`` (None when there is none).

    Two bulk reads straight from the driver's cursor: the active bids with their contracts, and
    the points of those bids in the long form, which the database makes of each bid's ``points``
    (:func:`_points_of_active_bids`); numpy orders them by contract and point, and
    :meth:`~transactive.curves.BidCurves.from_points` builds the curves, with no Python loop
    over bids.
    """
    active = sa.and_(Bid.interval_id == interval.id, Bid.status == BidStatus.ACTIVE)
    bids = _raw_rows(
        session,
        sa.select(Bid.id, Bid.contract_id, Contract.member_id, Contract.bus)
        .join(Contract, Contract.id == Bid.contract_id)
        .where(active),
    )
    if not bids:
        return None
    points = _raw_rows(session, _points_of_active_bids(session, interval.id))
    bid_id, contract_id, member_id, bus = zip(*bids, strict=True)
    by_contract = np.argsort(np.asarray(contract_id, dtype=np.int64), kind="stable")
    bid_ids = np.asarray(bid_id, dtype=np.int64)[by_contract]
    # one row per point: (bid id, seq, price, power); each bid's curve index is its contract's
    # rank, and its points keep their order (sorted by curve, then seq)
    table = np.array(points, dtype=np.float64)
    point_bid = table[:, 0].astype(np.int64)
    rank_of_bid = np.argsort(bid_ids)
    curve_index = rank_of_bid[np.searchsorted(bid_ids, point_bid, sorter=rank_of_bid)]
    order = np.lexsort((table[:, 1], curve_index))
    contracts = np.asarray(contract_id, dtype=np.int64)[by_contract]
    curves = BidCurves.from_points(
        curve_index[order], table[order, 2], table[order, 3], n_curves=contracts.size
    ).with_ids(contracts.astype(np.str_))
    return IntervalCurves(
        curves,
        contracts,
        np.asarray(member_id, dtype=np.int64)[by_contract],
        np.asarray(bus, dtype=np.str_)[by_contract],
    )


def _nodes(market: Market, bus: npt.NDArray[np.str_]) -> tuple[crud.FeederContext, IntArray]:
    if market.feeder is None:  # pragma: no cover - callers check
        raise ValueError("the market has no feeder")
    ctx = crud.feeder_context(market.feeder)
    unique, inverse = np.unique(bus, return_inverse=True)
    unknown = [b for b in unique.tolist() if b not in ctx.bus_node]
    if unknown:  # contracts are checked at creation; a feeder file may have changed since
        raise conflict(f"buses not on feeder {market.feeder!r}: {', '.join(unknown[:_SHOWN])}")
    node_of_unique = np.array([ctx.bus_node[b] for b in unique.tolist()], dtype=np.int64)
    return ctx, node_of_unique[inverse]


# ----------------------------------------------------------------------------------- awards


def _replace_awards(
    session: Session,
    interval: Interval,
    market: Market,
    ic: IntervalCurves,
    power_kw: FloatArray,
    price_per_kwh: FloatArray,
    now: datetime,
) -> None:
    """Delete the interval's awards and insert one per curve (one bulk insert)."""
    hours = market.interval_s / 3600.0
    table = _table(Award)
    if session.scalar(sa.select(Award.id).where(Award.interval_id == interval.id).limit(1)):
        session.execute(sa.delete(table).where(table.c.interval_id == interval.id))
    created = driver_time(session)(now)
    energy = (power_kw * hours).tolist()
    rows = list(
        zip(
            itertools.repeat(interval.id),
            ic.contract_id.tolist(),
            ic.member_id.tolist(),
            ic.bus.tolist(),
            power_kw.tolist(),
            energy,
            price_per_kwh.tolist(),
            itertools.repeat(created),
            strict=False,
        )
    )
    bulk_insert(session, table, _AWARD_COLUMNS, rows)


def _bus_prices(bus: npt.NDArray[np.str_], price_per_kwh: FloatArray) -> dict[str, float]:
    unique, first = np.unique(bus, return_index=True)
    return dict(zip(unique.tolist(), price_per_kwh[first].tolist(), strict=True))


def _digest(ic: IntervalCurves, power_kw: FloatArray, price_per_kwh: FloatArray) -> str:
    """SHA-256 of (contract id, power, price) of every award, for the audit record."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ic.contract_id, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(power_kw, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(price_per_kwh, dtype="<f8").tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------ market kinds


def _clearing_supply(interval: Interval, market: Market) -> Supply | None:
    """The supply the market clears with: none in a flexibility market (409 if it has one)."""
    if market.kind is not MarketKind.FLEXIBILITY:
        return crud.market_supply(market)
    problems = gates.market_kind_problems(market)
    if problems:  # the terms are checked when the market is defined; they may have changed
        raise conflict(
            f"interval {interval.id} cannot clear: market {market.id}'s terms do not fit a "
            f"flexibility market: {'; '.join(problems)}",
            problems,
        )
    return None


def _refuse_wrong_sides(interval: Interval, market: Market, ic: IntervalCurves) -> None:
    """409 naming every curve on the wrong side of a flexibility market.

    :func:`transactive.platform.gates.bid_side_problems`' rule over all curves at once: the
    DSO's curves buy (power >= 0 at every price: the last breakpoint, the least power, is
    >= 0), every other member's sell (the first breakpoint, the most power, is <= 0).
    """
    power = ic.curves.power_kw
    is_dso = ic.member_id == market.dso_member_id
    dso_sells = np.flatnonzero(is_dso & (power[:, -1] < 0))
    provider_buys = np.flatnonzero(~is_dso & (power[:, 0] > 0))
    problems = [
        f"contract {c}: the DSO's curve sells relief (power < 0); the DSO only buys"
        for c in ic.contract_id[dso_sells].tolist()
    ] + [
        f"contract {c}: a provider's curve buys (power > 0); only the DSO buys relief"
        for c in ic.contract_id[provider_buys].tolist()
    ]
    if problems:
        shown = ", ".join(p.split(":", 1)[0] for p in problems[:_SHOWN])
        more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise conflict(
            f"interval {interval.id} cannot clear: curves on the wrong side of flexibility "
            f"market {market.id} ({shown}{more})",
            problems,
        )


# ------------------------------------------------------------------------------- the steps


def close_gate(
    session: Session,
    *,
    interval: Interval,
    now: datetime,
    force: bool = False,
    actor_member_id: int | None = None,
) -> Interval:
    """OPEN → GATE_CLOSED; refused before ``gate_closes_at`` unless ``force``."""
    now = _aware(now)
    _start_step(session, interval)
    _require(interval, IntervalState.OPEN, "closing the gate")
    if now < interval.gate_closes_at and not force:
        raise wrong_state(
            f"interval {interval.id} is open until its gate closes at "
            f"{interval.gate_closes_at.isoformat()} (now {now.isoformat()})"
        )
    interval.state = IntervalState.GATE_CLOSED
    audit.append(
        session,
        actor_member_id=actor_member_id,
        kind="interval.gate_closed",
        payload={"interval_id": interval.id, "at": now.isoformat(), "forced": bool(force)},
    )
    return interval


def clear_interval(
    session: Session, *, interval: Interval, now: datetime, actor_member_id: int | None = None
) -> Interval:
    """GATE_CLOSED → CLEARED: clear the active bids; awards at the uniform price."""
    now = _aware(now)
    market = _start_step(session, interval)
    _require(interval, IntervalState.GATE_CLOSED, "clearing")
    ic = _closed_interval_curves(session, interval)
    payload: dict[str, object] = {"interval_id": interval.id, "at": now.isoformat()}
    supply = _clearing_supply(interval, market)
    if ic is not None and market.kind is MarketKind.FLEXIBILITY:
        _refuse_wrong_sides(interval, market, ic)
    if ic is None:
        interval.clearing_price_per_kwh = None
        interval.clearing_quantity_kw = 0.0
        interval.supply_kw = 0.0
        interval.locational_price_per_kwh = {}
        payload.update(n_bids=0, clearing_price_per_kwh=None)
    else:
        try:
            result = clear(
                ic.curves,
                price_cap=market.price_cap_per_kwh,
                price_floor=market.price_floor_per_kwh,
                supply=supply,
            )
        except ValidationError as exc:  # bids or terms changed outside the platform's checks
            raise conflict(
                f"interval {interval.id} cannot clear: {exc}", [str(p) for p in exc.problems]
            ) from exc
        price = np.full(len(ic.curves), result.clearing_price)
        _replace_awards(session, interval, market, ic, result.allocation_kw, price, now)
        interval.clearing_price_per_kwh = result.clearing_price
        interval.clearing_quantity_kw = result.clearing_quantity_kw
        interval.supply_kw = result.supply_kw
        interval.locational_price_per_kwh = _bus_prices(ic.bus, price)
        payload.update(
            n_bids=len(ic.curves),
            clearing_price_per_kwh=result.clearing_price,
            clearing_quantity_kw=result.clearing_quantity_kw,
            supply_kw=result.supply_kw,
            price_rule=result.price_rule,
            awards_sha256=_digest(ic, result.allocation_kw, price),
        )
    interval.state = IntervalState.CLEARED
    audit.append(session, actor_member_id=actor_member_id, kind="interval.cleared", payload=payload)
    return interval


def check_interval(
    session: Session, *, interval: Interval, now: datetime, actor_member_id: int | None = None
) -> Interval:
    """CLEARED → CHECKED: the DSO's security check on the market's feeder (if it has one).

    A flexibility market's clearing is confirmed as it is, feeder or not (the module docstring
    says why).
    """
    now = _aware(now)
    market = _start_step(session, interval)
    _require(interval, IntervalState.CLEARED, "the security check")
    payload: dict[str, object] = {"interval_id": interval.id, "at": now.isoformat()}
    flexibility = market.kind is MarketKind.FLEXIBILITY
    network = market.feeder is not None and not flexibility
    ic = _closed_interval_curves(session, interval) if network else None
    if flexibility:
        interval.secure = None
        interval.n_rounds = 1
        payload.update(
            network_checked=False,
            reason=(
                "flexibility market: relief is a change against the providers' baselines, not "
                "a dispatch a power flow can check; confirmed as cleared"
            ),
        )
    elif market.feeder is None or ic is None:
        interval.secure = None
        interval.n_rounds = 0 if ic is None and market.feeder is not None else 1
        payload.update(
            network_checked=False,
            reason="no feeder: confirmed as cleared" if market.feeder is None else "no bids",
        )
    else:
        ctx, node = _nodes(market, ic.bus)
        try:
            with ctx.lock:
                outcome = secure_clearing(
                    ic.curves,
                    node,
                    ctx.feeder,
                    price_cap=market.price_cap_per_kwh,
                    price_floor=market.price_floor_per_kwh,
                    supply=crud.market_supply(market),
                    runner=ctx.runner,
                )
        except ValidationError as exc:
            raise conflict(
                f"interval {interval.id} cannot be checked: {exc}",
                [str(p) for p in exc.problems],
            ) from exc
        final = outcome.final.clearing
        price = np.asarray(outcome.locational_price_per_kwh[node], dtype=np.float64)
        if outcome.n_rounds > 1:  # round 1 is the clearing already stored
            _replace_awards(session, interval, market, ic, final.allocation_kw, price, now)
        interval.clearing_price_per_kwh = final.clearing_price
        interval.clearing_quantity_kw = final.clearing_quantity_kw
        interval.supply_kw = final.supply_kw
        interval.locational_price_per_kwh = _bus_prices(ic.bus, price)
        interval.secure = outcome.secure
        interval.n_rounds = outcome.n_rounds
        report = outcome.final.report
        interval.node_vm_pu = [float(v) for v in report.vm_pu]
        interval.branch_loading_pct = [
            float(v) if np.isfinite(v) else None for v in report.branch_loading_pct
        ]
        payload.update(
            network_checked=True,
            feeder=market.feeder,
            secure=outcome.secure,
            n_rounds=outcome.n_rounds,
            reason=outcome.reason,
            clearing_price_per_kwh=final.clearing_price,
            max_surcharge_per_kwh=float(np.max(outcome.surcharge_per_kwh)),
            n_violations=len(outcome.final.violations),
            awards_sha256=_digest(ic, final.allocation_kw, price),
        )
    interval.state = IntervalState.CHECKED
    audit.append(session, actor_member_id=actor_member_id, kind="interval.checked", payload=payload)
    return interval


def _tariff(market: Market) -> NetworkTariff | None:
    rates = (
        market.network_import_per_kwh,
        market.network_export_per_kwh,
        market.loss_price_per_kwh,
    )
    if all(r == 0 for r in rates):
        return None
    return NetworkTariff(
        loss_price_per_kwh=market.loss_price_per_kwh,
        import_per_kwh=market.network_import_per_kwh,
        export_per_kwh=market.network_export_per_kwh,
        currency=market.currency,
    )


def _losses_by_contract(
    market: Market, bus: npt.NDArray[np.str_], metered_kw: FloatArray
) -> tuple[float, ...]:
    """Losses of the metered dispatch, allocated to nodes and split to the contracts' meters."""
    ctx, node = _nodes(market, bus)
    p_node = np.bincount(node, weights=metered_kw, minlength=ctx.feeder.n_nodes)
    try:
        with ctx.lock:
            flows = solve_flows(ctx.feeder, p_node, runner=ctx.runner)
    except ValidationError as exc:  # e.g. the metered dispatch's power flow does not converge
        raise conflict(
            f"losses of the metered dispatch cannot be allocated: {exc}",
            [str(p) for p in exc.problems],
        ) from exc
    allocation = branch_current_losses(flows)
    return tuple(split_to_meters(allocation, node, metered_kw).tolist())


def _accounts(session: Session, market: Market, keys: set[str], now: datetime) -> dict[str, int]:
    """Account id of every ledger key; opens missing member accounts in the market's currency."""
    # every account in one read: cheaper than an IN list of thousands of names
    existing = [
        row
        for row in _raw_rows(session, sa.select(Account.name, Account.id, Account.currency))
        if row[0] in keys
    ]
    wrong = [f"{name} ({cur})" for name, _id, cur in existing if cur != market.currency]
    if wrong:
        raise conflict(
            f"accounts in another currency than market {market.id}'s {market.currency}: "
            + ", ".join(wrong[:_SHOWN])
        )
    found = {name: int(ident) for name, ident, _cur in existing}
    missing = sorted(keys - found.keys())
    new_rows = []
    for key in missing:
        kind, ident = ledger.parse_account(key)
        if kind is not AccountKind.MEMBER:  # pragma: no cover - markets open their account
            raise RuntimeError(f"market account {key} is missing")
        new_rows.append(
            {
                "kind": AccountKind.MEMBER,
                "member_id": ident,
                "market_id": None,
                "name": key,
                "currency": market.currency,
                "created_at": now,
            }
        )
    if new_rows:
        session.execute(sa.insert(Account), new_rows)
        wanted = set(missing)
        opened = [
            row
            for row in _raw_rows(session, sa.select(Account.name, Account.id))
            if row[0] in wanted
        ]
        found.update((str(name), int(ident)) for name, ident in opened)
    return found


def settle_interval(
    session: Session, *, interval: Interval, now: datetime, actor_member_id: int | None = None
) -> Interval:
    """CHECKED → SETTLED: Table 1's postings from the awards and meter readings.

    Every contract with an award needs its meter reading (else 409 listing the missing ones),
    except the DSO's own contracts in a flexibility market: without a reading their relief
    counts as received as awarded (their deviation would settle with the DSO itself, so no
    reading changes a posting). The postings must sum to zero over all accounts and leave the
    market account at zero.
    """
    now = _aware(now)
    market = _start_step(session, interval)
    _require(interval, IntervalState.CHECKED, "settlement")
    awards = _raw_rows(
        session,
        sa.select(
            Award.contract_id,
            Award.member_id,
            Award.bus,
            Award.energy_kwh,
            Award.price_per_kwh,
            MeterReading.energy_kwh,
        )
        .outerjoin(
            MeterReading,
            sa.and_(
                MeterReading.interval_id == Award.interval_id,
                MeterReading.contract_id == Award.contract_id,
            ),
        )
        .where(Award.interval_id == interval.id)
        .order_by(Award.contract_id),
    )
    if market.kind is MarketKind.FLEXIBILITY and market.dso_member_id is not None:
        # (contract, member, bus, awarded kWh, price, metered kWh): the DSO's own contracts
        awards = [
            (*a[:5], a[3]) if a[5] is None and a[1] == market.dso_member_id else a for a in awards
        ]
    missing = [int(a[0]) for a in awards if a[5] is None]
    if missing:
        shown = ", ".join(str(c) for c in missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise conflict(
            f"interval {interval.id} cannot settle: {len(missing)} awarded contracts have no "
            f"meter reading (contracts {shown}{more})",
            [f"contract {c}: no meter reading" for c in missing],
        )
    payload: dict[str, object] = {"interval_id": interval.id, "at": now.isoformat()}
    if not awards:
        payload.update(n_contracts=0, n_entries=0)
    else:
        postings = _postings(session, interval, market, awards)
        totals = ledger.balances(postings)
        if sum(totals.values()) != 0 or totals.get(ledger.market_account(market.id), 0) != 0:
            raise RuntimeError(  # pragma: no cover - the ledger's invariant
                f"interval {interval.id}: postings do not balance ({totals})"
            )
        keys = {p.debit for p in postings} | {p.credit for p in postings}
        account_id = _accounts(session, market, keys, now)
        created = driver_time(session)(now)
        bulk_insert(
            session,
            _table(Entry),
            _ENTRY_COLUMNS,
            [
                (
                    interval.id,
                    p.kind.value,
                    account_id[p.debit],
                    account_id[p.credit],
                    p.amount_minor,
                    p.memo[:500],
                    created,
                )
                for p in postings
            ],
        )
        by_kind: dict[str, int] = {}
        for p in postings:
            by_kind[p.kind.value] = by_kind.get(p.kind.value, 0) + p.amount_minor
        payload.update(
            n_contracts=len(awards), n_entries=len(postings), amount_minor_by_kind=by_kind
        )
    interval.state = IntervalState.SETTLED
    audit.append(session, actor_member_id=actor_member_id, kind="interval.settled", payload=payload)
    return interval


def _postings(
    session: Session,
    interval: Interval,
    market: Market,
    awards: Sequence[tuple[Any, ...]],
) -> tuple[ledger.Posting, ...]:
    operator = crud.platform_operator(session)
    tariff = _tariff(market)
    hours = market.interval_s / 3600.0
    _contract, _member, bus, _awarded, _price, metered = zip(*awards, strict=True)
    losses = None
    if tariff is not None and market.feeder is not None:
        metered_kw = np.asarray(metered, dtype=np.float64) / hours
        losses = _losses_by_contract(market, np.asarray(bus, dtype=np.str_), metered_kw)
    day_start = interval.start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if interval.clearing_price_per_kwh is None:  # pragma: no cover - awards imply a clearing
        raise RuntimeError(f"interval {interval.id} has awards but no clearing price")
    flexibility = market.kind is MarketKind.FLEXIBILITY
    inp = ledger.IntervalSettlementInput(
        interval_id=interval.id,
        market_id=market.id,
        market_kind=market.kind,
        interval_s=market.interval_s,
        start_s=(interval.start - day_start) / timedelta(seconds=1),
        clearing_price_per_kwh=interval.clearing_price_per_kwh,
        # the rows are (contract, member, bus, awarded kWh, price, metered kWh), in this order
        contracts=tuple(itertools.starmap(ledger.ContractSettlementInput, awards)),
        supply_kwh=float(interval.supply_kw or 0.0) * hours,
        # a flexibility market's deviations settle with the DSO (ledger rule 2')
        supplier_member_id=None if flexibility else market.supplier_member_id,
        imbalance_price_per_kwh=market.imbalance_price_per_kwh,
        transaction_fee_per_kwh=market.transaction_fee_per_kwh,
        dispatch_fee_per_kwh=market.dispatch_fee_per_kwh,
        platform_operator_member_id=operator.id,
        dso_member_id=market.dso_member_id,
        network_owner_member_id=market.network_owner_member_id,
        network_tariff=tariff,
        loss_kw_by_contract=losses,
        currency_exponent=market.currency_exponent,
    )
    try:
        return ledger.settle_interval(inp)
    except ValidationError as exc:
        raise conflict(
            f"interval {interval.id} cannot settle: {exc}", [str(p) for p in exc.problems]
        ) from exc


def advance(
    session: Session,
    *,
    interval: Interval,
    now: datetime,
    force: bool = False,
    actor_member_id: int | None = None,
) -> Interval:
    """Do the interval's next step (``force`` closes a gate before its time).

    ``actor_member_id`` names who asked, in the audit record (None: the platform itself).
    """
    state = interval.state
    actor = actor_member_id
    if state is IntervalState.OPEN:
        return close_gate(session, interval=interval, now=now, force=force, actor_member_id=actor)
    if state is IntervalState.GATE_CLOSED:
        return clear_interval(session, interval=interval, now=now, actor_member_id=actor)
    if state is IntervalState.CLEARED:
        return check_interval(session, interval=interval, now=now, actor_member_id=actor)
    if state is IntervalState.CHECKED:
        return settle_interval(session, interval=interval, now=now, actor_member_id=actor)
    raise wrong_state(f"interval {interval.id} is {state.value}: it has no next step")
