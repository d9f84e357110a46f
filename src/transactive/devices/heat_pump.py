"""Space-heating heat pumps bidding as PowerMatcher agents (PowerMatching City).

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
bottom of the comfort band, ``p = p_min + (p_max - p_min) (Tmax - Ta) / (Tmax - Tmin)``. The
quantity is the average power over the market interval (Widergren et al., PNNL-27235 Part II), as
for :class:`~transactive.devices.hvac.HvacPopulation` in heating mode: the must-run on-time (the
least that keeps the house above ``Tmin`` to the interval's end) as a block at the maximum, the
can-run on-time (the most before ``Tmax``) at the willingness, each as the power the house then
draws. A PowerMatcher agent commits to its allocation: after ``respond`` the heat pump runs the
on-time that draws it from the interval's start, then stays off, and only the comfort band's edges
override; per house the interval energy is the allocation on the model under the forecast weather.
Outside a responded interval it is a deadband thermostat around the setpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _Fields,
    _population_ids,
    _readonly,
)
from transactive.devices.base import Horizon, MarketInterval, PriceStats, StepResult
from transactive.devices.flexibility import BestResponse, Flexibility, solve_best_response
from transactive.devices.hvac import (
    HEATING,
    HvacPopulation,
    heating_capacity_factor,
)
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["HeatPumpPopulation", "staffell_ashp_cop"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


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

    def __init__(
        self,
        houses: HvacPopulation,
        *,
        supply_temperature_c: npt.ArrayLike,
        ids: npt.ArrayLike | None = None,
    ) -> None:
        f = _Fields("heat pump population")
        n = houses.n_devices
        f.n = n
        supply = f.array("supply_temperature_c", supply_temperature_c, n)
        f.rule((supply < 20.0) | (supply > 80.0), "supply_temperature_c", "must be in 20..80 °C")
        f.rule(houses.direction != HEATING, "mode", "a space-heating heat pump must heat")
        self._ids = _population_ids(f.problems, ids, n, "heat_pump")
        f.raise_if_any()
        self.houses = _StaffellHouse(**houses._constructor_arguments())
        self.houses.supply_temperature_c = _readonly(supply)

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        outdoor_temperature_c: float = 0.0,
        floor_heating_share: float = 0.5,
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Draw ``n`` heat-pump houses.

        Heating-mode ETP houses (``HvacPopulation.sample``), floor heating (35 °C flow) with
        probability ``floor_heating_share``, else radiators (45 °C). ``n = 0`` gives an empty
        population; a negative ``n`` or an ``rng`` that is not a numpy Generator raises.
        """
        n = _check_sample_args(n, rng, "heat pump")
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
        args = houses._constructor_arguments()
        args["heating_capacity_kw"] = houses.heating_capacity_kw * heating_capacity_factor(-5.0)
        return cls(HvacPopulation(**args), supply_temperature_c=supply, ids=ids)

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

    @property
    def ids(self) -> StrArray:
        """Stable id of every heat pump."""
        return self._ids

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """PowerMatcher bid of each heat pump's average power over ``interval`` (two blocks).

        The must-run part at the maximum price, the rest at a willingness rising as the house
        cools; the state now is taken as the state at ``interval.start_s`` and ``weather`` is the
        forecast for the interval. The curves carry :attr:`ids`.
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        h = self.houses
        t = h.air_temperature_c
        floor, cap = stats.price_floor_per_kwh, stats.price_cap_per_kwh
        urgency = np.clip((h.comfort_max_c - t) / (h.comfort_max_c - h.comfort_min_c), 0.0, 1.0)
        # Interpolate from both ends so that full urgency is exactly the cap (must run).
        price = np.clip(floor * (1.0 - urgency) + cap * urgency, floor, cap)
        h._plan = h._interval_plan(stats, interval, weather, price, self._ids)
        return h._plan.curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Commit each heat pump to its allocation (its curve at the price) for the interval."""
        _, power = self.houses._follow(
            self.houses._plan, clearing_price, marginal_fill, "heat pump"
        )
        return power

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Advance every house exactly from ``time_s`` by ``dt_s`` seconds; metered energy."""
        res = self.houses.step(time_s, dt_s, weather)
        return StepResult(power_kw=res.power_kw, energy_kwh=res.energy_kwh, ids=self._ids)

    # ------------------------------------------------------------------ horizon view

    def flexibility(
        self,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
        *,
        fast_share: float = 0.5,
    ) -> Flexibility:
        """Each heat pump's virtual battery over ``horizon`` (one weather sample per period).

        Delegated to its houses' batteries
        (:meth:`transactive.devices.hvac.HvacPopulation.flexibility`: Hao et al., IEEE TPS 2015,
        with the two-mode limits of :mod:`transactive.devices.tcl_battery` that hold for the air
        temperature), not derived again. The houses are this population's own: their heat pump
        has its constant thermal output and Staffell's COP (eq. (4), at each period's outdoor
        temperature and the house's supply temperature), so each period's baseline is the heat
        that holds the setpoint over that COP, the power limits are the heat pump's electric
        power, and the stored energy is the slow mode's heat in electric kWh at the first
        period's COP. A house outside its limits now gets its fastest way back (the houses'
        rule). Rows carry this population's :attr:`ids`. Reads the state only.
        """
        flex = self.houses.flexibility(horizon, weather, fast_share=fast_share)
        return dataclasses.replace(flex, ids=self._ids)

    def best_response(
        self,
        prices_per_kwh: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
    ) -> BestResponse:
        """The cheapest schedule inside :meth:`flexibility` at ``prices_per_kwh`` ((T,) or (T, N)).

        Solved by :func:`transactive.devices.flexibility.solve_best_response`; changes no state.
        A house follows its row of ``power_kw`` as an HVAC house does
        (:func:`transactive.prosumer.virtual_battery.follow_schedule` on :attr:`houses`).
        """
        return solve_best_response(self.flexibility(horizon, weather), prices_per_kwh)
