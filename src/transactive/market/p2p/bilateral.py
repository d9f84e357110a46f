"""Multi-bilateral trading with product differentiation: Sorin, Bobo & Pinson's RCI algorithm.

E. Sorin, L. Bobo, P. Pinson, "Consensus-based approach to peer-to-peer electricity markets with
product differentiation", IEEE Trans. Power Systems 34(2), 994-1004, 2019,
doi:10.1109/TPWRS.2018.2872880 (the multi-bilateral economic dispatch, MBED, of §II and the
relaxed consensus + innovation algorithm, RCI, of §III). Hu et al. 2019 §3.1.2 cite it as the
P2P organisation of transactive energy.

The problem (one interval, powers in kW, money per hour). Agent ``n`` trades ``x[n, m]`` with
each partner ``m`` (positive: ``n`` buys from ``m``; the project's sign, consumption positive)
and its net power is ``P_n = Σ_m x[n, m]``:

    minimise  Σ_n  ½ a_n P_n² − β_n P_n  +  Σ_n Σ_m c[n, m] |x[n, m]|
    subject to  x[n, m] + x[m, n] = 0              (reciprocity: what n buys, m sells)
                P_n ∈ [P_n_min, P_n_max]
                x[n, m] ∈ [min(P_n_min, 0), max(P_n_max, 0)]   (a pure consumer only buys,
                                                                a pure producer only sells)
                x[n, m] = 0 unless n and m are partners.

``½ a P² − β P`` is the agent's cost of its net consumption (minus its utility): its marginal
value of power is ``β − a P``, so it would bid the linear curve ``P = (β − λ) / a``; a consumer
with utility ``β D − ½ a D²`` and a producer with cost ``β G + ½ a G²`` (``G = −P``) are both of
this form. ``c[n, m] >= 0`` is the product differentiation price (§II-C): what agent ``n``
charges itself per kWh traded with ``m``, from the distance between them, the origin of ``m``'s
energy (PV or not), or any preference (:func:`differentiation_costs`). The paper writes this
term ``c_nm P_nm`` with trades signed by the agent's role; here it is charged on the traded
energy ``|x|`` so that a positive price is a cost to buyers and sellers alike (and the problem
stays convex for prosumers who may trade either way).

RCI (§III-B) is ADMM on the reciprocity constraint in which every agent solves its own problem
and talks only to its partners. Round ``k``: agent ``n`` takes the midpoint
``z[n, m] = (x[n, m] − x[m, n]) / 2`` of its and its partner's proposals and solves

    x_n ← argmin  ½ a_n P_n² − β_n P_n + Σ_m ( c[n, m] |x[n, m]| + λ[n, m] x[n, m]
                                              + ρ/2 (x[n, m] − z[n, m])² )

then both partners update the pair's price ``λ[n, m] ← λ[n, m] + ρ/2 (x[n, m] + x[m, n])``
(the same number on both sides, so ``λ[n, m] = λ[m, n]``: the price the buyer pays the seller).
The midpoint is the projection onto the reciprocal trades and the price step the scaled dual
step, so this is ADMM with a projection as its second block (Boyd et al., "Distributed
optimization and statistical learning via ADMM", 2011, §5) and converges for every ``ρ > 0``.
Agent ``n``'s own problem is solved exactly: with ``π`` its marginal value ``β − a P_n`` (its
net power held in its bounds), every trade is ``x[n, m] = clip(soft(z + (π − λ)/ρ, c/ρ), lo,
hi)``, and ``π`` is the root of a monotone piecewise-linear equation, found by sorting its
breakpoints (no iteration).

At the optimum the prices satisfy ``λ[n, m] = β_n − a_n P_n − c[n, m]`` for a buyer (its
marginal value less its preference cost) and ``λ[n, m] = β_m − a_m P_m + c[m, n]`` for the
seller, for every pair trading strictly inside its bounds. :func:`centralized_bilateral` solves
the same problem in one cvxpy problem (Clarabel) as the reference.

Residuals (kW, max over pairs): primal ``max |x[n, m] + x[m, n]|`` (reciprocity), dual
``max |z^k − z^{k−1}|`` (the change of the agreed trades; ADMM's dual residual over ρ).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cvxpy as _cvxpy
import numpy as np
import numpy.typing as npt

from transactive.curves import StrArray, checked_ids
from transactive.errors import Problems, is_real
from transactive.market.iterative.framework import StoppingRule

__all__ = [
    "BilateralMarket",
    "BilateralOptimum",
    "BilateralResult",
    "centralized_bilateral",
    "differentiation_costs",
    "relaxed_consensus_innovation",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

cp: Any = _cvxpy  # cvxpy ships partial type information; treat its namespace as untyped


@dataclass(frozen=True, eq=False)
class BilateralMarket:
    """The agents of a multi-bilateral market and their preferences (Sorin et al., §II).

    Attributes
    ----------
    ids : (N,) str
        Agent ids.
    cost_quadratic_per_kw2h : (N,) float
        ``a_n > 0``: the slope of the agent's marginal value (currency/kWh per kW).
    marginal_value_per_kwh : (N,) float
        ``β_n``: the agent's marginal value at zero net power (currency/kWh).
    power_min_kw, power_max_kw : (N,) float
        Bounds of the net power (positive consumption); finite.
    differentiation_per_kwh : (N, N) float
        ``c[n, m] >= 0``: agent n's product differentiation price for trades with m.
    partners : (N, N) bool
        Who may trade with whom (symmetric, no self pairs).

    Raises
    ------
    ValidationError
        Shapes, non-finite or out-of-range values, an asymmetric partner matrix, and markets in
        which some group of partners cannot balance (every problem at once, naming the agents).

    """

    ids: StrArray
    cost_quadratic_per_kw2h: FloatArray
    marginal_value_per_kwh: FloatArray
    power_min_kw: FloatArray
    power_max_kw: FloatArray
    differentiation_per_kwh: FloatArray
    partners: BoolArray

    def __post_init__(self) -> None:
        problems = Problems(subject="bilateral market")
        ids = checked_ids(self.ids, np.asarray(self.ids).size, subject="bilateral market")
        n = ids.size
        labels = ids.tolist()
        vectors = {}
        for name in (
            "cost_quadratic_per_kw2h",
            "marginal_value_per_kwh",
            "power_min_kw",
            "power_max_kw",
        ):
            arr = _floats(getattr(self, name), (n,), name, problems)
            vectors[name] = arr
            if arr is not None:
                problems.check(~np.isfinite(arr), name, "must be finite", labels)
        a = vectors["cost_quadratic_per_kw2h"]
        if a is not None:
            problems.check(~(a > 0), "cost_quadratic_per_kw2h", "must be > 0", labels)
        lo, hi = vectors["power_min_kw"], vectors["power_max_kw"]
        if lo is not None and hi is not None:
            problems.check(~(lo <= hi), "power_max_kw", "is below power_min_kw", labels)
        c = _floats(self.differentiation_per_kwh, (n, n), "differentiation_per_kwh", problems)
        if c is not None:
            problems.check(
                ~(np.isfinite(c) & (c >= 0)).all(axis=1),
                "differentiation_per_kwh",
                "must be finite and >= 0 (a cost per kWh traded)",
                labels,
            )
        partners: BoolArray | None = np.asarray(self.partners)
        assert partners is not None
        if partners.shape != (n, n) or partners.dtype != np.bool_:
            problems.add("partners", f"must be an ({n}, {n}) boolean matrix, got {partners.shape}")
            partners = None
        else:
            problems.check(
                (partners != partners.T).any(axis=1), "partners", "not symmetric", labels
            )
            problems.check(
                np.diag(partners), "partners", "an agent cannot trade with itself", labels
            )
        problems.raise_if_any()
        assert a is not None and lo is not None and hi is not None and c is not None
        assert partners is not None
        self._balance_problems(ids, lo, hi, partners)
        for name, value in (
            ("ids", ids),
            *vectors.items(),
            ("differentiation_per_kwh", c),
            ("partners", partners.copy()),
        ):
            assert value is not None
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @staticmethod
    def _balance_problems(
        ids: StrArray, lo: FloatArray, hi: FloatArray, partners: BoolArray
    ) -> None:
        """Refuse partner groups that cannot trade to within every member's bounds.

        Per connected group of partners, a linear feasibility problem (HiGHS): one trade per
        pair inside both agents' trade bounds, every member's net power inside its bounds. A
        market that fails it has no solution, and RCI would not converge.
        """
        from scipy.optimize import linprog  # noqa: PLC0415
        from scipy.sparse import csr_matrix  # noqa: PLC0415
        from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

        problems = Problems(subject="bilateral market")
        _count, group = connected_components(csr_matrix(partners), directed=False)
        i_all, j_all = np.nonzero(np.triu(partners, 1))
        t_lo = np.maximum(np.minimum(lo, 0.0)[i_all], -np.maximum(hi, 0.0)[j_all])
        t_hi = np.minimum(np.maximum(hi, 0.0)[i_all], -np.minimum(lo, 0.0)[j_all])
        for g in np.unique(group):
            members = np.flatnonzero(group == g)
            if lo[members].sum() > 0 or hi[members].sum() < 0:
                feasible = False
            elif members.size == 1:
                feasible = bool(lo[members[0]] <= 0.0 <= hi[members[0]])
            else:
                pick = np.flatnonzero(group[i_all] == g)
                where = {int(m): k for k, m in enumerate(members)}
                rows_i = np.array([where[int(v)] for v in i_all[pick]])
                rows_j = np.array([where[int(v)] for v in j_all[pick]])
                incidence = np.zeros((members.size, pick.size))
                incidence[rows_i, np.arange(pick.size)] = 1.0  # x[i, j] = t: i buys t
                incidence[rows_j, np.arange(pick.size)] = -1.0  # x[j, i] = -t
                answer = linprog(
                    np.zeros(pick.size),
                    A_ub=np.vstack([incidence, -incidence]),
                    b_ub=np.concatenate([hi[members], -lo[members]]),
                    bounds=np.column_stack([t_lo[pick], t_hi[pick]]),
                    method="highs",
                )
                feasible = answer.status == 0
            if not feasible:
                problems.add(
                    "power_min_kw/power_max_kw",
                    "these partners cannot balance: no trades between them keep every one "
                    "within its bounds",
                    [str(ids[i]) for i in members],
                )
        problems.raise_if_any()

    @property
    def n_agents(self) -> int:
        """Number of agents."""
        return int(self.ids.size)

    def trade_bounds_kw(self) -> tuple[FloatArray, FloatArray]:
        """``(lo, hi)`` of every trade ``x[n, m]``: 0 for non-partners."""
        lo = np.where(self.partners, np.minimum(self.power_min_kw, 0.0)[:, None], 0.0)
        hi = np.where(self.partners, np.maximum(self.power_max_kw, 0.0)[:, None], 0.0)
        return lo, hi

    def cost_per_h(self, trades_kw: npt.ArrayLike) -> float:
        """The MBED objective of a trade matrix: Σ ½ a P² − β P + Σ c |x| (currency/h)."""
        x = np.asarray(trades_kw, dtype=np.float64)
        p = x.sum(axis=1)
        own = 0.5 * self.cost_quadratic_per_kw2h * p**2 - self.marginal_value_per_kwh * p
        return float(own.sum() + (self.differentiation_per_kwh * np.abs(x)).sum())


def differentiation_costs(
    distance_km: npt.ArrayLike,
    *,
    per_km_per_kwh: float | npt.ArrayLike,
    pv_origin: npt.ArrayLike | None = None,
    non_pv_per_kwh: float | npt.ArrayLike = 0.0,
) -> FloatArray:
    """Product differentiation prices from distance and origin (Sorin et al., §II-C and §V).

    ``c[n, m] = per_km[n] · distance[n, m] + non_pv[n] · (m's energy is not from PV)``: agent
    ``n`` prefers near partners and, with ``non_pv_per_kwh > 0``, PV energy. Per-agent rates are
    ``(N,)`` arrays (one per agent ``n``), or one number for all.

    Raises
    ------
    ValidationError
        Shapes, negative or non-finite values.

    """
    problems = Problems(subject="differentiation costs")
    d = np.asarray(distance_km, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        problems.add("distance_km", f"must be a square (N, N) matrix, got shape {d.shape}")
        problems.raise_if_any()
    n = d.shape[0]
    problems.check(~(np.isfinite(d) & (d >= 0)).all(axis=1), "distance_km", "must be >= 0")
    rate = np.broadcast_to(np.asarray(per_km_per_kwh, dtype=np.float64), (n,))
    non_pv = np.broadcast_to(np.asarray(non_pv_per_kwh, dtype=np.float64), (n,))
    for name, arr in (("per_km_per_kwh", rate), ("non_pv_per_kwh", non_pv)):
        problems.check(~(np.isfinite(arr) & (arr >= 0)), name, "must be finite and >= 0")
    origin = np.zeros(n, dtype=bool) if pv_origin is None else np.asarray(pv_origin)
    if origin.shape != (n,) or origin.dtype != np.bool_:
        problems.add("pv_origin", f"must be ({n},) booleans, got {origin.shape} {origin.dtype}")
    problems.raise_if_any()
    c = rate[:, None] * d + non_pv[:, None] * (~origin)[None, :]
    np.fill_diagonal(c, 0.0)
    return np.asarray(c, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class BilateralResult:
    """The outcome of the RCI iteration.

    Attributes
    ----------
    trades_kw : (N, N) float
        ``x[n, m]``, n's trade with m (positive: n buys), as agent n last proposed it.
    agreed_trades_kw : (N, N) float
        The pair's midpoint ``(x[n, m] − x[m, n]) / 2``: reciprocal by construction.
    prices_per_kwh : (N, N) float
        ``λ[n, m]``, the price of the pair's trade (symmetric; 0 for non-partners).
    power_kw : (N,) float
        Every agent's net power from the agreed trades.
    converged : bool
        Both residuals within the stopping rule's tolerance.
    rounds : int
        Rounds run.
    primal_residual_kw, dual_residual_kw, cost_per_h : (rounds,) float
        Per round: the reciprocity gap, the change of the agreed trades, the objective of the
        agreed trades.
    ids : (N,) str
        Agent ids.

    """

    trades_kw: FloatArray
    agreed_trades_kw: FloatArray
    prices_per_kwh: FloatArray
    power_kw: FloatArray
    converged: bool
    rounds: int
    primal_residual_kw: FloatArray
    dual_residual_kw: FloatArray
    cost_per_h: FloatArray
    ids: StrArray


@dataclass(frozen=True, eq=False)
class BilateralOptimum:
    """The centralized MBED solution (cvxpy, Clarabel).

    ``prices_per_kwh`` are the reciprocity constraints' duals (the pair prices), ``solve_time_s``
    Clarabel's own time.
    """

    trades_kw: FloatArray
    prices_per_kwh: FloatArray
    power_kw: FloatArray
    cost_per_h: float
    solver: str
    solve_time_s: float


def relaxed_consensus_innovation(
    market: BilateralMarket,
    *,
    rho_per_kw: float,
    rule: StoppingRule | None = None,
    initial_price_per_kwh: float = 0.0,
) -> BilateralResult:
    """Run Sorin et al.'s relaxed consensus + innovation algorithm until the rule stops it.

    Parameters
    ----------
    market : BilateralMarket
        Agents, bounds, preferences, partners.
    rho_per_kw : float
        The penalty ``ρ`` (currency/kWh per kW). Any ``ρ > 0`` converges; it sets the speed
        (of the order of the agents' ``a`` is a good start).
    rule : StoppingRule, optional
        Tolerance on both residuals (kW) and the round limit (default ``StoppingRule()``).
    initial_price_per_kwh : float
        Every pair's first price ``λ⁰`` (the trades start at 0).

    Returns
    -------
    BilateralResult
        ``converged=False`` when the round limit ended the run.

    Raises
    ------
    ValidationError
        A bad ``rho_per_kw`` or initial price.

    """
    problems = Problems(subject="relaxed consensus + innovation")
    if not is_real(rho_per_kw) or not float(rho_per_kw) > 0:
        problems.add("rho_per_kw", f"must be a finite number > 0, got {rho_per_kw!r}")
    if not is_real(initial_price_per_kwh):
        problems.add("initial_price_per_kwh", f"must be finite, got {initial_price_per_kwh!r}")
    if not isinstance(market, BilateralMarket):
        problems.add(  # type: ignore[unreachable]
            "market", f"must be a BilateralMarket, got {type(market).__name__}"
        )
    problems.raise_if_any()
    rule = rule or StoppingRule()
    rho = float(rho_per_kw)
    n = market.n_agents
    lo, hi = market.trade_bounds_kw()
    solver = _LocalProblems(market, rho, lo, hi)
    x = np.zeros((n, n))
    z = np.zeros((n, n))
    lam = np.where(market.partners, float(initial_price_per_kwh), 0.0)
    primal, dual, cost = [], [], []
    converged = False
    for k in range(1, int(rule.max_rounds) + 1):
        x = solver.solve(z, lam)
        lam = lam + 0.5 * rho * (x + x.T)
        z_new = 0.5 * (x - x.T)
        primal.append(float(np.abs(x + x.T).max(initial=0.0)))
        dual.append(float(np.abs(z_new - z).max(initial=0.0)))
        z = z_new
        cost.append(market.cost_per_h(z))
        if rule.met(k, primal[-1], dual[-1]):
            converged = True
            break
    lam = np.where(market.partners, lam, 0.0)
    return BilateralResult(
        trades_kw=_ro(x),
        agreed_trades_kw=_ro(z),
        prices_per_kwh=_ro(lam),
        power_kw=_ro(z.sum(axis=1)),
        converged=converged,
        rounds=len(cost),
        primal_residual_kw=_ro(np.asarray(primal)),
        dual_residual_kw=_ro(np.asarray(dual)),
        cost_per_h=_ro(np.asarray(cost)),
        ids=market.ids,
    )


class _LocalProblems:
    """Every agent's RCI step, solved exactly and all at once.

    For agent n with marginal value ``π``, trade m is ``clip(soft(u_m, t_m), lo_m, hi_m)`` with
    ``u_m = z_m + (π − λ_m) / ρ`` and ``t_m = c_m / ρ``: piecewise linear in ``π`` with slope
    ``1/ρ`` on ``[lo − t, −t]`` and ``[t, hi + t]`` (in ``u``) and flat elsewhere. The agent's
    optimum is the ``π`` where ``Σ_m x_m(π) = clip((β − π) / a, P_min, P_max)`` (the net power
    its own cost asks for at that marginal value): the difference is non-decreasing and piecewise
    linear, so its root is found exactly between two sorted breakpoints.
    """

    def __init__(self, market: BilateralMarket, rho: float, lo: FloatArray, hi: FloatArray) -> None:
        self.rho = rho
        self.lo, self.hi = lo, hi
        self.t = market.differentiation_per_kwh / rho
        self.a = market.cost_quadratic_per_kw2h
        self.beta = market.marginal_value_per_kwh
        self.p_min, self.p_max = market.power_min_kw, market.power_max_kw
        n = market.n_agents
        # the breakpoints' offsets in u and their slope changes (per unit of π: 1/ρ), fixed
        t = self.t
        self.u_offsets = np.concatenate([lo - t, -t, t, hi + t], axis=1)  # (N, 4N)
        self.u_slopes = np.concatenate(
            [np.ones((n, n)), -np.ones((n, n)), np.ones((n, n)), -np.ones((n, n))], axis=1
        ) * np.where(np.tile(market.partners, 4), 1.0 / rho, 0.0)
        # the own-cost breakpoints: φ's slope rises by 1/a where the clip starts to move
        self.own_at = np.stack(
            [self.beta - self.a * self.p_max, self.beta - self.a * self.p_min], 1
        )
        self.own_slopes = np.stack([1.0 / self.a, -1.0 / self.a], axis=1)

    def trades(self, pi: FloatArray, z: FloatArray, lam: FloatArray) -> FloatArray:
        u = z + (pi[:, None] - lam) / self.rho
        soft = np.sign(u) * np.maximum(np.abs(u) - self.t, 0.0)
        return np.asarray(np.clip(soft, self.lo, self.hi), dtype=np.float64)

    def solve(self, z: FloatArray, lam: FloatArray) -> FloatArray:
        n = z.shape[0]
        if n == 0:
            return np.zeros((0, 0))
        # u = z + (π − λ)/ρ reaches offset o at π = λ + ρ (o − z)
        shift = np.tile(lam - self.rho * z, 4)
        at = np.concatenate([shift + self.rho * self.u_offsets, self.own_at], axis=1)
        slope = np.concatenate([self.u_slopes, self.own_slopes], axis=1)
        order = np.argsort(at, axis=1, kind="stable")
        at = np.take_along_axis(at, order, axis=1)
        slope = np.take_along_axis(slope, order, axis=1)
        # φ(π) = Σ x(π) − clip((β − π)/a, P_min, P_max); below every breakpoint it is Σ lo − P_max
        phi0 = self.lo.sum(axis=1) - self.p_max
        after = np.cumsum(slope, axis=1)  # slope of φ after each breakpoint
        steps = np.diff(at, axis=1) * after[:, :-1]
        phi = phi0[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(steps, axis=1)], axis=1)
        # first breakpoint where φ >= 0; the root lies between it and the one before
        j = np.argmax(phi >= 0.0, axis=1)
        rows = np.arange(n)
        j_prev = np.maximum(j - 1, 0)
        p0, p1 = at[rows, j_prev], at[rows, j]
        f0, f1 = phi[rows, j_prev], phi[rows, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(f1 > f0, -f0 / (f1 - f0), 1.0)
        pi = np.where(j == 0, p1, p0 + np.clip(frac, 0.0, 1.0) * (p1 - p0))
        return self.trades(pi, z, lam)


def centralized_bilateral(market: BilateralMarket) -> BilateralOptimum:
    """The MBED problem in one cvxpy problem, solved by Clarabel (the reference for RCI).

    One variable per ordered partner pair, the reciprocity constraints explicit (their duals are
    the pair prices), ``|x|`` through cvxpy's ``abs``.

    Raises
    ------
    RuntimeError
        Clarabel does not solve it.

    """
    n = market.n_agents
    rows, cols = np.nonzero(market.partners)
    lo, hi = market.trade_bounds_kw()
    e = rows.size
    x = cp.Variable(e)
    # P = S x, S[n, k] = 1 when pair k is n's
    s = np.zeros((n, e))
    s[rows, np.arange(e)] = 1.0
    position = {(int(r), int(c)): k for k, (r, c) in enumerate(zip(rows, cols, strict=True))}
    reverse = np.array([position[(int(c), int(r))] for r, c in zip(rows, cols, strict=True)])
    first = np.flatnonzero(rows < cols)
    p = s @ x
    a, beta = market.cost_quadratic_per_kw2h, market.marginal_value_per_kwh
    c = market.differentiation_per_kwh[rows, cols]
    objective = 0.5 * cp.sum(cp.multiply(a, cp.square(p))) - beta @ p + c @ cp.abs(x)
    reciprocity = x[first] + x[reverse[first]] == 0
    constraints = [
        reciprocity,
        x >= lo[rows, cols],
        x <= hi[rows, cols],
        p >= market.power_min_kw,
        p <= market.power_max_kw,
    ]
    problem = cp.Problem(cp.Minimize(objective), constraints)
    start = time.perf_counter()
    problem.solve(solver=cp.CLARABEL)
    wall = time.perf_counter() - start
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        raise RuntimeError(f"Clarabel did not solve the bilateral market: {problem.status}")
    trades = np.zeros((n, n))
    trades[rows, cols] = np.asarray(x.value, dtype=np.float64)
    trades = 0.5 * (trades - trades.T)  # reciprocal to the solver's precision, exactly so here
    prices = np.zeros((n, n))
    dual = np.asarray(reciprocity.dual_value, dtype=np.float64).ravel()
    prices[rows[first], cols[first]] = dual
    prices[cols[first], rows[first]] = dual
    stats = problem.solver_stats
    solve_time = stats.solve_time if stats is not None and stats.solve_time is not None else wall
    return BilateralOptimum(
        trades_kw=_ro(trades),
        prices_per_kwh=_ro(prices),
        power_kw=_ro(trades.sum(axis=1)),
        cost_per_h=market.cost_per_h(trades),
        solver=f"CLARABEL ({problem.status})",
        solve_time_s=float(solve_time),
    )


def _floats(
    value: object, shape: tuple[int, ...], name: str, problems: Problems
) -> FloatArray | None:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add(name, "must be numbers")
        return None
    if arr.shape != shape:
        problems.add(name, f"must have shape {shape}, got {arr.shape}")
        return None
    return arr


def _ro(a: npt.NDArray[np.float64]) -> FloatArray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a
