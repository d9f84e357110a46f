"""Weather from the TMY3 files shipped in pvlib's data folder, at any step length.

A Typical Meteorological Year (TMY3, Wilcox and Marion, "Users Manual for TMY3 Data Sets",
NREL/TP-581-43156, 2008) holds 8760 hourly records of one station. Per that manual, a record
labelled ``HH:00`` gives the dry-bulb temperature *at* that time and the irradiance (GHI, DNI, DHI)
*received over the hour ending* at that time. The loader therefore places temperatures at the hour
marks and irradiance at the middle of each hour, and interpolates both linearly to the middle of
every step (the midpoint rule for a step average; a one-hour step reproduces the file exactly).
The year is treated as periodic, so a window may run across New Year. Relative humidity
(``RHum``, percent in the file) and wind speed (``Wspd``) are point values at the hour marks like
the temperature; humidity is given as a fraction in ``[0, 1]`` (GridLAB-D's ``climate`` reads it the
same way, ``climate/climate.cpp``).

Solar position comes from pvlib's SPA (``pvlib.solarposition.get_solarposition``, Reda and Andreas,
"Solar position algorithm for solar radiation applications", Solar Energy 76(5), 2004) at the
middle of each step. Irradiance is set to zero where the sun is below the horizon, so linear
interpolation across sunrise and sunset never leaves light at night.

The files are read with ``pvlib.iotools.read_tmy3``; parsed files and built series are cached
(``functools.lru_cache``), so a second call costs nothing. Nothing is downloaded.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd
import pvlib

from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["WeatherSeries", "available_tmy3", "load_tmy3"]

FloatArray = npt.NDArray[np.float64]

_HOURS_PER_YEAR = 8760
_YEAR_S = _HOURS_PER_YEAR * 3600
_TMY3_NAME = re.compile(r"^\d{6}TYA?\.csv$", re.IGNORECASE)


def _data_dir() -> Path:
    return Path(pvlib.__file__).parent / "data"


def available_tmy3() -> tuple[str, ...]:
    """Names of the TMY3 files in pvlib's data folder (for example ``723170TYA.CSV``)."""
    return tuple(sorted(p.name for p in _data_dir().iterdir() if _TMY3_NAME.match(p.name)))


@dataclass(frozen=True)
class _Tmy3:
    station: str
    latitude: float
    longitude: float
    altitude_m: float
    utc_offset_h: float
    temperature_c: FloatArray  # at hour ends 1..8760 h
    ghi: FloatArray  # means over hours, centred at 0.5..8759.5 h
    dni: FloatArray
    dhi: FloatArray
    wind_speed_m_per_s: FloatArray  # at hour ends
    relative_humidity: FloatArray  # fraction 0..1, at hour ends


@lru_cache(maxsize=8)
def _read_tmy3(name: str) -> _Tmy3:
    data, meta = pvlib.iotools.read_tmy3(str(_data_dir() / name), map_variables=True)
    if len(data) != _HOURS_PER_YEAR:  # pragma: no cover - pvlib ships complete files
        raise ValueError(f"{name}: expected {_HOURS_PER_YEAR} hourly records, got {len(data)}")

    def col(key: str) -> FloatArray:
        values = np.array(data[key], dtype=np.float64)
        values.setflags(write=False)
        return values

    return _Tmy3(
        station=str(meta["Name"]).strip('"'),
        latitude=float(meta["latitude"]),
        longitude=float(meta["longitude"]),
        altitude_m=float(meta["altitude"]),
        utc_offset_h=float(meta["TZ"]),
        temperature_c=col("temp_air"),
        ghi=col("ghi"),
        dni=col("dni"),
        dhi=col("dhi"),
        wind_speed_m_per_s=col("wind_speed"),
        relative_humidity=_readonly_fraction(col("relative_humidity")),
    )


def _readonly_fraction(percent: FloatArray) -> FloatArray:
    values = np.asarray(percent / 100.0, dtype=np.float64)
    values.setflags(write=False)
    return values


T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class WeatherSeries:
    """Weather over consecutive steps of ``step_s`` seconds: arrays of one value per step.

    Each value is the step's average (taken at its midpoint). ``series[i]`` is step i as a
    :class:`~transactive.weather.WeatherSample`; iterating yields the samples in order. The arrays
    themselves are the vectorized form (read-only).
    """

    station: str
    latitude: float
    longitude: float
    altitude_m: float
    start: pd.Timestamp  # start of step 0, local standard time (tz-aware)
    step_s: int
    temperature_c: FloatArray
    ghi_w_per_m2: FloatArray
    dni_w_per_m2: FloatArray
    dhi_w_per_m2: FloatArray
    solar_zenith_deg: FloatArray  # apparent zenith (refraction-corrected)
    solar_azimuth_deg: FloatArray
    wind_speed_m_per_s: FloatArray
    relative_humidity: FloatArray  # fraction, 0..1
    # the series a window was taken from (None: this one is whole) and the window's first step
    # in it, and what :meth:`derived` computed from a whole series
    _whole: WeatherSeries | None = field(default=None, init=False, repr=False)
    _first: int = field(default=0, init=False, repr=False)
    _derived: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.temperature_c.size)

    @property
    def times(self) -> pd.DatetimeIndex:
        """Start of every step (tz-aware, local standard time)."""
        return pd.date_range(self.start, periods=len(self), freq=pd.Timedelta(seconds=self.step_s))

    def __getitem__(self, i: int) -> WeatherSample:
        return WeatherSample(
            temperature_c=float(self.temperature_c[i]),
            ghi_w_per_m2=float(self.ghi_w_per_m2[i]),
            dni_w_per_m2=float(self.dni_w_per_m2[i]),
            dhi_w_per_m2=float(self.dhi_w_per_m2[i]),
            solar_zenith_deg=float(self.solar_zenith_deg[i]),
            solar_azimuth_deg=float(self.solar_azimuth_deg[i]),
            relative_humidity=float(self.relative_humidity[i]),
            wind_speed_m_per_s=float(self.wind_speed_m_per_s[i]),
        )

    def __iter__(self) -> Iterator[WeatherSample]:
        return (self[i] for i in range(len(self)))

    def window(self, first: int, count: int) -> WeatherSeries:
        """Steps ``first`` to ``first + count - 1`` as a series of their own (views, read-only).

        Raises
        ------
        IndexError
            The window does not lie inside the series.

        """
        if first < 0 or count < 1 or first + count > len(self):
            raise IndexError(
                f"weather window of {count} steps from step {first} is outside the series' "
                f"{len(self)} steps"
            )
        rows = slice(first, first + count)
        part = replace(
            self,
            start=self.start + pd.Timedelta(seconds=first * self.step_s),
            **{name: getattr(self, name)[rows] for name in _SERIES_FIELDS},
        )
        object.__setattr__(part, "_whole", self._whole or self)
        object.__setattr__(part, "_first", self._first + first)
        return part

    def derived(self, key: Hashable, compute: Callable[[WeatherSeries], T]) -> tuple[T, slice]:
        """``compute(whole)``, computed once per ``key``, and this series' steps within ``whole``.

        ``whole`` is the series this one is a :meth:`window` of (or this series itself). For
        what a device derives from each step's weather alone (an HVAC house's capacity factors,
        its walls' irradiance): the window's rows of the whole series' result are what the
        window itself would give, so a day of windows computes them once instead of once per
        window. The result is kept with the whole series, under ``key`` (which must name
        everything ``compute`` depends on besides the weather).
        """
        whole = self._whole or self
        if key not in whole._derived:
            whole._derived[key] = compute(whole)
        return whole._derived[key], slice(self._first, self._first + len(self))


#: The per-step arrays of a :class:`WeatherSeries`.
_SERIES_FIELDS = (
    "temperature_c",
    "ghi_w_per_m2",
    "dni_w_per_m2",
    "dhi_w_per_m2",
    "solar_zenith_deg",
    "solar_azimuth_deg",
    "wind_speed_m_per_s",
    "relative_humidity",
)


def load_tmy3(
    name: str = "723170TYA.CSV",
    *,
    step_s: int = 300,
    start_day: int = 1,
    days: float = 365,
    year: int = 2021,
) -> WeatherSeries:
    """Weather of a TMY3 station at any step length.

    Parameters
    ----------
    name:
        A file of :func:`available_tmy3`; the default is Greensboro, NC (USAF 723170).
    step_s:
        Step length in seconds (for example 60, 300, 900, 3600).
    start_day:
        Day of the year (1 = 1 January) at whose midnight (local standard time) step 0 starts.
    days:
        Length of the series in days; the typical year repeats, so a window may wrap around.
    year:
        The (non-leap) calendar year given to the timestamps; a TMY has no 29 February.

    Raises
    ------
    ValidationError
        Naming every bad argument.

    """
    problems = Problems(subject="TMY3 weather request")
    names = available_tmy3()
    if name not in names:
        problems.add("name", f"{name!r} is not a TMY3 file shipped with pvlib; choose from {names}")
    if int(step_s) != step_s or step_s <= 0:
        problems.add("step_s", f"must be a positive whole number of seconds, got {step_s}")
    if int(start_day) != start_day or not 1 <= start_day <= 365:
        problems.add("start_day", f"must be a day of the year in 1..365, got {start_day}")
    if not (np.isfinite(days) and days > 0):
        problems.add("days", f"must be a positive number, got {days}")
    elif step_s > 0 and days * 86400 < step_s:
        problems.add("days", f"shorter than one step ({days} days < {step_s} s)")
    if calendar.isleap(int(year)):
        problems.add("year", f"must not be a leap year (a TMY has 365 days), got {year}")
    problems.raise_if_any()
    return _build(name, int(step_s), int(start_day), float(days), int(year))


@lru_cache(maxsize=32)
def _build(name: str, step_s: int, start_day: int, days: float, year: int) -> WeatherSeries:
    tmy = _read_tmy3(name)
    n_steps = int(days * 86400 // step_s)
    start_s = (start_day - 1) * 86400
    mid_s = start_s + (np.arange(n_steps, dtype=np.float64) + 0.5) * step_s

    hour_end_s = np.arange(1, _HOURS_PER_YEAR + 1, dtype=np.float64) * 3600.0
    hour_mid_s = hour_end_s - 1800.0

    def at_mid(xp: FloatArray, fp: FloatArray) -> FloatArray:
        return np.interp(mid_s, xp, fp, period=_YEAR_S)

    temperature = at_mid(hour_end_s, tmy.temperature_c)
    wind = at_mid(hour_end_s, tmy.wind_speed_m_per_s)
    humidity = at_mid(hour_end_s, tmy.relative_humidity)
    ghi, dni, dhi = (at_mid(hour_mid_s, v) for v in (tmy.ghi, tmy.dni, tmy.dhi))

    tz = (
        f"Etc/GMT{-int(tmy.utc_offset_h):+d}" if tmy.utc_offset_h == int(tmy.utc_offset_h) else None
    )
    tzinfo = tz if tz is not None else pd.Timedelta(hours=tmy.utc_offset_h)
    year_start = pd.Timestamp(year=year, month=1, day=1)
    year_start = (
        year_start.tz_localize(tzinfo)
        if isinstance(tzinfo, str)
        else (year_start - tzinfo).tz_localize("UTC")
    )
    # Wrap the times into the typical year: a window past 31 December continues on 1 January.
    mid_times = year_start + pd.to_timedelta(np.mod(mid_s, _YEAR_S), unit="s")
    solpos = pvlib.solarposition.get_solarposition(
        pd.DatetimeIndex(mid_times), tmy.latitude, tmy.longitude, altitude=tmy.altitude_m
    )
    zenith = solpos["apparent_zenith"].to_numpy(dtype=np.float64)
    azimuth = solpos["azimuth"].to_numpy(dtype=np.float64)
    night = zenith >= 90.0
    ghi, dni, dhi = (np.where(night, 0.0, v) for v in (ghi, dni, dhi))

    def frozen(a: FloatArray) -> FloatArray:
        a = np.ascontiguousarray(a, dtype=np.float64)
        a.setflags(write=False)
        return a

    return WeatherSeries(
        station=tmy.station,
        latitude=tmy.latitude,
        longitude=tmy.longitude,
        altitude_m=tmy.altitude_m,
        start=year_start + pd.Timedelta(seconds=start_s),
        step_s=step_s,
        temperature_c=frozen(temperature),
        ghi_w_per_m2=frozen(ghi),
        dni_w_per_m2=frozen(dni),
        dhi_w_per_m2=frozen(dhi),
        solar_zenith_deg=frozen(zenith),
        solar_azimuth_deg=frozen(azimuth),
        wind_speed_m_per_s=frozen(wind),
        relative_humidity=frozen(humidity),
    )
