"""Micro-CHP with a heat buffer: the PowerMatching City unit, vectorized.

Model
-----
A heat-led micro combined heat and power unit (like the micro-CHPs of PowerMatching City:
Bliek et al., "PowerMatching City, a living lab smart grid demonstration", IEEE PES ISGT Europe
2010; Roossien, "Field-test upscaling of multi-agent coordination in the electricity grid",
CIRED 2009) feeds a hot-water buffer that serves the house's heat demand. Electricity is a
by-product: electric output ``P`` comes with heat ``P / σ`` (``σ`` = ``electric_to_thermal_ratio``)
and burns fuel ``P / η_e``. A backup boiler covers heat the buffer cannot (it never runs empty).
Buffer energy ``E`` (kWh of heat) over a step of ``h`` hours with demand ``q`` (kW heat):

    E' = E + (P / σ - q) h          (0 <= E' <= C; the boiler covers E' < 0)

Heat demand follows the degree-day method (ASHRAE Handbook—Fundamentals, "Energy Estimating
and Modeling Methods"): ``q = UA · max(T_balance - T_out, 0) + q_hot_water``.

Bidding strategy (the PowerMatcher micro-CHP agent: Kok, PhD thesis, VU Amsterdam, 2013)
----------------------------------------------------------------------------------------
A seller curve for the coming interval built from the buffer's state:

- **must-run**: the output needed to keep the buffer at or above ``soc_min_pu`` given the expected
  heat demand, offered at the market floor (sold at any price): a nearly empty buffer must run;
- **willing**: above its marginal cost ``c = fuel_price / η_e`` it runs harder, linearly up to its
  full available output at ``c + kσ_price`` (a block at ``c`` when prices do not vary);
- **can't**: the available output is limited by the room left in the buffer plus the heat used
  during the interval, so a full buffer offers nothing beyond what the house consumes.

Powers are averages over the market interval bid for, with the heat demand of the caller's
forecast weather for it. After ``respond`` the unit runs at the cleared output over the interval;
``step`` caps it by the buffer's room over the step and the heat the house actually uses. When
the weather stepped through matches the forecast the cap never binds (the output was chosen to
fit the buffer over the whole interval), so the metered interval energy equals the allocation per
device, for any step; a warmer interval than forecast can cut it (the buffer fills). A step
outside the interval last responded for runs no CHP (the backup boiler serves the house).

Kernels (issue 17): bid, respond and step run by default as fused numba loops over the units
(:mod:`transactive.devices._chp_kernels`) doing the numpy reference's arithmetic in its order,
so they give its numbers bit for bit (``tests/devices/test_chp_kernels.py``);
``kernel="numpy"`` runs the reference.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _overlap_s,
    _population_ids,
    _readonly,
    _validated_columns,
)
from transactive.devices._kernels import (
    check_kernel,
    checked_kernel,
    checked_response,
    kernel_state,
    power_on_curves,
)
from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["CHPPopulation"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


def _kernels() -> Any:
    """The numba kernels, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _chp_kernels  # noqa: PLC0415 - deferred: see docstring

    return _chp_kernels


class CHPPopulation:
    """N heat-led micro-CHP units with heat buffers; implements the ``Population`` protocol.

    Parameters
    ----------
    electric_power_max_kw:
        Electric rating.
    electric_to_thermal_ratio:
        Electric output per unit of useful heat (σ, e.g. 0.15-0.3).
    electric_efficiency:
        Electric output per unit of fuel (η_e).
    fuel_price_per_kwh:
        Fuel price per kWh of fuel; the marginal cost is ``fuel_price / η_e``.
    buffer_capacity_kwh:
        Heat buffer capacity.
    buffer_soc_pu:
        Initial buffer state of charge.
    soc_min_pu:
        Buffer level below which the unit must run.
    ua_kw_per_c, balance_temperature_c, hot_water_kw:
        The house's heat demand (degree-day model).
    band_k:
        Width, in price standard deviations, of the ramp above marginal cost.
    ids:
        One unique id per unit (default ``chp-0 ... chp-(N-1)``).
    kernel:
        ``"numba"`` (default): bid, respond and step run as fused numba kernels over the units
        (:mod:`transactive.devices._chp_kernels`); ``"numpy"``: the vectorized numpy reference.
        The two give the same numbers to the last bit (``tests/devices/test_chp_kernels.py``).
        The attribute :attr:`kernel` may be changed between calls.

    Raises
    ------
    ValidationError
        Naming every offending device for every broken rule.

    """

    kind = "CHP"
    id_prefix = "chp"

    def __init__(
        self,
        *,
        electric_power_max_kw: npt.ArrayLike,
        electric_to_thermal_ratio: npt.ArrayLike,
        electric_efficiency: npt.ArrayLike,
        fuel_price_per_kwh: npt.ArrayLike,
        buffer_capacity_kwh: npt.ArrayLike,
        buffer_soc_pu: npt.ArrayLike = 0.5,
        soc_min_pu: npt.ArrayLike = 0.1,
        ua_kw_per_c: npt.ArrayLike = 0.25,
        balance_temperature_c: npt.ArrayLike = 15.5,
        hot_water_kw: npt.ArrayLike = 0.2,
        band_k: npt.ArrayLike = 1.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        problems = Problems(subject="CHP population")
        n, c = _validated_columns(
            problems,
            {
                "electric_power_max_kw": electric_power_max_kw,
                "electric_to_thermal_ratio": electric_to_thermal_ratio,
                "electric_efficiency": electric_efficiency,
                "fuel_price_per_kwh": fuel_price_per_kwh,
                "buffer_capacity_kwh": buffer_capacity_kwh,
                "buffer_soc_pu": buffer_soc_pu,
                "soc_min_pu": soc_min_pu,
                "ua_kw_per_c": ua_kw_per_c,
                "balance_temperature_c": balance_temperature_c,
                "hot_water_kw": hot_water_kw,
                "band_k": band_k,
            },
        )
        for name in ("electric_power_max_kw", "electric_to_thermal_ratio", "buffer_capacity_kwh"):
            problems.check(c[name] <= 0, name, "must be > 0")
        eta = c["electric_efficiency"]
        problems.check((eta <= 0) | (eta > 1), "electric_efficiency", "must lie in (0, 1]")
        problems.check(c["fuel_price_per_kwh"] < 0, "fuel_price_per_kwh", "must be >= 0")
        soc, lo = c["buffer_soc_pu"], c["soc_min_pu"]
        problems.check((lo < 0) | (lo >= 1), "soc_min_pu", "must lie in [0, 1)")
        problems.check((soc < 0) | (soc > 1), "buffer_soc_pu", "must lie in [0, 1]")
        for name in ("ua_kw_per_c", "hot_water_kw", "band_k"):
            problems.check(c[name] < 0, name, "must be >= 0")
        self._ids = _population_ids(problems, ids, n, self.id_prefix)
        check_kernel(problems, kernel)
        problems.raise_if_any()
        self._kernel = kernel
        self.electric_power_max_kw = _readonly(c["electric_power_max_kw"])
        self.electric_to_thermal_ratio = _readonly(c["electric_to_thermal_ratio"])
        self.electric_efficiency = _readonly(eta)
        self.fuel_price_per_kwh = _readonly(c["fuel_price_per_kwh"])
        self.buffer_capacity_kwh = _readonly(c["buffer_capacity_kwh"])
        self.soc_min_pu = _readonly(lo)
        self.ua_kw_per_c = _readonly(c["ua_kw_per_c"])
        self.balance_temperature_c = _readonly(c["balance_temperature_c"])
        self.hot_water_kw = _readonly(c["hot_water_kw"])
        self.band_k = _readonly(c["band_k"])
        self.buffer_soc_pu = soc
        #: Heat demand expected over the interval last bid for (kW), from its forecast weather.
        self.expected_heat_kw = np.asarray(self.hot_water_kw, dtype=np.float64).copy()
        self.fuel_kwh = np.zeros(n)  # cumulative fuel burnt by the CHP
        self.backup_heat_kwh = np.zeros(n)  # cumulative heat from the backup boiler
        self._n = n
        self._curves: BidCurves | None = None
        self._bid_interval: MarketInterval | None = None
        self._interval: MarketInterval | None = None  # the interval the last respond was for
        self._setpoint_kw = np.zeros(n)

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        fuel_price_per_kwh: float = 0.06,
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Units near the PowerMatching City micro-CHPs (about 1 kW electric, σ 0.15-0.25).

        Buffers of 3-10 kWh of heat, houses with UA 0.15-0.35 kW/°C. Illustrative defaults.
        """
        n = _check_sample_args(n, rng, cls.kind)
        return cls(
            electric_power_max_kw=rng.uniform(0.8, 1.2, n),
            electric_to_thermal_ratio=rng.uniform(0.15, 0.25, n),
            electric_efficiency=rng.uniform(0.12, 0.2, n),
            fuel_price_per_kwh=fuel_price_per_kwh,
            buffer_capacity_kwh=rng.uniform(3.0, 10.0, n),
            buffer_soc_pu=rng.uniform(0.2, 0.8, n),
            ua_kw_per_c=rng.uniform(0.15, 0.35, n),
            hot_water_kw=rng.uniform(0.1, 0.3, n),
            band_k=rng.uniform(0.5, 1.5, n),
            ids=ids,
        )

    @property
    def n_devices(self) -> int:
        """Number of units."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Id of every unit."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernels) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "CHP population")

    def _kernel_state(self) -> tuple[FloatArray, ...] | None:
        """``buffer_soc_pu``, ``backup_heat_kwh``, ``fuel_kwh`` for the kernels, or None."""
        return kernel_state(
            self._kernel, self._n, self.buffer_soc_pu, self.backup_heat_kwh, self.fuel_kwh
        )

    @property
    def marginal_cost_per_kwh(self) -> FloatArray:
        """Fuel cost of one kWh of electricity: ``fuel_price / η_e``."""
        return np.asarray(self.fuel_price_per_kwh / self.electric_efficiency, dtype=np.float64)

    def heat_demand_kw(self, weather: WeatherSample) -> FloatArray:
        """The houses' heat demand under a weather sample (degree-day model)."""
        _check_weather(weather)
        deficit = np.maximum(self.balance_temperature_c - weather.temperature_c, 0.0)
        return np.asarray(self.ua_kw_per_c * deficit + self.hot_water_kw, dtype=np.float64)

    def output_limits(self, dt_s: float, heat_kw: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Must-run and available electric output (kW) over ``dt_s`` at a heat demand."""
        hours = dt_s / 3600.0
        energy = self.buffer_soc_pu * self.buffer_capacity_kwh
        sigma = self.electric_to_thermal_ratio
        room_heat = (self.buffer_capacity_kwh - energy) / hours + heat_kw
        available = np.clip(sigma * room_heat, 0.0, self.electric_power_max_kw)
        need_heat = (self.soc_min_pu * self.buffer_capacity_kwh - energy) / hours + heat_kw
        must = np.clip(sigma * need_heat, 0.0, available)
        return must, available

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Must-run at the floor, a ramp from marginal cost to ``+kσ`` above it.

        Average output over ``interval`` with the heat demand of the forecast ``weather``.
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        cap, floor = stats.price_cap_per_kwh, stats.price_floor_per_kwh
        state = self._kernel_state()
        if state is not None:
            n = self._n
            heat, prices, powers = np.empty(n), np.empty((n, 4)), np.empty((n, 4))
            _kernels().bid(
                float(interval.duration_s), float(weather.temperature_c),
                float(stats.std_per_kwh), float(cap), float(floor), self.electric_power_max_kw,
                self.electric_to_thermal_ratio, self.electric_efficiency, self.fuel_price_per_kwh,
                self.buffer_capacity_kwh, self.soc_min_pu, self.ua_kw_per_c,
                self.balance_temperature_c, self.hot_water_kw, self.band_k, state[0], heat,
                prices, powers,
            )  # fmt: skip
            self.expected_heat_kw = heat
            self._curves = BidCurves._trusted(prices, powers, self._ids)
            self._bid_interval = interval
            return self._curves
        self.expected_heat_kw = self.heat_demand_kw(weather)
        must, available = self.output_limits(float(interval.duration_s), self.expected_heat_kw)
        cost = self.marginal_cost_per_kwh
        top = np.where(cost <= cap, available, must)  # never willing beyond the cap
        p1 = np.clip(cost, floor, cap)
        p2 = np.clip(cost + self.band_k * stats.std_per_kwh, floor, cap)
        n = self._n
        prices = np.empty((n, 4))
        prices[:, 0] = prices[:, 1] = floor
        prices[:, 2] = p1
        prices[:, 3] = p2
        powers = np.empty((n, 4))
        powers[:, 0] = 0.0
        powers[:, 1] = powers[:, 2] = -must
        powers[:, 3] = -top
        self._curves = BidCurves._trusted(prices, powers, self._ids)
        self._bid_interval = interval
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Electric output sold over the interval at the cleared price (negative power)."""
        curves, price, fill = checked_response(
            self._curves, self.kind, clearing_price, marginal_fill, self._n
        )
        kernel = _kernels().respond if self._kernel == "numba" and self._n else None
        self._setpoint_kw = power_on_curves(curves, price, fill, kernel)
        self._interval = self._bid_interval
        return self._setpoint_kw.copy()

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Run at the setpoint (never overfilling the buffer); the boiler covers any deficit."""
        t, dt = _checked_time_step(time_s, dt_s)
        hours = dt / 3600.0
        if self._interval is None:
            inside = 0.0
        else:
            inside = float(_overlap_s(t, t + dt, self._interval.start_s, self._interval.end_s))
        state = self._kernel_state()
        if state is not None:
            _check_weather(weather)
            n = self._n
            soc, backup_kwh, fuel, energy_kwh, power_kw = (np.empty(n) for _ in range(5))
            _kernels().step(
                inside / dt, float(dt), float(weather.temperature_c), self.electric_power_max_kw,
                self.electric_to_thermal_ratio, self.electric_efficiency,
                self.buffer_capacity_kwh, self.ua_kw_per_c, self.balance_temperature_c,
                self.hot_water_kw, self._setpoint_kw, *state, soc, backup_kwh, fuel, energy_kwh,
                power_kw,
            )  # fmt: skip
            self.buffer_soc_pu, self.backup_heat_kwh, self.fuel_kwh = soc, backup_kwh, fuel
            return StepResult(power_kw=power_kw, energy_kwh=energy_kwh, ids=self._ids)
        heat = self.heat_demand_kw(weather)
        _, available = self.output_limits(float(dt), heat)
        electric = np.clip(-self._setpoint_kw * (inside / dt), 0.0, available)
        energy = self.buffer_soc_pu * self.buffer_capacity_kwh
        energy = energy + (electric / self.electric_to_thermal_ratio - heat) * hours
        backup = np.maximum(-energy, 0.0)
        energy = np.clip(energy, 0.0, self.buffer_capacity_kwh)
        self.buffer_soc_pu = energy / self.buffer_capacity_kwh
        self.backup_heat_kwh = self.backup_heat_kwh + backup
        self.fuel_kwh = self.fuel_kwh + electric * hours / self.electric_efficiency
        return StepResult(power_kw=-electric, energy_kwh=-electric * hours, ids=self._ids)
