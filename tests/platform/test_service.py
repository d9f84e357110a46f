"""The interval lifecycle on both back ends, on case33bw and without a feeder; the audit chain."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from tests.platform.conftest import NOW, START, PlatformDb, World, make_market
from transactive.coordination import secure_clearing
from transactive.curves import BidCurves
from transactive.market import Supply, clear
from transactive.network import load_feeder
from transactive.platform import audit, crud, ledger, schemas, service
from transactive.platform.errors import PlatformError
from transactive.platform.models import AuditRecord, Interval
from transactive.platform.schemas import (
    AccountKind,
    BidCreate,
    BidPoint,
    ContractCreate,
    EntryKind,
    IntervalsCreate,
    IntervalState,
    MeterReadingCreate,
)

#: (bus, max power, points) per prosumer: two buyers far down the feeder, a seller, a battery.
BIDS = [
    ("17", 3000.0, [(0.05, 3000.0), (0.60, 0.0)]),
    ("32", 1500.0, [(1.0, 1500.0)]),  # unresponsive: a block at the cap
    ("5", 800.0, [(0.08, 0.0), (0.20, -800.0)]),  # a seller
    ("24", 400.0, [(0.09, 400.0), (0.12, -400.0)]),  # buys cheap, sells dear
]


def _market_with_bids(db: PlatformDb, world: World, feeder: str | None, **terms: object):
    market_id = make_market(db, world, feeder=feeder, **terms)
    with db.begin() as s:
        market = crud.get_market(s, market_id=market_id)
        (interval,) = crud.open_intervals(
            s, market=market, intervals_in=IntervalsCreate(start=START, count=1)
        )
        contracts = []
        for member_id, (bus, max_kw, points) in zip(world.prosumers, BIDS, strict=True):
            c = crud.create_contract(
                s,
                contract_in=ContractCreate(
                    member_id=member_id,
                    market_id=market_id,
                    bus=bus,
                    meter_id=f"m{member_id}",
                    max_power_kw=max_kw,
                ),
            )
            contracts.append(c.id)
            bid_in = BidCreate(
                interval_id=interval.id,
                contract_id=c.id,
                points=[BidPoint(price_per_kwh=p, power_kw=q) for p, q in points],
            )
            crud.submit_bid(
                s,
                member=crud.get_member(s, member_id=member_id),
                bid_in=bid_in,
                idempotency_key=f"k{member_id}",
                now=NOW,
            )
    return market_id, interval.id, contracts


def _step(db: PlatformDb, interval_id: int, step: Any = service.advance, **kw: Any) -> Interval:
    with db.begin() as s:
        result: Interval = step(
            s, interval=crud.get_interval(s, interval_id=interval_id), now=START, **kw
        )
        return result


def _read_meters(db: PlatformDb, world: World, interval_id: int, factor: float = 1.0) -> None:
    with db.begin() as s:
        for award in crud.list_awards(s, interval_id=interval_id):
            crud.record_meter_reading(
                s,
                member=crud.get_member(s, member_id=award.member_id),
                reading_in=MeterReadingCreate(
                    interval_id=interval_id,
                    contract_id=award.contract_id,
                    energy_kwh=award.energy_kwh * factor + 0.01,
                ),
                now=START + timedelta(minutes=6),
            )


def _assert_books_balance(db: PlatformDb, market_id: int) -> dict[str, int]:
    with db.begin() as s:
        accounts = crud.list_accounts(s)
    balances = {a.name: a.balance_minor for a in accounts}
    assert sum(balances.values()) == 0
    assert balances[ledger.market_account(market_id)] == 0
    return balances


def test_lifecycle_without_a_feeder(db: PlatformDb, world: World) -> None:
    market_id, interval_id, contracts = _market_with_bids(db, world, None)
    states = [_step(db, interval_id).state for _ in range(3)]
    assert states == [IntervalState.GATE_CLOSED, IntervalState.CLEARED, IntervalState.CHECKED]
    with db.begin() as s:
        interval = crud.get_interval(s, interval_id=interval_id)
        awards = {a.contract_id: a for a in crud.list_awards(s, interval_id=interval_id)}
    assert interval.secure is None and interval.n_rounds == 1  # no network to check
    # the same clearing as the market's own function on the same curves
    curves = BidCurves.from_breakpoints(
        [[p for p, _ in pts] for _, _, pts in BIDS], [[q for _, q in pts] for _, _, pts in BIDS]
    )
    expected = clear(curves, price_cap=1.0, supply=Supply(0.10, 5000.0))
    assert interval.clearing_price_per_kwh == pytest.approx(expected.clearing_price)
    np.testing.assert_allclose([awards[c].power_kw for c in contracts], expected.allocation_kw)
    assert all(a.price_per_kwh == interval.clearing_price_per_kwh for a in awards.values())
    assert awards[contracts[0]].energy_kwh == pytest.approx(awards[contracts[0]].power_kw / 12)
    _read_meters(db, world, interval_id, factor=1.05)
    assert _step(db, interval_id).state is IntervalState.SETTLED
    balances = _assert_books_balance(db, market_id)
    assert balances[ledger.member_account(world.operator)] < 0  # transaction fees received
    assert balances[ledger.member_account(world.dso)] < 0  # dispatch fees received
    with db.begin() as s:
        kinds = {
            e.kind for a in crud.list_accounts(s) for e in crud.list_entries(s, account_id=a.id)
        }
    assert {EntryKind.ENERGY, EntryKind.IMBALANCE, EntryKind.TRANSACTION_FEE} <= kinds


def test_the_public_models_read_the_rows(db: PlatformDb, world: World) -> None:
    market_id, interval_id, _ = _market_with_bids(db, world, None)
    for _ in range(3):
        _step(db, interval_id, actor_member_id=world.operator)
    _read_meters(db, world, interval_id)
    _step(db, interval_id, actor_member_id=world.operator)
    with db.begin() as s:
        pairs: list[tuple[type[BaseModel], Sequence[object]]] = [
            (schemas.MemberPublic, crud.list_members(s)),
            (schemas.MarketPublic, crud.list_markets(s)),
            (schemas.IntervalPublic, crud.list_intervals(s, market_id=market_id)),
            (schemas.ContractPublic, crud.list_contracts(s)),
            (schemas.BidPublic, crud.list_bids(s, interval_id=interval_id)),
            (schemas.AwardPublic, crud.list_awards(s, interval_id=interval_id)),
            (schemas.MeterReadingPublic, crud.list_meter_readings(s, interval_id=interval_id)),
            (schemas.AccountPublic, crud.list_accounts(s)),
            (schemas.AuditRecordPublic, audit.list_records(s)),
        ]
        accounts = crud.list_accounts(s, member_id=world.prosumers[0])
        pairs.append((schemas.EntryPublic, crud.list_entries(s, account_id=accounts[0].id)))
        for model, rows in pairs:
            assert rows, model
            for row in rows:
                model.model_validate(row)
        bid = schemas.BidPublic.model_validate(crud.list_bids(s, interval_id=interval_id)[0])
        assert bid.points[0] == BidPoint(price_per_kwh=0.05, power_kw=3000.0)
        actors = {r.kind: r.actor_member_id for r in audit.list_records(s)}
    assert actors["interval.settled"] == world.operator
    assert actors["bid.submitted"] == world.prosumers[-1]


def test_lifecycle_on_case33bw_with_the_dsos_check(db: PlatformDb, world: World) -> None:
    market_id, interval_id, contracts = _market_with_bids(
        db, world, "case33bw", network_import_per_kwh=0.01, loss_price_per_kwh=0.1
    )
    for _ in range(3):
        _step(db, interval_id)
    with db.begin() as s:
        interval = crud.get_interval(s, interval_id=interval_id)
        awards = {a.contract_id: a for a in crud.list_awards(s, interval_id=interval_id)}
    # the DSO's loop run by hand on the same curves, at the contracts' nodes
    feeder = load_feeder("case33bw")
    curves = BidCurves.from_breakpoints(
        [[p for p, _ in pts] for _, _, pts in BIDS], [[q for _, q in pts] for _, _, pts in BIDS]
    )
    nodes = np.array([feeder.bus_node[int(bus)] for bus, _, _ in BIDS])
    outcome = secure_clearing(curves, nodes, feeder, price_cap=1.0, supply=Supply(0.10, 5000.0))
    assert interval.n_rounds == outcome.n_rounds > 1  # the 3 MW at bus 17 sags the voltage
    assert interval.secure is outcome.secure
    assert interval.clearing_price_per_kwh == pytest.approx(outcome.clearing_price)
    np.testing.assert_allclose([awards[c].power_kw for c in contracts], outcome.allocation_kw)
    np.testing.assert_allclose(
        [awards[c].price_per_kwh for c in contracts], outcome.locational_price_per_kwh[nodes]
    )
    assert interval.locational_price_per_kwh is not None
    assert interval.clearing_price_per_kwh is not None
    assert interval.locational_price_per_kwh["17"] > interval.clearing_price_per_kwh
    # the network state the DSO saw in its final round is kept for the operator's page
    report = outcome.final.report
    assert interval.node_vm_pu is not None and interval.branch_loading_pct is not None
    np.testing.assert_allclose(interval.node_vm_pu, report.vm_pu)
    np.testing.assert_allclose(
        np.array(interval.branch_loading_pct, dtype=float), report.branch_loading_pct
    )
    # settlement needs every awarded contract's reading
    with db.begin() as s:
        first = crud.list_awards(s, interval_id=interval_id)[0]
        crud.record_meter_reading(
            s,
            member=crud.get_member(s, member_id=first.member_id),
            reading_in=MeterReadingCreate(
                interval_id=interval_id, contract_id=first.contract_id, energy_kwh=first.energy_kwh
            ),
            now=START,
        )
    with pytest.raises(PlatformError) as info:
        _step(db, interval_id)
    missing = sorted(set(contracts) - {first.contract_id})
    assert info.value.status == 409
    assert info.value.problems == tuple(f"contract {c}: no meter reading" for c in missing)
    with db.begin() as s:
        again = MeterReadingCreate(
            interval_id=interval_id, contract_id=first.contract_id, energy_kwh=0
        )
        with pytest.raises(PlatformError, match="already has meter reading"):
            crud.record_meter_reading(
                s, member=crud.get_member(s, member_id=first.member_id), reading_in=again, now=START
            )
        for award in crud.list_awards(s, interval_id=interval_id):
            if award.contract_id != first.contract_id:
                crud.record_meter_reading(
                    s,
                    member=crud.get_member(s, member_id=award.member_id),
                    reading_in=MeterReadingCreate(
                        interval_id=interval_id,
                        contract_id=award.contract_id,
                        energy_kwh=award.energy_kwh * 0.97,
                    ),
                    now=START,
                )
    assert _step(db, interval_id).state is IntervalState.SETTLED
    balances = _assert_books_balance(db, market_id)
    assert balances[ledger.member_account(world.owner)] < 0  # network fees received
    with db.begin() as s:
        kinds = Counter(
            e.kind
            for a in crud.list_accounts(s)
            if a.kind is AccountKind.MEMBER and a.member_id == world.dso
            for e in crud.list_entries(s, account_id=a.id)
        )
    assert kinds[EntryKind.CONGESTION_RENT] == 1  # surcharges paid more than sellers got
    with pytest.raises(PlatformError, match="is settled: it has no next step"):
        _step(db, interval_id)


def test_clearing_reads_only_the_active_bids(db: PlatformDb, world: World) -> None:
    _, interval_id, contracts = _market_with_bids(db, world, None)
    with db.begin() as s:
        seller = crud.get_member(s, member_id=world.prosumers[2])
        replacement = BidCreate(
            interval_id=interval_id,
            contract_id=contracts[2],
            points=[BidPoint(price_per_kwh=0.02, power_kw=-800.0)],
        )
        crud.submit_bid(s, member=seller, bid_in=replacement, idempotency_key="r", now=NOW)
        battery = crud.get_member(s, member_id=world.prosumers[3])
        (bid,) = crud.list_bids(s, member_id=battery.id)
        crud.withdraw_bid(s, member=battery, bid_id=bid.id, now=NOW)
    for _ in range(2):
        _step(db, interval_id)
    with db.begin() as s:
        awards = {a.contract_id: a.power_kw for a in crud.list_awards(s, interval_id=interval_id)}
        price = crud.get_interval(s, interval_id=interval_id).clearing_price_per_kwh
    active = BidCurves.from_breakpoints(
        [[0.05, 0.60], [1.0, 1.0], [0.02, 0.02]], [[3000.0, 0.0], [1500.0, 0.0], [0.0, -800.0]]
    )
    expected = clear(active, price_cap=1.0, supply=Supply(0.10, 5000.0))
    assert sorted(awards) == contracts[:3]  # the withdrawn bid has no award
    np.testing.assert_allclose([awards[c] for c in contracts[:3]], expected.allocation_kw)
    assert price == pytest.approx(expected.clearing_price)
    assert awards[contracts[2]] == pytest.approx(-800.0)  # the replacement, not the first bid


def test_steps_refuse_the_wrong_state_and_the_gate_waits(db: PlatformDb, world: World) -> None:
    _, interval_id, _ = _market_with_bids(db, world, None)
    for step in (service.clear_interval, service.check_interval, service.settle_interval):
        with pytest.raises(PlatformError, match="is open: ") as info:
            _step(db, interval_id, step)
        assert info.value.status == 409
    with pytest.raises(PlatformError, match="open until its gate closes"), db.begin() as s:
        service.close_gate(s, interval=crud.get_interval(s, interval_id=interval_id), now=NOW)
    with db.begin() as s:
        interval = crud.get_interval(s, interval_id=interval_id)
        service.close_gate(s, interval=interval, now=NOW, force=True)
    with pytest.raises(PlatformError, match="is gate_closed: closing the gate needs it open"):
        _step(db, interval_id, service.close_gate)


def test_an_interval_without_bids_settles_empty(db: PlatformDb, world: World) -> None:
    market_id = make_market(db, world)
    with db.begin() as s:
        (interval,) = crud.open_intervals(
            s,
            market=crud.get_market(s, market_id=market_id),
            intervals_in=IntervalsCreate(start=START, count=1),
        )
    for _ in range(4):
        last = _step(db, interval.id)
    assert last.state is IntervalState.SETTLED and last.clearing_price_per_kwh is None


def test_every_accepted_message_and_state_change_is_one_audit_record(
    db: PlatformDb, world: World
) -> None:
    _, interval_id, _ = _market_with_bids(db, world, None)
    for _ in range(3):
        _step(db, interval_id)
    _read_meters(db, world, interval_id)
    _step(db, interval_id)
    with db.begin() as s:
        kinds = Counter(s.scalars(sa.select(AuditRecord.kind)))
        seqs = list(s.scalars(sa.select(AuditRecord.seq).order_by(AuditRecord.id)))
    assert kinds == {
        "member.created": 8, "market.created": 1, "intervals.opened": 1, "contract.created": 4,
        "bid.submitted": 4, "interval.gate_closed": 1, "interval.cleared": 1,
        "interval.checked": 1, "meter_reading.recorded": 4, "interval.settled": 1,
    }  # fmt: skip
    assert seqs == list(range(1, len(seqs) + 1))
    with db.begin() as s:
        result = audit.verify_database(s)
    assert result.ok and result.problems == [] and result.n_records == len(seqs)


def _tamper(db: PlatformDb, *sql: str) -> list[str]:
    with db.begin() as s:
        for statement in sql:
            s.execute(sa.text(statement))
    with db.begin() as s:
        result = audit.verify_database(s)
    assert not result.ok
    return result.problems


@pytest.mark.parametrize("tampering", ["edited", "removed", "reordered"])
def test_verify_names_the_seq_of_a_tampered_record(
    db: PlatformDb, world: World, tampering: str
) -> None:
    make_market(db, world)  # 9 records: 8 members and the market
    if tampering == "edited":
        problems = _tamper(
            db,
            'UPDATE audit_record SET payload = \'{"member_id": 3, "name": "mallory"}\' '
            "WHERE seq = 3",
        )
        assert problems[0].startswith("seq 3: edited")
    elif tampering == "removed":
        problems = _tamper(db, "DELETE FROM audit_record WHERE seq = 5")
        assert any(p.startswith("seq 6: seq 5 removed") for p in problems)
    else:
        problems = _tamper(
            db,
            "UPDATE audit_record SET seq = -1 WHERE seq = 4",
            "UPDATE audit_record SET seq = 4 WHERE seq = 5",
            "UPDATE audit_record SET seq = 5 WHERE seq = -1",
        )
        assert any(p.startswith("seq 5") for p in problems)
        assert any(p.startswith("seq 4") for p in problems)
    assert all(p.startswith("seq ") for p in problems)
