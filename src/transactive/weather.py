"""Weather as the device layer sees it: one sample of outdoor conditions per time step.

Loaders (TMY3 files shipped by pvlib) produce these; devices only read them, so the device
layer needs no clock and no files. Solar position is computed by the loader (pvlib's SPA), so a
device that needs it (PV, solar gains on a wall) gets angles, not a timestamp.

Relative humidity is a fraction in ``[0, 1]`` (not percent), as GridLAB-D's ``climate.humidity``
is (GridLAB-D ``climate/climate.cpp``: a TMY3 ``RHum`` of 60 % is read as 0.60); the HVAC's
latent load reads it. Its default, 0.75, is GridLAB-D's climate default; a caller that knows the
humidity should say it. Every device refuses a NaN or infinite field where it reads the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WeatherSample"]


@dataclass(frozen=True)
class WeatherSample:
    """Outdoor conditions over one time step (averages over the step)."""

    temperature_c: float
    ghi_w_per_m2: float = 0.0
    dni_w_per_m2: float = 0.0
    dhi_w_per_m2: float = 0.0
    solar_zenith_deg: float = 90.0
    solar_azimuth_deg: float = 180.0
    relative_humidity: float = 0.75  # fraction, 0..1 (GridLAB-D climate's default humidity)
    wind_speed_m_per_s: float = 0.0
