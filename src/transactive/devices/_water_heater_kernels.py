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
bid's on-time of each tank to each of its setpoints (``WaterHeaterPopulation._end_of_interval_c``
under :func:`transactive.devices.ramp._setpoint_on_times_s`): where the reference searches the
root of the end temperature of a run-first-then-off schedule (bracketed Newton, to a
millisecond), the kernel solves it in closed form (the one-node tank is linear: one logarithm per
setpoint, in the piece that holds the root), so an on-time is within the search's tolerance of
the reference's and is the root but for rounding; the test checks both.

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.water_heater`
imports this module only when a population first runs the kernel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from transactive.devices._kernels import (
    heavy_loop,
    inline,
    jit,
    loop,
    power_at_row,
    ramp_bid_point,
    ramp_setpoint_at,
)

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_power_at_row = inline(power_at_row)
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


@inline
def _thermostat_piece(
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
) -> tuple[float, bool, float, float]:
    """:func:`_tank` over a whole piece (``whole``), its usual case (no switch inside) inline.

    The first pass of :func:`_tank`'s loop, in its operations; a tank that switches inside
    the piece is handed to :func:`_tank`, which starts from the same state.
    """
    state = (t < switch_off_c) if on else (t <= switch_on_c)
    t_inf = (base_kw + (q_on_kw if state else 0.0)) / conductance
    t_end = t_inf + (t - t_inf) * exp_span
    if (t_end >= switch_off_c) if state else (t_end <= switch_on_c):
        return _tank(
            t, on, span_s, q_on_kw, conductance, lam, base_kw, switch_on_c, switch_off_c,
            exp_span, expm1_span, True,
        )  # fmt: skip
    integral = 0.0 + (t_inf * span_s - (t - t_inf) * expm1_span / lam)
    return t_end, state, (0.0 + span_s) if state else 0.0, integral


@inline
def _tank_step(
    i: int,
    k: int,
    t: float,
    state: bool,
    ua: float,
    c: float,
    t_amb: float,
    t_in: float,
    q_on: float,
    plain_on: float,
    plain_off: float,
    uncomfortable: float,
    comfortable: float,
    inward: float,
    follows: bool,
    begin_s: float,
    switch_s: float,
    finish_s: float,
    piece_count: npt.NDArray[np.int64],
    piece_start_s: FloatArray,
    piece_s: FloatArray,
    piece_row: npt.NDArray[np.int64],
    draw_kw_per_k: FloatArray,
    exp_piece: FloatArray,
    expm1_piece: FloatArray,
) -> tuple[float, bool, float, float, float, bool]:
    """Tank ``i`` over step ``k``: ``(temperature, on, on-time s, standby kJ, draw kJ, bad)``.

    The step's pieces in turn; under the thermostat (``follows`` false) each whole, else cut at
    the schedule's instants (``ramp._follow_schedule``: run from ``begin_s`` to ``switch_s``,
    then off to ``finish_s``, the band's edges overriding with hysteresis ``inward`` signed
    towards the band). ``bad``: thresholds that open no deadband (the state is then partial).
    """
    on_time = 0.0
    standby = 0.0
    drawn = 0.0
    for p in range(piece_count[k]):
        row = piece_row[k, p]
        g = draw_kw_per_k[row, i]
        base = ua * t_amb + g * t_in
        conductance = ua + g
        lam = conductance / c
        length = piece_s[k, p]
        if not follows:  # the deadband thermostat over the whole piece
            if not plain_off - plain_on > 0:
                return t, state, on_time, standby, drawn, True
            t, state, run_s, integral = _thermostat_piece(
                t, state, length, q_on, conductance, lam, base, plain_on, plain_off,
                exp_piece[row, i], expm1_piece[row, i],
            )  # fmt: skip
            on_time += run_s
            standby += ua * (integral - t_amb * length)
            drawn += g * (integral - t_in * length)
            continue
        start = piece_start_s[k, p]
        end = start + length
        now = start
        while True:
            # The schedule's phase at ``now`` (ramp._follow_schedule), or the thermostat.
            switch_on, switch_off = plain_on, plain_off
            started = now >= begin_s
            run_phase = started and now < switch_s
            off_phase = started and now >= switch_s and now < finish_s
            if not started:
                boundary = begin_s
            elif run_phase:
                boundary = switch_s
            elif off_phase:
                boundary = finish_s
            else:
                boundary = math.inf
            stop = min(boundary, end)
            if run_phase and now == begin_s:
                state = True
            if off_phase and now == switch_s:
                state = False
            if run_phase:
                switch_on, switch_off = comfortable + inward, comfortable
            elif off_phase:
                switch_on, switch_off = uncomfortable, uncomfortable - inward
            span = stop - now
            if not switch_off - switch_on > 0:
                return t, state, on_time, standby, drawn, True
            # A span of the whole piece takes the piece's exponentials (numpy's, as the
            # reference's): the same argument, the same value.
            if span == length:
                t, state, run_s, integral = _thermostat_piece(
                    t, state, span, q_on, conductance, lam, base, switch_on, switch_off,
                    exp_piece[row, i], expm1_piece[row, i],
                )  # fmt: skip
            else:
                t, state, run_s, integral = _tank(
                    t, state, span, q_on, conductance, lam, base, switch_on, switch_off,
                    exp_piece[row, i], expm1_piece[row, i], False,
                )  # fmt: skip
            on_time += run_s
            standby += ua * (integral - t_amb * span)
            drawn += g * (integral - t_in * span)
            if stop >= end:
                break
            now = stop
    return t, state, on_time, standby, drawn, False


@inline
def _thresholds(
    setpoint_c: float, deadband_c: float, comfort_min_c: float, comfort_max_c: float, d: float
) -> tuple[float, float, float, float, float]:
    """Tank's thermostat thresholds, band edges and signed override hysteresis.

    ``setpoint -+ deadband / 2``, and ``WaterHeaterPopulation._band``: ``Tmin`` (uncomfortable),
    ``Tmax`` (comfortable), ``d min(deadband, (Tmax - Tmin) / 2)`` (``np.minimum``'s NaN): the
    reference's operations on one tank.
    """
    half = 0.5 * deadband_c
    hysteresis = _minimum(deadband_c, 0.5 * (comfort_max_c - comfort_min_c))
    return setpoint_c - half, setpoint_c + half, comfort_min_c, comfort_max_c, d * hysteresis


@loop  # called as .serial or .parallel: ``chunks`` of tanks, one per thread
def advance(
    temperature_c: FloatArray,
    on: BoolArray,
    ua_kw_per_k: FloatArray,
    capacity_kj_per_k: FloatArray,
    ambient_c: FloatArray,
    inlet_c: FloatArray,
    q_on_kw: FloatArray,
    setpoint_c: FloatArray,
    deadband_c: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
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
    chunks: int,
    book: bool,
    heat_element_kwh: FloatArray,
    heat_standby_loss_kwh: FloatArray,
    heat_draw_loss_kwh: FloatArray,
    record: bool,
    out_temperature_c: FloatArray,
    out_on: BoolArray,
    out_on_time_s: FloatArray,
    out_standby_kj: FloatArray,
    out_draw_kj: FloatArray,
    out_accounts_kwh: FloatArray,
    out_energy_kwh: FloatArray,
    out_step_energy_kwh: FloatArray,
    out_record_kwh: FloatArray,
) -> int:
    """The tanks' policy over S consecutive steps, each cut in pieces (at most P per step).

    Step ``k`` is its ``piece_count[k]`` pieces ``(piece_start_s[k, p], piece_s[k, p])``;
    ``draw_kw_per_k``, ``exp_piece``, ``expm1_piece`` are ``(U, M)`` tables of each distinct
    piece's draw conductance and the exponentials of ``-λ piece_s``, piece ``(k, p)`` taking row
    ``piece_row[k, p]`` (the steps of one profile slot share a row, so the caller copies no
    array per step). The thresholds come from each tank's setpoint, deadband and band
    (:func:`_thresholds`). ``follows_steps[k]``: a responded interval's schedule is in force in
    step ``k`` (run from ``begin_s`` to ``switch_s``, off to ``finish_s``). Each step starts
    from the state the one before ended in, as consecutive calls of one step would. The tanks
    are split into ``chunks`` (one per thread).

    Without ``book``, ``out_on_time_s``, ``out_standby_kj``, ``out_draw_kj`` (S, M) receive
    each step's on-time and losses. With ``book``, nothing per step is kept but what is asked
    for (the memory is then the tanks', whatever the steps): per tank and step, in ``step``'s
    operations, the element's energy ``Q on / 3600`` is added to the element account and the
    standby and draw losses (kJ / 3600) to theirs (the accounts given; the results in
    ``out_accounts_kwh``, (3, M): element, standby, draw), the energy over the steps goes to
    ``out_energy_kwh``, each chunk's energy per step to ``out_step_energy_kwh`` (chunks, S) and,
    with ``record``, each step's energy per tank to ``out_record_kwh`` (S, M). Returns the
    number of tanks handed a switch-off threshold not above their switch-on one (the reference
    raises for them; the outputs are then partial and the caller keeps nothing).
    """
    m = temperature_c.size
    steps = piece_count.size
    bad_count = 0
    size = (m + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        chunk_energy = np.zeros(steps)  # this thread's own sums: no cache line shared
        for i in range(chunk * size, min(m, (chunk + 1) * size)):
            ua, c, t_amb, t_in, q_on = (
                ua_kw_per_k[i], capacity_kj_per_k[i], ambient_c[i], inlet_c[i], q_on_kw[i],
            )  # fmt: skip
            plain_on, plain_off, unc, comf, inward = _thresholds(
                setpoint_c[i], deadband_c[i], comfort_min_c[i], comfort_max_c[i], direction[i]
            )
            t = temperature_c[i]
            state = on[i]
            element = heat_element_kwh[i] if book else 0.0
            standby_kwh = heat_standby_loss_kwh[i] if book else 0.0
            draw_kwh = heat_draw_loss_kwh[i] if book else 0.0
            energy = 0.0
            bad = False
            for k in range(steps):
                t, state, on_time, standby, drawn, bad = _tank_step(
                    i, k, t, state, ua, c, t_amb, t_in, q_on, plain_on, plain_off, unc, comf,
                    inward, follows_steps[k], begin_s, switch_s[i], finish_s, piece_count,
                    piece_start_s, piece_s, piece_row, draw_kw_per_k, exp_piece, expm1_piece,
                )  # fmt: skip
                if bad:
                    break
                if not book:
                    out_on_time_s[k, i] = on_time
                    out_standby_kj[k, i] = standby
                    out_draw_kj[k, i] = drawn
                    continue
                step_kwh = q_on * on_time / 3600.0
                element += step_kwh
                standby_kwh += standby / 3600.0
                draw_kwh += drawn / 3600.0
                energy += step_kwh
                chunk_energy[k] += step_kwh
                if record:
                    out_record_kwh[k, i] = step_kwh
            if bad:
                bad_count += 1
            out_temperature_c[i] = t
            out_on[i] = state
            if book:
                out_accounts_kwh[0, i] = element
                out_accounts_kwh[1, i] = standby_kwh
                out_accounts_kwh[2, i] = draw_kwh
                out_energy_kwh[i] = energy
        if book:
            out_step_energy_kwh[chunk, :] = chunk_energy
    return bad_count


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


@inline
def _end_at(
    tau: float,
    piece_start: FloatArray,
    piece_length: FloatArray,
    lam: FloatArray,
    heated_c: FloatArray,
    idle_c: FloatArray,
    decay: FloatArray,
    start_c: FloatArray,
    alpha_c: FloatArray,
    beta: FloatArray,
) -> tuple[float, int]:
    """The closed-form end temperature of on-time ``tau``, and the piece that holds ``tau``.

    Piece ``p`` holding ``tau`` at ``x = tau - a_p``: from ``S_p`` (``start_c``, the tank run
    through the pieces before), heated for ``x`` and idle for ``L_p - x`` it ends at
    ``T_idle + (T_heat - T_idle) exp(-λ (L - x)) + (S_p - T_heat) exp(-λ L)``; the idle pieces
    after it map that affinely onto the interval's end, ``alpha_c[p + 1] + beta[p + 1] T``.
    """
    last = piece_start.size - 1
    p = 0
    while p < last and tau > piece_start[p] + piece_length[p]:
        p += 1
    length = piece_length[p]
    x = min(max(tau - piece_start[p], 0.0), length)
    heated, idle = heated_c[p], idle_c[p]
    # (run through the piece, or idle from its start: the exponential is known)
    if x == length:
        idle_decay = 1.0
    elif x == 0.0:
        idle_decay = decay[p]
    else:
        idle_decay = math.exp(-lam[p] * (length - x))
    end = idle + (heated - idle) * idle_decay + (start_c[p] - heated) * decay[p]
    return alpha_c[p + 1] + beta[p + 1] * end, p


@loop  # called as .serial or .parallel: ``chunks`` of tanks, one per thread
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
    chunks: int,
    out: FloatArray,
) -> None:
    """Each tank's on-time to each bid setpoint (``ramp._setpoint_on_times_s`` per tank).

    The interval's pieces start at ``piece_start`` (s from its start) for ``piece_length``
    with each tank's draw conductance and ``UA T_amb + G T_in`` per piece (``conductance``,
    ``base``: (P, N)). Per setpoint: ``tau_lo`` where even that ends on the comfortable side,
    ``tau_hi`` where even that does not reach it, else the root of ``T_end(tau) = T_set``,
    then the row's running maximum from the uncomfortable end. Tanks not ``solvable`` (or with
    no room, ``tau_hi <= tau_lo``) get ``tau_lo`` throughout. ``out`` is (N, J).

    The reference searches the root (bracketed Newton, to its tolerance); the one-node tank is
    linear, so here it is solved in closed form. Run first for ``tau`` and then off, the tank
    ends at :func:`_end_at`'s temperature: the piece holding the root is the first whose end
    the tank reaches the setpoint by, and inside it
    ``exp(-λ (L - x)) = ((T_set - alpha) / beta - T_idle - (S - T_heat) exp(-λ L)) /
    (T_heat - T_idle)`` gives ``x`` (one logarithm). Exact but for rounding (about 1e-12 s),
    where the reference's root lies within its tolerance of the root.
    """
    n = temperature.size
    pieces = piece_start.size
    j_count = setpoints.shape[1]
    size = (n + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        # this thread's per-piece working arrays, made once
        lam = np.empty(pieces)
        heated_c = np.empty(pieces)
        idle_c = np.empty(pieces)
        decay = np.empty(pieces)
        start_c = np.empty(pieces + 1)
        alpha_c = np.empty(pieces + 1)
        beta = np.empty(pieces + 1)
        for i in range(chunk * size, min(n, (chunk + 1) * size)):
            lo0 = tau_lo[i]
            hi0 = tau_hi[i]
            if not (solvable[i] and hi0 > lo0):
                for j in range(j_count):
                    out[i, j] = lo0
                continue
            d = direction[i]
            start_c[0] = temperature[i]
            for p in range(pieces):
                g = conductance[p, i]
                lam[p] = (ua[i] + g) / capacity[i]
                heated_c[p] = (base[p, i] + q_on[i]) / (ua[i] + g)
                idle_c[p] = base[p, i] / (ua[i] + g)
                decay[p] = math.exp(-lam[p] * piece_length[p])
                start_c[p + 1] = heated_c[p] + (start_c[p] - heated_c[p]) * decay[p]
            # the idle pieces from p on, as T_end = alpha + beta T(a_p)
            alpha_c[pieces] = 0.0
            beta[pieces] = 1.0
            for p in range(pieces - 1, -1, -1):
                alpha_c[p] = alpha_c[p + 1] + beta[p + 1] * idle_c[p] * (1.0 - decay[p])
                beta[p] = beta[p + 1] * decay[p]
            f_lo = _end_at(
                lo0, piece_start, piece_length, lam, heated_c, idle_c, decay, start_c, alpha_c,
                beta,
            )[0]  # fmt: skip
            f_hi = _end_at(
                hi0, piece_start, piece_length, lam, heated_c, idle_c, decay, start_c, alpha_c,
                beta,
            )[0]  # fmt: skip
            for j in range(j_count):
                target = setpoints[i, j]
                g_lo = d * (f_lo - target)
                g_hi = d * (f_hi - target)
                column = lo0 if g_lo <= 0 else hi0
                if g_lo > 0 and g_hi < 0:
                    # the first piece whose end the tank, run to it, reaches the setpoint by
                    p = 0
                    while p < pieces - 1 and (
                        d * (alpha_c[p + 1] + beta[p + 1] * start_c[p + 1] - target) > 0
                    ):
                        p += 1
                    heated, idle = heated_c[p], idle_c[p]
                    at_end = (target - alpha_c[p + 1]) / beta[p + 1]  # T_set at the piece's end
                    ratio = (at_end - idle - (start_c[p] - heated) * decay[p]) / (heated - idle)
                    length = piece_length[p]
                    x = length + math.log(ratio) / lam[p] if ratio > 0 else 0.0
                    if not x >= 0.0:  # (rounding below the piece's start, or a NaN)
                        x = 0.0
                    x = min(x, length)
                    column = min(max(piece_start[p] + x, lo0), hi0)
                out[i, j] = column
            # the row monotone to the last bit (np.maximum), from the uncomfortable end
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
