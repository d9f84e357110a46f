"""The iterative framework: stopping rules, faulty channels, records, step checks, EV fleets."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.devices import BatteryPopulation, EVPopulation, Horizon
from transactive.errors import ValidationError
from transactive.market.iterative import (
    Channel,
    CommsFaults,
    EvFleet,
    Recorder,
    StepSizeWarning,
    StoppingRule,
    checked_step_size,
    relative_gap,
)
from transactive.weather import WeatherSample


def test_stopping_rule_refuses_bad_values_all_at_once() -> None:
    with pytest.raises(ValidationError) as err:
        StoppingRule(tolerance=-1.0, max_rounds=0, min_rounds=True)
    text = str(err.value)
    assert "tolerance" in text and "max_rounds" in text and "min_rounds" in text
    with pytest.raises(ValidationError, match="exceeds max_rounds"):
        StoppingRule(max_rounds=3, min_rounds=5)


def test_stopping_rule_needs_both_residuals_and_min_rounds() -> None:
    rule = StoppingRule(tolerance=1e-3, max_rounds=10, min_rounds=2)
    assert not rule.met(1, 0.0, 0.0)
    assert rule.met(2, 1e-3, 1e-4)
    assert not rule.met(2, 1e-3, 2e-3)


def test_recorder_reports_a_run_cut_by_the_round_limit_as_not_converged() -> None:
    rule = StoppingRule(tolerance=1e-6, max_rounds=3)
    rec = Recorder("toy", rule)
    channel = Channel(CommsFaults(), 2)
    channel.register(np.zeros(4), np.zeros((4, 2)))
    stops = [rec.record(1.0 / k, 1.0 / k, float(k)) for k in (1, 2, 3)]
    assert stops == [False, False, True]
    result = rec.result(prices=np.zeros(4), schedules_kw=np.zeros((4, 2)), ids=["a", "b"],
                        channel=channel)  # fmt: skip
    assert not result.converged and result.stop_reason == "max_rounds"
    assert result.n_rounds == 3 and result.rounds_to(0.5) == 2
    # two registration messages each way per agent: one price of 4 numbers, one schedule of 4
    assert result.messages_per_agent == 2.0 and result.numbers_per_agent == 8.0


def test_perfect_channel_delivers_everything_in_its_round() -> None:
    channel = Channel(CommsFaults(), 3)
    channel.register(np.array([1.0, 2.0]), np.zeros((2, 3)))
    held = channel.prices_held(1, np.array([3.0, 4.0]))
    assert (held == 1).all()
    np.testing.assert_array_equal(channel.gather(held), np.tile([3.0, 4.0], (3, 1)))
    sched = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(channel.schedules_held(sched), sched)


def test_lost_schedules_keep_the_last_one_received() -> None:
    channel = Channel(CommsFaults(loss_probability=0.5, seed=3), 400)
    first = np.zeros((2, 400))
    channel.register(np.zeros(2), first)
    held = channel.schedules_held(np.ones((2, 400)))
    got = held[0] == 1.0
    assert 120 < got.sum() < 280  # about half arrived
    np.testing.assert_array_equal(held[:, ~got], 0.0)  # the rest kept registration's


def test_delayed_prices_arrive_late_and_the_newest_wins() -> None:
    faults = CommsFaults(max_delay_rounds=2, seed=1)
    channel = Channel(faults, 500)
    channel.register(np.zeros(1), np.zeros((1, 500)))
    ages = []
    for k in range(1, 30):
        held = channel.prices_held(k, np.array([float(k)]))
        assert (held <= k).all() and (held >= k - 2).all()  # never older than the delay allows
        prices = channel.gather(held)[:, 0]
        np.testing.assert_array_equal(prices, held.astype(float))
        ages.append(k - held)
    assert np.concatenate(ages).max() == 2 and np.mean(np.concatenate(ages)) < 1.0


def test_lost_prices_leave_agents_with_older_ones_and_rounds_must_follow() -> None:
    channel = Channel(CommsFaults(loss_probability=0.3, seed=5), 1000)
    channel.register(np.zeros(3), np.zeros((3, 1000)))
    held = channel.prices_held(1, np.ones(3))
    share_new = (held == 1).mean()
    assert 0.6 < share_new < 0.8
    with pytest.raises(ValueError, match="expected round 2"):
        channel.prices_held(3, np.ones(3))


def test_same_seed_same_faults() -> None:
    def run() -> np.ndarray:
        channel = Channel(CommsFaults(loss_probability=0.2, max_delay_rounds=1, seed=9), 50)
        channel.register(np.zeros(1), np.zeros((1, 50)))
        return np.stack([channel.prices_held(k, np.array([k])) for k in range(1, 6)])

    np.testing.assert_array_equal(run(), run())


def test_faults_refuse_bad_values() -> None:
    with pytest.raises(ValidationError) as err:
        CommsFaults(loss_probability=1.0, max_delay_rounds=-1)
    assert "loss_probability" in str(err.value) and "max_delay_rounds" in str(err.value)


def test_step_size_refused_or_warned_with_its_bound() -> None:
    assert checked_step_size("gamma", 0.5, upper=1.0) == 0.5
    with pytest.raises(ValidationError, match="gamma"):
        checked_step_size("gamma", -0.1)
    with pytest.raises(ValidationError, match=r"< 0\.001 \(1/\(N beta\)\)"):
        checked_step_size("gamma", 0.002, upper=1e-3, reference="1/(N beta)")
    with pytest.warns(StepSizeWarning, match="not guaranteed"):
        checked_step_size("rho", 5.0, upper=2.0, bound_is_necessary=False)


def test_relative_gap() -> None:
    assert relative_gap(101.0, 100.0) == pytest.approx(0.01)
    assert relative_gap(0.0, 0.0) == 0.0


# ---------------------------------------------------------------------------- EV fleet


def _fleet(rng: np.random.Generator, t: int, n: int) -> EvFleet:
    rate = rng.uniform(0.0, 7.0, (t, n)) * (rng.random((t, n)) < 0.7)
    energy = rng.uniform(0.0, 1.0, n) * rate.sum(axis=0) * 0.25
    return EvFleet(ids=np.array([f"ev-{i}" for i in range(n)]), rate_max_kw=rate,
                   energy_kwh=energy, period_h=0.25)  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.integers(1, 10), n=st.integers(1, 6))
def test_projection_is_the_nearest_feasible_schedule(seed: int, t: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    fleet = _fleet(rng, t, n)
    target = rng.normal(0.0, 4.0, (t, n))
    x = fleet.project(target)
    assert (x >= 0).all() and (x <= fleet.rate_max_kw).all()
    np.testing.assert_allclose(x.sum(axis=0) * fleet.period_h, fleet.energy_kwh, atol=1e-9)
    r = cp.Variable((t, n))
    cons = [r >= 0, r <= fleet.rate_max_kw, r.sum(axis=0) * fleet.period_h == fleet.energy_kwh]
    objective = cp.Minimize(cp.sum_squares(r - target))  # type: ignore[attr-defined]
    cp.Problem(objective, cons).solve(solver=cp.CLARABEL)  # type: ignore[no-untyped-call]
    # the projection is unique: our distance is the optimum's (to the solver's tolerance)
    ours = float(((x - target) ** 2).sum())
    assert r.value is not None
    assert ours <= float(((r.value - target) ** 2).sum()) + 1e-6 * max(1.0, ours)


def test_fleet_from_ev_population_and_infeasible_need_named() -> None:
    rng = np.random.default_rng(0)
    evs = EVPopulation.sample(20, rng)
    horizon = Horizon(start_s=12 * 3600, period_s=900, n_periods=96)
    weather = [WeatherSample(temperature_c=20.0)] * horizon.n_periods
    fleet = EvFleet.from_flexibility(evs.flexibility(horizon, weather))
    assert fleet.rate_max_kw.shape == (96, 20)
    # every EV that will be plugged in needs something it can get
    assert (fleet.energy_kwh <= fleet.rate_max_kw.sum(axis=0) * 0.25 + 1e-9).all()
    with pytest.raises(ValidationError, match=r"infeasible energy need.*ev-1"):
        EvFleet(ids=np.array(["ev-0", "ev-1"]), rate_max_kw=np.ones((4, 2)),
                energy_kwh=np.array([1.0, 5.0]), period_h=1.0)  # fmt: skip


def test_fleet_refuses_batteries() -> None:
    rng = np.random.default_rng(0)
    horizon = Horizon(start_s=0, period_s=3600, n_periods=4)
    weather = [WeatherSample(temperature_c=20.0)] * horizon.n_periods
    flex = BatteryPopulation.sample(3, rng).flexibility(horizon, weather)
    with pytest.raises(ValidationError, match="an EV only charges"):
        EvFleet.from_flexibility(flex)


def test_per_agent_prices_gather_each_agents_row_and_old_rounds_are_freed() -> None:
    channel = Channel(CommsFaults(max_delay_rounds=1, seed=2), 4)
    channel.register(np.tile(np.arange(4.0)[:, None], (1, 2)), None, per_agent=True)
    for k in range(1, 20):
        prices = np.full((4, 2), float(k)) + np.arange(4.0)[:, None]
        held = channel.prices_held(k, prices)
        got = channel.gather(held)
        np.testing.assert_array_equal(got[:, 0], held + np.arange(4.0))
    assert channel.price_history[0].size == 0  # long forgotten: no agent holds it
    # nothing goes up: registration without schedules counts only the prices
    assert channel.messages_up == 0
    with pytest.raises(RuntimeError, match="without schedules"):
        channel.schedules_held(np.zeros((2, 4)))


def test_zero_agents() -> None:
    channel = Channel(CommsFaults(loss_probability=0.1), 0)
    channel.register(np.zeros((0, 3)), np.zeros((3, 0)), per_agent=True)
    held = channel.prices_held(1, np.zeros((0, 3)))
    assert held.shape == (0,) and channel.gather(held).shape == (0, 3)


def test_projection_of_an_ev_that_needs_nothing_is_zero() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        rate = rng.uniform(0.0, 7.0, (24, 5))
        energy = np.array([0.0, 1.0, 0.0, 2.0, 0.0])
        fleet = EvFleet(ids=np.array([f"e{i}" for i in range(5)]), rate_max_kw=rate,
                        energy_kwh=energy, period_h=0.5)  # fmt: skip
        x = fleet.project(rng.normal(0.0, 5.0, (24, 5)))
        np.testing.assert_array_equal(x[:, energy == 0], 0.0)
        np.testing.assert_allclose(x.sum(axis=0) * 0.5, energy, atol=1e-9)
