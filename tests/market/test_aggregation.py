import numpy as np
import pytest

from transactive import ValidationError
from transactive.market import BidCurves, MarketBasis, aggregate, clear


def test_sum_of_blocks_and_ramps_is_exact():
    bids = BidCurves.from_breakpoints(
        [[0.1, 0.1], [0.2, 0.4], [0.3, 0.3]], [[4.0, 0.0], [6.0, 2.0], [0.0, -5.0]]
    )
    total = aggregate(bids)
    assert len(total) == 1
    expected = {0.05: 10.0, 0.1: 6.0, 0.15: 6.0, 0.25: 5.0, 0.3: -1.0, 0.35: -2.0, 0.5: -3.0}
    for price, power in expected.items():
        assert total.power_at(price)[0] == pytest.approx(power)
    lo, hi = total.bounds_at(0.1)  # the 4 kW block stays a vertical block
    assert (lo[0], hi[0]) == pytest.approx((6.0, 10.0))


def test_empty_group_gets_a_zero_curve():
    bids = BidCurves.from_steps([0.1, 0.2], [1.0, -1.0])
    groups = aggregate(bids, [0, 2], n_groups=3)
    np.testing.assert_allclose(groups.power_at(0.15), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(groups.power_at(0.05), [1.0, 0.0, 0.0])


def test_powermatcher_concentrator_of_array_bids():
    basis = MarketBasis(0.0, 0.5, 11)
    rng = np.random.default_rng(3)
    demand = -np.sort(-rng.uniform(0, 3, (100, 11)), axis=1)
    demand[50:] -= 3.5  # half of the agents are net producers
    bids = BidCurves.from_demand_array(demand, basis)
    concentrated = aggregate(bids, np.arange(100) % 5, n_groups=5)
    assert clear(concentrated, price_cap=0.5).clearing_price == pytest.approx(
        clear(bids, price_cap=0.5).clearing_price, abs=1e-12
    )


def test_bad_groups_are_named():
    bids = BidCurves.from_steps([0.1, 0.2, 0.3], [1.0, 1.0, 1.0])
    with pytest.raises(ValidationError, match="one group index per curve"):
        aggregate(bids, [0, 1])
    with pytest.raises(ValidationError) as info:
        aggregate(bids, [0, -1, 5], n_groups=3)
    assert {p.index for p in info.value.problems} == {(1,), (2,)}
    with pytest.raises(ValidationError, match="integer"):
        aggregate(bids, [0.0, 1.0, 2.0])
