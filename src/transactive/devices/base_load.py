"""Uncontrollable household load from SimBench's real profiles, vectorized.

Model
-----
Each household follows one of a set of yearly load profiles (SimBench's household profiles
``H0-A`` ... ``H0-L`` by default, :func:`transactive.data.profiles.load_simbench_profiles`; Meinecke
et al., Energies 13(12):3290, 2020) scaled so that its energy over the profile's year equals its
``annual_energy_kwh`` (the way standard load profiles are used: the profile's shape times the
customer's yearly consumption, as with the BDEW H0 profile). Profiles are piecewise constant over
their steps, so the mean over any period is exact (from the cumulative energy) and the year
repeats. An optional per-household time offset decorrelates households sharing one profile.

Bidding strategy
----------------
Unresponsive: the profile's mean power over the market interval it bids for as a block at the
price cap (:meth:`~transactive.curves.BidCurves.unresponsive`), the way GridLAB-D's auction and
TESP treat the unresponsive part of a feeder's load. The profile's steps are read exactly, so the
metered energy over the interval equals the bid per device, for any physics step.

Rationing
---------
The market's rule is that demand above the cap is demand at the cap and that tied blocks at the
clearing price are shared pro rata (``ClearingResult.marginal_fill``): when supply runs short
(a ``FAILURE`` clearing with ``shortage_kw > 0``) the households are allocated only a share of
their block. An uncontrollable load cannot obey that: nothing in a household sheds its lights
because a price was reached. So a base load **draws its profile whatever the market says**, and
the gap is made visible instead of hidden: ``respond`` returns the power it will draw (not the
allocation) and :attr:`BaseLoadPopulation.unallocated_kw` holds, per household, what it draws
beyond its allocation (summing to the market's shortage for these households). Shedding load is
a decision for the caller (the DSO's load shedding), not a silent effect of a price.

Kernels (issue 17): the profiles' means (bid and step) and the response run by default as fused
numba loops over the households, on both cores for large populations
(:mod:`transactive.devices._base_load_kernels`), doing the numpy reference's arithmetic in its
order, so they give its numbers bit for bit (``tests/devices/test_base_load_kernels.py``);
``kernel="numpy"`` runs the reference.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.data.profiles import ProfileSet, load_simbench_profiles
from transactive.devices._common import (
    _check_bid_args,
    _check_sample_args,
    _check_weather,
    _checked_time_step,
    _population_ids,
    _readonly,
    _validated_columns,
)
from transactive.devices._kernels import check_kernel, checked_kernel, checked_response
from transactive.devices._steps import KernelSteps, StepsByKernel
from transactive.devices.base import MarketInterval, PriceStats, StepResult
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = ["BaseLoadPopulation"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


def _kernels() -> Any:
    """The numba kernels, imported on first use (numba's import and compile stay off start-up)."""
    from transactive.devices import _base_load_kernels  # noqa: PLC0415 - deferred: see docstring

    return _base_load_kernels


class BaseLoadPopulation(StepsByKernel):
    """N uncontrollable loads reading yearly profiles; implements the ``Population`` protocol.

    Parameters
    ----------
    profiles_pu:
        ``(P, T)`` profile values (any unit: only the shape matters), non-negative, each with a
        positive total; one step of ``profile_step_s`` seconds per column.
    profile_step_s:
        Step of the profiles (900 for SimBench).
    profile_index:
        Which profile each household follows.
    annual_energy_kwh:
        Each household's energy over one profile period (a year).
    time_offset_s:
        Shift of each household's profile (positive: the household runs ahead). Time 0 of the
        run (the callers' seconds) is the start of the profiles.
    ids:
        One unique id per household (default ``load-0 ... load-(N-1)``).
    kernel:
        ``"numba"`` (default): the profiles' means, the bid and the response run as fused numba
        kernels over the households (:mod:`transactive.devices._base_load_kernels`);
        ``"numpy"``: the vectorized numpy reference. The two give the same numbers to the last
        bit (``tests/devices/test_base_load_kernels.py``). The attribute :attr:`kernel` may be
        changed between calls.

    Raises
    ------
    ValidationError
        Naming every offending household (and profile) for every broken rule.

    """

    kind = "base load"
    id_prefix = "load"

    def __init__(
        self,
        *,
        profiles_pu: npt.ArrayLike,
        profile_step_s: float,
        profile_index: npt.ArrayLike,
        annual_energy_kwh: npt.ArrayLike,
        time_offset_s: npt.ArrayLike = 0.0,
        ids: npt.ArrayLike | None = None,
        kernel: str = "numba",
    ) -> None:
        problems = Problems(subject="base load population")
        profiles = np.asarray(profiles_pu, dtype=np.float64)
        if profiles.ndim == 1:
            profiles = profiles[None, :]
        if profiles.ndim != 2 or profiles.shape[1] == 0:
            problems.add(
                "profiles_pu", f"must be a 2-D array (profiles x steps), got {profiles.shape}"
            )
            problems.raise_if_any()
        finite = np.isfinite(profiles).all(axis=1)
        problems.check(~finite, "profiles_pu", "not finite (profile rows listed)")
        problems.check(finite & (profiles < 0).any(axis=1), "profiles_pu", "negative values")
        problems.check(finite & (profiles.sum(axis=1) <= 0), "profiles_pu", "no energy at all")
        if not (np.isfinite(profile_step_s) and profile_step_s > 0):
            problems.add("profile_step_s", f"must be a positive number, got {profile_step_s}")
        index = np.asarray(profile_index)
        if index.ndim == 1 and index.size == 0:  # an empty population: [] reads as floats
            index = index.astype(np.int64)
        n, c = _validated_columns(
            problems,
            {"annual_energy_kwh": annual_energy_kwh, "time_offset_s": time_offset_s},
            n=index.size if index.ndim == 1 else None,
        )
        if index.ndim > 1 or not np.issubdtype(index.dtype, np.integer):
            problems.add("profile_index", "must be integer profile rows (scalar or one per device)")
            index = np.zeros(n, dtype=np.int64)
        index = np.array(np.broadcast_to(index, (n,)), dtype=np.int64)
        problems.check(
            (index < 0) | (index >= profiles.shape[0]),
            "profile_index",
            f"not a profile row (0..{profiles.shape[0] - 1})",
        )
        problems.check(c["annual_energy_kwh"] < 0, "annual_energy_kwh", "must be >= 0")
        self._ids = _population_ids(problems, ids, n, self.id_prefix)
        check_kernel(problems, kernel)
        problems.raise_if_any()
        self._kernel = kernel
        self.profile_step_s = float(profile_step_s)
        self.profile_index = index
        self.profile_index.setflags(write=False)
        self.annual_energy_kwh = _readonly(c["annual_energy_kwh"])
        self.time_offset_s = _readonly(c["time_offset_s"])
        cumulative = np.concatenate(
            [np.zeros((profiles.shape[0], 1)), np.cumsum(profiles, axis=1)], axis=1
        )
        self._fraction = cumulative / cumulative[:, -1:]  # share of the year's energy so far
        self._period_s = profiles.shape[1] * self.profile_step_s
        self._n = n
        self._curves: BidCurves | None = None
        self.unallocated_kw = np.zeros(n)
        """Power drawn beyond the allocation in the interval last responded for (kW, >= 0)."""

    @classmethod
    def from_profiles(
        cls,
        profiles: ProfileSet,
        *,
        profile_index: npt.ArrayLike,
        annual_energy_kwh: npt.ArrayLike,
        time_offset_s: npt.ArrayLike = 0.0,
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Households following profiles of a :class:`~transactive.data.profiles.ProfileSet`."""
        return cls(
            profiles_pu=profiles.values_pu,
            profile_step_s=profiles.step_s,
            profile_index=profile_index,
            annual_energy_kwh=annual_energy_kwh,
            time_offset_s=time_offset_s,
            ids=ids,
        )

    @classmethod
    def sample(
        cls,
        n: int,
        rng: np.random.Generator,
        *,
        profiles: ProfileSet | None = None,
        annual_energy_mean_kwh: float = 3500.0,
        annual_energy_cv: float = 0.4,
        time_jitter_s: float = 1800.0,
        ids: npt.ArrayLike | None = None,
    ) -> Self:
        """Households drawn over SimBench's H0 profiles (by default), log-normal yearly energy.

        The default mean of 3500 kWh a year is a typical German household (the profiles' origin);
        each household's profile is shifted by up to ``± time_jitter_s``.
        """
        n = _check_sample_args(n, rng, cls.kind)
        profiles = load_simbench_profiles() if profiles is None else profiles
        sigma = np.sqrt(np.log(1.0 + annual_energy_cv**2))
        energy = rng.lognormal(np.log(annual_energy_mean_kwh) - 0.5 * sigma**2, sigma, n)
        return cls.from_profiles(
            profiles,
            profile_index=rng.integers(0, len(profiles.names), n),
            annual_energy_kwh=energy,
            time_offset_s=rng.uniform(-time_jitter_s, time_jitter_s, n),
            ids=ids,
        )

    @property
    def n_devices(self) -> int:
        """Number of households."""
        return self._n

    @property
    def ids(self) -> StrArray:
        """Id of every household."""
        return self._ids

    @property
    def kernel(self) -> str:
        """``"numba"`` (the fused kernels) or ``"numpy"`` (the reference); see the constructor."""
        return self._kernel

    @kernel.setter
    def kernel(self, value: str) -> None:
        self._kernel = checked_kernel(value, "base load population")

    def _mean_power_kernel(
        self, start_s: float, duration_s: float, energy_dt_s: float = 0.0
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`mean_power_kw` by one kernel pass, and ``energy_dt_s`` seconds' energy of it."""
        power, energy = np.empty(self._n), np.empty(self._n if energy_dt_s > 0 else 0)
        _kernels().mean_power(
            float(start_s), float(duration_s), self.annual_energy_kwh, self.time_offset_s,
            self.profile_index, self._fraction, float(self._period_s),
            float(self.profile_step_s), power, energy, float(energy_dt_s),
        )  # fmt: skip
        return power, energy

    def _share_until(self, t: float) -> FloatArray:
        """Share of a year's energy each household has used from time 0 to ``t`` (cyclic)."""
        local = t + self.time_offset_s
        years = np.floor(local / self._period_s)
        pos = (local - years * self._period_s) / self.profile_step_s
        n_steps = self._fraction.shape[1] - 1
        j = np.minimum(pos.astype(np.int64), n_steps - 1)
        frac = pos - j
        f = self._fraction
        row = self.profile_index
        return np.asarray(years + f[row, j] + frac * (f[row, j + 1] - f[row, j]), dtype=np.float64)

    def mean_power_kw(self, start_s: float, duration_s: float) -> FloatArray:
        """Each household's mean power over ``[start_s, start_s + duration_s)``."""
        if self._kernel == "numba" and self._n:
            return self._mean_power_kernel(start_s, duration_s)[0]
        share = self._share_until(start_s + duration_s) - self._share_until(start_s)
        return np.asarray(self.annual_energy_kwh * share * 3600.0 / duration_s, dtype=np.float64)

    def bid(
        self, price_stats: PriceStats, interval: MarketInterval, weather: WeatherSample
    ) -> BidCurves:
        """The profile's mean power over ``interval`` as a block at the price cap."""
        stats, interval = _check_bid_args(price_stats, interval, weather)
        power = self.mean_power_kw(float(interval.start_s), float(interval.duration_s))
        prices = np.full((self._n, 2), stats.price_cap_per_kwh)
        powers = np.zeros((self._n, 2))
        powers[:, 0] = power
        self._curves = BidCurves._trusted(prices, powers, self._ids)
        return self._curves

    def respond(
        self,
        clearing_price: float | npt.ArrayLike,
        marginal_fill: float | npt.ArrayLike,
    ) -> FloatArray:
        """The power drawn over the interval: the whole bid, rationed or not (see Rationing).

        What is drawn beyond the market's allocation is kept in :attr:`unallocated_kw`.
        """
        curves, price, fill = checked_response(
            self._curves, self.kind, clearing_price, marginal_fill, self._n
        )
        if self._kernel == "numba" and self._n:
            drawn, self.unallocated_kw = np.empty(self._n), np.empty(self._n)
            _kernels().respond(
                curves.price_per_kwh, curves.power_kw, price.reshape(-1), fill.reshape(-1),
                drawn, self.unallocated_kw,
            )  # fmt: skip
            return drawn
        allocated = curves.power_at(price, fill)
        drawn = curves.power_kw[:, 0].copy()
        self.unallocated_kw = np.maximum(drawn - allocated, 0.0)
        return drawn

    def step(self, time_s: int, dt_s: int, weather: WeatherSample) -> StepResult:
        """The profile's mean power over ``[time_s, time_s + dt_s)``, whatever the market."""
        t, dt = _checked_time_step(time_s, dt_s)
        _check_weather(weather)
        if self._kernel == "numba" and self._n:
            power, energy = self._mean_power_kernel(float(t), float(dt), float(dt))
            return StepResult(power_kw=power, energy_kwh=energy, ids=self._ids)
        power = self.mean_power_kw(float(t), float(dt))
        return StepResult(power_kw=power, energy_kwh=power * dt / 3600.0, ids=self._ids)

    def _kernel_steps(self, t0: int, dt: int, samples: list[WeatherSample]) -> KernelSteps | None:
        """:meth:`step_many`'s steps by the kernel (a profile has no state: nothing to commit)."""
        if not (self._kernel == "numba" and self._n):
            return None

        def one_step(k: int, energy_out: FloatArray) -> FloatArray:
            power, energy = self._mean_power_kernel(float(t0 + k * dt), float(dt), float(dt))
            energy_out[...] = energy
            return power

        return one_step, lambda: None
