"""Network-constrained transactive EV charging: fleet operators, the DSO and congestion prices.

Hu, Yang, Bindner and Xue, "Application of network-constrained transactive control to electric
vehicle charging for secure grid operation", IEEE Trans. Sustainable Energy 8(2), 505-515, 2017
(and Hu, Yang, Kok, Xue and Bindner, "Transactive control: a framework for operating power
systems characterized by high penetration of distributed energy resources", J. Mod. Power Syst.
Clean Energy, 2016, doi:10.1007/s40565-016-0228-1): fleet operators (FOs) plan their EVs'
charging against the day-ahead energy prices; the DSO runs its feeder model on the plans and,
where the transformer, a line or a voltage limit is violated, a price coordinator answers with
congestion (shadow) prices per bus and period; the FOs plan again against energy + congestion
prices, until the limits hold. The paper's objective is the FOs' energy cost and the network's
losses; so is the one here.

The rounds, as :func:`network_constrained_ev_charging` runs them (equations numbered here,
(H1)-(H6); the paper's own numbering was not at hand when this module was written):

1. Registration (round 0). FO ``f`` plans against the energy prices ``c_t`` alone: the linear
   program ``min Σ_t Σ_n c_t r_nt`` over its EVs' set ``X_f`` (rate boxes and energy needs,
   :class:`~transactive.market.iterative.EvFleet`), ties between equal prices split evenly. The
   DSO receives every FO's plan per bus (the uncongested plan).
2. The DSO's check. The plans, summed per bus on top of the base load, go through the AC power
   flow of the feeder (:class:`~transactive.network.pgm.BatchPowerFlow`, every period in one
   batch call). Every limit ``e`` (the feeder head's apparent power against the transformer
   limit, the voltage band at every node, the rated current of every rated branch) gives its
   violation ``g_e``, expressed in kW at the node most able to relieve it: the limit's value
   less its bound, divided by the largest sensitivity ``max_m |a_em|`` (H1).
3. The price coordinator. Shadow prices ``y_e >= 0`` (currency/kWh at that node) follow the
   projected subgradient step on the violation (H2),
   ``y^k = [y^{k-1} + σ (2 g(x^{k-1}) - g(x^{k-2}))]^+``, taken at the extrapolated plan
   ``2x^{k-1} - x^{k-2}`` of Chambolle and Pock ("A first-order primal-dual algorithm for convex
   problems with applications to imaging", J. Math. Imaging Vision 40, 2011, Algorithm 1 with
   θ = 1). Bus ``b`` is sent the price (H3)
   ``π_tb = c_t + c_t MLF_tb + Σ_e y_te a_teb``: energy, losses (the marginal loss factor of
   the branch flow model at the DSO's last AC state, ``MLF_m = Σ_{k on m's path} 2 r_k P_k /
   V_k²``, per unit; Baran and Wu 1989; Papavasiliou, IEEE Trans. Smart Grid 9(5), 2018, the
   loss component of a DLMP), and the congestion and voltage components
   ``Σ_e y_e a_em`` of a DLMP (Bai et al., IEEE Trans. Power Systems 33(4), 2018).
4. The FOs' plans. FO ``f`` answers with the plan of least cost at its buses' prices plus a
   proximal term (H4), ``x_f^k = argmin_{x ∈ X_f} Σ_tn π_{t,b(n)} x_nt + ‖x − x_f^{k−1}‖² / (2τ)
   = Π_{X_f}(x_f^{k−1} − τ π_{b(n)})``, the Euclidean projection of Gan, Topcu and Low (IEEE
   Trans. Power Systems 28(2), 2013, eq. (8)) computed exactly by
   :meth:`EvFleet.project <transactive.market.iterative.EvFleet.project>`. The LP of step 1
   jumps between vertices when prices move; the proximal term makes each answer unique and
   continuous in the prices, so the rounds settle (it vanishes at a fixed point, so it does not
   change the optimum).
5. Repeat from 2 until the limits hold and the prices and plans have settled.

The sensitivities ``a_em`` are those of the linearised DistFlow (Baran and Wu, IEEE Trans. Power
Delivery 4(1), 1989) at the AC state of the base load, per period, computed once (the path
matrix is :mod:`transactive.coordination.secure`'s): a kW at node ``m`` adds
``(P0/|S0|)(1 + MLF_m)`` kVA at the feeder head, lowers the voltage at ``j`` by
``R_jm / (V_j S_base)`` per unit (``R_jm`` the resistance of the path the two nodes share) and
adds ``(P_k/|S_k|) / (V_k S_rated,k)`` of its rating to every branch ``k`` on its path. With them
fixed, steps 2-4 are the primal-dual method of Chambolle and Pock on the linearised problem
(with the loss cost as a smooth term: Condat, "A primal-dual splitting method for convex
optimization involving Lipschitzian, proximable and linear composite terms", J. Optim. Theory
Appl. 158, 2013, Theorem 3.1), which converges to a saddle point when (H5)
``1/τ − σ ‖K‖² > L/2``, ``K`` the normalised sensitivities of the EVs (per period
``‖A_t D_t^{1/2}‖₂``, ``D_t`` the EVs plugged in per bus) and ``L`` the Lipschitz constant of the
loss cost's gradient (``max_t c_t λ_max(D_t^{1/2} 2R D_t^{1/2}) / (S_base V_min²)``). The
violations themselves are read off the AC power flow, so the limits are met in AC at the fixed
point, not only in the linear model; the proof covers the linearised problem.

The bound fixes the product of the two steps, not their ratio ``η = τ‖K‖ = 1/(σ‖K‖)`` (kW per
currency/kWh), which sets the speed: the method's error after ``k`` rounds is of order
``(‖x⁰ − x*‖²/τ + ‖y*‖²/σ)/k`` (Chambolle and Pock 2011, Theorem 1), least when ``η`` is the
distance the plans must move over the size of the shadow prices. The default takes
``η = 20 r̄ / Δc`` (``r̄`` the EVs' mean top rate, ``Δc`` the energy price's spread: shadow
prices are a small fraction of the spread) and ``σ`` at 0.9 of the bound. Measured on case33bw
when the module was written (tolerance 1e-3, 150 and 1,000 EVs): 734 and 796 rounds at 20,
640 and 1,085 at 30, 1,225 and 807 at 10, over 3,000 for one of the two at 100 and for both at
``η = r̄/Δc``.

Residuals (H6), those of the primal-dual method (Goldstein, Li, Yuan, Esser and Baraniuk,
"Adaptive primal-dual splitting methods for statistical learning and image processing", NeurIPS
2015), read on the bus aggregates the DSO holds, and made relative so one tolerance
fits every feeder and fleet size:

- primal: the larger of the largest violation of any limit in any period relative to the limit
  itself (``(|S0| − S_tr)/S_tr``, ``(v_min − V)/v_min``, ``(V − v_max)/v_max``,
  loading/100 − 1; 0 when all hold), in AC, and ``‖(y^k − y^{k+1})/σ − K(x^{k−1} − x^k)‖∞``
  (kW at the most sensitive node, which vanishes when every priced limit is met with equality)
  over the largest EV capacity at a bus in a period;
- dual: ``‖(x^{k−1} − x^k)/τ − (π^k − π^{k+1})‖∞`` (currency/kWh, the amount by which an FO's
  plan is not yet its least-cost answer to the prices; per bus, the change of the bus's EV power
  over the EVs plugged in there) over the energy price's largest magnitude.

A plan changing little because the steps are small does not pass for converged: both residuals
divide the changes by the steps. Nor does a round in which messages were lost: with faults each
residual recorded is the largest of the last ``max_delay_rounds + 2`` rounds, since a round whose
schedules were all lost or whose prices all arrived late changes nothing by accident.

The objective (currency over the horizon) is ``Σ_t c_t (P0_t − Σ_m p_base,tm) Δt``: the energy
the feeder imports beyond its base load, the EVs' energy and every network loss, at the energy
prices. :func:`centralized_network_ev` minimises the same over the same set with the DSO's OPF
(the SOC relaxation of the branch flow model, :class:`~transactive.network.opf.OpfModel`, every EV
a :class:`~transactive.network.opf.FlexibleAssets` row, the transformer limit as its substation
rating), so :func:`~transactive.market.iterative.relative_gap` compares like with like.

Imperfect communication goes through :class:`~transactive.market.iterative.Channel`: an FO that
missed a price plans against the newest one it holds, and a lost plan leaves the DSO with the
FO's last one. The DSO checks the plans it holds; the result's ``extra`` reports the AC figures
of the plans the FOs actually hold at the end. Measured on the test case (120 EVs, tolerance
1e-3) when the module was written: 10 % message loss took as many rounds as none (645 and 643),
30 % 1.5-1.7 times as many, a price delay of up to 2 rounds with 10 % or 30 % loss 2.1 and 2.7
times; every run ended secure in AC and within 5e-5 of the centralized cost where measured (no
delay).

Pure computation: arrays in, frozen dataclasses out; randomness only through the faults' seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from transactive.devices.base import Horizon
from transactive.devices.flexibility import Flexibility
from transactive.errors import Problems, ValidationError
from transactive.market.iterative import (
    CentralizedOptimum,
    Channel,
    CommsFaults,
    EvFleet,
    IterativeResult,
    Recorder,
    StoppingRule,
    checked_step_size,
)
from transactive.network.feeders import Feeder
from transactive.network.opf import FlexibleAssets, OpfModel, OpfResult
from transactive.network.pgm import BatchFlowResult, BatchPowerFlow

__all__ = [
    "DEFAULT_EV_CONGESTION_RULE",
    "NetworkEvProblem",
    "centralized_network_ev",
    "network_constrained_ev_charging",
    "network_ev_opf",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

#: The stopping rule :func:`network_constrained_ev_charging` uses unless given one.
DEFAULT_EV_CONGESTION_RULE = StoppingRule(tolerance=1e-3, max_rounds=5000, min_rounds=2)
_PERFECT = CommsFaults()
#: The algorithm's name in its results.
_NAME = "network-constrained transactive EV charging (Hu, Yang, Bindner & Xue 2017)"
#: The default ratio of the FOs' step to the coordinator's, in EV rates per energy price spread.
_ETA_RATES_PER_SPREAD = 20.0
#: Energy (kWh) by which an aggregate need may exceed what the feeder head can carry (rounding).
_TOL_KWH = 1e-6


# --------------------------------------------------------------------------------------------
# the problem


@dataclass(frozen=True, eq=False)
class NetworkEvProblem:
    """Fleet operators' EVs on a radial feeder, a day-ahead energy price and the DSO's limits.

    Attributes
    ----------
    feeder : Feeder
        A radial feeder (``load_feeder("case33bw")``); its rated branches (``branch_rated``,
        :meth:`Feeder.with_line_ratings`) are the line limits.
    fleets : sequence of EvFleet
        One fleet per FO, all over the same ``T`` periods of the same length (a whole number of
        seconds). EV ids must be unique across fleets.
    fleet_buses : sequence of (N_f,) int
        The feeder node of every EV of each fleet.
    base_p_kw, base_q_kvar : (T, B) float
        Base (inflexible) net consumption per period and node (e.g. the hourly means of
        :func:`transactive.network.feeder_day_load`).
    energy_price_per_kwh : (T,) float
        The day-ahead energy price at the substation.
    transformer_kva : float
        Capacity of the substation transformer: the apparent power the feeder head may import,
        kVA, > 0.
    vmin_pu, vmax_pu : float or (B,) float, optional
        Voltage limits per node; default the feeder's ``vmin_pu`` / ``vmax_pu``. After
        construction both hold ``(B,)`` arrays.

    Raises
    ------
    ValidationError
        Every problem at once: wrong types or shapes, values that are not finite, a transformer
        limit that is not > 0, a bus index out of range or not an integer, fleets of different
        horizons, duplicate EV ids, a base load whose active power alone exceeds the transformer
        limit in some period (the AC import is at least that: losses only add), or EVs needing
        more energy than the transformer's headroom can pass while they are plugged in.

    """

    feeder: Feeder
    fleets: Sequence[EvFleet]
    fleet_buses: Sequence[npt.ArrayLike]
    base_p_kw: FloatArray
    base_q_kvar: FloatArray
    energy_price_per_kwh: FloatArray
    transformer_kva: float
    vmin_pu: FloatArray | float | None = None
    vmax_pu: FloatArray | float | None = None

    def __post_init__(self) -> None:
        problems = Problems(subject="network-constrained EV charging problem")
        given: object = self.feeder
        if not isinstance(given, Feeder):
            problems.add("feeder", f"must be a Feeder, got {type(given).__name__}")
            problems.raise_if_any()
        feeder = self.feeder
        for reason in feeder.radial_problems:
            problems.add("feeder", f"must be radial (DistFlow): {reason}")
        n = feeder.n_nodes
        fleets = tuple(self.fleets)
        buses_in = tuple(self.fleet_buses)
        if not fleets:
            problems.add("fleets", "needs at least one fleet operator's fleet")
        bad_types = [k for k, f in enumerate(fleets) if not isinstance(f, EvFleet)]
        if bad_types:
            problems.add("fleets", "must be EvFleet", bad_types)
        if len(buses_in) != len(fleets):
            problems.add(
                "fleet_buses", f"needs one bus array per fleet ({len(fleets)}), got {len(buses_in)}"
            )
        problems.raise_if_any()
        t = fleets[0].n_periods
        period_h = float(fleets[0].period_h)
        other = [k for k, f in enumerate(fleets) if f.n_periods != t or f.period_h != period_h]
        if other:
            problems.add(
                "fleets", f"must share fleet 0's horizon ({t} periods of {period_h:g} h)", other
            )
        period_s = period_h * 3600.0
        if abs(period_s - round(period_s)) > 1e-6:
            problems.add("fleets", f"period of {period_h:g} h is not a whole number of seconds")
        buses: list[IntArray] = []
        for k, (fleet, raw) in enumerate(zip(fleets, buses_in, strict=True)):
            arr = np.asarray(raw)
            if arr.shape != (fleet.n_evs,):
                problems.add(f"fleet_buses[{k}]", f"needs shape ({fleet.n_evs},), got {arr.shape}")
                buses.append(np.zeros(fleet.n_evs, dtype=np.int64))
                continue
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                problems.add(f"fleet_buses[{k}]", f"must be integer node indices, got {arr.dtype}")
                buses.append(np.zeros(fleet.n_evs, dtype=np.int64))
                continue
            bad = (arr < 0) | (arr >= n)
            problems.check(bad, f"fleet_buses[{k}]", f"node index out of range [0, {n})")
            buses.append(np.where(bad, 0, arr).astype(np.int64))
        ids = np.concatenate([np.asarray(f.ids, dtype=np.str_) for f in fleets])
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            problems.add(
                "fleets", "EV ids must be unique across fleets", unique[counts > 1].tolist()
            )
        arrays: dict[str, FloatArray] = {}
        for name, want in (("base_p_kw", (t, n)), ("base_q_kvar", (t, n))):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != want:
                problems.add(name, f"needs shape (T, B) = {want}, got {arr.shape}")
                arr = np.zeros(want)
            else:
                problems.check(~np.isfinite(arr).all(axis=1), name, "not finite in periods")
            arrays[name] = arr
        price = np.asarray(self.energy_price_per_kwh, dtype=np.float64)
        if price.shape != (t,):
            problems.add("energy_price_per_kwh", f"needs shape (T,) = {(t,)}, got {price.shape}")
            price = np.zeros(t)
        else:
            problems.check(~np.isfinite(price), "energy_price_per_kwh", "not finite in periods")
        limit = self.transformer_kva
        if isinstance(limit, bool) or not isinstance(limit, int | float | np.integer | np.floating):
            problems.add("transformer_kva", f"must be a number, got {type(limit).__name__}")
        elif not (np.isfinite(limit) and limit > 0):
            problems.add("transformer_kva", f"must be a finite number > 0 kVA, got {limit!r}")
        limits = []
        for name, value, default in (
            ("vmin_pu", self.vmin_pu, feeder.vmin_pu),
            ("vmax_pu", self.vmax_pu, feeder.vmax_pu),
        ):
            arr = np.asarray(default if value is None else value, dtype=np.float64)
            if arr.ndim == 0:
                arr = np.full(n, float(arr))
            if arr.shape != (n,):
                problems.add(name, f"needs one value or shape ({n},), got {arr.shape}")
                arr = np.asarray(default, dtype=np.float64)
            limits.append(arr)
        vmin, vmax = limits
        problems.check(~(np.isfinite(vmin) & (vmin > 0)), "vmin_pu", "must be finite and > 0")
        problems.check(~(vmax >= vmin), "vmax_pu", "must not be below vmin_pu")
        problems.raise_if_any()
        # infeasible inputs the EVs cannot make feasible: the AC import is at least the base
        # load's active power (losses only add), and the EVs' energy must pass the feeder head
        base_p = arrays["base_p_kw"].sum(axis=1)
        limit_kva = float(limit)
        problems.check(
            base_p > limit_kva,
            "transformer_kva",
            f"infeasible: the base load alone draws more active power than {limit_kva:g} kVA "
            "in periods",
        )
        rate_total = sum((np.asarray(f.rate_max_kw).sum(axis=1) for f in fleets), start=np.zeros(t))
        headroom_kwh = float(
            np.minimum(np.maximum(limit_kva - base_p, 0.0), rate_total).sum() * period_h
        )
        need_kwh = float(sum(float(np.sum(f.energy_kwh)) for f in fleets))
        if need_kwh > headroom_kwh + _TOL_KWH * max(1.0, need_kwh):
            problems.add(
                "fleets",
                f"infeasible: the EVs need {need_kwh:.6g} kWh, more than the transformer's "
                f"headroom over the base load passes while they are plugged in "
                f"({headroom_kwh:.6g} kWh)",
            )
        problems.raise_if_any()
        set_ = object.__setattr__
        set_(self, "fleets", fleets)
        set_(self, "fleet_buses", tuple(buses))
        set_(self, "base_p_kw", arrays["base_p_kw"])
        set_(self, "base_q_kvar", arrays["base_q_kvar"])
        set_(self, "energy_price_per_kwh", price)
        set_(self, "transformer_kva", limit_kva)
        set_(self, "vmin_pu", vmin)
        set_(self, "vmax_pu", vmax)

    # ---------------------------------------------------------------- derived views

    @property
    def n_periods(self) -> int:
        """T."""
        return int(self.fleets[0].n_periods)

    @property
    def period_h(self) -> float:
        """Length of a period in hours."""
        return float(self.fleets[0].period_h)

    @property
    def n_fleets(self) -> int:
        """Number of fleet operators F."""
        return len(self.fleets)

    @property
    def n_evs(self) -> int:
        """EVs over all fleets."""
        return int(sum(f.n_evs for f in self.fleets))

    @property
    def voltage_limits_pu(self) -> tuple[FloatArray, FloatArray]:
        """``(vmin (B,), vmax (B,))``."""
        return np.asarray(self.vmin_pu, dtype=np.float64), np.asarray(self.vmax_pu, np.float64)

    @property
    def ev_bus(self) -> IntArray:
        """``(N,)`` node of every EV, fleets in order."""
        return np.concatenate([np.asarray(b, dtype=np.int64) for b in self.fleet_buses])

    @property
    def ev_fleet(self) -> IntArray:
        """``(N,)`` index of every EV's fleet operator."""
        return np.repeat(np.arange(self.n_fleets), [f.n_evs for f in self.fleets])

    def all_evs(self) -> EvFleet:
        """Every fleet's EVs as one :class:`EvFleet` (fleets in order)."""
        return EvFleet(
            ids=np.concatenate([np.asarray(f.ids, dtype=np.str_) for f in self.fleets]),
            rate_max_kw=np.concatenate([f.rate_max_kw for f in self.fleets], axis=1),
            energy_kwh=np.concatenate([f.energy_kwh for f in self.fleets]),
            period_h=self.period_h,
        )

    def flexibility(self) -> Flexibility:
        """Every EV as a generalized battery (Hao et al. 2015): the OPF's view of the fleets.

        The rate box is ``[0, rate_max_kw]``; the stored (grid-side) energy starts at 0, never
        exceeds the need and ends at it, which is the fleet's set ``sum_t r_t Δt = need``.
        """
        evs = self.all_evs()
        t, m = evs.n_periods, evs.n_evs
        need = np.asarray(evs.energy_kwh, dtype=np.float64)
        e_min = np.zeros((t, m))
        e_min[-1] = need
        return Flexibility(
            horizon=Horizon(0, round(self.period_h * 3600.0), t),
            ids=np.asarray(evs.ids, dtype=np.str_),
            baseline_kw=np.zeros((t, m)),
            power_min_kw=np.zeros((t, m)),
            power_max_kw=np.asarray(evs.rate_max_kw, dtype=np.float64),
            energy_min_kwh=e_min,
            energy_max_kwh=np.broadcast_to(need, (t, m)).copy(),
            initial_energy_kwh=np.zeros(m),
            retention=np.ones(m),
            charge_efficiency=np.ones(m),
            discharge_efficiency=np.ones(m),
        )


# --------------------------------------------------------------------------------------------
# the DSO's feeder model


@dataclass(frozen=True, eq=False)
class _State:
    """The AC power flow of one plan: what the DSO reads off it."""

    flow: BatchFlowResult
    s0_kva: FloatArray  # (T,) apparent power at the feeder head
    mlf: FloatArray  # (T, B) marginal loss factor per node (per unit)
    values: FloatArray  # (T, E) limit value less its bound, in the row's own unit
    relative: FloatArray  # (T, E) violation relative to the bound (> 0: violated)


class _Dso:
    """The DSO's feeder model: AC power flow of the plans, limits, sensitivities.

    Rows ``e`` of every period: 0 the transformer, then undervoltage at every non-slack node,
    overvoltage at every non-slack node, then every rated branch.
    """

    def __init__(self, problem: NetworkEvProblem, flow: BatchPowerFlow) -> None:
        f = problem.feeder
        self.problem = problem
        self.flow = flow
        n = f.n_nodes
        self.below = f.path_matrix  # (B_nodes, K): node fed through branch
        self.r_pu = np.asarray(f.branch_r_pu, dtype=np.float64)
        # resistance of the path two nodes share (Baran & Wu's linearised DistFlow)
        self.r_shared = self.below @ (self.r_pu[:, None] * self.below.T)
        self.s_base = float(f.s_base_kva)
        self.nonslack = np.flatnonzero(np.arange(n) != f.slack)
        self.rated = np.flatnonzero(np.asarray(f.branch_rated, dtype=bool))
        to = np.asarray(f.branch_to)
        i_max = np.asarray(f.branch_i_max_ka, dtype=np.float64)
        self.s_rated_kva = np.sqrt(3.0) * np.asarray(f.vn_kv)[to] * i_max * 1e3
        self.frm = np.asarray(f.branch_from)
        vmin, vmax = problem.voltage_limits_pu
        self.vmin, self.vmax = vmin[self.nonslack], vmax[self.nonslack]
        self.n_rows = 1 + 2 * self.nonslack.size + self.rated.size
        self.groups = {
            "transformer": slice(0, 1),
            "voltage": slice(1, 1 + 2 * self.nonslack.size),
            "line": slice(1 + 2 * self.nonslack.size, self.n_rows),
        }

    def evaluate(self, ev_kw: FloatArray) -> _State:
        """The AC power flow of the base load plus ``ev_kw`` (T, B) and every limit's value."""
        p = self.problem
        res = self.flow.run(p.base_p_kw + ev_kw, p.base_q_kvar)
        if not res.converged.all():
            problems = Problems(subject="network-constrained EV charging")
            problems.check(
                ~res.converged,
                "plan",
                "the AC power flow of the plan does not converge in periods",
            )
            raise ValidationError(problems.found, subject=problems.subject)
        s0 = np.hypot(res.p_slack_kw, res.q_slack_kvar)
        v_from = res.vm_pu[:, self.frm]
        # marginal losses: d/dp_m Σ_k r_k (P_k² + Q_k²)/V_k², P_k moving one for one (per unit)
        mlf = (2.0 * self.r_pu * (res.branch_p_kw / self.s_base) / v_from**2) @ self.below.T
        vm = res.vm_pu[:, self.nonslack]
        loading = res.branch_loading_pct[:, self.rated] / 100.0
        limit = p.transformer_kva
        values = np.concatenate(
            [(s0 - limit)[:, None], self.vmin - vm, vm - self.vmax, loading - 1.0], axis=1
        )
        relative = np.concatenate(
            [
                ((s0 - limit) / limit)[:, None],
                (self.vmin - vm) / self.vmin,
                (vm - self.vmax) / self.vmax,
                loading - 1.0,
            ],
            axis=1,
        )
        return _State(res, s0, mlf, values, relative)

    def sensitivities(self, state: _State) -> tuple[FloatArray, FloatArray]:
        """Rows ``a_tem`` normalised to ``max_m |a| = 1`` (T, E, B), and their scales (T, E).

        Linearised DistFlow at ``state`` (module docstring); a row with no sensitivity (scale
        0) is left zero, and its violation is never priced.
        """
        res = state.flow
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio0 = np.where(state.s0_kva > 0, res.p_slack_kw / state.s0_kva, 1.0)
        a_tr = ratio0[:, None] * (1.0 + state.mlf)  # kVA per kW
        vm = res.vm_pu[:, self.nonslack]
        a_under = self.r_shared[None, self.nonslack, :] / (vm[:, :, None] * self.s_base)
        pb = res.branch_p_kw[:, self.rated]
        sb = np.hypot(pb, res.branch_q_kvar[:, self.rated])
        v_from = res.vm_pu[:, self.frm[self.rated]]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(sb > 0, pb / sb, 1.0)
        per_kw = share / (v_from * self.s_rated_kva[self.rated])  # (T, R) fraction of rating
        a_line = per_kw[:, :, None] * self.below.T[self.rated][None, :, :]
        rows = np.concatenate([a_tr[:, None, :], a_under, -a_under, a_line], axis=1)
        rows[:, :, self.problem.feeder.slack] = 0.0  # no EV at the slack moves any limit
        scale = np.abs(rows).max(axis=2)
        safe = np.where(scale > 0, scale, 1.0)
        normalised = np.where(scale[:, :, None] > 0, rows / safe[:, :, None], 0.0)
        return normalised, scale


def _lp_plan(evs: EvFleet, price_tn: FloatArray) -> FloatArray:
    """The least-cost plan at ``price_tn`` (T, N): cheapest periods first, ties split evenly.

    The limit of the proximal plan ``Π_X(−β c)`` as ``β`` grows: once ``β`` times the smallest
    gap between distinct prices exceeds every rate, at most one price level per EV is filled in
    part and the projection is the linear program's solution.
    """
    levels = np.unique(price_tn)
    gaps = np.diff(levels)
    gap = float(gaps[gaps > 0].min()) if (gaps > 0).any() else 1.0
    rate = float(np.max(evs.rate_max_kw, initial=1.0))
    size = float(np.max(np.abs(price_tn), initial=1.0))
    beta = min(4.0 * max(rate, 1.0) / gap, 1e9 / max(size, 1e-12))
    return evs.project(-beta * price_tn)


def _fo_bus_matrix(bus: IntArray, fo: IntArray, n_nodes: int, n_fleets: int) -> Any:
    """``(N, B·F)``: EV ``n`` to column ``bus_n · F + fo_n`` (plans per bus, FOs last)."""
    m = bus.size
    return sp.csr_matrix(
        (np.ones(m), (np.arange(m), bus * n_fleets + fo)), shape=(m, n_nodes * n_fleets)
    )


def _base_problems(problem: NetworkEvProblem, state: _State) -> None:
    """Refuse a base load that alone violates a limit EV charging can only make worse."""
    dso_rows = state.relative
    problems = Problems(subject="network-constrained EV charging problem")
    res = state.flow
    importing = res.p_slack_kw >= 0
    problems.check(
        (dso_rows[:, 0] > 0) & importing,
        "transformer_kva",
        f"infeasible: the base load alone exceeds {problem.transformer_kva:g} kVA at the feeder "
        "head in AC in periods",
    )
    feeder = problem.feeder
    n_ns = feeder.n_nodes - 1
    under = dso_rows[:, 1 : 1 + n_ns]
    problems.check(
        (under > 0).any(axis=1),
        "vmin_pu",
        "infeasible: the base load alone takes a node below vmin_pu in AC in periods",
    )
    lines = dso_rows[:, 1 + 2 * n_ns :]
    rated = np.flatnonzero(np.asarray(feeder.branch_rated))
    forward = res.branch_p_kw[:, rated] >= 0
    problems.check(
        ((lines > 0) & forward).any(axis=1),
        "feeder",
        "infeasible: the base load alone overloads a rated branch in AC in periods",
    )
    problems.raise_if_any()


# --------------------------------------------------------------------------------------------
# the iteration


def _check_problem(problem: object) -> None:
    if not isinstance(problem, NetworkEvProblem):
        problems = Problems(subject="network-constrained EV charging")
        problems.add("problem", f"must be a NetworkEvProblem, got {type(problem).__name__}")
        raise ValidationError(problems.found, subject=problems.subject)


def network_constrained_ev_charging(
    problem: NetworkEvProblem,
    *,
    step: float | None = None,
    fo_step: float | None = None,
    rule: StoppingRule = DEFAULT_EV_CONGESTION_RULE,
    faults: CommsFaults = _PERFECT,
    flow: BatchPowerFlow | None = None,
) -> IterativeResult:
    """Fleet operators and the DSO iterate on congestion prices until the limits hold.

    Parameters
    ----------
    problem : NetworkEvProblem
        Feeder, fleets at their buses, base load, energy prices, transformer and voltage limits.
    step : float, optional
        The price coordinator's step ``σ`` (H2), currency/kWh per kW of violation. Default
        ``0.9 (1/τ − L/2) / ‖K‖²`` (module docstring); one at or above ``(1/τ − L/2) / ‖K‖²``
        warns (:class:`~transactive.market.iterative.StepSizeWarning`): the bound (H5) is
        sufficient, not necessary.
    fo_step : float, optional
        The FOs' proximal step ``τ`` (H4), kW per currency/kWh (their proximal weight is
        ``1/τ``); the DSO sends it with every price message. Default ``η / ‖K‖`` with
        ``η = 20 r̄ / Δc`` (module docstring), at most ``1/L``.
    rule : StoppingRule
        Tolerance on both relative residuals (H6) and the round limit.
    faults : CommsFaults
        Message loss and price delay between the DSO and the FOs.
    flow : BatchPowerFlow, optional
        A power-grid-model runner of ``problem.feeder`` to reuse (saves its conversion).

    Returns
    -------
    IterativeResult
        ``prices`` the DSO's last bus prices ``(T, B)`` (energy + loss + congestion + voltage,
        its answer to the last plans);
        ``schedules_kw`` ``(T, N)`` every EV's last plan as its FO holds it (fleets in order,
        ``ids`` the EV ids); ``objective`` per round the cost of the feeder's import beyond the
        base load at the energy prices (module docstring). ``extra``:

        - ``congestion_price_per_kwh``, ``voltage_price_per_kwh``, ``loss_price_per_kwh``
          ``(T, B)``: the last prices' components (congestion: transformer and lines);
        - ``transformer_shadow_price_per_kwh`` ``(T,)``;
        - ``transformer_loading_pct``, ``vmin_pu``, ``vmax_pu``, ``max_line_loading_pct``
          (NaN when no branch is rated), ``losses_kw`` ``(T,)``: the AC power flow of the
          plans the FOs hold at the end;
        - ``dso_transformer_loading_pct``, ``dso_vmin_pu`` ``(T,)``: the same for the plans the
          DSO last held (equal to the above without faults);
        - ``uncongested_transformer_loading_pct``, ``uncongested_vmin_pu``,
          ``uncongested_max_line_loading_pct`` ``(T,)``: the plans of round 0 (energy prices
          only);
        - ``fo_bus_kw`` ``(T, B, F)``: every FO's last plan per bus;
        - ``step``, ``fo_step``, ``k_norm``, ``loss_lipschitz``: the steps used and the bound's
          terms (0-d).

    Raises
    ------
    ValidationError
        A step that is not a finite number > 0; a base load that alone violates the transformer
        limit, a voltage limit or a line rating in AC; an AC power flow that does not converge.

    """
    _check_problem(problem)
    feeder = problem.feeder
    flow = BatchPowerFlow(feeder) if flow is None else flow
    dso = _Dso(problem, flow)
    t, n, n_fo = problem.n_periods, feeder.n_nodes, problem.n_fleets
    price = problem.energy_price_per_kwh
    evs = problem.all_evs()
    bus, fo = problem.ev_bus, problem.ev_fleet
    to_fo_bus = _fo_bus_matrix(bus, fo, n, n_fo)
    to_bus = sp.csr_matrix((np.ones(bus.size), (np.arange(bus.size), bus)), shape=(bus.size, n))

    def per_fo_bus(x: FloatArray) -> FloatArray:
        return np.asarray(x @ to_fo_bus, dtype=np.float64).reshape(t, n, n_fo)

    base_state = dso.evaluate(np.zeros((t, n)))
    _base_problems(problem, base_state)

    # round 0: every FO's plan against the energy prices (step 1)
    x = _lp_plan(evs, np.broadcast_to(price[:, None], evs.rate_max_kw.shape).copy())
    held_kw = x @ to_bus  # (T, B): what the DSO holds, summed over FOs
    state = dso.evaluate(np.asarray(held_kw, dtype=np.float64))
    uncongested = state
    rows, scale = dso.sensitivities(base_state)

    # the bound (H5): ‖K‖ and L over the EVs plugged in per bus and period
    plugged = np.asarray(evs.rate_max_kw > 0, dtype=np.float64)
    counts = np.asarray(plugged @ to_bus, dtype=np.float64)  # (T, B) EVs plugged in
    root = np.sqrt(counts)
    k_norm = float(max(np.linalg.norm(rows[k] * root[k][None, :], 2) for k in range(t)))
    hess = 2.0 * dso.r_shared / (dso.s_base * float(np.min(state.flow.vm_pu)) ** 2)
    lam = np.array(
        [np.linalg.eigvalsh(root[k][:, None] * hess * root[k][None, :])[-1] for k in range(t)]
    )
    loss_l = float(np.max(np.maximum(price, 0.0) * lam, initial=0.0))
    spread = float(price.max() - price.min())
    price_unit = float(np.max(np.abs(price), initial=0.0))
    price_unit = price_unit if price_unit > 0 else 1.0
    price_scale = spread if spread > 0 else price_unit
    rates = np.max(evs.rate_max_kw, axis=0) if evs.n_evs else np.zeros(0)
    rate = float(np.mean(rates[rates > 0])) if (rates > 0).any() else 1.0
    eta = _ETA_RATES_PER_SPREAD * rate / price_scale
    k_safe = max(k_norm, 1e-12)
    if fo_step is None:
        tau = eta / k_safe
        if loss_l > 0:
            tau = min(tau, 1.0 / loss_l)
    else:
        tau = checked_step_size("fo_step", fo_step)
    upper = (1.0 / tau - loss_l / 2.0) / k_safe**2
    reference = "1/τ − σ‖K‖² > L/2: Chambolle & Pock 2011, Thm 1; Condat 2013, Thm 3.1"
    if step is None:
        sigma = checked_step_size(
            "step",
            0.9 * upper if upper > 0 else 0.9 / (tau * k_safe**2),
            upper=upper,
            bound_is_necessary=False,
            reference=reference,
        )
    else:
        sigma = checked_step_size(
            "step", step, upper=upper, bound_is_necessary=False, reference=reference
        )

    capacity = np.asarray(evs.rate_max_kw @ to_bus, dtype=np.float64)
    power_unit = float(max(capacity.max(initial=0.0), 1e-12))
    per_bus = np.maximum(counts, 1.0)
    safe_scale = np.where(scale > 0, scale, 1.0)
    priced = scale > 0

    def violation_kw(s: _State) -> FloatArray:
        return np.where(priced, s.values / safe_scale, 0.0)  # (H1)

    def price_message(y: FloatArray, s: _State) -> tuple[FloatArray, FloatArray]:
        """(H3): the bus prices and their components (congestion, voltage, loss)."""
        weighted = y[:, :, None] * rows
        congestion = weighted[:, dso.groups["transformer"]].sum(axis=1)
        congestion = congestion + weighted[:, dso.groups["line"]].sum(axis=1)
        voltage = weighted[:, dso.groups["voltage"]].sum(axis=1)
        loss = price[:, None] * s.mlf
        return price[:, None] + loss + congestion + voltage, np.stack([congestion, voltage, loss])

    def dual_step(y: FloatArray, g_now: FloatArray, g_prev: FloatArray) -> FloatArray:
        """(H2): the price coordinator's step at the extrapolated violation."""
        return np.where(priced, np.maximum(y + sigma * (2.0 * g_now - g_prev), 0.0), 0.0)

    g_now = violation_kw(state)
    y = dual_step(np.zeros((t, dso.n_rows)), g_now, g_now)
    prices, parts = price_message(y, state)
    channel = Channel(faults, n_fo)
    # a price message carries the bus prices and the proximal step τ the FOs are to use
    channel.register(np.append(np.broadcast_to(price[:, None], (t, n)), tau), per_fo_bus(x))
    rec = Recorder(_NAME, rule)
    window = 1 if faults.perfect else int(faults.max_delay_rounds) + 2
    recent: list[tuple[float, float]] = []
    t_index = np.arange(t)[:, None] * n + bus[None, :]  # (T, N): message entry of each EV
    k = 0
    while True:
        k += 1
        held_round = channel.prices_held(k, np.append(prices, tau))
        if (held_round == k).all():
            target = x - tau * prices[:, bus]
        else:
            message = channel.gather(held_round)  # (F, T·B + 1)
            ev_price = message[fo[None, :], t_index]
            target = x - message[fo, -1][None, :] * ev_price
        x = evs.project(target)  # (H4)
        new_held_kw = channel.schedules_held(per_fo_bus(x)).sum(axis=2)
        state = dso.evaluate(new_held_kw)
        g_prev, g_now = g_now, violation_kw(state)
        new_y = dual_step(y, g_now, g_prev)
        new_prices, new_parts = price_message(new_y, state)
        # (H6) residuals of the primal-dual method (Goldstein et al. 2015), on the bus aggregates
        change_kw = held_kw - new_held_kw
        res_fo = change_kw / (tau * per_bus) - (prices - new_prices)  # currency/kWh
        res_dso = (y - new_y) / sigma - np.einsum("teb,tb->te", rows, change_kw)  # kW
        violation = float(max(np.max(state.relative, initial=0.0), 0.0))
        primal = max(violation, float(np.max(np.abs(res_dso), initial=0.0)) / power_unit)
        dual = float(np.max(np.abs(res_fo), initial=0.0)) / price_unit
        objective = float(
            np.sum(price * (state.flow.p_slack_kw - problem.base_p_kw.sum(axis=1)))
            * problem.period_h
        )
        held_kw, y, prices, parts = new_held_kw, new_y, new_prices, new_parts
        recent = [*recent[-(window - 1) :], (primal, dual)] if window > 1 else [(primal, dual)]
        primal = max(p for p, _ in recent)
        dual = max(d for _, d in recent)
        if rec.record(primal, dual, objective):
            break

    dso_state = state
    fo_plans = per_fo_bus(x)
    final = dso.evaluate(fo_plans.sum(axis=2))

    def figures(s: _State) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        res = s.flow
        loading = res.branch_loading_pct
        line_max = (
            np.nanmax(loading[:, dso.rated], axis=1) if dso.rated.size else np.full(t, np.nan)
        )
        return (
            100.0 * s.s0_kva / problem.transformer_kva,
            np.min(res.vm_pu, axis=1),
            np.max(res.vm_pu, axis=1),
            np.asarray(line_max, dtype=np.float64),
        )

    tr, vlo, vhi, line = figures(final)
    tr_u, vlo_u, _vhi_u, line_u = figures(uncongested)
    tr_d, vlo_d, _vhi_d, _line_d = figures(dso_state)
    congestion, voltage, loss = parts
    extra: dict[str, FloatArray] = {
        "congestion_price_per_kwh": congestion,
        "voltage_price_per_kwh": voltage,
        "loss_price_per_kwh": loss,
        "transformer_shadow_price_per_kwh": y[:, 0].copy(),
        "transformer_loading_pct": tr,
        "vmin_pu": vlo,
        "vmax_pu": vhi,
        "max_line_loading_pct": line,
        "losses_kw": np.asarray(final.flow.losses_kw, dtype=np.float64).copy(),
        "dso_transformer_loading_pct": tr_d,
        "dso_vmin_pu": vlo_d,
        "uncongested_transformer_loading_pct": tr_u,
        "uncongested_vmin_pu": vlo_u,
        "uncongested_max_line_loading_pct": line_u,
        "fo_bus_kw": fo_plans,
        "step": np.asarray(sigma),
        "fo_step": np.asarray(tau),
        "k_norm": np.asarray(k_norm),
        "loss_lipschitz": np.asarray(loss_l),
    }
    return rec.result(prices=prices, schedules_kw=x, ids=evs.ids, channel=channel, extra=extra)


# --------------------------------------------------------------------------------------------
# the centralized reference


def network_ev_opf(
    problem: NetworkEvProblem, *, ac_check: bool = False, solver: str | None = None
) -> OpfResult:
    """The DSO's OPF with every EV's constraints: the problem solved in one piece.

    The SOC relaxation of the branch flow model over the ``T`` periods
    (:class:`~transactive.network.opf.OpfModel`, ``formulation="socp"``), every EV a flexible
    asset at its bus (:meth:`NetworkEvProblem.flexibility`), the transformer limit as the
    substation's rating ``‖(P0, Q0)‖ <= transformer_kva``, the problem's voltage limits and the
    feeder's rated branches; the cost is the energy imported at the energy prices.

    Parameters
    ----------
    problem : NetworkEvProblem
        The problem.
    ac_check : bool
        Also run the solution through pandapower's AC power flow (``OpfResult.ac_check``).
    solver : str, optional
        cvxpy solver (default Clarabel).

    Returns
    -------
    OpfResult
        As :meth:`OpfModel.solve` gives it; ``flexible_kw`` holds the EVs' schedules.

    Raises
    ------
    ValidationError
        The OPF is infeasible or the solver fails (its status named).

    """
    return _opf(problem, ac_check=ac_check, solver=solver)[0]


def _opf(
    problem: NetworkEvProblem, *, ac_check: bool, solver: str | None
) -> tuple[OpfResult, float]:
    """:func:`network_ev_opf` and the solver's own solve time (NaN if cvxpy gave none)."""
    _check_problem(problem)
    t = problem.n_periods
    model = OpfModel(
        problem.feeder,
        formulation="socp",
        periods=t,
        dt_s=round(problem.period_h * 3600.0),
        flexible=FlexibleAssets(problem.flexibility(), problem.ev_bus),
        substation_kva=problem.transformer_kva,
        solver=solver,
    )
    vmin, vmax = problem.voltage_limits_pu
    res = model.solve(
        problem.energy_price_per_kwh,
        problem.base_p_kw,
        problem.base_q_kvar,
        vmin_pu=vmin,
        vmax_pu=vmax,
        ac_check=ac_check,
    )
    if not res.optimal:
        problems = Problems(subject="network-constrained EV charging problem")
        problems.add(
            "problem",
            f"the DSO's OPF with every EV's constraints is {res.status}: no plan meets every "
            "limit (or the solver failed)",
        )
        raise ValidationError(problems.found, subject=problems.subject)
    stats = getattr(model.problem, "solver_stats", None)
    value = getattr(stats, "solve_time", None) if stats is not None else None
    return res, float(value) if isinstance(value, int | float) else float("nan")


def centralized_network_ev(
    problem: NetworkEvProblem, *, solver: str | None = None
) -> CentralizedOptimum:
    """The reference: :func:`network_ev_opf`, as a :class:`CentralizedOptimum`.

    ``objective`` is :func:`network_constrained_ev_charging`'s: ``Σ_t c_t (P0_t − Σ_m
    p_base,tm) Δt``; ``schedules_kw`` ``(T, N)`` the EVs' schedules (fleets in order);
    ``prices`` the DLMPs ``(T, B)`` (their congestion and voltage components are
    ``network_ev_opf(problem).dlmp``); ``solve_time_s`` the solver's own time (cvxpy's
    ``solver_stats``; NaN if it gave none).
    """
    res, solve_time_s = _opf(problem, ac_check=False, solver=solver)
    objective = float(
        np.sum(problem.energy_price_per_kwh * (res.substation_p_kw - problem.base_p_kw.sum(axis=1)))
        * problem.period_h
    )
    return CentralizedOptimum(
        objective=objective,
        schedules_kw=np.asarray(res.flexible_kw, dtype=np.float64),
        prices=np.asarray(res.dlmp.total, dtype=np.float64),
        solver=(solver or "CLARABEL").upper(),
        solve_time_s=solve_time_s,
    )
