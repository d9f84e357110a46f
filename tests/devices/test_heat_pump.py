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
    price, power = bids.price_per_kwh[:, 0], bids.power_kw[:, 0]
    assert (np.diff(price) <= 1e-12).all()
    assert ((price >= floor) & (price <= cap)).all()
    np.testing.assert_array_equal(price[temps <= 18.0], cap)  # must run below Tmin
    assert (bids.power_kw[temps < 18.0, 1] > 0).all()
    np.testing.assert_array_equal(power[temps >= 22.0], 0.0)  # no bid at or above Tmax
    inside = (temps > 18.0) & (temps < 22.0)
    expected = floor + (cap - floor) * (22.0 - temps) / 4.0
    np.testing.assert_allclose(price[inside], expected[inside])


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
    assert bids.price_per_kwh[1, 0] > bids.price_per_kwh[0, 0]  # colder house pays more
    price = 0.5 * (bids.price_per_kwh[0, 0] + bids.price_per_kwh[1, 0])
    power = pop.respond(price, 0.0)
    assert power[0] == bids.power_kw[0, 1] and power[1] == bids.power_kw[1, 0] > 0.0
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
