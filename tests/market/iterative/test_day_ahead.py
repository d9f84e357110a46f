"""The day-ahead market with flexible demand: centralized reference, dual decomposition, ADMM.

Every iterative result is checked against the same market solved in one cvxpy problem
(Clarabel). Tolerances (justified where they are used):

- the stopping tolerance of the optimality tests is 1e-6 on the relative residuals. Both
  methods converge linearly on this problem (measured: about 240 rounds for either), so the
  distance to the optimum is of the order of the residuals: prices are asked to be within 1e-3
  of the highest clearing price (measured: 4e-5 for the dual decomposition, 4e-6 for ADMM) and
  the cost, which is stationary at the optimum, within a relative 1e-6 above it (measured:
  below 1e-9). The cost reported is that of a feasible dispatch, so it may fall below Clarabel's
  optimum only by the solver's own accuracy (1e-8 relative by default): we allow 1e-7;
- the dual decomposition is not a plain subgradient method here: with the remedy its
  iterations are Condat's primal-dual splitting, whose convergence is linear in practice on
  this problem, which is why the same tolerance fits both methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.devices.base import Horizon
from transactive.devices.ev import EVPopulation
from transactive.devices.flexibility import solve_best_response
from transactive.errors import ValidationError
from transactive.market.iterative import (
    CentralizedOptimum,
    CommsFaults,
    EvFleet,
    IterativeResult,
    StepSizeWarning,
    StoppingRule,
    relative_gap,
)
from transactive.market.iterative.admm import admm_exchange
from transactive.market.iterative.day_ahead import (
    DayAheadProblem,
    centralized_day_ahead,
    least_cost_dispatch,
)
from transactive.market.iterative.dual_decomposition import dual_decomposition, water_filling
from transactive.weather import WeatherSample

Method = Callable[..., IterativeResult]
TIGHT = StoppingRule(tolerance=1e-6, max_rounds=3000)
N_GEN = 5
N_EV = 40


def _market(n_ev: int = N_EV, n_gen: int = N_GEN, seed: int = 1) -> DayAheadProblem:
    """Evening-arriving EVs over a noon-to-noon day with an evening peak of fixed demand."""
    rng = np.random.default_rng(seed)
    pop = EVPopulation.sample(n_ev, rng)
    horizon = Horizon(12 * 3600, 3600, 24)
    flex = pop.flexibility(horizon, [WeatherSample(temperature_c=15.0)] * 24)
    hours = (12 + np.arange(24)) % 24
    shape = (
        0.55
        + 0.2 * np.cos((hours - 14) / 24 * 2 * np.pi)
        + 0.3 * np.exp(-0.5 * ((hours - 19) / 2.0) ** 2)
    )
    demand = 4.0 * pop.energy_needed_kwh.sum() / 0.9 / 24 * shape
    peak = demand.max() + 0.3 * flex.power_max_kw.sum(axis=1).max()
    caps = np.linspace(1.0, 2.0, n_gen)
    caps = caps / caps.sum() * 1.3 * peak
    return DayAheadProblem.from_flexibility(
        flex,
        inflexible_demand_kw=demand,
        cost_linear_per_kwh=np.linspace(0.03, 0.12, n_gen),
        cost_quadratic_per_kwh_per_kw=0.15 / caps * np.linspace(1.0, 2.0, n_gen),
        power_min_kw=0.1 * caps,
        power_max_kw=caps,
    )


@pytest.fixture(scope="module")
def market() -> DayAheadProblem:
    return _market()


@pytest.fixture(scope="module")
def optimum(market: DayAheadProblem) -> CentralizedOptimum:
    return centralized_day_ahead(market)


def _tiny(
    demand: list[float],
    rate: list[list[float]],
    energy: list[float],
    *,
    p_min: float = 0.0,
    p_max: float = 10.0,
) -> DayAheadProblem:
    n = len(energy)
    fleet = EvFleet(
        ids=np.asarray([f"ev-{i}" for i in range(n)]),
        rate_max_kw=np.asarray(rate, dtype=float).reshape(len(demand), n),
        energy_kwh=np.asarray(energy, dtype=float),
        period_h=1.0,
    )
    return DayAheadProblem(
        period_h=1.0,
        inflexible_demand_kw=np.asarray(demand, dtype=float),
        cost_linear_per_kwh=np.array([0.05, 0.08]),
        cost_quadratic_per_kwh_per_kw=np.array([0.01, 0.02]),
        power_min_kw=np.array([p_min, p_min]),
        power_max_kw=np.array([p_max, p_max]),
        fleet=fleet,
    )


# ---------------------------------------------------------------------- the centralized reference


def test_centralized_prices_are_marginal_costs(
    market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    """The balance duals are each period's marginal cost, positive, in currency/kWh."""
    g_n = market.n_generators
    gen = -optimum.schedules_kw[:, :g_n]
    flex = optimum.schedules_kw[:, g_n:]
    a, b = market.cost_linear_per_kwh, market.cost_quadratic_per_kwh_per_kw
    interior = (gen > market.power_min_kw + 1e-3) & (gen < market.power_max_kw - 1e-3)
    assert interior.any()
    marginal = a + b * gen
    assert optimum.prices is not None
    np.testing.assert_allclose(
        marginal[interior], np.broadcast_to(optimum.prices[:, None], gen.shape)[interior], rtol=1e-5
    )
    assert (optimum.prices > 0).all()
    # the schedule is feasible: balance, rate boxes, energy needs
    np.testing.assert_allclose(
        gen.sum(axis=1), market.inflexible_demand_kw + flex.sum(axis=1), rtol=1e-7, atol=1e-6
    )
    assert (flex >= -1e-7).all() and (flex <= market.fleet.rate_max_kw + 1e-7).all()
    np.testing.assert_allclose(
        flex.sum(axis=0) * market.period_h, market.fleet.energy_kwh, atol=1e-6
    )
    np.testing.assert_allclose(market.generation_cost(gen), optimum.objective, rtol=1e-7)


def test_least_cost_dispatch_matches_the_optimum(
    market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    """Given the optimal flexible schedule, the exact dispatch is the optimum's dispatch."""
    g_n = market.n_generators
    dispatch = least_cost_dispatch(market, optimum.schedules_kw[:, g_n:])
    np.testing.assert_allclose(dispatch.cost, optimum.objective, rtol=1e-7)
    assert optimum.prices is not None
    np.testing.assert_allclose(dispatch.prices_per_kwh, optimum.prices, rtol=1e-5)
    assert not dispatch.unserved_kw.any()


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 0.2),  # a
            st.floats(1e-3, 0.1),  # b
            st.floats(0.1, 5.0),  # g_min (> 0: some demand to serve)
            st.floats(0.1, 20.0),  # g_max - g_min
        ),
        min_size=1,
        max_size=6,
    ),
    st.floats(0.0, 1.0),
)
def test_least_cost_dispatch_meets_the_kkt_conditions(
    gens: list[tuple[float, float, float, float]], share: float
) -> None:
    """Balance, and equal marginal cost except at the limits (the dispatch's KKT conditions)."""
    a, b, lo, width = (np.array(v) for v in zip(*gens, strict=True))
    hi = lo + width
    load = lo.sum() + share * (hi.sum() - lo.sum())
    fleet = EvFleet(np.asarray(["ev-0"]), np.zeros((2, 1)), np.zeros(1), 1.0)
    problem = DayAheadProblem(
        period_h=1.0,
        inflexible_demand_kw=np.array([load, lo.sum()]),
        cost_linear_per_kwh=a,
        cost_quadratic_per_kwh_per_kw=b,
        power_min_kw=lo,
        power_max_kw=hi,
        fleet=fleet,
    )
    d = least_cost_dispatch(problem, np.zeros((2, 1)))
    g, lam = d.generation_kw, d.prices_per_kwh
    np.testing.assert_allclose(g.sum(axis=1), problem.inflexible_demand_kw, rtol=1e-9, atol=1e-9)
    marginal = a + b * g
    tol = 1e-9 * (1.0 + np.abs(marginal))
    inner = (g > lo + 1e-9) & (g < hi - 1e-9)
    assert np.all(np.abs(marginal - lam[:, None])[inner] <= tol[inner])
    at_min = g <= lo + 1e-9
    assert np.all((marginal >= lam[:, None] - tol)[at_min & ~inner])
    at_max = g >= hi - 1e-9
    assert np.all((marginal <= lam[:, None] + tol)[at_max & ~inner])


def test_least_cost_dispatch_of_an_unservable_schedule_costs_infinity(
    market: DayAheadProblem,
) -> None:
    everything = np.broadcast_to(
        market.fleet.rate_max_kw.max(axis=0), market.fleet.rate_max_kw.shape
    )
    d = least_cost_dispatch(market, market.fleet.rate_max_kw * 50.0 + everything)
    assert d.cost == np.inf
    assert (d.unserved_kw > 0).any()


def test_water_filling_is_the_loads_cheapest_schedule(market: DayAheadProblem) -> None:
    """The plain price response equals HiGHS's best response of the EVs' flexibility."""
    rng = np.random.default_rng(4)
    pop = EVPopulation.sample(12, rng)
    horizon = Horizon(12 * 3600, 3600, 24)
    flex = pop.flexibility(horizon, [WeatherSample(temperature_c=15.0)] * 24)
    fleet = EvFleet.from_flexibility(flex)
    prices = rng.uniform(0.05, 0.3, 24)
    ours = water_filling(fleet, prices)
    reference = solve_best_response(flex, prices)
    np.testing.assert_allclose(
        (ours * prices[:, None]).sum(axis=0), reference.cost / horizon.period_h, rtol=1e-7
    )
    # per-load prices (T, N) give the same answer column by column
    per_load = np.repeat(prices[:, None], fleet.n_evs, axis=1)
    np.testing.assert_allclose(water_filling(fleet, per_load), ours)
    assert (ours >= 0).all() and (ours <= fleet.rate_max_kw + 1e-12).all()
    np.testing.assert_allclose(ours.sum(axis=0) * fleet.period_h, fleet.energy_kwh, rtol=1e-12)


def test_projection_of_a_shifted_target_is_the_prox_of_a_linear_cost() -> None:
    """ADMM's load step: P(v - c / rho) = argmin c.r + rho/2 ||r - v||^2 over the set."""
    import cvxpy  # noqa: PLC0415

    cp: Any = cvxpy  # partial type information

    rng = np.random.default_rng(2)
    t_n, n, rho = 6, 4, 0.7
    rate = rng.uniform(0.0, 5.0, (t_n, n)) * (rng.random((t_n, n)) > 0.3)
    energy = 0.6 * rate.sum(axis=0)
    fleet = EvFleet(np.asarray([f"ev-{i}" for i in range(n)]), rate, energy, 1.0)
    v, c = rng.normal(0, 3, (t_n, n)), rng.uniform(0, 1, (t_n, n))
    r = cp.Variable((t_n, n))
    objective = cp.sum(cp.multiply(c, r)) + rho / 2 * cp.sum_squares(r - v)
    cp.Problem(cp.Minimize(objective), [r >= 0, r <= rate, cp.sum(r, axis=0) == energy]).solve(
        solver=cp.CLARABEL
    )
    np.testing.assert_allclose(fleet.project(v - c / rho), r.value, atol=1e-6)


# ---------------------------------------------------------------------- both methods reach it


@pytest.mark.parametrize("method", [dual_decomposition, admm_exchange])
def test_methods_reach_the_centralized_optimum(
    method: Method, market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    res = method(market, rule=TIGHT)
    assert res.converged and res.stop_reason == "tolerance"
    gap = relative_gap(res.objective[-1], optimum)
    assert -1e-7 <= gap <= 1e-6, gap
    assert optimum.prices is not None
    assert np.abs(res.prices - optimum.prices).max() <= 1e-3 * optimum.prices.max()
    # the held schedules balance and keep every agent's limits
    g_n = market.n_generators
    gen, flex = -res.schedules_kw[:, :g_n], res.schedules_kw[:, g_n:]
    assert (gen >= market.power_min_kw - 1e-9).all() and (gen <= market.power_max_kw + 1e-9).all()
    np.testing.assert_allclose(flex.sum(axis=0), market.fleet.energy_kwh, rtol=1e-9)
    mismatch = market.inflexible_demand_kw + flex.sum(axis=1) - gen.sum(axis=1)
    assert np.linalg.norm(mismatch) <= 1e-6 * market.demand_scale_kw
    # the optimal flexible schedule of each load is not unique; the total per period is (the
    # generation is, by strict convexity, and the balance fixes the rest)
    np.testing.assert_allclose(
        flex.sum(axis=1),
        optimum.schedules_kw[:, g_n:].sum(axis=1),
        atol=1e-3 * optimum.schedules_kw[:, g_n:].sum(axis=1).max(),
    )
    assert list(res.ids) == list(market.ids)
    # perfect communication: one schedule up per round and at registration; one broadcast down
    # per round (the dual decomposition posts before the agents answer, ADMM after)
    broadcasts = res.n_rounds + 1 if method is dual_decomposition else res.n_rounds
    assert res.messages_per_agent == (res.n_rounds + 1) + broadcasts


def test_dual_bound_never_exceeds_the_optimum(
    market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    """Weak duality: every round's Lagrangian value is a lower bound, tight at the end."""
    res = dual_decomposition(market, rule=TIGHT)
    bound = res.extra["dual_bound"]
    assert bound.shape == (res.n_rounds,)
    assert (bound <= optimum.objective * (1 + 1e-8)).all()
    assert relative_gap(bound[-1], optimum) >= -1e-5
    # the recorded objective is a feasible dispatch: never below the optimum (solver accuracy)
    finite = np.isfinite(res.objective)
    assert (res.objective[finite] >= optimum.objective * (1 - 1e-7)).all()


def test_diminishing_steps_also_converge(
    market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    res = dual_decomposition(
        market, step_rule="diminishing", rule=StoppingRule(tolerance=1e-4, max_rounds=3000)
    )
    assert res.converged
    assert relative_gap(res.objective[-1], optimum) <= 1e-4
    constant = dual_decomposition(market, rule=StoppingRule(tolerance=1e-4, max_rounds=3000))
    assert constant.n_rounds < res.n_rounds  # alpha / sqrt(k) only slows the remedy down


# ---------------------------------------------------------------------- the concentrated shift


def test_plain_price_response_concentrates_flexible_demand(
    market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    """Without the remedy the fleet jumps, whole, into the cheapest period; with it, it does not.

    The plain run never balances (Papadaskalopoulos and Strbac, Part I: the non-convexity of the
    reschedulable demand's price response), with either step rule; its prices still approach the
    optimal ones under diminishing steps (the dual converges, the primal does not).
    """
    g_n = market.n_generators
    optimal_flex = optimum.schedules_kw[:, g_n:].sum(axis=1)
    assert optimum.prices is not None
    for step_rule in ("constant", "diminishing"):
        plain = dual_decomposition(
            market, remedy=False, step_rule=step_rule, rule=StoppingRule(max_rounds=300)
        )
        assert not plain.converged and plain.stop_reason == "max_rounds"
        total = plain.extra["flexible_kw_per_period"]  # (K, T)
        late = total[-50:]
        # concentrated: every late round puts at least three times the optimal peak (and
        # typically six) in one period
        assert (late.max(axis=1) >= 3.0 * optimal_flex.max()).all()
        assert np.median(late.max(axis=1)) >= 5.0 * optimal_flex.max()
        # and the period that takes it moves from round to round: oscillation
        assert len(set(late.argmax(axis=1).tolist())) >= 4
        assert plain.primal_residual[-100:].min() > 0.1
        # the concentrated schedules mostly cannot even be served by the generators
        assert np.isinf(plain.objective[-100:]).mean() > 0.5
    # the same rule with diminishing steps: the prices settle, the schedules do not
    assert np.abs(plain.prices - optimum.prices).max() <= 0.1 * optimum.prices.max()

    remedied = dual_decomposition(market, rule=TIGHT)
    flex_rounds = remedied.extra["flexible_kw_per_period"]
    assert flex_rounds.max() <= 1.5 * optimal_flex.max()  # never concentrated, in any round
    assert remedied.converged


def test_plain_response_goes_to_the_cheapest_plugged_periods(market: DayAheadProblem) -> None:
    """Each load's plain answer fills its cheapest plugged periods first (the concentration)."""
    prices = np.linspace(0.2, 0.1, market.n_periods)  # later is cheaper
    r = water_filling(market.fleet, prices)
    rbar = market.fleet.rate_max_kw
    for n in range(0, market.n_flexible, 7):
        used = np.flatnonzero(r[:, n] > 1e-12)
        if used.size:
            # every plugged period cheaper than the dearest one used is full
            cheaper = (prices < prices[used].max()) & (rbar[:, n] > 0)
            np.testing.assert_allclose(r[cheaper, n], rbar[cheaper, n])


# ---------------------------------------------------------------------- imperfect communication


@pytest.mark.parametrize("method", [dual_decomposition, admm_exchange])
@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_message_loss_degrades_gracefully(
    method: Method, loss: float, market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    """Under 10 % and 30 % message loss both methods still converge to the same optimum.

    Claim (measured over five seeds: dual decomposition 244 rounds without loss, 225-243 at
    10 %, 238-299 at 30 %; ADMM 236, 232-233, 221-230): still converged, within twice the
    loss-free rounds, to the same gap and prices as without loss.
    """
    clean = method(market, rule=TIGHT)
    lossy = method(market, rule=TIGHT, faults=CommsFaults(loss_probability=loss, seed=11))
    assert lossy.converged
    assert lossy.n_rounds <= 2 * clean.n_rounds
    gap = relative_gap(lossy.objective[-1], optimum)
    assert -1e-7 <= gap <= 1e-6
    assert optimum.prices is not None
    assert np.abs(lossy.prices - optimum.prices).max() <= 1e-3 * optimum.prices.max()
    assert lossy.faults.loss_probability == loss
    # every agent still sends (and is sent) one message a round: loss costs rounds, not a
    # different protocol
    broadcasts = lossy.n_rounds + 1 if method is dual_decomposition else lossy.n_rounds
    assert lossy.messages_per_agent == (lossy.n_rounds + 1) + broadcasts


@pytest.mark.parametrize(("method", "delay"), [(dual_decomposition, 1), (admm_exchange, 2)])
def test_price_delays_the_docstrings_claim_are_tolerated(
    method: Method, delay: int, market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    res = method(market, rule=TIGHT, faults=CommsFaults(max_delay_rounds=delay, seed=0))
    assert res.converged
    assert -1e-7 <= relative_gap(res.objective[-1], optimum) <= 1e-6


def test_residual_balancing_adapts_rho_then_holds_it(
    market: DayAheadProblem, optimum: CentralizedOptimum
) -> None:
    """Boyd's §3.4.1 option: rho moves by factors of 2 in the first rounds only, prices kept."""
    res = admm_exchange(
        market,
        rho=1.0,
        residual_balancing=True,
        balancing_rounds=100,
        rule=StoppingRule(tolerance=1e-4, max_rounds=3000),
    )
    assert res.converged
    assert 0.0 <= relative_gap(res.objective[-1], optimum) <= 1e-4
    rho = res.extra["rho"]
    assert rho[0] == 1.0 and len(set(rho[:101].tolist())) > 1
    assert (rho[101:] == rho[100]).all()
    steps = rho[1:] / rho[:-1]
    assert np.isin(steps, [0.5, 1.0, 2.0]).all()
    # the same with lost messages, where generators use the rho of the broadcast they hold
    lossy = admm_exchange(
        market,
        rho=1.0,
        residual_balancing=True,
        rule=StoppingRule(tolerance=1e-3, max_rounds=3000),
        faults=CommsFaults(loss_probability=0.1, seed=1),
    )
    assert lossy.converged
    assert relative_gap(lossy.objective[-1], optimum) <= 1e-3


def test_a_market_without_flexible_loads(market: DayAheadProblem) -> None:
    """With no fleet both methods reduce to an economic dispatch per period."""
    empty = EvFleet(np.empty(0, dtype=np.str_), np.zeros((24, 0)), np.zeros(0), 1.0)
    problem = DayAheadProblem(**{**market.__dict__, "fleet": empty})
    opt = centralized_day_ahead(problem)
    assert opt.prices is not None
    for method in (dual_decomposition, admm_exchange):
        res = method(problem, rule=TIGHT)
        assert res.converged and res.schedules_kw.shape == (24, N_GEN)
        assert abs(relative_gap(res.objective[-1], opt)) <= 1e-7
        assert np.abs(res.prices - opt.prices).max() <= 1e-3 * opt.prices.max()


# ---------------------------------------------------------------------- refused input


def test_bad_steps_are_refused(market: DayAheadProblem) -> None:
    with pytest.raises(ValidationError, match="step"):
        dual_decomposition(market, step=-0.1)
    with pytest.raises(ValidationError, match="step"):
        dual_decomposition(market, step=0.0, remedy=False)
    with pytest.raises(ValidationError, match="response_step"):
        dual_decomposition(market, response_step=-1.0)
    with pytest.raises(ValidationError, match="step_rule"):
        dual_decomposition(market, step_rule="harmonic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="initial_prices_per_kwh"):
        dual_decomposition(market, initial_prices_per_kwh=np.zeros(3))
    with pytest.raises(ValidationError, match="rho"):
        admm_exchange(market, rho=0.0)
    with pytest.raises(ValidationError, match="rho"):
        admm_exchange(market, rho=-2.0)
    with pytest.raises(ValidationError, match="balancing_rounds"):
        admm_exchange(market, residual_balancing=True, balancing_rounds=0)


def test_a_step_beyond_the_proven_bound_is_warned_about(market: DayAheadProblem) -> None:
    beta = float(np.sum(1.0 / market.cost_quadratic_per_kwh_per_kw))
    bound = 1.0 / (0.5 * beta + beta)  # default response step beta / N
    with pytest.warns(StepSizeWarning, match="Condat"):
        res = dual_decomposition(market, step=1.5 * bound, rule=StoppingRule(max_rounds=5))
    assert res.n_rounds == 5
    res = dual_decomposition(market, step=0.99 * bound, rule=StoppingRule(max_rounds=5))
    assert res.extra["alpha"][0] == pytest.approx(0.99 * bound)


def test_generator_limits_and_costs_are_checked() -> None:
    good = _tiny([4.0, 4.0], [[1.0], [1.0]], [1.0])
    fields = {
        "power_min_kw": np.array([3.0, 0.0]),
        "power_max_kw": np.array([2.0, 10.0]),
    }
    with pytest.raises(ValidationError) as err:
        DayAheadProblem(**{**good.__dict__, **fields, "generator_ids": None})
    assert any(
        p.field == "power_min_kw" and "g_min > g_max" in p.reason and p.index == ("generator-0",)
        for p in err.value.problems
    )
    with pytest.raises(ValidationError) as err:
        DayAheadProblem(
            **{
                **good.__dict__,
                "cost_quadratic_per_kwh_per_kw": np.array([0.0, np.nan]),
                "generator_ids": None,
            }
        )
    reasons = {(p.field, p.reason) for p in err.value.problems}
    assert ("cost_quadratic_per_kwh_per_kw", "not finite") in reasons
    with pytest.raises(ValidationError, match="shape"):
        DayAheadProblem(
            **{**good.__dict__, "power_max_kw": np.array([1.0, 2.0, 3.0]), "generator_ids": None}
        )
    with pytest.raises(ValidationError, match="cost_linear_per_kwh: must be an array of numbers"):
        DayAheadProblem(**{**good.__dict__, "cost_linear_per_kwh": "cheap", "generator_ids": None})
    with pytest.raises(ValidationError, match="also a flexible load"):
        DayAheadProblem(**{**good.__dict__, "generator_ids": np.array(["ev-0", "g"])})


def test_demand_beyond_capacity_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        _tiny([25.0, 4.0], [[1.0], [1.0]], [1.0])  # 25 kW against 2 x 10 kW
    problem = err.value.problems[0]
    assert problem.field == "inflexible_demand_kw" and problem.index == (0,)
    assert "exceeds the total generation capacity" in problem.reason
    # the inflexible demand fits, but not with the flexible energy on top of it
    with pytest.raises(ValidationError, match="exceeds what the capacity left"):
        _tiny([19.0, 19.0], [[5.0], [5.0]], [8.0])
    # minimum output the demand cannot absorb
    with pytest.raises(ValidationError, match="minimum output"):
        _tiny([1.0, 1.0], [[1.0], [1.0]], [1.0], p_min=3.0)


def test_infeasible_energy_needs_are_refused() -> None:
    with pytest.raises(ValidationError, match="infeasible energy need"):
        _tiny([4.0, 4.0], [[1.0], [0.0]], [2.0])  # 2 kWh through a 1 kW, one-hour window


def test_an_infeasible_balance_the_quick_checks_miss_is_refused_by_the_reference() -> None:
    """Two EVs that can only charge in period 0, where 5 kW are left: 10 kW do not fit."""
    problem = _tiny(
        [15.0, 15.0, 15.0],
        [[5.0, 5.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.0]],
        [5.0, 5.0, 5.0],
    )
    with pytest.raises(ValidationError, match="infeasible balance"):
        centralized_day_ahead(problem)
    # the iterative methods do not pretend: they stop at the round limit, unconverged
    for method in (dual_decomposition, admm_exchange):
        res = method(problem, rule=StoppingRule(max_rounds=200))
        assert not res.converged and res.stop_reason == "max_rounds"


def test_problem_shapes_and_ids(market: DayAheadProblem) -> None:
    assert market.n_periods == 24
    assert market.n_generators == N_GEN
    assert market.n_flexible == N_EV
    assert market.ids.shape == (N_GEN + N_EV,)
    assert market.ids[0] == "generator-0"
    assert not market.inflexible_demand_kw.flags.writeable
    with pytest.raises(ValidationError, match="period_h"):
        DayAheadProblem(**{**market.__dict__, "period_h": 0.5})
