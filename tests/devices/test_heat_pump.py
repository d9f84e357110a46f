from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.devices.base import Population, PriceStats
from transactive.devices.heat_pump import HeatPumpPopulation, staffell_ashp_cop
from transactive.devices.hvac import HEATING, HvacPopulation
from transactive.errors import ValidationError
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=0.5)
COLD = WeatherSample(temperature_c=2.0, ghi_w_per_m2=100.0)


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
    for _ in range(24 * 60):
        electric += pop.step(60.0, COLD).energy_kwh
    residual = (
        h.heat_hvac_kwh + h.heat_gains_kwh - h.heat_envelope_loss_kwh
        - (h.stored_heat_kwh() - stored0)
    )  # fmt: skip
    assert np.abs(residual).max() < 1e-9 * h.heat_hvac_kwh.max()
    cop = staffell_ashp_cop(h.supply_temperature_c, COLD.temperature_c)
    np.testing.assert_allclose(h.heat_hvac_kwh, electric * cop, rtol=1e-12)
    assert (electric > 0).all()


def test_without_a_market_the_thermostat_keeps_its_deadband():
    pop = HeatPumpPopulation.sample(50, np.random.default_rng(2))
    h = pop.houses
    for _ in range(6 * 60):
        pop.step(60.0, COLD)
        assert (np.abs(h.air_temperature_c - h.setpoint_c) <= h.deadband_c / 2 + 1e-6).all()


@settings(max_examples=40, deadline=None)
@given(cap=st.floats(0.2, 3.0), floor=st.floats(0.0, 0.1))
def test_willingness_rises_as_the_house_cools(cap, floor):
    temps = np.linspace(16.0, 24.0, 81)
    pop = HeatPumpPopulation(houses(81, air_temperature_c=temps), supply_temperature_c=35.0)
    bids = pop.bid(PriceStats(0.1, 0.03, cap, price_floor_per_kwh=floor))
    price, power = bids.price_per_kwh[:, 0], bids.power_kw[:, 0]
    assert (np.diff(price) <= 1e-12).all()
    assert ((price >= floor) & (price <= cap)).all()
    np.testing.assert_array_equal(price[temps <= 18.0], cap)  # must run below Tmin
    np.testing.assert_array_equal(power[temps > 22.0], 0.0)  # no bid above Tmax
    inside = (temps > 18.0) & (temps < 22.0)
    expected = floor + (cap - floor) * (22.0 - temps) / 4.0
    np.testing.assert_allclose(price[inside], expected[inside])


@settings(max_examples=40, deadline=None)
@given(price=st.floats(0.0, 0.5), fill=st.floats(0.0, 1.0), at_bid=st.integers(-1, 19))
def test_power_at_a_price_equals_the_curve_at_that_price(price, fill, at_bid):
    pop = HeatPumpPopulation.sample(20, np.random.default_rng(3))
    bids = pop.bid(STATS)
    if at_bid >= 0:
        price = float(bids.price_per_kwh[at_bid, 0])
    power = pop.respond(price, fill)
    np.testing.assert_allclose(power, bids.power_at(price, fill), atol=1e-12)
    step = pop.step(1.0, WeatherSample(pop.houses.outdoor_temperature_c))
    np.testing.assert_allclose(step.power_kw, power, atol=1e-9)


def test_allocation_is_held_for_the_interval_and_guarded_by_the_band():
    pop = HeatPumpPopulation(
        houses(2, air_temperature_c=[21.0, 20.3], mass_temperature_c=[21.0, 21.0]),
        supply_temperature_c=35.0,
    )
    bids = pop.bid(STATS)
    assert bids.price_per_kwh[1, 0] > bids.price_per_kwh[0, 0]  # colder house pays more
    price = 0.5 * (bids.price_per_kwh[0, 0] + bids.price_per_kwh[1, 0])
    power = pop.respond(price)
    assert power[0] == 0.0 and power[1] > 0.0
    for _ in range(5):
        step = pop.step(60.0, COLD)
        np.testing.assert_allclose(step.power_kw, power)  # held past the deadband (20.5 °C)
    assert pop.air_temperature_c[1] > 20.5
    for _ in range(240):  # unattended: the band's edges switch them
        pop.step(60.0, COLD)
        assert (
            (pop.air_temperature_c >= 18.0 - 1e-6) & (pop.air_temperature_c <= 22.0 + 1e-6)
        ).all()


def test_bad_inputs_are_named():
    with pytest.raises(ValidationError) as info:
        HeatPumpPopulation(
            houses(3, mode=[HEATING, 1, HEATING], cooling_capacity_kw=3.0),
            supply_temperature_c=[35.0, 35.0, 95.0],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("mode", (1,)) in found
    assert ("supply_temperature_c", (2,)) in found
