"""The virtual battery of a thermostatic-load population, and a priority-stack tracker.

Source: Hao, Sanandaji, Poolla, Vincent, "Aggregate flexibility of thermostatically controlled
loads", IEEE Trans. Power Systems 30(1):189-198, 2015 (doi 10.1109/TPWRS.2014.2328865); the
paper's §3.2 role for it: Hu et al., "Transactive Energy: an Effective Mechanism for Balancing
Electric Energy System", Proc. CSEE 2019, §3.2.

Per house, :func:`transactive.devices.tcl_battery.tcl_batteries` gives a battery
``dx/dt = -a x + u`` whose limits hold for the *air* temperature of GridLAB-D's two-node house
(its docstring states and proves the bound: the slow ETP mode is the stored energy, the fast air
mode's excursion ``F u`` is taken off the band). The aggregate battery of a population is built
from those per-house batteries by proportional disaggregation, in the spirit of Hao et al.'s
sufficient battery (their exact expressions are not reproduced; this derivation is ours):

Give house i the share ``β_i = X_i / ΣX`` of the aggregate state, ``x_i = β_i x``, where
``X_i = min(x_hi_i, -x_lo_i)`` is its symmetric energy limit, and let ``a0 = Σ β_i a_i``. Then
``u_i = dx_i/dt + a_i x_i = β_i (u + (a_i - a0) x)`` sums to ``u``; ``|x_i| <= X_i`` whenever
``|x| <= ΣX``; and ``u_i`` lies within the house's held limits ``[u_lo_i, u_hi_i]`` for every
``u`` in ``[-n-, n+]`` if ``n± = min_i (|u_{lo,hi},i| / β_i - |a_i - a0| ΣX)``. Every trajectory of
the aggregate battery is thus a sum of per-house trajectories each inside its bound, so every
house's air stays in its band (``kind="sufficient"``).

``kind="first_order"`` is the same construction on Hao's one-node reduction (``C = UA/|r_slow|``,
capacity ``C Δ/η``, full power range): its state follows the slow mass mode only, and driven
fast toward its limits the air leaves the band first (kept to show the difference, see
``benchmarks/bench_virtual_battery.py``). ``kind="homogeneous"`` sums Hao's batteries (Hao et
al. Theorem 1; exact for identical one-node TCLs, an outer bound otherwise).

:func:`track_power` is a priority-stack controller (Hao et al. §V): compressors are switched on
or off, never run at partial output; the houses whose air is furthest toward the uncomfortable
edge run first until the target power is met to within half the marginal house's power.
:func:`follow_schedule` instead makes every house draw its own scheduled power (a row of a
:class:`~transactive.devices.flexibility.BestResponse`), realising each period's average as
on-time within the period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from transactive.devices.hvac import COOLING, HvacPopulation
from transactive.devices.tcl_battery import TclBatteries, hvac_batteries
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = [
    "TclBatteries",
    "VirtualBattery",
    "follow_schedule",
    "tcl_batteries_of",
    "track_power",
    "virtual_battery_of",
]

FloatArray = npt.NDArray[np.float64]

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class VirtualBattery:
    """A generalized battery ``dx/dt = -a x + u`` with ``u = P - baseline``.

    Attributes
    ----------
    power_min_kw, power_max_kw:
        Limits of the power deviation ``u`` from the baseline (``power_min_kw <= 0``).
    energy_capacity_kwh:
        ``|x| <= energy_capacity_kwh`` (x > 0: pre-cooled / pre-heated, "charged").
    dissipation_per_s:
        Self-dissipation rate ``a``.
    baseline_kw:
        Power that holds every setpoint.

    """

    power_min_kw: float
    power_max_kw: float
    energy_capacity_kwh: float
    dissipation_per_s: float
    baseline_kw: float

    def energy_trajectory_kwh(
        self, deviation_kw: npt.ArrayLike, dt_s: float, initial_kwh: float = 0.0
    ) -> FloatArray:
        """State after each interval of piecewise-constant deviations ``u`` (exact solution)."""
        u = np.asarray(deviation_kw, dtype=np.float64).ravel()
        problems = Problems(subject="virtual battery dispatch")
        problems.check(~np.isfinite(u), "deviation_kw", "not a finite number")
        if not (np.isfinite(dt_s) and dt_s > 0):
            problems.add("dt_s", f"must be positive, got {dt_s}")
        problems.raise_if_any()
        a = self.dissipation_per_s
        decay = np.exp(-a * dt_s)
        gain = (-np.expm1(-a * dt_s) / a if a > 0 else dt_s) / _SECONDS_PER_HOUR
        x = np.empty(u.size)
        state = float(initial_kwh)
        for k in range(u.size):  # a recursion in time, not a loop over devices
            state = decay * state + gain * u[k]
            x[k] = state
        return x

    def is_feasible(
        self, deviation_kw: npt.ArrayLike, dt_s: float, initial_kwh: float = 0.0
    ) -> bool:
        """Whether a deviation profile keeps within the power and energy limits."""
        u = np.asarray(deviation_kw, dtype=np.float64)
        x = self.energy_trajectory_kwh(u, dt_s, initial_kwh)
        power_ok = bool(np.all((u >= self.power_min_kw) & (u <= self.power_max_kw)))
        return power_ok and bool(np.all(np.abs(x) <= self.energy_capacity_kwh))


def tcl_batteries_of(
    population: HvacPopulation, weather: WeatherSample, *, fast_share: float = 0.5
) -> TclBatteries:
    """Each house's battery under ``weather`` (see :mod:`transactive.devices.tcl_battery`).

    ``fast_share`` caps the share of each half band the fast air mode may use; the rest bounds
    the stored energy.
    """
    _check_weather_sample(weather)
    return hvac_batteries(population, weather, fast_share=fast_share)


def _check_weather_sample(weather: object) -> None:
    problems = Problems(subject="virtual battery")
    if not isinstance(weather, WeatherSample):
        problems.add("weather", f"must be a WeatherSample, got {type(weather).__name__}")
    else:
        if not np.isfinite(weather.temperature_c):
            problems.add("weather.temperature_c", "must be a finite number")
        if not (np.isfinite(weather.ghi_w_per_m2) and weather.ghi_w_per_m2 >= 0):
            problems.add("weather.ghi_w_per_m2", "must be finite and >= 0")
    problems.raise_if_any()


def virtual_battery_of(
    population: HvacPopulation,
    weather: WeatherSample,
    *,
    kind: Literal["sufficient", "first_order", "homogeneous"] = "sufficient",
    fast_share: float = 0.5,
) -> VirtualBattery:
    """The aggregate virtual battery of an HVAC population under one weather sample.

    ``kind="sufficient"`` (default): every trajectory inside it can be followed by the houses
    with every air temperature in its band (module docstring; per-house bound in
    :mod:`transactive.devices.tcl_battery`). ``"first_order"``: the same disaggregation on Hao
    et al.'s one-node reduction, not sufficient for the air. ``"homogeneous"``: the plain sum of
    Hao's one-node batteries (their Theorem 1).
    """
    if kind not in ("sufficient", "first_order", "homogeneous"):
        problems = Problems(subject="virtual battery")
        problems.add("kind", f"must be 'sufficient', 'first_order' or 'homogeneous', got {kind!r}")
        problems.raise_if_any()
    b = tcl_batteries_of(population, weather, fast_share=fast_share)
    baseline = float(b.baseline_kw.sum())
    if population.n_devices == 0:
        return VirtualBattery(0.0, 0.0, 0.0, 0.0, 0.0)
    if kind == "homogeneous":
        cap = b.energy_capacity_kwh
        share = cap / cap.sum()
        return VirtualBattery(
            power_min_kw=float(b.power_min_kw.sum()),
            power_max_kw=float(b.power_max_kw.sum()),
            energy_capacity_kwh=float(cap.sum()),
            dissipation_per_s=float(np.sum(share * b.dissipation_per_s)),
            baseline_kw=baseline,
        )
    if kind == "first_order":
        cap, lo, hi = b.energy_capacity_kwh, b.power_min_kw, b.power_max_kw
    else:
        cap = np.maximum(np.minimum(b.energy_max_kwh, -b.energy_min_kwh), 0.0)
        lo, hi = b.held_power_min_kw, b.held_power_max_kw
    return _proportional(cap, lo, hi, b.dissipation_per_s, baseline)


def _proportional(
    cap: FloatArray, lo: FloatArray, hi: FloatArray, a: FloatArray, baseline: float
) -> VirtualBattery:
    """Proportional disaggregation of per-house batteries (module docstring)."""
    total = float(cap.sum())
    if total <= 0.0:
        return VirtualBattery(0.0, 0.0, 0.0, float(np.mean(a)), baseline)
    share = cap / total
    a0 = float(np.sum(share * a))
    spread = np.abs(a - a0) * total * _SECONDS_PER_HOUR  # kW per unit share at |x| = ΣX
    used = share > 0
    n_up = float(np.min(hi[used] / share[used] - spread[used]))
    n_down = float(np.min(-lo[used] / share[used] - spread[used]))
    return VirtualBattery(
        power_min_kw=-max(n_down, 0.0),
        power_max_kw=max(n_up, 0.0),
        energy_capacity_kwh=total,
        dissipation_per_s=a0,
        baseline_kw=baseline,
    )


def track_power(
    population: HvacPopulation, target_kw: float, weather: WeatherSample
) -> npt.NDArray[np.bool_]:
    """Priority-stack dispatch (Hao et al. 2015 §V): switch houses on or off to draw ``target_kw``.

    Houses are ranked by how far their air has moved toward the uncomfortable edge of their
    band (cooling: ``(Ta - Tmin)/(Tmax - Tmin)``); houses run down the stack until the target is
    met, the marginal house runs if more than half its power is wanted, so the commanded total
    is within half a house's power of the target (unless the comfort rules below bind). Houses
    at or past the uncomfortable edge always run and houses at or past the comfortable edge
    never do (comfort first). ``weather`` is the caller's forecast for the coming step (it sets
    each compressor's electric power). Returns which houses run (the command given to
    :meth:`HvacPopulation.command`); the band guard then switches any house at its band's edge.
    """
    problems = Problems(subject="power tracking")
    if not np.isfinite(target_kw):
        problems.add("target_kw", f"must be a finite number, got {target_kw}")
    problems.raise_if_any()
    _check_weather_sample(weather)
    p = population
    t = p.air_temperature_c
    width = p.comfort_max_c - p.comfort_min_c
    position = np.where(
        p.direction == COOLING, (t - p.comfort_min_c) / width, (p.comfort_max_c - t) / width
    )
    power = p.running_power_kw(weather)
    forced_on = position >= 1.0
    forced_off = (position <= 0.0) & ~forced_on
    rank = np.where(forced_on, np.inf, np.where(forced_off, -np.inf, position))
    order = np.argsort(-rank, kind="stable")
    stacked = np.cumsum(power[order])
    before = stacked - power[order]
    # house k in the stack runs when the target reaches past the middle of its block
    run_sorted = target_kw > before + 0.5 * power[order]
    on = np.empty(p.n_devices, dtype=bool)
    on[order] = run_sorted
    on = (on | forced_on) & ~forced_off
    p.command(on)
    return on


def follow_schedule(
    population: HvacPopulation,
    power_kw: npt.ArrayLike,
    *,
    delivered_kwh: npt.ArrayLike,
    elapsed_s: float,
    step_s: float,
    weather: WeatherSample,
) -> npt.NDArray[np.bool_]:
    """Switch each house so that it draws its own scheduled average power over a period.

    For a per-house schedule (a row of :attr:`BestResponse.power_kw`), the period's average
    power is realised as on-time within the period by a first-order sigma-delta modulator
    (a compressor is on or off): house i runs in the coming step of ``step_s`` seconds if the
    energy due by the step's end, ``power_kw[i] (elapsed_s + step_s)``, exceeds what it has
    delivered since the period began (``delivered_kwh[i]``, the caller's sum of
    ``StepResult.energy_kwh``) by more than half a step at full power. Its delivered energy then
    stays within half a step's energy of the schedule until the band guard overrides it.
    Returns the command given to :meth:`HvacPopulation.command`.
    """
    problems = Problems(subject="schedule following")
    n = population.n_devices
    power = np.asarray(power_kw, dtype=np.float64)
    delivered = np.asarray(delivered_kwh, dtype=np.float64)
    for name, arr in (("power_kw", power), ("delivered_kwh", delivered)):
        if arr.shape != (n,):
            problems.add(name, f"must have one value per house ({n},), got {arr.shape}")
        else:
            problems.check(~np.isfinite(arr), name, "not a finite number")
    if not (np.isfinite(elapsed_s) and elapsed_s >= 0):
        problems.add("elapsed_s", f"must be finite and >= 0, got {elapsed_s}")
    if not (np.isfinite(step_s) and step_s > 0):
        problems.add("step_s", f"must be positive, got {step_s}")
    problems.raise_if_any()
    _check_weather_sample(weather)
    full_kw = population.running_power_kw(weather)
    due_kwh = power * (elapsed_s + step_s) / _SECONDS_PER_HOUR
    on = due_kwh - delivered > 0.5 * full_kw * step_s / _SECONDS_PER_HOUR
    population.command(on)
    return np.asarray(on, dtype=bool)
