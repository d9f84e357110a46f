"""Convex optimal power flow of a radial feeder over T periods, with DLMPs from the duals.

Two formulations of the branch flow model are built once per feeder as a cvxpy problem with
``Parameter`` s (disciplined parametrized programming, ``problem.is_dpp()``), and re-solved for
every interval with new prices, loads, flexible-load states and limits:

* ``"socp"``: the second-order-cone relaxation of the branch flow model (DistFlow) of Farivar &
  Low (2013): the equality ``ℓ_k = (P_k² + Q_k²)/v_i`` relaxed to ``ℓ_k v_i ≥ P_k² + Q_k²``;
  solved by Clarabel. The relaxation is exact when every cone is
  tight; the result reports the gap and checks the solution with a pandapower AC power flow.
* ``"lindistflow"``: the linearized DistFlow of Baran & Wu (1989b), losses dropped
  (``ℓ = 0``); a linear program (Clarabel by default, HiGHS on request) with the thermal
  limits as a regular polygon inscribed in the circle ``P² + Q² ≤ S²``, so the approximation
  never exceeds the rating.

Per unit (the feeder's ``s_base_kva``, squared voltages ``v``), for branch ``k = (i → j)`` with
resistance ``r``, reactance ``x``, off-nominal ratio ``τ`` at the ``i`` end, current squared ``ℓ``
and sending-end flow ``P + jQ``:

* balance at node j (consumption ``p_j + j q_j``; substation injection ``P0 + jQ0`` at the slack;
  shunt admittance ``g_j + j b_j`` from line charging and transformer magnetizing):
  ``Σ_{k→j} (P_k − r_k ℓ_k) − Σ_{j→k} P_k + [j = s] P0 = p_j + g_j v_j`` and
  ``Σ_{k→j} (Q_k − x_k ℓ_k) − Σ_{j→k} Q_k + [j = s] Q0 = q_j − b_j v_j``;
* voltage drop: ``v_j = v_i/τ² − 2 (r P + x Q) + (r² + x²) ℓ``;
* relaxation (SOCP only): ``‖(2P, 2Q, ℓ − v_i/τ²)‖ ≤ ℓ + v_i/τ²``;
* limits: ``v_min² ≤ v ≤ v_max²`` (not at the slack, whose voltage is fixed);
  ``‖(P, Q)‖ ≤ S_max`` at the substation-side end of every branch (thermal rating as apparent
  power at nominal voltage; transformers are branches, so their rating is included), and
  optionally ``‖(P0, Q0)‖ ≤ S_sub`` at the substation.

Flexible loads (all real power, unity power factor), each a frozen dataclass of arrays, one row
per load and a node index ``bus``:

* :class:`EVLoads` deliver ``energy_kwh`` between their ``arrival`` and ``departure`` periods;
* :class:`Batteries` follow ``e_{t+1} = e_t + Δt (η_c c_t − d_t / η_d)`` within SOC limits;
* virtual batteries (thermostatic loads as in Hao, Sanandaji, Poolla & Vincent, "Aggregate
  flexibility of thermostatically controlled loads", IEEE TPWRS 30(1), 2015): deviation
  ``u = p − baseline`` within bounds, state
  ``x_{t+1} = e^{−αΔt} x_t + (1 − e^{−αΔt})/α · u_t``, ``|x| ≤ C`` (the exact discretization
  of ``ẋ = −α x + u``).

The cost is the energy bought at the substation at the (time-varying) price plus battery
throughput cost and thermostatic discomfort cost per kWh of deviation from the baseline.

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
from typing import Any, Literal, Protocol

import cvxpy as _cvxpy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from transactive.errors import Problems
from transactive.network.feeders import Feeder
from transactive.network.powerflow import PowerFlowRunner

__all__ = [
    "AcCheck",
    "Batteries",
    "Dlmp",
    "EVLoads",
    "Formulation",
    "OpfModel",
    "OpfResult",
    "VirtualBatteries",
    "VirtualBatteryLike",
    "solve_opf",
]

cp: Any = _cvxpy  # cvxpy ships partial type information; treat its namespace as untyped

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


@dataclass(frozen=True)
class EVLoads:
    """Electric vehicles that must receive an energy by a deadline (one row per vehicle).

    Attributes
    ----------
    bus : (M,) int
        Node of every vehicle.
    power_max_kw : (M,) float
        Charger rating (charging only, no vehicle-to-grid).
    energy_kwh : (M,) float
        Energy to deliver to the battery between arrival and departure.
    arrival : (M,) int
        First period the vehicle is plugged in.
    departure : (M,) int
        Period by whose start charging is done (exclusive); ``arrival < departure <= T``.
    efficiency : (M,) float
        Charger efficiency; the grid supplies ``energy_kwh / efficiency``.

    """

    bus: npt.ArrayLike
    power_max_kw: npt.ArrayLike
    energy_kwh: npt.ArrayLike
    arrival: npt.ArrayLike
    departure: npt.ArrayLike
    efficiency: npt.ArrayLike = 1.0


@dataclass(frozen=True)
class Batteries:
    """Stationary batteries (one row per battery), charge ``c`` and discharge ``d`` in kW.

    Attributes
    ----------
    bus : (M,) int
        Node of every battery.
    charge_max_kw, discharge_max_kw : (M,) float
        Power ratings.
    capacity_kwh : (M,) float
        Usable energy capacity.
    soc_init_pu : (M,) float
        State of charge at the start of the first period.
    soc_min_pu, soc_max_pu : (M,) float
        State-of-charge limits.
    soc_final_pu : (M,) float or None
        Least state of charge at the end of the horizon (default: ``soc_init_pu``).
    efficiency_charge, efficiency_discharge : (M,) float
        One-way efficiencies, ``e_{t+1} = e_t + Δt (η_c c − d / η_d)``.
    cost_per_kwh : (M,) float
        Degradation cost per kWh of throughput ``(c + d) Δt``.

    """

    bus: npt.ArrayLike
    charge_max_kw: npt.ArrayLike
    discharge_max_kw: npt.ArrayLike
    capacity_kwh: npt.ArrayLike
    soc_init_pu: npt.ArrayLike = 0.5
    soc_min_pu: npt.ArrayLike = 0.0
    soc_max_pu: npt.ArrayLike = 1.0
    soc_final_pu: npt.ArrayLike | None = None
    efficiency_charge: npt.ArrayLike = 0.95
    efficiency_discharge: npt.ArrayLike = 0.95
    cost_per_kwh: npt.ArrayLike = 0.0


class VirtualBatteryLike(Protocol):
    """What the OPF reads from a virtual-battery population (duck-typed)."""

    @property
    def power_min_kw(self) -> Any: ...  # noqa: D102

    @property
    def power_max_kw(self) -> Any: ...  # noqa: D102

    @property
    def energy_capacity_kwh(self) -> Any: ...  # noqa: D102

    @property
    def dissipation_per_s(self) -> Any: ...  # noqa: D102

    @property
    def baseline_kw(self) -> Any: ...  # noqa: D102


@dataclass(frozen=True)
class VirtualBatteries:
    """Aggregated thermostatic loads as virtual batteries (Hao et al. 2015), one row each.

    The fields follow :class:`transactive.prosumer.virtual_battery.VirtualBattery` (power bounds
    on the deviation ``u = p − baseline``), with a node per row; :meth:`stack` builds one from
    a sequence of such batteries.

    Attributes
    ----------
    bus : (M,) int
        Node of every aggregate.
    power_min_kw, power_max_kw : (M,) or (M, T) float
        Bounds on the deviation ``u = p − baseline`` (``power_min_kw <= 0 <= power_max_kw``).
    energy_capacity_kwh : (M,) float
        ``C``: the state (energy shifted relative to the baseline) stays in ``[-C, C]``.
    dissipation_per_s : (M,) float
        ``a``: the state follows ``dx/dt = −a x + u``.
    baseline_kw : (M,) or (M, T) float
        Power the loads draw when not shifted.
    energy_init_kwh : (M,) float
        State at the start of the first period.
    discomfort_per_kwh : (M,) float
        Cost per kWh of absolute deviation ``|u| Δt``.

    """

    bus: npt.ArrayLike
    power_min_kw: npt.ArrayLike
    power_max_kw: npt.ArrayLike
    energy_capacity_kwh: npt.ArrayLike
    dissipation_per_s: npt.ArrayLike
    baseline_kw: npt.ArrayLike
    energy_init_kwh: npt.ArrayLike = 0.0
    discomfort_per_kwh: npt.ArrayLike = 0.0

    @classmethod
    def stack(
        cls,
        bus: npt.ArrayLike,
        batteries: Sequence[VirtualBatteryLike],
        *,
        energy_init_kwh: npt.ArrayLike = 0.0,
        discomfort_per_kwh: npt.ArrayLike = 0.0,
    ) -> VirtualBatteries:
        """One row per battery (objects with the :class:`VirtualBatteryLike` fields)."""
        fields = (
            "power_min_kw",
            "power_max_kw",
            "energy_capacity_kwh",
            "dissipation_per_s",
            "baseline_kw",
        )
        cols = {
            f: np.asarray([np.asarray(getattr(b, f), dtype=np.float64) for b in batteries])
            for f in fields
        }
        return cls(
            bus=np.asarray(bus),
            energy_init_kwh=energy_init_kwh,
            discomfort_per_kwh=discomfort_per_kwh,
            **cols,
        )


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class Dlmp:
    """Distribution locational marginal prices per node and period, per kWh.

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
    vm_pu : (N, T) float
        AC voltage magnitudes.
    losses_kw : (T,) float
        AC losses.
    max_vm_error_pu : float
        Largest ``|vm_opf − vm_ac|`` over nodes and periods.
    max_losses_error_pct : float
        Largest ``|losses_opf − losses_ac| / losses_ac`` in percent over periods.
    max_branch_loading_pct : (T,) float
        Largest AC branch loading (current based) per period.

    """

    converged: npt.NDArray[np.bool_]
    vm_pu: FloatArray
    losses_kw: FloatArray
    max_vm_error_pu: float
    max_losses_error_pct: float
    max_branch_loading_pct: FloatArray


@dataclass(frozen=True, eq=False)
class OpfResult:
    """Solution of one OPF solve; (N, T) node arrays, (B, T) branch arrays.

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
    p_kw, q_kvar : (N, T) float
        Net consumption per node including the flexible loads.
    vm_pu : (N, T) float
        Voltage magnitude.
    vmin_pu : float
        Smallest voltage over nodes and periods.
    branch_p_kw, branch_q_kvar : (B, T) float
        Sending-end (substation side) branch flows.
    branch_loading_pct : (B, T) float
        Sending-end apparent power over the rating.
    relaxation_gap : float or None
        SOCP: largest normalized cone gap ``(ℓ v − P² − Q²)/(ℓ v)`` over branches carrying at
        least 1 % of the power base, and periods. None for LinDistFlow.
    relaxation_gap_per_branch : (B, T) float
        The gap per branch and period (NaN for LinDistFlow).
    relaxation_exact : bool or None
        SOCP: ``relaxation_gap <= gap_tol``. When False the SOCP solution is not a physical
        power flow (the relaxation is not exact); use ``ac_check`` to see how far it is.
    dlmp : Dlmp
        DLMPs and their components (per kWh).
    ac_check : AcCheck or None
        pandapower AC power flow at the OPF's injections (None when not requested).
    ev_kw, battery_kw, battery_energy_kwh, vb_kw, vb_energy_kwh : arrays
        Flexible-load schedules: EV charging (M, T); battery net power ``c − d`` (M, T) and
        energy (M, T+1); virtual-battery power (M, T) and state (M, T+1).

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
    ev_kw: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    battery_kw: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    battery_energy_kwh: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    vb_kw: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    vb_energy_kwh: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def optimal(self) -> bool:
        """The solver reported an optimal (possibly inaccurate) solution."""
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
class _EvValues:
    bus: IntArray
    upper_kw: FloatArray  # (M, T)
    grid_energy_kwh: FloatArray  # (M,)


@dataclass(frozen=True)
class _BatteryValues:
    bus: IntArray
    charge_max_kw: FloatArray  # (M, T)
    discharge_max_kw: FloatArray
    eta_c: FloatArray  # (M, T)
    inv_eta_d: FloatArray
    e_init: FloatArray  # (M,)
    e_lo: FloatArray  # (M, T+1)
    e_hi: FloatArray
    e_final: FloatArray  # (M,)
    cost: FloatArray  # (M, T)


@dataclass(frozen=True)
class _VbValues:
    bus: IntArray
    p_lo: FloatArray  # (M, T)
    p_hi: FloatArray
    decay: FloatArray  # (M, T)
    gain_h: FloatArray  # (M, T)
    cap: FloatArray  # (M, T+1)
    x_init: FloatArray  # (M,)
    baseline: FloatArray  # (M, T)
    discomfort: FloatArray  # (M, T)


def _ev_values(evs: EVLoads, n: int, t: int, dt_h: float) -> _EvValues:
    problems = Problems(subject="EV loads")
    bus = _buses(problems, "bus", evs.bus, n)
    m = bus.size
    pmax = _per_row(problems, "power_max_kw", evs.power_max_kw, m)
    energy = _per_row(problems, "energy_kwh", evs.energy_kwh, m)
    eff = _per_row(problems, "efficiency", evs.efficiency, m)
    arrival = np.broadcast_to(np.asarray(evs.arrival), (m,)).astype(np.int64)
    departure = np.broadcast_to(np.asarray(evs.departure), (m,)).astype(np.int64)
    problems.check(pmax < 0, "power_max_kw", "must be non-negative")
    problems.check(energy < 0, "energy_kwh", "must be non-negative")
    problems.check(~((eff > 0) & (eff <= 1)), "efficiency", "must be in (0, 1]")
    problems.check(
        ~((arrival >= 0) & (arrival < departure) & (departure <= t)),
        "arrival/departure",
        f"need 0 <= arrival < departure <= {t} (periods)",
    )
    problems.raise_if_any()
    periods = np.arange(t)
    avail = (periods[None, :] >= arrival[:, None]) & (periods[None, :] < departure[:, None])
    upper = pmax[:, None] * avail
    grid = energy / eff
    problems.check(
        grid > upper.sum(axis=1) * dt_h * (1 + 1e-9),
        "energy_kwh",
        "cannot be delivered by the charger between arrival and departure",
    )
    problems.raise_if_any()
    return _EvValues(bus, upper, grid)


def _battery_values(b: Batteries, n: int, t: int, dt_h: float) -> _BatteryValues:
    problems = Problems(subject="batteries")
    bus = _buses(problems, "bus", b.bus, n)
    m = bus.size
    cmax = _per_row(problems, "charge_max_kw", b.charge_max_kw, m)
    dmax = _per_row(problems, "discharge_max_kw", b.discharge_max_kw, m)
    cap = _per_row(problems, "capacity_kwh", b.capacity_kwh, m)
    s0 = _per_row(problems, "soc_init_pu", b.soc_init_pu, m)
    lo = _per_row(problems, "soc_min_pu", b.soc_min_pu, m)
    hi = _per_row(problems, "soc_max_pu", b.soc_max_pu, m)
    sf = s0 if b.soc_final_pu is None else _per_row(problems, "soc_final_pu", b.soc_final_pu, m)
    ec = _per_row(problems, "efficiency_charge", b.efficiency_charge, m)
    ed = _per_row(problems, "efficiency_discharge", b.efficiency_discharge, m)
    cost = _per_row(problems, "cost_per_kwh", b.cost_per_kwh, m)
    problems.check((cmax < 0) | (dmax < 0), "charge_max_kw/discharge_max_kw", "must be >= 0")
    problems.check(cap <= 0, "capacity_kwh", "must be positive")
    problems.check(
        ~((lo >= 0) & (lo <= hi) & (hi <= 1)),
        "soc_min_pu/soc_max_pu",
        "need 0 <= soc_min_pu <= soc_max_pu <= 1",
    )
    problems.check(~((s0 >= lo) & (s0 <= hi)), "soc_init_pu", "must be within the SOC limits")
    problems.check(~((sf >= lo) & (sf <= hi)), "soc_final_pu", "must be within the SOC limits")
    problems.check(
        ~((ec > 0) & (ec <= 1) & (ed > 0) & (ed <= 1)), "efficiency", "must be in (0, 1]"
    )
    problems.check(cost < 0, "cost_per_kwh", "must be non-negative")
    problems.raise_if_any()
    return _BatteryValues(
        bus=bus,
        charge_max_kw=np.repeat(cmax[:, None], t, axis=1),
        discharge_max_kw=np.repeat(dmax[:, None], t, axis=1),
        eta_c=np.repeat((ec * dt_h)[:, None], t, axis=1),
        inv_eta_d=np.repeat((dt_h / ed)[:, None], t, axis=1),
        e_init=s0 * cap,
        e_lo=np.repeat((lo * cap)[:, None], t + 1, axis=1),
        e_hi=np.repeat((hi * cap)[:, None], t + 1, axis=1),
        e_final=sf * cap,
        cost=np.repeat((cost * dt_h)[:, None], t, axis=1),
    )


def _vb_values(vb: Any, n: int, t: int, dt_h: float) -> _VbValues:
    problems = Problems(subject="virtual batteries")
    bus = _buses(problems, "bus", vb.bus, n)
    m = bus.size
    u_lo = _per_row(problems, "power_min_kw", vb.power_min_kw, m, t)
    u_hi = _per_row(problems, "power_max_kw", vb.power_max_kw, m, t)
    cap = _per_row(problems, "energy_capacity_kwh", vb.energy_capacity_kwh, m)
    alpha = _per_row(problems, "dissipation_per_s", vb.dissipation_per_s, m)
    base = _per_row(problems, "baseline_kw", vb.baseline_kw, m, t)
    x0 = _per_row(problems, "energy_init_kwh", getattr(vb, "energy_init_kwh", 0.0), m)
    disc = _per_row(problems, "discomfort_per_kwh", getattr(vb, "discomfort_per_kwh", 0.0), m)
    problems.check((u_lo > 0).any(axis=1), "power_min_kw", "must be <= 0 (a deviation bound)")
    problems.check((u_hi < 0).any(axis=1), "power_max_kw", "must be >= 0 (a deviation bound)")
    problems.check(cap < 0, "energy_capacity_kwh", "must be non-negative")
    problems.check(alpha < 0, "dissipation_per_s", "must be non-negative")
    problems.check(np.abs(x0) > cap, "energy_init_kwh", "must be within [-C, C]")
    problems.check(disc < 0, "discomfort_per_kwh", "must be non-negative")
    problems.raise_if_any()
    dt_s = dt_h * 3600.0
    decay = np.exp(-alpha * dt_s)
    # ∫0^Δt e^{-α s} ds in hours (kW · h = kWh); Δt when α = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(alpha > 0, (1.0 - decay) / np.where(alpha > 0, alpha, 1.0) / 3600.0, dt_h)
    return _VbValues(
        bus=bus,
        p_lo=base + u_lo,
        p_hi=base + u_hi,
        decay=np.repeat(decay[:, None], t, axis=1),
        gain_h=np.repeat(gain[:, None], t, axis=1),
        cap=np.repeat(cap[:, None], t + 1, axis=1),
        x_init=x0,
        baseline=base,
        discomfort=np.repeat((disc * dt_h)[:, None], t, axis=1),
    )


def _vec(expr: Any) -> Any:
    """Column-major flattening (period-major blocks of branches) of a cvxpy expression."""
    return cp.vec(expr, order="F")


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
    evs, batteries, virtual_batteries : optional
        Flexible loads. Their number and nodes fix the problem's structure; their values are
        parameters that :meth:`solve` may replace. ``virtual_batteries`` is a
        :class:`VirtualBatteries` or any object with its fields (``bus`` and the
        :class:`VirtualBatteryLike` attributes).
    substation_kva : float, optional
        Rating of the substation (apparent power drawn from the upstream grid).
    polygon_sides : int
        LinDistFlow: sides of the polygon that replaces each thermal circle (at least 4).
    solver : str, optional
        cvxpy solver name (default CLARABEL; HIGHS suits LinDistFlow, which is an LP, but
        cvxpy asks HiGHS for a Farkas ray on infeasible problems, which can take long).
    dpp_cache : bool, optional
        Re-solve through cvxpy's DPP cache (compile once, then only substitute parameters).
        cvxpy's DPP tensor for cone programs grows as (variables × parameters), so by default
        the cache is used unless the problem has second-order cones and that product exceeds
        2·10⁷ (e.g. a 100-node SOCP over 96 periods); then each solve recompiles the problem
        with the parameter values substituted (``ignore_dpp``), which is faster at that size.

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
        evs: EVLoads | None = None,
        batteries: Batteries | None = None,
        virtual_batteries: Any | None = None,
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
        self._ev = _ev_values(evs, n, t, self.dt_h) if evs is not None else None
        self._bat = _battery_values(batteries, n, t, self.dt_h) if batteries is not None else None
        self._vb = (
            _vb_values(virtual_batteries, n, t, self.dt_h)
            if virtual_batteries is not None
            else None
        )
        self._build()
        self._factor_dual_system()
        n_var = sum(int(v.size) for v in self.problem.variables())
        n_par = sum(int(q.size) for q in self.problem.parameters())
        has_cones = self.formulation == "socp"
        self.dpp_cache = (
            dpp_cache
            if dpp_cache is not None
            else not (has_cones and (n_var + 1) * (n_par + 1) > _DPP_TENSOR_LIMIT)
        )

    # ---------------------------------------------------------------- build

    def _build(self) -> None:
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
        # flattened column-major (branch fastest): reshaping a parameter inside a cone makes
        # cvxpy's DPP tensor grow quadratically, so the rating is a vector from the start
        self.s_max = cp.Parameter(nb * t, nonneg=True, name="s_max_pu_flat")

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
        # flexible loads (kW variables, mapped to nodes in per unit)
        self.ev_p = self.bat_c = self.bat_d = self.bat_e = self.vb_p = self.vb_x = None
        if self._ev is not None:
            m = self._ev.bus.size
            self.ev_upper = cp.Parameter((m, t), nonneg=True, name="ev_upper_kw")
            self.ev_energy = cp.Parameter(m, nonneg=True, name="ev_grid_energy_kwh")
            self.ev_p = cp.Variable((m, t), name="ev_kw")
            cons += [
                self.ev_p >= 0,
                self.ev_p <= self.ev_upper,
                cp.sum(self.ev_p, axis=1) * self.dt_h == self.ev_energy,
            ]
            p_node = p_node + (_incidence(self._ev.bus, n) / self._sbase) @ self.ev_p
        if self._bat is not None:
            m = self._bat.bus.size
            self.bat_cmax = cp.Parameter((m, t), nonneg=True, name="bat_charge_max_kw")
            self.bat_dmax = cp.Parameter((m, t), nonneg=True, name="bat_discharge_max_kw")
            self.bat_eta_c = cp.Parameter((m, t), nonneg=True, name="bat_eta_c_h")
            self.bat_inv_eta_d = cp.Parameter((m, t), nonneg=True, name="bat_inv_eta_d_h")
            self.bat_e0 = cp.Parameter(m, nonneg=True, name="bat_e_init_kwh")
            self.bat_elo = cp.Parameter((m, t + 1), nonneg=True, name="bat_e_min_kwh")
            self.bat_ehi = cp.Parameter((m, t + 1), nonneg=True, name="bat_e_max_kwh")
            self.bat_efin = cp.Parameter(m, nonneg=True, name="bat_e_final_kwh")
            self.bat_cost = cp.Parameter((m, t), nonneg=True, name="bat_cost_per_kw_period")
            self.bat_c = cp.Variable((m, t), nonneg=True, name="bat_charge_kw")
            self.bat_d = cp.Variable((m, t), nonneg=True, name="bat_discharge_kw")
            self.bat_e = cp.Variable((m, t + 1), name="bat_energy_kwh")
            cons += [
                self.bat_c <= self.bat_cmax,
                self.bat_d <= self.bat_dmax,
                self.bat_e[:, 0] == self.bat_e0,
                self.bat_e[:, 1:]
                == self.bat_e[:, :-1]
                + cp.multiply(self.bat_eta_c, self.bat_c)
                - cp.multiply(self.bat_inv_eta_d, self.bat_d),
                self.bat_e >= self.bat_elo,
                self.bat_e <= self.bat_ehi,
                self.bat_e[:, t] >= self.bat_efin,
            ]
            objective = objective + cp.sum(cp.multiply(self.bat_cost, self.bat_c + self.bat_d))
            p_node = p_node + (_incidence(self._bat.bus, n) / self._sbase) @ (
                self.bat_c - self.bat_d
            )
        if self._vb is not None:
            m = self._vb.bus.size
            self.vb_lo = cp.Parameter((m, t), name="vb_p_min_kw")
            self.vb_hi = cp.Parameter((m, t), name="vb_p_max_kw")
            self.vb_decay = cp.Parameter((m, t), nonneg=True, name="vb_decay")
            self.vb_gain = cp.Parameter((m, t), nonneg=True, name="vb_gain_h")
            self.vb_cap = cp.Parameter((m, t + 1), nonneg=True, name="vb_capacity_kwh")
            self.vb_x0 = cp.Parameter(m, name="vb_x_init_kwh")
            self.vb_base = cp.Parameter((m, t), name="vb_baseline_kw")
            self.vb_gain_base = cp.Parameter((m, t), name="vb_gain_times_baseline_kwh")
            self.vb_disc = cp.Parameter((m, t), nonneg=True, name="vb_discomfort")
            self.vb_p = cp.Variable((m, t), name="vb_kw")
            self.vb_x = cp.Variable((m, t + 1), name="vb_state_kwh")
            dev = cp.Variable((m, t), nonneg=True, name="vb_abs_deviation_kw")
            cons += [
                self.vb_p >= self.vb_lo,
                self.vb_p <= self.vb_hi,
                self.vb_x[:, 0] == self.vb_x0,
                self.vb_x[:, 1:]
                == cp.multiply(self.vb_decay, self.vb_x[:, :-1])
                + cp.multiply(self.vb_gain, self.vb_p)
                - self.vb_gain_base,
                self.vb_x <= self.vb_cap,
                self.vb_x >= -self.vb_cap,
                dev >= self.vb_p - self.vb_base,
                dev >= self.vb_base - self.vb_p,
            ]
            objective = objective + cp.sum(cp.multiply(self.vb_disc, dev))
            p_node = p_node + (_incidence(self._vb.bus, n) / self._sbase) @ self.vb_p
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
        self.thermal: list[Any]
        self.sub_limit: list[Any] = []
        if self.formulation == "socp":
            self.thermal = [cp.SOC(self.s_max, cp.vstack([vec(self.P), vec(self.Q)]), axis=0)]
            if self.substation_kva is not None:
                s0 = self.substation_kva / self._sbase
                self.sub_limit = [cp.SOC(np.full(t, s0), cp.vstack([self.P0, self.Q0]), axis=0)]
        else:
            k = self.polygon_sides
            angles = 2 * np.pi * np.arange(k) / k
            self._poly = np.column_stack([np.cos(angles), np.sin(angles)])
            shrink = np.cos(np.pi / k)  # inscribed polygon: never exceeds the circle
            p_flat, q_flat = vec(self.P), vec(self.Q)
            self.thermal = [a * p_flat + b * q_flat <= shrink * self.s_max for a, b in self._poly]
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
        if self.formulation == "socp":
            _, z_x = cone_parts(self.thermal[0], 2)
            cong[o_p:o_q] += -z_x[0].reshape((nb, t), order="F")
            cong[o_q:o_v] += -z_x[1].reshape((nb, t), order="F")
            if self.sub_limit:
                _, z0 = cone_parts(self.sub_limit[0], 2)
                cong[0] += -z0[0]
                cong[1] += -z0[1]
        else:
            for (a, b), con in zip(self._poly, self.thermal, strict=True):
                mu = np.asarray(con.dual_value)
                cong[o_p:o_q] += a * mu.reshape((nb, t), order="F")
                cong[o_q:o_v] += b * mu.reshape((nb, t), order="F")
            for (a, b), con in zip(self._poly, self.sub_limit, strict=False):
                mu = np.asarray(con.dual_value)
                cong[0] += a * mu
                cong[1] += b * mu
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
        evs: EVLoads | None = None,
        batteries: Batteries | None = None,
        virtual_batteries: Any | None = None,
        s_max_kva: npt.ArrayLike | None = None,
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
        p_kw, q_kvar : (N,) or (N, T) float, optional
            Fixed (inflexible) net consumption per node; default the feeder's nominal
            ``net_p_kw`` / ``net_q_kvar`` in every period.
        evs, batteries, virtual_batteries : optional
            New values for the flexible loads given at construction (same count and nodes).
        s_max_kva : (B,) or (B, T) float, optional
            Branch ratings; default the feeder's ``branch_s_max_kva``.
        vmin_pu, vmax_pu : (N,) or (N, T) float, optional
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

        """
        self._set_parameters(
            price_per_kwh,
            p_kw,
            q_kvar,
            evs,
            batteries,
            virtual_batteries,
            s_max_kva,
            vmin_pu,
            vmax_pu,
            slack_vm_pu,
        )
        self.problem.solve(solver=self.solver, ignore_dpp=not self.dpp_cache)
        return self._result(ac_check=ac_check, gap_tol=gap_tol)

    def _set_parameters(
        self,
        price: Any,
        p_kw: Any,
        q_kvar: Any,
        evs: EVLoads | None,
        batteries: Batteries | None,
        vbs: Any,
        s_max_kva: Any,
        vmin_pu: Any,
        vmax_pu: Any,
        slack_vm_pu: Any,
    ) -> None:
        f = self.feeder
        n, nb, t = self._n, self._nb, self._t
        problems = Problems(subject="OPF inputs")

        def series(name: str, value: Any, rows: int | None) -> FloatArray:
            arr = np.asarray(value, dtype=np.float64)
            shape = (t,) if rows is None else (rows, t)
            try:
                if rows is not None and arr.ndim == 1:
                    arr = arr[:, None]
                out = np.broadcast_to(arr, shape).astype(np.float64)
            except ValueError:
                want = "scalar or (T,)" if rows is None else f"({rows},) or ({rows}, {t})"
                problems.add(name, f"needs shape {want} with T = {t}, got {arr.shape}")
                return np.zeros(shape)
            bad = ~np.isfinite(out)
            problems.check(bad if rows is None else bad.any(axis=1), name, "must be finite")
            return out

        price_a = series("price_per_kwh", price, None)
        p = series("p_kw", f.net_p_kw if p_kw is None else p_kw, n)
        q = series("q_kvar", f.net_q_kvar if q_kvar is None else q_kvar, n)
        s_max = series("s_max_kva", f.branch_s_max_kva if s_max_kva is None else s_max_kva, nb)
        problems.check((s_max < 0).any(axis=1), "s_max_kva", "must be non-negative")
        lo = series("vmin_pu", f.vmin_pu if vmin_pu is None else vmin_pu, n)
        hi = series("vmax_pu", f.vmax_pu if vmax_pu is None else vmax_pu, n)
        problems.check(
            ((lo < 0) | (lo > hi)).any(axis=1), "vmin_pu/vmax_pu", "need 0 <= vmin_pu <= vmax_pu"
        )
        vs = series("slack_vm_pu", f.slack_vm_pu if slack_vm_pu is None else slack_vm_pu, None)
        problems.check(vs <= 0, "slack_vm_pu", "must be positive")
        for name, given, built in (
            ("evs", evs, self._ev),
            ("batteries", batteries, self._bat),
            ("virtual_batteries", vbs, self._vb),
        ):
            if given is not None and built is None:
                problems.add(name, "the model was built without them; build a new OpfModel")
        problems.raise_if_any()
        ev = _ev_values(evs, n, t, self.dt_h) if evs is not None else self._ev
        bat = _battery_values(batteries, n, t, self.dt_h) if batteries is not None else self._bat
        vb = _vb_values(vbs, n, t, self.dt_h) if vbs is not None else self._vb
        for name, new, old in (
            ("evs", ev, self._ev),
            ("batteries", bat, self._bat),
            ("virtual_batteries", vb, self._vb),
        ):
            if new is not None and old is not None and not np.array_equal(new.bus, old.bus):
                problems.add(name, "must have the same count and nodes as at construction")
        problems.raise_if_any()

        self.price.value = price_a
        self.p_fixed.value = p / self._sbase
        self.q_fixed.value = q / self._sbase
        self.v_slack.value = vs**2
        ns = self._nonslack
        self.v_lo.value = lo[ns] ** 2
        self.v_hi.value = np.minimum(hi[ns], 10.0) ** 2
        self.s_max.value = np.minimum(s_max / self._sbase, _UNRATED_PU).reshape(-1, order="F")
        if ev is not None:
            self._ev = ev
            self.ev_upper.value = ev.upper_kw
            self.ev_energy.value = ev.grid_energy_kwh
        if bat is not None:
            self._bat = bat
            self.bat_cmax.value = bat.charge_max_kw
            self.bat_dmax.value = bat.discharge_max_kw
            self.bat_eta_c.value = bat.eta_c
            self.bat_inv_eta_d.value = bat.inv_eta_d
            self.bat_e0.value = bat.e_init
            self.bat_elo.value = bat.e_lo
            self.bat_ehi.value = bat.e_hi
            self.bat_efin.value = bat.e_final
            self.bat_cost.value = bat.cost
        if vb is not None:
            self._vb = vb
            self.vb_lo.value = vb.p_lo
            self.vb_hi.value = vb.p_hi
            self.vb_decay.value = vb.decay
            self.vb_gain.value = vb.gain_h
            self.vb_cap.value = vb.cap
            self.vb_x0.value = vb.x_init
            self.vb_base.value = vb.baseline
            self.vb_gain_base.value = vb.gain_h * vb.baseline
            self.vb_disc.value = vb.discomfort

    def _result(self, *, ac_check: bool, gap_tol: float) -> OpfResult:
        n, nb, t = self._n, self._nb, self._t
        sb = self._sbase
        status = str(self.problem.status)
        if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            return _failed_result(self.formulation, status, n, nb, t)
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
            energy=comps["energy"] * scale,
            loss=comps["loss"] * scale,
            congestion=comps["congestion"] * scale,
            voltage=comps["voltage"] * scale,
            total=total * scale,
            residual=float(np.max(np.abs(total - dual))) * scale,
        )
        p_node = np.asarray(self._p_node.value) * sb
        q_node = np.asarray(self.q_fixed.value) * sb
        s_max = np.asarray(self.s_max.value).reshape((nb, t), order="F")
        with np.errstate(divide="ignore", invalid="ignore"):
            loading = np.where(s_max > 0, np.hypot(P, Q) / s_max * 100.0, np.nan)
        p0 = np.asarray(self.P0.value) * sb
        check = self._ac_check(p_node, q_node, vm, losses) if ac_check else None

        def val(var: Any, rows: int, cols: int) -> FloatArray:
            return np.asarray(var.value) if var is not None else np.zeros((rows, cols))

        bat_kw = (
            np.asarray(self.bat_c.value) - np.asarray(self.bat_d.value)
            if self.bat_c is not None and self.bat_d is not None
            else np.zeros((0, t))
        )
        return OpfResult(
            formulation=self.formulation,
            status=status,
            cost=float(self.problem.value),
            energy_cost=np.asarray(self.price.value) * p0 * self.dt_h,
            substation_p_kw=p0,
            substation_q_kvar=np.asarray(self.Q0.value) * sb,
            losses_kw=np.asarray(losses),
            p_kw=p_node,
            q_kvar=q_node,
            vm_pu=vm,
            vmin_pu=float(vm.min()),
            branch_p_kw=P * sb,
            branch_q_kvar=Q * sb,
            branch_loading_pct=loading,
            relaxation_gap=gap_max,
            relaxation_gap_per_branch=gap,
            relaxation_exact=exact,
            dlmp=dlmp,
            ac_check=check,
            ev_kw=val(self.ev_p, 0, t),
            battery_kw=bat_kw,
            battery_energy_kwh=val(self.bat_e, 0, t + 1),
            vb_kw=val(self.vb_p, 0, t),
            vb_energy_kwh=val(self.vb_x, 0, t + 1),
        )

    def _ac_check(
        self, p_kw: FloatArray, q_kvar: FloatArray, vm: FloatArray, losses: FloatArray
    ) -> AcCheck:
        runner = PowerFlowRunner(self.feeder, replace_injections=True)
        n, t = self._n, self._t
        vm_ac = np.full((n, t), np.nan)
        loss_ac = np.full(t, np.nan)
        conv = np.zeros(t, dtype=bool)
        loading = np.full(t, np.nan)
        vs = np.sqrt(np.asarray(self.v_slack.value))
        for k in range(t):
            runner.set_slack_voltage(float(vs[k]))
            res = runner.run(p_kw[:, k], q_kvar[:, k])
            conv[k] = res.converged
            if res.converged:
                vm_ac[:, k] = res.vm_pu
                loss_ac[k] = res.losses_kw
                loading[k] = float(np.nanmax(res.branch_loading_pct))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(losses - loss_ac) / np.abs(loss_ac) * 100.0
        return AcCheck(
            converged=conv,
            vm_pu=vm_ac,
            losses_kw=loss_ac,
            max_vm_error_pu=float(np.nanmax(np.abs(vm - vm_ac))) if conv.any() else np.nan,
            max_losses_error_pct=float(np.nanmax(rel)) if conv.any() else np.nan,
            max_branch_loading_pct=loading,
        )


def _failed_result(formulation: str, status: str, n: int, nb: int, t: int) -> OpfResult:
    nan_nt = np.full((n, t), np.nan)
    nan_bt = np.full((nb, t), np.nan)
    nan_t = np.full(t, np.nan)
    dlmp = Dlmp(nan_nt, nan_nt, nan_nt, nan_nt, nan_nt, np.nan)
    return OpfResult(
        formulation=formulation,
        status=status,
        cost=np.nan,
        energy_cost=nan_t,
        substation_p_kw=nan_t,
        substation_q_kvar=nan_t,
        losses_kw=nan_t,
        p_kw=nan_nt,
        q_kvar=nan_nt,
        vm_pu=nan_nt,
        vmin_pu=np.nan,
        branch_p_kw=nan_bt,
        branch_q_kvar=nan_bt,
        branch_loading_pct=nan_bt,
        relaxation_gap=None,
        relaxation_gap_per_branch=nan_bt,
        relaxation_exact=None,
        dlmp=dlmp,
        ac_check=None,
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
    evs: EVLoads | None = None,
    batteries: Batteries | None = None,
    virtual_batteries: Any | None = None,
    substation_kva: float | None = None,
    s_max_kva: npt.ArrayLike | None = None,
    ac_check: bool = True,
) -> OpfResult:
    """Build an :class:`OpfModel` and solve it once (T from ``price_per_kwh`` or ``p_kw``).

    ``periods`` defaults to the length of ``price_per_kwh`` when it is an array, else to the
    number of columns of a two-dimensional ``p_kw``, else 1. See :class:`OpfModel` and
    :meth:`OpfModel.solve` for the other arguments.
    """
    if periods is None:
        price = np.asarray(price_per_kwh)
        p = None if p_kw is None else np.asarray(p_kw)
        periods = (
            int(price.size)
            if price.ndim == 1
            else int(p.shape[1])
            if p is not None and p.ndim == 2
            else 1
        )
    model = OpfModel(
        feeder,
        formulation=formulation,
        periods=periods,
        dt_s=dt_s,
        evs=evs,
        batteries=batteries,
        virtual_batteries=virtual_batteries,
        substation_kva=substation_kva,
    )
    return model.solve(price_per_kwh, p_kw, q_kvar, s_max_kva=s_max_kva, ac_check=ac_check)
