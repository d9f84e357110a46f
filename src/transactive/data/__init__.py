"""Loaders of real data shipped inside installed packages (no download at run time).

- :mod:`transactive.data.weather_tmy`: Typical Meteorological Year (TMY3) files from pvlib's data
  folder, resampled to any step length, with solar position from pvlib's SPA.
- :mod:`transactive.data.profiles`: SimBench's yearly load and generation profiles (15-minute
  values shipped with the ``simbench`` package), at any step length.
"""

from transactive.data.profiles import (
    ProfileSet,
    available_simbench_profiles,
    load_simbench_profiles,
    resample_mean,
)
from transactive.data.weather_tmy import WeatherSeries, available_tmy3, load_tmy3

__all__ = [
    "ProfileSet",
    "WeatherSeries",
    "available_simbench_profiles",
    "available_tmy3",
    "load_simbench_profiles",
    "load_tmy3",
    "resample_mean",
]
