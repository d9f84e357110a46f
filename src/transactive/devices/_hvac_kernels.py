"""Fused numba kernels of the HVAC population: physics step, interval bid and response (issue 17).

Each kernel is the per-house (scalar) form of the numpy reference in
:mod:`transactive.devices.hvac`, one loop over the houses instead of many full-array passes and
masks. The formulas are the reference's, in the same order of operations, and the iterations
the same (the same first guesses, the same stopping rules, per house):

- the heat flows (:func:`_heat`; GridLAB-D ``residential/house_e.cpp``) of
  ``HvacPopulation._heat_inputs``;
- the ETP solution of a piece with constant inputs (GridLAB-D ``house_e.cpp``; Taylor, Chassin &
  Gourisetti, PNNL-27211, 2018): the two-node model solved exactly with Sylvester's formula for
  the 2x2 matrix exponential (:class:`~transactive.devices.hvac.EtpCoefficients`), a thermostat
  switch inside the piece at the first root of the closed form, found by a bracketed Newton
  iteration (:func:`~transactive.devices.hvac.etp_advance`, :func:`_piece`);
- the schedule a responded house follows and the band's overrides
  (:func:`transactive.devices.ramp._follow_schedule`, :func:`_advance_house`);
- the interval bid's on-time bounds and its setpoints' on-times (Widergren et al., PNNL-27235,
  the average power over the interval; the ramp controller of Hammerstrom et al., PNNL-17167,
  2007; :func:`interval_plan`) and the response's on-time (:func:`respond`).

Transcendental functions: the reference evaluates ``exp``, ``expm1`` and ``log`` through numpy
(SIMD implementations), the kernels through the C library (``math``); the two may differ in the
last bit. The exponentials that do not depend on the state (``expm1(r dt)`` of a whole step,
``exp(r D)`` of a whole interval) are computed once by numpy and passed in, so a house that does
not switch inside a step follows the reference bit for bit; where a switching time or an on-time
is solved the kernels agree with the reference within the iterations' tolerances
(``tests/devices/test_hvac_kernels.py`` states them).

Layout. The per-house parameters come as one :class:`Houses` tuple of arrays, the state as
:class:`State`, the weather of each step as :class:`Weather`, the heat flows a caller computed
itself (a subclass's equipment, a dry run's) as :class:`Heat`; the outputs and the heat
accounts (:data:`ACCOUNTS`) as plain tuples of arrays. Helpers that run for every house at
every step are inlined (:func:`~transactive.devices._kernels.inline`) and pass numbers, and
flat tuples of numbers (the house's ETP coefficients ``k``, its band, the step's schedule).
Three of numba's limits shape this: its parallel builds lose the writes made through a named
tuple's attributes (hence the plain tuples for whatever is written), their array analysis fails
on nested tuples returned by inlined code (hence flat returns), and an inlined helper that takes
arrays inside an inner loop of a parallel loop pays an atomic reference count per array per call
(hence one house per iteration of the parallel loop, and no blocks of houses).

Where the time goes (one core, 3e5 houses, this project's shared 2-core machine; the figures
are in :mod:`transactive.devices.hvac`). A physics step costs some 45 ns a house: the heat
flows' and the accounts' divisions (which cannot become multiplications without changing the
reference's rounding; :func:`_metered` skips the three that an idle house makes exact
identities), the closed form and the crossing test, inline (:func:`_piece`), and for the one
house in five or six that switches inside a 60 s step, or whose step a schedule cuts, the
exponentials of :func:`_piece_events` (a call). The interval bid costs some 180 ns a house,
mostly chains of dependent divisions and exponentials: the setpoints' on-time searches (about
one search a house, three iterations a search, two exponentials an iteration: a third of the
bid), the must-run test and search, the can-run crossing (one house in seven). No fast-math:
it would reorder the reference's operations.

Both cores for large populations (:func:`~transactive.devices._kernels.loop`);
:func:`step_many_houses` has both builds too, and its caller picks by houses times steps (a day
of a thousand houses is tens of milliseconds of work, five steps of one hundred are not worth
waking the second core's thread, which costs up to milliseconds when another process holds that
core). Compiled on first use and
cached in ``__pycache__``; :mod:`transactive.devices.hvac` imports this module only when a
population first runs a kernel, so importing the package does not load numba.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numba
import numpy as np

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

_newton_step = inline(least_on_time_step)
_secant = inline(bracket_secant)
_ramp_bid_point = inline(ramp_bid_point)
_ramp_setpoint_at = inline(ramp_setpoint_at)

#: The reference's constants (:mod:`transactive.devices.hvac`: ``_NEWTON_ITERATIONS``,
#: ``_ROOT_TOLERANCE_S``, ``_SECONDS_PER_HOUR``); a test checks that they agree. Module
#: constants, not imports: numba freezes them into the cached machine code, whose cache knows
#: only this file.
NEWTON_ITERATIONS = 60
ROOT_TOLERANCE_S = 1e-6
SECONDS_PER_HOUR = 3600.0

_INF = math.inf

_power_at_row = inline(power_at_row)


# ---------------------------------------------------------------------------- arguments


class Houses(NamedTuple):
    """Per-house parameters (N,) the kernels read: read-only, fixed for a population.

    The ETP coefficients (:class:`~transactive.devices.hvac.EtpCoefficients`), the equipment
    and gains of :meth:`~transactive.devices.hvac.HvacPopulation._heat_inputs`, the thermostat
    and the comfort band (its uncomfortable and comfortable edges and the override hysteresis,
    ``HvacPopulation._band_edges_c``) and the ramp controller's parameters.
    """

    r1: Any
    r2: Any
    inv_ua: Any
    inv_hm: Any
    ka: Any
    km: Any
    la: Any
    lm: Any
    cooling: Any  # bool
    use_latent: Any  # bool
    direction: Any
    cooling_capacity: Any
    heating_capacity: Any
    cooling_cop: Any
    heating_cop: Any
    fan: Any
    fan_heat_share: Any
    latent_load_fraction: Any
    shgf: Any
    aperture: Any
    gains: Any
    mass_internal_share: Any
    mass_solar_share: Any
    ua: Any
    air_capacity: Any
    deadband: Any
    setpoint: Any
    comfort_min: Any
    comfort_max: Any
    ramp_low: Any
    ramp_high: Any
    uncomfortable: Any
    comfortable: Any
    hysteresis: Any


class Weather(NamedTuple):
    """The weather of T steps (T,), as :func:`_heat` combines it with the houses' parameters.

    The cooling and heating capacity factors and COP divisors of the equipment curves,
    ``1 + exp(4 - 10 RH)`` of the sensible heat ratio, the mean wall irradiance, the GHI and the
    outdoor temperature (``HvacPopulation._weather``).
    """

    cool_factor: Any
    heat_factor: Any
    cool_divisor: Any
    heat_divisor: Any
    humidity_term: Any
    flux: Any
    ghi: Any
    outdoor: Any


class Heat(NamedTuple):
    """Heat flows a caller computed (M,), or empty arrays: the kernel computes them (:func:`_heat`).

    :class:`~transactive.devices.hvac.HeatInputs`' fields, with the internal and the solar
    gain summed.
    """

    q_air: Any
    q_mass: Any
    q_on: Any
    electric: Any
    gains_solar: Any
    latent: Any
    fan: Any


class State(NamedTuple):
    """The houses' state (N,): air and mass temperature, on, duty, guard-only, setpoint."""

    air: Any
    mass: Any
    on: Any  # bool
    duty: Any
    guard: Any  # bool
    setpoint: Any


#: The heat accounts (kWh) the steps add to, in the order the kernels take them: a plain tuple
#: of the population's arrays, updated in place. (Not a NamedTuple: numba's parallel loops lose
#: the writes made through a named tuple's attributes; only the other tuples are named here,
#: and only read.)
ACCOUNTS = (
    "heat_hvac_kwh", "heat_latent_kwh", "heat_fan_kwh", "electric_fan_kwh", "heat_gains_kwh",
    "heat_envelope_loss_kwh",
)  # fmt: skip


# ---------------------------------------------------------------------------- ETP pieces


@inline
def _coefficients(
    houses: Any, i: int
) -> tuple[float, float, float, float, float, float, float, float]:
    """House ``i``'s ``k = (r1, r2, 1/UA, 1/Hm, ka, km, la, lm)``."""
    h = houses
    return (h.r1[i], h.r2[i], h.inv_ua[i], h.inv_hm[i], h.ka[i], h.km[i], h.la[i], h.lm[i])


@inline
def _modes(
    ta: float, tm: float, q_air: float, q_mass: float, outdoor: float, k: Any
) -> tuple[float, float, float, float, float, float]:
    """Steady state and modal amplitudes from ``(ta, tm)`` (hvac ``_etp_modes``).

    ``q_air`` is all the heat reaching the air; returns ``ta_ss, tm_ss, alpha1, alpha2,
    beta1, beta2``.
    """
    _, _, inv_ua, inv_hm, ka, km, la, lm = k
    ta_ss = outdoor + (q_air + q_mass) * inv_ua
    tm_ss = ta_ss + q_mass * inv_hm
    da = ta - ta_ss
    dm = tm - tm_ss
    alpha1 = ka * da + km * dm
    beta1 = la * da + lm * dm
    return ta_ss, tm_ss, alpha1, da - alpha1, beta1, dm - beta1


@inline
def _expm1(x: float) -> float:
    """``e^x - 1``: ``expm1`` for small ``|x|``, else ``exp(x) - 1``.

    The subtraction is exact for ``x`` in ``[-ln 2, ln 2]`` and ``exp`` costs half of the C
    library's ``expm1``; within one unit of 1.0's last place of numpy's ``expm1``, which is all
    a step's integral needs (``e = m + 1`` is then ``exp(x)`` itself).
    """
    if abs(x) < 1e-3:
        return math.expm1(x)
    return math.exp(x) - 1.0


@inline
def _bound(offset: float, a1: float, a2: float, e1_end: float, e2_end: float) -> float:
    """An upper bound of ``g(t) = offset + a1 e^{r1 t} + a2 e^{r2 t}`` on ``[0, horizon]``.

    Each term at most its larger end value (hvac ``_crossings``): ``g`` has no root there where
    this is negative.
    """
    return offset + max(a1, a1 * e1_end) + max(a2, a2 * e2_end)


@jit
def _crossing_time(
    offset: float,
    a1: float,
    a2: float,
    r1: float,
    r2: float,
    lo: float,
    hi: float,
    g_lo: float,
    g_hi: float,
) -> float:
    """Root in ``[lo, hi]`` of ``offset + a1 e^{r1 t} + a2 e^{r2 t}`` (hvac ``_crossing_time``).

    Bracketed Newton iteration from the secant's root, until the bracket or the step is below
    ``ROOT_TOLERANCE_S``.
    """
    lo0 = lo
    hi0 = hi
    t = 0.5 * (lo + hi)
    secant = lo - g_lo * (hi - lo) / (g_hi - g_lo)
    if math.isfinite(secant) and secant > lo and secant < hi:
        t = secant
    for _ in range(NEWTON_ITERATIONS):
        e1 = math.exp(r1 * t)
        e2 = math.exp(r2 * t)
        f = offset + a1 * e1 + a2 * e2
        if f < 0:
            lo = t
        else:
            hi = t
        slope = a1 * r1 * e1 + a2 * r2 * e2
        newton = t - f / slope
        if math.isfinite(newton) and newton > lo and newton < hi:
            t_next = newton
        else:
            t_next = 0.5 * (lo + hi)
        done = (hi - lo < ROOT_TOLERANCE_S) or (abs(t_next - t) < ROOT_TOLERANCE_S)
        t = t_next
        if done:
            break
    return min(max(t, lo0), hi0)


@jit
def _crossing(
    offset: float,
    a1: float,
    a2: float,
    r1: float,
    r2: float,
    horizon: float,
    e1_end: float,
    e2_end: float,
) -> tuple[bool, float]:
    """Whether and when ``g(t) = offset + a1 e^{r1 t} + a2 e^{r2 t}`` first reaches 0 by then.

    ``g(0) < 0``; hvac ``_crossings`` for one entry: the bound test, the extremum, the bracket.
    """
    if not _bound(offset, a1, a2, e1_end, e2_end) >= 0:
        return False, 0.0
    g_end = offset + a1 * e1_end + a2 * e2_end
    ratio = -(a2 * r2) / (a1 * r1)
    t_ext = math.log(ratio) / (r1 - r2) if ratio > 0 else -1.0
    interior = math.isfinite(t_ext) and t_ext > 0 and t_ext < horizon
    if interior:
        g_ext = offset + a1 * math.exp(r1 * t_ext) + a2 * math.exp(r2 * t_ext)
    else:
        t_ext = 0.0
        g_ext = offset + a1 + a2  # e^0 = 1 exactly
    early = interior and g_ext >= 0
    if not (early or g_end >= 0):
        return False, 0.0
    from_ext = interior and not early
    lo = t_ext if from_ext else 0.0
    hi = t_ext if early else horizon
    g_lo = g_ext if from_ext else offset + a1 + a2
    g_hi = g_ext if early else g_end
    return True, _crossing_time(offset, a1, a2, r1, r2, lo, hi, g_lo, g_hi)


@inline
def _pass(
    ta: float,
    tm: float,
    state: bool,
    heat: Any,
    switch_on: float,
    switch_off: float,
    d: float,
    k: Any,
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """One pass of ``etp_advance`` in ``state``: ``s_on``, the modes, the threshold, the sign.

    ``heat`` is ``(q_on, q_air, q_mass, outdoor)``; the pass's event is the first root of
    ``g(t) = sign (Ta(t) - threshold)``.
    """
    q_on, q_air, q_mass, outdoor = heat
    s_on = 1.0 if state else 0.0
    ta_ss, tm_ss, a1, a2, b1, b2 = _modes(ta, tm, q_air + q_on * s_on, q_mass, outdoor, k)
    threshold = switch_off if state else switch_on
    sign = -d if state else d
    return s_on, ta_ss, tm_ss, a1, a2, b1, b2, threshold, sign


@jit
def _piece_events(
    ta: float,
    tm: float,
    on: bool,
    heat: tuple[float, float, float, float],
    span: float,
    switch_on: float,
    switch_off: float,
    d: float,
    k: tuple[float, float, float, float, float, float, float, float],
    cached: tuple[float, float, float, float, float],
) -> tuple[float, float, bool, float, float]:
    """One house over ``span`` s, switching at its thresholds (hvac ``etp_advance``, one house).

    ``cached`` is ``(cached_dt, m1, m2, m1 / r1, m2 / r2)`` with ``m = expm1(r cached_dt)``
    (numpy's), used when a pass spans exactly ``cached_dt``. Returns ``(air, mass, on,
    on_time_s, excess_ks)``.
    """
    r1, r2 = k[0], k[1]
    outdoor = heat[3]
    # the thermostat's check at the start: off at or past switch_off, on at or past switch_on
    state = d * (ta - switch_off) > 0 if on else d * (ta - switch_on) >= 0
    remaining = span
    on_time = 0.0
    excess = 0.0
    while True:
        r = remaining
        s_on, ta_ss, tm_ss, a1, a2, b1, b2, threshold, sign = _pass(
            ta, tm, state, heat, switch_on, switch_off, d, k
        )
        whole = r == cached[0]
        if whole:
            m1 = cached[1]
            m2 = cached[2]
        else:
            m1 = _expm1(r1 * r)
            m2 = _expm1(r2 * r)
        crosses, t_c = _crossing(
            sign * (ta_ss - threshold), sign * a1, sign * a2, r1, r2, r, m1 + 1.0, m2 + 1.0
        )
        tau = r
        if crosses:
            tau = t_c
            m1 = _expm1(r1 * t_c)
            m2 = _expm1(r2 * t_c)
        e1 = m1 + 1.0
        e2 = m2 + 1.0
        ta = threshold if crosses else ta_ss + a1 * e1 + a2 * e2
        tm = tm_ss + b1 * e1 + b2 * e2
        on_time += tau * s_on
        if whole and not crosses:
            q1 = cached[3]
            q2 = cached[4]
        else:
            q1 = m1 / r1
            q2 = m2 / r2
        excess += (ta_ss - outdoor) * tau + a1 * q1 + a2 * q2
        if not crosses:
            break
        remaining -= tau
        state = not state
    return ta, tm, state, on_time, excess


@inline
def _piece(
    ta: float,
    tm: float,
    on: bool,
    heat: tuple[float, float, float, float],
    span: float,
    switch_on: float,
    switch_off: float,
    d: float,
    k: tuple[float, float, float, float, float, float, float, float],
    cached: tuple[float, float, float, float, float],
) -> tuple[float, float, bool, float, float]:
    """:func:`_piece_events`, with its most common case inline: a whole cached step, no event.

    The first pass of :func:`_piece_events` with numpy's ``expm1(r dt)``, the same operations:
    when the crossing test (:func:`_bound`) rules out an event, that pass is the answer;
    otherwise (or for another span) :func:`_piece_events` solves the piece.
    """
    if span == cached[0]:
        state = d * (ta - switch_off) > 0 if on else d * (ta - switch_on) >= 0
        s_on, ta_ss, tm_ss, a1, a2, b1, b2, threshold, sign = _pass(
            ta, tm, state, heat, switch_on, switch_off, d, k
        )
        m1 = cached[1]
        m2 = cached[2]
        e1 = m1 + 1.0
        e2 = m2 + 1.0
        if _bound(sign * (ta_ss - threshold), sign * a1, sign * a2, e1, e2) < 0:
            return (
                ta_ss + a1 * e1 + a2 * e2,
                tm_ss + b1 * e1 + b2 * e2,
                state,
                span * s_on,
                (ta_ss - heat[3]) * span + a1 * cached[3] + a2 * cached[4],
            )
    return _piece_events(ta, tm, on, heat, span, switch_on, switch_off, d, k, cached)


@inline
def _phase(t: float, on: bool, schedule: Any, band: Any) -> tuple[float, bool, float, float]:
    """The schedule's phase at ``t`` (one iteration of ``ramp._follow_schedule``, one house).

    ``schedule`` is ``(follows, begin, switch, finish)``, ``band`` ``(d, uncomfortable,
    comfortable, hysteresis, plain_on, plain_off)``. Returns the phase's end (``inf`` outside
    the schedule), the state entering it and its switch-on and switch-off thresholds: scheduled
    on, off at the comfortable edge and on again ``hysteresis`` inside it; scheduled off, on at
    the uncomfortable edge and off ``hysteresis`` inside it; else the plain thresholds.
    """
    follows, begin, switch, finish = schedule
    d, uncomfortable, comfortable, hysteresis, plain_on, plain_off = band
    inward = d * hysteresis
    started = follows and t >= begin
    run_phase = started and t < switch
    off_phase = started and t >= switch and t < finish
    if follows and t < begin:
        boundary = begin
    elif run_phase:
        boundary = switch
    elif off_phase:
        boundary = finish
    else:
        boundary = _INF
    state = on
    if run_phase and t == begin:
        state = True
    if off_phase and t == switch:
        state = False
    if run_phase:
        return boundary, state, comfortable + inward, comfortable
    if off_phase:
        return boundary, state, uncomfortable, uncomfortable - inward
    return boundary, state, plain_on, plain_off


@inline
def _step_cache(dt: float, cached: Any, i: int) -> tuple[float, float, float, float, float]:
    """House ``i``'s ``(dt, m1, m2, m1 / r1, m2 / r2)`` of :func:`_piece` from ``cached``.

    ``cached`` holds numpy's ``m = expm1(r dt)`` of both modes and ``m / r``, (N,) each.
    """
    return dt, cached[0][i], cached[1][i], cached[2][i], cached[3][i]


@inline
def _advance_house(
    ta: float,
    tm: float,
    on: bool,
    heat: tuple[float, float, float, float],
    start: float,
    dt: float,
    any_follows: bool,
    schedule: tuple[bool, float, float, float],
    band: tuple[float, float, float, float, float, float],
    k: tuple[float, float, float, float, float, float, float, float],
    cached: tuple[float, float, float, float, float],
) -> tuple[float, float, bool, float, float, bool]:
    """The control policy over ``[start, start + dt)`` for one house (hvac ``_advance``).

    :func:`transactive.devices.ramp._follow_schedule` for one house: without a schedule in
    force for any house (``any_follows`` False) one piece of ``dt`` with the plain thresholds;
    otherwise the step cut at the schedule's instants (:func:`_phase`), each piece solved by
    :func:`_piece` with its phase's thresholds. Returns ``(air, mass, on, on_time_s, excess_ks,
    ok)``; ``ok`` is False where a piece's thresholds open no positive deadband (the reference
    raises; the house is not advanced further).
    """
    d = band[0]
    plain_on = band[4]
    plain_off = band[5]
    if not any_follows:  # the reference's shortcut: one piece of dt, the plain thresholds
        if not d * (plain_on - plain_off) > 0:
            return ta, tm, on, 0.0, 0.0, False
        ta, tm, on, on_time, excess = _piece(
            ta, tm, on, heat, dt, plain_on, plain_off, d, k, cached
        )
        return ta, tm, on, on_time, excess, True
    end = start + dt
    t = start
    on_time = 0.0
    excess = 0.0
    while True:
        boundary, state, s_on, s_off = _phase(t, on, schedule, band)
        stop = min(boundary, end)
        if not d * (s_on - s_off) > 0:
            return ta, tm, on, on_time, excess, False
        ta, tm, on, piece_on, piece_excess = _piece(
            ta, tm, state, heat, stop - t, s_on, s_off, d, k, cached
        )
        on_time += piece_on
        excess += piece_excess
        t = stop
        if not stop < end:
            return ta, tm, on, on_time, excess, True


# ---------------------------------------------------------------------------- houses


@inline
def _heat(
    houses: Any, i: int, weather: Any, step: int, latent_used: bool
) -> tuple[float, float, float, float, float, float, float]:
    """House ``i``'s heat flows under the weather of ``step`` (hvac ``_heat_inputs``).

    GridLAB-D ``house_e`` (see :meth:`~transactive.devices.hvac.HvacPopulation._heat_inputs`):
    capacity and COP at the outdoor temperature, the sensible share of a cooling coil that
    models latent heat, the fan's heat, the solar and internal gains split between air and
    mass. Returns ``(q_air, q_mass, q_on, electric_on, gains + solar, latent_on, solar)``.
    """
    h = houses
    w = weather
    cooling = h.cooling[i]
    if cooling:
        capacity = h.cooling_capacity[i] * w.cool_factor[step]
        cop = h.cooling_cop[i] / w.cool_divisor[step]
    else:
        capacity = h.heating_capacity[i] * w.heat_factor[step]
        cop = h.heating_cop[i] / w.heat_divisor[step]
    fan = h.fan[i]
    electric = capacity / cop + fan
    if latent_used:
        if h.use_latent[i] and cooling:
            shr = 1.0 / (1.1 + h.latent_load_fraction[i] / w.humidity_term[step])
        else:
            shr = 1.0
        sensible = capacity * shr
    else:
        sensible = capacity
    q_on = -h.direction[i] * sensible + h.fan_heat_share[i] * fan
    solar = (h.shgf[i] * w.flux[step] + h.aperture[i] * w.ghi[step]) / 1000.0
    gains = h.gains[i]
    f_int = h.mass_internal_share[i]
    f_sol = h.mass_solar_share[i]
    q_air = (1.0 - f_int) * gains + (1.0 - f_sol) * solar
    q_mass = f_int * gains + f_sol * solar
    return q_air, q_mass, q_on, electric, gains + solar, capacity - sensible, solar


@inline
def _flows(
    houses: Any, i: int, weather: Any, step: int, latent_used: bool
) -> tuple[float, float, float, float, float, float, float]:
    """House ``i``'s :class:`Heat` fields under the weather of ``step`` (:func:`_heat`)."""
    q_air, q_mass, q_on, electric, gains_solar, latent, _ = _heat(
        houses, i, weather, step, latent_used
    )
    return q_air, q_mass, q_on, electric, gains_solar, latent, houses.fan[i]


@inline
def _given_flows(heat: Any, i: int) -> tuple[float, float, float, float, float, float, float]:
    """House ``i``'s :class:`Heat` fields as the caller computed them."""
    h = heat
    return (
        h.q_air[i],
        h.q_mass[i],
        h.q_on[i],
        h.electric[i],
        h.gains_solar[i],
        h.latent[i],
        h.fan[i],
    )


@inline
def _band(
    houses: Any, i: int, guard: bool, setpoint: float
) -> tuple[float, float, float, float, float, float]:
    """House ``i``'s ``(d, uncomfortable, comfortable, hysteresis, plain_on, plain_off)``.

    The plain thresholds (hvac ``_plain_thresholds_c``): the deadband thermostat around
    ``setpoint``, or the band's edges for a house under direct control (``guard``).
    """
    d = houses.direction[i]
    unc = houses.uncomfortable[i]
    comf = houses.comfortable[i]
    if guard:
        plain_on, plain_off = unc, comf
    else:
        half = 0.5 * houses.deadband[i]
        plain_on, plain_off = setpoint + d * half, setpoint - d * half
    return d, unc, comf, houses.hysteresis[i], plain_on, plain_off


@inline
def _deadbands_open(band: Any, schedule: Any, start: float, end: float) -> bool:
    """Whether every pair of thresholds a house uses over ``[start, end)`` opens a deadband.

    The plain pair outside the schedule, the scheduled-on and scheduled-off pairs of the phases
    the step overlaps (:func:`_phase`): the reference's refusal, checked before anything
    changes.
    """
    d, uncomfortable, comfortable, hysteresis, plain_on, plain_off = band
    follows, begin, switch, finish = schedule
    inward = d * hysteresis
    if (not follows or start < begin or end > finish) and not d * (plain_on - plain_off) > 0:
        return False
    running = follows and max(start, begin) < min(end, switch)
    if running and not d * ((comfortable + inward) - comfortable) > 0:
        return False
    resting = follows and max(start, switch) < min(end, finish)
    return not (resting and not d * (uncomfortable - (uncomfortable - inward)) > 0)


@inline
def _metered(
    heat: Any, u: float, on_time: float, excess: float, dt: float, fan_heat_share: float, ua: float
) -> tuple[float, float, float, float, float, float, float]:
    """A step's increments of the six :data:`ACCOUNTS`, and its metered energy (kWh).

    hvac ``HvacPopulation.step``: ``heat`` is the house's :class:`Heat` fields, ``u`` its duty.
    (A flat tuple: numba's parallel array analysis fails on nested tuples from inlined code.)
    """
    _, _, q_on, electric, gains_solar, latent, fan = heat
    gained = gains_solar * dt / SECONDS_PER_HOUR
    lost = ua * excess / SECONDS_PER_HOUR
    if on_time == 0.0:
        # Off all step (most houses, most steps): each ``x * 0 / 3600`` is ``x * 0`` exactly
        # (a zero keeps its sign through the division, a NaN stays NaN): three divisions fewer.
        full_h = u * on_time
        hvac = q_on * u * on_time
        energy = electric * u * on_time
    else:
        full_h = u * on_time / SECONDS_PER_HOUR  # hours at full output
        hvac = q_on * u * on_time / SECONDS_PER_HOUR
        energy = electric * u * on_time / SECONDS_PER_HOUR
    return (
        hvac,
        latent * full_h,
        fan_heat_share * fan * full_h,
        fan * full_h,
        gained,
        lost,
        energy,
    )


@loop
def heat_inputs(
    houses: Any,
    weather: Any,
    latent_used: bool,
    out_q_air: Any,
    out_q_mass: Any,
    out_q_on: Any,
    out_electric: Any,
    out_solar: Any,
    out_latent: Any,
) -> None:
    """Every house's heat flows (:func:`_heat`, the first step of ``weather``) into ``out_*``.

    The fields of :class:`~transactive.devices.hvac.HeatInputs` that vary with the weather, in
    six (N,) arrays (one (6, N) array would be fresh memory from the system, zeroed page by
    page at every call, where arrays of one column are the allocator's to reuse).
    """
    for i in numba.prange(out_q_air.size):
        q_air, q_mass, q_on, electric, _, latent, solar = _heat(houses, i, weather, 0, latent_used)
        out_q_air[i] = q_air
        out_q_mass[i] = q_mass
        out_q_on[i] = q_on
        out_electric[i] = electric
        out_solar[i] = solar
        out_latent[i] = latent


# ---------------------------------------------------------------------------- physics steps


@heavy_loop
def step_houses(
    houses: Any,
    weather: Any,
    latent_used: bool,
    heat: Any,
    state: Any,
    start: float,
    dt: float,
    scheduled: bool,
    any_follows: bool,
    begin: float,
    switch: Any,
    finish: float,
    bands_open: bool,
    cached: Any,
    accounts: Any,
    out: Any,
    out_on: Any,
) -> int:
    """One physics step of every house (hvac ``HvacPopulation.step``).

    The heat flows under ``weather`` (one step) by :func:`_heat`, or ``heat`` where it has the
    houses' columns (a subclass's own equipment). Under a schedule (``scheduled``) every house
    that is not guard-only follows it: on from ``begin`` to its ``switch``, off to ``finish``;
    ``any_follows`` is whether any house does. ``cached`` holds numpy's ``m = expm1(r dt)`` of
    both modes and ``m / r`` (:func:`_step_cache`). Writes air, mass, energy and the new duty
    into ``out`` (four (N,) arrays), the state into ``out_on``, and adds the step's heat to
    ``accounts`` in place. Returns the number of houses whose thresholds open no positive
    deadband; those are found first, and then nothing is advanced nor accounted (their air is
    NaN in ``out``; the caller raises). ``bands_open`` says that every house's band opens its
    own deadbands (the edges, the scheduled pairs: fixed per population), so that only the
    plain deadband around a setpoint needs that check.
    """
    n = out_on.size
    given = heat.q_air.size == n
    outdoor = weather.outdoor[0]
    end = start + dt
    bad = 0
    for i in numba.prange(n):  # refuse before anything changes, as the reference does
        guard = state.guard[i]
        follows = scheduled and not guard
        if bands_open:  # only a setpoint's deadband can fail, where the step uses it
            if guard or (follows and start >= begin and end <= finish):
                continue
            d = houses.direction[i]
            half = 0.5 * houses.deadband[i]
            sp = state.setpoint[i]
            ok = d * ((sp + d * half) - (sp - d * half)) > 0
        else:
            band = _band(houses, i, guard, state.setpoint[i])
            ok = _deadbands_open(band, (follows, begin, switch[i], finish), start, end)
        if not ok:
            bad += 1
            out[0][i] = math.nan
    if bad:
        return bad
    for i in numba.prange(n):
        flows = _given_flows(heat, i) if given else _flows(houses, i, weather, 0, latent_used)
        guard = state.guard[i]
        band = _band(houses, i, guard, state.setpoint[i])
        u = state.duty[i]
        was_on = state.on[i]
        a, m, now_on, on_time, excess, ok = _advance_house(
            state.air[i], state.mass[i], was_on, (flows[2] * u, flows[0], flows[1], outdoor),
            start, dt, any_follows, (scheduled and not guard, begin, switch[i], finish), band,
            _coefficients(houses, i), _step_cache(dt, cached, i),
        )  # fmt: skip
        if not ok:  # (the check above found every such house: never reached)
            bad += 1
            a = math.nan
        add = _metered(flows, u, on_time, excess, dt, houses.fan_heat_share[i], houses.ua[i])
        for j in range(6):
            accounts[j][i] += add[j]
        out[0][i] = a
        out[1][i] = m
        out[2][i] = add[6]
        out[3][i] = u if (now_on and was_on) else 1.0
        out_on[i] = now_on
    return bad


@loop  # called as .serial or .parallel: the work is houses times steps (see the module)
def step_many_houses(
    houses: Any,
    weather: Any,
    latent_used: bool,
    state: Any,
    start: float,
    dt: float,
    scheduled_steps: int,
    any_follows: bool,
    begin: float,
    switch: Any,
    finish: float,
    cached: Any,
    accounts: Any,
    chunks: int,
    out: Any,
    out_on: Any,
    out_accounts: Any,
    step_energy: Any,
    record: bool,
    record_energy: Any,
    record_air: Any,
) -> int:
    """``T`` consecutive steps of ``dt`` s of every house (``weather`` of T steps), house by house.

    Per house and step exactly :func:`step_houses` (the schedule in force for the first
    ``scheduled_steps`` steps); the state stays in registers between the steps and the houses
    are split into ``chunks`` (one per thread). ``out`` (four (N,) arrays) receives air, mass,
    the energy over all the steps and the duty, ``out_on`` the state, ``out_accounts`` (six)
    the accounts (``accounts`` plus the steps'), ``step_energy`` (chunks, T) each chunk's summed
    energy per step (kWh); with ``record``, ``record_energy`` and ``record_air`` (T, N) each
    step's energy and air temperature at its end. Returns the number of houses whose thresholds
    open no positive deadband (their air is NaN; the caller raises and keeps nothing).
    """
    n = out_on.size
    steps = weather.outdoor.size
    bad = 0
    size = (n + chunks - 1) // chunks
    for c in numba.prange(chunks):
        chunk_energy = np.zeros(steps)  # this thread's own sums: no cache line shared
        for i in range(c * size, min(n, (c + 1) * size)):
            a = state.air[i]
            m = state.mass[i]
            now_on = state.on[i]
            u = state.duty[i]
            guard = state.guard[i]
            band = _band(houses, i, guard, state.setpoint[i])
            k = _coefficients(houses, i)
            at_dt = _step_cache(dt, cached, i)
            acc = (
                accounts[0][i], accounts[1][i], accounts[2][i], accounts[3][i], accounts[4][i],
                accounts[5][i],
            )  # fmt: skip
            total = 0.0
            ok = True
            for step in range(steps):
                flows = _flows(houses, i, weather, step, latent_used)
                in_force = step < scheduled_steps
                was_on = now_on
                a, m, now_on, on_time, excess, ok = _advance_house(
                    a, m, now_on, (flows[2] * u, flows[0], flows[1], weather.outdoor[step]),
                    start + step * dt, dt, in_force and any_follows,
                    (in_force and not guard, begin, switch[i], finish), band, k, at_dt,
                )  # fmt: skip
                if not ok:
                    break
                add = _metered(
                    flows, u, on_time, excess, dt, houses.fan_heat_share[i], houses.ua[i]
                )
                energy = add[6]
                acc = (
                    acc[0] + add[0], acc[1] + add[1], acc[2] + add[2], acc[3] + add[3],
                    acc[4] + add[4], acc[5] + add[5],
                )  # fmt: skip
                u = u if (now_on and was_on) else 1.0
                total += energy
                chunk_energy[step] += energy
                if record:
                    record_energy[step, i] = energy
                    record_air[step, i] = a
            if not ok:
                bad += 1
            out[0][i] = a if ok else math.nan
            out[1][i] = m
            out[2][i] = total
            out[3][i] = u
            out_on[i] = now_on
            for j in range(6):
                out_accounts[j][i] = acc[j]
        step_energy[c, :] = chunk_energy
    return bad


@heavy_loop
def dry_runs(
    houses: Any,
    heat: Any,
    ta: Any,
    tm: Any,
    on: Any,
    setpoint: Any,
    outdoor: float,
    start: float,
    duration: float,
    switch: Any,
    finish: float,
    out_run: Any,
) -> int:
    """What M houses run over an interval on their schedules (hvac ``_scheduled_run_s``).

    The houses (``houses`` and ``heat`` their rows, at full duty, none guard-only, under the
    ``outdoor`` temperature) from
    ``(ta, tm, on)`` run from ``start`` to ``switch`` and are off to ``finish``, the band's
    edges overriding (:func:`_advance_house` with every house following): their on-time into
    ``out_run``, nothing else kept. Returns the number of houses whose thresholds open no
    positive deadband (their run is NaN; the caller raises).
    """
    bad = 0
    no_step = (math.nan, 0.0, 0.0, 0.0, 0.0)  # no piece has a cached length
    for i in numba.prange(out_run.size):
        band = _band(houses, i, False, setpoint[i])
        _, _, _, run, _, ok = _advance_house(
            ta[i], tm[i], on[i], (heat.q_on[i], heat.q_air[i], heat.q_mass[i], outdoor),
            start, duration, True, (True, start, switch[i], finish), band,
            _coefficients(houses, i), no_step,
        )  # fmt: skip
        out_run[i] = run if ok else math.nan
        if not ok:
            bad += 1
    return bad


# ---------------------------------------------------------------------------- interval bid


@inline
def _exp_at(r: float, t: float, t_cached: float, e_cached: float) -> float:
    """``exp(r t)``, numpy's cached value when ``t`` is the cached argument (1 at 0)."""
    if t == t_cached:
        return e_cached
    if t == 0.0:
        return 1.0
    return math.exp(r * t)


@inline
def _excess(
    tau: float,
    on_modes: Any,
    off_heat: tuple[float, float, float],
    duration: float,
    d: float,
    uncomfortable: float,
    heating_rate: float,
    k: Any,
    e_full: tuple[float, float],
) -> tuple[float, float]:
    """``h(tau)``, the highest ``d (Ta - unc)`` left off after ``tau`` on, and its slope.

    hvac ``HvacPopulation._on_time_bounds_s`` ``excess_c`` for one house: ``on_modes`` are the
    modes of the on-trajectory from the interval's start (:func:`_modes`), ``off_heat``
    ``(q_air, q_mass, outdoor)`` with the HVAC off, ``e_full`` numpy's ``exp(r duration)``.
    """
    r1, r2, _, _, ka, _, _, _ = k
    ta_ss, tm_ss, a1, a2, b1, b2 = on_modes
    if tau == 0.0:  # e^0 = 1 exactly, in every implementation
        e1 = 1.0
        e2 = 1.0
    else:
        e1 = math.exp(r1 * tau)
        e2 = math.exp(r2 * tau)
    q_air, q_mass, outdoor = off_heat
    off_ss, _, o1, o2, _, _ = _modes(
        ta_ss + a1 * e1 + a2 * e2, tm_ss + b1 * e1 + b2 * e2, q_air, q_mass, outdoor, k
    )
    g0 = d * (off_ss - uncomfortable)
    g1 = d * o1
    g2 = d * o2
    rest = duration - tau
    x1 = _exp_at(r1, rest, duration, e_full[0])
    x2 = _exp_at(r2, rest, duration, e_full[1])
    at_start = g0 + g1 + g2
    at_end = g0 + g1 * x1 + g2 * x2
    ratio = -(g2 * r2) / (g1 * r1)
    inside = False
    t_ext = 0.0
    if ratio > 0:  # (the reference's log(1) = 0 is no interior extremum either)
        t_ext = math.log(ratio) / (r1 - r2)
        inside = math.isfinite(t_ext) and t_ext > 0 and t_ext < rest
    if inside:
        y1 = math.exp(r1 * t_ext)
        y2 = math.exp(r2 * t_ext)
        at_ext = g0 + g1 * y1 + g2 * y2
    else:
        y1 = 1.0
        y2 = 1.0
        at_ext = -_INF
    end_wins = at_end >= at_start
    worst = max(at_start, at_end, at_ext)
    # the lag s of the maximum after the switch-off, and exp(A s)_11 there
    ext_wins = at_ext >= max(at_start, at_end)
    if ext_wins:
        phi = ka * y1 + (1.0 - ka) * y2
    elif end_wins:
        phi = ka * x1 + (1.0 - ka) * x2
    else:
        phi = 1.0
    if ext_wins or (end_wins and rest > 0):
        return worst, d * heating_rate * phi
    # at s = 0 the maximum moves with tau: the slope of the on-trajectory itself
    return worst, d * (r1 * a1 * e1 + r2 * a2 * e2)


@inline
def _end_of_interval(
    tau: float, c: tuple[float, float, float], r1: float, r2: float, duration: float, e_full: Any
) -> float:
    """The air at the interval's end after ``tau`` on, then off: ``c0 + c1 e^{r1 s} + c2 e^{r2 s}``.

    ``s = duration - tau`` (hvac ``_end_of_interval_c``); numpy's ``exp(r duration)`` at
    ``tau = 0``, 1 at ``tau = duration``.
    """
    rest = duration - tau
    return (
        c[0]
        + c[1] * _exp_at(r1, rest, duration, e_full[0])
        + c[2] * _exp_at(r2, rest, duration, e_full[1])
    )


@inline
def _bid_point(houses: Any, i: int, share: float, mean: float, std: float) -> tuple[float, float]:
    """House ``i``'s bid setpoint for a ``share`` of its band, and its ramp price.

    :func:`transactive.devices._kernels.ramp_bid_point` on the house's band.
    """
    h = houses
    return _ramp_bid_point(
        h.setpoint[i], h.comfortable[i], h.uncomfortable[i], h.comfort_min[i], h.comfort_max[i],
        h.ramp_low[i], h.ramp_high[i], h.direction[i], share, mean, std,
    )  # fmt: skip


@heavy_loop
def interval_plan(
    houses: Any,
    ta: Any,
    tm: Any,
    heat: Any,
    weather: Any,
    latent_used: bool,
    duration: float,
    cached: Any,
    points: Any,
    shares: Any,
    prices: tuple[float, float, float, float],
    tolerances: tuple[float, float, float, int],
    out_bounds: Any,
    out_linear: Any,
    out_price: Any,
    out_power: Any,
    out_heat: Any,
) -> None:
    """The interval bid's prediction and curve of every house (hvac ``_interval_plan``).

    The heat flows are ``heat``'s where it has the houses' columns, else computed here under
    ``weather`` (:func:`_heat`) and written to ``out_heat`` (six arrays: those of
    :func:`heat_inputs`); ``cached`` is numpy's ``exp(r duration)`` of both modes. The bid's
    points are ``points`` (setpoints and prices, (N, J)) where they have rows, else those of
    :func:`_bid_point` for the ``shares``; ``prices`` is ``(floor, cap, mean, std)``,
    ``tolerances`` ``(band margin, on-time tolerance, setpoint tolerance, Newton steps)``. Per
    house: the can-run on-time ``tau_hi`` (the first crossing of the comfortable edge on the
    on-trajectory), the must-run ``tau_lo`` and whether the house is ``linear`` (hvac
    ``_on_time_bounds_s``), each bid setpoint's on-time
    (:func:`transactive.devices.ramp._setpoint_on_times_s` on hvac ``_end_of_interval_c``) and
    the curve's breakpoints (:func:`transactive.devices.ramp._interval_curves`).
    ``out_bounds`` (four arrays) receives tau_lo, tau_hi, run_lo, run_hi; a house that is not
    linear gets its must-run power at every point (its dry run, by the caller, then sets its
    run and its curve's powers).
    """
    n = ta.size
    given_heat = heat.q_air.size == n
    given_points = points[0].shape[0] == n
    j_count = points[0].shape[1] if given_points else shares.size
    price_floor, price_cap, mean, std = prices
    band_margin, on_time_tolerance, setpoint_tolerance, newton_steps = tolerances
    outdoor = weather.outdoor[0]
    for i in numba.prange(n):
        k = _coefficients(houses, i)
        r1 = k[0]
        r2 = k[1]
        d = houses.direction[i]
        unc = houses.uncomfortable[i]
        comf = houses.comfortable[i]
        if given_heat:
            q_air, q_mass, q_on, p_on, _, _, _ = _given_flows(heat, i)
        else:
            q_air, q_mass, q_on, p_on, _, latent, solar = _heat(houses, i, weather, 0, latent_used)
            out_heat[0][i] = q_air
            out_heat[1][i] = q_mass
            out_heat[2][i] = q_on
            out_heat[3][i] = p_on
            out_heat[4][i] = solar
            out_heat[5][i] = latent
        e_full = (cached[0][i], cached[1][i])
        x_a = ta[i]
        on_modes = _modes(x_a, tm[i], q_air + q_on, q_mass, outdoor, k)
        ta_ss, _, a1, a2, _, _ = on_modes
        # ---- can-run: the first crossing of the comfortable edge, running (s = -d)
        s = -d
        offset = s * (ta_ss - comf)
        cross = False
        t_cross = 0.0
        if _bound(offset, s * a1, s * a2, e_full[0], e_full[1]) >= 0:  # (no call for most)
            cross, t_cross = _crossing(
                offset, s * a1, s * a2, r1, r2, duration, e_full[0], e_full[1]
            )
        if s * (x_a - comf) >= 0:
            tau_hi = 0.0
        elif cross:
            tau_hi = t_cross
        else:
            tau_hi = duration
        # ---- must-run: the least on-time that keeps the air inside the uncomfortable edge
        heating_rate = q_on / houses.air_capacity[i]  # K/s the running HVAC adds
        off_heat = (q_air, q_mass, outdoor)
        h0, _ = _excess(0.0, on_modes, off_heat, duration, d, unc, heating_rate, k, e_full)
        tau_lo = 0.0
        linear = True
        if h0 + band_margin > 0:
            h_hi, _ = _excess(tau_hi, on_modes, off_heat, duration, d, unc, heating_rate, k, e_full)
            tau_lo = tau_hi  # the band cannot be held: must run all it can
            if not h_hi + band_margin <= 0:
                linear = False
            else:
                lo = 0.0
                hi = tau_hi
                t = _secant(lo, hi, h0 + band_margin, h_hi + band_margin)
                iteration = 0
                done = False
                while not done:
                    value, slope = _excess(
                        t, on_modes, off_heat, duration, d, unc, heating_rate, k, e_full
                    )
                    t, lo, hi, done = _newton_step(
                        value + band_margin, slope, t, lo, hi, iteration, on_time_tolerance,
                        newton_steps, True,
                    )  # fmt: skip
                    iteration += 1
                tau_lo = hi
        out_bounds[0][i] = tau_lo
        out_bounds[1][i] = tau_hi
        out_bounds[2][i] = tau_lo
        out_bounds[3][i] = tau_hi
        out_linear[i] = linear
        # ---- the curve: the points' prices, the must-run block at the cap
        must = p_on * tau_lo / duration
        for j in range(j_count):
            if given_points:
                target = points[0][i, j]
                price = points[1][i, j]
            else:
                target, price = _bid_point(houses, i, shares[j], mean, std)
            out_price[i, j] = min(max(price, price_floor), price_cap)
            out_power[i, j] = target  # the setpoint, until its on-time replaces it below
        out_price[i, j_count] = price_cap
        out_price[i, j_count + 1] = price_cap
        out_power[i, j_count] = must
        out_power[i, j_count + 1] = 0.0
        if not linear:
            for j in range(j_count):
                out_power[i, j] = must
            continue
        # ---- the setpoints' on-times: c0 + c1 e^{r1 s} + c2 e^{r2 s}, s = duration - tau, on
        # the end of a run-first-then-off schedule (hvac _end_of_interval_c)
        c0 = outdoor + (q_air + q_mass) * k[2] + a1 * e_full[0] + a2 * e_full[1]
        shift = q_on * k[2]
        c1 = (k[4] + k[5]) * shift
        c2 = shift - c1
        solve = tau_hi > tau_lo
        end_lo = 0.0
        end_hi = 0.0
        if solve:
            end_lo = _end_of_interval(tau_lo, (c0, c1, c2), r1, r2, duration, e_full)
            end_hi = _end_of_interval(tau_hi, (c0, c1, c2), r1, r2, duration, e_full)
        following = duration  # the next (more uncomfortable) setpoint's on-time, for monotony
        for jj in range(j_count):
            j = j_count - 1 - jj  # from the uncomfortable edge: the running maximum
            column = tau_lo
            if solve:
                target = out_power[i, j]
                g_lo = d * (end_lo - target)
                g_hi = d * (end_hi - target)
                column = tau_lo if g_lo <= 0 else tau_hi
                if g_lo > 0 and g_hi < 0:
                    lo = tau_lo
                    hi = tau_hi
                    t = _secant(lo, hi, g_lo, g_hi)
                    iteration = 0
                    done = False
                    while not done:
                        rest = duration - t
                        m1 = c1 * math.exp(r1 * rest)
                        m2 = c2 * math.exp(r2 * rest)
                        t, lo, hi, done = _newton_step(
                            d * (c0 + m1 + m2 - target), d * -(r1 * m1 + r2 * m2), t, lo, hi,
                            iteration, setpoint_tolerance, newton_steps, False,
                        )  # fmt: skip
                        iteration += 1
                    column = hi
            if jj > 0 and following > column:
                column = following
            following = column
            out_power[i, j] = p_on * column / duration


# ---------------------------------------------------------------------------- response


@loop
def respond(
    prices: Any,
    powers: Any,
    price: Any,
    fill: Any,
    p_on: Any,
    duration: float,
    bounds: Any,
    linear: Any,
    out_power: Any,
    out_tau: Any,
    out_refine: Any,
) -> None:
    """Each house's power on its curve and the on-time that draws it (hvac ``_follow``).

    ``BidCurves.power_at(price, fill)`` per house (``price``, ``fill`` of one value or one per
    house), the on-time target ``power D / p_on`` and the classification of
    :func:`transactive.devices.ramp._on_time_for_s` (``bounds``: tau_lo, tau_hi, run_lo,
    run_hi): the bid's own schedules at the breakpoints, its own on-time for a linear house
    between them; ``out_refine`` marks the houses the caller solves on dry runs (``out_tau``
    holds their target on-time then): those between the breakpoints and every one under its
    must-run (none included, where an unscheduled house's override may draw more).
    """
    for i in numba.prange(out_power.size):
        power = _power_at_row(prices, powers, i, price, fill)
        out_power[i] = power
        target = power * duration / p_on[i] if p_on[i] > 0 else 0.0
        tau_lo = bounds[0][i]
        tau_hi = bounds[1][i]
        run_lo = bounds[2][i]
        run_hi = bounds[3][i]
        tol = 1e-9 * max(run_hi, 1.0)
        at_hi = target >= run_hi - tol
        at_lo = abs(target - run_lo) <= tol
        upper = (not at_hi) and (not at_lo) and target > run_lo
        below = (not at_hi) and (not at_lo) and (not upper)  # under the must-run
        tau = tau_hi if at_hi else (tau_lo if at_lo else 0.0)
        if upper and linear[i]:
            tau = target
            upper = False
        out_refine[i] = upper or below
        out_tau[i] = target if (upper or below) else tau


@loop
def ramp_setpoints(houses: Any, price: Any, mean: float, std: float, out: Any) -> None:
    """The thermostat setpoint for a cleared price (:func:`transactive.devices.ramp.ramp_setpoint`).

    ``Tset + d (p - mean) |T_lim - Tset| / (k sigma)`` clipped to the band (GridLAB-D
    ``controller.cpp``, ramp mode), the band's edge the price points to when ``sigma`` is 0.
    """
    h = houses
    one_price = price.size == 1
    for i in numba.prange(out.size):
        p = price[0] if one_price else price[i]
        out[i] = _ramp_setpoint_at(
            p, h.setpoint[i], h.direction[i], h.comfort_min[i], h.comfort_max[i], h.ramp_low[i],
            h.ramp_high[i], mean, std,
        )  # fmt: skip
