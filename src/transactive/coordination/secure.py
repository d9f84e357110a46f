"""The secure clearing loop: clear, check, surcharge, clear again (Hu et al. 2019, §3.1.1).

In the weakly-centralized mode, *cleared transactions pass the system operator's security check
or return to the market*. This is coordination between the market and the DSO, so it lives on
the mechanism floor above both: it calls :func:`transactive.market.clear` and
:func:`transactive.network.security_check`.

:func:`secure_clearing`
    Clear the market, check the dispatch, and when it is insecure answer with locational
    surcharges and clear again, until the dispatch is secure or the round limit is hit. The
    surcharges are DLMP-style: every violated element ``e`` carries a shadow price ``λ_e`` and
    node ``m`` pays ``s_m = Σ_e λ_e a_em`` on top of the system price, ``a_em`` the sensitivity of
    element ``e``'s constraint to consumption at ``m`` (normalised so the most sensitive node has
    ``|a| = 1``, so ``λ_e`` is that node's surcharge in currency/kWh). On a radial feeder
    (linearised DistFlow, Baran & Wu 1989):

    - branch ``b``'s apparent power ``|S_b|`` changes by ``(P_b + Q_b tanφ_m) / |S_b|`` per kW
      consumed at a node ``m`` it feeds and not at all elsewhere (about 1 for a node downstream of
      a forward-loaded line, about -1 under reverse flow, where the surcharge is a discount that
      asks for more consumption and less export);
    - the voltage at ``j`` falls by ``(R_jm + X_jm tanφ_m) / (V_j S_base)`` per kW at ``m``, with
      ``R_jm``, ``X_jm`` the resistance and reactance of the path the two nodes share;

    the congestion and voltage components of a DLMP (Bai, Wang, Wang, Tomsovic, Wu,
    "Distribution locational marginal pricing (DLMP) for congestion management and voltage
    support", IEEE Trans. Power Systems 33(4), 2018; Papavasiliou, "Analysis of distribution
    locational marginal prices", IEEE Trans. Smart Grid 9(5), 2018). The shadow prices are updated
    by a projected dual (subgradient) step whose length is found by bisection: the DSO holds the
    bids (weakly-centralized platform), so for each violated element, largest relative violation
    first, it raises ``λ_e`` to the smallest value at which the bids, read at the last clearing
    price plus the new surcharges, remove the violation with a small margin in the linearised
    model (the surcharges of elements updated before it in the round included). The market then
    clears again at a new system price, and the AC check decides. Shadow prices only rise, so
    the loop stops at the first secure dispatch.

    A surcharge never takes a node's price outside the market's limits: ``price + s`` stays in
    ``[price_floor, price_cap]`` (as a DLMP is capped), so unresponsive load, a block at the cap,
    is never priced out. When no bid at the nodes that affect a violated element can move any
    more, the loop stops and reports that the dispatch cannot be secured by prices.

Each curve sees its node's surcharge through ``BidCurves.with_price_offset`` (the curve takes at
system price ``p`` what it would take at ``p + s``), restricted to the market's price range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from transactive.curves import BidCurves
from transactive.errors import Problems, ValidationError
from transactive.market import ClearingResult, Supply, clear
from transactive.network.feeders import Feeder
from transactive.network.powerflow import IntervalPowerFlow, PowerFlowRunner
from transactive.network.security import (
    SecurityLimits,
    SecurityReport,
    Violation,
    ViolationKind,
    security_check,
)

__all__ = ["ClearingRound", "SecureClearingOutcome", "secure_clearing"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Bisection steps for a shadow price (the bracket shrinks by 2**-60: to float precision).
_BISECTION_STEPS = 60


# ---------------------------------------------------------------------- the clearing loop


@dataclass(frozen=True, eq=False)
class ClearingRound:
    """One round of the secure clearing loop.

    Attributes
    ----------
    round : int
        1 for the first clearing.
    surcharge_per_kwh : (N,) float
        Surcharge at every node that the curves saw in this round's clearing.
    branch_shadow_price, undervoltage_shadow_price, overvoltage_shadow_price : (B,), (N,), (N,)
        Shadow prices ``λ`` (currency/kWh at the most sensitive node) that formed the surcharges.
    clearing : ClearingResult
        The market's result.
    node_p_kw, node_q_kvar : (N,) float
        The dispatch per node checked (cleared allocations plus background load).
    report : SecurityReport
        The DSO's check of that dispatch.

    """

    round: int
    surcharge_per_kwh: FloatArray
    branch_shadow_price: FloatArray
    undervoltage_shadow_price: FloatArray
    overvoltage_shadow_price: FloatArray
    clearing: ClearingResult
    node_p_kw: FloatArray
    node_q_kvar: FloatArray
    report: SecurityReport

    @property
    def clearing_price(self) -> float:
        """The system price of this round."""
        return self.clearing.clearing_price

    @property
    def allocation_kw(self) -> FloatArray:
        """Every curve's cleared power in this round."""
        return self.clearing.allocation_kw

    @property
    def violations(self) -> tuple[Violation, ...]:
        """The violations the DSO found in this round's dispatch."""
        return self.report.violations


@dataclass(frozen=True, eq=False)
class SecureClearingOutcome:
    """The outcome of the secure clearing loop.

    Attributes
    ----------
    secure : bool
        The last round's dispatch passed the security check.
    reason : str
        Why the loop stopped, in words.
    rounds : tuple of ClearingRound
        Every round, in order.

    """

    secure: bool
    reason: str
    rounds: tuple[ClearingRound, ...]

    @property
    def n_rounds(self) -> int:
        """Number of clearings run."""
        return len(self.rounds)

    @property
    def final(self) -> ClearingRound:
        """The last round (its clearing is the market's answer)."""
        return self.rounds[-1]

    @property
    def clearing_price(self) -> float:
        """The final system price."""
        return self.final.clearing_price

    @property
    def surcharge_per_kwh(self) -> FloatArray:
        """The final surcharge per node."""
        return self.final.surcharge_per_kwh

    @property
    def locational_price_per_kwh(self) -> FloatArray:
        """The final price per node: system price plus surcharge."""
        return np.asarray(self.clearing_price + self.surcharge_per_kwh, dtype=np.float64)

    @property
    def allocation_kw(self) -> FloatArray:
        """The final power of every curve."""
        return self.final.allocation_kw

    def to_frame(self) -> pd.DataFrame:
        """One row per round: price, surcharges, violations, voltages, loading."""
        rows = []
        for r in self.rounds:
            rep = r.report
            rows.append(
                {
                    "round": r.round,
                    "clearing_price": r.clearing_price,
                    "max_surcharge": float(np.max(r.surcharge_per_kwh)),
                    "min_surcharge": float(np.min(r.surcharge_per_kwh)),
                    "n_violations": len(rep.violations),
                    "secure": rep.secure,
                    "vmin_pu": float(np.nanmin(rep.vm_pu)),
                    "vmax_pu": float(np.nanmax(rep.vm_pu)),
                    "max_loading_pct": float(np.nanmax(rep.branch_loading_pct, initial=0.0)),
                    "losses_kw": rep.losses_kw,
                    "total_p_kw": float(r.node_p_kw.sum()),
                }
            )
        return pd.DataFrame(rows)


def checked_background(
    problems: Problems,
    n: int,
    background_p_kw: npt.ArrayLike | None,
    background_q_kvar: npt.ArrayLike | None,
) -> tuple[FloatArray, FloatArray]:
    """The background load per node (zeros when not given), every problem added to ``problems``.

    Each must have one finite value per node of the feeder's ``n``; a wrong shape is noted and
    replaced by zeros so the other checks can go on (the caller raises ``problems``).
    """
    out = []
    for name, value in (
        ("background_p_kw", background_p_kw),
        ("background_q_kvar", background_q_kvar),
    ):
        arr = np.zeros(n) if value is None else np.asarray(value, dtype=np.float64)
        if arr.shape != (n,):
            problems.add(name, f"needs shape ({n},) (one value per node), got {arr.shape}")
            arr = np.zeros(n)
        else:
            problems.check(~np.isfinite(arr), name, "must be finite")
        out.append(arr)
    return out[0], out[1]


def secure_clearing(
    bids: BidCurves,
    bus_of_curve: npt.ArrayLike,
    feeder: Feeder,
    *,
    price_cap: float,
    price_floor: float = 0.0,
    supply: Supply | None = None,
    limits: SecurityLimits | None = None,
    background_p_kw: npt.ArrayLike | None = None,
    background_q_kvar: npt.ArrayLike | None = None,
    q_per_kw: float | npt.ArrayLike = 0.0,
    max_rounds: int = 10,
    loading_margin: float = 0.01,
    voltage_margin_pu: float = 0.001,
    runner: IntervalPowerFlow | None = None,
) -> SecureClearingOutcome:
    """Clear, check, surcharge, clear again: until the dispatch is secure or rounds run out.

    Parameters
    ----------
    bids : BidCurves
        The bids, one curve per participant.
    bus_of_curve : (len(bids),) int
        Node of every curve (feeder node numbering).
    feeder : Feeder
        A radial feeder.
    price_cap, price_floor, supply :
        As for :func:`transactive.market.clear`; ``supply`` is the substation's import.
    limits : SecurityLimits, optional
        Limits the DSO enforces (default: the feeder's).
    background_p_kw, background_q_kvar : (N,) float, optional
        Load per node that does not bid (added to the cleared dispatch).
    q_per_kw : float or (N,) float
        Reactive power per kW of cleared power at every node (``tan φ``). Default 0: the
        cleared power is at unity power factor (inverter-connected flexible load and DG); pass
        e.g. ``feeder.load_q_kvar / feeder.load_p_kw`` for the feeder's nominal power factors.
    max_rounds : int
        Most clearings to run.
    loading_margin, voltage_margin_pu :
        The DSO aims a violated element at its limit less this margin (a fraction of the rating,
        or pu of voltage), to absorb the error of its linear model.
    runner : IntervalPowerFlow, optional
        The power-flow engine of the DSO's checks, built once per feeder and reused across
        intervals: ``PowerFlowRunner(feeder, replace_injections=True)`` (pandapower, the default)
        or :class:`transactive.network.pgm.BatchPowerFlow` (power-grid-model, ~70x faster per
        check, voltages within 1e-6 pu of pandapower).

    Returns
    -------
    SecureClearingOutcome
        Every round and whether the last one is secure.

    Raises
    ------
    ValidationError
        Bad bids, nodes, limits, background load or options (everything found at once).

    """
    n = feeder.n_nodes
    node, bg_p, bg_q, tan_phi = _checked_loop_inputs(
        bids,
        bus_of_curve,
        feeder,
        background_p_kw,
        background_q_kvar,
        q_per_kw,
        max_rounds,
        loading_margin,
        voltage_margin_pu,
    )
    feeder.require_radial()
    vmin, vmax, i_max = (limits or SecurityLimits()).resolve(feeder)
    # rated current as apparent power at the branch_to node's nominal voltage (kVA), the unit of
    # the linearised flows |S| / |V| the sensitivities are written in
    s_max = np.sqrt(3.0) * np.asarray(feeder.vn_kv)[np.asarray(feeder.branch_to)] * i_max * 1e3
    if runner is None:
        runner = PowerFlowRunner(feeder, replace_injections=True)
    model = _Sensitivity(feeder, tan_phi)
    floor, cap = float(price_floor), float(price_cap)

    lam_branch = np.zeros(feeder.n_branches)
    lam_under = np.zeros(n)
    lam_over = np.zeros(n)
    surcharge = np.zeros(n)
    rounds: list[ClearingRound] = []
    for k in range(1, int(max_rounds) + 1):
        curves = bids
        if np.any(surcharge != 0.0):
            curves = _restricted(bids.with_price_offset(surcharge[node]), floor, cap)
        result = clear(curves, price_cap=cap, price_floor=floor, supply=supply)
        p_market = np.bincount(node, weights=result.allocation_kw, minlength=n)
        p = p_market + bg_p
        q = tan_phi * p_market + bg_q
        report = security_check(feeder, p, q, limits=limits, runner=runner)
        rounds.append(
            ClearingRound(
                round=k,
                surcharge_per_kwh=_ro(surcharge.copy()),
                branch_shadow_price=_ro(lam_branch.copy()),
                undervoltage_shadow_price=_ro(lam_under.copy()),
                overvoltage_shadow_price=_ro(lam_over.copy()),
                clearing=result,
                node_p_kw=_ro(p),
                node_q_kvar=_ro(q),
                report=report,
            )
        )
        if report.secure:
            note = "secure as cleared" if k == 1 else f"secure after {k} rounds"
            return SecureClearingOutcome(True, note, tuple(rounds))
        if not report.converged:
            return SecureClearingOutcome(
                False, "the AC power flow does not converge: no sensitivities", tuple(rounds)
            )
        if k == max_rounds:
            break
        elements = model.elements(report, vmin, vmax, s_max, loading_margin, voltage_margin_pu)
        step = _raise_shadow_prices(bids, node, surcharge, elements, result, floor, cap)
        if step is None:
            return SecureClearingOutcome(
                False,
                f"not secure after {k} round{'s' if k > 1 else ''}: no bid at the nodes that "
                "affect the violated elements can respond to a higher surcharge within the price "
                "limits",
                tuple(rounds),
            )
        surcharge, raised = step
        for (kind, index, _row, _need), d_lam in zip(elements, raised, strict=True):
            target = {"branch": lam_branch, "under": lam_under, "over": lam_over}[kind]
            target[index] += d_lam
    return SecureClearingOutcome(
        False, f"not secure after {max_rounds} rounds (the round limit)", tuple(rounds)
    )


def _checked_loop_inputs(
    bids: object,
    bus_of_curve: npt.ArrayLike,
    feeder: Feeder,
    background_p_kw: npt.ArrayLike | None,
    background_q_kvar: npt.ArrayLike | None,
    q_per_kw: float | npt.ArrayLike,
    max_rounds: int,
    loading_margin: float,
    voltage_margin_pu: float,
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    problems = Problems(subject="secure clearing")
    n = feeder.n_nodes
    if not isinstance(bids, BidCurves):
        problems.add("bids", f"must be BidCurves, got {type(bids).__name__}")
        raise ValidationError(problems.found, subject=problems.subject)
    node_raw = np.asarray(bus_of_curve)
    node = np.zeros(len(bids), dtype=np.int64)
    if node_raw.shape != (len(bids),):
        problems.add(
            "bus_of_curve", f"needs one node per curve ({len(bids)}), got {node_raw.shape}"
        )
    elif node_raw.size and not np.issubdtype(node_raw.dtype, np.integer):
        problems.add("bus_of_curve", "must be integer node indices")
    else:
        problems.check(
            (node_raw < 0) | (node_raw >= n),
            "bus_of_curve",
            f"not a node of the feeder (0..{n - 1})",
        )
        node = node_raw.astype(np.int64)
    arrays = list(checked_background(problems, n, background_p_kw, background_q_kvar))
    tan_phi = np.asarray(q_per_kw, dtype=np.float64)
    if tan_phi.ndim == 0:
        tan_phi = np.full(n, float(tan_phi))
    if tan_phi.shape != (n,):
        problems.add("q_per_kw", f"needs 1 value or {n}, got shape {tan_phi.shape}")
        tan_phi = np.zeros(n)
    problems.check(~np.isfinite(tan_phi), "q_per_kw", "must be finite")
    if int(max_rounds) != max_rounds or max_rounds < 1:
        problems.add("max_rounds", f"must be a whole number of at least 1, got {max_rounds}")
    if not 0.0 <= loading_margin < 1.0:
        problems.add("loading_margin", f"must be in [0, 1), got {loading_margin}")
    if not 0.0 <= voltage_margin_pu < 0.1:
        problems.add("voltage_margin_pu", f"must be in [0, 0.1), got {voltage_margin_pu}")
    problems.raise_if_any()
    return node, arrays[0], arrays[1], tan_phi


# ---------------------------------------------------------------------- sensitivities


#: An element to relieve: (kind, index, normalised sensitivity row (N,), reduction needed).
_Element = tuple[str, int, FloatArray, float]


class _Sensitivity:
    """Linearised DistFlow sensitivities of a radial feeder's branch flows and voltages."""

    def __init__(self, feeder: Feeder, tan_phi: FloatArray) -> None:
        self.feeder = feeder
        self.tan_phi = tan_phi
        # below[m, b]: node m is fed through branch b (b lies on m's path to the slack)
        self.below = feeder.path_matrix

    def elements(
        self,
        report: SecurityReport,
        vmin: FloatArray,
        vmax: FloatArray,
        s_max: FloatArray,
        loading_margin: float,
        voltage_margin_pu: float,
    ) -> list[_Element]:
        """Every violated element with its normalised row and needed reduction, worst first.

        The constraint of element ``e`` in the linear model is ``Σ_m a_em Δp_m <= -need_e``.
        """
        feeder = self.feeder
        s_base = feeder.s_base_kva
        vm = report.vm_pu
        found: list[tuple[float, _Element]] = []
        r_pu = np.asarray(feeder.branch_r_pu)
        x_pu = np.asarray(feeder.branch_x_pu)
        for v in report.violations:
            if v.kind == ViolationKind.OVERLOAD:
                b = v.index
                p_b, q_b = report.branch_p_kw[b], report.branch_q_kvar[b]
                s_b = float(np.hypot(p_b, q_b))
                # loading is current over rated current, |I| = |S| / |V| (in kVA at nominal
                # voltage): d(|S_b| / V) = (P_b + Q_b tanφ) / |S_b| / V
                v_from = vm[feeder.branch_from[b]]
                if s_b > 0:
                    row = self.below[:, b] * (p_b + q_b * self.tan_phi) / (s_b * v_from)
                else:
                    row = self.below[:, b] / v_from
                flow = v.value / 100.0 * s_max[b]
                target = report.max_loading_pct / 100.0 * s_max[b] * (1.0 - loading_margin)
                need = flow - target
                kind, index, severity = "branch", b, v.excess / v.limit
            elif v.kind in (ViolationKind.UNDERVOLTAGE, ViolationKind.OVERVOLTAGE):
                j = v.index
                shared = self.below[j][None, :] * self.below  # (N, B): branches j and m share
                drop = (shared @ r_pu + (shared @ x_pu) * self.tan_phi) / (vm[j] * s_base)
                if v.kind == ViolationKind.UNDERVOLTAGE:
                    row, need = drop, (vmin[j] + voltage_margin_pu) - vm[j]
                    kind = "under"
                else:
                    row, need = -drop, vm[j] - (vmax[j] - voltage_margin_pu)
                    kind = "over"
                index, severity = j, v.excess / max(vmax[j] - vmin[j], 1e-9)
            else:  # an unsupplied bus (its index a pandapower bus, not a node): no price helps
                continue
            scale = float(np.max(np.abs(row)))
            if scale <= 0:
                continue
            found.append((severity, (kind, int(index), row / scale, float(need) / scale)))
        found.sort(key=lambda item: -item[0])
        return [element for _severity, element in found]


def _raise_shadow_prices(
    bids: BidCurves,
    node: IntArray,
    surcharge: FloatArray,
    elements: list[_Element],
    result: ClearingResult,
    floor: float,
    cap: float,
) -> tuple[FloatArray, list[float]] | None:
    """Raise every violated element's shadow price by bisection on the bids' response.

    Returns the new surcharges and each element's increase, or None when none could move.
    """
    price = result.clearing_price
    # curves read at the middle of any block at their price, now and after a change alike
    fill = 0.5
    span = cap - floor
    delta = 1e-6 * span
    # a node's price stays within the market's limits (strictly, so a block at the cap is served)
    # (at a price on a limit, no surcharge can push further past it: the bound is 0)
    lo_s, hi_s = min(floor - price + delta, 0.0), max(cap - price - delta, 0.0)
    s = np.clip(surcharge, lo_s, hi_s)
    start = bids.power_at(np.clip(price + s[node], floor, cap), fill)
    raised: list[float] = []
    for _kind, _index, row, need in elements:
        affected = np.flatnonzero(row[node] != 0.0)
        if affected.size == 0:
            raised.append(0.0)
            continue
        sub = bids.take(affected)
        a_c = row[node[affected]]
        base = start[affected]
        curve_node = node[affected]

        def predicted(
            d_lam: float,
            s_now: FloatArray = s,
            sub: BidCurves = sub,
            a_c: FloatArray = a_c,
            base: FloatArray = base,
            curve_node: IntArray = curve_node,
            row: FloatArray = row,
        ) -> float:
            trial = np.clip(s_now + d_lam * row, lo_s, hi_s)
            power = sub.power_at(np.clip(price + trial[curve_node], floor, cap), fill)
            return float(a_c @ (power - base))

        now = predicted(0.0)
        if now <= -need:
            raised.append(0.0)  # already relieved by the elements updated before it
            continue
        smallest = float(np.min(np.abs(row[row != 0.0])))
        d_max = (hi_s - lo_s) / max(smallest, 1e-3)
        best = predicted(d_max)
        if best >= now - 1e-9 * max(abs(need), 1.0):
            raised.append(0.0)  # nothing here responds
            continue
        if best > -need:
            d_lam = d_max  # not enough flexibility: take all there is
        else:
            lo, hi = 0.0, d_max
            for _ in range(_BISECTION_STEPS):
                mid = 0.5 * (lo + hi)
                if predicted(mid) <= -need:
                    hi = mid
                else:
                    lo = mid
            d_lam = hi
        s = np.clip(s + d_lam * row, lo_s, hi_s)
        raised.append(d_lam)
    if not any(d > 0 for d in raised):
        return None
    return s, raised


def _restricted(curves: BidCurves, floor: float, cap: float) -> BidCurves:
    """The curves on ``[floor, cap]`` only, constant beyond (so every breakpoint is in range).

    Breakpoints below the floor move to the floor with the curve's power just below it, those
    above the cap to the cap with its power just above it: on ``[floor, cap]`` nothing changes.
    """
    prices, powers = curves.price_per_kwh, curves.power_kw
    below, above = prices < floor, prices > cap
    if not (below.any() or above.any()):
        return curves
    _lo_f, hi_f = curves.bounds_at(floor)
    lo_c, _hi_c = curves.bounds_at(cap)
    new_powers = np.where(below, hi_f[:, None], np.where(above, lo_c[:, None], powers))
    return BidCurves._trusted(np.clip(prices, floor, cap), new_powers, curves.ids)


def _ro(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a
