"""The continuous double auction: hand-checked cases and properties against a brute-force book.

The reference (:func:`reference_book`) is the rule written as plainly as it can be: on every
incoming order, scan all resting orders of the other side for the best one that crosses (best
price, then earliest arrival), cancel it if it is the same agent's, else trade at its price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.market.p2p import (
    Cancel,
    LimitOrder,
    OrderBook,
    Side,
    Trade,
    replay,
)

START = 3600


def book(**kwargs: float) -> OrderBook:
    return OrderBook(START, price_floor=0.0, price_cap=1.0, **kwargs)


def order(oid: str, agent: str, side: str, price: float, kwh: float, t: float = 0.0) -> LimitOrder:
    return LimitOrder(oid, agent, side, price, kwh, t, START)


def fills(trades: tuple[Trade, ...]) -> list[tuple[str, str, float, float]]:
    return [(t.buy_order_id, t.sell_order_id, t.energy_kwh, t.price_per_kwh) for t in trades]


# ---------------------------------------------------------------------- hand-checked cases


def test_price_priority_and_partial_fill_at_the_resting_price() -> None:
    b = book()
    assert b.submit(order("a1", "A", "sell", 0.30, 1.0, 0)) == ()
    assert b.submit(order("a2", "B", "sell", 0.20, 1.0, 1)) == ()
    trades = b.submit(order("b1", "C", "buy", 0.35, 1.5, 2))
    # the cheaper ask first, each at its own price; the 0.30 ask is left with 0.5 kWh
    assert fills(trades) == [("b1", "a2", 1.0, 0.20), ("b1", "a1", 0.5, 0.30)]
    assert [t.sequence for t in trades] == [0, 1]
    assert all(t.aggressor == Side.BUY and t.time_s == 2.0 for t in trades)
    assert [(o.order_id, o.remaining_kwh) for o in b.asks()] == [("a1", 0.5)]
    assert b.bids() == ()
    assert b.best_ask() == 0.30
    assert b.best_bid() is None


def test_time_priority_at_one_price() -> None:
    b = book()
    b.submit(order("a1", "A", "sell", 0.20, 1.0, 0))
    b.submit(order("a2", "B", "sell", 0.20, 1.0, 0))  # same time: arrival order decides
    b.submit(order("a3", "D", "sell", 0.20, 1.0, 1))
    trades = b.submit(order("b1", "C", "buy", 0.20, 1.5, 2))
    assert fills(trades) == [("b1", "a1", 1.0, 0.20), ("b1", "a2", 0.5, 0.20)]
    assert [(o.order_id, o.remaining_kwh) for o in b.asks()] == [("a2", 0.5), ("a3", 1.0)]


def test_an_unfilled_remainder_rests_and_a_sell_trades_at_the_bids_price() -> None:
    b = book()
    b.submit(order("a1", "A", "sell", 0.20, 1.0, 0))
    assert fills(b.submit(order("b1", "C", "buy", 0.25, 3.0, 1))) == [("b1", "a1", 1.0, 0.20)]
    assert [(o.order_id, o.price_per_kwh, o.remaining_kwh) for o in b.bids()] == [("b1", 0.25, 2.0)]
    b.submit(order("b2", "D", "buy", 0.30, 1.0, 2))
    trades = b.submit(order("a2", "E", "sell", 0.10, 2.5, 3))
    # the highest bid first, at the bids' prices, not the seller's 0.10
    assert fills(trades) == [("b2", "a2", 1.0, 0.30), ("b1", "a2", 1.5, 0.25)]
    assert trades[0].aggressor == Side.SELL
    assert (trades[0].buyer_id, trades[0].seller_id) == ("D", "E")
    assert [(o.order_id, o.remaining_kwh) for o in b.bids()] == [("b1", 0.5)]


def test_orders_that_do_not_cross_rest_on_both_sides() -> None:
    b = book()
    b.submit(order("b1", "C", "buy", 0.19, 1.0, 0))
    assert b.submit(order("a1", "A", "sell", 0.20, 1.0, 1)) == ()
    assert (b.best_bid(), b.best_ask()) == (0.19, 0.20)
    assert len(b) == 2


def test_cancel_and_the_accounting_of_an_order() -> None:
    b = book()
    b.submit(order("a1", "A", "sell", 0.20, 2.0, 0))
    b.submit(order("b1", "C", "buy", 0.25, 0.5, 1))
    assert b.cancel("a1", 2) == 1.5
    state = b.order_state("a1")
    assert (state.submitted_kwh, state.filled_kwh, state.resting_kwh, state.cancelled_kwh) == (
        2.0,
        0.5,
        0.0,
        1.5,
    )
    assert b.cancel("a1", 3) == 0.0  # nothing left: cancelling again cancels nothing
    assert b.best_ask() is None
    assert b.submit(order("b2", "D", "buy", 0.9, 1.0, 4)) == ()  # the cancelled ask is gone
    out = b.outcome()
    assert (out.submitted_kwh, out.traded_kwh, out.resting_kwh, out.cancelled_kwh) == (
        3.5,
        0.5,
        1.0,
        1.5,
    )
    with pytest.raises(ValidationError, match="no such order"):
        b.cancel("nope", 5)


def test_self_trade_prevention_cancels_the_resting_order() -> None:
    b = book()
    b.submit(order("a1", "A", "sell", 0.20, 1.0, 0))
    b.submit(order("a2", "B", "sell", 0.22, 1.0, 1))
    trades = b.submit(order("b1", "A", "buy", 0.30, 1.5, 2))
    assert fills(trades) == [("b1", "a2", 1.0, 0.22)]  # A's own ask was cancelled, not traded
    assert b.order_state("a1").cancelled_kwh == 1.0
    assert [(o.order_id, o.remaining_kwh) for o in b.bids()] == [("b1", 0.5)]


def test_energy_is_counted_in_lots_exactly() -> None:
    b = book()
    b.submit(order("a1", "A", "sell", 0.2, 1.0, 0))
    (trade,) = b.submit(order("b1", "C", "buy", 0.2, 0.7, 1))
    assert trade.energy_kwh == 0.7  # 700 lots of 1 Wh, not 0.7000000000000001
    assert b.asks()[0].remaining_kwh == 0.3


def test_bad_orders_are_refused_naming_the_order_and_every_reason() -> None:
    b = book(gate_close_s=100.0)
    b.submit(order("a1", "A", "sell", 0.2, 1.0, 10))
    bad = LimitOrder("a1", " ", "hold", math.nan, 0.0005, 5, START + 900)
    with pytest.raises(ValidationError) as info:
        b.submit(bad)
    text = str(info.value)
    assert "order 'a1'" in text
    fields = {p.field for p in info.value.problems}
    assert fields == {
        "order_id",
        "agent_id",
        "side",
        "price_per_kwh",
        "energy_kwh",
        "interval_start_s",
        "time_s",
    }
    with pytest.raises(ValidationError, match="outside the book's limits"):
        b.submit(order("x", "A", "buy", 1.5, 1.0, 20))
    with pytest.raises(ValidationError, match="gate closure"):
        b.submit(order("y", "A", "buy", 0.5, 1.0, 100))
    with pytest.raises(ValidationError, match="must be a LimitOrder"):
        b.submit(("a", "b"))  # type: ignore[arg-type]
    assert fills(b.trades) == [] and len(b) == 1  # nothing refused changed the book


def test_submit_many_checks_every_order_before_any_is_matched() -> None:
    b = book()
    batch = [
        order("a1", "A", "sell", 0.2, 1.0, 0),
        order("b1", "C", "buy", 0.3, 1.0, 1),
        order("b1", "D", "buy", 0.3, 1.0, 2),  # repeats an id of the same batch
        order("b3", "D", "buy", 0.3, -1.0, 0),  # negative energy, and earlier than b1
    ]
    with pytest.raises(ValidationError) as info:
        b.submit_many(batch)
    assert {p.field for p in info.value.problems} == {"order_id", "energy_kwh", "time_s"}
    assert b.trades == () and len(b) == 0
    assert fills(b.submit_many(batch[:2])) == [("b1", "a1", 1.0, 0.2)]


def test_a_bad_book_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        OrderBook(1.5, price_floor=1.0, price_cap=0.5, lot_kwh=0.0)  # type: ignore[arg-type]
    assert {p.field for p in info.value.problems} == {"interval_start_s", "price_cap", "lot_kwh"}


# ---------------------------------------------------------------------- properties


@dataclass
class _Resting:
    seq: int
    agent: str
    is_buy: bool
    price: float
    lots: int


def reference_book(
    events: list[LimitOrder | Cancel],
) -> tuple[list[tuple[str, str, int, float]], dict[str, int]]:
    """Brute force: per incoming order, scan everything resting for the best crossing order."""
    resting: dict[str, _Resting] = {}
    trades: list[tuple[str, str, int, float]] = []
    for seq, e in enumerate(events):
        if isinstance(e, Cancel):
            resting.pop(e.order_id, None)
            continue
        is_buy = e.side == "buy"
        left = round(e.energy_kwh)
        while left:
            crossing = [
                (r.price if is_buy else -r.price, r.seq, oid)
                for oid, r in resting.items()
                if r.is_buy != is_buy
                and (r.price <= e.price_per_kwh if is_buy else r.price >= e.price_per_kwh)
            ]
            if not crossing:
                break
            oid = min(crossing)[2]
            best = resting[oid]
            if best.agent == e.agent_id:
                del resting[oid]
                continue
            fill = min(left, best.lots)
            left -= fill
            best.lots -= fill
            buy, sell = (e.order_id, oid) if is_buy else (oid, e.order_id)
            trades.append((buy, sell, fill, best.price))
            if best.lots == 0:
                del resting[oid]
        if left:
            resting[e.order_id] = _Resting(seq, e.agent_id, is_buy, e.price_per_kwh, left)
    return trades, {oid: r.lots for oid, r in resting.items()}


@st.composite
def event_logs(draw: st.DrawFn, coarse_prices: bool) -> list[LimitOrder | Cancel]:
    n = draw(st.integers(1, 60))
    events: list[LimitOrder | Cancel] = []
    t = 0.0
    ids: list[str] = []
    for i in range(n):
        t += draw(st.sampled_from([0.0, 0.5, 3.0]))
        if ids and draw(st.integers(0, 5)) == 0:
            events.append(Cancel(draw(st.sampled_from(ids)), t))
            continue
        price = (
            draw(st.sampled_from([0.1, 0.2, 0.3, 0.4]))
            if coarse_prices
            else draw(st.floats(0.0, 1.0, allow_nan=False))
        )
        oid = f"o{i}"
        ids.append(oid)
        events.append(
            LimitOrder(
                oid,
                draw(st.sampled_from(["A", "B", "C", "D"])),
                draw(st.sampled_from(["buy", "sell"])),
                price,
                float(draw(st.integers(1, 20))),
                t,
                START,
            )
        )
    return events


@settings(max_examples=100)
@given(events=st.one_of(event_logs(coarse_prices=True), event_logs(coarse_prices=False)))
def test_book_properties_and_agreement_with_the_brute_force_book(
    events: list[LimitOrder | Cancel],
) -> None:
    b = book(lot_kwh=1.0)
    limit = {e.order_id: e for e in events if isinstance(e, LimitOrder)}
    for e in events:
        b.apply(e)
        bid, ask = b.best_bid(), b.best_ask()
        assert bid is None or ask is None or bid < ask  # never a crossed book
    for t in b.trades:
        assert limit[t.sell_order_id].price_per_kwh <= t.price_per_kwh
        assert t.price_per_kwh <= limit[t.buy_order_id].price_per_kwh
        assert t.buyer_id != t.seller_id
    # energy: every order's submitted = filled + resting + cancelled, exactly (whole lots)
    for oid in limit:
        s = b.order_state(oid)
        assert s.submitted_kwh == s.filled_kwh + s.resting_kwh + s.cancelled_kwh
    out = b.outcome()
    assert out.submitted_kwh == 2 * out.traded_kwh + out.resting_kwh + out.cancelled_kwh
    assert out.traded_kwh == sum(t.energy_kwh for t in out.trades)
    # the same rule written as brute force gives the same trades and the same book
    expected, left = reference_book(events)
    assert [(t.buy_order_id, t.sell_order_id, t.energy_kwh, t.price_per_kwh) for t in b.trades] == [
        (buy, sell, float(q), p) for buy, sell, q, p in expected
    ]
    assert {o.order_id: o.remaining_kwh for o in (*out.bids, *out.asks)} == {
        oid: float(q) for oid, q in left.items()
    }


@settings(max_examples=60)
@given(events=event_logs(coarse_prices=False))
def test_replay_is_bit_identical(events: list[LimitOrder | Cancel]) -> None:
    scaled = [
        e
        if isinstance(e, Cancel)
        else LimitOrder(
            e.order_id, e.agent_id, e.side, e.price_per_kwh, e.energy_kwh * 0.001, e.time_s, START
        )
        for e in events
    ]
    first = replay(scaled, interval_start_s=START, price_floor=0.0, price_cap=1.0)
    second = replay(list(scaled), interval_start_s=START, price_floor=0.0, price_cap=1.0)
    a, b = first.trade_arrays(), second.trade_arrays()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype
        assert a[name].tobytes() == b[name].tobytes(), name
    assert first.trades == second.trades
    assert (first.bids, first.asks) == (second.bids, second.asks)
    assert math.isclose(
        first.submitted_kwh,
        2 * first.traded_kwh + first.resting_kwh + first.cancelled_kwh,
        rel_tol=1e-12,
        abs_tol=1e-12,
    )
    assert np.all(np.asarray(a["energy_kwh"], dtype=np.float64) > 0)
