"""Fused numba kernel of the PV population: the PVWatts chain in one pass (issue 17).

:func:`ac_power`, :func:`bid` (the expected output) and :func:`step` compute, per system, the
model chain of :mod:`transactive.devices.pv` (pvlib 0.16's functions there, the reference the
tests compare against):

1. plane-of-array irradiance, isotropic sky (``pvlib.irradiance.get_total_irradiance``;
   Loutzenhiser et al., Solar Energy 81, 2007)::

       cos θ = cos β cos Z + sin β sin Z cos(γ_s - γ)        (clipped to [-1, 1])
       G_poa = max(DNI cos θ, 0) + DHI (1 + cos β) / 2 + GHI ρ (1 - cos β) / 2

2. SAPM cell temperature (``pvlib.temperature.sapm_cell``; King, Boyson, Kratochvil,
   SAND2004-3535, 2004): ``T_c = G_poa e^(a + b WS) + T_air + G_poa / 1000 ΔT``;
3. PVWatts DC (``pvlib.pvsystem.pvwatts_dc``; Dobos, NREL/TP-6A20-62641, 2014):
   ``P_dc = G_poa / 1000 P_dc0 (1 + γ_p (T_c - 25))``, times ``1 - losses``, at least 0;
4. PVWatts inverter (``pvlib.inverter.pvwatts``): ``ζ = P_dc / P_dc0,inv``,
   ``η = η_nom / 0.9637 (-0.0162 ζ - 0.0059 / ζ + 0.9858)``,
   ``P_ac = min(η P_dc, η_nom P_dc0,inv)``, at least 0.

pvlib evaluates ``cos(γ_s - γ)`` per system per sample and then ``cos(radians(degrees(arccos(
cos θ))))``: three transcendental functions per system-step. Here the system's angles are
constant, so ``cos β``, ``sin β``, ``cos γ``, ``sin γ`` are computed once (numpy, as pvlib
does; the rows of :data:`SYSTEM_FIELDS`), the sun's once per sample (:data:`SUN_FIELDS`), and
``cos(γ_s - γ) = cos γ_s cos γ + sin γ_s sin γ``; the round trip through the angle of incidence
is the identity on ``[-1, 1]``. So the kernel differs from pvlib's chain only by rounding:
relative differences of a few 1e-16 in ``cos θ``, well inside the 1e-12 of the system's DC
rating that ``tests/devices/test_pv_kernels.py`` states, and no transcendental function per
system-step.

Both cores (:func:`~transactive.devices._kernels.loop`) for large populations: some thirty
floating-point operations per system-step, and a second thread pays (bid + respond + five steps
of 10^6 systems, interleaved runs on the project's 2-core machine: 63-71 M device-steps/s on two
threads against 32-36 M on one).

Compiled on first use and cached in ``__pycache__``; :mod:`transactive.devices.pv` imports this
module only when a population first runs a kernel.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from transactive.devices._kernels import inline, loop, power_at_row

__all__: list[str] = []

FloatArray = npt.NDArray[np.float64]

_power_at_row = inline(power_at_row)

#: pvlib.inverter.pvwatts' reference efficiency (``eta_inv_ref``).
ETA_INV_REF = 0.9637

#: The weather sample and the population-wide constants, as one array the kernels read:
#: ``cos Z``, ``sin Z``, ``cos γ_s``, ``sin γ_s``, DNI, GHI, DHI (W/m²), the air temperature (°C),
#: ``e^(a + b WS)`` and ``ΔT`` of the SAPM, the inverter's nominal efficiency, and 1 when the
#: sun is down or the GHI is zero (no output; pvlib's chain is not run then).
SUN_FIELDS = (
    "cos_zenith", "sin_zenith", "cos_sun_azimuth", "sin_sun_azimuth", "dni_w_per_m2",
    "ghi_w_per_m2", "dhi_w_per_m2", "temperature_c", "sapm_factor", "sapm_delta_t",
    "eta_inv_nom", "dark",
)  # fmt: skip
(
    COS_ZENITH, SIN_ZENITH, COS_SUN_AZIMUTH, SIN_SUN_AZIMUTH, DNI, GHI, DHI, TEMPERATURE,
    SAPM_FACTOR, SAPM_DELTA_T, ETA_INV_NOM, DARK,
) = range(len(SUN_FIELDS))  # fmt: skip

#: The systems' constant columns, the rows of one ``(9, N)`` array the kernels read: ``cos β``,
#: ``sin β``, ``cos γ``, ``sin γ`` of the tilt β and azimuth γ, the albedo, the DC rating (kW),
#: the temperature coefficient (1/°C), the system losses (pu) and the AC rating (kW).
SYSTEM_FIELDS = (
    "cos_tilt", "sin_tilt", "cos_azimuth", "sin_azimuth", "albedo", "dc_capacity_kw",
    "gamma_pdc_per_c", "system_loss_pu", "ac_capacity_kw",
)  # fmt: skip
(
    COS_TILT, SIN_TILT, COS_AZIMUTH, SIN_AZIMUTH, ALBEDO, DC_CAPACITY, GAMMA_PDC, SYSTEM_LOSS,
    AC_CAPACITY,
) = range(len(SYSTEM_FIELDS))  # fmt: skip


@inline
def _ac_kw(i: int, sun: FloatArray, systems: FloatArray) -> float:
    """System ``i``'s AC output (kW) under ``sun`` (:data:`SUN_FIELDS`; :data:`SYSTEM_FIELDS`)."""
    if sun[DARK] != 0.0:  # the sun is down or gives nothing: pvlib's chain is not run
        return 0.0
    ct = systems[COS_TILT, i]
    # Angle of incidence (pvlib.irradiance.aoi_projection), clipped as pvlib does.
    cos_relative = (
        sun[COS_SUN_AZIMUTH] * systems[COS_AZIMUTH, i]
        + sun[SIN_SUN_AZIMUTH] * systems[SIN_AZIMUTH, i]
    )
    projection = ct * sun[COS_ZENITH] + systems[SIN_TILT, i] * sun[SIN_ZENITH] * cos_relative
    projection = min(max(projection, -1.0), 1.0)
    poa_direct = max(sun[DNI] * projection, 0.0)
    poa_sky = sun[DHI] * (1 + ct) * 0.5  # isotropic sky
    poa_ground = sun[GHI] * systems[ALBEDO, i] * (1 - ct) * 0.5
    poa = poa_direct + (poa_sky + poa_ground)
    # SAPM cell temperature.
    t_cell = poa * sun[SAPM_FACTOR] + sun[TEMPERATURE] + (poa / 1000.0) * sun[SAPM_DELTA_T]
    # PVWatts DC, less the system losses.
    dc = poa * 0.001 * systems[DC_CAPACITY, i] * (1 + systems[GAMMA_PDC, i] * (t_cell - 25.0))
    dc = max(dc * (1.0 - systems[SYSTEM_LOSS, i]), 0.0)
    # PVWatts inverter, its DC rating the AC rating over the nominal efficiency.
    eta_nom = sun[ETA_INV_NOM]
    pdc0 = systems[AC_CAPACITY, i] / eta_nom
    pac0 = eta_nom * pdc0
    zeta = dc / pdc0
    inverse = 0.0059 / zeta if dc != 0 else 0.0
    eta = eta_nom / ETA_INV_REF * (-0.0162 * zeta - inverse + 0.9858)
    return float(max(0.0, min(pac0, eta * dc)))


@loop
def ac_power(sun: FloatArray, systems: FloatArray, out_ac_kw: FloatArray) -> None:
    """Every system's AC output (kW) under the sample ``sun``."""
    for i in numba.prange(out_ac_kw.size):
        out_ac_kw[i] = _ac_kw(i, sun, systems)


@loop
def bid(
    sun: FloatArray,
    systems: FloatArray,
    curtailment_price_per_kwh: FloatArray,
    floor: float,
    cap: float,
    out_expected_kw: FloatArray,
    prices: FloatArray,
    powers: FloatArray,
) -> None:
    """The expected output under the forecast ``sun`` as a selling block: curves (N, 2).

    Offered at the floor, or at the curtailment price (clipped to the floor and the cap).
    """
    for i in numba.prange(out_expected_kw.size):
        expected = _ac_kw(i, sun, systems)
        curtail = curtailment_price_per_kwh[i]
        sell = min(max(floor if np.isnan(curtail) else curtail, floor), cap)
        out_expected_kw[i] = expected
        prices[i, 0] = sell
        prices[i, 1] = sell
        powers[i, 0] = 0.0
        powers[i, 1] = -expected


@loop
def step(
    sun: FloatArray,
    inside_s: float,
    dt_s: float,
    systems: FloatArray,
    limit_kw: FloatArray,
    out_energy_kwh: FloatArray,
    out_power_kw: FloatArray,
) -> None:
    """Production over a step (energy negative).

    The dispatch ``min(actual, limit)`` for the ``inside_s`` seconds inside the responded
    interval, the whole output for the rest.
    """
    for i in numba.prange(out_energy_kwh.size):
        actual = _ac_kw(i, sun, systems)
        dispatched = min(actual, limit_kw[i])
        energy = -(dispatched * inside_s + actual * (dt_s - inside_s)) / 3600.0
        out_energy_kwh[i] = energy
        out_power_kw[i] = energy * 3600.0 / dt_s


@loop
def respond(
    prices: FloatArray,
    powers: FloatArray,
    price: FloatArray,
    fill: FloatArray,
    expected_kw: FloatArray,
    out_power_kw: FloatArray,
    out_limit_kw: FloatArray,
) -> None:
    """Each system's power at its price and its dispatch limit (inf when sold in full)."""
    for i in numba.prange(out_power_kw.size):
        power = _power_at_row(prices, powers, i, price, fill)
        sold = -power
        out_power_kw[i] = power
        out_limit_kw[i] = np.inf if sold >= expected_kw[i] else sold
