"""Day-ahead market clearing by Lagrangian relaxation: posted prices, self-scheduling agents.

Papadaskalopoulos and Strbac, "Decentralized participation of flexible demand in electricity
markets — Part I: Market mechanism", IEEE Trans. Power Systems 28(4), 2013 (Part II with
Papadaskalopoulos, Strbac, Mancarella, Aunedi, Stanojevic, same issue, applies it to electric
vehicles and heat pumps). The market operator relaxes the balance constraints of the
:class:`~transactive.market.iterative.day_ahead.DayAheadProblem` with multipliers ``lambda_t``,
the posted hourly prices; every participant then solves its own problem at those prices and
reports only its schedule (no cost function, no constraint leaves the participant):

- generator ``i``: ``max_g sum_t (lambda_t g_t - a_i g_t - b_i g_t^2 / 2) period_h`` over its
  limits, in closed form ``g_t = clip((lambda_t - a_i) / b_i, g_min_i, g_max_i)``;
- flexible load ``n``: ``min_r sum_t lambda_t r_t period_h`` over ``{0 <= r <= rbar_n,
  sum_t r_t period_h = E_n}``, exactly by water-filling: its need goes into its cheapest
  plugged-in periods, each up to its rate (one sort of the periods by price, vectorized over
  loads; ties go to the earlier period);
- the operator moves the prices along the subgradient of the dual function, the balance
  mismatch (the Lagrangian relaxation of Papadaskalopoulos and Strbac, Part I)::

      lambda^{k+1} = lambda^k + alpha_k (D + sum_n r_n^k - sum_i g_i^k)                  (1)

  with ``alpha_k = alpha`` (``step_rule="constant"``) or ``alpha / sqrt(k)``
  (``"diminishing"``: non-summable and vanishing, the rule under which the subgradient
  method's dual value converges to the optimum, while a constant step only reaches a
  neighbourhood of it: Boyd, Xiao and Mutapcic, "Subgradient methods", Stanford EE392o
  lecture notes, 2003, §2-3).

The concentrated shift and its remedy
-------------------------------------
A load's price response is linear in its schedule, so it is bang-bang: every load facing the
same prices moves its whole need into the same cheapest periods. The dual function is not
differentiable where the optimal prices lie (flat across the periods the flexible demand fills),
the responses jump between those periods from one round to the next, and the balance never
holds even as the prices converge. Papadaskalopoulos and Strbac identify exactly this
("non-convexities in reschedulable demand participants' price response") and answer it with
"a simple yet effective LR heuristic method ... limiting the concentrated shift of flexible
demand" (Part I, abstract). The equations of their heuristic were not available to us. What
this module implements instead, with ``remedy=True``, is the standard device that heuristic
builds on, a proximal (damping) term on each flexible load's price response (the proximal
point / augmented Lagrangian family, Rockafellar, "Augmented Lagrangians and applications of
the proximal point algorithm in convex programming", Math. Oper. Res. 1(2), 1976), in an
arrangement whose convergence to the market optimum is proven for this structure: each load
moves from its own previous schedule by at most a step ``sigma`` against an extrapolated price,

    r_n^{k+1} = P_n( r_n^k - sigma (2 lambda^{k+1} - lambda^k) )                          (2)

(``P_n`` the Euclidean projection onto the load's set, :meth:`EvFleet.project`), while the
generators self-schedule exactly and the prices follow (1). Eqs. (1)-(2) are the primal-dual
splitting of Condat ("A primal-dual splitting method for convex optimization involving
Lipschitzian, proximable and linear composite terms", J. Optim. Theory Appl. 158(2), 2013,
Algorithm 3.1) and Vũ (Adv. Comput. Math. 38(3), 2013) applied to the market's dual: the
generators' part of the dual is smooth with a ``beta = sum_i 1 / b_i``-Lipschitz gradient
(their total response), the loads' part is the support function of their sets, coupled through
``N`` copies of the prices (``||L||^2 = N``). Condat's Theorem 3.1 gives convergence of the
prices to the market's clearing prices and of the loads' schedules to an optimal schedule when

    alpha (beta / 2 + sigma N) < 1                                                        (3)

(a sufficient condition: a larger step is warned about, :class:`StepSizeWarning`). The remedy
limits each load's shift per round (the projection is non-expansive and ``r^k`` lies in the
set, so ``||r^{k+1} - r^k|| <= sigma ||2 lambda^{k+1} - lambda^k||``) and changes no fixed
point: a schedule that (2) leaves unchanged is a cheapest one at the clearing prices. The
default ``sigma = beta / N`` gives the fleet the same aggregate price sensitivity as the
generators, and the default ``alpha`` is 0.9 of bound (3).

Residuals (both relative, so one tolerance fits every size): primal ``||D + sum r - sum g||_2 /
||D + E / (T period_h)||_2`` (the balance mismatch over the demand's size,
:attr:`DayAheadProblem.demand_scale_kw`), dual ``||lambda^{k+1} - lambda^k||_2 /
||lambda^{k+1}||_2`` (the relative price change). The objective recorded each round is the
cost of serving the loads' current schedules (as the operator holds them) at least cost,
:func:`~transactive.market.iterative.day_ahead.least_cost_dispatch`: a feasible market
schedule, so its gap to the centralized optimum is never negative (``inf`` while the loads'
schedules cannot be served at all, as happens to the concentrated plain response). ``extra``
holds the Lagrangian dual bound of each round (a lower bound on the optimum).

Communication goes through :class:`~transactive.market.iterative.framework.Channel`: the prices
are broadcast (T numbers); each agent (every generator, then every flexible load) answers with
its schedule (T numbers). A generator whose price is lost or late answers the newest prices it
holds; with the remedy a load moves by (2) only when prices newer than those it last moved on
reach it (extrapolating between the two newest it has received) and otherwise resends its
schedule, since moving again on prices already used would repeat the move; a lost schedule
leaves the operator with that agent's previous one. Measured on the tests' market: 10 % and
30 % message loss cost at most a quarter more rounds, and price delays of one round a quarter
more, but with delays of up to two rounds it did not converge within 3,000 rounds (bound (3)
assumes fresh answers).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.market.iterative.day_ahead import DayAheadProblem, least_cost_dispatch
from transactive.market.iterative.ev_fleet import EvFleet
from transactive.market.iterative.framework import (
    Channel,
    CommsFaults,
    IterativeResult,
    Recorder,
    StoppingRule,
    checked_step_size,
)

__all__ = ["dual_decomposition", "water_filling"]

FloatArray = npt.NDArray[np.float64]

StepRule = Literal["diminishing", "constant"]

_DEFAULT_RULE = StoppingRule()
_DEFAULT_FAULTS = CommsFaults()
#: Share of the sufficient bound (3) the default price step takes.
_STEP_SHARE = 0.9


def water_filling(fleet: EvFleet, prices_per_kwh: npt.ArrayLike) -> FloatArray:
    """Every load's cheapest schedule at given prices, ``(T, N)`` (the plain price response).

    ``min_r sum_t lambda_t r_t`` over ``{0 <= r <= rbar, sum_t r_t period_h = E}`` is solved by
    filling the load's need into its periods in increasing order of price, each up to its rate
    (a greedy that is exact for one linear constraint over a box). Prices are ``(T,)`` (one
    sort for all loads) or ``(T, N)`` (a sort per load); ties go to the earlier period.
    """
    lam = np.asarray(prices_per_kwh, dtype=np.float64)
    rbar = fleet.rate_max_kw
    need_kw = fleet.energy_kwh / fleet.period_h
    if lam.ndim == 1:
        if lam.shape != (fleet.n_periods,):
            raise ValueError(f"prices must have shape ({fleet.n_periods},), got {lam.shape}")
        order = np.argsort(lam, kind="stable")
        ranked = rbar[order]
        before = np.cumsum(ranked, axis=0) - ranked
        out = np.empty_like(rbar)
        out[order] = np.clip(need_kw[None, :] - before, 0.0, ranked)
        return out
    if lam.shape != rbar.shape:
        raise ValueError(f"prices must have shape (T,) or {rbar.shape}, got {lam.shape}")
    order2 = np.argsort(lam, axis=0, kind="stable")
    ranked = np.take_along_axis(rbar, order2, axis=0)
    before = np.cumsum(ranked, axis=0) - ranked
    out = np.empty_like(rbar)
    np.put_along_axis(out, order2, np.clip(need_kw[None, :] - before, 0.0, ranked), axis=0)
    return out


def _dual_bound(problem: DayAheadProblem, lam: FloatArray) -> float:
    """The Lagrangian dual function at ``lam``: a lower bound on the optimal cost (currency).

    ``q(lambda) = sum_t period_h [ lambda_t D_t + sum_i min_g (a_i g + b_i g^2/2 - lambda_t g)
    + sum_n min_r lambda_t r ]``, each inner minimum at the agents' exact responses.
    """
    p = problem
    g = p.generator_response(lam)
    r = water_filling(p.fleet, lam)
    h = p.period_h
    lagrangian = p.generation_cost(g) + h * float(
        lam @ (p.inflexible_demand_kw + r.sum(axis=1) - g.sum(axis=1))
    )
    return float(lagrangian)


def dual_decomposition(
    problem: DayAheadProblem,
    *,
    step: float | None = None,
    step_rule: StepRule = "constant",
    remedy: bool = True,
    response_step: float | None = None,
    initial_prices_per_kwh: npt.ArrayLike | None = None,
    rule: StoppingRule = _DEFAULT_RULE,
    faults: CommsFaults = _DEFAULT_FAULTS,
) -> IterativeResult:
    """Clear the day-ahead market by posted prices and self-scheduling (see the module doc).

    Parameters
    ----------
    problem:
        The market.
    step:
        ``alpha`` of eq. (1), currency/kWh per kW of mismatch. None: 0.9 of bound (3),
        ``0.9 / (beta / 2 + sigma N)`` (also without the remedy, so the two runs differ only by
        it). With the remedy a step at or above (3) is warned about (the proof no longer covers
        it); without it no step is proven to balance the market (the point of the remedy).
    step_rule:
        ``"constant"`` (``alpha_k = alpha``, the rule Condat's theorem covers) or
        ``"diminishing"`` (``alpha_k = alpha / sqrt(k)``).
    remedy:
        True: flexible loads answer by the damped response (2); False: the plain price
        response (water-filling), which concentrates the flexible demand.
    response_step:
        ``sigma`` of eq. (2), kW per currency/kWh: how far a load may move per unit of price.
        None: ``beta / N``. Ignored without the remedy.
    initial_prices_per_kwh:
        ``lambda^0``, ``(T,)``; None: 0 in every period.
    rule, faults:
        Stopping rule (on the residuals of the module docstring) and communication faults.

    Returns
    -------
    IterativeResult
        ``prices`` ``(T,)`` currency/kWh; ``schedules_kw`` ``(T, G + N)`` as the operator holds
        them (generators ``-g``, loads ``r``; :attr:`DayAheadProblem.ids`); ``objective`` the
        least-cost dispatch cost of the held load schedules; ``extra``: ``dual_bound`` (per
        round), ``alpha`` and ``sigma`` (the steps used), ``flexible_kw_per_period`` (``(K,
        T)``, the operator's total flexible demand each round).

    Raises
    ------
    ValidationError
        A step or response step that is not a finite number > 0, an unknown step rule, or bad
        initial prices.

    """
    p = problem
    given: object = problem
    if not isinstance(given, DayAheadProblem):
        raise TypeError(f"problem must be a DayAheadProblem, got {type(given).__name__}")
    problems = Problems(subject="dual decomposition")
    if step_rule not in ("diminishing", "constant"):
        problems.add("step_rule", f"must be 'diminishing' or 'constant', got {step_rule!r}")
    flag: object = remedy
    if not isinstance(flag, bool):
        problems.add("remedy", f"must be True or False, got {flag!r}")
    t_n, g_n, n = p.n_periods, p.n_generators, p.n_flexible
    lam0 = np.zeros(t_n)
    if initial_prices_per_kwh is not None:
        lam0 = np.array(initial_prices_per_kwh, dtype=np.float64)
        if lam0.shape != (t_n,):
            problems.add("initial_prices_per_kwh", f"must have shape ({t_n},), got {lam0.shape}")
        else:
            problems.check(~np.isfinite(lam0), "initial_prices_per_kwh", "not finite")
    problems.raise_if_any()
    beta = float(np.sum(1.0 / p.cost_quadratic_per_kwh_per_kw))  # kW per currency/kWh
    sigma = (
        beta / max(n, 1)
        if response_step is None
        else checked_step_size("response_step", response_step)
    )
    bound = 1.0 / (0.5 * beta + sigma * n)  # eq. (3)
    if step is None:
        alpha = _STEP_SHARE * bound
    elif remedy:
        alpha = checked_step_size(
            "step",
            step,
            upper=bound,
            bound_is_necessary=False,
            reference="Condat 2013, Thm 3.1: alpha (beta/2 + sigma N) < 1",
        )
    else:
        alpha = checked_step_size("step", step)

    fleet = p.fleet
    demand = p.inflexible_demand_kw
    scale_kw = p.demand_scale_kw
    n_agents = g_n + n
    channel = Channel(faults, n_agents)
    rec = Recorder("dual-decomposition" + ("" if remedy else "-plain"), rule)

    # Round 0 (registration, reliable): the first prices and every agent's first answer.
    lam = lam0
    gen = p.generator_response(lam)
    flex = fleet.project(np.zeros((t_n, n))) if remedy else water_filling(fleet, lam)
    channel.register(lam, np.concatenate([-gen, flex], axis=1))
    held_gen, held_flex = gen, flex  # what the operator holds
    load_price_prev = np.broadcast_to(lam[:, None], (t_n, n))  # each load's previous price
    stepped_on = np.zeros(n, dtype=np.int64)  # the round of the prices each load last used
    bounds: list[float] = []
    flexible_total: list[FloatArray] = []

    k = 0
    while True:
        k += 1
        # Operator: eq. (1) on the mismatch of what it holds, then broadcast.
        mismatch = demand + held_flex.sum(axis=1) - held_gen.sum(axis=1)
        alpha_k = alpha if step_rule == "constant" else alpha / math.sqrt(k)
        new_lam = lam + alpha_k * mismatch
        dual_res = float(np.linalg.norm(new_lam - lam)) / max(
            float(np.linalg.norm(new_lam)), np.finfo(np.float64).tiny
        )
        lam = new_lam
        held = channel.prices_held(k, lam)
        if (held == k).all():
            gen_price: FloatArray = lam
            load_price: FloatArray = np.broadcast_to(lam[:, None], (t_n, n))
        else:
            per_agent = channel.gather(held)  # (N_agents, T)
            gen_price = per_agent[:g_n].T
            load_price = per_agent[g_n:].T
        # Agents answer the prices they hold.
        gen = p.generator_response(gen_price)
        if remedy and (held == k).all():
            # eq. (2): a damped move from the load's own last schedule
            flex = fleet.project(flex - sigma * (2.0 * load_price - load_price_prev))
            load_price_prev = load_price
        elif remedy:
            # Only a load that has received newer prices moves, extrapolating between the two
            # newest it has: stepping again on prices already used would repeat the move.
            fresh = held[g_n:] > stepped_on
            moved = fleet.project(flex - sigma * (2.0 * load_price - load_price_prev))
            flex = np.where(fresh, moved, flex)
            load_price_prev = np.where(fresh, load_price, load_price_prev)
        elif (held == k).all():
            flex = water_filling(fleet, lam)
        else:
            flex = water_filling(fleet, np.ascontiguousarray(load_price))
        stepped_on = np.maximum(stepped_on, held[g_n:])
        coord = channel.schedules_held(np.concatenate([-gen, flex], axis=1))
        held_gen, held_flex = -coord[:, :g_n], coord[:, g_n:]
        # The round's record: the balance of what the operator now holds, the price change.
        mismatch_after = demand + held_flex.sum(axis=1) - held_gen.sum(axis=1)
        primal_res = float(np.linalg.norm(mismatch_after)) / scale_kw
        objective = least_cost_dispatch(p, held_flex).cost
        bounds.append(_dual_bound(p, lam))
        flexible_total.append(held_flex.sum(axis=1))
        if rec.record(primal_res, dual_res, objective):
            break

    return rec.result(
        prices=lam,
        schedules_kw=np.concatenate([-held_gen, held_flex], axis=1),
        ids=p.ids,
        channel=channel,
        extra={
            "dual_bound": np.asarray(bounds, dtype=np.float64),
            "alpha": np.asarray([alpha], dtype=np.float64),
            "sigma": np.asarray([sigma], dtype=np.float64),
            "flexible_kw_per_period": np.asarray(flexible_total, dtype=np.float64),
        },
    )
