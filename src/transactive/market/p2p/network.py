"""Network-aware P2P trading: trades charged the network's fees and losses, checked by the DSO.

Hu et al. 2019, §3.1.2 and §3.4: peer-to-peer trades still flow through the distribution
network, so they pay for its use and its losses, and the DSO must be able to refuse a set of
trades that would break its limits (§3.1.1: *cleared transactions pass the system operator's
security check or return to the market*). Nothing here is new physics; it is the network and
settlement layers applied to trades:

- :func:`trade_charges`: the trade set's dispatch (every trade a buyer's leg consuming at its bus
  and a seller's leg injecting at its, plus the background load) goes through the AC power flow
  (:func:`transactive.network.losses.solve_flows`); the losses are allocated to the buses by one
  of :mod:`transactive.network.losses`' methods (branch current decomposition by default) and
  each bus's share to the legs behind it (:func:`~transactive.network.losses.split_to_meters`,
  signed by the legs' power, so a seller's leg that relieves a loaded bus earns a credit); the
  legs are billed by :func:`transactive.settlement.network_fees` (loss energy at the loss price,
  use of system per kWh imported by the buyer and exported by the seller; a trade is no
  connection, so no fixed charge). A trade between two buses pays the losses its flow causes
  between them, so the charge depends on where its ends are.
- :func:`check_trades`: the DSO's check (:func:`transactive.network.security_check`, the same
  power flow the secure clearing uses) of the trade set's dispatch. While it is insecure, every
  violated element is relieved by refusing trades that worsen it, the set's latest trades first
  (the set's order is its priority: an order book's execution order; or, on request, those
  that worsen it most), until the linearised
  DistFlow model of the element (the DSO's sensitivities of
  :mod:`transactive.coordination.secure`) says the refusals remove the violation; the rest is
  checked again in AC. A refused trade goes back to its traders with the violation that refused
  it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from transactive.coordination.secure import _Sensitivity, checked_background
from transactive.curves import StrArray, checked_ids
from transactive.errors import Problems, is_real
from transactive.market.p2p.bilateral import BilateralResult
from transactive.market.p2p.order_book import Trade
from transactive.network.feeders import Feeder
from transactive.network.losses import (
    LOSS_METHODS,
    AcFlows,
    LossAllocation,
    branch_current_losses,
    marginal_losses,
    pro_rata_losses,
    solve_flows,
    split_to_meters,
    tracing_losses,
)
from transactive.network.powerflow import IntervalPowerFlow, PowerFlowRunner
from transactive.network.security import (
    SecurityLimits,
    SecurityReport,
    Violation,
    ViolationKind,
    security_check,
)
from transactive.settlement.network_fees import NetworkFees, NetworkTariff, network_fees

__all__ = [
    "RefusedTrade",
    "TradeCharges",
    "TradeCheck",
    "TradeSet",
    "check_trades",
    "trade_charges",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LossMethod = Literal["branch_current", "marginal", "tracing", "pro_rata"]
_RELIEVABLE = (ViolationKind.UNDERVOLTAGE, ViolationKind.OVERVOLTAGE, ViolationKind.OVERLOAD)
_ELEMENT_KIND = {
    "branch": ViolationKind.OVERLOAD,
    "under": ViolationKind.UNDERVOLTAGE,
    "over": ViolationKind.OVERVOLTAGE,
}


@dataclass(frozen=True, eq=False)
class TradeSet:
    """Trades of one interval as columns, in priority order (earliest first).

    Attributes
    ----------
    trade_ids, buyer_ids, seller_ids : (T,) str
        Each trade's id and its two agents.
    energy_kwh : (T,) float
        Energy traded (> 0).
    price_per_kwh : (T,) float
        The trade's price.
    interval_s : float
        Length of the delivery interval (the trade's power is ``energy / hours``).

    """

    trade_ids: StrArray
    buyer_ids: StrArray
    seller_ids: StrArray
    energy_kwh: FloatArray
    price_per_kwh: FloatArray
    interval_s: float

    def __post_init__(self) -> None:
        problems = Problems(subject="trade set")
        ids = checked_ids(self.trade_ids, np.asarray(self.trade_ids).size, subject="trade set")
        n = ids.size
        labels = ids.tolist()
        columns: dict[str, npt.NDArray[np.generic]] = {"trade_ids": ids}
        for name in ("buyer_ids", "seller_ids"):
            arr = np.asarray(getattr(self, name)).astype(np.str_) if n else np.empty(0, "<U1")
            if arr.shape != (n,):
                problems.add(name, f"needs {n} agent ids, got shape {arr.shape}")
            else:
                problems.check(np.char.str_len(arr) == 0, name, "is empty", labels)
            columns[name] = arr
        for name in ("energy_kwh", "price_per_kwh"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                problems.add(name, f"needs {n} values, got shape {arr.shape}")
            else:
                problems.check(~np.isfinite(arr), name, "must be finite", labels)
            columns[name] = arr
        energy = np.asarray(columns["energy_kwh"], dtype=np.float64)
        if energy.shape == (n,):
            problems.check(~(energy > 0), "energy_kwh", "must be > 0", labels)
        if columns["buyer_ids"].shape == columns["seller_ids"].shape == (n,):
            problems.check(
                columns["buyer_ids"] == columns["seller_ids"],
                "seller_ids",
                "is the buyer (no trade with oneself)",
                labels,
            )
        if not is_real(self.interval_s) or not float(self.interval_s) > 0:
            problems.add("interval_s", f"must be a number of seconds > 0, got {self.interval_s!r}")
        problems.raise_if_any()
        for name, column in columns.items():
            value = np.ascontiguousarray(column)
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "interval_s", float(self.interval_s))

    def __len__(self) -> int:
        return int(self.trade_ids.size)

    @property
    def power_kw(self) -> FloatArray:
        """Each trade's average power over the interval."""
        return np.asarray(self.energy_kwh * (3600.0 / self.interval_s), dtype=np.float64)

    def take(self, index: npt.ArrayLike) -> TradeSet:
        """The trades at ``index`` (in that order)."""
        i = np.asarray(index, dtype=np.int64)
        return TradeSet(
            self.trade_ids[i],
            self.buyer_ids[i],
            self.seller_ids[i],
            self.energy_kwh[i],
            self.price_per_kwh[i],
            self.interval_s,
        )

    @classmethod
    def from_trades(cls, trades: Sequence[Trade], *, interval_s: float) -> TradeSet:
        """An order book's trades, named ``"<buy order>/<sell order>/<sequence>"``."""
        return cls(
            np.array(
                [f"{t.buy_order_id}/{t.sell_order_id}/{t.sequence}" for t in trades], dtype=np.str_
            ),
            np.array([t.buyer_id for t in trades], dtype=np.str_),
            np.array([t.seller_id for t in trades], dtype=np.str_),
            np.array([t.energy_kwh for t in trades], dtype=np.float64),
            np.array([t.price_per_kwh for t in trades], dtype=np.float64),
            interval_s,
        )

    @classmethod
    def from_bilateral(
        cls, result: BilateralResult, *, interval_s: float, min_energy_kwh: float = 0.0
    ) -> TradeSet:
        """RCI's agreed trades: one per pair with ``x[n, m] > 0`` (n buys from m).

        Pairs trading at most ``min_energy_kwh`` are left out (0 keeps every positive trade);
        trades are in the agents' order (buyer, then seller), named ``"<buyer>/<seller>"``.
        """
        problems = Problems(subject="trade set")
        if not is_real(min_energy_kwh) or float(min_energy_kwh) < 0:
            problems.add("min_energy_kwh", f"must be a number >= 0, got {min_energy_kwh!r}")
        if not is_real(interval_s) or not float(interval_s) > 0:
            problems.add("interval_s", f"must be a number of seconds > 0, got {interval_s!r}")
        problems.raise_if_any()
        energy = result.agreed_trades_kw * (float(interval_s) / 3600.0)
        buyer, seller = np.nonzero(energy > float(min_energy_kwh))
        ids = result.ids
        return cls(
            np.char.add(np.char.add(ids[buyer], "/"), ids[seller]),
            ids[buyer],
            ids[seller],
            energy[buyer, seller],
            result.prices_per_kwh[buyer, seller],
            interval_s,
        )


@dataclass(frozen=True, eq=False)
class TradeCharges:
    """Network charges of every trade of a set (amounts in the tariff's currency).

    Attributes
    ----------
    trades : TradeSet
        The trades charged.
    buyer_loss_kwh, seller_loss_kwh : (T,) float
        Loss energy allocated to each trade's buyer's and seller's leg (negative: a credit).
    loss_kwh : (T,) float
        Their sum: the trade's losses.
    buyer_charge, seller_charge : (T,) float
        What each side pays the network owner for the trade (losses and use of system).
    total_charge : (T,) float
        Their sum.
    leg_fees : NetworkFees
        The bills of the legs (buyer leg of trade t at ``2 t``, seller leg at ``2 t + 1``,
        users the agents); ``leg_fees.postings()`` gives the double-entry rows.
    allocation : LossAllocation
        The node-level allocation of the interval's losses.
    background_loss_kw : float
        Losses allocated to the background load (not to trades).
    unallocated_loss_kw : float
        Losses allocated to nodes without any leg or background load (e.g. the substation's
        share in tracing).

    """

    trades: TradeSet
    buyer_loss_kwh: FloatArray
    seller_loss_kwh: FloatArray
    loss_kwh: FloatArray
    buyer_charge: FloatArray
    seller_charge: FloatArray
    total_charge: FloatArray
    leg_fees: NetworkFees
    allocation: LossAllocation
    background_loss_kw: float
    unallocated_loss_kw: float


@dataclass(frozen=True)
class RefusedTrade:
    """A trade the DSO returned to its traders, and why."""

    trade_id: str
    buyer_id: str
    seller_id: str
    energy_kwh: float
    price_per_kwh: float
    violation: Violation
    round: int


@dataclass(frozen=True, eq=False)
class TradeCheck:
    """The DSO's answer to a trade set.

    Attributes
    ----------
    secure : bool
        The accepted trades' dispatch passed the last check.
    reason : str
        Why the check stopped, in words.
    accepted : TradeSet
        The trades that stand (in their order).
    refused : tuple of RefusedTrade
        The trades returned, each with the violation that refused it.
    reports : tuple of SecurityReport
        The DSO's check of every round's dispatch, the first of the whole set.

    """

    secure: bool
    reason: str
    accepted: TradeSet
    refused: tuple[RefusedTrade, ...]
    reports: tuple[SecurityReport, ...]


def trade_charges(
    trades: TradeSet,
    bus_of_agent: Mapping[str, int],
    feeder: Feeder,
    *,
    tariff: NetworkTariff,
    start_s: float = 0.0,
    method: LossMethod = "branch_current",
    background_p_kw: npt.ArrayLike | None = None,
    background_q_kvar: npt.ArrayLike | None = None,
    runner: PowerFlowRunner | None = None,
) -> TradeCharges:
    """Charge every trade the network fees and losses of the buses it connects.

    Parameters
    ----------
    trades : TradeSet
        The interval's trades.
    bus_of_agent : mapping of str to int
        The feeder node of every agent.
    feeder : Feeder
        A radial feeder.
    tariff : NetworkTariff
        Loss price and use-of-system rates.
    start_s : float
        Local time of day at the interval's start, seconds (time-of-use bands).
    method : {"branch_current", "marginal", "tracing", "pro_rata"}
        The loss allocation (:mod:`transactive.network.losses`).
    background_p_kw, background_q_kvar : (N,) float, optional
        Load per node that is not traded (it shares the losses, and is not charged here).
    runner : PowerFlowRunner, optional
        ``PowerFlowRunner(feeder, replace_injections=True)`` to reuse across intervals.

    Raises
    ------
    ValidationError
        Agents without a bus, bad nodes or background, an unknown method, a power flow that does
        not converge (everything found at once where it can be).

    """
    buyer_node, seller_node, bg_p, bg_q = _checked_dispatch(
        trades, bus_of_agent, feeder, background_p_kw, background_q_kvar, subject="trade charges"
    )
    if method not in LOSS_METHODS:
        problems = Problems(subject="trade charges")
        problems.add("method", f"must be one of {', '.join(LOSS_METHODS)}; got {method!r}")
        problems.raise_if_any()
    n = feeder.n_nodes
    power = trades.power_kw
    leg_node = np.empty(2 * len(trades), dtype=np.int64)
    leg_node[0::2], leg_node[1::2] = buyer_node, seller_node
    leg_p = np.empty(2 * len(trades))
    leg_p[0::2], leg_p[1::2] = power, -power
    p = np.bincount(leg_node, weights=leg_p, minlength=n) + bg_p
    flows = solve_flows(feeder, p, bg_q, runner=runner)
    allocation = _allocate(flows, method)
    background = np.flatnonzero(bg_p != 0.0)
    shares = split_to_meters(
        allocation,
        np.concatenate([leg_node, background]),
        np.concatenate([leg_p, bg_p[background]]),
    )
    leg_loss = shares[: leg_node.size]
    users = np.empty(leg_node.size, dtype=object)
    users[0::2], users[1::2] = trades.buyer_ids.tolist(), trades.seller_ids.tolist()
    fees = network_fees(
        leg_loss,
        leg_p,
        interval_s=trades.interval_s,
        tariff=tariff,
        start_s=start_s,
        n_meters=0,
        users=list(users),
    )
    buyer_loss, seller_loss = fees.loss_kwh[0::2], fees.loss_kwh[1::2]
    buyer_charge, seller_charge = fees.total[0::2], fees.total[1::2]
    background_kw = float(shares[leg_node.size :].sum())
    return TradeCharges(
        trades=trades,
        buyer_loss_kwh=_ro(buyer_loss),
        seller_loss_kwh=_ro(seller_loss),
        loss_kwh=_ro(buyer_loss + seller_loss),
        buyer_charge=_ro(buyer_charge),
        seller_charge=_ro(seller_charge),
        total_charge=_ro(buyer_charge + seller_charge),
        leg_fees=fees,
        allocation=allocation,
        background_loss_kw=background_kw,
        unallocated_loss_kw=float(allocation.total_loss_kw - leg_loss.sum() - background_kw),
    )


def check_trades(
    trades: TradeSet,
    bus_of_agent: Mapping[str, int],
    feeder: Feeder,
    *,
    limits: SecurityLimits | None = None,
    background_p_kw: npt.ArrayLike | None = None,
    background_q_kvar: npt.ArrayLike | None = None,
    max_rounds: int = 10,
    loading_margin: float = 0.01,
    voltage_margin_pu: float = 0.001,
    refuse_first: Literal["latest", "largest"] = "latest",
    runner: IntervalPowerFlow | None = None,
) -> TradeCheck:
    """The DSO's check of a trade set; the trades it refuses go back with their violation.

    Parameters
    ----------
    trades : TradeSet
        The interval's trades, in priority order (the latest are refused first).
    bus_of_agent : mapping of str to int
        The feeder node of every agent.
    feeder : Feeder
        A radial feeder.
    limits : SecurityLimits, optional
        The limits the DSO enforces (default: the feeder's).
    background_p_kw, background_q_kvar : (N,) float, optional
        Load per node that is not traded.
    max_rounds : int
        Most AC checks to run.
    loading_margin, voltage_margin_pu : float
        The DSO aims a violated element at its limit less this margin (as in
        :func:`transactive.coordination.secure_clearing`).
    refuse_first : {"latest", "largest"}
        Which of the trades that worsen a violated element go back first: the latest in the
        set's order (time priority: the earlier trades stand), or those that worsen it most
        (the fewest trades refused).
    runner : IntervalPowerFlow, optional
        The power-flow engine, reused across checks (default pandapower's
        ``PowerFlowRunner(feeder, replace_injections=True)``).

    Raises
    ------
    ValidationError
        Agents without a bus, bad nodes, background, limits or options.

    """
    buyer_node, seller_node, bg_p, bg_q = _checked_dispatch(
        trades, bus_of_agent, feeder, background_p_kw, background_q_kvar, subject="trade check"
    )
    problems = Problems(subject="trade check")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        problems.add("max_rounds", f"must be an integer >= 1, got {max_rounds!r}")
    if not (is_real(loading_margin) and 0.0 <= loading_margin < 1.0):
        problems.add("loading_margin", f"must be in [0, 1), got {loading_margin!r}")
    if not (is_real(voltage_margin_pu) and 0.0 <= voltage_margin_pu < 0.1):
        problems.add("voltage_margin_pu", f"must be in [0, 0.1), got {voltage_margin_pu!r}")
    if refuse_first not in ("latest", "largest"):
        problems.add("refuse_first", f"must be 'latest' or 'largest', got {refuse_first!r}")
    problems.raise_if_any()
    feeder.require_radial()
    vmin, vmax, i_max = (limits or SecurityLimits()).resolve(feeder)
    # rated current as apparent power at the branch_to node's nominal voltage (kVA), the unit of
    # the DSO's linearised flows (as in secure_clearing)
    s_max = np.sqrt(3.0) * np.asarray(feeder.vn_kv)[np.asarray(feeder.branch_to)] * i_max * 1e3
    if runner is None:
        runner = PowerFlowRunner(feeder, replace_injections=True)
    model = _Sensitivity(feeder, np.zeros(feeder.n_nodes))  # trades at unity power factor
    n = feeder.n_nodes
    power = trades.power_kw
    accepted = np.ones(len(trades), dtype=bool)
    refused: list[RefusedTrade] = []
    reports: list[SecurityReport] = []
    reason = f"not secure after {max_rounds} checks (the round limit)"
    for k in range(1, max_rounds + 1):
        p = (
            np.bincount(buyer_node, weights=power * accepted, minlength=n)
            - np.bincount(seller_node, weights=power * accepted, minlength=n)
            + bg_p
        )
        report = security_check(feeder, p, bg_q, limits=limits, runner=runner)
        reports.append(report)
        if report.secure:
            reason = "secure as traded" if k == 1 else f"secure after {k} checks"
            break
        if k == max_rounds:
            break
        if not report.converged:
            # no sensitivities at a collapsed voltage: return the latest trade that moves power
            moving = np.flatnonzero(accepted & (buyer_node != seller_node))
            if moving.size == 0:
                reason = "the power flow does not converge without any trade"
                break
            divergence = report.violations[-1]
            accepted[moving[-1]] = False
            refused.append(_refused(trades, int(moving[-1]), divergence, k))
            continue
        relievable = tuple(v for v in report.violations if v.kind in _RELIEVABLE)
        by_element = {(v.kind, v.index): v for v in relievable}
        elements = model.elements(
            dataclasses.replace(report, violations=relievable),
            vmin,
            vmax,
            s_max,
            loading_margin,
            voltage_margin_pu,
        )
        out_now = np.zeros(len(trades), dtype=bool)
        for kind, index, row, need in elements:
            # removing trade t lowers the element's linear constraint by its contribution
            contribution = power * (row[buyer_node] - row[seller_node])
            relief = float(contribution[out_now].sum())
            if relief >= need:
                continue
            worsening = np.flatnonzero(accepted & ~out_now & (contribution > 0.0))[::-1]
            if refuse_first == "largest":
                worsening = worsening[np.argsort(-contribution[worsening], kind="stable")]
            if worsening.size == 0:
                continue
            enough = np.cumsum(contribution[worsening]) + relief >= need
            count = int(np.argmax(enough)) + 1 if enough.any() else worsening.size
            violation = by_element[(_ELEMENT_KIND[kind], index)]
            for t in worsening[:count]:
                out_now[t] = True
                refused.append(_refused(trades, int(t), violation, k))
        if not out_now.any():
            reason = (
                "not secure: no accepted trade worsens the remaining violations (they come from "
                "the background load or the feeder itself)"
            )
            break
        accepted &= ~out_now
    return TradeCheck(
        secure=reports[-1].secure,
        reason=reason,
        accepted=trades.take(np.flatnonzero(accepted)),
        refused=tuple(refused),
        reports=tuple(reports),
    )


def _refused(trades: TradeSet, t: int, violation: Violation, round_: int) -> RefusedTrade:
    return RefusedTrade(
        trade_id=str(trades.trade_ids[t]),
        buyer_id=str(trades.buyer_ids[t]),
        seller_id=str(trades.seller_ids[t]),
        energy_kwh=float(trades.energy_kwh[t]),
        price_per_kwh=float(trades.price_per_kwh[t]),
        violation=violation,
        round=round_,
    )


def _allocate(flows: AcFlows, method: str) -> LossAllocation:
    if method == "pro_rata":
        return pro_rata_losses(flows)
    if method == "marginal":
        return marginal_losses(flows)
    if method == "tracing":
        return tracing_losses(flows)
    return branch_current_losses(flows)


def _checked_dispatch(
    trades: TradeSet,
    bus_of_agent: Mapping[str, int],
    feeder: Feeder,
    background_p_kw: npt.ArrayLike | None,
    background_q_kvar: npt.ArrayLike | None,
    *,
    subject: str,
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Every trade's buyer and seller node and the background load, checked (all at once)."""
    problems = Problems(subject=subject)
    if not isinstance(trades, TradeSet):
        problems.add(  # type: ignore[unreachable]
            "trades", f"must be a TradeSet, got {type(trades).__name__}"
        )
        problems.raise_if_any()
    n = feeder.n_nodes
    bad_bus = [
        agent
        for agent, node in bus_of_agent.items()
        if isinstance(node, bool) or not isinstance(node, int | np.integer) or not 0 <= node < n
    ]
    if bad_bus:
        problems.add("bus_of_agent", f"not a node of the feeder (0..{n - 1})", bad_bus)
    nodes = []
    for name in ("buyer_ids", "seller_ids"):
        agents = getattr(trades, name).tolist()
        missing = sorted({a for a in agents if a not in bus_of_agent})
        if missing:
            problems.add("bus_of_agent", f"has no bus for these {name[:-4]}s", missing)
        nodes.append(
            np.array([int(bus_of_agent.get(a, 0)) for a in agents], dtype=np.int64).reshape(-1)
        )
    p_kw, q_kvar = checked_background(problems, n, background_p_kw, background_q_kvar)
    problems.raise_if_any()
    return nodes[0], nodes[1], p_kw, q_kvar


def _ro(a: npt.NDArray[np.float64]) -> FloatArray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a
