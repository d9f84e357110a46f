"""transactive: transactive energy systems, from bid curves to a network-aware platform.

The package follows Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric
Energy System", Proceedings of the CSEE, 2019 (doi 10.13334/j.0258-8013.pcsee.180537).

The names below are imported on first use (PEP 562 module ``__getattr__``), so ``import
transactive`` and the console command start without loading numpy and the numerical stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transactive.curves import BidCurves, MarketBasis
    from transactive.errors import Problem, ValidationError

__all__ = ["BidCurves", "MarketBasis", "Problem", "ValidationError", "__version__"]

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "BidCurves": "transactive.curves",
    "MarketBasis": "transactive.curves",
    "Problem": "transactive.errors",
    "ValidationError": "transactive.errors",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'transactive' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
