"""The incentive probe (Hu et al. 2019, §3.1.3) on the double auction and the TCL market.

References: a monopsonist's gain from shading computed in closed form for every misreport of
the family; the value of a curve against a numerical integral of its inverse found by bisection
on ``BidCurves.bounds_at`` (hypothesis).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.market.strategies import PRICE_CAP, PRICE_FLOOR, bid_curves
from transactive import ValidationError
from transactive.market import BidCurves, Supply
from transactive.market.incentives import (
    PRICE_FACTORS,
    curve_misreports,
    curve_value,
    double_auction,
    double_auction_utility,
    incentive_probe,
    tcl_misreports,
    truthful_tcl_mechanism,
    truthful_tcl_utility,
)
from transactive.market.truthful_tcl import TclBids

AUCTION: dict[str, Any] = {"price_floor": 0.0, "price_cap": 1.0}


def _monopsony() -> BidCurves:
    """A large buyer 100 (1 - p) kW facing a seller -100 p kW: truthful, p = 0.5, 50 kW."""
    return BidCurves.from_breakpoints(
        [[0.0, 1.0], [0.0, 1.0]], [[100.0, 0.0], [0.0, -100.0]]
    ).with_ids(["big-buyer", "seller"])


def test_a_buyer_with_market_power_gains_by_shading_its_bid():
    bids = _monopsony()
    mechanism = double_auction(price_cap=1.0)
    utility = double_auction_utility(duration_h=0.25, **AUCTION)
    family = curve_misreports(bids, 0, **AUCTION)
    probe = incentive_probe(mechanism, bids, 0, family, utility)
    # Truthful: 0.25 h x (integral of 1 - s/100 over [0, 50] - 0.5 x 50) = 0.25 x 12.5.
    assert probe.truthful_utility == pytest.approx(0.25 * 12.5)
    # Closed form for every misreport (f: price factor, g: power factor): the buyer bids
    # g 100 (1 - p/f), the market clears at p = f g / (f + g), q = 100 p, and it is worth
    # q - q^2/200 - p q to the buyer (its true curve).
    closed = {}
    for label, misreport in family.items():
        f = float(misreport.price_per_kwh[0, -1])
        g = float(misreport.power_kw[0, 0]) / 100.0
        p = f * g / (f + g)
        q = 100.0 * p
        closed[label] = 0.25 * (q - q * q / 200.0 - p * q)
    np.testing.assert_allclose(probe.utilities, [closed[k] for k in probe.labels], rtol=1e-9)
    assert probe.best_label == max(closed, key=closed.__getitem__)
    assert probe.gain > 0.5  # strictly, and by much: a third of its truthful surplus
    assert probe.gain_relative == pytest.approx(probe.gain / probe.truthful_utility)
    assert not probe.truthful_is_best
    assert probe.best_misreport.price_per_kwh[0, -1] < 1.0  # it shades its price


def test_a_small_buyer_cannot_move_the_price_much():
    """The same market with the big buyer and a 1 kW block: the block's gain is tiny."""
    bids = BidCurves.from_breakpoints(
        [[0.0, 1.0], [0.0, 1.0], [0.8, 0.8]], [[100.0, 0.0], [0.0, -100.0], [1.0, 0.0]]
    )
    mechanism = double_auction(price_cap=1.0)
    utility = double_auction_utility(duration_h=1.0, **AUCTION)
    small = incentive_probe(mechanism, bids, 2, curve_misreports(bids, 2, **AUCTION), utility)
    big = incentive_probe(mechanism, bids, 0, curve_misreports(bids, 0, **AUCTION), utility)
    assert small.gain_relative < 0.02
    assert big.gain_relative > 0.2


def test_a_seller_with_market_power_gains_by_withholding():
    # Mirror image: a big seller -100 p facing a buyer 100 (1 - p), with a feeder as the
    # alternative supply at 0.9 up to 1000 kW (it never binds here).
    bids = _monopsony()
    mechanism = double_auction(price_cap=1.0, supply=Supply(price_per_kwh=0.9, capacity_kw=1000.0))
    utility = double_auction_utility(duration_h=1.0, **AUCTION)
    probe = incentive_probe(mechanism, bids, 1, curve_misreports(bids, 1, **AUCTION), utility)
    assert probe.truthful_utility == pytest.approx(0.5 * 50 - 50**2 / 200)  # revenue - cost
    assert probe.gain > 0
    assert probe.best_misreport.power_kw[1, -1] == pytest.approx(-50.0)  # it withholds half


def test_curve_values_of_blocks_slopes_and_sellers_by_hand():
    bids = BidCurves.from_breakpoints(
        [[0.3, 0.3], [0.0, 1.0], [0.2, 0.6]], [[10.0, 0.0], [0.0, -100.0], [8.0, 8.0]]
    )
    cfg = {"price_floor": 0.0, "price_cap": 1.0}
    assert curve_value(bids, 0, 5.0, **cfg) == pytest.approx(1.5)  # a block: 5 kW at 0.3
    assert curve_value(bids, 0, 12.0, **cfg) == pytest.approx(3.0)  # beyond it: worth the floor
    assert curve_value(bids, 1, -50.0, **cfg) == pytest.approx(-12.5)  # cost of 50 kW sold
    # An unresponsive 8 kW: below 8 kW it would pay the cap.
    assert curve_value(bids, 2, 6.0, **cfg) == pytest.approx(6.0)
    assert curve_value(bids, 2, 0.0, **cfg) == 0.0


def _inverse_price(bids: BidCurves, agent: int, s: np.ndarray) -> np.ndarray:
    """sup{p in [floor, cap] : the curve asks at least s just below p}, by bisection."""
    rows = bids.take(np.full(s.size, agent))
    lo = np.full(s.size, PRICE_FLOOR)
    hi = np.full(s.size, PRICE_CAP)
    _, at_cap = rows.bounds_at(hi)
    top = at_cap >= s
    for _ in range(45):  # 2^-45 of the price range
        mid = 0.5 * (lo + hi)
        _, asks = rows.bounds_at(mid)
        above = asks >= s
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return np.where(top, PRICE_CAP, lo)


@settings(max_examples=50)
@given(bid_curves(max_curves=3), st.integers(0, 2), st.floats(-25.0, 25.0))
def test_curve_value_is_the_integral_of_the_inverse_curve(bids, agent, power):
    """Independent reference: a midpoint rule over the inverse found by bisection."""
    agent = agent % len(bids)
    m = 2000
    edges = np.linspace(0.0, power, m + 1)
    mids = 0.5 * (edges[1:] + edges[:-1])
    numeric = float(np.sum(_inverse_price(bids, agent, mids)) * power / m)
    exact = curve_value(bids, agent, power, price_floor=PRICE_FLOOR, price_cap=PRICE_CAP)
    # Each jump of the inverse (at most one per breakpoint and the two ends) costs the midpoint
    # rule at most one cell times the price range.
    cell = abs(power) / m * (PRICE_CAP - PRICE_FLOOR)
    assert exact == pytest.approx(numeric, abs=8.0 * cell + 1e-9)


def test_tcl_utility_counts_energy_only_up_to_the_true_need():
    bids = TclBids(["a", "b"], [0.8, 0.4], [2.0, 2.0])
    mechanism = truthful_tcl_mechanism(capacity_kw=10.0, duration_h=1.0)
    overstated = bids.with_bid(0, price_per_kwh=0.8, power_kw=4.0)
    outcome = mechanism(overstated)
    assert outcome.energy_kwh[0] == pytest.approx(4.0)
    # Gets 4 kWh, needs 2: worth 0.8 x 2, pays the reserve price 0 per kWh.
    assert truthful_tcl_utility(outcome, 0, bids) == pytest.approx(1.6)


def test_misreport_families_leave_out_the_truth_and_keep_ids():
    bids = _monopsony()
    family = curve_misreports(bids, 0, **AUCTION)
    assert len(family) == len(PRICE_FACTORS) * 3 - 1
    assert bids.ids is not None
    assert all(m.ids is not None and list(m.ids) == list(bids.ids) for m in family.values())
    tcl = TclBids(["a", "b"], [0.8, 0.4], [2.0, 2.0])
    tcl_family = tcl_misreports(tcl, 1, price_shifts_per_kwh=(-1.0, 0.0))
    assert len(tcl_family) == len(PRICE_FACTORS) * 3 * 2 - 1
    assert min(float(m.price_per_kwh[1]) for m in tcl_family.values()) == 0.0  # clipped at 0
    assert all(np.array_equal(m.price_per_kwh[:1], [0.8]) for m in tcl_family.values())


def test_a_sequence_of_misreports_is_labelled_by_position():
    bids = _monopsony()
    family = list(curve_misreports(bids, 0, **AUCTION).values())[:3]
    probe = incentive_probe(
        double_auction(price_cap=1.0), bids, 0, family,
        double_auction_utility(duration_h=1.0, **AUCTION),
    )  # fmt: skip
    assert probe.labels == ("0", "1", "2")


# ---------------------------------------------------------------------- bad input


def test_bad_probes_are_refused():
    bids = _monopsony()
    mechanism = double_auction(price_cap=1.0)
    utility = double_auction_utility(duration_h=1.0, **AUCTION)
    family = curve_misreports(bids, 0, **AUCTION)
    with pytest.raises(ValidationError, match="agent"):
        incentive_probe(mechanism, bids, 2, family, utility)  # out of range
    with pytest.raises(ValidationError, match="agent"):
        incentive_probe(mechanism, bids, -1, family, utility)
    with pytest.raises(ValidationError, match="empty"):
        incentive_probe(mechanism, bids, 0, {}, utility)
    three = BidCurves.from_steps([0.5, 0.5, 0.5], [1.0, 1.0, -1.0])
    with pytest.raises(ValidationError, match="2 agents"):
        incentive_probe(mechanism, bids, 0, {"three": three}, utility)
    with pytest.raises(ValidationError, match="scale"):
        incentive_probe(mechanism, bids, 0, family, utility, scale=0.0)
    with pytest.raises(ValidationError, match="finite"):
        incentive_probe(mechanism, bids, 0, family, lambda outcome, agent, true: math.nan)
    with pytest.raises(ValidationError, match="agent"):
        curve_misreports(bids, 5, **AUCTION)
    with pytest.raises(ValidationError, match="price_factors"):
        curve_misreports(bids, 0, price_factors=[0.0, 1.0], **AUCTION)
    with pytest.raises(ValidationError, match="power_factors"):
        tcl_misreports(TclBids(["a"], [0.5], [1.0]), 0, power_factors=[])
    with pytest.raises(ValidationError, match="no misreport"):
        tcl_misreports(TclBids(["a"], [0.5], [1.0]), 0, price_factors=[1.0], power_factors=[1.0])
    with pytest.raises(ValidationError, match="duration_h"):
        double_auction_utility(duration_h=0.0, **AUCTION)
