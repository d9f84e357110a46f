"""Electric-vehicle chargers: a vectorized population bidding by urgency.

Model
-----
Each EV is plugged in from ``arrival_s`` to ``departure_s`` (seconds from the run's start) and
needs ``energy_needed_kwh`` delivered to its battery by departure. Its charger draws at most
``max_power_kw`` from the grid; ``efficiency`` is the grid-to-battery charging efficiency, so a
grid energy ``e`` stores ``efficiency * e``. This is the energy-need/deadline EV model of the
congestion-management studies Hu et al. (Proc. CSEE 2019, §3.1) cite as [24], [32] (its example:
an EV that needs 7.8 kWh within 2 hours); see for instance Hu, You, Lind, Østergaard,
"Coordinated charging of electric vehicles for congestion prevention in the distribution grid",
IEEE Trans. Smart Grid 5(2), 2014.

Bidding strategy (cited beside the code)
----------------------------------------
The urgency bid of PowerMatcher's EV agent (Kok, "The PowerMatcher: Smart Coordination for the Smart
Electricity Grid", PhD thesis, VU Amsterdam, 2013): the less freedom a charger has left, the higher
the price it bids, and when it has no freedom left it bids at the maximum price. Freedom is measured
by laxity (Nakahira, Chen, Chen, Low, "Smoothed least-laxity-first algorithm for EV charging", ACM
e-Energy 2017): with ``g`` the grid energy still needed, ``P`` the charger rating and ``τ`` the time
left from the later of the interval's start and arrival, the urgency ``u = g / (P τ)`` is the share
of the remaining time the EV must charge at full power (``u = 1``: zero laxity). For the market
interval ``[s, e)`` it bids for, each EV plugged during it for ``o`` seconds bids two blocks of
**average power over the interval** (energy × 3600 / (e - s)):

- **must-run** at the price cap: the energy it must take in the interval so that it can still
  finish at full power in the time plugged after it, ``m = max(g - P (d - e)⁺, 0)``. If the market
  serves all demand at the cap, no EV ever leaves short of energy it could have been given;
- **flexible** the rest of what it can take while plugged in the interval, ``min(g, P o)``, at
  ``p_lo + u (p_hi - p_lo)`` with ``[p_lo, p_hi] = [mean - kσ, mean + kσ]`` clipped to the
  market's floor and cap (the price band of the Olympic Peninsula controllers: Hammerstrom et
  al., PNNL-17167, 2007).

After ``respond`` an EV charges at the constant rate ``allocation × (e - s) / o`` while plugged in
the interval, so the grid energy it meters over the interval equals its allocation exactly, per
device, for any physics step (the plugged seconds of every step are computed exactly). A step
outside the interval last responded for draws nothing: an EV charges only on a cleared price.

Horizon view
------------
:meth:`EVPopulation.flexibility` states an EV as a generalized battery
(:mod:`transactive.devices.flexibility`) that only charges: per period, average power up to
``P × plugged share``, stored energy up to the need and, at the end of every period, at least
what still lets it finish at full power by departure.

Kernels (issue 17): bid, respond and step run by default as fused numba loops over the EVs
(:mod:`transactive.devices._ev_kernels`) doing the numpy reference's arithmetic in its order, so
they give its numbers bit for bit (``tests/devices/test_ev_kernels.py``); ``kernel="numpy"``
runs the reference.
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

__all__ = ["EVPopulation"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


def _kernels() -> Any:
    """The numba kernels, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _ev_kernels  # noqa: PLC0415 - deferred: see docstring

    return _ev_kernels


class EVPopulation(StepsByKernel):
    """N EV chargers as arrays; implements ``Population`` and ``FlexiblePopulation``.

    Parameters
    ----------
    arrival_s, departure_s:
        Plug-in and plug-out times (seconds from the run's start). An EV is plugged while
        ``arrival_s <= t < departure_s``.
    energy_needed_kwh:
        Energy to deliver to the battery by departure (counted from arrival).
    max_power_kw:
        Charger rating (grid side).
    efficiency:
        Grid-to-battery charging efficiency in (0, 1].
    band_k:
        Width of the bidding band in standard deviations (``mean ± k σ``).
    delivered_kwh:
        Energy already delivered to each battery (default zero).
    ids:
        One unique id per EV (default ``ev-0 ... ev-(N-1)``).
    kernel:
        ``"numba"`` (default): bid, respond and step run as fused numba kernels over the EVs
        (:mod:`transactive.devices._ev_kernels`); ``"numpy"``: the vectorized numpy reference.
        The two give the same numbers to the last bit (``tests/devices/test_ev_kernels.py``).
        The attribute :attr:`kernel` may be changed between calls.

    Raises
    ------
    ValidationError
        Naming every offending device for every broken rule.

    """

    kind = "EV"
    id_prefix = "ev"

    def __init__(
        self,
        *,
        arrival_s: npt.ArrayLike,
        departure_s: npt.ArrayLike,
        energy_needed_kwh: npt.ArrayLike,
        max_power_kw: npt.ArrayLike,
        efficiency: npt.ArrayLike = 0.9,
        band_k: npt.ArrayLike = 1.0,
        delivered_kwh: npt.ArrayLike = 0.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        problems = Problems(subject="EV population")
        n, c = _validated_columns(
            problems,
            {
                "arrival_s": arrival_s,
                "departure_s": departure_s,
                "energy_needed_kwh": energy_needed_kwh,
                "max_power_kw": max_power_kw,
                "efficiency": efficiency,
                "band_k": band_k,
                "delivered_kwh": delivered_kwh,
            },
        )
        problems.check(c["departure_s"] <= c["arrival_s"], "departure_s", "must be after arrival_s")
        problems.check(c["energy_needed_kwh"] < 0, "energy_needed_kwh", "must be >= 0")
        problems.check(c["max_power_kw"] <= 0, "max_power_kw", "must be > 0")
        eff = c["efficiency"]
        problems.check((eff <= 0) | (eff > 1), "efficiency", "must lie in (0, 1]")
        problems.check(c["band_k"] < 0, "band_k", "must be >= 0")
        problems.check(
            (c["delivered_kwh"] < 0) | (c["delivered_kwh"] > c["energy_needed_kwh"]),
            "delivered_kwh",
            "must lie in [0, energy_needed_kwh]",
        )
        self._ids = _population_ids(problems, ids, n, self.id_prefix)
        check_kernel(problems, kernel)
        problems.raise_if_any()
        self._kernel = kernel
        self.arrival_s = _readonly(c["arrival_s"])
        self.departure_s = _readonly(c["departure_s"])
        self.energy_needed_kwh = _readonly(c["energy_needed_kwh"])
        self.max_power_kw = _readonly(c["max_power_kw"])
        self.efficiency = _readonly(c["efficiency"])
        self.band_k = _readonly(c["band_k"])
        self.delivered_kwh = c["delivered_kwh"]
        self._n = n
        self._curves: BidCurves | None = None
        self._bid_interval: MarketInterval | None = None
        self._interval: MarketInterval | None = None  # the interval the last respond was for
        self._rate_kw = np.zeros(n)

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        arrival_mean_h: float = 18.0,
        arrival_std_h: float = 1.5,
        departure_mean_h: float = 31.5,
        departure_std_h: float = 1.0,
        daily_km_mean: float = 40.0,
        consumption_kwh_per_km: float = 0.18,
        charger_kw: tuple[float, ...] = (3.7, 7.4, 11.0),
        charger_share: tuple[float, ...] = (0.3, 0.5, 0.2),
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """A heterogeneous fleet: evening arrivals, morning departures (hours from the start).

        Daily distance is log-normal (coefficient of variation 0.6), the energy need is distance
        times consumption, capped at 90 % of what the charger can deliver while plugged, so every
        EV can finish. The defaults are illustrative, not fitted to a travel survey.
        """
        n = _check_sample_args(n, rng, cls.kind)
        arrival_h = np.clip(rng.normal(arrival_mean_h, arrival_std_h, n), 0.0, None)
        dwell_h = np.clip(rng.normal(departure_mean_h, departure_std_h, n) - arrival_h, 2.0, None)
        sigma = np.sqrt(np.log(1.0 + 0.6**2))
        km = rng.lognormal(np.log(daily_km_mean) - 0.5 * sigma**2, sigma, n)
        power = rng.choice(np.asarray(charger_kw), size=n, p=np.asarray(charger_share))
        efficiency = rng.uniform(0.88, 0.95, n)
        need = np.minimum(km * consumption_kwh_per_km, 0.9 * power * efficiency * dwell_h)
        return cls(
            arrival_s=np.round(arrival_h * 3600.0),
            departure_s=np.round((arrival_h + dwell_h) * 3600.0),
            energy_needed_kwh=need,
            max_power_kw=power,
            efficiency=efficiency,
            band_k=rng.uniform(0.5, 1.5, n),
            ids=ids,
        )

    # ---------------------------------------------------------------- state

    @property
    def n_devices(self) -> int:
        """Number of EVs."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Id of every EV."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernels) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "EV population")

    @property
    def remaining_kwh(self) -> FloatArray:
        """Energy still to deliver to each battery."""
        return np.maximum(self.energy_needed_kwh - self.delivered_kwh, 0.0)

    def plugged(self, time_s: float) -> npt.NDArray[np.bool_]:
        """Which EVs are plugged at ``time_s`` (seconds from the run's start)."""
        return (self.arrival_s <= time_s) & (time_s < self.departure_s)

    def shortfall_kwh(self, time_s: float) -> FloatArray:
        """Energy missing at departure, for EVs gone by ``time_s`` (zero for the others)."""
        return np.where(self.departure_s <= time_s, self.remaining_kwh, 0.0)

    # ---------------------------------------------------------------- protocol

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Urgency bids for ``interval``: must-run block at the cap, the rest flexible.

        Powers are averages over the whole interval (see the module docstring).
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        s, e = float(interval.start_s), float(interval.end_s)
        duration = e - s
        cap, floor = stats.price_cap_per_kwh, stats.price_floor_per_kwh
        state = kernel_state(self._kernel, self._n, self.delivered_kwh)
        if state is not None:
            prices, powers = np.empty((self._n, 4)), np.empty((self._n, 4))
            _kernels().bid(
                s, e, float(stats.mean_per_kwh), float(stats.std_per_kwh), float(cap),
                float(floor), self.arrival_s, self.departure_s, self.energy_needed_kwh,
                *state, self.max_power_kw, self.efficiency, self.band_k, prices, powers,
            )  # fmt: skip
            self._curves = BidCurves._trusted(prices, powers, self._ids)
            self._bid_interval = interval
            return self._curves
        plugged_s = _overlap_s(s, e, self.arrival_s, self.departure_s)
        grid_need = np.where(plugged_s > 0, self.remaining_kwh / self.efficiency, 0.0)  # kWh
        from_s = np.maximum(s, self.arrival_s)
        time_left = np.maximum(self.departure_s - from_s, 0.0)
        reach_now = self.max_power_kw * plugged_s / 3600.0
        reach_after = self.max_power_kw * np.maximum(self.departure_s - e, 0.0) / 3600.0
        flexible = np.minimum(grid_need, reach_now)
        # Must-run: what cannot wait for later intervals at full power (zero laxity, Kok 2013).
        must = np.clip(grid_need - reach_after, 0.0, flexible)
        # Urgency u = g / (P τ): zero laxity at 1 (Nakahira et al. 2017).
        with np.errstate(divide="ignore", invalid="ignore"):
            urgency = np.where(
                time_left > 0, grid_need / (self.max_power_kw * time_left / 3600.0), 0.0
            )
        urgency = np.clip(urgency, 0.0, 1.0)
        band = self.band_k * stats.std_per_kwh
        p_lo = np.clip(stats.mean_per_kwh - band, floor, cap)
        p_hi = np.clip(stats.mean_per_kwh + band, floor, cap)
        p_flex = p_lo + urgency * (p_hi - p_lo)
        to_kw = 3600.0 / duration
        n = self._n
        prices = np.empty((n, 4))
        prices[:, 0] = prices[:, 1] = p_flex
        prices[:, 2] = prices[:, 3] = cap
        powers = np.empty((n, 4))
        powers[:, 0] = flexible * to_kw
        powers[:, 1] = powers[:, 2] = must * to_kw
        powers[:, 3] = 0.0
        self._curves = BidCurves._trusted(prices, powers, self._ids)
        self._bid_interval = interval
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Average charging power over the interval bid for, at the cleared price (kW, grid).

        Each EV then charges at ``power × duration / plugged seconds`` while plugged in the
        interval, so its metered interval energy is its allocation.
        """
        curves, price, fill = checked_response(
            self._curves, self.kind, clearing_price, marginal_fill, self._n
        )
        interval = self._bid_interval
        assert interval is not None
        if self._kernel == "numba" and self._n:
            power = np.empty(self._n)
            self._rate_kw = np.empty(self._n)
            _kernels().respond(
                curves.price_per_kwh, curves.power_kw, price.reshape(-1), fill.reshape(-1),
                float(interval.start_s), float(interval.end_s), self.arrival_s,
                self.departure_s, power, self._rate_kw,
            )  # fmt: skip
            self._interval = interval
            return power
        power = curves.power_at(price, fill)
        duration = float(interval.duration_s)
        plugged_s = _overlap_s(interval.start_s, interval.end_s, self.arrival_s, self.departure_s)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._rate_kw = np.where(plugged_s > 0, power * duration / plugged_s, 0.0)
        self._interval = interval
        return power

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Charge at the responded rate while plugged in ``[time_s, time_s + dt_s)``.

        Only the part of the step inside the interval last responded for charges.
        """
        t, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        state = kernel_state(self._kernel, self._n, self.delivered_kwh)
        if state is not None:
            active = self._interval is not None
            lo = hi = 0.0
            if self._interval is not None:
                lo = float(max(t, self._interval.start_s))
                hi = float(max(min(t + dt, self._interval.end_s), lo))
            out = np.empty(self._n), np.empty(self._n), np.empty(self._n)
            _kernels().step(
                active, lo, hi, float(dt), self.arrival_s, self.departure_s,
                self.energy_needed_kwh, self.efficiency, self._rate_kw, *state, *out,
            )  # fmt: skip
            self.delivered_kwh, energy, power = out
            return StepResult(power_kw=power, energy_kwh=energy, ids=self._ids)
        if self._interval is None:
            charging_s = np.zeros(self._n)
        else:
            lo = max(t, self._interval.start_s)
            hi = min(t + dt, self._interval.end_s)
            charging_s = _overlap_s(lo, max(hi, lo), self.arrival_s, self.departure_s)
        grid_kwh = np.minimum(
            self._rate_kw * charging_s / 3600.0, self.remaining_kwh / self.efficiency
        )
        self.delivered_kwh = np.minimum(
            self.delivered_kwh + grid_kwh * self.efficiency, self.energy_needed_kwh
        )
        return StepResult(power_kw=grid_kwh * 3600.0 / dt, energy_kwh=grid_kwh, ids=self._ids)

    def _kernel_steps(self, t0: int, dt: int, samples: list[WeatherSample]) -> KernelSteps | None:
        """:meth:`step_many`'s steps by the kernel: each charges from the last one's state."""
        state = kernel_state(self._kernel, self._n, self.delivered_kwh)
        if state is None:
            return None
        kern, n, interval = _kernels(), self._n, self._interval
        delivered = state[0]

        def one_step(k: int, energy_out: FloatArray) -> FloatArray:
            nonlocal delivered
            t = t0 + k * dt
            lo = hi = 0.0
            if interval is not None:
                lo = float(max(t, interval.start_s))
                hi = float(max(min(t + dt, interval.end_s), lo))
            out, power = np.empty(n), np.empty(n)
            kern.step(
                interval is not None, lo, hi, float(dt), self.arrival_s, self.departure_s,
                self.energy_needed_kwh, self.efficiency, self._rate_kw, delivered, out,
                energy_out, power,
            )  # fmt: skip
            delivered = out
            return power

        def commit() -> None:
            self.delivered_kwh = delivered

        return one_step, commit

    # ---------------------------------------------------------------- horizon view

    def flexibility(self, horizon: Horizon, weather: Sequence[WeatherSample]) -> Flexibility:
        """The EVs over ``horizon`` as charge-only generalized batteries (battery-side kWh).

        Period t: average power in ``[0, P × plugged share of the period]``; stored energy (from
        the current ``delivered_kwh``) at most the need and, at the end of the period, at least
        ``need - η P (time plugged after the period) / 3600``, the least that still lets the EV
        finish at full power by departure (so a horizon that ends before departure never leaves
        an EV unable to finish). An EV already gone keeps its delivered energy (its shortfall
        is :meth:`shortfall_kwh`). The weather is checked, not used.
        """
        _checked_horizon_weather(horizon, weather)
        starts = horizon.starts_s.astype(np.float64)[:, None]
        ends = starts + horizon.period_s
        plugged_s = _overlap_s(starts, ends, self.arrival_s, self.departure_s)
        power_max = self.max_power_kw * plugged_s / horizon.period_s
        after_s = np.maximum(self.departure_s - np.maximum(ends, self.arrival_s), 0.0)
        energy_min = np.clip(
            self.energy_needed_kwh - self.efficiency * self.max_power_kw * after_s / 3600.0,
            0.0,
            self.energy_needed_kwh,
        )
        # An EV gone before the horizon starts can no longer change: it keeps what it has.
        gone = self.departure_s <= horizon.start_s
        energy_min = np.where(gone, self.delivered_kwh, energy_min)
        shape = (horizon.n_periods, self._n)
        return Flexibility(
            horizon=horizon,
            ids=self._ids,
            baseline_kw=np.zeros(shape),
            power_min_kw=np.zeros(shape),
            power_max_kw=power_max,
            energy_min_kwh=energy_min,
            energy_max_kwh=np.broadcast_to(self.energy_needed_kwh, shape).copy(),
            initial_energy_kwh=np.asarray(self.delivered_kwh, dtype=np.float64).copy(),
            retention=np.ones(self._n),
            charge_efficiency=np.asarray(self.efficiency, dtype=np.float64).copy(),
            discharge_efficiency=np.ones(self._n),
        )

    def best_response(
        self,
        prices_per_kwh: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
    ) -> BestResponse:
        """The cheapest charging schedule at ``prices_per_kwh`` ((T,) or (T, N)); no state change.

        Solved by :func:`~transactive.devices.flexibility.solve_best_response`.
        """
        return solve_best_response(self.flexibility(horizon, weather), prices_per_kwh)
