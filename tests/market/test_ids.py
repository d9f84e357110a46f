"""Bidder ids travel with the curves: through take, offsets, concat, clearing and a tree."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.market.strategies import PRICE_CAP, bid_curves, volume
from transactive import ValidationError
from transactive.market import (
    BidCurves,
    ClearingResult,
    Supply,
    aggregate,
    allocate,
    allocate_by_id,
    clear,
)


def ids_of(bids: BidCurves | ClearingResult) -> list[str]:
    assert bids.ids is not None
    return list(bids.ids.tolist())


def named(bids: BidCurves, prefix: str = "dev") -> BidCurves:
    return bids.with_ids([f"{prefix}-{i}" for i in range(len(bids))])


def test_ids_survive_take_offset_and_concat():
    bids = BidCurves.from_steps([0.1, 0.2, 0.3], [4.0, -2.0, 1.0]).with_ids(["a", "b", "c"])
    assert ids_of(bids.take([2, 0])) == ["c", "a"]
    assert ids_of(bids.take(np.array([False, True, True]))) == ["b", "c"]
    assert ids_of(bids.with_price_offset([0.01, 0.0, 0.02])) == ["a", "b", "c"]
    other = BidCurves.from_breakpoints([[0.0, 1.0]], [[3.0, 0.0]]).with_ids(["d"])
    both = BidCurves.concat([bids, other])
    assert ids_of(both) == ["a", "b", "c", "d"]
    with pytest.raises(ValidationError, match="repeats an earlier id"):
        BidCurves.concat([bids, other.with_ids(["a"])])
    with pytest.raises(ValidationError, match="some batches have ids"):
        BidCurves.concat([bids, BidCurves.from_steps([0.5], [1.0])])


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        (["a", "a", "b"], "repeats an earlier id"),
        (["a", "", "b"], "is empty"),
        (["a", " b", "c"], "leading or trailing spaces"),
        (["a", "b"], "must be 3 strings"),
        ([1, 2, 3], "must be strings"),
    ],
)
def test_bad_ids_are_refused_by_position(ids, reason):
    bids = BidCurves.from_steps([0.1, 0.2, 0.3], [4.0, -2.0, 1.0])
    with pytest.raises(ValidationError, match=reason) as info:
        bids.with_ids(ids)
    if reason in ("repeats an earlier id", "is empty", "leading or trailing spaces"):
        assert info.value.problems[0].index == (1,)


def test_clearing_results_are_keyed_by_the_bidders():
    bids = BidCurves.from_steps([0.10, 0.08, 0.05, 0.07], [5.0, 3.0, -4.0, -6.0])
    result = clear(bids.with_ids(["house-1", "house-2", "pv", "genset"]), price_cap=1.0)
    assert result.allocation_by_id() == pytest.approx(
        {"house-1": 5.0, "house-2": 3.0, "pv": -4.0, "genset": -4.0}
    )
    # a supply joins the market without an id, and the bids keep theirs
    with_supply = clear(
        bids.with_ids(["h1", "h2", "pv", "gen"]),
        price_cap=1.0,
        supply=Supply(price_per_kwh=0.06, capacity_kw=2.0),
    )
    assert ids_of(with_supply) == ["h1", "h2", "pv", "gen"]
    assert with_supply.allocation_by_id()["gen"] == pytest.approx(-2.0)
    with pytest.raises(ValidationError, match="no ids"):
        clear(bids, price_cap=1.0).allocation_by_id()


def test_aggregates_carry_their_groups_ids():
    bids = named(BidCurves.from_steps([0.1, 0.2, 0.3], [4.0, -2.0, 1.0]))
    assert ids_of(aggregate(bids, [0, 1, 1])) == ["0", "1"]
    assert ids_of(aggregate(bids)) == ["0"]
    sides = aggregate(bids, [0, 1, 1], group_ids=["north", "south"], by_side=True)
    assert ids_of(sides) == ["north/demand", "south/demand", "north/supply", "south/supply"]
    with pytest.raises(ValidationError, match="repeats an earlier id"):
        aggregate(bids, [0, 1, 1], group_ids=["x", "x"])
    with pytest.raises(ValidationError, match="must be 2 strings"):
        aggregate(bids, [0, 1, 1], group_ids=["x"])


@given(bid_curves(max_curves=16), st.data())
def test_a_concentrator_tree_gives_every_device_its_flat_allocation_by_id(bids, data):
    bids = named(bids)
    n = len(bids)
    feeder = np.array(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    level1 = aggregate(bids, feeder, n_groups=3, group_ids=["f0", "f1", "f2"], by_side=True)
    top = aggregate(level1, np.tile([0, 0, 1], 2), n_groups=2, by_side=True)
    flat = clear(bids, price_cap=PRICE_CAP)
    tree = clear(top, price_cap=PRICE_CAP)
    assert ids_of(tree) == ["0/demand", "1/demand", "0/supply", "1/supply"]
    by_id = allocate_by_id(bids, tree)
    assert list(by_id) == ids_of(bids)
    flat_by_id = flat.allocation_by_id()
    tol = 1e-8 * volume(bids)
    for device, power in by_id.items():
        assert math.isclose(power, flat_by_id[device], abs_tol=tol), device
    # a concentrator's own ids hold its members' sum
    level1_power = dict(zip(ids_of(level1), allocate(level1, tree).tolist(), strict=True))
    for g in range(3):
        members = [d for d, f in zip(ids_of(bids), feeder, strict=True) if f == g]
        got = level1_power[f"f{g}/demand"] + level1_power[f"f{g}/supply"]
        assert math.isclose(got, sum(flat_by_id[m] for m in members), abs_tol=tol)


def test_allocate_by_id_needs_ids():
    bids = BidCurves.from_steps([0.1, 0.2], [1.0, -1.0])
    with pytest.raises(ValidationError, match="no ids"):
        allocate_by_id(bids, clear(bids, price_cap=1.0))


def test_an_empty_market_clears_and_aggregates():
    empty = named(BidCurves.from_steps([0.1], [1.0])).take(np.array([], dtype=np.int64))
    result = clear(empty, price_cap=1.0, supply=Supply(price_per_kwh=0.1, capacity_kw=5.0))
    assert result.allocation_kw.shape == (0,)
    assert result.supply_kw == 0.0 and not math.copysign(1.0, result.supply_kw) < 0
    assert result.allocation_by_id() == {}
    groups = aggregate(empty, [], n_groups=2, group_ids=["a", "b"])
    assert ids_of(groups) == ["a", "b"]
    np.testing.assert_array_equal(groups.power_at(0.5), [0.0, 0.0])
    assert len(aggregate(empty, [])) == 0
