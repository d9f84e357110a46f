"""A day (or any run of intervals) of a feeder through the AC power flow and the DSO's check.

:func:`run_day` takes net consumption per interval and node, ``(T, N)`` arrays (time first, as
every multi-period array of the package), and runs every
interval through :func:`transactive.network.security.security_check` (pandapower Newton-Raphson on
one prepared :class:`~transactive.network.powerflow.PowerFlowRunner`, the limits and violation
rules of the DSO's check), collecting voltages, loadings, losses and violations into preallocated
``(T, ...)`` arrays of a frozen :class:`FeederDay`: the time series a simulator's report draws
(the minimum voltage over the day, the feeder map at the peak interval), in the manner of
pandapower's time-series output writer, which logs chosen result columns per time step. With
``backend="pgm"`` every interval is solved in one batch call of power-grid-model
(:class:`~transactive.network.pgm.BatchPowerFlow`) and the same limits and violation rules are
applied to the arrays.

:func:`feeder_day_load` builds a day of a feeder's own load:

* **SimBench grids** carry yearly quarter-hour profiles for every load and static generator
  (Meinecke et al., "SimBench", Energies 13(12), 3290, 2020); the day is read from them with
  :func:`~transactive.network.feeders.simbench_node_profiles` (by default the day of 2016 that
  holds the largest total net consumption of the year).
* **Other feeders** (``case33bw``, the CIGRE feeders, JSON files) have nominal loads only. The
  day is the nominal load of every node times a daily load shape built from SimBench's six
  household load profiles ``H0-A``, ``H0-B``, ``H0-C``, ``H0-G``, ``H0-H``, ``H0-L`` (shipped with
  the ``simbench`` package, each per unit of its yearly peak): their mean, averaged over the 366
  days of 2016 at every quarter-hour and divided by the largest of those averages, so that the
  shape's peak is 1 (at 20:15) and the peak interval reproduces the feeder's nominal (peak) case.
  Mixing the six smooths the quirks of any one of them (``H0-A`` alone jumps by half its peak at
  06:15), as a feeder node serves many households. Reactive load follows the same shape
  (constant power factor); generators stay at their nominal output. Passing ``day`` uses that
  day of the six profiles' mean instead of the year's average (still divided by the average
  day's peak).

Losses are the series resistance losses of lines and transformers (pandapower ``pl_mw``); energy
losses are their sum over intervals times the interval length (the power flow of an interval
stands for its mean).

"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive.errors import Problems
from transactive.network.feeders import Feeder, simbench_node_profiles
from transactive.network.pgm import BatchPowerFlow
from transactive.network.powerflow import (
    PowerFlowRunner,
    _checked_day_injections,
    branch_loading_pct,
)
from transactive.network.security import (
    SecurityLimits,
    Violation,
    ViolationKind,
    _unsupplied,
    security_check,
)

__all__ = [
    "DAILY_SHAPE_PROFILES",
    "RUN_DAY_BACKENDS",
    "DayLoad",
    "FeederDay",
    "daily_load_shape",
    "feeder_day_load",
    "run_day",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Power flow backends of :func:`run_day`: pandapower per interval, power-grid-model in a batch.
RUN_DAY_BACKENDS = ("pandapower", "pgm")
#: SimBench load profiles whose mean, averaged over the year, shapes feeders without profiles.
DAILY_SHAPE_PROFILES = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-H", "H0-L")
#: SimBench's step (quarter-hours) and the first day of its data year.
_STEP_S = 900
_YEAR_START = pd.Timestamp("2016-01-01")
_DAYS = 366
_PER_DAY = 96


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class FeederDay:
    """Power flow and security check of every interval; arrays are read-only, interval first.

    Attributes
    ----------
    feeder_name : str
        The feeder's name.
    interval_s : int
        Length of one interval in seconds.
    p_kw, q_kvar : (T, N) float
        Net consumption per interval and node that was run.
    converged : (T,) bool
        Newton-Raphson converged (when not, that interval's numbers are NaN, indices -1).
    vm_pu : (T, N) float
        Node voltages.
    branch_loading_pct : (T, B) float
        Branch loading, current over rated current at the worse end in per cent (pandapower's
        ``loading_percent``, as the DSO's check measures it); NaN for unrated branches.
    losses_kw : (T,) float
        Active losses of lines and transformers.
    p_slack_kw, q_slack_kvar : (T,) float
        Power drawn from the external grid (the substation import).
    vmin_pu, vmax_pu : (T,) float
        Smallest and largest node voltage.
    vmin_node, vmax_node : (T,) int
        Node where they occur.
    max_loading_pct : (T,) float
        Largest branch loading (NaN when no branch has a rating: the feeder is "unrated").
    max_loading_branch : (T,) int
        Branch where it occurs (-1 when none).
    n_violations : (T,) int
        Number of violated limits (a power flow that does not converge counts one).
    secure : (T,) bool
        The interval passed the DSO's check.
    violations : tuple of tuple of Violation
        Every interval's violations, as :func:`security_check` lists them.
    vmin_limit_pu, vmax_limit_pu : (N,) float
        Voltage limits applied.
    max_loading_limit_pct : float
        Loading limit applied.
    branch_rated : (B,) bool
        Branches with a rating (the others' loadings are NaN).

    """

    feeder_name: str
    interval_s: int
    p_kw: FloatArray
    q_kvar: FloatArray
    converged: BoolArray
    vm_pu: FloatArray
    branch_loading_pct: FloatArray
    losses_kw: FloatArray
    p_slack_kw: FloatArray
    q_slack_kvar: FloatArray
    vmin_pu: FloatArray
    vmin_node: IntArray
    vmax_pu: FloatArray
    vmax_node: IntArray
    max_loading_pct: FloatArray
    max_loading_branch: IntArray
    n_violations: IntArray
    secure: BoolArray
    violations: tuple[tuple[Violation, ...], ...]
    vmin_limit_pu: FloatArray
    vmax_limit_pu: FloatArray
    max_loading_limit_pct: float
    branch_rated: BoolArray

    @property
    def n_intervals(self) -> int:
        """Number of intervals T."""
        return int(self.losses_kw.size)

    @property
    def time_h(self) -> FloatArray:
        """Start of every interval in hours from the start of the run."""
        return np.arange(self.n_intervals, dtype=np.float64) * self.interval_s / 3600.0

    @property
    def peak_interval(self) -> int:
        """Interval of the largest substation import (-1 when no interval converged)."""
        if not np.isfinite(self.p_slack_kw).any():
            return -1
        return int(np.nanargmax(self.p_slack_kw))

    @property
    def not_converged(self) -> IntArray:
        """Intervals whose power flow did not converge: left out of every total below."""
        return np.flatnonzero(~self.converged).astype(np.int64)

    @property
    def n_converged(self) -> int:
        """Number of intervals the totals cover."""
        return int(np.count_nonzero(self.converged))

    @property
    def energy_losses_kwh(self) -> float:
        """Energy lost in lines and transformers over the converged intervals only.

        Intervals in :attr:`not_converged` are excluded (their losses are unknown); a caller
        reporting the total says so (the ``feeder-day`` command lists them).
        """
        return float(np.sum(self.losses_kw[self.converged]) * self.interval_s / 3600.0)

    @property
    def energy_import_kwh(self) -> float:
        """Energy drawn from the external grid over the converged intervals only."""
        return float(np.sum(self.p_slack_kw[self.converged]) * self.interval_s / 3600.0)

    @property
    def rated(self) -> bool:
        """At least one branch has a rating (else every loading is NaN: "unrated")."""
        return bool(np.asarray(self.branch_rated).any())

    @property
    def n_insecure(self) -> int:
        """Number of intervals with at least one violation."""
        return int(np.count_nonzero(~self.secure))

    def intervals_with(self, kind: ViolationKind | str) -> IntArray:
        """Intervals with at least one violation of ``kind`` (e.g. ``"undervoltage"``)."""
        wanted = ViolationKind(kind)
        hit = [t for t, found in enumerate(self.violations) if any(v.kind == wanted for v in found)]
        return np.asarray(hit, dtype=np.int64)


def run_day(
    feeder: Feeder,
    p_kw: npt.ArrayLike,
    q_kvar: npt.ArrayLike | None = None,
    *,
    limits: SecurityLimits | None = None,
    interval_s: int = _STEP_S,
    backend: str = "pandapower",
    flow: BatchPowerFlow | None = None,
) -> FeederDay:
    """Run every interval (row) through the AC power flow and the DSO's security check.

    Parameters
    ----------
    feeder : Feeder
        The feeder.
    p_kw, q_kvar : (T, N) float
        Net consumption per interval (rows) and node (columns), positive = consumption; a
        missing ``q_kvar`` is zero. These replace the net's own loads and generators, one load
        per node, as :func:`~transactive.network.powerflow.run_powerflow` does with injections.
    limits : SecurityLimits, optional
        Limits the DSO enforces (default: the feeder's).
    interval_s : int
        Length of one interval in seconds (default 900, a quarter-hour).
    backend : {"pandapower", "pgm"}
        ``"pandapower"`` (default): :func:`security_check` per interval, pandapower
        Newton-Raphson. ``"pgm"``: every interval in one batch call of power-grid-model
        (:class:`~transactive.network.pgm.BatchPowerFlow`; voltages agree with pandapower to
        1e-6 pu on the feeders tested, see its module), the same limits and violations, about
        two to three orders of magnitude faster.
    flow : BatchPowerFlow, optional
        A prepared power-grid-model runner of this feeder to reuse (implies ``"pgm"``); saves
        the conversion (about 30 ms) when many short runs share one feeder.

    Returns
    -------
    FeederDay
        Every interval's voltages, loadings, losses and violations.

    Raises
    ------
    ValidationError
        Arrays not two-dimensional, not one column per node, ``p_kw`` and ``q_kvar`` of
        different shapes, NaN or infinite values (named as such, with their intervals), no
        interval, a bad interval length or bad limits, an unknown backend, a ``flow`` of
        another feeder or with ``backend="pandapower"``, a feeder power-grid-model cannot
        model (with ``"pgm"``).

    """
    n, nb = feeder.n_nodes, feeder.n_branches
    p, q = _checked_day(feeder, p_kw, q_kvar, interval_s, backend, flow)
    if limits is not None:
        limits.resolve(feeder)  # bad limits raise before any power flow
    t_count = p.shape[0]
    if backend == "pgm" or flow is not None:
        return _run_day_pgm(feeder, p, q, limits, int(interval_s), flow)
    runner = PowerFlowRunner(feeder, replace_injections=True)

    converged = np.zeros(t_count, dtype=bool)
    vm = np.full((t_count, n), np.nan)
    loading = np.full((t_count, nb), np.nan)
    losses = np.full(t_count, np.nan)
    p_slack = np.full(t_count, np.nan)
    q_slack = np.full(t_count, np.nan)
    n_viol = np.zeros(t_count, dtype=np.int64)
    found: list[tuple[Violation, ...]] = []
    vmin_lim = vmax_lim = np.zeros(0)
    i_max_applied = np.asarray(feeder.branch_i_max_ka, dtype=np.float64)
    max_pct = 100.0
    for t in range(t_count):
        report = security_check(feeder, p[t], q[t], limits=limits, runner=runner)
        vmin_lim, vmax_lim, max_pct = report.vmin_pu, report.vmax_pu, report.max_loading_pct
        i_max_applied = report.branch_i_max_ka
        found.append(report.violations)
        n_viol[t] = len(report.violations)
        if not report.converged:
            continue
        converged[t] = True
        vm[t] = report.vm_pu
        loading[t] = report.branch_loading_pct
        losses[t] = report.losses_kw
        ext = runner.net.res_ext_grid
        p_slack[t] = float(ext["p_mw"].sum()) * 1000.0
        q_slack[t] = float(ext["q_mvar"].sum()) * 1000.0

    return _feeder_day(
        feeder,
        int(interval_s),
        p,
        q,
        converged,
        vm,
        loading,
        losses,
        p_slack,
        q_slack,
        n_viol,
        tuple(found),
        (vmin_lim, vmax_lim, max_pct, i_max_applied),
    )


def _run_day_pgm(
    feeder: Feeder,
    p: FloatArray,
    q: FloatArray,
    limits: SecurityLimits | None,
    interval_s: int,
    flow: BatchPowerFlow | None,
) -> FeederDay:
    """:func:`run_day` on power-grid-model: one batch, then the DSO's rules on the arrays.

    The violations are those :func:`security_check` lists, in its order: unsupplied buses, then
    undervoltages and overvoltages by node (the slack node not checked), overloads by branch;
    an interval that does not converge lists the unsupplied buses and one divergence.
    """
    chosen = limits or SecurityLimits()
    vmin, vmax, i_max = chosen.resolve(feeder)
    max_pct = float(chosen.max_loading_pct)
    batch = (flow or BatchPowerFlow(feeder)).run(p, q)
    converged = np.asarray(batch.converged)
    vm = np.array(batch.vm_pu)
    loading = branch_loading_pct(feeder, batch.branch_i_from_ka, batch.branch_i_to_ka, i_max)
    loading[~converged] = np.nan
    t_count, n = vm.shape
    checked = (np.arange(n) != feeder.slack)[None, :]
    with np.errstate(invalid="ignore"):
        under_t, under_j = np.nonzero(checked & (vm < vmin[None, :]))
        over_t, over_j = np.nonzero(checked & (vm > vmax[None, :]))
        load_t, load_b = np.nonzero(loading > max_pct)
    names = feeder.node_name
    kinds = np.asarray(feeder.branch_kind)
    elements = np.asarray(feeder.branch_element)
    per: list[list[Violation]] = [list(_unsupplied(feeder)) for _ in range(t_count)]
    for t, j in zip(under_t.tolist(), under_j.tolist(), strict=True):
        per[t].append(
            Violation(
                ViolationKind.UNDERVOLTAGE, "node", j, names[j], float(vm[t, j]), float(vmin[j])
            )
        )
    for t, j in zip(over_t.tolist(), over_j.tolist(), strict=True):
        per[t].append(
            Violation(
                ViolationKind.OVERVOLTAGE, "node", j, names[j], float(vm[t, j]), float(vmax[j])
            )
        )
    for t, b in zip(load_t.tolist(), load_b.tolist(), strict=True):
        per[t].append(
            Violation(
                ViolationKind.OVERLOAD,
                str(kinds[b]),
                b,
                f"{kinds[b]} {elements[b]}",
                float(loading[t, b]),
                max_pct,
            )
        )
    for t in np.flatnonzero(~converged).tolist():
        per[t].append(
            Violation(ViolationKind.DIVERGENCE, "feeder", -1, feeder.name, np.nan, np.nan)
        )
    found = tuple(tuple(v) for v in per)
    n_viol = np.asarray([len(v) for v in found], dtype=np.int64)
    return _feeder_day(
        feeder,
        interval_s,
        p,
        q,
        converged.copy(),
        vm,
        loading,
        np.array(batch.losses_kw),
        np.array(batch.p_slack_kw),
        np.array(batch.q_slack_kvar),
        n_viol,
        found,
        (vmin, vmax, max_pct, i_max),
    )


def _feeder_day(
    feeder: Feeder,
    interval_s: int,
    p: FloatArray,
    q: FloatArray,
    converged: BoolArray,
    vm: FloatArray,
    loading: FloatArray,
    losses: FloatArray,
    p_slack: FloatArray,
    q_slack: FloatArray,
    n_viol: IntArray,
    found: tuple[tuple[Violation, ...], ...],
    applied: tuple[FloatArray, FloatArray, float, FloatArray],
) -> FeederDay:
    """The :class:`FeederDay` of a run's arrays (extremes per interval, read-only arrays)."""
    vmin_lim, vmax_lim, max_pct, i_max_applied = applied
    nb = feeder.n_branches
    vmin_pu, vmin_node = _extreme(vm, np.nanargmin, converged)
    vmax_pu, vmax_node = _extreme(vm, np.nanargmax, converged)
    rated = np.isfinite(loading).any(axis=0) if nb else np.zeros(0, dtype=bool)
    has_rated = converged & bool(rated.any())
    max_loading, max_branch = _extreme(loading, np.nanargmax, has_rated)
    return FeederDay(
        feeder_name=feeder.name,
        interval_s=int(interval_s),
        p_kw=_ro(p),
        q_kvar=_ro(q),
        converged=_ro(converged),
        vm_pu=_ro(vm),
        branch_loading_pct=_ro(loading),
        losses_kw=_ro(losses),
        p_slack_kw=_ro(p_slack),
        q_slack_kvar=_ro(q_slack),
        vmin_pu=_ro(vmin_pu),
        vmin_node=_ro(vmin_node),
        vmax_pu=_ro(vmax_pu),
        vmax_node=_ro(vmax_node),
        max_loading_pct=_ro(max_loading),
        max_loading_branch=_ro(max_branch),
        n_violations=_ro(n_viol),
        secure=_ro(n_viol == 0),
        violations=found,
        vmin_limit_pu=_ro(np.asarray(vmin_lim, dtype=np.float64)),
        vmax_limit_pu=_ro(np.asarray(vmax_lim, dtype=np.float64)),
        max_loading_limit_pct=float(max_pct),
        branch_rated=_ro(np.isfinite(i_max_applied)),
    )


def _extreme(values: FloatArray, arg: Any, rows: BoolArray) -> tuple[FloatArray, IntArray]:
    """Row-wise extreme of ``values`` and where, on the rows given (NaN and -1 elsewhere)."""
    t_count = values.shape[0]
    best = np.full(t_count, np.nan)
    where = np.full(t_count, -1, dtype=np.int64)
    if rows.any():
        sub = values[rows]
        idx = arg(sub, axis=1)
        where[rows] = idx
        best[rows] = np.take_along_axis(sub, idx[:, None], axis=1)[:, 0]
    return best, where


def _checked_day(
    feeder: Feeder,
    p_kw: npt.ArrayLike,
    q_kvar: npt.ArrayLike | None,
    interval_s: int,
    backend: str = "pandapower",
    flow: BatchPowerFlow | None = None,
) -> tuple[FloatArray, FloatArray]:
    problems = Problems(subject=f"day of feeder {feeder.name!r}")
    if backend not in RUN_DAY_BACKENDS:
        problems.add("backend", f"must be one of {', '.join(RUN_DAY_BACKENDS)}, got {backend!r}")
    elif flow is not None and backend != "pgm":
        problems.add("flow", "a power-grid-model runner needs backend='pgm'")
    if flow is not None and flow.feeder is not feeder:
        problems.add("flow", f"was built for feeder {flow.feeder.name!r}, not this one")
    p, q = _checked_day_injections(problems, feeder, p_kw, q_kvar)
    if isinstance(interval_s, bool) or int(interval_s) != interval_s or interval_s <= 0:
        problems.add("interval_s", f"must be a positive whole number of seconds, got {interval_s}")
    problems.raise_if_any()
    return p, q


# ---------------------------------------------------------------------- a day of own load


@dataclass(frozen=True, eq=False)
class DayLoad:
    """A feeder's own load over a day, ready for :func:`run_day`.

    Attributes
    ----------
    p_kw, q_kvar : (T, N) float
        Net consumption per interval and node.
    interval_s : int
        Interval length in seconds.
    start : pandas.Timestamp or None
        Start of the first interval (SimBench's data year 2016, naive local time); None for the
        year-average day of a feeder without profiles (no date; it starts at 00:00).
    source : str
        Where the load comes from, in words.

    """

    p_kw: FloatArray
    q_kvar: FloatArray
    interval_s: int
    start: pd.Timestamp | None
    source: str

    @property
    def n_intervals(self) -> int:
        """Number of intervals T."""
        return int(self.p_kw.shape[0])


@lru_cache(maxsize=1)
def _household_year() -> FloatArray:
    from transactive.data.profiles import load_simbench_profiles  # noqa: PLC0415

    profile = load_simbench_profiles(DAILY_SHAPE_PROFILES, step_s=_STEP_S)
    values = np.asarray(profile.values_pu[:, : _DAYS * _PER_DAY].mean(axis=0), dtype=np.float64)
    return _ro(values.reshape(_DAYS, _PER_DAY))


def daily_load_shape(day: int | None = None) -> FloatArray:
    """The daily load shape for feeders without profiles: 96 quarter-hour factors.

    Parameters
    ----------
    day : int, optional
        Day of 2016 (0 = 1 January) of the household profiles' mean; without it, their average
        over the 366 days.

    Returns
    -------
    (96,) float
        The shape divided by the peak of the year-average day (so the average day peaks at 1).

    """
    _check_day(day)
    days = _household_year()
    mean_day = days.mean(axis=0)
    chosen = mean_day if day is None else days[day]
    return _ro(chosen / mean_day.max())


def feeder_day_load(
    feeder: Feeder,
    *,
    day: int | None = None,
    scale: float = 1.0,
) -> DayLoad:
    """A day of the feeder's own load in quarter-hours (see the module docstring for sources).

    Parameters
    ----------
    feeder : Feeder
        The feeder. SimBench grids use their own profiles; other feeders their nominal loads
        times :func:`daily_load_shape`.
    day : int, optional
        Day of 2016 (0 = 1 January, 365 = 31 December). Default: for SimBench grids the day
        with the year's largest total net consumption; for other feeders the year-average day.
    scale : float
        Factor on every node's net consumption (loads and generation alike), to push a feeder
        towards or past its limits.

    Returns
    -------
    DayLoad
        ``(96, N)`` arrays and where they come from.

    Raises
    ------
    ValidationError
        A day outside 0..365, a scale that is negative or not finite.

    """
    problems = Problems(subject=f"day of load for feeder {feeder.name!r}")
    if not (np.isfinite(scale) and scale >= 0):
        problems.add("scale", f"must be a finite non-negative number, got {scale}")
    problems.raise_if_any()
    _check_day(day)
    if _has_profiles(feeder):
        if day is None:
            p_year, q_year = simbench_node_profiles(feeder, 0, _DAYS * _PER_DAY)
            chosen = int(np.argmax(p_year.sum(axis=1))) // _PER_DAY
            window = slice(chosen * _PER_DAY, (chosen + 1) * _PER_DAY)
            p, q = p_year[window], q_year[window]
            how = "the day of the year's peak net consumption"
        else:
            chosen, how = day, "the requested day"
            p, q = simbench_node_profiles(feeder, chosen * _PER_DAY, _PER_DAY)
        start = _YEAR_START + pd.Timedelta(days=chosen)
        source = f"SimBench profiles of the grid, {start:%Y-%m-%d} ({how})"
    else:
        shape = daily_load_shape(day)
        p = np.outer(shape, feeder.load_p_kw) - np.asarray(feeder.gen_p_kw)[None, :]
        q = np.outer(shape, feeder.load_q_kvar) - np.asarray(feeder.gen_q_kvar)[None, :]
        if day is None:
            start = None
            source = (
                "nominal loads times SimBench's household profiles (H0-A..H0-L) averaged "
                "over 2016 (peak 1)"
            )
        else:
            start = _YEAR_START + pd.Timedelta(days=day)
            source = (
                "nominal loads times SimBench's household profiles (H0-A..H0-L) of "
                f"{start:%Y-%m-%d} (per unit of the average day's peak)"
            )
    if scale != 1.0:
        source += f", scaled by {scale:g}"
    return DayLoad(
        p_kw=_ro(p * scale),
        q_kvar=_ro(q * scale),
        interval_s=_STEP_S,
        start=start,
        source=source,
    )


def _has_profiles(feeder: Feeder) -> bool:
    net = feeder.net
    profiles = net.get("profiles", None)
    return isinstance(profiles, dict) and bool(profiles)


def _check_day(day: int | None) -> None:
    if day is None:
        return
    problems = Problems(subject="day of the year")
    if isinstance(day, bool) or not isinstance(day, int | np.integer) or not 0 <= day < _DAYS:
        problems.add("day", f"must be a whole number in 0..{_DAYS - 1} (days of 2016), got {day}")
    problems.raise_if_any()
