"""Electric water heaters: GridLAB-D's one-node tank, a deadband thermostat, ramp-mode bidding.

Physics: GridLAB-D ``residential/waterheater.cpp``, one-node (``ONENODE``) model, as documented in
the GridLAB-D *Residential Module User's Guide* (water heater) and Taylor et al., PNNL-27211
(2018). The tank is one fully mixed node of capacity ``C = rho c_p V``::

    C dT/dt = Q_element - UA (T - T_ambient) - m' c_p (T - T_inlet)

With the element's state and the draw constant over a step this is a linear first-order ODE with
constant coefficients, solved exactly: ``T(t) = T_inf + (T0 - T_inf) exp(-lambda t)`` with
``lambda = (UA + G)/C``, ``G = m' c_p`` and ``T_inf = (Q + UA T_amb + G T_in)/(UA + G)``. A
thermostat switch inside a step happens at the exact crossing time
``t = ln((T0 - T_inf)/(T_switch - T_inf)) / lambda``; the step is then solved again from there
(a loop over switching events, vectorized over tanks, until no tank has one left: each event
after a tank's first needs the water to cross the deadband, which takes positive time).
Defaults follow ``waterheater.cpp``: 50 gal tank, 4.5 kW element, ``tank_UA`` about
2 Btu/(h·°F) per 50 gal, setpoint about 125 °F, deadband about 3 °F, inlet water 60 °F.

Draws: the population's ``draw_profile_l_per_h`` (slots x tanks, slot ``k`` covering
``[k slot_s, (k + 1) slot_s)`` from the run's start, cycled; a synthetic morning/evening profile
when sampled) is the flow; a step that spans a slot boundary is cut there, so the draws are exact
and known in advance, which is what the interval bid predicts with. ``step(..., draw_l=...)``
replaces the profile for one step by the litres drawn over it (drawn evenly), which the bid
cannot have known.

Market: the GridLAB-D / Olympic Peninsula ramp controller on tank temperature (a price below
the mean shifts the setpoint up, one above it down; Hammerstrom et al., PNNL-17167), bidding the
average element power over the market interval (Widergren et al., PNNL-27235 Part II) as
:mod:`transactive.devices.hvac` does in heating mode. Two bounding on-times of a
run-first-then-off schedule under the profile's draws: the must-run (the least that keeps the
tank above ``Tmin`` to the interval's end) and the can-run (the most before it reaches
``Tmax``). The curve runs through one point per bid setpoint (``Tmax``, the base setpoint,
``Tmin``: :data:`transactive.devices.ramp.BID_SETPOINT_SHARES`), each at the ramp price whose
shifted setpoint it is, with the power of the on-time in ``[must, can]`` that brings the tank to
that setpoint at the interval's end (closed form: :meth:`WaterHeaterPopulation._end_of_interval_c`,
bracketed Newton iteration), linear between them, then the must-run power as a block at the cap;
each the power the tank then draws under the schedule :meth:`WaterHeaterPopulation.respond`
sets (a dry run of :meth:`WaterHeaterPopulation.step`'s policy where the band cannot be held:
band overrides included; the whole curve is then the must-run power). After ``respond`` the tank
runs its on-time from the interval's start, then stays off; the band's edges override (on at
``Tmin``, off again a deadband above it; off at ``Tmax``). Per tank, the interval energy is its
allocation exactly on the model under the profile's draws (a tank that cannot hold its band has
its on-time solved for by bisection on dry runs); with other draws it differs by what the draws
change. Outside a responded interval the deadband thermostat around ``thermostat_setpoint_c``
(the ramp controller's shifted setpoint, or the base one) governs.

Kernel (issue 17): the tanks' control policy (the physics of ``step`` and of the bid's and the
response's dry runs) runs by default as one fused numba loop over the tanks, on both cores for
large populations (:mod:`transactive.devices._water_heater_kernels`). From the same state over
one step it gives the numpy reference's (``kernel="numpy"``) numbers bit for bit for a tank that
neither switches nor follows a schedule; a switching tank's exponentials and logarithms are the C
library's, a last bit apart, so its temperature is within 1e-9 K, its on-time within 1e-7 s and
its losses within 1e-12 kWh (``tests/devices/test_water_heater_kernels.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, cast

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices import _kernels as _kernel_module
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _Fields,
    _population_ids,
    _readonly,
)
from transactive.devices._kernels import (
    check_kernel,
    checked_kernel,
    checked_response,
    power_on_curves,
    scratch_array,
    state_column,
)
from transactive.devices._steps import StepSeries, WeatherSamples, checked_samples, steps_one_by_one
from transactive.devices.base import Horizon, MarketInterval, PriceStats, StepResult
from transactive.devices.flexibility import (
    BestResponse,
    Flexibility,
    _checked_horizon_weather,
    solve_best_response,
    widened_to_way_back,
)
from transactive.devices.hvac import HEATING
from transactive.devices.ramp import (
    BID_SETPOINT_SHARES,
    _band_bid_points,
    _follow_schedule,
    _interval_curves,
    _on_time_for_s,
    _setpoint_on_times_s,
    ramp_setpoint,
)
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["WaterHeaterPopulation", "synthetic_draw_profile_l_per_h"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

#: Volumetric heat capacity of water, kJ/(l·K) (rho 0.998 kg/l x c_p 4.186 kJ/(kg·K)).
WATER_KJ_PER_L_K = 4.178
_SECONDS_PER_HOUR = 3600.0
_ROOT_TOLERANCE_S = 1e-6
#: The reference finds the bid setpoints' on-times to a millisecond (the response draws the
#: curve exactly either way); the kernel solves them in closed form.
_SETPOINT_TOLERANCE_S = 1e-3
#: The heat accounts every step adds to (kWh).
_ACCOUNTS = ("heat_element_kwh", "heat_standby_loss_kwh", "heat_draw_loss_kwh")
#: The must-run on-time's tolerance and the margin above ``Tmin`` it keeps.
_ON_TIME_TOLERANCE_S = 1e-9
_BAND_MARGIN_C = 1e-9


def _kernels() -> Any:
    """The numba kernel, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _water_heater_kernels  # noqa: PLC0415 - deferred: see docstring

    return _water_heater_kernels


@dataclass(frozen=True)
class _Schedule:
    """A responded interval: tanks run from ``start_s`` to ``switch_s``, then off to ``end_s``."""

    start_s: float
    switch_s: FloatArray
    end_s: float


@dataclass(frozen=True)
class _TankPlan:
    """What an interval bid predicted, kept so that the response can turn power into on-time."""

    interval: MarketInterval
    curves: BidCurves
    stats: PriceStats
    temperature_c: FloatArray
    on: BoolArray
    tau_lo_s: FloatArray
    tau_hi_s: FloatArray
    run_lo_s: FloatArray
    run_hi_s: FloatArray
    linear: BoolArray  # runs exactly its schedule for any on-time in [tau_lo, tau_hi]


@dataclass(frozen=True)
class _TankRun:
    """Tanks over a span: end state, element on-time and the heat losses (kJ) for the accounts."""

    temperature_c: FloatArray
    on: BoolArray
    on_time_s: FloatArray
    standby_loss_kj: FloatArray
    draw_loss_kj: FloatArray


def _tank_advance(
    *,
    temperature_c: FloatArray,
    on: BoolArray,
    q_on_kw: FloatArray,
    ua_kw_per_k: FloatArray,
    draw_kw_per_k: FloatArray,
    base_kw: FloatArray,
    capacity_kj_per_k: FloatArray,
    dt_s: FloatArray,
    switch_on_c: FloatArray,
    switch_off_c: FloatArray,
) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray]:
    """One-node tanks over ``dt_s`` (per tank) with constant draw, switching at exact crossings.

    ``base_kw = UA T_amb + G T_in``. An element that is on switches off at ``T >= switch_off``,
    one that is off switches on at ``T <= switch_on``. The trajectory is a single exponential,
    monotone, so the end of the step tells whether it crosses. Loops until no tank has an event
    left; it ends because ``switch_off > switch_on`` (checked): after an event the water sits on
    the threshold it crossed and must travel the deadband to the next. Returns
    ``(temperature, on, on_time_s, integral of T dt)``.
    """
    gap = switch_off_c - switch_on_c
    if not bool(np.all(gap > 0)):
        bad = np.flatnonzero(~(gap > 0))
        raise ValueError(f"tanks {bad[:10].tolist()}: switch_off_c must be above switch_on_c")
    n = temperature_c.size
    t = temperature_c.copy()
    conductance = ua_kw_per_k + draw_kw_per_k
    lam = conductance / capacity_kj_per_k
    state = np.where(on, t < switch_off_c, t <= switch_on_c)
    on_time = np.zeros(n)
    integral = np.zeros(n)  # integral of T dt, K·s
    remaining = dt_s.copy()
    sel: slice | IntArray = slice(None)
    while True:
        s_on = state[sel]
        r = remaining[sel]
        lam_i = lam[sel]
        t_inf = (base_kw[sel] + np.where(s_on, q_on_kw[sel], 0.0)) / conductance[sel]
        t0 = t[sel].copy()
        t_end = t_inf + (t0 - t_inf) * np.exp(-lam_i * r)
        threshold = np.where(s_on, switch_off_c[sel], switch_on_c[sel])
        cross = np.where(s_on, t_end >= threshold, t_end <= threshold)
        k = np.flatnonzero(cross)
        tau = r.copy()
        if k.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = (t0[k] - t_inf[k]) / (threshold[k] - t_inf[k])
                tau[k] = np.clip(np.log(ratio) / lam_i[k], 0.0, r[k])
            t_end[k] = threshold[k]
        t[sel] = t_end
        on_time[sel] += np.where(s_on, tau, 0.0)
        integral[sel] += t_inf * tau - (t0 - t_inf) * np.expm1(-lam_i * tau) / lam_i
        if k.size == 0:
            return t, state, on_time, integral
        nxt: IntArray = k if isinstance(sel, slice) else sel[k]
        remaining[nxt] -= tau[k]
        state[nxt] = ~state[nxt]
        sel = nxt


def _exp_to(t0: FloatArray, t_inf: FloatArray, lam: FloatArray, span: FloatArray) -> FloatArray:
    """The one-node tank's exact trajectory: ``T_inf + (T0 - T_inf) exp(-lambda span)``."""
    return np.asarray(t_inf + (t0 - t_inf) * np.exp(-lam * span))


def synthetic_draw_profile_l_per_h(
    n: int, rng: np.random.Generator, *, daily_l: tuple[float, float] = (180.0, 0.4)
) -> FloatArray:
    """Hourly hot-water flow (24 x n, l/h): two peaks (about 07:00 and 19:00), shifted per tank.

    A synthetic shape, not a measured data set: each tank's daily volume is lognormal (median,
    log-sd), its morning and evening peaks are shifted by up to ±1.5 h.
    """
    hours = np.arange(24)[:, None] + 0.5
    shift_m = rng.uniform(-1.5, 1.5, n)
    shift_e = rng.uniform(-1.5, 1.5, n)

    def bump(centre: FloatArray, width: float) -> FloatArray:
        d = (hours - centre[None, :] + 12.0) % 24.0 - 12.0
        return np.asarray(np.exp(-0.5 * (d / width) ** 2), dtype=np.float64)

    shape = 0.6 * bump(7.0 + shift_m, 1.2) + 0.4 * bump(19.0 + shift_e, 2.0) + 0.03
    shape /= shape.sum(axis=0, keepdims=True)
    median, sigma = daily_l
    daily = median * np.exp(sigma * rng.standard_normal(n))
    return np.asarray(shape * daily[None, :], dtype=np.float64)


class WaterHeaterPopulation:
    """N electric tank water heaters (one-node model) with ramp-mode interval bidding.

    Parameters (one value per tank; scalars are broadcast)
    ----------
    tank_volume_l, ua_kw_per_k, element_kw:
        Tank volume (l), standby loss conductance UA (kW/K), element power (kW).
    setpoint_c, comfort_min_c, comfort_max_c, deadband_c, ramp_low, ramp_high:
        Thermostat and controller settings (``Tmin < Tset < Tmax``).
    inlet_temperature_c, ambient_temperature_c:
        Cold water inlet and the air around the tank.
    draw_profile_l_per_h:
        Optional ``(n_slots, n)`` flow schedule, slot ``slot_s`` seconds long, slot 0 starting at
        the run's start, cycled.
    temperature_c, on:
        Initial state (default: at the setpoint, off).
    ids:
        One unique id per tank (default ``water_heater-0 ...``).
    kernel:
        ``"numba"`` (default): the tanks' control policy (the physics of :meth:`step` and of the
        bid's and the response's dry runs) runs as one fused numba kernel over the tanks
        (:mod:`transactive.devices._water_heater_kernels`); ``"numpy"``: the vectorized numpy
        reference. From the same state, over one step, they agree bit for bit for a tank whose
        element does not switch inside the step and that follows no schedule; for any other
        tank its switching times' exponentials and logarithms differ in the last bit, so its
        temperature within 1e-9 K, its on-time within 1e-7 s and its losses within 1e-12 kWh
        (:mod:`transactive.devices._water_heater_kernels`; stated and checked, with what follows
        for bids and responses, in ``tests/devices/test_water_heater_kernels.py``). The
        attribute :attr:`kernel` may be changed between calls.
    """

    def __init__(
        self,
        *,
        tank_volume_l: npt.ArrayLike,
        ua_kw_per_k: npt.ArrayLike,
        element_kw: npt.ArrayLike,
        setpoint_c: npt.ArrayLike,
        comfort_min_c: npt.ArrayLike,
        comfort_max_c: npt.ArrayLike,
        deadband_c: npt.ArrayLike = 1.7,
        ramp_low: npt.ArrayLike = 2.0,
        ramp_high: npt.ArrayLike = 2.0,
        inlet_temperature_c: npt.ArrayLike = 15.6,
        ambient_temperature_c: npt.ArrayLike = 20.0,
        temperature_c: npt.ArrayLike | None = None,
        on: npt.ArrayLike | None = None,
        draw_profile_l_per_h: npt.ArrayLike | None = None,
        slot_s: float = 3600.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        f = _Fields("water heater population")
        volume = f.array("tank_volume_l", tank_volume_l)
        ua = f.array("ua_kw_per_k", ua_kw_per_k)
        element = f.array("element_kw", element_kw)
        setpoint = f.array("setpoint_c", setpoint_c)
        tmin = f.array("comfort_min_c", comfort_min_c)
        tmax = f.array("comfort_max_c", comfort_max_c)
        deadband = f.array("deadband_c", deadband_c)
        k_low = f.array("ramp_low", ramp_low)
        k_high = f.array("ramp_high", ramp_high)
        inlet = f.array("inlet_temperature_c", inlet_temperature_c)
        ambient = f.array("ambient_temperature_c", ambient_temperature_c)
        temp = f.array("temperature_c", setpoint if temperature_c is None else temperature_c)
        on_arr = f.array("on", False if on is None else on)
        for name, arr in (
            ("tank_volume_l", volume),
            ("ua_kw_per_k", ua),
            ("element_kw", element),
            ("deadband_c", deadband),
            ("ramp_low", k_low),
            ("ramp_high", k_high),
        ):
            f.rule(arr <= 0, name, "must be positive")
        f.rule(tmin >= tmax, "comfort_min_c", "Tmin must be below Tmax")
        f.rule(
            (tmin < tmax) & ~((tmin < setpoint) & (setpoint < tmax)),
            "setpoint_c",
            "must lie strictly inside [comfort_min_c, comfort_max_c]",
        )
        f.rule((setpoint >= 100.0) | (temp >= 100.0), "setpoint_c/temperature_c", "must be < 100")
        f.rule((on_arr != 0) & (on_arr != 1), "on", "must be True/False (1/0)")
        profile: FloatArray | None = None
        if draw_profile_l_per_h is not None:
            profile = np.array(draw_profile_l_per_h, dtype=np.float64, copy=True)
            if profile.ndim != 2 or (f.n is not None and profile.shape[1] != f.n):
                f.problems.add(
                    "draw_profile_l_per_h",
                    f"must be (n_slots, {f.n}) flows, got shape {profile.shape}",
                )
            else:
                bad = ~(np.isfinite(profile) & (profile >= 0)).all(axis=0)
                f.rule(bad, "draw_profile_l_per_h", "must be finite and >= 0")
        if not (np.isfinite(slot_s) and slot_s > 0):
            f.problems.add("slot_s", f"must be a positive number of seconds, got {slot_s}")
        check_kernel(f.problems, kernel)
        f.raise_if_any()
        n = int(volume.size)
        self._ids = _population_ids(f.problems, ids, n, "water_heater")
        f.raise_if_any()
        self._n = n
        self._kernel = kernel
        #: The kernel's exponentials of whole pieces, by (slot, piece length): see _piece_exps.
        self._exps: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self.tank_volume_l = _readonly(volume)
        self.ua_kw_per_k = _readonly(ua)
        self.element_kw = _readonly(element)
        self.setpoint_c = _readonly(setpoint)
        self.comfort_min_c = _readonly(tmin)
        self.comfort_max_c = _readonly(tmax)
        self.deadband_c = _readonly(deadband)
        self.ramp_low = _readonly(k_low)
        self.ramp_high = _readonly(k_high)
        self.inlet_temperature_c = _readonly(inlet)
        self.ambient_temperature_c = _readonly(ambient)
        self.capacity_kj_per_k = _readonly(volume * WATER_KJ_PER_L_K)
        self.draw_profile_l_per_h = None if profile is None else _readonly(profile)
        self.slot_s = float(slot_s)
        self._direction = np.full(self._n, float(HEATING))
        # state
        self.temperature_c = temp
        self.on: BoolArray = on_arr.astype(bool)
        self.thermostat_setpoint_c = setpoint.copy()
        self._plan: _TankPlan | None = None
        self._schedule: _Schedule | None = None
        # cumulative heat accounts (kWh)
        self.heat_element_kwh = np.zeros(self._n)
        self.heat_standby_loss_kwh = np.zeros(self._n)
        self.heat_draw_loss_kwh = np.zeros(self._n)

    @classmethod
    def sample(cls, n: int, rng: np.random.Generator, *, ids: npt.ArrayLike | None = None) -> Self:
        """Draw ``n`` tanks with GridLAB-D ``waterheater.cpp``-like defaults (converted to SI).

        Volume 40, 50 or 80 gal (151, 189, 303 l); element 4.5 kW (3.5 kW for 40 gal);
        UA ~ N(2.0, 0.2) Btu/(h·°F) per 50 gal; setpoint ~ N(51.7, 2.8) °C clipped to
        [43, 60]; deadband |N(1.1, 0.55)| + 0.55 K; comfort band ±(3..8) K; ramps U(1.5, 3);
        a synthetic two-peak daily draw (:func:`synthetic_draw_profile_l_per_h`). ``n = 0`` gives
        an empty population; a negative ``n`` or an ``rng`` that is not a numpy Generator raises.
        """
        n = _check_sample_args(n, rng, "water heater")
        gallons = rng.choice(np.array([40.0, 50.0, 80.0]), size=n, p=[0.25, 0.6, 0.15])
        volume = gallons * 3.785411784
        ua = np.clip(rng.normal(2.0, 0.2, n), 0.1, 10.0) * gallons / 50.0 * 0.29307107e-3 * 1.8
        element = np.where(gallons == 40.0, 3.5, 4.5)
        setpoint = np.clip(rng.normal(51.7, 2.8, n), 43.0, 60.0)
        deadband = np.abs(rng.normal(1.1, 0.55, n)) + 0.55
        half = rng.uniform(3.0, 8.0, n)
        temp = setpoint + deadband * rng.uniform(-0.5, 0.5, n)
        return cls(
            tank_volume_l=volume,
            ua_kw_per_k=ua,
            element_kw=element,
            setpoint_c=setpoint,
            comfort_min_c=setpoint - half,
            comfort_max_c=setpoint + np.minimum(half, 95.0 - setpoint),
            deadband_c=deadband,
            ramp_low=rng.uniform(1.5, 3.0, n),
            ramp_high=rng.uniform(1.5, 3.0, n),
            temperature_c=temp,
            on=rng.random(n) < 0.1,
            draw_profile_l_per_h=synthetic_draw_profile_l_per_h(n, rng),
            ids=ids,
        )

    @property
    def n_devices(self) -> int:
        """Number of tanks."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Stable id of every tank."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernel) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "water heater population")

    # ------------------------------------------------------------------ market

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Each tank's average element power over ``interval`` at each price (setpoints' curve).

        The state now is taken as the state at ``interval.start_s``; the draws are the profile's
        over the interval (``weather`` is checked, not used: the tank sits indoors). See the
        module docstring for the blocks; the curves carry :attr:`ids`.
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        duration = float(interval.duration_s)
        temp, on = self.temperature_c.copy(), self.on.copy()
        # the interval's draw pieces as the kernels take them, once for both searches
        fast = self._kernel == "numba" and self._n > 0
        tables = self._piece_tables(interval) if fast else None
        bounds = self._on_time_bounds_kernel(temp, interval, tables)
        tau_lo, tau_hi, linear = bounds or self._on_time_bounds_s(temp, interval)
        # A linear tank runs its schedule exactly; a dry run only for the others (tau_lo = tau_hi)
        run_lo, run_hi = tau_lo.copy(), tau_hi.copy()
        dry = np.flatnonzero(~linear)
        if dry.size:
            run_lo[dry] = self._scheduled_run_s(dry, temp[dry], on[dry], interval, tau_lo[dry])
            run_hi[dry] = run_lo[dry]
        worse = run_lo > run_hi  # never bid a curve that rises with the price
        tau_lo = np.where(worse, tau_hi, tau_lo)
        run_lo = np.where(worse, run_hi, run_lo)
        # The points: Tmax (comfortable), the base setpoint, Tmin, at their ramp prices; each the
        # on-time that brings the tank to that setpoint by the interval's end.
        setpoints, price = self._bid_points(stats)
        tau_points = self._setpoint_on_times_kernel(
            temp, interval, setpoints, tau_lo, tau_hi, linear, tables
        )
        if tau_points is None:  # the reference (and a subclass's own tank)
            tau_points = _setpoint_on_times_s(
                self._end_of_interval_c(temp, interval), setpoints, self._direction,
                tau_lo, tau_hi, linear, tolerance_s=_SETPOINT_TOLERANCE_S,
            )  # fmt: skip
        curves = self._curves(price, tau_points, run_lo, linear, duration, stats)
        self._plan = _TankPlan(
            interval=interval, curves=curves, stats=stats, temperature_c=temp, on=on,
            tau_lo_s=tau_lo, tau_hi_s=tau_hi, run_lo_s=run_lo, run_hi_s=run_hi, linear=linear,
        )  # fmt: skip
        return curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Schedule each tank's on-time for the interval bid for; return its power (its curve's).

        Must follow :meth:`bid`. Each tank reads its average power off its own curve
        (``power_at(price, marginal_fill)``), runs from the interval's start for the on-time that
        draws it on the bid's prediction, then stays off; the band's edges override. The reported
        thermostat setpoint is the ramp controller's shift for the price.
        """
        plan = self._plan
        curves, price, fill = checked_response(
            None if plan is None else plan.curves,
            "water heater",
            clearing_price,
            marginal_fill,
            self._n,
        )
        assert plan is not None
        fast = self._kernel == "numba" and self._n > 0
        power = power_on_curves(curves, price, fill, _kernels().respond if fast else None)
        duration = float(plan.interval.duration_s)
        target = power * duration / self.element_kw

        def dry_run(index: IntArray, tau: FloatArray) -> FloatArray:
            return self._scheduled_run_s(
                index, plan.temperature_c[index], plan.on[index], plan.interval, tau
            )

        tau = _on_time_for_s(
            target, plan.tau_lo_s, plan.tau_hi_s, plan.run_lo_s, plan.run_hi_s, dry_run,
            linear=plan.linear, tolerance_s=_ROOT_TOLERANCE_S,
        )  # fmt: skip
        start = float(plan.interval.start_s)
        self._schedule = _Schedule(start, start + tau, float(plan.interval.end_s))
        self.on = tau > 0
        if fast:  # the same operations per tank: bit for bit
            setpoint = np.empty(self._n)
            floats = np.ascontiguousarray
            _kernels().ramp_setpoints(
                floats(np.reshape(price, -1), dtype=np.float64), floats(self.setpoint_c),
                floats(self._direction, dtype=np.float64), floats(self.comfort_min_c),
                floats(self.comfort_max_c), floats(self.ramp_low), floats(self.ramp_high),
                np.array([plan.stats.mean_per_kwh, plan.stats.std_per_kwh]), setpoint,
            )  # fmt: skip
            self.thermostat_setpoint_c = setpoint
            return power
        self.thermostat_setpoint_c = ramp_setpoint(
            np.broadcast_to(price, (self._n,)),
            self.setpoint_c,
            self._direction,
            self.comfort_min_c,
            self.comfort_max_c,
            self.ramp_low,
            self.ramp_high,
            plan.stats.mean_per_kwh,
            plan.stats.std_per_kwh,
        )
        return power

    def _band(self, sel: slice | IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Uncomfortable (``Tmin``) and comfortable (``Tmax``) edge, override hysteresis."""
        tmin, tmax = self.comfort_min_c[sel], self.comfort_max_c[sel]
        return tmin, tmax, np.minimum(self.deadband_c[sel], 0.5 * (tmax - tmin))

    def _pieces(
        self, start_s: float, dt_s: float, draw_l: FloatArray | None
    ) -> list[tuple[float, float, FloatArray]]:
        """``[start, start + dt)`` cut at the draw profile's slot boundaries: (start, length, l/s).

        The cut instants are the same for every tank, so this loop is over time, not tanks.
        """
        if draw_l is not None:
            return [(start_s, dt_s, draw_l / dt_s)]
        if self.draw_profile_l_per_h is None:
            return [(start_s, dt_s, np.zeros(self._n))]
        profile = self.draw_profile_l_per_h
        slots = profile.shape[0]
        return [
            (t, length, np.asarray(profile[slot % slots] / 3600.0))
            for t, length, slot in self._profile_slots(start_s, dt_s)
        ]

    def _profile_slots(self, start_s: float, dt_s: float) -> list[tuple[float, float, int]]:
        """``[start, start + dt)`` cut at the profile's slot boundaries: (start, length, slot)."""
        end = start_s + dt_s
        pieces = []
        t = start_s
        while t < end:
            slot = int(np.floor(t / self.slot_s))
            stop = min(end, (slot + 1) * self.slot_s)
            if stop <= t:  # t sits on a boundary that rounding put just below
                slot += 1
                stop = min(end, (slot + 1) * self.slot_s)
            pieces.append((t, stop - t, slot))
            t = stop
        return pieces

    def _advance(
        self,
        sel: slice | IntArray,
        temperature_c: FloatArray,
        on: BoolArray,
        start_s: float,
        dt_s: float,
        schedule: _Schedule | None,
        draw_l: FloatArray | None,
    ) -> tuple[FloatArray, BoolArray, _TankRun]:
        """The control policy over ``[start_s, start_s + dt_s)`` for tanks ``sel`` (pure).

        Cut at the draw slots' boundaries (:meth:`_pieces`), then at the schedule's instants
        (:func:`transactive.devices.ramp._follow_schedule`); each piece is solved exactly by
        :func:`_tank_advance`.
        """
        if self._kernel == "numba" and temperature_c.size:
            done = self._advance_kernel(sel, temperature_c, on, start_s, dt_s, schedule, draw_l)
            if done is not None:
                return done
        ua, c = self.ua_kw_per_k[sel], self.capacity_kj_per_k[sel]
        t_amb, t_in = self.ambient_temperature_c[sel], self.inlet_temperature_c[sel]
        q_on = self.element_kw[sel]
        half = 0.5 * self.deadband_c[sel]
        plain_on = self.thermostat_setpoint_c[sel] - half
        plain_off = self.thermostat_setpoint_c[sel] + half
        unc, comf, hysteresis = self._band(sel)
        m = temperature_c.size
        follows = np.full(m, schedule is not None)
        acc = {
            "t": temperature_c.copy(),
            "on_time": np.zeros(m),
            "standby": np.zeros(m),
            "draw": np.zeros(m),
        }
        for piece_start, piece_s, flow in self._pieces(start_s, dt_s, draw_l):
            g = (flow[sel] if draw_l is None else flow) * WATER_KJ_PER_L_K  # kW/K
            base = ua * t_amb + g * t_in

            def advance(
                idx: slice | IntArray,
                on_now: BoolArray,
                span_s: FloatArray,
                switch_on: FloatArray,
                switch_off: FloatArray,
                g: FloatArray = g,
                base: FloatArray = base,
            ) -> BoolArray:
                ua_i, g_i = ua[idx], g[idx]
                t_new, on_new, run_s, integral = _tank_advance(
                    temperature_c=acc["t"][idx], on=on_now, q_on_kw=q_on[idx], ua_kw_per_k=ua_i,
                    draw_kw_per_k=g_i, base_kw=base[idx], capacity_kj_per_k=c[idx], dt_s=span_s,
                    switch_on_c=switch_on, switch_off_c=switch_off,
                )  # fmt: skip
                acc["t"][idx] = t_new
                acc["on_time"][idx] += run_s
                acc["standby"][idx] += ua_i * (integral - t_amb[idx] * span_s)
                acc["draw"][idx] += g_i * (integral - t_in[idx] * span_s)
                return on_new

            on = _follow_schedule(
                start_s=piece_start,
                dt_s=piece_s,
                on=on,
                follows=follows,
                begin_s=0.0 if schedule is None else schedule.start_s,
                switch_s=np.zeros(m) if schedule is None else schedule.switch_s[sel],
                finish_s=0.0 if schedule is None else schedule.end_s,
                uncomfortable_c=unc,
                comfortable_c=comf,
                hysteresis_c=hysteresis,
                direction=self._direction[sel],
                plain_on_c=plain_on,
                plain_off_c=plain_off,
                advance=advance,
            )
        run = _TankRun(acc["t"], on, acc["on_time"], acc["standby"], acc["draw"])
        return acc["t"], on, run

    def _piece_exps(
        self, key: tuple[object, ...], flow_l_per_s: Callable[[], FloatArray], piece_s: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """A whole piece's draw conductance ``G`` and ``exp(-λ s)``, ``expm1(-λ s)`` (all tanks).

        The reference's operations (numpy, the same SIMD functions), so a tank that runs the
        piece through takes exactly the reference's values. A draw profile's piece depends on
        its slot and length only (the parameter arrays are read-only): kept under ``key``, so
        the steps of one slot compute them once, and computed again if an attribute they come
        from has been replaced; ``key`` empty for draws given to one step.
        """
        cached = self._exps.get(key) if key else None
        params = (self.ua_kw_per_k, self.capacity_kj_per_k, self.draw_profile_l_per_h)
        if cached is not None and all(a is b for a, b in zip(cached[3:], params, strict=True)):
            return cached[0], cached[1], cached[2]
        g = flow_l_per_s() * WATER_KJ_PER_L_K
        lam = (self.ua_kw_per_k + g) / self.capacity_kj_per_k
        exps = (g, np.exp(-lam * piece_s), np.expm1(-lam * piece_s))
        if key:
            if len(self._exps) > 64:  # a long run visits many slots: keep the recent ones
                self._exps.clear()
            self._exps[key] = (*exps, *params)
        return exps

    def _advance_kernel(
        self,
        sel: slice | IntArray,
        temperature_c: FloatArray,
        on: BoolArray,
        start_s: float,
        dt_s: float,
        schedule: _Schedule | None,
        draw_l: FloatArray | None,
    ) -> tuple[FloatArray, BoolArray, _TankRun] | None:
        """:meth:`_advance` by the fused kernel; None where the reference must run instead.

        The reference runs (and raises) for tanks whose thresholds cross (a switch-off not above
        the switch-on), and for a state the kernel cannot read as it is. ``draw_l`` (one
        step's draws) only here, with one step.
        """
        spans = [(start_s, dt_s, schedule is not None)]
        args = self._kernel_arguments(sel, temperature_c, on, spans, schedule, draw_l)
        bad, out = (1, ()) if args is None else self._run_advance(args, 1, None, False)
        if bad:
            return None
        t_new, on_new, on_time, standby, drawn = out[:5]
        return t_new, on_new, _TankRun(t_new, on_new, on_time[0], standby[0], drawn[0])

    def _step_pieces(
        self, start_s: float, dt_s: float, draw_l: FloatArray | None
    ) -> list[tuple[float, float, FloatArray, FloatArray, FloatArray]]:
        """A step's pieces for the kernel: start, length, draw conductance and exponentials."""
        if draw_l is not None:
            g, e, m = self._piece_exps((), lambda: draw_l / dt_s, dt_s)
            return [(start_s, dt_s, g, e, m)]
        if self.draw_profile_l_per_h is None:
            g, e, m = self._piece_exps(("none", dt_s), lambda: np.zeros(self._n), dt_s)
            return [(start_s, dt_s, g, e, m)]
        profile = self.draw_profile_l_per_h
        pieces = []
        for t, length, slot in self._profile_slots(start_s, dt_s):
            row = slot % profile.shape[0]

            def flow(row: int = row) -> FloatArray:
                return np.asarray(profile[row] / 3600.0)

            pieces.append((t, length, *self._piece_exps((row, length), flow, length)))
        return pieces

    def _run_advance(
        self, args: tuple[Any, ...], steps: int, accounts: list[FloatArray] | None, record: bool
    ) -> tuple[int, tuple[Any, ...]]:
        """The step kernel on ``args`` (:meth:`_kernel_arguments`) over ``steps`` steps.

        Both cores when the work (tanks x steps) pays the second thread's wake-up. With
        ``accounts`` (element, standby, draw) it books them (the kernel's ``book``: the new
        ones in working arrays kept between calls, copied out by the caller), else it keeps
        each step's on-time and losses. Returns the tanks refused (crossed thresholds) and
        the outputs: temperature, state, the per-step on-time, standby and draw (S, M; empty
        when booking), the new accounts (3, M), the energy over the steps, each chunk's energy
        per step, and with ``record`` each step's energy (S, M).
        """
        m = args[0].size
        kernel = _kernels().advance
        parallel = m * steps >= min(
            _kernel_module.HEAVY_PARALLEL_MIN_ELEMENTS, _kernel_module.PARALLEL_MIN_ELEMENTS
        )
        chunks = max(1, min(m, _kernels().numba.get_num_threads())) if parallel else 1
        book = accounts is not None
        per_step = (0, 0) if book else (steps, m)
        empty = np.empty(0)
        outputs = (
            np.empty(m), np.empty(m, dtype=bool), np.empty(per_step), np.empty(per_step),
            np.empty(per_step), scratch_array(self, "accounts", (3, m)) if book else empty[None],
            np.empty(m) if book else empty, np.zeros((chunks, steps)),
            np.empty((steps, m) if record else (0, 0)),
        )  # fmt: skip
        given = [np.ascontiguousarray(a) for a in accounts] if accounts is not None else [empty] * 3
        bad = (kernel.parallel if parallel else kernel.serial)(
            *args, chunks, book, *given, record, *outputs
        )
        return int(bad), outputs

    def _kernel_arguments(
        self,
        sel: slice | IntArray,
        temperature_c: FloatArray,
        on: BoolArray,
        spans: Sequence[tuple[float, float, bool]],
        schedule: _Schedule | None,
        draw_l: FloatArray | None,
    ) -> tuple[Any, ...] | None:
        """The step kernels' inputs for tanks ``sel`` over ``spans``; None for the reference.

        None where the state cannot be read as it is (the reference runs instead). The steps'
        pieces: each distinct one once (the steps of one profile slot share its cached
        arrays), piece ``(k, p)`` reading row ``piece_row[k, p]`` of the tables.
        """
        temperature = state_column(temperature_c, temperature_c.size)
        state = np.asarray(on)
        if temperature is None or state.dtype != np.bool_ or state.shape != temperature.shape:
            return None
        state = np.ascontiguousarray(state)
        pieces = [self._step_pieces(start, dt, draw_l) for start, dt, _ in spans]
        gathered = not isinstance(sel, slice)
        m_count = temperature.size
        n_steps, most = len(pieces), max(len(step) for step in pieces)
        distinct: dict[tuple[int, int, int], int] = {}
        piece_row = np.zeros((n_steps, most), dtype=np.int64)
        firsts: list[tuple[float, float, FloatArray, FloatArray, FloatArray]] = []
        for k, step in enumerate(pieces):
            for p, piece in enumerate(step):
                # (the pieces are all alive here: their ids cannot repeat)
                row = distinct.setdefault((id(piece[2]), id(piece[3]), id(piece[4])), len(distinct))
                if row == len(firsts):
                    firsts.append(piece)
                piece_row[k, p] = row

        def rows(column: int) -> FloatArray:
            if len(firsts) == 1 and not gathered:
                return cast(FloatArray, firsts[0][column])[None, :]
            return np.stack([cast(FloatArray, piece[column])[sel] for piece in firsts])

        def times(column: int) -> FloatArray:
            out = np.zeros((n_steps, most))
            for k, step in enumerate(pieces):
                out[k, : len(step)] = [piece[column] for piece in step]
            return out

        floats = np.ascontiguousarray
        return (
            temperature, state, floats(self.ua_kw_per_k[sel]),
            floats(self.capacity_kj_per_k[sel]), floats(self.ambient_temperature_c[sel]),
            floats(self.inlet_temperature_c[sel]), floats(self.element_kw[sel]),
            floats(self.thermostat_setpoint_c[sel], dtype=np.float64),
            floats(self.deadband_c[sel]), floats(self.comfort_min_c[sel]),
            floats(self.comfort_max_c[sel]), floats(self._direction[sel], dtype=np.float64),
            np.array([follows for _, _, follows in spans], dtype=bool),
            0.0 if schedule is None else float(schedule.start_s),
            np.zeros(m_count) if schedule is None else floats(schedule.switch_s[sel]),
            0.0 if schedule is None else float(schedule.end_s),
            np.array([len(step) for step in pieces], dtype=np.int64), times(0), times(1),
            piece_row, rows(2), rows(3), rows(4),
        )  # fmt: skip

    def _on_time_bounds_s(
        self, temperature_c: FloatArray, interval: MarketInterval
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Must-run and can-run on-time of a run-first-then-off schedule under the profile.

        ``tau_hi``: the first time the heating tank reaches ``Tmax`` (per draw piece, the exact
        crossing of its exponential), at most the interval. ``tau_lo``: the least on-time after
        which the tank, left off, stays at or above ``Tmin`` to the interval's end; the lowest
        temperature of the off part is at a piece's end (each piece is monotone) and does not
        decrease with the on-time, so bisection finds it (to :data:`_ON_TIME_TOLERANCE_S`, keeping
        :data:`_BAND_MARGIN_C` above ``Tmin`` so the physics step cannot round onto it); at most
        ``tau_hi``. Only the tanks that need it are searched. Also returns ``linear``: the tanks
        that run exactly their schedule for any on-time in ``[tau_lo, tau_hi]`` (no band
        override); the others cannot hold ``Tmin`` and have ``tau_lo = tau_hi``.
        """
        n = self._n
        ua, c, q_on = self.ua_kw_per_k, self.capacity_kj_per_k, self.element_kw
        tmin, tmax, _ = self._band(slice(None))
        duration = float(interval.duration_s)
        pieces, base = self._interval_pieces(interval)
        exp_to = _exp_to

        # tau_hi: walk the pieces fully on
        t = temperature_c.copy()
        tau_hi = np.where(t >= tmax, 0.0, np.nan)
        for (a, length, g), b in zip(pieces, base, strict=True):
            lam = (ua + g) / c
            t_inf = (b + q_on) / (ua + g)
            t_end = exp_to(t, t_inf, lam, np.full(n, length))
            hit = np.isnan(tau_hi) & (t_end >= tmax)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = a + np.log((t - t_inf) / (tmax - t_inf)) / lam
            tau_hi = np.where(hit, np.clip(at, a, a + length), tau_hi)
            t = t_end
        tau_hi = np.where(np.isnan(tau_hi), duration, tau_hi)

        def lowest_after(sel: slice | IntArray, tau: FloatArray) -> FloatArray:
            """Lowest temperature of tanks ``sel`` over the off part ``[tau, duration]``."""
            ua_s, c_s, q_s = ua[sel], c[sel], q_on[sel]
            t = temperature_c[sel]
            low = np.full(t.size, np.inf)
            for (a, length, g), b in zip(pieces, base, strict=True):
                g_s, b_s = g[sel], b[sel]
                lam = (ua_s + g_s) / c_s
                on_s = np.clip(tau - a, 0.0, length)
                t = exp_to(t, (b_s + q_s) / (ua_s + g_s), lam, on_s)
                low = np.where(tau <= a + length, np.minimum(low, t), low)
                t = exp_to(t, b_s / (ua_s + g_s), lam, length - on_s)
                low = np.where(tau <= a + length, np.minimum(low, t), low)
            return low

        # Only the tanks that would fall below Tmin (by the margin) left off need a search;
        # bisection, each pass over the brackets not yet below the tolerance.
        floor_c = tmin + _BAND_MARGIN_C
        tau_lo = np.zeros(n)
        linear = np.ones(n, dtype=bool)
        needs = np.flatnonzero(lowest_after(slice(None), np.zeros(n)) < floor_c)
        if needs.size:
            hi_all = tau_hi[needs]
            feasible = lowest_after(needs, hi_all) >= floor_c[needs]
            tau_lo[needs] = hi_all  # Tmin cannot be held: run all it can
            linear[needs[~feasible]] = False
            search = needs[feasible]
            lo, hi = np.zeros(search.size), hi_all[feasible]
            active = np.arange(search.size)
            while active.size:
                lo_, hi_ = lo[active], hi[active]
                mid = 0.5 * (lo_ + hi_)
                ok = lowest_after(search[active], mid) >= floor_c[search[active]]
                hi[active] = np.where(ok, mid, hi_)
                lo[active] = np.where(ok, lo_, mid)
                done = (
                    (hi[active] - lo[active] <= _ON_TIME_TOLERANCE_S) | (mid <= lo_) | (mid >= hi_)
                )
                active = active[~done]
            tau_lo[search] = hi
        return tau_lo, tau_hi, linear

    def _interval_pieces(
        self, interval: MarketInterval
    ) -> tuple[list[tuple[float, float, FloatArray]], list[FloatArray]]:
        """The interval cut at the profile's slots, and each piece's ``UA T_amb + G T_in`` (kW).

        A piece is ``(start from the interval's start, length, draw conductance kW/K)``.
        """
        ua = self.ua_kw_per_k
        start = float(interval.start_s)
        pieces = [
            (a - start, length, flow * WATER_KJ_PER_L_K)
            for a, length, flow in self._pieces(start, float(interval.duration_s), None)
        ]
        base = [ua * self.ambient_temperature_c + g * self.inlet_temperature_c for *_, g in pieces]
        return pieces, base

    def _end_of_interval_c(
        self, temperature_c: FloatArray, interval: MarketInterval
    ) -> Callable[[slice | IntArray, FloatArray], tuple[FloatArray, FloatArray]]:
        """``end(index, tau) -> (T(end), dT(end)/dtau)`` of a run-first-then-off schedule.

        Tanks ``index`` from ``temperature_c`` heat for ``tau`` and are then off to the
        interval's end under the profile's draws, each draw piece solved exactly (no
        thresholds: for a tank that holds its band on the schedule). Moving the switch-off later
        by ``dtau`` adds ``Q dtau / C`` at ``tau``, which decays by ``exp(-lambda s)`` over each
        piece ``s`` of the off part (the one-node tank is linear), so the slope is
        ``Q / C x exp(-sum lambda_k off_k)``.
        """
        ua, c, q_on = self.ua_kw_per_k, self.capacity_kj_per_k, self.element_kw
        pieces, base = self._interval_pieces(interval)

        def end(sel: slice | IntArray, tau: FloatArray) -> tuple[FloatArray, FloatArray]:
            ua_s, c_s, q_s = ua[sel], c[sel], q_on[sel]
            t = temperature_c[sel]
            decay = np.zeros(t.size)  # sum over the pieces of lambda x off-time
            for (a, length, g), b in zip(pieces, base, strict=True):
                g_s, b_s = g[sel], b[sel]
                lam = (ua_s + g_s) / c_s
                on_s = np.clip(tau - a, 0.0, length)
                t = _exp_to(t, (b_s + q_s) / (ua_s + g_s), lam, on_s)
                t = _exp_to(t, b_s / (ua_s + g_s), lam, length - on_s)
                decay += lam * (length - on_s)
            return t, np.asarray(q_s / c_s * np.exp(-decay))

        return end

    def _curves(
        self,
        price: FloatArray,
        tau_points: FloatArray,
        run_lo: FloatArray,
        linear: BoolArray,
        duration: float,
        stats: PriceStats,
    ) -> BidCurves:
        """The bid's curves from its points' prices and on-times and the must-run on-time.

        By the fused kernel (the same operations: bit for bit) or the reference's numpy.
        """
        element = self.element_kw
        if self._kernel == "numba" and self._n:
            shape = (self._n, price.shape[1] + 2)
            prices, powers = np.empty(shape), np.empty(shape)
            floats = np.ascontiguousarray
            _kernels().interval_curves(
                floats(price, dtype=np.float64), floats(tau_points, dtype=np.float64),
                floats(run_lo, dtype=np.float64), floats(linear, dtype=np.bool_),
                floats(element, dtype=np.float64), duration, stats.price_cap_per_kwh, prices,
                powers,
            )  # fmt: skip
            return BidCurves._trusted(prices, powers, self._ids)
        run_points = np.where(linear[:, None], tau_points, run_lo[:, None])
        return _interval_curves(
            price, element[:, None] * run_points / duration, element * run_lo / duration,
            stats.price_cap_per_kwh, self._ids,
        )  # fmt: skip

    def _bid_points(self, stats: PriceStats) -> tuple[FloatArray, FloatArray]:
        """The bid's setpoints and their ramp prices within the floor and the cap, ``(N, J)``.

        By the fused kernel (the same operations: bit for bit) or the reference's numpy.
        """
        if self._kernel == "numba" and self._n:
            shares = np.asarray(BID_SETPOINT_SHARES, dtype=np.float64)
            setpoints = np.empty((self._n, shares.size))
            price = np.empty((self._n, shares.size))
            floats = np.ascontiguousarray
            _kernels().bid_points(
                floats(self.setpoint_c), floats(self.comfort_max_c), floats(self.comfort_min_c),
                floats(self.comfort_min_c), floats(self.comfort_max_c), floats(self.ramp_low),
                floats(self.ramp_high), floats(self._direction, dtype=np.float64), shares,
                np.array([
                    stats.mean_per_kwh, stats.std_per_kwh, stats.price_floor_per_kwh,
                    stats.price_cap_per_kwh,
                ]),
                setpoints, price,
            )  # fmt: skip
            return setpoints, price
        setpoints, price = _band_bid_points(
            self.setpoint_c, self.comfort_max_c, self.comfort_min_c, self._direction,
            self.comfort_min_c, self.comfort_max_c, self.ramp_low, self.ramp_high,
            stats.mean_per_kwh, stats.std_per_kwh,
        )  # fmt: skip
        return setpoints, np.clip(price, stats.price_floor_per_kwh, stats.price_cap_per_kwh)

    def _bid_kernels_run(self, reference: str) -> bool:
        """Whether the bid's kernel standing in for the method ``reference`` runs.

        The numba kernel chosen, tanks to run, and neither that method nor ``_interval_pieces``
        a subclass's own (a subclass's tank takes the reference).
        """
        own = WaterHeaterPopulation
        return (
            self._kernel == "numba"
            and self._n > 0
            and getattr(type(self), reference) is getattr(own, reference)
            and type(self)._interval_pieces is own._interval_pieces
        )

    def _piece_tables(
        self, interval: MarketInterval
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """:meth:`_interval_pieces` as the bid's kernels take them: starts, lengths, (P, N)."""
        pieces, base = self._interval_pieces(interval)
        return (
            np.array([a for a, _, _ in pieces], dtype=np.float64),
            np.array([length for _, length, _ in pieces], dtype=np.float64),
            np.ascontiguousarray(np.stack([g for *_, g in pieces]), dtype=np.float64),
            np.ascontiguousarray(np.stack(base), dtype=np.float64),
        )

    def _on_time_bounds_kernel(
        self,
        temperature_c: FloatArray,
        interval: MarketInterval,
        tables: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = None,
    ) -> tuple[FloatArray, FloatArray, BoolArray] | None:
        """:meth:`_on_time_bounds_s` by the fused kernel; None where the reference must run.

        The reference's walk, search and stopping rules per tank, with the C library's ``exp``
        and ``log`` (``tests/devices/test_water_heater_kernels.py`` states the agreement). The
        reference runs for ``kernel="numpy"`` and for a subclass with its own bounds or pieces.
        """
        if not self._bid_kernels_run("_on_time_bounds_s"):
            return None
        tables = self._piece_tables(interval) if tables is None else tables
        tmin, tmax, _ = self._band(slice(None))
        floats = np.ascontiguousarray
        tau_lo, tau_hi = np.empty(self._n), np.empty(self._n)
        linear = np.empty(self._n, dtype=bool)
        _kernels().on_time_bounds(
            floats(temperature_c, dtype=np.float64), floats(self.ua_kw_per_k),
            floats(self.capacity_kj_per_k), floats(self.element_kw),
            floats(tmin, dtype=np.float64), floats(tmax, dtype=np.float64), *tables,
            float(interval.duration_s), np.array([_ON_TIME_TOLERANCE_S, _BAND_MARGIN_C]),
            tau_lo, tau_hi, linear,
        )  # fmt: skip
        return tau_lo, tau_hi, linear

    def _setpoint_on_times_kernel(
        self,
        temperature_c: FloatArray,
        interval: MarketInterval,
        setpoints_c: FloatArray,
        tau_lo: FloatArray,
        tau_hi: FloatArray,
        linear: BoolArray,
        tables: tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None = None,
    ) -> FloatArray | None:
        """The bid's setpoint on-times by the fused kernel; None where the reference must run.

        ``ramp._setpoint_on_times_s`` on :meth:`_end_of_interval_c`, one loop over the tanks:
        where the reference searches each root (to :data:`_SETPOINT_TOLERANCE_S`), the kernel
        solves the linear tank's end temperature in closed form, so an on-time agrees with the
        reference's within that tolerance and is the root but for rounding
        (``tests/devices/test_water_heater_kernels.py`` checks both).
        The reference runs for ``kernel="numpy"`` and for a subclass with its own tank
        (``_end_of_interval_c`` or ``_interval_pieces`` overridden).
        """
        if not self._bid_kernels_run("_end_of_interval_c"):
            return None
        tables = self._piece_tables(interval) if tables is None else tables
        floats = np.ascontiguousarray
        out = np.empty(setpoints_c.shape)
        kernel = _kernels().setpoint_on_times
        parallel = self._n >= min(
            _kernel_module.HEAVY_PARALLEL_MIN_ELEMENTS, _kernel_module.PARALLEL_MIN_ELEMENTS
        )
        chunks = max(1, min(self._n, _kernels().numba.get_num_threads())) if parallel else 1
        (kernel.parallel if parallel else kernel.serial)(
            floats(temperature_c, dtype=np.float64), floats(self.ua_kw_per_k),
            floats(self.capacity_kj_per_k), floats(self.element_kw), *tables,
            floats(setpoints_c, dtype=np.float64),
            floats(self._direction, dtype=np.float64), floats(tau_lo, dtype=np.float64),
            floats(tau_hi, dtype=np.float64), floats(linear, dtype=np.bool_), chunks, out,
        )  # fmt: skip
        return out

    def _scheduled_run_s(
        self,
        sel: slice | IntArray,
        temperature_c: FloatArray,
        on: BoolArray,
        interval: MarketInterval,
        tau_s: FloatArray,
    ) -> FloatArray:
        """On-time tanks ``sel`` (their state given) run over ``interval`` on schedule ``tau_s``.

        A dry run of :meth:`step`'s policy under the profile's draws (no state changes).
        """
        start = float(interval.start_s)
        switch = np.full(self._n, np.nan)
        switch[sel] = start + tau_s
        schedule = _Schedule(start, switch, float(interval.end_s))
        _, _, run = self._advance(
            sel, temperature_c, on, start, float(interval.duration_s), schedule, None
        )
        return run.on_time_s

    # ------------------------------------------------------------------ physics

    def _checked_draw(self, dt: float, draw_l: npt.ArrayLike | None) -> FloatArray | None:
        if draw_l is None:
            return None
        f = _Fields("water draw")
        f.n = self._n
        d = f.array("draw_l", draw_l, self._n)
        f.rule(d < 0, "draw_l", "must not be negative")
        f.raise_if_any()
        return d

    def step(
        self,
        time_s: int,
        dt_s: int,
        weather: WeatherSample,
        draw_l: npt.ArrayLike | None = None,
    ) -> StepResult:
        """Advance every tank from ``time_s`` by ``dt_s`` seconds exactly; metered element energy.

        ``draw_l`` is the hot water drawn over the step per tank (litres, drawn evenly); without
        it the draw profile gives the flow at each instant. Inside a responded interval the tanks
        follow their schedule, outside it the deadband thermostat governs. ``weather`` is
        checked, not used (the tank sits indoors).
        """
        t0, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        draws = self._checked_draw(float(dt), draw_l)
        temp, on, run = self._advance(
            slice(None), self.temperature_c, self.on, float(t0), float(dt), self._schedule, draws
        )
        energy = self.element_kw * run.on_time_s / _SECONDS_PER_HOUR
        self.heat_element_kwh += energy
        self.heat_standby_loss_kwh += run.standby_loss_kj / _SECONDS_PER_HOUR
        self.heat_draw_loss_kwh += run.draw_loss_kj / _SECONDS_PER_HOUR
        self.temperature_c = temp
        self.on = on
        if self._schedule is not None and t0 + dt >= self._schedule.end_s:
            self._schedule = None  # the responded interval is over: the thermostat governs
        return StepResult(
            power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy, ids=self._ids
        )

    def step_many(
        self,
        time_s: int,
        dt_s: int,
        weather: WeatherSamples,
        *,
        record: bool = False,
        dry_run: bool = False,
    ) -> StepSeries:
        """``len(weather)`` consecutive :meth:`step` calls in one: from ``time_s``, ``dt_s`` each.

        The tanks end in the state, and with the accounts, those steps give them (a responded
        schedule is followed and ends as in :meth:`step`); the draw profile gives the flows.
        With the numba kernel every tank goes through all the steps in one kernel call;
        otherwise (the reference, a subclass with a ``step`` of its own), and where the kernel
        hands a tank back to the reference (which raises for it), it is a loop over
        :meth:`step`. Every sample is checked before anything changes.
        ``record=True`` also keeps each step's energy per tank (T, N). ``dry_run=True`` gives
        the steps' series without changing the tanks (their state, accounts and schedule stay as
        they were): what a deep copy stepped through them gives, without the copy.
        """
        t0, dt = _checked_time_step(time_s, dt_s)
        samples = checked_samples(weather)
        schedule = self._schedule
        steps = len(samples)
        # a subclass's own step is its physics: called step by step
        if self._kernel == "numba" and self._n and type(self).step is WaterHeaterPopulation.step:
            spans, follows = [], schedule is not None
            for k in range(steps):
                start = t0 + k * dt
                spans.append((float(start), float(dt), follows))
                follows = follows and not (schedule is not None and start + dt >= schedule.end_s)
            accounts = [getattr(self, name) for name in _ACCOUNTS]
            if all(  # accounts the kernel can read and write back (any float64 column)
                isinstance(a, np.ndarray)
                and a.dtype == np.float64
                and a.shape == (self._n,)
                and (a.flags.writeable or dry_run)
                for a in accounts
            ):
                series = self._step_many_booked(t0, dt, spans, schedule, record, dry_run, accounts)
                if series is not None:
                    return series
            else:
                args = self._kernel_arguments(
                    slice(None), self.temperature_c, self.on, spans, schedule, None
                )
                bad, out = (1, ()) if args is None else self._run_advance(args, steps, None, False)
                if not bad:
                    return self._book_steps_numpy(t0, dt, schedule, record, dry_run, out[:5])
        # the reference, a step at a time (and a refusal, raised as step raises it)
        return steps_one_by_one(copy.deepcopy(self) if dry_run else self, t0, dt, samples, record)

    def _step_many_booked(
        self,
        t0: int,
        dt: int,
        spans: Sequence[tuple[float, float, bool]],
        schedule: _Schedule | None,
        record: bool,
        dry_run: bool,
        accounts: list[FloatArray],
    ) -> StepSeries | None:
        """:meth:`step_many` by the kernel that keeps the accounts (None: the reference runs).

        One pass over the tanks through all the steps; the new accounts land in working arrays
        kept between calls and are copied into the accounts at the end (in place, as ``step``'s
        ``+=``), or dropped on a dry run or a refusal. The steps' total power sums each thread's
        part of the tanks (as the HVAC's ``step_many``): within rounding of ``step``'s sums.
        """
        args = self._kernel_arguments(
            slice(None), self.temperature_c, self.on, spans, schedule, None
        )
        if args is None:
            return None
        steps = len(spans)
        bad, out = self._run_advance(args, steps, accounts, record)
        if bad:
            return None
        temperature, on, new_accounts, energy, step_energy, record_energy = (
            out[0], out[1], out[5], out[6], out[7], out[8],
        )  # fmt: skip
        if not dry_run:
            for account, value in zip(accounts, new_accounts, strict=True):
                account[...] = value  # in place, as step's +=
        power = step_energy.sum(axis=0) * _SECONDS_PER_HOUR / dt
        return self._stepped(
            (t0, dt, steps, schedule, dry_run), temperature, on, energy, power,
            record_energy if record else None,
        )  # fmt: skip

    def _stepped(
        self,
        call: tuple[int, int, int, _Schedule | None, bool],
        temperature: FloatArray,
        on: BoolArray,
        energy: FloatArray,
        power: FloatArray,
        record_energy: FloatArray | None,
    ) -> StepSeries:
        """``step_many``'s end: the state kept (unless a dry run), and the series.

        ``call`` is ``(t0, dt, steps, schedule, dry_run)``; the schedule ends with the responded
        interval, and the thermostat governs again, as in :meth:`step`.
        """
        t0, dt, steps, schedule, dry_run = call
        if not dry_run:
            self.temperature_c = temperature
            self.on = on
            if schedule is not None and t0 + steps * dt >= schedule.end_s:
                self._schedule = None
        return StepSeries(
            dt_s=dt,
            energy_kwh=energy,
            total_power_kw=power,
            step_energy_kwh=record_energy,
            step_air_temperature_c=None,
            ids=self._ids,
        )

    def _book_steps_numpy(
        self,
        t0: int,
        dt: int,
        schedule: _Schedule | None,
        record: bool,
        dry_run: bool,
        done: tuple[Any, ...],
    ) -> StepSeries:
        """The kernel's steps booked as ``step`` books them, by numpy's in-place additions.

        For accounts replaced by something the booking kernel cannot write back (another
        dtype, a read-only array): each step's ``+=`` on them, as ``step``'s.
        """
        temp, on, on_time, standby, drawn = done
        steps = on_time.shape[0]
        energy = np.zeros(self._n)
        power = np.zeros(steps)
        record_energy = np.empty((steps, self._n)) if record else None
        for k in range(steps):  # the accounts as step keeps them, step after step
            step_kwh = self.element_kw * on_time[k] / _SECONDS_PER_HOUR
            if not dry_run:
                self.heat_element_kwh += step_kwh
                self.heat_standby_loss_kwh += standby[k] / _SECONDS_PER_HOUR
                self.heat_draw_loss_kwh += drawn[k] / _SECONDS_PER_HOUR
            energy += step_kwh
            power[k] = float(np.sum(step_kwh * _SECONDS_PER_HOUR / dt))
            if record_energy is not None:
                record_energy[k] = step_kwh
        return self._stepped(
            (t0, dt, steps, schedule, dry_run), temp, on, energy, power, record_energy
        )

    def stored_heat_kwh(self) -> FloatArray:
        """Heat stored relative to 0 °C, kWh (for energy balances)."""
        return np.asarray(self.capacity_kj_per_k * self.temperature_c / 3600.0, dtype=np.float64)

    # ------------------------------------------------------------------ horizon view

    def period_draws_l(self, horizon: Horizon) -> FloatArray:
        """Hot water each tank's profile draws in each period of ``horizon``, litres ``(T, N)``.

        The profile's flows integrated over ``[start_s + t period_s, start_s + (t + 1)
        period_s)``, cut at its slots' boundaries as :meth:`step` does (zeros without a profile).
        """
        given: object = horizon
        if not isinstance(given, Horizon):
            problems = Problems(subject="water heater draws")
            problems.add("horizon", f"must be a Horizon, got {type(given).__name__}")
            problems.raise_if_any()
        draws = np.zeros((horizon.n_periods, self._n))
        for t, start in enumerate(horizon.starts_s):  # a loop over periods, not tanks
            for _, length, flow in self._pieces(float(start), float(horizon.period_s), None):
                draws[t] += length * flow
        return draws

    def flexibility(self, horizon: Horizon, weather: Sequence[WeatherSample]) -> Flexibility:
        """Each tank's virtual battery over ``horizon`` (``weather``: one sample per period).

        The first-order TCL battery of Hao, Sanandaji, Poolla and Vincent (IEEE Trans. Power
        Systems 30(1), 2015, §II, eq. (1)-(4)) is the one-node tank itself. With the element's
        power ``P`` (resistive: its heat is its electric power, efficiency 1) and the draw
        conductance ``G(t) = m'(t) c_p`` (kW/K), the tank of the module docstring,
        ``C dT/dt = P - UA (T - T_amb) - G (T - T_in)``, is exactly, in ``x = C (T - Tset)``
        (heat above the setpoint, in kWh, equal to electric kWh)::

            dx/dt = (P - P0(t)) - ((UA + G(t)) / C) x
            P0(t) = UA (Tset - T_amb) + G(t) (Tset - T_in)

        The draws, known in advance from the profile, enter twice: their heat at the setpoint
        (``G (Tset - T_in)``, in the baseline ``P0``) and their washing-out of the heat stored
        above or below it (``G x / C``: each litre drawn takes ``rho c_p (T - Tset)`` more than
        at the setpoint, a share ``V_drawn / V_tank`` of ``x``, a decay). Per period ``t`` of
        ``h`` hours, with ``G_t`` the period's mean draw conductance (:meth:`period_draws_l`
        times rho c_p over the period) and ``G_mean`` its mean over the horizon:

        - ``baseline_kw[t] = P0`` at ``G_t``: the power that holds the tank at its base
          setpoint against its standby loss and the period's draws; it varies with the profile.
          In a period whose draws need more heat than the element gives,
          ``baseline_kw > element_kw`` (and ``power_max_kw < 0``: the tank must discharge).
        - ``power_min_kw = -P0`` and ``power_max_kw = element_kw - P0``: the element off or on,
          the power ``P`` between 0 and its rating.
        - ``energy_min_kwh = C (Tmin - Tset)``, ``energy_max_kwh = C (Tmax - Tset)``: the
          comfort band; ``initial_energy_kwh = C (T - Tset)`` at the present temperature.
        - ``retention = exp(-(UA + G_mean) h / C)``: the exact decay over a period at the
          horizon's mean draw (the contract's retention is one number per device); efficiencies
          1.

        Without draws (or with a constant draw) the battery is exact but for the power's shape
        within a period (the model adds ``u h``, the tank ``(1 - retention) u C / (UA + G)``, a
        relative difference about ``(UA + G) h / 2 C``: 0.5 % for a 15-minute period for the
        median sampled tank at its mean draw). Its error is ``(G_t - G_mean) (T - Tset)``, the
        draw's departure from its mean times the offset from the setpoint: a few hundred watts
        for a tank at an edge of its band at the top of a morning peak, pulling towards the
        setpoint. The standby decay alone (``UA / C``) would leave out all of
        ``G_t (T - Tset)``. Measured on 300
        sampled tanks over a day of 15-minute periods at time-of-use prices, each period's
        best-response energy dispatched through :meth:`bid`, :meth:`respond` and :meth:`step`:
        the aggregate misses each period's scheduled energy by 0.3 % RMS and 0.7 % peak of the
        power range (1.4 % and 13 % with ``UA / C`` alone), the day's energy by +2.7 %, and
        every tank stays in its band (``tests/devices/test_thermal_flexibility.py``). Draws
        other than the profile's (``step(..., draw_l=...)``) are not known here.

        A tank whose present temperature is outside its band (or whose draws its element
        cannot carry) gets its fastest way back: its upper bound is raised to the trajectory
        with the element off, then its lower bound lowered to the trajectory with the element
        on (held at the upper bound), only where they were beyond them, so every schedule that
        returns as fast as the tank can is feasible. ``weather`` is checked, not used (the tank
        sits indoors). Reads the state only.
        """
        _checked_horizon_weather(horizon, weather)
        n, t_n = self._n, horizon.n_periods
        c_kwh = self.capacity_kj_per_k / _SECONDS_PER_HOUR  # kWh/K
        setpoint = self.setpoint_c
        # The period's mean draw conductance G = V rho c_p / period (kW/K).
        draw_kw_per_k = self.period_draws_l(horizon) * WATER_KJ_PER_L_K / horizon.period_s
        standby_kw = self.ua_kw_per_k * (setpoint - self.ambient_temperature_c)
        baseline = standby_kw + draw_kw_per_k * (setpoint - self.inlet_temperature_c)
        power_min = -baseline
        power_max = self.element_kw - baseline
        energy_min = np.broadcast_to(c_kwh * (self.comfort_min_c - setpoint), (t_n, n)).copy()
        energy_max = np.broadcast_to(c_kwh * (self.comfort_max_c - setpoint), (t_n, n)).copy()
        initial = c_kwh * (self.temperature_c - setpoint)
        # The exact one-node decay at the horizon's mean draw (docstring), 1/s.
        decay_per_s = (self.ua_kw_per_k + draw_kw_per_k.mean(axis=0)) / self.capacity_kj_per_k
        retention = np.exp(-decay_per_s * float(horizon.period_s))
        # Fastest way back (see the docstring): element off lowest, element on highest.
        energy_min, energy_max = widened_to_way_back(
            initial, retention, power_min, power_max, energy_min, energy_max, horizon.period_h
        )
        ones = np.ones(n)
        return Flexibility(
            horizon=horizon,
            ids=self._ids,
            baseline_kw=baseline,
            power_min_kw=power_min,
            power_max_kw=power_max,
            energy_min_kwh=energy_min,
            energy_max_kwh=energy_max,
            initial_energy_kwh=initial,
            retention=retention,
            charge_efficiency=ones,
            discharge_efficiency=ones.copy(),
        )

    def best_response(
        self,
        prices_per_kwh: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
    ) -> BestResponse:
        """The cheapest schedule inside :meth:`flexibility` at ``prices_per_kwh`` ((T,) or (T, N)).

        Solved by :func:`transactive.devices.flexibility.solve_best_response`; changes no state.
        Each row of ``power_kw`` is a tank's average element power per period; a tank follows it
        by running ``power_kw h / element_kw`` hours in the period, e.g. through :meth:`bid` and
        a :meth:`respond` at that power.
        """
        return solve_best_response(self.flexibility(horizon, weather), prices_per_kwh)
