"""Settlement under random sequences of platform messages (hypothesis stateful testing, issue 13).

A :class:`~hypothesis.stateful.RuleBasedStateMachine` drives :mod:`transactive.platform.crud` and
:mod:`transactive.platform.service` on a migrated SQLite database: it opens intervals, submits,
replays, replaces and withdraws bids (idempotency keys new and reused), closes gates (on time,
early, forced), clears, checks, takes meter readings (with deviations) and settles, on a market
with random terms. A small model predicts which messages are refused and with which status;
after every step the books balance (all accounts sum to zero, the market's clearing account is
zero) and after every settlement each member's energy and imbalance entries are its awards and
deviations at their prices, to one minor unit (energy, apportioned) or half of one (imbalance);
at the end the audit chain verifies.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.platform.conftest import NOW, START, PlatformDb, admit
from transactive.platform import audit, crud, ledger, service
from transactive.platform import db as platform_db
from transactive.platform.errors import PlatformError
from transactive.platform.models import Account, Entry
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
    Role,
)

MAX_KW = 40.0
PRICE_CAP = 1.0
INTERVAL_S = 300
#: Steps of the lifecycle in order.
NEXT = {
    IntervalState.OPEN: IntervalState.GATE_CLOSED,
    IntervalState.GATE_CLOSED: IntervalState.CLEARED,
    IntervalState.CLEARED: IntervalState.CHECKED,
    IntervalState.CHECKED: IntervalState.SETTLED,
}


@dataclass(frozen=True)
class Parties:
    operator: int
    dso: int
    owner: int
    retailer: int
    prosumers: tuple[int, ...]
    outsider: int  # admitted, holds no contract in any market


@dataclass
class ModelBid:
    interval_id: int
    contract_id: int
    member_id: int
    bid_in: BidCreate
    status: BidStatus


@dataclass
class ModelInterval:
    start: datetime
    state: IntervalState = IntervalState.OPEN
    awards: dict[int, tuple[int, float, float]] = field(default_factory=dict)  # contract ->
    # (member, kWh, price)
    readings: dict[int, float] = field(default_factory=dict)  # contract -> metered kWh


def _monotone(pts: list[tuple[float, float]]) -> list[BidPoint]:
    """Points sorted into a bid curve: prices non-decreasing, power non-increasing."""
    prices = sorted(p for p, _ in pts)
    powers = sorted((q for _, q in pts), reverse=True)
    return [BidPoint(price_per_kwh=p, power_kw=q) for p, q in zip(prices, powers, strict=True)]


def _curves(lo: float, hi: float) -> st.SearchStrategy[list[BidPoint]]:
    point = st.tuples(st.floats(0.0, PRICE_CAP), st.floats(lo, hi))
    return st.lists(point, min_size=1, max_size=3).map(_monotone)


#: Buyers, sellers and prosumers that do both.
points_strategy = st.one_of(_curves(0.0, MAX_KW), _curves(-MAX_KW, 0.0), _curves(-MAX_KW, MAX_KW))

market_terms = st.fixed_dictionaries(
    {
        "supply_price_per_kwh": st.one_of(st.none(), st.floats(0.02, 0.5)),
        "imbalance_price_per_kwh": st.floats(0.0, 1.0),
        "transaction_fee_per_kwh": st.sampled_from([0.0, 0.001, 0.0137]),
        "dispatch_fee_per_kwh": st.sampled_from([0.0, 0.002, 0.0251]),
        "network_import_per_kwh": st.sampled_from([0.0, 0.03]),
        "network_export_per_kwh": st.sampled_from([0.0, 0.01, -0.02]),
    }
)


class SettlementMachine(RuleBasedStateMachine):
    """One market on a fresh copy of a migrated database with the parties admitted."""

    template: Path  # the migrated SQLite file the examples copy
    workdir: Path
    parties: Parties
    n_examples = 0

    def __init__(self) -> None:
        super().__init__()
        SettlementMachine.n_examples += 1
        path = self.workdir / f"example-{SettlementMachine.n_examples}.db"
        with sqlite3.connect(self.template) as src, sqlite3.connect(path) as dst:
            src.backup(dst)  # a consistent copy, the WAL included
        src.close()
        dst.close()
        self.path = path
        self.engine = platform_db.make_engine(f"sqlite:///{path}")
        # durability is not under test: no fsync per commit keeps the test fast
        sa.event.listen(
            self.engine, "connect", lambda conn, _rec: conn.execute("PRAGMA synchronous=OFF")
        )
        self.db = PlatformDb(
            f"sqlite:///{path}",
            self.engine,
            platform_db.make_session_factory(self.engine),
            "sqlite",
        )
        self.intervals: dict[int, ModelInterval] = {}
        self.bids: dict[int, ModelBid] = {}
        self.keys: dict[tuple[int, str], int] = {}  # (member, idempotency key) -> bid id
        self.contracts: list[tuple[int, int]] = []  # (contract id, member id)
        self.n_keys = 0

    # ------------------------------------------------------------------------------ helpers

    def _call(self, expected_status: int | None, fn: Any, **kwargs: Any) -> Any:
        """Run ``fn(session, **kwargs)`` in one transaction; check the refusal the model expects."""
        try:
            with self.db.begin() as s:
                result = fn(s, **kwargs)
                if isinstance(result, tuple):
                    return tuple(getattr(r, "id", r) for r in result)
                return getattr(result, "id", result)
        except PlatformError as exc:
            refused = exc
        else:  # pragma: no cover - every path returns
            raise AssertionError("unreachable")
        assert expected_status == refused.status, (
            f"{fn.__name__}: {refused.status} {refused.message} {refused.problems}"
        )
        return None

    def _expect_ok(self, result: Any, expected_status: int | None, what: str) -> None:
        if expected_status is not None:
            assert result is None, f"{what} was accepted but the model expected {expected_status}"

    # ---------------------------------------------------------------------------- the world

    @initialize(terms=market_terms)
    def open_market(self, terms: dict[str, Any]) -> None:
        p = self.parties
        market_in = MarketCreate(
            name="stateful",
            kind=MarketKind.REAL_TIME,
            interval_s=INTERVAL_S,
            price_cap_per_kwh=PRICE_CAP,
            supply_capacity_kw=None if terms["supply_price_per_kwh"] is None else 60.0,
            dso_member_id=p.dso,
            network_owner_member_id=p.owner,
            supplier_member_id=p.retailer,
            **terms,
        )
        self.market = market_in
        with self.db.begin() as s:
            self.market_id = crud.create_market(s, market_in=market_in, currency="USD").id
            for k, member_id in enumerate((*p.prosumers, p.prosumers[0])):
                contract = crud.create_contract(
                    s,
                    contract_in=ContractCreate(
                        member_id=member_id,
                        market_id=self.market_id,
                        bus=f"bus{k}",
                        meter_id=f"m{self.market_id}-{k}",
                        max_power_kw=MAX_KW,
                    ),
                )
                self.contracts.append((contract.id, member_id))

    # -------------------------------------------------------------------------------- rules

    @precondition(lambda self: len(self.intervals) < 3)
    @rule(curves=st.lists(points_strategy, max_size=4))
    def open_interval(self, curves: list[list[BidPoint]]) -> None:
        """Open the next interval, and the first bids for it of the first contracts."""
        start = START + timedelta(seconds=INTERVAL_S * len(self.intervals))
        with self.db.begin() as s:
            market = crud.get_market(s, market_id=self.market_id)
            (interval,) = crud.open_intervals(
                s, market=market, intervals_in=IntervalsCreate(start=start, count=1)
            )
            self.intervals[interval.id] = ModelInterval(start=start)
        for (contract_id, member_id), points in zip(self.contracts, curves, strict=False):
            self._new_bid(interval.id, contract_id, member_id, points)

    @precondition(lambda self: self.intervals)
    @rule(data=st.data(), points=points_strategy, reuse=st.booleans(), same=st.booleans())
    def submit_bid(self, data: Any, points: list[BidPoint], reuse: bool, same: bool) -> None:
        contract_id, member_id = data.draw(st.sampled_from(self.contracts))
        own_keys = [k for (m, k) in self.keys if m == member_id]
        if reuse and own_keys:
            key = data.draw(st.sampled_from(own_keys))
            earlier = self.bids[self.keys[(member_id, key)]]
            bid_in = (
                earlier.bid_in
                if same
                else BidCreate(
                    interval_id=earlier.bid_in.interval_id,
                    contract_id=earlier.bid_in.contract_id,
                    points=points,
                )
            )
            replay = bid_in == earlier.bid_in
            expected = None if replay else 409
            result = self._submit(member_id, bid_in, key, expected)
            if replay:
                assert result == (self.keys[(member_id, key)], False)
            return
        interval_id = data.draw(st.sampled_from(sorted(self.intervals)))
        self._new_bid(interval_id, contract_id, member_id, points)

    def _new_bid(
        self, interval_id: int, contract_id: int, member_id: int, points: list[BidPoint]
    ) -> None:
        """A bid under a new key: accepted while the interval is open, replacing the active one."""
        self.n_keys += 1
        key = f"key-{self.n_keys}"
        bid_in = BidCreate(interval_id=interval_id, contract_id=contract_id, points=points)
        is_open = self.intervals[interval_id].state is IntervalState.OPEN
        result = self._submit(member_id, bid_in, key, None if is_open else 409)
        if not is_open:
            assert result is None
            return
        assert result is not None
        bid_id, created = result
        assert created
        versions = 1
        for other in self.bids.values():
            if (other.interval_id, other.contract_id) == (interval_id, contract_id):
                versions += 1
                if other.status is BidStatus.ACTIVE:
                    other.status = BidStatus.REPLACED
        self.bids[bid_id] = ModelBid(interval_id, contract_id, member_id, bid_in, BidStatus.ACTIVE)
        self.keys[(member_id, key)] = bid_id
        with self.db.begin() as s:
            assert crud.get_bid(s, bid_id=bid_id).version == versions

    @precondition(lambda self: any(m.state is IntervalState.OPEN for m in self.intervals.values()))
    @rule(data=st.data(), points=points_strategy)
    def bid_on_open_interval(self, data: Any, points: list[BidPoint]) -> None:
        """A new bid (or a replacement) for an open interval: accepted."""
        open_ids = sorted(i for i, m in self.intervals.items() if m.state is IntervalState.OPEN)
        interval_id = data.draw(st.sampled_from(open_ids))
        contract_id, member_id = data.draw(st.sampled_from(self.contracts))
        self._new_bid(interval_id, contract_id, member_id, points)

    def _submit(
        self, member_id: int, bid_in: BidCreate, key: str, expected: int | None
    ) -> tuple[int, bool] | None:
        def call(s: Any) -> tuple[Any, bool]:
            member = crud.get_member(s, member_id=member_id)
            return crud.submit_bid(s, member=member, bid_in=bid_in, idempotency_key=key, now=NOW)

        result: tuple[int, bool] | None = self._call(expected, call)
        self._expect_ok(result, expected, "the bid")
        return result

    @precondition(lambda self: self.bids)
    @rule(data=st.data(), by_owner=st.booleans())
    def withdraw_bid(self, data: Any, by_owner: bool) -> None:
        bid_id = data.draw(st.sampled_from(sorted(self.bids)))
        bid = self.bids[bid_id]
        member_id = bid.member_id if by_owner else self.parties.outsider
        if not by_owner:
            expected: int | None = 403
        elif (
            bid.status is not BidStatus.ACTIVE
            or self.intervals[bid.interval_id].state is not IntervalState.OPEN
        ):
            expected = 409
        else:
            expected = None

        def call(s: Any) -> Any:
            member = crud.get_member(s, member_id=member_id)
            return crud.withdraw_bid(s, member=member, bid_id=bid_id, now=NOW)

        result = self._call(expected, call)
        self._expect_ok(result, expected, "the withdrawal")
        if expected is None:
            bid.status = BidStatus.WITHDRAWN

    @precondition(lambda self: self.intervals)
    @rule(data=st.data(), early=st.booleans(), force=st.booleans(), steps=st.integers(1, 3))
    def advance(self, data: Any, early: bool, force: bool, steps: int) -> None:
        """Up to ``steps`` steps of one interval's lifecycle, stopping at the first refusal."""
        interval_id = data.draw(st.sampled_from(sorted(self.intervals)))
        for _ in range(steps):
            if not self._advance(interval_id, early, force):
                return

    def _advance(self, interval_id: int, early: bool, force: bool) -> bool:
        model = self.intervals[interval_id]
        state = model.state
        now = NOW if early else model.start + timedelta(hours=1)
        if state is IntervalState.SETTLED:
            expected: int | None = 409
        elif state is IntervalState.OPEN and early and not force:
            expected = 409  # before its gate closes
        elif state is IntervalState.CHECKED and set(model.awards) - set(model.readings):
            expected = 409  # meter readings missing
        else:
            expected = None

        def call(s: Any) -> Any:
            interval = crud.get_interval(s, interval_id=interval_id)
            return service.advance(s, interval=interval, now=now, force=force)

        result = self._call(expected, call)
        self._expect_ok(result, expected, f"advancing a {state.value} interval")
        if expected is not None:
            return False
        model.state = NEXT[state]
        if model.state is IntervalState.CLEARED:
            # the awards are the clearing of the active bids
            with self.db.begin() as s:
                awards = crud.list_awards(s, interval_id=interval_id)
                model.awards = {
                    a.contract_id: (a.member_id, a.energy_kwh, a.price_per_kwh) for a in awards
                }
            active = {
                b.contract_id
                for b in self.bids.values()
                if b.interval_id == interval_id and b.status is BidStatus.ACTIVE
            }
            assert set(model.awards) <= active
        if model.state is IntervalState.SETTLED:
            self._check_settlement(interval_id, model)
        return True

    @precondition(
        lambda self: any(m.state is IntervalState.CHECKED for m in self.intervals.values())
    )
    @rule(data=st.data(), deviation=st.one_of(st.just(0.0), st.floats(-3.0, 3.0)))
    def read_any_meter(self, data: Any, deviation: float) -> None:
        """A reading for any interval and contract: most are refused."""
        interval_id = data.draw(st.sampled_from(sorted(self.intervals)))
        contract_id, member_id = data.draw(st.sampled_from(self.contracts))
        self._read(interval_id, contract_id, member_id, deviation)

    @precondition(lambda self: self._unread())
    @rule(data=st.data(), deviations=st.lists(st.one_of(st.just(0.0), st.floats(-3.0, 3.0))))
    def read_meters(self, data: Any, deviations: list[float]) -> None:
        """Readings of the awarded contracts of a checked interval, some or all of them."""
        unread = self._unread()
        interval_id = data.draw(st.sampled_from(sorted({i for i, _c in unread})))
        targets = [c for i, c in unread if i == interval_id]
        n = data.draw(st.integers(1, len(targets)))
        member_of = dict(self.contracts)
        for k, contract_id in enumerate(targets[:n]):
            deviation = deviations[k] if k < len(deviations) else 0.0
            self._read(interval_id, contract_id, member_of[contract_id], deviation)

    def _unread(self) -> list[tuple[int, int]]:
        return [
            (interval_id, c)
            for interval_id, m in sorted(self.intervals.items())
            if m.state is IntervalState.CHECKED
            for c in sorted(m.awards)
            if c not in m.readings
        ]

    def _read(self, interval_id: int, contract_id: int, member_id: int, deviation: float) -> None:
        model = self.intervals[interval_id]
        award = model.awards.get(contract_id)
        energy = (0.0 if award is None else award[1]) + deviation
        if model.state is not IntervalState.CHECKED:
            expected: int | None = 409
        elif award is None or contract_id in model.readings:
            expected = 409  # no award to settle against; a second reading
        else:
            expected = None

        def call(s: Any) -> Any:
            member = crud.get_member(s, member_id=member_id)
            reading_in = MeterReadingCreate(
                interval_id=interval_id, contract_id=contract_id, energy_kwh=energy
            )
            return crud.record_meter_reading(s, member=member, reading_in=reading_in, now=NOW)

        result = self._call(expected, call)
        self._expect_ok(result, expected, "the meter reading")
        if expected is None:
            model.readings[contract_id] = energy

    # --------------------------------------------------------------------------- invariants

    @invariant()
    def books_balance(self) -> None:
        if not hasattr(self, "market_id"):
            return
        with self.db.begin() as s:
            balances = {a.name: a.balance_minor for a in crud.list_accounts(s)}
            for interval_id, model in self.intervals.items():
                assert crud.get_interval(s, interval_id=interval_id).state is model.state
        assert sum(balances.values()) == 0
        assert balances[ledger.market_account(self.market_id)] == 0

    def _check_settlement(self, interval_id: int, model: ModelInterval) -> None:
        with self.db.begin() as s:
            names = {row[0]: row[1] for row in s.execute(sa.select(Account.id, Account.name))}
            entries = s.scalars(sa.select(Entry).where(Entry.interval_id == interval_id)).all()
        postings = [
            ledger.Posting(e.kind, names[e.debit_account_id], names[e.credit_account_id],
                           e.amount_minor, e.memo)
            for e in entries
        ]  # fmt: skip
        assert all(p.amount_minor > 0 for p in postings)
        bal = ledger.balances(postings)
        assert sum(bal.values()) == 0
        assert bal.get(ledger.market_account(self.market_id), 0) == 0
        by_member: dict[int, list[int]] = defaultdict(list)
        for contract_id, (member_id, _kwh, _price) in model.awards.items():
            by_member[member_id].append(contract_id)
        market = ledger.market_account(self.market_id)
        for member_id, contracts in by_member.items():
            key = ledger.member_account(member_id)
            energy = 100 * math.fsum(model.awards[c][1] * model.awards[c][2] for c in contracts)
            charged = _net(postings, EntryKind.ENERGY, key, market)
            # apportioned so the market account closes: within one unit
            assert abs(charged - energy) <= 1.0 + 1e-6
            deviation = math.fsum(model.readings[c] - model.awards[c][1] for c in contracts)
            imbalance = 100 * deviation * self.market.imbalance_price_per_kwh
            assert abs(_net(postings, EntryKind.IMBALANCE, key) - imbalance) <= 0.5 + 1e-6

    def teardown(self) -> None:
        try:
            with self.db.begin() as s:
                verification = audit.verify_database(s)
            assert verification.ok, verification.problems
        finally:
            self.engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def _net(
    postings: list[ledger.Posting], kind: EntryKind, account: str, other: str | None = None
) -> int:
    total = 0
    for p in postings:
        if p.kind is not kind:
            continue
        if p.debit == account and other in (None, p.credit):
            total += p.amount_minor
        elif p.credit == account and other in (None, p.debit):
            total -= p.amount_minor
    return total


def test_settlement_sums_to_zero_under_random_message_sequences(
    sqlite_db: PlatformDb, tmp_path: Path
) -> None:
    with sqlite_db.begin() as s:
        parties = Parties(
            operator=admit(s, "operator", Role.PLATFORM_OPERATOR),
            dso=admit(s, "dso", Role.DSO),
            owner=admit(s, "wires", Role.NETWORK_OWNER),
            retailer=admit(s, "retailer", Role.RETAILER),
            prosumers=tuple(admit(s, f"home {k}", Role.PROSUMER) for k in range(3)),
            outsider=admit(s, "outsider", Role.PROSUMER),
        )
    sqlite_db.engine.dispose()

    class Machine(SettlementMachine):
        pass

    Machine.template = Path(sqlite_db.url.removeprefix("sqlite:///"))
    Machine.workdir = tmp_path
    Machine.parties = parties
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=16,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
