"""The house is GridLAB-D's house: cross-tool test against GridLAB-D 6.0.0, and the new physics.

The cross-tool test runs the ``gridlabd`` wheel itself (a missing peer is an error, not a skip)
on 30 heterogeneous houses for a July day in Greensboro, NC (pvlib's TMY3 ``723170TYA.CSV``) at a
60 s weather step, and the project's population on the same GridLAB-D house parameters
(:meth:`HvacPopulation.from_gridlabd`) and the same weather; daily HVAC energy must agree within
5 % in total and per house (the issue's target). GridLAB-D's ``house_e.cpp`` is the source of
every formula checked here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gridlabd  # type: ignore[import-untyped]  # noqa: F401 - the peer must be installed
import numpy as np
import pandas as pd
import pvlib
import pytest

from tests.peers.gridlabd import (
    BTU_PER_H_PER_KW,
    GridlabdRun,
    our_energy_kwh,
    random_houses,
    run_houses,
)
from transactive.data import load_tmy3
from transactive.data.weather_tmy import WeatherSeries
from transactive.devices.hvac import (
    COOLING,
    GRIDLABD_HOUSE,
    KJ_PER_K_PER_BTU_PER_F,
    KW_PER_BTU_PER_H,
    KW_PER_BTU_PER_H_F,
    M2_PER_SF,
    WALL_AZIMUTHS_DEG,
    HvacPopulation,
    gridlabd_fan_power_kw,
    sensible_heat_ratio,
    wall_irradiance_w_per_m2,
)
from transactive.errors import ValidationError
from transactive.weather import WeatherSample

N_HOUSES = 30


@pytest.fixture(scope="module")
def july_day() -> WeatherSeries:
    return load_tmy3("723170TYA.CSV", step_s=60, start_day=190, days=1)


@pytest.fixture(scope="module")
def houses() -> dict[str, np.ndarray]:
    return random_houses(N_HOUSES, np.random.default_rng(11))


@pytest.fixture(scope="module")
def gld(
    houses: dict[str, np.ndarray], july_day: WeatherSeries, tmp_path_factory: pytest.TempPathFactory
) -> GridlabdRun:
    return run_houses(houses, july_day, Path(tmp_path_factory.mktemp("gridlabd")))


# ---------------------------------------------------------------------------- against GridLAB-D


def test_daily_hvac_energy_agrees_with_gridlabd(
    gld: GridlabdRun, houses: dict[str, np.ndarray], july_day: WeatherSeries
) -> None:
    ours = our_energy_kwh(houses, july_day)
    theirs = gld.hvac_energy_kwh
    assert np.all(theirs > 10.0)  # a July day: every air conditioner works
    # the target is 5 %; measured here 0.06 % in total and 0.7 % at worst per house, so
    # the test holds the model to what it achieves: a regression to a few percent fails
    assert ours.sum() == pytest.approx(theirs.sum(), rel=0.01)
    np.testing.assert_allclose(ours, theirs, rtol=0.015)


def test_without_latent_fan_and_wall_solar_the_energy_is_far_off(
    gld: GridlabdRun, houses: dict[str, np.ndarray], july_day: WeatherSeries
) -> None:
    # The three parts the issue names are what make the agreement: without them (the old model:
    # all capacity sensible, no fan, solar gain on GHI) the day's energy is about 11 % below
    # GridLAB-D's, outside the 5 % the test above allows.
    full = HvacPopulation.from_gridlabd(houses)
    bare = HvacPopulation(
        ua_kw_per_k=full.ua_kw_per_k,
        mass_coupling_kw_per_k=full.mass_coupling_kw_per_k,
        air_capacity_kj_per_k=full.air_capacity_kj_per_k,
        mass_capacity_kj_per_k=full.mass_capacity_kj_per_k,
        setpoint_c=full.setpoint_c,
        comfort_min_c=full.comfort_min_c,
        comfort_max_c=full.comfort_max_c,
        cooling_capacity_kw=full.cooling_capacity_kw,
        cooling_cop=full.cooling_cop,
        solar_aperture_m2=full.solar_heatgain_factor_m2,
        internal_gain_kw=full.internal_gain_kw,
        deadband_c=full.deadband_c,
        air_temperature_c=full.air_temperature_c,
        mass_temperature_c=full.mass_temperature_c,
    )
    energy = sum(bare.step(i * 60, 60, july_day[i]).energy_kwh for i in range(len(july_day)))
    assert np.sum(energy) < 0.95 * gld.hvac_energy_kwh.sum()


def test_from_gridlabd_derives_what_gridlabd_derives(
    gld: GridlabdRun, houses: dict[str, np.ndarray]
) -> None:
    pop = HvacPopulation.from_gridlabd(houses)
    d = gld.derived
    np.testing.assert_allclose(pop.ua_kw_per_k, d["UA"] * KW_PER_BTU_PER_H_F, rtol=1e-5)
    np.testing.assert_allclose(
        pop.air_capacity_kj_per_k, d["air_heat_capacity"] * KJ_PER_K_PER_BTU_PER_F, rtol=1e-5
    )
    np.testing.assert_allclose(
        pop.mass_capacity_kj_per_k, d["mass_heat_capacity"] * KJ_PER_K_PER_BTU_PER_F, rtol=1e-5
    )
    np.testing.assert_allclose(
        pop.mass_coupling_kw_per_k, d["mass_heat_coeff"] * KW_PER_BTU_PER_H_F, rtol=1e-5
    )
    np.testing.assert_allclose(
        pop.solar_heatgain_factor_m2, d["solar_heatgain_factor"] * M2_PER_SF, rtol=1e-5
    )
    np.testing.assert_array_equal(
        pop.cooling_capacity_kw, d["design_cooling_capacity"] * KW_PER_BTU_PER_H
    )
    np.testing.assert_allclose(pop.fan_power_kw, d["fan_design_power"] / 1000.0, rtol=1e-5)
    np.testing.assert_allclose(
        pop.internal_gain_kw, houses["internal_gain"] / BTU_PER_H_PER_KW, rtol=1e-12
    )


def test_gridlabd_sees_the_weather_we_give_it(gld: GridlabdRun, july_day: WeatherSeries) -> None:
    # The climate recorder (one row per step): temperature and humidity are ours, and its flux on
    # the eight walls is our "gridlabd" wall irradiance (its own solar position, to 1 %).
    assert gld.climate is not None
    rec = gld.climate.iloc[: len(july_day)]
    np.testing.assert_allclose(rec[1].to_numpy(), july_day.temperature_c * 1.8 + 32, atol=1e-3)
    np.testing.assert_allclose(rec[2].to_numpy(), july_day.relative_humidity, atol=1e-6)
    theirs = rec.iloc[:, 3:11].to_numpy() / M2_PER_SF  # W/sf -> W/m²
    ours = np.array([wall_irradiance_w_per_m2(july_day[i]) for i in range(len(july_day))])
    assert ours.mean() == pytest.approx(theirs.mean(), rel=0.01)
    np.testing.assert_allclose(ours.mean(axis=0), theirs.mean(axis=0), rtol=0.02)


# ---------------------------------------------------------------------------- the new physics


def test_sensible_heat_ratio_is_gridlabds_humidity_curve() -> None:
    # house_e.cpp: capacity / (1 + 0.1 + llf / (1 + exp(4 - 10 RH)))
    assert sensible_heat_ratio(0.3, 0.4) == pytest.approx(1 / (1.1 + 0.15))
    assert sensible_heat_ratio(0.3, 0.0) == pytest.approx(1 / (1.1 + 0.3 / (1 + np.exp(4))))
    ratios = sensible_heat_ratio(0.3, np.linspace(0, 1, 11).tolist()[5])
    assert 1 / 1.4 < ratios < 1 / 1.1
    # more humidity, more latent load, less sensible cooling
    assert sensible_heat_ratio(0.3, 0.9) < sensible_heat_ratio(0.3, 0.5)


def one_house(**overrides: object) -> HvacPopulation:
    params: dict[str, object] = {
        "floor_area": 2000.0,
        "cooling_setpoint": 75.0,
        "air_temperature": 75.5,
        "internal_gain": 3000.0,
    }
    params.update(overrides)
    return HvacPopulation.from_gridlabd(params)


HOT = WeatherSample(
    34.0,
    ghi_w_per_m2=800.0,
    dni_w_per_m2=700.0,
    dhi_w_per_m2=150.0,
    solar_zenith_deg=30.0,
    solar_azimuth_deg=200.0,
    relative_humidity=0.6,
)


def test_heat_inputs_hold_latent_fan_and_solar() -> None:
    house = one_house()
    heat = house._heat_inputs(HOT)
    capacity = house.thermal_capacity_kw(34.0)
    shr = sensible_heat_ratio(0.3, 0.6)
    fan = house.fan_power_kw
    np.testing.assert_allclose(heat.q_on_kw, -capacity * shr + fan)
    np.testing.assert_allclose(heat.latent_on_kw, capacity * (1 - shr))
    np.testing.assert_allclose(heat.electric_on_kw, capacity / house.cop(34.0) + fan)
    np.testing.assert_allclose(house.electric_power_kw(34.0), heat.electric_on_kw)
    flux = wall_irradiance_w_per_m2(HOT).mean()
    np.testing.assert_allclose(heat.solar_gain_kw, house.solar_heatgain_factor_m2 * flux / 1000)
    total = heat.internal_gain_kw + heat.solar_gain_kw
    np.testing.assert_allclose(heat.q_air_kw + heat.q_mass_kw, total)
    np.testing.assert_allclose(heat.q_mass_kw, 0.5 * total)
    # without latent heat (GridLAB-D use_latent_heat false) all capacity is sensible
    dry = one_house(use_latent_heat=0)
    np.testing.assert_allclose(dry._heat_inputs(HOT).q_on_kw, -capacity + fan)
    # a fan whose heat stays out of the house (include_fan_heatgain false) adds none
    cool_fan = one_house(include_fan_heatgain=0)
    np.testing.assert_allclose(cool_fan._heat_inputs(HOT).q_on_kw, -capacity * shr)


def test_the_latent_load_makes_the_air_conditioner_run_longer() -> None:
    humid = one_house()
    dry = one_house(use_latent_heat=0)
    e_humid = np.sum([humid.step(60 * i, 60, HOT).energy_kwh for i in range(240)], axis=0)
    e_dry = np.sum([dry.step(60 * i, 60, HOT).energy_kwh for i in range(240)], axis=0)
    assert float(e_humid[0]) > 1.1 * float(e_dry[0])


@pytest.mark.parametrize("solar_model", ["gridlabd", "isotropic"])
def test_wall_irradiance_is_pvlibs_transposition(solar_model: str) -> None:
    flux = wall_irradiance_w_per_m2(HOT, solar_model)
    assert flux.shape == (8,)
    aoi = pvlib.irradiance.aoi(90.0, WALL_AZIMUTHS_DEG, 30.0, 200.0)
    beam = 700.0 * np.maximum(np.cos(np.radians(aoi)), 0.0)
    if solar_model == "gridlabd":  # climate.cpp: dnr * cos_incident + dhr
        np.testing.assert_allclose(flux, beam + 150.0)
    else:
        poa = pvlib.irradiance.get_total_irradiance(
            90.0, WALL_AZIMUTHS_DEG, 30.0, 200.0, 700.0, 800.0, 150.0, albedo=0.25
        )
        np.testing.assert_allclose(flux, poa["poa_global"])
    # the sun 20° west of south lights the south wall most (the south-west one is 25° off) and
    # walls facing away from it see the diffuse light only
    assert np.argmax(flux) == 4 and flux[5] > flux[3]
    assert flux[0] == flux[1] == flux[7] == flux.min()
    night = WeatherSample(20.0, solar_zenith_deg=100.0)
    np.testing.assert_array_equal(wall_irradiance_w_per_m2(night, solar_model), 0.0)


def test_energy_balance_closes_with_latent_fan_and_wall_solar(july_day: WeatherSeries) -> None:
    pop = HvacPopulation.sample(40, np.random.default_rng(5))
    assert pop.use_latent_heat.all() and (pop.fan_power_kw > 0).all()
    stored0 = pop.stored_heat_kwh()
    electric = np.zeros(pop.n_devices)
    running_h = np.zeros(pop.n_devices)
    for i in range(0, len(july_day), 5):  # 5-minute steps
        w = july_day[i]
        heat = pop._heat_inputs(w)
        e = pop.step(i * 60, 300, w).energy_kwh
        electric += e
        running_h += e / heat.electric_on_kw
    residual = (
        pop.heat_hvac_kwh + pop.heat_gains_kwh - pop.heat_envelope_loss_kwh
        - (pop.stored_heat_kwh() - stored0)
    )  # fmt: skip
    assert np.abs(residual).max() < 1e-9 * np.abs(pop.heat_hvac_kwh).max()
    # the solar gain reached the houses, and the fan drew its power whenever the HVAC ran
    assert (pop.heat_gains_kwh > 24 * pop.internal_gain_kw).all()
    assert (running_h > 0).all()
    fan_kwh = pop.fan_power_kw * running_h
    assert (fan_kwh < electric).all() and (fan_kwh > 0.02 * electric).all()


def test_gridlabd_fan_sizing_rounds_up_to_an_eighth_horsepower() -> None:
    # 42,000 Btu/h, latent 0.3: 1,220 cfm -> 0.228 hp -> 2/8 hp -> 211.85 W (house_e.cpp)
    one = np.array([1.0])
    fan = gridlabd_fan_power_kw(
        42000.0 * one,
        0.0 * one,
        latent_load_fraction=0.3 * one,
        duct_pressure_drop_in_h2o=0.5 * one,
        design_cooling_setpoint_f=75.0 * one,
        cooling_supply_air_temp_f=50.0 * one,
        design_heating_setpoint_f=70.0 * one,
        heating_supply_air_temp_f=150.0 * one,
    )
    assert fan[0] == pytest.approx(0.25 * 745.7 / 0.88 / 1000)


def test_from_gridlabd_defaults_are_house_e_defaults() -> None:
    # A 2,000 sf house with every other property at house_e's default (GridLAB-D 6.0.0 gives
    # UA 478.622 Btu/(h·°F), 42,000 Btu/h, a 211.847 W fan and a 88.0738 sf solar factor).
    house = one_house()
    assert house.ua_kw_per_k[0] / KW_PER_BTU_PER_H_F == pytest.approx(478.622, abs=1e-3)
    assert house.cooling_capacity_kw[0] / KW_PER_BTU_PER_H == pytest.approx(42000.0)
    assert house.fan_power_kw[0] == pytest.approx(0.211847, abs=1e-6)
    assert house.solar_heatgain_factor_m2[0] / M2_PER_SF == pytest.approx(88.0738, abs=1e-4)
    assert house.direction[0] == COOLING
    assert house.setpoint_c[0] == pytest.approx((75 - 32) / 1.8)
    assert house.deadband_c[0] == pytest.approx(2 / 1.8)
    assert set(GRIDLABD_HOUSE) >= {
        "floor_area",
        "Rwall",
        "latent_load_fraction",
        "fan_design_power",
    }


def test_from_gridlabd_reads_a_dataframe_and_heating_houses() -> None:
    frame = pd.DataFrame(
        {"floor_area": [1500.0, 2500.0], "system_mode": ["COOL", "heat"], "heating_setpoint": 68}
    )
    pop = HvacPopulation.from_gridlabd(frame, ids=["a", "b"])
    assert list(pop.ids) == ["a", "b"]
    assert list(pop.direction) == [1, -1]
    assert pop.setpoint_c[1] == pytest.approx(20.0)
    # a heat pump's heating capacity is its cooling capacity (house_e autosizing)
    assert pop.heating_capacity_kw[1] == pop.cooling_capacity_kw[1]


def test_from_gridlabd_names_every_bad_property() -> None:
    with pytest.raises(ValidationError) as info:
        HvacPopulation.from_gridlabd({"floor_aera": 2000.0, "Rwal": 19.0})
    fields = {p.field for p in info.value.problems}
    assert fields == {"houses", "floor_area"}
    assert "floor_aera" in str(info.value) and "Rwal" in str(info.value)
    with pytest.raises(ValidationError) as info:
        HvacPopulation.from_gridlabd(
            {
                "floor_area": [2000.0, np.nan, 1500.0],
                "Rwall": [19.0, 19.0, -1.0],
                "system_mode": ["COOL", "OFF", "COOL"],
            }
        )
    fields = {p.field for p in info.value.problems}
    assert {"floor_area", "system_mode"} <= fields
    with pytest.raises(ValidationError, match="Rwall"):
        HvacPopulation.from_gridlabd({"floor_area": 2000.0, "Rwall": -1.0})


def test_humidity_must_be_a_fraction_where_the_latent_load_reads_it() -> None:
    house = one_house()
    for bad in (float("nan"), 60.0, -0.1):
        with pytest.raises(ValidationError, match="relative_humidity"):
            house.step(0, 60, WeatherSample(30.0, relative_humidity=bad))
    # a house without latent load does not need it
    dry = one_house(use_latent_heat=0)
    dry.step(0, 60, WeatherSample(30.0, relative_humidity=60.0))


def test_new_parameters_are_validated() -> None:
    base = HvacPopulation.sample(2, np.random.default_rng(0))
    kwargs: dict[str, Any] = {
        "ua_kw_per_k": base.ua_kw_per_k,
        "mass_coupling_kw_per_k": base.mass_coupling_kw_per_k,
        "air_capacity_kj_per_k": base.air_capacity_kj_per_k,
        "mass_capacity_kj_per_k": base.mass_capacity_kj_per_k,
        "setpoint_c": base.setpoint_c,
        "comfort_min_c": base.comfort_min_c,
        "comfort_max_c": base.comfort_max_c,
        "cooling_capacity_kw": base.cooling_capacity_kw,
    }
    with pytest.raises(ValidationError) as info:
        HvacPopulation(
            **kwargs,
            latent_load_fraction=[0.3, -0.1],
            fan_power_kw=[-1.0, 0.2],
            fan_heatgain_fraction=[1.5, 1.0],
            solar_heatgain_factor_m2=[np.nan, 1.0],
            mass_solar_gain_fraction=[0.5, 2.0],
            solar_model="perez",
        )
    fields = {p.field for p in info.value.problems}
    assert fields == {
        "latent_load_fraction",
        "fan_power_kw",
        "fan_heatgain_fraction",
        "solar_heatgain_factor_m2",
        "mass_solar_gain_fraction",
        "solar_model",
    }
    with pytest.raises(ValidationError, match="use_latent_heat"):
        HvacPopulation(**kwargs, use_latent_heat=True)


def test_ids_and_empty_populations() -> None:
    pop = HvacPopulation.sample(3, np.random.default_rng(0))
    assert list(pop.ids) == ["hvac-0", "hvac-1", "hvac-2"]
    named = HvacPopulation.sample(2, np.random.default_rng(0), ids=["x", "y"])
    assert list(named.ids) == ["x", "y"]
    with pytest.raises(ValidationError):
        HvacPopulation.sample(2, np.random.default_rng(0), ids=["x", "x"])
    empty = HvacPopulation.sample(0, np.random.default_rng(0))
    assert empty.n_devices == 0 and empty.ids.size == 0
    result = empty.step(0, 60, HOT)
    assert result.energy_kwh.shape == (0,)
    for bad_n, bad_rng in ((-1, np.random.default_rng(0)), (2, 7)):
        with pytest.raises(ValidationError):
            HvacPopulation.sample(bad_n, bad_rng)  # type: ignore[arg-type]
