"""Opening intervals and taking bids by the market kind: gate rule, kind's terms, bid sides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.platform.conftest import NOW, PlatformDb, World, make_market
from transactive.platform import crud
from transactive.platform.errors import PlatformError
from transactive.platform.schemas import (
    BidCreate,
    BidPoint,
    ContractCreate,
    IntervalsCreate,
    MarketKind,
)


def test_day_ahead_intervals_open_with_the_days_gate(db: PlatformDb, world: World) -> None:
    market_id = make_market(
        db, world, kind=MarketKind.DAY_AHEAD, interval_s=3600, gate_closure_lead_s=12 * 3600
    )
    day = datetime(2025, 6, 4, tzinfo=UTC)
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        intervals_in = IntervalsCreate(start=day, count=24)
        rows = crud.open_intervals(s, market=market, intervals_in=intervals_in)
        assert {r.gate_closes_at for r in rows} == {datetime(2025, 6, 3, 12, tzinfo=UTC)}


def test_day_ahead_markets_of_five_minutes_are_refused(db: PlatformDb, world: World) -> None:
    with pytest.raises(PlatformError) as info:
        make_market(db, world, kind=MarketKind.DAY_AHEAD, interval_s=300)
    assert info.value.status == 422
    assert any("day-ahead market has intervals of whole hours" in p for p in info.value.problems)


def test_flexibility_terms_and_bid_sides(db: PlatformDb, world: World) -> None:
    with pytest.raises(PlatformError) as info:
        make_market(db, world, kind=MarketKind.FLEXIBILITY)  # with supply and supplier
    assert {p.split(":")[0] for p in info.value.problems} >= {
        "supply_price_per_kwh",
        "supplier_member_id",
    }
    market_id = make_market(
        db,
        world,
        kind=MarketKind.FLEXIBILITY,
        supply_price_per_kwh=None,
        supply_capacity_kw=None,
        supplier_member_id=None,
    )
    with db.begin() as s:
        (interval,) = crud.open_intervals(
            s,
            market=crud.get_market(s, market_id=market_id),
            intervals_in=IntervalsCreate(start=NOW + timedelta(hours=1), count=1),
        )
        c = crud.create_contract(
            s,
            contract_in=ContractCreate(
                member_id=world.prosumers[0],
                market_id=market_id,
                bus="1",
                meter_id="m",
                max_power_kw=100.0,
            ),
        )
        interval_id, cid = interval.id, c.id
    with pytest.raises(PlatformError) as info, db.begin() as s:
        crud.submit_bid(
            s,
            member=crud.get_member(s, member_id=world.prosumers[0]),
            bid_in=BidCreate(
                interval_id=interval_id,
                contract_id=cid,
                points=[BidPoint(price_per_kwh=0.1, power_kw=10.0)],
            ),
            idempotency_key="k",
            now=NOW,
        )
    assert info.value.status == 422 and "only the DSO buys" in info.value.message
