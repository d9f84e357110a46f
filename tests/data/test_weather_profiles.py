"""Loaders of shipped data: pvlib's TMY3 files and SimBench's profiles, at any step length."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pvlib
import pytest

from transactive.data import (
    available_simbench_profiles,
    available_tmy3,
    load_simbench_profiles,
    load_tmy3,
    resample_mean,
)
from transactive.errors import ValidationError
from transactive.weather import WeatherSample


def raw_tmy3() -> pd.DataFrame:
    path = f"{pvlib.__path__[0]}/data/723170TYA.CSV"
    data, _ = pvlib.iotools.read_tmy3(path, map_variables=True)
    return pd.DataFrame(data)


def test_the_greensboro_file_is_shipped() -> None:
    assert "723170TYA.CSV" in available_tmy3()


def test_hourly_steps_reproduce_the_file() -> None:
    raw = raw_tmy3()
    w = load_tmy3(step_s=3600)
    assert len(w) == 8760
    assert w.station.startswith("GREENSBORO")
    day = w.solar_zenith_deg < 85  # clearly daytime at mid-hour
    # Irradiance of record k covers hour k (ending at its stamp): the step's own value.
    np.testing.assert_allclose(w.ghi_w_per_m2[day], raw["ghi"].to_numpy()[day])
    np.testing.assert_allclose(w.dni_w_per_m2[day], raw["dni"].to_numpy()[day])
    # Temperatures are at hour marks: the mid-hour value is the mean of the two around it.
    temp = raw["temp_air"].to_numpy()
    np.testing.assert_allclose(w.temperature_c[1:], 0.5 * (temp[:-1] + temp[1:]))


def test_five_minute_steps_keep_daily_irradiation_and_darkness() -> None:
    hourly = load_tmy3(step_s=3600, start_day=172, days=1)
    fine = load_tmy3(step_s=300, start_day=172, days=1)
    assert len(fine) == 288
    ratio = fine.ghi_w_per_m2.sum() / 12 / hourly.ghi_w_per_m2.sum()
    assert ratio == pytest.approx(1.0, abs=0.03)
    night = fine.solar_zenith_deg >= 90
    assert night.any() and np.all(fine.ghi_w_per_m2[night] == 0.0)
    assert fine.times[144] == pd.Timestamp("2021-06-21 12:00", tz="Etc/GMT+5")


def test_solar_position_matches_pvlib_at_a_step_midpoint() -> None:
    w = load_tmy3(step_s=60, start_day=100, days=1)
    i = 13 * 60 + 7
    mid = w.times[i] + pd.Timedelta(seconds=30)
    sun = pvlib.solarposition.get_solarposition(
        pd.DatetimeIndex([mid]), w.latitude, w.longitude, altitude=w.altitude_m
    )
    assert w.solar_zenith_deg[i] == pytest.approx(sun["apparent_zenith"].iloc[0])
    assert w.solar_azimuth_deg[i] == pytest.approx(sun["azimuth"].iloc[0])


def test_samples_and_wrap_around_new_year_and_cache() -> None:
    w = load_tmy3(step_s=900, start_day=365, days=2)
    assert len(w) == 192
    sample = w[100]
    assert isinstance(sample, WeatherSample)
    assert sample.temperature_c == w.temperature_c[100]
    assert len(list(w)) == 192
    jan1 = load_tmy3(step_s=900, start_day=1, days=1)
    np.testing.assert_allclose(w.temperature_c[96:], jan1.temperature_c)
    assert load_tmy3(step_s=900, start_day=365, days=2) is w  # cached
    with pytest.raises(ValueError, match="read-only"):
        w.temperature_c[0] = 0.0


def test_bad_weather_requests_name_every_problem() -> None:
    with pytest.raises(ValidationError) as info:
        load_tmy3("nowhere.csv", step_s=0, start_day=400, year=2020)
    fields = {p.field for p in info.value.problems}
    assert fields == {"name", "step_s", "start_day", "year"}


def test_simbench_household_profiles_load_at_their_own_step() -> None:
    p = load_simbench_profiles()
    assert p.names == ("H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L")
    assert p.values_pu.shape == (6, 366 * 96)
    np.testing.assert_allclose(p.values_pu.max(axis=1), 1.0)  # per unit of the yearly peak
    assert "H0-A" in available_simbench_profiles()
    assert "PV3" in available_simbench_profiles("renewables")


def test_simbench_profiles_at_other_steps_keep_energy() -> None:
    quarter = load_simbench_profiles(["H0-B", "G0-A"])
    hourly = load_simbench_profiles(["H0-B", "G0-A"], step_s=3600)
    minute = load_simbench_profiles(["H0-B", "G0-A"], step_s=60)
    np.testing.assert_allclose(hourly.values_pu[:, 0], quarter.values_pu[:, :4].mean(axis=1))
    np.testing.assert_allclose(minute.values_pu[:, :15].mean(axis=1), quarter.values_pu[:, 0])
    np.testing.assert_allclose(hourly.full_load_hours, quarter.full_load_hours)
    np.testing.assert_allclose(minute.full_load_hours, quarter.full_load_hours)
    pv = load_simbench_profiles(["PV1"], kind="renewables", step_s=3600)
    assert pv.values_pu[0, :6].max() == 0.0  # night


def test_resample_mean_is_exact_for_uneven_steps() -> None:
    values = np.array([[1.0, 3.0, 5.0, 7.0]])
    out = resample_mean(values, 10.0, 15.0)
    np.testing.assert_allclose(out, [[(10 + 15) / 15, (15 + 50) / 15]])


def test_unknown_profiles_are_named() -> None:
    with pytest.raises(ValidationError) as info:
        load_simbench_profiles(["H0-A", "H9-Z", "nope"])
    assert info.value.problems[0].index == ("H9-Z", "nope")


def test_humidity_and_wind_are_point_values_at_the_hour_marks() -> None:
    raw = raw_tmy3()
    w = load_tmy3(step_s=3600)
    rh = raw["relative_humidity"].to_numpy() / 100.0  # percent in the file, a fraction here
    np.testing.assert_allclose(w.relative_humidity[1:], 0.5 * (rh[:-1] + rh[1:]))
    wind = raw["wind_speed"].to_numpy()
    np.testing.assert_allclose(w.wind_speed_m_per_s[1:], 0.5 * (wind[:-1] + wind[1:]))
    assert w.relative_humidity.min() >= 0.0 and w.relative_humidity.max() <= 1.0
    sample = w[4000]
    assert sample.relative_humidity == w.relative_humidity[4000]
    assert sample.wind_speed_m_per_s == w.wind_speed_m_per_s[4000]
    # at a 5-minute step the linear interpolation keeps the hourly values at the hour marks
    fine = load_tmy3(step_s=300, start_day=1, days=1)
    mid_of_first_hour = fine.relative_humidity[5:7].mean()  # around 00:30
    assert mid_of_first_hour == pytest.approx(0.5 * (rh[-1] + rh[0]), abs=0.02)


def test_weather_samples_default_to_gridlabds_climate_humidity() -> None:
    sample = WeatherSample(25.0)
    assert sample.relative_humidity == 0.75  # GridLAB-D climate's default humidity
    assert sample.wind_speed_m_per_s == 0.0


def test_a_window_is_those_steps_as_a_series_and_refuses_steps_outside() -> None:
    day = load_tmy3(step_s=60, start_day=196, days=1)
    window = day.window(600, 5)
    assert len(window) == 5 and window.step_s == 60
    assert window.start == day.start + pd.Timedelta(minutes=600)
    assert list(window) == [day[600 + k] for k in range(5)]
    assert not window.temperature_c.flags.writeable
    for first, count in ((-1, 2), (1439, 2), (0, 0)):
        with pytest.raises(IndexError, match="outside the series"):
            day.window(first, count)
