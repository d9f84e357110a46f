"""Network-constrained transactive EV charging (Hu, Yang, Bindner & Xue 2017) on case33bw.

The reference is the same problem solved in one piece: the DSO's SOCP OPF with every EV's
constraints (cvxpy, Clarabel); the AC figures are checked again with pandapower's Newton-Raphson
(``run_day``), independent of the power-grid-model flows the DSO iterates on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from transactive.coordination.ev_congestion import (
    NetworkEvProblem,
    _Dso,
    centralized_network_ev,
    network_constrained_ev_charging,
)
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
from transactive.network import (
    BatchPowerFlow,
    Feeder,
    SecurityLimits,
    feeder_day_load,
    load_feeder,
    run_day,
    spread_over_load_buses,
)

#: The transformer limit (kVA) and the voltage floor of the test case: both bind at night.
LIMIT_KVA = 1350.0
VMIN = 0.972
TOL = 1e-3
RULE = StoppingRule(tolerance=TOL, max_rounds=3000, min_rounds=2)
#: Nodes at the ends of the feeder's main line and of the lateral 25-32.
END_NODES = np.array([15, 16, 17, 29, 30, 31, 32])


@dataclass(frozen=True)
class Case:
    feeder: Feeder
    fleets: tuple[EvFleet, ...]
    buses: tuple[np.ndarray, ...]
    base_p: np.ndarray
    base_q: np.ndarray
    price: np.ndarray

    def problem(self, **changes: Any) -> NetworkEvProblem:
        args: dict[str, Any] = {
            "feeder": self.feeder,
            "fleets": self.fleets,
            "fleet_buses": self.buses,
            "base_p_kw": self.base_p,
            "base_q_kvar": self.base_q,
            "energy_price_per_kwh": self.price,
            "transformer_kva": LIMIT_KVA,
            "vmin_pu": VMIN,
        }
        args.update(changes)
        return NetworkEvProblem(**args)


def make_case(n_ev: int = 120, n_fo: int = 3, seed: int = 1, scale: float = 0.3) -> Case:
    """120 EVs of 3 FOs, plugged in from 17:00-20:00 to 06:00-08:00, on case33bw at 30 % load.

    The horizon runs from 12:00 to 12:00 in hours; 40 % of the EVs sit at the feeder's ends.
    """
    feeder = load_feeder("case33bw")
    day = feeder_day_load(feeder, scale=scale)
    base_p = np.roll(day.p_kw.reshape(24, 4, -1).mean(axis=1), -12, axis=0)
    base_q = np.roll(day.q_kvar.reshape(24, 4, -1).mean(axis=1), -12, axis=0)
    hours = (np.arange(24) + 12) % 24
    price = (
        0.20
        + 0.08 * np.cos(2 * np.pi * (hours - 19) / 24)
        + 0.03 * np.cos(4 * np.pi * (hours - 8) / 24)
    )
    rng = np.random.default_rng(seed)
    bus = spread_over_load_buses(n_ev, feeder, rng)
    at_end = rng.random(n_ev) < 0.4
    bus[at_end] = rng.choice(END_NODES, int(at_end.sum()))
    arrive = rng.integers(5, 9, n_ev)
    leave = rng.integers(18, 21, n_ev)
    rate = rng.choice([7.4, 11.0], n_ev)
    t = np.arange(24)[:, None]
    rate_max = np.where((t >= arrive) & (t < leave), rate, 0.0)
    need = np.minimum(rng.uniform(10.0, 35.0, n_ev), 0.8 * rate_max.sum(axis=0))
    owner = rng.integers(0, n_fo, n_ev)
    fleets = tuple(
        EvFleet(
            np.array([f"fo{k}-ev{i}" for i in np.flatnonzero(owner == k)]),
            rate_max[:, owner == k],
            need[owner == k],
            1.0,
        )
        for k in range(n_fo)
    )
    buses = tuple(bus[owner == k] for k in range(n_fo))
    return Case(feeder, fleets, buses, base_p, base_q, price)


@pytest.fixture(scope="module")
def case() -> Case:
    return make_case()


@pytest.fixture(scope="module")
def problem(case: Case) -> NetworkEvProblem:
    return case.problem()


@pytest.fixture(scope="module")
def flow(case: Case) -> BatchPowerFlow:
    return BatchPowerFlow(case.feeder)


@pytest.fixture(scope="module")
def result(problem: NetworkEvProblem, flow: BatchPowerFlow) -> IterativeResult:
    return network_constrained_ev_charging(problem, rule=RULE, flow=flow)


@pytest.fixture(scope="module")
def central(problem: NetworkEvProblem) -> CentralizedOptimum:
    return centralized_network_ev(problem)


def ev_kw_per_bus(problem: NetworkEvProblem, schedules_kw: np.ndarray) -> np.ndarray:
    out = np.zeros((problem.n_periods, problem.feeder.n_nodes))
    np.add.at(out.T, problem.ev_bus, schedules_kw.T)
    return out


# ---------------------------------------------------------------------- security and optimality


def test_the_uncongested_plan_violates_the_transformer_and_the_voltage_limit(
    result: IterativeResult,
) -> None:
    extra = result.extra
    assert extra["uncongested_transformer_loading_pct"].max() > 110.0
    assert extra["uncongested_vmin_pu"].min() < VMIN - 0.01
    # the energy prices alone put every EV into the cheapest night hours
    assert result.primal_residual[0] > 0.05


def test_the_final_plan_is_secure_in_the_dso_model_and_in_pandapower(
    problem: NetworkEvProblem, result: IterativeResult
) -> None:
    assert result.converged and result.stop_reason == "tolerance"
    extra = result.extra
    # the DSO's AC model (power-grid-model) at the FOs' final plans, within the tolerance
    assert extra["transformer_loading_pct"].max() <= 100.0 * (1 + TOL)
    assert extra["vmin_pu"].min() >= VMIN * (1 - TOL)
    # the limits bind: the congestion is managed, not avoided by a needless detour
    assert extra["transformer_loading_pct"].max() > 99.0
    assert extra["vmin_pu"].min() < VMIN + 0.002
    # pandapower's Newton-Raphson on the same plan
    p = problem.base_p_kw + ev_kw_per_bus(problem, result.schedules_kw)
    day = run_day(
        problem.feeder,
        p,
        problem.base_q_kvar,
        limits=SecurityLimits(vmin_pu=VMIN * (1 - TOL)),
        interval_s=3600,
    )
    assert day.converged.all() and day.secure.all()
    s0 = np.hypot(day.p_slack_kw, day.q_slack_kvar)
    assert s0.max() <= LIMIT_KVA * (1 + TOL)
    np.testing.assert_allclose(100.0 * s0 / LIMIT_KVA, extra["transformer_loading_pct"], atol=1e-3)
    np.testing.assert_allclose(day.vmin_pu, extra["vmin_pu"], atol=1e-6)


def test_every_ev_gets_its_energy_within_its_rate_box(
    problem: NetworkEvProblem, result: IterativeResult
) -> None:
    evs = problem.all_evs()
    x = result.schedules_kw
    assert x.shape == (problem.n_periods, problem.n_evs)
    np.testing.assert_array_equal(result.ids, evs.ids)
    np.testing.assert_allclose(x.sum(axis=0) * problem.period_h, evs.energy_kwh, rtol=1e-9)
    assert (x >= 0).all() and (x <= evs.rate_max_kw + 1e-9).all()
    # what each FO sent per bus adds up to its EVs
    np.testing.assert_allclose(
        result.extra["fo_bus_kw"].sum(axis=2), ev_kw_per_bus(problem, x), atol=1e-9
    )


def test_the_cost_is_within_a_small_gap_of_the_centralized_opf(
    problem: NetworkEvProblem, result: IterativeResult, central: CentralizedOptimum
) -> None:
    gap = relative_gap(float(result.objective[-1]), central)
    assert abs(gap) < 5e-4, gap  # measured 3.2e-5 on this case
    # the centralized plan meets the same needs and limits in its own (SOCP) model
    np.testing.assert_allclose(
        central.schedules_kw.sum(axis=0) * problem.period_h,
        problem.all_evs().energy_kwh,
        rtol=1e-5,
    )
    assert central.prices is not None and central.prices.shape == (24, problem.feeder.n_nodes)
    assert central.solver == "CLARABEL" and central.solve_time_s > 0
    # the DSO's last prices are the OPF's DLMPs (energy + loss + congestion + voltage)
    spread = float(np.ptp(problem.energy_price_per_kwh))
    assert np.abs(result.prices - central.prices).max() < 0.03 * spread  # measured 1.2 %


def test_prices_are_energy_plus_loss_plus_congestion_plus_voltage(
    problem: NetworkEvProblem, result: IterativeResult
) -> None:
    e = result.extra
    parts = e["congestion_price_per_kwh"] + e["voltage_price_per_kwh"] + e["loss_price_per_kwh"]
    np.testing.assert_allclose(
        result.prices, problem.energy_price_per_kwh[:, None] + parts, rtol=0, atol=1e-12
    )
    assert result.prices.shape == (problem.n_periods, problem.feeder.n_nodes)
    assert (e["loss_price_per_kwh"] >= 0).all() and (
        e["transformer_shadow_price_per_kwh"] >= 0
    ).all()
    # congestion is priced only where the EVs are plugged in and the limit binds
    assert e["transformer_shadow_price_per_kwh"].max() > 0
    assert e["transformer_shadow_price_per_kwh"][:4].max() == 0  # 12:00-16:00: no EV home


def test_dso_sensitivities_match_finite_differences_of_the_ac_power_flow(
    problem: NetworkEvProblem, flow: BatchPowerFlow
) -> None:
    dso = _Dso(problem, flow)
    state = dso.evaluate(np.zeros((problem.n_periods, problem.feeder.n_nodes)))
    rows, scale = dso.sensitivities(state)
    node, step_kw = 17, 5.0
    bump = np.zeros((problem.n_periods, problem.feeder.n_nodes))
    bump[:, node] = step_kw
    moved = dso.evaluate(bump)
    finite = (moved.values - state.values) / step_kw  # (T, E) per kW at the node
    linear = rows[:, :, node] * scale
    head = slice(0, 1 + problem.feeder.n_nodes - 1)  # transformer and undervoltage rows
    np.testing.assert_allclose(linear[:, head], finite[:, head], rtol=0.05, atol=1e-8)


def test_a_rated_line_is_relieved_by_its_own_congestion_price(case: Case) -> None:
    # line 28 feeds the lateral 29-32: rated at 15 A, above the base load's 14.2 A
    rated = case.feeder.with_line_ratings({28: 0.015})
    problem = case.problem(feeder=rated, transformer_kva=5000.0, vmin_pu=0.9)
    run = network_constrained_ev_charging(problem, rule=RULE)
    assert run.converged
    branch = rated.line_branch[28]
    assert run.extra["uncongested_max_line_loading_pct"].max() > 105.0
    assert run.extra["max_line_loading_pct"].max() <= 100.0 * (1 + TOL)
    # only the line is congested: its price is paid downstream of it and nowhere else
    cong = run.extra["congestion_price_per_kwh"]
    downstream = np.flatnonzero(_Dso(problem, BatchPowerFlow(rated)).below[:, branch])
    upstream = np.setdiff1d(np.arange(rated.n_nodes), downstream)
    assert cong[:, downstream].max() > 0 and np.abs(cong[:, upstream]).max() == 0
    day = run_day(
        rated,
        problem.base_p_kw + ev_kw_per_bus(problem, run.schedules_kw),
        problem.base_q_kvar,
        interval_s=3600,
    )
    assert day.branch_loading_pct[:, branch].max() <= 100.0 * (1 + TOL)
    gap = relative_gap(float(run.objective[-1]), centralized_network_ev(problem))
    assert abs(gap) < 5e-4, gap


# ---------------------------------------------------------------------- communication faults


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_lost_messages_still_reach_a_secure_plan_near_the_optimum(
    problem: NetworkEvProblem,
    flow: BatchPowerFlow,
    central: CentralizedOptimum,
    result: IterativeResult,
    loss: float,
) -> None:
    faulty = network_constrained_ev_charging(
        problem, rule=RULE, faults=CommsFaults(loss_probability=loss, seed=7), flow=flow
    )
    # measured: 10 % loss converges in about as many rounds as none, 30 % in about 20 % more
    assert faulty.converged
    assert faulty.n_rounds < 2.5 * result.n_rounds
    assert faulty.extra["transformer_loading_pct"].max() <= 100.0 * (1 + TOL)
    assert faulty.extra["vmin_pu"].min() >= VMIN * (1 - TOL)
    assert abs(relative_gap(float(faulty.objective[-1]), central)) < 1e-3
    np.testing.assert_allclose(
        faulty.schedules_kw.sum(axis=0), problem.all_evs().energy_kwh, rtol=1e-9
    )
    # a price message is T·B prices and the proximal step, one per FO per round
    per_message = problem.n_periods * problem.feeder.n_nodes + 1
    rounds = faulty.n_rounds + 1
    assert faulty.numbers_per_agent == pytest.approx(
        rounds * per_message + rounds * problem.n_periods * problem.feeder.n_nodes
    )


def test_price_delay_is_handled(problem: NetworkEvProblem, flow: BatchPowerFlow) -> None:
    faulty = network_constrained_ev_charging(
        problem,
        rule=StoppingRule(tolerance=TOL, max_rounds=150, min_rounds=2),
        faults=CommsFaults(loss_probability=0.1, max_delay_rounds=2, seed=3),
        flow=flow,
    )
    # stale prices slow the rounds but keep them stable: the violation falls from >10 % to <1 %
    assert faulty.primal_residual[0] > 0.1
    assert faulty.extra["transformer_loading_pct"].max() < 101.0


# ---------------------------------------------------------------------- steps and round limits


def test_a_step_above_the_bound_warns_and_a_capped_run_is_not_converged(
    problem: NetworkEvProblem, result: IterativeResult, flow: BatchPowerFlow
) -> None:
    bound = 1.0 / (float(result.extra["fo_step"]) * float(result.extra["k_norm"]) ** 2)
    with pytest.warns(StepSizeWarning, match="Chambolle"):
        capped = network_constrained_ev_charging(
            problem,
            step=3.0 * bound,
            rule=StoppingRule(tolerance=TOL, max_rounds=5),
            flow=flow,
        )
    assert not capped.converged and capped.stop_reason == "max_rounds" and capped.n_rounds == 5
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValidationError, match="step"):
            network_constrained_ev_charging(problem, step=bad, flow=flow)
    with pytest.raises(ValidationError, match="fo_step"):
        network_constrained_ev_charging(problem, fo_step=0.0, flow=flow)


# ---------------------------------------------------------------------- bad input


def test_transformer_limit_must_be_positive(case: Case) -> None:
    for bad in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="transformer_kva"):
            case.problem(transformer_kva=bad)


def test_bus_index_out_of_range_or_not_integer_is_named(case: Case) -> None:
    buses = [b.copy() for b in case.buses]
    buses[1][[0, 3]] = [33, -1]
    with pytest.raises(ValidationError) as err:
        case.problem(fleet_buses=tuple(buses))
    found = {p.field: p for p in err.value.problems}
    assert found["fleet_buses[1]"].index == (0, 3)
    assert "out of range" in found["fleet_buses[1]"].reason
    floats = tuple(b.astype(float) for b in case.buses)
    with pytest.raises(ValidationError, match="integer node indices"):
        case.problem(fleet_buses=floats)
    with pytest.raises(ValidationError, match="one bus array per fleet"):
        case.problem(fleet_buses=case.buses[:2])


def test_wrong_shapes_are_all_reported_at_once(case: Case) -> None:
    with pytest.raises(ValidationError) as err:
        case.problem(
            base_p_kw=case.base_p[:-1],
            base_q_kvar=case.base_q[:, :-1],
            energy_price_per_kwh=case.price[:-2],
            vmin_pu=np.full(5, 0.95),
        )
    fields = {p.field for p in err.value.problems}
    assert {"base_p_kw", "base_q_kvar", "energy_price_per_kwh", "vmin_pu"} <= fields
    short = EvFleet(np.array(["x"]), np.ones((12, 1)), np.array([1.0]), 1.0)
    with pytest.raises(ValidationError, match="horizon"):
        case.problem(fleets=(*case.fleets[:2], short), fleet_buses=(*case.buses[:2], [3]))
    with pytest.raises(ValidationError, match="unique"):
        case.problem(fleets=(case.fleets[0], case.fleets[0]), fleet_buses=case.buses[:1] * 2)


def test_a_limit_below_the_base_load_is_infeasible(case: Case, flow: BatchPowerFlow) -> None:
    peak_p = float(case.base_p.sum(axis=1).max())
    with pytest.raises(ValidationError, match="base load alone draws more active power"):
        case.problem(transformer_kva=0.9 * peak_p)
    # above the base's active power but below its apparent power in AC: refused by the DSO
    problem = case.problem(transformer_kva=1.001 * peak_p)
    with pytest.raises(ValidationError, match=r"base load alone exceeds .* in AC"):
        network_constrained_ev_charging(problem, flow=flow)
    with pytest.raises(ValidationError, match="base load alone takes a node below vmin_pu"):
        network_constrained_ev_charging(case.problem(vmin_pu=0.99), flow=flow)
    # twenty EVs plugged in for the two peak hours only, with a few kVA of headroom there
    peak = np.argsort(case.base_p.sum(axis=1))[-2:]
    rate = np.zeros((24, 20))
    rate[peak] = 11.0
    fleet = EvFleet(np.array([f"peak-{i}" for i in range(20)]), rate, np.full(20, 20.0), 1.0)
    with pytest.raises(ValidationError, match="EVs need 400 kWh"):
        case.problem(transformer_kva=1.001 * peak_p, fleets=(fleet,), fleet_buses=(np.full(20, 5),))


def test_an_infeasible_network_is_refused_centrally_and_never_passes_for_converged(
    case: Case, flow: BatchPowerFlow
) -> None:
    # four EVs at the far end of the main line, plugged in only in the hour its voltage is
    # lowest, and the floor there set at that voltage: no EV can charge there at all
    feeder = case.feeder
    base = flow.run(case.base_p, case.base_q)
    low = int(np.argmin(base.vm_pu[:, 17]))
    vmin = np.full(feeder.n_nodes, 0.9)
    vmin[17] = float(base.vm_pu[low, 17])
    rate = np.zeros((24, 4))
    rate[low] = 11.0
    fleet = EvFleet(np.array([f"end-{i}" for i in range(4)]), rate, np.full(4, 9.9), 1.0)
    problem = case.problem(fleets=(fleet,), fleet_buses=(np.full(4, 17),), vmin_pu=vmin)
    with pytest.raises(ValidationError, match="infeasible"):
        centralized_network_ev(problem)
    capped = network_constrained_ev_charging(
        problem, rule=StoppingRule(tolerance=TOL, max_rounds=20), flow=flow
    )
    assert not capped.converged and capped.primal_residual[-1] > TOL
