"""Micro-CHP population: heat-led must-run, marginal cost, full buffer, heat and fuel balance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.data import load_tmy3
from transactive.devices.base import Population, PriceStats
from transactive.devices.chp import CHPPopulation
from transactive.errors import ValidationError
from transactive.market import clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.25, std_per_kwh=0.05, price_cap_per_kwh=1.0)
COLD = WeatherSample(temperature_c=0.0)


def unit(**kw: object) -> CHPPopulation:
    args: dict[str, object] = {
        "electric_power_max_kw": 1.0,
        "electric_to_thermal_ratio": 0.2,  # 1 kW electric with 5 kW heat
        "electric_efficiency": 0.15,
        "fuel_price_per_kwh": 0.03,  # marginal cost 0.2 per kWh
        "buffer_capacity_kwh": 6.0,
        "ua_kw_per_c": 0.2,
        "hot_water_kw": 0.0,
        "interval_s": 3600.0,
    }
    args.update(kw)
    return CHPPopulation(**args)  # type: ignore[arg-type]


def test_is_a_population() -> None:
    assert isinstance(unit(), Population)


def test_nearly_empty_buffer_must_run_at_any_price() -> None:
    chp = unit(buffer_soc_pu=0.05, soc_min_pu=0.1)
    chp.set_forecast(COLD)  # 0.2 * 15.5 = 3.1 kW of heat
    curves = chp.bid(STATS)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    # To keep 0.6 kWh in the buffer for an hour of 3.1 kW: 3.1 + 0.3 kWh heat -> 0.68 kW electric.
    assert curves.power_at(0.0)[0] == pytest.approx(-0.2 * (3.1 + 0.3))
    assert curves.power_at(0.19)[0] == pytest.approx(-0.68)


def test_runs_harder_above_marginal_cost() -> None:
    chp = unit(buffer_soc_pu=0.5, interval_s=300.0)  # enough heat stored for the interval
    chp.set_forecast(COLD)
    curves = chp.bid(STATS)
    assert chp.marginal_cost_per_kwh[0] == pytest.approx(0.2)
    assert curves.power_at(0.19)[0] == 0.0  # below marginal cost, buffer fine: off
    mid = curves.power_at(0.225)[0]
    assert -1.0 < mid < 0.0  # half way up the ramp
    assert curves.power_at(0.25)[0] == pytest.approx(-1.0)  # at cost + kσ: full output


def test_full_buffer_cannot_run_beyond_the_heat_used() -> None:
    chp = unit(buffer_soc_pu=1.0, ua_kw_per_c=0.0, hot_water_kw=0.0)
    chp.set_forecast(COLD)
    assert np.all(chp.bid(STATS).power_kw == 0.0)
    warm_house = unit(buffer_soc_pu=1.0, ua_kw_per_c=0.0, hot_water_kw=2.0)
    warm_house.set_forecast(COLD)
    # Only the 2 kW of heat the house uses can be made: 0.4 kW electric.
    assert warm_house.bid(STATS).power_at(1.0)[0] == pytest.approx(-0.4)


def test_curves_stay_within_floor_and_cap() -> None:
    chp = CHPPopulation.sample(100, np.random.default_rng(1), fuel_price_per_kwh=0.12)
    chp.set_forecast(COLD)
    stats = PriceStats(0.5, 0.4, price_cap_per_kwh=1.0, price_floor_per_kwh=-0.2)
    curves = chp.bid(stats)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    curves.check_prices_within(price_floor=-0.2, price_cap=1.0)
    assert (curves.price_per_kwh[:, -1] == 1.0).any()  # some ramps clipped at the cap


def test_marginal_cost_above_the_cap_offers_only_must_run() -> None:
    chp = unit(fuel_price_per_kwh=1.0, buffer_soc_pu=0.5, interval_s=300.0)
    chp.set_forecast(COLD)
    assert np.all(chp.bid(STATS).power_kw == 0.0)
    low = unit(fuel_price_per_kwh=1.0, buffer_soc_pu=0.05)  # must run, but no more
    low.set_forecast(COLD)
    curves = low.bid(STATS)
    assert curves.power_at(1.0)[0] == pytest.approx(curves.power_at(0.0)[0])
    assert curves.power_at(0.0)[0] < 0.0


def test_response_matches_market_allocation() -> None:
    chp = CHPPopulation.sample(200, np.random.default_rng(4), fuel_price_per_kwh=0.03)
    chp.set_forecast(COLD)
    curves = chp.bid(STATS)
    load = BidCurves.unresponsive([120.0], price_cap=1.0)
    result = clear(BidCurves.concat([curves, load]), price_cap=1.0)
    power = chp.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(power, result.allocation_kw[:-1], atol=1e-9)


def test_heat_and_fuel_balance_over_a_winter_day() -> None:
    chp = CHPPopulation.sample(40, np.random.default_rng(9), fuel_price_per_kwh=0.03)
    day = load_tmy3(step_s=300, start_day=15, days=1)
    stored0 = chp.buffer_soc_pu * chp.buffer_capacity_kwh
    electric = np.zeros(40)
    demand = np.zeros(40)
    for k, w in enumerate(day):
        chp.bid(STATS)
        chp.respond(0.1 if k % 48 < 24 else 0.5)
        demand += chp.heat_demand_kw(w) * 300.0 / 3600.0
        electric -= chp.step(300.0, w).energy_kwh
    stored = chp.buffer_soc_pu * chp.buffer_capacity_kwh
    heat = electric / chp.electric_to_thermal_ratio
    np.testing.assert_allclose(stored - stored0, heat + chp.backup_heat_kwh - demand, atol=1e-9)
    np.testing.assert_allclose(chp.fuel_kwh, electric / chp.electric_efficiency)
    assert np.all(electric > 0)


@settings(max_examples=60, deadline=None)
@given(
    soc=st.floats(0.0, 1.0),
    temps=st.lists(st.tuples(st.floats(-20, 30), st.floats(0, 1), st.floats(0, 1)), max_size=20),
)
def test_buffer_stays_within_its_capacity(soc, temps) -> None:
    chp = unit(buffer_soc_pu=soc, interval_s=300.0)
    for temp, price, fill in temps:
        chp.bid(STATS)
        chp.respond(price, fill)
        chp.step(900.0, WeatherSample(temperature_c=temp))
        assert 0.0 <= chp.buffer_soc_pu[0] <= 1.0


def test_bad_parameters_name_every_offending_device() -> None:
    with pytest.raises(ValidationError) as info:
        CHPPopulation(
            electric_power_max_kw=[1.0, 0.0, 1.0],
            electric_to_thermal_ratio=[0.2, 0.2, -0.1],
            electric_efficiency=[0.15, 1.2, 0.15],
            fuel_price_per_kwh=0.03,
            buffer_capacity_kwh=[6.0, 6.0, 0.0],
            buffer_soc_pu=[1.5, 0.5, 0.5],
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("electric_power_max_kw", (1,)) in found
    assert ("electric_to_thermal_ratio", (2,)) in found
    assert ("electric_efficiency", (1,)) in found
    assert ("buffer_capacity_kwh", (2,)) in found
    assert ("buffer_soc_pu", (0,)) in found
