"""Convex optimal power flow of a radial feeder over T periods, with DLMPs from the duals.

Two formulations of the branch flow model are built once per feeder as a cvxpy problem with
``Parameter`` s (disciplined parametrized programming, ``problem.is_dpp()``), and re-solved for
every interval with new prices, loads, flexible-load states and limits:

* ``"socp"``: the second-order-cone relaxation of the branch flow model (DistFlow) of Farivar &
  Low (2013): the equality ``ℓ_k = (P_k² + Q_k²)/v_i`` relaxed to ``ℓ_k v_i ≥ P_k² + Q_k²``;
  solved by Clarabel. The relaxation is exact when every cone is
  tight; the result reports the gap and checks the solution with a pandapower AC power flow.
* ``"lindistflow"``: the linearized DistFlow of Baran & Wu (1989b), losses dropped
  (``ℓ = 0``); a linear program (Clarabel by default, HiGHS on request).

Per unit (the feeder's ``s_base_kva``, squared voltages ``v``), for branch ``k = (i → j)`` with
resistance ``r``, reactance ``x``, off-nominal ratio ``τ`` at the ``i`` end, current squared ``ℓ``
and sending-end flow ``P + jQ``:

* balance at node j (consumption ``p_j + j q_j``; substation injection ``P0 + jQ0`` at the slack;
  shunt admittance ``g_j + j b_j`` from line charging and transformer magnetizing):
  ``Σ_{k→j} (P_k − r_k ℓ_k) − Σ_{j→k} P_k + [j = s] P0 = p_j + g_j v_j`` and
  ``Σ_{k→j} (Q_k − x_k ℓ_k) − Σ_{j→k} Q_k + [j = s] Q0 = q_j − b_j v_j``;
* voltage drop: ``v_j = v_i/τ² − 2 (r P + x Q) + (r² + x²) ℓ``;
* relaxation (SOCP only): ``‖(2P, 2Q, ℓ − v_i/τ²)‖ ≤ ℓ + v_i/τ²``;
* voltage limits: ``v_min² ≤ v ≤ v_max²`` (not at the slack, whose voltage is fixed), and
  optionally ``‖(P0, Q0)‖ ≤ S_sub`` at the substation;
* thermal limits: the branch current against its rated current ``I_max`` (the package's one
  definition, pandapower's ``loading_percent``; ``I_max`` in per unit of the ``branch_to``
  node's current base is ``Feeder.branch_s_max_kva / s_base_kva``). The branch flow model's
  current is ``ℓ = (P² + Q²)/w`` with ``w = v_i/τ²`` (Farivar & Low 2013, eq. (5)), so the
  limit ``ℓ ≤ I_max²`` is ``P² + Q² ≤ I_max² w``:

  - SOCP: exactly that, the rotated cone ``‖(2P, 2Q, I_max² w − 1)‖ ≤ I_max² w + 1``. It
    equals ``ℓ ≤ I_max²`` wherever the relaxation is exact, and its dual enters the
    stationarity of ``P, Q, v`` (so it is priced as congestion below).
  - LinDistFlow (an LP): ``|S| ≤ I_max √w`` made linear twice, both times from the inside, so
    a solution never exceeds the rating in the model: the circle by the inscribed regular
    polygon (``polygon_sides`` sides, at most ``1 − cos(π/k)`` tighter: 1.9 % for 16), and
    ``√w`` (concave) by its chord over ``[W_lo², W_hi²]``, the from-node's voltage limits:
    ``√w ≥ (w + W_lo W_hi)/(W_lo + W_hi)``, at most ``(W_hi − W_lo)²/(4 (W_lo + W_hi))``
    below it (0.5 % of 1 pu for limits 0.9-1.1; exact at the slack, whose voltage is fixed).

  Unrated branches (``Feeder.branch_rated`` False) carry no thermal constraint.

Flexible assets (real power, unity power factor) are one block, :class:`FlexibleAssets`: the
generalized battery of every device's :class:`~transactive.devices.flexibility.Flexibility`
(Hao, Sanandaji, Poolla & Vincent, "Aggregate flexibility of thermostatically controlled
loads", IEEE TPWRS 30(1), 2015, eq. (6)-(8)), which EVs, batteries and thermostatic
populations (through their virtual battery) state alike, at a node each::

    p = baseline + c − d,  c, d ≥ 0,  p_min ≤ c − d ≤ p_max,
    e_{t+1} = ρ e_t + Δt (η_c c_t − d_t / η_d),  e_min ≤ e ≤ e_max.

The cost is the energy bought at the substation at the (time-varying) price plus a cost per kWh
of throughput ``(c + d) Δt`` of every asset (battery wear, or the discomfort of a thermostatic
load's deviation from its baseline).

Arrays are time first: inputs and results are ``(T, N)`` per node, ``(T, B)`` per branch,
``(T, M)`` per asset.

DLMPs and their decomposition
-----------------------------
The DLMP at node j in period t is the dual of its active-power balance, ``π_j = ∂cost/∂p_j``
(reported per kWh). Following the KKT analysis of Papavasiliou, "Analysis of distribution
locational marginal prices", IEEE Trans. Smart Grid 9(5), 4872-4882, 2018, the stationarity
conditions of the network variables (``P0, Q0, P_k, Q_k, v_j`` for j ≠ slack) form, per period, a
square linear system in the balance duals ``π^P, π^Q`` and the voltage-drop duals ``β``::

    P0:   π^P_s                         = c + d_P0
    Q0:   π^Q_s                         = d_Q0
    P_k:  π^P_j − π^P_i − 2 r_k β_k     = d_{P_k}
    Q_k:  π^Q_j − π^Q_i − 2 x_k β_k     = d_{Q_k}
    v_j:  β_{k→j} − Σ_{j→m} β_m / τ_m² + g_j π^P_j − b_j π^Q_j = −d_{v_j}

where ``c`` is the substation energy price and every ``d`` is the gradient of the Lagrangian
terms of the inequality (cone) constraints, which fall into three classes: the relaxation
cones (losses), the thermal limits (congestion) and the voltage limits (voltage). The system is
linear, so solving it once for each class's right-hand side splits every DLMP into energy +
loss + congestion + voltage components that add up to the balance dual exactly (up to the
solver's tolerance; ``Dlmp.residual`` reports the difference to the dual cvxpy returns). The
energy component is the substation price at every node (with shunts, the part of the price
term's solution that varies along the feeder is the marginal shunt loss and is counted as loss);
with LinDistFlow and no shunt conductance the loss component is zero.

References
----------
M. Farivar and S. H. Low, "Branch flow model: relaxations and convexification - Part I",
IEEE Trans. Power Systems 28(3), 2554-2564, 2013.
M. E. Baran and F. F. Wu, "Optimal sizing of capacitors placed on a radial distribution
system", IEEE Trans. Power Delivery 4(1), 735-743, 1989 (the simplified DistFlow).
A. Papavasiliou, "Analysis of distribution locational marginal prices", IEEE Trans. Smart Grid
9(5), 4872-4882, 2018.

"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from transactive.devices.base import Horizon
from transactive.devices.flexibility import Flexibility, FlexiblePopulation
from transactive.errors import Problems, ValidationError
from transactive.network.feeders import Feeder
from transactive.network.powerflow import PowerFlowRunner
from transactive.weather import WeatherSample

__all__ = [
    "AcCheck",
    "Dlmp",
    "FlexibleAssets",
    "Formulation",
    "OpfModel",
    "OpfResult",
    "solve_opf",
]


def _cvxpy() -> Any:
    """The cvxpy module, imported on first use.

    It costs about a second, and only an OPF needs it: a simulation that never solves one, or
    ``import transactive.network``, does not pay it. Typed ``Any``: cvxpy ships partial type
    information, so its namespace is treated as untyped.
    """
    import cvxpy  # noqa: PLC0415

    return cvxpy


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Formulation = Literal["socp", "lindistflow"]

#: Ratings above this many per unit are treated as "unrated" (kept finite for conditioning).
_UNRATED_PU = 1e3
#: Default tolerance on the normalized relaxation gap below which the SOCP counts as exact.
DEFAULT_GAP_TOL = 1e-3
#: Solvers that take linear programs only.
_LP_SOLVERS = frozenset({"HIGHS", "GLPK", "GLOP", "CBC", "SCIPY"})
#: Above this (variables + 1)·(parameters + 1), cone programs skip cvxpy's DPP cache.
_DPP_TENSOR_LIMIT = 2e7
#: Branch loading (in per unit of apparent power) below which a branch's gap is not normalized.
_GAP_FLOOR_PU = 1e-2


# --------------------------------------------------------------------------------------------
# flexible loads


@dataclass(frozen=True, eq=False)
class FlexibleAssets:
    """Flexible assets for the OPF: devices' :class:`Flexibility` placed on feeder nodes.

    Attributes
    ----------
    flexibility : Flexibility
        The generalized battery of every device (``(T, M)`` arrays over its horizon).
    bus : (M,) int
        Feeder node of every device.
    cost_per_kwh : float or (M,) float
        Cost per kWh of throughput ``(c + d) Δt`` (battery wear; a thermostatic load's
        discomfort per kWh of deviation from its baseline). Default 0.

    """

    flexibility: Flexibility
    bus: npt.ArrayLike
    cost_per_kwh: npt.ArrayLike = 0.0

    @classmethod
    def from_population(
        cls,
        population: FlexiblePopulation,
        bus: npt.ArrayLike,
        horizon: Horizon,
        weather: Sequence[WeatherSample],
        *,
        cost_per_kwh: npt.ArrayLike = 0.0,
    ) -> FlexibleAssets:
        """The OPF's view of a population: its ``flexibility(horizon, weather)`` at ``bus``.

        The one adapter from every flexible device kind (EVs, batteries, thermostatic loads
        through their virtual battery) to the OPF: the OPF's model of an asset is the
        population's own statement of what schedules it can follow.
        """
        return cls(population.flexibility(horizon, weather), bus, cost_per_kwh)

    @classmethod
    def concat(cls, blocks: Sequence[FlexibleAssets]) -> FlexibleAssets:
        """One block of the rows of several (same horizon), e.g. EVs, batteries and houses."""
        problems = Problems(subject="flexible assets")
        if not blocks:
            problems.add("blocks", "needs at least one block")
            problems.raise_if_any()
        horizon = blocks[0].flexibility.horizon
        for k, b in enumerate(blocks):
            if b.flexibility.horizon != horizon:
                problems.add("horizon", f"block {k} has another horizon than block 0", [k])
        problems.raise_if_any()

        def cat(name: str) -> FloatArray:
            return np.concatenate(
                [np.asarray(getattr(b.flexibility, name)) for b in blocks], axis=-1
            )

        def per_row(b: FlexibleAssets, value: Any) -> FloatArray:
            return np.broadcast_to(
                np.asarray(value, dtype=np.float64), (b.flexibility.n_devices,)
            ).copy()

        flex = Flexibility(
            horizon=horizon,
            ids=np.concatenate([np.asarray(b.flexibility.ids) for b in blocks]),
            **{
                name: cat(name)
                for name in (
                    "baseline_kw",
                    "power_min_kw",
                    "power_max_kw",
                    "energy_min_kwh",
                    "energy_max_kwh",
                    "initial_energy_kwh",
                    "retention",
                    "charge_efficiency",
                    "discharge_efficiency",
                )
            },
        )
        return cls(
            flex,
            np.concatenate([np.atleast_1d(np.asarray(b.bus)) for b in blocks]),
            np.concatenate([per_row(b, b.cost_per_kwh) for b in blocks]),
        )


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class Dlmp:
    """Distribution locational marginal prices per period and node, ``(T, N)``, per kWh.

    ``total = energy + loss + congestion + voltage``; ``residual`` is the largest absolute
    difference between ``total`` and the balance duals cvxpy returned (solver accuracy).
    """

    energy: FloatArray
    loss: FloatArray
    congestion: FloatArray
    voltage: FloatArray
    total: FloatArray
    residual: float


@dataclass(frozen=True, eq=False)
class AcCheck:
    """The OPF's injections run through a pandapower AC power flow, period by period.

    Attributes
    ----------
    converged : (T,) bool
        Power flow converged in every period.
    vm_pu : (T, N) float
        AC voltage magnitudes.
    losses_kw : (T,) float
        AC losses.
    max_vm_error_pu : float
        Largest ``|vm_opf − vm_ac|`` over nodes and periods.
    max_losses_error_pct : float
        Largest ``|losses_opf − losses_ac| / losses_ac`` in percent over periods.
    max_branch_loading_pct : (T,) float
        Largest AC branch loading per period (NaN when no branch is rated).
    branch_loading_pct : (T, B) float
        AC branch loading, pandapower's ``loading_percent`` (current over rated current).

    """

    converged: npt.NDArray[np.bool_]
    vm_pu: FloatArray
    losses_kw: FloatArray
    max_vm_error_pu: float
    max_losses_error_pct: float
    max_branch_loading_pct: FloatArray
    branch_loading_pct: FloatArray


@dataclass(frozen=True, eq=False)
class OpfResult:
    """Solution of one OPF solve; time first: (T, N) node arrays, (T, B) branch arrays.

    Attributes
    ----------
    formulation : str
        ``"socp"`` or ``"lindistflow"``.
    status : str
        cvxpy status; the numbers below are NaN unless ``optimal`` is True.
    cost : float
        Optimal objective: energy cost plus flexible loads' disutility.
    energy_cost : (T,) float
        Substation energy cost per period.
    substation_p_kw, substation_q_kvar : (T,) float
        Power drawn from the upstream grid.
    losses_kw : (T,) float
        Model losses (SOCP: ``Σ r ℓ + Σ g v``; LinDistFlow, whose balance has no series
        losses: the estimate ``Σ r (P² + Q²)/v + Σ g v`` at its flows).
    p_kw, q_kvar : (T, N) float
        Net consumption per node including the flexible assets.
    vm_pu : (T, N) float
        Voltage magnitude.
    vmin_pu : float
        Smallest voltage over nodes and periods.
    branch_p_kw, branch_q_kvar : (T, B) float
        Sending-end (substation side) branch flows.
    branch_loading_pct : (T, B) float
        Current over rated current in per cent, the current ``|S|/√w`` at the model's flows
        and voltages (with an exact relaxation ``√ℓ``); NaN for unrated branches.
    relaxation_gap : float or None
        SOCP: largest normalized cone gap ``(ℓ v − P² − Q²)/(ℓ v)`` over branches carrying at
        least 1 % of the power base, and periods. None for LinDistFlow.
    relaxation_gap_per_branch : (T, B) float
        The gap per branch and period (NaN for LinDistFlow).
    relaxation_exact : bool or None
        SOCP: ``relaxation_gap <= gap_tol``. When False the SOCP solution is not a physical
        power flow (the relaxation is not exact); use ``ac_check`` to see how far it is.
    dlmp : Dlmp
        DLMPs and their components (per kWh).
    ac_check : AcCheck or None
        pandapower AC power flow at the OPF's injections (None when not requested).
    flexible_kw : (T, M) float
        Power of every flexible asset, ``baseline + c − d``.
    flexible_energy_kwh : (T, M) float
        Stored energy of every asset at the end of every period.
    flexible_ids : (M,) str
        The assets' ids (their :class:`Flexibility` ids).

    """

    formulation: str
    status: str
    cost: float
    energy_cost: FloatArray
    substation_p_kw: FloatArray
    substation_q_kvar: FloatArray
    losses_kw: FloatArray
    p_kw: FloatArray
    q_kvar: FloatArray
    vm_pu: FloatArray
    vmin_pu: float
    branch_p_kw: FloatArray
    branch_q_kvar: FloatArray
    branch_loading_pct: FloatArray
    relaxation_gap: float | None
    relaxation_gap_per_branch: FloatArray
    relaxation_exact: bool | None
    dlmp: Dlmp
    ac_check: AcCheck | None
    flexible_kw: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    flexible_energy_kwh: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    flexible_ids: npt.NDArray[np.str_] = field(default_factory=lambda: np.zeros(0, dtype=np.str_))

    @property
    def optimal(self) -> bool:
        """The solver reported an optimal (possibly inaccurate) solution."""
        cp = _cvxpy()
        return self.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


# --------------------------------------------------------------------------------------------
# argument handling


def _per_row(problems: Problems, name: str, value: Any, m: int, t: int | None = None) -> FloatArray:
    """Broadcast a scalar, (M,) or (M, T) value to (M,) or (M, T); record shape problems."""
    arr = np.asarray(value, dtype=np.float64)
    shape = (m,) if t is None else (m, t)
    try:
        if t is not None and arr.ndim == 1:
            arr = arr[:, None]
        out = np.broadcast_to(arr, shape).astype(np.float64)
    except ValueError:
        problems.add(name, f"needs shape {shape} (or broadcastable), got {arr.shape}")
        return np.zeros(shape)
    problems.check(~np.isfinite(out).reshape(m, -1).all(axis=1), name, "must be finite")
    return out


def _buses(problems: Problems, name: str, value: Any, n: int) -> IntArray:
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        problems.add(name, "must be a one-dimensional array of node indices (integers)")
        return np.zeros(arr.size, dtype=np.int64)
    bad = (arr < 0) | (arr >= n)
    problems.check(bad, name, f"node index out of range [0, {n})")
    return np.where(bad, 0, arr).astype(np.int64)


@dataclass(frozen=True)
class _FlexValues:
    """A :class:`FlexibleAssets` block as the OPF's parameters, (M, T) (model order)."""

    bus: IntArray
    ids: npt.NDArray[np.str_]
    baseline: FloatArray  # (M, T) kW
    p_lo: FloatArray  # (M, T) kW, bound on c − d
    p_hi: FloatArray
    e_lo: FloatArray  # (M, T) kWh at the end of every period
    e_hi: FloatArray
    e_start: FloatArray  # (M,) retention × initial energy: the state carried into period 0
    retention: FloatArray  # (M, T)
    charge_h: FloatArray  # (M, T) η_c Δt
    discharge_h: FloatArray  # (M, T) Δt / η_d
    cost: FloatArray  # (M, T) cost per kW of throughput over one period


def _flex_values(block: object, n: int, t: int, dt_s: float) -> _FlexValues:
    problems = Problems(subject="flexible assets")
    if not isinstance(block, FlexibleAssets):
        problems.add("flexible", f"must be FlexibleAssets, got {type(block).__name__}")
        raise ValidationError(problems.found, subject=problems.subject)
    flex = block.flexibility
    m = flex.n_devices
    horizon = flex.horizon
    if horizon.n_periods != t:
        problems.add("flexibility.horizon", f"has {horizon.n_periods} periods, the OPF {t}")
    if float(horizon.period_s) != float(dt_s):
        problems.add("flexibility.horizon", f"has {horizon.period_s} s periods, the OPF {dt_s:g} s")
    bus = _buses(problems, "bus", block.bus, n)
    if bus.size != m:
        problems.add("bus", f"needs one node per device ({m}), got {bus.size}")
    cost = _per_row(problems, "cost_per_kwh", block.cost_per_kwh, m)
    problems.check(cost < 0, "cost_per_kwh", "must be non-negative")
    problems.raise_if_any()
    dt_h = dt_s / 3600.0

    def rows(name: str) -> FloatArray:
        return np.ascontiguousarray(np.asarray(getattr(flex, name), dtype=np.float64).T)

    def over_t(values: Any) -> FloatArray:
        return np.repeat(np.asarray(values, dtype=np.float64)[:, None], t, axis=1)

    retention = np.asarray(flex.retention, dtype=np.float64)
    return _FlexValues(
        bus=bus,
        ids=np.asarray(flex.ids),
        baseline=rows("baseline_kw"),
        p_lo=rows("power_min_kw"),
        p_hi=rows("power_max_kw"),
        e_lo=rows("energy_min_kwh"),
        e_hi=rows("energy_max_kwh"),
        e_start=retention * np.asarray(flex.initial_energy_kwh, dtype=np.float64),
        retention=over_t(retention),
        charge_h=over_t(np.asarray(flex.charge_efficiency) * dt_h),
        discharge_h=over_t(dt_h / np.asarray(flex.discharge_efficiency)),
        cost=over_t(cost * dt_h),
    )


def _vec(expr: Any) -> Any:
    """Column-major flattening (period-major blocks of branches) of a cvxpy expression."""
    return _cvxpy().vec(expr, order="F")


def _incidence(bus: IntArray, n: int) -> sp.csr_matrix:
    m = bus.size
    return sp.csr_matrix((np.ones(m), (bus, np.arange(m))), shape=(n, m))


# --------------------------------------------------------------------------------------------
# the model


class OpfModel:
    """A convex OPF of one radial feeder over ``periods`` periods, built once, solved many times.

    Parameters
    ----------
    feeder : Feeder
        A radial feeder (:meth:`Feeder.require_radial` is enforced).
    formulation : {"socp", "lindistflow"}
        SOC relaxation of the branch flow model or linearized DistFlow (an LP).
    periods : int
        Number of periods T.
    dt_s : float
        Period length in seconds.
    flexible : FlexibleAssets or sequence of FlexibleAssets, optional
        Flexible assets (their flexibility over a horizon of ``periods`` periods of ``dt_s``).
        Their number and nodes fix the problem's structure; their values are parameters that
        :meth:`solve` may replace. Several blocks are joined (:meth:`FlexibleAssets.concat`).
    substation_kva : float, optional
        Rating of the substation (apparent power drawn from the upstream grid).
    polygon_sides : int
        LinDistFlow: sides of the polygon that replaces each thermal circle (at least 4).

    The branches with a thermal constraint are the feeder's rated ones
    (``feeder.branch_rated``), fixed at construction; :meth:`solve` may change their ratings.
    solver : str, optional
        cvxpy solver name (default CLARABEL; HIGHS suits LinDistFlow, which is an LP, but
        cvxpy asks HiGHS for a Farkas ray on infeasible problems, which can take long).
    dpp_cache : bool, optional
        Re-solve through cvxpy's DPP cache (compile once, then only substitute parameters).
        cvxpy's DPP tensor for cone programs and for the current limits (rating parameters
        times voltage variables) grows as (variables × parameters), so by default the cache is
        used unless the problem has either and that product exceeds 2·10⁷ (e.g. a 100-node
        SOCP, or a rated 100-node LinDistFlow, over 96 periods); then each solve recompiles the
        problem with the parameter values substituted (``ignore_dpp``), faster at that size.

    Attributes
    ----------
    problem : cvxpy.Problem
        The parametrized problem (``problem.is_dpp()`` is True).

    """

    def __init__(
        self,
        feeder: Feeder,
        *,
        formulation: Formulation = "socp",
        periods: int = 1,
        dt_s: float = 3600.0,
        flexible: FlexibleAssets | Sequence[FlexibleAssets] | None = None,
        substation_kva: float | None = None,
        polygon_sides: int = 16,
        solver: str | None = None,
        dpp_cache: bool | None = None,
    ) -> None:
        problems = Problems(subject="OPF")
        if formulation not in ("socp", "lindistflow"):
            problems.add("formulation", f"must be 'socp' or 'lindistflow', got {formulation!r}")
        if not (isinstance(periods, int | np.integer) and periods >= 1):
            problems.add("periods", f"must be a positive integer, got {periods!r}")
        if not (np.isfinite(dt_s) and dt_s > 0):
            problems.add("dt_s", f"must be positive, got {dt_s!r}")
        if substation_kva is not None and not (substation_kva > 0):
            problems.add("substation_kva", f"must be positive, got {substation_kva!r}")
        if formulation == "socp" and solver is not None and solver.upper() in _LP_SOLVERS:
            problems.add("solver", f"{solver} cannot solve second-order cones (SOCP)")
        if polygon_sides < 4:
            problems.add("polygon_sides", f"must be at least 4, got {polygon_sides}")
        problems.raise_if_any()
        feeder.require_radial()
        self.feeder = feeder
        self.formulation: Formulation = formulation
        self.periods = int(periods)
        self.dt_s = float(dt_s)
        self.dt_h = self.dt_s / 3600.0
        self.substation_kva = substation_kva
        self.polygon_sides = int(polygon_sides)
        self.solver = solver or "CLARABEL"
        n, nb, t = feeder.n_nodes, feeder.n_branches, self.periods
        self._n, self._nb, self._t = n, nb, t
        self._sbase = feeder.s_base_kva
        self._flex = (
            _flex_values(_one_block(flexible), n, t, self.dt_s) if flexible is not None else None
        )
        # (branch, period) pairs with a thermal constraint, column-major (branch fastest)
        rated = np.asarray(feeder.branch_rated, dtype=bool)
        self._rated = rated
        self._rated_flat = np.flatnonzero(np.tile(rated, t))
        self._build()
        self._factor_dual_system()
        n_var = sum(int(v.size) for v in self.problem.variables())
        n_par = sum(int(q.size) for q in self.problem.parameters())
        # cones, and the current limits (rating parameters times voltage variables), make
        # cvxpy's DPP tensor grow as (variables × parameters)
        has_products = self.formulation == "socp" or self._rated_flat.size > 0
        self.dpp_cache = (
            dpp_cache
            if dpp_cache is not None
            else not (has_products and (n_var + 1) * (n_par + 1) > _DPP_TENSOR_LIMIT)
        )

    # ---------------------------------------------------------------- build

    def _build(self) -> None:
        cp = _cvxpy()
        f = self.feeder
        n, nb, t = self._n, self._nb, self._t
        socp = self.formulation == "socp"
        frm, to = np.asarray(f.branch_from), np.asarray(f.branch_to)
        r, x = np.asarray(f.branch_r_pu), np.asarray(f.branch_x_pu)
        inv_tau2 = 1.0 / np.asarray(f.branch_ratio) ** 2
        cols = np.arange(nb)
        c_to = sp.csr_matrix((np.ones(nb), (to, cols)), shape=(n, nb))
        c_from = sp.csr_matrix((np.ones(nb), (frm, cols)), shape=(n, nb))
        e_s = np.zeros((n, 1))
        e_s[f.slack, 0] = 1.0
        self._c_to, self._c_from, self._inv_tau2 = c_to, c_from, inv_tau2
        self._nonslack = np.flatnonzero(np.arange(n) != f.slack)

        # parameters (per unit)
        self.price = cp.Parameter(t, name="price_per_kwh")
        self.p_fixed = cp.Parameter((n, t), name="p_fixed_pu")
        self.q_fixed = cp.Parameter((n, t), name="q_fixed_pu")
        self.v_slack = cp.Parameter(t, nonneg=True, name="v_slack_sq")
        self.v_lo = cp.Parameter((n - 1, t), nonneg=True, name="v_min_sq")
        self.v_hi = cp.Parameter((n - 1, t), nonneg=True, name="v_max_sq")
        # ratings are flattened column-major (branch fastest) over the rated branches:
        # reshaping a parameter inside a cone makes cvxpy's DPP tensor grow quadratically

        # variables
        self.P = cp.Variable((nb, t), name="P")
        self.Q = cp.Variable((nb, t), name="Q")
        self.v = cp.Variable((n, t), name="v")
        self.P0 = cp.Variable(t, name="P0")
        self.Q0 = cp.Variable(t, name="Q0")
        self.l = cp.Variable((nb, t), name="l") if socp else None

        cons: list[Any] = []
        objective: Any = (self.dt_h * self._sbase) * (self.price @ self.P0)
        p_node: Any = self.p_fixed
        # flexible assets (kW variables, mapped to nodes in per unit): the generalized battery
        # of the Flexibility contract, p = baseline + c − d
        self.flex_c = self.flex_d = self.flex_e = None
        if self._flex is not None:
            m = self._flex.bus.size
            self.flex_base = cp.Parameter((m, t), name="flex_baseline_kw")
            self.flex_lo = cp.Parameter((m, t), name="flex_p_min_kw")
            self.flex_hi = cp.Parameter((m, t), name="flex_p_max_kw")
            self.flex_elo = cp.Parameter((m, t), name="flex_e_min_kwh")
            self.flex_ehi = cp.Parameter((m, t), name="flex_e_max_kwh")
            self.flex_e0 = cp.Parameter(m, name="flex_retained_initial_kwh")
            self.flex_ret = cp.Parameter((m, t), nonneg=True, name="flex_retention")
            self.flex_ch = cp.Parameter((m, t), nonneg=True, name="flex_charge_h")
            self.flex_dh = cp.Parameter((m, t), nonneg=True, name="flex_discharge_h")
            self.flex_cost = cp.Parameter((m, t), nonneg=True, name="flex_cost_per_kw_period")
            self.flex_c = cp.Variable((m, t), nonneg=True, name="flex_charge_kw")
            self.flex_d = cp.Variable((m, t), nonneg=True, name="flex_discharge_kw")
            self.flex_e = cp.Variable((m, t), name="flex_energy_kwh")
            stored = cp.multiply(self.flex_ch, self.flex_c) - cp.multiply(self.flex_dh, self.flex_d)
            cons += [
                self.flex_c - self.flex_d >= self.flex_lo,
                self.flex_c - self.flex_d <= self.flex_hi,
                self.flex_e[:, 0] == self.flex_e0 + stored[:, 0],
                self.flex_e >= self.flex_elo,
                self.flex_e <= self.flex_ehi,
            ]
            if t > 1:
                cons.append(
                    self.flex_e[:, 1:]
                    == cp.multiply(self.flex_ret[:, 1:], self.flex_e[:, :-1]) + stored[:, 1:]
                )
            objective = objective + cp.sum(cp.multiply(self.flex_cost, self.flex_c + self.flex_d))
            p_node = p_node + (_incidence(self._flex.bus, n) / self._sbase) @ (
                self.flex_base + self.flex_c - self.flex_d
            )
        self._p_node = p_node

        flow_in_p: Any = c_to @ self.P
        flow_in_q: Any = c_to @ self.Q
        drop: Any = c_to.T @ self.v - sp.diags(inv_tau2) @ (c_from.T @ self.v)
        drop = drop + 2 * (sp.diags(r) @ self.P + sp.diags(x) @ self.Q)
        if self.l is not None:
            flow_in_p = flow_in_p - c_to @ sp.diags(r) @ self.l
            flow_in_q = flow_in_q - c_to @ sp.diags(x) @ self.l
            drop = drop - sp.diags(r**2 + x**2) @ self.l
        p0_row = e_s @ cp.reshape(self.P0, (1, t), order="F")
        q0_row = e_s @ cp.reshape(self.Q0, (1, t), order="F")
        g_sh = np.asarray(f.shunt_g_pu)
        b_sh = np.asarray(f.shunt_b_pu)
        self._g_sh, self._b_sh = g_sh, b_sh
        shunt_p: Any = sp.diags(g_sh) @ self.v  # consumed by shunt conductance, g v
        shunt_q: Any = sp.diags(b_sh) @ self.v  # produced by shunt susceptance, b v
        self.bal_p = flow_in_p - c_from @ self.P + p0_row - p_node - shunt_p == 0
        self.bal_q = flow_in_q - c_from @ self.Q + q0_row - self.q_fixed + shunt_q == 0
        self.volt_drop = drop == 0
        self.slack_v = self.v[f.slack, :] == self.v_slack
        self.v_min = self.v[self._nonslack, :] >= self.v_lo
        self.v_max = self.v[self._nonslack, :] <= self.v_hi
        cons += [self.bal_p, self.bal_q, self.volt_drop, self.slack_v, self.v_min, self.v_max]

        vec = _vec
        self.relax = None
        if self.l is not None:
            w = sp.diags(inv_tau2) @ (c_from.T @ self.v)
            self.relax = cp.SOC(
                vec(self.l + w),
                cp.vstack([vec(2 * self.P), vec(2 * self.Q), vec(self.l - w)]),
                axis=0,
            )
            cons.append(self.relax)
        # thermal limits on the rated branches: P² + Q² ≤ I_max² w (see the module docstring)
        w_flat = vec(sp.diags(inv_tau2) @ (c_from.T @ self.v))
        idx = self._rated_flat
        n_rated = int(idx.size)
        self.thermal: list[Any] = []
        self.sub_limit: list[Any] = []
        if self.formulation == "socp":
            self.i2_max = cp.Parameter(n_rated, nonneg=True, name="i_max_sq_pu_flat")
            if n_rated:
                a = cp.multiply(self.i2_max, w_flat[idx])
                self.thermal = [
                    cp.SOC(
                        a + 1,
                        cp.vstack([2 * vec(self.P)[idx], 2 * vec(self.Q)[idx], a - 1]),
                        axis=0,
                    )
                ]
            if self.substation_kva is not None:
                s0 = self.substation_kva / self._sbase
                self.sub_limit = [cp.SOC(np.full(t, s0), cp.vstack([self.P0, self.Q0]), axis=0)]
        else:
            k = self.polygon_sides
            angles = 2 * np.pi * np.arange(k) / k
            self._poly = np.column_stack([np.cos(angles), np.sin(angles)])
            shrink = np.cos(np.pi / k)  # inscribed polygon: never exceeds the circle
            self._shrink = shrink
            # chord of √w over the from-node's voltage limits: slope and offset times I_max
            self.i_slope = cp.Parameter(n_rated, nonneg=True, name="i_max_chord_slope_flat")
            self.i_offset = cp.Parameter(n_rated, nonneg=True, name="i_max_chord_offset_flat")
            if n_rated:
                p_flat, q_flat = vec(self.P)[idx], vec(self.Q)[idx]
                rhs = shrink * (cp.multiply(self.i_slope, w_flat[idx]) + self.i_offset)
                self.thermal = [a * p_flat + b * q_flat <= rhs for a, b in self._poly]
            if self.substation_kva is not None:
                s0 = shrink * self.substation_kva / self._sbase
                self.sub_limit = [a * self.P0 + b * self.Q0 <= s0 for a, b in self._poly]
        cons += self.thermal + self.sub_limit
        self.problem = cp.Problem(cp.Minimize(objective), cons)

    # ---------------------------------------------------------------- duals → components

    def _factor_dual_system(self) -> None:
        """Factor the square KKT system in (π^P, π^Q, β) described in the module docstring."""
        f = self.feeder
        n, nb = self._n, self._nb
        inc = (self._c_to - self._c_from).T  # (B, N): +1 at the to-end, -1 at the from-end
        es = sp.csr_matrix(([1.0], ([0], [f.slack])), shape=(1, n))
        zero_n = sp.csr_matrix((1, n))
        zero_b1 = sp.csr_matrix((1, nb))
        zero_bn = sp.csr_matrix((nb, n))
        vrows = (self._c_to - self._c_from @ sp.diags(self._inv_tau2))[self._nonslack, :]
        # shunts put v in the balances: their v rows gain +g π^P and −b π^Q
        g_rows = sp.diags(self._g_sh, format="csr")[self._nonslack, :]
        b_rows = -sp.diags(self._b_sh, format="csr")[self._nonslack, :]
        r2 = sp.diags(2 * np.asarray(f.branch_r_pu))
        x2 = sp.diags(2 * np.asarray(f.branch_x_pu))
        m = sp.bmat(
            [
                [es, zero_n, zero_b1],
                [zero_n, es, zero_b1],
                [inc, zero_bn, -r2],
                [zero_bn, inc, -x2],
                [g_rows, b_rows, vrows],
            ],
            format="csc",
        )
        self._kkt: Any = splu(m)

    def _components(self) -> tuple[dict[str, FloatArray], FloatArray]:
        """Right-hand sides per class, solved; returns π^P components (N, T) in pu and duals."""
        n, nb, t = self._n, self._nb, self._t

        def rhs() -> FloatArray:
            return np.zeros((2 + 2 * nb + n - 1, t))

        # row offsets: P0, Q0, P (nb), Q (nb), v (n-1)
        o_p, o_q, o_v = 2, 2 + nb, 2 + 2 * nb
        energy = rhs()
        energy[0] = np.asarray(self.price.value) * self.dt_h * self._sbase
        loss, cong, volt = rhs(), rhs(), rhs()

        def cone_parts(con: Any, rows: int) -> tuple[FloatArray, FloatArray]:
            dual = con.dual_value
            z_t = np.asarray(dual[0]).reshape(-1)
            z_x = np.asarray(dual[1]).reshape(rows, -1)
            return z_t, z_x

        # Stationarity with cvxpy's conventions: L = f + y·(g) for equalities, + μ·(lhs − rhs)
        # for inequalities, − z·(affine) for cones. The table in the module docstring writes
        # the rows with d = ∂(inequality and cone terms)/∂(variable) moved to the right.
        if self.relax is not None:
            z_t, z_x = cone_parts(self.relax, 3)
            shape = (nb, t)
            zt, z1, z2, z3 = (a.reshape(shape, order="F") for a in (z_t, z_x[0], z_x[1], z_x[2]))
            d_p, d_q = -2 * z1, -2 * z2
            d_w = -(zt - z3)
            d_v = self._c_from @ (self._inv_tau2[:, None] * d_w)
            loss[o_p:o_q] = d_p
            loss[o_q:o_v] = d_q
            loss[o_v:] = -d_v[self._nonslack]
        # thermal limits: gradients in (P, Q) and in w = v_from/τ² (scattered to all pairs)
        idx = self._rated_flat
        g_p, g_q, g_w = (np.zeros(nb * t) for _ in range(3))
        if self.formulation == "socp":
            if self.thermal:
                # cone ‖(2P, 2Q, a − 1)‖ ≤ a + 1 with a = I² w: −z·(affine) in the Lagrangian
                z_t, z_x = cone_parts(self.thermal[0], 3)
                g_p[idx] = -2 * z_x[0]
                g_q[idx] = -2 * z_x[1]
                g_w[idx] = -(z_t + z_x[2]) * np.asarray(self.i2_max.value)
            if self.sub_limit:
                _, z0 = cone_parts(self.sub_limit[0], 2)
                cong[0] += -z0[0]
                cong[1] += -z0[1]
        else:
            for (a, b), con in zip(self._poly, self.thermal, strict=False):
                mu = np.asarray(con.dual_value)
                g_p[idx] += a * mu
                g_q[idx] += b * mu
                g_w[idx] += -self._shrink * np.asarray(self.i_slope.value) * mu
            for (a, b), con in zip(self._poly, self.sub_limit, strict=False):
                mu = np.asarray(con.dual_value)
                cong[0] += a * mu
                cong[1] += b * mu
        cong[o_p:o_q] += g_p.reshape((nb, t), order="F")
        cong[o_q:o_v] += g_q.reshape((nb, t), order="F")
        d_v_th = self._c_from @ (self._inv_tau2[:, None] * g_w.reshape((nb, t), order="F"))
        cong[o_v:] += -d_v_th[self._nonslack]
        volt[o_v:] = np.asarray(self.v_min.dual_value) - np.asarray(self.v_max.dual_value)
        out = {}
        for name, b in (
            ("energy", energy),
            ("loss", loss),
            ("congestion", cong),
            ("voltage", volt),
        ):
            out[name] = self._kkt.solve(b)[:n]
        # With shunts (g v in the balances) the price alone already varies along the feeder:
        # that variation is the marginal shunt loss; the energy component is the price itself.
        flat = np.broadcast_to(energy[0], (n, t))
        out["loss"] = out["loss"] + (out["energy"] - flat)
        out["energy"] = np.array(flat)
        dual = -np.asarray(self.bal_p.dual_value)
        return out, dual

    # ---------------------------------------------------------------- solve

    def solve(
        self,
        price_per_kwh: npt.ArrayLike,
        p_kw: npt.ArrayLike | None = None,
        q_kvar: npt.ArrayLike | None = None,
        *,
        flexible: FlexibleAssets | Sequence[FlexibleAssets] | None = None,
        i_max_ka: npt.ArrayLike | None = None,
        vmin_pu: npt.ArrayLike | None = None,
        vmax_pu: npt.ArrayLike | None = None,
        slack_vm_pu: npt.ArrayLike | None = None,
        ac_check: bool = True,
        gap_tol: float = DEFAULT_GAP_TOL,
    ) -> OpfResult:
        """Set the parameters and solve.

        Parameters
        ----------
        price_per_kwh : float or (T,) float
            Energy price at the substation.
        p_kw, q_kvar : (N,) or (T, N) float, optional
            Fixed (inflexible) net consumption per node, the same in every period or per period
            (time first); default the feeder's nominal ``net_p_kw`` / ``net_q_kvar``.
        flexible : FlexibleAssets or sequence of FlexibleAssets, optional
            New values for the flexible assets given at construction (same count and nodes).
        i_max_ka : (B,) or (T, B) float, optional
            Rated current at every branch's ``branch_to`` end, kA; default the feeder's
            ``branch_i_max_ka``. ``inf`` on the branches the model was built unrated; finite on
            the rated ones.
        vmin_pu, vmax_pu : (N,) or (T, N) float, optional
            Voltage limits; default the feeder's.
        slack_vm_pu : float or (T,) float, optional
            Substation voltage; default the feeder's ``slack_vm_pu``.
        ac_check : bool
            Run a pandapower AC power flow at the solution in every period.
        gap_tol : float
            Normalized relaxation gap above which the SOCP is reported as not exact.

        Returns
        -------
        OpfResult

        Raises
        ------
        ValidationError
            Inputs of the wrong shape, not finite, or out of range (everything found at once).

        """
        self._set_parameters(
            price_per_kwh, p_kw, q_kvar, flexible, i_max_ka, vmin_pu, vmax_pu, slack_vm_pu
        )
        self.problem.solve(solver=self.solver, ignore_dpp=not self.dpp_cache)
        return self._result(ac_check=ac_check, gap_tol=gap_tol)

    def _set_parameters(
        self,
        price: Any,
        p_kw: Any,
        q_kvar: Any,
        flexible: Any,
        i_max_ka: Any,
        vmin_pu: Any,
        vmax_pu: Any,
        slack_vm_pu: Any,
    ) -> None:
        f = self.feeder
        n, nb, t = self._n, self._nb, self._t
        problems = Problems(subject="OPF inputs")

        def series(name: str, value: Any, rows: int | None, finite: bool = True) -> FloatArray:
            """Scalar, (T,) (rows None), (rows,) or (T, rows) → (T,) or (rows, T)."""
            arr = np.asarray(value, dtype=np.float64)
            shape = (t,) if rows is None else (rows, t)
            try:
                if rows is None:
                    out = np.broadcast_to(arr, shape).astype(np.float64)
                elif arr.ndim <= 1:
                    out = np.broadcast_to(arr.reshape(-1, 1) if arr.ndim else arr, shape)
                    out = out.astype(np.float64)
                else:
                    out = np.broadcast_to(arr, (t, rows)).T.astype(np.float64)
            except ValueError:
                want = "scalar or (T,)" if rows is None else f"({rows},) or (T, {rows})"
                problems.add(name, f"needs shape {want} with T = {t}, got {arr.shape}")
                return np.zeros(shape)
            bad = np.isnan(out) if not finite else ~np.isfinite(out)
            reason = "is not a number (NaN)" if not finite else "must be finite (not NaN or inf)"
            problems.check(bad if rows is None else bad.any(axis=1), name, reason)
            return out

        price_a = series("price_per_kwh", price, None)
        p = series("p_kw", f.net_p_kw if p_kw is None else p_kw, n)
        q = series("q_kvar", f.net_q_kvar if q_kvar is None else q_kvar, n)
        i_max = series("i_max_ka", f.branch_i_max_ka if i_max_ka is None else i_max_ka, nb, False)
        rated = self._rated
        problems.check((~(i_max > 0)).any(axis=1), "i_max_ka", "must be positive (inf: unrated)")
        problems.check(
            rated & ~np.isfinite(i_max).all(axis=1),
            "i_max_ka",
            "must be finite on a branch the model was built rated",
        )
        problems.check(
            ~rated & np.isfinite(i_max).any(axis=1),
            "i_max_ka",
            "rates a branch the model was built unrated; build the model from "
            "feeder.with_line_ratings(...)",
        )
        lo = series("vmin_pu", f.vmin_pu if vmin_pu is None else vmin_pu, n)
        hi = series("vmax_pu", f.vmax_pu if vmax_pu is None else vmax_pu, n, False)
        problems.check(
            ((lo < 0) | (lo > hi)).any(axis=1), "vmin_pu/vmax_pu", "need 0 <= vmin_pu <= vmax_pu"
        )
        vs = series("slack_vm_pu", f.slack_vm_pu if slack_vm_pu is None else slack_vm_pu, None)
        problems.check(vs <= 0, "slack_vm_pu", "must be positive")
        if flexible is not None and self._flex is None:
            problems.add("flexible", "the model was built without them; build a new OpfModel")
        problems.raise_if_any()
        flex = (
            _flex_values(_one_block(flexible), n, t, self.dt_s)
            if flexible is not None
            else self._flex
        )
        if (
            flex is not None
            and self._flex is not None
            and not np.array_equal(flex.bus, self._flex.bus)
        ):
            problems.add("flexible", "must have the same count and nodes as at construction")
        problems.raise_if_any()

        self.price.value = price_a
        self.p_fixed.value = p / self._sbase
        self.q_fixed.value = q / self._sbase
        self.v_slack.value = vs**2
        ns = self._nonslack
        hi = np.minimum(hi, 10.0)
        self.v_lo.value = lo[ns] ** 2
        self.v_hi.value = hi[ns] ** 2
        # rated current in per unit of the branch_to node's current base
        to = np.asarray(f.branch_to)
        i_pu = i_max * np.sqrt(3.0) * np.asarray(f.vn_kv)[to][:, None] * 1000.0 / self._sbase
        self._i_pu = np.where(np.isfinite(i_pu), i_pu, np.nan)
        flat = self._rated_flat
        i_flat = i_pu.reshape(-1, order="F")[flat]
        if self.formulation == "socp":
            self.i2_max.value = i_flat**2
        else:
            # the from-node's voltage magnitude limits after the ideal transformer (the slack's
            # voltage is fixed): the chord of √w over [W_lo², W_hi²]
            frm = np.asarray(f.branch_from)
            node_lo, node_hi = lo.copy(), hi.copy()
            node_lo[f.slack] = vs
            node_hi[f.slack] = vs
            tau = np.asarray(f.branch_ratio)[:, None]
            w_lo = (node_lo[frm] / tau).reshape(-1, order="F")[flat]
            w_hi = (node_hi[frm] / tau).reshape(-1, order="F")[flat]
            self.i_slope.value = i_flat / (w_lo + w_hi)
            self.i_offset.value = i_flat * w_lo * w_hi / (w_lo + w_hi)
        if flex is not None:
            self._flex = flex
            self.flex_base.value = flex.baseline
            self.flex_lo.value = flex.p_lo
            self.flex_hi.value = flex.p_hi
            self.flex_elo.value = flex.e_lo
            self.flex_ehi.value = flex.e_hi
            self.flex_e0.value = flex.e_start
            self.flex_ret.value = flex.retention
            self.flex_ch.value = flex.charge_h
            self.flex_dh.value = flex.discharge_h
            self.flex_cost.value = flex.cost

    def _result(self, *, ac_check: bool, gap_tol: float) -> OpfResult:
        n, nb, t = self._n, self._nb, self._t
        sb = self._sbase
        cp = _cvxpy()
        status = str(self.problem.status)
        m = 0 if self._flex is None else int(self._flex.bus.size)
        ids = np.zeros(0, dtype=np.str_) if self._flex is None else self._flex.ids
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return _failed_result(self.formulation, status, n, nb, t, m, ids)
        P, Q, v = (np.asarray(a.value) for a in (self.P, self.Q, self.v))
        v = np.maximum(v, 0.0)
        vm = np.sqrt(v)
        r = np.asarray(self.feeder.branch_r_pu)
        w = self._inv_tau2[:, None] * v[np.asarray(self.feeder.branch_from)]
        if self.l is not None:
            ell = np.asarray(self.l.value)
            losses = sb * (r @ ell + self._g_sh @ v)
            lw = ell * w
            gap = (lw - P**2 - Q**2) / np.maximum(lw, _GAP_FLOOR_PU**2)
            gap_max: float | None = float(gap.max()) if gap.size else 0.0
            exact: bool | None = bool(gap_max is not None and gap_max <= gap_tol)
        else:
            losses = sb * (r @ ((P**2 + Q**2) / np.maximum(w, 1e-6)) + self._g_sh @ v)
            gap = np.full((nb, t), np.nan)
            gap_max, exact = None, None
        comps, dual = self._components()
        scale = 1.0 / (self.dt_h * sb)
        total = comps["energy"] + comps["loss"] + comps["congestion"] + comps["voltage"]
        dlmp = Dlmp(
            energy=_t(comps["energy"] * scale),
            loss=_t(comps["loss"] * scale),
            congestion=_t(comps["congestion"] * scale),
            voltage=_t(comps["voltage"] * scale),
            total=_t(total * scale),
            residual=float(np.max(np.abs(total - dual))) * scale,
        )
        p_node = np.asarray(self._p_node.value) * sb
        q_node = np.asarray(self.q_fixed.value) * sb
        # current |S| / √w over the rated current (both in per unit of the to-node's base)
        with np.errstate(divide="ignore", invalid="ignore"):
            current = np.hypot(P, Q) / np.sqrt(np.maximum(w, 1e-12))
            loading = 100.0 * current / self._i_pu
        p0 = np.asarray(self.P0.value) * sb
        check = self._ac_check(p_node, q_node, vm, losses) if ac_check else None
        fc, fd, fe = self.flex_c, self.flex_d, self.flex_e
        if fc is not None and fd is not None and fe is not None and self._flex is not None:
            c, d = np.asarray(fc.value), np.asarray(fd.value)
            flex_kw = _t(self._flex.baseline + c - d)
            flex_e = _t(np.asarray(fe.value))
        else:
            flex_kw = flex_e = np.zeros((t, 0))
        return OpfResult(
            formulation=self.formulation,
            status=status,
            cost=float(self.problem.value),
            energy_cost=np.asarray(self.price.value) * p0 * self.dt_h,
            substation_p_kw=p0,
            substation_q_kvar=np.asarray(self.Q0.value) * sb,
            losses_kw=np.asarray(losses),
            p_kw=_t(p_node),
            q_kvar=_t(q_node),
            vm_pu=_t(vm),
            vmin_pu=float(vm.min()),
            branch_p_kw=_t(P * sb),
            branch_q_kvar=_t(Q * sb),
            branch_loading_pct=_t(loading),
            relaxation_gap=gap_max,
            relaxation_gap_per_branch=_t(gap),
            relaxation_exact=exact,
            dlmp=dlmp,
            ac_check=check,
            flexible_kw=flex_kw,
            flexible_energy_kwh=flex_e,
            flexible_ids=ids,
        )

    def _ac_check(
        self, p_kw: FloatArray, q_kvar: FloatArray, vm: FloatArray, losses: FloatArray
    ) -> AcCheck:
        runner = PowerFlowRunner(self.feeder, replace_injections=True)
        n, nb, t = self._n, self._nb, self._t
        vm_ac = np.full((t, n), np.nan)
        loss_ac = np.full(t, np.nan)
        conv = np.zeros(t, dtype=bool)
        loading = np.full((t, nb), np.nan)
        vs = np.sqrt(np.asarray(self.v_slack.value))
        for k in range(t):
            runner.set_slack_voltage(float(vs[k]))
            res = runner.run(p_kw[:, k], q_kvar[:, k])
            conv[k] = res.converged
            if res.converged:
                vm_ac[k] = res.vm_pu
                loss_ac[k] = res.losses_kw
                loading[k] = res.branch_loading_pct
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(losses - loss_ac) / np.abs(loss_ac) * 100.0
        rated_rows = np.isfinite(loading).any(axis=1)
        max_loading = np.full(t, np.nan)
        if rated_rows.any():
            max_loading[rated_rows] = np.nanmax(loading[rated_rows], axis=1)
        return AcCheck(
            converged=conv,
            vm_pu=vm_ac,
            losses_kw=loss_ac,
            max_vm_error_pu=float(np.nanmax(np.abs(vm.T - vm_ac))) if conv.any() else np.nan,
            max_losses_error_pct=float(np.nanmax(rel)) if conv.any() else np.nan,
            max_branch_loading_pct=max_loading,
            branch_loading_pct=loading,
        )


def _t(a: FloatArray) -> FloatArray:
    """Model order (rows, T) to the package's time-first order (T, rows)."""
    return np.ascontiguousarray(np.asarray(a).T)


def _one_block(flexible: FlexibleAssets | Sequence[FlexibleAssets]) -> FlexibleAssets:
    if isinstance(flexible, FlexibleAssets):
        return flexible
    blocks = list(flexible)
    return blocks[0] if len(blocks) == 1 else FlexibleAssets.concat(blocks)


def _failed_result(
    formulation: str, status: str, n: int, nb: int, t: int, m: int, ids: npt.NDArray[np.str_]
) -> OpfResult:
    nan_tn = np.full((t, n), np.nan)
    nan_tb = np.full((t, nb), np.nan)
    nan_t = np.full(t, np.nan)
    dlmp = Dlmp(nan_tn, nan_tn, nan_tn, nan_tn, nan_tn, np.nan)
    return OpfResult(
        formulation=formulation,
        status=status,
        cost=np.nan,
        energy_cost=nan_t,
        substation_p_kw=nan_t,
        substation_q_kvar=nan_t,
        losses_kw=nan_t,
        p_kw=nan_tn,
        q_kvar=nan_tn,
        vm_pu=nan_tn,
        vmin_pu=np.nan,
        branch_p_kw=nan_tb,
        branch_q_kvar=nan_tb,
        branch_loading_pct=nan_tb,
        relaxation_gap=None,
        relaxation_gap_per_branch=nan_tb,
        relaxation_exact=None,
        dlmp=dlmp,
        ac_check=None,
        flexible_kw=np.full((t, m), np.nan),
        flexible_energy_kwh=np.full((t, m), np.nan),
        flexible_ids=ids,
    )


def solve_opf(
    feeder: Feeder,
    price_per_kwh: npt.ArrayLike,
    p_kw: npt.ArrayLike | None = None,
    q_kvar: npt.ArrayLike | None = None,
    *,
    formulation: Formulation = "socp",
    periods: int | None = None,
    dt_s: float = 3600.0,
    flexible: FlexibleAssets | Sequence[FlexibleAssets] | None = None,
    substation_kva: float | None = None,
    i_max_ka: npt.ArrayLike | None = None,
    ac_check: bool = True,
) -> OpfResult:
    """Build an :class:`OpfModel` and solve it once (T from the inputs).

    ``periods`` defaults to the length of ``price_per_kwh`` when it is an array, else to the
    number of rows of a two-dimensional ``p_kw`` (``(T, N)``, time first), else to the horizon
    of ``flexible``, else 1. See :class:`OpfModel` and :meth:`OpfModel.solve` for the other
    arguments.
    """
    if periods is None:
        price = np.asarray(price_per_kwh)
        p = None if p_kw is None else np.asarray(p_kw)
        if price.ndim == 1:
            periods = int(price.size)
        elif p is not None and p.ndim == 2:
            periods = int(p.shape[0])
        elif flexible is not None:
            periods = int(_one_block(flexible).flexibility.horizon.n_periods)
        else:
            periods = 1
    model = OpfModel(
        feeder,
        formulation=formulation,
        periods=periods,
        dt_s=dt_s,
        flexible=flexible,
        substation_kva=substation_kva,
    )
    return model.solve(price_per_kwh, p_kw, q_kvar, i_max_ka=i_max_ka, ac_check=ac_check)
