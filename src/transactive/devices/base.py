"""What every device population offers: bid, respond, step (MISSION.md §3, DESIGN.md data flow).

A population holds N devices of one kind as numpy arrays (structure-of-arrays). Its three verbs
are vectorized over the devices; none of them loops over devices in Python.

- ``bid(price_stats)`` returns one bid curve per device (:class:`~transactive.curves.BidCurves`).
- ``respond(clearing_price, marginal_fill)`` reads each device's power off its own curve at the
  cleared price (a scalar, or one price per device for locational prices); ``marginal_fill`` is
  the market's share of a marginal block (``ClearingResult.marginal_fill``), so the device's power
  equals the allocation the market gave it.
- ``step(dt_s, weather)`` advances the physics by ``dt_s`` seconds and returns metered power and
  energy per device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.weather import WeatherSample

__all__ = ["Population", "PriceStats", "StepResult"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PriceStats:
    """What a device knows of recent prices: mean and standard deviation (currency/kWh).

    The Olympic Peninsula and GridLAB-D transactive controllers bid within
    ``mean ± k * std`` of the recent price history.
    """

    mean_per_kwh: float
    std_per_kwh: float
    price_cap_per_kwh: float
    price_floor_per_kwh: float = 0.0


@dataclass(frozen=True)
class StepResult:
    """Metered result of one physics step, per device."""

    power_kw: FloatArray  # average power over the step, positive = consumption
    energy_kwh: FloatArray  # energy over the step, positive = consumption


@runtime_checkable
class Population(Protocol):
    """The protocol every device population implements."""

    @property
    def n_devices(self) -> int:
        """Number of devices in the population."""
        ...

    def bid(self, price_stats: PriceStats) -> BidCurves:
        """One bid curve per device for the coming market interval."""
        ...

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike = 0.0,
    ) -> FloatArray:
        """Set each device's operating point for the interval; returns its power (kW)."""
        ...

    def step(self, dt_s: float, weather: WeatherSample) -> StepResult:
        """Advance the physics by ``dt_s`` seconds."""
        ...
