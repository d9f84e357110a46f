"""Stationary batteries: a vectorized population that buys cheap and sells dear.

Model
-----
Energy-reservoir storage model (as in GridLAB-D's ``battery`` object and PyPSA's
``StorageUnit``): state of charge ``soc_pu`` of a usable capacity ``capacity_kwh``, kept within
``[soc_min_pu, soc_max_pu]``; charging power up to ``charge_power_max_kw`` stores
``charge_efficiency`` of the grid energy, discharging power up to ``discharge_power_max_kw``
draws ``1 / discharge_efficiency`` of the delivered energy from the cells (round-trip efficiency
``η_c η_d``):

    soc' = soc + (η_c p⁺ - p⁻ / η_d) Δt / C           (p⁺, p⁻: charging, discharging power)

Bidding strategy
----------------
The price-band arbitrage of the transactive battery controllers in GridLAB-D and TESP (PNNL's
Transactive Energy Simulation Platform), built on the ``mean ± k σ`` bands of the Olympic Peninsula
demonstration (Hammerstrom et al., "Pacific Northwest GridWise Testbed Demonstration Projects,
Part I: Olympic Peninsula Project", PNNL-17167, 2007): a battery buys at prices at or below
``mean - k σ`` and sells at or above ``mean + k σ``. The selling threshold is raised to at least
``buy / (η_c η_d)`` so that a round trip never loses money. Each curve is a buying block and a
selling block and crosses zero between them:

    power(p) = +P_c  for p <= p_buy,   0 between,   -P_d  for p >= p_sell

where ``P_c`` and ``P_d`` are the most the battery can charge or discharge as a constant power over
the whole market interval it bids for without leaving its SOC band (and within its power
ratings). After ``respond`` it holds the cleared power for the interval: since that power keeps
the SOC in band over the whole interval, every physics step inside it runs at exactly that power,
so the metered interval energy equals the allocation per device, for any step length. ``step``
enforces the SOC band again over the step it is given (the SOC never leaves its band whatever
happens); a step outside the interval last responded for leaves the battery idle.

Horizon view: :meth:`BatteryPopulation.flexibility` is the battery itself as a generalized
battery (:mod:`transactive.devices.flexibility`): net power in ``[-P_d, P_c]``, stored energy in
``[soc_min C, soc_max C]``, both efficiencies, no self-discharge.

Kernels (issue 17): bid, respond and step run by default as fused numba loops over the
batteries (:mod:`transactive.devices._battery_kernels`) doing the numpy reference's arithmetic
in its order, so they give its numbers bit for bit (``tests/devices/test_battery_kernels.py``);
``kernel="numpy"`` runs the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from transactive.devices._steps import KernelSteps, StepsByKernel
from transactive.devices.base import Horizon, MarketInterval, PriceStats, StepResult
from transactive.devices.flexibility import (
    BestResponse,
    Flexibility,
    _checked_horizon_weather,
    solve_best_response,
)
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["BatteryPopulation"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


def _kernels() -> Any:
    """The numba kernels, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _battery_kernels  # noqa: PLC0415 - deferred: see docstring

    return _battery_kernels


class BatteryPopulation(StepsByKernel):
    """N stationary batteries as arrays; implements ``Population`` and ``FlexiblePopulation``.

    Parameters
    ----------
    capacity_kwh:
        Usable energy capacity at SOC 1.
    charge_power_max_kw, discharge_power_max_kw:
        Power ratings (grid side).
    charge_efficiency, discharge_efficiency:
        One-way efficiencies in (0, 1]; round trip is their product.
    soc_pu:
        Initial state of charge.
    soc_min_pu, soc_max_pu:
        SOC band, ``0 <= soc_min_pu < soc_max_pu <= 1``.
    band_k:
        Width of the bidding band in standard deviations.
    ids:
        One unique id per battery (default ``battery-0 ... battery-(N-1)``).
    kernel:
        ``"numba"`` (default): bid, respond and step run as fused numba kernels over the
        batteries (:mod:`transactive.devices._battery_kernels`); ``"numpy"``: the vectorized
        numpy reference. The two give the same numbers to the last bit
        (``tests/devices/test_battery_kernels.py``). The attribute :attr:`kernel` may be changed
        between calls.

    Raises
    ------
    ValidationError
        Naming every offending device for every broken rule.

    """

    kind = "battery"
    id_prefix = "battery"

    def __init__(
        self,
        *,
        capacity_kwh: npt.ArrayLike,
        charge_power_max_kw: npt.ArrayLike,
        discharge_power_max_kw: npt.ArrayLike,
        soc_pu: npt.ArrayLike = 0.5,
        soc_min_pu: npt.ArrayLike = 0.1,
        soc_max_pu: npt.ArrayLike = 0.9,
        charge_efficiency: npt.ArrayLike = 0.95,
        discharge_efficiency: npt.ArrayLike = 0.95,
        band_k: npt.ArrayLike = 1.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        problems = Problems(subject="battery population")
        n, c = _validated_columns(
            problems,
            {
                "capacity_kwh": capacity_kwh,
                "charge_power_max_kw": charge_power_max_kw,
                "discharge_power_max_kw": discharge_power_max_kw,
                "soc_pu": soc_pu,
                "soc_min_pu": soc_min_pu,
                "soc_max_pu": soc_max_pu,
                "charge_efficiency": charge_efficiency,
                "discharge_efficiency": discharge_efficiency,
                "band_k": band_k,
            },
        )
        problems.check(c["capacity_kwh"] <= 0, "capacity_kwh", "must be > 0")
        problems.check(c["charge_power_max_kw"] < 0, "charge_power_max_kw", "must be >= 0")
        problems.check(c["discharge_power_max_kw"] < 0, "discharge_power_max_kw", "must be >= 0")
        for name in ("charge_efficiency", "discharge_efficiency"):
            problems.check((c[name] <= 0) | (c[name] > 1), name, "must lie in (0, 1]")
        lo, hi, soc = c["soc_min_pu"], c["soc_max_pu"], c["soc_pu"]
        band_ok = problems.check(
            (lo < 0) | (hi > 1) | (lo >= hi),
            "soc_min_pu/soc_max_pu",
            "need 0 <= soc_min_pu < soc_max_pu <= 1",
        )
        if band_ok:
            problems.check(
                (soc < lo) | (soc > hi), "soc_pu", "must lie in [soc_min_pu, soc_max_pu]"
            )
        problems.check(c["band_k"] < 0, "band_k", "must be >= 0")
        self._ids = _population_ids(problems, ids, n, self.id_prefix)
        check_kernel(problems, kernel)
        problems.raise_if_any()
        self._kernel = kernel
        self.capacity_kwh = _readonly(c["capacity_kwh"])
        self.charge_power_max_kw = _readonly(c["charge_power_max_kw"])
        self.discharge_power_max_kw = _readonly(c["discharge_power_max_kw"])
        self.soc_min_pu = _readonly(lo)
        self.soc_max_pu = _readonly(hi)
        self.charge_efficiency = _readonly(c["charge_efficiency"])
        self.discharge_efficiency = _readonly(c["discharge_efficiency"])
        self.band_k = _readonly(c["band_k"])
        self.soc_pu = soc
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
        capacity_kwh: tuple[float, ...] = (5.0, 10.0, 13.5),
        c_rate: tuple[float, float] = (0.35, 0.5),
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Home batteries of a few common sizes, power ratings from a C-rate range.

        Efficiencies are drawn so that round trips lie near 0.85-0.92, a typical range for
        lithium-ion home storage; initial SOC is uniform within the band. Illustrative defaults.
        """
        n = _check_sample_args(n, rng, cls.kind)
        cap = rng.choice(np.asarray(capacity_kwh), size=n)
        power = cap * rng.uniform(*c_rate, n)
        eta = np.sqrt(rng.uniform(0.85, 0.92, n))
        return cls(
            capacity_kwh=cap,
            charge_power_max_kw=power,
            discharge_power_max_kw=power,
            soc_pu=rng.uniform(0.1, 0.9, n),
            charge_efficiency=eta,
            discharge_efficiency=eta,
            band_k=rng.uniform(0.5, 1.5, n),
            ids=ids,
        )

    @property
    def n_devices(self) -> int:
        """Number of batteries."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Id of every battery."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernels) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "battery population")

    @property
    def energy_kwh(self) -> FloatArray:
        """Stored energy."""
        return np.asarray(self.soc_pu * self.capacity_kwh, dtype=np.float64)

    def power_limits(self, dt_s: float) -> tuple[FloatArray, FloatArray]:
        """Most each battery can charge and discharge (grid side, kW) for ``dt_s`` seconds.

        Both are the power ratings reduced so the SOC stays within its band over the period.
        """
        hours = dt_s / 3600.0
        room = np.maximum(self.soc_max_pu - self.soc_pu, 0.0) * self.capacity_kwh
        avail = np.maximum(self.soc_pu - self.soc_min_pu, 0.0) * self.capacity_kwh
        charge = np.minimum(self.charge_power_max_kw, room / (self.charge_efficiency * hours))
        discharge = np.minimum(
            self.discharge_power_max_kw, avail * self.discharge_efficiency / hours
        )
        return charge, discharge

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Buy block at ``mean - kσ``, sell block at ``max(mean + kσ, buy / η_rt)``.

        The blocks are the most the battery can hold as a constant power over ``interval``.
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        cap, floor = stats.price_cap_per_kwh, stats.price_floor_per_kwh
        state = kernel_state(self._kernel, self._n, self.soc_pu)
        if state is not None:
            prices, powers = np.empty((self._n, 4)), np.empty((self._n, 4))
            _kernels().bid(
                float(interval.duration_s), float(stats.mean_per_kwh), float(stats.std_per_kwh),
                float(cap), float(floor), self.capacity_kwh, self.charge_power_max_kw,
                self.discharge_power_max_kw, self.charge_efficiency, self.discharge_efficiency,
                self.soc_min_pu, self.soc_max_pu, self.band_k, *state, prices, powers,
            )  # fmt: skip
            self._curves = BidCurves._trusted(prices, powers, self._ids)
            self._bid_interval = interval
            return self._curves
        charge, discharge = self.power_limits(float(interval.duration_s))
        band = self.band_k * stats.std_per_kwh
        p_buy = stats.mean_per_kwh - band
        round_trip = self.charge_efficiency * self.discharge_efficiency
        # A round trip bought at p_buy must sell at p_buy / η_rt or more to break even.
        p_sell = np.maximum(stats.mean_per_kwh + band, p_buy / round_trip)
        p_buy = np.clip(p_buy, floor, cap)
        p_sell = np.clip(p_sell, floor, cap)
        n = self._n
        prices = np.empty((n, 4))
        prices[:, 0] = prices[:, 1] = p_buy
        prices[:, 2] = prices[:, 3] = p_sell
        powers = np.zeros((n, 4))
        powers[:, 0] = charge
        powers[:, 3] = -discharge
        self._curves = BidCurves._trusted(prices, powers, self._ids)
        self._bid_interval = interval
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Power held over the interval bid for (positive charging, negative discharging)."""
        curves, price, fill = checked_response(
            self._curves, self.kind, clearing_price, marginal_fill, self._n
        )
        kernel = _kernels().respond if self._kernel == "numba" and self._n else None
        self._setpoint_kw = power_on_curves(curves, price, fill, kernel)
        self._interval = self._bid_interval
        return self._setpoint_kw.copy()

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Run at the setpoint over ``[time_s, time_s + dt_s)``, never beyond the SOC band.

        The part of the step outside the interval last responded for is idle.
        """
        t, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        if self._interval is None:
            active_s = 0.0
        else:
            active_s = float(_overlap_s(t, t + dt, self._interval.start_s, self._interval.end_s))
        state = kernel_state(self._kernel, self._n, self.soc_pu)
        if state is not None:
            out = np.empty(self._n), np.empty(self._n), np.empty(self._n)
            _kernels().step(
                active_s, float(dt), self.capacity_kwh, self.charge_power_max_kw,
                self.discharge_power_max_kw, self.charge_efficiency, self.discharge_efficiency,
                self.soc_min_pu, self.soc_max_pu, self._setpoint_kw, *state, *out,
            )  # fmt: skip
            self.soc_pu, energy, power_kw = out
            return StepResult(power_kw=power_kw, energy_kwh=energy, ids=self._ids)
        if active_s > 0:
            charge, discharge = self.power_limits(active_s)
            power = np.clip(self._setpoint_kw, -discharge, charge)
        else:
            power = np.zeros(self._n)
        hours = active_s / 3600.0
        stored = np.where(
            power >= 0, power * self.charge_efficiency, power / self.discharge_efficiency
        )
        self.soc_pu = np.clip(
            self.soc_pu + stored * hours / self.capacity_kwh, self.soc_min_pu, self.soc_max_pu
        )
        energy = power * hours
        return StepResult(power_kw=energy * 3600.0 / dt, energy_kwh=energy, ids=self._ids)

    def _kernel_steps(self, t0: int, dt: int, samples: list[WeatherSample]) -> KernelSteps | None:
        """:meth:`step_many`'s steps by the kernel: each runs from the last one's charge."""
        state = kernel_state(self._kernel, self._n, self.soc_pu)
        if state is None:
            return None
        kern, n, interval = _kernels(), self._n, self._interval
        soc = state[0]

        def one_step(k: int, energy_out: FloatArray) -> FloatArray:
            nonlocal soc
            t = t0 + k * dt
            active_s = 0.0
            if interval is not None:
                active_s = float(_overlap_s(t, t + dt, interval.start_s, interval.end_s))
            out, power = np.empty(n), np.empty(n)
            kern.step(
                active_s, float(dt), self.capacity_kwh, self.charge_power_max_kw,
                self.discharge_power_max_kw, self.charge_efficiency, self.discharge_efficiency,
                self.soc_min_pu, self.soc_max_pu, self._setpoint_kw, soc, out, energy_out, power,
            )  # fmt: skip
            soc = out
            return power

        def commit() -> None:
            self.soc_pu = soc

        return one_step, commit

    # ---------------------------------------------------------------- horizon view

    def flexibility(self, horizon: Horizon, weather: Sequence[WeatherSample]) -> Flexibility:
        """The batteries over ``horizon`` as generalized batteries (the weather is not used)."""
        _checked_horizon_weather(horizon, weather)
        shape = (horizon.n_periods, self._n)
        return Flexibility(
            horizon=horizon,
            ids=self._ids,
            baseline_kw=np.zeros(shape),
            power_min_kw=np.broadcast_to(-self.discharge_power_max_kw, shape).copy(),
            power_max_kw=np.broadcast_to(self.charge_power_max_kw, shape).copy(),
            energy_min_kwh=np.broadcast_to(self.soc_min_pu * self.capacity_kwh, shape).copy(),
            energy_max_kwh=np.broadcast_to(self.soc_max_pu * self.capacity_kwh, shape).copy(),
            initial_energy_kwh=self.energy_kwh.copy(),
            retention=np.ones(self._n),
            charge_efficiency=np.asarray(self.charge_efficiency, dtype=np.float64).copy(),
            discharge_efficiency=np.asarray(self.discharge_efficiency, dtype=np.float64).copy(),
        )

    def best_response(
        self,
        prices_per_kwh: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
    ) -> BestResponse:
        """The cheapest schedule at ``prices_per_kwh`` ((T,) or (T, N)); no state change.

        Energy left at the horizon's end has no value here, so at positive prices the schedule
        ends at the SOC floor. To hold a final energy, raise the last row of ``energy_min_kwh``
        (``dataclasses.replace`` on :meth:`flexibility`) and call
        :func:`~transactive.devices.flexibility.solve_best_response`.
        """
        return solve_best_response(self.flexibility(horizon, weather), prices_per_kwh)
