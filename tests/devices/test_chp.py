"""Micro-CHP population: heat-led must-run, marginal cost, full buffer, heat and fuel balance,
interval energy equal to the allocation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transactive.curves import BidCurves
from transactive.data import load_tmy3
from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.chp import CHPPopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.25, std_per_kwh=0.05, price_cap_per_kwh=1.0)
COLD = WeatherSample(temperature_c=0.0)
HOUR = MarketInterval(0, 3600)
FIVE_MIN = MarketInterval(0, 300)


def unit(**kw: object) -> CHPPopulation:
    args: dict[str, object] = {
        "electric_power_max_kw": 1.0,
        "electric_to_thermal_ratio": 0.2,  # 1 kW electric with 5 kW heat
        "electric_efficiency": 0.15,
        "fuel_price_per_kwh": 0.03,  # marginal cost 0.2 per kWh
        "buffer_capacity_kwh": 6.0,
        "ua_kw_per_c": 0.2,
        "hot_water_kw": 0.0,
    }
    args.update(kw)
    return CHPPopulation(**args)  # type: ignore[arg-type]


def test_is_a_population() -> None:
    assert isinstance(unit(), Population)


def test_nearly_empty_buffer_must_run_at_any_price() -> None:
    chp = unit(buffer_soc_pu=0.05, soc_min_pu=0.1)
    curves = chp.bid(STATS, HOUR, COLD)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    # 0.2 * 15.5 = 3.1 kW of heat. To keep 0.6 kWh in the buffer for an hour of it:
    # 3.1 + 0.3 kWh heat -> 0.68 kW electric.
    assert curves.power_at(0.0)[0] == pytest.approx(-0.2 * (3.1 + 0.3))
    assert curves.power_at(0.19)[0] == pytest.approx(-0.68)


def test_runs_harder_above_marginal_cost() -> None:
    chp = unit(buffer_soc_pu=0.5)  # enough heat stored for the interval
    curves = chp.bid(STATS, FIVE_MIN, COLD)
    assert chp.marginal_cost_per_kwh[0] == pytest.approx(0.2)
    assert curves.power_at(0.19)[0] == 0.0  # below marginal cost, buffer fine: off
    mid = curves.power_at(0.225)[0]
    assert -1.0 < mid < 0.0  # half way up the ramp
    assert curves.power_at(0.25)[0] == pytest.approx(-1.0)  # at cost + kσ: full output


def test_full_buffer_cannot_run_beyond_the_heat_used() -> None:
    chp = unit(buffer_soc_pu=1.0, ua_kw_per_c=0.0, hot_water_kw=0.0)
    assert np.all(chp.bid(STATS, HOUR, COLD).power_kw == 0.0)
    warm_house = unit(buffer_soc_pu=1.0, ua_kw_per_c=0.0, hot_water_kw=2.0)
    # Only the 2 kW of heat the house uses can be made: 0.4 kW electric.
    assert warm_house.bid(STATS, HOUR, COLD).power_at(1.0)[0] == pytest.approx(-0.4)


def test_curves_stay_within_floor_and_cap() -> None:
    chp = CHPPopulation.sample(100, np.random.default_rng(1), fuel_price_per_kwh=0.12)
    stats = PriceStats(0.5, 0.4, price_cap_per_kwh=1.0, price_floor_per_kwh=-0.2)
    curves = chp.bid(stats, HOUR, COLD)
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    curves.check_prices_within(price_floor=-0.2, price_cap=1.0)
    assert (curves.price_per_kwh[:, -1] == 1.0).any()  # some ramps clipped at the cap


def test_marginal_cost_above_the_cap_offers_only_must_run() -> None:
    chp = unit(fuel_price_per_kwh=1.0, buffer_soc_pu=0.5)
    assert np.all(chp.bid(STATS, FIVE_MIN, COLD).power_kw == 0.0)
    low = unit(fuel_price_per_kwh=1.0, buffer_soc_pu=0.05)  # must run, but no more
    curves = low.bid(STATS, HOUR, COLD)
    assert curves.power_at(1.0)[0] == pytest.approx(curves.power_at(0.0)[0])
    assert curves.power_at(0.0)[0] < 0.0


def test_response_matches_market_allocation() -> None:
    chp = CHPPopulation.sample(200, np.random.default_rng(4), fuel_price_per_kwh=0.03)
    curves = chp.bid(STATS, HOUR, COLD)
    load = BidCurves.unresponsive([120.0], price_cap=1.0).with_ids(["load"])
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
        chp.bid(STATS, MarketInterval(300 * k, 300), w)
        chp.respond(0.1 if k % 48 < 24 else 0.5, 0.0)
        demand += chp.heat_demand_kw(w) * 300.0 / 3600.0
        electric -= chp.step(300 * k, 300, w).energy_kwh
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
    chp = unit(buffer_soc_pu=soc)
    for k, (temp, price, fill) in enumerate(temps):
        chp.bid(STATS, MarketInterval(900 * k, 300), COLD)  # forecast cold, any weather comes
        chp.respond(price, fill)
        chp.step(900 * k, 900, WeatherSample(temperature_c=temp))
        assert 0.0 <= chp.buffer_soc_pu[0] <= 1.0


@pytest.mark.parametrize("mode", ["ample", "binding"])
def test_a_thousand_units_meter_their_allocation_over_the_interval(mode: str) -> None:
    """A load above the units' offers at a high supply price (all run flat out); cheap supply
    that leaves the units at a marginal price on their ramps. Weather as forecast."""
    chp = CHPPopulation.sample(1000, np.random.default_rng(14), fuel_price_per_kwh=0.03)
    w = WeatherSample(temperature_c=2.0)
    for k in range(3):
        interval = MarketInterval(300 * k, 300)
        curves = chp.bid(STATS, interval, w)
        offer = -float(curves.power_at(1.0).sum())
        load = BidCurves.unresponsive([1.5 * offer], price_cap=1.0).with_ids(["load"])
        price = 0.9 if mode == "ample" else 0.21
        supply = Supply(price_per_kwh=price, capacity_kw=np.inf)
        result = clear(BidCurves.concat([curves, load]), price_cap=1.0, supply=supply)
        allocated_kwh = result.allocation_kw[:-1] * 300 / 3600.0
        chp.respond(result.clearing_price, result.marginal_fill[:-1])
        metered = np.zeros(chp.n_devices)
        for t in range(interval.start_s, interval.end_s, 60):
            metered += chp.step(t, 60, w).energy_kwh
        np.testing.assert_allclose(metered, allocated_kwh, rtol=1e-9, atol=1e-12)  # per device
        assert abs(metered.sum() - allocated_kwh.sum()) <= 0.03 * abs(allocated_kwh.sum())
        if mode == "binding":
            assert result.clearing_price == pytest.approx(0.21)
            partial = (result.allocation_kw[:-1] > curves.power_at(1.0)) & (
                result.allocation_kw[:-1] < curves.power_at(0.0)
            )
            assert partial.any()


def test_ids_empty_population_and_bad_inputs() -> None:
    chp = unit(electric_power_max_kw=[1.0, 1.0], ids=["chp-north", "chp-south"])
    curves = chp.bid(STATS, HOUR, COLD)
    assert curves.ids is not None and curves.ids.tolist() == ["chp-north", "chp-south"]
    chp.respond(0.5, 0.0)
    step = chp.step(0, 60, COLD)
    assert step.ids is not None and step.ids.tolist() == ["chp-north", "chp-south"]
    empty = CHPPopulation.sample(0, np.random.default_rng(0))
    assert len(empty.bid(STATS, HOUR, COLD)) == 0
    assert empty.respond(0.5, 0.0).shape == (0,)
    assert empty.step(0, 60, COLD).energy_kwh.shape == (0,)
    with pytest.raises(ValidationError) as info:
        CHPPopulation.sample(2.5, np.random.default_rng(0))  # type: ignore[arg-type]
    assert {p.field for p in info.value.problems} == {"n"}
    with pytest.raises(ValidationError, match="temperature_c"):
        chp.bid(STATS, HOUR, WeatherSample(temperature_c=float("inf")))
    with pytest.raises(TypeError):
        chp.respond(0.5)  # type: ignore[call-arg]


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
