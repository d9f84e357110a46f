"""Smart appliances with shiftable, non-interruptible cycles: washers, dishwashers, dryers.

Model
-----
Each device runs one cycle: a fixed power profile of one or more phases (``phase_power_kw``,
``phase_duration_s``; one constant power and a duration is a one-phase profile), loaded at
``earliest_start_s`` and due by ``latest_finish_s`` (seconds from the run's start). Once started
it runs to the end: the cycle cannot be interrupted or stretched, only its start can be shifted,
inside ``[earliest_start_s, latest_start_s]`` with ``latest_start_s = latest_finish_s - D`` and
``D`` the cycle's duration. This is the shiftable-load model of the smart-appliance studies of
the PowerMatching City era (Stamminger et al., "Synergy Potential of Smart Appliances", Smart-A
project deliverable D2.3 of WP 2, University of Bonn, March 2009; Kok, "The
PowerMatcher: smart coordination for the smart electricity grid", PhD thesis, VU Amsterdam,
2013, whose shiftable-operation agent it follows).

Bidding (Kok 2013's shiftable-load agent, priced by urgency as the EV agent is)
-------------------------------------------------------------------------------
For the market interval ``[s, e)``, with ``t0 = max(s, earliest_start_s)`` the instant a cycle
awarded now would start:

- a device waiting for its start that can start in the interval (``t0 < e`` and
  ``t0 <= latest_start_s``) bids one block: the **average power over the interval** of its cycle
  started at ``t0`` (its profile's energy in ``[t0, e)``, times 3600 / ``(e - s)``), at a price
  rising with urgency ``u = (t0 - earliest_start_s) / (latest_start_s - earliest_start_s)``,
  ``p = p_lo + u (p_hi - p_lo)`` with ``[p_lo, p_hi] = [mean - k sigma, mean + k sigma]`` clipped to
  the market's floor and cap (the band of the Olympic Peninsula controllers, Hammerstrom et al.,
  PNNL-17167, 2007). When it could not start at the next interval's start (``latest_start_s < e``)
  it bids at the **cap** and starts whatever it is awarded: the deadline is always met;
- a running device bids its cycle's average power over the interval at the cap (it must run);
- a device that is done, or not yet loaded in the interval, bids nothing.

``respond`` starts a waiting device at ``t0`` when its block is awarded: a cycle is one or
nothing, so at a marginal fill it starts when the fill is at least one half (the nearer of the
two), and a must-run device starts whatever the fill. It returns the power each device then
draws on average over the interval, which is the curve's point except at such a marginal fill.
``step`` meters the profile exactly: the energy in ``[time_s, time_s + dt_s)`` is the integral
of the piecewise-constant profile over the step's overlap with the running cycle, so a start or
a phase change inside a step falls at its exact instant. A waiting device that reaches its
latest start without an award (no market called it) starts there on its own timer: the deadline
holds even then.

Baseline: with no mechanism a device starts at its earliest start. That is its own bid answered
at the price floor with a full fill (``respond(price_floor, 1.0)`` after ``bid``): every block is
priced at or above the floor, so it is awarded at the first interval in which the device can
start, and it starts at ``max(s, earliest_start_s) = earliest_start_s``.

Not here: a horizon view (``flexibility`` / ``best_response``). A non-interruptible cycle is not
a generalized battery (its feasible set is a finite set of shifted profiles, not a convex set of
power and energy bounds), and a convex envelope of it would promise schedules no appliance can
run; so this kind does not implement :class:`~transactive.devices.flexibility.FlexiblePopulation`.
One cycle per device: a run of several days takes one device per cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _population_ids,
    _power_on_curve,
    _readonly,
    _validated_columns,
)
from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["APPLIANCE_CYCLES", "AppliancePopulation"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

_SECONDS_PER_HOUR = 3600.0

#: Typical EU cycles, phases of (power kW, duration min). Energies per cycle are of the order the
#: Smart-A project (Stamminger 2009) and the EU energy labels give: a washing machine about
#: 1 kWh in 2 h (heating the water first), a dishwasher about 1.2 kWh in 2 h (two heating
#: phases), a tumble dryer about 2.5 kWh in 75 min; the phase shapes are ours.
APPLIANCE_CYCLES: dict[str, tuple[tuple[float, float], ...]] = {
    "washing_machine": ((2.0, 20.0), (0.1, 75.0), (0.4, 25.0)),  # 0.96 kWh, 120 min
    "dishwasher": ((2.0, 20.0), (0.1, 60.0), (2.0, 12.0), (0.05, 28.0)),  # 1.19 kWh, 120 min
    "dryer": ((2.4, 60.0), (0.3, 15.0)),  # 2.48 kWh, 75 min
}


def _phase_table(
    problems: Problems, name: str, value: npt.ArrayLike, n: int | None
) -> FloatArray | None:
    """A per-device phase column: 1-D (one phase each) or 2-D ``(N, K)``, every entry finite."""
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        problems.add(name, "must be numbers (one row of phases per device)")
        return None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        problems.add(name, f"must be 1-D (one phase) or 2-D (devices x phases), got {arr.shape}")
        return None
    if n is not None and arr.shape[0] != n:
        problems.add(name, f"has {arr.shape[0]} rows but the population has {n} devices")
        return None
    problems.check(~np.isfinite(arr).all(axis=1), name, "not a finite number (NaN or infinite)")
    return np.where(np.isfinite(arr), arr, 0.0)


class AppliancePopulation:
    """N shiftable, non-interruptible appliance cycles as arrays; implements ``Population``.

    Parameters
    ----------
    phase_power_kw, phase_duration_s:
        The cycle's profile: one row of phases per device, ``(N, K)`` (rows padded with
        zero-duration phases), or 1-D for one constant power and its duration. Powers >= 0,
        durations >= 0 with a positive total.
    earliest_start_s, latest_finish_s:
        When the device is loaded and when its cycle must be over (seconds from the run's
        start); the window must hold the cycle.
    band_k:
        Width of the bidding band in standard deviations (``mean +- k sigma``), >= 0.
    start_s:
        Start of a cycle already running (NaN, the default, for one waiting to start).
    labels:
        What each device is (e.g. ``"dishwasher"``), for reports; default ``"appliance"``.
    ids:
        One unique id per device (default ``appliance-0 ...``).

    Raises
    ------
    ValidationError
        Naming every bad field and device index.

    """

    kind = "appliance"
    id_prefix = "appliance"

    def __init__(
        self,
        *,
        phase_power_kw: npt.ArrayLike,
        phase_duration_s: npt.ArrayLike,
        earliest_start_s: npt.ArrayLike,
        latest_finish_s: npt.ArrayLike,
        band_k: npt.ArrayLike = 1.0,
        start_s: npt.ArrayLike | None = None,
        labels: Sequence[str] | None = None,
        ids: npt.ArrayLike | None = None,
    ) -> None:
        problems = Problems(subject="appliance population")
        n_hint = next(
            (np.shape(v)[0] for v in (earliest_start_s, latest_finish_s) if np.ndim(v) == 1), None
        )
        power = _phase_table(problems, "phase_power_kw", phase_power_kw, n_hint)
        duration = _phase_table(problems, "phase_duration_s", phase_duration_s, n_hint)
        if power is not None and duration is not None and power.shape != duration.shape:
            problems.add(
                "phase_duration_s",
                f"must have the shape of phase_power_kw {power.shape}, got {duration.shape}",
            )
            power = duration = None
        rows = [t.shape[0] for t in (power, duration) if t is not None]
        n, c = _validated_columns(
            problems,
            {
                "earliest_start_s": earliest_start_s,
                "latest_finish_s": latest_finish_s,
                "band_k": band_k,
            },
            n_hint if n_hint is not None else (rows[0] if rows else None),
        )
        # a running cycle's start; NaN (the default) is a cycle waiting to start
        start = np.full(n, np.nan)
        if start_s is not None:
            given = np.asarray(start_s, dtype=np.float64)
            if given.ndim > 1 or (given.ndim == 1 and given.size != n):
                problems.add("start_s", f"must be a scalar or one value per device ({n})")
            else:
                start = np.array(np.broadcast_to(given, (n,)))
                problems.check(np.isinf(start), "start_s", "must be finite, or NaN (waiting)")
        started = np.isfinite(start)
        if power is None or duration is None:
            power = np.zeros((n, 1))
            duration = np.ones((n, 1))
        problems.check((power < 0).any(axis=1), "phase_power_kw", "must not be negative")
        problems.check((duration < 0).any(axis=1), "phase_duration_s", "must not be negative")
        total = duration.sum(axis=1)
        problems.check(total <= 0, "phase_duration_s", "the cycle must last more than 0 s")
        es, lf = c["earliest_start_s"], c["latest_finish_s"]
        problems.check(
            lf - es < total,
            "latest_finish_s",
            "must leave room for the whole cycle after earliest_start_s",
        )
        problems.check(c["band_k"] < 0, "band_k", "must be >= 0")
        problems.check(
            started & ((start < es) | (start > lf - total)),
            "start_s",
            "a running cycle must have started inside [earliest_start_s, latest start]",
        )
        if labels is None:
            label_arr = np.full(n, "appliance")
        else:
            label_arr = np.asarray(labels, dtype=np.str_)
            if label_arr.shape != (n,):
                problems.add(
                    "labels", f"must be one string per device ({n}), got {label_arr.shape}"
                )
                label_arr = np.full(n, "appliance")
        self._ids = _population_ids(problems, ids, n, self.id_prefix)
        problems.raise_if_any()
        self._n = n
        self.phase_power_kw = _readonly(power)
        self.phase_duration_s = _readonly(duration)
        self.duration_s = _readonly(total)
        self.earliest_start_s = _readonly(es)
        self.latest_finish_s = _readonly(lf)
        self.latest_start_s = _readonly(lf - total)
        self.band_k = _readonly(c["band_k"])
        self.labels = label_arr
        self.labels.setflags(write=False)
        # cumulative phase ends (s from the cycle's start) and energy at them (kWh)
        self._phase_end_s = np.cumsum(duration, axis=1)
        self._cycle_energy_kwh = _readonly(
            np.asarray((power * duration).sum(axis=1) / _SECONDS_PER_HOUR, dtype=np.float64)
        )
        # state: the start of each cycle (NaN while waiting) and the energy metered so far
        self.start_s = np.where(started, start, np.nan)
        self.metered_kwh = np.zeros(n)
        self._curves: BidCurves | None = None
        self._bid_interval: MarketInterval | None = None
        self._bid_start_s = np.full(n, np.nan)  # where an awarded cycle starts (NaN: no bid)
        self._bid_must = np.zeros(n, dtype=bool)

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        kind_share: tuple[float, float, float] = (0.45, 0.35, 0.20),
        morning_share: float = 0.5,
        morning_h: tuple[float, float] = (7.0, 9.0),
        evening_h: tuple[float, float] = (18.0, 21.0),
        window_h: tuple[float, float] = (6.0, 12.0),
        power_scale: tuple[float, float] = (0.85, 1.15),
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Draw ``n`` appliance cycles (hours from the run's start).

        Each device is a washing machine, dishwasher or dryer with probabilities ``kind_share``
        (:data:`APPLIANCE_CYCLES`, powers scaled by ``U(power_scale)``), loaded in the morning
        (``U(morning_h)``) with probability ``morning_share``, else in the evening
        (``U(evening_h)``), and due ``U(window_h)`` hours later. The defaults are illustrative
        (loading in the morning or evening, the finish-by windows of 6-12 h that smart-appliance
        studies assume), not fitted to a survey. Times are rounded to whole seconds.
        """
        n = _check_sample_args(n, rng, cls.kind)
        problems = Problems(subject="appliance sample")
        share = np.asarray(kind_share, dtype=np.float64)
        if share.shape != (3,) or (share < 0).any() or not np.isclose(share.sum(), 1.0):
            problems.add("kind_share", "must be three shares >= 0 summing to 1")
        if not 0.0 <= morning_share <= 1.0:
            problems.add("morning_share", "must be in [0, 1]")
        for name, (lo, hi) in (
            ("morning_h", morning_h),
            ("evening_h", evening_h),
            ("window_h", window_h),
            ("power_scale", power_scale),
        ):
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                problems.add(name, f"must be a range 0 <= low <= high, got ({lo}, {hi})")
        longest_h = max(sum(d for _, d in p) for p in APPLIANCE_CYCLES.values()) / 60.0
        if window_h[0] < longest_h:
            problems.add("window_h", f"must be at least {longest_h:g} h (the longest cycle)")
        problems.raise_if_any()
        names = list(APPLIANCE_CYCLES)
        k_max = max(len(p) for p in APPLIANCE_CYCLES.values())
        table_p = np.zeros((3, k_max))
        table_d = np.zeros((3, k_max))
        for j, name in enumerate(names):
            for k, (p_kw, d_min) in enumerate(APPLIANCE_CYCLES[name]):
                table_p[j, k], table_d[j, k] = p_kw, d_min * 60.0
        which = rng.choice(3, size=n, p=share / share.sum())
        scale = rng.uniform(*power_scale, n)
        morning = rng.random(n) < morning_share
        load_h = np.where(morning, rng.uniform(*morning_h, n), rng.uniform(*evening_h, n))
        window = rng.uniform(*window_h, n)
        start = np.round(load_h * 3600.0)
        return cls(
            phase_power_kw=table_p[which] * scale[:, None],
            phase_duration_s=table_d[which],
            earliest_start_s=start,
            latest_finish_s=start + np.round(window * 3600.0),
            band_k=rng.uniform(0.5, 1.5, n),
            labels=[names[j] for j in which],
            ids=ids,
        )

    # ---------------------------------------------------------------- state

    @property
    def n_devices(self) -> int:
        """Number of appliances."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Id of every appliance."""
        return self._ids

    @property
    def cycle_energy_kwh(self) -> FloatArray:
        """Energy of each device's whole cycle (kWh)."""
        return self._cycle_energy_kwh

    def waiting(self) -> BoolArray:
        """Devices whose cycle has not started."""
        return np.asarray(np.isnan(self.start_s))

    def finish_s(self) -> FloatArray:
        """When each started cycle ends (NaN while waiting)."""
        return np.asarray(self.start_s + self.duration_s, dtype=np.float64)

    def _energy_first_kwh(self, elapsed_s: FloatArray) -> FloatArray:
        """The profile's energy in the first ``elapsed_s`` seconds of each cycle (kWh)."""
        ends = self._phase_end_s
        begins = ends - self.phase_duration_s
        inside = np.clip(elapsed_s[:, None] - begins, 0.0, self.phase_duration_s)
        return np.asarray(
            (self.phase_power_kw * inside).sum(axis=1) / _SECONDS_PER_HOUR, dtype=np.float64
        )

    def _energy_between_kwh(self, start_s: FloatArray, a: float, b: float) -> FloatArray:
        """Energy of cycles started at ``start_s`` (NaN: none) in ``[a, b)``."""
        s = np.where(np.isnan(start_s), np.inf, start_s)
        d = self.duration_s
        hi = np.clip(b - s, 0.0, d)
        lo = np.clip(a - s, 0.0, d)
        return np.asarray(self._energy_first_kwh(hi) - self._energy_first_kwh(lo), dtype=np.float64)

    # ---------------------------------------------------------------- protocol

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """One block per device for ``interval`` (module docstring): by urgency, or at the cap."""
        stats, interval = _check_bid_args(price_stats, interval, weather)
        s, e = float(interval.start_s), float(interval.end_s)
        cap, floor = stats.price_cap_per_kwh, stats.price_floor_per_kwh
        waiting = self.waiting()
        t0 = np.maximum(s, self.earliest_start_s)
        can_start = waiting & (t0 < e) & (t0 <= self.latest_start_s)
        must_start = can_start & (self.latest_start_s < e)
        planned = np.where(can_start, t0, np.nan)
        start = np.where(waiting, planned, self.start_s)
        energy = self._energy_between_kwh(start, s, e)
        slack = self.latest_start_s - self.earliest_start_s
        with np.errstate(divide="ignore", invalid="ignore"):
            urgency = np.where(slack > 0, (t0 - self.earliest_start_s) / slack, 1.0)
        urgency = np.clip(urgency, 0.0, 1.0)
        band = self.band_k * stats.std_per_kwh
        p_lo = np.clip(stats.mean_per_kwh - band, floor, cap)
        p_hi = np.clip(stats.mean_per_kwh + band, floor, cap)
        price = np.where(must_start | ~waiting, cap, p_lo + urgency * (p_hi - p_lo))
        power = energy * _SECONDS_PER_HOUR / (e - s)
        prices = np.stack([price, price], axis=1)
        powers = np.stack([power, np.zeros(self._n)], axis=1)
        self._curves = BidCurves._trusted(prices, powers, self._ids)
        self._bid_interval = interval
        self._bid_start_s = planned
        self._bid_must = must_start
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Start the awarded cycles; return each device's average power over the interval (kW).

        A waiting device starts at its bid's start when its block is awarded (a fill of at least
        one half at its price) or when it must; a running one keeps running.
        """
        _, power = _power_on_curve(self._curves, self.kind, clearing_price, marginal_fill, self._n)
        assert self._curves is not None and self._bid_interval is not None
        block = self._curves.power_kw[:, 0]
        planned = self._bid_start_s
        # a cycle is one or nothing: the nearer of the two at a marginal fill (a block of zero
        # power, a cycle that begins with an idle phase, starts at or below its price)
        price = np.broadcast_to(np.asarray(clearing_price, dtype=np.float64), (self._n,))
        offered = np.where(
            block > 0, power >= 0.5 * block, price <= self._curves.price_per_kwh[:, 0]
        )
        awarded = np.isfinite(planned) & (self._bid_must | offered)
        self.start_s = np.where(awarded & self.waiting(), planned, self.start_s)
        iv = self._bid_interval
        energy = self._energy_between_kwh(self.start_s, float(iv.start_s), float(iv.end_s))
        self._bid_start_s = np.full(self._n, np.nan)  # an award is used once
        return np.asarray(energy * _SECONDS_PER_HOUR / iv.duration_s, dtype=np.float64)

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Meter every running cycle exactly over ``[time_s, time_s + dt_s)``.

        A waiting device whose latest start falls in the step starts there on its own timer.
        """
        t, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        late = self.waiting() & (self.latest_start_s < t + dt)
        self.start_s = np.where(late, np.maximum(self.latest_start_s, t), self.start_s)
        energy = self._energy_between_kwh(self.start_s, float(t), float(t + dt))
        self.metered_kwh = self.metered_kwh + energy
        return StepResult(
            power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy, ids=self._ids
        )

    def unserved_kwh(self, time_s: float) -> FloatArray:
        """Energy of cycles due by ``time_s`` that were not run in full by then (kWh).

        Computed from the start times and the profile, not from the metered sums, so a cycle
        that ran in full counts exactly 0 whatever the physics step was.
        """
        due = self.latest_finish_s <= time_s
        elapsed = np.where(np.isnan(self.start_s), 0.0, np.maximum(time_s - self.start_s, 0.0))
        run_kwh = self._energy_first_kwh(np.minimum(elapsed, self.duration_s))
        done = ~np.isnan(self.start_s) & (self.finish_s() <= time_s)
        left = np.where(done, 0.0, np.maximum(self._cycle_energy_kwh - run_kwh, 0.0))
        return np.where(due, left, 0.0)
