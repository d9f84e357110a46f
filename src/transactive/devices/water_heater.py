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
(a loop over switching events, vectorized over tanks). Defaults follow ``waterheater.cpp``: 50 gal
tank, 4.5 kW element, ``tank_UA`` about 2 Btu/(h·°F) per 50 gal, setpoint about 125 °F, deadband
about 3 °F, inlet water 60 °F.

Draws: ``step(dt_s, weather, draw_l=...)`` takes the hot water drawn over the step (litres per
tank); without it the population's ``draw_profile_l_per_h`` (slots x tanks, cycled; a synthetic
morning/evening profile when sampled) gives the flow at the step's midpoint.

Market: as the HVAC heating mode (:mod:`transactive.devices.hvac`): the GridLAB-D / Olympic
Peninsula ramp controller on tank temperature (a colder tank bids more), one block of the element's
power, setpoint shift as response, the same marginal rule (duty = ``marginal_fill``).
"""

from __future__ import annotations

from typing import Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_weather,
    _checked_step,
    _Fields,
    _readonly,
)
from transactive.devices.base import PriceStats, StepResult
from transactive.devices.hvac import (
    HEATING,
)
from transactive.devices.ramp import (
    _block_bids,
    _check_price_stats,
    _ramp_response,
    ramp_bid_price,
)
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["WaterHeaterPopulation", "synthetic_draw_profile_l_per_h"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: Volumetric heat capacity of water, kJ/(l·K) (rho 0.998 kg/l x c_p 4.186 kJ/(kg·K)).
WATER_KJ_PER_L_K = 4.178
_MAX_EVENTS = 8
_SECONDS_PER_HOUR = 3600.0


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
    """N electric tank water heaters (one-node model) with ramp-mode bidding.

    Parameters (one value per tank; scalars are broadcast)
    ----------
    tank_volume_l, ua_kw_per_k, element_kw:
        Tank volume (l), standby loss conductance UA (kW/K), element power (kW).
    setpoint_c, comfort_min_c, comfort_max_c, deadband_c, ramp_low, ramp_high:
        Thermostat and controller settings (``Tmin < Tset < Tmax``).
    inlet_temperature_c, ambient_temperature_c:
        Cold water inlet and the air around the tank.
    draw_profile_l_per_h:
        Optional ``(n_slots, n)`` flow schedule, slot ``slot_s`` seconds long, cycled.
    temperature_c, on:
        Initial state (default: at the setpoint, off).
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
        f.raise_if_any()
        self._n = int(volume.size)
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
        self.duty_pu = np.ones(self._n)
        self.thermostat_setpoint_c = setpoint.copy()
        self.elapsed_s = 0.0
        self._bid_price: FloatArray | None = None
        self._bid_power_kw: FloatArray | None = None
        self._bid_stats = PriceStats(0.0, 0.0, 1.0)
        # cumulative heat accounts (kWh)
        self.heat_element_kwh = np.zeros(self._n)
        self.heat_standby_loss_kwh = np.zeros(self._n)
        self.heat_draw_loss_kwh = np.zeros(self._n)

    @classmethod
    def sample(cls, n: int, rng: np.random.Generator) -> Self:
        """Draw ``n`` tanks with GridLAB-D ``waterheater.cpp``-like defaults (converted to SI).

        Volume 40, 50 or 80 gal (151, 189, 303 l); element 4.5 kW (3.5 kW for 40 gal);
        UA ~ N(2.0, 0.2) Btu/(h·°F) per 50 gal; setpoint ~ N(51.7, 2.8) °C clipped to
        [43, 60]; deadband |N(1.1, 0.55)| + 0.55 K; comfort band ±(3..8) K; ramps U(1.5, 3);
        a synthetic two-peak daily draw (:func:`synthetic_draw_profile_l_per_h`).
        """
        problems = Problems(subject="water heater sampling")
        if int(n) != n or n < 1:
            problems.add("n", f"must be a positive integer, got {n}")
        problems.raise_if_any()
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
        )

    @property
    def n_devices(self) -> int:
        """Number of tanks."""
        return self._n

    # ------------------------------------------------------------------ market

    def bid(self, price_stats: PriceStats) -> BidCurves:
        """One block per tank: its element power at its ramp-controller price."""
        _check_price_stats(price_stats)
        t = self.temperature_c
        price = ramp_bid_price(
            t,
            self.setpoint_c,
            self._direction,
            self.comfort_min_c,
            self.comfort_max_c,
            self.ramp_low,
            self.ramp_high,
            price_stats.mean_per_kwh,
            price_stats.std_per_kwh,
        )
        floor, cap = price_stats.price_floor_per_kwh, price_stats.price_cap_per_kwh
        must_run = t < self.comfort_min_c
        no_bid = t > self.comfort_max_c
        price = np.where(must_run, cap, np.where(no_bid, floor, np.clip(price, floor, cap)))
        power = np.where(no_bid, 0.0, self.element_kw)
        self._bid_price, self._bid_power_kw, self._bid_stats = price, power, price_stats
        return _block_bids(price, power)

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike = 0.0,
    ) -> FloatArray:
        """Shift each tank's setpoint for the cleared price; return its power (its curve's)."""
        power, self.thermostat_setpoint_c, self.on, self.duty_pu = _ramp_response(
            self, self._direction, clearing_price, marginal_fill
        )
        return power

    # ------------------------------------------------------------------ physics

    def _draw_flow_l_per_s(self, dt: float, draw_l: npt.ArrayLike | None) -> FloatArray:
        if draw_l is not None:
            f = _Fields("water draw")
            f.n = self._n
            d = f.array("draw_l", draw_l, self._n)
            f.rule(d < 0, "draw_l", "must not be negative")
            f.raise_if_any()
            return d / dt
        if self.draw_profile_l_per_h is None:
            return np.zeros(self._n)
        slots = self.draw_profile_l_per_h.shape[0]
        slot = int((self.elapsed_s + 0.5 * dt) // self.slot_s) % slots
        return np.asarray(self.draw_profile_l_per_h[slot] / 3600.0, dtype=np.float64)

    def step(
        self, dt_s: float, weather: WeatherSample, draw_l: npt.ArrayLike | None = None
    ) -> StepResult:
        """Advance every tank by ``dt_s`` seconds exactly; metered element power and energy.

        ``draw_l`` is the hot water drawn over the step per tank (litres, drawn evenly); without
        it the draw profile is used. ``weather`` is not used (the tank sits indoors).
        """
        dt = _checked_step(dt_s)
        _check_weather(weather)
        g = self._draw_flow_l_per_s(dt, draw_l) * WATER_KJ_PER_L_K  # kW/K
        ua = self.ua_kw_per_k
        c = self.capacity_kj_per_k
        lam = (ua + g) / c
        base = ua * self.ambient_temperature_c + g * self.inlet_temperature_c
        q_on = self.element_kw * self.duty_pu
        half = 0.5 * self.deadband_c
        switch_on = self.thermostat_setpoint_c - half
        switch_off = self.thermostat_setpoint_c + half
        t = self.temperature_c.copy()
        state = np.where(self.on, t < switch_off, t <= switch_on)
        on_time = np.zeros(self._n)
        integral = np.zeros(self._n)  # integral of T dt, K·s
        remaining = np.full(self._n, dt)
        sel: slice | IntArray = slice(None)
        for event in range(_MAX_EVENTS + 1):
            s_on = state[sel]
            r = remaining[sel]
            lam_i = lam[sel]
            t_inf = (base[sel] + np.where(s_on, q_on[sel], 0.0)) / (ua[sel] + g[sel])
            t0 = t[sel].copy()
            t_end = t_inf + (t0 - t_inf) * np.exp(-lam_i * r)
            threshold = np.where(s_on, switch_off[sel], switch_on[sel])
            cross = np.where(s_on, t_end >= threshold, t_end <= threshold)
            if event == _MAX_EVENTS:
                cross[:] = False
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
                break
            nxt: IntArray = k if isinstance(sel, slice) else sel[k]
            remaining[nxt] -= tau[k]
            state[nxt] = ~state[nxt]
            sel = nxt
        energy = self.element_kw * self.duty_pu * on_time / _SECONDS_PER_HOUR
        self.heat_element_kwh += energy
        self.heat_standby_loss_kwh += ua * (integral - self.ambient_temperature_c * dt) / 3600.0
        self.heat_draw_loss_kwh += g * (integral - self.inlet_temperature_c * dt) / 3600.0
        self.duty_pu = np.where(state & self.on, self.duty_pu, 1.0)
        self.temperature_c = t
        self.on = state
        self.elapsed_s += dt
        return StepResult(power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy)

    def stored_heat_kwh(self) -> FloatArray:
        """Heat stored relative to 0 °C, kWh (for energy balances)."""
        return np.asarray(self.capacity_kj_per_k * self.temperature_c / 3600.0, dtype=np.float64)
