"""Air conditioners and heat pumps in houses: ETP physics, thermostat, ramp-controller bids.

The ETP two-node model, a deadband thermostat, and the Olympic Peninsula / GridLAB-D
``controller`` (ramp mode) bidding and setpoint response.

Physics (GridLAB-D ``residential/house_e.cpp``; the equivalent thermal parameters (ETP) model of
the GridLAB-D *Residential Module User's Guide* and Taylor, Chassin, Gourisetti, "GridLAB-D
Technical Support Document: Residential End-Use Module", PNNL-27211 (2018), and Sonderegger's ETP
derivation that it cites). Two nodes, air ``Ta`` and mass ``Tm``::

    Ca dTa/dt = UA (To - Ta) + Hm (Tm - Ta) + Qa        (air node)
    Cm dTm/dt = Hm (Ta - Tm) + Qm                        (mass node)

``Qa = Qhvac + (1 - fi) Qint + (1 - fs) Qsolar`` and ``Qm = fi Qint + fs Qsolar`` with
GridLAB-D's ``mass_internal_gain_fraction = mass_solar_gain_fraction = 0.5`` by default. Over a
step with constant inputs the system ``x' = A x + b`` is solved exactly, as ``house_e`` does: the
steady state ``Ta* = To + (Qa + Qm)/UA``, ``Tm* = Ta* + Qm/Hm`` and the 2x2 matrix exponential
written with the two real negative eigenvalues ``r1, r2`` of ``A`` (Sylvester's formula,
``exp(At) = (e^{r1 t}(A - r2 I) - e^{r2 t}(A - r1 I)) / (r1 - r2)``), vectorized over houses.

Thermostat switching inside a step is solved, not sampled: when the air temperature reaches the
switching threshold within the step, the crossing time is found on the closed-form trajectory
(bracketed Newton iteration, to 1e-6 s), the state is advanced to it, the HVAC switches and the
rest of the step is solved again. The loop runs over *events* (at most a few per step), each
iteration vectorized over the houses that switch; never over houses. The metered power of a step
is ``rated electric power x duty x (time on / step)``.

Equipment: capacity and COP depend on outdoor temperature through GridLAB-D's default curve fits
(``house_e.cpp``, outdoor temperature ``T`` in °F): cooling capacity factor
``1.48924533 - 0.00514995 T``, cooling COP divisor ``-0.01363961 + 0.01066989 max(T, 40)``;
heat-pump heating capacity factor ``0.34148808 + 0.00894102 T + 0.00010787 T^2``, heating COP
divisor ``2.03914613 - 0.03906753 T + 0.00045617 T^2 - 0.00000203 T^3`` with ``T <= 80``.

The rest of GridLAB-D's residential model (``house_e.cpp`` ``update_system`` and
``update_model``), folded into one place, ``HvacPopulation._heat_inputs``, that the physics step
and the interval bid both read:

- latent load: cooling, only the sensible share ``1 / (1 + 0.1 + llf / (1 + exp(4 - 10 RH)))``
  of the capacity cools the air (``latent_load_fraction`` ``llf``, 0.30 in GridLAB-D; outdoor
  relative humidity ``RH`` as a fraction, ``WeatherSample.relative_humidity``); the electric
  power is that of the whole capacity;
- the fan: while the HVAC runs it draws ``fan_power_kw`` (GridLAB-D's ``fan_power``, autosized
  from the design airflow in 1/8 hp steps) and its heat (``fan_heatgain_fraction``, 1 with
  ``include_fan_heatgain``) enters the air;
- solar gains through windows spread evenly over the eight wall orientations:
  ``solar_heatgain_factor`` (window area x SHGC x exterior transmission) times the mean
  irradiance on the eight vertical walls, computed with pvlib's transposition from the weather's
  DNI/DHI/GHI at the solar position the sample carries (the diffuse part as GridLAB-D's climate
  computes it, ``beam + DHI``, or pvlib's isotropic sky with ground reflection).

``HvacPopulation.from_gridlabd`` takes a GridLAB-D house's properties under their names and in
their units and derives UA, capacities, design capacity and fan exactly as ``house_e`` ``init``
does. On the same houses and weather the daily HVAC energy agrees with GridLAB-D 6.0.0's within
1 % per house (``tests/devices/test_hvac_gridlabd.py`` runs GridLAB-D itself). Not modelled:
auxiliary resistance heat, two-speed fans, motor models, GridLAB-D's 120 s thermostat cycle
lockout (``thermostat_cycle_time``; a deadband cycle is much longer) and its rounding of
switching times up to whole seconds.

Market (GridLAB-D ``market/controller.cpp``, ramp mode; Hammerstrom et al., "Pacific Northwest
GridWise Testbed Demonstration Projects, Part I: Olympic Peninsula Project", PNNL-17167, 2007):
the comfort band ``[Tmin, Tmax]`` around the base setpoint, ramps ``k_low``, ``k_high``; a
cleared price ``p`` shifts the setpoint to ``Tset(p) = Tset + (p - mean) |T_lim - Tset| /
(k sigma)``, clipped to the band (sign flipped for heating), and the ramp price of a temperature
``T``, ``mean + k sigma (T - Tset) / |T_lim - Tset|``, is the price whose shifted setpoint is
``T``. The quantity is the **average power over the market interval**, as Widergren et al.
(PNNL-27235, Part II) recast the gridSMART bid, because an instantaneous power is not what a
thermostat then draws. With the exact ETP solution under the forecast weather, a
run-first-then-off schedule gives two bounding on-times: the must-run ``tau_lo`` (the least after
which the air, left off, stays inside the uncomfortable edge, ``Tmax`` when cooling, to the
interval's end) and the can-run ``tau_hi`` (the most before the air reaches the comfortable edge,
at most the interval). The curve follows the setpoint the price shifts the house to: one point
per bid setpoint (:data:`transactive.devices.ramp.BID_SETPOINT_SHARES`: the comfortable edge, the
base setpoint, the uncomfortable edge), each at the ramp price of that setpoint, with the power of
the on-time in ``[tau_lo, tau_hi]`` that brings the air to the setpoint at the interval's end
(closed form, :meth:`HvacPopulation._end_of_interval_c`, bracketed Newton iteration): the
uncomfortable edge's point is the must-run power, the comfortable edge's the can-run power (less
only where the air, left off there, drifts on past the edge). Linear between the points, then the
must-run power as a block at the cap (the shape of the four-point bid of PNNL's DSO+T study,
2022, OSTI 1842489). A falling price thus brings houses in gradually, each by its own
temperature, band and ramps, instead of running every house whose ramp price it crosses to the
comfortable edge at once. "What it draws" is exactly the scheduled on-time for a house whose band
holds on every schedule in ``[tau_lo, tau_hi]`` (``tau_lo`` keeps the air 1e-9 K inside the
uncomfortable edge, found by bracketed Newton iteration on the closed form, and only for the few
houses that need it); for the others (the band cannot be held: ``tau_lo = tau_hi``, the whole
curve is the must-run power) it is a dry run of :meth:`HvacPopulation.step`'s own policy, band
overrides included. The reported setpoint after the response is the controller's shift
``Tset(p)`` (the side chosen so the shift is the exact inverse of the ramp price).

Response: a house reads its average power ``a`` off its own curve, ``power_at(p, fill)``, and
runs from the interval's start for the on-time that draws ``a`` on the model (its own on-time
where the band holds, else by bisection on dry runs), then stays off. ``step`` follows
the schedule, switching at the exact scheduled instant inside a physics step, overridden only at
the band: a scheduled-off house switches on at the uncomfortable edge (off again a deadband
inside it), a scheduled-on house off at the comfortable edge. What holds: per house, the
interval energy equals the allocation exactly on the model under the forecast weather, however
the interval is stepped (the overrides are in the prediction); with other weather it differs by
what the weather changes (in aggregate 0.02 % or less over 2,000 houses on TMY minute weather
against the 5-minute forecast). A single thermostat cycling inside its deadband could not do
this: it draws its duty cycle whatever it was allocated. Past the interval's end (no new
response), the deadband thermostat around ``Tset(p)`` governs, as GridLAB-D's controller holds
its setpoint until the next clearing.

Speed (issue 17): ``step``, ``step_many``, ``bid`` and ``respond`` run as fused numba kernels
(:mod:`transactive.devices._hvac_kernels`: one loop over the houses, both cores from 500,000
houses, and ``step_many``'s day always), the per-house form of the vectorized numpy code here,
which stays the reference they are tested against (``kernel="numpy"``, and whenever a caller has
replaced a state array by one the kernels cannot read as it is). They agree bit for bit where no
switching time or on-time is solved (numpy's own ``exp``/``expm1`` of whole steps and intervals
are passed in) and within the iterations' tolerances where one is: temperatures within 1e-7 K,
energies within 1e-7 kWh, bid powers within 1e-6 kW (``tests/devices/test_hvac_kernels.py``).
Measured on the shared 2-core machine (``benchmarks/bench_devices_hvac.py``, best of five):
one 5-minute interval of 10^6 houses (bid, respond, five 60 s steps) in 0.23-0.31 s with
``step_many`` (bid 0.10-0.12 s, respond 0.01 s, steps 0.12-0.17 s), 0.27-0.37 s with five
``step`` calls, over the 0.2 s target: the time is in per-house divisions and chains of
exponentials (see the kernels' module), and the second core is often busy; a GridLAB-D day of
1,000 houses at 60 s runs 219-421 times GridLAB-D 6.0.0's house-hours per second.

Without a market (never calling ``respond``) the population is a plain thermostat around the base
setpoint. ``command`` gives direct load control (used by the virtual-battery tracker): the
commanded state holds, overridden only at the comfort band's edges.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves, checked_ids, default_ids
from transactive.devices import _kernels as _kernel_module
from transactive.devices._common import (
    _NONNEGATIVE_WEATHER,
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _Fields,
    _power_on_curve,
    _price_and_fill,
    _readonly,
    _validated_columns,
)
from transactive.devices._kernels import KERNELS, checked_kernel, scratch_array, state_column
from transactive.devices._steps import StepSeries, WeatherSamples, steps_one_by_one
from transactive.devices.base import Horizon, MarketInterval, PriceStats, StepResult
from transactive.devices.flexibility import (
    BestResponse,
    Flexibility,
    _checked_horizon_weather,
    solve_best_response,
    widened_to_way_back,
)
from transactive.devices.ramp import (
    BID_SETPOINT_SHARES,
    _band_bid_points,
    _follow_schedule,
    _interval_curves,
    _least_on_time_s,
    _on_time_for_s,
    _setpoint_on_times_s,
    ramp_setpoint,
)
from transactive.devices.tcl_battery import hvac_batteries
from transactive.errors import Problems, ValidationError
from transactive.weather import WeatherSample

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COOLING",
    "GRIDLABD_HOUSE",
    "HEATING",
    "KERNELS",
    "WALL_AZIMUTHS_DEG",
    "EtpCoefficients",
    "EtpStepResult",
    "HeatInputs",
    "HvacPopulation",
    "StepSeries",
    "WeatherSamples",
    "cooling_capacity_factor",
    "cooling_cop",
    "etp_advance",
    "etp_eigenvalues",
    "gridlabd_fan_power_kw",
    "heating_capacity_factor",
    "heating_cop",
    "sensible_heat_ratio",
    "wall_irradiance_w_per_m2",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


def _readonly_bool(a: BoolArray) -> BoolArray:
    a = np.array(a, dtype=bool)
    a.setflags(write=False)
    return a


COOLING = 1
"""Mode code: the device removes heat (runs when the temperature is above its setpoint)."""
HEATING = -1
"""Mode code: the device adds heat (runs when the temperature is below its setpoint)."""

_MODE_NAMES = {"cooling": COOLING, "heating": HEATING}


def _mode_codes(mode: Any) -> Any:
    """Mode codes from codes or names: ``"cooling"``/``"heating"`` read as COOLING/HEATING."""
    if isinstance(mode, str):
        return _MODE_NAMES.get(mode.strip().lower(), mode)
    arr = np.asarray(mode)
    if arr.dtype.kind in "US":
        names = np.char.lower(np.char.strip(arr.astype(str)))
        return np.where(names == "cooling", COOLING, np.where(names == "heating", HEATING, np.nan))
    return mode


#: GridLAB-D ``house_e``: fraction of internal and solar gains that go to the mass node.
MASS_INTERNAL_GAIN_FRACTION = 0.5
MASS_SOLAR_GAIN_FRACTION = 0.5

#: Unit conversions for GridLAB-D's imperial defaults.
KW_PER_BTU_PER_H_F = 0.29307107e-3 * 1.8  # Btu/(h·°F) -> kW/K
KJ_PER_K_PER_BTU_PER_F = 1.05505585 * 1.8  # Btu/°F -> kJ/K
_SECONDS_PER_HOUR = 3600.0

#: More unit conversions for GridLAB-D's imperial units.
KW_PER_BTU_PER_H = 0.29307107e-3  # Btu/h -> kW
M2_PER_SF = 0.09290304  # square foot -> m²


def _celsius(temperature_f: FloatArray) -> FloatArray:
    return np.asarray((np.asarray(temperature_f, dtype=np.float64) - 32.0) / 1.8, dtype=np.float64)


#: The GridLAB-D ``house`` properties :meth:`HvacPopulation.from_gridlabd` reads: name ->
#: (unit, default when absent). The defaults are ``house_e.cpp``'s (``create``, ``init``); a
#: default of None is derived from the others as ``init`` derives it. ``glazing_shgc`` and
#: ``Rwindows`` default to GridLAB-D's values for its default glazing (two layers, low-e glass,
#: clear, thermal-break frame); other glazing needs them given.
GRIDLABD_HOUSE: dict[str, tuple[str, float | None]] = {
    "floor_area": ("sf", None),
    "ceiling_height": ("ft", 8.0),
    "number_of_stories": ("", 1.0),
    "aspect_ratio": ("", 1.5),
    "gross_wall_area": ("sf", None),
    "window_wall_ratio": ("", 0.15),
    "number_of_doors": ("", 4.0),
    "exterior_wall_fraction": ("", 1.0),
    "exterior_ceiling_fraction": ("", 1.0),
    "exterior_floor_fraction": ("", 1.0),
    "interior_exterior_wall_ratio": ("", 1.5),
    "window_exterior_transmission_coefficient": ("", 0.60),
    "glazing_shgc": ("", 0.67),
    "Rroof": ("degF*sf*h/Btu", 30.0),
    "Rwall": ("degF*sf*h/Btu", 19.0),
    "Rfloor": ("degF*sf*h/Btu", 22.0),
    "Rwindows": ("degF*sf*h/Btu", 1.0 / 0.47),
    "Rdoors": ("degF*sf*h/Btu", 5.0),
    "airchange_per_hour": ("1/h", 0.5),
    "envelope_UA": ("Btu/degF*h", None),
    "airchange_UA": ("Btu/degF*h", None),
    "UA": ("Btu/degF*h", None),
    "air_heat_capacity": ("Btu/degF", None),
    "mass_heat_capacity": ("Btu/degF", None),
    "mass_heat_coeff": ("Btu/degF*h", None),
    "total_thermal_mass_per_floor_area": ("Btu/degF*sf", 2.0),
    "interior_surface_heat_transfer_coeff": ("Btu/h*degF*sf", 1.46),
    "mass_internal_gain_fraction": ("pu", 0.5),
    "mass_solar_gain_fraction": ("pu", 0.5),
    "internal_gain": ("Btu/h", 0.0),
    "system_mode": ("COOL|HEAT", None),
    "cooling_setpoint": ("degF", 75.0),
    "heating_setpoint": ("degF", 70.0),
    "thermostat_deadband": ("degF", 2.0),
    "cooling_COP": ("pu", 3.5),
    "heating_COP": ("pu", 2.5),
    "design_cooling_setpoint": ("degF", 75.0),
    "design_heating_setpoint": ("degF", 70.0),
    "cooling_design_temperature": ("degF", 95.0),
    "design_peak_solar": ("Btu/h*sf", 195.0),
    "design_internal_gains": ("Btu/h", None),
    "over_sizing_factor": ("pu", 0.0),
    "latent_load_fraction": ("pu", 0.30),
    "use_latent_heat": ("bool", 1.0),
    "design_cooling_capacity": ("Btu/h", None),
    "design_heating_capacity": ("Btu/h", None),
    "duct_pressure_drop": ("inH2O", 0.5),
    "cooling_supply_air_temp": ("degF", 50.0),
    "heating_supply_air_temp": ("degF", 150.0),
    "fan_design_power": ("W", None),
    "include_fan_heatgain": ("bool", 1.0),
    "air_temperature": ("degF", None),
    "mass_temperature": ("degF", None),
}

#: Bracketed Newton iterations for a switching time (bisection alone reaches 1e-6 s of a
#: one-hour bracket in 32).
_NEWTON_ITERATIONS = 60
_ROOT_TOLERANCE_S = 1e-6
#: The must-run on-time's tolerance, and the margin inside the band's uncomfortable edge it keeps
#: (so that the physics step, solving the same trajectory in other pieces, cannot round onto
#: the edge and switch). Newton iterations on it before only bisections are taken.
_ON_TIME_TOLERANCE_S = 1e-9
_BAND_MARGIN_C = 1e-9
_NEWTON_STEPS = 12
#: The bid setpoints' on-times are found to a millisecond: what the air then misses the setpoint
#: by is a few 1e-6 K, and the response draws whatever the curve says exactly either way.
_SETPOINT_TOLERANCE_S = 1e-3


# ---------------------------------------------------------------------------- equipment curves


def _fahrenheit(temperature_c: FloatArray | float) -> FloatArray:
    return np.asarray(temperature_c, dtype=np.float64) * 1.8 + 32.0


def cooling_capacity_factor(outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Air-conditioner capacity / rated capacity (GridLAB-D ``house_e.cpp`` default curve)."""
    t = _fahrenheit(outdoor_temperature_c)
    return 1.48924533 - 0.00514995 * t


def _cooling_cop_divisor(outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Rated COP / COP of an air conditioner (GridLAB-D ``house_e.cpp``), held below 40 °F."""
    t = np.maximum(_fahrenheit(outdoor_temperature_c), 40.0)
    return np.asarray(-0.01363961 + 0.01066989 * t, dtype=np.float64)


def cooling_cop(rated_cop: FloatArray, outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Air-conditioner COP at an outdoor temperature (GridLAB-D ``house_e.cpp`` default curve).

    The rated COP holds at 95 °F; below 40 °F the curve is held at its 40 °F value.
    """
    return np.asarray(rated_cop / _cooling_cop_divisor(outdoor_temperature_c), dtype=np.float64)


def heating_capacity_factor(outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Heat-pump heating capacity / rated capacity (GridLAB-D ``house_e.cpp`` default curve)."""
    t = _fahrenheit(outdoor_temperature_c)
    return 0.34148808 + 0.00894102 * t + 0.00010787 * t * t


def _heating_cop_divisor(outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Rated COP / COP of a heat pump heating (GridLAB-D ``house_e.cpp``), held above 80 °F."""
    t = np.minimum(_fahrenheit(outdoor_temperature_c), 80.0)
    divisor = 2.03914613 - 0.03906753 * t + 0.00045617 * t * t - 0.00000203 * t * t * t
    return np.asarray(divisor, dtype=np.float64)


def heating_cop(rated_cop: FloatArray, outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Heat-pump heating COP at an outdoor temperature (GridLAB-D ``house_e.cpp`` default curve).

    The rated COP holds near 47 °F; above 80 °F the curve is held at its 80 °F value.
    """
    return np.asarray(rated_cop / _heating_cop_divisor(outdoor_temperature_c), dtype=np.float64)


def sensible_heat_ratio(
    latent_load_fraction: FloatArray | float, relative_humidity: float
) -> FloatArray:
    """Share of an air conditioner's total capacity that cools the air (the rest dries it).

    GridLAB-D ``house_e.cpp`` (``update_system``, ``SM_COOL`` with ``use_latent_heat``): the
    sensible heat removed is ``capacity / (1 + 0.1 + llf / (1 + exp(4 - 10 RH)))``, with ``llf``
    the ``latent_load_fraction`` and ``RH`` the outdoor relative humidity as a fraction; the
    latent part ``Qlatent`` is the rest. At RH = 0.4 the latent term is half of ``llf``.
    """
    llf = np.asarray(latent_load_fraction, dtype=np.float64)
    return np.asarray(
        1.0 / (1.1 + llf / (1.0 + math.exp(4.0 - 10.0 * relative_humidity))), dtype=np.float64
    )


#: Compass azimuths of the eight wall orientations GridLAB-D's ``house_e`` spreads its windows
#: over (N, NE, E, SE, S, SW, W, NW; degrees east of north, pvlib's convention).
WALL_AZIMUTHS_DEG = np.arange(8, dtype=np.float64) * 45.0
SOLAR_MODELS = ("gridlabd", "isotropic")
#: Ground reflectance of the ``isotropic`` model (pvlib's default albedo).
GROUND_ALBEDO = 0.25


def wall_irradiance_w_per_m2(weather: WeatherSample, model: str = "gridlabd") -> FloatArray:
    """Irradiance on a vertical wall facing each of :data:`WALL_AZIMUTHS_DEG` (W/m², shape (8,)).

    The beam part is pvlib's ``irradiance.beam_component`` (DNI x cos of the angle of incidence,
    zero behind the wall) at the solar position the sample carries. ``model`` chooses the diffuse
    part: ``"gridlabd"`` adds the full DHI on every wall and no ground reflection, as GridLAB-D's
    ``climate`` does (``climate.cpp``, ``tmy2_reader::calc_solar``: ``dnr * cos_incident +
    dhr``), which :meth:`HvacPopulation.from_gridlabd` houses use; ``"isotropic"`` is pvlib's
    isotropic sky (``irradiance.isotropic``, DHI/2 on a wall) plus ground reflection
    (``irradiance.get_ground_diffuse``, albedo :data:`GROUND_ALBEDO`).
    """
    import pvlib  # noqa: PLC0415 - deferred: only a stepped house needs it (fast CLI start)

    if weather.solar_zenith_deg >= 90.0 and weather.dhi_w_per_m2 <= 0.0:
        return np.zeros(WALL_AZIMUTHS_DEG.size)
    beam = np.asarray(
        pvlib.irradiance.beam_component(
            90.0,
            WALL_AZIMUTHS_DEG,
            weather.solar_zenith_deg,
            weather.solar_azimuth_deg,
            weather.dni_w_per_m2,
        ),
        dtype=np.float64,
    )
    if model == "gridlabd":
        return beam + weather.dhi_w_per_m2
    sky = float(pvlib.irradiance.isotropic(90.0, weather.dhi_w_per_m2))
    ground = float(
        pvlib.irradiance.get_ground_diffuse(90.0, weather.ghi_w_per_m2, albedo=GROUND_ALBEDO)
    )
    return beam + sky + ground


def _mean_wall_irradiance_w_per_m2(
    solar_zenith_deg: FloatArray,
    solar_azimuth_deg: FloatArray,
    dni_w_per_m2: FloatArray,
    dhi_w_per_m2: FloatArray,
    ghi_w_per_m2: FloatArray,
    model: str,
) -> FloatArray:
    """The mean of :func:`wall_irradiance_w_per_m2` over the eight walls, for T samples at once.

    The same pvlib calls on ``(T, 8)`` arrays (shape (T,)); a dark sample (sun below the
    horizon, no diffuse light) is 0.
    """
    import pvlib  # noqa: PLC0415 - deferred: only a stepped house needs it (fast CLI start)

    beam = np.asarray(
        pvlib.irradiance.beam_component(
            90.0,
            WALL_AZIMUTHS_DEG[None, :],
            solar_zenith_deg[:, None],
            solar_azimuth_deg[:, None],
            dni_w_per_m2[:, None],
        ),
        dtype=np.float64,
    )
    if model == "gridlabd":
        walls = beam + dhi_w_per_m2[:, None]
    else:
        sky = np.asarray(pvlib.irradiance.isotropic(90.0, dhi_w_per_m2), dtype=np.float64)
        ground = np.asarray(
            pvlib.irradiance.get_ground_diffuse(90.0, ghi_w_per_m2, albedo=GROUND_ALBEDO),
            dtype=np.float64,
        )
        walls = beam + sky[:, None] + ground[:, None]
    dark = (solar_zenith_deg >= 90.0) & (dhi_w_per_m2 <= 0.0)
    return np.asarray(np.where(dark, 0.0, np.mean(walls, axis=1)), dtype=np.float64)


def gridlabd_fan_power_kw(
    design_cooling_capacity_btu_per_h: FloatArray,
    design_heating_capacity_btu_per_h: FloatArray,
    *,
    latent_load_fraction: FloatArray,
    duct_pressure_drop_in_h2o: FloatArray,
    design_cooling_setpoint_f: FloatArray,
    cooling_supply_air_temp_f: FloatArray,
    design_heating_setpoint_f: FloatArray,
    heating_supply_air_temp_f: FloatArray,
) -> FloatArray:
    """GridLAB-D's autosized fan (``house_e.cpp`` ``init``), kW.

    Design airflow (cfm) is the larger of the cooling and the heating airflow, each the capacity
    over ``rho c_p |setpoint - supply| x 60`` (the cooling capacity first divided by
    ``1 + latent_load_fraction``; air 0.0735 lb/cf, 0.2402 Btu/(lb·°F)); the fan power is
    ``0.117 x duct pressure drop x cfm / 0.42 / 745.7`` hp rounded up to the next 1/8 hp, times
    745.7 W/hp / 0.88 (motor efficiency).
    """
    rho_cp = 0.0735 * 0.2402
    cool_cfm = (
        design_cooling_capacity_btu_per_h
        / (1.0 + latent_load_fraction)
        / (rho_cp * (design_cooling_setpoint_f - cooling_supply_air_temp_f))
        / 60.0
    )
    heat_cfm = (
        design_heating_capacity_btu_per_h
        / (rho_cp * (heating_supply_air_temp_f - design_heating_setpoint_f))
        / 60.0
    )
    cfm = np.maximum(cool_cfm, heat_cfm)
    eighths = np.ceil(0.117 * duct_pressure_drop_in_h2o * cfm / 0.42 / 745.7 * 8.0)
    return np.asarray(eighths / 8.0 * 745.7 / 0.88 / 1000.0, dtype=np.float64)


# ---------------------------------------------------------------------------- ETP kernel


@dataclass(frozen=True)
class EtpStepResult:
    """Exact result of advancing the ETP model, per house (internal and for tests)."""

    air_temperature_c: FloatArray
    mass_temperature_c: FloatArray
    on: BoolArray
    on_time_s: FloatArray  # duty-weighted seconds with the HVAC running
    air_excess_integral_ks: FloatArray  # integral of (Ta - To) dt, K·s


@dataclass(frozen=True)
class HeatInputs:
    """Heat flows of every house over a step with constant weather (kW), per house.

    ``q_air_kw`` and ``q_mass_kw`` reach the air and the mass node whatever the HVAC does;
    ``q_on_kw`` is the sensible heat a running HVAC adds to the air at full output (negative when
    cooling; the fan's heat included), ``electric_on_kw`` what it then draws from the grid
    (compressor and fan).
    """

    q_air_kw: FloatArray
    q_mass_kw: FloatArray
    q_on_kw: FloatArray
    electric_on_kw: FloatArray
    internal_gain_kw: FloatArray
    solar_gain_kw: FloatArray
    latent_on_kw: FloatArray  # latent heat a running air conditioner removes (GridLAB-D Qlatent)
    fan_on_kw: FloatArray  # the fan's electric power while running (in electric_on_kw)


def etp_eigenvalues(
    ua: FloatArray, hm: FloatArray, ca: FloatArray, cm: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """The two eigenvalues (1/s, both negative, ``r_fast < r_slow``) of the ETP system matrix.

    ``A = [[-(UA+Hm)/Ca, Hm/Ca], [Hm/Cm, -Hm/Cm]]``; ``A`` is similar to a symmetric negative
    definite matrix, so they are real and distinct. ``r_slow = det / r_fast`` avoids cancellation.
    """
    a11 = -(ua + hm) / ca
    a22 = -hm / cm
    trace = a11 + a22
    det = ua * hm / (ca * cm)
    disc = np.sqrt(trace * trace - 4.0 * det)
    r_fast = 0.5 * (trace - disc)
    r_slow = det / r_fast
    return r_fast, r_slow


@dataclass(frozen=True)
class EtpCoefficients:
    """Per-house constants of the ETP solution, computed once per population.

    With ``d = x0 - x*`` the deviation from the steady state, Sylvester's formula
    ``exp(At) = (e^{r1 t}(A - r2 I) - e^{r2 t}(A - r1 I)) / (r1 - r2)`` gives
    ``Ta(t) - Ta* = alpha e^{r1 t} + (da - alpha) e^{r2 t}`` with
    ``alpha = ka da + km dm`` and ``Tm(t) - Tm* = beta e^{r1 t} + (dm - beta) e^{r2 t}`` with
    ``beta = la da + lm dm``.
    """

    r1: FloatArray
    r2: FloatArray
    inv_ua: FloatArray
    inv_hm: FloatArray
    ka: FloatArray
    km: FloatArray
    la: FloatArray
    lm: FloatArray

    @classmethod
    def of(cls, ua: FloatArray, hm: FloatArray, ca: FloatArray, cm: FloatArray) -> EtpCoefficients:
        """The coefficients of houses with conductances (kW/K) and capacities (kJ/K)."""
        r1, r2 = etp_eigenvalues(ua, hm, ca, cm)
        gap = r1 - r2
        a11 = -(ua + hm) / ca
        a12 = hm / ca
        a21 = hm / cm
        return cls(
            r1=r1,
            r2=r2,
            inv_ua=1.0 / ua,
            inv_hm=1.0 / hm,
            ka=(a11 - r2) / gap,
            km=a12 / gap,
            la=a21 / gap,
            lm=(-a21 - r2) / gap,
        )


def _etp_modes(
    k: EtpCoefficients,
    sel: slice | IntArray,
    ta: FloatArray,
    tm: FloatArray,
    q_air_kw: FloatArray,
    q_mass_kw: FloatArray,
    outdoor_c: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Steady state and modal amplitudes of houses ``sel`` from ``(ta, tm)`` under constant heat.

    ``q_air_kw`` is all the heat reaching the air (HVAC included). Returns ``ta_ss, tm_ss,
    alpha1, alpha2, beta1, beta2`` of the closed form in :class:`EtpCoefficients`.
    """
    ta_ss = outdoor_c + (q_air_kw + q_mass_kw) * k.inv_ua[sel]
    tm_ss = ta_ss + q_mass_kw * k.inv_hm[sel]
    da = ta - ta_ss
    dm = tm - tm_ss
    alpha1 = k.ka[sel] * da + k.km[sel] * dm
    beta1 = k.la[sel] * da + k.lm[sel] * dm
    return ta_ss, tm_ss, alpha1, da - alpha1, beta1, dm - beta1


def etp_advance(
    *,
    coefficients: EtpCoefficients,
    air_temperature_c: FloatArray,
    mass_temperature_c: FloatArray,
    on: BoolArray,
    q_on_kw: FloatArray,
    q_air_kw: FloatArray,
    q_mass_kw: FloatArray,
    outdoor_c: float,
    dt_s: float | FloatArray,
    switch_on_c: FloatArray,
    switch_off_c: FloatArray,
    direction: FloatArray,
) -> EtpStepResult:
    """Advance N houses by ``dt_s`` (one value, or one per house) exactly, switching at thresholds.

    Heat in kW (``q_on_kw`` is the heat the running HVAC adds to the air, already scaled by
    duty: negative for cooling). A house that is on switches off when
    ``direction (Ta - switch_off) <= 0``; one that is off switches on when
    ``direction (Ta - switch_on) >= 0``.

    Exact for any step length: every switching event inside the step is found (the first
    crossing of the threshold on the closed-form trajectory, including one that a non-monotone
    trajectory would cross and leave again), and the loop runs until no house has an event left.
    It terminates because every event after the first of a house consumes positive time: the air
    sits exactly on the threshold it just crossed, and the next threshold is
    ``|switch_on - switch_off| > 0`` away, which the air needs positive time to travel. Thresholds
    that do not open a positive deadband (``direction (switch_on - switch_off) <= 0``, which would
    let a house chatter at one instant) are refused with a ValueError.
    """
    k = coefficients
    n = air_temperature_c.size
    gap = direction * (switch_on_c - switch_off_c)
    if not bool(np.all(gap > 0)):
        bad = np.flatnonzero(~(gap > 0))
        raise ValueError(
            f"etp_advance: houses {bad[:10].tolist()} have switch_on_c not above switch_off_c "
            "(in their direction): a thermostat needs a positive deadband"
        )
    ta = air_temperature_c.copy()
    tm = mass_temperature_c.copy()
    on_time = np.zeros(n)
    excess = np.zeros(n)
    # Thermostat check at the start of the step.
    state = np.where(on, direction * (ta - switch_off_c) > 0, direction * (ta - switch_on_c) >= 0)
    remaining = np.array(np.broadcast_to(np.asarray(dt_s, dtype=np.float64), (n,)))
    # The first pass covers every house (a slice: views, no copies); later passes only the houses
    # that switched, by index.
    sel: slice | IntArray = slice(None)
    while True:
        r = remaining[sel]
        s_on = state[sel]
        r1, r2 = k.r1[sel], k.r2[sel]
        ta_ss, tm_ss, alpha1, alpha2, beta1, beta2 = _etp_modes(
            k, sel, ta[sel], tm[sel], q_air_kw[sel] + q_on_kw[sel] * s_on, q_mass_kw[sel], outdoor_c
        )
        threshold = np.where(s_on, switch_off_c[sel], switch_on_c[sel])
        # g(t) = sign (Ta(t) - threshold) < 0 at t = 0; the event is its first root.
        sign = np.where(s_on, -direction[sel], direction[sel])
        # The exponentials at the step's end serve the crossing test and, for the houses that do
        # not switch (most), the new state and the integral; expm1 keeps the integral exact.
        m1 = np.expm1(r1 * r)
        m2 = np.expm1(r2 * r)
        e1 = m1 + 1.0
        e2 = m2 + 1.0
        c, t_c = _crossings(
            sign * (ta_ss - threshold), sign * alpha1, sign * alpha2, r1, r2, r, e1, e2
        )
        tau = r
        if c.size:
            tau = r.copy()
            tau[c] = t_c
            m1[c] = np.expm1(r1[c] * t_c)
            m2[c] = np.expm1(r2[c] * t_c)
            e1[c] = m1[c] + 1.0
            e2[c] = m2[c] + 1.0
        ta_new = ta_ss + alpha1 * e1 + alpha2 * e2
        ta_new[c] = threshold[c]
        ta[sel] = ta_new
        tm[sel] = tm_ss + beta1 * e1 + beta2 * e2
        on_time[sel] += tau * s_on
        # integral of Ta - To over [0, tau]: closed form of the two exponentials.
        excess[sel] += (ta_ss - outdoor_c) * tau + alpha1 * (m1 / r1) + alpha2 * (m2 / r2)
        if c.size == 0:
            break
        nxt: IntArray = c if isinstance(sel, slice) else sel[c]
        remaining[nxt] -= tau[c]
        state[nxt] = ~state[nxt]
        sel = nxt
    return EtpStepResult(ta, tm, state, on_time, excess)


def _first_crossing(
    offset: FloatArray,
    alpha1: FloatArray,
    alpha2: FloatArray,
    r1: FloatArray,
    r2: FloatArray,
    horizon: FloatArray,
) -> tuple[BoolArray, FloatArray]:
    """Whether and when ``g(t) = offset + alpha1 e^{r1 t} + alpha2 e^{r2 t}`` first reaches 0.

    ``g(0) < 0``; returns ``(crosses, t)`` with ``t`` the first root in ``(0, horizon]`` where
    there is one, else ``horizon``. See :func:`_crossings`.
    """
    c, t_c = _crossings(
        offset, alpha1, alpha2, r1, r2, horizon, np.exp(r1 * horizon), np.exp(r2 * horizon)
    )
    crosses = np.zeros(offset.size, dtype=bool)
    crosses[c] = True
    t = horizon.copy()
    t[c] = t_c
    return crosses, t


def _crossings(
    offset: FloatArray,
    alpha1: FloatArray,
    alpha2: FloatArray,
    r1: FloatArray,
    r2: FloatArray,
    horizon: FloatArray,
    e1_end: FloatArray,
    e2_end: FloatArray,
) -> tuple[IntArray, FloatArray]:
    """The entries whose ``g(t) = offset + alpha1 e^{r1 t} + alpha2 e^{r2 t}`` reaches 0, and when.

    ``g(0) < 0``; ``e1_end, e2_end`` are ``e^{r1 horizon}, e^{r2 horizon}``. Returns the indices
    with a root in ``(0, horizon]`` and the first root of each. ``g`` has at most one extremum
    (``g'(t) = 0`` where ``e^{(r1 - r2) t} = -alpha2 r2 / (alpha1 r1)``), so it is monotone on
    ``[0, t_ext]`` and on ``[t_ext, horizon]``: a root inside the step that the trajectory leaves
    again is found too. Each term is at most its larger end value on ``[0, horizon]``, so an
    entry whose sum of those is negative has no root: only the others are examined.
    """
    bound = offset + np.maximum(alpha1, alpha1 * e1_end) + np.maximum(alpha2, alpha2 * e2_end)
    maybe = np.flatnonzero(bound >= 0)
    if maybe.size == 0:
        return maybe, np.zeros(0)
    offset, alpha1, alpha2 = offset[maybe], alpha1[maybe], alpha2[maybe]
    r1, r2, horizon = r1[maybe], r2[maybe], horizon[maybe]
    g_end = offset + alpha1 * e1_end[maybe] + alpha2 * e2_end[maybe]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = -(alpha2 * r2) / (alpha1 * r1)
        t_ext = np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1.0)) / (r1 - r2), -1.0)
    interior = np.isfinite(t_ext) & (t_ext > 0) & (t_ext < horizon)
    t_ext = np.where(interior, t_ext, 0.0)
    g_ext = offset + alpha1 * np.exp(r1 * t_ext) + alpha2 * np.exp(r2 * t_ext)
    early = interior & (g_ext >= 0)
    crosses = np.flatnonzero(early | (g_end >= 0))
    if crosses.size == 0:
        return crosses, np.zeros(0)
    early, interior, t_ext = early[crosses], interior[crosses], t_ext[crosses]
    from_ext = interior & ~early
    lo = np.where(from_ext, t_ext, 0.0)
    hi = np.where(early, t_ext, horizon[crosses])
    offset = offset[crosses]
    alpha1, alpha2 = alpha1[crosses], alpha2[crosses]
    g_ext = g_ext[crosses]
    g_lo = np.where(from_ext, g_ext, offset + alpha1 + alpha2)
    g_hi = np.where(early, g_ext, g_end[crosses])
    t = _crossing_time(offset, alpha1, alpha2, r1[crosses], r2[crosses], lo, hi, g_lo, g_hi)
    return maybe[crosses], t


def _crossing_time(
    offset: FloatArray,
    alpha1: FloatArray,
    alpha2: FloatArray,
    r1: FloatArray,
    r2: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    g_lo: FloatArray | None = None,
    g_hi: FloatArray | None = None,
) -> FloatArray:
    """The root in ``[lo, hi]`` of ``g(t) = offset + alpha1 e^{r1 t} + alpha2 e^{r2 t}``.

    ``g`` is monotone on the bracket with ``g(lo) < 0 <= g(hi)``; bracketed Newton iteration (a
    Newton step that leaves the bracket is replaced by bisection) until the bracket or the
    Newton step is below 1e-6 s, each iteration over the roots not yet found. Given ``g_lo`` and
    ``g_hi`` (``g`` at the bracket's ends) the first guess is the secant's root, else the
    bracket's middle.
    """
    lo0 = lo
    hi0 = hi
    lo = lo.copy()
    hi = hi.copy()
    t = 0.5 * (lo + hi)
    if g_lo is not None and g_hi is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            secant = lo - g_lo * (hi - lo) / (g_hi - g_lo)
        t = np.where(np.isfinite(secant) & (secant > lo) & (secant < hi), secant, t)
    active = np.arange(t.size)
    for _ in range(_NEWTON_ITERATIONS):
        ta_, lo_, hi_ = t[active], lo[active], hi[active]
        q1, q2 = alpha1[active], alpha2[active]
        p1, p2 = r1[active], r2[active]
        e1 = np.exp(p1 * ta_)
        e2 = np.exp(p2 * ta_)
        f = offset[active] + q1 * e1 + q2 * e2
        below = f < 0
        lo_ = np.where(below, ta_, lo_)
        hi_ = np.where(below, hi_, ta_)
        slope = q1 * p1 * e1 + q2 * p2 * e2
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = ta_ - f / slope
        inside = np.isfinite(newton) & (newton > lo_) & (newton < hi_)
        t_next = np.where(inside, newton, 0.5 * (lo_ + hi_))
        done = (hi_ - lo_ < _ROOT_TOLERANCE_S) | (np.abs(t_next - ta_) < _ROOT_TOLERANCE_S)
        t[active], lo[active], hi[active] = t_next, lo_, hi_
        active = active[~done]
        if active.size == 0:
            break
    return np.asarray(np.clip(t, lo0, hi0), dtype=np.float64)


@dataclass(frozen=True)
class _Schedule:
    """The on-time schedule of one responded market interval (times in s from the run's start).

    Every house that follows it runs from ``start_s`` to its ``switch_s`` and is off from there
    to ``end_s``; the comfort band's edges override it (see :class:`HvacPopulation`).
    """

    start_s: float
    switch_s: FloatArray
    end_s: float


@dataclass(frozen=True)
class _IntervalPlan:
    """What an interval bid predicted, kept so that the response can turn power into on-time."""

    interval: MarketInterval
    curves: BidCurves
    stats: PriceStats
    heat: HeatInputs
    outdoor_c: float
    air_c: FloatArray  # state the prediction started from
    mass_c: FloatArray
    on: BoolArray
    tau_lo_s: FloatArray  # scheduled on-time of the must-run block
    tau_hi_s: FloatArray  # scheduled on-time of the whole curve (must-run + can-run)
    run_lo_s: FloatArray  # on-time the model then runs (band overrides included)
    run_hi_s: FloatArray
    linear: BoolArray  # runs exactly its schedule for any on-time in [tau_lo, tau_hi]


def _kernels() -> Any:
    """The numba kernels, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _hvac_kernels  # noqa: PLC0415 - deferred: see docstring

    return _hvac_kernels


def _ro(a: npt.ArrayLike, dtype: type = np.float64) -> npt.NDArray[Any]:
    """A kernel's input as one type: contiguous, of ``dtype``, read-only (a view, no copy).

    numba compiles one specialization per argument type, and a writable array is another type
    than a read-only one; every input goes in read-only, so one compiled kernel serves a
    population, its deep copy (whose arrays numpy makes writable) and a subset.
    """
    arr: npt.NDArray[Any] = np.ascontiguousarray(a, dtype=dtype)
    if arr.flags.writeable:
        arr = arr.view()
        arr.setflags(write=False)
    return arr


def _bool_column(value: object, n: int) -> BoolArray | None:
    """A public boolean state array as the kernels take it, else None (:func:`state_column`)."""
    a = np.asarray(value)
    if a.dtype != np.bool_ or a.shape != (n,):
        return None
    return np.ascontiguousarray(a)


def _heat_from_rows(houses: HvacPopulation, rows: tuple[FloatArray, ...]) -> HeatInputs:
    """:class:`HeatInputs` from a kernel's six heat rows (N,), the rest the houses' parameters.

    Rows q_air, q_mass, q_on, electric, solar, latent (``_hvac_kernels.heat_inputs``).
    """
    return HeatInputs(
        q_air_kw=rows[0],
        q_mass_kw=rows[1],
        q_on_kw=rows[2],
        electric_on_kw=rows[3],
        internal_gain_kw=np.asarray(houses.internal_gain_kw, dtype=np.float64),
        solar_gain_kw=rows[4],
        latent_on_kw=rows[5],
        fan_on_kw=np.asarray(houses.fan_power_kw, dtype=np.float64),
    )


def _take_coefficients(k: EtpCoefficients, sel: slice | IntArray) -> EtpCoefficients:
    if isinstance(sel, slice) and sel == slice(None):
        return k
    return EtpCoefficients(
        r1=k.r1[sel], r2=k.r2[sel], inv_ua=k.inv_ua[sel], inv_hm=k.inv_hm[sel],
        ka=k.ka[sel], km=k.km[sel], la=k.la[sel], lm=k.lm[sel],
    )  # fmt: skip


#: The numeric fields of :class:`~transactive.weather.WeatherSample`.
_WEATHER_FIELDS = tuple(f.name for f in fields(WeatherSample))


def _weather_arrays(
    temperature_c: FloatArray,
    relative_humidity: FloatArray,
    flux_w_per_m2: FloatArray,
    ghi_w_per_m2: FloatArray,
    latent_used: bool,
) -> tuple[FloatArray, ...]:
    """The fields of the kernels' ``_hvac_kernels.Weather`` (see ``HvacPopulation._weather``)."""
    t = np.asarray(temperature_c, dtype=np.float64)
    humidity = (
        np.array([1.0 + math.exp(4.0 - 10.0 * float(rh)) for rh in relative_humidity])
        if latent_used
        else np.zeros(t.size)
    )
    return (
        cooling_capacity_factor(t), heating_capacity_factor(t), _cooling_cop_divisor(t),
        _heating_cop_divisor(t), humidity, np.asarray(flux_w_per_m2, dtype=np.float64),
        np.asarray(ghi_w_per_m2, dtype=np.float64), t,
    )  # fmt: skip


def _series_weather(
    weather: WeatherSamples, solar_model: str, latent_used: bool
) -> tuple[tuple[FloatArray, ...], float] | None:
    """The kernels' weather fields of a ``WeatherSeries`` window, and its last temperature.

    Every field is a function of its own step's weather alone, so they are computed once for
    the whole series the window was taken from (:meth:`WeatherSeries.derived`) and the
    window's rows are read off: a simulation's 288 windows of five steps pay pvlib's wall
    irradiance and the checks once instead of 288 times (the same numbers: the functions are
    elementwise; tested against the same window given as samples). None for anything else,
    or for a series with a sample a step refuses (then the window is checked on its own, and
    an error names its sample).
    """
    series = sys.modules.get("transactive.data.weather_tmy")
    if series is None or not isinstance(weather, series.WeatherSeries):
        return None  # (a WeatherSeries exists only once its module is loaded)

    def compute(whole: Any) -> tuple[FloatArray, ...] | None:
        try:
            table = _weather_table(whole)
            if latent_used:
                _check_humidity(table["relative_humidity"])
        except ValidationError:
            return None
        flux = _mean_wall_irradiance_w_per_m2(
            table["solar_zenith_deg"], table["solar_azimuth_deg"], table["dni_w_per_m2"],
            table["dhi_w_per_m2"], table["ghi_w_per_m2"], solar_model,
        )  # fmt: skip
        arrays = _weather_arrays(
            table["temperature_c"],
            table["relative_humidity"],
            flux,
            table["ghi_w_per_m2"],
            latent_used,
        )
        for a in arrays:
            a.setflags(write=False)
        return arrays

    arrays, rows = weather.derived(("hvac-weather", solar_model, latent_used), compute)
    if arrays is None:
        return None
    window = tuple(a[rows] for a in arrays)
    return window, float(window[-1][-1])


def _check_humidity(relative_humidity: FloatArray) -> None:
    """Refuse a humidity that is not a fraction (the latent cooling load reads it)."""
    bad = np.flatnonzero(
        ~(np.isfinite(relative_humidity) & (relative_humidity >= 0) & (relative_humidity <= 1))
    )
    if bad.size:
        problems = Problems(subject="weather")
        rh = float(relative_humidity[bad[0]])
        where = "" if relative_humidity.size == 1 else f" (sample {int(bad[0])})"
        problems.add(
            "relative_humidity",
            f"must be a fraction in [0, 1] for the latent cooling load, got {rh}{where}",
        )
        problems.raise_if_any()


def _weather_table(weather: WeatherSamples) -> dict[str, FloatArray]:
    """The samples' fields as arrays (T,), every sample checked as a step checks one.

    A sequence whose fields are already arrays of its length (a ``WeatherSeries``) is read
    directly. Raises one ValidationError naming the field and the first bad sample of each.
    """
    problems = Problems(subject="weather")
    steps = len(weather)
    if steps == 0:
        problems.add("weather", "needs at least one sample")
        problems.raise_if_any()
    table: dict[str, FloatArray] = {}
    arrays = all(
        isinstance(getattr(weather, name, None), np.ndarray)
        and np.shape(getattr(weather, name)) == (steps,)
        for name in _WEATHER_FIELDS
    )
    if arrays:
        for name in _WEATHER_FIELDS:
            table[name] = np.asarray(getattr(weather, name), dtype=np.float64)
    else:
        samples = [weather[k] for k in range(steps)]
        wrong = [k for k, w in enumerate(samples) if not isinstance(w, WeatherSample)]
        if wrong:
            problems.add("weather", "must be WeatherSample items", tuple(wrong[:10]))
            problems.raise_if_any()
        for name in _WEATHER_FIELDS:
            table[name] = np.array([float(getattr(w, name)) for w in samples])
    for name, values in table.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            problems.add(name, f"must be finite, got {values[bad[0]]} (sample {int(bad[0])})")
        elif name in _NONNEGATIVE_WEATHER and bool(np.any(values < 0)):
            first = int(np.flatnonzero(values < 0)[0])
            problems.add(name, f"must be >= 0, got {values[first]} (sample {first})")
    problems.raise_if_any()
    return table


# ---------------------------------------------------------------------------- population


class HvacPopulation:
    """N houses with an air conditioner or heat pump, ETP thermal model, ramp-mode controller.

    Parameters (arrays of one value per house; scalars are broadcast)
    ----------
    ua_kw_per_k, mass_coupling_kw_per_k:
        Envelope conductance UA (infiltration included) and air-mass coupling Hm (kW/K).
    air_capacity_kj_per_k, mass_capacity_kj_per_k:
        Heat capacities Ca, Cm (kJ/K).
    solar_heatgain_factor_m2:
        GridLAB-D's ``solar_heatgain_factor`` (window area x SHGC x exterior transmission), m²:
        the solar gain is this times the mean irradiance on the eight wall orientations
        (:func:`wall_irradiance_w_per_m2`), the windows spread evenly around the house as in
        ``house_e``.
    solar_aperture_m2:
        A horizontal aperture (skylights), m²: adds aperture x GHI / 1000 kW. Default 0.
    solar_model:
        The diffuse part of the wall irradiance, ``"gridlabd"`` (default, GridLAB-D's climate) or
        ``"isotropic"`` (pvlib's isotropic sky and ground reflection), for the whole population.
    internal_gain_kw:
        Internal heat gains (people, appliances), kW.
    mass_internal_gain_fraction, mass_solar_gain_fraction:
        Shares of the internal and the solar gains that reach the mass node (GridLAB-D: 0.5).
    mode:
        ``COOLING`` (+1) or ``HEATING`` (-1) (or ``"cooling"``, ``"heating"``).
    cooling_capacity_kw, heating_capacity_kw:
        Rated (95 °F / 47 °F) thermal capacities, kW; the one the house's mode uses must be > 0.
        A cooling capacity is the total one (GridLAB-D's ``design_cooling_capacity``): with latent
        heat modelled only its sensible share (:func:`sensible_heat_ratio`) cools the air.
    cooling_cop, heating_cop:
        Rated COPs.
    latent_load_fraction, use_latent_heat:
        GridLAB-D's ``latent_load_fraction`` (0.30 there) and ``use_latent_heat``. With no
        ``latent_load_fraction`` (the default) no latent load is modelled: the whole cooling
        capacity is sensible. Given one, ``use_latent_heat`` defaults to True and the houses that
        use it apply GridLAB-D's humidity-dependent split (:func:`sensible_heat_ratio`), which
        reads the weather's ``relative_humidity``.
    fan_power_kw:
        Electric power of the air handler's fan while the HVAC runs (GridLAB-D ``fan_power``), kW.
    fan_heatgain_fraction:
        Share of the fan's power that heats the air (GridLAB-D: 1 with ``include_fan_heatgain``).
    setpoint_c, comfort_min_c, comfort_max_c:
        Base setpoint and comfort band, ``Tmin < Tset < Tmax``.
    deadband_c:
        Thermostat deadband width (K), centred on the setpoint.
    ramp_low, ramp_high:
        Controller ramps ``k_low``, ``k_high`` (> 0; GridLAB-D's heating ramps are negative, here
        ``mode`` carries the sign).
    air_temperature_c, mass_temperature_c, on:
        Initial state (default: at the setpoint, off).
    outdoor_temperature_c:
        Outdoor temperature assumed by :meth:`bid` until the first :meth:`step`.
    ids:
        One unique string per house (default ``hvac-0 ... hvac-(n-1)``).
    kernel:
        ``"numba"`` (default): the physics step, the interval bid and the response run as fused
        numba kernels over the houses, on every core (:mod:`transactive.devices._hvac_kernels`);
        ``"numpy"``: the vectorized numpy reference they are tested against. They agree bit for
        bit where no switching time or on-time is solved and otherwise within the iterations'
        tolerances (``tests/devices/test_hvac_kernels.py``). The attribute :attr:`kernel` may be
        changed between calls.

    An empty population (every array of length 0) is valid.

    Cumulative accounts (kWh per house, from :meth:`step`): ``heat_hvac_kwh`` (the heat the HVAC
    system adds to the air: sensible, negative when cooling, plus the fan's heat),
    ``heat_gains_kwh``, ``heat_envelope_loss_kwh`` (they close the energy balance with
    :meth:`stored_heat_kwh`), and of the HVAC's part ``heat_latent_kwh`` (latent heat the coil
    removes), ``heat_fan_kwh`` (the fan's heat in the air) and ``electric_fan_kwh`` (the fan's
    metered energy): the compressor's metered energy times its COP is the sensible plus the
    latent heat it moves.
    """

    def __init__(
        self,
        *,
        ua_kw_per_k: npt.ArrayLike,
        mass_coupling_kw_per_k: npt.ArrayLike,
        air_capacity_kj_per_k: npt.ArrayLike,
        mass_capacity_kj_per_k: npt.ArrayLike,
        setpoint_c: npt.ArrayLike,
        comfort_min_c: npt.ArrayLike,
        comfort_max_c: npt.ArrayLike,
        mode: npt.ArrayLike = COOLING,
        cooling_capacity_kw: npt.ArrayLike = 0.0,
        heating_capacity_kw: npt.ArrayLike = 0.0,
        cooling_cop: npt.ArrayLike = 3.5,
        heating_cop: npt.ArrayLike = 2.5,
        solar_heatgain_factor_m2: npt.ArrayLike = 0.0,
        solar_aperture_m2: npt.ArrayLike = 0.0,
        solar_model: str = "gridlabd",
        internal_gain_kw: npt.ArrayLike = 0.0,
        mass_internal_gain_fraction: npt.ArrayLike = MASS_INTERNAL_GAIN_FRACTION,
        mass_solar_gain_fraction: npt.ArrayLike = MASS_SOLAR_GAIN_FRACTION,
        latent_load_fraction: npt.ArrayLike | None = None,
        use_latent_heat: npt.ArrayLike | None = None,
        fan_power_kw: npt.ArrayLike = 0.0,
        fan_heatgain_fraction: npt.ArrayLike = 1.0,
        deadband_c: npt.ArrayLike = 1.0,
        ramp_low: npt.ArrayLike = 2.0,
        ramp_high: npt.ArrayLike = 2.0,
        air_temperature_c: npt.ArrayLike | None = None,
        mass_temperature_c: npt.ArrayLike | None = None,
        on: npt.ArrayLike | None = None,
        outdoor_temperature_c: float = 25.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        f = _Fields("HVAC population")
        ua = f.array("ua_kw_per_k", ua_kw_per_k)
        hm = f.array("mass_coupling_kw_per_k", mass_coupling_kw_per_k)
        ca = f.array("air_capacity_kj_per_k", air_capacity_kj_per_k)
        cm = f.array("mass_capacity_kj_per_k", mass_capacity_kj_per_k)
        setpoint = f.array("setpoint_c", setpoint_c)
        tmin = f.array("comfort_min_c", comfort_min_c)
        tmax = f.array("comfort_max_c", comfort_max_c)
        mode_arr = f.array("mode", _mode_codes(mode))
        cap_c = f.array("cooling_capacity_kw", cooling_capacity_kw)
        cap_h = f.array("heating_capacity_kw", heating_capacity_kw)
        cop_c = f.array("cooling_cop", cooling_cop)
        cop_h = f.array("heating_cop", heating_cop)
        shgf = f.array("solar_heatgain_factor_m2", solar_heatgain_factor_m2)
        aperture = f.array("solar_aperture_m2", solar_aperture_m2)
        gains = f.array("internal_gain_kw", internal_gain_kw)
        f_int = f.array("mass_internal_gain_fraction", mass_internal_gain_fraction)
        f_sol = f.array("mass_solar_gain_fraction", mass_solar_gain_fraction)
        latent = latent_load_fraction is not None
        llf = f.array(
            "latent_load_fraction", 0.0 if latent_load_fraction is None else latent_load_fraction
        )
        use_latent = f.array(
            "use_latent_heat", latent if use_latent_heat is None else use_latent_heat
        )
        fan = f.array("fan_power_kw", fan_power_kw)
        fan_heat = f.array("fan_heatgain_fraction", fan_heatgain_fraction)
        deadband = f.array("deadband_c", deadband_c)
        k_low = f.array("ramp_low", ramp_low)
        k_high = f.array("ramp_high", ramp_high)
        ta = f.array(
            "air_temperature_c", setpoint if air_temperature_c is None else air_temperature_c
        )
        tm = f.array("mass_temperature_c", ta if mass_temperature_c is None else mass_temperature_c)
        on_arr = f.array("on", False if on is None else on)
        if not np.isfinite(outdoor_temperature_c):
            f.problems.add("outdoor_temperature_c", "must be a finite number")
        if solar_model not in SOLAR_MODELS:
            f.problems.add("solar_model", f"must be one of {SOLAR_MODELS}, got {solar_model!r}")
        if kernel not in KERNELS:
            f.problems.add("kernel", f"must be one of {KERNELS}, got {kernel!r}")
        for name, arr in (
            ("ua_kw_per_k", ua),
            ("mass_coupling_kw_per_k", hm),
            ("air_capacity_kj_per_k", ca),
            ("mass_capacity_kj_per_k", cm),
            ("cooling_cop", cop_c),
            ("heating_cop", cop_h),
            ("deadband_c", deadband),
            ("ramp_low", k_low),
            ("ramp_high", k_high),
        ):
            f.rule(arr <= 0, name, "must be positive")
        for name, arr in (
            ("cooling_capacity_kw", cap_c),
            ("heating_capacity_kw", cap_h),
            ("solar_heatgain_factor_m2", shgf),
            ("solar_aperture_m2", aperture),
            ("internal_gain_kw", gains),
            ("latent_load_fraction", llf),
            ("fan_power_kw", fan),
        ):
            f.rule(arr < 0, name, "must not be negative")
        for name, arr in (
            ("mass_internal_gain_fraction", f_int),
            ("mass_solar_gain_fraction", f_sol),
            ("fan_heatgain_fraction", fan_heat),
        ):
            f.rule((arr < 0) | (arr > 1), name, "must lie in [0, 1]")
        f.rule((mode_arr != COOLING) & (mode_arr != HEATING), "mode", "must be +1 (cooling) or -1")
        f.rule((mode_arr == COOLING) & (cap_c <= 0), "cooling_capacity_kw", "must be > 0 to cool")
        f.rule((mode_arr == HEATING) & (cap_h <= 0), "heating_capacity_kw", "must be > 0 to heat")
        f.rule(tmin >= tmax, "comfort_min_c", "Tmin must be below Tmax")
        f.rule(
            (tmin < tmax) & ~((tmin < setpoint) & (setpoint < tmax)),
            "setpoint_c",
            "must lie strictly inside [comfort_min_c, comfort_max_c]",
        )
        f.rule((on_arr != 0) & (on_arr != 1), "on", "must be True/False (1/0)")
        f.rule((use_latent != 0) & (use_latent != 1), "use_latent_heat", "must be True/False")
        f.rule(
            (use_latent == 1) & (not latent),
            "use_latent_heat",
            "needs latent_load_fraction (GridLAB-D's default is 0.30)",
        )
        f.raise_if_any()
        self._n = int(ua.size)
        self._ids = checked_ids(
            default_ids("hvac", self._n) if ids is None else ids, self._n, subject="HVAC ids"
        )
        self.ua_kw_per_k = _readonly(ua)
        self.mass_coupling_kw_per_k = _readonly(hm)
        self.air_capacity_kj_per_k = _readonly(ca)
        self.mass_capacity_kj_per_k = _readonly(cm)
        self.setpoint_c = _readonly(setpoint)
        self.comfort_min_c = _readonly(tmin)
        self.comfort_max_c = _readonly(tmax)
        self.direction = _readonly(mode_arr)
        self.cooling_capacity_kw = _readonly(cap_c)
        self.heating_capacity_kw = _readonly(cap_h)
        self.cooling_cop = _readonly(cop_c)
        self.heating_cop = _readonly(cop_h)
        self.solar_heatgain_factor_m2 = _readonly(shgf)
        self.solar_aperture_m2 = _readonly(aperture)
        self.solar_model = solar_model
        self.internal_gain_kw = _readonly(gains)
        self.mass_internal_gain_fraction = _readonly(f_int)
        self.mass_solar_gain_fraction = _readonly(f_sol)
        self.use_latent_heat: BoolArray = _readonly_bool(use_latent == 1)
        self.latent_load_fraction = _readonly(llf)
        self.fan_power_kw = _readonly(fan)
        self.fan_heatgain_fraction = _readonly(fan_heat)
        self.deadband_c = _readonly(deadband)
        self.ramp_low = _readonly(k_low)
        self.ramp_high = _readonly(k_high)
        self._etp = EtpCoefficients.of(ua, hm, ca, cm)
        self._kernel = kernel
        # numpy's exp(r t) and expm1(r t) of both modes at the step and interval lengths used,
        # for the kernels (they depend on the houses only, not on the state)
        self._exp_cache: dict[tuple[str, float], tuple[FloatArray, FloatArray]] = {}
        self._houses_arg: tuple[int, Any] | None = None  # (see _kernel_houses)
        self._cooling = mode_arr == COOLING
        # The band's uncomfortable and comfortable edges and the override hysteresis (the
        # thermostat's deadband, at most half the band), from read-only parameters: once.
        self._edges = (
            _readonly(np.where(self._cooling, tmax, tmin)),
            _readonly(np.where(self._cooling, tmin, tmax)),
            _readonly(np.minimum(deadband, 0.5 * (tmax - tmin))),
        )
        # Whether every house's band opens its deadbands (the edges under direct control, and
        # the scheduled-on and -off pairs, as the kernels compute them): then only a plain
        # deadband around the thermostat's setpoint can fail, and the step kernel checks that.
        unc, comf, inward = self._edges[0], self._edges[1], mode_arr * self._edges[2]
        self._bands_open = bool(
            np.all(mode_arr * (unc - comf) > 0)
            and np.all(mode_arr * ((comf + inward) - comf) > 0)
            and np.all(mode_arr * (unc - (unc - inward)) > 0)
        )
        # state
        self.air_temperature_c = ta
        self.mass_temperature_c = tm
        self.on: BoolArray = on_arr.astype(bool)
        self.duty_pu = np.ones(self._n)
        self.thermostat_setpoint_c = setpoint.copy()
        self.guard_only = np.zeros(self._n, dtype=bool)
        self.outdoor_temperature_c = float(outdoor_temperature_c)
        self._bid_price: FloatArray | None = None
        self._bid_power_kw: FloatArray | None = None
        self._bid_stats = PriceStats(0.0, 0.0, 1.0)
        # cumulative heat accounts (kWh), for energy balances: the heat the HVAC system adds to
        # the air (sensible, negative when cooling, with the fan's heat), the gains, the
        # envelope's loss; and, of the HVAC's part, the latent heat its coil removes (GridLAB-D
        # Qlatent), the fan's heat in the air and the fan's electric energy.
        self.heat_hvac_kwh = np.zeros(self._n)
        self.heat_gains_kwh = np.zeros(self._n)
        self.heat_envelope_loss_kwh = np.zeros(self._n)
        self.heat_latent_kwh = np.zeros(self._n)
        self.heat_fan_kwh = np.zeros(self._n)
        self.electric_fan_kwh = np.zeros(self._n)

    @property
    def ids(self) -> StrArray:
        """One stable id per house (read-only)."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernels) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "HVAC population")

    # ------------------------------------------------------------------ kernel arguments

    def _standard_equipment(self) -> bool:
        """Whether the equipment curves are this class's (a subclass may replace them)."""
        cls = type(self)
        return (
            cls.thermal_capacity_kw is HvacPopulation.thermal_capacity_kw
            and cls.cop is HvacPopulation.cop
        )

    def _inline_heat(self) -> bool:
        """Whether the kernels may compute the heat flows themselves (this class's formulas)."""
        return self._standard_equipment() and type(self)._heat_inputs is HvacPopulation._heat_inputs

    def _kernel_houses(self, rows: IntArray | None = None) -> Any:
        """The houses' parameters as the kernels take them (``_hvac_kernels.Houses``), or rows'.

        Read-only parameters, fixed at construction like the ETP coefficients and the band's
        edges: built once per population object (a deep copy builds its own: its arrays are
        other objects).
        """
        if rows is None and self._houses_arg is not None and self._houses_arg[0] == id(self):
            return self._houses_arg[1]
        k = self._etp
        unc, comf, hysteresis = self._edges
        columns = (
            k.r1, k.r2, k.inv_ua, k.inv_hm, k.ka, k.km, k.la, k.lm, self._cooling,
            self.use_latent_heat, self.direction, self.cooling_capacity_kw,
            self.heating_capacity_kw, self.cooling_cop, self.heating_cop, self.fan_power_kw,
            self.fan_heatgain_fraction, self.latent_load_fraction, self.solar_heatgain_factor_m2,
            self.solar_aperture_m2, self.internal_gain_kw, self.mass_internal_gain_fraction,
            self.mass_solar_gain_fraction, self.ua_kw_per_k, self.air_capacity_kj_per_k,
            self.deadband_c, self.setpoint_c, self.comfort_min_c, self.comfort_max_c,
            self.ramp_low, self.ramp_high, unc, comf, hysteresis,
        )  # fmt: skip
        houses = _kernels().Houses(
            *(_ro(c if rows is None else c[rows], c.dtype.type) for c in columns)
        )
        if rows is None:
            self._houses_arg = (id(self), houses)
        return houses

    def _kernel_state(self) -> tuple[Any, Any] | None:
        """The state and the heat accounts as the kernels take them, or None.

        ``_hvac_kernels.State`` and the arrays of ``_hvac_kernels.ACCOUNTS``. State attributes
        are public and may have been replaced by the caller; whatever the kernels cannot read
        as it is (an array of another type or shape, accounts they cannot update in place)
        takes the numpy reference path.
        """
        n = self._n
        floats = [
            state_column(a, n)
            for a in (self.air_temperature_c, self.mass_temperature_c, self.duty_pu,
                      self.thermostat_setpoint_c)
        ]  # fmt: skip
        flags = [_bool_column(self.on, n), _bool_column(self.guard_only, n)]
        kern = _kernels()
        accounts = tuple(getattr(self, name) for name in kern.ACCOUNTS)
        in_place = all(
            isinstance(a, np.ndarray) and state_column(a, n) is a and a.flags.writeable
            for a in accounts
        )
        readable = [c for c in floats if c is not None]
        booleans = [c for c in flags if c is not None]
        if not in_place or len(readable) < len(floats) or len(booleans) < len(flags):
            return None
        air, mass, duty, setpoint = (_ro(c) for c in readable)
        on, guard = (_ro(c, np.bool_) for c in booleans)
        return kern.State(air, mass, on, duty, guard, setpoint), accounts

    def _kernel_inputs(self) -> tuple[Any, Any] | None:
        """:meth:`_kernel_state` where the kernels run: chosen, and houses to run; else None."""
        return self._kernel_state() if self._kernel == "numba" and self._n > 0 else None

    def _uses_kernels(self) -> bool:
        """Whether the kernels run: chosen, houses to run, and a state they can read."""
        return self._kernel_inputs() is not None

    def _exponentials(self, kind: str, t_s: float) -> tuple[FloatArray, FloatArray]:
        """The numpy ``exp(r t)`` (``kind="exp"``), ``m = expm1(r t)`` or ``m / r`` (``"m/r"``).

        Of both modes; they depend on the houses only (cached, for the few step and interval
        lengths in use). The kernels take them so that a house that switches nowhere follows
        the numpy reference bit for bit.
        """
        key = (kind, float(t_s))
        found = self._exp_cache.get(key)
        if found is None:
            k = self._etp
            if kind == "exp":
                found = (np.exp(k.r1 * key[1]), np.exp(k.r2 * key[1]))
            elif kind == "expm1":
                found = (np.expm1(k.r1 * key[1]), np.expm1(k.r2 * key[1]))
            else:
                m1, m2 = self._exponentials("expm1", key[1])
                found = (m1 / k.r1, m2 / k.r2)
            if len(self._exp_cache) >= 8:
                self._exp_cache.pop(next(iter(self._exp_cache)))
            self._exp_cache[key] = found
        return found

    def _step_exponentials(self, dt_s: float) -> tuple[FloatArray, ...]:
        """A step's ``m = expm1(r dt)`` of both modes and ``m / r``, as the kernels take them."""
        return tuple(
            _ro(a) for a in (*self._exponentials("expm1", dt_s), *self._exponentials("m/r", dt_s))
        )

    def _latent_used(self) -> bool:
        return bool(np.any(self.use_latent_heat & self._cooling))

    def _check_humidity(self, relative_humidity: FloatArray, latent_used: bool) -> None:
        """Refuse a humidity that is not a fraction where the latent load reads it."""
        if latent_used:
            _check_humidity(relative_humidity)

    def _weather(
        self,
        temperature_c: FloatArray,
        relative_humidity: FloatArray,
        flux_w_per_m2: FloatArray,
        ghi_w_per_m2: FloatArray,
        latent_used: bool,
    ) -> Any:
        """The kernels' weather of T steps (``_hvac_kernels.Weather``, arrays (T,)).

        Cooling and heating capacity factor, cooling and heating COP divisor, ``1 + exp(4 - 10
        RH)`` of :func:`sensible_heat_ratio` (by ``math.exp``, as that function), the mean wall
        irradiance, the GHI and the outdoor temperature: the same numbers the numpy
        :meth:`_heat_inputs` combines with each house's parameters.
        """
        return _kernels().Weather(
            *(
                _ro(a)
                for a in _weather_arrays(
                    temperature_c, relative_humidity, flux_w_per_m2, ghi_w_per_m2, latent_used
                )
            )
        )

    def _step_weather(self, weather: WeatherSample, latent_used: bool) -> Any:
        """:meth:`_weather` of one sample; refuses a bad humidity first."""
        rh = float(weather.relative_humidity)
        self._check_humidity(np.array([rh]), latent_used)
        flux = float(np.mean(wall_irradiance_w_per_m2(weather, self.solar_model)))
        return self._weather(
            np.array([float(weather.temperature_c)]), np.array([rh]), np.array([flux]),
            np.array([float(weather.ghi_w_per_m2)]), latent_used,
        )  # fmt: skip

    def _step_heat(self, weather: WeatherSample) -> tuple[Any, bool, Any, HeatInputs | None]:
        """The kernels' ``weather``, ``latent_used`` and ``heat`` arguments for one sample.

        This class's heat flows are computed inside the kernels (``heat`` has no columns, and
        no :class:`HeatInputs` is returned); a subclass's own (:meth:`_heat_inputs`, returned
        too) are passed in, with the outdoor temperature alone as the weather.
        """
        if self._inline_heat():
            latent_used = self._latent_used()
            empty = _ro(np.zeros(0))
            conditions = self._step_weather(weather, latent_used)
            return conditions, latent_used, _kernels().Heat(*([empty] * 7)), None
        t = np.array([float(weather.temperature_c)])
        zero = np.zeros(1)
        heat = self._heat_inputs(weather)
        return self._weather(t, zero, zero, zero, False), False, self._kernel_heat(heat), heat

    @staticmethod
    def _kernel_heat(heat: HeatInputs, rows: IntArray | None = None) -> Any:
        """``heat`` (or its ``rows``) as the kernels take it (``_hvac_kernels.Heat``)."""
        columns = (
            heat.q_air_kw, heat.q_mass_kw, heat.q_on_kw, heat.electric_on_kw,
            heat.internal_gain_kw + heat.solar_gain_kw, heat.latent_on_kw, heat.fan_on_kw,
        )  # fmt: skip
        return _kernels().Heat(*(_ro(c if rows is None else c[rows]) for c in columns))

    def _constructor_arguments(self) -> dict[str, Any]:
        """Every :meth:`__init__` argument, reproducing these houses' parameters and state.

        The state is what the constructor takes (air and mass temperature, on/off, outdoor
        temperature); a responded schedule, a shifted setpoint and the heat accounts are not
        carried. Used by populations that wrap these houses under other equipment curves (the
        heat pump), so a new constructor argument cannot be silently dropped there (a test checks
        that the keys are the signature's).
        """
        return {
            "ua_kw_per_k": self.ua_kw_per_k,
            "mass_coupling_kw_per_k": self.mass_coupling_kw_per_k,
            "air_capacity_kj_per_k": self.air_capacity_kj_per_k,
            "mass_capacity_kj_per_k": self.mass_capacity_kj_per_k,
            "setpoint_c": self.setpoint_c,
            "comfort_min_c": self.comfort_min_c,
            "comfort_max_c": self.comfort_max_c,
            "mode": self.direction,
            "cooling_capacity_kw": self.cooling_capacity_kw,
            "heating_capacity_kw": self.heating_capacity_kw,
            "cooling_cop": self.cooling_cop,
            "heating_cop": self.heating_cop,
            "solar_heatgain_factor_m2": self.solar_heatgain_factor_m2,
            "solar_aperture_m2": self.solar_aperture_m2,
            "solar_model": self.solar_model,
            "internal_gain_kw": self.internal_gain_kw,
            "mass_internal_gain_fraction": self.mass_internal_gain_fraction,
            "mass_solar_gain_fraction": self.mass_solar_gain_fraction,
            # Houses built without a latent load have fraction 0 and use_latent_heat False:
            # passing both back reproduces that (the fraction is given, the flag says unused).
            "latent_load_fraction": self.latent_load_fraction,
            "use_latent_heat": self.use_latent_heat,
            "fan_power_kw": self.fan_power_kw,
            "fan_heatgain_fraction": self.fan_heatgain_fraction,
            "deadband_c": self.deadband_c,
            "ramp_low": self.ramp_low,
            "ramp_high": self.ramp_high,
            "air_temperature_c": self.air_temperature_c.copy(),
            "mass_temperature_c": self.mass_temperature_c.copy(),
            "on": self.on.copy(),
            "outdoor_temperature_c": self.outdoor_temperature_c,
            "ids": self.ids,
            "kernel": self.kernel,
        }

    # ------------------------------------------------------------------ GridLAB-D houses

    @classmethod
    def from_gridlabd(
        cls,
        houses: Mapping[str, Any] | pd.DataFrame,
        *,
        ids: npt.ArrayLike | None = None,
        range_low_f: npt.ArrayLike = -3.0,
        range_high_f: npt.ArrayLike = 3.0,
        ramp_low: npt.ArrayLike = 2.0,
        ramp_high: npt.ArrayLike = 2.0,
        solar_model: str = "gridlabd",
        outdoor_temperature_c: float = 25.0,
    ) -> Self:
        """Houses given by GridLAB-D ``house`` properties, under its names and in its units.

        ``houses`` maps GridLAB-D property names to one value per house (a scalar applies to
        all; a ``pandas.DataFrame`` with those columns works). The accepted names, their units
        and the defaults ``house_e`` gives when a property is absent are :data:`GRIDLABD_HOUSE`;
        a name that is not one of them is refused (a typo would otherwise silently take the
        default). The derived quantities follow ``house_e.cpp`` ``init`` exactly:

        - areas: ``gross_wall_area = 2 N (AR + 1) h sqrt(A / AR / N)`` (N stories, aspect ratio
          AR, ceiling height h, floor area A), windows ``gross_wall_area x window_wall_ratio x
          exterior_wall_fraction``, doors 3 ft x 78 in each, ceiling and floor ``A x fraction / N``;
        - ``envelope_UA`` = sum of area / R over ceiling, floor, net wall, windows, doors;
          ``airchange_UA = airchange_per_hour x volume x 0.0735 x 0.2402``; ``UA`` their sum;
        - ``air_heat_capacity = 3 x 0.2402 x 0.0735 x volume``,
          ``mass_heat_capacity = total_thermal_mass_per_floor_area x A - 2 x 0.2402 x air_mass``,
          ``mass_heat_coeff = interior_surface_heat_transfer_coeff x ((gross wall - windows -
          doors) + gross wall x interior_exterior_wall_ratio + N x ceiling area /
          exterior_ceiling_fraction)``;
        - ``solar_heatgain_factor = window area x glazing_shgc x
          window_exterior_transmission_coefficient``;
        - ``design_cooling_capacity`` (if not given) ``(1 + over_sizing_factor) (1 +
          latent_load_fraction) (UA (cooling_design_temperature - design_cooling_setpoint) +
          design_internal_gains + design_peak_solar x solar_heatgain_factor)`` rounded up to
          6,000 Btu/h; a heat pump's ``design_heating_capacity`` is the cooling one;
        - ``fan_design_power`` (if not given) from :func:`gridlabd_fan_power_kw`.

        Each house's ``system_mode`` (``"COOL"`` or ``"HEAT"``, the heat-pump system) sets its
        mode and setpoint (``cooling_setpoint`` or ``heating_setpoint``). The comfort band of the
        market controller is ``setpoint + [range_low_f, range_high_f]`` (°F, GridLAB-D
        ``controller`` names; ours: +-3 °F by default); it does not act on a plain thermostat.
        ``internal_gain`` (Btu/h) is a constant internal heat gain: GridLAB-D's comes from the
        house's end uses (for example a constant ``ZIPload`` with ``heatgain_fraction`` 1).
        Auxiliary (resistance) heat, two-speed fans and motor models are not modelled, so they
        are not accepted.
        """
        problems = Problems(subject="GridLAB-D houses")
        columns: dict[str, Any] = {str(k): v for k, v in houses.items()}
        unknown = sorted(set(columns) - set(GRIDLABD_HOUSE))
        if unknown:
            problems.add(
                "houses",
                f"unknown GridLAB-D house properties {unknown}; accepted: {sorted(GRIDLABD_HOUSE)}",
            )
        if "floor_area" not in columns:
            problems.add("floor_area", "is required (square feet)")
        modes_raw = columns.pop("system_mode", "COOL")
        problems.raise_if_any()
        modes = np.char.upper(np.char.strip(np.atleast_1d(np.asarray(modes_raw).astype(str))))
        n, col = _validated_columns(problems, columns)
        if modes.size not in (1, n):
            problems.add("system_mode", f"must be one value or {n}, got {modes.size}")
        elif not bool(np.all(np.isin(modes, ("COOL", "HEAT")))):
            bad = np.flatnonzero(~np.isin(np.broadcast_to(modes, (n,)), ("COOL", "HEAT")))
            problems.add("system_mode", "must be COOL or HEAT", tuple(int(i) for i in bad))
        problems.raise_if_any()
        mode_codes = np.where(np.broadcast_to(modes, (n,)) == "COOL", COOLING, HEATING)

        def get(name: str) -> FloatArray:
            if name in col:
                return col[name]
            default = GRIDLABD_HOUSE[name][1]
            return np.full(n, np.nan if default is None else float(default))

        for name in (
            "floor_area", "ceiling_height", "aspect_ratio", "number_of_stories", "Rroof", "Rwall",
            "Rfloor", "Rwindows", "Rdoors", "total_thermal_mass_per_floor_area",
            "interior_surface_heat_transfer_coeff", "cooling_COP", "heating_COP",
            "thermostat_deadband", "window_exterior_transmission_coefficient", "glazing_shgc",
        ):  # fmt: skip
            if name in col:
                problems.check(col[name] <= 0, name, "must be positive")
        for name in ("window_wall_ratio", "number_of_doors", "airchange_per_hour",
                     "over_sizing_factor", "latent_load_fraction", "internal_gain",
                     "design_internal_gains", "fan_design_power", "design_cooling_capacity",
                     "design_heating_capacity", "duct_pressure_drop"):  # fmt: skip
            if name in col:
                problems.check(col[name] < 0, name, "must not be negative")
        problems.raise_if_any()

        area = get("floor_area")
        stories = np.maximum(np.floor(get("number_of_stories")), 1.0)
        aspect = get("aspect_ratio")
        height = get("ceiling_height")
        gross_wall = (
            col["gross_wall_area"]
            if "gross_wall_area" in col
            else 2.0 * stories * (aspect + 1.0) * height * np.sqrt(area / aspect / stories)
        )
        doors = np.floor(get("number_of_doors")) * 3.0 * 78.0 / 12.0
        windows = gross_wall * get("window_wall_ratio") * get("exterior_wall_fraction")
        net_wall = get("exterior_wall_fraction") * gross_wall - windows - doors
        ceiling = area * get("exterior_ceiling_fraction") / stories
        floor = area * get("exterior_floor_fraction") / stories
        volume = height * area
        air_mass = 0.0735 * volume
        envelope_ua = (
            col["envelope_UA"]
            if "envelope_UA" in col
            else ceiling / get("Rroof")
            + floor / get("Rfloor")
            + net_wall / get("Rwall")
            + windows / get("Rwindows")
            + doors / get("Rdoors")
        )
        airchange_ua = (
            col["airchange_UA"]
            if "airchange_UA" in col
            else get("airchange_per_hour") * volume * 0.0735 * 0.2402
        )
        ua = col["UA"] if "UA" in col else envelope_ua + airchange_ua
        ca = col["air_heat_capacity"] if "air_heat_capacity" in col else 3.0 * 0.2402 * air_mass
        cm = (
            col["mass_heat_capacity"]
            if "mass_heat_capacity" in col
            else get("total_thermal_mass_per_floor_area") * area - 2.0 * 0.2402 * air_mass
        )
        hm = (
            col["mass_heat_coeff"]
            if "mass_heat_coeff" in col
            else get("interior_surface_heat_transfer_coeff")
            * (
                (gross_wall - windows - doors)
                + gross_wall * get("interior_exterior_wall_ratio")
                + stories * ceiling / get("exterior_ceiling_fraction")
            )
        )
        shgf = windows * get("glazing_shgc") * get("window_exterior_transmission_coefficient")
        llf = get("latent_load_fraction")
        design_gains = (
            col["design_internal_gains"] if "design_internal_gains" in col else 167.09 * area**0.442
        )
        if "design_cooling_capacity" in col:
            cap_c = col["design_cooling_capacity"]
        else:
            sized = (
                (1.0 + get("over_sizing_factor"))
                * (1.0 + llf)
                * (
                    ua * (get("cooling_design_temperature") - get("design_cooling_setpoint"))
                    + design_gains
                    + get("design_peak_solar") * shgf
                )
            )
            cap_c = np.ceil(sized / 6000.0) * 6000.0
        cap_h = col.get("design_heating_capacity", cap_c)
        if "fan_design_power" in col:
            fan_kw = col["fan_design_power"] / 1000.0
        else:
            fan_kw = gridlabd_fan_power_kw(
                cap_c,
                cap_h,
                latent_load_fraction=llf,
                duct_pressure_drop_in_h2o=get("duct_pressure_drop"),
                design_cooling_setpoint_f=get("design_cooling_setpoint"),
                cooling_supply_air_temp_f=get("cooling_supply_air_temp"),
                design_heating_setpoint_f=get("design_heating_setpoint"),
                heating_supply_air_temp_f=get("heating_supply_air_temp"),
            )
        for name, arr in (("UA", ua), ("mass_heat_capacity", cm), ("mass_heat_coeff", hm)):
            problems.check(~(arr > 0), name, "must be positive (check the house's geometry)")
        problems.raise_if_any()
        setpoint_f = np.where(
            mode_codes == COOLING, get("cooling_setpoint"), get("heating_setpoint")
        )
        setpoint = _celsius(setpoint_f)
        low = np.broadcast_to(np.asarray(range_low_f, dtype=np.float64), (n,))
        high = np.broadcast_to(np.asarray(range_high_f, dtype=np.float64), (n,))
        air = _celsius(col["air_temperature"]) if "air_temperature" in col else setpoint
        mass = _celsius(col["mass_temperature"]) if "mass_temperature" in col else air
        return cls(
            ua_kw_per_k=ua * KW_PER_BTU_PER_H_F,
            mass_coupling_kw_per_k=hm * KW_PER_BTU_PER_H_F,
            air_capacity_kj_per_k=ca * KJ_PER_K_PER_BTU_PER_F,
            mass_capacity_kj_per_k=cm * KJ_PER_K_PER_BTU_PER_F,
            setpoint_c=setpoint,
            comfort_min_c=_celsius(setpoint_f + low),
            comfort_max_c=_celsius(setpoint_f + high),
            mode=mode_codes,
            cooling_capacity_kw=cap_c * KW_PER_BTU_PER_H,
            heating_capacity_kw=cap_h * KW_PER_BTU_PER_H,
            cooling_cop=get("cooling_COP"),
            heating_cop=get("heating_COP"),
            solar_heatgain_factor_m2=shgf * M2_PER_SF,
            solar_model=solar_model,
            internal_gain_kw=get("internal_gain") * KW_PER_BTU_PER_H,
            mass_internal_gain_fraction=get("mass_internal_gain_fraction"),
            mass_solar_gain_fraction=get("mass_solar_gain_fraction"),
            latent_load_fraction=llf,
            use_latent_heat=get("use_latent_heat") != 0,
            fan_power_kw=fan_kw,
            fan_heatgain_fraction=np.where(get("include_fan_heatgain") != 0, 1.0, 0.0),
            deadband_c=get("thermostat_deadband") / 1.8,
            ramp_low=ramp_low,
            ramp_high=ramp_high,
            air_temperature_c=air,
            mass_temperature_c=mass,
            outdoor_temperature_c=outdoor_temperature_c,
            ids=ids,
        )

    # ------------------------------------------------------------------ sampling

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        mode: int | str = COOLING,
        outdoor_temperature_c: float = 30.0,
        floor_area_m2: tuple[float, float] = (170.0, 0.35),
        ua_per_m2_w_per_k: tuple[float, float] = (0.8, 1.8),
        comfort_tolerance: tuple[float, float] = (0.0, 1.0),
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Draw ``n`` heterogeneous houses (``n = 0`` gives an empty population).

        Floor area is lognormal (median, log-sd) clipped to [60, 400] m²; envelope UA is
        ``floor area x U(ua_per_m2)``; the rest follows GridLAB-D ``house_e`` defaults converted to
        SI: ``Ca = 3 rho c_p V`` (2.44 m ceilings), ``Cm = 2 Btu/(°F·sf) x area - 2 rho c_p V``,
        ``Hm = 1.46 Btu/(h·°F·sf)`` times an interior surface of about 2.7x the floor area;
        windows of 15 % of a one-story house's gross wall (aspect ratio 1.5) with GridLAB-D's
        default glazing (SHGC 0.67, exterior transmission 0.6) times U(0.7, 1.3); GridLAB-D's
        ``latent_load_fraction`` 0.30; capacities sized like GridLAB-D's autosizing (UA x design
        temperature difference plus gains and 195 Btu/(h·sf) on the windows, times 1 +
        latent_load_fraction for cooling, 20-50 % oversized) at design temperatures 35 °C
        (cooling) and -5 °C (heating), and the fan sized from them by
        :func:`gridlabd_fan_power_kw`. The comfort tolerance ``k ~ U(comfort_tolerance)`` sets
        the band half-width ``0.5 + 2.5 k`` K and the ramps ``4 - 2 k`` (a tolerant customer has a
        wide band and a flat ramp), our mapping of the Olympic Peninsula comfort/economy setting.
        """
        n = _check_sample_args(n, rng, "HVAC")
        problems = Problems(subject="HVAC sampling")
        mode = _mode_codes(mode)
        if mode not in (COOLING, HEATING):
            problems.add(
                "mode",
                f"must be COOLING (+1) or HEATING (-1), 'cooling' or 'heating', got {mode!r}",
            )
        problems.raise_if_any()
        median, sigma = floor_area_m2
        area = np.clip(median * np.exp(sigma * rng.standard_normal(n)), 60.0, 400.0)
        volume = area * 2.44
        rho_cp_air = 1.2 * 1.006  # kJ/(m³·K)
        ua = area * rng.uniform(*ua_per_m2_w_per_k, n) / 1000.0
        ca = 3.0 * rho_cp_air * volume
        mass_per_m2 = 2.0 * KJ_PER_K_PER_BTU_PER_F / M2_PER_SF  # kJ/(K·m²)
        cm = mass_per_m2 * area * rng.uniform(0.8, 1.2, n) - 2.0 * rho_cp_air * volume
        hs = 1.46 * KW_PER_BTU_PER_H_F / M2_PER_SF  # kW/(K·m²)
        hm = hs * 2.7 * area * rng.uniform(0.8, 1.2, n)
        # house_e: gross wall 2 (AR + 1) h sqrt(A / AR) for one story, AR = 1.5, h = 2.44 m.
        gross_wall = 2.0 * 2.5 * 2.44 * np.sqrt(area / 1.5)
        shgf = 0.15 * gross_wall * 0.67 * 0.6 * rng.uniform(0.7, 1.3, n)
        gains = (0.4 + 0.003 * area) * rng.uniform(0.7, 1.3, n)
        llf = np.full(n, 0.30)
        k = rng.uniform(*comfort_tolerance, n)
        half = 0.5 + 2.5 * k
        ramp = 4.0 - 2.0 * k
        peak_solar_kw = shgf * 195.0 / 3.412 / M2_PER_SF / 1000.0  # 195 Btu/(h·sf) on windows
        if mode == COOLING:
            setpoint = np.clip(rng.normal(23.5, 1.0, n), 20.0, 27.0)
            design = (1.0 + llf) * (ua * (35.0 - setpoint) + gains + peak_solar_kw)
            cap_c = design * rng.uniform(1.2, 1.5, n)
            cap_h = np.zeros(n)
        else:
            setpoint = np.clip(rng.normal(20.5, 1.0, n), 17.0, 23.0)
            design = ua * (setpoint + 5.0) / heating_capacity_factor(-5.0)
            cap_h = design * rng.uniform(1.2, 1.5, n)
            cap_c = np.zeros(n)
        fan = gridlabd_fan_power_kw(
            cap_c / KW_PER_BTU_PER_H,
            cap_h / KW_PER_BTU_PER_H,
            latent_load_fraction=llf,
            duct_pressure_drop_in_h2o=np.full(n, 0.5),
            design_cooling_setpoint_f=np.full(n, 75.0),
            cooling_supply_air_temp_f=np.full(n, 50.0),
            design_heating_setpoint_f=np.full(n, 70.0),
            heating_supply_air_temp_f=np.full(n, 150.0),
        )
        deadband = rng.uniform(0.8, 1.4, n)
        ta = setpoint + deadband * rng.uniform(-0.5, 0.5, n)
        return cls(
            ua_kw_per_k=ua,
            mass_coupling_kw_per_k=hm,
            air_capacity_kj_per_k=ca,
            mass_capacity_kj_per_k=cm,
            setpoint_c=setpoint,
            comfort_min_c=setpoint - half,
            comfort_max_c=setpoint + half,
            mode=np.full(n, mode),
            cooling_capacity_kw=cap_c,
            heating_capacity_kw=cap_h,
            cooling_cop=rng.uniform(3.0, 4.0, n),
            heating_cop=rng.uniform(2.3, 3.0, n),
            solar_heatgain_factor_m2=shgf,
            internal_gain_kw=gains,
            latent_load_fraction=llf,
            fan_power_kw=fan,
            deadband_c=deadband,
            ramp_low=ramp,
            ramp_high=ramp,
            air_temperature_c=ta,
            mass_temperature_c=ta,
            on=rng.random(n) < 0.3,
            outdoor_temperature_c=outdoor_temperature_c,
            ids=ids,
        )

    # ------------------------------------------------------------------ equipment

    @property
    def n_devices(self) -> int:
        """Number of houses."""
        return self._n

    @property
    def eigenvalues_per_s(self) -> tuple[FloatArray, FloatArray]:
        """The ETP system's fast and slow eigenvalues (1/s, negative), per house."""
        return self._etp.r1, self._etp.r2

    def thermal_capacity_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Heat each HVAC moves at full output (kW, positive), at an outdoor temperature."""
        cool = self.cooling_capacity_kw * cooling_capacity_factor(outdoor_temperature_c)
        heat = self.heating_capacity_kw * heating_capacity_factor(outdoor_temperature_c)
        return np.where(self._cooling, cool, heat)

    def cop(self, outdoor_temperature_c: float) -> FloatArray:
        """Each HVAC's COP at an outdoor temperature."""
        return np.where(
            self._cooling,
            cooling_cop(self.cooling_cop, outdoor_temperature_c),
            heating_cop(self.heating_cop, outdoor_temperature_c),
        )

    def running_power_kw(self, weather: WeatherSample) -> FloatArray:
        """Each HVAC's electric power while it runs under ``weather`` (kW): compressor and fan.

        What a running house draws in :meth:`step` (the ``electric_on_kw`` of
        :meth:`_heat_inputs`); the same as :meth:`electric_power_kw` at the sample's outdoor
        temperature, for callers that hold a weather sample (direct load control, trackers).
        """
        _check_weather(weather)
        return self._heat_inputs(weather).electric_on_kw

    def electric_power_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Each HVAC's electric power when running (kW): compressor and fan."""
        return np.asarray(
            self.thermal_capacity_kw(outdoor_temperature_c) / self.cop(outdoor_temperature_c)
            + self.fan_power_kw,
            dtype=np.float64,
        )

    # ------------------------------------------------------------------ market

    #: The last interval bid's prediction and the responded interval's schedule (set by
    #: :meth:`bid` and :meth:`respond`; None before).
    _plan: _IntervalPlan | None = None
    _schedule: _Schedule | None = None

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Each house's average HVAC power over ``interval`` at each price (the setpoints' curve).

        The state now is taken as the state at ``interval.start_s``; ``weather`` is the
        forecast for the interval. The must-run block (at the price cap) is what keeps the air
        inside the band's uncomfortable edge to the interval's end; below the cap the curve runs
        through one point per bid setpoint (the band's edges and the base setpoint), each the
        power that brings the air to that setpoint by the interval's end, at the ramp price
        whose shifted setpoint it is; all of them the power the model then draws under the
        schedule :meth:`respond` sets (see the class docstring). The curves carry :attr:`ids`.
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        if self._uses_kernels():
            self._plan = self._interval_plan_kernel(stats, interval, weather, None, None, self.ids)
            return self._plan.curves
        unc, comf, _ = self._band_edges_c(slice(None))
        setpoints, price = _band_bid_points(
            self.setpoint_c, comf, unc, self.direction, self.comfort_min_c, self.comfort_max_c,
            self.ramp_low, self.ramp_high, stats.mean_per_kwh, stats.std_per_kwh,
        )  # fmt: skip
        self._plan = self._interval_plan(stats, interval, weather, setpoints, price, self.ids)
        return self._plan.curves

    def _interval_plan(
        self,
        stats: PriceStats,
        interval: MarketInterval,
        weather: WeatherSample,
        point_setpoint_c: FloatArray,
        point_price: FloatArray,
        ids: npt.NDArray[np.str_],
    ) -> _IntervalPlan:
        """Predict the interval (on-time bounds, dry runs) and build the curve through the points.

        ``point_setpoint_c`` is ``(N, J)``: each house's bid setpoints from the comfortable edge
        to the uncomfortable one, and ``point_price`` their prices, non-decreasing along a row
        (the ramp price here, the PowerMatcher willingness for the heat pump's agent; clipped to
        the floor and cap here); the must-run block is bid at the cap. A point's power is that
        of the on-time that brings the air to its setpoint at the interval's end (on the closed
        form, :func:`transactive.devices.ramp._setpoint_on_times_s`), within the must-run and
        the can-run on-time. Shared with the heat pump's agent.
        """
        if self._uses_kernels():
            return self._interval_plan_kernel(
                stats, interval, weather, point_setpoint_c, point_price, ids
            )
        heat = self._heat_inputs(weather)
        outdoor = float(weather.temperature_c)
        duration = float(interval.duration_s)
        ta, tm, on = self.air_temperature_c.copy(), self.mass_temperature_c.copy(), self.on.copy()
        tau_lo, tau_hi, linear = self._on_time_bounds_s(ta, tm, heat, outdoor, duration)
        # A linear house runs its schedule exactly; a dry run only for the others (which have
        # tau_lo = tau_hi: the band cannot be held without overrides).
        run_lo, run_hi = tau_lo.copy(), tau_hi.copy()
        dry = np.flatnonzero(~linear)
        if dry.size:
            run_lo[dry] = self._scheduled_run_s(
                dry, ta[dry], tm[dry], on[dry], heat, outdoor, interval, tau_lo[dry]
            )
            run_hi[dry] = run_lo[dry]
        # More scheduled on-time can cost fewer band overrides; never bid a curve that rises.
        worse = run_lo > run_hi
        tau_lo = np.where(worse, tau_hi, tau_lo)
        run_lo = np.where(worse, run_hi, run_lo)
        # A linear house's point runs its on-time exactly; the others bid their must-run alone.
        tau_points = _setpoint_on_times_s(
            self._end_of_interval_c(ta, tm, heat, outdoor, duration), point_setpoint_c,
            self.direction, tau_lo, tau_hi, linear, tolerance_s=_SETPOINT_TOLERANCE_S,
        )  # fmt: skip
        run_points = np.where(linear[:, None], tau_points, run_lo[:, None])
        p_on = heat.electric_on_kw
        price = np.clip(point_price, stats.price_floor_per_kwh, stats.price_cap_per_kwh)
        curves = _interval_curves(
            price, p_on[:, None] * run_points / duration, p_on * run_lo / duration,
            stats.price_cap_per_kwh, ids,
        )  # fmt: skip
        return _IntervalPlan(
            interval=interval, curves=curves, stats=stats, heat=heat, outdoor_c=outdoor,
            air_c=ta, mass_c=tm, on=on, tau_lo_s=tau_lo, tau_hi_s=tau_hi,
            run_lo_s=run_lo, run_hi_s=run_hi, linear=linear,
        )  # fmt: skip

    def _interval_plan_kernel(
        self,
        stats: PriceStats,
        interval: MarketInterval,
        weather: WeatherSample,
        point_setpoint_c: FloatArray | None,
        point_price: FloatArray | None,
        ids: npt.NDArray[np.str_],
    ) -> _IntervalPlan:
        """:meth:`_interval_plan` by one kernel pass; dry runs only for the houses that need one.

        The kernel predicts every house (``_hvac_kernels.interval_plan``: on-time bounds,
        setpoints' on-times, curve breakpoints), with this class's heat flows computed inside
        it (a subclass's passed in) and, when no points are given, :meth:`bid`'s ramp points
        too; a house that cannot hold its band without overrides (not ``linear``) then bids the
        must-run power of a dry run, as in the numpy reference.
        """
        n = self._n
        outdoor = float(weather.temperature_c)
        duration = float(interval.duration_s)
        conditions, latent_used, given, computed = self._step_heat(weather)
        out_heat = tuple(np.empty(n if computed is None else 0) for _ in range(6))
        ta, tm, on = self.air_temperature_c.copy(), self.mass_temperature_c.copy(), self.on.copy()
        if point_setpoint_c is None or point_price is None:
            j_count = len(BID_SETPOINT_SHARES)
            points = (_ro(np.zeros((0, 0))), _ro(np.zeros((0, 0))))
        else:
            j_count = point_setpoint_c.shape[1]
            points = (_ro(point_setpoint_c), _ro(point_price))
        bounds = (np.empty(n), np.empty(n), np.empty(n), np.empty(n))
        linear = np.empty(n, dtype=bool)
        prices = np.empty((n, j_count + 2))
        powers = np.empty((n, j_count + 2))
        _kernels().interval_plan(
            self._kernel_houses(), _ro(ta), _ro(tm), given, conditions, latent_used, duration,
            tuple(_ro(e) for e in self._exponentials("exp", duration)), points,
            _ro(np.asarray(BID_SETPOINT_SHARES, dtype=np.float64)),
            (float(stats.price_floor_per_kwh), float(stats.price_cap_per_kwh),
             float(stats.mean_per_kwh), float(stats.std_per_kwh)),
            (_BAND_MARGIN_C, _ON_TIME_TOLERANCE_S, _SETPOINT_TOLERANCE_S, _NEWTON_STEPS),
            bounds, linear, prices, powers, out_heat,
        )  # fmt: skip
        heat = _heat_from_rows(self, out_heat) if computed is None else computed
        tau_lo, tau_hi, run_lo, run_hi = bounds
        dry = np.flatnonzero(~linear)
        if dry.size:
            run = self._scheduled_run_s(
                dry, ta[dry], tm[dry], on[dry], heat, outdoor, interval, tau_lo[dry]
            )
            # tau_lo = tau_hi here (the band cannot be held), and the reference's "never bid
            # a curve that rises" (run_lo > run_hi) cannot apply: run_lo = run_hi
            run_lo[dry] = run
            run_hi[dry] = run
            powers[dry, : j_count + 1] = (heat.electric_on_kw[dry] * run / duration)[:, None]
        curves = BidCurves._trusted(prices, powers, ids)
        return _IntervalPlan(
            interval=interval, curves=curves, stats=stats, heat=heat, outdoor_c=outdoor,
            air_c=ta, mass_c=tm, on=on, tau_lo_s=tau_lo, tau_hi_s=tau_hi,
            run_lo_s=run_lo, run_hi_s=run_hi, linear=linear,
        )  # fmt: skip

    def _end_of_interval_c(
        self,
        ta: FloatArray,
        tm: FloatArray,
        heat: HeatInputs,
        outdoor_c: float,
        duration_s: float,
    ) -> Callable[[slice | IntArray, FloatArray], tuple[FloatArray, FloatArray]]:
        """``end(index, tau) -> (Ta(end), dTa(end)/dtau)`` of a run-first-then-off schedule.

        Houses ``index`` from ``x0 = (ta, tm)`` run at full output for ``tau`` and are then off
        to the interval's end ``D``, on the exact ETP solution (no thresholds: for a house that
        holds its band on the schedule). The system is linear, so with ``x_on*`` and ``x_off*``
        the steady states on and off, ``x(D) = x_off* + exp(A D) (x0 - x_on*) +
        exp(A (D - tau)) (x_on* - x_off*)``: only the last term moves with ``tau``, and the
        steady states differ by ``q_on / UA`` at both nodes (the running HVAC's heat leaves
        through ``UA``). Hence, with ``s = D - tau`` and ``c1 = (ka + km) q_on / UA``,
        ``c2 = q_on / UA - c1`` (the modal amplitudes of :class:`EtpCoefficients`),
        ``Ta(D) = C0 + c1 e^{r1 s} + c2 e^{r2 s}`` with ``C0`` fixed per house, and the slope
        ``-(r1 c1 e^{r1 s} + r2 c2 e^{r2 s})``, which is ``q_on / Ca x exp(A s)_11`` (moving the
        switch-off later by ``dtau`` adds ``q_on dtau`` to the air node). Two exponentials per
        evaluation.
        """
        k = self._etp
        _, _, a1, a2, _, _ = _etp_modes(
            k, slice(None), ta, tm, heat.q_air_kw + heat.q_on_kw, heat.q_mass_kw, outdoor_c
        )
        off_air = outdoor_c + (heat.q_air_kw + heat.q_mass_kw) * k.inv_ua
        c0 = off_air + a1 * np.exp(k.r1 * duration_s) + a2 * np.exp(k.r2 * duration_s)
        shift = heat.q_on_kw * k.inv_ua
        c1 = (k.ka + k.km) * shift
        c2 = shift - c1

        def end(sel: slice | IntArray, tau: FloatArray) -> tuple[FloatArray, FloatArray]:
            r1, r2 = k.r1[sel], k.r2[sel]
            rest = duration_s - tau
            m1, m2 = c1[sel] * np.exp(r1 * rest), c2[sel] * np.exp(r2 * rest)
            return np.asarray(c0[sel] + m1 + m2), np.asarray(-(r1 * m1 + r2 * m2))

        return end

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Schedule each house's on-time for the interval bid for; return its power (its curve's).

        Must follow :meth:`bid`. Each house reads its average power ``a`` off its own curve
        (``power_at(price, marginal_fill)``) and runs from the interval's start for the on-time
        that draws ``a`` over the interval on the bid's prediction, then stays off; the band's
        edges override. The reported thermostat setpoint is the Olympic Peninsula shift for the
        price (:func:`transactive.devices.ramp.ramp_setpoint`).
        """
        price, power = self._follow(self._plan, clearing_price, marginal_fill, "HVAC")
        assert self._plan is not None
        if self._kernel == "numba" and self._n:
            setpoint = np.empty(self._n)
            _kernels().ramp_setpoints(
                self._kernel_houses(), _ro(np.atleast_1d(price)),
                float(self._plan.stats.mean_per_kwh), float(self._plan.stats.std_per_kwh),
                setpoint,
            )  # fmt: skip
            self.thermostat_setpoint_c = setpoint
            return power
        self.thermostat_setpoint_c = ramp_setpoint(
            np.broadcast_to(price, (self._n,)),
            self.setpoint_c,
            self.direction,
            self.comfort_min_c,
            self.comfort_max_c,
            self.ramp_low,
            self.ramp_high,
            self._plan.stats.mean_per_kwh,
            self._plan.stats.std_per_kwh,
        )
        return power

    def _follow(
        self,
        plan: _IntervalPlan | None,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
        kind: str,
    ) -> tuple[FloatArray, FloatArray]:
        """Read each house's power off ``plan``'s curves and schedule its on-time for it.

        Returns the checked price and the power; shared with the heat pump's agent.
        """
        if plan is not None and self._kernel == "numba" and self._n:
            return self._follow_kernel(plan, clearing_price, marginal_fill)
        price, power = _power_on_curve(
            None if plan is None else plan.curves, kind, clearing_price, marginal_fill, self._n
        )
        assert plan is not None
        duration = float(plan.interval.duration_s)
        p_on = plan.heat.electric_on_kw
        with np.errstate(divide="ignore", invalid="ignore"):
            target = np.where(p_on > 0, power * duration / p_on, 0.0)
        self._set_schedule(plan, self._on_time_for_s(plan, target))
        return price, power

    def _follow_kernel(
        self,
        plan: _IntervalPlan,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`_follow` by one kernel pass; bisection on dry runs only where the reference.

        The kernel reads every house's power off its curve and classifies its on-time as
        :func:`transactive.devices.ramp._on_time_for_s` does; the marginal houses it cannot
        answer in closed form are solved by that very function on their dry runs.
        """
        n = self._n
        price, fill = _price_and_fill(clearing_price, marginal_fill, n)
        duration = float(plan.interval.duration_s)
        power = np.empty(n)
        tau = np.empty(n)
        refine = np.empty(n, dtype=bool)
        bounds = (_ro(plan.tau_lo_s), _ro(plan.tau_hi_s), _ro(plan.run_lo_s), _ro(plan.run_hi_s))
        _kernels().respond(
            _ro(plan.curves.price_per_kwh), _ro(plan.curves.power_kw), _ro(np.atleast_1d(price)),
            _ro(np.atleast_1d(fill)), _ro(plan.heat.electric_on_kw), duration, bounds,
            _ro(plan.linear, np.bool_), power, tau, refine,
        )  # fmt: skip
        rows = np.flatnonzero(refine)
        if rows.size:
            tau[rows] = self._on_time_for_s(plan, tau[rows], rows)
        self._set_schedule(plan, tau)
        return price, power

    def _band_edges_c(self, sel: slice | IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Uncomfortable and comfortable edge of each house's band, and the override hysteresis.

        The hysteresis is the thermostat's deadband, at most half the band.
        """
        edges = self._edges
        uncomfortable, comfortable, hysteresis = edges
        return uncomfortable[sel], comfortable[sel], hysteresis[sel]

    def _on_time_bounds_s(
        self,
        ta: FloatArray,
        tm: FloatArray,
        heat: HeatInputs,
        outdoor_c: float,
        duration_s: float,
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """Must-run and can-run on-time of a run-first-then-off schedule over one interval.

        ``tau_hi``: the most on-time from the interval's start before the air reaches the
        comfortable edge (the first crossing on the exact on-trajectory), at most the interval.
        ``tau_lo``: the least on-time after which the air, left off, stays inside the
        uncomfortable edge (by :data:`_BAND_MARGIN_C`) to the interval's end. The highest air
        temperature of the off trajectory, ``h(tau)`` (closed form, at most one extremum), is
        non-increasing in the on-time, since ``exp(A t)`` of the ETP system is non-negative
        (``A`` is Metzler); by the envelope theorem its slope is ``d q_on / Ca x exp(A s)_11``
        at the extremum's lag ``s`` after the switch, so a bracketed Newton iteration on the
        closed form finds the root, and only for the houses that need one (``h(0) > 0``, a few
        per cent). ``tau_lo`` is at most ``tau_hi``.

        Also returns ``linear``: the houses that run exactly their scheduled on-time for every
        schedule in ``[tau_lo, tau_hi]`` (``h(tau_lo)`` inside the band by the margin, and the
        comfortable edge not reached before ``tau_hi``), so no dry run is needed for them; the
        others (the band cannot be held, ``tau_lo = tau_hi``) have band overrides.
        """
        k = self._etp
        n = self._n
        d = self.direction
        unc, comf, _ = self._band_edges_c(slice(None))
        horizon = np.full(n, duration_s)
        q_on = heat.q_air_kw + heat.q_on_kw
        ta_ss, tm_ss, a1, a2, b1, b2 = _etp_modes(
            k, slice(None), ta, tm, q_on, heat.q_mass_kw, outdoor_c
        )
        s = -d
        cross, t_cross = _first_crossing(s * (ta_ss - comf), s * a1, s * a2, k.r1, k.r2, horizon)
        at_edge = s * (ta - comf) >= 0
        tau_hi = np.where(at_edge, 0.0, np.where(cross, t_cross, duration_s))
        heating_rate = heat.q_on_kw / self.air_capacity_kj_per_k  # K/s the running HVAC adds

        def excess_c(sel: slice | IntArray, tau: FloatArray) -> tuple[FloatArray, FloatArray]:
            """``h(tau) = max d (Ta - unc)`` over the off part ``[tau, duration]``, its slope."""
            r1, r2 = k.r1[sel], k.r2[sel]
            e1, e2 = np.exp(r1 * tau), np.exp(r2 * tau)
            ta1 = ta_ss[sel] + a1[sel] * e1 + a2[sel] * e2
            tm1 = tm_ss[sel] + b1[sel] * e1 + b2[sel] * e2
            off_ss, _, o1, o2, _, _ = _etp_modes(
                k, sel, ta1, tm1, heat.q_air_kw[sel], heat.q_mass_kw[sel], outdoor_c
            )
            dd = d[sel]
            g0, g1, g2 = dd * (off_ss - unc[sel]), dd * o1, dd * o2
            rest = duration_s - tau
            x1, x2 = np.exp(r1 * rest), np.exp(r2 * rest)
            at_start = g0 + g1 + g2
            at_end = g0 + g1 * x1 + g2 * x2
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                ratio = -(g2 * r2) / (g1 * r1)
                t_ext = np.log(np.where(ratio > 0, ratio, 1.0)) / (r1 - r2)
            inside = (ratio > 0) & np.isfinite(t_ext) & (t_ext > 0) & (t_ext < rest)
            t_ext = np.where(inside, t_ext, 0.0)
            y1, y2 = np.exp(r1 * t_ext), np.exp(r2 * t_ext)
            at_ext = np.where(inside, g0 + g1 * y1 + g2 * y2, -np.inf)
            end_wins = at_end >= at_start
            worst = np.maximum(np.maximum(at_start, at_end), at_ext)
            # The lag s of the maximum after the switch-off, and exp(A s)_11 there.
            ext_wins = at_ext >= np.maximum(at_start, at_end)
            ka = k.ka[sel]
            phi = np.where(
                ext_wins,
                ka * y1 + (1.0 - ka) * y2,
                np.where(end_wins, ka * x1 + (1.0 - ka) * x2, 1.0),
            )
            slope_off = dd * heating_rate[sel] * phi
            # At s = 0 the maximum moves with tau: the slope of the on-trajectory itself.
            slope_on = dd * (r1 * a1[sel] * e1 + r2 * a2[sel] * e2)
            lagged = ext_wins | (end_wins & (rest > 0))
            return worst, np.where(lagged, slope_off, slope_on)

        h0, _ = excess_c(slice(None), np.zeros(n))
        needs = np.flatnonzero(h0 + _BAND_MARGIN_C > 0)
        tau_lo = np.zeros(n)
        linear = np.ones(n, dtype=bool)
        if needs.size == 0:
            return tau_lo, tau_hi, linear
        hi_all = tau_hi[needs]
        h_hi, _ = excess_c(needs, hi_all)
        feasible = h_hi + _BAND_MARGIN_C <= 0
        tau_lo[needs] = hi_all  # the band cannot be held: must run all it can
        linear[needs[~feasible]] = False
        search = needs[feasible]
        if search.size:

            def with_margin(
                pos: slice | IntArray, tau: FloatArray
            ) -> tuple[FloatArray, FloatArray]:
                value, slope = excess_c(search[pos], tau)
                return value + _BAND_MARGIN_C, slope

            tau_lo[search] = _least_on_time_s(
                with_margin, np.zeros(search.size), hi_all[feasible],
                h0[search] + _BAND_MARGIN_C, h_hi[feasible] + _BAND_MARGIN_C,
                tolerance_s=_ON_TIME_TOLERANCE_S, newton_steps=_NEWTON_STEPS,
            )  # fmt: skip
        return tau_lo, tau_hi, linear

    def _scheduled_run_s(
        self,
        sel: slice | IntArray,
        ta: FloatArray,
        tm: FloatArray,
        on: BoolArray,
        heat: HeatInputs,
        outdoor_c: float,
        interval: MarketInterval,
        tau_s: FloatArray,
    ) -> FloatArray:
        """On-time houses ``sel`` (their state given) run over ``interval`` on schedule ``tau_s``.

        A dry run of :meth:`step`'s policy (no state changes): what a house following the
        schedule draws, band overrides included.
        """
        if not isinstance(sel, slice) and self._uses_kernels():
            return self._dry_run_kernel(sel, ta, tm, on, heat, outdoor_c, interval, tau_s)
        start = float(interval.start_s)
        schedule = _Schedule(start, np.full(self._n, np.nan), float(interval.end_s))
        schedule.switch_s[sel] = start + tau_s
        m = ta.size
        _, _, _, run_s, _ = self._advance(
            sel, ta, tm, on, np.ones(m), np.zeros(m, dtype=bool), heat, outdoor_c,
            start, float(interval.duration_s), schedule,
        )  # fmt: skip
        return run_s

    def _dry_run_kernel(
        self,
        rows: IntArray,
        ta: FloatArray,
        tm: FloatArray,
        on: BoolArray,
        heat: HeatInputs,
        outdoor_c: float,
        interval: MarketInterval,
        tau_s: FloatArray,
    ) -> FloatArray:
        """:meth:`_scheduled_run_s` by the step kernel on the houses ``rows`` (no accounts)."""
        m = rows.size
        if m == 0:
            return np.zeros(0)
        start = float(interval.start_s)
        run = np.empty(m)
        bad = _kernels().dry_runs(
            self._kernel_houses(rows), self._kernel_heat(heat, rows), _ro(ta), _ro(tm),
            _ro(on, np.bool_), _ro(self.thermostat_setpoint_c[rows]), float(outdoor_c), start,
            float(interval.duration_s), _ro(start + tau_s), float(interval.end_s), run,
        )  # fmt: skip
        if bad:
            self._refuse_deadband(run, rows)
        return run

    def _on_time_for_s(
        self, plan: _IntervalPlan, target_s: FloatArray, rows: IntArray | None = None
    ) -> FloatArray:
        """The scheduled on-time under which each house runs ``target_s`` (on the bid's model).

        Of every house, or of the houses ``rows`` (``target_s`` theirs).
        """
        at: slice | IntArray = slice(None) if rows is None else rows

        def dry_run(index: IntArray, tau: FloatArray) -> FloatArray:
            houses = index if rows is None else rows[index]
            return self._scheduled_run_s(
                houses, plan.air_c[houses], plan.mass_c[houses], plan.on[houses],
                plan.heat, plan.outdoor_c, plan.interval, tau,
            )  # fmt: skip

        return _on_time_for_s(
            target_s, plan.tau_lo_s[at], plan.tau_hi_s[at], plan.run_lo_s[at],
            plan.run_hi_s[at], dry_run, linear=plan.linear[at], tolerance_s=_ROOT_TOLERANCE_S,
        )  # fmt: skip

    def _set_schedule(self, plan: _IntervalPlan, tau_s: FloatArray) -> None:
        """Follow ``plan``'s interval on the scheduled on-times ``tau_s`` (every house)."""
        start = float(plan.interval.start_s)
        self._schedule = _Schedule(start, start + tau_s, float(plan.interval.end_s))
        self.on = tau_s > 0
        self.duty_pu = np.ones(self._n)
        self.guard_only = np.zeros(self._n, dtype=bool)

    def command(self, on: npt.ArrayLike) -> None:
        """Direct load control: switch each HVAC on (``True``/1) or off (``False``/0).

        A compressor is on or off: it runs at full output or not at all, never at a partial
        duty (a house left at a partial output would sit inside its guard while its air drifts
        out of its band). An aggregate power between the steps of the houses' powers is made by
        choosing *which* houses run, a priority stack
        (:func:`transactive.prosumer.virtual_battery.track_power`); a fraction such as 0.5 is
        refused. The commanded state holds until the next command or response, except that a
        house reaching an edge of its comfort band is switched by that edge (the band guard:
        on at the uncomfortable edge, off at the comfortable one), so no commanded house leaves
        its band.
        """
        f = _Fields("HVAC command")
        f.n = self._n
        state = f.array("on", on, self._n)
        f.rule(
            np.isfinite(state) & (state != 0) & (state != 1),
            "on",
            "must be on (True/1) or off (False/0); a compressor has no partial duty",
        )
        f.raise_if_any()
        self.on = state == 1
        self.duty_pu = np.ones(self._n)
        self.guard_only = np.ones(self._n, dtype=bool)
        self._schedule = None  # direct control replaces a responded interval's schedule

    # ------------------------------------------------------------------ physics

    def heat_inputs(self, weather: WeatherSample) -> HeatInputs:
        """The heat flows of every house under ``weather``: what its physics step uses.

        For models of the houses built outside this class (a market's thermal model of each
        TCL, Li et al. 2016; the TCL batteries), so that they see the very heat flows ``step``
        does. Side-effect free.
        """
        _check_weather(weather)
        return self._heat_inputs(weather)

    def _heat_inputs(self, weather: WeatherSample) -> HeatInputs:
        """The heat flows of every house under ``weather`` (the one place that computes them).

        ``step`` and the interval bid's prediction both read them, so what a house bids is what
        its physics then does. GridLAB-D ``house_e.cpp`` (``update_system``, ``update_model``):

        - running, the HVAC moves its capacity at the outdoor temperature; cooling, only the
          sensible share :func:`sensible_heat_ratio` cools the air (the latent rest dries it) when
          latent heat is modelled; the fan's heat (``fan_heatgain_fraction x fan_power_kw``)
          enters the air; the grid sees ``capacity / COP + fan_power_kw``;
        - solar gain ``solar_heatgain_factor x`` the mean irradiance on the eight walls
          (:func:`wall_irradiance_w_per_m2`), plus ``solar_aperture_m2 x GHI``;
        - internal and solar gains split between air and mass by the mass gain fractions.

        Raises ValidationError when a house models latent heat and the sample's
        ``relative_humidity`` is not a fraction in [0, 1].
        """
        t_out = float(weather.temperature_c)
        rh = float(weather.relative_humidity)
        if self._kernel == "numba" and self._standard_equipment() and self._n:
            latent_used = self._latent_used()
            rows = tuple(np.empty(self._n) for _ in range(6))
            kern = _kernels()
            kern.heat_inputs(
                self._kernel_houses(), self._step_weather(weather, latent_used), latent_used, *rows
            )
            return _heat_from_rows(self, rows)
        latent_used = bool(np.any(self.use_latent_heat & self._cooling))
        if latent_used and not (math.isfinite(rh) and 0.0 <= rh <= 1.0):
            problems = Problems(subject="weather")
            problems.add(
                "relative_humidity",
                f"must be a fraction in [0, 1] for the latent cooling load, got {rh}",
            )
            problems.raise_if_any()
        capacity = self.thermal_capacity_kw(t_out)
        electric = capacity / self.cop(t_out) + self.fan_power_kw
        if latent_used:
            shr = np.where(
                self.use_latent_heat & self._cooling,
                sensible_heat_ratio(self.latent_load_fraction, rh),
                1.0,
            )
            sensible = capacity * shr
        else:
            sensible = capacity
        fan_heat = self.fan_heatgain_fraction * self.fan_power_kw
        # A running HVAC adds heat when heating (direction -1) and removes it when cooling.
        q_on = -self.direction * sensible + fan_heat
        if self._n:
            flux = float(np.mean(wall_irradiance_w_per_m2(weather, self.solar_model)))
        else:
            flux = 0.0
        solar = (
            self.solar_heatgain_factor_m2 * flux + self.solar_aperture_m2 * weather.ghi_w_per_m2
        ) / 1000.0
        gains = self.internal_gain_kw
        f_int, f_sol = self.mass_internal_gain_fraction, self.mass_solar_gain_fraction
        q_air = (1.0 - f_int) * gains + (1.0 - f_sol) * solar
        q_mass = f_int * gains + f_sol * solar
        return HeatInputs(
            q_air_kw=np.asarray(q_air, dtype=np.float64),
            q_mass_kw=np.asarray(q_mass, dtype=np.float64),
            q_on_kw=np.asarray(q_on, dtype=np.float64),
            electric_on_kw=np.asarray(electric, dtype=np.float64),
            internal_gain_kw=np.asarray(gains, dtype=np.float64),
            solar_gain_kw=np.asarray(solar, dtype=np.float64),
            latent_on_kw=np.asarray(capacity - sensible, dtype=np.float64),
            fan_on_kw=np.asarray(self.fan_power_kw, dtype=np.float64),
        )

    def switching_thresholds_c(self) -> tuple[FloatArray, FloatArray]:
        """Air temperatures at which each HVAC switches on and off outside a responded interval.

        The deadband thermostat around :attr:`thermostat_setpoint_c`, or the comfort band's edges
        for a house under direct control (:meth:`command`).
        """
        return self._plain_thresholds_c(slice(None), self.guard_only)

    def _plain_thresholds_c(
        self, sel: slice | IntArray, guard_only: BoolArray
    ) -> tuple[FloatArray, FloatArray]:
        d = self.direction[sel]
        half = 0.5 * self.deadband_c[sel]
        sp = self.thermostat_setpoint_c[sel]
        uncomfortable, comfortable, _ = self._band_edges_c(sel)
        switch_on = np.where(guard_only, uncomfortable, sp + d * half)
        switch_off = np.where(guard_only, comfortable, sp - d * half)
        return switch_on, switch_off

    def _advance(
        self,
        sel: slice | IntArray,
        ta: FloatArray,
        tm: FloatArray,
        on: BoolArray,
        duty: FloatArray,
        guard_only: BoolArray,
        heat: HeatInputs,
        outdoor_c: float,
        start_s: float,
        dt_s: float,
        schedule: _Schedule | None,
    ) -> tuple[FloatArray, FloatArray, BoolArray, FloatArray, FloatArray]:
        """The control policy over ``[start_s, start_s + dt_s)`` for houses ``sel`` (pure).

        State arrays are the subset's. :func:`transactive.devices.ramp._follow_schedule` cuts the
        step at the schedule's instants and gives each piece its phase's thresholds; each piece
        is solved exactly by :func:`etp_advance`. Returns ``(air, mass, on, on_time_s,
        air_excess_integral_ks)``.
        """
        k = _take_coefficients(self._etp, sel)
        d = self.direction[sel]
        q_on = heat.q_on_kw[sel] * duty
        q_air, q_mass = heat.q_air_kw[sel], heat.q_mass_kw[sel]
        plain_on, plain_off = self._plain_thresholds_c(sel, guard_only)
        m = ta.size
        acc = {"ta": ta.copy(), "tm": tm.copy(), "on_time": np.zeros(m), "excess": np.zeros(m)}

        def advance(
            idx: slice | IntArray,
            on_now: BoolArray,
            piece_s: FloatArray,
            switch_on: FloatArray,
            switch_off: FloatArray,
        ) -> BoolArray:
            res = etp_advance(
                coefficients=_take_coefficients(k, idx),
                air_temperature_c=acc["ta"][idx],
                mass_temperature_c=acc["tm"][idx],
                on=on_now,
                q_on_kw=q_on[idx],
                q_air_kw=q_air[idx],
                q_mass_kw=q_mass[idx],
                outdoor_c=outdoor_c,
                dt_s=piece_s,
                switch_on_c=switch_on,
                switch_off_c=switch_off,
                direction=d[idx],
            )
            acc["ta"][idx] = res.air_temperature_c
            acc["tm"][idx] = res.mass_temperature_c
            acc["on_time"][idx] += res.on_time_s
            acc["excess"][idx] += res.air_excess_integral_ks
            return res.on

        unc, comf, hysteresis = self._band_edges_c(sel)
        follows = np.zeros(m, dtype=bool) if schedule is None else ~guard_only
        on = _follow_schedule(
            start_s=start_s,
            dt_s=dt_s,
            on=on,
            follows=follows,
            begin_s=0.0 if schedule is None else schedule.start_s,
            switch_s=np.zeros(m) if schedule is None else schedule.switch_s[sel],
            finish_s=0.0 if schedule is None else schedule.end_s,
            uncomfortable_c=unc,
            comfortable_c=comf,
            hysteresis_c=hysteresis,
            direction=d,
            plain_on_c=plain_on,
            plain_off_c=plain_off,
            advance=advance,
        )
        return acc["ta"], acc["tm"], on, acc["on_time"], acc["excess"]

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Advance every house from ``time_s`` by ``dt_s`` seconds exactly; metered power, energy.

        Inside a responded interval the houses follow their schedule (switching at the exact
        scheduled instant, an event inside the step like a thermostat's crossing), outside it
        the deadband thermostat governs.
        """
        t0, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        inputs = self._kernel_inputs()
        if inputs is not None:
            return self._step_kernel(t0, dt, weather, inputs)
        t_out = float(weather.temperature_c)
        self.outdoor_temperature_c = t_out
        heat = self._heat_inputs(weather)
        duty = self.duty_pu
        q_on = heat.q_on_kw * duty
        was_on = self.on
        ta, tm, on, running_s, excess = self._advance(
            slice(None), self.air_temperature_c, self.mass_temperature_c, was_on, duty,
            self.guard_only, heat, t_out, float(t0), float(dt), self._schedule,
        )  # fmt: skip
        self.air_temperature_c = ta
        self.mass_temperature_c = tm
        self.on = on
        if self._schedule is not None and t0 + dt >= self._schedule.end_s:
            self._schedule = None  # the responded interval is over: the thermostat governs
        self.heat_hvac_kwh += q_on * running_s / _SECONDS_PER_HOUR
        full_h = duty * running_s / _SECONDS_PER_HOUR  # hours at full output
        self.heat_latent_kwh += heat.latent_on_kw * full_h
        self.heat_fan_kwh += self.fan_heatgain_fraction * heat.fan_on_kw * full_h
        self.electric_fan_kwh += heat.fan_on_kw * full_h
        self.heat_gains_kwh += (heat.internal_gain_kw + heat.solar_gain_kw) * dt / _SECONDS_PER_HOUR
        self.heat_envelope_loss_kwh += self.ua_kw_per_k * excess / _SECONDS_PER_HOUR
        energy = heat.electric_on_kw * duty * running_s / _SECONDS_PER_HOUR
        # A house that is off (or that the thermostat switched) runs at full output when next on.
        self.duty_pu = np.where(on & was_on, duty, 1.0)
        return StepResult(power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy, ids=self.ids)

    def _no_switch(self) -> FloatArray:
        """A switch time per house for a step under no schedule (the kernels do not read it)."""
        found: FloatArray | None = getattr(self, "_no_switch_s", None)
        if found is None or found.size != self._n:
            found = np.zeros(self._n)
            self._no_switch_s = found
        return found

    def _schedule_arguments(self) -> tuple[bool, bool, float, FloatArray, float]:
        """``scheduled, any_follows, begin, switch, finish`` of the kernels for the schedule."""
        schedule = self._schedule
        if schedule is None:
            return False, False, 0.0, self._no_switch(), 0.0
        follows = not bool(self.guard_only.all())  # the houses not under direct control
        return True, follows, float(schedule.start_s), schedule.switch_s, float(schedule.end_s)

    @staticmethod
    def _refuse_deadband(marked: FloatArray, rows: IntArray | None = None) -> None:
        """The reference's error for thresholds that open no deadband (the kernels mark NaN).

        ``marked`` is a kernel's output with NaN for those houses (of ``rows``, if given).
        """
        bad = np.flatnonzero(np.isnan(marked))
        houses = bad if rows is None else rows[bad]
        raise ValueError(
            f"etp_advance: houses {houses[:10].tolist()} have switch_on_c not above switch_off_c "
            "(in their direction): a thermostat needs a positive deadband"
        )

    def _step_kernel(
        self, t0: int, dt: int, weather: WeatherSample, inputs: tuple[Any, Any]
    ) -> StepResult:
        """:meth:`step` by the fused kernel (physics, meters and accounts in one pass)."""
        n = self._n
        state, accounts = inputs
        self.outdoor_temperature_c = float(weather.temperature_c)
        conditions, latent_used, heat, _ = self._step_heat(weather)
        scheduled, follows, begin, switch, finish = self._schedule_arguments()
        out = (np.empty(n), np.empty(n), np.empty(n), np.empty(n))
        out_on = np.empty(n, dtype=bool)
        bad = _kernels().step_houses(
            self._kernel_houses(), conditions, latent_used, heat, state, float(t0), float(dt),
            scheduled, follows, begin, _ro(switch), finish, self._bands_open,
            self._step_exponentials(float(dt)), accounts, out, out_on,
        )  # fmt: skip
        if bad:
            self._refuse_deadband(out[0])
        self.air_temperature_c, self.mass_temperature_c, energy, self.duty_pu = out
        self.on = out_on
        if self._schedule is not None and t0 + dt >= self._schedule.end_s:
            self._schedule = None  # the responded interval is over: the thermostat governs
        return StepResult(power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy, ids=self.ids)

    def step_many(
        self,
        time_s: int,
        dt_s: int,
        weather: WeatherSamples,
        *,
        record: bool = False,
        dry_run: bool = False,
    ) -> StepSeries:
        """``len(weather)`` consecutive :meth:`step` calls in one: from ``time_s``, ``dt_s`` each.

        Step ``k`` covers ``[time_s + k dt_s, time_s + (k + 1) dt_s)`` under ``weather[k]``;
        the houses end in the state, and with the accounts, those steps give them (a responded
        schedule is followed and ends as in :meth:`step`). With the numba kernel and this
        class's equipment every house is advanced through all the steps by one kernel call
        (the houses split over the cores), without a Python call per step; otherwise it is a
        loop over :meth:`step`. ``weather`` is any sequence of samples; one whose fields are
        arrays (:class:`transactive.data.weather_tmy.WeatherSeries`) is read as arrays. Every
        sample is checked before anything changes. ``record=True`` also keeps each step's
        energy per house and each house's air temperature at each step's end (T, N).
        ``dry_run=True`` gives the steps' series without changing the houses (their state,
        accounts and schedule stay as they were): what a deep copy stepped through them gives,
        without the copy (a simulator's expected power of houses left alone).
        """
        t0, dt = _checked_time_step(time_s, dt_s)
        n = self._n
        latent_used = self._latent_used()
        from_series = _series_weather(weather, self.solar_model, latent_used)
        table: dict[str, FloatArray] = {}
        if from_series is None:  # every sample checked before anything changes
            table = _weather_table(weather)
            self._check_humidity(table["relative_humidity"], latent_used)
        inputs = self._kernel_inputs()
        own_step = type(self).step is not HvacPopulation.step  # a subclass's physics
        if inputs is None or not self._inline_heat() or own_step:
            stepped = copy.deepcopy(self) if dry_run else self
            return stepped._step_many_loop(t0, dt, weather, record)
        state, accounts = inputs
        if from_series is not None:
            fields_, last_temperature_c = from_series
        else:
            flux = _mean_wall_irradiance_w_per_m2(
                table["solar_zenith_deg"], table["solar_azimuth_deg"], table["dni_w_per_m2"],
                table["dhi_w_per_m2"], table["ghi_w_per_m2"], self.solar_model,
            )  # fmt: skip
            fields_ = _weather_arrays(
                table["temperature_c"],
                table["relative_humidity"],
                flux,
                table["ghi_w_per_m2"],
                latent_used,
            )
            last_temperature_c = float(table["temperature_c"][-1])
        steps = fields_[-1].size
        conditions = _kernels().Weather(*(_ro(a) for a in fields_))
        scheduled, follows, begin, switch, finish = self._schedule_arguments()
        scheduled_steps = 0
        if scheduled:  # the steps up to the one that reaches the interval's end follow it
            while scheduled_steps < steps and t0 + (scheduled_steps + 1) * dt < finish:
                scheduled_steps += 1
            scheduled_steps = min(steps, scheduled_steps + 1)
        kern = _kernels()
        # both cores when the work (houses x steps) pays the second thread's wake-up
        parallel = n * steps >= min(
            _kernel_module.HEAVY_PARALLEL_MIN_ELEMENTS, _kernel_module.PARALLEL_MIN_ELEMENTS
        )
        build = kern.step_many_houses.parallel if parallel else kern.step_many_houses.serial
        chunks = max(1, min(n, kern.numba.get_num_threads())) if parallel else 1
        out = (np.empty(n), np.empty(n), np.empty(n), np.empty(n))
        out_on = np.empty(n, dtype=bool)
        out_accounts = self._account_scratch(n)
        step_energy = np.zeros((chunks, steps))
        shape = (steps, n) if record else (0, 0)
        record_energy, record_air = np.empty(shape), np.empty(shape)
        bad = build(
            self._kernel_houses(), conditions, latent_used, state, float(t0), float(dt),
            scheduled_steps, follows, begin, _ro(switch), finish,
            self._step_exponentials(float(dt)), tuple(_ro(a) for a in accounts), chunks, out,
            out_on, out_accounts, step_energy, record, record_energy, record_air,
        )  # fmt: skip
        if bad:
            self._refuse_deadband(out[0])
        energy = out[2]
        if not dry_run:
            self.outdoor_temperature_c = last_temperature_c
            self.air_temperature_c, self.mass_temperature_c, _, self.duty_pu = out
            self.on = out_on
            for account, value in zip(accounts, out_accounts, strict=True):
                account[...] = value  # in place, as step's +=
            if scheduled_steps and t0 + scheduled_steps * dt >= finish:
                self._schedule = None
        return StepSeries(
            dt_s=dt,
            energy_kwh=energy,
            total_power_kw=step_energy.sum(axis=0) * _SECONDS_PER_HOUR / dt,
            step_energy_kwh=record_energy if record else None,
            step_air_temperature_c=record_air if record else None,
            ids=self.ids,
        )

    def _account_scratch(self, n: int) -> tuple[FloatArray, ...]:
        """Six arrays of ``n`` the step kernel writes the new accounts into, kept between calls.

        They are copied into the accounts at once (or dropped, on a dry run or a refusal), so
        one set serves every call (:func:`transactive.devices._kernels.scratch_array`): fresh
        arrays of 10^6 houses cost their pages' first touch on each call, about 5 % of a
        5-minute interval's bid, response and steps (``bench_devices_hvac.py``).
        """
        return tuple(scratch_array(self, "accounts", (6, n)))

    def _step_many_loop(
        self, t0: int, dt: int, weather: WeatherSamples, record: bool
    ) -> StepSeries:
        """:meth:`step_many` as a loop over :meth:`step` (the reference, and a subclass)."""
        return steps_one_by_one(
            self, t0, dt, weather, record, air_temperature=lambda: self.air_temperature_c
        )

    def stored_heat_kwh(self) -> FloatArray:
        """Heat stored relative to 0 °C: ``Ca Ta + Cm Tm`` in kWh (for energy balances)."""
        return np.asarray(
            (
                self.air_capacity_kj_per_k * self.air_temperature_c
                + self.mass_capacity_kj_per_k * self.mass_temperature_c
            )
            / _SECONDS_PER_HOUR,
            dtype=np.float64,
        )

    # ------------------------------------------------------------------ horizon view

    def flexibility(
        self,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
        *,
        fast_share: float = 0.5,
    ) -> Flexibility:
        """Each house's virtual battery over ``horizon`` (one weather sample per period).

        The battery is the two-mode bound of :mod:`transactive.devices.tcl_battery` (Hao et al.,
        IEEE TPS 2015, with limits derived there that hold for the air temperature): per period
        ``t`` the baseline is the power that holds the base setpoint under ``weather[t]`` (the
        thermostat's average duty: its steady state), the deviation is bounded by the held power
        limits, the stored energy (the slow ETP mode, in kWh at the first period's COP) by the
        limits that keep the air in its band, and ``retention = 1 - a period`` with ``a`` the
        slow mode's rate. The initial energy is the slow mode of the houses' present
        temperatures; a house whose state is outside its limits has them widened to its fastest
        way back (so a just-sampled population is never infeasible). Efficiencies are 1 (the
        state is a shift of heat, not a store with losses). Reads the state only.
        """
        _checked_horizon_weather(horizon, weather)
        problems = Problems(subject="HVAC flexibility")
        if not (np.isfinite(fast_share) and 0.0 <= fast_share < 1.0):
            problems.add("fast_share", f"must lie in [0, 1), got {fast_share}")
        problems.raise_if_any()
        first = hvac_batteries(self, weather[0], fast_share=fast_share)
        eta0 = first.efficiency
        per_period = [first] + [
            hvac_batteries(self, w, fast_share=fast_share, state_efficiency=eta0)
            for w in weather[1:]
        ]  # a loop over periods, each vectorized over the houses

        def stack(name: str) -> FloatArray:
            return np.stack([getattr(b, name) for b in per_period])

        decay = first.dissipation_per_s * float(horizon.period_s)
        problems.check(
            decay >= 0.5,
            "horizon.period_s",
            "too long for these houses' battery (a period_s >= 0.5: retention 1 - a period "
            "is no longer a fair first-order step)",
            labels=self.ids.tolist(),
        )
        problems.raise_if_any()
        ones = np.ones(self._n)
        retention = 1.0 - decay
        power_min, power_max = stack("held_power_min_kw"), stack("held_power_max_kw")
        energy_min, energy_max = stack("energy_min_kwh"), stack("energy_max_kwh")
        initial = first.stored_energy_kwh(self.air_temperature_c, self.mass_temperature_c)
        # A house whose state lies outside its battery's limits now (just sampled, or pushed out
        # by its thermostat) cannot be inside them at the end of the first period. Its limits
        # become the fastest way back until it is inside: the trajectory at full deviation
        # towards the band, e[t+1] = r e[t] + p dt (the model of Flexibility). Every schedule
        # that returns as fast as the house can is then feasible, and nothing else changes.
        energy_min, energy_max = widened_to_way_back(
            initial, retention, power_min, power_max, energy_min, energy_max, horizon.period_h
        )
        return Flexibility(
            horizon=horizon,
            ids=self.ids,
            baseline_kw=stack("baseline_kw"),
            power_min_kw=power_min,
            power_max_kw=power_max,
            energy_min_kwh=energy_min,
            energy_max_kwh=energy_max,
            initial_energy_kwh=initial,
            retention=retention,
            charge_efficiency=ones,
            discharge_efficiency=ones.copy(),
        )

    def best_response(
        self,
        prices_per_kwh: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
    ) -> BestResponse:
        """The cheapest schedule inside :meth:`flexibility` at ``prices_per_kwh`` ((T,) or (T, N)).

        Solved by :func:`transactive.devices.flexibility.solve_best_response`; changes no state
        of the population. A house whose present state no schedule can bring inside its bounds
        is named in a ValidationError. The schedule is per house: dispatched house by house
        (:func:`transactive.prosumer.virtual_battery.follow_schedule`) 2,000 stepped houses draw
        each quarter hour's planned energy within 0.6 % RMS (2.3 % peak) of the power range; the
        same total through the aggregate priority stack, which reassigns the houses, only within
        3 % RMS (13 % peak) (``benchmarks/bench_virtual_battery.py``).
        """
        return solve_best_response(self.flexibility(horizon, weather), prices_per_kwh)
