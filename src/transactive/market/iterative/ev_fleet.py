"""A fleet of EVs as the iterative charging algorithms see it: rate boxes and an energy need.

Gan, Topcu and Low, "Optimal decentralized protocol for electric vehicle charging", IEEE Trans.
Power Systems 28(2), 2013, §II-B: EV n charges at ``r_n(t)`` with ``0 <= r_n(t) <= rbar_n(t)``
(``rbar_n(t) = 0`` while it is not plugged in) and must take ``sum_t r_n(t) = R_n`` over the
horizon. Ma, Callaway and Hiskens (IEEE TCST 21(1), 2013, §II) and Hu, Yang, Bindner and Xue
(2017) use the same set. :meth:`EvFleet.from_flexibility` reads it off the EVs' generalized
batteries (:class:`~transactive.devices.flexibility.Flexibility`): the rate box is
``[0, power_max_kw]`` and the need is the energy the horizon's last period must end with, grid
side (stored energy divided by the charging efficiency). The EV population's intermediate energy
bounds (at least "the need less what full power can still add") are implied by the box and the
total, so nothing is lost.

:meth:`EvFleet.project` is the Euclidean projection onto that set, the proximal step of Gan et
al.'s eq. (8): ``x = clip(y - nu, 0, rbar)`` with one ``nu`` per EV chosen so the energy holds,
found exactly from the sorted breakpoints of the piecewise-linear energy ``f(nu)`` (a vectorized
sort, no loop over EVs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems

__all__ = ["EvFleet", "FlexibilityLike"]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]

_TOL_KWH = 1e-9


class _HorizonLike(Protocol):
    @property
    def period_h(self) -> float:
        """Length of a period in hours."""
        ...


class FlexibilityLike(Protocol):
    """What :meth:`EvFleet.from_flexibility` reads of a generalized battery.

    :class:`transactive.devices.flexibility.Flexibility` is one; the market does not import the
    devices (the layers' rule), it reads these attributes.
    """

    @property
    def horizon(self) -> _HorizonLike:
        """The periods (their length)."""
        ...

    @property
    def ids(self) -> StrArray:
        """(N,) device ids."""
        ...

    @property
    def baseline_kw(self) -> FloatArray:
        """(T, N) power with no deviation."""
        ...

    @property
    def power_min_kw(self) -> FloatArray:
        """(T, N) least net deviation."""
        ...

    @property
    def power_max_kw(self) -> FloatArray:
        """(T, N) largest net deviation."""
        ...

    @property
    def energy_min_kwh(self) -> FloatArray:
        """(T, N) least stored energy at each period's end."""
        ...

    @property
    def initial_energy_kwh(self) -> FloatArray:
        """(N,) stored energy at the start."""
        ...

    @property
    def retention(self) -> FloatArray:
        """(N,) share of stored energy kept a period."""
        ...

    @property
    def charge_efficiency(self) -> FloatArray:
        """(N,) efficiency of storing."""
        ...


@dataclass(frozen=True, eq=False)
class EvFleet:
    """N EVs over T periods of ``period_h`` hours.

    Attributes
    ----------
    ids:
        ``(N,)`` EV ids.
    rate_max_kw:
        ``(T, N)``, ``>= 0``: the most average power each EV can draw in each period (0 when it
        is not plugged in).
    energy_kwh:
        ``(N,)``, ``>= 0``: grid-side energy each EV must take over the horizon.
    period_h:
        Length of a period in hours.

    """

    ids: StrArray
    rate_max_kw: FloatArray
    energy_kwh: FloatArray
    period_h: float

    def __post_init__(self) -> None:
        problems = Problems(subject="EV fleet")
        rate = np.asarray(self.rate_max_kw)
        energy = np.asarray(self.energy_kwh)
        n = int(np.asarray(self.ids).shape[0])
        if rate.ndim != 2 or rate.shape[1] != n:
            problems.add("rate_max_kw", f"must have shape (T, N) with N = {n}, got {rate.shape}")
        if energy.shape != (n,):
            problems.add("energy_kwh", f"must have shape (N,) = {(n,)}, got {energy.shape}")
        if not (np.isfinite(self.period_h) and self.period_h > 0):
            problems.add("period_h", f"must be a finite number > 0, got {self.period_h!r}")
        problems.raise_if_any()
        labels = [str(i) for i in self.ids]
        if problems.check(~np.isfinite(rate).all(axis=0), "rate_max_kw", "not finite", labels):
            problems.check((rate < 0).any(axis=0), "rate_max_kw", "must be >= 0", labels)
        if problems.check(~np.isfinite(energy), "energy_kwh", "not finite", labels):
            problems.check(energy < 0, "energy_kwh", "must be >= 0", labels)
            reachable = rate.sum(axis=0) * self.period_h
            problems.check(
                energy > reachable + _TOL_KWH * np.maximum(1.0, reachable),
                "energy_kwh",
                "infeasible energy need: more than the EV can take at full power while plugged in",
                labels,
            )
        problems.raise_if_any()

    @property
    def n_periods(self) -> int:
        """T."""
        return int(self.rate_max_kw.shape[0])

    @property
    def n_evs(self) -> int:
        """N."""
        return int(self.rate_max_kw.shape[1])

    @classmethod
    def from_flexibility(cls, flexibility: FlexibilityLike) -> EvFleet:
        """The fleet of charge-only devices in ``flexibility`` (e.g. ``EVPopulation.flexibility``).

        Refuses, naming them, devices that can discharge, lose stored energy or have a baseline
        (those are batteries or thermostatic loads, not EVs in this model).
        """
        flex = flexibility
        labels = [str(i) for i in flex.ids]
        problems = Problems(subject="EV fleet")
        problems.check(
            (flex.power_min_kw < 0).any(axis=0), "power_min_kw", "must be 0: an EV only charges",
            labels,
        )  # fmt: skip
        problems.check(
            (flex.baseline_kw != 0).any(axis=0), "baseline_kw", "must be 0 for an EV", labels
        )
        problems.check(flex.retention != 1, "retention", "must be 1 for an EV", labels)
        problems.raise_if_any()
        eta = flex.charge_efficiency
        need_kwh = np.maximum(flex.energy_min_kwh[-1] - flex.initial_energy_kwh, 0.0) / eta
        return cls(
            ids=np.asarray(flex.ids, dtype=np.str_),
            rate_max_kw=np.maximum(np.asarray(flex.power_max_kw, dtype=np.float64), 0.0),
            energy_kwh=need_kwh,
            period_h=flex.horizon.period_h,
        )

    def project(self, target_kw: npt.ArrayLike) -> FloatArray:
        """The schedule in the fleet's set nearest (Euclidean, per EV) to ``target_kw`` (T, N)."""
        y = np.asarray(target_kw, dtype=np.float64)
        if y.shape != self.rate_max_kw.shape:
            raise ValueError(f"target_kw must have shape {self.rate_max_kw.shape}, got {y.shape}")
        rbar = self.rate_max_kw
        need_kw = self.energy_kwh / self.period_h  # required sum over t of the rates
        t = y.shape[0]
        # f(nu) = sum_t clip(y_t - nu, 0, rbar_t): slope -1 between y_t - rbar_t and y_t.
        points = np.concatenate([y - rbar, y], axis=0)  # (2T, N)
        slope_change = np.concatenate([-np.ones_like(y), np.ones_like(y)], axis=0)
        slope_change[:t][rbar <= 0] = 0.0  # an unplugged period never contributes
        slope_change[t:][rbar <= 0] = 0.0
        order = np.argsort(points, axis=0, kind="stable")
        sorted_points = np.take_along_axis(points, order, axis=0)
        slope = np.cumsum(np.take_along_axis(slope_change, order, axis=0), axis=0)  # after point
        gaps = np.diff(sorted_points, axis=0)
        f_at = np.empty_like(sorted_points)
        f_at[0] = rbar.sum(axis=0)  # at the smallest breakpoint every period is saturated
        f_at[1:] = f_at[0] + np.cumsum(slope[:-1] * gaps, axis=0)
        f_at[-1] = 0.0  # past every breakpoint nothing is drawn: exact, not the cumsum's round-off
        # The first breakpoint at which f has fallen to the need; nu lies before it.
        below = f_at <= need_kw[None, :] + 0.0
        k = np.argmax(below, axis=0)  # f_at[-1] == 0 <= need always, so k is defined
        cols = np.arange(y.shape[1])
        k0 = np.maximum(k - 1, 0)
        f0 = f_at[k0, cols]
        p0 = sorted_points[k0, cols]
        s = slope[k0, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            nu = np.where(s < 0, p0 + (f0 - need_kw) / -s, sorted_points[k, cols])
        nu = np.where(k == 0, sorted_points[0, cols] - 0.0, nu)
        # k == 0: the need is the whole box; nu at the lowest breakpoint saturates every period.
        x = np.clip(y - nu[None, :], 0.0, rbar)
        x[:, need_kw <= 0.0] = 0.0  # nothing to take: nothing drawn, whatever the round-off
        return np.asarray(x, dtype=np.float64)
