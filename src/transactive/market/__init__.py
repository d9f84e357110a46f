"""Value discovery: clearing bid curves and hierarchical aggregation.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3: a uniform-price double auction over the parties' bid curves
(:func:`clear`), and concentrators that sum curves up a tree (:func:`aggregate`) and send the price
down (:func:`allocate`).

Pure computation: arrays in, arrays or frozen dataclasses out.
"""

from transactive.aggregation import aggregate
from transactive.curves import BidCurves, MarketBasis
from transactive.market.clearing import (
    ClearingResult,
    ClearingType,
    Supply,
    allocate,
    allocate_by_id,
    clear,
    fill_of_allocation,
    market_curves,
)

__all__ = [
    "BidCurves",
    "ClearingResult",
    "ClearingType",
    "MarketBasis",
    "Supply",
    "aggregate",
    "allocate",
    "allocate_by_id",
    "clear",
    "fill_of_allocation",
    "market_curves",
]
