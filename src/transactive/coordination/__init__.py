"""Coordination between the market and the grid: the mechanisms that loop between them.

The weakly-centralized mode of Hu et al., "Transactive Energy: an Effective Mechanism for
Balancing Electric Energy System", Proc. CSEE 2019, §3.1.1: cleared transactions pass the
system operator's security check or return to the market with locational surcharges
(:func:`secure_clearing`); fleet operators and the DSO iterate on congestion prices until the
feeder's limits hold (:func:`network_constrained_ev_charging`). This sits on the mechanism floor
above :mod:`transactive.market` (clearing, iterative framework) and :mod:`transactive.network`
(the grid and the DSO's check), and imports both.
"""

from transactive.coordination.ev_congestion import (
    DEFAULT_EV_CONGESTION_RULE,
    NetworkEvProblem,
    centralized_network_ev,
    network_constrained_ev_charging,
    network_ev_opf,
)
from transactive.coordination.secure import ClearingRound, SecureClearingOutcome, secure_clearing

__all__ = [
    "DEFAULT_EV_CONGESTION_RULE",
    "ClearingRound",
    "NetworkEvProblem",
    "SecureClearingOutcome",
    "centralized_network_ev",
    "network_constrained_ev_charging",
    "network_ev_opf",
    "secure_clearing",
]
