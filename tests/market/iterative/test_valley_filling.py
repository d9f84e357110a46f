"""EV valley filling: Gan, Topcu & Low's protocol and Ma, Callaway & Hiskens' game.

References are independent of the iterations: the same problem solved in one piece by cvxpy
(Clarabel), the valley-filling level found by bisection on the base load alone (Gan et al.,
§III), each EV's cheapest schedule against the optimal total load (a greedy fill of its
cheapest periods), and :meth:`EvFleet.project` (sorted breakpoints) for the warm projection.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.devices.base import Horizon
from transactive.devices.ev import EVPopulation
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
from transactive.market.iterative.valley_filling import (
    centralized_valley_filling,
    gan_valley_filling,
    ma_callaway_hiskens,
    valley_objective_kw2,
    warm_projection,
)
from transactive.weather import WeatherSample

T_N = 48  # half-hour periods from noon to noon
PERIOD_S = 1800
RULE = StoppingRule(max_rounds=20_000)


def base_load(n_evs: int, t_n: int = T_N) -> npt.NDArray[np.float64]:
    """A household feeder's day from noon (kW): an evening peak and a night valley."""
    hour = 12.0 + np.arange(t_n) * 24.0 / t_n
    shape = (
        0.45
        + 0.35 * np.exp(-(((hour - 19.0) / 2.5) ** 2))
        - 0.2 * np.exp(-(((hour - 28.0) / 3.0) ** 2))
    )
    return np.asarray(shape * 1.2 * n_evs, dtype=np.float64)


def sampled_fleet(n: int, seed: int = 7) -> EvFleet:
    """EVPopulation.sample over a day from noon: plug-in windows, some EVs unplugged for hours."""
    pop = EVPopulation.sample(n, np.random.default_rng(seed))
    horizon = Horizon(start_s=12 * 3600, period_s=PERIOD_S, n_periods=T_N)
    return EvFleet.from_flexibility(pop.flexibility(horizon, [WeatherSample(12.0)] * T_N))


@pytest.fixture(scope="module")
def fleet() -> EvFleet:
    return sampled_fleet(40)


@pytest.fixture(scope="module")
def optimum(fleet: EvFleet) -> CentralizedOptimum:
    return centralized_valley_filling(fleet, base_load(fleet.n_evs))


def assert_feasible(fleet: EvFleet, schedules: npt.NDArray[np.float64]) -> None:
    """Every EV gets exactly its energy, within its rates (0 where unplugged)."""
    assert schedules.shape == fleet.rate_max_kw.shape
    assert (schedules >= 0.0).all()
    assert (schedules <= fleet.rate_max_kw).all()
    np.testing.assert_allclose(
        schedules.sum(axis=0) * fleet.period_h, fleet.energy_kwh, rtol=1e-9, atol=1e-9
    )


def cheapest_schedules(fleet: EvFleet, load_kw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each EV's cheapest schedule against ``load_kw``: its cheapest periods filled at full rate."""
    order = np.argsort(load_kw, kind="stable")
    rbar = fleet.rate_max_kw[order]
    need = fleet.energy_kwh / fleet.period_h
    before = np.cumsum(rbar, axis=0) - rbar
    filled = np.clip(need[None, :] - before, 0.0, rbar)
    out = np.empty_like(filled)
    out[order] = filled
    return out


def test_warm_projection_equals_the_fleets_exact_projection(fleet: EvFleet) -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(0.0, 5.0, fleet.rate_max_kw.shape)
    exact = fleet.project(target)
    cold, nu = warm_projection(fleet, target)
    np.testing.assert_allclose(cold, exact, atol=1e-9)
    # Warm from the multipliers of a nearby target, and from badly wrong ones.
    moved = target + rng.normal(0.0, 0.3, target.shape)
    warm, _ = warm_projection(fleet, moved, multipliers_kw=nu)
    np.testing.assert_allclose(warm, fleet.project(moved), atol=1e-9)
    wrong, _ = warm_projection(fleet, target, multipliers_kw=nu + rng.normal(0.0, 50.0, nu.shape))
    np.testing.assert_allclose(wrong, exact, atol=1e-9)


@settings(max_examples=40)
@given(
    t_n=st.integers(1, 12),
    n=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
    spread=st.sampled_from([0.01, 1.0, 100.0]),
)
def test_warm_projection_property(t_n: int, n: int, seed: int, spread: float) -> None:
    rng = np.random.default_rng(seed)
    rbar = rng.uniform(0.0, 11.0, (t_n, n)) * (rng.random((t_n, n)) > 0.3)
    share = rng.uniform(0.0, 1.0, n)
    share[rng.random(n) < 0.2] = 1.0  # some EVs need their whole box
    energy = rbar.sum(axis=0) * 0.5 * share
    ids = np.array([f"ev-{i}" for i in range(n)])
    fleet = EvFleet(ids=ids, rate_max_kw=rbar, energy_kwh=energy, period_h=0.5)
    target = rng.normal(0.0, spread, (t_n, n))
    x, _ = warm_projection(fleet, target, multipliers_kw=rng.normal(0.0, spread, n))
    assert_feasible(fleet, x)
    positive = energy > 0  # EvFleet.project is the reference where the need is positive
    np.testing.assert_allclose(
        x[:, positive], fleet.project(target)[:, positive], atol=1e-9 * max(1.0, spread)
    )
    assert (x[:, ~positive] == 0.0).all()


def test_gan_converges_to_the_centralized_optimum(
    fleet: EvFleet, optimum: CentralizedOptimum
) -> None:
    base = base_load(fleet.n_evs)
    result = gan_valley_filling(fleet, base, rule=RULE)
    assert isinstance(result, IterativeResult)
    assert result.converged and result.stop_reason == "tolerance"
    gap = relative_gap(result.objective[-1], optimum)
    assert -1e-7 < gap < 1e-4
    assert_feasible(fleet, result.schedules_kw)
    assert_feasible(fleet, optimum.schedules_kw)
    # The optimal total load is unique (U strictly convex): ours is the solver's, to 0.5 % of
    # the peak (periods where few EVs are plugged in move slowest: observed 0.36 % there).
    total = result.extra["total_load_kw"]
    np.testing.assert_allclose(total, base + result.schedules_kw.sum(axis=1))
    assert optimum.prices is not None
    assert np.abs(total - optimum.prices).max() < 5e-3 * optimum.prices.max()
    assert np.median(np.abs(total - optimum.prices)) < 5e-4 * optimum.prices.max()
    # EVs' splits are not unique; each EV's schedule is (nearly) its cheapest against that load.
    cheapest = cheapest_schedules(fleet, optimum.prices)
    excess = optimum.prices @ (result.schedules_kw - cheapest)  # >= 0 per EV
    assert (excess >= -1e-6).all()
    assert excess.sum() / optimum.objective < 1e-3
    # The broadcast price is gamma U'(D + sum r); the default gamma is 0.9 of 1/N.
    assert result.extra["gamma"][0] == pytest.approx(0.9 / fleet.n_evs)
    np.testing.assert_allclose(result.prices, result.extra["gamma"][0] * total)
    assert list(result.ids) == list(fleet.ids)
    assert result.objective[-1] == pytest.approx(valley_objective_kw2(base, result.schedules_kw))
    # Registration (T numbers each way), then per round a schedule up and, from round 2 on
    # (round 1 steps on the registered price), a price down: T numbers each.
    assert result.numbers_per_agent == pytest.approx(T_N * (2 * result.n_rounds + 1))


@pytest.mark.parametrize("delay", [2, 3])
def test_gan_asynchronous_with_stale_prices_still_converges(
    fleet: EvFleet, optimum: CentralizedOptimum, delay: int
) -> None:
    base = base_load(fleet.n_evs)
    faults = CommsFaults(max_delay_rounds=delay, seed=delay)
    result = gan_valley_filling(fleet, base, rule=RULE, faults=faults)
    assert result.converged
    assert relative_gap(result.objective[-1], optimum) < 1e-4
    assert_feasible(fleet, result.schedules_kw)
    bound = 1.0 / ((3 * delay + 1) * fleet.n_evs)  # the asynchronous theorem's bound
    assert result.extra["gamma_bound"][0] == pytest.approx(bound)
    assert result.extra["gamma"][0] == pytest.approx(0.9 * bound)
    sync = gan_valley_filling(fleet, base, rule=RULE)
    assert result.n_rounds > sync.n_rounds  # the smaller step costs rounds


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_gan_with_lost_messages_still_converges(
    fleet: EvFleet, optimum: CentralizedOptimum, loss: float
) -> None:
    base = base_load(fleet.n_evs)
    result = gan_valley_filling(fleet, base, rule=RULE, faults=CommsFaults(loss_probability=loss))
    assert result.converged
    assert relative_gap(result.objective[-1], optimum) < 1e-4
    assert_feasible(fleet, result.schedules_kw)  # what the utility holds: older, still feasible
    again = gan_valley_filling(fleet, base, rule=RULE, faults=CommsFaults(loss_probability=loss))
    np.testing.assert_array_equal(again.schedules_kw, result.schedules_kw)  # same seed, same run


def fill_level(base: npt.NDArray[np.float64], window: slice, energy_kw_periods: float) -> float:
    """The level L with sum over the window of max(L - D, 0) = the energy (bisection)."""
    lo, hi = float(base[window].min()), float(base[window].max()) + energy_kw_periods
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(mid - base[window], 0.0).sum() > energy_kw_periods:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def test_valley_filling_flattens_the_total_load_below_the_fill_level() -> None:
    """Gan et al., §III: where the base load is below the level, the total load is flat."""
    n, t_n = 30, 24
    rng = np.random.default_rng(11)
    base = 50.0 + 30.0 * np.cos(np.linspace(0.0, 2.0 * np.pi, t_n))  # a valley mid-horizon
    window = slice(4, 20)
    rbar = np.zeros((t_n, n))
    rbar[window] = rng.uniform(6.0, 11.0, n)  # all plugged in the window, rates never binding
    energy = rng.uniform(3.0, 8.0, n)
    fleet = EvFleet(
        ids=np.array([f"ev-{i}" for i in range(n)]), rate_max_kw=rbar, energy_kwh=energy,
        period_h=1.0,
    )  # fmt: skip
    level = fill_level(base, window, float(energy.sum()))
    result = gan_valley_filling(fleet, base, rule=StoppingRule(tolerance=1e-6, max_rounds=5000))
    total = result.extra["total_load_kw"]
    below = np.zeros(t_n, dtype=bool)
    below[window] = base[window] < level - 1e-6
    assert below.sum() >= 4
    np.testing.assert_allclose(total[below], level, rtol=1e-4)
    above = ~below
    np.testing.assert_allclose(total[above], base[above], atol=1e-3)  # no EV charges there


def test_ma_callaway_hiskens_homogeneous_fleet_is_valley_filling() -> None:
    n = 25
    one = sampled_fleet(1, seed=3)
    fleet = EvFleet(
        ids=np.array([f"ev-{i}" for i in range(n)]),
        rate_max_kw=np.repeat(one.rate_max_kw, n, axis=1),
        energy_kwh=np.repeat(one.energy_kwh, n),
        period_h=one.period_h,
    )
    base = base_load(n)
    optimum = centralized_valley_filling(fleet, base)
    result = ma_callaway_hiskens(
        fleet, base, price_slope=2e-3, rule=StoppingRule(tolerance=1e-8, max_rounds=500)
    )
    assert result.converged
    assert abs(relative_gap(result.objective[-1], optimum)) < 1e-6
    assert_feasible(fleet, result.schedules_kw)
    assert result.extra["tracking_weight"][0] == pytest.approx(0.75 * n * 2e-3)
    np.testing.assert_allclose(result.prices, 2e-3 * result.extra["total_load_kw"])


def test_ma_callaway_hiskens_heterogeneous_fleet_is_close(
    fleet: EvFleet, optimum: CentralizedOptimum
) -> None:
    base = base_load(fleet.n_evs)
    result = ma_callaway_hiskens(fleet, base, price_slope=1e-3, rule=RULE)
    assert result.converged
    assert_feasible(fleet, result.schedules_kw)
    gap = relative_gap(result.objective[-1], optimum)
    # A Nash equilibrium of vehicles tracking the average, not the optimum: observed 2.5 % here.
    assert 0.0 < gap < 0.05
    # It is a fixed point: every vehicle best-responds to the final broadcast.
    delta = result.extra["tracking_weight"][0]
    response = fleet.project(
        np.broadcast_to(
            (result.extra["average_kw"] - result.prices / (2.0 * delta))[:, None],
            fleet.rate_max_kw.shape,
        )
    )
    np.testing.assert_allclose(response, result.schedules_kw, atol=1e-3)
    faulty = ma_callaway_hiskens(
        fleet, base, price_slope=1e-3, rule=RULE, faults=CommsFaults(0.3, max_delay_rounds=2)
    )
    assert faulty.converged
    assert abs(faulty.objective[-1] - result.objective[-1]) / result.objective[-1] < 1e-3


def test_bad_parameters_are_refused(fleet: EvFleet) -> None:
    base = base_load(fleet.n_evs)
    n = fleet.n_evs
    for gamma in (0.0, -1.0, float("nan")):
        with pytest.raises(ValidationError, match="gamma"):
            gan_valley_filling(fleet, base, gamma=gamma)
    with pytest.raises(ValidationError, match=r"gamma: must be < 0\.025.*1/\(N beta\)"):
        gan_valley_filling(fleet, base, gamma=1.0 / n)
    with pytest.warns(StepSizeWarning, match=r"3d \+ 1"):
        gan_valley_filling(
            fleet, base, gamma=0.5 / n, faults=CommsFaults(max_delay_rounds=2),
            rule=StoppingRule(max_rounds=3),
        )  # fmt: skip
    with pytest.raises(ValidationError, match="tracking_weight"):
        ma_callaway_hiskens(fleet, base, price_slope=1e-3, tracking_weight=-1.0)
    with pytest.raises(ValidationError, match="price_slope"):
        ma_callaway_hiskens(fleet, base, price_slope=0.0)
    with pytest.raises(ValidationError, match="N price_slope / 2"):
        ma_callaway_hiskens(fleet, base, price_slope=1e-3, tracking_weight=0.4 * n * 1e-3)
    with pytest.warns(StepSizeWarning, match="tracking_weight < N price_slope"):
        ma_callaway_hiskens(
            fleet, base, price_slope=1e-3, tracking_weight=1.5 * n * 1e-3,
            rule=StoppingRule(max_rounds=3),
        )  # fmt: skip


def test_bad_shapes_and_values_are_refused(fleet: EvFleet) -> None:
    base = base_load(fleet.n_evs)
    with pytest.raises(ValidationError, match=r"base_load_kw: must have shape \(T,\)"):
        gan_valley_filling(fleet, np.vstack([base, base]))
    with pytest.raises(ValidationError, match="T = 48"):
        centralized_valley_filling(fleet, base[:-1])
    broken = base.copy()
    broken[[3, 7]] = [np.nan, np.inf]
    with pytest.raises(ValidationError, match=r"base_load_kw: not finite \(entries 3, 7\)"):
        ma_callaway_hiskens(fleet, broken, price_slope=1e-3)
    with pytest.raises(ValidationError, match="initial_kw: must have shape"):
        gan_valley_filling(fleet, base, initial_kw=np.zeros((T_N, 3)))
    start = fleet.project(np.zeros(fleet.rate_max_kw.shape))
    start[:, 5] *= 0.5  # EV 5 no longer gets its energy
    with pytest.raises(ValidationError, match=rf"energy_kwh \(entry {fleet.ids[5]}\)"):
        gan_valley_filling(fleet, base, initial_kw=start)


def test_an_infeasible_energy_need_names_the_ev() -> None:
    rbar = np.full((4, 2), 3.0)
    with pytest.raises(ValidationError, match=r"infeasible energy need.*\(entry car-b\)"):
        EvFleet(
            ids=np.array(["car-a", "car-b"]), rate_max_kw=rbar, energy_kwh=np.array([5.0, 13.0]),
            period_h=1.0,
        )  # fmt: skip


def test_end_to_end_from_an_ev_population() -> None:
    pop = EVPopulation.sample(30, np.random.default_rng(21))
    horizon = Horizon(start_s=12 * 3600, period_s=900, n_periods=96)
    flex = pop.flexibility(horizon, [WeatherSample(5.0)] * horizon.n_periods)
    fleet = EvFleet.from_flexibility(flex)
    base = base_load(30, t_n=96)
    result = gan_valley_filling(fleet, base)
    optimum = centralized_valley_filling(fleet, base)
    assert result.converged
    assert relative_gap(result.objective[-1], optimum) < 1e-4
    assert list(result.ids) == list(pop.ids)
    assert_feasible(fleet, result.schedules_kw)
    # Grid energy times efficiency is what each EV needed (all leave before the horizon ends).
    delivered = result.schedules_kw.sum(axis=0) * horizon.period_h * pop.efficiency
    np.testing.assert_allclose(delivered, pop.energy_needed_kwh, rtol=1e-9)
    # Charging moved out of the evening peak into the night.
    evening = slice(20, 36)  # 17:00 to 21:00
    night = slice(52, 72)  # 01:00 to 06:00
    assert result.schedules_kw[evening].sum() < result.schedules_kw[night].sum()


def test_the_centralized_prices_are_the_marginal_cost_of_load(
    fleet: EvFleet, optimum: CentralizedOptimum
) -> None:
    base = base_load(fleet.n_evs)
    assert optimum.prices is not None
    np.testing.assert_allclose(optimum.prices, base + optimum.schedules_kw.sum(axis=1))
    assert optimum.objective == pytest.approx(valley_objective_kw2(base, optimum.schedules_kw))
    assert optimum.solver.startswith("CLARABEL")
    assert optimum.solve_time_s >= 0.0
