"""The three market kinds: day-ahead gates (pure), and the flexibility market on both back ends."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from tests.platform.conftest import NOW, PlatformDb, World, make_market
from transactive.curves import BidCurves
from transactive.errors import ValidationError
from transactive.market import clear
from transactive.platform import crud, gates, ledger, service
from transactive.platform.errors import PlatformError
from transactive.platform.models import AuditRecord, Bid, Market
from transactive.platform.schemas import (
    BidCreate,
    BidPoint,
    BidStatus,
    ContractCreate,
    EntryKind,
    IntervalsCreate,
    IntervalState,
    MarketCreate,
    MarketKind,
    MeterReadingCreate,
)

DAY = datetime(2025, 6, 4, tzinfo=UTC)  # a delivery day D
HOUR = timedelta(hours=1)

# ------------------------------------------------------------------------------------ gates


@pytest.mark.parametrize("kind", [MarketKind.REAL_TIME, MarketKind.FLEXIBILITY])
def test_real_time_and_flexibility_gates_close_the_lead_before_each_start(
    kind: MarketKind,
) -> None:
    for start in (DAY, DAY + timedelta(minutes=5), DAY + 23 * HOUR + timedelta(minutes=55)):
        assert gates.gate_closes_at(kind, start, 300, 60) == start - timedelta(seconds=60)
        assert gates.gate_closes_at(kind, start, 300, 0) == start
    # any interval length: the day-ahead rule does not apply
    assert gates.gate_closes_at(kind, DAY, 7, 0) == DAY


@pytest.mark.parametrize("interval_s", [3600, 900])
def test_every_interval_of_a_delivery_day_closes_at_noon_the_day_before(interval_s: int) -> None:
    starts = [DAY + timedelta(seconds=interval_s * k) for k in range(86400 // interval_s)]
    closes = {gates.gate_closes_at(MarketKind.DAY_AHEAD, s, interval_s, 12 * 3600) for s in starts}
    assert closes == {datetime(2025, 6, 3, 12, tzinfo=UTC)}  # 12:00 on D-1, every MTU of D
    # the next day's first interval has the next day's gate; lead 0: midnight of the day
    assert gates.gate_closes_at(MarketKind.DAY_AHEAD, DAY + 24 * HOUR, interval_s, 43200) == (
        datetime(2025, 6, 4, 12, tzinfo=UTC)
    )
    assert gates.gate_closes_at(MarketKind.DAY_AHEAD, DAY + 5 * HOUR, interval_s, 0) == DAY


def test_the_delivery_day_is_the_utc_day() -> None:
    # 01:00 at UTC+02:00 on June 4 is 23:00 UTC on June 3: delivered on June 3
    start = datetime(2025, 6, 4, 1, tzinfo=timezone(timedelta(hours=2)))
    gate = gates.gate_closes_at(MarketKind.DAY_AHEAD, start, 3600, 12 * 3600)
    assert gate == datetime(2025, 6, 2, 12, tzinfo=UTC) and gate.tzinfo is UTC
    assert gates.delivery_day(start) == datetime(2025, 6, 3, tzinfo=UTC)


@given(
    k=st.integers(0, 95),
    lead_s=st.integers(0, 3 * 86400),
    interval_s=st.sampled_from(gates.DAY_AHEAD_INTERVALS_S),
)
def test_a_day_ahead_gate_is_never_later_than_the_real_time_gate(
    k: int, lead_s: int, interval_s: int
) -> None:
    start = DAY + timedelta(seconds=(k * 900) // interval_s * interval_s)
    day_ahead = gates.gate_closes_at(MarketKind.DAY_AHEAD, start, interval_s, lead_s)
    real_time = gates.gate_closes_at(MarketKind.REAL_TIME, start, interval_s, lead_s)
    assert day_ahead == DAY - timedelta(seconds=lead_s) <= real_time
    assert (day_ahead == real_time) is (start == DAY)


@pytest.mark.parametrize("interval_s", [300, 1800, 7200, 86400])
def test_day_ahead_intervals_other_than_hours_or_quarter_hours_are_refused(
    interval_s: int,
) -> None:
    with pytest.raises(ValidationError) as err:
        gates.gate_closes_at(MarketKind.DAY_AHEAD, DAY, interval_s, 0, market_id=5)
    (problem,) = err.value.problems
    assert problem.field == "interval_s"
    assert "day-ahead market 5" in problem.reason and f"got {interval_s} s" in problem.reason
    assert "whole hours (3600 s) or quarter-hours (900 s)" in problem.reason
    assert "day-ahead market 5" in str(err.value)


@pytest.mark.parametrize(
    ("interval_s", "offset"),
    [(3600, timedelta(minutes=30)), (900, timedelta(minutes=10)), (3600, timedelta(seconds=1))],
)
def test_day_ahead_starts_not_aligned_to_the_day_are_refused(
    interval_s: int, offset: timedelta
) -> None:
    with pytest.raises(ValidationError) as err:
        gates.gate_closes_at(MarketKind.DAY_AHEAD, DAY + offset, interval_s, 0, market_id=2)
    (problem,) = err.value.problems
    assert problem.field == "start"
    assert f"not aligned to the day-ahead market 2's {interval_s} s intervals" in problem.reason


def test_bad_gate_arguments_are_named_all_at_once() -> None:
    with pytest.raises(ValidationError) as err:
        gates.gate_closes_at(MarketKind.REAL_TIME, datetime(2025, 6, 4), 0, -1)
    assert {p.field for p in err.value.problems} == {"start", "interval_s", "gate_closure_lead_s"}
    assert "real-time market" in str(err.value)


def _terms(**fields: Any) -> MarketCreate:
    base: dict[str, Any] = {
        "name": "m",
        "kind": MarketKind.FLEXIBILITY,
        "price_cap_per_kwh": 1.0,
        "imbalance_price_per_kwh": 0.2,
        "dso_member_id": 2,
    }
    base.update(fields)
    return MarketCreate(**base)


def test_market_terms_that_do_not_fit_the_kind_are_listed() -> None:
    assert gates.market_kind_problems(_terms()) == []
    assert gates.market_kind_problems(_terms(kind=MarketKind.DAY_AHEAD, interval_s=900)) == []
    (day_ahead,) = gates.market_kind_problems(_terms(kind=MarketKind.DAY_AHEAD, interval_s=300))
    assert day_ahead.startswith("interval_s: a day-ahead market has intervals of whole hours")
    real_time = _terms(kind=MarketKind.REAL_TIME, supply_price_per_kwh=0.1, dso_member_id=None)
    assert gates.market_kind_problems(real_time) == []
    bad = _terms(
        dso_member_id=None,
        supply_price_per_kwh=0.1,
        supplier_member_id=4,
        network_import_per_kwh=0.01,
        loss_price_per_kwh=0.1,
    )
    fields = [p.split(":", 1)[0] for p in gates.market_kind_problems(bad)]
    assert fields == [
        "dso_member_id",
        "supply_price_per_kwh",
        "supplier_member_id",
        "network_import_per_kwh",
        "loss_price_per_kwh",
    ]


def test_only_the_dso_buys_in_a_flexibility_market() -> None:
    flex = MarketKind.FLEXIBILITY
    assert gates.bid_side_problems(flex, dso_member_id=2, member_id=2, power_kw=[300, 0]) == []
    assert gates.bid_side_problems(flex, dso_member_id=2, member_id=7, power_kw=[0, -50]) == []
    (dso,) = gates.bid_side_problems(flex, dso_member_id=2, member_id=2, power_kw=[10, -5, -6])
    assert "the DSO buys congestion relief" in dso and "(points 1, 2)" in dso
    (provider,) = gates.bid_side_problems(flex, dso_member_id=2, member_id=7, power_kw=[5, 0])
    assert "a provider sells relief" in provider and "(points 0)" in provider
    (no_dso,) = gates.bid_side_problems(flex, dso_member_id=None, member_id=7, power_kw=[-1])
    assert "no DSO" in no_dso
    for kind in (MarketKind.REAL_TIME, MarketKind.DAY_AHEAD):
        assert gates.bid_side_problems(kind, dso_member_id=2, member_id=7, power_kw=[5, -5]) == []


# ------------------------------------------------------------------------ flexibility market

#: The DSO buys up to 300 kW of relief at up to 0.40; three providers sell it. The clearing is
#: at 0.25: provider 0 sells all its 150 kW, provider 1 150 of its 200, provider 2 (asking 0.50)
#: nothing.
DSO_BID = [(0.40, 300.0), (0.40, 0.0)]
OFFERS = [
    ("5", 150.0, [(0.05, 0.0), (0.20, -150.0)]),
    ("12", 200.0, [(0.10, 0.0), (0.30, -200.0)]),
    ("30", 100.0, [(0.50, 0.0), (0.50, -100.0)]),
]
FLEX_TERMS: dict[str, Any] = {
    "name": "flex",
    "kind": MarketKind.FLEXIBILITY,
    "supply_price_per_kwh": None,
    "supply_capacity_kw": None,
    "supplier_member_id": None,
    "transaction_fee_per_kwh": 0.0,
    "dispatch_fee_per_kwh": 0.0,
}


def _contract(s: Any, member_id: int, market_id: int, bus: str, max_kw: float) -> int:
    contract_in = ContractCreate(
        member_id=member_id, market_id=market_id, bus=bus, meter_id=f"m{member_id}",
        max_power_kw=max_kw,
    )  # fmt: skip
    return crud.create_contract(s, contract_in=contract_in).id


def _insert_bid(s: Any, interval_id: int, contract_id: int, member_id: int, points: Any) -> None:
    """A bid row as the platform stores one, written without crud's checks at submission."""
    bid = Bid(
        interval_id=interval_id, contract_id=contract_id, member_id=member_id,
        idempotency_key=f"raw-{contract_id}", content_hash="0" * 64,
        points=[{"price_per_kwh": p, "power_kw": q} for p, q in points], signature=None,
        status=BidStatus.ACTIVE, version=1, submitted_at=NOW,
    )  # fmt: skip
    s.add(bid)
    s.flush()


def _flex_market(
    db: PlatformDb,
    world: World,
    *,
    feeder: str | None = None,
    dso_bid: Any = DSO_BID,
    offers: Any = OFFERS,
    raw: bool = False,
    **terms: Any,
) -> tuple[int, int, list[int]]:
    """A flexibility market, one interval, the DSO's and the providers' bids (contracts: the
    DSO's first). ``raw`` writes the bids as rows, past crud's checks."""
    start = NOW + HOUR
    market_id = make_market(db, world, feeder=feeder, **{**FLEX_TERMS, **terms})
    with db.begin() as s:
        (interval,) = crud.open_intervals(
            s,
            market=crud.get_market(s, market_id=market_id),
            intervals_in=IntervalsCreate(start=start, count=1),
        )
        parties = [(world.dso, "1", 400.0, dso_bid)] + [
            (member, bus, max_kw, points)
            for member, (bus, max_kw, points) in zip(world.prosumers, offers, strict=False)
        ]
        contracts = []
        for member_id, bus, max_kw, points in parties:
            cid = _contract(s, member_id, market_id, bus, max_kw)
            contracts.append(cid)
            if raw:
                _insert_bid(s, interval.id, cid, member_id, points)
                continue
            crud.submit_bid(
                s,
                member=crud.get_member(s, member_id=member_id),
                bid_in=BidCreate(
                    interval_id=interval.id,
                    contract_id=cid,
                    points=[BidPoint(price_per_kwh=p, power_kw=q) for p, q in points],
                ),
                idempotency_key=f"f{member_id}",
                now=NOW,
            )
    return market_id, interval.id, contracts


def _advance(db: PlatformDb, interval_id: int, n: int = 1) -> Any:
    for _ in range(n):
        with db.begin() as s:
            interval = crud.get_interval(s, interval_id=interval_id)
            state = service.advance(s, interval=interval, now=NOW + 2 * HOUR, force=True).state
    return state


def _read(db: PlatformDb, interval_id: int, contract_id: int, member_id: int, kwh: float) -> None:
    with db.begin() as s:
        crud.record_meter_reading(
            s,
            member=crud.get_member(s, member_id=member_id),
            reading_in=MeterReadingCreate(
                interval_id=interval_id, contract_id=contract_id, energy_kwh=kwh
            ),
            now=NOW + 2 * HOUR,
        )


def _entries(db: PlatformDb) -> tuple[dict[str, int], list[tuple[EntryKind, str, str, int]]]:
    """Balances of every account, and every entry as (kind, debit, credit, amount)."""
    with db.begin() as s:
        accounts = crud.list_accounts(s)
        name = {a.id: a.name for a in accounts}
        rows = {
            (e.id, e.kind, name[e.debit_account_id], name[e.credit_account_id], e.amount_minor)
            for a in accounts
            for e in crud.list_entries(s, account_id=a.id)
        }
    return {a.name: a.balance_minor for a in accounts}, [r[1:] for r in sorted(rows)]


def test_the_dso_buys_relief_and_pays_it_as_an_ancillary_service(
    db: PlatformDb, world: World
) -> None:
    market_id, interval_id, contracts = _flex_market(
        db, world, transaction_fee_per_kwh=0.001, dispatch_fee_per_kwh=0.002
    )
    assert _advance(db, interval_id, 3) is IntervalState.CHECKED
    with db.begin() as s:
        interval = crud.get_interval(s, interval_id=interval_id)
        awards = {a.contract_id: a for a in crud.list_awards(s, interval_id=interval_id)}
        checked = s.scalars(
            sa.select(AuditRecord.payload).where(AuditRecord.kind == "interval.checked")
        ).one()
    # the market's own clearing of the same curves, with no supply
    points = [DSO_BID] + [p for _, _, p in OFFERS]
    curves = BidCurves.from_breakpoints(
        [[p for p, _ in pts] for pts in points], [[q for _, q in pts] for pts in points]
    )
    expected = clear(curves, price_cap=1.0, price_floor=0.0)
    assert expected.clearing_price == pytest.approx(0.25)
    assert interval.clearing_price_per_kwh == pytest.approx(expected.clearing_price)
    assert interval.supply_kw == 0.0
    np.testing.assert_allclose([awards[c].power_kw for c in contracts], expected.allocation_kw)
    np.testing.assert_allclose([awards[c].power_kw for c in contracts], [300, -150, -150, 0])
    assert interval.secure is None and interval.n_rounds == 1  # no network check
    assert checked["network_checked"] is False and "flexibility market" in checked["reason"]

    # relief delivered, as the DSO's M&V states it: provider 0 short by 2.5 kWh, provider 1
    # 2.5 kWh beyond its award, provider 2 (no award) nothing; the DSO's contract needs none
    _dso, p0, p1, p2 = contracts
    _read(db, interval_id, p0, world.prosumers[0], -10.0)
    with pytest.raises(PlatformError) as info:
        _advance(db, interval_id)
    assert info.value.status == 409
    assert info.value.problems == (
        f"contract {p1}: no meter reading",
        f"contract {p2}: no meter reading",
    )
    _read(db, interval_id, p1, world.prosumers[1], -15.0)
    _read(db, interval_id, p2, world.prosumers[2], 0.0)
    assert _advance(db, interval_id) is IntervalState.SETTLED

    balances, entries = _entries(db)
    assert sum(balances.values()) == 0 and balances[ledger.market_account(market_id)] == 0
    kinds = Counter(kind for kind, *_ in entries)
    assert EntryKind.ENERGY not in kinds and kinds[EntryKind.ANCILLARY] == 3
    market = ledger.market_account(market_id)
    dso_key = ledger.member_account(world.dso)
    p0_key, p1_key = (ledger.member_account(m) for m in world.prosumers[:2])
    ancillary = {(d, c): a for k, d, c, a in entries if k is EntryKind.ANCILLARY}
    assert ancillary[(dso_key, market)] == 625  # 25 kWh of relief at 0.25
    # 12.5 kWh each at 0.25 is 312.5: apportioned so the market closes
    assert sorted([ancillary[(market, p0_key)], ancillary[(market, p1_key)]]) == [312, 313]
    imbalance = {(d, c): a for k, d, c, a in entries if k is EntryKind.IMBALANCE}
    assert imbalance == {(p0_key, dso_key): 50, (dso_key, p1_key): 50}  # 2.5 kWh at 0.20
    fees = {(k, d, c): a for k, d, c, a in entries if k is not EntryKind.ANCILLARY}
    # fees as in every market, on |awarded| (the DSO's dispatch fee to itself is not posted)
    assert fees[(EntryKind.TRANSACTION_FEE, dso_key, ledger.member_account(world.operator))] == 2
    assert fees[(EntryKind.DISPATCH_FEE, p0_key, dso_key)] == 2  # 12.5 kWh at 0.002
    assert all(dso_key != d or k is not EntryKind.DISPATCH_FEE for k, d, _c, _a in entries)


def test_a_flexibility_market_on_a_feeder_is_not_network_checked(
    db: PlatformDb, world: World
) -> None:
    # 300 kW of relief bought at bus 1: as a dispatch it would be a load the check could flag
    _, interval_id, _ = _flex_market(db, world, feeder="case33bw")
    assert _advance(db, interval_id, 3) is IntervalState.CHECKED
    with db.begin() as s:
        interval = crud.get_interval(s, interval_id=interval_id)
    assert interval.secure is None and interval.n_rounds == 1
    assert interval.clearing_price_per_kwh == pytest.approx(0.25)


def test_curves_on_the_wrong_side_do_not_clear(db: PlatformDb, world: World) -> None:
    # stored past the submission's checks: the DSO selling, provider 1 buying
    _, interval_id, contracts = _flex_market(
        db,
        world,
        dso_bid=[(0.40, 100.0), (0.50, -50.0)],
        offers=[OFFERS[0], ("12", 200.0, [(0.10, 20.0), (0.30, -200.0)]), OFFERS[2]],
        raw=True,
    )
    _advance(db, interval_id)  # the gate closes
    with pytest.raises(PlatformError) as info:
        _advance(db, interval_id)
    assert info.value.status == 409
    assert info.value.problems == (
        f"contract {contracts[0]}: the DSO's curve sells relief (power < 0); the DSO only buys",
        f"contract {contracts[2]}: a provider's curve buys (power > 0); only the DSO buys relief",
    )
    assert f"(contract {contracts[0]}, contract {contracts[2]})" in info.value.message
    with db.begin() as s:
        assert crud.get_interval(s, interval_id=interval_id).state is IntervalState.GATE_CLOSED


def test_a_flexibility_market_whose_terms_changed_does_not_clear(
    db: PlatformDb, world: World
) -> None:
    market_id, interval_id, _ = _flex_market(db, world)
    with db.begin() as s:  # terms the API cannot set, written past it
        market = s.get_one(Market, market_id)
        market.supply_price_per_kwh = 0.1
        market.dso_member_id = None
    _advance(db, interval_id)
    with pytest.raises(PlatformError) as info:
        _advance(db, interval_id)
    assert info.value.status == 409
    assert [p.split(":", 1)[0] for p in info.value.problems] == [
        "dso_member_id",
        "supply_price_per_kwh",
    ]
    assert f"market {market_id}'s terms do not fit a flexibility market" in info.value.message


def test_a_day_ahead_market_settles_energy_over_its_hours(db: PlatformDb, world: World) -> None:
    market_id = make_market(
        db, world, name="da", kind=MarketKind.DAY_AHEAD, interval_s=3600,
        gate_closure_lead_s=12 * 3600,
    )  # fmt: skip
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        rows = crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=DAY, count=2)
        )
        ids = [r.id for r in rows]
        buyer, seller = world.prosumers[:2]
        c_buy = _contract(s, buyer, market_id, "b1", 50.0)
        c_sell = _contract(s, seller, market_id, "b2", 50.0)
        for interval_id in ids:
            for member, cid, points in (
                (buyer, c_buy, [(0.30, 40.0), (0.30, 0.0)]),
                (seller, c_sell, [(0.05, 0.0), (0.05, -10.0)]),
            ):
                crud.submit_bid(
                    s,
                    member=crud.get_member(s, member_id=member),
                    bid_in=BidCreate(
                        interval_id=interval_id,
                        contract_id=cid,
                        points=[BidPoint(price_per_kwh=p, power_kw=q) for p, q in points],
                    ),
                    idempotency_key=f"da{interval_id}-{cid}",
                    now=NOW,
                )
    # the day's one gate, by the day-ahead rule: 12:00 UTC on the day before
    gate = gates.gate_closes_at(MarketKind.DAY_AHEAD, DAY + HOUR, 3600, 12 * 3600)
    assert gate == DAY - 12 * HOUR
    for interval_id in ids:
        assert _advance(db, interval_id, 3) is IntervalState.CHECKED
        with db.begin() as s:
            awards = {a.contract_id: a for a in crud.list_awards(s, interval_id=interval_id)}
        assert awards[c_buy].power_kw == pytest.approx(40.0)
        assert awards[c_buy].energy_kwh == pytest.approx(40.0)  # an hour of 40 kW
        for cid, member in ((c_buy, buyer), (c_sell, seller)):
            _read(db, interval_id, cid, member, awards[cid].energy_kwh)
        assert _advance(db, interval_id) is IntervalState.SETTLED
    balances, entries = _entries(db)
    assert sum(balances.values()) == 0 and balances[ledger.market_account(market_id)] == 0
    assert all(kind is not EntryKind.ANCILLARY for kind, *_ in entries)
    # each hour: 40 kWh bought at 0.10, 10 kWh from the seller, 30 kWh from the substation
    retailer = ledger.member_account(world.retailer)
    clearing = ledger.market_account(market_id)
    supplied = [a for k, d, c, a in entries if (k, d, c) == (EntryKind.ENERGY, clearing, retailer)]
    assert supplied == [300, 300]
