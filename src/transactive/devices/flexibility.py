"""A population's flexibility over a horizon, as one generalized battery per device.

The iterative mechanisms (dual decomposition, ADMM, valley filling: Hu et al., Proc. CSEE 2019,
§1.4 and §3.1.1) and the network's multi-period OPF need to know what schedules a device can
follow, not only its bid for the next interval. Every flexible kind states it in one form, the
generalized battery of Hao, Sanandaji, Poolla and Vincent ("Aggregate flexibility of
thermostatically controlled loads", IEEE Trans. Power Systems 30(1), 2015, eq. (6)-(8)), written
per period of a :class:`~transactive.devices.base.Horizon`::

    power_kw[t, i]  = baseline_kw[t, i] + charge_kw[t, i] - discharge_kw[t, i]
    0 <= charge_kw[t, i] <= max(power_max_kw[t, i], 0)
    0 <= discharge_kw[t, i] <= max(-power_min_kw[t, i], 0)
    power_min_kw[t, i] <= charge_kw[t, i] - discharge_kw[t, i] <= power_max_kw[t, i]
    e[t + 1, i] = retention[i] e[t, i]
                  + (charge_efficiency[i] charge_kw[t, i]
                     - discharge_kw[t, i] / discharge_efficiency[i]) period_h
    energy_min_kwh[t, i] <= e[t + 1, i] <= energy_max_kwh[t, i],   e[0, i] = initial_energy_kwh[i]

An EV is a battery that only charges while plugged (``power_max_kw`` 0 outside its window) and
must hold its need by departure (``energy_min_kwh``); a stationary battery uses both efficiencies;
a thermostatic population is its virtual battery (``retention = 1 - alpha period``, deviations
from its baseline). Arrays are time first, ``(T, N)``.

:func:`solve_best_response` finds the cheapest schedule of every device: sparse linear programs
over blocks of devices, built without a loop over devices and solved by HiGHS (Huangfu and Hall,
"Parallelizing the dual revised simplex method", Math. Prog. Comp. 10, 2018) through
:func:`scipy.optimize.linprog`.

Each direction is bounded by its own rating (the second and third lines): a device cannot charge
and discharge at once beyond its ratings to burn stored energy through its losses (without those
bounds a lossy battery facing negative prices could draw its full power forever, dissipating it).
The net powers allowed are the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import scipy.optimize
import scipy.sparse as sp

from transactive.devices._common import _check_weather
from transactive.devices.base import Horizon
from transactive.errors import Problems
from transactive.weather import WeatherSample

__all__ = [
    "BestResponse",
    "Flexibility",
    "FlexiblePopulation",
    "solve_best_response",
    "widened_to_way_back",
]

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]


@dataclass(frozen=True, eq=False)
class Flexibility:
    """The schedules N devices can follow over a horizon (see the module docstring for the model).

    Attributes
    ----------
    horizon:
        The periods the arrays' first axis runs over.
    ids:
        ``(N,)`` device ids.
    baseline_kw, power_min_kw, power_max_kw:
        ``(T, N)``: power drawn with no deviation, and the bounds of the net deviation
        ``charge - discharge`` around it.
    energy_min_kwh, energy_max_kwh:
        ``(T, N)``: bounds of the stored energy at the *end* of each period.
    initial_energy_kwh, retention, charge_efficiency, discharge_efficiency:
        ``(N,)``: stored energy at the horizon's start; the share of stored energy kept over one
        period; the efficiencies of storing and of releasing energy (1 for a load that only
        shifts).

    """

    horizon: Horizon
    ids: StrArray
    baseline_kw: FloatArray
    power_min_kw: FloatArray
    power_max_kw: FloatArray
    energy_min_kwh: FloatArray
    energy_max_kwh: FloatArray
    initial_energy_kwh: FloatArray
    retention: FloatArray
    charge_efficiency: FloatArray
    discharge_efficiency: FloatArray

    def __post_init__(self) -> None:
        problems = Problems(subject="flexibility")
        t, n = self.horizon.n_periods, int(np.asarray(self.ids).shape[0])
        for name in ("baseline_kw", "power_min_kw", "power_max_kw", "energy_min_kwh",
                     "energy_max_kwh"):  # fmt: skip
            a = np.asarray(getattr(self, name))
            if a.shape != (t, n):
                problems.add(name, f"must have shape (T, N) = {(t, n)}, got {a.shape}")
            elif not np.isfinite(a).all():
                problems.add(name, "not a finite number (NaN or infinite)")
        for name in ("initial_energy_kwh", "retention", "charge_efficiency",
                     "discharge_efficiency"):  # fmt: skip
            a = np.asarray(getattr(self, name))
            if a.shape != (n,):
                problems.add(name, f"must have shape (N,) = {(n,)}, got {a.shape}")
            elif not np.isfinite(a).all():
                problems.add(name, "not a finite number (NaN or infinite)")
        problems.raise_if_any()
        with np.errstate(invalid="ignore"):
            problems.check(
                (self.power_min_kw > self.power_max_kw).any(axis=0),
                "power_min_kw",
                "exceeds power_max_kw in some period",
            )
            problems.check(
                (self.energy_min_kwh > self.energy_max_kwh).any(axis=0),
                "energy_min_kwh",
                "exceeds energy_max_kwh in some period",
            )
            problems.check(
                ~((self.retention > 0) & (self.retention <= 1)), "retention", "must lie in (0, 1]"
            )
            for name in ("charge_efficiency", "discharge_efficiency"):
                a = getattr(self, name)
                problems.check(~((a > 0) & (a <= 1)), name, "must lie in (0, 1]")
        problems.raise_if_any()

    @property
    def n_devices(self) -> int:
        """Number of devices (N)."""
        return int(self.ids.shape[0])


@dataclass(frozen=True, eq=False)
class BestResponse:
    """A cheapest schedule under a :class:`Flexibility` at given prices.

    ``power_kw`` and ``energy_kwh`` (stored energy at the end of each period) are ``(T, N)``;
    ``cost`` is ``(N,)`` in currency over the horizon, ``sum_t price[t] power_kw[t] period_h``.
    """

    power_kw: FloatArray
    energy_kwh: FloatArray
    cost: FloatArray
    flexibility: Flexibility


@runtime_checkable
class FlexiblePopulation(Protocol):
    """A population that can say what schedules it can follow and answer prices with one."""

    @property
    def ids(self) -> StrArray:
        """Stable id of every device."""
        ...

    def flexibility(self, horizon: Horizon, weather: Sequence[WeatherSample]) -> Flexibility:
        """The constraints a schedule over ``horizon`` must meet (one weather sample a period)."""
        ...

    def best_response(
        self,
        prices_per_kwh: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
    ) -> BestResponse:
        """The cheapest schedule at ``prices_per_kwh`` ((T,) or (T, N)); changes no state."""
        ...


# ---------------------------------------------------------------------------- the solver


def _checked_horizon_weather(horizon: object, weather: object) -> None:
    """A :class:`Horizon` and one checked :class:`WeatherSample` per period."""
    problems = Problems(subject="horizon view")
    if not isinstance(horizon, Horizon):
        problems.add("horizon", f"must be a Horizon, got {type(horizon).__name__}")
        problems.raise_if_any()
    assert isinstance(horizon, Horizon)
    if not isinstance(weather, Sequence) or len(weather) != horizon.n_periods:
        got = len(weather) if isinstance(weather, Sequence) else type(weather).__name__
        problems.add(
            "weather", f"must be one WeatherSample per period ({horizon.n_periods}), got {got}"
        )
        problems.raise_if_any()
    assert isinstance(weather, Sequence)
    bad = [t for t, w in enumerate(weather) if not isinstance(w, WeatherSample)]
    if bad:
        problems.add("weather", "must be WeatherSample", bad)
    problems.raise_if_any()
    for sample in weather:
        _check_weather(sample)


def _checked_prices(prices_per_kwh: npt.ArrayLike, t: int, n: int) -> FloatArray:
    problems = Problems(subject="best response")
    try:
        price = np.asarray(prices_per_kwh, dtype=np.float64)
    except (TypeError, ValueError):
        problems.add("prices_per_kwh", "must be numbers")
        problems.raise_if_any()
    if price.shape not in ((t,), (t, n)):
        problems.add("prices_per_kwh", f"must have shape (T,) = {(t,)} or (T, N) = {(t, n)}, "
                     f"got {price.shape}")  # fmt: skip
        problems.raise_if_any()
    problems.check(~np.isfinite(price), "prices_per_kwh", "not a finite number (NaN or infinite)")
    problems.raise_if_any()
    return np.array(np.broadcast_to(price.reshape(t, -1), (t, n)))


def _infeasible_devices(flex: Flexibility) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Devices whose energy bounds no schedule meets, and the first period that fails.

    Forward reachability, exact for this model: the stored energies reachable at the end of
    period t form an interval (the dynamics are affine in box-bounded powers), propagated and cut
    by the energy bounds period by period (a loop over periods, vectorized over devices).
    """
    h = flex.horizon.period_h
    c_lo, c_hi, d_lo, d_hi = _power_boxes(flex)
    eta_c, eta_d = flex.charge_efficiency, flex.discharge_efficiency
    lo = flex.initial_energy_kwh.copy()
    hi = lo.copy()
    first = np.full(flex.n_devices, -1, dtype=np.int64)
    for t in range(flex.horizon.n_periods):
        lo = flex.retention * lo + h * (eta_c * c_lo[t] - d_hi[t] / eta_d)
        hi = flex.retention * hi + h * (eta_c * c_hi[t] - d_lo[t] / eta_d)
        lo = np.maximum(lo, flex.energy_min_kwh[t])
        hi = np.minimum(hi, flex.energy_max_kwh[t])
        tol = 1e-9 * (1.0 + np.abs(lo) + np.abs(hi))
        first = np.where((first < 0) & (lo > hi + tol), t, first)
        hi = np.maximum(hi, lo)  # keep going so that every failing device is found once
    bad = np.flatnonzero(first >= 0)
    return bad, first[bad]


def _power_boxes(flex: Flexibility) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Bounds of charge and discharge: the model's net power limits as boxes (see module)."""
    pmin, pmax = flex.power_min_kw, flex.power_max_kw
    return (
        np.maximum(pmin, 0.0),
        np.maximum(pmax, 0.0),
        np.maximum(-pmax, 0.0),
        np.maximum(-pmin, 0.0),
    )


def solve_best_response(flexibility: Flexibility, prices_per_kwh: npt.ArrayLike) -> BestResponse:
    """The cheapest schedule of every device under its :class:`Flexibility` at given prices.

    Minimizes ``sum_t price[t, i] power_kw[t, i] period_h`` for all devices: sparse LPs
    (variables charge, discharge and stored energy per period and device, time first; the energy
    balance is the only row type, power limits and energy bounds are variable bounds), one per
    block of 32 devices (the problem is separable; see ``_BLOCK``), solved by HiGHS. Prices are
    ``(T,)`` (one price per period for all) or ``(T, N)``.

    Ties are broken deterministically by a second LP over the cheapest schedules (each device's
    cost held within ``1e-9 (1 + |cost|)`` of its optimum, HiGHS's tolerance): it minimizes
    ``sum_t (1 + t / T) (charge + discharge)``, the least energy moved, earlier periods preferred
    (an EV facing equal prices charges as early as it can; a battery facing flat prices stays
    idle).

    Raises
    ------
    ValidationError
        Bad prices; or devices whose bounds no schedule meets (named by id, with the first period
        that fails), found before solving by exact forward reachability.

    """
    flex = flexibility
    t_n, n = flex.horizon.n_periods, flex.n_devices
    price = _checked_prices(prices_per_kwh, t_n, n)
    problems = Problems(subject="best response")
    bad, first = _infeasible_devices(flex)
    for period in np.unique(first):
        ids = flex.ids[bad[first == period]].tolist()
        problems.check(
            np.ones(len(ids), dtype=bool),
            "flexibility",
            f"no schedule meets these devices' energy bounds (first failing period {int(period)})",
            labels=ids,
        )
    problems.raise_if_any()
    h = flex.horizon.period_h
    c_lo, c_hi, d_lo, d_hi = _power_boxes(flex)
    charge, discharge, energy = np.zeros((t_n, n)), np.zeros((t_n, n)), np.zeros((t_n, n))
    for start in range(0, n, _BLOCK):
        cols = slice(start, min(start + _BLOCK, n))
        block = _solve_block(
            h,
            price[:, cols],
            (c_lo[:, cols], c_hi[:, cols], d_lo[:, cols], d_hi[:, cols]),
            flex.energy_min_kwh[:, cols],
            flex.energy_max_kwh[:, cols],
            flex.initial_energy_kwh[cols],
            flex.retention[cols],
            flex.charge_efficiency[cols],
            flex.discharge_efficiency[cols],
        )
        charge[:, cols], discharge[:, cols], energy[:, cols] = block
    power = flex.baseline_kw + charge - discharge
    return BestResponse(
        power_kw=power,
        energy_kwh=energy,
        cost=(price * power * h).sum(axis=0),
        flexibility=flex,
    )


#: Devices per LP. The problem is separable per device, and the simplex's work grows faster than
#: the size of one LP (1,000 batteries over 96 periods: 20 s as one LP, 7 s in blocks of 32), so
#: the devices are solved in blocks, each block one LP built without a loop over its devices.
_BLOCK = 32


def _solve_block(
    h: float,
    price: FloatArray,
    boxes: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    energy_min: FloatArray,
    energy_max: FloatArray,
    initial: FloatArray,
    retention: FloatArray,
    eta_c: FloatArray,
    eta_d: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Charge, discharge and stored energy ``(T, n)`` of one block of devices (two LPs)."""
    t_n, n = price.shape
    m = t_n * n
    c_lo, c_hi, d_lo, d_hi = boxes
    bounds = np.column_stack(
        [
            np.concatenate([c_lo.ravel(), d_lo.ravel(), energy_min.ravel()]),
            np.concatenate([c_hi.ravel(), d_hi.ravel(), energy_max.ravel()]),
        ]
    )
    # Energy balance (Hao et al. 2015, eq. (6)), one row per (t, i), k = t n + i:
    #   e[t] - r e[t-1] - eta_c h c[t] + (h / eta_d) d[t] = (t == 0) r e0
    eye = sp.identity(m, format="csr")
    shift = sp.diags(np.tile(retention, t_n - 1), -n, shape=(m, m), format="csr")
    a_eq = sp.hstack(
        [sp.diags(np.tile(-h * eta_c, t_n)), sp.diags(np.tile(h / eta_d, t_n)), eye - shift],
        format="csr",
    )
    b_eq = np.zeros(m)
    b_eq[:n] = retention * initial
    cost_row = (price * h).ravel()
    objective = np.concatenate([cost_row, -cost_row, np.zeros(m)])
    first_pass = _linprog(objective, a_eq, b_eq, bounds)
    optimum = ((first_pass[:m] - first_pass[m : 2 * m]).reshape(t_n, n) * price * h).sum(axis=0)
    # Second pass: among the cheapest schedules, least energy moved, earlier periods first.
    weight = np.repeat(1.0 + np.arange(t_n) / t_n, n)
    tie_break = np.concatenate([weight, weight, np.zeros(m)])
    device = np.tile(np.arange(n), t_n)
    a_cost = sp.csr_matrix(
        (np.concatenate([cost_row, -cost_row]),
         (np.concatenate([device, device]), np.arange(2 * m))),
        shape=(n, 3 * m),
    )  # fmt: skip
    b_cost = optimum + 1e-9 * (1.0 + np.abs(optimum))
    x = _linprog(tie_break, a_eq, b_eq, bounds, a_ub=a_cost, b_ub=b_cost)
    return (
        x[:m].reshape(t_n, n),
        x[m : 2 * m].reshape(t_n, n),
        x[2 * m :].reshape(t_n, n),
    )


def _linprog(
    objective: FloatArray,
    a_eq: sp.csr_matrix,
    b_eq: FloatArray,
    bounds: FloatArray,
    *,
    a_ub: sp.csr_matrix | None = None,
    b_ub: FloatArray | None = None,
) -> FloatArray:
    """HiGHS on the LP with the variables fixed by their bounds taken out beforehand.

    (An EV never discharges and charges nothing while unplugged: most of its variables are fixed;
    removing them here halves the solve time.)
    """
    fixed = bounds[:, 0] >= bounds[:, 1]
    x = bounds[:, 0].copy()
    free = np.flatnonzero(~fixed)
    a_eq_csc = a_eq.tocsc()
    b_eq_free = b_eq - a_eq_csc[:, fixed] @ x[fixed]
    a_ub_free = None if a_ub is None else a_ub.tocsc()[:, free]
    b_ub_free = None
    if a_ub is not None and b_ub is not None:
        b_ub_free = b_ub - a_ub.tocsc()[:, fixed] @ x[fixed]
    result = scipy.optimize.linprog(
        objective[free],
        A_ub=a_ub_free,
        b_ub=b_ub_free,
        A_eq=a_eq_csc[:, free],
        b_eq=b_eq_free,
        bounds=bounds[free],
        method="highs",
    )
    if result.status != 0:  # the reachability check passed: this is the solver's failure
        problems = Problems(subject="best response")
        problems.add("solver", f"HiGHS did not solve the schedule LP: {result.message}")
        problems.raise_if_any()
    x[free] = result.x
    return x


def widened_to_way_back(
    initial_energy_kwh: FloatArray,
    retention: FloatArray,
    power_min_kw: FloatArray,
    power_max_kw: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    period_h: float,
) -> tuple[FloatArray, FloatArray]:
    """Energy bounds widened so a device outside them now gets its fastest way back.

    A device whose stored energy lies outside its limits (a house pushed out of its band, a tank
    its draws drained) cannot be inside them after the first period. First the lowest trajectory
    (``power_min`` every period, ``e[t+1] = r e[t] + p dt``, the model of :class:`Flexibility`)
    raises the upper bound where it lies above it; then the highest (``power_max``, held at the
    raised upper bound) lowers the lower bound where it lies below it. That highest trajectory
    meets every bound, so the device's problem is always feasible, and a device inside its
    limits keeps them. Arrays ``(T, N)``, ``(N,)`` for the first two; a loop over periods,
    vectorized over devices.
    """
    energy_min = np.array(energy_min_kwh, dtype=np.float64)
    energy_max = np.array(energy_max_kwh, dtype=np.float64)
    lowest = np.array(initial_energy_kwh, dtype=np.float64)
    for t in range(energy_max.shape[0]):
        lowest = retention * lowest + power_min_kw[t] * period_h
        energy_max[t] = np.maximum(energy_max[t], lowest)
    highest = np.array(initial_energy_kwh, dtype=np.float64)
    for t in range(energy_min.shape[0]):
        highest = np.minimum(retention * highest + power_max_kw[t] * period_h, energy_max[t])
        energy_min[t] = np.minimum(energy_min[t], highest)
    return energy_min, energy_max
