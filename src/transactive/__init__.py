"""transactive: transactive energy systems, from bid curves to a network-aware platform.

The package follows Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric
Energy System", Proceedings of the CSEE, 2019 (doi 10.13334/j.0258-8013.pcsee.180537).
"""

from transactive.curves import BidCurves, MarketBasis
from transactive.errors import Problem, ValidationError

__all__ = ["BidCurves", "MarketBasis", "Problem", "ValidationError", "__version__"]

__version__ = "0.1.0"
