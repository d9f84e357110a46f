"""Loaders of real data shipped inside installed packages (no download at run time).

- :mod:`transactive.data.weather_tmy`: Typical Meteorological Year (TMY3) files from pvlib's data
  folder, resampled to any step length, with solar position from pvlib's SPA.
- :mod:`transactive.data.profiles`: SimBench's yearly load and generation profiles (15-minute
  values shipped with the ``simbench`` package), at any step length.

The loaders pull in pvlib, pandas and simbench, so they are imported on first use (PEP 562 module
``__getattr__``): ``import transactive.data`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Public name -> the module that defines it.
_EXPORTS = {
    "ProfileSet": "transactive.data.profiles",
    "available_simbench_profiles": "transactive.data.profiles",
    "load_simbench_profiles": "transactive.data.profiles",
    "resample_mean": "transactive.data.profiles",
    "WeatherSeries": "transactive.data.weather_tmy",
    "available_tmy3": "transactive.data.weather_tmy",
    "load_tmy3": "transactive.data.weather_tmy",
}


def __getattr__(name: str) -> Any:
    """Import a loader from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'transactive.data' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
