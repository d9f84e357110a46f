"""The generic horizon solver: cheapest schedules under generalized-battery constraints.

Checked against cvxpy solving each device on its own, against every constraint of the model,
for deterministic tie-breaking, and for infeasible devices named by id.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from transactive.devices.base import Horizon
from transactive.devices.flexibility import Flexibility, solve_best_response
from transactive.errors import ValidationError


def random_flexibility(rng: np.random.Generator, t_n: int, n: int) -> Flexibility:
    """Virtual-battery-like devices: a baseline, power bounds around it, self-dissipation."""
    horizon = Horizon(start_s=0, period_s=1800, n_periods=t_n)
    capacity = rng.uniform(2.0, 10.0, n)
    p_up = rng.uniform(0.5, 4.0, n)
    p_down = rng.uniform(0.5, 4.0, n)
    shape = (t_n, n)
    return Flexibility(
        horizon=horizon,
        ids=np.array([f"d{i}" for i in range(n)]),
        baseline_kw=rng.uniform(0.0, 3.0, shape),
        power_min_kw=np.broadcast_to(-p_down, shape).copy(),
        power_max_kw=np.broadcast_to(p_up, shape).copy(),
        energy_min_kwh=np.broadcast_to(-capacity / 2, shape).copy(),
        energy_max_kwh=np.broadcast_to(capacity / 2, shape).copy(),
        initial_energy_kwh=rng.uniform(-0.2, 0.2, n) * capacity,
        retention=rng.uniform(0.9, 1.0, n),
        charge_efficiency=rng.uniform(0.8, 1.0, n),
        discharge_efficiency=rng.uniform(0.8, 1.0, n),
    )


def cvxpy_cost(flex: Flexibility, prices: np.ndarray, i: int) -> float:
    """Device i's cheapest cost, solved on its own with cvxpy (Clarabel)."""
    t_n, h = flex.horizon.n_periods, flex.horizon.period_h
    c, d, e = cp.Variable(t_n, nonneg=True), cp.Variable(t_n, nonneg=True), cp.Variable(t_n)
    pmin, pmax = flex.power_min_kw[:, i], flex.power_max_kw[:, i]
    stored = h * (flex.charge_efficiency[i] * c - d / flex.discharge_efficiency[i])
    r = flex.retention[i]
    constraints = [
        e[0] == r * flex.initial_energy_kwh[i] + stored[0],
        e[1:] == r * e[:-1] + stored[1:],
        c - d >= pmin,
        c - d <= pmax,
        c <= np.maximum(pmax, 0.0),  # each direction within its rating (the model's bounds)
        d <= np.maximum(-pmin, 0.0),
        e >= flex.energy_min_kwh[:, i],
        e <= flex.energy_max_kwh[:, i],
    ]
    power = flex.baseline_kw[:, i] + c - d
    problem = cp.Problem(cp.Minimize(h * prices[:, i] @ power), constraints)
    problem.solve(solver=cp.CLARABEL)  # type: ignore[no-untyped-call]
    return float(problem.value)


def check_constraints(flex: Flexibility, power: np.ndarray, energy: np.ndarray) -> None:
    tol = 1e-6
    net = power - flex.baseline_kw
    assert np.all(net >= flex.power_min_kw - tol) and np.all(net <= flex.power_max_kw + tol)
    assert np.all(energy >= flex.energy_min_kwh - tol)
    assert np.all(energy <= flex.energy_max_kwh + tol)
    h = flex.horizon.period_h
    previous = np.vstack([flex.initial_energy_kwh, energy[:-1]])
    charge, discharge = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    expected = flex.retention * previous + h * (
        flex.charge_efficiency * charge - discharge / flex.discharge_efficiency
    )
    # The schedule never charges and discharges at once where that would matter: the stored
    # energy is what its net power alone gives.
    np.testing.assert_allclose(energy, expected, atol=1e-6)


def test_matches_cvxpy_per_device_with_losses_baselines_and_per_device_prices() -> None:
    rng = np.random.default_rng(1)
    flex = random_flexibility(rng, t_n=24, n=15)
    prices = rng.uniform(-0.05, 0.4, (24, 15))  # negative prices included
    br = solve_best_response(flex, prices)
    expected = [cvxpy_cost(flex, prices, i) for i in range(flex.n_devices)]
    np.testing.assert_allclose(br.cost, expected, rtol=1e-5, atol=1e-5)
    h = flex.horizon.period_h
    np.testing.assert_allclose(br.cost, (prices * br.power_kw * h).sum(axis=0))
    assert br.flexibility is flex


def test_meets_every_constraint_with_one_price_for_all() -> None:
    rng = np.random.default_rng(2)
    flex = random_flexibility(rng, t_n=48, n=40)
    prices = 0.1 + 0.1 * np.sin(np.linspace(0, 4 * np.pi, 48))
    br = solve_best_response(flex, prices)
    assert br.power_kw.shape == (48, 40) and br.energy_kwh.shape == (48, 40)
    check_constraints(flex, br.power_kw, br.energy_kwh)


def test_ties_are_broken_the_same_way_whatever_the_device_order() -> None:
    rng = np.random.default_rng(3)
    flex = random_flexibility(rng, t_n=12, n=10)
    prices = np.repeat([0.1, 0.2, 0.1, 0.3], 3)  # many equal prices: many optimal schedules
    first = solve_best_response(flex, prices)
    again = solve_best_response(flex, prices)
    np.testing.assert_array_equal(first.power_kw, again.power_kw)
    order = rng.permutation(10)
    permuted = Flexibility(
        horizon=flex.horizon,
        ids=flex.ids[order],
        baseline_kw=flex.baseline_kw[:, order],
        power_min_kw=flex.power_min_kw[:, order],
        power_max_kw=flex.power_max_kw[:, order],
        energy_min_kwh=flex.energy_min_kwh[:, order],
        energy_max_kwh=flex.energy_max_kwh[:, order],
        initial_energy_kwh=flex.initial_energy_kwh[order],
        retention=flex.retention[order],
        charge_efficiency=flex.charge_efficiency[order],
        discharge_efficiency=flex.discharge_efficiency[order],
    )
    swapped = solve_best_response(permuted, prices)
    np.testing.assert_allclose(swapped.power_kw, first.power_kw[:, order], atol=1e-6)


def test_equal_prices_shift_load_to_the_earliest_period() -> None:
    """A pure energy need (a 3 kWh load to serve in 4 hours, 1 kW at most): all prices equal,
    the tie-break charges as early as it can."""
    horizon = Horizon(start_s=0, period_s=3600, n_periods=4)
    shape = (4, 1)
    flex = Flexibility(
        horizon=horizon,
        ids=np.array(["ev"]),
        baseline_kw=np.zeros(shape),
        power_min_kw=np.zeros(shape),
        power_max_kw=np.ones(shape),
        energy_min_kwh=np.array([[0.0], [0.0], [0.0], [3.0]]),
        energy_max_kwh=np.full(shape, 3.0),
        initial_energy_kwh=np.zeros(1),
        retention=np.ones(1),
        charge_efficiency=np.ones(1),
        discharge_efficiency=np.ones(1),
    )
    br = solve_best_response(flex, np.full(4, 0.2))
    np.testing.assert_allclose(br.power_kw[:, 0], [1.0, 1.0, 1.0, 0.0], atol=1e-9)
    assert br.cost[0] == pytest.approx(0.6)


def test_infeasible_devices_are_named_with_the_first_failing_period() -> None:
    rng = np.random.default_rng(4)
    flex = random_flexibility(rng, t_n=6, n=4)
    energy_min = flex.energy_min_kwh.copy()
    # d1 must hold more than its capacity at period 3; d3 cannot climb to its floor in time.
    energy_min[3, 1] = flex.energy_max_kwh[3, 1] + 1.0
    energy_max = flex.energy_max_kwh.copy()
    energy_min[0, 3] = flex.initial_energy_kwh[3] + 10.0 * flex.power_max_kw[0, 3]
    energy_max[0, 3] = energy_min[0, 3] + 1.0
    with pytest.raises(ValidationError):  # the constructor refuses min > max for d1
        Flexibility(**{**flex.__dict__, "energy_min_kwh": energy_min})
    energy_min[3, 1] = flex.energy_max_kwh[3, 1]
    energy_max[3, 1] = flex.energy_max_kwh[3, 1]
    energy_min[2, 1] = energy_max[2, 1] = flex.energy_min_kwh[2, 1]  # from the bottom to the top
    bad = Flexibility(
        **{**flex.__dict__, "energy_min_kwh": energy_min, "energy_max_kwh": energy_max}
    )
    with pytest.raises(ValidationError) as info:
        solve_best_response(bad, np.full(6, 0.1))
    named = {(p.index, p.reason) for p in info.value.problems}
    assert all(p.field == "flexibility" for p in info.value.problems)
    assert (("d3",), "no schedule meets these devices' energy bounds (first failing period 0)") in (
        named
    )
    assert any(index == ("d1",) and "period 3" in reason for index, reason in named)
    assert not any("d0" in index or "d2" in index for index, _ in named)


def test_bad_prices_are_refused() -> None:
    flex = random_flexibility(np.random.default_rng(5), t_n=4, n=3)
    with pytest.raises(ValidationError, match="shape"):
        solve_best_response(flex, np.ones(5))
    with pytest.raises(ValidationError, match="finite"):
        solve_best_response(flex, [0.1, np.nan, 0.1, 0.1])
