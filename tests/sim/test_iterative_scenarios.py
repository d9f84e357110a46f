"""The iterative mechanisms in the simulator: valley filling, EV congestion, the day-ahead pool.

Each built-in scenario runs end to end at a small size (its own TOML with fewer homes and a
coarser physics step): the plan converges close to its centralized optimum, the EVs meter their
schedules and are full by departure, and the day differs from the baseline as the mechanism
says (a flatter, lower load; the transformer limit holding in the AC power flow). Valley
filling's plan is checked against the same problem solved here with cvxpy, independently of the
algorithm module's own reference.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import cvxpy
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.market.strategies import bid_curves, volume
from transactive.curves import BidCurves
from transactive.errors import ValidationError
from transactive.sim import (
    BUILTIN_SCENARIOS,
    Scenario,
    SimulationResult,
    builtin_scenarios,
    parse_scenario,
    simulate,
    summary,
    write_results,
)
from transactive.sim.engine import _Setup
from transactive.sim.iterative import IterativePlan, price_and_fill_for

cp: Any = cvxpy  # cvxpy ships partial type information

ITERATIVE = ("ev-valley-filling", "ev-congestion", "day-ahead-flex")


def _text(name: str) -> str:
    return (resources.files("transactive.sim") / "scenarios" / f"{name}.toml").read_text(
        encoding="utf-8"
    )


def _small(
    name: str, n: int, *, loss: float = 0.0, scale: float = 0.0, **iterative: Any
) -> Scenario:
    """A built-in scenario with ``n`` homes (and EVs), 15-minute physics and intervals or longer.

    ``loss``: the message loss probability; ``scale``: the feeder's own load kept as background;
    ``iterative``: keys of ``mechanism.iterative``.
    """
    data = tomllib.loads(_text(name))
    data["comms"] = {"loss_probability": loss}
    data["feeder"]["scale"] = scale
    data["population"]["base_load"]["count"] = n
    data["population"]["ev"]["count"] = n
    data["market_interval_s"] = max(data["market_interval_s"], 900)
    data["physics_step_s"] = 900
    data["mechanism"]["iterative"].update(iterative)
    if "capacity_kw" in data["supply"]:
        data["supply"]["capacity_kw"] *= n / 1000
    if name == "day-ahead-flex":  # the generators brought to the homes (marginal costs kept)
        for gen in data["mechanism"]["iterative"]["generators"]:
            gen["power_max_kw"] *= n / 1000
            gen["cost_quadratic_per_kwh_per_kw"] *= 1000 / n
    return Scenario.model_validate(data)


def _kpi(kpis: dict[str, float | None], key: str) -> float:
    value = kpis[key]
    assert value is not None
    return value


def _plan(sim: SimulationResult) -> IterativePlan:
    assert sim.iterative is not None
    return sim.iterative


def _coordinated(sim: SimulationResult) -> Any:
    """The coordinated EVs as the day starts (a fresh sample, as both runs had it)."""
    return next(g for g in _Setup(sim.scenario, None).groups() if g.mode == "schedule").population


def _device_rows(sim: SimulationResult, run: str, ids: np.ndarray, column: str) -> np.ndarray:
    dev = sim.runs[run].devices
    where = {str(i): k for k, i in enumerate(dev["device_id"].tolist())}
    return np.array([float(dev[column][where[str(i)]]) for i in ids.tolist()])


def _check_followed(sim: SimulationResult) -> None:
    """The EVs metered their schedules and left full; the rest ran exactly as in the baseline."""
    plan = _plan(sim)
    scheduled = plan.ev_kw.sum(axis=0) * plan.period_s / 3600.0
    metered = _device_rows(sim, "transactive", plan.ev_ids, "energy_kwh")
    np.testing.assert_allclose(metered, scheduled, rtol=1e-9, atol=1e-9)
    evs = _coordinated(sim)
    assert (evs.departure_s <= sim.scenario.horizon_s).all()  # every need is due in the day
    np.testing.assert_allclose(
        metered, evs.energy_needed_kwh / evs.efficiency, rtol=1e-8, atol=1e-8
    )  # the schedule is the whole need, grid side
    unserved = _device_rows(sim, "transactive", plan.ev_ids, "unserved_kwh")
    assert np.max(unserved) < 1e-8
    # the perfect forecast: every other device metered exactly what it did in the baseline
    for run in ("baseline", "transactive"):
        assert sim.runs[run].other_node_kw is not None
    base = sim.runs["baseline"].devices
    tr = sim.runs["transactive"].devices
    others = base["kind"] != "ev"
    np.testing.assert_array_equal(tr["energy_kwh"][others], base["energy_kwh"][others])
    per = plan.period_s // sim.scenario.market_interval_s
    other = sim.runs["transactive"].other_node_kw
    assert other is not None
    np.testing.assert_allclose(
        other.sum(axis=1).reshape(plan.n_periods, per).mean(axis=1), plan.base_load_kw, rtol=1e-12
    )
    block = summary(sim)["iterative"]
    assert block["leaving_after_horizon"] == 0
    assert block["ev_energy"]["max_abs_deviation_kwh"] < 1e-9
    assert block["ev_energy"]["scheduled_kwh"] == pytest.approx(float(scheduled.sum()))


def _check_billed_at_plan(sim: SimulationResult) -> None:
    """Each EV paid its period's (node's) price for its metered (= scheduled) energy."""
    plan = _plan(sim)
    assert plan.ev_price_per_kwh is not None
    expected = (plan.ev_kw * plan.ev_price_per_kwh).sum(axis=0) * plan.period_s / 3600.0
    paid = _device_rows(sim, "transactive", plan.ev_ids, "cost")
    np.testing.assert_allclose(paid, expected, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# valley filling, with message loss


@pytest.fixture(scope="module")
def valley() -> SimulationResult:
    return simulate(_small("ev-valley-filling", 40, loss=0.05))


def test_valley_filling_converges_to_the_independent_optimum(valley: SimulationResult) -> None:
    plan = _plan(valley)
    block = summary(valley)["iterative"]
    assert block["mechanism"] == "ev-valley-filling"
    assert block["algorithm"] == "gan-valley-filling"
    assert block["converged"] and block["stop_reason"] == "tolerance"
    assert block["primal_residual"] <= block["tolerance"]
    assert block["dual_residual"] <= block["tolerance"]
    assert 0 <= block["relative_gap"] < 1e-3  # a feasible schedule: never below the optimum
    assert block["n_periods"] == valley.scenario.horizon_s // 900
    # the same problem solved here: min sum_t (D + sum_n r)^2 / 2 over the EVs' sets
    evs = _coordinated(valley)
    n = evs.n_devices
    t_n = plan.n_periods
    starts = plan.period_start_s[:, None].astype(float)
    plugged = np.clip(
        np.minimum(starts + 900, evs.departure_s) - np.maximum(starts, evs.arrival_s), 0, 900
    )
    rate = evs.max_power_kw * plugged / 900.0
    need = evs.energy_needed_kwh / evs.efficiency
    r = cp.Variable((t_n, n), nonneg=True)
    total = plan.base_load_kw + cp.sum(r, axis=1)
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(total) / 1e4),
        [r <= rate, cp.sum(r, axis=0) * 0.25 == need],
    )
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == cp.OPTIMAL
    ev_total = np.asarray(r.value).sum(axis=1)
    best = 0.5 * float(np.sum((plan.base_load_kw + ev_total) ** 2))
    assert block["centralized"]["objective"] == pytest.approx(best, rel=1e-6)
    # the optimal aggregate load is unique (Gan, Topcu & Low 2013, Theorem 2): the plan's is it
    ours = plan.base_load_kw + plan.ev_kw.sum(axis=1)
    np.testing.assert_allclose(ours, plan.base_load_kw + ev_total, atol=0.02 * ours.max())
    # with message loss: the exchange's faults and the plan made without them
    assert block["loss_probability"] == 0.05
    assert block["no_faults"] is not None and block["no_faults"]["converged"]
    assert valley.no_faults is not None and valley.iterative_no_faults is not None
    assert valley.iterative_no_faults.faults.perfect
    assert block["messages_per_agent"] >= 2 * block["rounds"]


def test_valley_filling_is_followed_and_flattens_the_load(valley: SimulationResult) -> None:
    _check_followed(valley)
    plan = _plan(valley)
    base, tr = valley.runs["baseline"], valley.runs["transactive"]
    assert _kpi(tr.kpis, "peak_kw") < _kpi(base.kpis, "peak_kw")
    # flatter where the EVs charge: the periods in which any EV is plugged in
    per = plan.period_s // valley.scenario.market_interval_s
    busy = np.repeat((plan.ev_centralized_kw.sum(axis=1) > 0) | (plan.ev_kw.sum(axis=1) > 0), per)
    baseline_ev = base.series["group_load_kw:participant"]
    assert np.std(tr.series["feeder_load_kw"][busy]) < 0.5 * np.std(
        base.series["feeder_load_kw"][busy]
    )
    assert baseline_ev.sum() == pytest.approx(tr.series["group_load_kw:participant"].sum())
    block = summary(valley)["iterative"]
    assert block["limit"]["minutes_above"]["baseline"] > 0
    assert block["limit"]["minutes_above"]["transactive"] == 0
    # no price: the EVs pay the flat tariff
    flat = valley.scenario.mechanism.flat_price_per_kwh
    cost = _device_rows(valley, "transactive", plan.ev_ids, "cost")
    energy = _device_rows(valley, "transactive", plan.ev_ids, "energy_kwh")
    np.testing.assert_allclose(cost, energy * flat, rtol=1e-12)


def test_evs_leaving_after_the_horizon_get_what_they_must_have_by_its_end() -> None:
    data = _small("ev-valley-filling", 20).model_dump()
    data["horizon_h"] = 24.0  # midnight to midnight: the EVs leave the next morning
    sim = simulate(Scenario.model_validate(data))
    plan = _plan(sim)
    evs = _coordinated(sim)
    late = evs.departure_s > sim.scenario.horizon_s
    assert late.all() and plan.leaving_after_horizon == late.sum()
    notes = summary(sim)["notes"]
    assert any("leave after the horizon's end" in note for note in notes)
    # the schedule holds the least that still lets each EV finish at full power after the end
    after_h = (evs.departure_s - sim.scenario.horizon_s) / 3600.0
    least = np.maximum(evs.energy_needed_kwh - evs.efficiency * evs.max_power_kw * after_h, 0.0)
    scheduled = plan.ev_kw.sum(axis=0) * plan.period_s / 3600.0
    np.testing.assert_allclose(scheduled, least / evs.efficiency, rtol=1e-9, atol=1e-9)
    metered = _device_rows(sim, "transactive", plan.ev_ids, "energy_kwh")
    np.testing.assert_allclose(metered, scheduled, rtol=1e-9, atol=1e-9)


def test_valley_filling_results_directory(valley: SimulationResult, tmp_path: Path) -> None:
    files = write_results(valley, tmp_path)
    plan = _plan(valley)
    rounds = pd.read_parquet(files["iterative"])
    assert list(rounds.columns) == [
        "round",
        "primal_residual",
        "dual_residual",
        "objective",
        "relative_gap",
    ]
    assert rounds["round"].tolist() == list(range(1, plan.result.n_rounds + 1))
    np.testing.assert_array_equal(rounds["objective"], plan.result.objective)
    periods = pd.read_parquet(files["iterative_periods"])
    assert len(periods) == plan.n_periods
    np.testing.assert_allclose(
        periods["total_kw"], periods["base_load_kw"] + periods["ev_scheduled_kw"]
    )
    np.testing.assert_allclose(periods["ev_metered_kw"], periods["ev_scheduled_kw"], atol=1e-9)
    assert "iterative_prices" not in files  # one price for all
    data = json.loads(files["summary"].read_text())
    assert data["iterative"]["rounds"] == plan.result.n_rounds
    assert data["mechanism"] == "ev-valley-filling"
    ts = pd.read_parquet(files["timeseries"])
    assert {"substation_kva", "ev_scheduled_kw"} <= set(ts.loc[ts.run == "transactive", "series"])


# ---------------------------------------------------------------------------------------------
# the day-ahead pool, both algorithms


@pytest.fixture(scope="module", params=["dual-decomposition", "admm"])
def day_ahead(request: pytest.FixtureRequest) -> SimulationResult:
    n = 40 if request.param == "dual-decomposition" else 20
    return simulate(_small("day-ahead-flex", n, algorithm=request.param))


def test_day_ahead_pool_clears_and_is_followed(day_ahead: SimulationResult) -> None:
    plan = _plan(day_ahead)
    block = summary(day_ahead)["iterative"]
    algorithm = day_ahead.scenario.mechanism.iterative_spec.algorithm
    assert block["algorithm"] == {"admm": "admm-exchange"}.get(str(algorithm), algorithm)
    assert block["converged"]
    # the least-cost dispatch of the plan is feasible: never below the optimum
    assert -1e-6 <= block["relative_gap"] < 1e-3
    assert block["objective_unit"] == "currency"
    # the pool balances the forecast demand and the EVs, as the optimum's prices say it should
    assert plan.generation_kw is not None
    demand = plan.base_load_kw + plan.ev_kw.sum(axis=1)
    mismatch = np.linalg.norm(plan.generation_kw - demand) / np.linalg.norm(demand)
    assert mismatch < 2 * block["tolerance"]
    assert plan.optimum.prices is not None
    np.testing.assert_allclose(plan.prices, plan.optimum.prices, rtol=1e-2)
    _check_followed(day_ahead)
    _check_billed_at_plan(day_ahead)
    base, tr = day_ahead.runs["baseline"], day_ahead.runs["transactive"]
    assert _kpi(tr.kpis, "peak_kw") < _kpi(base.kpis, "peak_kw")


# ---------------------------------------------------------------------------------------------
# network-constrained EV charging behind a transformer limit


@pytest.fixture(scope="module")
def congestion() -> SimulationResult:
    # a tenth of the feeder's own load as background: with the flows of 40 homes alone the OPF's
    # numbers are small enough for Clarabel to end inaccurate
    return simulate(_small("ev-congestion", 40, scale=0.1, transformer_kva=500.0))


def test_ev_congestion_keeps_the_transformer_limit_in_ac(
    congestion: SimulationResult, tmp_path: Path
) -> None:
    plan = _plan(congestion)
    block = summary(congestion)["iterative"]
    assert block["converged"]
    assert abs(block["relative_gap"]) < 1e-3
    assert block["prices_per_node"] and plan.prices.shape == (plan.n_periods, 33)
    limit = block["limit"]["value"]
    assert block["limit"]["unit"] == "kVA" and limit == 500.0
    base_kva = congestion.runs["baseline"].series["substation_kva"]
    te_kva = congestion.runs["transactive"].series["substation_kva"]
    assert np.max(base_kva) > 1.03 * limit  # the limit binds without coordination
    assert np.max(te_kva) <= limit * (1 + block["tolerance"])  # ... and holds with it
    assert block["limit"]["minutes_above"]["baseline"] > 0
    assert block["limit"]["minutes_above"]["transactive"] == 0
    vmin = congestion.scenario.feeder.vmin_pu
    assert np.min(congestion.runs["transactive"].series["vmin_pu"]) >= vmin * (1 - 1e-3)
    _check_followed(congestion)
    _check_billed_at_plan(congestion)
    files = write_results(congestion, tmp_path)
    prices = pd.read_parquet(files["iterative_prices"])
    assert len(prices) == plan.n_periods * 33
    wide = prices.pivot_table(index="period_start_s", columns="node", values="price")
    np.testing.assert_allclose(wide.to_numpy(), plan.prices)


# ---------------------------------------------------------------------------------------------
# following a power on a bid curve


def test_price_and_fill_read_back_any_power_on_an_ev_curve() -> None:
    # an EV curve: flexible block [must, flex] at its price, must-run [0, must] at the cap
    prices = np.array([[0.1, 0.1, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.2, 0.2, 1.0, 1.0]])
    powers = np.array([[7.0, 2.0, 2.0, 0.0], [5.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    curves = BidCurves(prices, powers)
    for target in ([7.0, 5.0, 0.0], [2.0, 1.0, 0.0], [1.3, 0.4, 0.0], [4.5, 3.0, 0.0]):
        price, fill, power = price_and_fill_for(curves, target)
        np.testing.assert_allclose(curves.power_at(price, fill), target, atol=1e-12)
        np.testing.assert_allclose(power, target, atol=1e-12)
    _, _, clipped = price_and_fill_for(curves, [9.0, -1.0, 3.0])  # beyond a curve's range
    np.testing.assert_allclose(clipped, [7.0, 0.0, 0.0])
    ramp = BidCurves(np.array([[0.0, 0.5]]), np.array([[4.0, 0.0]]))  # a linear curve
    price, fill, power = price_and_fill_for(ramp, [1.0])
    assert price[0] == pytest.approx(0.375) and power[0] == pytest.approx(1.0)


@given(bids=bid_curves(), shares=st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12))
def test_price_and_fill_invert_power_at_on_any_curve(bids: BidCurves, shares: list[float]) -> None:
    q = bids.power_kw
    share = np.asarray(shares[: len(bids)])
    target = q[:, -1] + share * (q[:, 0] - q[:, -1])  # anywhere in each curve's range
    price, fill, power = price_and_fill_for(bids, target)
    assert np.all((fill >= 0) & (fill <= 1))
    assert np.all((price >= bids.price_per_kwh[:, 0]) & (price <= bids.price_per_kwh[:, -1]))
    np.testing.assert_allclose(bids.power_at(price, fill), target, rtol=0, atol=1e-9 * volume(bids))
    np.testing.assert_array_equal(power, bids.power_at(price, fill))


# ---------------------------------------------------------------------------------------------
# the scenarios and their validation


def test_the_iterative_scenarios_are_built_in() -> None:
    listed = builtin_scenarios()
    assert set(ITERATIVE) <= set(listed)
    assert set(listed) == set(BUILTIN_SCENARIOS)
    for name in ITERATIVE:
        sc = parse_scenario(_text(name), source=name)
        assert sc.mechanism.kind == name
        assert sc.n_homes == 1000 and sc.population.ev.count == 1000
        assert sc.start.hour == 0 and sc.horizon_h == 36  # the night's charging inside
    spec = parse_scenario(_text("ev-congestion")).mechanism.iterative_spec
    assert spec.transformer_kva == 1800.0 and spec.fleets == 4


def _problems(text: str) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        parse_scenario(text)
    return {p.field: p.reason for p in info.value.problems}


def test_unknown_keys_bad_steps_and_algorithms_are_named_at_once() -> None:
    text = _text("day-ahead-flex")
    text = text.replace('algorithm = "dual-decomposition"', 'algorithm = "newton"')
    text = text.replace("period_s = 900\n", "period_s = 900\nspeed = 2.0\nstep = -1.0\n")
    text = text.replace('name = "peak"\n', 'name = "peak"\ncolour = "red"\n')
    found = _problems(text)
    assert "mechanism.iterative.algorithm" in found
    assert "dual-decomposition" in found["mechanism.iterative.algorithm"]
    assert found["mechanism.iterative.speed"] == "unknown key (not part of a scenario)"
    assert "greater than 0" in found["mechanism.iterative.step"]
    assert found["mechanism.iterative.generators.2.colour"].startswith("unknown key")


def test_the_mechanisms_needs_are_named_at_once() -> None:
    text = _text("ev-congestion").replace("transformer_kva = 1800.0\n", "")
    text = text.replace("dso_check = false", "dso_check = true")
    text = text.replace("fleets = 4\n", "fleets = 4\ngamma = 0.001\nrho = 1.0\n")
    found = _problems(text)
    assert "transformer limit" in found["mechanism.iterative.transformer_kva"]
    assert "dso_check = false" in found["mechanism.dso_check"]
    assert "ev-valley-filling" in found["mechanism.iterative.gamma"]
    assert "admm" in found["mechanism.iterative.rho"]
    text = _text("day-ahead-flex").replace('algorithm = "dual-decomposition"\n', "")
    text = text.replace("tolerance = 1e-4\n", "tolerance = 1e-4\nrho = 2.0\n")
    found = _problems(text)
    assert "needs an algorithm" in found["mechanism.iterative.algorithm"]
    assert "admm" in found["mechanism.iterative.rho"]
    text = _text("default").replace(
        "dso_max_rounds = 4", "dso_max_rounds = 4\n\n[mechanism.iterative]\nperiod_s = 900"
    )
    assert "kind is 'double_auction'" in _problems(text)["mechanism.iterative"]


def test_what_an_iterative_mechanism_needs_of_the_scenario_is_named_at_once() -> None:
    text = _text("ev-valley-filling")
    text = text.replace("period_s = 900", "period_s = 1000\ngamma = 0.01")
    text = text.replace("count = 1000\nparticipation = 0.0", "count = 1000\nparticipation = 0.5")
    text += "\n[comms]\nloss_probability = 1.0\ndelay_intervals = 2\n"
    found = _problems(text)
    assert "whole number of market intervals" in found["mechanism.iterative.period_s"]
    assert "1/N = 0.001" in found["mechanism.iterative.gamma"]  # Gan et al.'s bound, N = 1000
    assert "only EVs take part" in found["population.base_load.participation"]
    assert "below 1" in found["comms.loss_probability"]
    assert "delay_intervals" in found["comms"]


def test_an_algorithms_refusal_names_the_mechanism() -> None:
    sc = _small("day-ahead-flex", 20)
    data = sc.model_dump()
    for gen in data["mechanism"]["iterative"]["generators"]:
        gen["power_max_kw"] = 1.0  # 3 kW of generation for 20 homes: no balance
    with pytest.raises(ValidationError) as info:
        simulate(Scenario.model_validate(data))
    fields = [p.field for p in info.value.problems]
    assert fields and all(f.startswith("mechanism.iterative.") for f in fields)
    assert any("infeasible" in p.reason for p in info.value.problems)
