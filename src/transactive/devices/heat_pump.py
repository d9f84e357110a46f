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
bottom of the comfort band, ``p = p_min + (p_max - p_min) (Tmax - Ta) / (Tmax - Tmin)``. Read
the other way, a price ``p`` is the willingness of one temperature, the one the agent then heats
to. The quantity is the average power over the market interval (Widergren et al., PNNL-27235
Part II), as for :class:`~transactive.devices.hvac.HvacPopulation` in heating mode: the curve
runs through one point per bid setpoint (``Tmax``, the base setpoint, ``Tmin``), each at that
temperature's willingness, with the power that brings the house to it at the interval's end
(within the must-run on-time, the least that keeps the house above ``Tmin`` to the interval's
end, and the can-run one, the most before ``Tmax``), linear between them, then the must-run power
as a block at the maximum; each the power the house then draws. A PowerMatcher agent commits to
its allocation: after ``respond`` the heat pump runs the on-time that draws it from the
interval's start, then stays off, and only the comfort band's edges
override; per house the interval energy is the allocation on the model under the forecast weather.
Outside a responded interval it is a deadband thermostat around the setpoint.

Hybrid heat pumps (PowerMatching City's: an air-source heat pump with a gas boiler beside it,
Bliek et al., "PowerMatching City, a living lab smart grid demonstration", IEEE PES ISGT Europe
2010; Kok, "The PowerMatcher: smart coordination for the smart electricity grid", PhD thesis,
VU Amsterdam, 2013), a house with ``boiler_kw > 0``. Three rules, each stated here:

- **Switch price.** A kWh of heat from the heat pump costs ``p e_on / q_on`` at an electricity
  price ``p`` (``q_on`` the heat it adds while running, fan heat included, ``e_on`` its electric
  power, fan included); from the boiler ``gas / eta``. The heat pump is the cheaper source below
  ``p_switch = gas / eta x q_on / e_on`` per kWh of electricity, which is ``gas / eta x COP(T_out)``
  with Staffell's COP when the fan draws nothing. Its bid is the all-electric bid with every price
  capped at ``p_switch`` (at the forecast's outdoor temperature): it buys nothing above it (an
  empty curve when ``p_switch`` is below the market's floor).
- **The boiler as the heater.** When the boiler is the source (a cleared price above
  ``p_switch``; outside a responded interval, ``electricity_price_per_kwh``, the tariff the unit's
  controller is told, above ``p_switch`` at the step's outdoor temperature) it modulates to the
  heat pump's heat ``q_on`` and is switched by the same control (the thermostat, or the
  responded interval's schedule and the band's guards): the house cannot tell the sources apart,
  only the meters can (electricity zero, gas ``q_on / eta`` while on). So a cleared price above
  ``p_switch`` (allocation zero) leaves the house scheduled off with the boiler guarding the
  comfort band's lower edge, and the heat the heat pump would have bought waits for a cheaper
  interval.
- **Backup below the balance point.** The heat pump's output is constant; when it cannot hold
  the thermostat's switch-off temperature ``T_off = setpoint + deadband / 2`` at steady state,
  the boiler adds the deficit continuously, whichever source is the heater:
  ``b = clip(UA (T_off - T_out) - gains - q_on, 0, boiler_kw - q_on)`` (the steady state of the
  ETP house loses all its heat through ``UA``; ``gains`` the internal and solar gains), a
  weather-compensated supplement, constant over a step (it depends on the weather only). It
  enters the air node as a gain, in the bid's prediction as in the physics, so the bid's
  must-run block is what the heat pump must add beside it.

At a cleared price equal to a house's ``p_switch`` the market may fill its must-run block in
part; a heat source is one or the other there, so the house takes the block whole (heat pump) or
not at all (boiler), whichever is nearer its fill, and :meth:`HeatPumpPopulation.respond` returns
the power it then draws (the one case where that is not the curve's point). ``step`` meters
electricity (its ``power_kw``, ``energy_kwh``: what the feeder sees) and gas (``gas_power_kw``,
``gas_energy_kwh`` of :class:`HeatPumpStepResult`), and splits a step at the responded
interval's start and end, where the source may change. With ``boiler_kw = 0`` for every house
none of this runs: the population is exactly the all-electric one.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _Fields,
    _population_ids,
    _price_and_fill,
    _readonly,
)
from transactive.devices.base import Horizon, MarketInterval, PriceStats, StepResult
from transactive.devices.flexibility import BestResponse, Flexibility, solve_best_response
from transactive.devices.hvac import (
    HEATING,
    HeatInputs,
    HvacPopulation,
    heating_capacity_factor,
)
from transactive.devices.ramp import _band_setpoints_c
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["HeatPumpPopulation", "HeatPumpStepResult", "staffell_ashp_cop"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

_SECONDS_PER_HOUR = 3600.0


def _willingness_per_kwh(
    temperature_c: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    floor_per_kwh: float,
    cap_per_kwh: float,
) -> FloatArray:
    """A PowerMatcher heat-pump agent's price willingness at an indoor temperature.

    ``p = p_min + (p_max - p_min) (Tmax - T) / (Tmax - Tmin)`` with the urgency clipped to
    ``[0, 1]`` (Kok et al., AAMAS 2005; module docstring): the floor at the top of the band, the
    cap at its bottom. Interpolated from both ends, so that full urgency is exactly the cap.
    ``temperature_c`` may be ``(N, J)`` with the band as ``(N,)`` (one row per house).
    """
    t = np.asarray(temperature_c, dtype=np.float64)
    column = (slice(None), None) if t.ndim == 2 else slice(None)
    tmin, tmax = comfort_min_c[column], comfort_max_c[column]
    urgency = np.clip((tmax - t) / (tmax - tmin), 0.0, 1.0)
    price = floor_per_kwh * (1.0 - urgency) + cap_per_kwh * urgency
    return np.asarray(np.clip(price, floor_per_kwh, cap_per_kwh), dtype=np.float64)


def staffell_ashp_cop(
    supply_temperature_c: FloatArray | float, outdoor_temperature_c: FloatArray | float
) -> FloatArray:
    """Air-source heat-pump COP, Staffell et al. (2012) eq. (4), ``dT`` clamped to 15..60 K."""
    dt = np.clip(
        np.asarray(supply_temperature_c, dtype=np.float64) - outdoor_temperature_c, 15.0, 60.0
    )
    return np.asarray(6.81 - 0.121 * dt + 0.000630 * dt * dt, dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class HeatPumpStepResult(StepResult):
    """A heat-pump step: electricity (``power_kw``, ``energy_kwh``) and the boiler's gas.

    ``gas_power_kw`` is the average gas power over the step and ``gas_energy_kwh`` the gas
    energy (on the calorific basis of ``boiler_efficiency``), per house; zero for an
    all-electric house.
    """

    gas_power_kw: FloatArray
    gas_energy_kwh: FloatArray


class _StaffellHouse(HvacPopulation):
    """ETP house whose heat pump has constant output and Staffell's COP (and maybe a boiler)."""

    supply_temperature_c: FloatArray
    #: The boiler's output (kW, zero for an all-electric house); whether any house has one.
    boiler_kw: FloatArray
    hybrid: bool = False
    #: Which houses' heater is the boiler now (set by the population before every use).
    boiler_heating: BoolArray
    #: The boiler's backup heat of the last :meth:`_heat_inputs` (kW).
    last_backup_kw: FloatArray

    def thermal_capacity_kw(self, outdoor_temperature_c: float) -> FloatArray:
        return np.asarray(self.heating_capacity_kw, dtype=np.float64)

    def cop(self, outdoor_temperature_c: float) -> FloatArray:
        return staffell_ashp_cop(self.supply_temperature_c, outdoor_temperature_c)

    def _pump_inputs(self, weather: WeatherSample) -> HeatInputs:
        """The heat flows with the heat pump as the heater and no boiler."""
        return super()._heat_inputs(weather)

    def _heat_inputs(self, weather: WeatherSample) -> HeatInputs:
        """The heat flows with the hybrid's rules (module docstring): backup heat, meters.

        An all-electric population's are the heat pump's, unchanged.
        """
        heat = super()._heat_inputs(weather)
        if not self.hybrid:
            return heat
        backup = self._backup_kw(heat, float(weather.temperature_c))
        self.last_backup_kw = backup
        boiler = self.boiler_heating
        return dataclasses.replace(
            heat,
            q_air_kw=heat.q_air_kw + backup,
            electric_on_kw=np.where(boiler, 0.0, heat.electric_on_kw),
            fan_on_kw=np.where(boiler, 0.0, heat.fan_on_kw),
        )

    def _backup_kw(self, heat: HeatInputs, outdoor_c: float) -> FloatArray:
        """The boiler's heat beside the heat pump below its balance point (module docstring).

        ``clip(UA (T_off - T_out) - gains - q_on, 0, boiler_kw - q_on)``, zero without a boiler.
        """
        t_off = self.setpoint_c + 0.5 * self.deadband_c
        need = self.ua_kw_per_k * (t_off - outdoor_c) - heat.internal_gain_kw - heat.solar_gain_kw
        deficit = np.clip(need - heat.q_on_kw, 0.0, np.maximum(self.boiler_kw - heat.q_on_kw, 0.0))
        return np.asarray(np.where(self.boiler_kw > 0, deficit, 0.0), dtype=np.float64)


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
    boiler_kw:
        Output of each house's gas boiler (kW of heat); 0 (the default) is an all-electric
        house. A boiler must be able to deliver the heat pump's heat (``heating_capacity_kw``
        plus its fan's heat), which it replaces when it is the heater (module docstring).
    boiler_efficiency:
        Each boiler's heat per unit of gas, in (0, 1.1] (above 1 on the net calorific value, as
        condensing boilers are rated). Required when a house has a boiler.
    gas_price_per_kwh:
        Each house's gas price (currency per kWh of gas, on the basis of
        ``boiler_efficiency``), >= 0. Required when a house has a boiler.
    electricity_price_per_kwh:
        The electricity tariff each hybrid's controller compares with gas outside a responded
        market interval (the baseline's flat tariff, say). Required when a house has a boiler.
    ids:
        One unique id per heat pump (default ``heat_pump-0 ...``).

    Raises
    ------
    ValidationError
        Naming every bad field and house.

    """

    def __init__(
        self,
        houses: HvacPopulation,
        *,
        supply_temperature_c: npt.ArrayLike,
        boiler_kw: npt.ArrayLike = 0.0,
        boiler_efficiency: npt.ArrayLike | None = None,
        gas_price_per_kwh: npt.ArrayLike | None = None,
        electricity_price_per_kwh: npt.ArrayLike | None = None,
        ids: npt.ArrayLike | None = None,
    ) -> None:
        f = _Fields("heat pump population")
        n = houses.n_devices
        f.n = n
        supply = f.array("supply_temperature_c", supply_temperature_c, n)
        f.rule((supply < 20.0) | (supply > 80.0), "supply_temperature_c", "must be in 20..80 °C")
        f.rule(houses.direction != HEATING, "mode", "a space-heating heat pump must heat")
        boiler = f.array("boiler_kw", boiler_kw, n)
        f.rule(boiler < 0, "boiler_kw", "must not be negative")
        has_boiler = np.isfinite(boiler) & (boiler > 0)
        pump_heat = houses.heating_capacity_kw + houses.fan_heatgain_fraction * houses.fan_power_kw
        f.rule(
            has_boiler & (boiler < pump_heat),
            "boiler_kw",
            "must be at least the heat pump's heat (heating_capacity_kw plus the fan's heat), "
            "which the boiler replaces when it heats",
        )
        hybrid_columns: dict[str, FloatArray] = {}
        for name, value in (
            ("boiler_efficiency", boiler_efficiency),
            ("gas_price_per_kwh", gas_price_per_kwh),
            ("electricity_price_per_kwh", electricity_price_per_kwh),
        ):
            if value is None:
                f.rule(has_boiler, name, "must be given for a house with a boiler")
                hybrid_columns[name] = np.full(n, np.nan)
            else:
                column = f.array(name, value, n)
                f.rule(has_boiler & ~np.isfinite(column), name, "must be given (finite)")
                hybrid_columns[name] = column
        eta = hybrid_columns["boiler_efficiency"]
        f.rule(has_boiler & ((eta <= 0) | (eta > 1.1)), "boiler_efficiency", "must lie in (0, 1.1]")
        gas = hybrid_columns["gas_price_per_kwh"]
        f.rule(has_boiler & (gas < 0), "gas_price_per_kwh", "must not be negative")
        self._ids = _population_ids(f.problems, ids, n, "heat_pump")
        f.raise_if_any()
        self.houses = _StaffellHouse(**houses._constructor_arguments())
        self.houses.supply_temperature_c = _readonly(supply)
        self.houses.boiler_kw = _readonly(np.where(has_boiler, boiler, 0.0))
        self.houses.hybrid = bool(has_boiler.any())
        self.houses.boiler_heating = np.zeros(n, dtype=bool)
        self.houses.last_backup_kw = np.zeros(n)
        self.boiler_kw = self.houses.boiler_kw
        self.boiler_efficiency = _readonly(np.where(has_boiler, eta, np.nan))
        self.gas_price_per_kwh = _readonly(np.where(has_boiler, gas, np.nan))
        self.electricity_price_per_kwh = _readonly(
            np.where(has_boiler, hybrid_columns["electricity_price_per_kwh"], np.nan)
        )
        # Cumulative heat and gas accounts (kWh): the heat pump's heat (with its fan's), the
        # boiler's (as the heater and as backup), the boiler's gas.
        self.heat_pump_heat_kwh = np.zeros(n)
        self.boiler_heat_kwh = np.zeros(n)
        self.gas_kwh = np.zeros(n)
        self._switch_per_kwh = np.full(n, np.inf)  # the last bid's switch prices
        self._responded: MarketInterval | None = None
        self._boiler_in_interval = np.zeros(n, dtype=bool)

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        outdoor_temperature_c: float = 0.0,
        floor_heating_share: float = 0.5,
        hybrid_share: float = 0.0,
        boiler_kw: float = 24.0,
        boiler_efficiency: float = 0.9,
        gas_price_per_kwh: float = 0.06,
        electricity_price_per_kwh: float | None = None,
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Draw ``n`` heat-pump houses.

        Heating-mode ETP houses (``HvacPopulation.sample``), floor heating (35 °C flow) with
        probability ``floor_heating_share``, else radiators (45 °C). ``n = 0`` gives an empty
        population; a negative ``n`` or an ``rng`` that is not a numpy Generator raises.

        Each house is a hybrid with probability ``hybrid_share`` (0 by default: all-electric, and
        then nothing more is drawn, so the houses and the generator's state are those of an
        all-electric sample). A hybrid's boiler is a combi boiler of ``boiler_kw`` (24 kW, the
        common Dutch size; at least the house's heat-pump heat, which it must be able to
        replace), ``boiler_efficiency`` 0.9 (a condensing boiler on the gross calorific value),
        gas at ``gas_price_per_kwh`` (0.06 per kWh: about the Dutch household price of 2010,
        some 0.6 EUR per m³ of Groningen gas at 9.77 kWh per m³, CBS StatLine), and its
        controller told ``electricity_price_per_kwh`` (required when ``hybrid_share > 0``).
        """
        n = _check_sample_args(n, rng, "heat pump")
        problems = Problems(subject="heat pump sampling")
        if not 0.0 <= floor_heating_share <= 1.0:
            problems.add("floor_heating_share", "must be in [0, 1]")
        if not 0.0 <= hybrid_share <= 1.0:
            problems.add("hybrid_share", "must be in [0, 1]")
        if hybrid_share > 0 and electricity_price_per_kwh is None:
            problems.add(
                "electricity_price_per_kwh",
                "must be given with hybrid_share > 0 (the tariff a hybrid's controller compares "
                "with gas outside a market)",
            )
        problems.raise_if_any()
        houses = HvacPopulation.sample(
            n, rng, mode=HEATING, outdoor_temperature_c=outdoor_temperature_c
        )
        supply = np.where(rng.random(n) < floor_heating_share, 35.0, 45.0)
        # HvacPopulation sizes a GridLAB-D heat pump rated at 47 °F to cover the -5 °C design
        # load; this unit's output is constant, so rate it at the design load itself.
        args = houses._constructor_arguments()
        args["heating_capacity_kw"] = houses.heating_capacity_kw * heating_capacity_factor(-5.0)
        rated = HvacPopulation(**args)
        if hybrid_share <= 0:
            return cls(rated, supply_temperature_c=supply, ids=ids)
        hybrid = rng.random(n) < hybrid_share
        pump_heat = rated.heating_capacity_kw + rated.fan_heatgain_fraction * rated.fan_power_kw
        return cls(
            rated,
            supply_temperature_c=supply,
            boiler_kw=np.where(hybrid, np.maximum(boiler_kw, pump_heat), 0.0),
            boiler_efficiency=boiler_efficiency,
            gas_price_per_kwh=gas_price_per_kwh,
            electricity_price_per_kwh=electricity_price_per_kwh,
            ids=ids,
        )

    @property
    def n_devices(self) -> int:
        """Number of heat pumps."""
        return self.houses.n_devices

    @property
    def air_temperature_c(self) -> FloatArray:
        """Indoor air temperature of each house."""
        return self.houses.air_temperature_c

    @property
    def hybrid(self) -> npt.NDArray[np.bool_]:
        """Which houses have a gas boiler beside their heat pump."""
        return np.asarray(self.boiler_kw > 0)

    def electric_power_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Each heat pump's electric power when running (kW)."""
        return self.houses.electric_power_kw(outdoor_temperature_c)

    def switch_price_per_kwh(self, weather: WeatherSample) -> FloatArray:
        """The electricity price above which each hybrid's boiler heat is cheaper (per kWh).

        ``gas / eta x q_on / e_on`` under ``weather`` (module docstring); infinite for an
        all-electric house.
        """
        _check_weather(weather)
        return self._switch_price(self.houses._pump_inputs(weather))

    def _switch_price(self, heat: HeatInputs) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            price = (
                self.gas_price_per_kwh / self.boiler_efficiency * heat.q_on_kw / heat.electric_on_kw
            )
        return np.asarray(np.where(self.boiler_kw > 0, price, np.inf), dtype=np.float64)

    @property
    def ids(self) -> StrArray:
        """Stable id of every heat pump."""
        return self._ids

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """PowerMatcher bid of each heat pump's average power over ``interval``.

        The must-run part at the maximum price; below it a line through points, each the power
        that brings the house to a temperature by the interval's end at that temperature's
        willingness (module docstring). The state now is taken as the state at
        ``interval.start_s`` and ``weather`` is the forecast for the interval. A hybrid caps
        every price at its switch price and predicts with its boiler's backup heat (module
        docstring). The curves carry :attr:`ids`.
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        h = self.houses
        floor, cap = stats.price_floor_per_kwh, stats.price_cap_per_kwh
        setpoints = _band_setpoints_c(h.setpoint_c, h.comfort_max_c, h.comfort_min_c)
        price = _willingness_per_kwh(setpoints, h.comfort_min_c, h.comfort_max_c, floor, cap)
        if not h.hybrid:
            h._plan = h._interval_plan(stats, interval, weather, setpoints, price, self._ids)
            return h._plan.curves
        h.boiler_heating = np.zeros(self.n_devices, dtype=bool)  # predict the heat pump's run
        plan = h._interval_plan(stats, interval, weather, setpoints, price, self._ids)
        switch = self._switch_price(plan.heat)
        prices = np.clip(np.minimum(plan.curves.price_per_kwh, switch[:, None]), floor, cap)
        powers = np.where((switch < floor)[:, None], 0.0, plan.curves.power_kw)
        curves = BidCurves._trusted(prices, powers, self._ids)
        h._plan = dataclasses.replace(plan, curves=curves)
        self._switch_per_kwh = switch
        return curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Commit each heat pump to its allocation (its curve at the price) for the interval.

        A hybrid at a price above its switch price gets nothing and its boiler heats; at its
        switch price it takes its must-run block whole or not at all, whichever is nearer its
        fill (module docstring). Returns the power each heat pump then draws.
        """
        h = self.houses
        if not h.hybrid or h._plan is None:
            _, power = h._follow(h._plan, clearing_price, marginal_fill, "heat pump")
            return power
        n = self.n_devices
        price, fill = _price_and_fill(clearing_price, marginal_fill, n)
        curves = h._plan.curves
        p = np.broadcast_to(price, (n,))
        power = curves.power_at(p, np.broadcast_to(fill, (n,)))
        must = curves.power_kw[:, -2]  # the must-run power (the block at the cap, or switch)
        switch = self._switch_per_kwh
        # A source is one or the other: at the switch price, the must-run block whole or none.
        split = (p >= switch) & (power < must)
        power = np.where(split, np.where(power >= 0.5 * must, must, 0.0), power)
        lo, hi = curves.bounds_at(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            new_fill = np.where(split & (hi > lo), (power - lo) / (hi - lo), fill)
        _, power = h._follow(h._plan, p, np.clip(new_fill, 0.0, 1.0), "heat pump")
        self._boiler_in_interval = np.asarray((p >= switch) & (power <= 0.0))
        self._responded = h._plan.interval
        return power

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> HeatPumpStepResult:
        """Advance every house exactly from ``time_s`` by ``dt_s`` seconds; metered energy.

        Electricity in ``power_kw`` and ``energy_kwh``, the boiler's gas in ``gas_power_kw`` and
        ``gas_energy_kwh``. A hybrid's source is the responded interval's inside it and the
        tariff's outside it; a step is split at the interval's start and end.
        """
        h = self.houses
        n = self.n_devices
        if not h.hybrid:
            res = h.step(time_s, dt_s, weather)
            self.heat_pump_heat_kwh = h.heat_hvac_kwh.copy()
            zero = np.zeros(n)
            return HeatPumpStepResult(
                power_kw=res.power_kw, energy_kwh=res.energy_kwh, ids=self._ids,
                gas_power_kw=zero, gas_energy_kwh=zero.copy(),
            )  # fmt: skip
        t0, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        cuts = {t0, t0 + dt}
        iv = self._responded
        if iv is not None:
            cuts |= {c for c in (iv.start_s, iv.end_s) if t0 < c < t0 + dt}
        edges = sorted(cuts)
        tariff_boiler = self.electricity_price_per_kwh > self.switch_price_per_kwh(weather)
        energy = np.zeros(n)
        gas = np.zeros(n)
        for a, b in itertools.pairwise(edges):
            inside = iv is not None and iv.start_s <= a < iv.end_s
            boiler = self._boiler_in_interval if inside else tariff_boiler
            h.boiler_heating = np.asarray(boiler & (self.boiler_kw > 0))
            before = h.heat_hvac_kwh.copy()
            res = h.step(a, b - a, weather)
            heater = h.heat_hvac_kwh - before
            boiler_heat = np.where(h.boiler_heating, heater, 0.0)
            boiler_heat = boiler_heat + h.last_backup_kw * (b - a) / _SECONDS_PER_HOUR
            self.heat_pump_heat_kwh += np.where(h.boiler_heating, 0.0, heater)
            self.boiler_heat_kwh += boiler_heat
            gas += np.where(self.boiler_kw > 0, boiler_heat / self.boiler_efficiency, 0.0)
            energy += res.energy_kwh
        self.gas_kwh += gas
        return HeatPumpStepResult(
            power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy, ids=self._ids,
            gas_power_kw=gas * _SECONDS_PER_HOUR / dt, gas_energy_kwh=gas,
        )  # fmt: skip

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

        A hybrid's battery is its heat pump's, with the boiler's backup heat below the balance
        point as a gain; the switch to the boiler above the switch price is not in it (a
        generalized battery of electricity cannot state a substitute fuel), so it describes the
        hybrid at prices below its switch price.
        """
        if self.houses.hybrid:
            self.houses.boiler_heating = np.zeros(self.n_devices, dtype=bool)
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
