"""The fused clearing kernels against the numpy path they replace (issue 17).

``clear`` runs :mod:`transactive.market._clearing_kernels`; ``_clear_numpy`` is the numpy
reference. They must agree:

- bit for bit wherever the arithmetic is the same: the price whenever it is a block's price (a
  step of the aggregate curve), and given the same price every fill, allocation and quantity
  (the kernels replay numpy's pairwise sums and ``math.fsum``'s exact residual);
- a price inside a sloped stretch is the zero of the same affine piece found from other sums
  (another bracket, another order of the same terms): it may differ in its last bits, so within
  ``PRICE_TOLERANCE`` of the price range. The sums' rounding differs by a few ulps of the
  market's volume; over the aggregate slope (at least a curve's own slope, which the strategies
  keep above ~1e-3 of the volume per unit price) that moves a price by far less than 1e-9.
  Allocations then agree within ``1e-9`` of the volume, as in ``test_properties.py``.

Small markets clear with the bracket ``[floor, cap]``; the thresholds of the sketch and of the
threads are lowered in some tests so that hypothesis' small markets (ties, empty sides, caps and
floors) also run every path of the big ones.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.market.strategies import bid_curves, volume
from transactive.market import BidCurves, ClearingResult, ClearingType, Supply, allocate, clear
from transactive.market import _clearing_kernels as kernels
from transactive.market.clearing import _allocate_numpy, _clear_numpy

PRICE_TOLERANCE = 1e-9  # of the price range, for a price inside a sloped stretch

supplies = st.none() | st.builds(
    Supply,
    price_per_kwh=st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 1.0]),
    capacity_kw=st.floats(0.0, 40.0) | st.just(math.inf),
    export_capacity_kw=st.sampled_from([0.0, 3.0, math.inf]),
)
range_rules = st.sampled_from(["midpoint", "low", "high"])

_SCALARS = (
    "clearing_price",
    "clearing_quantity_kw",
    "buyer_fill",
    "seller_fill",
    "supply_kw",
    "shortage_kw",
    "surplus_kw",
    "price_cap",
    "price_floor",
)


@contextmanager
def small_thresholds() -> Iterator[None]:
    """Sketch, brackets and 8 threaded tasks for markets of a few curves."""
    saved = kernels.SKETCH_PIECES, kernels.PARALLEL_ROWS
    kernels.SKETCH_PIECES, kernels.PARALLEL_ROWS = 4, 9
    try:
        yield
    finally:
        kernels.SKETCH_PIECES, kernels.PARALLEL_ROWS = saved


def bits(value: Any) -> bytes:
    return np.asarray(value, dtype=np.float64).tobytes()


def assert_identical(
    ours: ClearingResult, reference: ClearingResult, *, price_range: bool = True
) -> None:
    """Every field equal, every number bit for bit (negative zeros included)."""
    for name in _SCALARS:
        assert bits(getattr(ours, name)) == bits(getattr(reference, name)), name
    assert ours.clearing_type is reference.clearing_type
    assert ours.price_rule == reference.price_rule
    if price_range:
        assert bits(ours.price_range or ()) == bits(reference.price_range or ())
    assert bits(ours.allocation_kw) == bits(reference.allocation_kw), "allocation_kw"
    assert bits(ours.marginal_fill) == bits(reference.marginal_fill), "marginal_fill"
    assert not ours.allocation_kw.flags.writeable and not ours.marginal_fill.flags.writeable
    if reference.ids is None:
        assert ours.ids is None
    else:
        assert ours.ids is not None and ours.ids.tolist() == reference.ids.tolist()


def at_a_breakpoint(bids: BidCurves, price: float, supply: Supply | None) -> bool:
    prices = bids.price_per_kwh.ravel().tolist()
    if supply is not None:
        prices.append(supply.price_per_kwh)
        if supply.export_price_per_kwh is not None:
            prices.append(supply.export_price_per_kwh)
    return price in prices


def assert_close_prices(
    bids: BidCurves, supply: Supply | None, span: float, ours: float, reference: float
) -> None:
    """Two prices that differ are interpolated ones (no breakpoint there), a few ulps apart."""
    if ours == reference:
        return
    for price in (ours, reference):
        assert not at_a_breakpoint(bids, price, supply), (price, ours, reference)
    assert abs(ours - reference) <= PRICE_TOLERANCE * span, (ours, reference)


def assert_agree(bids: BidCurves, **market: Any) -> ClearingResult:
    """``clear`` against ``_clear_numpy``: identical, or sloped prices within tolerance."""
    ours = clear(bids, **market)
    reference = _clear_numpy(bids, **market)
    span = market["price_cap"] - market.get("price_floor", 0.0)
    supply = market.get("supply")
    assert (ours.price_range is None) == (reference.price_range is None)
    if ours.price_range is not None and reference.price_range is not None:
        for mine, theirs in zip(ours.price_range, reference.price_range, strict=True):
            assert_close_prices(bids, supply, span, mine, theirs)
    if ours.clearing_price == reference.clearing_price:
        # given the price, the fills, allocations and quantities are numpy's, bit for bit
        assert_identical(ours, reference, price_range=False)
        return ours
    assert_close_prices(bids, supply, span, ours.clearing_price, reference.clearing_price)
    assert ours.clearing_type is reference.clearing_type
    tol = 1e-9 * volume(bids)
    np.testing.assert_allclose(ours.allocation_kw, reference.allocation_kw, rtol=0, atol=tol)
    assert math.isclose(ours.clearing_quantity_kw, reference.clearing_quantity_kw, abs_tol=tol)
    assert math.isclose(ours.supply_kw, reference.supply_kw, abs_tol=tol)
    return ours


# ---------------------------------------------------------------------- numpy's arithmetic


@pytest.mark.parametrize("n", [*range(0, 140), 255, 256, 257, 1000, 4095, 65_537, 300_001])
def test_pairwise_leaves_replay_numpys_sum_bit_for_bit(n):
    rng = np.random.default_rng(n)
    values = rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
    starts, lengths = kernels.pairwise_leaves(n)
    assert lengths.sum() == n and (lengths <= kernels.PAIRWISE_BLOCK).all()
    np.testing.assert_array_equal(
        starts, np.concatenate(([0], np.cumsum(lengths)[:-1]))[: starts.size]
    )
    leaf_sums = np.array(
        [
            kernels.leaf_sum(np.ascontiguousarray(values[s : s + m]), m)
            for s, m in zip(starts, lengths, strict=True)
        ]
    )
    total = kernels.combine(leaf_sums, n)
    assert bits(total) == bits(values.sum())
    column = np.column_stack([values, -values])[:, 0]  # numpy sums a strided column the same way
    assert bits(total) == bits(column.sum())


def _exact_sum(values: np.ndarray) -> float:
    bins = np.zeros((1, kernels._BINS), np.int64)
    _exact_probe()(np.ascontiguousarray(values, dtype=np.float64), bins[0])
    return float(kernels.exact_total(bins))


_probe_cache: list[Any] = []


def _exact_probe() -> Any:
    """A kernel that adds values into one superaccumulator, as ``settle_task`` does."""
    if not _probe_cache:
        import numba  # noqa: PLC0415 - numba loads with the kernels only

        add = kernels._add_exact

        @numba.njit(nogil=True, error_model="numpy")
        def probe(values, bins):
            for v in values:
                add(bins, v)

        _probe_cache.append(probe)
    return _probe_cache[0]


@settings(max_examples=200)
@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
        | st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.0, -1.0]),
        max_size=60,
    )
)
def test_the_exact_sum_is_math_fsum(values):
    assert bits(_exact_sum(np.array(values, dtype=np.float64))) == bits(math.fsum(values))


def test_the_exact_sum_carries_and_cancels_like_fsum():
    rng = np.random.default_rng(3)
    cases = [
        np.full(5000, 2.0**52 + 1.0),  # one bin, many times: carries
        np.concatenate([np.full(3000, 1e16), [1.0, 1e-16], np.full(3000, -1e16)]),
        np.array([1e-16, 1.0, 1e16]),  # fsum's half-even case
        rng.standard_normal(100_000) * 10.0 ** rng.integers(-300, 300, 100_000),
        np.concatenate([x := rng.uniform(-5, 5, 50_000), -x[::-1], [3e-17]]),
    ]
    for values in cases:
        assert bits(_exact_sum(values)) == bits(math.fsum(values.tolist()))


# ---------------------------------------------------------------------- clear, small markets


@given(bid_curves(), supplies, range_rules)
def test_kernels_clear_as_numpy_does(bids, supply, range_rule):
    assert_agree(bids, price_cap=1.0, price_floor=0.0, supply=supply, range_rule=range_rule)


@given(bid_curves(max_curves=30), supplies, range_rules)
def test_kernels_clear_as_numpy_does_on_every_path(bids, supply, range_rule):
    with small_thresholds():
        assert_agree(bids, price_cap=1.0, price_floor=0.0, supply=supply, range_rule=range_rule)


@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0]), st.integers(-20, 20)),
        min_size=1,
        max_size=40,
    ),
    supplies,
    range_rules,
    st.booleans(),
)
def test_block_markets_clear_bit_for_bit(blocks, supply, range_rule, small):
    """Blocks only (GridLAB-D and TESP bids): the price is a block's, everything is numpy's."""
    prices, powers = zip(*blocks, strict=True)
    bids = BidCurves.from_steps(list(prices), [float(q) for q in powers])
    market = {"price_cap": 1.0, "price_floor": 0.0, "supply": supply, "range_rule": range_rule}
    if small:
        with small_thresholds():
            ours = clear(bids, **market)
    else:
        ours = clear(bids, **market)
    assert_identical(ours, _clear_numpy(bids, **market))


@given(bid_curves(), st.floats(-5.0, 5.0), st.floats(0.01, 10.0))
def test_other_limits_clear_as_numpy_does(bids, floor, span):
    # the curves' prices in [0, 1] moved into [floor, floor + span]
    moved = BidCurves.from_breakpoints(floor + span * bids.price_per_kwh, bids.power_kw)
    with small_thresholds():
        assert_agree(moved, price_cap=floor + span, price_floor=floor)
    assert_agree(moved, price_cap=floor + span, price_floor=floor)


@pytest.mark.parametrize(
    ("prices", "powers", "supply", "kind"),
    [
        ([0.2, 0.3], [1.0, 2.0], None, ClearingType.NO_CROSSING),  # buyers only
        ([0.2, 0.3], [-1.0, -2.0], None, ClearingType.NO_CROSSING),  # sellers only
        ([0.04, 0.09], [3.0, -3.0], None, ClearingType.NO_CROSSING),  # asks above bids
        ([1.0, 1.0], [50.0, 20.0], Supply(0.1, 35.0), ClearingType.FAILURE),  # short at cap
        ([0.0, 0.0, 0.3], [-8.0, -4.0, 6.0], None, ClearingType.FAILURE),  # surplus at floor
        ([0.10, 0.05], [5.0, -5.0], None, ClearingType.PRICE_RANGE),
        ([0.30, 0.30], [10.0, -10.0], None, ClearingType.EXACT),
        ([0.02, 0.09, 0.05, 0.05], [-6.0, 4.0, 2.0, 6.0], None, ClearingType.MARGINAL_BUYER),
        ([0.10, 0.08, 0.05, 0.07], [5.0, 3.0, -4.0, -6.0], None, ClearingType.MARGINAL_SELLER),
        ([0.0], [-12.0], Supply(0.05, 10.0, 8.0, 0.03), ClearingType.FAILURE),  # reverse flow
        ([0.08, 0.06, 0.04], [4.0, 5.0, 3.0], Supply(0.05, math.inf), ClearingType.MARGINAL_SELLER),
    ],
)
def test_every_clearing_type_is_numpys(prices, powers, supply, kind):
    bids = BidCurves.from_steps(prices, powers).with_ids([f"b{i}" for i in range(len(prices))])
    for rule in ("midpoint", "low", "high"):
        market = {"price_cap": 1.0, "supply": supply, "range_rule": rule}
        ours = clear(bids, **market)
        assert ours.clearing_type is kind
        assert_identical(ours, _clear_numpy(bids, **market))
        with small_thresholds():
            assert_identical(clear(bids, **market), ours)


def test_a_bracket_that_misses_falls_back_to_the_numpy_search(monkeypatch):
    def missed(*args: Any) -> tuple[float, float]:
        raise kernels.SearchFailed

    bids = BidCurves.from_breakpoints([[0.0, 1.0], [0.0, 1.0]], [[10.0, 0.0], [0.0, -10.0]])
    monkeypatch.setattr(kernels, "price_range", missed)
    assert_identical(clear(bids, price_cap=1.0), _clear_numpy(bids, price_cap=1.0))


def test_bad_markets_are_refused_with_the_numpy_paths_problems():
    bids = BidCurves.from_steps([0.5, 1.5], [1.0, -1.0]).with_ids(["a", "b"])
    with pytest.raises(ValueError, match=r"above the price cap 1.0 \(entry b\)") as ours:
        clear(bids, price_cap=1.0, supply=Supply(2.0, 1.0))
    with pytest.raises(ValueError, match="above the price cap") as reference:
        _clear_numpy(bids, price_cap=1.0, supply=Supply(2.0, 1.0))
    assert str(ours.value) == str(reference.value)  # the supply's price and the bid, both named
    huge = BidCurves.from_steps([0.1, 0.2], [1.7e308, 1.7e308])
    with pytest.raises(ValueError, match="overflow"):
        clear(huge, price_cap=1.0)


def test_writable_or_strided_curves_clear_alike():
    rng = np.random.default_rng(5)
    prices = np.sort(rng.uniform(0, 1, (300, 6)), axis=1)
    powers = np.sort(rng.uniform(-5, 5, (300, 6)), axis=1)[:, ::-1]  # a strided view
    raw = BidCurves(prices, powers)  # not through a constructor: writable, not contiguous
    built = BidCurves.from_breakpoints(prices, powers)
    assert_identical(clear(raw, price_cap=1.0), clear(built, price_cap=1.0))
    assert_agree(raw, price_cap=1.0)


# ---------------------------------------------------------------------- clear, large markets


def _large_market(seed: int, n: int) -> tuple[BidCurves, Supply | None]:
    """Blocks, ramps and prosumers, on a price grid (ties) or continuous prices."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    grid = rng.random() < 0.4
    if grid:
        prices = np.sort(rng.choice(np.linspace(0.0, 1.0, 21), (n, k)), axis=1)
    else:
        prices = np.sort(rng.uniform(0.0, 1.0, (n, k)), axis=1)
    blocks = rng.random(n) < rng.random()
    prices[blocks, 1:] = prices[blocks, :1]  # a block: every breakpoint at one price
    shape = np.sort(rng.uniform(0.0, 1.0, (n, k)), axis=1)[:, ::-1]
    size = np.round(rng.uniform(0.5, 5.0, (n, 1)), 3)
    side = rng.choice(3, n, p=rng.dirichlet([1.0, 1.0, 1.0]))
    powers = np.where(
        (side == 0)[:, None],
        size * shape,
        np.where((side == 1)[:, None], -size * shape[:, ::-1], size * (shape - 0.5)),
    )
    if rng.random() < 0.3:  # unresponsive load at the cap
        powers[: n // 50, :] = rng.uniform(0.1, 2.0, (n // 50, 1))
        prices[: n // 50, :] = 1.0
    supply = None
    if rng.random() < 0.5:
        supply = Supply(
            float(rng.choice([0.05, 0.3, 0.7])),
            float(rng.choice([0.0, n * 0.3, math.inf])),
            float(rng.choice([0.0, n * 0.1])),
        )
    return BidCurves.from_breakpoints(prices, powers), supply


@settings(max_examples=12)
@given(st.integers(0, 2**32 - 1), st.sampled_from([3_000, 20_000, 70_000]), range_rules)
def test_large_markets_clear_as_numpy_does(seed, n, range_rule):
    bids, supply = _large_market(seed, n)
    assert_agree(bids, price_cap=1.0, supply=supply, range_rule=range_rule)


def test_benchmark_markets_clear_bit_for_bit():
    rng = np.random.default_rng(2026)
    for n in (5_000, 100_000):
        prices = np.sort(rng.uniform(0.001, 0.999, (n, 2)), axis=1)
        sizes = rng.uniform(0.5, 5.0, (n, 2))
        buyer = rng.random(n) < 0.6
        b_pow = np.column_stack([sizes.sum(1), sizes[:, 1], sizes[:, 1], np.zeros(n)])
        s_pow = -np.column_stack([np.zeros(n), sizes[:, 0], sizes[:, 0], sizes.sum(1)])
        bids = BidCurves.from_breakpoints(
            np.repeat(prices, 2, axis=1), np.where(buyer[:, None], b_pow, s_pow)
        )
        for supply in (None, Supply(0.5, n * 0.5)):
            ours = clear(bids, price_cap=1.0, supply=supply)
            assert_identical(ours, _clear_numpy(bids, price_cap=1.0, supply=supply))


def test_the_result_does_not_depend_on_the_number_of_threads(monkeypatch):
    bids, supply = _large_market(11, 80_000)
    threaded = clear(bids, price_cap=1.0, supply=supply)
    monkeypatch.setattr(kernels, "_workers", lambda: 1)
    assert_identical(clear(bids, price_cap=1.0, supply=supply), threaded)


# ---------------------------------------------------------------------- allocate


@given(bid_curves(max_curves=20), supplies, st.data())
def test_allocate_is_numpys_bit_for_bit(bids, supply, data):
    result = clear(bids, price_cap=1.0, supply=supply)
    assert bits(allocate(bids, result)) == bits(_allocate_numpy(bids, result))
    other = bid_curves(max_curves=20)
    more = data.draw(other)
    assert bits(allocate(more, result)) == bits(_allocate_numpy(more, result))


def test_allocate_large_batches_bit_for_bit():
    bids, supply = _large_market(4, 70_000)
    result = clear(bids, price_cap=1.0, supply=supply)
    assert bits(allocate(bids, result)) == bits(_allocate_numpy(bids, result))


# ---------------------------------------------------------------------- loading


def test_importing_the_package_does_not_load_numba():
    code = "import sys, transactive, transactive.market; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
