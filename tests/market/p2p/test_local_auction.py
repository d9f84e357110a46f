"""The periodic local double auction: hand-checked clearings and the same answer as ``clear``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from transactive.errors import ValidationError
from transactive.market import BidCurves, Supply, clear
from transactive.market.p2p import LimitOrder, Tariffs, clear_local_auction, curves_from_orders

TARIFFS = Tariffs(import_per_kwh=0.25, export_per_kwh=0.05)
HALF_HOUR = 1800.0


def blocks(prices: list[float], kw: list[float]) -> BidCurves:
    return BidCurves.from_steps(prices, kw).with_ids([f"n{i}" for i in range(len(kw))])


def test_a_local_crossing_inside_the_tariffs() -> None:
    # buyers 2 kW at 0.30 and 3 kW at 0.20, a seller of 4 kW at 0.10: the 0.20 buyer is
    # marginal and gets 2 of its 3 kW; nothing goes to or comes from the utility
    bids = blocks([0.30, 0.20, 0.10], [2.0, 3.0, -4.0])
    result = clear_local_auction(bids, tariffs=TARIFFS, interval_s=HALF_HOUR, price_cap=1.0)
    assert result.price_per_kwh == 0.20
    np.testing.assert_allclose(result.energy_kwh, [1.0, 1.0, -2.0])  # kW x 0.5 h
    assert (result.import_kwh, result.export_kwh, result.local_kwh) == (0.0, 0.0, 2.0)
    # exactly clear() with the tariffs as the supply
    direct = clear(
        bids,
        price_cap=1.0,
        supply=Supply(0.25, math.inf, export_capacity_kw=math.inf, export_price_per_kwh=0.05),
    )
    np.testing.assert_array_equal(result.clearing.allocation_kw, direct.allocation_kw)
    assert result.clearing.clearing_price == direct.clearing_price


def test_a_shortage_imports_at_the_import_tariff() -> None:
    result = clear_local_auction(
        blocks([0.30, 0.28, 0.10], [2.0, 3.0, -1.0]),
        tariffs=TARIFFS,
        interval_s=HALF_HOUR,
        price_cap=1.0,
    )
    assert result.price_per_kwh == 0.25
    np.testing.assert_allclose(result.energy_kwh, [1.0, 1.5, -0.5])
    assert result.import_kwh == pytest.approx(2.0)
    assert result.local_kwh == pytest.approx(0.5)


def test_a_surplus_below_the_feed_in_tariff_is_exported() -> None:
    # a seller of 10 kW who takes anything from 0.02: 2 kW to the neighbour, 8 kW to the grid,
    # all at the feed-in tariff, the best the market offers
    result = clear_local_auction(
        blocks([0.30, 0.02], [2.0, -10.0]), tariffs=TARIFFS, interval_s=HALF_HOUR, price_cap=1.0
    )
    assert result.price_per_kwh == 0.05
    np.testing.assert_allclose(result.energy_kwh, [1.0, -5.0])
    assert result.export_kwh == pytest.approx(4.0)
    assert result.local_kwh == pytest.approx(1.0)


def test_a_seller_above_the_feed_in_tariff_keeps_what_nobody_buys() -> None:
    result = clear_local_auction(
        blocks([0.30, 0.10], [2.0, -10.0]), tariffs=TARIFFS, interval_s=HALF_HOUR, price_cap=1.0
    )
    assert result.price_per_kwh == 0.10
    np.testing.assert_allclose(result.energy_kwh, [1.0, -1.0])
    assert result.export_kwh == 0.0


def test_orders_as_curves_clear_as_the_same_blocks() -> None:
    orders = [
        LimitOrder("b1", "A", "buy", 0.30, 1.0, 0.0, 0),
        LimitOrder("b2", "B", "buy", 0.20, 1.5, 1.0, 0),
        LimitOrder("s1", "C", "sell", 0.10, 2.0, 2.0, 0),
    ]
    curves = curves_from_orders(orders, interval_s=HALF_HOUR)
    assert curves.ids is not None and curves.ids.tolist() == ["b1", "b2", "s1"]
    result = clear_local_auction(curves, tariffs=TARIFFS, interval_s=HALF_HOUR, price_cap=1.0)
    np.testing.assert_allclose(result.energy_kwh, [1.0, 1.0, -2.0])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValidationError, match="export_price_per_kwh") as info:
        clear_local_auction(
            blocks([0.3], [1.0]),
            tariffs=Tariffs(import_per_kwh=0.1, export_per_kwh=0.2),
            interval_s=HALF_HOUR,
            price_cap=1.0,
        )
    assert info.value.subject == "tariffs"
    with pytest.raises(ValidationError, match="interval_s"):
        clear_local_auction(blocks([0.3], [1.0]), tariffs=TARIFFS, interval_s=0.0, price_cap=1.0)
    with pytest.raises(ValidationError, match="outside"):
        clear_local_auction(blocks([0.3], [1.0]), tariffs=TARIFFS, interval_s=60.0, price_cap=0.2)
    with pytest.raises(ValidationError) as info:
        curves_from_orders(
            [LimitOrder("b1", "A", "hold", math.inf, -1.0, 0.0, 0)], interval_s=HALF_HOUR
        )
    assert {p.field for p in info.value.problems} == {"side", "price_per_kwh", "energy_kwh"}
    assert all(p.index == ("b1",) for p in info.value.problems)
