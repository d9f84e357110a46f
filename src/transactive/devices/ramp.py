"""The ramp controller of the Olympic Peninsula demonstration (GridLAB-D ``controller.cpp``).

A thermostatic device bids at a price set by how far its temperature is from its setpoint,
within ``mean ± k sigma`` of recent prices; the cleared price moves its setpoint by the inverse
rule (Hammerstrom et al., "Pacific Northwest GridWise Testbed Demonstration Projects, Part I:
Olympic Peninsula Project", PNNL-17167, 2007). The quantity is the average power over the market
interval (as Widergren et al., PNNL-27235 Part II, recast the gridSMART bid): two blocks, what
the device must run at the price cap and what it can run besides at its ramp price
(:func:`_interval_curves`). Shared by the HVAC, water-heater and heat-pump populations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves

__all__ = ["ramp_bid_price", "ramp_setpoint"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def ramp_bid_price(
    temperature_c: FloatArray,
    setpoint_c: FloatArray,
    direction: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    mean_per_kwh: float,
    std_per_kwh: float,
) -> FloatArray:
    """Unclipped ramp-controller bid price (GridLAB-D ``controller.cpp``, ramp mode).

    ``price = mean + direction k sigma (T - Tset) / |T_lim - Tset|`` with ``(k, T_lim)`` the
    high side ``(ramp_high, Tmax)`` above the setpoint and the low side ``(ramp_low, Tmin)`` below.
    ``direction`` is +1 for a device that cools (pays more when warmer), -1 for one that heats.
    """
    above = temperature_c > setpoint_c
    k = np.where(above, ramp_high, ramp_low)
    half = np.where(above, comfort_max_c - setpoint_c, setpoint_c - comfort_min_c)
    return np.asarray(
        mean_per_kwh + direction * (temperature_c - setpoint_c) * k * std_per_kwh / half,
        dtype=np.float64,
    )


def ramp_setpoint(
    clearing_price: FloatArray,
    setpoint_c: FloatArray,
    direction: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    mean_per_kwh: float,
    std_per_kwh: float,
) -> FloatArray:
    """Thermostat setpoint for a cleared price: the inverse of :func:`ramp_bid_price`.

    ``Tset' = Tset + direction (p - mean) |T_lim - Tset| / (k sigma)``, clipped to
    ``[Tmin, Tmax]``; the side of the band is the side the shift points to. With ``sigma == 0``
    the setpoint goes to the band edge the price points to (``controller.cpp`` then keeps the
    base setpoint; the edge keeps the response the inverse of the bid, which is then ``mean``).
    """
    push = direction * (clearing_price - mean_per_kwh)
    up = push > 0
    k = np.where(up, ramp_high, ramp_low)
    half = np.where(up, comfort_max_c - setpoint_c, setpoint_c - comfort_min_c)
    if std_per_kwh > 0.0:
        shifted = setpoint_c + push * half / (k * std_per_kwh)
    else:
        shifted = setpoint_c + np.sign(push) * half
    return np.asarray(np.clip(shifted, comfort_min_c, comfort_max_c), dtype=np.float64)


def _interval_curves(
    ramp_price: FloatArray,
    must_kw: FloatArray,
    can_kw: FloatArray,
    price_cap: float,
    ids: StrArray | None,
) -> BidCurves:
    """Two blocks per device: ``must_kw`` at the cap, the rest up to ``can_kw`` at its ramp price.

    Breakpoints ``(p, can), (p, must), (cap, must), (cap, 0)``: at a price below ``p`` the device
    takes ``can_kw``, between ``p`` and the cap ``must_kw``; both blocks are vertical segments,
    so ``power_at(price, fill)`` shares each pro rata. Arrays are built valid (``p <= cap``,
    ``can >= must >= 0``).
    """
    cap = np.full_like(ramp_price, price_cap)
    prices = np.stack([ramp_price, ramp_price, cap, cap], axis=1)
    powers = np.stack([can_kw, must_kw, must_kw, np.zeros_like(must_kw)], axis=1)
    return BidCurves._trusted(prices, powers, ids)


def _follow_schedule(
    *,
    start_s: float,
    dt_s: float,
    on: BoolArray,
    follows: BoolArray,
    begin_s: float,
    switch_s: FloatArray,
    finish_s: float,
    uncomfortable_c: FloatArray,
    comfortable_c: FloatArray,
    hysteresis_c: FloatArray,
    direction: FloatArray,
    plain_on_c: FloatArray,
    plain_off_c: FloatArray,
    advance: Callable[[slice | IntArray, BoolArray, FloatArray, FloatArray, FloatArray], BoolArray],
) -> BoolArray:
    """Run a thermostatic population's control policy over ``[start_s, start_s + dt_s)``.

    The devices that ``follows`` a responded interval's schedule run from ``begin_s`` to their
    ``switch_s`` and are off from there to ``finish_s``; the others, and every device outside
    the interval, keep the plain thresholds. The span is cut at those instants (so a scheduled
    switch happens at its exact time inside a physics step) and each piece is handed to
    ``advance(index, on, piece_s, switch_on_c, switch_off_c) -> on``, the kind's exact solver,
    for the devices ``index`` (a slice of all of them, or the indices of those with a piece
    left) with the piece's thresholds:

    - scheduled on: on, but off at the comfortable edge and on again ``hysteresis_c`` inside it;
    - scheduled off: off, but on at the uncomfortable edge and off again ``hysteresis_c``
      inside it (a device never leaves its band for the schedule's sake).

    Entering a scheduled phase sets its state; the thresholds then override it. At most four
    pieces per device (before, on, off, after), so the loop ends; after the first piece only the
    devices with a piece left are advanced.
    """
    m = on.size
    end = float(start_s + dt_s)
    if not bool(follows.any()):  # no schedule in force: one piece, the plain thresholds
        return advance(slice(None), on, np.full(m, float(dt_s)), plain_on_c, plain_off_c)
    on = on.copy()
    now = np.full(m, float(start_s))
    sel: slice | IntArray = slice(None)
    while True:
        t = now[sel]
        fol = follows[sel]
        sw = switch_s[sel]
        started = fol & (t >= begin_s)
        before = fol & (t < begin_s)
        run_phase = started & (t < sw)
        off_phase = started & (t >= sw) & (t < finish_s)
        boundary = np.where(
            before, begin_s, np.where(run_phase, sw, np.where(off_phase, finish_s, np.inf))
        )
        stop = np.minimum(boundary, end)
        state = on[sel]
        state = np.where(run_phase & (t == begin_s), True, state)
        state = np.where(off_phase & (t == sw), False, state)
        unc, comf = uncomfortable_c[sel], comfortable_c[sel]
        inward = direction[sel] * hysteresis_c[sel]
        switch_on = np.where(run_phase, comf + inward, np.where(off_phase, unc, plain_on_c[sel]))
        switch_off = np.where(run_phase, comf, np.where(off_phase, unc - inward, plain_off_c[sel]))
        on[sel] = advance(sel, state, stop - t, switch_on, switch_off)
        now[sel] = stop
        left = np.flatnonzero(stop < end)
        if left.size == 0:
            return on
        sel = left if isinstance(sel, slice) else sel[left]


def _on_time_for_s(
    target_s: FloatArray,
    tau_lo_s: FloatArray,
    tau_hi_s: FloatArray,
    run_lo_s: FloatArray,
    run_hi_s: FloatArray,
    dry_run: Callable[[IntArray, FloatArray], FloatArray],
    *,
    linear: BoolArray | None = None,
    tolerance_s: float = 1e-6,
    max_halvings: int = 60,
) -> FloatArray:
    """The scheduled on-time under which each device runs ``target_s`` over its interval.

    ``(tau_lo, run_lo)`` and ``(tau_hi, run_hi)`` are the bid's two schedules and what the
    device then runs. At those breakpoints (every device that is not marginal) the answer is the
    bid's own schedule. A device flagged ``linear`` runs exactly its scheduled on-time for every
    schedule in ``[tau_lo, tau_hi]`` (no band override there: the bid checked it on the closed
    form), so a target in ``[run_lo, run_hi]`` is its own schedule. Any other marginal device's
    (``target`` strictly between ``0`` and ``run_lo``, or between ``run_lo`` and ``run_hi``
    without the flag) is found by bisection on ``dry_run(index, tau) -> run``, which runs the
    devices ``index`` on schedules ``tau``: the run is continuous and non-decreasing in the
    scheduled on-time. The loop stops when every bracket is below ``tolerance_s``;
    ``max_halvings`` halvings of a bracket of at most one interval get there for any interval
    up to ~3e11 s, so it is a bound that is never reached, not a cap.
    """
    tol = 1e-9 * np.maximum(run_hi_s, 1.0)
    at_hi = target_s >= run_hi_s - tol
    at_lo = np.abs(target_s - run_lo_s) <= tol
    upper = ~at_hi & ~at_lo & (target_s > run_lo_s)
    lower = ~at_hi & ~at_lo & ~upper & (target_s > tol)
    tau = np.where(at_hi, tau_hi_s, np.where(at_lo, tau_lo_s, 0.0))
    if linear is not None:
        exact = upper & linear
        tau = np.where(exact, target_s, tau)
        upper = upper & ~linear
    refine = np.flatnonzero(upper | lower)
    if refine.size:
        a = np.where(upper[refine], tau_lo_s[refine], 0.0)
        b = np.where(upper[refine], tau_hi_s[refine], tau_lo_s[refine])
        want = target_s[refine]
        for _ in range(max_halvings):
            if float(np.max(b - a, initial=0.0)) < tolerance_s:
                break
            mid = 0.5 * (a + b)
            short = dry_run(refine, mid) < want
            a = np.where(short, mid, a)
            b = np.where(short, b, mid)
        tau[refine] = 0.5 * (a + b)
    return np.asarray(tau, dtype=np.float64)
