"""Day-ahead market clearing by ADMM in exchange form.

Boyd, Parikh, Chu, Peleato and Eckstein, "Distributed optimization and statistical learning
via the alternating direction method of multipliers", Found. Trends Mach. Learn. 3(1), 2011,
§7.3.2 (the exchange problem). Every agent ``i`` holds a schedule ``x_i`` (``(T,)``, kW,
positive = consumption): a generator ``x_i = -g_i`` with the cost rate ``f_i(x) = sum_t (-a_i
x_t + b_i x_t^2 / 2)`` over its limits, a flexible load ``x_n = r_n`` with ``f_n`` the
indicator of its set (:class:`~transactive.market.iterative.ev_fleet.EvFleet`; its energy has
no cost of its own); the inflexible demand is one more agent whose schedule is fixed at ``D``.
The market's balance is the exchange constraint ``sum_i x_i = 0`` over the ``M = G + N + 1``
agents, and ADMM reads (Boyd §7.3.2, in scaled form)::

    x_i^{k+1} = argmin_x f_i(x) + (rho / 2) ||x - x_i^k + xbar^k + u^k||^2             (1)
    u^{k+1}   = u^k + xbar^{k+1},        xbar = (1/M) sum_i x_i                          (2)

and ``rho u``, the dual variable of the exchange constraint, is the price vector (Boyd §7.3.2
reads it as the prices of the exchange): with the cost rates in currency/h and schedules in kW
it is in currency/kWh.

The prox steps (1), vectorized over agents:

- generators, in closed form: ``argmin_g a g + b g^2 / 2 + (rho / 2)(g + v)^2`` over
  ``[g_min, g_max]`` with ``v = x_i^k - xbar^k - u^k`` is ``clip(-(a + rho v) / (b + rho),
  g_min, g_max)`` (a one-dimensional strictly convex quadratic: clipping its minimiser is exact);
- flexible loads: the prox of a set's indicator is the Euclidean projection onto it,
  ``x_n = P_n(v_n)`` (:meth:`EvFleet.project`); a load with a linear cost ``c . r`` would take
  ``P_n(v_n - c / rho)`` (completing the square), so the projection of a shifted target is its
  exact prox.

Residuals (Boyd §3.3, with the exchange problem written as ``x_i - z_i = 0``,
``sum_i z_i = 0``, so that ``z_i^{k+1} = x_i^{k+1} - xbar^{k+1}``): the dual residual is
``s = rho (z^{k+1} - z^k)`` over all agents and Boyd's test ``||s|| <= sqrt(n) eps_abs +
eps_rel ||A^T y||`` (``n = M T``, ``||A^T y|| = sqrt(M) ||rho u||``) is used with ``eps_rel =
tol`` and ``eps_abs = tol * price_scale`` (:attr:`DayAheadProblem.price_scale_per_kwh`, the
highest marginal cost a generator reaches): the recorded dual residual is ``||s|| / (sqrt(n)
price_scale + sqrt(M) ||rho u||)``, at most ``tol`` exactly when Boyd's test passes. Boyd's
primal residual is ``r = (xbar, ..., xbar)``, ``||r|| = sqrt(M) ||xbar||``: the balance
mismatch ``M xbar`` divided by ``sqrt(M)``, which loosens with the number of agents; the
recorded primal residual is the mismatch itself relative to the demand's size,
``||M xbar|| / ||D + E / (T period_h)||`` (the same measure as the dual decomposition's), i.e.
Boyd's primal test with ``eps_abs = tol ||D + E / (T period_h)|| / sqrt(M T)`` and
``eps_rel = 0``.

Residual balancing (Boyd §3.4.1, with its usual ``mu = 10``, ``tau = 2``) is an option, **off** by
default: when on, ``rho`` is multiplied by 2 (``u`` halved, so the prices ``rho u`` are kept)
when the relative primal residual exceeds ten times the relative dual one, and divided by 2
in the opposite case (on the relative residuals, so the comparison has no units), during the
first ``balancing_rounds`` rounds only (Boyd's remark that convergence holds once ``rho`` stays
fixed). It is off by default because on the day-ahead problems of the tests and the benchmark a
fixed ``rho`` from the default below converges in far fewer rounds: with 40 loads, 236 rounds
to a tolerance of 1e-6 against 1,200 to 2,300 with balancing (from ``rho`` 1e-3 to 1), and with
1,000 loads 182 rounds to 1e-4 against no convergence within 1,000 (balancing drove ``rho``
two thousand times up).

``rho`` is explicit. The price moves each round by ``rho xbar = (rho / M)`` times the balance
mismatch, so ``rho / M`` plays the part of the dual decomposition's price step; the default
``rho = 0.1 M / beta`` (``beta = sum_i 1 / b_i``, the generators' total price sensitivity in
kW per currency/kWh) sets that step to a tenth of the generators' inverse sensitivity
(measured on the tests' and benchmark's problems: within a factor of about three of the best
fixed ``rho`` from 30 to 3,000 loads).

The objective recorded each round is the cost of serving the loads' current schedules (as the
coordinator holds them) at least cost
(:func:`~transactive.market.iterative.day_ahead.least_cost_dispatch`), a feasible market
schedule whose gap to the centralized optimum is never negative.

Communication goes through :class:`~transactive.market.iterative.framework.Channel`: the
coordinator broadcasts ``xbar^k + u^k`` (T numbers; with residual balancing, ``rho`` as one
more), each agent answers with its schedule (T numbers). An agent takes its prox step (1) when a
broadcast newer than the last one it stepped on reaches it (from its own newest schedule, which
is the one that broadcast was built from), and otherwise resends its schedule unchanged:
stepping again on a broadcast already used would apply its correction twice (the rule of
asynchronous ADMM, where a worker updates on receiving the master's new variables: Chang, Hong,
Liao and Wang, "Asynchronous distributed ADMM for large-scale optimization — Part I", IEEE
Trans. Signal Process. 64(12), 2016). A lost schedule leaves the coordinator with the agent's
previous one. Measured on the tests' market: 10 % and 30 % message loss cost no extra rounds,
price delays of up to two rounds at most a quarter more; ten per cent loss with delays of up to
three rounds did not converge within 5,000 rounds.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.market.iterative.day_ahead import DayAheadProblem, least_cost_dispatch
from transactive.market.iterative.framework import (
    Channel,
    CommsFaults,
    IterativeResult,
    Recorder,
    StoppingRule,
    checked_step_size,
)

__all__ = ["admm_exchange"]

FloatArray = npt.NDArray[np.float64]

_DEFAULT_RULE = StoppingRule()
_DEFAULT_FAULTS = CommsFaults()
#: Default ``rho`` as a share of ``M / beta`` (see the module docstring).
_RHO_SHARE = 0.1
#: Boyd §3.4.1's usual parameters of residual balancing.
_BALANCE_MU = 10.0
_BALANCE_TAU = 2.0


def admm_exchange(
    problem: DayAheadProblem,
    *,
    rho: float | None = None,
    residual_balancing: bool = False,
    balancing_rounds: int = 100,
    rule: StoppingRule = _DEFAULT_RULE,
    faults: CommsFaults = _DEFAULT_FAULTS,
) -> IterativeResult:
    """Clear the day-ahead market by exchange ADMM (see the module docstring).

    Parameters
    ----------
    problem:
        The market.
    rho:
        The penalty, ``> 0``, in currency/kWh per kW. None: ``0.1 M / sum_i (1 / b_i)``.
    residual_balancing:
        Adapt ``rho`` by Boyd's residual balancing (§3.4.1) during the first
        ``balancing_rounds`` rounds. Off by default.
    balancing_rounds:
        Rounds during which residual balancing may change ``rho`` (an integer >= 1).
    rule, faults:
        Stopping rule (on the residuals of the module docstring) and communication faults.

    Returns
    -------
    IterativeResult
        ``prices`` ``(T,)`` ``rho u`` in currency/kWh; ``schedules_kw`` ``(T, G + N)`` as the
        coordinator holds them (generators ``-g``, loads ``r``; :attr:`DayAheadProblem.ids`);
        ``objective`` the least-cost dispatch cost of the held load schedules; ``extra``:
        ``rho`` (per round, the penalty used in it).

    Raises
    ------
    ValidationError
        ``rho`` not a finite number > 0, or bad balancing parameters.

    """
    p = problem
    given: object = problem
    if not isinstance(given, DayAheadProblem):
        raise TypeError(f"problem must be a DayAheadProblem, got {type(given).__name__}")
    problems = Problems(subject="ADMM")
    flag: object = residual_balancing
    if not isinstance(flag, bool):
        problems.add("residual_balancing", f"must be True or False, got {flag!r}")
    if (
        isinstance(balancing_rounds, bool)
        or not isinstance(balancing_rounds, int | np.integer)
        or balancing_rounds < 1
    ):
        problems.add("balancing_rounds", f"must be an integer >= 1, got {balancing_rounds!r}")
    problems.raise_if_any()
    t_n, g_n, n = p.n_periods, p.n_generators, p.n_flexible
    m_agents = g_n + n + 1  # the inflexible demand is the (M)th, fixed, agent
    a = p.cost_linear_per_kwh
    b = p.cost_quadratic_per_kwh_per_kw
    lo, hi = p.power_min_kw, p.power_max_kw
    beta = float(np.sum(1.0 / b))
    rho_k = _RHO_SHARE * m_agents / beta if rho is None else checked_step_size("rho", rho)
    demand = p.inflexible_demand_kw
    fleet = p.fleet
    scale_kw = p.demand_scale_kw
    price_scale = p.price_scale_per_kwh
    sqrt_n = math.sqrt(m_agents * t_n)
    sqrt_m = math.sqrt(m_agents)

    def message(w: FloatArray, rho_now: float) -> FloatArray:
        return np.append(w, rho_now) if residual_balancing else w

    # Round 0 (registration, reliable): every agent's first schedule and the coordinator's
    # first broadcast, xbar^0 + u^0 with u^0 = 0.
    x_gen = -np.broadcast_to(lo, (t_n, g_n)).copy()  # x = -g, generators at their minimum
    x_flex = fleet.project(np.zeros((t_n, n)))
    u = np.zeros(t_n)
    held_gen, held_flex = x_gen, x_flex
    xbar = (held_gen.sum(axis=1) + held_flex.sum(axis=1) + demand) / m_agents
    n_agents = g_n + n
    channel = Channel(faults, n_agents)
    w = xbar + u
    channel.register(message(w, rho_k), np.concatenate([x_gen, x_flex], axis=1))
    held = np.zeros(n_agents, dtype=np.int64)
    stepped_on = np.full(n_agents, -1, dtype=np.int64)  # the broadcast each agent last used
    rec = Recorder("admm-exchange", rule)
    rhos: list[float] = []

    k = 0
    while True:
        k += 1
        # What each agent holds: the broadcast (and rho) of the round it last received. An
        # agent steps only on a broadcast newer than the one it last stepped on: eq. (1) pairs
        # x_i^k with the broadcast built from it, so stepping again on the same (or an older)
        # broadcast would apply its correction twice; without news it resends its schedule.
        if (held == k - 1).all():
            v_gen = x_gen - w[:, None]
            g = np.clip(-(a + rho_k * v_gen) / (b + rho_k), lo, hi)
            x_gen = -g
            x_flex = fleet.project(x_flex - w[:, None])
        else:
            fresh = held > stepped_on
            per_agent = channel.gather(held)  # (N_agents, T [+ 1])
            rho_gen: FloatArray | float = per_agent[:g_n, t_n] if residual_balancing else rho_k
            v_gen = x_gen - per_agent[:g_n, :t_n].T
            g = np.clip(-(a + rho_gen * v_gen) / (b + rho_gen), lo, hi)
            x_gen = np.where(fresh[:g_n], -g, x_gen)
            x_flex = np.where(fresh[g_n:], fleet.project(x_flex - per_agent[g_n:, :t_n].T), x_flex)
        stepped_on = np.maximum(stepped_on, held)
        coord = channel.schedules_held(np.concatenate([x_gen, x_flex], axis=1))
        new_gen, new_flex = coord[:, :g_n], coord[:, g_n:]
        # eq. (2) on what the coordinator holds.
        new_xbar = (new_gen.sum(axis=1) + new_flex.sum(axis=1) + demand) / m_agents
        u = u + new_xbar
        # Residuals (module docstring): Boyd's s = rho (z^{k+1} - z^k), z_i = x_i - xbar.
        d_xbar = new_xbar - xbar
        s_sq = (
            float(np.sum((new_gen - held_gen - d_xbar[:, None]) ** 2))
            + float(np.sum((new_flex - held_flex - d_xbar[:, None]) ** 2))
            + float(np.sum(d_xbar**2))  # the fixed demand agent: its z moves by -d_xbar
        )
        dual_res = (
            rho_k
            * math.sqrt(s_sq)
            / (sqrt_n * price_scale + sqrt_m * rho_k * float(np.linalg.norm(u)))
        )
        primal_res = float(np.linalg.norm(m_agents * new_xbar)) / scale_kw
        held_gen, held_flex, xbar = new_gen, new_flex, new_xbar
        objective = least_cost_dispatch(p, held_flex).cost
        rhos.append(rho_k)
        if rec.record(primal_res, dual_res, objective):
            break
        if residual_balancing and k <= balancing_rounds:
            # Boyd §3.4.1 on the relative residuals; u rescaled so rho u is unchanged.
            if primal_res > _BALANCE_MU * dual_res:
                rho_k *= _BALANCE_TAU
                u = u / _BALANCE_TAU
            elif dual_res > _BALANCE_MU * primal_res:
                rho_k /= _BALANCE_TAU
                u = u * _BALANCE_TAU
        w = xbar + u
        held = channel.prices_held(k, message(w, rho_k))

    return rec.result(
        prices=rho_k * u,
        schedules_kw=np.concatenate([held_gen, held_flex], axis=1),
        ids=p.ids,
        channel=channel,
        extra={"rho": np.asarray(rhos, dtype=np.float64)},
    )
