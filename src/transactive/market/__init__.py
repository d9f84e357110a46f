"""Value discovery: clearing bid curves and hierarchical aggregation (MISSION.md §3).

Pure computation: arrays in, arrays or frozen dataclasses out.
"""

from transactive.aggregation import aggregate
from transactive.curves import BidCurves, MarketBasis
from transactive.market.clearing import ClearingResult, ClearingType, Supply, allocate, clear

__all__ = [
    "BidCurves",
    "ClearingResult",
    "ClearingType",
    "MarketBasis",
    "Supply",
    "aggregate",
    "allocate",
    "clear",
]
