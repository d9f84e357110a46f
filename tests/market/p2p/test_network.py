"""Trades on a feeder: network fees and losses per trade, and the DSO's refusal of a trade set.

On pandapower's case33bw (Baran & Wu 1989). The references are the network layer's own results
run directly: the AC losses of the dispatch (:func:`solve_flows`), the fees of
:func:`network_fees` by hand, and the security check of what is accepted.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.market.iterative import StoppingRule
from transactive.market.p2p import (
    BilateralMarket,
    LimitOrder,
    OrderBook,
    TradeSet,
    check_trades,
    relaxed_consensus_innovation,
    trade_charges,
)
from transactive.network.feeders import Feeder, load_feeder
from transactive.network.losses import solve_flows
from transactive.network.powerflow import PowerFlowRunner
from transactive.network.security import SecurityLimits, ViolationKind, security_check
from transactive.settlement.network_fees import NetworkTariff

TARIFF = NetworkTariff(loss_price_per_kwh=0.10, import_per_kwh=0.02, export_per_kwh=0.01)
BUS = {"pv1": 1, "pv2": 2, "pv30": 30, "h5": 5, "h17": 17, "h32": 32, "h2": 2}


def trade_set(*columns: object) -> TradeSet:
    """A trade set from plain lists (the constructor converts and checks them)."""
    ids, buyers, sellers, energy, price, interval_s = columns
    return TradeSet(
        np.asarray(ids),
        np.asarray(buyers),
        np.asarray(sellers),
        np.asarray(energy),
        np.asarray(price),
        cast(float, interval_s),
    )


def market_of(*columns: object) -> BilateralMarket:
    return BilateralMarket(*[np.asarray(c) for c in columns])


@pytest.fixture(scope="module")
def feeder() -> Feeder:
    return load_feeder("case33bw")


@pytest.fixture(scope="module")
def runner(feeder: Feeder) -> PowerFlowRunner:
    return PowerFlowRunner(feeder, replace_injections=True)


def trades(rows: list[tuple[str, str, float]], interval_s: float = 3600.0) -> TradeSet:
    return trade_set(
        [f"t{i}" for i in range(len(rows))],
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [0.2] * len(rows),
        interval_s,
    )


def test_one_trade_pays_all_the_losses_it_causes(feeder: Feeder, runner: PowerFlowRunner) -> None:
    half_hour = trades([("h17", "pv1", 100.0)], interval_s=1800.0)  # 200 kW for half an hour
    charges = trade_charges(half_hour, BUS, feeder, tariff=TARIFF, runner=runner)
    p = np.zeros(feeder.n_nodes)
    p[17], p[1] = 200.0, -200.0
    losses_kw = solve_flows(feeder, p, runner=runner).total_loss_kw
    assert losses_kw > 0
    assert charges.loss_kwh[0] == pytest.approx(losses_kw * 0.5, rel=1e-9)
    assert abs(charges.unallocated_loss_kw) < 1e-9 and charges.background_loss_kw == 0.0
    # by hand: the loss energy at the loss price, 100 kWh imported by the buyer at 0.02 and
    # exported by the seller at 0.01
    expected = charges.loss_kwh[0] * 0.10 + 100.0 * 0.02 + 100.0 * 0.01
    assert charges.total_charge[0] == pytest.approx(expected, rel=1e-12)
    assert charges.buyer_charge[0] + charges.seller_charge[0] == charges.total_charge[0]
    postings = charges.leg_fees.postings()
    assert set(postings["payer"]) | set(postings["payee"]) == {"h17", "pv1", "network owner"}
    paid = postings["amount"].where(postings["payee"] == "network owner", -postings["amount"])
    assert paid.sum() == pytest.approx(charges.total_charge.sum(), rel=1e-12)


def test_the_charge_depends_on_the_buses_a_trade_connects(
    feeder: Feeder, runner: PowerFlowRunner
) -> None:
    charges = trade_charges(
        trades([("h2", "pv2", 50.0), ("h5", "pv2", 50.0), ("h17", "pv2", 50.0)]),
        BUS,
        feeder,
        tariff=TARIFF,
        background_p_kw=feeder.net_p_kw,
        background_q_kvar=feeder.net_q_kvar,
        runner=runner,
    )
    # the same energy from the same seller: no flow at its own bus, more losses the farther
    assert abs(charges.loss_kwh[0]) < 1e-9
    assert 0 < charges.loss_kwh[1] < charges.loss_kwh[2]
    total = charges.loss_kwh.sum() + charges.background_loss_kw + charges.unallocated_loss_kw
    assert total == pytest.approx(charges.allocation.total_loss_kw, rel=1e-9)


def test_a_secure_trade_set_is_accepted_whole(feeder: Feeder, runner: PowerFlowRunner) -> None:
    ts = trades([("h17", "pv1", 50.0), ("h32", "pv30", 40.0)])
    check = check_trades(ts, BUS, feeder, background_p_kw=feeder.net_p_kw, runner=runner)
    assert check.secure and check.reason == "secure as traded"
    assert check.refused == () and len(check.reports) == 1
    assert check.accepted.trade_ids.tolist() == ["t0", "t1"]


def test_refused_trades_go_back_with_the_violation_that_refused_them(
    feeder: Feeder, runner: PowerFlowRunner
) -> None:
    # 600 kW into the far end of the main lateral under the nominal load: node 17 falls below
    # 0.9 pu. The trade from h17 to the substation side relieves it and must stand.
    ts = trades(
        [
            ("h17", "pv1", 300.0),
            ("h5", "h17", 100.0),  # h17 sells: relieves the lateral
            ("h17", "pv2", 300.0),
            ("h32", "pv30", 20.0),
        ]
    )
    kwargs = {
        "background_p_kw": feeder.net_p_kw,
        "background_q_kvar": feeder.net_q_kvar,
        "runner": runner,
    }
    first = security_check(feeder, feeder.net_p_kw, feeder.net_q_kvar, runner=runner)
    assert first.secure  # the feeder alone is secure
    check = check_trades(ts, BUS, feeder, **kwargs)  # type: ignore[arg-type]
    assert check.secure
    assert not check.reports[0].secure
    refused = {r.trade_id: r for r in check.refused}
    assert "t1" not in refused  # it does not worsen the violation
    assert refused and all(
        r.violation.kind == ViolationKind.UNDERVOLTAGE and r.round == 1 for r in refused.values()
    )
    assert refused["t2"].violation in check.reports[0].violations
    assert set(check.accepted.trade_ids) | set(refused) == {"t0", "t1", "t2", "t3"}
    # the accepted set is what the DSO's last check saw, and it is secure
    again = check_trades(check.accepted, BUS, feeder, **kwargs)  # type: ignore[arg-type]
    assert again.secure and again.refused == ()
    # refusing the largest first returns no more trades than time priority does
    largest = check_trades(ts, BUS, feeder, refuse_first="largest", **kwargs)  # type: ignore[arg-type]
    assert largest.secure and len(largest.refused) <= len(check.refused)


def test_an_overloaded_line_refuses_the_latest_trade_through_it() -> None:
    # lines rated 0.25 kA (the nominal load puts line 1 at 75 %); voltages down to 0.8 pu allowed
    rated = load_feeder("case33bw", line_max_i_ka=0.25)
    ts = trades([("h17", "pv1", 100.0), ("h32", "pv1", 1500.0), ("h2", "pv1", 300.0)])
    check = check_trades(
        ts, BUS, rated, limits=SecurityLimits(vmin_pu=0.8), background_p_kw=rated.net_p_kw
    )
    (overload,) = check.reports[0].violations
    assert overload.kind == ViolationKind.OVERLOAD and overload.name == "line 1"
    # all three flow through line 1 (node 1 to 2); refusing the latest, 300 kW, is enough
    assert [(r.trade_id, r.violation) for r in check.refused] == [("t2", overload)]
    assert check.secure and check.accepted.trade_ids.tolist() == ["t0", "t1"]


def test_violations_of_the_background_alone_are_not_blamed_on_trades(feeder: Feeder) -> None:
    # 1.6 times the nominal load is below 0.9 pu on its own; the trade from the start of the
    # lateral (node 30 feeds node 5, which every violated node's path passes) worsens nothing
    heavy = 1.6 * feeder.net_p_kw
    check = check_trades(trades([("h5", "pv30", 5.0)]), BUS, feeder, background_p_kw=heavy)
    assert not check.secure and check.refused == () and len(check.reports) == 1
    assert "no accepted trade worsens" in check.reason
    assert check.accepted.trade_ids.tolist() == ["t0"]


def test_trade_sets_from_the_book_and_from_rci() -> None:
    book = OrderBook(0, price_floor=0.0, price_cap=1.0)
    book.submit(LimitOrder("a", "pv1", "sell", 0.1, 2.0, 0.0, 0))
    book.submit(LimitOrder("b", "h17", "buy", 0.2, 1.5, 1.0, 0))
    ts = TradeSet.from_trades(book.trades, interval_s=900.0)
    assert ts.trade_ids.tolist() == ["b/a/0"]
    assert ts.power_kw.tolist() == [6.0]
    market = market_of(
        ["h17", "pv1"],
        [0.02, 0.04],
        [0.3, 0.1],
        [0.0, -5.0],
        [5.0, 0.0],
        np.zeros((2, 2)),
        ~np.eye(2, dtype=bool),
    )
    result = relaxed_consensus_innovation(market, rho_per_kw=0.03, rule=StoppingRule(1e-9, 5000))
    rci = TradeSet.from_bilateral(result, interval_s=3600.0)
    assert rci.trade_ids.tolist() == ["h17/pv1"]
    # by hand: 0.3 - 0.02 P = 0.1 + 0.04 P, P = 10/3 kW (the bounds do not bind)
    assert rci.energy_kwh[0] == pytest.approx(10.0 / 3.0, abs=1e-6)


def test_bad_trades_and_buses_are_refused(feeder: Feeder) -> None:
    with pytest.raises(ValidationError) as info:
        trade_set(["t0", "t0"], ["a", "b"], ["a", "c"], [1.0, -1.0], [0.1, np.nan], 0.0)
    assert {p.field for p in info.value.problems} == {"ids"}
    with pytest.raises(ValidationError) as info:
        trade_set(["t0", "t1"], ["a", "b"], ["a", "c"], [1.0, -1.0], [0.1, np.nan], 0.0)
    assert {p.field for p in info.value.problems} == {
        "seller_ids",
        "energy_kwh",
        "price_per_kwh",
        "interval_s",
    }
    with pytest.raises(ValidationError) as info:
        check_trades(trades([("h17", "nobody", 1.0)]), {**BUS, "bad": 99}, feeder)
    text = str(info.value)
    assert "nobody" in text and "bad" in text
    with pytest.raises(ValidationError, match="method"):
        trade_charges(trades([("h17", "pv1", 1.0)]), BUS, feeder, tariff=TARIFF, method="x")  # type: ignore[arg-type]
