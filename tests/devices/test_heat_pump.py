import inspect
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.heat_pump import HeatPumpPopulation, staffell_ashp_cop
from transactive.devices.hvac import HEATING, HvacPopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=0.5)
COLD = WeatherSample(temperature_c=2.0, ghi_w_per_m2=100.0)
INTERVAL = MarketInterval(start_s=0, duration_s=300)


def houses(n: int = 1, **overrides: Any) -> HvacPopulation:
    args: dict[str, Any] = {
        "ua_kw_per_k": 0.2,
        "mass_coupling_kw_per_k": 3.0,
        "air_capacity_kj_per_k": 1500.0,
        "mass_capacity_kj_per_k": 12000.0,
        "setpoint_c": 20.0,
        "comfort_min_c": 18.0,
        "comfort_max_c": 22.0,
        "mode": HEATING,
        "heating_capacity_kw": 6.0,
        "internal_gain_kw": 0.5,
        "deadband_c": 1.0,
    }
    args.update(overrides)
    arrays: dict[str, Any] = {k: np.broadcast_to(v, (n,)) for k, v in args.items()}
    return HvacPopulation(outdoor_temperature_c=COLD.temperature_c, **arrays)


def test_population_implements_the_protocol():
    assert isinstance(HeatPumpPopulation.sample(3, np.random.default_rng(0)), Population)


def test_staffell_cop_values():
    # Staffell et al. (2012): COP = 6.81 - 0.121 dT + 0.000630 dT^2
    np.testing.assert_allclose(staffell_ashp_cop(35.0, 0.0), 6.81 - 0.121 * 35 + 0.00063 * 35**2)
    np.testing.assert_allclose(staffell_ashp_cop(45.0, -10.0), 6.81 - 0.121 * 55 + 0.00063 * 55**2)
    assert staffell_ashp_cop(35.0, 30.0) == staffell_ashp_cop(35.0, 20.0)  # dT clamped at 15 K
    cops = staffell_ashp_cop(35.0, np.linspace(-15, 15, 31))
    assert (np.diff(cops) > 0).all()


def test_energy_balance_and_cop_over_a_day():
    pop = HeatPumpPopulation.sample(40, np.random.default_rng(1))
    h = pop.houses
    stored0 = h.stored_heat_kwh()
    electric = np.zeros(40)
    for minute in range(24 * 60):
        electric += pop.step(60 * minute, 60, COLD).energy_kwh
    residual = (
        h.heat_hvac_kwh + h.heat_gains_kwh - h.heat_envelope_loss_kwh
        - (h.stored_heat_kwh() - stored0)
    )  # fmt: skip
    assert np.abs(residual).max() < 1e-9 * h.heat_hvac_kwh.max()
    # Staffell's COP times the compressor's energy is the heat pumped; the fan's (GridLAB-D's
    # autosized air handler, which the sampled houses have) is metered and heats the air too.
    cop = staffell_ashp_cop(h.supply_temperature_c, COLD.temperature_c)
    assert (h.electric_fan_kwh > 0).all()
    np.testing.assert_allclose(
        h.heat_hvac_kwh - h.heat_fan_kwh, (electric - h.electric_fan_kwh) * cop, rtol=1e-12
    )
    assert (electric > 0).all()


def test_heat_pump_houses_keep_every_house_parameter():
    gld = HvacPopulation.from_gridlabd(
        {"floor_area": [1500.0, 2200.0], "system_mode": "HEAT", "latent_load_fraction": 0.25}
    )
    args = gld._constructor_arguments()
    init = inspect.signature(HvacPopulation.__init__).parameters
    assert set(args) == set(init) - {"self"}  # a new constructor argument cannot be dropped
    base = HvacPopulation(
        **{
            **args,
            "solar_model": "isotropic",
            "mass_internal_gain_fraction": [0.3, 0.4],
            "mass_solar_gain_fraction": [0.6, 0.7],
            "fan_heatgain_fraction": [0.5, 0.8],
            "internal_gain_kw": [0.4, 0.7],
            "ids": ["a", "b"],
        }
    )
    pop = HeatPumpPopulation(base, supply_temperature_c=[35.0, 45.0])
    h = pop.houses
    for name in (
        "solar_heatgain_factor_m2", "latent_load_fraction", "use_latent_heat", "fan_power_kw",
        "fan_heatgain_fraction", "mass_internal_gain_fraction", "mass_solar_gain_fraction",
        "internal_gain_kw", "ua_kw_per_k", "air_capacity_kj_per_k", "deadband_c",
    ):  # fmt: skip
        np.testing.assert_array_equal(getattr(h, name), getattr(base, name), err_msg=name)
    assert h.solar_model == "isotropic" and list(h.ids) == ["a", "b"]
    assert (h.fan_power_kw > 0).all() and (h.solar_heatgain_factor_m2 > 0).all()
    # the same heat flows into the houses; only the heat pump differs (Staffell's constant output
    # and COP), and its fan heats the air as the house's did
    sunny = WeatherSample(
        temperature_c=2.0, ghi_w_per_m2=500.0, dni_w_per_m2=600.0, dhi_w_per_m2=100.0,
        solar_zenith_deg=60.0, solar_azimuth_deg=180.0,
    )  # fmt: skip
    ours, theirs = h._heat_inputs(sunny), base._heat_inputs(sunny)
    for name in ("q_air_kw", "q_mass_kw", "solar_gain_kw", "fan_on_kw"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    fan_heat = np.array([0.5, 0.8]) * base.fan_power_kw
    np.testing.assert_allclose(ours.q_on_kw, h.heating_capacity_kw + fan_heat)
    cop = staffell_ashp_cop(np.array([35.0, 45.0]), 2.0)
    np.testing.assert_allclose(
        h.running_power_kw(sunny), h.heating_capacity_kw / cop + base.fan_power_kw
    )


def test_without_a_market_the_thermostat_keeps_its_deadband():
    pop = HeatPumpPopulation.sample(50, np.random.default_rng(2))
    h = pop.houses
    for minute in range(6 * 60):
        pop.step(60 * minute, 60, COLD)
        assert (np.abs(h.air_temperature_c - h.setpoint_c) <= h.deadband_c / 2 + 1e-6).all()


@settings(max_examples=40, deadline=None)
@given(cap=st.floats(0.2, 3.0), floor=st.floats(0.0, 0.1))
def test_willingness_rises_as_the_house_cools(cap, floor):
    temps = np.linspace(16.0, 24.0, 81)
    pop = HeatPumpPopulation(houses(81, air_temperature_c=temps), supply_temperature_c=35.0)
    bids = pop.bid(PriceStats(0.1, 0.03, cap, price_floor_per_kwh=floor), INTERVAL, COLD)
    prices, powers = bids.price_per_kwh, bids.power_kw
    assert ((prices >= floor) & (prices <= cap)).all()
    assert (np.diff(prices, axis=1) >= 0).all() and (np.diff(powers, axis=1) <= 0).all()
    np.testing.assert_array_equal(prices[:, -2:], cap)  # the must-run block at the maximum
    grid = np.linspace(floor, cap, 41)
    most = np.array([bids.bounds_at(p)[1] for p in grid])
    assert (np.diff(most, axis=1) <= 1e-9).all()  # a colder house bids more at every price
    assert (powers[temps < 18.0, -2] > 0).all()  # must run below Tmin
    np.testing.assert_array_equal(powers[temps >= 22.0, 0], 0.0)  # no bid at or above Tmax
    assert (powers[temps < 22.0, 0] > 0).all()


def test_at_the_setpoints_willingness_the_house_ends_at_its_setpoint():
    """The middle point: the willingness of the base setpoint, and the power that reaches it.

    ``p = floor + (cap - floor) (Tmax - T) / (Tmax - Tmin)`` of 20 °C is half the cap; a house
    below the setpoint heats to it by the interval's end, one above it floats (must-run only).
    """
    pop = HeatPumpPopulation(
        houses(3, air_temperature_c=[19.7, 19.85, 21.0], mass_temperature_c=20.0),
        supply_temperature_c=35.0,
    )
    bids = pop.bid(STATS, INTERVAL, COLD)
    cap = STATS.price_cap_per_kwh
    expected = np.broadcast_to([0.0, cap / 2, cap], (3, 3))
    np.testing.assert_allclose(bids.price_per_kwh[:, :3], expected)
    power = pop.respond(cap / 2, 0.5)
    np.testing.assert_array_equal(power, bids.power_kw[:, 1])
    for t in range(0, 300, 60):
        pop.step(t, 60, COLD)
    assert power[0] > power[1] > 0.0 == power[2]
    np.testing.assert_allclose(pop.air_temperature_c[:2], 20.0, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(price=st.floats(0.0, 0.5), fill=st.floats(0.0, 1.0), at_bid=st.integers(-1, 19))
def test_power_at_a_price_equals_the_curve_at_that_price(price, fill, at_bid):
    pop = HeatPumpPopulation.sample(20, np.random.default_rng(3))
    bids = pop.bid(STATS, INTERVAL, COLD)
    if at_bid >= 0:
        price = float(bids.price_per_kwh[at_bid, 0])
    power = pop.respond(price, fill)
    np.testing.assert_allclose(power, bids.power_at(price, fill), atol=1e-12)
    energy = np.sum([pop.step(t, 60, COLD).energy_kwh for t in range(0, 300, 60)], axis=0)
    np.testing.assert_allclose(energy * 3600 / 300, power, rtol=1e-6, atol=1e-6)


def test_allocation_is_held_for_the_interval_and_guarded_by_the_band():
    pop = HeatPumpPopulation(
        houses(2, air_temperature_c=[21.0, 20.3], mass_temperature_c=[21.0, 21.0]),
        supply_temperature_c=35.0,
    )
    interval = MarketInterval(0, 900)
    bids = pop.bid(STATS, interval, COLD)
    price = 0.125 * STATS.price_cap_per_kwh  # the willingness of 21.5 °C
    power = pop.respond(price, 0.0)
    np.testing.assert_allclose(power, bids.power_at(price, 0.0))
    assert power[1] > power[0] > 0.0  # the colder house buys more to get there
    energy = np.sum([pop.step(t, 60, COLD).energy_kwh for t in range(0, 900, 60)], axis=0)
    np.testing.assert_allclose(energy * 3600 / 900, power, rtol=1e-6, atol=1e-9)  # held
    for minute in range(15, 255):  # unattended: the thermostat keeps the band
        pop.step(60 * minute, 60, COLD)
        assert (
            (pop.air_temperature_c >= 18.0 - 1e-6) & (pop.air_temperature_c <= 22.0 + 1e-6)
        ).all()


@pytest.mark.parametrize("binding", [False, True])
def test_interval_energy_is_the_allocation_ample_or_binding(binding):
    pop = HeatPumpPopulation.sample(1_000, np.random.default_rng(7))
    for minute in range(60):
        pop.step(60 * minute, 60, COLD)
    stats = PriceStats(0.05, 0.02, 1.0)
    for k in range(3):
        interval = MarketInterval(3600 + 300 * k, 300)
        bids = pop.bid(stats, interval, COLD)
        rating = 0.6 * float(bids.bounds_at(0.05)[1].sum()) if binding else np.inf
        result = clear(bids, price_cap=1.0, supply=Supply(0.05, rating))
        assert (result.clearing_price > 0.05) == binding
        power = pop.respond(result.clearing_price, result.marginal_fill)
        energy = np.sum(
            [pop.step(t, 60, COLD).energy_kwh for t in range(interval.start_s, interval.end_s, 60)],
            axis=0,
        )
        allocated = power * 300 / 3600
        assert abs(energy.sum() / allocated.sum() - 1.0) < 0.03
        np.testing.assert_allclose(energy, allocated, rtol=1e-6, atol=1e-7)


def test_sampling_checks_and_empty_populations():
    with pytest.raises(ValidationError, match="rng"):
        HeatPumpPopulation.sample(3, None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="n"):
        HeatPumpPopulation.sample(-1, np.random.default_rng(0))
    empty = HeatPumpPopulation.sample(0, np.random.default_rng(0))
    assert len(empty.bid(STATS, INTERVAL, COLD)) == 0
    assert empty.respond(0.1, 0.0).shape == (0,)
    assert empty.step(0, 60, COLD).energy_kwh.shape == (0,)
    pop = HeatPumpPopulation(houses(2), supply_temperature_c=35.0, ids=["hp-a", "hp-b"])
    assert list(pop.bid(STATS, INTERVAL, COLD).ids) == ["hp-a", "hp-b"]  # type: ignore[arg-type]
    assert list(pop.step(0, 60, COLD).ids) == ["hp-a", "hp-b"]  # type: ignore[arg-type]


def test_bad_inputs_are_named():
    with pytest.raises(ValidationError) as info:
        HeatPumpPopulation(
            houses(3, mode=[HEATING, 1, HEATING], cooling_capacity_kw=3.0),
            supply_temperature_c=[35.0, 35.0, 95.0],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("mode", (1,)) in found
    assert ("supply_temperature_c", (2,)) in found


# ---------------------------------------------------------------------- hybrid heat pumps

HYBRID = {
    "boiler_kw": 12.0,
    "boiler_efficiency": 0.9,
    "gas_price_per_kwh": 0.06,
    "electricity_price_per_kwh": 0.10,
}
FROST = WeatherSample(temperature_c=-20.0)  # load 0.2 x 40.5 - 0.5 = 7.6 kW at T_off = 20.5 °C


def small_pump_houses(n: int = 1, **overrides: Any) -> HvacPopulation:
    """Houses whose 3 kW heat pump cannot hold 20 °C below about 5 °C outdoors."""
    return houses(n, heating_capacity_kw=3.0, **overrides)


def run_interval(pop: HeatPumpPopulation, start: int, duration: int, weather: WeatherSample):
    steps = [pop.step(t, 60, weather) for t in range(start, start + duration, 60)]
    return (
        np.sum([s.energy_kwh for s in steps], axis=0),
        np.sum([s.gas_energy_kwh for s in steps], axis=0),
    )


def test_no_boiler_is_the_all_electric_population_bit_for_bit():
    # Electric houses beside hybrids behave exactly as an all-electric population of them.
    rng = np.random.default_rng(11)
    temps = rng.uniform(18.2, 21.8, 6)
    electric = HeatPumpPopulation(houses(3, air_temperature_c=temps[:3]), supply_temperature_c=35.0)
    mixed = HeatPumpPopulation(
        houses(6, air_temperature_c=temps),
        supply_temperature_c=35.0,
        boiler_kw=[0.0, 0.0, 0.0, 12.0, 12.0, 12.0],
        boiler_efficiency=0.9,
        gas_price_per_kwh=0.06,
        electricity_price_per_kwh=0.10,
    )
    assert mixed.houses.hybrid and not electric.houses.hybrid
    for k in range(12):
        interval = MarketInterval(300 * k, 300)
        weather = WeatherSample(temperature_c=2.0 - k, ghi_w_per_m2=80.0)
        a, b = electric.bid(STATS, interval, weather), mixed.bid(STATS, interval, weather)
        np.testing.assert_array_equal(a.price_per_kwh, b.price_per_kwh[:3])
        np.testing.assert_array_equal(a.power_kw, b.power_kw[:3])
        price = 0.013 + 0.037 * k  # never one of the curves' breakpoints
        np.testing.assert_array_equal(electric.respond(price, 0.5), mixed.respond(price, 0.5)[:3])
        for t in range(interval.start_s, interval.end_s, 60):
            ra, rb = electric.step(t, 60, weather), mixed.step(t, 60, weather)
            np.testing.assert_array_equal(ra.energy_kwh, rb.energy_kwh[:3])
            np.testing.assert_array_equal(rb.gas_energy_kwh[:3], 0.0)
    np.testing.assert_array_equal(electric.air_temperature_c, mixed.air_temperature_c[:3])
    np.testing.assert_array_equal(electric.houses.heat_hvac_kwh, mixed.houses.heat_hvac_kwh[:3])


def test_switch_price_is_gas_over_efficiency_times_the_units_cop():
    pop = HeatPumpPopulation(small_pump_houses(2), supply_temperature_c=[35.0, 45.0], **HYBRID)
    for t_out in (-10.0, 0.0, 7.0):
        cop = staffell_ashp_cop(np.array([35.0, 45.0]), t_out)
        np.testing.assert_allclose(
            pop.switch_price_per_kwh(WeatherSample(temperature_c=t_out)), 0.06 / 0.9 * cop
        )
    # with a fan, the unit's heat per unit of electricity, fan included
    fan = HeatPumpPopulation(
        small_pump_houses(1, fan_power_kw=0.2, fan_heatgain_fraction=0.5),
        supply_temperature_c=35.0,
        **HYBRID,
    )
    cop = staffell_ashp_cop(35.0, 0.0)
    expected = 0.06 / 0.9 * (3.0 + 0.1) / (3.0 / cop + 0.2)
    np.testing.assert_allclose(fan.switch_price_per_kwh(WeatherSample(temperature_c=0.0)), expected)
    electric = HeatPumpPopulation(small_pump_houses(1), supply_temperature_c=35.0)
    assert electric.switch_price_per_kwh(COLD)[0] == np.inf


@pytest.mark.parametrize("above", [False, True])
def test_the_heat_pump_buys_below_the_switch_price_and_the_boiler_heats_above(above):
    weather = WeatherSample(temperature_c=2.0)
    pop = HeatPumpPopulation(
        small_pump_houses(1, air_temperature_c=18.6, mass_temperature_c=18.6),
        supply_temperature_c=35.0,
        **HYBRID,
    )
    interval = MarketInterval(0, 1800)
    bids = pop.bid(STATS, interval, weather)
    switch = float(pop.switch_price_per_kwh(weather)[0])
    assert 0.1 < switch < STATS.price_cap_per_kwh
    np.testing.assert_array_less(bids.price_per_kwh, switch + 1e-12)  # capped at the switch
    assert bids.price_per_kwh[0, -1] == pytest.approx(switch)  # the must-run block sits there
    assert bids.power_kw[0, -2] > 0  # the cool house must run within the interval
    price = switch * (1.001 if above else 0.999)
    power = pop.respond(price, 0.0)
    electric, gas = run_interval(pop, 0, 1800, weather)
    np.testing.assert_allclose(electric * 3600 / 1800, power, rtol=1e-6, atol=1e-9)
    if above:  # nothing bought: the boiler guards the band's lower edge
        assert power[0] == 0.0 and electric[0] == 0.0 and gas[0] > 0
        assert pop.boiler_heat_kwh[0] > 0 and pop.heat_pump_heat_kwh[0] == 0.0
    else:  # the heat pump runs its allocation, the boiler adds its backup (0.2 kW at 2 °C)
        assert power[0] > 0 and pop.heat_pump_heat_kwh[0] > 0
        backup = pop.houses.last_backup_kw[0]
        np.testing.assert_allclose(gas, backup * 0.5 / 0.9)  # only the backup's gas
    assert 18.0 - 1e-6 <= pop.air_temperature_c[0] <= 22.0 + 1e-6


@pytest.mark.parametrize(("fill", "whole"), [(0.3, False), (0.7, True)])
def test_at_the_switch_price_the_must_run_block_is_taken_whole_or_left_to_the_boiler(fill, whole):
    weather = WeatherSample(temperature_c=2.0)
    pop = HeatPumpPopulation(
        small_pump_houses(1, air_temperature_c=18.6, mass_temperature_c=18.6),
        supply_temperature_c=35.0,
        **HYBRID,
    )
    # a cap just above the switch price (~0.24), so the willingness (0.85 x cap) is below it
    stats = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=0.25)
    bids = pop.bid(stats, MarketInterval(0, 1800), weather)
    must = float(bids.power_kw[0, -2])
    switch = float(pop.switch_price_per_kwh(weather)[0])
    assert bids.price_per_kwh[0, 0] < switch == pytest.approx(bids.price_per_kwh[0, -2])
    assert 0 < must < bids.power_kw[0, 0]  # the must-run block sits at the switch price
    power = pop.respond(switch, fill)
    assert power[0] == pytest.approx(must if whole else 0.0)
    electric, gas = run_interval(pop, 0, 1800, weather)
    np.testing.assert_allclose(electric * 3600 / 1800, power, rtol=1e-6, atol=1e-9)
    assert (gas[0] > pop.houses.last_backup_kw[0] * 0.5 / 0.9 + 1e-9) == (not whole)


def test_hybrid_energy_balance_with_both_sources_over_a_day():
    pop = HeatPumpPopulation(
        small_pump_houses(4, air_temperature_c=[18.5, 19.5, 20.5, 21.5]),
        supply_temperature_c=[35.0, 35.0, 45.0, 45.0],
        **HYBRID,
    )
    h = pop.houses
    stored0 = h.stored_heat_kwh()
    electric = np.zeros(4)
    gas = np.zeros(4)
    for k in range(288):
        t_out = -12.0 + 14.0 * np.sin(np.pi * k / 288)  # below and above the balance point
        weather = WeatherSample(temperature_c=t_out, ghi_w_per_m2=100.0)
        interval = MarketInterval(300 * k, 300)
        pop.bid(STATS, interval, weather)
        switch = pop.switch_price_per_kwh(weather)
        price = float(switch.mean()) * (0.5 if k % 3 else 1.5)  # below or above the switch
        pop.respond(price, 0.0)
        e, g = run_interval(pop, interval.start_s, 300, weather)
        electric += e
        gas += g
        assert (pop.air_temperature_c >= 18.0 - 1e-6).all()
    residual = (
        pop.heat_pump_heat_kwh + pop.boiler_heat_kwh + h.heat_gains_kwh
        - h.heat_envelope_loss_kwh - (h.stored_heat_kwh() - stored0)
    )  # fmt: skip
    assert np.abs(residual).max() < 1e-9 * h.heat_envelope_loss_kwh.max()
    np.testing.assert_allclose(gas, pop.boiler_heat_kwh / 0.9, rtol=1e-12)
    np.testing.assert_allclose(pop.gas_kwh, gas, rtol=1e-12)
    assert (electric > 0).all() and (gas > 0).all()
    assert (pop.heat_pump_heat_kwh > 0).all() and (pop.boiler_heat_kwh > 0).all()


def test_a_cold_snap_below_the_balance_point_keeps_comfort_with_the_boiler():
    electric = HeatPumpPopulation(small_pump_houses(1), supply_temperature_c=35.0)
    hybrid = HeatPumpPopulation(small_pump_houses(1), supply_temperature_c=35.0, **HYBRID)
    gas = 0.0
    for minute in range(12 * 60):  # on their own thermostats (no market), the tariff below switch
        electric.step(60 * minute, 60, FROST)
        gas += float(hybrid.step(60 * minute, 60, FROST).gas_energy_kwh[0])
        assert abs(hybrid.air_temperature_c[0] - 20.0) <= 0.5 + 1e-6  # the deadband holds
    assert electric.air_temperature_c[0] < 18.0  # the heat pump alone cannot
    # the backup is the heat pump's deficit at T_off = 20.5 °C: 0.2 x 40.5 - 0.5 - 3 = 4.6 kW
    np.testing.assert_allclose(hybrid.houses.last_backup_kw, 4.6)
    np.testing.assert_allclose(gas, 4.6 * 12 / 0.9, rtol=1e-12)
    # in a market, at a price above the switch price, the boiler alone keeps the band
    for k in range(24):
        interval = MarketInterval(12 * 3600 + 300 * k, 300)
        hybrid.bid(STATS, interval, FROST)
        assert hybrid.respond(STATS.price_cap_per_kwh, 1.0)[0] == 0.0
        electric_kwh, _ = run_interval(hybrid, interval.start_s, 300, FROST)
        assert electric_kwh[0] == 0.0
        assert hybrid.air_temperature_c[0] >= 18.0 - 1e-6


def test_the_tariff_outside_a_market_picks_the_source():
    dear = {**HYBRID, "electricity_price_per_kwh": 0.50}  # above the switch price (~0.24)
    pop = HeatPumpPopulation(small_pump_houses(1), supply_temperature_c=35.0, **dear)
    electric = gas = 0.0
    for minute in range(6 * 60):
        res = pop.step(60 * minute, 60, COLD)
        electric += float(res.energy_kwh[0])
        gas += float(res.gas_energy_kwh[0])
        assert abs(pop.air_temperature_c[0] - 20.0) <= 0.5 + 1e-6  # the boiler's thermostat
    assert electric == 0.0 and gas > 0.0


def test_a_step_across_the_responded_interval_is_split_where_the_source_changes():
    weather = WeatherSample(temperature_c=2.0)
    whole = HeatPumpPopulation(
        small_pump_houses(1, air_temperature_c=18.6), supply_temperature_c=35.0, **HYBRID
    )
    parts = HeatPumpPopulation(
        small_pump_houses(1, air_temperature_c=18.6), supply_temperature_c=35.0, **HYBRID
    )
    for pop in (whole, parts):
        pop.bid(STATS, MarketInterval(300, 300), weather)
        pop.respond(STATS.price_cap_per_kwh, 1.0)  # above the switch: the boiler in [300, 600)
    one = whole.step(0, 900, weather)
    three = [parts.step(t, d, weather) for t, d in ((0, 300), (300, 300), (600, 300))]
    np.testing.assert_allclose(one.energy_kwh, sum(r.energy_kwh for r in three), rtol=1e-9)
    np.testing.assert_allclose(
        one.gas_energy_kwh,
        sum(r.gas_energy_kwh for r in three),
        rtol=1e-9,
        atol=1e-12,
    )
    np.testing.assert_allclose(whole.air_temperature_c, parts.air_temperature_c, rtol=1e-9)


def test_hybrid_parameters_are_checked_and_named():
    with pytest.raises(ValidationError) as info:
        HeatPumpPopulation(
            small_pump_houses(3), supply_temperature_c=35.0, boiler_kw=[0.0, 2.0, -1.0]
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("boiler_kw", (1,)) in found  # smaller than the heat pump it must replace
    assert ("boiler_kw", (2,)) in found  # negative
    for name in ("boiler_efficiency", "gas_price_per_kwh", "electricity_price_per_kwh"):
        assert (name, (1,)) in found
    with pytest.raises(ValidationError) as info:
        HeatPumpPopulation(
            small_pump_houses(2),
            supply_temperature_c=35.0,
            boiler_kw=12.0,
            boiler_efficiency=[0.9, 1.5],
            gas_price_per_kwh=[-0.1, 0.06],
            electricity_price_per_kwh=[0.1, np.nan],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert {
        ("boiler_efficiency", (1,)), ("gas_price_per_kwh", (0,)),
    } <= found and any(f == "electricity_price_per_kwh" for f, _ in found)  # fmt: skip
    with pytest.raises(ValidationError, match="electricity_price_per_kwh"):
        HeatPumpPopulation.sample(3, np.random.default_rng(0), hybrid_share=0.5)
    with pytest.raises(ValidationError, match="hybrid_share"):
        HeatPumpPopulation.sample(3, np.random.default_rng(0), hybrid_share=1.5)


def test_sampled_hybrids():
    pop = HeatPumpPopulation.sample(
        400, np.random.default_rng(4), hybrid_share=0.5, electricity_price_per_kwh=0.2
    )
    share = pop.hybrid.mean()
    assert 0.4 < share < 0.6
    h = pop.houses
    pump_heat = h.heating_capacity_kw + h.fan_heatgain_fraction * h.fan_power_kw
    assert (pop.boiler_kw[pop.hybrid] >= np.maximum(24.0, pump_heat[pop.hybrid])).all()
    np.testing.assert_array_equal(pop.boiler_kw[~pop.hybrid], 0.0)
    # the houses are those of the all-electric sample with the same seed
    electric = HeatPumpPopulation.sample(400, np.random.default_rng(4))
    np.testing.assert_array_equal(electric.houses.ua_kw_per_k, h.ua_kw_per_k)
    np.testing.assert_array_equal(electric.houses.supply_temperature_c, h.supply_temperature_c)
    empty = HeatPumpPopulation.sample(
        0, np.random.default_rng(0), hybrid_share=1.0, electricity_price_per_kwh=0.2
    )
    assert empty.step(0, 60, COLD).gas_energy_kwh.shape == (0,)
