"""The ramp controller of the Olympic Peninsula demonstration (GridLAB-D ``controller.cpp``).

A thermostatic device bids at a price set by how far its temperature is from its setpoint,
within ``mean ± k sigma`` of recent prices; the cleared price moves its setpoint by the inverse
rule (Hammerstrom et al., "Pacific Northwest GridWise Testbed Demonstration Projects, Part I:
Olympic Peninsula Project", PNNL-17167, 2007; GridLAB-D ``controller`` ramp mode, as TESP runs
it, Pratt et al. 2016). The quantity is the average power over the market interval (as
Widergren et al., PNNL-27235 Part II, recast the gridSMART bid), and the curve follows the
shifted setpoint: at a price ``p`` the controller moves the setpoint to ``Tset(p)``
(:func:`ramp_setpoint`), and the power it bids at ``p`` is what holding ``Tset(p)`` takes over
the interval. The curve is monotone through a few such points, each a setpoint of the band
(:func:`_band_setpoints_c`: the comfortable edge, the base setpoint, the uncomfortable edge)
priced at the ramp price whose shifted setpoint it is (:func:`ramp_bid_price` of that
temperature), with the must-run energy as a block at the cap (:func:`_interval_curves`; the
shape of the four-point bid of PNNL's DSO+T study, its Transactive Mechanism report, 2022, OSTI
1842489, as TESP documents it). So a falling price brings devices in gradually, each by its own
temperature and comfort settings, instead of all of them to the comfortable edge at once.
Shared by the HVAC, water-heater and heat-pump populations, with the interval plan's pieces:
the schedule a responded device follows (:func:`_follow_schedule`), the on-time that draws an
allocation (:func:`_on_time_for_s`) and the bracketed root finder of the on-times
(:func:`_least_on_time_s`).
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


#: Where an interval bid's points sit in the comfort band, as shares of the way from the base
#: setpoint to an edge: -1 the comfortable edge (the most energy, the lowest price), 0 the base
#: setpoint (the mean price), +1 the uncomfortable edge (the least: the must-run energy, at
#: ``mean + k sigma``). With the must-run block at the cap, PNNL's four-point bid: the curve is
#: linear between these setpoints' energies, as the DSO+T agents interpolate between the
#: energies of the band's two limits (a denser grid of setpoints follows the controller's
#: response more closely and is steeper around the mean: an hourly price step then moves every
#: device to its new setpoint within one interval, the synchronized rebound this smooths).
BID_SETPOINT_SHARES = (-1.0, 0.0, 1.0)


def _band_setpoints_c(
    setpoint_c: FloatArray,
    comfortable_c: FloatArray,
    uncomfortable_c: FloatArray,
    shares: tuple[float, ...] = BID_SETPOINT_SHARES,
) -> FloatArray:
    """The bid's setpoints, ``(N, J)``: ``Tset + |s| (edge - Tset)`` for each share ``s``.

    A negative share goes towards the comfortable edge, a positive one towards the uncomfortable
    edge; ordered as ``shares`` (from the comfortable edge to the uncomfortable one, so their
    ramp prices rise along a row).
    """
    s = np.asarray(shares, dtype=np.float64)[None, :]
    sp = setpoint_c[:, None]
    edge = np.where(s < 0, comfortable_c[:, None], uncomfortable_c[:, None])
    return np.asarray(sp + np.abs(s) * (edge - sp), dtype=np.float64)


def _band_bid_points(
    setpoint_c: FloatArray,
    comfortable_c: FloatArray,
    uncomfortable_c: FloatArray,
    direction: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    ramp_low: FloatArray,
    ramp_high: FloatArray,
    mean_per_kwh: float,
    std_per_kwh: float,
) -> tuple[FloatArray, FloatArray]:
    """The interval bid's setpoints and their unclipped ramp prices, ``(N, J)`` each.

    :func:`_band_setpoints_c` and :func:`ramp_bid_price`: the numpy reference of every
    thermostatic kind's bid points.
    """
    setpoints = _band_setpoints_c(setpoint_c, comfortable_c, uncomfortable_c)
    column = (slice(None), None)
    price = ramp_bid_price(
        setpoints,
        setpoint_c[column],
        direction[column],
        comfort_min_c[column],
        comfort_max_c[column],
        ramp_low[column],
        ramp_high[column],
        mean_per_kwh,
        std_per_kwh,
    )
    return setpoints, price


def _interval_curves(
    point_price: FloatArray,
    point_kw: FloatArray,
    must_kw: FloatArray,
    price_cap: float,
    ids: StrArray | None,
) -> BidCurves:
    """A monotone curve through the setpoints' points, then the must-run block at the cap.

    ``point_price`` and ``point_kw`` are ``(N, J)``: row ``i``'s points in order of rising price
    (already within the floor and the cap) and non-increasing power, the last of which is at
    least ``must_kw``. Breakpoints ``(p_0, q_0) ... (p_{J-1}, q_{J-1}), (cap, must), (cap, 0)``:
    below ``p_0`` the device takes ``q_0``, between two points the line through them (the
    interval's power for the setpoint in between, linearly), from ``p_{J-1}`` to the cap
    ``must_kw`` (a setpoint beyond the uncomfortable edge is clipped to it), and the block at
    the cap, which ``power_at(price, fill)`` shares pro rata. Column ``-2`` is the must-run
    power. Arrays are built valid (callers guarantee the order).
    """
    cap = np.full((must_kw.size, 2), price_cap)
    prices = np.concatenate([point_price, cap], axis=1)
    powers = np.concatenate([point_kw, np.stack([must_kw, np.zeros_like(must_kw)], axis=1)], axis=1)
    return BidCurves._trusted(prices, powers, ids)


def _least_on_time_s(
    g: Callable[[slice | IntArray, FloatArray], tuple[FloatArray, FloatArray]],
    lo: FloatArray,
    hi: FloatArray,
    g_lo: FloatArray,
    g_hi: FloatArray,
    *,
    tolerance_s: float,
    newton_steps: int = 12,
    one_sided: bool = True,
) -> FloatArray:
    """The least ``tau`` in ``[lo, hi]`` with ``g(tau) <= 0``, for each of ``m`` problems.

    ``g(positions, tau) -> (value, slope)`` evaluates the problems ``positions`` (a slice of all
    of them on the first pass, then the indices of those still open), each continuous and
    non-increasing in ``tau``, positive at ``lo`` (``g_lo``) and not at ``hi`` (``g_hi``).
    Bracketed Newton iteration on the closed form (the first guess the secant of the bracket);
    a Newton step is nudged half the tolerance towards the side not yet sampled, so the bracket
    closes from both sides once Newton has converged, and a step outside the bracket is a
    bisection. After ``newton_steps`` iterations only bisections are taken, so the loop ends for
    any bracket; the answer is the bracket's upper end, a point where ``g <= 0`` holds.

    With ``one_sided=False`` the root is wanted within ``tolerance_s`` on either side: a problem
    is also done when its (unnudged) Newton step is inside the bracket and shorter than the
    tolerance, and its answer is that Newton iterate (two evaluations fewer than closing the
    bracket, for a smooth ``g``).
    """
    tol = tolerance_s
    lo = lo.copy()
    hi = hi.copy()
    t = lo + (hi - lo) * g_lo / (g_lo - g_hi)  # inside [lo, hi]: g_lo > 0 >= g_hi
    sel: slice | IntArray = slice(None)
    iteration = 0
    while True:
        ta_, lo_, hi_ = t[sel], lo[sel], hi[sel]
        value, slope = g(sel, ta_)
        ok = value <= 0
        hi_ = np.where(ok, ta_, hi_)
        lo_ = np.where(ok, lo_, ta_)
        mid = 0.5 * (lo_ + hi_)
        converged = np.zeros(ok.size, dtype=bool)
        if iteration < newton_steps:
            with np.errstate(divide="ignore", invalid="ignore"):
                step = -value / slope
            newton = ta_ + step + np.where(ok, -0.5 * tol, 0.5 * tol)
            inside = np.isfinite(newton) & (newton > lo_) & (newton < hi_)
            nxt = np.where(inside, newton, mid)
            if not one_sided:
                landed = ta_ + step
                converged = (np.abs(step) <= tol) & (landed >= lo_) & (landed <= hi_)
                hi_ = np.where(converged, landed, hi_)
        else:
            nxt = mid
        lo[sel], hi[sel], t[sel] = lo_, hi_, nxt
        done = converged | (hi_ - lo_ <= tol) | (mid <= lo_) | (mid >= hi_)  # or no float left
        keep = np.flatnonzero(~done)
        if keep.size == 0:
            return hi
        sel = keep if isinstance(sel, slice) else sel[keep]
        iteration += 1


def _setpoint_on_times_s(
    end_c: Callable[[slice | IntArray, FloatArray], tuple[FloatArray, FloatArray]],
    setpoints_c: FloatArray,
    direction: FloatArray,
    tau_lo_s: FloatArray,
    tau_hi_s: FloatArray,
    solvable: BoolArray,
    *,
    tolerance_s: float,
) -> FloatArray:
    """The scheduled on-time that brings each device to each setpoint by the interval's end.

    ``end_c(index, tau) -> (T_end, dT_end/dtau)`` is the temperature at the interval's end of
    the devices ``index`` (a slice of all of them, or indices) run first for ``tau`` and then
    off, on the closed form (monotone in ``tau``: it falls for a device that cools,
    ``direction`` +1, and rises for one that heats). ``setpoints_c`` is ``(N, J)``. For each
    setpoint the answer is the least on-time in ``[tau_lo, tau_hi]`` after which
    ``direction (T_end - T_set) <= 0``: ``tau_lo`` where even that ends past the setpoint on the
    comfortable side, ``tau_hi`` where even that does not reach it, else the root
    (:func:`_least_on_time_s`, to ``tolerance_s`` on either side). Only the devices ``solvable``
    are solved (the others, which cannot hold their band without overrides, get ``tau_lo``
    throughout). The end temperature at ``tau_lo`` and ``tau_hi`` is computed once for every
    setpoint. Returns ``(N, J)`` on-times, non-increasing along a row (the setpoints go from the
    comfortable edge to the uncomfortable one).
    """
    n, j_count = setpoints_c.shape
    tau = np.repeat(tau_lo_s[:, None], j_count, axis=1)
    cand = np.flatnonzero(solvable & (tau_hi_s > tau_lo_s))
    if cand.size == 0:
        return tau
    # Every device a candidate (the common case): slices, no gathers.
    dev: slice | IntArray = slice(None) if cand.size == n else cand
    d, lo, hi = direction[dev], tau_lo_s[dev], tau_hi_s[dev]
    f_lo, _ = end_c(dev, lo)
    f_hi, _ = end_c(dev, hi)
    for j in range(j_count):
        target = setpoints_c[dev, j]
        g_lo = d * (f_lo - target)
        g_hi = d * (f_hi - target)
        column = np.where(g_lo <= 0, lo, hi)
        root = np.flatnonzero((g_lo > 0) & (g_hi < 0))
        if root.size:
            devices: slice | IntArray = slice(None) if root.size == n else cand[root]
            goal, sign = target[root], d[root]

            def g(
                pos: slice | IntArray,
                t: FloatArray,
                devices: slice | IntArray = devices,
                goal: FloatArray = goal,
                sign: FloatArray = sign,
            ) -> tuple[FloatArray, FloatArray]:
                if isinstance(pos, slice):
                    at = devices
                else:
                    at = pos if isinstance(devices, slice) else devices[pos]
                end, slope = end_c(at, t)
                return sign[pos] * (end - goal[pos]), sign[pos] * slope

            column[root] = _least_on_time_s(
                g, lo[root], hi[root], g_lo[root], g_hi[root], tolerance_s=tolerance_s,
                one_sided=False,
            )  # fmt: skip
        tau[dev, j] = column
    # The roots are exact to the tolerance; keep the row monotone to the last bit.
    return np.asarray(np.maximum.accumulate(tau[:, ::-1], axis=1)[:, ::-1], dtype=np.float64)


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
    devices ``index`` on schedules ``tau``: the run is continuous and, above the must-run,
    non-decreasing in the scheduled on-time. Below it a device scheduled for less can draw more
    (its band's override runs a whole deadband); one that draws at least ``run_lo`` even with
    no scheduled on-time runs its must-run schedule, the least it can draw, and a device
    rationed below what it can draw thus draws between its allocation and its must-run. The
    loop stops when every bracket is below ``tolerance_s``;
    ``max_halvings`` halvings of a bracket of at most one interval get there for any interval
    up to ~3e11 s, so it is a bound that is never reached, not a cap.
    """
    tol = 1e-9 * np.maximum(run_hi_s, 1.0)
    at_hi = target_s >= run_hi_s - tol
    at_lo = np.abs(target_s - run_lo_s) <= tol
    upper = ~at_hi & ~at_lo & (target_s > run_lo_s)
    below = ~at_hi & ~at_lo & ~upper  # under the must-run, none included
    lower = below & (target_s > tol)
    tau = np.where(at_hi, tau_hi_s, np.where(at_lo, tau_lo_s, 0.0))
    if linear is not None:
        exact = upper & linear
        tau = np.where(exact, target_s, tau)
        upper = upper & ~linear
    under = np.flatnonzero(below)
    if under.size:
        # Below the must-run the run need not rise with the schedule: a device scheduled for
        # less (or none) reaches its band's edge, and the override runs a whole deadband,
        # which can draw more than the must-run schedule would. Where even no scheduled
        # on-time draws the must-run or more, the must-run schedule is the least the device
        # can draw: it runs that (the rest of the allocation is a deviation the meter shows).
        # Elsewhere the run is bracketed by no on-time and the must-run: bisection.
        unscheduled_run = dry_run(under, np.zeros(under.size))
        floor = under[unscheduled_run >= run_lo_s[under]]
        tau[floor] = tau_lo_s[floor]
        lower[floor] = False
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
