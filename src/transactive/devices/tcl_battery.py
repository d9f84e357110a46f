"""One thermostatic load as a generalized battery whose limits hold for its air temperature.

Base: Hao, Sanandaji, Poolla, Vincent, "Aggregate flexibility of thermostatically controlled
loads", IEEE Trans. Power Systems 30(1):189-198, 2015 (doi 10.1109/TPWRS.2014.2328865), §II-III:
a first-order TCL ``C dθ/dt = (θ_a - θ)/R - η P`` with comfort ``|θ - θ_r| <= Δ`` is exactly the
battery ``dx/dt = -a x + u``, ``u = P - P0``, ``|x| <= C Δ / η``, ``-P0 <= u <= P_m - P0``.

The houses here are GridLAB-D's two-node ETP model (air ``Ta``, mass ``Tm``; see
:mod:`transactive.devices.hvac`), and comfort is judged on the air. Hao's one-node reduction with
the slow mode's capacity ``C = UA/|r_slow|`` is then not sufficient: a fast change of power moves
the air by about ``η u / (UA + Hm)`` within minutes, before the mass has stored anything, so a
house can leave its band while its battery state is still well inside ``±C Δ/η``. This module
derives limits that hold for the air temperature, from the exact modal decomposition of the ETP
model (derived here; the battery form is Hao et al.'s).

**Model.** With ``ξa = d (θ_r - Ta)``, ``ξm = d (Tm_ref - Tm)`` (``d = +1`` cooling, ``-1``
heating; ``Tm_ref = θ_r + Qm/Hm`` is the mass temperature when the air is held at ``θ_r``) and
``u = P - P0`` the electric power above the baseline ``P0 = d (UA (To - θ_r) + Qa + Qm) / η``
that holds ``Ta = θ_r``, the ETP equations for constant weather are exactly::

    Ca ξa' = -UA ξa - Hm (ξa - ξm) + η u,        Cm ξm' = Hm (ξa - ξm)

i.e. ``ξ' = A ξ + B u`` with ``A = [[a11, a12], [a21, a22]] = [[-(UA+Hm)/Ca, Hm/Ca],
[Hm/Cm, -Hm/Cm]]``, ``B = (η/Ca, 0)``. ``A`` has two real negative eigenvalues ``r_f < r_s``
(fast air mode, slow mass mode) with right eigenvectors ``v_k = (a12, r_k - a11)`` and left
eigenvectors ``w_k = (a21, r_k - a11)``. The modal coordinates scaled to unit input gain,
``x_k = w_k·ξ / (w_k·B) = (Ca/η) (ξa + (r_k - a11)/a21 ξm)`` (energy, kW s), obey exactly::

    x_k' = r_k x_k + u          and          ξa = g_s x_s + g_f x_f,
    g_k = a12 a21 η / (Ca (a12 a21 + (r_k - a11)^2))   (> 0)

(from ``ξ = Σ_k v_k w_k·ξ / (w_k·v_k)``; check: ``g_s/|r_s| + g_f/|r_f| = η/UA``, the
steady-state gain). The slow coordinate ``x = x_s`` is the battery's stored energy: it follows
``x' = -a x + u`` with ``a = |r_s|``, Hao's form, and ``x ≈ (Ca ξa + Cm ξm)/η`` (the stored heat
over the COP) when ``Hm >> UA``.

**Theorem (a sufficient battery for the air temperature).** Let ``u(t) ∈ [u_lo, u_hi]`` with
``u_lo <= 0 <= u_hi`` for all ``t >= 0``, let the fast coordinate start inside
``y(0) = x_f(0) ∈ [u_lo, u_hi]/|r_f|``, and let ``x(t) ∈ [x_lo, x_hi]`` with::

    x_hi = (Δ_c - F u_hi) / g_s,     x_lo = -(Δ_d - F |u_lo|) / g_s,     F = g_f / |r_f|

where ``Δ_c`` is the room from ``θ_r`` to the band edge the HVAC drives the air to (``θ_r - Tmin``
cooling) and ``Δ_d`` the room to the other edge. Then ``Tmin <= Ta(t) <= Tmax`` for all ``t``.

*Proof.* ``y' = r_f y + u`` with ``u ∈ [u_lo, u_hi]``: at ``y = u_hi/|r_f|``, ``y' = u - u_hi <=
0``, and at ``y = u_lo/|r_f|``, ``y' >= 0``, so the interval is forward invariant and
``g_f y ∈ [F u_lo, F u_hi]``. Then ``ξa = g_s x + g_f y <= g_s x_hi + F u_hi = Δ_c`` and
``ξa >= g_s x_lo + F u_lo = -Δ_d``, i.e. ``Ta`` stays in ``[Tmin, Tmax]``. ∎

The power limits trade against the energy limits (``F`` K per kW: the air offset of a sustained
deviation carried by the fast mode). ``fast_share`` φ caps the share of each half band the fast
mode may use: ``u_hi = min(P_m - P0, φ Δ_c / F)``, ``u_lo = -min(P0, φ Δ_d / F)``, so the energy
limits keep at least ``(1 - φ)`` of the band. Held at a limit (``u = a x``), the fast mode uses
only ``F a |x|``, a fraction ``a/|r_f| ~ 1 %`` of the band: the derating is the price of fast
moves, not of holding.

Limits of the bound, stated where it is used: it is exact for one weather sample (constant
``To``, gains and COP); when the weather changes the reference ``Tm_ref`` moves (the neglected
drive ``Cm d(Qm/Hm)/dt`` is a few tens of watts per house for a solar ramp) and the state is
kept in electric energy at the first period's COP (a COP change of ε changes the state's
input gain by ε). A house whose load its HVAC cannot carry at full output (or that needs
none) has its baseline clipped to ``[0, P_m]`` and no room on that side; its state then drifts
and no bound holds for it. A real compressor is on or off, so a house's own fast mode follows
its on/off power, not its average; the theorem holds for the average, and what covers the
ripple is the margin the default ``fast_share = 0.5`` leaves, the band guard
(:meth:`transactive.devices.hvac.HvacPopulation.command`) and the priority stack
(:func:`transactive.prosumer.virtual_battery.track_power`), which rotates houses. Measured on
2,000 stepped on/off houses (``benchmarks/bench_virtual_battery.py``): signals at 90 % of the
aggregate battery's limits, held at either energy limit, bang-bang or random, are tracked within
0.25 % RMS and 1.6 % peak of the power range with every house in its band; with
``fast_share = 0.3`` the peak grows to 3-10 %, and Hao's one-node battery gives 4-8 % RMS and
13-42 % peak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.weather import WeatherSample

if TYPE_CHECKING:  # hvac imports this module; the population is only a type here
    from transactive.devices.hvac import HvacPopulation

__all__ = ["TclBatteries", "hvac_batteries", "tcl_batteries"]

FloatArray = npt.NDArray[np.float64]

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, eq=False)
class TclBatteries:
    """Per-house batteries of N thermostatic loads at one weather sample (arrays of length N).

    Hao et al.'s first-order parameters (2015, §II-III), kept for comparison:
    ``resistance_k_per_kw`` R = 1/UA, ``capacitance_kwh_per_k`` C = UA/|r_slow|, ``efficiency``
    η (thermal kW per electric kW), ``ambient_c`` θ_a (gains included), ``setpoint_c`` θ_r,
    ``band_c`` Δ (the narrower half band), ``rated_kw`` P_m, ``baseline_kw`` P0 (clipped to
    ``[0, P_m]``), ``power_min_kw`` -P0 and ``power_max_kw`` P_m - P0 (what the compressor can
    do), ``energy_capacity_kwh`` C Δ/η (Hao's capacity: *not* sufficient for the air),
    ``dissipation_per_s`` a = |r_slow|.

    The two-mode bound of the module docstring: ``fast_rate_per_s`` |r_f|,
    ``slow_air_k_per_kwh`` g_s and ``fast_air_k_per_kw`` F (air offset per stored kWh and per
    sustained kW), ``held_power_min_kw`` u_lo and ``held_power_max_kw`` u_hi (the deviation
    limits under which the energy limits hold), ``energy_min_kwh`` x_lo and ``energy_max_kwh``
    x_hi (bounds of the slow state that keep the air in band). ``air_state_kwh_per_k``,
    ``mass_state_kwh_per_k`` and ``mass_reference_c`` map temperatures to the state
    (:meth:`stored_energy_kwh`).
    """

    resistance_k_per_kw: FloatArray
    capacitance_kwh_per_k: FloatArray
    efficiency: FloatArray
    ambient_c: FloatArray
    setpoint_c: FloatArray
    band_c: FloatArray
    rated_kw: FloatArray
    baseline_kw: FloatArray
    power_min_kw: FloatArray
    power_max_kw: FloatArray
    energy_capacity_kwh: FloatArray
    dissipation_per_s: FloatArray
    fast_rate_per_s: FloatArray
    slow_air_k_per_kwh: FloatArray
    fast_air_k_per_kw: FloatArray
    held_power_min_kw: FloatArray
    held_power_max_kw: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    air_state_kwh_per_k: FloatArray
    mass_state_kwh_per_k: FloatArray
    mass_reference_c: FloatArray
    direction: FloatArray

    @property
    def n_devices(self) -> int:
        """Number of houses."""
        return int(self.baseline_kw.shape[0])

    def stored_energy_kwh(
        self, air_temperature_c: npt.ArrayLike, mass_temperature_c: npt.ArrayLike
    ) -> FloatArray:
        """The slow state ``x = (Ca/η)(ξa + (r_s - a11)/a21 ξm)`` of houses at these temperatures.

        Positive is charged (cooler than the reference when cooling, warmer when heating).
        """
        ta = np.asarray(air_temperature_c, dtype=np.float64)
        tm = np.asarray(mass_temperature_c, dtype=np.float64)
        xi_a = self.direction * (self.setpoint_c - ta)
        xi_m = self.direction * (self.mass_reference_c - tm)
        return np.asarray(
            self.air_state_kwh_per_k * xi_a + self.mass_state_kwh_per_k * xi_m, dtype=np.float64
        )


def tcl_batteries(
    *,
    ua_kw_per_k: FloatArray,
    mass_coupling_kw_per_k: FloatArray,
    air_capacity_kj_per_k: FloatArray,
    mass_capacity_kj_per_k: FloatArray,
    eigenvalues_per_s: tuple[FloatArray, FloatArray],
    direction: FloatArray,
    setpoint_c: FloatArray,
    comfort_min_c: FloatArray,
    comfort_max_c: FloatArray,
    outdoor_temperature_c: float,
    q_air_kw: FloatArray,
    q_mass_kw: FloatArray,
    thermal_capacity_kw: FloatArray,
    electric_power_kw: FloatArray,
    fast_share: float = 0.5,
    state_efficiency: FloatArray | None = None,
) -> TclBatteries:
    """Per-house batteries from ETP parameters and one weather sample's heat flows.

    ``eigenvalues_per_s`` is ``(r_fast, r_slow)`` of the ETP matrix; ``q_air_kw`` and
    ``q_mass_kw`` the gains reaching the air and the mass; ``thermal_capacity_kw`` the heat the
    running HVAC moves (positive) and ``electric_power_kw`` what it then draws. ``fast_share``
    in [0, 1) caps the share of each half band the fast mode may use (module docstring).
    ``state_efficiency`` (default: this sample's COP) is the COP the state is measured at, so
    states of several weather samples share one unit.
    """
    problems = Problems(subject="TCL battery")
    if not (np.isfinite(fast_share) and 0.0 <= fast_share < 1.0):
        problems.add("fast_share", f"must lie in [0, 1), got {fast_share}")
    if not np.isfinite(outdoor_temperature_c):
        problems.add(
            "outdoor_temperature_c", f"must be a finite number, got {outdoor_temperature_c}"
        )
    problems.check(~(electric_power_kw > 0), "electric_power_kw", "must be positive")
    problems.check(~(thermal_capacity_kw > 0), "thermal_capacity_kw", "must be positive")
    problems.check(~np.isfinite(q_air_kw + q_mass_kw), "gains", "not a finite number")
    problems.raise_if_any()
    ua, hm = ua_kw_per_k, mass_coupling_kw_per_k
    ca, cm = air_capacity_kj_per_k, mass_capacity_kj_per_k
    r_fast, r_slow = eigenvalues_per_s
    d = direction
    eta = thermal_capacity_kw / electric_power_kw
    eta_state = eta if state_efficiency is None else state_efficiency
    rated = electric_power_kw
    # Baseline that holds Ta = θ_r: d (UA (To - θ_r) + Qa + Qm) / η (steady state of the ETP).
    load_kw = d * (ua * (outdoor_temperature_c - setpoint_c) + q_air_kw + q_mass_kw)
    baseline = np.clip(load_kw / eta, 0.0, rated)
    # Modal decomposition (module docstring), rates in 1/s, states in kW s.
    a11 = -(ua + hm) / ca
    a12 = hm / ca
    a21 = hm / cm
    prod = a12 * a21

    def air_gain(r: FloatArray, efficiency: FloatArray) -> FloatArray:
        # g_k: air response (K) per kW s of the unit-gain modal state x_k
        return np.asarray(prod * efficiency / (ca * (prod + (r - a11) ** 2)), dtype=np.float64)

    g_s = air_gain(r_slow, eta_state) * _SECONDS_PER_HOUR  # K per kWh of state
    fast = air_gain(r_fast, eta) / np.abs(r_fast)  # K per sustained kW
    up = np.where(d > 0, setpoint_c - comfort_min_c, comfort_max_c - setpoint_c)
    down = np.where(d > 0, comfort_max_c - setpoint_c, setpoint_c - comfort_min_c)
    u_hi = np.minimum(rated - baseline, fast_share * up / fast)
    u_lo = -np.minimum(baseline, fast_share * down / fast)
    a = np.abs(r_slow)
    capacitance = ua / a / _SECONDS_PER_HOUR
    band = np.minimum(up, down)
    ambient = outdoor_temperature_c + (q_air_kw + q_mass_kw) / ua
    return TclBatteries(
        resistance_k_per_kw=1.0 / ua,
        capacitance_kwh_per_k=capacitance,
        efficiency=eta,
        ambient_c=ambient,
        setpoint_c=np.asarray(setpoint_c, dtype=np.float64).copy(),
        band_c=band,
        rated_kw=rated,
        baseline_kw=baseline,
        power_min_kw=-baseline,
        power_max_kw=rated - baseline,
        energy_capacity_kwh=capacitance * band / eta,
        dissipation_per_s=a,
        fast_rate_per_s=np.abs(r_fast),
        slow_air_k_per_kwh=g_s,
        fast_air_k_per_kw=fast,
        held_power_min_kw=u_lo,
        held_power_max_kw=u_hi,
        energy_min_kwh=-(down + fast * u_lo) / g_s,
        energy_max_kwh=(up - fast * u_hi) / g_s,
        air_state_kwh_per_k=ca / eta_state / _SECONDS_PER_HOUR,
        mass_state_kwh_per_k=ca / eta_state * (r_slow - a11) / a21 / _SECONDS_PER_HOUR,
        mass_reference_c=setpoint_c + q_mass_kw / hm,
        direction=np.asarray(d, dtype=np.float64),
    )


def hvac_batteries(
    houses: HvacPopulation,
    weather: WeatherSample,
    *,
    fast_share: float = 0.5,
    state_efficiency: FloatArray | None = None,
) -> TclBatteries:
    """The per-house batteries of an HVAC population under one weather sample.

    Heat flows come from the population's own physics (``HvacPopulation._heat_inputs``), so the
    battery sees the same gains, sensible capacity (latent share and fan heat included) and
    electric power (fan included) its houses then step with; ``η`` is their ratio.
    """
    heat = houses._heat_inputs(weather)
    return tcl_batteries(
        ua_kw_per_k=houses.ua_kw_per_k,
        mass_coupling_kw_per_k=houses.mass_coupling_kw_per_k,
        air_capacity_kj_per_k=houses.air_capacity_kj_per_k,
        mass_capacity_kj_per_k=houses.mass_capacity_kj_per_k,
        eigenvalues_per_s=houses.eigenvalues_per_s,
        direction=np.asarray(houses.direction, dtype=np.float64),
        setpoint_c=houses.setpoint_c,
        comfort_min_c=houses.comfort_min_c,
        comfort_max_c=houses.comfort_max_c,
        outdoor_temperature_c=float(weather.temperature_c),
        q_air_kw=heat.q_air_kw,
        q_mass_kw=heat.q_mass_kw,
        # heat the running HVAC moves the way it is meant to (fan heat included, signed)
        thermal_capacity_kw=-np.asarray(houses.direction, dtype=np.float64) * heat.q_on_kw,
        electric_power_kw=heat.electric_on_kw,
        fast_share=fast_share,
        state_efficiency=state_efficiency,
    )
