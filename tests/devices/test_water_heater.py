from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.water_heater import WATER_KJ_PER_L_K, WaterHeaterPopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
INDOORS = WeatherSample(temperature_c=10.0)
INTERVAL = MarketInterval(start_s=0, duration_s=300)


def tanks(n: int = 1, **overrides: Any) -> WaterHeaterPopulation:
    args: dict[str, Any] = {
        "tank_volume_l": 189.0,
        "ua_kw_per_k": 0.0011,
        "element_kw": 4.5,
        "setpoint_c": 50.0,
        "comfort_min_c": 45.0,
        "comfort_max_c": 55.0,
        "deadband_c": 2.0,
        "inlet_temperature_c": 15.0,
        "ambient_temperature_c": 20.0,
    }
    args.update(overrides)
    profile = args.pop("draw_profile_l_per_h", None)
    arrays: dict[str, Any] = {k: np.broadcast_to(v, (n,)) for k, v in args.items()}
    return WaterHeaterPopulation(draw_profile_l_per_h=profile, **arrays)


def test_population_implements_the_protocol():
    assert isinstance(WaterHeaterPopulation.sample(3, np.random.default_rng(0)), Population)


def test_mixed_tank_draw_matches_the_analytic_washout():
    # element off, (almost) no standby loss: T = Tin + (T0 - Tin) exp(-V_draw / V_tank)
    pop = tanks(3, ua_kw_per_k=1e-9, temperature_c=[52.0, 50.0, 48.0], deadband_c=80.0,
                comfort_min_c=5.0, comfort_max_c=90.0)  # fmt: skip
    draws = np.array([0.0, 50.0, 189.0])
    pop.step(0, 600, INDOORS, draw_l=draws)
    expected = 15.0 + (np.array([52.0, 50.0, 48.0]) - 15.0) * np.exp(-draws / 189.0)
    np.testing.assert_allclose(pop.temperature_c, expected, atol=1e-6)


def test_switching_with_a_draw_matches_an_event_driven_ode_solver():
    pop = tanks(temperature_c=49.2, on=False)
    draw = 60.0  # litres over 10 minutes
    result = pop.step(0, 600, INDOORS, draw_l=[draw])
    c = 189.0 * WATER_KJ_PER_L_K
    g = draw / 600.0 * WATER_KJ_PER_L_K

    def rhs(q: float) -> Any:
        return lambda _t, x: [(q - 0.0011 * (x[0] - 20.0) - g * (x[0] - 15.0)) / c]

    def on_event(_t, x):
        return x[0] - 49.0

    def off_event(_t, x):
        return x[0] - 51.0

    on_event.terminal = True  # type: ignore[attr-defined]
    off_event.terminal = True  # type: ignore[attr-defined]
    a = solve_ivp(rhs(0.0), (0, 600), [49.2], events=on_event, rtol=1e-11, atol=1e-11)
    t_on = float(a.t_events[0][0])
    b = solve_ivp(rhs(4.5), (t_on, 600), a.y[:, -1], events=off_event, rtol=1e-11, atol=1e-11)
    assert b.status == 0  # still heating at the end of the step
    np.testing.assert_allclose(pop.temperature_c[0], b.y[0, -1], atol=1e-6)
    np.testing.assert_allclose(result.energy_kwh[0], 4.5 * (600 - t_on) / 3600, rtol=1e-6)
    assert pop.on[0]


def test_energy_balance_over_a_day_with_the_draw_schedule():
    pop = WaterHeaterPopulation.sample(50, np.random.default_rng(1))
    stored0 = pop.stored_heat_kwh()
    metered = np.zeros(50)
    for minute in range(24 * 60):
        metered += pop.step(60 * minute, 60, INDOORS).energy_kwh
    residual = (
        pop.heat_element_kwh - pop.heat_standby_loss_kwh - pop.heat_draw_loss_kwh
        - (pop.stored_heat_kwh() - stored0)
    )  # fmt: skip
    assert np.abs(residual).max() < 1e-9 * pop.heat_element_kwh.max()
    np.testing.assert_allclose(metered, pop.heat_element_kwh)
    # the draw loss is what heating the day's water from the inlet takes (within the tank swing)
    daily_l = pop.draw_profile_l_per_h.sum(axis=0)  # type: ignore[union-attr]
    to_setpoint = daily_l * WATER_KJ_PER_L_K * (pop.setpoint_c - 15.6) / 3600
    np.testing.assert_allclose(pop.heat_draw_loss_kwh, to_setpoint, rtol=0.08)


def test_thermostat_keeps_its_deadband_without_a_market():
    pop = WaterHeaterPopulation.sample(100, np.random.default_rng(2))
    low = pop.setpoint_c - pop.deadband_c / 2 - 1e-6
    high = pop.setpoint_c + pop.deadband_c / 2 + 1e-6
    for minute in range(24 * 60):
        pop.step(60 * minute, 60, INDOORS)
        assert ((pop.temperature_c >= low) & (pop.temperature_c <= high)).all()
    assert pop.heat_element_kwh.min() > 2.0


@settings(max_examples=40, deadline=None)
@given(mean=st.floats(0.0, 0.5), std=st.floats(0.0, 0.2), cap=st.floats(0.6, 5.0))
def test_colder_tanks_bid_more_and_bids_stay_within_the_cap(mean, std, cap):
    temps = np.linspace(40.0, 60.0, 81)
    pop = tanks(81, temperature_c=temps)
    bids = pop.bid(PriceStats(mean, std, cap), INTERVAL, INDOORS)
    prices, powers = bids.price_per_kwh, bids.power_kw
    assert ((prices >= 0) & (prices <= cap)).all()
    assert (np.diff(prices, axis=1) >= 0).all() and (np.diff(powers, axis=1) <= 0).all()
    np.testing.assert_array_equal(prices[:, -2:], cap)
    grid = np.linspace(0.0, cap, 41)
    most = np.array([bids.bounds_at(p)[1] for p in grid])
    assert (np.diff(most, axis=1) <= 1e-9).all()  # a colder tank bids more at every price
    assert (powers[temps < 45.0, -2] > 0).all()  # must run below Tmin, at the cap
    np.testing.assert_array_equal(powers[temps >= 55.0, 0], 0.0)


def test_at_the_mean_price_a_tank_heats_to_its_setpoint():
    """The middle point: the mean price, and the power that heats the tank to its setpoint."""
    pop = WaterHeaterPopulation.sample(200, np.random.default_rng(6))
    for minute in range(60):
        pop.step(60 * minute, 60, INDOORS)
    interval = MarketInterval(3600, 300)
    bids = pop.bid(STATS, interval, INDOORS)
    np.testing.assert_allclose(bids.price_per_kwh[:, 1], STATS.mean_per_kwh)
    power = pop.respond(STATS.mean_per_kwh, 0.5)
    for t in range(interval.start_s, interval.end_s, 60):
        pop.step(t, 60, INDOORS)
    must, can = bids.power_kw[:, -2], bids.power_kw[:, 0]
    heated = (power > must + 1e-9) & (power < can - 1e-9)
    assert heated.sum() > 20
    np.testing.assert_allclose(pop.temperature_c[heated], pop.setpoint_c[heated], atol=1e-5)
    # the others float above it, or heat all they can and stay below it
    above = pop.temperature_c - pop.setpoint_c
    assert (above[~heated & (power <= must + 1e-9)] >= -1e-5).all()
    assert (above[~heated & (power >= can - 1e-9)] <= 1e-5).all()


@settings(max_examples=40, deadline=None)
@given(price=st.floats(0.0, 1.0), fill=st.floats(0.0, 1.0), at_bid=st.integers(-1, 19))
def test_power_at_a_price_equals_the_curve_at_that_price(price, fill, at_bid):
    pop = WaterHeaterPopulation.sample(20, np.random.default_rng(3))
    bids = pop.bid(STATS, INTERVAL, INDOORS)
    if at_bid >= 0:
        price = float(bids.price_per_kwh[at_bid, 0])
    power = pop.respond(price, fill)
    np.testing.assert_allclose(power, bids.power_at(price, fill), atol=1e-12)
    energy = np.sum([pop.step(t, 50, INDOORS).energy_kwh for t in range(0, 300, 50)], axis=0)
    np.testing.assert_allclose(energy * 3600 / 300, power, rtol=1e-6, atol=1e-6)


def test_high_prices_lower_tank_setpoints():
    pop = WaterHeaterPopulation.sample(20, np.random.default_rng(4))
    pop.bid(STATS, INTERVAL, INDOORS)
    pop.respond(0.5, 0.0)
    assert (pop.thermostat_setpoint_c < pop.setpoint_c).all()
    assert (pop.thermostat_setpoint_c >= pop.comfort_min_c).all()


def test_bad_parameters_are_all_named():
    with pytest.raises(ValidationError) as info:
        tanks(
            4,
            tank_volume_l=[189.0, 0.0, 189.0, 189.0],
            comfort_min_c=[45.0, 45.0, 56.0, 45.0],
            element_kw=[4.5, 4.5, 4.5, np.nan],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("tank_volume_l", (1,)) in found
    assert ("comfort_min_c", (2,)) in found
    assert ("element_kw", (3,)) in found
    with pytest.raises(ValidationError, match="draw_l"):
        tanks(2).step(0, 60, INDOORS, draw_l=[1.0, -1.0])
    with pytest.raises(ValidationError, match="draw_profile_l_per_h"):
        tanks(2, draw_profile_l_per_h=np.ones((24, 3)))

    with pytest.raises(ValidationError, match="rng"):
        WaterHeaterPopulation.sample(3, 42)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="n"):
        WaterHeaterPopulation.sample(-1, np.random.default_rng(0))
    pop = tanks(2)
    pop.bid(STATS, INTERVAL, INDOORS)
    with pytest.raises(TypeError):
        pop.respond(0.1)  # type: ignore[call-arg]  # no silent default fill


@pytest.mark.parametrize("binding", [False, True])
def test_interval_energy_is_the_allocation_ample_or_binding(binding):
    pop = WaterHeaterPopulation.sample(1_000, np.random.default_rng(5))
    for minute in range(6 * 60 + 50):  # to the morning peak, where slots change within an interval
        pop.step(60 * minute, 60, INDOORS)
    stats = PriceStats(0.05, 0.02, 1.0)
    for k in range(3):
        interval = MarketInterval(6 * 3600 + 3000 + 300 * k, 300)
        bids = pop.bid(stats, interval, INDOORS)
        rating = 0.6 * float(bids.bounds_at(0.05)[1].sum()) if binding else np.inf
        result = clear(bids, price_cap=1.0, supply=Supply(0.05, rating))
        assert (result.clearing_price > 0.05) == binding
        power = pop.respond(result.clearing_price, result.marginal_fill)
        energy = np.sum(
            [
                pop.step(t, 60, INDOORS).energy_kwh
                for t in range(interval.start_s, interval.end_s, 60)
            ],
            axis=0,
        )
        allocated = power * 300 / 3600
        assert abs(energy.sum() / allocated.sum() - 1.0) < 0.03
        np.testing.assert_allclose(energy, allocated, rtol=1e-6, atol=1e-7)
        assert (pop.temperature_c >= pop.comfort_min_c - 1e-6).all()


def test_one_hour_steps_are_exact_and_keep_the_deadband():
    coarse = WaterHeaterPopulation.sample(200, np.random.default_rng(6))
    fine = WaterHeaterPopulation.sample(200, np.random.default_rng(6))
    low = coarse.setpoint_c - coarse.deadband_c / 2 - 1e-6
    high = coarse.setpoint_c + coarse.deadband_c / 2 + 1e-6
    coarse_kwh = np.zeros(200)
    for hour in range(24):
        coarse_kwh += coarse.step(3600 * hour, 3600, INDOORS).energy_kwh
        assert ((coarse.temperature_c >= low) & (coarse.temperature_c <= high)).all()
    fine_kwh = sum(fine.step(60 * m, 60, INDOORS).energy_kwh for m in range(24 * 60))
    np.testing.assert_allclose(coarse_kwh, fine_kwh, rtol=1e-6)
    np.testing.assert_allclose(coarse.temperature_c, fine.temperature_c, atol=1e-6)


def test_an_empty_population_and_ids():
    empty = WaterHeaterPopulation.sample(0, np.random.default_rng(0))
    assert len(empty.bid(STATS, INTERVAL, INDOORS)) == 0
    assert empty.respond(0.1, 0.0).shape == (0,)
    assert empty.step(0, 60, INDOORS).energy_kwh.shape == (0,)
    pop = tanks(2, ids=["w1", "w2"])
    assert list(pop.bid(STATS, INTERVAL, INDOORS).ids) == ["w1", "w2"]  # type: ignore[arg-type]
    assert list(pop.step(0, 60, INDOORS).ids) == ["w1", "w2"]  # type: ignore[arg-type]


def test_sample_takes_ids_like_every_kind():
    from transactive.devices.heat_pump import HeatPumpPopulation  # noqa: PLC0415

    rng = np.random.default_rng(0)
    tanks = WaterHeaterPopulation.sample(2, rng, ids=["tank-a", "tank-b"])
    assert list(tanks.ids) == ["tank-a", "tank-b"]
    pumps = HeatPumpPopulation.sample(2, rng, ids=["hp-a", "hp-b"])
    assert list(pumps.ids) == ["hp-a", "hp-b"]
    with pytest.raises(ValidationError, match="repeats"):
        WaterHeaterPopulation.sample(2, rng, ids=["x", "x"])
