"""The two-mode TCL battery (its theorem checked on the exact ETP model) and the horizon view."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm

from transactive.devices.base import Horizon
from transactive.devices.flexibility import Flexibility, FlexiblePopulation
from transactive.devices.hvac import COOLING, HEATING, HvacPopulation
from transactive.devices.tcl_battery import hvac_batteries
from transactive.errors import ValidationError
from transactive.prosumer.virtual_battery import follow_schedule
from transactive.weather import WeatherSample

HOT = WeatherSample(32.0, ghi_w_per_m2=300.0)
COLD = WeatherSample(-3.0)


def etp_matrices(pop: HvacPopulation, i: int, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """The linear ETP model of house i in deviations (A in 1/s, B in K/s per electric kW)."""
    ua, hm = pop.ua_kw_per_k[i], pop.mass_coupling_kw_per_k[i]
    ca, cm = pop.air_capacity_kj_per_k[i], pop.mass_capacity_kj_per_k[i]
    a = np.array([[-(ua + hm) / ca, hm / ca], [hm / cm, -hm / cm]])
    return a, np.array([eta / ca, 0.0])


def flow(a: np.ndarray, b: np.ndarray, xi: np.ndarray, u: float, t: float) -> np.ndarray:
    """Exact state after t seconds of constant u (augmented matrix exponential)."""
    m = np.zeros((3, 3))
    m[:2, :2], m[:2, 2] = a, b
    out: np.ndarray = (expm(m * t) @ np.array([xi[0], xi[1], u]))[:2]
    return out


def flow_many(a: np.ndarray, b: np.ndarray, xi: np.ndarray, u: float, t: np.ndarray) -> np.ndarray:
    """Exact states at times t (rows) of constant u, by numpy's eigendecomposition of A."""
    rates, vecs = np.linalg.eig(a)
    rest = -np.linalg.solve(a, b * u)
    modes = np.linalg.solve(vecs, xi - rest)
    out: np.ndarray = rest + (vecs @ (modes[:, None] * np.exp(np.outer(rates, t)))).T.real
    return out


def test_slow_state_is_an_exact_leaky_integrator_of_the_two_node_house():
    pop = HvacPopulation.sample(6, np.random.default_rng(0))
    b = hvac_batteries(pop, HOT)
    rng = np.random.default_rng(1)
    for i in range(6):
        a_mat, b_vec = etp_matrices(pop, i, b.efficiency[i])
        xi0 = rng.normal(0.0, 0.5, 2)
        u = rng.uniform(b.power_min_kw[i], b.power_max_kw[i])
        rate = b.dissipation_per_s[i]
        np.testing.assert_allclose(rate, -np.max(np.linalg.eigvals(a_mat).real), rtol=1e-9)

        def state(xi: np.ndarray, i: int = i) -> float:
            # temperatures from deviations: Ta = θr - d ξa, Tm = Tm_ref - d ξm
            d = b.direction[i]
            return float(
                b.stored_energy_kwh(b.setpoint_c - d * xi[0], b.mass_reference_c - d * xi[1])[i]
            )

        x0 = state(xi0)
        for t in (60.0, 900.0, 7200.0):
            x = state(flow(a_mat, b_vec, xi0, u, t))
            expected = x0 * np.exp(-rate * t) + u * -np.expm1(-rate * t) / rate / 3600.0
            np.testing.assert_allclose(x, expected, rtol=1e-9, atol=1e-12)
    # the steady-state gain splits between the modes: g_s / a + F = η / UA
    np.testing.assert_allclose(
        b.slow_air_k_per_kwh / 3600.0 / b.dissipation_per_s + b.fast_air_k_per_kw,
        b.efficiency / pop.ua_kw_per_k,
        rtol=1e-9,
    )


def test_hao_first_order_capacity_lets_the_air_leave_its_band():
    """Why the one-node battery is not sufficient: switched off from rest, every house's air
    leaves its band while the one-node state is still inside ``±C Δ/η``."""
    pop = HvacPopulation.sample(20, np.random.default_rng(2))
    b = hvac_batteries(pop, HOT)
    leaves = []
    for i in range(20):
        a_mat, b_vec = etp_matrices(pop, i, b.efficiency[i])
        u, rate = b.power_min_kw[i], b.dissipation_per_s[i]  # all off, Hao's lower power limit
        t_full = -np.log1p(b.energy_capacity_kwh[i] * 3600.0 * rate / u) / rate  # x = -CΔ/η
        down = np.where(b.direction[i] > 0, pop.comfort_max_c[i] - b.setpoint_c[i], 0.0)
        times = np.linspace(0.0, t_full, 201)
        air = -flow_many(a_mat, b_vec, np.zeros(2), u, times)[:, 0]
        assert air[-1] > down  # past Tmax when the one-node state reaches -C Δ/η
        leaves.append(times[np.argmax(air > down)] / t_full)
    # ... and most of them long before: at a third to nine tenths of it
    assert min(leaves) > 0.25 and max(leaves) < 0.95 and np.median(leaves) < 0.8


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    heating=st.booleans(),
    fast_share=st.floats(0.05, 0.9),
    levels=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=12),
    period_s=st.sampled_from([60.0, 300.0, 1800.0]),
)
def test_any_signal_inside_the_two_mode_battery_keeps_the_air_in_band(
    seed, heating, fast_share, levels, period_s
):
    """The theorem of ``tcl_battery``, on the exact ETP model: a piecewise-constant deviation
    inside the held power limits whose state stays inside the energy limits keeps the air inside
    the band at every instant (sampled 20 times a period)."""
    mode, weather = (HEATING, COLD) if heating else (COOLING, HOT)
    pop = HvacPopulation.sample(1, np.random.default_rng(seed), mode=mode)
    b = hvac_batteries(pop, weather, fast_share=fast_share)
    a_mat, b_vec = etp_matrices(pop, 0, b.efficiency[0])
    rate = b.dissipation_per_s[0]
    decay = np.exp(-rate * period_s)
    gain = -np.expm1(-rate * period_s) / rate / 3600.0
    lo_c = b.setpoint_c[0] - pop.comfort_min_c[0]
    hi_c = pop.comfort_max_c[0] - b.setpoint_c[0]
    up, down = (lo_c, hi_c) if mode == COOLING else (hi_c, lo_c)
    xi, x = np.zeros(2), 0.0
    for level in levels + levels[::-1]:
        u_lo = max(b.held_power_min_kw[0], (b.energy_min_kwh[0] - decay * x) / gain)
        u_hi = min(b.held_power_max_kw[0], (b.energy_max_kwh[0] - decay * x) / gain)
        u = u_lo + level * (u_hi - u_lo)
        states = flow_many(a_mat, b_vec, xi, u, period_s * np.arange(1, 21) / 20)
        assert (states[:, 0] >= -down - 1e-9).all() and (states[:, 0] <= up + 1e-9).all()
        xi = states[-1]
        x = decay * x + gain * u


def settled(n: int, mode: int, weather: WeatherSample, seed: int) -> tuple[HvacPopulation, int]:
    pop = HvacPopulation.sample(n, np.random.default_rng(seed), mode=mode)
    t = 0
    for _ in range(180):
        pop.step(t, 60, weather)
        t += 60
    return pop, t


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_flexibility_is_the_per_house_battery_over_the_horizon(mode):
    weather = HOT if mode == COOLING else COLD
    pop, t = settled(50, mode, weather, seed=3)
    ramp = [WeatherSample(weather.temperature_c + 0.5 * k, ghi_w_per_m2=0.0) for k in range(6)]
    horizon = Horizon(t, 900, 6)
    state = (pop.air_temperature_c.copy(), pop.mass_temperature_c.copy(), pop.on.copy())
    flex = pop.flexibility(horizon, ramp)
    assert isinstance(pop, FlexiblePopulation)
    assert isinstance(flex, Flexibility)
    assert flex.baseline_kw.shape == (6, 50) and list(flex.ids) == list(pop.ids)
    for k, w in enumerate(ramp):
        b = hvac_batteries(pop, w)
        np.testing.assert_allclose(flex.baseline_kw[k], b.baseline_kw)
        np.testing.assert_allclose(flex.power_min_kw[k], b.held_power_min_kw)
        np.testing.assert_allclose(flex.power_max_kw[k], b.held_power_max_kw)
    # a warmer period needs more cooling and less heating
    trend = np.diff(flex.baseline_kw.sum(axis=1))
    assert (trend > 0).all() if mode == COOLING else (trend < 0).all()
    assert (flex.power_min_kw <= 0).all() and (flex.power_max_kw >= 0).all()
    assert (flex.energy_min_kwh < 0).all() and (flex.energy_max_kwh > 0).all()
    first = hvac_batteries(pop, ramp[0])
    np.testing.assert_allclose(flex.retention, 1.0 - first.dissipation_per_s * 900.0)
    np.testing.assert_allclose(
        flex.initial_energy_kwh,
        first.stored_energy_kwh(pop.air_temperature_c, pop.mass_temperature_c),
    )
    # settled houses start inside their bounds
    assert (flex.initial_energy_kwh >= flex.energy_min_kwh[0]).all()
    assert (flex.initial_energy_kwh <= flex.energy_max_kwh[0]).all()
    now = (pop.air_temperature_c, pop.mass_temperature_c, pop.on)
    for before, after in zip(state, now, strict=True):
        np.testing.assert_array_equal(before, after)


def test_flexibility_baseline_is_the_thermostat_average():
    pop = HvacPopulation.sample(200, np.random.default_rng(4))
    weather = WeatherSample(32.0)
    flex = pop.flexibility(Horizon(0, 3600, 1), [weather])
    power = [pop.step(120 * k, 120, weather).power_kw.sum() for k in range(3 * 90)]
    np.testing.assert_allclose(np.mean(power[60:]), flex.baseline_kw.sum(), rtol=0.05)


def check_schedule(best, flex: Flexibility) -> None:
    h = flex.horizon.period_h
    dev = best.power_kw - flex.baseline_kw
    assert (dev >= flex.power_min_kw - 1e-6).all() and (dev <= flex.power_max_kw + 1e-6).all()
    e = flex.initial_energy_kwh
    for k in range(flex.horizon.n_periods):
        e = flex.retention * e + dev[k] * h
        np.testing.assert_allclose(best.energy_kwh[k], e, atol=1e-6)
    assert (best.energy_kwh >= flex.energy_min_kwh - 1e-6).all()
    assert (best.energy_kwh <= flex.energy_max_kwh + 1e-6).all()


@pytest.mark.parametrize("mode", [COOLING, HEATING])
def test_best_response_is_feasible_cheap_and_followed_by_the_houses(mode):
    weather = HOT if mode == COOLING else COLD
    n, periods, per = 200, 8, 10
    pop, t = settled(n, mode, weather, seed=5)
    horizon = Horizon(t, per * 60, periods)
    samples = [weather] * periods
    before = copy.deepcopy(pop)
    price = np.array([0.1, 0.1, 0.1, 0.5, 0.5, 0.1, 0.1, 0.1])
    best = pop.best_response(price, horizon, samples)
    flex = best.flexibility
    check_schedule(best, flex)
    base_cost = (price[:, None] * flex.baseline_kw * horizon.period_h).sum(axis=0)
    assert (best.cost <= base_cost + 1e-9).all()
    plan = best.power_kw.sum(axis=1)
    assert plan[3:5].sum() < flex.baseline_kw[3:5].sum() - 0.2 * flex.power_min_kw[3:5].sum()
    flat = pop.best_response(np.full(periods, 0.1), horizon, samples)
    check_schedule(flat, flex)
    flat_base = (0.1 * flex.baseline_kw * horizon.period_h).sum(axis=0)
    assert (flat.cost <= flat_base + 1e-9).all()
    # no side effect: the population steps exactly as an untouched copy does
    np.testing.assert_array_equal(
        pop.step(t, 60, weather).energy_kwh, before.step(t, 60, weather).energy_kwh
    )
    # dispatched house by house on the stepped houses: in band, each period's energy delivered
    pop = before
    now = t + 60
    span = (flex.power_max_kw - flex.power_min_kw).sum(axis=1).mean()
    for p in range(periods):
        delivered = np.zeros(n)
        for m in range(per):
            follow_schedule(
                pop,
                best.power_kw[p],
                delivered_kwh=delivered,
                elapsed_s=m * 60,
                step_s=60,
                weather=weather,
            )
            delivered += pop.step(now, 60, weather).energy_kwh
            now += 60
            ta = pop.air_temperature_c
            assert (ta >= pop.comfort_min_c - 1e-6).all() and (ta <= pop.comfort_max_c + 1e-6).all()
        drawn = delivered.sum() / horizon.period_h
        assert abs(drawn - plan[p]) < 0.03 * span  # within 3 % of the power range


def test_horizon_view_refuses_bad_arguments():
    pop = HvacPopulation.sample(3, np.random.default_rng(6))
    horizon = Horizon(0, 900, 4)
    with pytest.raises(ValidationError, match="weather"):
        pop.flexibility(horizon, [HOT] * 3)
    with pytest.raises(ValidationError, match="fast_share"):
        pop.flexibility(horizon, [HOT] * 4, fast_share=1.0)
    with pytest.raises(ValidationError, match="period_s"):
        pop.flexibility(Horizon(0, 48 * 3600, 2), [HOT] * 2)
    with pytest.raises(ValidationError, match="prices_per_kwh"):
        pop.best_response(np.ones(5), horizon, [HOT] * 4)
    with pytest.raises(ValidationError, match="prices_per_kwh"):
        pop.best_response([0.1, np.nan, 0.1, 0.1], horizon, [HOT] * 4)


def test_house_outside_its_bounds_gets_its_fastest_way_back():
    """A house pushed out of its battery's limits must come back as fast as it can, not fail."""
    pop, t = settled(3, COOLING, HOT, seed=7)
    pop.air_temperature_c = pop.air_temperature_c + np.array([0.0, 0.0, 3.0])
    pop.mass_temperature_c = pop.mass_temperature_c + np.array([0.0, 0.0, 3.0])
    horizon = Horizon(t, 300, 6)
    flex = pop.flexibility(horizon, [HOT] * 6)
    inside = hvac_batteries(pop, HOT)
    # the houses still inside keep their battery's limits
    np.testing.assert_allclose(
        flex.energy_min_kwh[:, :2], np.tile(inside.energy_min_kwh[:2], (6, 1))
    )
    # 3 K too warm: less stored cooling than the battery's lower limit
    assert flex.initial_energy_kwh[2] < inside.energy_min_kwh[2]
    # its lower limit is its trajectory at full extra cooling until it is back inside
    e, r, dt_h = flex.initial_energy_kwh[2], flex.retention[2], horizon.period_h
    for k in range(6):
        e = r * e + max(flex.power_max_kw[k, 2], 0.0) * dt_h
        assert flex.energy_min_kwh[k, 2] == pytest.approx(min(e, inside.energy_min_kwh[2]))
    best = pop.best_response(np.full(6, 0.1), horizon, [HOT] * 6)
    deviation = best.power_kw - flex.baseline_kw
    assert deviation[0, 2] == pytest.approx(flex.power_max_kw[0, 2])  # full cooling first


def test_empty_population_has_an_empty_horizon_view():
    pop = HvacPopulation(
        ua_kw_per_k=[],
        mass_coupling_kw_per_k=[],
        air_capacity_kj_per_k=[],
        mass_capacity_kj_per_k=[],
        setpoint_c=[],
        comfort_min_c=[],
        comfort_max_c=[],
        cooling_capacity_kw=[],
    )
    horizon = Horizon(0, 900, 3)
    flex = pop.flexibility(horizon, [HOT] * 3)
    assert flex.baseline_kw.shape == (3, 0) and flex.initial_energy_kwh.shape == (0,)
    best = pop.best_response([0.1, 0.2, 0.3], horizon, [HOT] * 3)
    assert best.power_kw.shape == (3, 0)
