import numpy as np
import pytest

from transactive import ValidationError
from transactive.curves import BidCurves, MarketBasis


def test_block_buyer_and_seller_read_their_power_at_each_side_of_the_price():
    bids = BidCurves.from_steps([0.10, 0.05], [4.0, -3.0])
    lo, hi = bids.bounds_at(0.10)
    np.testing.assert_array_equal(lo, [0.0, -3.0])  # just above 0.10 the buyer stops buying
    np.testing.assert_array_equal(hi, [4.0, -3.0])
    np.testing.assert_array_equal(bids.power_at(0.07), [4.0, -3.0])
    np.testing.assert_array_equal(bids.power_at(0.01), [4.0, 0.0])
    np.testing.assert_array_equal(bids.power_at(0.05, fill=0.5), [4.0, -1.5])


def test_breakpoints_are_linear_between_and_constant_beyond():
    bids = BidCurves.from_breakpoints([[0.1, 0.3]], [[6.0, 2.0]])
    np.testing.assert_allclose(bids.power_at([0.0, 0.1, 0.2, 0.3, 0.9]), [6, 6, 4, 2, 2])


def test_one_curve_from_two_flat_lists():
    bids = BidCurves.from_breakpoints([0.1, 0.3], [6.0, 2.0])
    assert len(bids) == 1
    np.testing.assert_allclose(bids.power_at(0.2), [4.0])


def test_ragged_breakpoints_and_long_table_agree():
    ragged = BidCurves.from_breakpoints([[0.1, 0.2, 0.3], [0.4]], [[5, 3, 0], [-2]])
    table = BidCurves.from_points([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4], [5, 3, 0, -2])
    for price in (0.0, 0.15, 0.25, 0.4, 0.5):
        np.testing.assert_allclose(ragged.bounds_at(price), table.bounds_at(price))
    # a single point is a block: sells 2 kW from 0.4 up
    np.testing.assert_allclose(ragged.power_at(0.39)[1], 0.0)
    np.testing.assert_allclose(ragged.power_at(0.41)[1], -2.0)


def test_powermatcher_demand_array_over_a_market_basis():
    basis = MarketBasis(0.0, 1.0, 5)
    bids = BidCurves.from_demand_array([[8, 6, 4, 2, 0]], basis)
    np.testing.assert_allclose(bids.power_at([0.0, 0.125, 0.5, 1.0]), [8, 7, 4, 0])


def test_unresponsive_load_is_a_block_at_the_cap():
    bids = BidCurves.unresponsive([3.0], price_cap=2.0)
    np.testing.assert_allclose(bids.power_at(1.99), [3.0])
    lo, hi = bids.bounds_at(2.0)
    assert lo[0] == 0.0 and hi[0] == 3.0


def test_locational_prices_one_per_curve():
    bids = BidCurves.from_steps([0.1, 0.1], [2.0, 2.0])
    np.testing.assert_allclose(bids.power_at([0.05, 0.2]), [2.0, 0.0])
    shifted = bids.with_price_offset([0.0, 0.08])  # the second curve pays a surcharge of 0.08
    np.testing.assert_allclose(shifted.power_at(0.05), [2.0, 0.0])


def test_every_bad_curve_is_named_in_one_error():
    prices = [[0.1, 0.2], [0.3, 0.2], [np.nan, 0.2], [0.1, 0.2], [0.1, np.inf]]
    powers = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValidationError) as info:
        BidCurves.from_breakpoints(prices, powers)
    problems = {(p.field, p.index) for p in info.value.problems}
    assert ("price_per_kwh", (1,)) in problems  # unsorted
    assert ("price_per_kwh", (2, 4)) in problems  # not finite
    assert ("power_kw", (3,)) in problems  # rises with price
    message = str(info.value)
    assert "not sorted" in message and "rises with price" in message and "finite" in message


def test_empty_batch_and_shape_mismatch_are_rejected():
    with pytest.raises(ValidationError, match="empty"):
        BidCurves.from_steps([], [])
    with pytest.raises(ValidationError, match="shape"):
        BidCurves.from_breakpoints([[0.1, 0.2]], [[1.0, 0.5, 0.0]])
    with pytest.raises(ValidationError, match="columns"):
        BidCurves.from_demand_array([[1.0, 0.0]], MarketBasis(0.0, 1.0, 3))
    with pytest.raises(ValidationError, match="price_steps"):
        MarketBasis(0.0, 1.0, 1)


def test_prices_outside_the_market_are_named():
    bids = BidCurves.from_steps([0.1, 1.5, -0.2], [1.0, 1.0, -1.0])
    with pytest.raises(ValidationError) as info:
        bids.check_prices_within(price_floor=0.0, price_cap=1.0)
    assert {p.index for p in info.value.problems} == {(1,), (2,)}


def test_curves_are_read_only():
    bids = BidCurves.from_steps([0.1], [1.0])
    with pytest.raises(ValueError, match="read-only"):
        bids.power_kw[0, 0] = 5.0


def test_concat_keeps_every_curve_padding_the_shorter_ones_by_their_last_point():
    """Batches of different breakpoint counts join in order; a shorter curve is padded with its
    last breakpoint repeated, so it reads the same power at every price."""
    two = BidCurves.from_breakpoints([[0.1, 0.3], [0.2, 0.4]], [[5.0, 1.0], [2.0, 0.0]])
    three = BidCurves.from_breakpoints([[0.05, 0.2, 0.5]], [[4.0, 3.0, 0.5]])
    one = BidCurves.from_breakpoints([[0.25]], [[-2.0]])
    two, three, one = two.with_ids(["a", "b"]), three.with_ids(["c"]), one.with_ids(["d"])
    joined = BidCurves.concat([two, three, one])
    assert joined.ids is not None and joined.ids.tolist() == ["a", "b", "c", "d"]
    assert joined.price_per_kwh.shape == (4, 3)
    np.testing.assert_array_equal(joined.price_per_kwh[0], [0.1, 0.3, 0.3])
    np.testing.assert_array_equal(joined.power_kw[0], [5.0, 1.0, 1.0])
    np.testing.assert_array_equal(joined.price_per_kwh[2], three.price_per_kwh[0])
    for price in (0.0, 0.1, 0.15, 0.3, 0.45, 1.0):
        parts = np.concatenate([b.power_at(price) for b in (two, three, one)])
        np.testing.assert_array_equal(joined.power_at(price), parts)
