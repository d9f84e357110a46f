"""Air conditioners and heat pumps in houses: ETP physics, thermostat, ramp-controller bids.

The ETP two-node model, a deadband thermostat, and the Olympic Peninsula / GridLAB-D
``controller`` (ramp mode) bidding and setpoint response.

Physics (GridLAB-D ``residential/house_e.cpp``; the equivalent thermal parameters (ETP) model of
the GridLAB-D *Residential Module User's Guide* and Taylor, Chassin, Gourisetti, "GridLAB-D
Technical Support Document: Residential End-Use Module", PNNL-27211 (2018), and Sonderegger's ETP
derivation that it cites). Two nodes, air ``Ta`` and mass ``Tm``::

    Ca dTa/dt = UA (To - Ta) + Hm (Tm - Ta) + Qa        (air node)
    Cm dTm/dt = Hm (Ta - Tm) + Qm                        (mass node)

``Qa = Qhvac + (1 - fi) Qint + (1 - fs) Qsolar`` and ``Qm = fi Qint + fs Qsolar`` with GridLAB-D's
``mass_internal_gain_fraction = mass_solar_gain_fraction = 0.5``. Over a step with constant
inputs the system ``x' = A x + b`` is solved exactly, as ``house_e`` does: the steady state
``Ta* = To + (Qa + Qm)/UA``, ``Tm* = Ta* + Qm/Hm`` and the 2x2 matrix exponential written with
the two real negative eigenvalues ``r1, r2`` of ``A`` (Sylvester's formula,
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
Latent cooling load and auxiliary resistance heat are not modelled.

Market (GridLAB-D ``market/controller.cpp``, ramp mode; Hammerstrom et al., "Pacific Northwest
GridWise Testbed Demonstration Projects, Part I: Olympic Peninsula Project", PNNL-17167, 2007):
the comfort band ``[Tmin, Tmax]`` around the base setpoint, ramps ``k_low``, ``k_high``; the bid
price is ``mean + k sigma (Ta - Tset) / |T_lim - Tset|`` (sign flipped for heating), clipped to
``[floor, cap]``; a house above ``Tmax`` (cooling) bids the cap, one below ``Tmin`` does not bid
(quantity 0). The bid is one block (``BidCurves.from_steps``) of the HVAC's electric power at
the bid price. The response is the controller's setpoint shift
``Tset' = Tset + (p - mean) |T_lim - Tset| / (k sigma)``, clipped to the band; here the side of
the band is chosen so the shift is the exact inverse of the bid price (``controller.cpp`` picks
it by the sign of ``p - mean``, which agrees for cooling).

Rule at the marginal price: a house's power is read off its own curve, ``power_at(p, fill)``:
below its bid price it runs (duty 1), above it is off, at exactly its bid price it runs with duty
``fill`` (the market's ``marginal_fill``) -- its compressor delivers ``fill`` of its capacity
while the thermostat keeps it on, so its metered energy equals its allocation unless the
thermostat switches it within the interval. After the response the deadband thermostat around the
shifted setpoint governs (GridLAB-D's behaviour), and its initial state is the cleared one: a house
that runs has ``Ta > Tset'`` and one that is off has ``Ta <= Tset'``, so the two agree.

Without a market (never calling ``respond``) the population is a plain thermostat around the base
setpoint. ``command`` gives direct load control (used by the virtual-battery tracker): the
commanded state holds, overridden only at the comfort band's edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_weather,
    _checked_step,
    _Fields,
    _readonly,
)
from transactive.devices.base import PriceStats, StepResult
from transactive.devices.ramp import (
    _block_bids,
    _check_price_stats,
    _ramp_response,
    ramp_bid_price,
)
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = [
    "COOLING",
    "HEATING",
    "EtpCoefficients",
    "EtpStepResult",
    "HvacPopulation",
    "cooling_capacity_factor",
    "cooling_cop",
    "etp_advance",
    "etp_eigenvalues",
    "heating_capacity_factor",
    "heating_cop",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

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

#: Event iterations per step (a house switching more often within one step keeps its last state).
_MAX_EVENTS = 8
_NEWTON_ITERATIONS = 30
_ROOT_TOLERANCE_S = 1e-6


# ---------------------------------------------------------------------------- equipment curves


def _fahrenheit(temperature_c: FloatArray | float) -> FloatArray:
    return np.asarray(temperature_c, dtype=np.float64) * 1.8 + 32.0


def cooling_capacity_factor(outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Air-conditioner capacity / rated capacity (GridLAB-D ``house_e.cpp`` default curve)."""
    t = _fahrenheit(outdoor_temperature_c)
    return 1.48924533 - 0.00514995 * t


def cooling_cop(rated_cop: FloatArray, outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Air-conditioner COP at an outdoor temperature (GridLAB-D ``house_e.cpp`` default curve).

    The rated COP holds at 95 °F; below 40 °F the curve is held at its 40 °F value.
    """
    t = np.maximum(_fahrenheit(outdoor_temperature_c), 40.0)
    return np.asarray(rated_cop / (-0.01363961 + 0.01066989 * t), dtype=np.float64)


def heating_capacity_factor(outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Heat-pump heating capacity / rated capacity (GridLAB-D ``house_e.cpp`` default curve)."""
    t = _fahrenheit(outdoor_temperature_c)
    return 0.34148808 + 0.00894102 * t + 0.00010787 * t * t


def heating_cop(rated_cop: FloatArray, outdoor_temperature_c: FloatArray | float) -> FloatArray:
    """Heat-pump heating COP at an outdoor temperature (GridLAB-D ``house_e.cpp`` default curve).

    The rated COP holds near 47 °F; above 80 °F the curve is held at its 80 °F value.
    """
    t = np.minimum(_fahrenheit(outdoor_temperature_c), 80.0)
    divisor = 2.03914613 - 0.03906753 * t + 0.00045617 * t * t - 0.00000203 * t * t * t
    return np.asarray(rated_cop / divisor, dtype=np.float64)


# ---------------------------------------------------------------------------- ETP kernel


@dataclass(frozen=True)
class EtpStepResult:
    """Exact result of advancing the ETP model, per house (internal and for tests)."""

    air_temperature_c: FloatArray
    mass_temperature_c: FloatArray
    on: BoolArray
    on_time_s: FloatArray  # duty-weighted seconds with the HVAC running
    air_excess_integral_ks: FloatArray  # integral of (Ta - To) dt, K·s


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
    dt_s: float,
    switch_on_c: FloatArray,
    switch_off_c: FloatArray,
    direction: FloatArray,
) -> EtpStepResult:
    """Advance N houses by ``dt_s`` exactly, switching the HVAC at its thresholds.

    Heat in kW (``q_on_kw`` is the heat the running HVAC adds to the air, already scaled by
    duty: negative for cooling). A house that is on switches off when
    ``direction (Ta - switch_off) <= 0``; one that is off switches on when
    ``direction (Ta - switch_on) >= 0``.
    """
    k = coefficients
    n = air_temperature_c.size
    ta = air_temperature_c.copy()
    tm = mass_temperature_c.copy()
    on_time = np.zeros(n)
    excess = np.zeros(n)
    # Thermostat check at the start of the step.
    state = np.where(on, direction * (ta - switch_off_c) > 0, direction * (ta - switch_on_c) >= 0)
    remaining = np.full(n, dt_s)
    # The first pass covers every house (a slice: views, no copies); later passes only the houses
    # that switched, by index.
    sel: slice | IntArray = slice(None)
    for event in range(_MAX_EVENTS + 1):
        r = remaining[sel]
        s_on = state[sel]
        r1, r2 = k.r1[sel], k.r2[sel]
        qm = q_mass_kw[sel]
        ta_ss = outdoor_c + (q_air_kw[sel] + q_on_kw[sel] * s_on + qm) * k.inv_ua[sel]
        tm_ss = ta_ss + qm * k.inv_hm[sel]
        da = ta[sel] - ta_ss
        dm = tm[sel] - tm_ss
        alpha1 = k.ka[sel] * da + k.km[sel] * dm
        alpha2 = da - alpha1
        beta1 = k.la[sel] * da + k.lm[sel] * dm
        beta2 = dm - beta1
        e1 = np.exp(r1 * r)
        e2 = np.exp(r2 * r)
        ta_end = ta_ss + alpha1 * e1 + alpha2 * e2
        threshold = np.where(s_on, switch_off_c[sel], switch_on_c[sel])
        cross = np.where(s_on, -direction[sel], direction[sel]) * (ta_end - threshold) >= 0
        if event == _MAX_EVENTS:
            cross[:] = False
        c = np.flatnonzero(cross)
        tau = r.copy()
        if c.size:
            tau[c] = _crossing_time(
                ta_ss[c] - threshold[c], alpha1[c], alpha2[c], r1[c], r2[c], r[c]
            )
            e1[c] = np.exp(r1[c] * tau[c])
            e2[c] = np.exp(r2[c] * tau[c])
            ta_end[c] = threshold[c]
        ta[sel] = ta_end
        tm[sel] = tm_ss + beta1 * e1 + beta2 * e2
        on_time[sel] += tau * s_on
        # integral of Ta - To over [0, tau]: closed form of the two exponentials.
        excess[sel] += (
            (ta_ss - outdoor_c) * tau + alpha1 * ((e1 - 1.0) / r1) + alpha2 * ((e2 - 1.0) / r2)
        )
        if c.size == 0:
            break
        nxt: IntArray = c if isinstance(sel, slice) else sel[c]
        remaining[nxt] -= tau[c]
        state[nxt] = ~state[nxt]
        sel = nxt
    return EtpStepResult(ta, tm, state, on_time, excess)


def _crossing_time(
    offset: FloatArray,
    alpha1: FloatArray,
    alpha2: FloatArray,
    r1: FloatArray,
    r2: FloatArray,
    horizon: FloatArray,
) -> FloatArray:
    """First root in ``[0, horizon]`` of ``offset + alpha1 e^{r1 t} + alpha2 e^{r2 t}``.

    The sign at 0 differs from (or the value is zero at) ``horizon``; bracketed Newton iteration:
    a Newton step that leaves the bracket is replaced by bisection.
    """
    lo = np.zeros_like(horizon)
    hi = horizon.copy()
    f_lo = offset + alpha1 + alpha2
    t = 0.5 * hi
    for _ in range(_NEWTON_ITERATIONS):
        e1 = np.exp(r1 * t)
        e2 = np.exp(r2 * t)
        f = offset + alpha1 * e1 + alpha2 * e2
        same = np.sign(f) == np.sign(f_lo)
        lo = np.where(same, t, lo)
        f_lo = np.where(same, f, f_lo)
        hi = np.where(same, hi, t)
        slope = alpha1 * r1 * e1 + alpha2 * r2 * e2
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = t - f / slope
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        t = np.where(inside, newton, 0.5 * (lo + hi))
        if float(np.max(hi - lo, initial=0.0)) < _ROOT_TOLERANCE_S:
            break
    return np.asarray(np.clip(t, 0.0, horizon), dtype=np.float64)


# ---------------------------------------------------------------------------- population


class HvacPopulation:
    """N houses with an air conditioner or heat pump, ETP thermal model, ramp-mode controller.

    Parameters (arrays of one value per house; scalars are broadcast)
    ----------
    ua_kw_per_k, mass_coupling_kw_per_k:
        Envelope conductance UA and air-mass coupling Hm (kW/K).
    air_capacity_kj_per_k, mass_capacity_kj_per_k:
        Heat capacities Ca, Cm (kJ/K).
    solar_aperture_m2:
        Effective solar aperture: solar gain (kW) = aperture x GHI / 1000.
    internal_gain_kw:
        Internal heat gains (people, appliances), kW.
    mode:
        ``COOLING`` (+1) or ``HEATING`` (-1).
    cooling_capacity_kw, heating_capacity_kw:
        Rated (95 °F / 47 °F) thermal capacities, kW; the one the house's mode uses must be > 0.
    cooling_cop, heating_cop:
        Rated COPs.
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
        solar_aperture_m2: npt.ArrayLike = 0.0,
        internal_gain_kw: npt.ArrayLike = 0.0,
        deadband_c: npt.ArrayLike = 1.0,
        ramp_low: npt.ArrayLike = 2.0,
        ramp_high: npt.ArrayLike = 2.0,
        air_temperature_c: npt.ArrayLike | None = None,
        mass_temperature_c: npt.ArrayLike | None = None,
        on: npt.ArrayLike | None = None,
        outdoor_temperature_c: float = 25.0,
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
        aperture = f.array("solar_aperture_m2", solar_aperture_m2)
        gains = f.array("internal_gain_kw", internal_gain_kw)
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
            ("solar_aperture_m2", aperture),
            ("internal_gain_kw", gains),
        ):
            f.rule(arr < 0, name, "must not be negative")
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
        f.raise_if_any()
        self._n = int(ua.size)
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
        self.solar_aperture_m2 = _readonly(aperture)
        self.internal_gain_kw = _readonly(gains)
        self.deadband_c = _readonly(deadband)
        self.ramp_low = _readonly(k_low)
        self.ramp_high = _readonly(k_high)
        self._etp = EtpCoefficients.of(ua, hm, ca, cm)
        self._cooling = mode_arr == COOLING
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
        # cumulative heat accounts (kWh), for energy balances
        self.heat_hvac_kwh = np.zeros(self._n)
        self.heat_gains_kwh = np.zeros(self._n)
        self.heat_envelope_loss_kwh = np.zeros(self._n)

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
    ) -> Self:
        """Draw ``n`` heterogeneous houses.

        Floor area is lognormal (median, log-sd) clipped to [60, 400] m²; envelope UA is
        ``floor area x U(ua_per_m2)``; the rest follows GridLAB-D ``house_e`` defaults converted to
        SI: ``Ca = 3 rho c_p V`` (2.44 m ceilings), ``Cm = 2 Btu/(°F·sf) x area - 2 rho c_p V``,
        ``Hm = 1.46 Btu/(h·°F·sf)`` times an interior surface of about 2.7x the floor area;
        capacities sized like GridLAB-D's autosizing (UA x design temperature difference plus
        gains, 20-50 % oversized) at design temperatures 35 °C (cooling) and -5 °C (heating).
        The comfort tolerance ``k ~ U(comfort_tolerance)`` sets the band half-width
        ``0.5 + 2.5 k`` K and the ramps ``4 - 2 k`` (a tolerant customer has a wide band and a
        flat ramp), our mapping of the Olympic Peninsula comfort/economy setting.
        """
        problems = Problems(subject="HVAC sampling")
        mode = _mode_codes(mode)
        if int(n) != n or n < 1:
            problems.add("n", f"must be a positive integer, got {n}")
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
        mass_per_m2 = 2.0 * KJ_PER_K_PER_BTU_PER_F / 0.09290304  # kJ/(K·m²)
        cm = mass_per_m2 * area * rng.uniform(0.8, 1.2, n) - 2.0 * rho_cp_air * volume
        hs = 1.46 * KW_PER_BTU_PER_H_F / 0.09290304  # kW/(K·m²)
        hm = hs * 2.7 * area * rng.uniform(0.8, 1.2, n)
        aperture = 0.025 * area * rng.uniform(0.7, 1.3, n)
        gains = (0.4 + 0.003 * area) * rng.uniform(0.7, 1.3, n)
        k = rng.uniform(*comfort_tolerance, n)
        half = 0.5 + 2.5 * k
        ramp = 4.0 - 2.0 * k
        if mode == COOLING:
            setpoint = np.clip(rng.normal(23.5, 1.0, n), 20.0, 27.0)
            design = ua * (35.0 - setpoint) + gains + aperture * 0.8
            cap_c = design * rng.uniform(1.2, 1.5, n)
            cap_h = np.zeros(n)
        else:
            setpoint = np.clip(rng.normal(20.5, 1.0, n), 17.0, 23.0)
            design = ua * (setpoint + 5.0) / heating_capacity_factor(-5.0)
            cap_h = design * rng.uniform(1.2, 1.5, n)
            cap_c = np.zeros(n)
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
            solar_aperture_m2=aperture,
            internal_gain_kw=gains,
            deadband_c=deadband,
            ramp_low=ramp,
            ramp_high=ramp,
            air_temperature_c=ta,
            mass_temperature_c=ta,
            on=rng.random(n) < 0.3,
            outdoor_temperature_c=outdoor_temperature_c,
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

    def electric_power_kw(self, outdoor_temperature_c: float) -> FloatArray:
        """Each HVAC's electric power when running (kW)."""
        return self.thermal_capacity_kw(outdoor_temperature_c) / self.cop(outdoor_temperature_c)

    # ------------------------------------------------------------------ market

    def bid(self, price_stats: PriceStats) -> BidCurves:
        """One block per house: its HVAC power at its ramp-controller price."""
        _check_price_stats(price_stats)
        t = self.air_temperature_c
        price = ramp_bid_price(
            t,
            self.setpoint_c,
            self.direction,
            self.comfort_min_c,
            self.comfort_max_c,
            self.ramp_low,
            self.ramp_high,
            price_stats.mean_per_kwh,
            price_stats.std_per_kwh,
        )
        must_run = np.where(self._cooling, t > self.comfort_max_c, t < self.comfort_min_c)
        no_bid = np.where(self._cooling, t < self.comfort_min_c, t > self.comfort_max_c)
        floor, cap = price_stats.price_floor_per_kwh, price_stats.price_cap_per_kwh
        price = np.clip(price, floor, cap)
        price = np.where(must_run, cap, np.where(no_bid, floor, price))
        power = np.where(no_bid, 0.0, self.electric_power_kw(self.outdoor_temperature_c))
        self._bid_price, self._bid_power_kw, self._bid_stats = price, power, price_stats
        return _block_bids(price, power)

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike = 0.0,
    ) -> FloatArray:
        """Shift each thermostat for the cleared price; return each house's power (its curve's).

        Must follow :meth:`bid`. Houses below their bid price run, above it stay off, at it run
        with duty ``marginal_fill``; the thermostat then governs around the shifted setpoint.
        """
        power, self.thermostat_setpoint_c, self.on, self.duty_pu = _ramp_response(
            self, self.direction, clearing_price, marginal_fill
        )
        self.guard_only = np.zeros(self._n, dtype=bool)
        return power

    def command(self, duty_pu: npt.ArrayLike) -> FloatArray:
        """Direct load control: run each HVAC at ``duty_pu`` in [0, 1] (0 = off).

        The commanded state holds until the next command or response, except that a house
        leaving its comfort band is switched by the band's edge (a comfort guard). Returns the
        commanded power at the last known outdoor temperature.
        """
        f = _Fields("HVAC command")
        f.n = self._n
        duty = f.array("duty_pu", duty_pu, self._n)
        f.rule((duty < 0) | (duty > 1), "duty_pu", "must be in [0, 1]")
        f.raise_if_any()
        self.on = duty > 0
        self.duty_pu = np.where(self.on, duty, 1.0)
        self.guard_only = np.ones(self._n, dtype=bool)
        return np.asarray(duty * self.electric_power_kw(self.outdoor_temperature_c))

    # ------------------------------------------------------------------ physics

    def switching_thresholds_c(self) -> tuple[FloatArray, FloatArray]:
        """Air temperatures at which each HVAC switches on and off, in its current control mode."""
        d = self.direction
        half = 0.5 * self.deadband_c
        sp = self.thermostat_setpoint_c
        uncomfortable = np.where(self._cooling, self.comfort_max_c, self.comfort_min_c)
        comfortable = np.where(self._cooling, self.comfort_min_c, self.comfort_max_c)
        switch_on = np.where(self.guard_only, uncomfortable, sp + d * half)
        switch_off = np.where(self.guard_only, comfortable, sp - d * half)
        return switch_on, switch_off

    def step(self, dt_s: float, weather: WeatherSample) -> StepResult:
        """Advance every house by ``dt_s`` seconds exactly; metered HVAC power and energy."""
        dt = _checked_step(dt_s)
        _check_weather(weather)
        t_out = float(weather.temperature_c)
        self.outdoor_temperature_c = t_out
        capacity = self.thermal_capacity_kw(t_out)
        electric = capacity / self.cop(t_out)
        solar = self.solar_aperture_m2 * (weather.ghi_w_per_m2 / 1000.0)
        gains = self.internal_gain_kw
        q_air = (1.0 - MASS_INTERNAL_GAIN_FRACTION) * gains + (
            1.0 - MASS_SOLAR_GAIN_FRACTION
        ) * solar
        q_mass = MASS_INTERNAL_GAIN_FRACTION * gains + MASS_SOLAR_GAIN_FRACTION * solar
        # A running HVAC adds heat when heating (direction -1) and removes it when cooling.
        q_on = -self.direction * capacity * self.duty_pu
        switch_on, switch_off = self.switching_thresholds_c()
        was_on = self.on
        res = etp_advance(
            coefficients=self._etp,
            air_temperature_c=self.air_temperature_c,
            mass_temperature_c=self.mass_temperature_c,
            on=was_on,
            q_on_kw=q_on,
            q_air_kw=q_air,
            q_mass_kw=q_mass,
            outdoor_c=t_out,
            dt_s=dt,
            switch_on_c=switch_on,
            switch_off_c=switch_off,
            direction=self.direction,
        )
        running_s = res.on_time_s
        self.air_temperature_c = res.air_temperature_c
        self.mass_temperature_c = res.mass_temperature_c
        self.on = res.on
        self.heat_hvac_kwh += q_on * running_s / _SECONDS_PER_HOUR
        self.heat_gains_kwh += (gains + solar) * dt / _SECONDS_PER_HOUR
        self.heat_envelope_loss_kwh += self.ua_kw_per_k * res.air_excess_integral_ks / 3600.0
        energy = electric * self.duty_pu * running_s / _SECONDS_PER_HOUR
        # A house that is off (or that the thermostat switched) runs at full output when next on.
        self.duty_pu = np.where(res.on & was_on, self.duty_pu, 1.0)
        return StepResult(power_kw=energy * _SECONDS_PER_HOUR / dt, energy_kwh=energy)

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
