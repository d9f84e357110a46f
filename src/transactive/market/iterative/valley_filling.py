"""EV valley filling by price iterations: Gan, Topcu & Low's protocol, Ma, Callaway & Hiskens' game.

The problem (Gan, Topcu and Low, "Optimal decentralized protocol for electric vehicle charging",
IEEE Trans. Power Systems 28(2), 2013, §II, the optimal control problem): N EVs over T periods,
EV n charging at ``r_n(t)`` inside its set
``F_n = {0 <= r_n(t) <= rbar_n(t), sum_t r_n(t) period_h = R_n}``
(:class:`~transactive.market.iterative.ev_fleet.EvFleet`), on top of a base load ``D(t)``;

    minimize  sum_t U(D(t) + sum_n r_n(t))   over  r_n in F_n,   U(x) = x^2 / 2.

Here every load is in kW, so ``U`` is in kW^2 and its derivative ``U'(x) = x`` (kW) has Lipschitz
constant ``beta = 1`` (kW per kW). Because ``U`` is strictly convex the optimal *aggregate* load is
unique (the EVs' split of it is not): it "fills the valleys" of the base load (Gan et al., §III:
where EVs can charge, the total load is flat at a fill level wherever the base load is below
it). Every objective this module reports is ``sum_t (D(t) + sum_n r_n(t))^2 / 2`` in kW^2, so
the decentralized runs and :func:`centralized_valley_filling` compare by
:func:`~transactive.market.iterative.framework.relative_gap`.

- :func:`gan_valley_filling`: Gan et al.'s decentralized algorithm (§IV, Algorithm 1). The utility
  broadcasts the control signal ``p^k(t) = gamma U'(D(t) + sum_n r_n^k(t))``; each EV
  takes the proximal step ``r_n^{k+1} = argmin_{r in F_n} <p^k, r> + |r - r_n^k|^2 / 2 =
  proj_{F_n}(r_n^k - p^k)`` (eq. (8)). It is gradient projection on ``gamma sum_t U``,
  convergent for ``0 < gamma < 1/(N beta)`` (§IV, the convergence theorem of Algorithm 1). With
  stale prices (their asynchronous algorithm: EVs update at some iterations only, with
  control signals up to ``d`` iterations old) convergence is proven for
  ``0 < gamma < 1/((3d + 1) N beta)`` (their asynchronous convergence theorem).
- :func:`ma_callaway_hiskens`: Ma, Callaway and Hiskens, "Decentralized charging control of large
  populations of plug-in electric vehicles", IEEE Trans. Control Systems Technology 21(1), 2013.
  Each vehicle minimises ``sum_t [p(t) u_n(t) + delta (u_n(t) - ubar(t))^2]`` (their local cost
  with the tracking penalty), ``p`` the price of the total demand and ``ubar`` the population's
  average charging; the utility broadcasts the price and the average, vehicles best-respond, and
  the iteration converges to the Nash equilibrium when ``max p' / 2 <= delta < min p'``
  (derivatives of the price with respect to the average charging; their convergence condition).
  For a homogeneous population the equilibrium is the valley-filling optimum; for a heterogeneous
  one it is only near it, since every vehicle tracks the same average (we observe relative gaps of
  2-3 % on sampled fleets, not shrinking with N).
- :func:`centralized_valley_filling`: the same problem as one cvxpy problem (Clarabel).
- :func:`warm_projection`: the Euclidean projection onto every ``F_n`` at once, by a safeguarded
  Newton iteration on each EV's multiplier warm-started from the last round's (equal to
  :meth:`EvFleet.project`, which sorts every round).

Pure computation: arrays in, frozen dataclasses out; randomness only through the faults' seed.
"""

from __future__ import annotations

import math
from typing import Any

import cvxpy as _cvxpy
import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.market.iterative.ev_fleet import EvFleet
from transactive.market.iterative.framework import (
    CentralizedOptimum,
    Channel,
    CommsFaults,
    IterativeResult,
    Recorder,
    StoppingRule,
    checked_step_size,
)

__all__ = [
    "centralized_valley_filling",
    "gan_valley_filling",
    "ma_callaway_hiskens",
    "valley_objective_kw2",
    "warm_projection",
]

cp: Any = _cvxpy  # cvxpy ships partial type information; treat its namespace as untyped

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Lipschitz constant of U'(x) = x with loads in kW (kW per kW).
BETA = 1.0
#: Share of the proven step-size bound the default step takes.
DEFAULT_GAMMA_SHARE = 0.9
#: Default MCH tracking weight, as a multiple of the price's slope in the average charging
#: (the middle of Ma et al.'s range [1/2, 1)).
DEFAULT_TRACKING_SHARE = 0.75

_GAN_REFERENCE = "Gan, Topcu & Low 2013, Algorithm 1: 0 < gamma < 1/(N beta), beta = 1 per kW"
_GAN_ASYNC_REFERENCE = (
    "Gan, Topcu & Low 2013, asynchronous algorithm: 0 < gamma < 1/((3d + 1) N beta) "
    "for delays of up to d rounds"
)
_MCH_REFERENCE = "Ma, Callaway & Hiskens 2013: N price_slope / 2 <= tracking_weight"
_MCH_UPPER_REFERENCE = "Ma, Callaway & Hiskens 2013: tracking_weight < N price_slope"

#: Relative tolerance of the projection's energy (of each EV's need in kW-periods).
_PROJECTION_RTOL = 1e-12
_NEWTON_ITERATIONS = 60
#: While at least this share of the EVs is unresolved, the projection works on whole arrays.
_WHOLE_SHARE = 0.3
#: Tolerance (kW, and relative for energy) of a user-given initial schedule's feasibility.
_FEASIBLE_ATOL_KW = 1e-7
_FEASIBLE_RTOL_ENERGY = 1e-7


# ---------------------------------------------------------------------------------- validation


def _checked_base_load(fleet: EvFleet, base_load_kw: npt.ArrayLike) -> FloatArray:
    problems = Problems(subject="valley-filling problem")
    try:
        base = np.asarray(base_load_kw, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add("base_load_kw", "must be an array of numbers")
        problems.raise_if_any()
    if base.ndim != 1:
        problems.add("base_load_kw", f"must have shape (T,), got {base.shape}")
    elif base.shape[0] != fleet.n_periods:
        problems.add(
            "base_load_kw",
            f"must have one value per period of the fleet (T = {fleet.n_periods}), "
            f"got {base.shape[0]}",
        )
    else:
        problems.check(~np.isfinite(base), "base_load_kw", "not finite")
    problems.raise_if_any()
    return base.copy()


def _checked_initial(fleet: EvFleet, initial_kw: npt.ArrayLike | None) -> FloatArray | None:
    if initial_kw is None:
        return None
    problems = Problems(subject="initial schedules")
    r0 = np.asarray(initial_kw, dtype=np.float64)
    if r0.shape != fleet.rate_max_kw.shape:
        problems.add(
            "initial_kw", f"must have shape (T, N) = {fleet.rate_max_kw.shape}, got {r0.shape}"
        )
        problems.raise_if_any()
    labels = [str(i) for i in fleet.ids]
    if problems.check(~np.isfinite(r0).all(axis=0), "initial_kw", "not finite", labels):
        rbar = fleet.rate_max_kw
        problems.check(
            ((r0 < -_FEASIBLE_ATOL_KW) | (r0 > rbar + _FEASIBLE_ATOL_KW)).any(axis=0),
            "initial_kw",
            "outside the EV's rate box [0, rate_max_kw]",
            labels,
        )
        energy = r0.sum(axis=0) * fleet.period_h
        problems.check(
            np.abs(energy - fleet.energy_kwh)
            > _FEASIBLE_RTOL_ENERGY * np.maximum(1.0, fleet.energy_kwh),
            "initial_kw",
            "does not deliver the EV's energy_kwh",
            labels,
        )
    problems.raise_if_any()
    return np.clip(r0, 0.0, fleet.rate_max_kw)


def valley_objective_kw2(base_load_kw: npt.ArrayLike, schedules_kw: npt.ArrayLike) -> float:
    """``sum_t (D(t) + sum_n r_n(t))^2 / 2`` (kW^2): Gan et al.'s objective, ``U(x) = x^2/2``."""
    base = np.asarray(base_load_kw, dtype=np.float64)
    total = base + np.asarray(schedules_kw, dtype=np.float64).sum(axis=1)
    return 0.5 * float(total @ total)


# ---------------------------------------------------------------------------------- projection


class _Projector:
    """The projection onto every EV's set, warm-started from the last call's multipliers.

    For EV n, ``proj(y)_t = clip(y_t - nu_n, 0, rbar_t)`` with ``nu_n`` the root of the
    piecewise-linear, non-increasing ``f_n(nu) = sum_t clip(y_t - nu, 0, rbar_t) - R_n / period_h``
    (the KKT conditions of Gan et al.'s eq. (8)). Each EV's root is found by Newton steps on the
    current linear piece (slope: minus the number of periods strictly inside their box), exact once
    the root's piece is reached, from last call's ``nu`` (or, cold, from the guess that every
    plugged period is inside its box). Every evaluation narrows a bracket; where a Newton step
    would leave it (or the piece is flat) the step bisects, the bracket's open ends first closed by
    ``min_t (y_t - rbar_t)`` (every plugged period full) and ``max_t y_t`` (every period empty). EVs
    still unresolved after the iteration limit are projected exactly by :meth:`EvFleet.project`.
    All work is on whole ``(T, N)`` arrays while many EVs are unresolved, on the rest's columns
    after that.
    """

    def __init__(self, fleet: EvFleet) -> None:
        self.fleet = fleet
        self.rbar = np.asarray(fleet.rate_max_kw, dtype=np.float64)
        self.plugged = self.rbar > 0
        self.n_plugged = self.plugged.sum(axis=0)
        self.need = np.asarray(fleet.energy_kwh, dtype=np.float64) / fleet.period_h
        self.capacity = self.rbar.sum(axis=0)
        self.tol = _PROJECTION_RTOL * np.maximum(1.0, self.need)
        self.empty = self.need <= self.tol
        self.full = ~self.empty & (self.need >= self.capacity - self.tol)
        self.free = ~self.empty & ~self.full
        self.nu: FloatArray = np.full(fleet.n_evs, np.nan)
        self.iterations = 0

    def __call__(self, y: FloatArray, out: FloatArray | None = None) -> FloatArray:
        """``proj(y)`` into ``out`` (a new array by default); ``y`` is left unchanged."""
        rbar, plugged = self.rbar, self.plugged
        x = np.empty_like(y) if out is None else out
        need, tol = self.need, self.tol
        nu = self.nu
        cold = ~np.isfinite(nu)
        if cold.any():
            guess = (np.where(plugged, y, 0.0).sum(axis=0) - need) / np.maximum(self.n_plugged, 1)
            nu = np.where(cold, guess, nu)
        lo = np.full(nu.shape, -np.inf)
        hi = np.full(nu.shape, np.inf)
        todo = np.flatnonzero(self.free)
        whole = todo.size == nu.size
        it = 0
        while todo.size and it < _NEWTON_ITERATIONS:
            it += 1
            if whole:  # every column: work in place in x
                z = np.subtract(y, nu, out=x)
                rs = rbar
            else:
                z = y[:, todo] - nu[todo]
                rs = rbar[:, todo]
            np.clip(z, 0.0, rs, out=z)
            err = z.sum(axis=0) - need[todo]
            ok = np.abs(err) <= tol[todo]
            if not whole:
                x[:, todo] = z
            if ok.all():
                todo = todo[:0]
                break
            bad = np.flatnonzero(~ok)
            cols = todo[bad]
            zb = z if bad.size == todo.size else z[:, bad]
            rb = rs if bad.size == todo.size else rs[:, bad]
            cnt = np.count_nonzero((zb > 0.0) & (zb < rb), axis=0)
            e, v = err[bad], nu[cols]
            lo_b = np.where(e > 0.0, v, lo[cols])
            hi_b = np.where(e < 0.0, v, hi[cols])
            with np.errstate(divide="ignore", invalid="ignore"):
                newton = v + e / cnt
            use_newton = (cnt > 0) & (newton > lo_b) & (newton < hi_b)
            open_end = ~use_newton & ~(np.isfinite(lo_b) & np.isfinite(hi_b))
            if open_end.any():
                oc = cols[open_end]
                yo, ro, po = y[:, oc], rbar[:, oc], plugged[:, oc]
                lo_b[open_end] = np.maximum(
                    lo_b[open_end], np.where(po, yo - ro, np.inf).min(axis=0)
                )
                hi_b[open_end] = np.minimum(hi_b[open_end], np.where(po, yo, -np.inf).max(axis=0))
            nu = nu.copy() if nu is self.nu else nu
            nu[cols] = np.where(use_newton, newton, 0.5 * (lo_b + hi_b))
            lo[cols], hi[cols] = lo_b, hi_b
            # Whole arrays beat copying columns while many EVs are left (the resolved ones
            # evaluate to the same schedules again).
            whole = whole and cols.size >= _WHOLE_SHARE * nu.size
            todo = np.flatnonzero(self.free) if whole else cols
        self.iterations = it
        x[:, self.empty] = 0.0
        x[:, self.full] = rbar[:, self.full]
        nu = nu.copy() if nu is self.nu else nu
        if todo.size:  # not resolved by the iteration limit: the exact, sorted projection
            x[:, todo] = EvFleet(
                ids=self.fleet.ids[todo],
                rate_max_kw=rbar[:, todo],
                energy_kwh=self.fleet.energy_kwh[todo],
                period_h=self.fleet.period_h,
            ).project(y[:, todo])
            nu[todo] = np.nan
        nu[~self.free] = np.nan
        self.nu = nu
        return x


def warm_projection(
    fleet: EvFleet, target_kw: npt.ArrayLike, *, multipliers_kw: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray]:
    """The schedules in ``fleet``'s set nearest to ``target_kw`` (T, N), and their multipliers.

    The same projection as :meth:`EvFleet.project` (to ``1e-12`` of each EV's energy), found by a
    safeguarded Newton iteration per EV warm-started from ``multipliers_kw`` (``(N,)``, kW: the
    ``nu`` of ``clip(target - nu, 0, rate_max_kw)``, e.g. a previous call's; NaN entries start
    cold).
    Returns ``(schedules_kw, multipliers_kw)``; an EV with nothing to choose (no need: zeros, or a
    need equal to its full box: the box) has a NaN multiplier.
    """
    y = np.asarray(target_kw, dtype=np.float64)
    if y.shape != fleet.rate_max_kw.shape:
        raise ValueError(f"target_kw must have shape {fleet.rate_max_kw.shape}, got {y.shape}")
    projector = _Projector(fleet)
    if multipliers_kw is not None:
        start = np.asarray(multipliers_kw, dtype=np.float64)
        if start.shape != (fleet.n_evs,):
            raise ValueError(f"multipliers_kw must have shape {(fleet.n_evs,)}, got {start.shape}")
        projector.nu = start.copy()
    x = projector(y)
    nu = projector.nu.copy()
    nu[projector.empty | projector.full] = np.nan
    return x, nu


# ---------------------------------------------------------------------------------- helpers


def _residuals(
    base: FloatArray,
    total_new: FloatArray,
    total_old: FloatArray,
    price_new: FloatArray,
    price_old: FloatArray,
) -> tuple[float, float]:
    """The primal and dual residuals of a round (see :func:`gan_valley_filling`).

    Primal: ``|X^k - X^{k-1}|_2 / |D + X^{k-1}|_2`` for the EVs' total ``X``; dual:
    ``|p^k - p^{k-1}|_inf / |p^{k-1}|_inf``. A zero denominator with a zero change gives 0.
    """
    load = float(np.linalg.norm(base + total_old))
    change = float(np.linalg.norm(total_new - total_old))
    primal = change / load if load > 0 else (0.0 if change == 0 else math.inf)
    scale = float(np.abs(price_old).max(initial=0.0))
    move = float(np.abs(price_new - price_old).max(initial=0.0))
    dual = move / scale if scale > 0 else (0.0 if move == 0 else math.inf)
    return primal, dual


def _held_prices(channel: Channel, held: IntArray, round_index: int) -> FloatArray | None:
    """The broadcast each agent holds, agents on the last axis; None when all hold the newest."""
    if held.size == 0 or (held == round_index).all():
        return None
    rounds, inverse = np.unique(held, return_inverse=True)
    stacked = np.stack([channel.price_history[int(r)] for r in rounds], axis=-1)
    return np.asarray(stacked[..., inverse], dtype=np.float64)


class _Window:
    """The largest of the last ``size`` values (a delayed agent's silent round cannot end a run)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: list[float] = []

    def __call__(self, value: float) -> float:
        self.values.append(value)
        del self.values[: -self.size]
        return max(self.values)


def _window_size(faults: CommsFaults) -> int:
    return int(faults.max_delay_rounds) + 1 + (1 if float(faults.loss_probability) > 0 else 0)


# ---------------------------------------------------------------------------------- Gan et al.


def gan_valley_filling(
    fleet: EvFleet,
    base_load_kw: npt.ArrayLike,
    *,
    gamma: float | None = None,
    rule: StoppingRule = StoppingRule(),  # noqa: B008 - frozen, immutable default
    faults: CommsFaults = CommsFaults(),  # noqa: B008 - frozen, immutable default
    initial_kw: npt.ArrayLike | None = None,
) -> IterativeResult:
    """Gan, Topcu & Low's decentralized valley filling (2013, §IV, and its asynchronous version).

    Round k: each EV holding a price newer than the last it used takes the proximal step
    ``r_n <- proj_{F_n}(r_n - p)`` (eq. (8); by :func:`warm_projection`) and sends its schedule; the
    utility, from the schedules it holds (a lost one is the last received), broadcasts
    ``p = gamma U'(D + sum_n r_n) = gamma (D + sum_n r_n)`` (kW). With
    ``faults.max_delay_rounds = d > 0`` EVs update on prices up to ``d`` rounds old (the
    asynchronous algorithm).

    Parameters
    ----------
    fleet:
        The EVs' rate boxes and energy needs.
    base_load_kw:
        ``(T,)`` base load ``D`` (kW).
    gamma:
        Step size (dimensionless with loads in kW, ``beta = 1``). Refused unless
        ``0 < gamma < 1/N`` (the synchronous theorem); with delays of up to ``d`` rounds a value
        at or above ``1/((3d + 1) N)`` (the asynchronous theorem) warns with
        :class:`~transactive.market.iterative.framework.StepSizeWarning`. Default: 0.9 times the
        bound that applies (``1/N``, or ``1/((3d + 1) N)`` with delays).
    rule:
        Stopping rule, on relative residuals of what the utility holds, each divided by the step
        share ``gamma N beta`` (so they measure the projected-gradient step per unit step, the
        gradient mapping, and one tolerance fits every step size). Primal: the change of the EVs'
        total load ``X = sum_n r_n`` relative to the total load,
        ``|X^k - X^{k-1}|_2 / |D + X^{k-1}|_2``; dual: the largest change of the broadcast price
        relative to its largest value, ``|p^k - p^{k-1}|_inf / |p^{k-1}|_inf`` (``U'`` is linear,
        so this is the same change in the max-norm, which catches a few periods still moving).
        Both vanish exactly at a fixed point of the iteration, which is optimal. Observed: at the
        default tolerance ``1e-4`` the objective is within about ``2e-5`` of the optimum
        (relative). With faults, each residual is the largest of the last ``d + 1`` rounds' (one
        more with message loss), so a round in which delayed EVs did not move cannot end the run.
    faults:
        Message loss and price delay, through :class:`Channel`. Loss makes staleness unbounded,
        beyond the asynchronous theorem; convergence under loss is observed, not proven.
    initial_kw:
        ``(T, N)`` feasible first schedules; default the fleet's projection of zero (each EV's
        energy spread evenly over the periods it is plugged in, capped by its rate).

    Returns
    -------
    IterativeResult
        Objective per round in kW^2 (:func:`valley_objective_kw2` of the schedules the utility
        holds); ``prices`` the last control signal (kW); ``extra``: ``gamma``, ``gamma_bound``
        (the bound that applies), ``total_load_kw`` (``D + sum_n r_n``).

    Raises
    ------
    ValidationError
        A bad base load or initial schedule, or a step size outside ``(0, 1/N)``.

    """
    base = _checked_base_load(fleet, base_load_kw)
    r0 = _checked_initial(fleet, initial_kw)
    n = fleet.n_evs
    delay = int(faults.max_delay_rounds)
    sync_bound = 1.0 / (n * BETA) if n else math.inf
    async_bound = sync_bound / (3 * delay + 1)
    if gamma is None:
        step = DEFAULT_GAMMA_SHARE * async_bound if n else 1.0
    else:
        step = checked_step_size(
            "gamma", gamma, upper=sync_bound if n else None, reference=_GAN_REFERENCE
        )
        if delay and n:
            step = checked_step_size(
                "gamma",
                step,
                upper=async_bound,
                bound_is_necessary=False,
                reference=_GAN_ASYNC_REFERENCE,
            )

    step_share = step * n * BETA if n else 1.0
    project = _Projector(fleet)
    schedules = r0 if r0 is not None else project(np.zeros_like(fleet.rate_max_kw))
    target = np.empty_like(schedules)  # buffers reused every round
    stepped = np.empty_like(schedules)
    channel = Channel(faults, n)
    view = schedules.copy()
    total = view.sum(axis=1)
    prices = step * BETA * (base + total)  # the control signal gamma U'(D + X), U'(x) = x
    channel.register(prices, view)
    used = np.full(n, -1, dtype=np.int64)  # the price round each EV last stepped on
    held = np.zeros(n, dtype=np.int64)
    rec = Recorder("gan-valley-filling", rule)
    primal_window, dual_window = _Window(_window_size(faults)), _Window(_window_size(faults))
    k = 0
    while True:
        k += 1
        if k > 1:
            held = channel.prices_held(k - 1, prices)
        stale = _held_prices(channel, held, k - 1)
        moving = held > used
        np.subtract(schedules, prices[:, None] if stale is None else stale, out=target)
        if moving.all():  # eq. (8): r_n <- proj_{F_n}(r_n - p)
            project(target, out=stepped)
            schedules, stepped = stepped, schedules
        else:  # an EV without a newer price does not step (asynchronous: updates at some rounds)
            kept = project.nu.copy()
            project(target, out=stepped)
            schedules[:, moving] = stepped[:, moving]
            project.nu[~moving] = kept[~moving]
        used = np.maximum(used, held)
        view = channel.schedules_held(schedules)
        new_total = view.sum(axis=1)
        new_prices = step * BETA * (base + new_total)
        primal, dual = _residuals(base, new_total, total, new_prices, prices)
        primal, dual = primal / step_share, dual / step_share  # per unit step: the gradient map
        total, prices = new_total, new_prices
        if rec.record(primal_window(primal), dual_window(dual), valley_objective_kw2(base, view)):
            break
    return rec.result(
        prices=prices,
        schedules_kw=view,
        ids=fleet.ids,
        channel=channel,
        extra={
            "gamma": np.array([step]),
            "gamma_bound": np.array([async_bound if delay else sync_bound]),
            "total_load_kw": base + total,
        },
    )


# ---------------------------------------------------------------------------------- Ma et al.


def ma_callaway_hiskens(
    fleet: EvFleet,
    base_load_kw: npt.ArrayLike,
    *,
    price_slope: float,
    tracking_weight: float | None = None,
    rule: StoppingRule = StoppingRule(),  # noqa: B008 - frozen, immutable default
    faults: CommsFaults = CommsFaults(),  # noqa: B008 - frozen, immutable default
    initial_kw: npt.ArrayLike | None = None,
) -> IterativeResult:
    """Ma, Callaway & Hiskens' decentralized charging game (2013): best responses to the average.

    The price of period t is linear in the total demand, ``p(t) = price_slope (D(t) + N ubar(t))``
    (currency/kWh; Ma et al.'s price of the demand, whose slope in the average charging ``ubar`` is
    ``s = N price_slope``). The utility broadcasts ``(p, ubar)``; each vehicle best-responds,

        u_n = argmin_{u in F_n} sum_t [p(t) u(t) + delta (u(t) - ubar(t))^2]
            = proj_{F_n}(ubar - p / (2 delta))                    (completing the square),

    and the utility recomputes ``ubar`` and ``p`` from the schedules it holds. A fixed point is
    Ma et al.'s equilibrium (each vehicle taking ``p`` and ``ubar`` as given); for identical
    vehicles it is the valley-filling optimum of :func:`centralized_valley_filling`
    (``proj_F(u - p(u)/(2 delta)) = u`` is the optimality condition of ``sum_t U(D + N u)`` over
    ``F``). The map ``ubar -> mean_n proj_{F_n}((1 - s/(2 delta)) ubar + c)`` is Lipschitz with
    ``|1 - s/(2 delta)|`` (projections and their mean do not expand), which is ``< 1/2`` under
    Ma et al.'s condition ``s/2 <= delta < s``: the iteration converges geometrically.

    Parameters
    ----------
    fleet, base_load_kw:
        As :func:`gan_valley_filling`.
    price_slope:
        Slope of the price in the total load (currency/kWh per kW), > 0. Only ``delta / s``
        shapes the schedules; the slope sets the prices' level.
    tracking_weight:
        ``delta`` (currency/kWh per kW). ``delta < s/2`` is refused (Ma et al.'s lower bound);
        ``delta >= s`` warns (beyond their condition; the contraction still holds, more slowly).
        Default ``0.75 s``.
    rule:
        Stopping rule, on the residuals of :func:`gan_valley_filling` (relative change of the
        total charging, relative max-norm change of the price; not divided by a step). Each
        vehicle's response is a function of the broadcast, so both vanish exactly at the Nash
        equilibrium.
    faults:
        Loss and delay of the broadcast and of the schedules, through :class:`Channel`.
    initial_kw:
        ``(T, N)`` feasible first schedules; default as :func:`gan_valley_filling`.

    Returns
    -------
    IterativeResult
        Objective in kW^2 (:func:`valley_objective_kw2`), ``prices`` the last price
        (currency/kWh); ``extra``: ``tracking_weight``, ``average_kw`` (``ubar``) and
        ``total_load_kw``.

    Raises
    ------
    ValidationError
        Bad inputs, a price slope or tracking weight that is not a finite number > 0, or a
        tracking weight below ``N price_slope / 2``.

    """
    base = _checked_base_load(fleet, base_load_kw)
    r0 = _checked_initial(fleet, initial_kw)
    n = fleet.n_evs
    problems = Problems(subject="Ma-Callaway-Hiskens parameters")
    for name, value in (("price_slope", price_slope), ("tracking_weight", tracking_weight)):
        if value is None and name == "tracking_weight":
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | np.integer | np.floating)
            or not math.isfinite(float(value))
            or float(value) <= 0
        ):
            problems.add(name, f"must be a finite number > 0, got {value!r}")
    problems.raise_if_any()
    slope = float(price_slope)
    s = slope * max(n, 1)  # dp/dubar
    delta = DEFAULT_TRACKING_SHARE * s if tracking_weight is None else float(tracking_weight)
    if tracking_weight is not None:
        checked_step_size(
            "N price_slope / (2 tracking_weight)",
            s / (2.0 * delta),
            upper=1.0,
            upper_inclusive=True,
            reference=_MCH_REFERENCE,
        )
        checked_step_size(
            "2 tracking_weight / (N price_slope)",
            2.0 * delta / s,
            upper=2.0,
            bound_is_necessary=False,
            reference=_MCH_UPPER_REFERENCE,
        )

    project = _Projector(fleet)
    schedules = r0 if r0 is not None else project(np.zeros_like(fleet.rate_max_kw))
    target = np.empty_like(schedules)  # buffers reused every round
    channel = Channel(faults, n)
    view = schedules.copy()
    total = view.sum(axis=1)

    def broadcast(total_kw: FloatArray) -> FloatArray:
        """(T, 2): the price of the total demand and the average charging ``ubar``."""
        return np.stack([slope * (base + total_kw), total_kw / max(n, 1)], axis=1)

    message = broadcast(total)
    channel.register(message, view)
    held = np.zeros(n, dtype=np.int64)
    rec = Recorder("ma-callaway-hiskens", rule)
    primal_window, dual_window = _Window(_window_size(faults)), _Window(_window_size(faults))
    k = 0
    while True:
        k += 1
        if k > 1:
            held = channel.prices_held(k - 1, message)
        stale = _held_prices(channel, held, k - 1)  # (T, 2, N), or None: all hold the newest
        # Best response, completing the square: proj_{F_n}(ubar - p / (2 delta)).
        if stale is None:
            np.copyto(target, (message[:, 1] - message[:, 0] / (2.0 * delta))[:, None])
        else:
            np.subtract(stale[:, 1, :], stale[:, 0, :] / (2.0 * delta), out=target)
        project(target, out=schedules)
        view = channel.schedules_held(schedules)
        new_total = view.sum(axis=1)
        new_message = broadcast(new_total)
        primal, dual = _residuals(base, new_total, total, new_message[:, 0], message[:, 0])
        total, message = new_total, new_message
        if rec.record(primal_window(primal), dual_window(dual), valley_objective_kw2(base, view)):
            break
    return rec.result(
        prices=message[:, 0],
        schedules_kw=view,
        ids=fleet.ids,
        channel=channel,
        extra={
            "tracking_weight": np.array([delta]),
            "average_kw": message[:, 1].copy(),
            "total_load_kw": base + total,
        },
    )


# ---------------------------------------------------------------------------------- centralized


def centralized_valley_filling(fleet: EvFleet, base_load_kw: npt.ArrayLike) -> CentralizedOptimum:
    """Gan et al.'s problem (OC) in one cvxpy problem, solved by Clarabel.

    One ``(T, N)`` variable (in units of the base load's largest magnitude, for the solver's
    scaling), ``0 <= r <= rate_max_kw``, ``sum_t r period_h = energy_kwh``, minimising
    ``sum_squares(D + sum_n r_n) / 2``. The problem has no balance constraint, so ``prices`` are
    ``U'(D + sum_n r_n) = D + sum_n r_n`` (kW), the marginal cost of load in every period.
    ``objective`` is :func:`valley_objective_kw2` of the returned schedules (kW^2);
    ``solve_time_s`` is Clarabel's own solve time (cvxpy's compilation excluded).
    """
    base = _checked_base_load(fleet, base_load_kw)
    t_n, n = fleet.rate_max_kw.shape
    scale = max(
        float(np.abs(base).max(initial=0.0)), float(fleet.rate_max_kw.max(initial=0.0)), 1.0
    )
    r = cp.Variable((t_n, n), nonneg=True)
    total = base / scale + cp.sum(r, axis=1)
    constraints = [
        r <= fleet.rate_max_kw / scale,
        cp.sum(r, axis=0) * fleet.period_h == fleet.energy_kwh / scale,
    ]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(total)), constraints)
    problem.solve(solver=cp.CLARABEL)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or r.value is None:
        raise RuntimeError(f"Clarabel did not solve the valley-filling problem: {problem.status}")
    schedules = np.clip(np.asarray(r.value, dtype=np.float64) * scale, 0.0, fleet.rate_max_kw)
    stats = problem.solver_stats
    solve_time = stats.solve_time if stats is not None and stats.solve_time is not None else None
    return CentralizedOptimum(
        objective=valley_objective_kw2(base, schedules),
        schedules_kw=schedules,
        prices=base + schedules.sum(axis=1),
        solver=f"CLARABEL ({problem.status})",
        solve_time_s=float(solve_time) if solve_time is not None else float("nan"),
    )
