"""A day-ahead pool market with flexible demand, and its centralized optimum.

Papadaskalopoulos and Strbac, "Decentralized participation of flexible demand in electricity
markets — Part I: Market mechanism", IEEE Trans. Power Systems 28(4), 2013, and Part II
("Application with electric vehicles and heat pump systems", same issue): a market operator
schedules generators and flexible ("reschedulable") demand over the T periods of the next day
so as to maximise social welfare, which with fixed energy needs is minimising the total
generation cost subject to the balance of every period. This module states that problem as
arrays and solves it in one piece (the reference the iterative mechanisms of
:mod:`.dual_decomposition` and :mod:`.admm` are measured against).

Model (per period ``t`` of ``period_h`` hours; ``G`` generators, ``N`` flexible loads)::

    minimise    sum_t sum_i period_h (a_i g_it + b_i g_it^2 / 2)                  (cost)
    subject to  sum_i g_it = D_t + sum_n r_nt                        for every t  (balance)
                g_min_i <= g_it <= g_max_i                                         (limits)
                0 <= r_nt <= rbar_nt,   sum_t r_nt period_h = E_n      for every n  (shifting)

- Generators (structure-of-arrays, ``(G,)``): a convex quadratic cost rate ``a_i g + b_i g^2/2``
  (``a`` in currency/kWh, ``b`` in currency/kWh per kW, ``b > 0``, so the marginal cost
  ``a_i + b_i g`` is a price in currency/kWh and a generator's self-schedule at a price is
  unique) and output limits. Generators in a day-ahead pool usually also carry
  unit-commitment constraints (start-up costs, minimum up and down times) and ramp limits;
  both are left out here, so the market problem is convex and its balance duals are exact
  clearing prices.
- Flexible demand is reschedulable demand in its simplest form, the one of a charging electric
  vehicle (Part II applies the mechanism to EVs with flexible charging): an energy need over
  the horizon whose timing is free inside a per-period rate box (0 while not plugged in), an
  :class:`~transactive.market.iterative.ev_fleet.EvFleet`
  (:meth:`DayAheadProblem.from_flexibility` reads it off a population's
  :class:`~transactive.devices.flexibility.Flexibility`). Battery losses over time, heat-storage
  dynamics (Part II's heat pumps) and demand curtailment with a benefit are not modelled: every
  need is served in full, at no cost of its own.
- Inflexible demand ``D_t >= 0`` (kW).

Prices are the balance duals divided by ``period_h``: currency/kWh, positive, each period's
marginal cost of one more kWh of demand in it.

Agents, columns and signs follow the project's convention (positive power is consumption): a
schedule is ``(T, G + N)``, the generators first with ``-g`` (injection), then the flexible
loads with ``r``; :attr:`DayAheadProblem.ids` names the columns.

Pure computation: arrays in, arrays and frozen dataclasses out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from transactive.curves import checked_ids, default_ids
from transactive.errors import Problems
from transactive.market.iterative.ev_fleet import EvFleet, FlexibilityLike
from transactive.market.iterative.framework import CentralizedOptimum

__all__ = [
    "DayAheadProblem",
    "LeastCostDispatch",
    "centralized_day_ahead",
    "least_cost_dispatch",
]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]

#: Relative slack of the feasibility checks (float rounding of sums of kW and kWh).
_FEAS_RTOL = 1e-9


def _floats(problems: Problems, name: str, values: object) -> FloatArray:
    """``values`` as a float array, or an empty one with a problem recorded."""
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add(name, f"must be an array of numbers, got {type(values).__name__}")
        return np.empty(0)


def _readonly(values: npt.ArrayLike) -> FloatArray:
    out = np.array(values, dtype=np.float64)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class DayAheadProblem:
    """The day-ahead market of the module docstring: generators, flexible and fixed demand.

    Attributes
    ----------
    period_h:
        Length of a period in hours (the fleet's own ``period_h``).
    inflexible_demand_kw:
        ``(T,)``, ``>= 0``: demand that cannot move.
    cost_linear_per_kwh:
        ``(G,)``: ``a_i``, the marginal cost at zero output (currency/kWh).
    cost_quadratic_per_kwh_per_kw:
        ``(G,)``, ``> 0``: ``b_i``, the slope of the marginal cost (currency/kWh per kW).
    power_min_kw, power_max_kw:
        ``(G,)``: output limits, ``0 <= power_min_kw <= power_max_kw``.
    fleet:
        The flexible loads (rate boxes ``(T, N)`` and energy needs ``(N,)``).
    generator_ids:
        ``(G,)`` unique ids; None gives ``generator-0 ...``. They must differ from the fleet's.

    Raises
    ------
    ValidationError
        Every bad field (shape, finiteness, sign, ``power_min_kw > power_max_kw`` by generator),
        and a balance that cannot hold: a period whose inflexible demand exceeds the total
        capacity (or, even with every flexible load at full rate, falls short of the total
        minimum output), or a fleet whose total energy the capacity left over the horizon
        cannot serve (or which is too small to absorb the minimum output). These conditions are
        necessary; the exact one (a transportation problem between loads and periods) is
        checked by :func:`centralized_day_ahead`, which refuses an infeasible problem.

    """

    period_h: float
    inflexible_demand_kw: FloatArray
    cost_linear_per_kwh: FloatArray
    cost_quadratic_per_kwh_per_kw: FloatArray
    power_min_kw: FloatArray
    power_max_kw: FloatArray
    fleet: EvFleet
    generator_ids: StrArray | None = None

    def __post_init__(self) -> None:
        problems = Problems(subject="day-ahead problem")
        fleet: object = self.fleet
        if not isinstance(fleet, EvFleet):
            problems.add("fleet", f"must be an EvFleet, got {type(fleet).__name__}")
            problems.raise_if_any()
        t = self.fleet.n_periods
        h = self.period_h
        if isinstance(h, bool) or not isinstance(h, int | float | np.integer | np.floating):
            problems.add("period_h", f"must be a number, got {h!r}")
        elif not (np.isfinite(h) and h > 0):
            problems.add("period_h", f"must be a finite number > 0, got {h!r}")
        elif not np.isclose(float(h), self.fleet.period_h, rtol=1e-12, atol=0.0):
            problems.add("period_h", f"must equal the fleet's period_h {self.fleet.period_h}")
        gen_names = (
            "cost_linear_per_kwh",
            "cost_quadratic_per_kwh_per_kw",
            "power_min_kw",
            "power_max_kw",
        )
        n_found = len(problems.found)
        demand = _floats(problems, "inflexible_demand_kw", self.inflexible_demand_kw)
        gen = {name: _floats(problems, name, getattr(self, name)) for name in gen_names}
        if len(problems.found) > n_found:  # not numbers: no shape or value to check
            problems.raise_if_any()
        if demand.shape != (t,):
            problems.add(
                "inflexible_demand_kw", f"must have shape (T,) = {(t,)}, got {demand.shape}"
            )
        g = gen["cost_linear_per_kwh"].shape[0] if gen["cost_linear_per_kwh"].ndim == 1 else -1
        if g < 1:
            problems.add("cost_linear_per_kwh", "must be a 1-D array of at least one generator")
        for name, values in gen.items():
            if g >= 1 and values.shape != (g,):
                problems.add(name, f"must have shape (G,) = {(g,)}, got {values.shape}")
        problems.raise_if_any()
        ids = (
            default_ids("generator", g)
            if self.generator_ids is None
            else checked_ids(self.generator_ids, g, subject="generator ids")
        )
        clash = np.isin(ids, self.fleet.ids)
        problems.check(clash, "generator_ids", "is also a flexible load's id", ids.tolist())
        labels = ids.tolist()
        problems.check(~np.isfinite(demand), "inflexible_demand_kw", "not finite")
        problems.check(demand < 0, "inflexible_demand_kw", "must be >= 0 (kW of demand)")
        finite = True
        for name, values in gen.items():
            finite &= problems.check(~np.isfinite(values), name, "not finite", labels)
        if finite:
            b = gen["cost_quadratic_per_kwh_per_kw"]
            problems.check(
                b <= 0, "cost_quadratic_per_kwh_per_kw", "must be > 0 (strictly convex cost)",
                labels,
            )  # fmt: skip
            problems.check(gen["power_min_kw"] < 0, "power_min_kw", "must be >= 0", labels)
            problems.check(
                gen["power_min_kw"] > gen["power_max_kw"], "power_min_kw",
                "exceeds power_max_kw (g_min > g_max)", labels,
            )  # fmt: skip
        problems.raise_if_any()
        # Necessary conditions for the balance to hold in every period and over the horizon.
        cap = float(gen["power_max_kw"].sum())
        floor = float(gen["power_min_kw"].sum())
        fleet_rate = self.fleet.rate_max_kw.sum(axis=1)
        scale = np.maximum(1.0, np.abs(demand) + cap)
        problems.check(
            demand > cap + _FEAS_RTOL * scale,
            "inflexible_demand_kw",
            f"exceeds the total generation capacity {cap:.6g} kW (infeasible balance)",
        )
        problems.check(
            demand + fleet_rate < floor - _FEAS_RTOL * scale,
            "inflexible_demand_kw",
            f"with every flexible load at full rate is below the generators' total minimum "
            f"output {floor:.6g} kW (infeasible balance)",
        )
        hh = float(h)
        room_kwh = float(np.minimum(np.maximum(cap - demand, 0.0), fleet_rate).sum() * hh)
        need_kwh = float(self.fleet.energy_kwh.sum())
        must_kwh = float(np.maximum(floor - demand, 0.0).sum() * hh)
        tol_kwh = _FEAS_RTOL * max(1.0, need_kwh, room_kwh)
        if need_kwh > room_kwh + tol_kwh:
            problems.add(
                "fleet.energy_kwh",
                f"total flexible energy {need_kwh:.6g} kWh exceeds what the capacity left by the "
                f"inflexible demand can serve while the loads are plugged in ({room_kwh:.6g} "
                "kWh): infeasible balance",
            )
        if must_kwh > need_kwh + tol_kwh:
            problems.add(
                "fleet.energy_kwh",
                f"total flexible energy {need_kwh:.6g} kWh is less than the generators' minimum "
                f"output above the inflexible demand ({must_kwh:.6g} kWh): infeasible balance",
            )
        if not (demand.any() or need_kwh > 0):
            problems.add("inflexible_demand_kw", "no demand at all: nothing to balance")
        problems.raise_if_any()
        object.__setattr__(self, "period_h", hh)
        object.__setattr__(self, "inflexible_demand_kw", _readonly(demand))
        for name, values in gen.items():
            object.__setattr__(self, name, _readonly(values))
        object.__setattr__(self, "generator_ids", ids)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_flexibility(
        cls,
        flexibility: FlexibilityLike,
        *,
        inflexible_demand_kw: npt.ArrayLike,
        cost_linear_per_kwh: npt.ArrayLike,
        cost_quadratic_per_kwh_per_kw: npt.ArrayLike,
        power_min_kw: npt.ArrayLike,
        power_max_kw: npt.ArrayLike,
        generator_ids: npt.ArrayLike | None = None,
    ) -> DayAheadProblem:
        """The market over ``flexibility``'s horizon with its devices as the flexible loads.

        ``flexibility`` is a population's charge-only flexibility (e.g.
        ``EVPopulation.flexibility``), read by :meth:`EvFleet.from_flexibility`.
        """
        fleet = EvFleet.from_flexibility(flexibility)
        return cls(
            period_h=fleet.period_h,
            inflexible_demand_kw=np.asarray(inflexible_demand_kw, dtype=np.float64),
            cost_linear_per_kwh=np.asarray(cost_linear_per_kwh, dtype=np.float64),
            cost_quadratic_per_kwh_per_kw=np.asarray(
                cost_quadratic_per_kwh_per_kw, dtype=np.float64
            ),
            power_min_kw=np.asarray(power_min_kw, dtype=np.float64),
            power_max_kw=np.asarray(power_max_kw, dtype=np.float64),
            fleet=fleet,
            generator_ids=None if generator_ids is None else np.asarray(generator_ids),
        )

    # ------------------------------------------------------------------ sizes and names

    @property
    def n_periods(self) -> int:
        """T."""
        return self.fleet.n_periods

    @property
    def n_generators(self) -> int:
        """G."""
        return int(self.cost_linear_per_kwh.shape[0])

    @property
    def n_flexible(self) -> int:
        """N."""
        return self.fleet.n_evs

    @property
    def gen_ids(self) -> StrArray:
        """``(G,)`` generator ids."""
        assert self.generator_ids is not None  # set by __post_init__
        return self.generator_ids

    @property
    def ids(self) -> StrArray:
        """``(G + N,)`` agent ids: the generators, then the flexible loads."""
        return np.concatenate([self.gen_ids, np.asarray(self.fleet.ids, dtype=np.str_)])

    @property
    def demand_scale_kw(self) -> float:
        """``||D_t + E / (T period_h)||_2``: the demand's size, the primal residuals' scale.

        The inflexible demand with the fleet's total energy spread evenly over the horizon
        (``||D||`` when there is no flexible load).
        """
        spread = self.fleet.energy_kwh.sum() / (self.n_periods * self.period_h)
        return float(np.linalg.norm(self.inflexible_demand_kw + spread))

    @property
    def price_scale_per_kwh(self) -> float:
        """The highest marginal cost any generator reaches, ``max_i a_i + b_i g_max_i``."""
        return float(
            np.max(
                self.cost_linear_per_kwh + self.cost_quadratic_per_kwh_per_kw * self.power_max_kw
            )
        )

    # ------------------------------------------------------------------ economics

    def generation_cost(self, generation_kw: npt.ArrayLike) -> float:
        """``sum_t sum_i period_h (a_i g_it + b_i g_it^2 / 2)`` (currency) of ``(T, G)`` output."""
        g = np.asarray(generation_kw, dtype=np.float64)
        rate = g * self.cost_linear_per_kwh + 0.5 * self.cost_quadratic_per_kwh_per_kw * g * g
        return float(rate.sum() * self.period_h)

    def generator_response(self, prices_per_kwh: npt.ArrayLike) -> FloatArray:
        """Each generator's profit-maximising output at a price, ``(T, G)``.

        ``argmax_g (lambda g - a g - b g^2 / 2)`` over ``[g_min, g_max]`` is
        ``clip((lambda - a) / b, g_min, g_max)``: the self-scheduling of Papadaskalopoulos and
        Strbac's generators (Part I), without unit commitment. ``prices_per_kwh`` is
        ``(T,)`` (one price for all) or ``(T, G)`` (the price each generator holds).
        """
        lam = np.asarray(prices_per_kwh, dtype=np.float64)
        if lam.ndim == 1:
            lam = lam[:, None]
        out = (lam - self.cost_linear_per_kwh) / self.cost_quadratic_per_kwh_per_kw
        return np.clip(out, self.power_min_kw, self.power_max_kw)


@dataclass(frozen=True, eq=False)
class LeastCostDispatch:
    """The cheapest generation serving given demand, period by period.

    Attributes
    ----------
    cost:
        Generation cost over the horizon (currency); ``inf`` when some period's demand lies
        outside ``[sum g_min, sum g_max]`` (no dispatch balances it).
    generation_kw:
        ``(T, G)`` outputs (at the limits in a period that cannot balance).
    prices_per_kwh:
        ``(T,)``: the marginal cost that clears each period (the limiting generator's marginal
        cost at the nearest limit where it cannot balance).
    unserved_kw:
        ``(T,)``: demand above total capacity (positive) or below total minimum output
        (negative); 0 where the period balances.

    """

    cost: float
    generation_kw: FloatArray
    prices_per_kwh: FloatArray
    unserved_kw: FloatArray


def least_cost_dispatch(problem: DayAheadProblem, flexible_kw: npt.ArrayLike) -> LeastCostDispatch:
    """Serve ``D_t + sum_n flexible_kw[t, n]`` at least cost in every period (exact).

    The generators' total response ``S(lambda) = sum_i clip((lambda - a_i)/b_i, g_min_i,
    g_max_i)`` is piecewise linear and non-decreasing with breakpoints ``a_i + b_i g_min_i``
    and ``a_i + b_i g_max_i``, the same for every period; each period's clearing price is read
    off it by one interpolation between the breakpoints (vectorized over periods), and every
    generator then produces its response at that price (the economic dispatch's equal marginal
    cost condition).

    The iterative mechanisms report, as their objective, this cost of the loads' current
    schedules: a feasible point of the market problem, so its relative gap to the optimum is
    never negative.
    """
    p = problem
    r = np.asarray(flexible_kw, dtype=np.float64)
    if r.shape != (p.n_periods, p.n_flexible):
        raise ValueError(
            f"flexible_kw must have shape {(p.n_periods, p.n_flexible)}, got {r.shape}"
        )
    load = p.inflexible_demand_kw + r.sum(axis=1)
    a, b = p.cost_linear_per_kwh, p.cost_quadratic_per_kwh_per_kw
    lo, hi = p.power_min_kw, p.power_max_kw
    breaks = np.sort(np.concatenate([a + b * lo, a + b * hi]))
    supply = np.clip((breaks[:, None] - a) / b, lo, hi).sum(axis=1)  # S at each breakpoint
    k = np.searchsorted(supply, load, side="left")  # first breakpoint with S >= load
    inside = (k > 0) & (k < breaks.size)
    k_in = np.clip(k, 1, breaks.size - 1)
    s0, s1 = supply[k_in - 1], supply[k_in]
    b0, b1 = breaks[k_in - 1], breaks[k_in]
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(inside, b0 + (load - s0) * (b1 - b0) / (s1 - s0), 0.0)
    lam = np.where(k == 0, breaks[0], lam)
    lam = np.where(k >= breaks.size, breaks[-1], lam)
    gen = p.generator_response(lam)
    unserved = np.where(load > supply[-1], load - supply[-1], 0.0)
    unserved = np.where(load < supply[0], load - supply[0], unserved)
    tol = _FEAS_RTOL * np.maximum(1.0, np.abs(load))
    unserved = np.where(np.abs(unserved) <= tol, 0.0, unserved)
    cost = p.generation_cost(gen) if not unserved.any() else float("inf")
    return LeastCostDispatch(cost=cost, generation_kw=gen, prices_per_kwh=lam, unserved_kw=unserved)


def centralized_day_ahead(problem: DayAheadProblem) -> CentralizedOptimum:
    """The market problem of the module docstring in one cvxpy problem (Clarabel).

    Only the plugged-in entries of the fleet's ``(T, N)`` schedule are variables (a load's rate
    is 0 where ``rate_max_kw`` is 0), with sparse energy and period sums, so a fleet of
    thousands stays small.

    Returns
    -------
    CentralizedOptimum
        ``objective`` the generation cost (currency); ``schedules_kw`` ``(T, G + N)`` in the
        problem's column order (generators as ``-g``); ``prices`` ``(T,)`` the balance duals
        over ``period_h`` (currency/kWh, positive); ``solve_time_s`` Clarabel's own solve time.

    Raises
    ------
    ValidationError
        The balance cannot hold (the solver proves the problem infeasible).

    """
    import cvxpy  # noqa: PLC0415 (heavy; only the reference needs it)
    import scipy.sparse as sp  # noqa: PLC0415

    cp: Any = cvxpy  # cvxpy ships partial type information; treat its namespace as untyped

    p = problem
    t_n, n = p.n_periods, p.n_flexible
    rbar = p.fleet.rate_max_kw
    tt, nn = np.nonzero(rbar > 0)  # plugged entries, time-major order
    m = tt.size
    g = cp.Variable((t_n, p.n_generators))
    cost_rate = cp.sum(g @ p.cost_linear_per_kwh) + cp.sum(
        cp.multiply(np.broadcast_to(0.5 * p.cost_quadratic_per_kwh_per_kw, g.shape), cp.square(g))
    )
    constraints = [g >= p.power_min_kw[None, :], g <= p.power_max_kw[None, :]]
    flexible_per_period: Any = 0.0
    x = None
    if m:
        x = cp.Variable(m)
        ones = np.ones(m)
        by_period = sp.csr_matrix((ones, (tt, np.arange(m))), shape=(t_n, m))
        by_load = sp.csr_matrix((ones, (nn, np.arange(m))), shape=(n, m))
        constraints += [x >= 0, x <= rbar[tt, nn], by_load @ x == p.fleet.energy_kwh / p.period_h]
        flexible_per_period = by_period @ x
    # (no plugged entry: every need is 0, or the EvFleet would have refused it)
    balance = p.inflexible_demand_kw + flexible_per_period - cp.sum(g, axis=1) == 0
    constraints.append(balance)
    prob = cp.Problem(cp.Minimize(p.period_h * cost_rate), constraints)
    prob.solve(solver=cp.CLARABEL)
    if prob.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        problems = Problems(subject="day-ahead problem")
        problems.add(
            "inflexible_demand_kw/fleet",
            "no schedule balances every period within the generators' limits and the loads' "
            f"rate boxes (solver status {prob.status}): infeasible balance",
        )
        problems.raise_if_any()
    if prob.status != cp.OPTIMAL:
        raise RuntimeError(f"Clarabel did not solve the day-ahead problem: status {prob.status}")
    gen = np.asarray(g.value, dtype=np.float64)
    flex = np.zeros((t_n, n))
    if x is not None:
        flex[tt, nn] = np.asarray(x.value, dtype=np.float64)
    prices = np.asarray(balance.dual_value, dtype=np.float64).reshape(t_n) / p.period_h
    stats = prob.solver_stats
    solve_time = (
        float(stats.solve_time)
        if stats is not None and stats.solve_time is not None
        else float("nan")
    )
    return CentralizedOptimum(
        objective=float(prob.value),
        schedules_kw=np.concatenate([-gen, flex], axis=1),
        prices=prices,
        solver="CLARABEL",
        solve_time_s=solve_time,
    )
