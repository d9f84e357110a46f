"""AC power flow of a feeder (pandapower Newton-Raphson) with optional per-node injections.

:func:`run_powerflow` runs pandapower's ``runpp`` (``numba=False``) on a copy of the feeder's net,
either with the net's own loads and generators or with one net consumption per node replacing
them, and returns a frozen :class:`PowerFlowResult` (losses, voltage extremes, line and
transformer loading). The 33-bus base case reproduces Baran & Wu (1989): 202.7 kW of losses and
a minimum voltage of 0.9131 pu at their bus 18 (node 17 here).

References
----------
L. Thurner et al., "pandapower - an open-source Python tool for convenient modeling, analysis,
and optimization of electric power systems", IEEE Trans. Power Systems 33(6), 6510-6521, 2018.
M. E. Baran and F. F. Wu, IEEE Trans. Power Delivery 4(2), 1401-1407, 1989.

"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from transactive.errors import Problems
from transactive.network.feeders import Feeder

__all__ = [
    "PowerFlowResult",
    "PowerFlowRunner",
    "branch_end_flows",
    "branch_loading_pct",
    "run_powerflow",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """Result of one AC power flow; node-indexed arrays follow the feeder's node numbering.

    Attributes
    ----------
    converged : bool
        Newton-Raphson converged. When False every number below is NaN and indices are -1.
    losses_kw : float
        Active losses of all lines and transformers.
    vm_pu : (N,) float
        Voltage magnitude of every node.
    vmin_pu, vmax_pu : float
        Smallest and largest node voltage.
    vmin_bus, vmax_bus : int
        Node where they occur (``feeder.node_name`` gives its name).
    p_slack_kw, q_slack_kvar : float
        Power drawn from the external grid(s).
    line_index : (L,) int
        pandapower index of every line in the net's line table.
    line_loading_pct : (L,) float
        Loading of every line, pandapower's ``loading_percent`` (current over
        ``max_i_ka · df · parallel``); NaN if out of service or unrated.
    max_line_loading_pct : float
        Largest line loading (NaN when no line in service is rated).
    max_loading_line : int
        pandapower index of that line (-1 when none).
    trafo_index : (M,) int
        pandapower index of every two-winding transformer.
    trafo_loading_pct : (M,) float
        Loading of every transformer, pandapower's ``loading_percent``; NaN if out of service.
    max_trafo_loading_pct : float
        Largest transformer loading (NaN when there is none).
    branch_loading_pct : (B,) float
        Loading per feeder branch, :func:`branch_loading_pct` of the branch currents: for a
        branch of one element exactly pandapower's ``loading_percent``; NaN when unrated.
    branch_p_kw, branch_q_kvar : (B,) float
        Power entering every branch at its ``branch_from`` end (sum over parallel elements).
    branch_i_from_ka, branch_i_to_ka : (B,) float
        Current at each end of every branch (sum over parallel elements; NaN for impedance
        switches).

    """

    converged: bool
    losses_kw: float
    vm_pu: FloatArray
    vmin_pu: float
    vmin_bus: int
    vmax_pu: float
    vmax_bus: int
    p_slack_kw: float
    q_slack_kvar: float
    line_index: IntArray
    line_loading_pct: FloatArray
    max_line_loading_pct: float
    max_loading_line: int
    trafo_index: IntArray
    trafo_loading_pct: FloatArray
    max_trafo_loading_pct: float
    branch_loading_pct: FloatArray
    branch_p_kw: FloatArray
    branch_q_kvar: FloatArray
    branch_i_from_ka: FloatArray
    branch_i_to_ka: FloatArray

    @property
    def any_rated(self) -> bool:
        """At least one branch has a rating (else every loading is NaN: "unrated")."""
        return bool(np.isfinite(self.branch_loading_pct).any())


def branch_loading_pct(
    feeder: Feeder,
    i_from_ka: npt.ArrayLike,
    i_to_ka: npt.ArrayLike,
    i_max_ka: npt.ArrayLike | None = None,
) -> FloatArray:
    """Loading of every branch in per cent: current over rated current, the worse end.

    The one thermal-limit definition of the package, pandapower's ``loading_percent``: lines
    ``i_ka / (max_i_ka · df · parallel)`` with ``i_ka`` the larger end current; transformers
    ``max(i_hv / i_hv_rated, i_lv / i_lv_rated)`` with ``i_rated = sn_mva · parallel · df /
    (√3 · vn_kv)`` of each side (pandapower ``trafo_loading="current"``).

    Parameters
    ----------
    feeder : Feeder
        The feeder (its ratings ``branch_i_max_ka`` / ``branch_i_max_from_ka``).
    i_from_ka, i_to_ka : (B,) or (..., B) float
        Current at the ``branch_from`` and ``branch_to`` ends.
    i_max_ka : (B,) float, optional
        Rated current at the ``branch_to`` end replacing the feeder's (``inf``: unrated); the
        ``branch_from`` end's rating keeps the feeder's ratio between the two ends.

    Returns
    -------
    (B,) or (..., B) float
        Loading in per cent, NaN where the branch is unrated.

    """
    to_rated = np.asarray(feeder.branch_i_max_ka, dtype=np.float64)
    from_rated = np.asarray(feeder.branch_i_max_from_ka, dtype=np.float64)
    both = np.isfinite(to_rated) & np.isfinite(from_rated) & (to_rated > 0)
    ratio = np.where(both, from_rated / np.where(both, to_rated, 1.0), 1.0)
    if i_max_ka is not None:
        to_rated = np.asarray(i_max_ka, dtype=np.float64)
        from_rated = to_rated * ratio
    with np.errstate(invalid="ignore", divide="ignore"):
        loading = 100.0 * np.fmax(
            np.asarray(i_from_ka, dtype=np.float64) / from_rated,
            np.asarray(i_to_ka, dtype=np.float64) / to_rated,
        )
    return np.where(np.isfinite(to_rated), loading, np.nan)


@runtime_checkable
class IntervalPowerFlow(Protocol):
    """What the DSO's check needs of a power-flow engine: one interval's AC power flow.

    :class:`PowerFlowRunner` (pandapower) and :class:`transactive.network.pgm.BatchPowerFlow`
    (power-grid-model, ~70x faster per interval) both implement it, on a feeder whose loads and
    generators are replaced by one injection per node.
    """

    def run_interval(
        self, p_kw: npt.ArrayLike, q_kvar: npt.ArrayLike | None = None
    ) -> PowerFlowResult:
        """The power flow with ``p_kw`` / ``q_kvar`` (N,) net consumption per node."""
        ...


class PowerFlowRunner:
    """A prepared copy of a feeder's net for repeated power flows with new node injections.

    ``PowerFlowRunner(feeder, replace_injections=True)`` replaces the net's loads and generators
    by one load per node, so that :meth:`run` with ``p_kw``, ``q_kvar`` re-runs quickly (used by
    the OPF's AC check over many periods). With ``replace_injections=False`` the net's own
    elements stay and :meth:`run` takes no injections.
    """

    def __init__(self, feeder: Feeder, *, replace_injections: bool = True) -> None:
        import pandapower as pp  # noqa: PLC0415

        self.feeder = feeder
        self._pp = pp
        self.net: Any = copy.deepcopy(feeder.net)
        self._replaced = replace_injections
        if replace_injections:
            for table in ("load", "sgen", "gen", "storage"):
                if table in self.net and len(self.net[table]):
                    self.net[table]["in_service"] = False
            self._load_idx = np.asarray(
                [
                    pp.create_load(self.net, bus=int(b), p_mw=0.0, q_mvar=0.0, name=f"node {i}")
                    for i, b in enumerate(feeder.node_bus)
                ],
                dtype=np.int64,
            )

    def set_slack_voltage(self, vm_pu: float) -> None:
        """Set the voltage set point of every external grid."""
        self.net.ext_grid["vm_pu"] = float(vm_pu)

    def run(
        self, p_kw: npt.ArrayLike | None = None, q_kvar: npt.ArrayLike | None = None
    ) -> PowerFlowResult:
        """Run the power flow; ``p_kw`` / ``q_kvar`` (N,) net consumption per node."""
        feeder = self.feeder
        if self._replaced:
            p, q = _check_injections(feeder, p_kw, q_kvar)
            self.net.load.loc[self._load_idx, "p_mw"] = p / 1000.0
            self.net.load.loc[self._load_idx, "q_mvar"] = q / 1000.0
        elif p_kw is not None or q_kvar is not None:
            problems = Problems(subject="power flow")
            problems.add(
                "p_kw",
                "this runner keeps the net's own loads; build it with "
                "replace_injections=True to pass injections",
            )
            problems.raise_if_any()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._pp.runpp(self.net, numba=False, init="auto")
        except self._pp.LoadflowNotConverged:
            return _failed(feeder, self.net)
        return _collect(feeder, self.net)

    def run_interval(
        self, p_kw: npt.ArrayLike, q_kvar: npt.ArrayLike | None = None
    ) -> PowerFlowResult:
        """One interval's power flow (:class:`IntervalPowerFlow`); needs ``replace_injections``."""
        return self.run(p_kw, q_kvar)


def run_powerflow(
    feeder: Feeder, p_kw: npt.ArrayLike | None = None, q_kvar: npt.ArrayLike | None = None
) -> PowerFlowResult:
    """Run an AC power flow (pandapower Newton-Raphson, ``numba=False``) on the feeder.

    Parameters
    ----------
    feeder : Feeder
        The feeder; its net is copied, never changed.
    p_kw, q_kvar : (N,) float, optional
        Net consumption per node (positive = consumption, negative = injection). When either is
        given, the net's loads and generators are replaced by one load per node with these
        values (a missing one of the two is taken as zero). Without both, the net's own loads
        and generators are used.

    Returns
    -------
    PowerFlowResult
        ``converged`` is False (and the numbers NaN) when Newton-Raphson does not converge.

    Raises
    ------
    ValidationError
        Injections of the wrong length or not finite.

    """
    replace = p_kw is not None or q_kvar is not None
    if replace:
        _check_injections(feeder, p_kw, q_kvar)
    runner = PowerFlowRunner(feeder, replace_injections=replace)
    return runner.run(p_kw, q_kvar) if replace else runner.run()


def _check_injections(
    feeder: Feeder, p_kw: npt.ArrayLike | None, q_kvar: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray]:
    problems = Problems(subject="power flow injections")
    n = feeder.n_nodes
    out = []
    for name, value in (("p_kw", p_kw), ("q_kvar", q_kvar)):
        arr = np.zeros(n) if value is None else np.asarray(value, dtype=np.float64)
        if arr.shape != (n,):
            problems.add(name, f"needs shape ({n},) (one value per node), got {arr.shape}")
            arr = np.zeros(n)
        else:
            problems.check(~np.isfinite(arr), name, "must be finite")
        out.append(arr)
    problems.raise_if_any()
    return out[0], out[1]


def _failed(feeder: Feeder, net: Any) -> PowerFlowResult:
    nan_n = np.full(feeder.n_nodes, np.nan)
    nan_b = np.full(feeder.n_branches, np.nan)
    return PowerFlowResult(
        converged=False,
        losses_kw=np.nan,
        vm_pu=nan_n,
        vmin_pu=np.nan,
        vmin_bus=-1,
        vmax_pu=np.nan,
        vmax_bus=-1,
        p_slack_kw=np.nan,
        q_slack_kvar=np.nan,
        line_index=np.asarray(net.line.index, dtype=np.int64),
        line_loading_pct=np.full(len(net.line), np.nan),
        max_line_loading_pct=np.nan,
        max_loading_line=-1,
        trafo_index=np.asarray(net.trafo.index, dtype=np.int64),
        trafo_loading_pct=np.full(len(net.trafo), np.nan),
        max_trafo_loading_pct=np.nan,
        branch_loading_pct=nan_b,
        branch_p_kw=nan_b,
        branch_q_kvar=nan_b.copy(),
        branch_i_from_ka=nan_b.copy(),
        branch_i_to_ka=nan_b.copy(),
    )


def _collect(feeder: Feeder, net: Any) -> PowerFlowResult:
    vm = net.res_bus["vm_pu"].reindex(feeder.node_bus).to_numpy(dtype=np.float64)
    losses = float(net.res_line["pl_mw"].sum()) if len(net.line) else 0.0
    if len(net.trafo):
        losses += float(net.res_trafo["pl_mw"].sum())
    nb = feeder.n_branches
    branch_p = np.zeros(nb)
    branch_q = np.zeros(nb)
    i_from = np.full(nb, np.nan)
    i_to = np.full(nb, np.nan)
    rated = feeder.branch_rated
    loadings: dict[str, FloatArray] = {}
    for table, mapping, from_col, res, ends in (
        ("line", feeder.line_branch, "from_bus", "res_line", ("from", "to")),
        ("trafo", feeder.trafo_branch, "hv_bus", "res_trafo", ("hv", "lv")),
    ):
        element_loading = np.full(len(net[table]), np.nan)
        if mapping:
            elements = np.fromiter(mapping.keys(), dtype=np.int64)
            branches = np.fromiter(mapping.values(), dtype=np.int64)
            result = net[res].loc[elements]
            position = net[table].index.get_indexer(elements)
            element_loading[position] = np.where(
                rated[branches], result["loading_percent"].to_numpy(dtype=np.float64), np.nan
            )
            first_bus = net[table].loc[elements, from_col].to_numpy(dtype=np.int64)
            at_from = np.asarray(feeder.branch_from)[branches] == _node_lookup(feeder)[first_bus]
            a, b = ends
            p = np.where(at_from, result[f"p_{a}_mw"], result[f"p_{b}_mw"]) * 1000.0
            q = np.where(at_from, result[f"q_{a}_mvar"], result[f"q_{b}_mvar"]) * 1000.0
            ia = result[f"i_{a}_ka"].to_numpy(dtype=np.float64)
            ib = result[f"i_{b}_ka"].to_numpy(dtype=np.float64)
            np.add.at(branch_p, branches, p)
            np.add.at(branch_q, branches, q)
            for target, values in (
                (i_from, np.where(at_from, ia, ib)),
                (i_to, np.where(at_from, ib, ia)),
            ):
                hit = np.isnan(target[branches])
                target[branches[hit]] = 0.0
                np.add.at(target, branches, values)
        loadings[table] = element_loading
    line_loading, trafo_loading = loadings["line"], loadings["trafo"]
    line_idx = np.asarray(net.line.index, dtype=np.int64)
    trafo_idx = np.asarray(net.trafo.index, dtype=np.int64)
    return _converged_result(
        vm=vm,
        losses_kw=losses * 1000.0,
        p_slack_kw=float(net.res_ext_grid["p_mw"].sum()) * 1000.0,
        q_slack_kvar=float(net.res_ext_grid["q_mvar"].sum()) * 1000.0,
        line_index=line_idx,
        line_loading_pct=line_loading,
        trafo_index=trafo_idx,
        trafo_loading_pct=trafo_loading,
        branch_loading_pct=branch_loading_pct(feeder, i_from, i_to),
        branch_p_kw=branch_p,
        branch_q_kvar=branch_q,
        branch_i_from_ka=i_from,
        branch_i_to_ka=i_to,
    )


def _converged_result(
    *,
    vm: FloatArray,
    line_index: IntArray,
    line_loading_pct: FloatArray,
    trafo_loading_pct: FloatArray,
    **fields: Any,
) -> PowerFlowResult:
    """A converged power flow's result, its extremes (voltages, most loaded line) derived once.

    Both engines (pandapower here, power-grid-model in :mod:`transactive.network.pgm`) build
    their results through it, so they report the same summaries the same way.
    """
    if np.isfinite(line_loading_pct).any():
        k = int(np.nanargmax(line_loading_pct))
        max_line, max_line_idx = float(line_loading_pct[k]), int(line_index[k])
    else:
        max_line, max_line_idx = np.nan, -1
    imin, imax = int(np.nanargmin(vm)), int(np.nanargmax(vm))
    finite_trafo = np.isfinite(trafo_loading_pct).any()
    return PowerFlowResult(
        converged=True,
        vm_pu=vm,
        vmin_pu=float(vm[imin]),
        vmin_bus=imin,
        vmax_pu=float(vm[imax]),
        vmax_bus=imax,
        line_index=line_index,
        line_loading_pct=line_loading_pct,
        max_line_loading_pct=max_line,
        max_loading_line=max_line_idx,
        trafo_loading_pct=trafo_loading_pct,
        max_trafo_loading_pct=float(np.nanmax(trafo_loading_pct)) if finite_trafo else np.nan,
        **fields,
    )


def _node_lookup(feeder: Feeder) -> IntArray:
    """Array from pandapower bus index to feeder node (-1 for buses that are no node)."""
    buses = np.fromiter(feeder.bus_node.keys(), dtype=np.int64, count=len(feeder.bus_node))
    nodes = np.fromiter(feeder.bus_node.values(), dtype=np.int64, count=len(feeder.bus_node))
    lookup = np.full(int(buses.max()) + 1, -1, dtype=np.int64)
    lookup[buses] = nodes
    return lookup


def branch_end_flows(
    feeder: Feeder, net: Any
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Power entering every branch at ``branch_from`` and leaving it at ``branch_to`` (kW, kvar).

    Read from a pandapower net that has just been solved (``PowerFlowRunner.net``); parallel
    elements merged into one branch add up. Used by loss allocation and the security check.
    """
    nb = feeder.n_branches
    pf, qf, pt, qt = (np.zeros(nb) for _ in range(4))
    for table, mapping, a_col, cols in (
        (
            "line",
            feeder.line_branch,
            "from_bus",
            ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"),
        ),
        ("trafo", feeder.trafo_branch, "hv_bus", ("p_hv_mw", "q_hv_mvar", "p_lv_mw", "q_lv_mvar")),
    ):
        if not mapping:
            continue
        elements = np.fromiter(mapping.keys(), dtype=np.int64)
        branches = np.fromiter(mapping.values(), dtype=np.int64)
        res = net[f"res_{table}"].loc[elements]
        first_bus = net[table].loc[elements, a_col].to_numpy(dtype=np.int64)
        first_node = _node_lookup(feeder)[first_bus]
        at_from = np.asarray(feeder.branch_from)[branches] == first_node
        p_a, q_a, p_b, q_b = (res[c].to_numpy(dtype=np.float64) * 1000.0 for c in cols)
        # pandapower: power entering the element at each end
        np.add.at(pf, branches, np.where(at_from, p_a, p_b))
        np.add.at(qf, branches, np.where(at_from, q_a, q_b))
        np.add.at(pt, branches, -np.where(at_from, p_b, p_a))
        np.add.at(qt, branches, -np.where(at_from, q_b, q_a))
    return pf, qf, pt, qt


def _checked_day_injections(
    problems: Problems, feeder: Feeder, p_kw: npt.ArrayLike, q_kvar: npt.ArrayLike | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(T, N) injections of a day of intervals, their problems added to ``problems``.

    A missing ``q_kvar`` is zero; NaN and infinite values are named by interval.
    """
    n = feeder.n_nodes
    p = np.asarray(p_kw, dtype=np.float64)
    q = np.zeros_like(p) if q_kvar is None else np.asarray(q_kvar, dtype=np.float64)
    for name, arr in (("p_kw", p), ("q_kvar", q)):
        if arr.ndim != 2 or arr.shape[1] != n:
            problems.add(
                name,
                f"needs shape (T, {n}): one row per interval, one column per node; got {arr.shape}",
            )
        elif arr.shape[0] == 0:
            problems.add(name, "needs at least one interval (row)")
        else:
            problems.check(np.isnan(arr).any(axis=1), name, "is not a number (NaN) in interval")
            problems.check(np.isinf(arr).any(axis=1), name, "is infinite in interval")
    if not problems and p.shape != q.shape:
        problems.add("q_kvar", f"must have the shape of p_kw {p.shape}, got {q.shape}")
    return p, q
