"""Fused numba kernel of the water-heater population: the tanks' control policy (issue 17).

:func:`advance` runs, per tank, what :meth:`transactive.devices.water_heater.
WaterHeaterPopulation._advance` does over whole arrays (over one step, or over consecutive steps
for ``step_many``): the span cut at the draw profile's slots,
then at a responded interval's instants (the schedule of :func:`transactive.devices.ramp.
_follow_schedule`: run from the interval's start to the tank's switch-off, then off, the comfort
band's edges overriding), each piece solved exactly on GridLAB-D's one-node tank
(``residential/waterheater.cpp``, ``ONENODE``; Taylor et al., PNNL-27211, 2018):
``T(t) = T_inf + (T0 - T_inf) exp(-λ t)``, ``λ = (UA + G) / C``, with a thermostat switch at the
exact crossing ``t = ln((T0 - T_inf) / (T_switch - T_inf)) / λ`` (:func:`transactive.devices.
water_heater._tank_advance`). One loop over the tanks (both cores on large populations), each
tank's pieces and switching events in turn, instead of the reference's masks and index sets.

The arithmetic is the reference's, in the same order. Transcendental functions: the reference
evaluates ``exp``, ``expm1`` and ``log`` through numpy (SIMD implementations), the kernel through
the C library, and the two differ in the last bit of some values. The exponentials of a whole
piece (``exp(-λ s)`` and ``expm1(-λ s)`` of each draw slot's piece, which depend on the tanks and
the slot only) are computed by numpy and passed in, so from the same state a tank that does not
switch inside a step and follows no schedule (the thermostat's usual step) follows the reference
bit for bit. A switching time, or a piece cut at a schedule's instant, is evaluated here: its
exponential or logarithm within an ulp of numpy's, but a temperature off by ``ε`` moves a later
crossing in the step by ``ε / |dT/dt|``, which a tank cooling slowly towards its threshold
amplifies. From one state over one step such a tank's temperature is within 1e-9 K of the
reference's, its on-time within 1e-7 s, its losses within 1e-12 kWh (measured: at most 1.4e-11 K,
2.6e-9 s, 2e-15 kWh); ``tests/devices/test_water_heater_kernels.py`` states and checks these,
and what they mean for the bid's dry runs and the response's bisection.

The bid runs here too. :func:`on_time_bounds` gives each tank's can-run on-time (the crossing
of ``Tmax`` on its heating trajectory) and must-run on-time (bisection on the lowest temperature
of the off part), as ``WaterHeaterPopulation._on_time_bounds_s`` does; measured against it over
a day of intervals the must-run on-times agree to the bit and the can-run ones within 5e-11 s.
:func:`bid_points` and :func:`interval_curves` are the ramp controller's setpoints and prices and
the curves' assembly, the reference's operations (bit for bit). :func:`setpoint_on_times` is the
bid's search of each tank's on-time to each of its setpoints
(``WaterHeaterPopulation._end_of_interval_c`` under :func:`transactive.devices.ramp.
_setpoint_on_times_s`): per tank, the end temperature of a run-first-then-off schedule walked
over the interval's draw pieces, and per setpoint the reference's bracketed Newton iteration
(:func:`transactive.devices._kernels.least_on_time_step`). Its exponentials are the C library's,
so an on-time is within the search's tolerance of the reference's (twice it, at most: each stops
within it of the root), bit for bit for most tanks; the test states and checks both.

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.water_heater`
imports this module only when a population first runs the kernel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from transactive.devices._kernels import (
    bracket_secant,
    heavy_loop,
    inline,
    jit,
    least_on_time_step,
    loop,
    power_at_row,
    ramp_bid_point,
    ramp_setpoint_at,
)

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_least_on_time_step = inline(least_on_time_step)
_power_at_row = inline(power_at_row)
_secant = inline(bracket_secant)
_ramp_bid_point = inline(ramp_bid_point)
_ramp_setpoint_at = inline(ramp_setpoint_at)


@jit
def _clip(x: float, lo: float, hi: float) -> float:
    """``np.clip`` of one value (a NaN stays NaN)."""
    if x != x:  # noqa: PLR0124 - NaN
        return x
    return min(max(x, lo), hi)


@jit
def _tank(
    t: float,
    on: bool,
    span_s: float,
    q_on_kw: float,
    conductance: float,
    lam: float,
    base_kw: float,
    switch_on_c: float,
    switch_off_c: float,
    exp_span: float,
    expm1_span: float,
    whole: bool,
) -> tuple[float, bool, float, float]:
    """One tank over ``span_s`` with constant draw, switching at exact crossings.

    ``_tank_advance`` for one tank: returns ``(temperature, on, on_time_s, ∫T dt)``. With
    ``whole`` the span is the whole piece, whose ``exp(-λ s)`` and ``expm1(-λ s)`` are given.
    """
    state = (t < switch_off_c) if on else (t <= switch_on_c)
    on_time = 0.0
    integral = 0.0
    remaining = span_s
    first = True
    while True:
        t_inf = (base_kw + (q_on_kw if state else 0.0)) / conductance
        t0 = t
        decay = exp_span if first and whole else math.exp(-lam * remaining)
        t_end = t_inf + (t0 - t_inf) * decay
        threshold = switch_off_c if state else switch_on_c
        cross = (t_end >= threshold) if state else (t_end <= threshold)
        tau = remaining
        if cross:
            ratio = (t0 - t_inf) / (threshold - t_inf)
            log_ratio = math.log(ratio) if ratio > 0 else (-math.inf if ratio == 0 else math.nan)
            tau = _clip(log_ratio / lam, 0.0, remaining)
            t_end = threshold
        t = t_end
        if state:
            on_time += tau
        growth = expm1_span if first and whole and not cross else math.expm1(-lam * tau)
        integral += t_inf * tau - (t0 - t_inf) * growth / lam
        if not cross:
            return t, state, on_time, integral
        remaining -= tau
        state = not state
        first = False


@heavy_loop
def advance(
    temperature_c: FloatArray,
    on: BoolArray,
    ua_kw_per_k: FloatArray,
    capacity_kj_per_k: FloatArray,
    ambient_c: FloatArray,
    inlet_c: FloatArray,
    q_on_kw: FloatArray,
    plain_on_c: FloatArray,
    plain_off_c: FloatArray,
    uncomfortable_c: FloatArray,
    comfortable_c: FloatArray,
    hysteresis_c: FloatArray,
    direction: FloatArray,
    follows_steps: BoolArray,
    begin_s: float,
    switch_s: FloatArray,
    finish_s: float,
    piece_count: npt.NDArray[np.int64],
    piece_start_s: FloatArray,
    piece_s: FloatArray,
    piece_row: npt.NDArray[np.int64],
    draw_kw_per_k: FloatArray,
    exp_piece: FloatArray,
    expm1_piece: FloatArray,
    out_temperature_c: FloatArray,
    out_on: BoolArray,
    out_on_time_s: FloatArray,
    out_standby_kj: FloatArray,
    out_draw_kj: FloatArray,
    out_bad: BoolArray,
) -> None:
    """The tanks' policy over S consecutive steps, each cut in pieces (at most P per step).

    Step ``k`` is its ``piece_count[k]`` pieces ``(piece_start_s[k, p], piece_s[k, p])``;
    ``draw_kw_per_k``, ``exp_piece``, ``expm1_piece`` are ``(U, M)`` tables of each distinct
    piece's draw conductance and the exponentials of ``-λ piece_s``, piece ``(k, p)`` taking row
    ``piece_row[k, p]`` (the steps of one profile slot share a row, so the caller copies no
    array per step). ``follows_steps[k]``: a responded
    interval's schedule is in force in step ``k`` (run from ``begin_s`` to ``switch_s``, off to
    ``finish_s``). Each step starts from the state the one before ended in, as consecutive calls
    of one step would; ``out_on_time_s``, ``out_standby_kj``, ``out_draw_kj`` are ``(S, M)``,
    per step. A tank handed a switch-off threshold not above its switch-on one is flagged in
    ``out_bad`` (the reference raises for it) and left as it was.
    """
    for i in numba.prange(temperature_c.size):
        ua, c, t_amb, t_in, q_on = (
            ua_kw_per_k[i], capacity_kj_per_k[i], ambient_c[i], inlet_c[i], q_on_kw[i],
        )  # fmt: skip
        t = temperature_c[i]
        state = on[i]
        bad = False
        for k in range(piece_count.size):
            follows = follows_steps[k]
            on_time = 0.0
            standby = 0.0
            drawn = 0.0
            for p in range(piece_count[k]):
                row = piece_row[k, p]
                g = draw_kw_per_k[row, i]
                base = ua * t_amb + g * t_in
                conductance = ua + g
                lam = conductance / c
                start = piece_start_s[k, p]
                end = start + piece_s[k, p]
                now = start
                while True:
                    # The schedule's phase at ``now`` (ramp._follow_schedule), or the thermostat.
                    switch_on, switch_off, stop = plain_on_c[i], plain_off_c[i], end
                    if follows:
                        sw = switch_s[i]
                        started = now >= begin_s
                        run_phase = started and now < sw
                        off_phase = started and now >= sw and now < finish_s
                        if not started:
                            boundary = begin_s
                        elif run_phase:
                            boundary = sw
                        elif off_phase:
                            boundary = finish_s
                        else:
                            boundary = math.inf
                        stop = min(boundary, end)
                        if run_phase and now == begin_s:
                            state = True
                        if off_phase and now == sw:
                            state = False
                        inward = direction[i] * hysteresis_c[i]
                        if run_phase:
                            switch_on, switch_off = comfortable_c[i] + inward, comfortable_c[i]
                        elif off_phase:
                            unc = uncomfortable_c[i]
                            switch_on, switch_off = unc, unc - inward
                    span = (stop - now) if follows else piece_s[k, p]
                    if not switch_off - switch_on > 0:
                        bad = True
                        break
                    # A span of the whole piece takes the piece's exponentials (numpy's, as the
                    # reference's): the same argument, the same value.
                    t, state, run_s, integral = _tank(
                        t, state, span, q_on, conductance, lam, base, switch_on, switch_off,
                        exp_piece[row, i], expm1_piece[row, i], span == piece_s[k, p],
                    )  # fmt: skip
                    on_time += run_s
                    standby += ua * (integral - t_amb * span)
                    drawn += g * (integral - t_in * span)
                    if not follows or stop >= end:
                        break
                    now = stop
                if bad:
                    break
            if bad:
                break
            out_on_time_s[k, i] = on_time
            out_standby_kj[k, i] = standby
            out_draw_kj[k, i] = drawn
        out_bad[i] = bad
        if bad:
            t, state = temperature_c[i], on[i]
            for k in range(piece_count.size):
                out_on_time_s[k, i] = 0.0
                out_standby_kj[k, i] = 0.0
                out_draw_kj[k, i] = 0.0
        out_temperature_c[i] = t
        out_on[i] = state


# ------------------------------------------------------------------ the bid's setpoint on-times


@jit
def _schedule_walk(
    i: int,
    tau: float,
    temperature: FloatArray,
    ua: FloatArray,
    capacity: FloatArray,
    q_on: FloatArray,
    piece_start: FloatArray,
    piece_length: FloatArray,
    conductance: FloatArray,
    base: FloatArray,
) -> tuple[float, float, float]:
    """Tank ``i`` run ``tau`` first, then off, over the interval's draw pieces.

    Returns its temperature at the interval's end and that temperature's slope in ``tau``
    (``WaterHeaterPopulation._end_of_interval_c``: ``Q / C exp(-sum λ off)``), and its lowest
    temperature over the off part (``lowest_after`` of ``_on_time_bounds_s``: each piece is
    monotone, so the piece ends from the one holding ``tau`` on are the candidates). Each
    piece solved exactly (``_exp_to`` on and then off), in the reference's operations.
    """
    t = temperature[i]
    decay = 0.0  # sum over the pieces of lambda x off-time
    low = math.inf
    for p in range(piece_start.size):
        g = conductance[p, i]
        b = base[p, i]
        lam = (ua[i] + g) / capacity[i]
        on_s = _clip(tau - piece_start[p], 0.0, piece_length[p])
        counts = tau <= piece_start[p] + piece_length[p]
        t_inf = (b + q_on[i]) / (ua[i] + g)
        t = t_inf + (t - t_inf) * math.exp(-lam * on_s)
        if counts:
            low = _minimum(low, t)
        off_s = piece_length[p] - on_s
        t_inf = b / (ua[i] + g)
        t = t_inf + (t - t_inf) * math.exp(-lam * off_s)
        if counts:
            low = _minimum(low, t)
        decay += lam * off_s
    return t, q_on[i] / capacity[i] * math.exp(-decay), low


@jit
def _minimum(a: float, b: float) -> float:
    """``np.minimum`` of two values (a NaN wins)."""
    if a != a or b != b:  # noqa: PLR0124 - NaN
        return math.nan
    return min(a, b)


@heavy_loop
def setpoint_on_times(
    temperature: FloatArray,
    ua: FloatArray,
    capacity: FloatArray,
    q_on: FloatArray,
    piece_start: FloatArray,
    piece_length: FloatArray,
    conductance: FloatArray,
    base: FloatArray,
    setpoints: FloatArray,
    direction: FloatArray,
    tau_lo: FloatArray,
    tau_hi: FloatArray,
    solvable: BoolArray,
    tolerance: float,
    newton_steps: int,
    out: FloatArray,
) -> None:
    """Each tank's on-time to each bid setpoint (``ramp._setpoint_on_times_s`` per tank).

    The interval's pieces start at ``piece_start`` (s from its start) for ``piece_length``
    with each tank's draw conductance and ``UA T_amb + G T_in`` per piece (``conductance``,
    ``base``: (P, N)). Per setpoint: ``tau_lo`` where even that ends on the comfortable side,
    ``tau_hi`` where even that does not reach it, else the root of ``d (T_end - T_set)`` by the
    bracketed Newton iteration of ``ramp._least_on_time_s`` (``one_sided=False``), then the
    row's running maximum from the uncomfortable end. Tanks not ``solvable`` (or with no room,
    ``tau_hi <= tau_lo``) get ``tau_lo`` throughout. ``out`` is (N, J).
    """
    j_count = setpoints.shape[1]
    for i in numba.prange(temperature.size):
        lo0 = tau_lo[i]
        hi0 = tau_hi[i]
        if not (solvable[i] and hi0 > lo0):
            for j in range(j_count):
                out[i, j] = lo0
            continue
        d = direction[i]
        args = (temperature, ua, capacity, q_on, piece_start, piece_length, conductance, base)
        f_lo = _schedule_walk(i, lo0, *args)[0]
        f_hi = _schedule_walk(i, hi0, *args)[0]
        for j in range(j_count):
            target = setpoints[i, j]
            g_lo = d * (f_lo - target)
            g_hi = d * (f_hi - target)
            column = lo0 if g_lo <= 0 else hi0
            if g_lo > 0 and g_hi < 0:
                lo = lo0
                hi = hi0
                t = _secant(lo, hi, g_lo, g_hi)
                iteration = 0
                done = False
                while not done:
                    end, slope, _ = _schedule_walk(i, t, *args)
                    t, lo, hi, done = _least_on_time_step(
                        d * (end - target), d * slope, t, lo, hi, iteration, tolerance,
                        newton_steps, False,
                    )  # fmt: skip
                    iteration += 1
                column = hi
            out[i, j] = column
        # the roots are exact to the tolerance; the row monotone to the last bit (np.maximum)
        for jj in range(j_count - 2, -1, -1):
            a = out[i, jj]
            b = out[i, jj + 1]
            out[i, jj] = math.nan if (a != a or b != b) else max(a, b)  # noqa: PLR0124


@loop
def bid_points(
    setpoint_c: FloatArray,
    comfortable_c: FloatArray,
    uncomfortable_c: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    direction: FloatArray,
    shares: FloatArray,
    prices: FloatArray,
    out_setpoint_c: FloatArray,
    out_price: FloatArray,
) -> None:
    """The bid's setpoints and their clipped ramp prices, ``(N, J)`` (``ramp``'s, per tank).

    ``ramp._band_setpoints_c`` (``Tset + |s| (edge - Tset)``, the comfortable edge for a
    negative share) and ``ramp.ramp_bid_price`` (``mean + d (T - Tset) k sigma / |T_lim -
    Tset|``, GridLAB-D ``controller.cpp`` ramp mode) clipped to ``[floor, cap]`` as
    ``np.clip`` does; ``prices`` is ``(mean, std, floor, cap)``. The same operations in the
    same order: bit for bit.
    """
    mean = prices[0]
    std = prices[1]
    floor = prices[2]
    cap = prices[3]
    for i in numba.prange(setpoint_c.size):
        for j in range(shares.size):
            t, price = _ramp_bid_point(
                setpoint_c[i], comfortable_c[i], uncomfortable_c[i], comfort_min_c[i],
                comfort_max_c[i], ramp_low[i], ramp_high[i], direction[i], shares[j], mean, std,
            )  # fmt: skip
            out_setpoint_c[i, j] = t
            out_price[i, j] = _clip(price, floor, cap)


@loop
def interval_curves(
    point_price: FloatArray,
    tau_points_s: FloatArray,
    run_lo_s: FloatArray,
    linear: BoolArray,
    element_kw: FloatArray,
    duration_s: float,
    price_cap: float,
    out_price: FloatArray,
    out_power: FloatArray,
) -> None:
    """The bid's curves, ``(N, J + 2)`` (``ramp._interval_curves`` of the bid's points).

    The points' prices and powers (``element tau / duration``, the must-run on-time
    ``run_lo`` throughout for a tank that is not ``linear``), then the must-run block at the
    cap: ``(cap, element run_lo / duration)``, ``(cap, 0)``. The reference's operations: bit
    for bit.
    """
    j_count = point_price.shape[1]
    for i in numba.prange(element_kw.size):
        for j in range(j_count):
            run = tau_points_s[i, j] if linear[i] else run_lo_s[i]
            out_price[i, j] = point_price[i, j]
            out_power[i, j] = element_kw[i] * run / duration_s
        out_price[i, j_count] = price_cap
        out_price[i, j_count + 1] = price_cap
        out_power[i, j_count] = element_kw[i] * run_lo_s[i] / duration_s
        out_power[i, j_count + 1] = 0.0


@heavy_loop
def on_time_bounds(
    temperature: FloatArray,
    ua: FloatArray,
    capacity: FloatArray,
    q_on: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    piece_start: FloatArray,
    piece_length: FloatArray,
    conductance: FloatArray,
    base: FloatArray,
    duration: float,
    tolerances: FloatArray,
    out_tau_lo: FloatArray,
    out_tau_hi: FloatArray,
    out_linear: BoolArray,
) -> None:
    """Each tank's must-run and can-run on-time (``WaterHeaterPopulation._on_time_bounds_s``).

    ``tau_hi``: the first time the tank, heating, reaches ``Tmax`` (per piece, the exact
    crossing of its exponential), at most the interval. ``tau_lo``: by bisection, the least
    on-time after which the tank left off stays at or above ``Tmin`` plus the margin to the
    interval's end, at most ``tau_hi``; a tank that cannot hold it gets ``tau_hi`` and is not
    ``linear``. ``tolerances`` is ``(on-time tolerance, band margin)``. The reference's
    operations and stopping rules per tank, with the C library's ``exp`` and ``log``.
    """
    tolerance = tolerances[0]
    margin = tolerances[1]
    for i in numba.prange(temperature.size):
        tmax = comfort_max_c[i]
        t = temperature[i]
        tau_hi = 0.0 if t >= tmax else math.nan
        for p in range(piece_start.size):
            g = conductance[p, i]
            a = piece_start[p]
            length = piece_length[p]
            lam = (ua[i] + g) / capacity[i]
            t_inf = (base[p, i] + q_on[i]) / (ua[i] + g)
            t_end = t_inf + (t - t_inf) * math.exp(-lam * length)
            if tau_hi != tau_hi and t_end >= tmax:  # noqa: PLR0124 - NaN: not reached yet
                ratio = (t - t_inf) / (tmax - t_inf)
                log_ratio = (
                    math.log(ratio) if ratio > 0 else (-math.inf if ratio == 0 else math.nan)
                )
                tau_hi = _clip(a + log_ratio / lam, a, a + length)
            t = t_end
        if tau_hi != tau_hi:  # noqa: PLR0124
            tau_hi = duration
        out_tau_hi[i] = tau_hi
        floor = comfort_min_c[i] + margin
        tau_lo = 0.0
        linear = True
        args = (temperature, ua, capacity, q_on, piece_start, piece_length, conductance, base)
        if _schedule_walk(i, 0.0, *args)[2] < floor:
            tau_lo = tau_hi  # the band cannot be held: run all it can
            if not _schedule_walk(i, tau_hi, *args)[2] >= floor:
                linear = False
            else:
                lo = 0.0
                hi = tau_hi
                while True:
                    mid = 0.5 * (lo + hi)
                    ok = _schedule_walk(i, mid, *args)[2] >= floor
                    new_lo = lo if ok else mid
                    new_hi = mid if ok else hi
                    done = (new_hi - new_lo <= tolerance) or (mid <= lo) or (mid >= hi)
                    lo = new_lo
                    hi = new_hi
                    if done:
                        break
                tau_lo = hi
        out_tau_lo[i] = tau_lo
        out_linear[i] = linear


# ----------------------------------------------------------------------------- the response


@loop
def respond(
    prices: FloatArray, powers: FloatArray, price: FloatArray, fill: FloatArray, out: FloatArray
) -> None:
    """Each tank's power off its own curve (``BidCurves.power_at``, row by row: bit for bit)."""
    for i in numba.prange(out.size):
        out[i] = _power_at_row(prices, powers, i, price, fill)


@loop
def ramp_setpoints(
    clearing_price: FloatArray,
    setpoint_c: FloatArray,
    direction: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    stats: FloatArray,
    out: FloatArray,
) -> None:
    """``ramp.ramp_setpoint`` per tank (the inverse of the bid's ramp price), bit for bit.

    ``stats`` is ``(mean, std)``; ``clearing_price`` one value or one per tank.
    """
    mean = stats[0]
    std = stats[1]
    for i in numba.prange(out.size):
        p = clearing_price[0] if clearing_price.size == 1 else clearing_price[i]
        out[i] = _ramp_setpoint_at(
            p, setpoint_c[i], direction[i], comfort_min_c[i], comfort_max_c[i], ramp_low[i],
            ramp_high[i], mean, std,
        )  # fmt: skip


@loop
def book_steps(
    element_kw: FloatArray,
    on_time_s: FloatArray,
    standby_kj: FloatArray,
    drawn_kj: FloatArray,
    keep: bool,
    heat_element_kwh: FloatArray,
    heat_standby_loss_kwh: FloatArray,
    heat_draw_loss_kwh: FloatArray,
    out_energy_kwh: FloatArray,
    out_step_kwh: FloatArray,
) -> None:
    """The accounts of S steps of :func:`advance`, as S ``step`` calls keep them.

    Per tank and step, in the reference's order: the element's energy ``Q on / 3600`` into
    ``out_step_kwh`` (S, N) and added to ``out_energy_kwh``; with ``keep`` also to
    ``heat_element_kwh``, and the standby and draw losses (kJ / 3600) to theirs, in place.
    """
    for i in numba.prange(element_kw.size):
        q = element_kw[i]
        energy = 0.0
        for k in range(on_time_s.shape[0]):
            step_kwh = q * on_time_s[k, i] / 3600.0
            if keep:
                heat_element_kwh[i] += step_kwh
                heat_standby_loss_kwh[i] += standby_kj[k, i] / 3600.0
                heat_draw_loss_kwh[i] += drawn_kj[k, i] / 3600.0
            energy += step_kwh
            out_step_kwh[k, i] = step_kwh
        out_energy_kwh[i] = energy
