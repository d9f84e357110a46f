"""The virtual battery of a thermostatic-load population (MISSION.md §6, paper §3.2 [61-65]).

Source: Hao, Sanandaji, Poolla, Vincent, "Aggregate flexibility of thermostatically controlled
loads", IEEE Trans. Power Systems 30(1):189-198, 2015 (doi 10.1109/TPWRS.2014.2328865).

One TCL (cooling): ``dθ/dt = -a (θ - θ_a) - b P`` with ``a = 1/(R C)``, ``b = η/C``, comfort
``|θ - θ_r| <= Δ``, power ``0 <= P <= P_m``. The baseline that holds ``θ_r`` is
``P0 = (θ_a - θ_r)/(η R)``. With ``u = P - P0`` and the stored energy ``x = C (θ_r - θ)/η``
(heating: ``x = C (θ - θ_r)/η``, ``P0 = (θ_r - θ_a)/(η R)``) the TCL is exactly a battery::

    dx/dt = -a x + u,   -P0 <= u <= P_m - P0,   |x| <= C Δ / η

(power limits ``n- = P0``, ``n+ = P_m - P0``, energy capacity ``C Δ/η``, self-dissipation ``a``).
A homogeneous population is the sum of its batteries (Hao et al., Theorem 1).

Heterogeneous populations (``kind="sufficient"``): an inner approximation derived here by
proportional disaggregation, in the spirit of the paper's sufficient battery (its exact
expressions are not reproduced). Give TCL i the share ``β_i = C_i / ΣC`` of the aggregate
state, ``x_i = β_i x``, with ``a0 = Σ β_i a_i``. Then ``u_i = dx_i/dt + a_i x_i = β_i (u + (a_i -
a0) x)`` sums to ``u`` and ``|x_i| <= C_i`` whenever ``|x| <= ΣC``; ``u_i`` is within its limits
for every ``u`` within ``[-n-, n+]`` if ``n± = min_i (n_i± / β_i - |a_i - a0| ΣC)``. So every
trajectory of this aggregate battery can be followed by the devices: it is sufficient.
``kind="homogeneous"`` sums the batteries with ``a0`` (exact when all ``a_i`` are equal).

From the ETP two-node house (:mod:`transactive.devices.hvac`) to one node: ``R = 1/UA`` keeps the
steady state exact (``Ta - To = Q/UA`` whatever ``Hm``), and ``C = UA / |r_slow|`` makes ``a``
the slow eigenvalue of the ETP system, the mode that carries the stored heat (for ``Hm >> UA``,
``C -> Ca + Cm``). Internal and solar gains enter as an effective ambient
``θ_a = To + (Q_int + Q_solar)/UA``; ``η`` and ``P_m`` are the COP and electric power at the
outdoor temperature; ``Δ`` is the comfort band's narrower half ``min(Tset - Tmin, Tmax - Tset)``
(the band the market lets the thermostat use) and ``θ_r`` the base setpoint. The fast air mode is
left out: on minutes the air can reach a band edge before the mass has stored ``C Δ/η``.

:func:`track_power` is a priority-stack controller (Hao et al. §V): it commands the houses whose
air is furthest toward the uncomfortable edge first until the target power is met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from transactive.devices.hvac import COOLING, HvacPopulation
from transactive.errors import Problems

__all__ = [
    "TclBatteries",
    "VirtualBattery",
    "tcl_batteries_of",
    "track_power",
    "virtual_battery_of",
]

FloatArray = npt.NDArray[np.float64]

_SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class VirtualBattery:
    """A generalized battery ``dx/dt = -a x + u`` with ``u = P - baseline``.

    Attributes
    ----------
    power_min_kw, power_max_kw:
        Limits of the power deviation ``u`` from the baseline (``power_min_kw <= 0``).
    energy_capacity_kwh:
        ``|x| <= energy_capacity_kwh`` (x > 0: pre-cooled / pre-heated, "charged").
    dissipation_per_s:
        Self-dissipation rate ``a``.
    baseline_kw:
        Power that holds every setpoint.

    """

    power_min_kw: float
    power_max_kw: float
    energy_capacity_kwh: float
    dissipation_per_s: float
    baseline_kw: float

    def energy_trajectory_kwh(
        self, deviation_kw: npt.ArrayLike, dt_s: float, initial_kwh: float = 0.0
    ) -> FloatArray:
        """State after each interval of piecewise-constant deviations ``u`` (exact solution)."""
        u = np.asarray(deviation_kw, dtype=np.float64).ravel()
        problems = Problems(subject="virtual battery dispatch")
        problems.check(~np.isfinite(u), "deviation_kw", "not a finite number")
        if not (np.isfinite(dt_s) and dt_s > 0):
            problems.add("dt_s", f"must be positive, got {dt_s}")
        problems.raise_if_any()
        a = self.dissipation_per_s
        decay = np.exp(-a * dt_s)
        gain = (-np.expm1(-a * dt_s) / a if a > 0 else dt_s) / _SECONDS_PER_HOUR
        x = np.empty(u.size)
        state = float(initial_kwh)
        for k in range(u.size):  # a recursion in time, not a loop over devices
            state = decay * state + gain * u[k]
            x[k] = state
        return x

    def is_feasible(
        self, deviation_kw: npt.ArrayLike, dt_s: float, initial_kwh: float = 0.0
    ) -> bool:
        """Whether a deviation profile keeps within the power and energy limits."""
        u = np.asarray(deviation_kw, dtype=np.float64)
        x = self.energy_trajectory_kwh(u, dt_s, initial_kwh)
        power_ok = bool(np.all((u >= self.power_min_kw) & (u <= self.power_max_kw)))
        return power_ok and bool(np.all(np.abs(x) <= self.energy_capacity_kwh))


@dataclass(frozen=True)
class TclBatteries:
    """First-order TCL parameters and per-device batteries (Hao et al. 2015, §II-III).

    ``resistance_k_per_kw`` R, ``capacitance_kwh_per_k`` C, ``efficiency`` η (COP),
    ``ambient_c`` θ_a (gains included), ``setpoint_c`` θ_r, ``band_c`` Δ, ``rated_kw`` P_m;
    battery: ``baseline_kw`` P0 (clipped to [0, P_m]), ``power_min_kw`` -P0,
    ``power_max_kw`` P_m - P0, ``energy_capacity_kwh`` C Δ/η, ``dissipation_per_s`` a.
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


def tcl_batteries_of(
    population: HvacPopulation, outdoor_temperature_c: float, ghi_w_per_m2: float = 0.0
) -> TclBatteries:
    """Reduce each ETP house to Hao's first-order TCL and its battery."""
    problems = Problems(subject="virtual battery")
    if not np.isfinite(outdoor_temperature_c):
        problems.add("outdoor_temperature_c", "must be a finite number")
    if not (np.isfinite(ghi_w_per_m2) and ghi_w_per_m2 >= 0):
        problems.add("ghi_w_per_m2", "must be finite and >= 0")
    problems.raise_if_any()
    p = population
    ua = p.ua_kw_per_k
    r_slow = p.eigenvalues_per_s[1]
    resistance = 1.0 / ua
    capacitance = ua / np.abs(r_slow) / _SECONDS_PER_HOUR  # kWh/K
    a = np.abs(r_slow)
    eta = p.cop(outdoor_temperature_c)
    rated = p.electric_power_kw(outdoor_temperature_c)
    gains = p.internal_gain_kw + p.solar_aperture_m2 * ghi_w_per_m2 / 1000.0
    ambient = outdoor_temperature_c + gains / ua
    cooling = p.direction == COOLING
    gap = np.where(cooling, ambient - p.setpoint_c, p.setpoint_c - ambient)
    baseline = np.clip(gap / (eta * resistance), 0.0, rated)
    band = np.minimum(p.setpoint_c - p.comfort_min_c, p.comfort_max_c - p.setpoint_c)
    return TclBatteries(
        resistance_k_per_kw=resistance,
        capacitance_kwh_per_k=capacitance,
        efficiency=eta,
        ambient_c=ambient,
        setpoint_c=p.setpoint_c.copy(),
        band_c=band,
        rated_kw=rated,
        baseline_kw=baseline,
        power_min_kw=-baseline,
        power_max_kw=rated - baseline,
        energy_capacity_kwh=capacitance * band / eta,
        dissipation_per_s=a,
    )


def virtual_battery_of(
    population: HvacPopulation,
    outdoor_temperature_c: float,
    *,
    ghi_w_per_m2: float = 0.0,
    kind: Literal["sufficient", "homogeneous"] = "sufficient",
) -> VirtualBattery:
    """The aggregate virtual battery of an HVAC population at an outdoor condition.

    ``kind="homogeneous"`` sums the per-device batteries (Hao et al. Theorem 1; exact for equal
    parameters); ``kind="sufficient"`` is the inner approximation of the module docstring, whose
    every trajectory the devices can follow.
    """
    if kind not in ("sufficient", "homogeneous"):
        problems = Problems(subject="virtual battery")
        problems.add("kind", f"must be 'sufficient' or 'homogeneous', got {kind!r}")
        problems.raise_if_any()
    b = tcl_batteries_of(population, outdoor_temperature_c, ghi_w_per_m2)
    cap = b.energy_capacity_kwh
    total = float(cap.sum())
    share = cap / total
    a0 = float(np.sum(share * b.dissipation_per_s))
    baseline = float(b.baseline_kw.sum())
    if kind == "homogeneous":
        return VirtualBattery(
            power_min_kw=float(b.power_min_kw.sum()),
            power_max_kw=float(b.power_max_kw.sum()),
            energy_capacity_kwh=total,
            dissipation_per_s=a0,
            baseline_kw=baseline,
        )
    spread = np.abs(b.dissipation_per_s - a0) * total * _SECONDS_PER_HOUR  # kW per unit share
    n_up = float(np.min(b.power_max_kw / share - spread))
    n_down = float(np.min(-b.power_min_kw / share - spread))
    return VirtualBattery(
        power_min_kw=-max(n_down, 0.0),
        power_max_kw=max(n_up, 0.0),
        energy_capacity_kwh=total,
        dissipation_per_s=a0,
        baseline_kw=baseline,
    )


def track_power(population: HvacPopulation, target_kw: float) -> FloatArray:
    """Priority-stack dispatch (Hao et al. 2015 §V): command houses to draw ``target_kw``.

    Houses are ranked by how far their air has moved toward the uncomfortable edge of their
    band (cooling: ``(Ta - Tmin)/(Tmax - Tmin)``); the first ones in the stack run, the marginal
    one at a partial duty, until the target is met. Houses past the uncomfortable edge always
    run and houses past the comfortable edge never do (comfort first). Returns the commanded
    duty of each house; the population's comfort guard still switches at the band's edges.
    """
    if not np.isfinite(target_kw):
        problems = Problems(subject="power tracking")
        problems.add("target_kw", f"must be a finite number, got {target_kw}")
        problems.raise_if_any()
    p = population
    t = p.air_temperature_c
    width = p.comfort_max_c - p.comfort_min_c
    position = np.where(
        p.direction == COOLING, (t - p.comfort_min_c) / width, (p.comfort_max_c - t) / width
    )
    power = p.electric_power_kw(p.outdoor_temperature_c)
    forced_on = position >= 1.0
    forced_off = position <= 0.0
    rank = np.where(forced_on, np.inf, np.where(forced_off, -np.inf, position))
    order = np.argsort(-rank, kind="stable")
    stacked = np.cumsum(power[order])
    before = stacked - power[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        duty_sorted = np.clip((target_kw - before) / power[order], 0.0, 1.0)
    duty = np.empty(p.n_devices)
    duty[order] = duty_sorted
    duty = np.where(forced_on, 1.0, np.where(forced_off, 0.0, duty))
    p.command(duty)
    return duty
