"""Batch AC power flow of a feeder with power-grid-model: many intervals in one call.

:class:`BatchPowerFlow` converts a feeder's pandapower net once into a power-grid-model model
(Xiang et al., "power-grid-model", Alliander, `<https://github.com/PowerGridModel>`_; the
conversion is power-grid-model-io's ``PandaPowerConverter``), replaces the net's loads and
generators by one constant-power load per feeder node (as
:class:`~transactive.network.powerflow.PowerFlowRunner` does with ``replace_injections=True``),
and solves ``T`` intervals of node injections as one batch of Newton-Raphson power flows
(:meth:`BatchPowerFlow.run`, time first), or one interval cheaply
(:meth:`BatchPowerFlow.run_interval`, a :class:`~transactive.network.powerflow.PowerFlowResult`
like pandapower's runner gives).

pandapower stays the way feeders come in and the reference: the tests compare this runner with
``pandapower.runpp`` on the same injections. What is made to agree with it:

* **Source.** pandapower's external grid is an ideal voltage source; power-grid-model's source
  has a short-circuit power (default 10 GVA), whose impedance lowers the voltages (by 3e-4 pu at
  the weakest bus of ``case33bw``). The source here gets :data:`SOURCE_SK_VA` (1e15 VA), which
  makes the difference about 1e-9 pu.
* **Transformer taps.** pandapower 3 changes the ratio only for tap changers of type ``Ratio``
  or ``Symmetrical`` (as :mod:`transactive.network.feeders` derives the ratio); other
  transformers (e.g. SimBench's, with no type) are converted at their neutral tap.
* **Thermal limit.** Branch loading is
  :func:`~transactive.network.powerflow.branch_loading_pct` of the branch end currents: current
  over rated current at the worse end, pandapower's ``loading_percent``; NaN when unrated.
* **Losses** are the series and shunt losses of lines and two-winding transformers, the sum of
  the power entering both ends (pandapower's ``pl_mw``).

Non-convergence is per interval: the batch continues past a failed interval, whose numbers are
NaN, ``converged`` False and ``failure`` power-grid-model's message.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from transactive._cache import cached_build
from transactive.errors import Problems, ValidationError
from transactive.network.feeders import Feeder
from transactive.network.powerflow import (
    PowerFlowResult,
    _checked_day_injections,
    _converged_result,
    _node_lookup,
    branch_loading_pct,
)

if TYPE_CHECKING:
    from power_grid_model import ComponentType

__all__ = ["SOURCE_SK_VA", "BatchFlowResult", "BatchPowerFlow"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Short-circuit power given to every source (VA): large enough that the source is ideal, as
#: pandapower's external grid, to about 1e-9 pu on the feeders tested; small enough to keep the
#: admittance matrix well conditioned.
SOURCE_SK_VA = 1e15

#: Injection tables replaced by one load per node.
_REPLACED = ("load", "sgen", "gen", "storage", "motor", "asymmetric_load", "asymmetric_sgen")
#: Elements power-grid-model (or its pandapower converter) cannot model.
_UNSUPPORTED = ("ward", "xward", "impedance", "dcline", "svc", "tcsc", "ssc", "vsc")
#: Zero-sequence columns: a symmetric power flow does not use them (dropped so the converter
#: has nothing to warn about).
_ZERO_SEQUENCE = {
    "ext_grid": ("r0x0_max", "x0x_max"),
    "trafo": ("vk0_percent", "vkr0_percent", "mag0_percent", "mag0_rx", "si0_hv_partial"),
}
_SQRT3 = float(np.sqrt(3.0))


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class BatchFlowResult:
    """Power flows of ``T`` intervals, time first; arrays are read-only.

    Attributes
    ----------
    converged : (T,) bool
        Newton-Raphson converged in the interval (when not, its numbers are NaN).
    failure : tuple of str
        power-grid-model's message for every interval that did not converge (``""`` otherwise).
    vm_pu : (T, N) float
        Node voltage magnitudes, feeder node numbering.
    branch_loading_pct : (T, B) float
        Current over rated current at the worse end, per cent (pandapower's ``loading_percent``);
        NaN for unrated branches and branches without a current (impedance switches).
    branch_i_from_ka, branch_i_to_ka : (T, B) float
        Current at the ``branch_from`` and ``branch_to`` ends (parallel elements added).
    branch_p_kw, branch_q_kvar : (T, B) float
        Power entering every branch at its ``branch_from`` end.
    losses_kw : (T,) float
        Active losses of lines and two-winding transformers.
    p_slack_kw, q_slack_kvar : (T,) float
        Power drawn from the source(s), the substation import.

    """

    converged: BoolArray
    failure: tuple[str, ...]
    vm_pu: FloatArray
    branch_loading_pct: FloatArray
    branch_i_from_ka: FloatArray
    branch_i_to_ka: FloatArray
    branch_p_kw: FloatArray
    branch_q_kvar: FloatArray
    losses_kw: FloatArray
    p_slack_kw: FloatArray
    q_slack_kvar: FloatArray

    @property
    def n_intervals(self) -> int:
        """Number of intervals T."""
        return int(self.converged.size)


class BatchPowerFlow:
    """A feeder converted once to power-grid-model, for batches of AC power flows.

    Parameters
    ----------
    feeder : Feeder
        The feeder; its net is copied, never changed.
    threading : int
        power-grid-model's threading of a batch: ``-1`` sequential (default), ``0`` one thread
        per hardware thread, ``k > 0`` that many threads.
    max_iterations : int
        Newton-Raphson iterations before an interval counts as not converged (pandapower: 10).
    error_tolerance_pu : float
        Largest voltage change (pu) between iterations at convergence.

    Raises
    ------
    ValidationError
        The net holds elements power-grid-model cannot model (wards, impedances, DC lines,
        FACTS devices; run these with pandapower), a transformer whose no-load current is
        below its iron-loss current (``i0_percent < pfe_kw / (10 sn_mva)``), or bad settings.

    Examples
    --------
    Built once per feeder, then one call per day, or per interval::

        flow = BatchPowerFlow(load_feeder("case33bw"))
        day = flow.run(p_kw, q_kvar)  # (T, N) each -> BatchFlowResult, time first
        one = flow.run_interval(p_kw[0], q_kvar[0])  # (N,) each -> PowerFlowResult

    """

    def __init__(
        self,
        feeder: Feeder,
        *,
        threading: int = -1,
        max_iterations: int = 20,
        error_tolerance_pu: float = 1e-8,
    ) -> None:
        from power_grid_model import (  # noqa: PLC0415
            ComponentType,
            DatasetType,
            PowerGridModel,
            initialize_array,
        )

        problems = Problems(subject=f"power-grid-model of feeder {feeder.name!r}")
        if isinstance(threading, bool) or not isinstance(threading, int):
            problems.add("threading", f"must be a whole number, got {threading!r}")
        if (
            isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or (max_iterations < 1)
        ):
            problems.add("max_iterations", f"must be a positive whole number, got {max_iterations}")
        if not (np.isfinite(error_tolerance_pu) and error_tolerance_pu > 0):
            problems.add("error_tolerance_pu", f"must be positive, got {error_tolerance_pu}")
        try:
            plan = _model_plan(feeder)
        except ValidationError as exc:  # the net's problems, said with the settings'
            problems.found.extend(exc.problems)
        problems.raise_if_any()

        self.feeder = feeder
        self._ct = ComponentType
        self._dt = DatasetType
        self._init = initialize_array
        self._threading = int(threading)
        self._max_iterations = int(max_iterations)
        self._tolerance = float(error_tolerance_pu)
        data = plan.data
        loads = data[ComponentType.sym_load]
        n = feeder.n_nodes
        self._model = PowerGridModel(data, system_frequency=plan.f_hz)
        self._node_pos = self._model.get_indexer(ComponentType.node, loads["node"])
        # one interval (run_interval): a copy of the model whose loads are updated in place,
        # solved as a single calculation (no batch datasets to build per call)
        self._single: PowerGridModel | None = None
        self._single_update = initialize_array(DatasetType.update, ComponentType.sym_load, n)
        self._single_update["id"] = loads["id"]
        self._errors: tuple[type[Exception], ...] = (_pgm_error(),)
        self._has = plan.has
        self._outputs: dict[ComponentType, list[str]] = {ComponentType.node: ["u_pu"]}
        ends = ["i_from", "i_to", "p_from", "p_to", "q_from", "q_to"]
        for kind in (ComponentType.line, ComponentType.transformer):
            if self._has[kind]:
                self._outputs[kind] = ends
        if self._has[ComponentType.source]:
            self._outputs[ComponentType.source] = ["p", "q"]
        self._single_outputs: dict[ComponentType, None] = dict.fromkeys(self._outputs)
        self._line_index = plan.line_index
        self._trafo_index = plan.trafo_index
        self._maps = plan.maps
        self._row_order = plan.row_order
        self._element_rating = plan.element_rating
        self._covered = plan.covered

    @property
    def n_nodes(self) -> int:
        """Number of feeder nodes N (columns of the injections)."""
        return self.feeder.n_nodes

    def run(self, p_kw: npt.ArrayLike, q_kvar: npt.ArrayLike | None = None) -> BatchFlowResult:
        """Solve every interval (row) as one batch of power flows.

        Parameters
        ----------
        p_kw, q_kvar : (T, N) float
            Net consumption per interval and node (positive = consumption); a missing
            ``q_kvar`` is zero.

        Returns
        -------
        BatchFlowResult
            Time-first voltages, loadings, currents, losses and substation import; intervals
            that did not converge are NaN and named in ``converged`` / ``failure``.

        Raises
        ------
        ValidationError
            Arrays not ``(T, N)``, of different shapes, no interval, NaN or infinite values
            (with the intervals where they are).

        """
        p, q = _checked_batch(self.feeder, p_kw, q_kvar)
        return self._solve(p, q)

    def run_interval(
        self, p_kw: npt.ArrayLike, q_kvar: npt.ArrayLike | None = None
    ) -> PowerFlowResult:
        """Solve one interval; the result type of pandapower's :class:`PowerFlowRunner`.

        Parameters
        ----------
        p_kw, q_kvar : (N,) float
            Net consumption per node (a missing ``q_kvar`` is zero).

        Returns
        -------
        PowerFlowResult
            As :meth:`PowerFlowRunner.run` gives it (``converged`` False and NaN numbers when
            Newton-Raphson does not converge).

        Raises
        ------
        ValidationError
            Injections of the wrong length or not finite.

        """
        n = self.feeder.n_nodes
        problems = Problems(subject="power flow injections")
        arrays = []
        for name, value in (("p_kw", p_kw), ("q_kvar", q_kvar)):
            arr = np.zeros(n) if value is None else np.asarray(value, dtype=np.float64)
            if arr.shape != (n,):
                problems.add(name, f"needs shape ({n},) (one value per node), got {arr.shape}")
            else:
                problems.check(~np.isfinite(arr), name, "must be finite")
            arrays.append(arr)
        problems.raise_if_any()
        return self._solve_one(arrays[0], arrays[1])

    # ------------------------------------------------------------------ internals

    def _solve(self, p: FloatArray, q: FloatArray) -> BatchFlowResult:
        """One batch call of every interval (row) of ``p``, ``q``."""
        ct = self._ct
        t_count, nb = p.shape[0], self.feeder.n_branches
        update = self._init(self._dt.update, ct.sym_load, (t_count, p.shape[1]))
        # ids left empty: the update lists every load in input order (power-grid-model's
        # optional-id batch update)
        update["p_specified"] = p * 1000.0
        update["q_specified"] = q * 1000.0
        out = self._model.calculate_power_flow(
            update_data={ct.sym_load: update},
            threading=self._threading,
            max_iterations=self._max_iterations,
            error_tolerance=self._tolerance,
            output_component_types=cast(Any, self._outputs),
            continue_on_batch_error=True,
        )
        converged = np.ones(t_count, dtype=bool)
        failure = [""] * t_count
        error = self._model.batch_error
        if error is not None:
            for scenario, message in zip(error.failed_scenarios, error.error_messages, strict=True):
                converged[int(scenario)] = False
                failure[int(scenario)] = str(message)
        bad = ~converged

        vm = np.asarray(out[ct.node]["u_pu"], dtype=np.float64)[:, self._node_pos]
        i_from = np.zeros((t_count, nb))
        i_to = np.zeros((t_count, nb))
        p_from = np.zeros((t_count, nb))
        q_from = np.zeros((t_count, nb))
        losses = np.zeros(t_count)
        for kind, (matrix, at_from, _rows) in self._maps.items():
            columns = cast(dict[str, FloatArray], out[kind])
            res = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
            ia, ib = res["i_from"] / 1000.0, res["i_to"] / 1000.0
            i_from += np.where(at_from, ia, ib) @ matrix
            i_to += np.where(at_from, ib, ia) @ matrix
            p_from += np.where(at_from, res["p_from"], res["p_to"]) @ matrix / 1000.0
            q_from += np.where(at_from, res["q_from"], res["q_to"]) @ matrix / 1000.0
            losses += (res["p_from"] + res["p_to"]).sum(axis=1) / 1000.0
        i_from[:, ~self._covered] = np.nan  # impedance switches: no current read
        i_to[:, ~self._covered] = np.nan
        if self._has[ct.source]:
            p_slack = np.asarray(out[ct.source]["p"], dtype=np.float64).sum(axis=1) / 1000.0
            q_slack = np.asarray(out[ct.source]["q"], dtype=np.float64).sum(axis=1) / 1000.0
        else:
            p_slack = np.full(t_count, np.nan)
            q_slack = np.full(t_count, np.nan)
        loading = branch_loading_pct(self.feeder, i_from, i_to)
        for arr in (vm, loading, i_from, i_to, p_from, q_from):
            arr[bad] = np.nan
        for arr1 in (losses, p_slack, q_slack):
            arr1[bad] = np.nan
        return BatchFlowResult(
            converged=_ro(converged),
            failure=tuple(failure),
            vm_pu=_ro(vm),
            branch_loading_pct=_ro(loading),
            branch_i_from_ka=_ro(i_from),
            branch_i_to_ka=_ro(i_to),
            branch_p_kw=_ro(p_from),
            branch_q_kvar=_ro(q_from),
            losses_kw=_ro(losses),
            p_slack_kw=_ro(p_slack),
            q_slack_kvar=_ro(q_slack),
        )

    def _solve_one(self, p: FloatArray, q: FloatArray) -> PowerFlowResult:
        """One interval as a single calculation; the numbers of :meth:`_solve` bit for bit.

        The loads of a copy of the model are updated in place and the copy is solved without
        batch datasets (about 0.35 ms against 0.7 ms for a batch of one on ``case33bw``). The
        numbers are those :meth:`run` gives for this one interval (which is what this method ran
        before), to the last bit: the same Newton-Raphson on the same model, the element results
        summed into branches in the same order (:func:`_add_to_branches`) with the same
        operations (``tests/network/test_pgm_speedpath.py`` checks it).
        """
        ct = self._ct
        feeder = self.feeder
        nb = feeder.n_branches
        if self._single is None:
            self._single = self._model.copy()
        model = self._single
        update = self._single_update
        update["p_specified"] = p * 1000.0
        update["q_specified"] = q * 1000.0
        model.update(update_data={ct.sym_load: update})
        try:
            out = model.calculate_power_flow(
                max_iterations=self._max_iterations,
                error_tolerance=self._tolerance,
                output_component_types=cast(Any, self._single_outputs),
            )
        except self._errors:
            self._single = None  # a fresh copy for the next interval
            return self._failed_one()
        vm = np.asarray(out[ct.node]["u_pu"], dtype=np.float64)[self._node_pos]
        i_from = np.zeros(nb)
        i_to = np.zeros(nb)
        p_from = np.zeros(nb)
        q_from = np.zeros(nb)
        losses = 0.0
        elements: dict[Any, dict[str, FloatArray]] = {}
        for kind, (_matrix, at_from, _rows) in self._maps.items():
            table = out[kind]
            res = {k: np.asarray(table[k], dtype=np.float64) for k in _ELEMENT_ENDS}
            elements[kind] = res
            rows, branches = self._row_order[kind]
            ia, ib = res["i_from"] / 1000.0, res["i_to"] / 1000.0
            i_from += _add_to_branches(np.where(at_from, ia, ib), rows, branches, nb)
            i_to += _add_to_branches(np.where(at_from, ib, ia), rows, branches, nb)
            p_end = np.where(at_from, res["p_from"], res["p_to"])
            q_end = np.where(at_from, res["q_from"], res["q_to"])
            p_from += _add_to_branches(p_end, rows, branches, nb) / 1000.0
            q_from += _add_to_branches(q_end, rows, branches, nb) / 1000.0
            losses += float((res["p_from"] + res["p_to"]).sum() / 1000.0)
        i_from[~self._covered] = np.nan  # impedance switches: no current read
        i_to[~self._covered] = np.nan
        if self._has[ct.source]:
            p_slack = float(np.asarray(out[ct.source]["p"], dtype=np.float64).sum() / 1000.0)
            q_slack = float(np.asarray(out[ct.source]["q"], dtype=np.float64).sum() / 1000.0)
        else:
            p_slack = q_slack = np.nan
        loading = branch_loading_pct(feeder, i_from, i_to)
        line_loading, trafo_loading = self._element_loadings(elements, converged=True)
        return _converged_result(
            vm=vm,
            losses_kw=losses,
            p_slack_kw=p_slack,
            q_slack_kvar=q_slack,
            line_index=self._line_index,
            line_loading_pct=line_loading,
            trafo_index=self._trafo_index,
            trafo_loading_pct=trafo_loading,
            branch_loading_pct=loading,
            branch_p_kw=p_from,
            branch_q_kvar=q_from,
            branch_i_from_ka=i_from,
            branch_i_to_ka=i_to,
        )

    def _failed_one(self) -> PowerFlowResult:
        """The result of an interval that did not converge (NaN numbers, as pandapower's)."""
        line_loading, trafo_loading = self._element_loadings({}, converged=False)
        nan_b = np.full(self.feeder.n_branches, np.nan)
        return PowerFlowResult(
            converged=False,
            losses_kw=np.nan,
            vm_pu=np.full(self.feeder.n_nodes, np.nan),
            vmin_pu=np.nan,
            vmin_bus=-1,
            vmax_pu=np.nan,
            vmax_bus=-1,
            p_slack_kw=np.nan,
            q_slack_kvar=np.nan,
            line_index=self._line_index,
            line_loading_pct=line_loading,
            max_line_loading_pct=np.nan,
            max_loading_line=-1,
            trafo_index=self._trafo_index,
            trafo_loading_pct=trafo_loading,
            max_trafo_loading_pct=np.nan,
            branch_loading_pct=nan_b,
            branch_p_kw=nan_b.copy(),
            branch_q_kvar=nan_b.copy(),
            branch_i_from_ka=nan_b.copy(),
            branch_i_to_ka=nan_b.copy(),
        )

    def _element_loadings(
        self, elements: dict[Any, dict[str, FloatArray]], *, converged: bool
    ) -> tuple[FloatArray, FloatArray]:
        """Loading of every line and transformer of the net's tables (pandapower's order).

        ``elements`` holds one interval's element results (1-D columns); NaN where unrated,
        everywhere when the flow did not converge.
        """
        ct = self._ct
        per_table: dict[Any, FloatArray] = {}
        for kind, size in (
            (ct.line, self._line_index.size),
            (ct.transformer, self._trafo_index.size),
        ):
            loading = np.full(size, np.nan)
            if kind in elements and converged:
                rows, rated_a, rated_b, _ = self._element_rating[kind]
                res = elements[kind]
                with np.errstate(invalid="ignore", divide="ignore"):
                    loading = 100.0 * np.fmax(
                        res["i_from"][rows] / 1000.0 / rated_a,
                        res["i_to"][rows] / 1000.0 / rated_b,
                    )
                loading[~np.isfinite(rated_a)] = np.nan  # unrated, as pandapower's runner
            per_table[kind] = loading
        return per_table[ct.line], per_table[ct.transformer]


#: The element results a branch is built from (power-grid-model's names, A, W and var).
_ELEMENT_ENDS = ("i_from", "i_to", "p_from", "p_to", "q_from", "q_to")


def _pgm_error() -> type[Exception]:
    """power-grid-model's calculation error (a non-converged interval raises it)."""
    from power_grid_model.errors import (  # type: ignore[attr-defined]  # noqa: PLC0415
        PowerGridError,
    )

    return PowerGridError


def _add_to_branches(values: FloatArray, rows: IntArray, branches: IntArray, nb: int) -> FloatArray:
    """Element values summed into their branches: ``values @ matrix`` of :meth:`_solve`.

    ``matrix`` is the 0/1 element-to-branch matrix; scipy's product starts every branch at 0
    and adds ``1 * value`` of its elements in ascending row order, which is what this does
    (``rows`` ascending, ``branches`` the branch of each), to the last bit.
    """
    out = np.zeros(nb)
    np.add.at(out, branches, values[rows])
    return out


@dataclass(frozen=True, eq=False)
class _ModelPlan:
    """What :class:`BatchPowerFlow` builds from a feeder's net, picklable (kept in the cache).

    ``data`` is power-grid-model's input (the converter's, with one load per feeder node);
    ``maps``, ``row_order`` and ``element_rating`` map the line and transformer rows to the
    feeder's branches, per component type (see :class:`BatchPowerFlow`).
    """

    data: dict[Any, npt.NDArray[Any]]
    f_hz: float
    has: dict[Any, bool]
    line_index: IntArray
    trafo_index: IntArray
    maps: dict[Any, tuple[Any, BoolArray, IntArray]]
    row_order: dict[Any, tuple[IntArray, IntArray]]
    element_rating: dict[Any, tuple[IntArray, FloatArray, FloatArray, IntArray]]
    covered: BoolArray


def _model_plan(feeder: Feeder) -> _ModelPlan:
    """The feeder's :class:`_ModelPlan`, kept in the user's cache under the feeder's content.

    Deriving it converts the pandapower net (power-grid-model-io's converter, which imports
    pandapower: about 2 s); a feeder read from the cache whose plan is kept there too gives a
    power-grid-model without pandapower ever being imported. The key is the feeder's
    :meth:`~transactive.network.feeders.Feeder.content_key`, the source of the code that derives
    it and the versions of the packages the conversion runs on.
    """
    import importlib.metadata  # noqa: PLC0415

    versions = "-".join(
        f"{package}{importlib.metadata.version(package)}"
        for package in ("power-grid-model", "power-grid-model-io", "pandapower")
    )
    key = hashlib.sha256(
        f"{feeder.content_key()}-{_module_digest()}-{versions}".encode()
    ).hexdigest()[:32]
    return cached_build("pgm", f"plan-{key}", lambda: _derived_plan(feeder))


@functools.cache
def _module_digest() -> str:
    """A digest of the code that derives a plan (this module and the node lookup's)."""
    from transactive.network import powerflow  # noqa: PLC0415

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(Path(powerflow.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _derived_plan(feeder: Feeder) -> _ModelPlan:
    """:func:`_model_plan` computed: the net converted, its elements mapped to branches."""
    from power_grid_model import (  # noqa: PLC0415
        ComponentType,
        DatasetType,
        PowerGridModel,
        initialize_array,
    )
    from power_grid_model_io.converters import PandaPowerConverter  # noqa: PLC0415

    problems = Problems(subject=f"power-grid-model of feeder {feeder.name!r}")
    net = _prepared_net(feeder, problems)
    problems.raise_if_any()
    converter = PandaPowerConverter(system_frequency=float(net.f_hz), log_level=logging.ERROR)
    data, _ = converter.load_input_data(net)
    data = {
        k: v for k, v in data.items() if k not in (ComponentType.sym_load, ComponentType.sym_gen)
    }
    bus_id: Any = converter.idx[("bus", None)]
    n = feeder.n_nodes
    next_id = 1 + max((int(a["id"].max()) for a in data.values() if a.size), default=0)
    loads = initialize_array(DatasetType.input, ComponentType.sym_load, n)
    loads["id"] = np.arange(next_id, next_id + n)
    loads["node"] = bus_id.to_numpy()[bus_id.index.get_indexer(np.asarray(feeder.node_bus))]
    loads["status"] = 1
    loads["type"] = 0  # constant power
    loads["p_specified"] = 0.0
    loads["q_specified"] = 0.0
    data[ComponentType.sym_load] = loads
    model = PowerGridModel(data, system_frequency=float(net.f_hz))
    has = {
        kind: kind in data and data[kind].size > 0
        for kind in (ComponentType.line, ComponentType.transformer, ComponentType.source)
    }
    # element -> branch maps (parallel elements of one branch add up), orientation per element
    node_of = _node_lookup(feeder)
    maps: dict[Any, tuple[Any, BoolArray, IntArray]] = {}
    # per kind, the element rows of branches in ascending row order and their branches: the
    # order in which ``values @ matrix`` adds the elements of a branch (see _add_to_branches)
    row_order: dict[Any, tuple[IntArray, IntArray]] = {}
    element_rating: dict[Any, tuple[IntArray, FloatArray, FloatArray, IntArray]] = {}
    nb = feeder.n_branches
    covered = np.zeros(nb, dtype=bool)
    for kind, table, mapping, from_col in (
        (ComponentType.line, "line", feeder.line_branch, "from_bus"),
        (ComponentType.transformer, "trafo", feeder.trafo_branch, "hv_bus"),
    ):
        if not has[kind]:
            continue
        element_ids: Any = converter.idx[(table, None)]
        n_rows = int(data[kind].size)
        elements = np.fromiter(mapping.keys(), dtype=np.int64, count=len(mapping))
        branches = np.fromiter(mapping.values(), dtype=np.int64, count=len(mapping))
        rows = model.get_indexer(kind, element_ids.loc[elements].to_numpy())
        first = net[table].loc[elements, from_col].to_numpy(dtype=np.int64)
        at_from = np.zeros(n_rows, dtype=bool)
        at_from[rows] = np.asarray(feeder.branch_from)[branches] == node_of[first]
        matrix = sp.csr_matrix(
            (np.ones(rows.size), (rows, branches)), shape=(n_rows, nb), dtype=np.float64
        )
        maps[kind] = (matrix, at_from, rows)
        order = np.argsort(rows, kind="stable")
        row_order[kind] = (rows[order], branches[order])
        covered[branches] = True
        all_rows = model.get_indexer(kind, element_ids.loc[net[table].index].to_numpy())
        element_rating[kind] = _element_ratings(net, table, all_rows, mapping, feeder)
    return _ModelPlan(
        data=data,
        f_hz=float(net.f_hz),
        has=has,
        line_index=_ro(np.asarray(net.line.index, dtype=np.int64)),
        trafo_index=_ro(np.asarray(net.trafo.index, dtype=np.int64)),
        maps=maps,
        row_order=row_order,
        element_rating=element_rating,
        covered=covered,
    )


def _prepared_net(feeder: Feeder, problems: Problems) -> Any:
    """A copy of the net the converter takes as it is, matched to pandapower's modelling."""
    net = _canonical_object_columns(copy.deepcopy(feeder.net))
    for table in _UNSUPPORTED:
        if table in net and len(net[table]) and bool(net[table]["in_service"].any()):
            rows = [int(i) for i in net[table].index[net[table]["in_service"].astype(bool)]]
            problems.add(
                table,
                "power-grid-model cannot model this element (run the feeder with pandapower)",
                rows,
            )
    for table in _REPLACED:  # one load per node replaces them all
        if table in net and len(net[table]):
            net[table] = net[table].iloc[0:0]
    for table, columns in _ZERO_SEQUENCE.items():
        if table in net:
            net[table] = net[table].drop(columns=[c for c in columns if c in net[table]])
    ext = net.ext_grid
    ext["s_sc_max_mva"] = SOURCE_SK_VA / 1e6
    trafo = net.trafo
    if len(trafo):
        if "vector_group" in trafo and trafo["vector_group"].isna().any():
            # the converter then takes the winding types from the clock (shift_degree)
            trafo = trafo.drop(columns="vector_group")
        if "tap_changer_type" in trafo:
            kinds = trafo["tap_changer_type"].astype(str).to_numpy()
            no_ratio = ~np.isin(kinds, ["Ratio", "Symmetrical"])
            if "tap_neutral" in trafo:
                trafo.loc[no_ratio, "tap_pos"] = trafo.loc[no_ratio, "tap_neutral"]
        i0 = trafo["i0_percent"].to_numpy(dtype=np.float64)
        iron = trafo["pfe_kw"].to_numpy(dtype=np.float64) / (
            10.0 * trafo["sn_mva"].to_numpy(dtype=np.float64)
        )
        problems.check(
            i0 < iron,
            "trafo.i0_percent",
            "no-load current below its iron-loss part pfe_kw / (10 sn_mva): power-grid-model "
            "cannot model it (run the feeder with pandapower)",
            [int(i) for i in trafo.index],
        )
        net.trafo = trafo
    return net


def _canonical_object_columns(net: Any) -> Any:
    """``net`` with every object column's dtype numpy's own ``dtype('O')`` (in place).

    power-grid-model-io's converter tests a column's dtype by identity (``dtype is
    np.dtype("O")``, ``_get_pp_attr``), and a net read back from a pickle (the user's cache)
    holds equal but distinct dtype objects: its ``tap_side`` of ``None`` then reached
    ``np.isnan`` and failed. ``astype(object)`` gives the canonical dtype; values are unchanged.
    """
    import pandas as pd  # noqa: PLC0415

    canonical = np.dtype("O")
    for table in list(net.keys()):
        frame = net[table]
        if not isinstance(frame, pd.DataFrame):
            continue
        columns = [c for c, t in frame.dtypes.items() if t == canonical and t is not canonical]
        if columns:
            frame = frame.copy(deep=False)
            for c in columns:
                frame[c] = frame[c].to_numpy().astype(object)
            net[table] = frame
    return net


def _element_ratings(
    net: Any, table: str, rows: IntArray, mapping: dict[int, int], feeder: Feeder
) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
    """Rated current of every element's two ends (kA; ``inf`` where its branch is unrated).

    pandapower's ``loading_percent``: lines ``max_i_ka · df · parallel`` at both ends;
    transformers ``sn_mva · parallel · df / (√3 vn_kv)`` of each side.
    """
    frame = net[table]
    if table == "line":
        rated = (
            frame["max_i_ka"].to_numpy(dtype=np.float64)
            * frame["df"].to_numpy(dtype=np.float64)
            * frame["parallel"].to_numpy(dtype=np.float64)
        )
        rated_a, rated_b = rated, rated.copy()
    else:
        s = (
            frame["sn_mva"].to_numpy(dtype=np.float64)
            * frame["parallel"].to_numpy(dtype=np.float64)
            * frame["df"].to_numpy(dtype=np.float64)
        )
        rated_a = s / (_SQRT3 * frame["vn_hv_kv"].to_numpy(dtype=np.float64))
        rated_b = s / (_SQRT3 * frame["vn_lv_kv"].to_numpy(dtype=np.float64))
    branch = np.asarray([mapping.get(int(i), -1) for i in frame.index], dtype=np.int64)
    unrated = (branch < 0) | ~np.asarray(feeder.branch_rated)[np.maximum(branch, 0)]
    rated_a = np.where(unrated, np.inf, rated_a)
    rated_b = np.where(unrated, np.inf, rated_b)
    return rows, rated_a, rated_b, branch


def _checked_batch(
    feeder: Feeder, p_kw: npt.ArrayLike, q_kvar: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray]:
    problems = Problems(subject=f"batch power flow of feeder {feeder.name!r}")
    p, q = _checked_day_injections(problems, feeder, p_kw, q_kvar)
    problems.raise_if_any()
    return p, q
