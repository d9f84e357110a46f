"""Sorin, Bobo & Pinson's RCI against the centralized MBED solved by cvxpy (Clarabel).

The reference is independent of the iteration: one cvxpy problem with a variable per ordered
pair, the reciprocity constraints explicit (their duals the pair prices), ``|x|`` as cvxpy's
``abs``. Each agent's exact RCI step is also checked against cvxpy on the same step.
"""

from __future__ import annotations

from typing import Any

import cvxpy
import numpy as np
import numpy.typing as npt
import pytest

from transactive.errors import ValidationError
from transactive.market.iterative import StoppingRule, relative_gap
from transactive.market.p2p import (
    BilateralMarket,
    centralized_bilateral,
    differentiation_costs,
    relaxed_consensus_innovation,
)
from transactive.market.p2p.bilateral import _LocalProblems

cp: Any = cvxpy  # cvxpy's namespace is only partly typed


def market_of(*columns: object) -> BilateralMarket:
    """A market from plain lists (the constructor converts and checks them)."""
    return BilateralMarket(*[np.asarray(c) for c in columns])


TIGHT = StoppingRule(tolerance=1e-8, max_rounds=50_000)


def random_market(n: int, seed: int, *, prosumers: bool = True) -> BilateralMarket:
    """Producers (40 %), consumers and some prosumers; preferences from distance."""
    rng = np.random.default_rng(seed)
    producer = rng.random(n) < 0.4
    a = rng.uniform(0.005, 0.05, n)
    beta = np.where(producer, rng.uniform(0.05, 0.15, n), rng.uniform(0.2, 0.4, n))
    p_min = np.where(producer, -rng.uniform(2.0, 10.0, n), rng.uniform(0.0, 1.0, n))
    p_max = np.where(producer, 0.0, p_min + rng.uniform(1.0, 8.0, n))
    if prosumers:
        both = rng.random(n) < 0.2
        p_min, p_max = np.where(both, -3.0, p_min), np.where(both, 3.0, p_max)
    xy = rng.uniform(0.0, 2.0, (n, 2))
    distance = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    c = differentiation_costs(distance, per_km_per_kwh=rng.uniform(0.0, 0.02, n))
    ids = [f"a{i}" for i in range(n)]
    for _attempt in range(50):  # a random partner graph (80 % of pairs) in which all can balance
        partners = ~np.eye(n, dtype=bool) & (rng.random((n, n)) < 0.8)
        partners = partners & partners.T
        try:
            return market_of(ids, a, beta, p_min, p_max, c, partners)
        except ValidationError:
            continue
    return market_of(ids, a, beta, p_min, p_max, c, ~np.eye(n, dtype=bool))


@pytest.mark.parametrize(("n", "seed"), [(4, 0), (8, 1), (15, 2), (25, 3), (30, 4)])
def test_rci_converges_to_the_centralized_optimum(n: int, seed: int) -> None:
    market = random_market(n, seed, prosumers=seed % 2 == 0)
    result = relaxed_consensus_innovation(
        market, rho_per_kw=float(np.median(market.cost_quadratic_per_kw2h)), rule=TIGHT
    )
    optimum = centralized_bilateral(market)
    assert result.converged and result.rounds < TIGHT.max_rounds
    assert abs(relative_gap(result.cost_per_h[-1], optimum.cost_per_h)) < 1e-6
    np.testing.assert_allclose(result.power_kw, optimum.power_kw, atol=1e-5)
    np.testing.assert_allclose(result.agreed_trades_kw, optimum.trades_kw, atol=1e-4)
    # reciprocity at convergence: what n buys from m, m sells to n
    x = result.trades_kw
    assert np.abs(x + x.T).max() <= 1e-8
    np.testing.assert_array_equal(result.agreed_trades_kw, -result.agreed_trades_kw.T)
    assert not (x[~market.partners]).any()
    # prices: one per pair, the buyer's marginal value less its preference on interior trades
    lam = result.prices_per_kwh
    np.testing.assert_array_equal(lam, lam.T)
    trading = np.abs(optimum.trades_kw) > 1e-3
    np.testing.assert_allclose(lam[trading], optimum.prices_per_kwh[trading], atol=1e-5)
    lo, hi = market.trade_bounds_kw()
    p = result.power_kw
    interior = (
        (result.agreed_trades_kw > 1e-3)
        & (result.agreed_trades_kw < hi - 1e-3)
        & ((p > market.power_min_kw + 1e-3) & (p < market.power_max_kw - 1e-3))[:, None]
    )
    value = market.marginal_value_per_kwh - market.cost_quadratic_per_kw2h * p
    expected = value[:, None] - market.differentiation_per_kwh
    np.testing.assert_allclose(lam[interior], expected[interior], atol=1e-5)
    # every trade within its bounds, every agent within its own
    assert (x >= lo - 1e-12).all() and (x <= hi + 1e-12).all()
    assert (p >= market.power_min_kw - 1e-6).all() and (p <= market.power_max_kw + 1e-6).all()


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_each_agents_step_is_its_exact_optimum(seed: int) -> None:
    market = random_market(9, seed)
    rng = np.random.default_rng(seed)
    rho = 0.03
    lo, hi = market.trade_bounds_kw()
    z = rng.normal(0.0, 2.0, (9, 9))
    z = np.clip(0.5 * (z - z.T), lo, hi)
    lam = np.where(market.partners, rng.uniform(0.0, 0.5, (9, 9)), 0.0)
    lam = 0.5 * (lam + lam.T)
    ours = _LocalProblems(market, rho, lo, hi).solve(z, lam)
    for n in range(9):
        x = cp.Variable(9)
        p = cp.sum(x)
        c = market.differentiation_per_kwh[n]
        objective = (
            0.5 * market.cost_quadratic_per_kw2h[n] * cp.square(p)
            - market.marginal_value_per_kwh[n] * p
            + c @ cp.abs(x)
            + lam[n] @ x
            + 0.5 * rho * cp.sum_squares(x - z[n])
        )
        constraints = [
            x >= lo[n],
            x <= hi[n],
            p >= market.power_min_kw[n],
            p <= market.power_max_kw[n],
        ]
        cp.Problem(cp.Minimize(objective), constraints).solve(solver=cp.CLARABEL)
        np.testing.assert_allclose(ours[n], np.asarray(x.value), atol=1e-6)


def three_agents(c: npt.NDArray[np.float64]) -> BilateralMarket:
    """Consumer 0 and two identical producers 1 and 2."""
    return market_of(
        ["home", "near", "far"],
        [0.02, 0.04, 0.04],
        [0.30, 0.10, 0.10],
        [0.0, -10.0, -10.0],
        [10.0, 0.0, 0.0],
        c,
        ~np.eye(3, dtype=bool),
    )


def test_preferences_shift_trades_toward_preferred_counterparties() -> None:
    rule = StoppingRule(tolerance=1e-9, max_rounds=20_000)
    plain = relaxed_consensus_innovation(three_agents(np.zeros((3, 3))), rho_per_kw=0.03, rule=rule)
    # by hand: the home's marginal value v = 0.3 - 0.02 P equals each producer's 0.1 + 0.04 G
    # (plus the home's preference cost); indifferent, v = 0.2 and each producer sells 2.5 kW
    x = plain.agreed_trades_kw
    np.testing.assert_allclose([x[0, 1], x[0, 2]], [2.5, 2.5], atol=1e-6)
    distance = np.array([[0.0, 0.2, 3.0], [0.2, 0.0, 3.0], [3.0, 3.0, 0.0]])
    c = differentiation_costs(distance, per_km_per_kwh=[0.02, 0.0, 0.0])
    near = relaxed_consensus_innovation(three_agents(c), rho_per_kw=0.03, rule=rule)
    # preferences 0.004 (0.2 km) and 0.06 (3 km): v = 0.216, G_near = 2.8 kW, G_far = 1.4 kW,
    # at prices 0.1 + 0.04 G: the near seller earns 0.212, the far one 0.156
    y = near.agreed_trades_kw
    np.testing.assert_allclose([y[0, 1], y[0, 2]], [2.8, 1.4], atol=1e-6)
    np.testing.assert_allclose(
        [near.prices_per_kwh[0, 1], near.prices_per_kwh[0, 2]], [0.212, 0.156], atol=1e-8
    )
    # a PV preference: the far producer is PV, non-PV energy costs the home 0.05 per kWh more
    green = differentiation_costs(
        distance,
        per_km_per_kwh=[0.02, 0.0, 0.0],
        pv_origin=np.array([False, False, True]),
        non_pv_per_kwh=[0.05, 0.0, 0.0],
    )
    pv = relaxed_consensus_innovation(three_agents(green), rho_per_kw=0.03, rule=rule)
    # preferences 0.054 (near, not PV) and 0.06 (far, PV): v = 0.2285, 1.8625 and 1.7125 kW
    np.testing.assert_allclose(
        [pv.agreed_trades_kw[0, 1], pv.agreed_trades_kw[0, 2]], [1.8625, 1.7125], atol=1e-6
    )
    for result, costs in ((near, c), (pv, green)):
        optimum = centralized_bilateral(three_agents(costs))
        np.testing.assert_allclose(result.agreed_trades_kw, optimum.trades_kw, atol=1e-5)


def test_the_round_limit_is_reported_as_not_converged() -> None:
    market = random_market(10, 8)
    result = relaxed_consensus_innovation(
        market, rho_per_kw=0.02, rule=StoppingRule(tolerance=1e-12, max_rounds=5)
    )
    assert not result.converged and result.rounds == 5
    assert result.primal_residual_kw.shape == result.dual_residual_kw.shape == (5,)


def test_bad_markets_are_refused_naming_the_agents() -> None:
    good = three_agents(np.zeros((3, 3)))
    with pytest.raises(ValidationError) as info:
        market_of(
            ["a", "b", "c"],
            [0.02, 0.0, 0.04],
            [0.3, np.nan, 0.1],
            [0.0, -1.0, 1.0],
            [1.0, 0.0, 0.5],
            -np.ones((3, 3)),
            np.array([[False, True, False], [False, False, True], [False, True, False]]),
        )
    fields = {p.field for p in info.value.problems}
    assert fields == {
        "cost_quadratic_per_kw2h",
        "marginal_value_per_kwh",
        "power_max_kw",
        "differentiation_per_kwh",
        "partners",
    }
    assert "b" in str(info.value)
    # two consumers who may only trade with each other cannot balance
    with pytest.raises(ValidationError, match="cannot balance") as info:
        market_of(
            ["home", "near", "far"],
            good.cost_quadratic_per_kw2h,
            good.marginal_value_per_kwh,
            [1.0, 1.0, -10.0],
            [2.0, 2.0, 0.0],
            np.zeros((3, 3)),
            np.array([[False, True, False], [True, False, False], [False, False, False]]),
        )
    assert info.value.problems[0].index == ("home", "near")
    with pytest.raises(ValidationError, match="rho_per_kw"):
        relaxed_consensus_innovation(good, rho_per_kw=0.0)
    with pytest.raises(ValidationError, match="distance_km"):
        differentiation_costs(np.ones(3), per_km_per_kwh=0.01)
