"""Incremental cost consensus (Zhang & Chow 2012) against published dispatches and cvxpy.

The published case is Wood & Wollenberg, *Power Generation, Operation, and Control* (2nd ed.,
1996), Examples 3A and 3B: three units with fuel curves ``H_i(P) = a + b P + c P^2`` (MBtu/h,
P in MW) and fuel costs 1.1 (unit 1, coal; 0.9 in Example 3B), 1.0 and 1.0 $/MBtu, limits
150-600, 100-400 and 50-200 MW, demand 850 MW. The book's optimum: Example 3A, lambda =
9.148 $/MWh at 393.2, 334.6 and 122.2 MW; Example 3B, unit 1 at its 600 MW limit and the others
at 187.1 and 62.9 MW (lambda = 8.576 $/MWh). Zhang & Chow's own test data could not be
retrieved, so this classic three-unit case (to which the ICC papers' examples are comparable)
stands in for it, in kW and $/kWh.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.errors import ValidationError
from transactive.market.iterative import CommsFaults, StepSizeWarning, StoppingRule, relative_gap
from transactive.market.iterative.consensus import (
    CommunicationGraph,
    DispatchProblem,
    StorageUnits,
    centralized_dispatch,
    dispatch_cost_per_h,
    epsilon_bound,
    incremental_cost_consensus,
)

TIGHT = StoppingRule(tolerance=1e-10, max_rounds=20_000)


def wood_wollenberg(
    graph: CommunicationGraph,
    *,
    coal_per_mbtu: float = 1.1,
    demand_mw: float = 850.0,
    leader: int = 0,
    storage: StorageUnits | None = None,
) -> DispatchProblem:
    fuel = np.array([coal_per_mbtu, 1.0, 1.0])
    a = np.array([510.0, 310.0, 78.0]) * fuel  # $/h
    b = np.array([7.2, 7.85, 7.97]) * fuel / 1e3  # $/MWh -> $/kWh
    c = np.array([0.00142, 0.00194, 0.00482]) * fuel / 1e6  # $/MW^2h -> $/kW^2h
    return DispatchProblem.build(
        cost_constant_per_h=a,
        cost_linear_per_kwh=b,
        cost_quadratic_per_kwh_per_kw=c,
        output_min_kw=np.array([150e3, 100e3, 50e3]),
        output_max_kw=np.array([600e3, 400e3, 200e3]),
        demand_kw=demand_mw * 1e3,
        graph=graph,
        leader=leader,
        storage=storage,
    )


def incremental_costs(problem: DispatchProblem, output_kw: np.ndarray) -> np.ndarray:
    lam: np.ndarray = (
        problem.cost_linear_per_kwh + 2 * problem.cost_quadratic_per_kwh_per_kw * output_kw
    )
    return lam


def assert_matches_centralized(problem: DispatchProblem, result, *, gap: float = 1e-6) -> None:
    opt = centralized_dispatch(problem)
    assert result.converged, (result.stop_reason, result.n_rounds)
    assert abs(relative_gap(result.objective[-1], opt)) < gap
    assert opt.prices is not None
    assert result.prices[0] == pytest.approx(opt.prices[0], rel=1e-6)
    np.testing.assert_allclose(
        result.schedules_kw, opt.schedules_kw, rtol=0, atol=1e-6 * problem.demand_kw
    )


# ---------------------------------------------------------------------------------- published


@pytest.mark.parametrize("topology", ["complete", "line"])
def test_wood_wollenberg_3a_reaches_the_published_dispatch_and_the_cvxpy_optimum(
    topology: str,
) -> None:
    graph = getattr(CommunicationGraph, topology)(3)
    problem = wood_wollenberg(graph, leader=2)
    result = incremental_cost_consensus(problem, rule=TIGHT)
    assert_matches_centralized(problem, result)
    # the book's figures, to their printed precision
    assert result.prices[0] * 1e3 == pytest.approx(9.148, abs=5e-4)
    np.testing.assert_allclose(result.extra["output_kw"] / 1e3, [393.2, 334.6, 122.2], atol=0.05)
    np.testing.assert_allclose(result.extra["lambda_per_kwh"], result.prices[0], rtol=1e-9)
    assert result.objective[-1] == pytest.approx(
        dispatch_cost_per_h(problem, -result.schedules_kw[0])
    )


def test_limits_binding_unit_at_its_limit_and_the_others_at_one_incremental_cost() -> None:
    problem = wood_wollenberg(CommunicationGraph.line(3), coal_per_mbtu=0.9)
    result = incremental_cost_consensus(problem, rule=TIGHT)
    assert_matches_centralized(problem, result)
    out = result.extra["output_kw"]
    np.testing.assert_allclose(out / 1e3, [600.0, 187.1, 62.9], atol=0.05)  # Example 3B
    assert out[0] == problem.output_max_kw[0]  # clipped exactly to the limit
    lam = incremental_costs(problem, out)
    assert lam[1] == pytest.approx(lam[2], rel=1e-8)  # the free units equalise
    assert lam[1] == pytest.approx(result.prices[0], rel=1e-8)
    assert lam[0] < result.prices[0]  # the unit at its maximum would run more if it could
    assert result.prices[0] * 1e3 == pytest.approx(8.576, abs=5e-4)
    # the limit makes only units 2 and 3 responsive at the optimum: their bound applies
    assert result.extra["epsilon_bound"][0] == pytest.approx(
        epsilon_bound(problem, responsive=[False, True, True])
    )


# ---------------------------------------------------------------------------------- random cases


@st.composite
def random_problem(draw: st.DrawFn) -> DispatchProblem:
    n = draw(st.integers(3, 9))
    kind = draw(st.sampled_from(["ring", "line", "random"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "random":
        graph = CommunicationGraph.random_connected(n, float(rng.uniform(0.0, 0.5)), seed)
    else:
        graph = getattr(CommunicationGraph, kind)(n)
    c = 10 ** rng.uniform(-4, -1, n)
    b = rng.uniform(0.02, 0.3, n)
    low = rng.uniform(0.0, 50.0, n)
    high = low + rng.uniform(1.0, 100.0, n)
    share = draw(st.floats(0.05, 0.95))
    return DispatchProblem(
        cost_constant_per_h=rng.uniform(0, 5, n),
        cost_linear_per_kwh=b,
        cost_quadratic_per_kwh_per_kw=c,
        output_min_kw=low,
        output_max_kw=high,
        demand_kw=float(low.sum() + share * (high - low).sum()),
        graph=graph,
        leader=draw(st.integers(0, n - 1)),
    )


@settings(max_examples=12, deadline=None, derandomize=True)
@given(random_problem())
def test_random_problems_reach_the_cvxpy_optimum(problem: DispatchProblem) -> None:
    result = incremental_cost_consensus(problem, rule=StoppingRule(1e-10, 30_000))
    assert_matches_centralized(problem, result)
    out = result.extra["output_kw"]
    assert (out >= problem.output_min_kw).all() and (out <= problem.output_max_kw).all()
    lam = incremental_costs(problem, out)
    free = (out > problem.output_min_kw + 1e-6) & (out < problem.output_max_kw - 1e-6)
    np.testing.assert_allclose(lam[free], result.prices[0], rtol=1e-6)
    at_max = out >= problem.output_max_kw - 1e-6
    at_min = out <= problem.output_min_kw + 1e-6
    assert (lam[at_max & ~free] <= result.prices[0] * (1 + 1e-6)).all()
    assert (lam[at_min & ~free] >= result.prices[0] * (1 - 1e-6)).all()


# ---------------------------------------------------------------------------------- storage


def battery() -> StorageUnits:
    """50 MW, 20 MWh stored of 0-100 MWh, 95 % each way, worth 8.8 $/MWh, cycling 0.002."""
    return StorageUnits(
        power_max_kw=np.array([50e3]),
        energy_kwh=np.array([20e3]),
        energy_min_kwh=np.array([0.0]),
        energy_max_kwh=np.array([100e3]),
        period_h=1.0,
        value_per_kwh=np.array([8.8e-3]),
        cycling_cost_per_kwh_per_kw=np.array([0.002e-6]),
        charge_efficiency=np.array([0.95]),
        discharge_efficiency=np.array([0.95]),
    )


def test_storage_limits_are_power_and_the_periods_energy() -> None:
    store = battery()
    assert store.output_max_kw[0] == pytest.approx(0.95 * 20e3)  # energy bound < 50 MW
    assert store.output_min_kw[0] == pytest.approx(-50e3)  # power bound < 80 MWh / 0.95


@pytest.mark.parametrize("demand_mw", [520.0, 700.0, 1000.0])
def test_storage_charges_below_its_value_and_discharges_above_it(demand_mw: float) -> None:
    store = battery()
    problem = wood_wollenberg(CommunicationGraph.ring(4), demand_mw=demand_mw, storage=store)
    assert problem.is_storage is not None and problem.is_storage.tolist() == [0, 0, 0, 1]
    result = incremental_cost_consensus(problem, rule=TIGHT)
    assert_matches_centralized(problem, result)
    p = result.extra["output_kw"][3]
    assert store.output_min_kw[0] <= p <= store.output_max_kw[0]
    price = result.prices[0]
    if price < store.value_per_kwh[0]:
        assert p < 0  # charging: consumption in the result's sign
        assert result.schedules_kw[0, 3] > 0
    else:
        assert p > 0
    if demand_mw == 1000.0:  # expensive hour: it empties what it holds
        assert p == pytest.approx(store.output_max_kw[0])
        end_kwh = store.energy_kwh[0] - p * store.period_h / store.discharge_efficiency[0]
        assert end_kwh == pytest.approx(store.energy_min_kwh[0], abs=1e-6)
    if demand_mw == 520.0:  # cheap hour: charges, inside its limits, at the common price
        assert store.output_min_kw[0] < p < 0
        assert incremental_costs(problem, result.extra["output_kw"])[3] == pytest.approx(price)


# ---------------------------------------------------------------------------------- topology


def spread_problem(graph: CommunicationGraph) -> DispatchProblem:
    """12 units, no limit binding at the optimum (so the speed is the consensus')."""
    n = graph.n_nodes
    rng = np.random.default_rng(7)
    c = rng.uniform(0.002, 0.01, n)
    b = rng.uniform(0.05, 0.15, n)
    lam = 0.2  # the optimum sits at about this price, far from every limit
    centre = (lam - b) / (2 * c)
    return DispatchProblem(
        cost_constant_per_h=np.zeros(n),
        cost_linear_per_kwh=b,
        cost_quadratic_per_kwh_per_kw=c,
        output_min_kw=centre * 0.2,
        output_max_kw=centre * 3.0,
        demand_kw=float(centre.sum()),
        graph=graph,
        leader=0,
    )


def test_topology_sets_the_speed_complete_then_ring_then_line() -> None:
    n = 12
    graphs = {
        "complete": CommunicationGraph.complete(n),
        "ring": CommunicationGraph.ring(n),
        "line": CommunicationGraph.line(n),
    }
    rounds = {}
    for name, graph in graphs.items():
        problem = spread_problem(graph)
        result = incremental_cost_consensus(problem, rule=StoppingRule(1e-8, 20_000))
        assert_matches_centralized(problem, result)
        rounds[name] = result.n_rounds
        # the consensus' own speed: the update matrix's second largest eigenvalue
        rounds[name + "_mu2"] = graph.update_eigenvalues()[-2]
    assert rounds["complete"] < rounds["ring"] < rounds["line"]
    assert rounds["complete_mu2"] < rounds["ring_mu2"] < rounds["line_mu2"] < 1.0


# ---------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_lost_messages_slow_the_consensus_but_it_still_reaches_the_optimum(loss: float) -> None:
    problem = spread_problem(CommunicationGraph.random_connected(12, 0.2, seed=3))
    rule = StoppingRule(1e-9, 20_000)
    perfect = incremental_cost_consensus(problem, rule=rule)
    for seed in (1, 2):
        lossy = incremental_cost_consensus(
            problem, rule=rule, faults=CommsFaults(loss_probability=loss, seed=seed)
        )
        assert_matches_centralized(problem, lossy)
        assert lossy.n_rounds > perfect.n_rounds
        assert lossy.faults.loss_probability == loss
    # every unit sends its lambda to every neighbour each round (lost or not), registration too
    e2 = 2 * problem.graph.n_edges
    assert perfect.extra["messages_per_unit"][0] == (perfect.n_rounds + 1) * e2 / 12


def test_delays_still_converge_at_the_default_epsilon() -> None:
    problem = spread_problem(CommunicationGraph.ring(12))
    rule = StoppingRule(1e-9, 20_000)
    perfect = incremental_cost_consensus(problem, rule=rule)
    delayed = incremental_cost_consensus(
        problem, rule=rule, faults=CommsFaults(loss_probability=0.1, max_delay_rounds=3, seed=4)
    )
    assert_matches_centralized(problem, delayed)
    assert delayed.n_rounds > perfect.n_rounds


def test_delays_break_an_epsilon_near_the_perfect_communication_bound() -> None:
    # The bound is for perfect communication: at 90 % of it, stale lambdas destabilise the ring.
    problem = spread_problem(CommunicationGraph.ring(12))
    eps = 0.9 * epsilon_bound(problem)
    rule = StoppingRule(1e-6, 3_000)
    assert incremental_cost_consensus(problem, epsilon=eps, rule=rule).converged
    for seed in (1, 2):
        delayed = incremental_cost_consensus(
            problem, epsilon=eps, rule=rule, faults=CommsFaults(max_delay_rounds=2, seed=seed)
        )
        assert not delayed.converged and delayed.stop_reason == "max_rounds"
        assert delayed.primal_residual[-1] > 1e-6


# ---------------------------------------------------------------------------------- the bound


def dense_radius(problem: DispatchProblem, eps: float, responsive: np.ndarray) -> float:
    m = problem.graph.update_matrix().toarray()
    m[problem.leader] -= eps * np.where(responsive, problem.slope_kw_per_price, 0.0)
    return float(np.abs(np.linalg.eigvals(m)).max())


@settings(max_examples=25, deadline=None, derandomize=True)
@given(random_problem(), st.integers(0, 2**16))
def test_epsilon_bound_is_where_the_spectral_radius_reaches_one(
    problem: DispatchProblem, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    responsive = rng.random(problem.n_units) < 0.6
    responsive[rng.integers(problem.n_units)] = True
    bound = epsilon_bound(problem, responsive=responsive)
    assert math.isfinite(bound) and bound > 0
    assert dense_radius(problem, 0.999 * bound, responsive) < 1.0
    assert dense_radius(problem, 1.001 * bound, responsive) > 1.0


def test_epsilon_bound_of_a_single_unit_is_two_over_its_slope() -> None:
    # one unit, no neighbours: lambda[k] = lambda[k-1] + eps (P_D - s (lambda - b)), stable iff
    # |1 - eps s| < 1
    problem = DispatchProblem(
        cost_constant_per_h=np.array([0.0]),
        cost_linear_per_kwh=np.array([0.1]),
        cost_quadratic_per_kwh_per_kw=np.array([0.01]),
        output_min_kw=np.array([0.0]),
        output_max_kw=np.array([100.0]),
        demand_kw=40.0,
        graph=CommunicationGraph.line(1),
        leader=0,
    )
    assert epsilon_bound(problem) == pytest.approx(2 / 50.0)
    result = incremental_cost_consensus(problem, rule=TIGHT)
    assert result.extra["output_kw"][0] == pytest.approx(40.0)
    assert epsilon_bound(problem, responsive=[False]) == math.inf


# ---------------------------------------------------------------------------------- the graph


def test_graph_constructors_and_the_papers_update_matrix() -> None:
    assert CommunicationGraph.ring(5).n_edges == 5
    assert CommunicationGraph.line(5).n_edges == 4
    assert CommunicationGraph.complete(5).n_edges == 10
    tree = CommunicationGraph.random_connected(30, 0.0, seed=1)
    assert tree.n_edges == 29  # connected with no extra pair: a spanning tree
    assert CommunicationGraph.random_connected(8, 1.0, seed=1).n_edges == 28
    a = CommunicationGraph.random_connected(40, 0.1, seed=9)
    b = CommunicationGraph.random_connected(40, 0.1, seed=9)
    assert np.array_equal(a.edges, b.edges)
    d = CommunicationGraph.line(4).update_matrix().toarray()
    # d_ij = |l_ij| / sum_j |l_ij|: 1/2 on the diagonal, 1/(2 deg_i) to each neighbour
    expected = np.array(
        [[0.5, 0.5, 0, 0], [0.25, 0.5, 0.25, 0], [0, 0.25, 0.5, 0.25], [0, 0, 0.5, 0.5]]
    )
    np.testing.assert_allclose(d, expected)
    mu = CommunicationGraph.random_connected(20, 0.2, seed=2).update_eigenvalues()
    assert mu[-1] == pytest.approx(1.0) and mu[-2] < 1 - 1e-9 and mu[0] >= 0
    same = CommunicationGraph.from_edges(3, [[2, 1], [0, 1]])
    assert same.edges.tolist() == [[0, 1], [1, 2]]


def test_disconnected_graph_is_refused_naming_its_components() -> None:
    with pytest.raises(ValidationError, match="not connected") as err:
        CommunicationGraph.from_edges(5, [[0, 1], [1, 2], [3, 4]])
    assert "{0, 1, 2}" in str(err.value) and "{3, 4}" in str(err.value)


def test_bad_edges_are_refused_all_at_once() -> None:
    with pytest.raises(ValidationError) as err:
        CommunicationGraph.from_edges(3, [[0, 3], [1, 1], [-1, 2]])
    text = str(err.value)
    assert "outside 0..2" in text and "self loop" in text and "entries 0, 2" in text
    with pytest.raises(ValidationError, match="repeats"):
        CommunicationGraph.from_edges(3, [[0, 1], [1, 0], [1, 2]])
    with pytest.raises(ValidationError, match="n_nodes"):
        CommunicationGraph.from_edges(0, [])
    with pytest.raises(ValidationError, match="n: must be an integer >= 3"):
        CommunicationGraph.ring(2)
    with pytest.raises(ValidationError, match="probability"):
        CommunicationGraph.random_connected(5, 1.5, seed=0)


# ---------------------------------------------------------------------------------- bad input


def test_bad_problems_are_refused_naming_every_field() -> None:
    with pytest.raises(ValidationError) as err:
        DispatchProblem(
            cost_constant_per_h=np.array([0.0, 0.0, 0.0]),
            cost_linear_per_kwh=np.array([0.1, 0.1, 0.1]),
            cost_quadratic_per_kwh_per_kw=np.array([0.01, 0.0, -1.0]),
            output_min_kw=np.array([0.0, 5.0, 0.0]),
            output_max_kw=np.array([10.0, 1.0, 10.0]),
            demand_kw=5.0,
            graph=CommunicationGraph.line(3),
            leader=0,
        )
    text = str(err.value)
    assert "cost_quadratic_per_kwh_per_kw: must be > 0" in text
    assert "(entries unit-1, unit-2)" in text
    assert "output_min_kw: exceeds output_max_kw (entry unit-1)" in text


@pytest.mark.parametrize(
    ("demand_mw", "reason"),
    [(1_200.5, "exceeds the units' total capacity"), (299.5, "below the units' total minimum")],
)
def test_infeasible_demand_is_refused(demand_mw: float, reason: str) -> None:
    # capacity 1,200 MW, minimum 300 MW
    with pytest.raises(ValidationError, match=reason):
        wood_wollenberg(CommunicationGraph.line(3), demand_mw=demand_mw)
    wood_wollenberg(CommunicationGraph.line(3), demand_mw=1_200.0)  # the edges are feasible
    wood_wollenberg(CommunicationGraph.line(3), demand_mw=300.0)


@pytest.mark.parametrize("leader", [3, -1, 1.5, True])
def test_wrong_leader_index_is_refused(leader: object) -> None:
    with pytest.raises(ValidationError, match=r"leader: must be a unit index in 0\.\.2"):
        wood_wollenberg(CommunicationGraph.line(3), leader=leader)  # type: ignore[arg-type]


def test_graph_of_another_size_and_non_positive_demand_are_refused() -> None:
    with pytest.raises(ValidationError) as err:
        DispatchProblem(
            cost_constant_per_h=np.array([0.0, 0.0]),
            cost_linear_per_kwh=np.array([0.1, 0.1]),
            cost_quadratic_per_kwh_per_kw=np.array([0.01, 0.01]),
            output_min_kw=np.array([0.0, 0.0]),
            output_max_kw=np.array([10.0, 10.0]),
            demand_kw=0.0,
            graph=CommunicationGraph.line(3),
            leader=0,
        )
    assert "one node per unit" in str(err.value) and "demand_kw" in str(err.value)


@pytest.mark.parametrize("eps", [0.0, -1e-9, math.nan, math.inf])
def test_epsilon_outside_zero_and_the_bound_is_refused(eps: float) -> None:
    problem = wood_wollenberg(CommunicationGraph.line(3))
    with pytest.raises(ValidationError, match="epsilon: must be a finite number > 0"):
        incremental_cost_consensus(problem, epsilon=eps)


def test_epsilon_beyond_the_responsive_bound_is_refused_and_beyond_all_units_bound_warns() -> None:
    problem = wood_wollenberg(CommunicationGraph.line(3), coal_per_mbtu=0.9)
    probe = incremental_cost_consensus(problem, rule=StoppingRule(1e-3, 1))
    responsive = probe.extra["epsilon_bound"][0]
    every = probe.extra["epsilon_bound_all_units"][0]
    assert every < responsive  # with unit 1 at its limit the responsive units' range is wider
    with pytest.raises(ValidationError, match="epsilon: must be <"):
        incremental_cost_consensus(problem, epsilon=1.01 * responsive)
    with pytest.warns(StepSizeWarning, match="no limits"):
        result = incremental_cost_consensus(
            problem, epsilon=0.5 * (every + responsive), rule=StoppingRule(1e-9, 20_000)
        )
    assert result.extra["epsilon"][0] == pytest.approx(0.5 * (every + responsive))
    # beyond the unconstrained bound yet inside the responsive one: unit 1 reaches its limit and
    # the iteration converges, so the paper's bound is not necessary once a limit binds
    assert_matches_centralized(problem, result)


def test_bad_storage_and_initial_outputs_are_refused() -> None:
    with pytest.raises(ValidationError) as err:
        StorageUnits(
            power_max_kw=np.array([-1.0, 5.0]),
            energy_kwh=np.array([5.0, 20.0]),
            energy_min_kwh=np.array([0.0, 0.0]),
            energy_max_kwh=np.array([10.0, 10.0]),
            period_h=1.0,
            value_per_kwh=np.array([0.1, 0.1]),
            cycling_cost_per_kwh_per_kw=np.array([0.0, 0.01]),
            charge_efficiency=np.array([1.0, 1.2]),
            discharge_efficiency=np.array([1.0, 1.0]),
        )
    text = str(err.value)
    for fragment in ("power_max_kw", "cycling_cost", "energy_kwh: outside", "charge_efficiency"):
        assert fragment in text
    problem = wood_wollenberg(CommunicationGraph.line(3))
    with pytest.raises(ValidationError, match="initial_output_kw: outside"):
        incremental_cost_consensus(problem, initial_output_kw=[0.0, 200e3, 100e3])
