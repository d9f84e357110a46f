"""Coordination between the market and the grid: the mechanisms that loop between them.

The weakly-centralized mode of Hu et al., "Transactive Energy: an Effective Mechanism for
Balancing Electric Energy System", Proc. CSEE 2019, §3.1.1: cleared transactions pass the
system operator's security check or return to the market with locational surcharges. This sits
on the mechanism floor above :mod:`transactive.market` (clearing) and :mod:`transactive.network`
(the grid and the DSO's check), and imports both.
"""

from transactive.coordination.secure import ClearingRound, SecureClearingOutcome, secure_clearing

__all__ = ["ClearingRound", "SecureClearingOutcome", "secure_clearing"]
