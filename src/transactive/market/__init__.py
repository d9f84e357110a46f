"""Value discovery: clearing bid curves and hierarchical aggregation.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3: a uniform-price double auction over the parties' bid curves
(:func:`clear`), and concentrators that sum curves up a tree (:func:`aggregate`) and send the price
down (:func:`allocate`).

A truthful market for thermostatic loads under a feeder limit (:func:`clear_truthful`, Li, Zhang,
Lian & Kalsi 2016) and the incentive probe that measures what an agent gains by misreporting in
any mechanism (:func:`incentive_probe`); the iterative mechanisms are in
:mod:`transactive.market.iterative`.

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
from transactive.market.incentives import (
    IncentiveProbe,
    curve_misreports,
    curve_value,
    double_auction,
    double_auction_utility,
    incentive_probe,
    tcl_misreports,
    truthful_tcl_mechanism,
    truthful_tcl_utility,
)
from transactive.market.truthful_tcl import (
    TclBids,
    TclEstimate,
    TclModel,
    TruthfulClearing,
    bids_from_estimate,
    bids_from_hvac,
    clear_truthful,
    estimate_tcl_model,
    tcl_bids,
    tcl_model_from_hvac,
)

__all__ = [
    "BidCurves",
    "ClearingResult",
    "ClearingType",
    "IncentiveProbe",
    "MarketBasis",
    "Supply",
    "TclBids",
    "TclEstimate",
    "TclModel",
    "TruthfulClearing",
    "aggregate",
    "allocate",
    "allocate_by_id",
    "bids_from_estimate",
    "bids_from_hvac",
    "clear",
    "clear_truthful",
    "curve_misreports",
    "curve_value",
    "double_auction",
    "double_auction_utility",
    "estimate_tcl_model",
    "fill_of_allocation",
    "incentive_probe",
    "market_curves",
    "tcl_bids",
    "tcl_misreports",
    "tcl_model_from_hvac",
    "truthful_tcl_mechanism",
    "truthful_tcl_utility",
]
