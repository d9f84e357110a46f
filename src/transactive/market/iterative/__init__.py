"""Iterative value discovery: price–power iterations between a coordinator and agents.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §1.4 and §2.2: parties keep their cost functions private, send schedules, are
answered with prices, and iterate until supply and demand balance. :mod:`.framework` holds what
every algorithm shares (stopping rules, faulty channels, round records, the centralized
reference); each algorithm has its own module, citing its paper.

Pure computation: arrays in, arrays and frozen dataclasses out.
"""

import importlib
from typing import TYPE_CHECKING, Any

from transactive.market.iterative.framework import (
    CentralizedOptimum,
    Channel,
    CommsFaults,
    IterativeResult,
    Recorder,
    StepSizeWarning,
    StoppingRule,
    checked_step_size,
    relative_gap,
)

if TYPE_CHECKING:
    from transactive.market.iterative.admm import admm_exchange
    from transactive.market.iterative.consensus import (
        CommunicationGraph,
        DispatchProblem,
        StorageUnits,
        centralized_dispatch,
        dispatch_cost_per_h,
        epsilon_bound,
        incremental_cost_consensus,
    )
    from transactive.market.iterative.day_ahead import (
        DayAheadProblem,
        LeastCostDispatch,
        centralized_day_ahead,
        least_cost_dispatch,
    )
    from transactive.market.iterative.dual_decomposition import dual_decomposition, water_filling
    from transactive.market.iterative.ev_fleet import EvFleet
    from transactive.market.iterative.valley_filling import (
        centralized_valley_filling,
        gan_valley_filling,
        ma_callaway_hiskens,
        valley_objective_kw2,
        warm_projection,
    )

# The algorithms load on first use (PEP 562): importing the framework, as the truthful TCL
# market does, must not pull in every algorithm and the devices they read flexibility from.
_LAZY = {
    "CommunicationGraph": "consensus",
    "DayAheadProblem": "day_ahead",
    "DispatchProblem": "consensus",
    "EvFleet": "ev_fleet",
    "LeastCostDispatch": "day_ahead",
    "StorageUnits": "consensus",
    "admm_exchange": "admm",
    "centralized_day_ahead": "day_ahead",
    "centralized_dispatch": "consensus",
    "centralized_valley_filling": "valley_filling",
    "dispatch_cost_per_h": "consensus",
    "dual_decomposition": "dual_decomposition",
    "epsilon_bound": "consensus",
    "gan_valley_filling": "valley_filling",
    "incremental_cost_consensus": "consensus",
    "least_cost_dispatch": "day_ahead",
    "ma_callaway_hiskens": "valley_filling",
    "valley_objective_kw2": "valley_filling",
    "warm_projection": "valley_filling",
    "water_filling": "dual_decomposition",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CentralizedOptimum",
    "Channel",
    "CommsFaults",
    "CommunicationGraph",
    "DayAheadProblem",
    "DispatchProblem",
    "EvFleet",
    "IterativeResult",
    "LeastCostDispatch",
    "Recorder",
    "StepSizeWarning",
    "StoppingRule",
    "StorageUnits",
    "admm_exchange",
    "centralized_day_ahead",
    "centralized_dispatch",
    "centralized_valley_filling",
    "checked_step_size",
    "dispatch_cost_per_h",
    "dual_decomposition",
    "epsilon_bound",
    "gan_valley_filling",
    "incremental_cost_consensus",
    "least_cost_dispatch",
    "ma_callaway_hiskens",
    "relative_gap",
    "valley_objective_kw2",
    "warm_projection",
    "water_filling",
]
