"""CRUD on both back ends: idempotent bids, replacements, refusals naming why, audit per change."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.platform.conftest import NOW, START, PlatformDb, World, admit, make_market
from transactive.platform import crud, service
from transactive.platform.errors import PlatformError
from transactive.platform.models import AuditRecord, Bid, Interval
from transactive.platform.schemas import (
    BidCreate,
    BidPoint,
    BidStatus,
    ContractCreate,
    ContractUpdate,
    IntervalsCreate,
    IntervalState,
    MarketCreate,
    MarketKind,
    MarketUpdate,
    MemberStatus,
    MemberUpdate,
    MeterReadingCreate,
    Role,
)


def _points(*pq: tuple[float, float]) -> list[BidPoint]:
    return [BidPoint(price_per_kwh=p, power_kw=q) for p, q in pq]


def _setup(db: PlatformDb, world: World, **terms: Any) -> tuple[int, int, list[int]]:
    """A market, one open interval and a contract per prosumer: (market, interval, contracts)."""
    market_id = make_market(db, world, **terms)
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        (interval,) = crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=START, count=1)
        )
        contracts = [
            crud.create_contract(
                s,
                contract_in=ContractCreate(
                    member_id=m,
                    market_id=market_id,
                    bus="1",
                    meter_id=f"meter-{m}",
                    max_power_kw=50.0,
                ),
            ).id
            for m in world.prosumers
        ]
    return market_id, interval.id, contracts


def _submit(
    db: PlatformDb, member_id: int, bid_in: BidCreate, key: str, now=NOW
) -> tuple[int, bool, int]:
    with db.begin() as s:
        member = crud.get_member(s, member_id=member_id)
        bid, created = crud.submit_bid(
            s, member=member, bid_in=bid_in, idempotency_key=key, now=now
        )
        return bid.id, created, bid.version


def _refused(db: PlatformDb, member_id: int, bid_in: BidCreate, key: str, now=NOW) -> PlatformError:
    with pytest.raises(PlatformError) as info:
        _submit(db, member_id, bid_in, key, now)
    return info.value


def _n_audit(db: PlatformDb) -> int:
    with db.begin() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(AuditRecord)) or 0)


def test_same_key_same_content_returns_the_first_bid(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    bid_in = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.2, 5.0)))
    first, created, _ = _submit(db, world.prosumers[0], bid_in, "k-1")
    n = _n_audit(db)
    again, created_again, _ = _submit(db, world.prosumers[0], bid_in, "k-1")
    assert created and not created_again and again == first
    assert _n_audit(db) == n  # a replay writes nothing
    with db.begin() as s:
        assert len(crud.list_bids(s, interval_id=interval)) == 1
        points = service._raw_rows(s, service._points_of_active_bids(s, interval))
    # a single point is a block; the long form clearing reads keeps what was sent
    assert [tuple(p) for p in points] == [(first, 0, 0.2, 5.0)]


def test_same_key_other_content_is_a_conflict(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    one = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.2, 5.0)))
    other = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.3, 5.0)))
    _submit(db, world.prosumers[0], one, "k")
    err = _refused(db, world.prosumers[0], other, "k")
    assert err.status == 409 and "idempotency key 'k'" in err.message
    # another member may use the same key: keys are per member
    bid_in = BidCreate(interval_id=interval, contract_id=contracts[1], points=_points((0.2, 1.0)))
    assert _submit(db, world.prosumers[1], bid_in, "k")[1]


def test_replacement_before_the_gate_bumps_the_version(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    member = world.prosumers[0]
    a = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.2, 5.0)))
    b = BidCreate(
        interval_id=interval, contract_id=contracts[0], points=_points((0.1, 6.0), (0.3, 0.0))
    )
    first, _, v1 = _submit(db, member, a, "a")
    second, _, v2 = _submit(db, member, b, "b")
    assert (v1, v2) == (1, 2)
    with db.begin() as s:
        bids = {x.id: x for x in crud.list_bids(s, interval_id=interval)}
        kinds = list(s.scalars(sa.select(AuditRecord.kind).order_by(AuditRecord.seq)))
    assert bids[first].status is BidStatus.REPLACED
    assert bids[second].status is BidStatus.ACTIVE
    assert kinds[-2:] == ["bid.submitted", "bid.replaced"]
    # withdraw, then bid again: the version keeps counting
    with db.begin() as s:
        w = crud.withdraw_bid(
            s, member=crud.get_member(s, member_id=member), bid_id=second, now=NOW
        )
        assert w.status is BidStatus.WITHDRAWN
    c = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.25, 2.0)))
    assert _submit(db, member, c, "c")[2] == 3


def test_bids_in_the_wrong_state_are_refused_naming_it(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    member = world.prosumers[0]
    bid_in = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.2, 5.0)))
    late = _refused(db, member, bid_in, "late", now=START + timedelta(seconds=1))
    assert late.status == 409 and "open but its gate closed" in late.message
    bid_id = _submit(db, member, bid_in, "in-time")[0]
    with db.begin() as s:
        service.close_gate(s, interval=crud.get_interval(s, interval_id=interval), now=START)
    err = _refused(db, member, bid_in.model_copy(update={"points": _points((0.3, 1.0))}), "x")
    assert err.status == 409 and "is gate_closed" in err.message
    with pytest.raises(PlatformError, match="is gate_closed") as info, db.begin() as s:
        crud.withdraw_bid(s, member=crud.get_member(s, member_id=member), bid_id=bid_id, now=NOW)
    assert info.value.status == 409
    reading = MeterReadingCreate(interval_id=interval, contract_id=contracts[0], energy_kwh=1.0)
    with pytest.raises(PlatformError, match="is gate_closed") as info, db.begin() as s:
        crud.record_meter_reading(
            s, member=crud.get_member(s, member_id=member), reading_in=reading, now=NOW
        )
    assert info.value.status == 409


def test_a_non_monotone_curve_is_422_with_the_curves_problems(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    rising = BidCreate(
        interval_id=interval, contract_id=contracts[0], points=_points((0.1, 1.0), (0.2, 3.0))
    )
    err = _refused(db, world.prosumers[0], rising, "r")
    assert err.status == 422
    assert any("power rises with price" in p for p in err.problems)
    unsorted = BidCreate(
        interval_id=interval, contract_id=contracts[0], points=_points((0.3, 3.0), (0.2, 1.0))
    )
    assert any(
        "not sorted by price" in p for p in _refused(db, world.prosumers[0], unsorted, "u").problems
    )
    too_much = BidCreate(
        interval_id=interval, contract_id=contracts[0], points=_points((0.1, 80.0), (1.5, -60.0))
    )
    err = _refused(db, world.prosumers[0], too_much, "m")
    assert err.status == 422
    assert any("maximum power 50.0 kW (points 0, 1)" in p for p in err.problems)
    assert any("above the market's price cap" in p for p in err.problems)
    assert _n_audit(db) > 0
    with db.begin() as s:
        assert crud.list_bids(s, interval_id=interval) == []


def test_another_members_contract_is_403_unknown_ids_404(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    theirs = BidCreate(interval_id=interval, contract_id=contracts[1], points=_points((0.2, 1.0)))
    err = _refused(db, world.prosumers[0], theirs, "t")
    assert err.status == 403 and f"contract {contracts[1]}" in err.message
    unknown_interval = BidCreate(
        interval_id=9999, contract_id=contracts[0], points=_points((0.2, 1.0))
    )
    err = _refused(db, world.prosumers[0], unknown_interval, "i")
    assert (err.status, err.message) == (404, "interval 9999 does not exist")
    unknown_contract = BidCreate(interval_id=interval, contract_id=9999, points=_points((0.2, 1.0)))
    assert _refused(db, world.prosumers[0], unknown_contract, "c").status == 404
    with pytest.raises(PlatformError) as info, db.begin() as s:
        crud.get_member(s, member_id=424242)
    assert info.value.status == 404
    for getter, kw in (
        (crud.get_market, "market_id"),
        (crud.get_contract, "contract_id"),
        (crud.get_bid, "bid_id"),
        (crud.get_account, "account_id"),
    ):
        with pytest.raises(PlatformError) as info, db.begin() as s:
            getter(s, **{kw: 777})
        assert info.value.status == 404
    bid_id = _submit(db, world.prosumers[1], theirs, "mine")[0]
    with pytest.raises(PlatformError) as info, db.begin() as s:
        crud.withdraw_bid(
            s, member=crud.get_member(s, member_id=world.prosumers[0]), bid_id=bid_id, now=NOW
        )
    assert info.value.status == 403


def _set_status(db: PlatformDb, member_id: int, status: MemberStatus) -> None:
    with db.begin() as s:
        m = crud.get_member(s, member_id=member_id)
        crud.update_member(s, member=m, member_in=MemberUpdate(status=status))


def _open(db: PlatformDb, market_id: int, start: datetime, count: int = 1) -> list[Interval]:
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        return crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=start, count=count)
        )


def test_suspended_members_may_not_bid_and_removal_is_final(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    member = world.prosumers[0]
    with db.begin() as s:
        m = crud.get_member(s, member_id=member)
        crud.update_member(s, member=m, member_in=MemberUpdate(status=MemberStatus.SUSPENDED))
    bid_in = BidCreate(interval_id=interval, contract_id=contracts[0], points=_points((0.2, 1.0)))
    assert _refused(db, member, bid_in, "s").status == 403
    with db.begin() as s:
        m = crud.get_member(s, member_id=member)
        crud.update_member(s, member=m, member_in=MemberUpdate(status=MemberStatus.REMOVED))
    with pytest.raises(PlatformError, match="removed") as info:
        _set_status(db, member, MemberStatus.ADMITTED)
    assert info.value.status == 409


def test_public_keys_are_checked(db: PlatformDb, world: World) -> None:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with db.begin() as s:
        ident = admit(s, "signer", Role.AGGREGATOR, base64.b64encode(raw).decode())
        assert crud.get_member(s, member_id=ident).public_key_ed25519 is not None
    with pytest.raises(PlatformError, match="32-byte Ed25519") as info, db.begin() as s:
        admit(s, "bad", Role.AGGREGATOR, base64.b64encode(b"short").decode())
    assert info.value.status == 422


def _market_in(**fields: Any) -> MarketCreate:
    return MarketCreate.model_validate(
        {"name": "m", "kind": MarketKind.REAL_TIME, "price_cap_per_kwh": 1.0,
         "imbalance_price_per_kwh": 0.1, **fields}
    )  # fmt: skip


def _create_market(db: PlatformDb, market_in: MarketCreate, currency: str = "USD") -> int:
    with db.begin() as s:
        return crud.create_market(s, market_in=market_in, currency=currency).id


def test_market_terms_are_checked_all_at_once(db: PlatformDb, world: World) -> None:
    bad = _market_in(
        price_floor_per_kwh=2.0,
        supply_price_per_kwh=0.1,
        dispatch_fee_per_kwh=0.01,
        network_import_per_kwh=0.01,
        dso_member_id=world.prosumers[0],
    )
    with pytest.raises(PlatformError) as info:
        _create_market(db, bad)
    problems = "\n".join(info.value.problems)
    assert info.value.status == 422
    for text in (
        "price_floor_per_kwh: must be below",
        "supplier_member_id: a market with supply",
        "network_owner_member_id: needed",
        f"dso_member_id: member {world.prosumers[0]} is a prosumer, not a dso",
    ):
        assert text in problems
    with pytest.raises(PlatformError, match="currency_exponent: needed for 'XTS'"):
        _create_market(db, _market_in(), currency="XTS")
    with pytest.raises(PlatformError, match="no such file"):
        _create_market(db, _market_in(feeder="no-such-feeder"))
    market_id = make_market(db, world)
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        fee = MarketUpdate.model_validate({"transaction_fee_per_kwh": 0.5})
        crud.update_market(s, market=market, market_in=fee)
    with db.begin() as s:
        assert crud.get_market(s, market_id=market_id).transaction_fee_per_kwh == 0.5
        assert crud.get_market(s, market_id=market_id).currency_exponent == 2


def test_intervals_open_aligned_and_once(db: PlatformDb, world: World) -> None:
    market_id = make_market(db, world, gate_closure_lead_s=60)
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        rows = crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=START, count=3)
        )
        assert [r.start for r in rows] == [START + timedelta(minutes=5 * k) for k in range(3)]
        assert rows[0].gate_closes_at == START - timedelta(seconds=60)
        assert rows[2].end == START + timedelta(minutes=15)
    with pytest.raises(PlatformError, match="already has 1 of these") as info:
        _open(db, market_id, START + timedelta(minutes=10), count=2)
    assert info.value.status == 409
    with pytest.raises(PlatformError, match="not aligned") as info:
        _open(db, market_id, START + timedelta(seconds=7))
    assert info.value.status == 422
    with db.begin() as s:
        assert len(crud.list_intervals(s, market_id=market_id, state=IntervalState.OPEN)) == 3


def test_contracts_name_a_bus_of_the_feeder(db: PlatformDb, world: World) -> None:
    market_id = make_market(db, world, feeder="case33bw")
    with pytest.raises(PlatformError, match="bus '99' is not a bus") as info, db.begin() as s:
        crud.create_contract(
            s,
            contract_in=ContractCreate(
                member_id=world.prosumers[0],
                market_id=market_id,
                bus="99",
                meter_id="m",
                max_power_kw=10.0,
            ),
        )
    assert info.value.status == 422
    with db.begin() as s:
        c = crud.create_contract(
            s,
            contract_in=ContractCreate(
                member_id=world.prosumers[0],
                market_id=market_id,
                bus="17",
                meter_id="m",
                max_power_kw=10.0,
            ),
        )
        crud.update_contract(
            s, contract=c, contract_in=ContractUpdate.model_validate({"active": False})
        )
        assert [x.id for x in crud.list_contracts(s, member_id=world.prosumers[0])] == [c.id]
        assert crud.list_contracts(s, member_id=world.prosumers[1]) == []


def test_a_refused_request_leaves_no_trace(db: PlatformDb, world: World) -> None:
    _, interval, contracts = _setup(db, world)
    n = _n_audit(db)
    bad = BidCreate(
        interval_id=interval, contract_id=contracts[0], points=_points((0.1, 1.0), (0.2, 2.0))
    )
    _refused(db, world.prosumers[0], bad, "bad")
    assert _n_audit(db) == n
    with db.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Bid)) == 0


def test_the_long_form_clearing_reads_is_every_point_exactly(db: PlatformDb, world: World) -> None:
    """The database's unnesting of ``bid.points`` gives back each double bit for bit, in order.

    Prices and powers over many magnitudes (what ``json.dumps`` writes, ``json.loads`` reads
    back exactly; SQLite's and PostgreSQL's JSON number parsers must too), including signed
    zero's neighbours and the shortest repr of awkward decimals.
    """
    _, interval, contracts = _setup(db, world)
    rng = np.random.default_rng(7)
    n = 400
    exponents = rng.integers(-12, 12, size=(n, 4))
    values = rng.uniform(-1, 1, size=(n, 4)) * 10.0**exponents
    values[:5] = [[0.1, 0.2, 0.3, 1 / 3], [5e-324, 1e-310, 2.2250738585072014e-308, 1e300],
                  [-0.0, 0.0, 0.1 + 0.2, 9007199254740993.0], [1.7976931348623157e308, -1e-7,
                  123456789.12345679, 0.7], [2.0, -2.0, 0.5, 1e-5]]  # fmt: skip
    with db.begin() as s:
        for k in range(n):
            s.add(
                Bid(
                    interval_id=interval,
                    contract_id=contracts[k % len(contracts)],
                    member_id=world.prosumers[k % len(contracts)],
                    idempotency_key=f"x{k}",
                    content_hash="0" * 64,
                    signature=None,
                    version=k + 1,
                    status=BidStatus.ACTIVE if k < len(contracts) else BidStatus.REPLACED,
                    points=[
                        {
                            "price_per_kwh": float(values[k, 2 * j]),
                            "power_kw": float(values[k, 2 * j + 1]),
                        }
                        for j in range(2)
                    ],
                    submitted_at=NOW,
                )
            )
        s.flush()
        # every bid's points (not only the active ones'): the same unnesting, all statuses
        s.execute(sa.text("DROP INDEX uq_bid_active_interval_contract"))  # many active per pair
        s.execute(sa.update(Bid).values(status=BidStatus.ACTIVE.value))
        rows = service._raw_rows(s, service._points_of_active_bids(s, interval))
        ids = {b.idempotency_key: b.id for b in s.scalars(sa.select(Bid))}
        s.rollback()
    got = {(bid_id, seq): (price, power) for bid_id, seq, price, power in rows}
    assert len(got) == 2 * n
    for k in range(n):
        for j in range(2):
            price, power = got[(ids[f"x{k}"], j)]
            want = (float(values[k, 2 * j]), float(values[k, 2 * j + 1]))
            assert (price, power) == want and np.signbit([price, power]).tolist() == np.signbit(
                want
            ).tolist(), (k, j, price, power, want)
