"""Properties every clearing must have, over random markets (hypothesis)."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.market.strategies import PRICE_CAP, PRICE_FLOOR, bid_curves, volume
from transactive.market import BidCurves, ClearingType, Supply, aggregate, allocate, clear

# Two markets with the same net demand clear at prices this close: the search treats net power
# within 1e-12 of the market's volume as zero, which moves a price on a nearly flat stretch of
# the aggregate curve by that much over its slope.
PRICE_RESOLUTION = 1e-7

supplies = st.none() | st.builds(
    Supply,
    price_per_kwh=st.sampled_from([0.05, 0.1, 0.25, 0.5]),
    capacity_kw=st.floats(0.0, 40.0),
)


def _clear(bids: BidCurves, supply: Supply | None = None):
    return clear(bids, price_cap=PRICE_CAP, price_floor=PRICE_FLOOR, supply=supply)


@given(bid_curves(), supplies)
def test_the_cleared_market_balances(bids, supply):
    result = _clear(bids, supply)
    net = math.fsum([*result.allocation_kw.tolist(), -result.supply_kw])
    assert abs(net) <= 1e-9 * volume(bids)
    bought = np.maximum(result.allocation_kw, 0).sum() + max(-result.supply_kw, 0.0)
    assert abs(bought - result.clearing_quantity_kw) <= 1e-9 * volume(bids)


@given(bid_curves(), supplies)
def test_allocations_respect_every_curve(bids, supply):
    """No buyer pays above its willingness, no seller sells below its ask."""
    result = _clear(bids, supply)
    lo, hi = bids.bounds_at(result.clearing_price)
    if result.clearing_price >= PRICE_CAP:
        lo = np.minimum(lo, 0.0)  # at the cap, demand may be rationed
    if result.clearing_price <= PRICE_FLOOR:
        hi = np.maximum(hi, 0.0)  # at the floor, supply may be curtailed
    tol = 1e-9 * volume(bids)
    assert np.all(result.allocation_kw >= lo - tol)
    assert np.all(result.allocation_kw <= hi + tol)
    assert PRICE_FLOOR <= result.clearing_price <= PRICE_CAP


@given(bid_curves(), supplies, st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_the_order_of_bids(bids, supply, random):
    order = list(range(len(bids)))
    random.shuffle(order)
    first = _clear(bids, supply)
    second = _clear(bids.take(order), supply)
    assert math.isclose(first.clearing_price, second.clearing_price, abs_tol=PRICE_RESOLUTION)
    assert first.clearing_type == second.clearing_type
    tol = 1e-9 * volume(bids)
    np.testing.assert_allclose(second.allocation_kw, first.allocation_kw[order], atol=tol)


@given(bid_curves(max_curves=16), supplies, st.data())
def test_tree_aggregation_equals_flat_clearing(bids, supply, data):
    n = len(bids)
    # a random two-level tree of concentrators: devices -> feeders -> substations -> root
    feeder = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    substation_of_feeder = np.array(data.draw(st.lists(st.integers(0, 1), min_size=4, max_size=4)))
    level1 = aggregate(bids, feeder, n_groups=4, by_side=True)  # 4 demand rows, 4 supply rows
    level2 = aggregate(level1, np.tile(substation_of_feeder, 2), n_groups=2, by_side=True)
    flat = _clear(bids, supply)
    top = _clear(level2, supply)
    # prices agree to the market's resolution: the search's tolerance scales with the volume
    # of the curves it sees, and the tree sees other curves than the flat market
    assert math.isclose(flat.clearing_price, top.clearing_price, abs_tol=PRICE_RESOLUTION)
    tol = 1e-8 * volume(bids)
    # the price and fills sent down the tree give every device its flat allocation
    device_allocation = allocate(bids, top)
    np.testing.assert_allclose(device_allocation, flat.allocation_kw, atol=tol)
    # (the top's own traded quantity also counts what a prosumer's two sides trade between them)
    assert math.isclose(
        np.maximum(device_allocation, 0).sum(), flat.clearing_quantity_kw, abs_tol=tol
    )
    # and every concentrator's allocation is the sum of its members'
    np.testing.assert_allclose(
        allocate(level1, top)[:4] + allocate(level1, top)[4:],
        np.bincount(feeder, flat.allocation_kw, 4),
        atol=tol,
    )


@given(bid_curves(max_curves=16), st.data())
def test_net_aggregation_gives_the_same_price(bids, data):
    n = len(bids)
    groups = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    net = aggregate(bids, groups, n_groups=3)
    assert len(net) == 3
    for price in (0.0, 0.05, 0.1, 0.33, 0.5, 1.0):
        lo, hi = bids.bounds_at(price)
        net_lo, net_hi = net.bounds_at(price)
        np.testing.assert_allclose(net_lo, np.bincount(groups, lo, 3), atol=1e-9 * volume(bids))
        np.testing.assert_allclose(net_hi, np.bincount(groups, hi, 3), atol=1e-9 * volume(bids))
    assert math.isclose(
        _clear(bids).clearing_price, _clear(net).clearing_price, abs_tol=PRICE_RESOLUTION
    )


@settings(max_examples=50)
@given(bid_curves())
def test_price_clears_the_aggregate_curve(bids):
    """At the price, zero lies between the net demand just above and just below it."""
    result = _clear(bids)
    if result.clearing_type in (ClearingType.NO_CROSSING, ClearingType.FAILURE):
        return
    lo, hi = bids.net_power_at(result.clearing_price)
    tol = 1e-9 * volume(bids)
    assert lo <= tol and hi >= -tol


@given(bid_curves())
def test_split_sides_sum_to_the_curve(bids):
    sides = bids.split_sides()
    n = len(bids)
    assert np.all(sides.power_kw[:n] >= 0) and np.all(sides.power_kw[n:] <= 0)
    for price in (0.0, 0.07, 0.25, 0.61, 1.0):
        lo, hi = sides.bounds_at(price)
        want_lo, want_hi = bids.bounds_at(price)
        np.testing.assert_allclose(lo[:n] + lo[n:], want_lo, atol=1e-9 * volume(bids))
        np.testing.assert_allclose(hi[:n] + hi[n:], want_hi, atol=1e-9 * volume(bids))


@given(bid_curves())
def test_curves_survive_the_long_table_form(bids):
    curve, price, power = bids.to_points()
    back = BidCurves.from_points(curve, price, power, n_curves=len(bids))
    for p in (0.0, 0.05, 0.1, 0.25, 0.33, 0.5, 1.0):
        np.testing.assert_array_equal(back.bounds_at(p)[0], bids.bounds_at(p)[0])
        np.testing.assert_array_equal(back.bounds_at(p)[1], bids.bounds_at(p)[1])
    assert price.size <= bids.price_per_kwh.size
