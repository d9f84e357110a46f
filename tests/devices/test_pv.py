"""PV population: PVWatts output against pvlib, zero at night, price-taking and curtailable bids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from transactive.curves import BidCurves
from transactive.data import load_tmy3
from transactive.devices.base import MarketInterval, Population, PriceStats
from transactive.devices.pv import PVPopulation
from transactive.errors import ValidationError
from transactive.market import Supply, clear
from transactive.weather import WeatherSample

STATS = PriceStats(mean_per_kwh=0.10, std_per_kwh=0.03, price_cap_per_kwh=1.0)
IV = 300
INTERVAL = MarketInterval(0, IV)


def clear_sky_noon() -> WeatherSample:
    """Clear sky at solar noon in Greensboro, NC on the June solstice (pvlib Ineichen model)."""
    site = pvlib.location.Location(36.1, -79.95, "Etc/GMT+5", 273.0)
    times = pd.DatetimeIndex([pd.Timestamp("2021-06-21 12:20", tz="Etc/GMT+5")])
    sky = site.get_clearsky(times)
    sun = site.get_solarposition(times)
    return WeatherSample(
        temperature_c=30.0,
        ghi_w_per_m2=float(sky["ghi"].iloc[0]),
        dni_w_per_m2=float(sky["dni"].iloc[0]),
        dhi_w_per_m2=float(sky["dhi"].iloc[0]),
        solar_zenith_deg=float(sun["apparent_zenith"].iloc[0]),
        solar_azimuth_deg=float(sun["azimuth"].iloc[0]),
    )


def test_is_a_population() -> None:
    assert isinstance(PVPopulation(dc_capacity_kw=5.0), Population)


def test_clear_sky_noon_matches_pvlib_computed_independently() -> None:
    w = clear_sky_noon()
    pv = PVPopulation(
        dc_capacity_kw=[5.0, 8.0],
        tilt_deg=[30.0, 10.0],
        azimuth_deg=[180.0, 250.0],
        ac_capacity_kw=[4.5, 8.0],
    )
    got = pv.available_power_kw(w)
    for i, (dc, tilt, az, ac) in enumerate([(5.0, 30.0, 180.0, 4.5), (8.0, 10.0, 250.0, 8.0)]):
        poa = pvlib.irradiance.get_total_irradiance(
            tilt,
            az,
            w.solar_zenith_deg,
            w.solar_azimuth_deg,
            w.dni_w_per_m2,
            w.ghi_w_per_m2,
            w.dhi_w_per_m2,
            albedo=0.2,
        )["poa_global"]
        par = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]
        t_cell = pvlib.temperature.sapm_cell(poa, 30.0, 1.0, **par)
        pdc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, dc, -0.0037) * (1 - 0.140757)
        pac = pvlib.inverter.pvwatts(pdc, ac / 0.96, eta_inv_nom=0.96)
        assert got[i] == pytest.approx(float(pac), rel=1e-5)
    # A south-facing 5 kW system at a hot clear noon (30 °C air, roof mount: cell near 60 °C,
    # 14 % losses, 96 % inverter): about 60-75 % of its DC size, below the inverter's 4.5 kW.
    assert 0.55 * 5.0 < got[0] < 0.8 * 5.0


def test_zero_output_at_night_and_in_a_tmy_night() -> None:
    pv = PVPopulation.sample(20, np.random.default_rng(1))
    night = WeatherSample(temperature_c=15.0, solar_zenith_deg=110.0)
    assert np.all(pv.available_power_kw(night) == 0.0)
    day = load_tmy3(step_s=300, start_day=172, days=1)
    assert np.all(pv.available_power_kw(day[12]) == 0.0)  # 01:00
    assert np.all(pv.available_power_kw(day[150]) > 0.0)  # 12:30


def test_price_taker_and_curtailable_bids() -> None:
    pv = PVPopulation(dc_capacity_kw=[5.0, 5.0], curtailment_price_per_kwh=[np.nan, 0.0])
    noon = clear_sky_noon()
    stats = PriceStats(0.05, 0.05, price_cap_per_kwh=1.0, price_floor_per_kwh=-0.5)
    curves = pv.bid(stats, INTERVAL, noon)  # the forecast weather gives the expected output
    BidCurves.from_breakpoints(curves.price_per_kwh, curves.power_kw)
    curves.check_prices_within(price_floor=-0.5, price_cap=1.0)
    expected = pv.available_power_kw(noon)
    np.testing.assert_allclose(pv.expected_kw, expected)
    np.testing.assert_allclose(curves.power_at(0.1), -expected)  # both sell at a positive price
    at_negative = curves.power_at(-0.2)
    assert at_negative[0] == pytest.approx(-expected[0])  # price taker sells anyway
    assert at_negative[1] == 0.0  # curtailable switches off
    # Stepping under the forecast weather meters exactly the response.
    power = pv.respond(-0.2, 0.0)
    metered = np.sum([pv.step(t, 60, noon).energy_kwh for t in range(0, IV, 60)], axis=0)
    np.testing.assert_allclose(metered, power * IV / 3600.0)
    # After the interval a curtailed system produces again (no market said otherwise).
    np.testing.assert_allclose(pv.step(IV, 60, noon).power_kw, -expected)


def test_marginal_fill_shares_output_and_the_market_agrees() -> None:
    pv = PVPopulation.sample(100, np.random.default_rng(5))
    noon = clear_sky_noon()
    curves = pv.bid(STATS, INTERVAL, noon)
    load = BidCurves.unresponsive([100.0], price_cap=1.0).with_ids(["load"])
    result = clear(BidCurves.concat([curves, load]), price_cap=1.0)
    power = pv.respond(result.clearing_price, result.marginal_fill[:-1])
    np.testing.assert_allclose(power, result.allocation_kw[:-1], atol=1e-9)
    assert power.sum() == pytest.approx(-100.0)
    step = pv.step(0, IV, noon)
    assert step.power_kw.sum() == pytest.approx(-100.0)


@pytest.mark.parametrize("mode", ["ample", "binding", "curtailing"])
def test_a_thousand_systems_meter_their_allocation_over_the_interval(mode: str) -> None:
    """A load taking all the output; a load taking part of it (the sellers at the floor share);
    a negative price (curtailable systems switch off). Weather as forecast: exact per device."""
    pv = PVPopulation.sample(1000, np.random.default_rng(12), curtailable_share=0.5)
    noon = clear_sky_noon()
    floor = -0.5 if mode == "curtailing" else 0.0
    stats = PriceStats(0.05, 0.05, price_cap_per_kwh=1.0, price_floor_per_kwh=floor)
    curves = pv.bid(stats, INTERVAL, noon)
    output = float(pv.expected_kw.sum())
    if mode == "curtailing":  # the grid pays 0.2 to take power: only price takers sell
        supply = Supply(price_per_kwh=-0.2, capacity_kw=0.0, export_capacity_kw=np.inf)
        result = clear(curves, price_cap=1.0, price_floor=floor, supply=supply)
    else:
        share = 2.0 if mode == "ample" else 0.4
        load = BidCurves.unresponsive([share * output], price_cap=1.0).with_ids(["load"])
        result = clear(BidCurves.concat([curves, load]), price_cap=1.0, supply=None)
    allocated_kwh = result.allocation_kw[: pv.n_devices] * IV / 3600.0
    pv.respond(result.clearing_price, result.marginal_fill[: pv.n_devices])
    metered = np.sum([pv.step(t, 60, noon).energy_kwh for t in range(0, IV, 60)], axis=0)
    np.testing.assert_allclose(metered, allocated_kwh, rtol=1e-9, atol=1e-12)
    assert abs(metered.sum() - allocated_kwh.sum()) <= 0.03 * abs(allocated_kwh.sum())
    if mode == "binding":
        assert metered.sum() == pytest.approx(-0.4 * output * IV / 3600.0)
    if mode == "curtailing":
        curtailable = ~np.isnan(pv.curtailment_price_per_kwh)
        assert np.all(metered[curtailable] == 0.0) and np.all(metered[~curtailable] < 0.0)


def test_forecast_error_of_a_real_interval_stays_small_in_aggregate() -> None:
    """Bid on the interval's first minute of TMY weather, step every minute of it."""
    pv = PVPopulation.sample(1000, np.random.default_rng(13))
    minutes = load_tmy3(step_s=60, start_day=172, days=1)
    start = 11 * 60  # 11:00
    interval = MarketInterval(start * 60, IV)
    curves = pv.bid(STATS, interval, minutes[start])
    load = BidCurves.unresponsive([1e6], price_cap=1.0).with_ids(["load"])
    result = clear(BidCurves.concat([curves, load]), price_cap=1.0)
    pv.respond(result.clearing_price, result.marginal_fill[:-1])
    metered = np.sum(
        [pv.step(interval.start_s + 60 * k, 60, minutes[start + k]).energy_kwh for k in range(5)],
        axis=0,
    )
    allocated = result.allocation_kw[:-1].sum() * IV / 3600.0
    assert abs(metered.sum() - allocated) <= 0.03 * abs(allocated)


def test_energy_balance_over_a_tmy_day() -> None:
    pv = PVPopulation.sample(30, np.random.default_rng(2))
    day = load_tmy3(step_s=300, start_day=172, days=1)
    total = np.zeros(30)
    expected = np.zeros(30)
    for k, w in enumerate(day):
        pv.bid(STATS, MarketInterval(k * IV, IV), w)
        pv.respond(0.1, 0.0)
        s = pv.step(k * IV, IV, w)
        total += s.energy_kwh
        expected -= pv.available_power_kw(w) * 300.0 / 3600.0
    np.testing.assert_allclose(total, expected)
    per_kw = -total / pv.dc_capacity_kw
    assert np.all((per_kw > 2.0) & (per_kw < 9.0))  # a June day: 2-9 kWh per kW installed


def test_ids_empty_population_and_bad_inputs() -> None:
    pv = PVPopulation(dc_capacity_kw=[4.0, 6.0], ids=["roof-a", "roof-b"])
    noon = clear_sky_noon()
    curves = pv.bid(STATS, INTERVAL, noon)
    assert curves.ids is not None and curves.ids.tolist() == ["roof-a", "roof-b"]
    pv.respond(0.1, 1.0)
    step = pv.step(0, 60, noon)
    assert step.ids is not None and step.ids.tolist() == ["roof-a", "roof-b"]
    empty = PVPopulation(dc_capacity_kw=[])
    assert len(empty.bid(STATS, INTERVAL, noon)) == 0
    assert empty.respond(0.1, 0.0).shape == (0,)
    assert empty.step(0, 60, noon).energy_kwh.shape == (0,)
    assert PVPopulation.sample(0, np.random.default_rng(0)).n_devices == 0
    with pytest.raises(ValidationError) as info:
        PVPopulation.sample(-3, None)  # type: ignore[arg-type]
    assert {p.field for p in info.value.problems} == {"n", "rng"}
    bad = WeatherSample(temperature_c=20.0, ghi_w_per_m2=800.0, dni_w_per_m2=float("nan"))
    with pytest.raises(ValidationError, match="dni_w_per_m2"):
        pv.bid(STATS, INTERVAL, bad)
    with pytest.raises(ValidationError, match="dni_w_per_m2"):
        pv.step(0, 60, bad)
    with pytest.raises(TypeError):
        pv.respond(0.1)  # type: ignore[call-arg]


def test_bad_parameters_name_every_offending_device() -> None:
    with pytest.raises(ValidationError) as info:
        PVPopulation(
            dc_capacity_kw=[5.0, -1.0, 5.0],
            tilt_deg=[30.0, 30.0, 95.0],
            azimuth_deg=[180.0, 400.0, 180.0],
            curtailment_price_per_kwh=[np.nan, np.inf, 0.0],
            temperature_model="nope",
        )
    found = {(p.field, p.index) for p in info.value.problems}
    assert ("dc_capacity_kw", (1,)) in found
    assert ("tilt_deg", (2,)) in found
    assert ("azimuth_deg", (1,)) in found
    assert ("curtailment_price_per_kwh", (1,)) in found
    assert any(p.field == "temperature_model" for p in info.value.problems)
