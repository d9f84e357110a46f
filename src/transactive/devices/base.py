"""What every device population offers: bid, respond, step, and a horizon view.

A population holds N devices of one kind as numpy arrays (structure-of-arrays). Its verbs are
vectorized over the devices; none of them loops over devices in Python. The single-exchange verbs
follow the paper's first way of discovering value and the iterative one its second (Hu et al.,
"Transactive Energy: an Effective Mechanism for Balancing Electric Energy System", Proc. CSEE
2019, §1.4).

Time is the caller's: integer seconds from the start of the run. A population keeps no clock of
its own; every verb that depends on time is told it.

- ``bid(price_stats, interval, weather)`` returns one bid curve per device for one market
  interval (:class:`MarketInterval`): the **average power over that interval** the device would
  draw at each price (Widergren et al., PNNL-27235 Part II, recast the gridSMART bid this way
  because a bid of instantaneous power is not what a thermostat then draws). The curves carry
  the population's ``ids``. ``weather`` is the caller's forecast for the interval.
- ``respond(clearing_price, marginal_fill)`` reads each device's power off its own last curve at
  the cleared price (a scalar, or one price per device for locational prices); ``marginal_fill``
  is the market's share of a marginal block (``ClearingResult.marginal_fill``) and must be given.
  After it the device draws that average power over the interval (each kind's docstring says
  how closely a single device can; in aggregate, within a few percent).
- ``step(time_s, dt_s, weather)`` advances the physics from ``time_s`` by ``dt_s`` seconds and
  returns metered power and energy per device.

Kinds with storage-like flexibility (EVs, batteries, thermostatic loads through their virtual
battery) also implement :class:`transactive.devices.flexibility.FlexiblePopulation`:
``flexibility(horizon, weather)`` states the constraints a schedule must meet
(:class:`transactive.devices.flexibility.Flexibility`), and ``best_response(prices_per_kwh,
horizon, weather)`` returns the cheapest schedule under them without changing the population:
what dual decomposition, ADMM and valley filling ask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = [
    "Horizon",
    "MarketInterval",
    "Population",
    "PriceStats",
    "StepResult",
]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


@dataclass(frozen=True)
class PriceStats:
    """What a device knows of recent prices: mean and standard deviation (currency/kWh).

    The Olympic Peninsula and GridLAB-D transactive controllers bid within
    ``mean ± k * std`` of the recent price history. Every field must be finite, the deviation
    non-negative and the cap above the floor; anything else raises a ValidationError.
    """

    mean_per_kwh: float
    std_per_kwh: float
    price_cap_per_kwh: float
    price_floor_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        problems = Problems(subject="price statistics")
        values = {
            "mean_per_kwh": self.mean_per_kwh,
            "std_per_kwh": self.std_per_kwh,
            "price_cap_per_kwh": self.price_cap_per_kwh,
            "price_floor_per_kwh": self.price_floor_per_kwh,
        }
        for name, value in values.items():
            # bool is an int in Python: True would pass as a price of 1 (and np.bool_ as well)
            number = isinstance(value, int | float | np.floating | np.integer)
            if isinstance(value, bool | np.bool_) or not number or not math.isfinite(float(value)):
                problems.add(name, f"must be a finite number, got {value!r}")
        problems.raise_if_any()
        if self.std_per_kwh < 0:
            problems.add("std_per_kwh", f"must not be negative, got {self.std_per_kwh}")
        if not self.price_cap_per_kwh > self.price_floor_per_kwh:
            problems.add(
                "price_cap_per_kwh",
                f"must exceed price_floor_per_kwh ({self.price_cap_per_kwh} <= "
                f"{self.price_floor_per_kwh})",
            )
        problems.raise_if_any()


def _check_seconds(problems: Problems, name: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        problems.add(name, f"must be an integer number of seconds, got {value!r}")
    elif positive and value <= 0:
        problems.add(name, f"must be positive, got {value}")
    elif not positive and value < 0:
        problems.add(name, f"must not be negative, got {value}")


@dataclass(frozen=True)
class MarketInterval:
    """One market interval: ``[start_s, start_s + duration_s)`` in seconds from the run's start."""

    start_s: int
    duration_s: int

    def __post_init__(self) -> None:
        problems = Problems(subject="market interval")
        _check_seconds(problems, "start_s", self.start_s, positive=False)
        _check_seconds(problems, "duration_s", self.duration_s, positive=True)
        problems.raise_if_any()

    @property
    def end_s(self) -> int:
        """First second after the interval."""
        return int(self.start_s) + int(self.duration_s)


@dataclass(frozen=True)
class Horizon:
    """``n_periods`` periods of ``period_s`` seconds from ``start_s`` (seconds from the start).

    Period t covers ``[start_s + t period_s, start_s + (t + 1) period_s)``.
    """

    start_s: int
    period_s: int
    n_periods: int

    def __post_init__(self) -> None:
        problems = Problems(subject="horizon")
        _check_seconds(problems, "start_s", self.start_s, positive=False)
        _check_seconds(problems, "period_s", self.period_s, positive=True)
        if isinstance(self.n_periods, bool) or not isinstance(self.n_periods, int | np.integer):
            problems.add("n_periods", f"must be an integer, got {self.n_periods!r}")
        elif self.n_periods < 1:
            problems.add("n_periods", f"must be at least 1, got {self.n_periods}")
        problems.raise_if_any()

    @property
    def period_h(self) -> float:
        """Period length in hours."""
        return self.period_s / 3600.0

    @property
    def starts_s(self) -> npt.NDArray[np.int64]:
        """Start of every period (seconds from the run's start)."""
        return self.start_s + self.period_s * np.arange(self.n_periods, dtype=np.int64)

    def interval(self, t: int) -> MarketInterval:
        """Period ``t`` as a market interval."""
        return MarketInterval(int(self.start_s + t * self.period_s), int(self.period_s))


@dataclass(frozen=True)
class StepResult:
    """Metered result of one physics step, per device (rows named by ``ids``)."""

    power_kw: FloatArray  # average power over the step, positive = consumption
    energy_kwh: FloatArray  # energy over the step, positive = consumption
    ids: StrArray | None = None


@runtime_checkable
class Population(Protocol):
    """The protocol every device population implements."""

    @property
    def n_devices(self) -> int:
        """Number of devices in the population."""
        ...

    @property
    def ids(self) -> StrArray:
        """Stable id of every device (unique strings, read-only)."""
        ...

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """One bid curve per device: average power over ``interval`` at each price."""
        ...

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Set each device's operating point for the interval bid for; returns its power (kW)."""
        ...

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Advance the physics from ``time_s`` by ``dt_s`` seconds."""
        ...
