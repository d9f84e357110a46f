"""Hand-checked textbook cases, one or more per clearing type, and bad input."""

import math

import numpy as np
import pytest

from transactive import ValidationError
from transactive.market import (
    BidCurves,
    ClearingType,
    Supply,
    allocate,
    clear,
    fill_of_allocation,
    market_curves,
)


def test_exact_crossing_of_sloped_curves():
    # demand 10 - 10p, supply -10p: they cross at p = 0.5, q = 5
    bids = BidCurves.from_breakpoints([[0.0, 1.0], [0.0, 1.0]], [[10.0, 0.0], [0.0, -10.0]])
    result = clear(bids, price_cap=1.0)
    assert result.clearing_type is ClearingType.EXACT
    assert result.clearing_price == pytest.approx(0.5)
    assert result.clearing_quantity_kw == pytest.approx(5.0)
    np.testing.assert_allclose(result.allocation_kw, [5.0, -5.0])


def test_exact_when_tied_blocks_of_buyer_and_seller_match():
    # GridLAB-D's EXACT: a buyer and a seller both bid 10 kW at 0.30; all 10 kW trade
    result = clear(BidCurves.from_steps([0.30, 0.30], [10.0, -10.0]), price_cap=1.0)
    assert result.clearing_type is ClearingType.EXACT
    assert result.clearing_price == 0.30
    assert result.clearing_quantity_kw == pytest.approx(10.0)


def test_marginal_buyer_sets_the_price_and_tied_buyers_share_pro_rata():
    # sellers: 6 kW from 0.02; buyers: 4 kW up to 0.09, and two blocks of 2 and 6 kW at 0.05
    bids = BidCurves.from_steps([0.02, 0.09, 0.05, 0.05], [-6.0, 4.0, 2.0, 6.0])
    result = clear(bids, price_cap=1.0)
    assert result.clearing_type is ClearingType.MARGINAL_BUYER
    assert result.clearing_price == 0.05
    # the 2 kW left over are shared 1:3 between the tied blocks
    np.testing.assert_allclose(result.allocation_kw, [-6.0, 4.0, 0.5, 1.5])
    assert result.buyer_fill == pytest.approx(0.25)


def test_marginal_seller_sets_the_price():
    bids = BidCurves.from_steps([0.10, 0.08, 0.05, 0.07], [5.0, 3.0, -4.0, -6.0])
    result = clear(bids, price_cap=1.0)
    assert result.clearing_type is ClearingType.MARGINAL_SELLER
    assert result.clearing_price == 0.07
    np.testing.assert_allclose(result.allocation_kw, [5.0, 3.0, -4.0, -4.0])
    assert result.seller_fill == pytest.approx(4.0 / 6.0)


def test_price_range_takes_the_midpoint_and_says_so():
    # 5 kW demanded up to 0.10, 5 kW offered from 0.05: any price in [0.05, 0.10] clears
    bids = BidCurves.from_steps([0.10, 0.05], [5.0, -5.0])
    result = clear(bids, price_cap=1.0)
    assert result.clearing_type is ClearingType.PRICE_RANGE
    assert result.price_range == pytest.approx((0.05, 0.10))
    assert result.clearing_price == pytest.approx(0.075)
    assert "midpoint" in result.price_rule
    assert clear(bids, price_cap=1.0, range_rule="low").clearing_price == pytest.approx(0.05)
    assert clear(bids, price_cap=1.0, range_rule="high").clearing_price == pytest.approx(0.10)
    np.testing.assert_allclose(result.allocation_kw, [5.0, -5.0])


def test_no_crossing_when_asks_exceed_bids():
    bids = BidCurves.from_steps([0.04, 0.09], [3.0, -3.0])
    result = clear(bids, price_cap=1.0)
    assert result.clearing_type is ClearingType.NO_CROSSING
    assert result.clearing_quantity_kw == 0.0
    assert 0.04 <= result.clearing_price <= 0.09
    np.testing.assert_allclose(result.allocation_kw, [0.0, 0.0])


def test_no_crossing_when_one_side_is_empty():
    buyers_only = clear(BidCurves.from_steps([0.2, 0.3], [1.0, 2.0]), price_cap=1.0)
    assert buyers_only.clearing_type is ClearingType.NO_CROSSING
    assert buyers_only.clearing_price == pytest.approx(0.3)  # the highest bid
    sellers_only = clear(BidCurves.from_steps([0.2, 0.3], [-1.0, -2.0]), price_cap=1.0)
    assert sellers_only.clearing_type is ClearingType.NO_CROSSING
    assert sellers_only.clearing_price == pytest.approx(0.2)  # the lowest ask


def test_failure_when_unresponsive_demand_exceeds_all_supply():
    bids = BidCurves.unresponsive([50.0, 20.0], price_cap=1.0)
    result = clear(bids, price_cap=1.0, supply=Supply(price_per_kwh=0.1, capacity_kw=35.0))
    assert result.clearing_type is ClearingType.FAILURE
    assert result.clearing_price == 1.0
    assert result.supply_kw == pytest.approx(35.0)
    assert result.shortage_kw == pytest.approx(35.0)
    np.testing.assert_allclose(result.allocation_kw, [25.0, 10.0])  # rationed pro rata


def test_failure_when_must_run_supply_exceeds_all_demand_at_the_floor():
    bids = BidCurves.from_steps([0.0, 0.0, 0.3], [-8.0, -4.0, 6.0])
    result = clear(bids, price_cap=1.0, price_floor=0.0)
    assert result.clearing_type is ClearingType.FAILURE
    assert result.clearing_price == 0.0
    assert result.surplus_kw == pytest.approx(6.0)
    np.testing.assert_allclose(result.allocation_kw, [-4.0, -2.0, 6.0])


def test_fixed_price_supply_is_one_argument():
    # a feeder buys at the wholesale LMP of 0.05 up to its 10 kW rating
    bids = BidCurves.from_steps([0.08, 0.06, 0.04], [4.0, 5.0, 3.0])
    result = clear(bids, price_cap=1.0, supply=Supply(price_per_kwh=0.05, capacity_kw=10.0))
    assert result.clearing_price == 0.05
    assert result.clearing_type is ClearingType.MARGINAL_SELLER
    np.testing.assert_allclose(result.allocation_kw, [4.0, 5.0, 0.0])
    assert result.supply_kw == pytest.approx(9.0)
    # the rating binds: the price rises to the next buyer's bid
    tight = clear(bids, price_cap=1.0, supply=Supply(price_per_kwh=0.05, capacity_kw=6.0))
    assert tight.clearing_price == 0.06
    assert tight.clearing_type is ClearingType.MARGINAL_BUYER
    np.testing.assert_allclose(tight.allocation_kw, [4.0, 2.0, 0.0])
    unlimited = clear(bids, price_cap=1.0, supply=Supply(price_per_kwh=0.05, capacity_kw=math.inf))
    assert unlimited.supply_kw == pytest.approx(9.0)


def test_supply_can_take_back_reverse_flow_up_to_its_export_rating():
    pv = BidCurves.from_steps([0.0], [-12.0])
    supply = Supply(
        price_per_kwh=0.05, capacity_kw=10.0, export_capacity_kw=8.0, export_price_per_kwh=0.03
    )
    result = clear(pv, price_cap=1.0, supply=supply)
    assert result.supply_kw == pytest.approx(-8.0)  # the feeder exports 8 kW upstream
    assert result.clearing_price == 0.0  # PV curtailed to 8 kW at the floor
    np.testing.assert_allclose(result.allocation_kw, [-8.0])


def test_every_device_reads_its_allocation_from_price_and_fill():
    bids = BidCurves.from_steps([0.02, 0.09, 0.05, 0.05], [-6.0, 4.0, 2.0, 6.0])
    result = clear(bids, price_cap=1.0)
    np.testing.assert_allclose(
        bids.power_at(result.clearing_price, result.marginal_fill), result.allocation_kw
    )
    np.testing.assert_allclose(allocate(bids, result), result.allocation_kw)


def test_bad_market_inputs_are_all_reported_at_once():
    bids = BidCurves.from_steps([0.5, 2.0, -0.1], [1.0, 1.0, -1.0])
    with pytest.raises(ValidationError) as info:
        clear(bids, price_cap=1.0, supply=Supply(price_per_kwh=3.0, capacity_kw=1.0))
    text = str(info.value)
    assert "above the price cap" in text and "(entry 1)" in text
    assert "below the price floor" in text and "(entry 2)" in text
    assert "supply.price_per_kwh" in text and "outside [0.0, 1.0]" in text
    named = bids.with_ids(["a", "b", "c"])
    with pytest.raises(ValidationError, match=r"\(entry b\)"):  # by id when the bids have ids
        clear(named, price_cap=1.0)


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"price_per_kwh": math.nan, "capacity_kw": 5.0}, "price_per_kwh", "finite"),
        ({"price_per_kwh": math.inf, "capacity_kw": 5.0}, "price_per_kwh", "finite"),
        ({"price_per_kwh": 0.1, "capacity_kw": -1.0}, "capacity_kw", "non-negative"),
        ({"price_per_kwh": 0.1, "capacity_kw": math.nan}, "capacity_kw", "non-negative"),
        (
            {"price_per_kwh": 0.1, "capacity_kw": 1.0, "export_capacity_kw": -2.0},
            "export_capacity_kw",
            "non-negative",
        ),
        (
            {"price_per_kwh": 0.1, "capacity_kw": 1.0, "export_price_per_kwh": 0.2},
            "export_price_per_kwh",
            "must not exceed the import price",
        ),
        ({"price_per_kwh": "cheap", "capacity_kw": 1.0}, "price_per_kwh", "must be a number"),
        ({"price_per_kwh": 0.1, "capacity_kw": None}, "capacity_kw", "must be a number"),
        ({"price_per_kwh": True, "capacity_kw": 1.0}, "price_per_kwh", "must be a number"),
    ],
)
def test_a_supply_that_would_clear_at_nan_or_trade_negative_power_is_refused(kwargs, field, reason):
    with pytest.raises(ValidationError, match=reason) as info:
        Supply(**kwargs)
    assert field in {p.field for p in info.value.problems}


def test_every_bad_supply_field_is_named_at_once():
    with pytest.raises(ValidationError) as info:
        Supply(price_per_kwh=math.nan, capacity_kw=-1.0, export_capacity_kw=math.nan)
    assert {p.field for p in info.value.problems} == {
        "price_per_kwh",
        "export_price_per_kwh",  # defaults to the (NaN) import price
        "capacity_kw",
        "export_capacity_kw",
    }


@pytest.mark.parametrize(
    ("cap", "floor", "reason"),
    [
        (math.nan, 0.0, "finite"),
        (1.0, -math.inf, "finite"),
        (0.1, 0.2, "must exceed price_floor"),
        (0.2, 0.2, "must exceed price_floor"),
        ("high", 0.0, "must be a number"),
        (1.0, None, "must be a number"),
    ],
)
def test_limits_that_would_give_a_nan_or_inverted_market_are_refused(cap, floor, reason):
    with pytest.raises(ValidationError, match=reason):
        clear(BidCurves.from_steps([0.1], [1.0]), price_cap=cap, price_floor=floor)


def test_powers_whose_sum_overflows_are_refused_rather_than_cleared_at_nan():
    bids = BidCurves.from_steps([0.1, 0.2, 0.3], [1e308, 1e308, -1e308])
    with pytest.raises(ValidationError, match="overflow"):
        clear(bids, price_cap=1.0)


def test_not_bids_or_not_a_supply_is_named():
    with pytest.raises(ValidationError, match="must be BidCurves"):
        clear([[0.1, 1.0]], price_cap=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be a Supply"):
        clear(BidCurves.from_steps([0.1], [1.0]), price_cap=1.0, supply=(0.1, 5.0))  # type: ignore[arg-type]


def test_bad_limits_are_rejected():
    bids = BidCurves.from_steps([0.5], [1.0])
    with pytest.raises(ValidationError, match="must exceed price_floor"):
        clear(bids, price_cap=0.1, price_floor=0.2)
    with pytest.raises(ValidationError, match="finite"):
        clear(bids, price_cap=math.nan)
    with pytest.raises(ValidationError, match="range_rule"):
        clear(bids, price_cap=1.0, range_rule="median")  # type: ignore[arg-type]


def test_a_large_random_market_balances_exactly():
    rng = np.random.default_rng(7)
    n = 200_000
    prices = np.sort(rng.uniform(0.0, 1.0, (n, 4)), axis=1)
    shape = np.sort(rng.uniform(0.0, 1.0, (n, 4)), axis=1)[:, ::-1]
    buyer = rng.random(n) < 0.5
    powers = np.where(buyer[:, None], 5 * shape, -5 * shape[:, ::-1])
    bids = BidCurves.from_breakpoints(prices, powers)
    result = clear(bids, price_cap=1.0)
    assert math.fsum(result.allocation_kw.tolist()) == pytest.approx(0.0, abs=1e-9)
    # the price is where the exact net demand crosses zero
    lo, hi = bids.net_power_at(result.clearing_price)
    assert lo <= 1e-6 and hi >= -1e-6


def test_market_curves_clear_as_the_bids_with_their_supply():
    # a service whose supplier bids the substation's offer must clear exactly as clear(supply=)
    bids = BidCurves.from_steps([0.30, 0.25, 0.12, 0.05], [4.0, 6.0, 3.0, -2.0]).with_ids(
        ["a", "b", "c", "d"]
    )
    supply = Supply(price_per_kwh=0.10, capacity_kw=7.0, export_capacity_kw=5.0)
    with_supply = clear(bids, price_cap=1.0, supply=supply)
    curves = market_curves(bids, price_cap=1.0, supply=supply)
    assert len(curves) == len(bids) + 1
    as_bids = clear(curves, price_cap=1.0)
    assert as_bids.clearing_price == with_supply.clearing_price
    np.testing.assert_array_equal(as_bids.allocation_kw[:-1], with_supply.allocation_kw)


def test_fill_of_allocation_inverts_power_at():
    bids = BidCurves.from_steps([0.30, 0.20, 0.20, 0.05], [4.0, 6.0, 2.0, -9.0])
    result = clear(bids, price_cap=1.0)
    fill = fill_of_allocation(
        bids, result.clearing_price, result.allocation_kw, price_cap=1.0, price_floor=0.0
    )
    np.testing.assert_allclose(
        bids.power_at(result.clearing_price, fill), result.allocation_kw, rtol=0, atol=1e-12
    )
    # a curve with no block at the price has fill 0
    assert fill[0] == 0.0
