"""Hypothesis strategies for bid curves: buyers, sellers, prosumers, blocks and ramps."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from transactive.curves import BidCurves

PRICE_CAP = 1.0
PRICE_FLOOR = 0.0

# A coarse price grid makes ties (blocks at one price, curves meeting at a breakpoint) common.
grid_prices = st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0])
# Prices to a millionth of the currency unit, as a market's price resolution would be.
free_prices = st.floats(PRICE_FLOOR, PRICE_CAP, allow_nan=False).map(lambda v: round(v, 6))
powers = st.floats(-20.0, 20.0, allow_nan=False).map(lambda v: round(v, 3))


@st.composite
def curve(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """One monotone curve: sorted prices, powers non-increasing (may cross zero)."""
    k = draw(st.integers(1, 5))
    price_strategy = grid_prices if draw(st.booleans()) else free_prices
    prices = sorted(draw(st.lists(price_strategy, min_size=k, max_size=k)))
    levels = sorted(draw(st.lists(powers, min_size=k, max_size=k)), reverse=True)
    return prices, levels


@st.composite
def bid_curves(draw: st.DrawFn, max_curves: int = 12) -> BidCurves:
    """A batch of 1..max_curves curves."""
    curves = draw(st.lists(curve(), min_size=1, max_size=max_curves))
    return BidCurves.from_breakpoints([c[0] for c in curves], [c[1] for c in curves])


def volume(bids: BidCurves) -> float:
    """Scale of a market for tolerances: the sum of each curve's largest power."""
    return float(np.maximum(np.abs(bids.power_kw[:, 0]), np.abs(bids.power_kw[:, -1])).sum()) + 1.0
