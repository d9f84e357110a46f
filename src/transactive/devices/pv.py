"""Rooftop PV: a vectorized population of price-taking sellers (Hu et al., Proc. CSEE 2019, §2).

Model (pvlib: the DC and inverter models of NREL's PVWatts v5, Dobos, "PVWatts Version 5 Manual",
NREL/TP-6A20-62641, 2014, with SAPM cell temperature, as pvlib's PVWatts model chain)
-------------------------------------------------------------------------------------------------
1. Plane-of-array irradiance from GHI, DNI, DHI and the solar position of the
   :class:`~transactive.weather.WeatherSample`, for each system's tilt and azimuth, with the
   isotropic sky model (``pvlib.irradiance.get_total_irradiance``; Loutzenhiser et al., Solar
   Energy 81, 2007).
2. Cell temperature from the Sandia array performance model (``pvlib.temperature.sapm_cell``;
   King, Boyson, Kratochvil, SAND2004-3535, 2004) with a given wind speed.
3. DC power ``P = G_poa / 1000 · P_dc0 · (1 + γ (T_cell - 25))`` (``pvlib.pvsystem.pvwatts_dc``),
   times ``1 - system_loss_pu`` (PVWatts' default losses, 14.08 %, ``pvwatts_losses``).
4. AC power through the PVWatts inverter model (``pvlib.inverter.pvwatts``), clipped at the
   inverter's AC rating.

Bidding strategy
----------------
A price taker, as PV agents bid in PowerMatcher (Kok, PhD thesis, VU Amsterdam, 2013:
uncontrollable producers offer their output at the lowest price) and in TESP (solar offered at
zero marginal cost): it offers its expected output over the market interval, computed from the
caller's forecast weather for the interval (the ``weather`` of ``bid``), at any price at or
above the market floor. A curtailable system (``curtailment_price_per_kwh`` set, e.g. 0) offers
that output as a selling block at that price, so it switches off when the price falls below it
(negative prices).

Response: a system sold in full produces what the sun gives (all of it was bought); a system
curtailed sells nothing; a marginal system (part of its block taken) produces at most its
allocation. So when the weather stepped through matches the forecast the metered interval energy
equals the allocation per device, for any step; otherwise the difference of a fully sold system
is the forecast error, the way a price-taking PV's is settled. A step outside the interval last
responded for produces the full output.

Kernels (issue 17): the PVWatts chain, bid, respond and step run by default as fused numba loops
over the systems, on both cores for large populations (:mod:`transactive.devices._pv_kernels`),
with the angle of incidence from cosines and sines computed once instead of three trigonometric
functions per system-step, so they agree with pvlib's chain (``kernel="numpy"``, the reference)
within 1e-12 of each system's DC rating (``tests/devices/test_pv_kernels.py``).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pvlib

from transactive.curves import BidCurves
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _overlap_s,
    _population_ids,
    _readonly,
    _validated_columns,
)
from transactive.devices._kernels import (
    check_kernel,
    checked_kernel,
    checked_response,
    kernel_state,
)
from transactive.devices._steps import KernelSteps, StepsByKernel
from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["PVPopulation"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]

#: PVWatts v5 default system losses (soiling, shading, mismatch, wiring, ...), as a fraction.
PVWATTS_DEFAULT_LOSS_PU = float(pvlib.pvsystem.pvwatts_losses()) / 100.0


def _kernels() -> Any:
    """The numba kernels, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _pv_kernels  # noqa: PLC0415 - deferred: see docstring

    return _pv_kernels


class PVPopulation(StepsByKernel):
    """N PV systems as arrays; implements the ``Population`` protocol.

    Parameters
    ----------
    dc_capacity_kw:
        DC nameplate at standard test conditions (PVWatts ``pdc0``).
    tilt_deg, azimuth_deg:
        Plane orientation (azimuth clockwise from north: 180 faces south).
    ac_capacity_kw:
        Inverter AC rating (default: the DC size divided by 1.1, a common DC/AC ratio).
    gamma_pdc_per_c:
        Power temperature coefficient (1/°C), PVWatts' standard module -0.0037.
    system_loss_pu:
        DC losses as a fraction (default PVWatts' 0.1408).
    albedo:
        Ground reflectance.
    curtailment_price_per_kwh:
        NaN (default) for a system that sells at any price; a price below which the system
        curtails (sells nothing).
    eta_inv_nom:
        Nominal inverter efficiency (population-wide).
    temperature_model:
        A key of pvlib's SAPM temperature parameters (population-wide).
    wind_speed_m_per_s:
        Wind speed used for the cell temperature (population-wide; a
        :class:`~transactive.weather.WeatherSample` carries no wind).
    ids:
        One unique id per system (default ``pv-0 ... pv-(N-1)``).
    kernel:
        ``"numba"`` (default): the PVWatts chain, the bid, the response and the step run as
        fused numba kernels over the systems (:mod:`transactive.devices._pv_kernels`), without
        a trigonometric function per system-step; ``"numpy"``: pvlib's functions over the
        arrays, the reference. The outputs agree within 1e-12 of each system's DC rating (the
        angle of incidence is rounded differently; ``tests/devices/test_pv_kernels.py``). The
        attribute :attr:`kernel` may be changed between calls.

    Raises
    ------
    ValidationError
        Naming every offending device for every broken rule.

    """

    kind = "PV"
    id_prefix = "pv"

    def __init__(
        self,
        *,
        dc_capacity_kw: npt.ArrayLike,
        tilt_deg: npt.ArrayLike = 30.0,
        azimuth_deg: npt.ArrayLike = 180.0,
        ac_capacity_kw: npt.ArrayLike | None = None,
        gamma_pdc_per_c: npt.ArrayLike = -0.0037,
        system_loss_pu: npt.ArrayLike = PVWATTS_DEFAULT_LOSS_PU,
        albedo: npt.ArrayLike = 0.2,
        curtailment_price_per_kwh: npt.ArrayLike = np.nan,
        eta_inv_nom: float = 0.96,
        temperature_model: str = "close_mount_glass_glass",
        wind_speed_m_per_s: float = 1.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        problems = Problems(subject="PV population")
        dc = np.asarray(dc_capacity_kw, dtype=np.float64)
        n, c = _validated_columns(
            problems,
            {
                "dc_capacity_kw": dc,
                "tilt_deg": tilt_deg,
                "azimuth_deg": azimuth_deg,
                "ac_capacity_kw": dc / 1.1 if ac_capacity_kw is None else ac_capacity_kw,
                "gamma_pdc_per_c": gamma_pdc_per_c,
                "system_loss_pu": system_loss_pu,
                "albedo": albedo,
            },
        )
        problems.check(c["dc_capacity_kw"] <= 0, "dc_capacity_kw", "must be > 0")
        problems.check(c["ac_capacity_kw"] <= 0, "ac_capacity_kw", "must be > 0")
        tilt, az = c["tilt_deg"], c["azimuth_deg"]
        problems.check((tilt < 0) | (tilt > 90), "tilt_deg", "must lie in [0, 90]")
        problems.check((az < 0) | (az > 360), "azimuth_deg", "must lie in [0, 360]")
        gamma = c["gamma_pdc_per_c"]
        problems.check((gamma < -0.02) | (gamma > 0), "gamma_pdc_per_c", "must lie in [-0.02, 0]")
        loss = c["system_loss_pu"]
        problems.check((loss < 0) | (loss >= 1), "system_loss_pu", "must lie in [0, 1)")
        alb = c["albedo"]
        problems.check((alb < 0) | (alb > 1), "albedo", "must lie in [0, 1]")
        curtail = np.asarray(curtailment_price_per_kwh, dtype=np.float64)
        if curtail.ndim > 1 or (curtail.ndim == 1 and curtail.size != n):
            problems.add("curtailment_price_per_kwh", f"must be a scalar or {n} values (or NaN)")
            curtail = np.full(n, np.nan)
        curtail = np.array(np.broadcast_to(curtail, (n,)))
        problems.check(
            np.isinf(curtail), "curtailment_price_per_kwh", "must be a finite price or NaN"
        )
        if not 0 < eta_inv_nom <= 1:
            problems.add("eta_inv_nom", f"must lie in (0, 1], got {eta_inv_nom}")
        sapm = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]
        if temperature_model not in sapm:
            problems.add("temperature_model", f"must be one of {sorted(sapm)}")
        if not (np.isfinite(wind_speed_m_per_s) and wind_speed_m_per_s >= 0):
            problems.add("wind_speed_m_per_s", "must be a finite number >= 0")
        self._ids = _population_ids(problems, ids, n, self.id_prefix)
        check_kernel(problems, kernel)
        problems.raise_if_any()
        self._kernel = kernel
        #: The kernels' per-system columns, and the parameter arrays they were computed from.
        self._systems: tuple[FloatArray, tuple[FloatArray, ...]] | None = None
        self.dc_capacity_kw = _readonly(c["dc_capacity_kw"])
        self.ac_capacity_kw = _readonly(c["ac_capacity_kw"])
        self.tilt_deg = _readonly(tilt)
        self.azimuth_deg = _readonly(az)
        self.gamma_pdc_per_c = _readonly(gamma)
        self.system_loss_pu = _readonly(loss)
        self.albedo = _readonly(alb)
        self.curtailment_price_per_kwh = _readonly(curtail)
        self.eta_inv_nom = float(eta_inv_nom)
        self.temperature_model = temperature_model
        self.wind_speed_m_per_s = float(wind_speed_m_per_s)
        self._sapm = sapm[temperature_model]
        self._n = n
        self.expected_kw = np.zeros(n)  # expected AC output over the interval last bid for
        self._curves: BidCurves | None = None
        self._bid_interval: MarketInterval | None = None
        self._interval: MarketInterval | None = None  # the interval the last respond was for
        self._limit_kw = np.full(n, np.inf)  # most each system produces in that interval

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        size_kw: tuple[float, float] = (3.0, 10.0),
        curtailable_share: float = 0.0,
        curtailment_price_per_kwh: float = 0.0,
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Residential systems: size uniform, tilt near 30°, azimuth spread around south.

        ``curtailable_share`` of them curtail below ``curtailment_price_per_kwh``. Illustrative
        distributions, not fitted to a registry.
        """
        n = _check_sample_args(n, rng, cls.kind)
        dc = rng.uniform(*size_kw, n)
        curtailable = rng.random(n) < curtailable_share
        return cls(
            dc_capacity_kw=dc,
            tilt_deg=np.clip(rng.normal(30.0, 8.0, n), 0.0, 60.0),
            azimuth_deg=np.clip(rng.normal(180.0, 35.0, n), 90.0, 270.0),
            ac_capacity_kw=dc / rng.uniform(1.0, 1.3, n),
            curtailment_price_per_kwh=np.where(curtailable, curtailment_price_per_kwh, np.nan),
            ids=ids,
        )

    @property
    def n_devices(self) -> int:
        """Number of PV systems."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Id of every system."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernels) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "PV population")

    def _kernel_systems(self) -> FloatArray:
        """The kernels' per-system columns, ``(9, N)`` (``_pv_kernels.SYSTEM_FIELDS``).

        ``cos β``, ``sin β``, ``cos γ``, ``sin γ`` (pvlib's ``cosd``/``sind``), then the albedo,
        DC rating, temperature coefficient, losses and AC rating. Computed once, and again only
        if a parameter attribute has been replaced (the arrays themselves are read-only).
        """
        params = (
            self.tilt_deg, self.azimuth_deg, self.albedo, self.dc_capacity_kw,
            self.gamma_pdc_per_c, self.system_loss_pu, self.ac_capacity_kw,
        )  # fmt: skip
        if self._systems is None or any(
            a is not b for a, b in zip(self._systems[1], params, strict=True)
        ):
            tilt, azimuth = np.radians(self.tilt_deg), np.radians(self.azimuth_deg)
            columns = np.stack(
                [np.cos(tilt), np.sin(tilt), np.cos(azimuth), np.sin(azimuth), *params[2:]]
            ).astype(np.float64)
            self._systems = columns, params
        return self._systems[0]

    def _sun(self, weather: WeatherSample) -> FloatArray:
        """The kernels' weather sample (``_pv_kernels.SUN_FIELDS``)."""
        zenith = np.radians(float(weather.solar_zenith_deg))
        azimuth = np.radians(float(weather.solar_azimuth_deg))
        dark = weather.solar_zenith_deg >= 90.0 or weather.ghi_w_per_m2 <= 0.0
        sapm = self._sapm
        return np.array(
            [
                np.cos(zenith), np.sin(zenith), np.cos(azimuth), np.sin(azimuth),
                weather.dni_w_per_m2, weather.ghi_w_per_m2, weather.dhi_w_per_m2,
                weather.temperature_c, np.exp(sapm["a"] + sapm["b"] * self.wind_speed_m_per_s),
                sapm["deltaT"], self.eta_inv_nom, 1.0 if dark else 0.0,
            ],
            dtype=np.float64,
        )  # fmt: skip

    def available_power_kw(self, weather: WeatherSample) -> FloatArray:
        """AC output of every system under a weather sample (kW, >= 0), PVWatts chain."""
        _check_weather(weather)
        if self._kernel == "numba" and self._n:
            out = np.empty(self._n)
            _kernels().ac_power(self._sun(weather), self._kernel_systems(), out)
            return out
        if self._n == 0:
            return np.zeros(0)
        if weather.solar_zenith_deg >= 90.0 or weather.ghi_w_per_m2 <= 0.0:
            return np.zeros(self._n)
        irradiance = pvlib.irradiance.get_total_irradiance(
            surface_tilt=self.tilt_deg,
            surface_azimuth=self.azimuth_deg,
            solar_zenith=weather.solar_zenith_deg,
            solar_azimuth=weather.solar_azimuth_deg,
            dni=weather.dni_w_per_m2,
            ghi=weather.ghi_w_per_m2,
            dhi=weather.dhi_w_per_m2,
            albedo=self.albedo,
            model="isotropic",
        )
        poa = np.asarray(irradiance["poa_global"], dtype=np.float64)
        t_cell = pvlib.temperature.sapm_cell(
            poa,
            weather.temperature_c,
            self.wind_speed_m_per_s,
            self._sapm["a"],
            self._sapm["b"],
            self._sapm["deltaT"],
        )
        dc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, self.dc_capacity_kw, self.gamma_pdc_per_c)
        dc = np.maximum(dc * (1.0 - self.system_loss_pu), 0.0)
        ac = pvlib.inverter.pvwatts(
            dc, self.ac_capacity_kw / self.eta_inv_nom, eta_inv_nom=self.eta_inv_nom
        )
        return np.asarray(ac, dtype=np.float64)

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """Sell the output expected under the forecast ``weather`` at any price >= floor.

        A curtailable system sells it as a block at its curtailment price (clipped to the
        market's floor and cap).
        """
        stats, interval = _check_bid_args(price_stats, interval, weather)
        cap, floor = stats.price_cap_per_kwh, stats.price_floor_per_kwh
        if self._kernel == "numba" and self._n:
            n = self._n
            expected, prices, powers = np.empty(n), np.empty((n, 2)), np.empty((n, 2))
            _kernels().bid(
                self._sun(weather), self._kernel_systems(), self.curtailment_price_per_kwh,
                float(floor), float(cap), expected, prices, powers,
            )  # fmt: skip
            self.expected_kw = expected
            self._curves = BidCurves._trusted(prices, powers, self._ids)
            self._bid_interval = interval
            return self._curves
        self.expected_kw = self.available_power_kw(weather)
        curtail = np.where(
            np.isnan(self.curtailment_price_per_kwh), floor, self.curtailment_price_per_kwh
        )
        sell_price = np.clip(curtail, floor, cap)
        prices = np.repeat(sell_price[:, None], 2, axis=1)
        powers = np.zeros((self._n, 2))
        powers[:, 1] = -self.expected_kw
        self._curves = BidCurves._trusted(prices, powers, self._ids)
        self._bid_interval = interval
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """Power sold over the interval at the cleared price (negative).

        A system sold in full then produces all it can; one sold in part at most its sale.
        """
        curves, price, fill = checked_response(
            self._curves, self.kind, clearing_price, marginal_fill, self._n
        )
        state = kernel_state(self._kernel, self._n, self.expected_kw)
        if state is not None:
            power, self._limit_kw = np.empty(self._n), np.empty(self._n)
            _kernels().respond(
                curves.price_per_kwh, curves.power_kw, price.reshape(-1), fill.reshape(-1),
                *state, power, self._limit_kw,
            )  # fmt: skip
            self._interval = self._bid_interval
            return power
        power = curves.power_at(price, fill)
        sold = -power
        full = sold >= self.expected_kw
        self._limit_kw = np.where(full, np.inf, sold)
        self._interval = self._bid_interval
        return power

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """Produce over ``[time_s, time_s + dt_s)`` under ``weather``, within the dispatch."""
        t, dt = _checked_time_step(time_s, dt_s)
        if self._interval is None:
            inside_s = 0.0
        else:
            inside_s = float(_overlap_s(t, t + dt, self._interval.start_s, self._interval.end_s))
        state = kernel_state(self._kernel, self._n, self._limit_kw)
        if state is not None:
            _check_weather(weather)
            energy, power = np.empty(self._n), np.empty(self._n)
            _kernels().step(
                self._sun(weather), inside_s, float(dt), self._kernel_systems(), *state, energy,
                power,
            )  # fmt: skip
            return StepResult(power_kw=power, energy_kwh=energy, ids=self._ids)
        actual = self.available_power_kw(weather)
        dispatched = np.minimum(actual, self._limit_kw)
        energy = -(dispatched * inside_s + actual * (dt - inside_s)) / 3600.0
        return StepResult(power_kw=energy * 3600.0 / dt, energy_kwh=energy, ids=self._ids)

    def _kernel_steps(self, t0: int, dt: int, samples: list[WeatherSample]) -> KernelSteps | None:
        """:meth:`step_many`'s steps by the kernel (no state changes: nothing to commit)."""
        state = kernel_state(self._kernel, self._n, self._limit_kw)
        if state is None:
            return None
        kern, n, interval, systems = _kernels(), self._n, self._interval, self._kernel_systems()

        def one_step(k: int, energy_out: FloatArray) -> FloatArray:
            t = t0 + k * dt
            inside_s = 0.0
            if interval is not None:
                inside_s = float(_overlap_s(t, t + dt, interval.start_s, interval.end_s))
            power = np.empty(n)
            sun = self._sun(samples[k])
            kern.step(sun, inside_s, float(dt), systems, *state, energy_out, power)
            return power

        return one_step, lambda: None
