"""Electric-vehicle chargers: a vectorized population bidding by urgency (MISSION.md §4, §5).

Model
-----
Each EV is plugged in from ``arrival_s`` to ``departure_s`` (seconds on the population's clock) and
needs ``energy_needed_kwh`` delivered to its battery by departure. Its charger draws at most
``max_power_kw`` from the grid; ``efficiency`` is the grid-to-battery charging efficiency, so a
grid energy ``e`` stores ``efficiency * e``. This is the energy-need/deadline EV model of the
congestion-management studies the paper cites as [24], [32] (its example: an EV that needs
7.8 kWh within 2 hours); see for instance Hu, You, Lind, Østergaard, "Coordinated charging of
electric vehicles for congestion prevention in the distribution grid", IEEE Trans. Smart Grid
5(2), 2014.

Bidding strategy (cited beside the code)
----------------------------------------
The urgency bid of PowerMatcher's EV agent (Kok, "The PowerMatcher: Smart Coordination for the Smart
Electricity Grid", PhD thesis, VU Amsterdam, 2013): the less freedom a charger has left, the higher
the price it bids, and when it has no freedom left it bids at the maximum price. Freedom is measured
by laxity (Nakahira, Chen, Chen, Low, "Smoothed least-laxity-first algorithm for EV charging", ACM
e-Energy 2017): with ``g`` the grid energy still needed, ``P`` the charger rating and ``τ`` the time
left, the urgency ``u = g / (P τ)`` is the share of the remaining time the EV must charge at full
power (``u = 1``: zero laxity). For the coming market interval of ``interval_s`` seconds each
plugged EV bids two blocks:

- **must-run** at the price cap: the energy it must take now so that it can still finish in the
  time left after this interval at full power, ``m = max(g - P (τ - Δ)⁺, 0)``. If the market serves
  all demand at the cap, no EV ever leaves short of energy it could have been given;
- **flexible** the rest of what it can use in this interval, at ``p_lo + u (p_hi - p_lo)`` with
  ``[p_lo, p_hi] = [mean - kσ, mean + kσ]`` clipped to the market's floor and cap (the price band of
  the Olympic Peninsula controllers, MISSION.md §4).

Powers in bids and responses are averages over the market interval; an EV that leaves during
the interval charges at the matching higher rate while it is still plugged.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _checked_step,
    _power_on_curve,
    _readonly,
    _validated_columns,
)
from transactive.devices.base import PriceStats, StepResult
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["EVPopulation"]

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------ the population


class EVPopulation:
    """N EV chargers as arrays; implements the ``Population`` protocol.

    Parameters
    ----------
    arrival_s, departure_s:
        Plug-in and plug-out times (seconds on the population's clock, which starts at
        ``time_s``). An EV is plugged while ``arrival_s <= t < departure_s``.
    energy_needed_kwh:
        Energy to deliver to the battery by departure (counted from arrival).
    max_power_kw:
        Charger rating (grid side).
    efficiency:
        Grid-to-battery charging efficiency in (0, 1].
    band_k:
        Width of the bidding band in standard deviations (``mean ± k σ``).
    interval_s:
        Length of the market interval the bids are for.
    time_s:
        The population's clock at construction.
    delivered_kwh:
        Energy already delivered to each battery (default zero).

    Raises
    ------
    ValidationError
        Naming every offending device for every broken rule.

    """

    kind = "EV"

    def __init__(
        self,
        *,
        arrival_s: npt.ArrayLike,
        departure_s: npt.ArrayLike,
        energy_needed_kwh: npt.ArrayLike,
        max_power_kw: npt.ArrayLike,
        efficiency: npt.ArrayLike = 0.9,
        band_k: npt.ArrayLike = 1.0,
        interval_s: float = 300.0,
        time_s: float = 0.0,
        delivered_kwh: npt.ArrayLike = 0.0,
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
        if not (np.isfinite(interval_s) and interval_s > 0):
            problems.add("interval_s", f"must be a positive number of seconds, got {interval_s}")
        if not np.isfinite(time_s):
            problems.add("time_s", "must be a finite number")
        problems.raise_if_any()
        self.arrival_s = _readonly(c["arrival_s"])
        self.departure_s = _readonly(c["departure_s"])
        self.energy_needed_kwh = _readonly(c["energy_needed_kwh"])
        self.max_power_kw = _readonly(c["max_power_kw"])
        self.efficiency = _readonly(c["efficiency"])
        self.band_k = _readonly(c["band_k"])
        self.interval_s = float(interval_s)
        self.time_s = float(time_s)
        self.delivered_kwh = c["delivered_kwh"]
        self._n = n
        self._curves: BidCurves | None = None
        self._bid_time_s = self.time_s
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
        interval_s: float = 300.0,
    ) -> Self:
        """A heterogeneous fleet: evening arrivals, morning departures (hours from midnight).

        Daily distance is log-normal (coefficient of variation 0.6), the energy need is distance
        times consumption, capped at 90 % of what the charger can deliver while plugged, so every
        EV can finish. The defaults are illustrative, not fitted to a travel survey.
        """
        arrival_h = np.clip(rng.normal(arrival_mean_h, arrival_std_h, n), 0.0, None)
        dwell_h = np.clip(rng.normal(departure_mean_h, departure_std_h, n) - arrival_h, 2.0, None)
        sigma = np.sqrt(np.log(1.0 + 0.6**2))
        km = rng.lognormal(np.log(daily_km_mean) - 0.5 * sigma**2, sigma, n)
        power = rng.choice(np.asarray(charger_kw), size=n, p=np.asarray(charger_share))
        efficiency = rng.uniform(0.88, 0.95, n)
        need = np.minimum(km * consumption_kwh_per_km, 0.9 * power * efficiency * dwell_h)
        return cls(
            arrival_s=arrival_h * 3600.0,
            departure_s=(arrival_h + dwell_h) * 3600.0,
            energy_needed_kwh=need,
            max_power_kw=power,
            efficiency=efficiency,
            band_k=rng.uniform(0.5, 1.5, n),
            interval_s=interval_s,
        )

    # ---------------------------------------------------------------- state

    @property
    def n_devices(self) -> int:
        """Number of EVs."""
        return self._n

    @property
    def remaining_kwh(self) -> FloatArray:
        """Energy still to deliver to each battery."""
        return np.maximum(self.energy_needed_kwh - self.delivered_kwh, 0.0)

    def plugged(self, time_s: float | None = None) -> npt.NDArray[np.bool_]:
        """Which EVs are plugged at a time (default: now)."""
        t = self.time_s if time_s is None else time_s
        return (self.arrival_s <= t) & (t < self.departure_s)

    @property
    def shortfall_kwh(self) -> FloatArray:
        """Energy missing at departure, for EVs that have left (zero for the others)."""
        return np.where(self.departure_s <= self.time_s, self.remaining_kwh, 0.0)

    # ---------------------------------------------------------------- protocol

    def bid(self, price_stats: PriceStats) -> BidCurves:
        """Urgency bids for ``[t, t + interval_s)``: must-run block at the cap, rest flexible."""
        t, dt = self.time_s, self.interval_s
        cap, floor = price_stats.price_cap_per_kwh, price_stats.price_floor_per_kwh
        plugged = self.plugged()
        grid_need = np.where(plugged, self.remaining_kwh / self.efficiency, 0.0)  # kWh
        time_left = np.maximum(self.departure_s - t, 0.0)
        overlap = np.minimum(dt, time_left)
        reach_now = self.max_power_kw * overlap / 3600.0
        reach_after = self.max_power_kw * np.maximum(time_left - dt, 0.0) / 3600.0
        flexible = np.minimum(grid_need, reach_now)
        # Must-run: what cannot wait for later intervals at full power (zero laxity, Kok 2013).
        must = np.clip(grid_need - reach_after, 0.0, flexible)
        # Urgency u = g / (P τ): zero laxity at 1 (Nakahira et al. 2017).
        with np.errstate(divide="ignore", invalid="ignore"):
            urgency = np.where(
                time_left > 0, grid_need / (self.max_power_kw * time_left / 3600.0), 0.0
            )
        urgency = np.clip(urgency, 0.0, 1.0)
        band = self.band_k * price_stats.std_per_kwh
        p_lo = np.clip(price_stats.mean_per_kwh - band, floor, cap)
        p_hi = np.clip(price_stats.mean_per_kwh + band, floor, cap)
        p_flex = p_lo + urgency * (p_hi - p_lo)
        to_kw = 3600.0 / dt
        n = self._n
        prices = np.empty((n, 4))
        prices[:, 0] = prices[:, 1] = p_flex
        prices[:, 2] = prices[:, 3] = cap
        powers = np.empty((n, 4))
        powers[:, 0] = flexible * to_kw
        powers[:, 1] = powers[:, 2] = must * to_kw
        powers[:, 3] = 0.0
        self._curves = BidCurves._trusted(prices, powers)
        self._bid_time_s = t
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike = 0.0,
    ) -> FloatArray:
        """Average charging power over the interval at the cleared price (kW, grid side)."""
        _, power = _power_on_curve(self._curves, self.kind, clearing_price, marginal_fill, self._n)
        overlap = np.minimum(self.interval_s, np.maximum(self.departure_s - self._bid_time_s, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            self._rate_kw = np.where(overlap > 0, power * self.interval_s / overlap, 0.0)
        return power

    def step(self, dt_s: float, weather: WeatherSample) -> StepResult:
        """Charge at the responded rate while plugged in ``[t, t + dt_s)``; advance the clock."""
        dt = _checked_step(dt_s)
        t = self.time_s
        plugged_s = np.clip(
            np.minimum(t + dt, self.departure_s) - np.maximum(t, self.arrival_s), 0.0, dt
        )
        grid_kwh = np.minimum(
            self._rate_kw * plugged_s / 3600.0, self.remaining_kwh / self.efficiency
        )
        self.delivered_kwh = np.minimum(
            self.delivered_kwh + grid_kwh * self.efficiency, self.energy_needed_kwh
        )
        self.time_s = t + dt
        return StepResult(power_kw=grid_kwh * 3600.0 / dt, energy_kwh=grid_kwh)
