"""Space-heating heat pumps bidding as PowerMatcher agents (PowerMatching City, MISSION.md §4).

Building: the ETP two-node house of :mod:`transactive.devices.hvac` in heating mode (air node and
a mass node that acts as the building's heat buffer), solved exactly with switching times.

Heat pump: a fixed-speed air-source unit with constant thermal output and a COP from the
air-source regression of Staffell, Brett, Brandon, Hawkes, "A review of domestic heat pumps",
Energy Environ. Sci. 5 (2012) 9291, eq. (4)::

    COP = 6.81 - 0.121 dT + 0.000630 dT^2,   dT = T_supply - T_outdoor  (clamped to 15..60 K,
                                                                         the fit's range)

with ``T_supply`` the flow temperature of the heating system (about 35 °C for floor heating,
45-55 °C for radiators).

Bidding: a PowerMatcher device agent for an on/off device with a thermal buffer (Kok, Warmer,
Kamphuis, "PowerMatcher: multiagent control in the electricity infrastructure", AAMAS 2005; the
heat-pump agents of PowerMatching City, Bliek et al., 2010): its price willingness rises linearly
from the market basis' minimum to its maximum as the indoor temperature falls from the top to the
bottom of the comfort band, ``p = p_min + (p_max - p_min) (Tmax - Ta) / (Tmax - Tmin)``; below
``Tmin`` it must run (bids the maximum), above ``Tmax`` it does not bid. The bid is one block of
the unit's electric power. A PowerMatcher agent commits to its allocation: after ``respond`` the
heat pump holds the allocated state (on, off, or on with duty ``marginal_fill`` at its own
price) for the interval, and only the comfort band's edges override it. Without a market it is a
deadband thermostat around the setpoint.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _Fields,
    _readonly,
)
from transactive.devices.base import PriceStats, StepResult
from transactive.devices.hvac import (
    HEATING,
    HvacPopulation,
    heating_capacity_factor,
)
from transactive.devices.ramp import (
    _block_bids,
    _block_response,
    _check_price_stats,
)
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["HeatPumpPopulation", "staffell_ashp_cop"]

FloatArray = npt.NDArray[np.float64]


def staffell_ashp_cop(
    supply_temperature_c: FloatArray | float, outdoor_temperature_c: FloatArray | float
) -> FloatArray:
    """Air-source heat-pump COP, Staffell et al. (2012) eq. (4), ``dT`` clamped to 15..60 K."""
    dt = np.clip(
        np.asarray(supply_temperature_c, dtype=np.float64) - outdoor_temperature_c, 15.0, 60.0
    )
    return np.asarray(6.81 - 0.121 * dt + 0.000630 * dt * dt, dtype=np.float64)


class _StaffellHouse(HvacPopulation):
    """ETP house whose heat pump has constant output and Staffell's COP."""

    supply_temperature_c: FloatArray

    def thermal_capacity_kw(self, outdoor_temperature_c: float) -> FloatArray:
        return np.asarray(self.heating_capacity_kw, dtype=np.float64)

    def cop(self, outdoor_temperature_c: float) -> FloatArray:
        return staffell_ashp_cop(self.supply_temperature_c, outdoor_temperature_c)


class HeatPumpPopulation:
    """N houses heated by air-source heat pumps, bidding as PowerMatcher agents.

    Parameters
    ----------
    houses:
        The buildings and their heat pumps: a heating-mode :class:`HvacPopulation` whose
        ``heating_capacity_kw`` is the heat pump's (constant) thermal output and whose comfort
        band, setpoint and deadband are used; its heating COP curve is replaced by Staffell's.
    supply_temperature_c:
        Flow temperature of each house's heating system (one value or one per house).

    """

    def __init__(self, houses: HvacPopulation, *, supply_temperature_c: npt.ArrayLike) -> None:
        f = _Fields("heat pump population")
        f.n = houses.n_devices
        supply = f.array("supply_temperature_c", supply_temperature_c, houses.n_devices)
        f.rule((supply < 20.0) | (supply > 80.0), "supply_temperature_c", "must be in 20..80 °C")
        f.rule(houses.direction != HEATING, "mode", "a space-heating heat pump must heat")
        f.raise_if_any()
        self.houses = _StaffellHouse(**_house_arguments(houses))
        self.houses.supply_temperature_c = _readonly(supply)
        self._bid_price: FloatArray | None = None
        self._bid_power_kw: FloatArray | None = None

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        outdoor_temperature_c: float = 0.0,
        floor_heating_share: float = 0.5,
    ) -> Self:
        """Draw ``n`` heat-pump houses.

        Heating-mode ETP houses (``HvacPopulation.sample``), floor heating (35 °C flow) with
        probability ``floor_heating_share``, else radiators (45 °C).
        """
        problems = Problems(subject="heat pump sampling")
        if not 0.0 <= floor_heating_share <= 1.0:
            problems.add("floor_heating_share", "must be in [0, 1]")
        problems.raise_if_any()
        houses = HvacPopulation.sample(
            n, rng, mode=HEATING, outdoor_temperature_c=outdoor_temperature_c
        )
        supply = np.where(rng.random(n) < floor_heating_share, 35.0, 45.0)
        # HvacPopulation sizes a GridLAB-D heat pump rated at 47 °F to cover the -5 °C design
        # load; this unit's output is constant, so rate it at the design load itself.
        args = _house_arguments(houses)
        args["heating_capacity_kw"] = houses.heating_capacity_kw * heating_capacity_factor(-5.0)
        return cls(HvacPopulation(**args), supply_temperature_c=supply)

    @property
    def n_devices(self) -> int:
        """Number of heat pumps."""
        return self.houses.n_devices

    @property
    def air_temperature_c(self) -> FloatArray:
        """Indoor air temperature of each house."""
        return self.houses.air_temperature_c

    def electric_power_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Each heat pump's electric power when running (kW)."""
        return self.houses.electric_power_kw(outdoor_temperature_c)

    def bid(self, price_stats: PriceStats) -> BidCurves:
        """PowerMatcher bid: the unit's power at a willingness rising as the house cools."""
        _check_price_stats(price_stats)
        h = self.houses
        t = h.air_temperature_c
        floor, cap = price_stats.price_floor_per_kwh, price_stats.price_cap_per_kwh
        urgency = np.clip((h.comfort_max_c - t) / (h.comfort_max_c - h.comfort_min_c), 0.0, 1.0)
        # Interpolate from both ends so that full urgency is exactly the cap (must run).
        price = np.clip(floor * (1.0 - urgency) + cap * urgency, floor, cap)
        no_bid = t > h.comfort_max_c
        price = np.where(no_bid, floor, price)
        power = np.where(no_bid, 0.0, h.electric_power_kw(h.outdoor_temperature_c))
        self._bid_price, self._bid_power_kw = price, power
        return _block_bids(price, power)

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike = 0.0,
    ) -> FloatArray:
        """Commit each heat pump to its allocation (its curve at the price) for the interval."""
        if self._bid_price is None or self._bid_power_kw is None:
            problems = Problems(subject="market response")
            problems.add("respond", "call bid() before respond()")
            problems.raise_if_any()
        assert self._bid_price is not None and self._bid_power_kw is not None
        power = _block_response(
            self._bid_price, self._bid_power_kw, clearing_price, marginal_fill, self.n_devices
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            duty = np.where(power > 0, power / self._bid_power_kw, 0.0)
        self.houses.command(duty)
        return power

    def step(self, dt_s: float, weather: WeatherSample) -> StepResult:
        """Advance every house exactly by ``dt_s`` seconds; metered heat-pump power and energy."""
        return self.houses.step(dt_s, weather)


def _house_arguments(h: HvacPopulation) -> dict[str, Any]:
    """Constructor arguments reproducing a population's parameters and current state."""
    return {
        "ua_kw_per_k": h.ua_kw_per_k,
        "mass_coupling_kw_per_k": h.mass_coupling_kw_per_k,
        "air_capacity_kj_per_k": h.air_capacity_kj_per_k,
        "mass_capacity_kj_per_k": h.mass_capacity_kj_per_k,
        "setpoint_c": h.setpoint_c,
        "comfort_min_c": h.comfort_min_c,
        "comfort_max_c": h.comfort_max_c,
        "mode": h.direction,
        "cooling_capacity_kw": h.cooling_capacity_kw,
        "heating_capacity_kw": h.heating_capacity_kw,
        "cooling_cop": h.cooling_cop,
        "heating_cop": h.heating_cop,
        "solar_aperture_m2": h.solar_aperture_m2,
        "internal_gain_kw": h.internal_gain_kw,
        "deadband_c": h.deadband_c,
        "ramp_low": h.ramp_low,
        "ramp_high": h.ramp_high,
        "air_temperature_c": h.air_temperature_c,
        "mass_temperature_c": h.mass_temperature_c,
        "on": h.on,
        "outdoor_temperature_c": h.outdoor_temperature_c,
    }
