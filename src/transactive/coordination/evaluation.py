"""Mechanism evaluation: efficiency, informational cost, incentives and imperfect communication.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.3 (how a mechanism is judged: the allocative efficiency of its outcome,
its informational cost, its incentive compatibility) and §3.5 (message loss and delay between
agents and coordinator). :func:`compare_mechanisms` runs every mechanism of the project on one
:class:`ComparisonCase` and returns one frozen :class:`MechanismRow` per mechanism:

- single exchange: the uniform-price double auction :func:`transactive.market.clear`; the same
  bids through a PowerMatcher concentrator tree (Kok, Warmer and Kamphuis 2005:
  :func:`transactive.market.aggregate` per home and per concentrator by side, the top cleared,
  :func:`transactive.market.allocate` down); Li, Zhang, Lian and Kalsi's truthful TCL market
  (:func:`transactive.market.truthful_tcl.clear_truthful`, IEEE Trans. Power Systems 31(2),
  2016) with its VCG payments and with one uniform price;
- iterative: Gan, Topcu and Low's valley filling and Ma, Callaway and Hiskens' charging game
  (:mod:`transactive.market.iterative.valley_filling`), Papadaskalopoulos and Strbac's day-ahead
  market by Lagrangian relaxation and by exchange ADMM (Boyd et al. 2011, §7.3.2)
  (:mod:`~transactive.market.iterative.dual_decomposition`,
  :mod:`~transactive.market.iterative.admm`),
  Zhang and Chow's incremental cost consensus (:mod:`~transactive.market.iterative.consensus`)
  and Hu, Yang, Bindner and Xue's network-constrained EV charging
  (:mod:`transactive.coordination.ev_congestion`).

Allocative efficiency, in ``[0, 1]`` (1: the mechanism's outcome is as good as the centralized
optimum of the same problem, solved independently):

- valley filling: ``optimum / achieved`` of ``sum_t (D_t + sum_n r_nt)^2 / 2`` (kW^2, Gan et al.'s
  objective with ``U(x) = x^2 / 2``), the optimum by
  :func:`~transactive.market.iterative.valley_filling.centralized_valley_filling`;
- day-ahead (dual decomposition, ADMM): ``optimum / achieved`` of the generation cost (currency)
  of serving the loads' final schedules at least cost, the optimum by
  :func:`~transactive.market.iterative.day_ahead.centralized_day_ahead`;
- consensus: ``optimum / achieved`` of the dispatch cost (currency/h). The consensus stops with
  a mismatch within its tolerance, and outputs that serve a little less than the demand can
  cost less than the optimum; the achieved cost here is that of a dispatch that serves the
  demand: the final outputs with the mismatch taken up by the leader (the unit that measures
  it), or, beyond the leader's limits, by the other units in index order;
- network-constrained EV charging: ``optimum / achieved`` of the cost of the feeder's import
  beyond its base load at the energy prices, the optimum the DSO's OPF
  (:func:`~transactive.coordination.ev_congestion.centralized_network_ev`, the SOC relaxation).
  The run stops once its violations are within its tolerance (relative 1e-3), so it may end a
  little beyond the transformer or voltage limits, where import is cheaper than the optimum
  within them; its efficiency is then against the OPF with the limits it ended at (the row's
  notes say so; its gap stays against the problem's own);
- double auction and PowerMatcher: ``achieved / optimum`` of the total surplus,
  ``h [sum_i V_i(x_i) - cost of the supply]`` with ``V_i(x) = integral_0^x P_i(s) ds`` the value of
  curve ``i``'s power ``x`` read off its true curve (``P_i`` the price at which it asks ``s``; for
  a seller minus its cost; the value :func:`transactive.market.incentives.curve_value` defines)
  and the supply paid its price; the optimum by :func:`double_auction_optimum`, a concave
  quadratic program over the curves' pieces in cvxpy (Clarabel);
- the TCL markets: ``achieved / optimum`` of ``h sum_i (v_i - r) a_i``, the value of the TCLs
  served (their bid prices times their energy) less the energy's cost at the reserve price ``r``
  (with ``r = 0``, the value of the TCLs served), the optimum by :func:`tcl_market_optimum`, the
  linear program over the same capacity solved by HiGHS.

An outcome may read a little better than the reference by the solver's accuracy (Clarabel's
relative 1e-8): within ``REFERENCE_RTOL`` the efficiency is 1 (the relative gap keeps the raw
difference); beyond it the row keeps the raw ratio and says so in its notes.

Informational cost: messages and numbers exchanged per agent, both ways, registration included
(the iterative algorithms count them in their
:class:`~transactive.market.iterative.framework.Channel`; the single exchange is counted here,
per level of the concentrator tree).

Incentive probe (:func:`transactive.market.incentives.incentive_probe`): one agent misreports
over a small family and is scored with its *true* utility.

- Single exchange: the price-setting bidder (largest award among the bidders with a block at
  the clearing price) misreports its curve (prices times 0.5 ... 1.5, powers times 0.5, 1, 1.5:
  :func:`~transactive.market.incentives.curve_misreports`) under its quasi-linear utility
  ``h (V(x) - price x)``; in the TCL markets the marginal TCL (the lowest-priced one served)
  misreports its block (:func:`~transactive.market.incentives.tcl_misreports`).
- EV mechanisms: the EV with the largest need among those with at least two periods of slack
  (periods it could arrive later and still take its need at full power) claims to arrive later,
  or to leave earlier, by half its slack, or to need 20 % less or 20 % more. Its true utility is
  minus what it pays at the mechanism's final prices for its true need: the energy of its final
  schedule at the final price of each period (its bus's price on the feeder), plus, if it
  received less than its true need, the rest bought in its cheapest true plug-in periods (up to
  its rate) at those same prices, as a price taker (the prices do not answer the top-up, so
  under-reporting's gain is an upper bound); energy beyond its true need is paid for and worth
  nothing.
  The price of valley filling is Gan et al.'s marginal cost of load ``U'(D + X) = D + X`` (kW
  per kW of load), of Ma et al.'s game its price of the total demand.
- Consensus: the unit inside its limits with the largest output at the optimum claims a higher
  cost (its linear cost times 1.1, 1.25, 1.5, or its quadratic cost times 1.5); its true
  utility is its profit at the final incremental cost, ``lambda P - C(P)`` (currency/h), ``C``
  its true cost.

Imperfect communication: every iterative mechanism is run again with
``CommsFaults(loss_probability=p, seed=seed)`` for each ``p`` of ``losses``; the table gives the
rounds to the algorithm's tolerance (None: not within its ``max_rounds``) and the final gap.

:func:`case_from_scenario` builds a case from a simulator scenario (its seed, homes, EV and HVAC
shares, feeder, weather, wholesale prices and feeder limit); its docstring lists every rule.

Pure computation: arrays and populations in, frozen dataclasses out; randomness only through
explicit seeds. (The scenario builder reads the package data the devices, the weather and the
feeders ship with, as the simulator does.)
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.errors import Problem, Problems, ValidationError, is_count, is_real
from transactive.market.clearing import ClearingResult, Supply, allocate, clear, fill_of_allocation
from transactive.market.iterative.consensus import (
    CommunicationGraph,
    DispatchProblem,
    centralized_dispatch,
    dispatch_cost_per_h,
    incremental_cost_consensus,
)
from transactive.market.iterative.day_ahead import DayAheadProblem, centralized_day_ahead
from transactive.market.iterative.ev_fleet import EvFleet
from transactive.market.iterative.framework import (
    CommsFaults,
    IterativeResult,
    StoppingRule,
    relative_gap,
)
from transactive.market.truthful_tcl import TclBids, TruthfulClearing

if TYPE_CHECKING:  # the feeder's problem pulls in the power flows: imported where it is used
    from transactive.coordination.ev_congestion import NetworkEvProblem
    from transactive.market.incentives import IncentiveProbe

__all__ = [
    "REFERENCE_RTOL",
    "AuctionCase",
    "AuctionOptimum",
    "ComparisonCase",
    "LossFigure",
    "MechanismComparison",
    "MechanismRow",
    "ProbeSummary",
    "ScenarioLike",
    "TclMarketCase",
    "TclOptimum",
    "auction_welfare",
    "case_from_scenario",
    "compare_mechanisms",
    "double_auction_optimum",
    "evaluate_auction",
    "evaluate_tcl_market",
    "tcl_market_optimum",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

#: An outcome better than its centralized reference by less than this (relative) is equal to it
#: within the reference solver's accuracy: its efficiency is 1.
REFERENCE_RTOL = 1e-6
#: Kinds of mechanism.
SINGLE = "single exchange"
ITERATIVE = "iterative"
#: The misreport family of the consensus probe: (label, linear factor, quadratic factor).
_GENERATOR_MISREPORTS: tuple[tuple[str, float, float], ...] = (
    ("claims linear cost x1.1", 1.1, 1.0),
    ("claims linear cost x1.25", 1.25, 1.0),
    ("claims linear cost x1.5", 1.5, 1.0),
    ("claims quadratic cost x1.5", 1.0, 1.5),
)
#: Periods of slack an EV needs to be the probed one (so "half its slack" is a real change).
_MIN_SLACK_PERIODS = 2
#: Energy tolerance (kWh, relative to the need) of the probes' need checks.
_ENERGY_RTOL = 1e-9


# ---------------------------------------------------------------------------------- the case


@dataclass(frozen=True, eq=False)
class AuctionCase:
    """One market interval of bid curves, for the double auction and the concentrator tree.

    Attributes
    ----------
    bids:
        Every bidder's true curve (average kW over the interval), carrying ids.
    homes:
        ``(N,)`` the home of each bid (a bidder's curve goes to its home's agent first in the
        concentrator tree).
    homes_per_concentrator:
        Homes under each concentrator (consecutive homes, in order of their index).
    price_cap, price_floor:
        The market's price limits (currency/kWh).
    duration_h:
        The interval's length (h): surplus is ``h`` times its rate.
    supply:
        The feeder's connection to the wholesale market, or None.

    """

    bids: BidCurves
    homes: IntArray
    homes_per_concentrator: int
    price_cap: float
    price_floor: float
    duration_h: float
    supply: Supply | None = None

    def __post_init__(self) -> None:
        problems = Problems(subject="auction case")
        given: object = self.bids
        if not isinstance(given, BidCurves):
            problems.add("bids", f"must be BidCurves, got {type(given).__name__}")
            problems.raise_if_any()
        if self.bids.ids is None:
            problems.add("bids", "must carry ids (BidCurves.with_ids): rows report by bidder")
        n = len(self.bids)
        homes = np.asarray(self.homes)
        if homes.shape != (n,) or (n and not np.issubdtype(homes.dtype, np.integer)):
            problems.add("homes", f"must be {n} integer home indices, got {homes.shape}")
        elif n:
            problems.check(homes < 0, "homes", "must be >= 0")
        if not is_count(self.homes_per_concentrator) or int(self.homes_per_concentrator) < 1:
            problems.add(
                "homes_per_concentrator",
                f"must be an integer >= 1, got {self.homes_per_concentrator!r}",
            )
        for name in ("price_cap", "price_floor", "duration_h"):
            if not is_real(getattr(self, name)):
                problems.add(name, f"must be a finite number, got {getattr(self, name)!r}")
        problems.raise_if_any()
        if float(self.price_cap) <= float(self.price_floor):
            problems.add("price_cap", f"must exceed price_floor ({self.price_cap})")
        if float(self.duration_h) <= 0:
            problems.add("duration_h", f"must be > 0, got {self.duration_h}")
        supply: object = self.supply
        if supply is not None and not isinstance(supply, Supply):
            problems.add("supply", f"must be a Supply or None, got {type(supply).__name__}")
        problems.raise_if_any()
        out = np.asarray(homes, dtype=np.int64).copy()
        out.setflags(write=False)
        object.__setattr__(self, "homes", out)


@dataclass(frozen=True, eq=False)
class TclMarketCase:
    """One period of Li et al.'s TCL market: block bids under a feeder limit.

    Attributes
    ----------
    bids:
        The TCLs' truthful bids (:class:`~transactive.market.truthful_tcl.TclBids`).
    capacity_kw, base_load_kw:
        The feeder's limit on the period's average power and the unresponsive load served
        first (``0 <= base_load_kw < capacity_kw``).
    reserve_price_per_kwh:
        The coordinator's cost of energy, ``>= 0``.
    duration_h:
        The period (h).

    """

    bids: TclBids
    capacity_kw: float
    base_load_kw: float
    reserve_price_per_kwh: float
    duration_h: float

    def __post_init__(self) -> None:
        problems = Problems(subject="TCL market case")
        given: object = self.bids
        if not isinstance(given, TclBids):
            problems.add("bids", f"must be TclBids, got {type(given).__name__}")
        for name in ("capacity_kw", "base_load_kw", "reserve_price_per_kwh", "duration_h"):
            if not is_real(getattr(self, name)):
                problems.add(name, f"must be a finite number, got {getattr(self, name)!r}")
        problems.raise_if_any()
        if not 0 <= float(self.base_load_kw) < float(self.capacity_kw):
            problems.add(
                "base_load_kw",
                f"must lie in [0, capacity_kw) = [0, {self.capacity_kw}), got {self.base_load_kw}",
            )
        if float(self.reserve_price_per_kwh) < 0:
            problems.add("reserve_price_per_kwh", "must be >= 0")
        if float(self.duration_h) <= 0:
            problems.add("duration_h", "must be > 0")
        problems.raise_if_any()


@dataclass(frozen=True, eq=False)
class ComparisonCase:
    """Every mechanism's instance of one comparison (the problems the rows are computed on).

    Attributes
    ----------
    name:
        What the case is (e.g. the scenario's name).
    fleet:
        The EVs over the horizon (valley filling's agents).
    base_load_kw:
        ``(T,)`` the inflexible load the EVs charge on top of (kW).
    price_slope_per_kwh_per_kw:
        Ma et al.'s price of the total demand: its slope (currency/kWh per kW), > 0.
    day_ahead:
        The day-ahead market (generators, the same EVs as flexible demand, the inflexible load).
    dispatch:
        One period's economic dispatch over a communication graph (the consensus).
    network:
        The feeder, the EVs by fleet operator and the transformer limit, or None (the
        network-constrained row is left out, with a note).
    auction:
        One interval's bid curves.
    tcl:
        One period's TCL market, or None (its rows are left out, with a note).
    notes:
        How the case was built, in words.

    """

    name: str
    fleet: EvFleet
    base_load_kw: FloatArray
    price_slope_per_kwh_per_kw: float
    day_ahead: DayAheadProblem
    dispatch: DispatchProblem
    network: NetworkEvProblem | None
    auction: AuctionCase
    tcl: TclMarketCase | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = Problems(subject="comparison case")
        checks: tuple[tuple[str, object, type], ...] = (
            ("fleet", self.fleet, EvFleet),
            ("day_ahead", self.day_ahead, DayAheadProblem),
            ("dispatch", self.dispatch, DispatchProblem),
            ("auction", self.auction, AuctionCase),
        )
        for name, value, kind in checks:
            if not isinstance(value, kind):
                problems.add(name, f"must be a {kind.__name__}, got {type(value).__name__}")
        tcl: object = self.tcl
        if tcl is not None and not isinstance(tcl, TclMarketCase):
            problems.add("tcl", f"must be a TclMarketCase or None, got {type(tcl).__name__}")
        network: object = self.network
        if network is not None:
            from transactive.coordination.ev_congestion import (  # noqa: PLC0415
                NetworkEvProblem as _Network,
            )

            if not isinstance(network, _Network):
                problems.add(
                    "network", f"must be a NetworkEvProblem or None, got {type(network).__name__}"
                )
        if not is_real(self.price_slope_per_kwh_per_kw) or self.price_slope_per_kwh_per_kw <= 0:
            problems.add("price_slope_per_kwh_per_kw", "must be a finite number > 0")
        problems.raise_if_any()
        base = np.asarray(self.base_load_kw, dtype=np.float64)
        if base.shape != (self.fleet.n_periods,):
            problems.add(
                "base_load_kw",
                f"must have one value per period of the fleet ({self.fleet.n_periods}), "
                f"got shape {base.shape}",
            )
        else:
            problems.check(~np.isfinite(base), "base_load_kw", "not finite")
        problems.raise_if_any()
        base = base.copy()
        base.setflags(write=False)
        object.__setattr__(self, "base_load_kw", base)
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))


# ---------------------------------------------------------------------------------- the rows


@dataclass(frozen=True)
class ProbeSummary:
    """The incentive probe of one mechanism (Hu et al. 2019, §3.1.3).

    Attributes
    ----------
    agent:
        The probed agent's id; None when the mechanism has no agent report to misreport.
    best_misreport:
        The label of the misreport with the highest true utility (None with ``agent``).
    gain, relative_gain:
        Its true utility less the truthful one (``<= 0``: no misreport of the family beats the
        truth), and that over ``|truthful utility|`` (``inf`` for a gain over a zero utility).
    truthful_utility:
        The agent's true utility when it reports truthfully.
    family_size:
        Misreports tried.
    utility:
        What the utility is, with its unit (or why there is no probe).

    """

    agent: str | None
    best_misreport: str | None
    gain: float | None
    relative_gain: float | None
    truthful_utility: float | None
    family_size: int
    utility: str

    @classmethod
    def of(cls, probe: IncentiveProbe[Any], agent: str, utility: str) -> ProbeSummary:
        """The summary of an incentive probe of ``agent`` (its utility described by ``utility``)."""
        return cls(
            agent=agent,
            best_misreport=probe.best_label,
            gain=probe.gain,
            relative_gain=probe.gain_relative,
            truthful_utility=probe.truthful_utility,
            family_size=len(probe.labels),
            utility=utility,
        )


@dataclass(frozen=True)
class LossFigure:
    """How one iterative mechanism converged with a message loss probability.

    Attributes
    ----------
    loss_probability:
        The probability of losing each message (both ways).
    rounds_to_tolerance:
        The first round whose residuals met the mechanism's tolerance; None: not within
        ``max_rounds``.
    rounds_run, max_rounds:
        Rounds the run took and its limit.
    converged:
        Whether the run ended by tolerance.
    final_gap:
        The relative gap of its last objective to the centralized optimum.
    messages_per_agent:
        Messages sent per agent in the run (lost ones included: they were sent).

    """

    loss_probability: float
    rounds_to_tolerance: int | None
    rounds_run: int
    max_rounds: int
    converged: bool
    final_gap: float
    messages_per_agent: float


@dataclass(frozen=True)
class MechanismRow:
    """One mechanism's figures on a case.

    Attributes
    ----------
    name, kind:
        The mechanism and ``"single exchange"`` or ``"iterative"``.
    measure, unit:
        ``"welfare"`` (higher is better) or ``"cost"`` (lower is better), and its unit.
    achieved, optimum:
        The mechanism's outcome and the centralized optimum of the same problem.
    efficiency:
        ``achieved / optimum`` for welfare, ``optimum / achieved`` for costs (module docstring),
        1 within :data:`REFERENCE_RTOL` of the optimum.
    efficiency_rule:
        Which ratio, in words.
    relative_gap:
        How far the outcome is from the optimum, relative to it (``>= 0``: worse).
    rounds, converged, tolerance:
        Rounds run (1 for a single exchange), whether the stopping rule's tolerance was met and
        that tolerance (None for a single exchange).
    messages_per_agent, numbers_per_agent:
        Messages and numbers exchanged per agent, both ways.
    agents:
        What an agent is here, and how many there are.
    probe:
        The incentive probe.
    losses:
        The imperfect-communication figures (empty for a single exchange).
    message_levels:
        Per level of a concentrator tree: ``(level, messages, numbers)`` both ways.
    notes:
        Anything the figures need to be read right.

    """

    name: str
    kind: str
    measure: str
    unit: str
    achieved: float
    optimum: float
    efficiency: float
    efficiency_rule: str
    relative_gap: float
    rounds: int
    converged: bool
    tolerance: float | None
    messages_per_agent: float
    numbers_per_agent: float
    agents: str
    probe: ProbeSummary
    losses: tuple[LossFigure, ...] = ()
    message_levels: tuple[tuple[str, int, int], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MechanismComparison:
    """Every mechanism's row on one case, and the loss probabilities of the loss table."""

    case: str
    seed: int
    losses: tuple[float, ...]
    rows: tuple[MechanismRow, ...]
    notes: tuple[str, ...] = field(default=())

    def row(self, name: str) -> MechanismRow:
        """The row of the mechanism called ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no mechanism {name!r}; rows: {[r.name for r in self.rows]}")


def _efficiency(achieved: float, optimum: float, measure: str) -> tuple[float, float, str | None]:
    """``(efficiency, relative gap, note)`` of an outcome against its optimum (module doc)."""
    if measure == "welfare":
        gap = (optimum - achieved) / max(abs(optimum), 1e-12)
        if optimum <= 0.0:
            ratio = 1.0 if achieved >= optimum else 0.0
        else:
            ratio = max(achieved, 0.0) / optimum
    else:
        gap = relative_gap(achieved, optimum)
        ratio = optimum / achieved if achieved > 0 else (1.0 if achieved == optimum else 0.0)
    note = None
    if ratio > 1.0:
        if ratio - 1.0 <= REFERENCE_RTOL:
            ratio = 1.0
        else:
            note = (
                f"the outcome beats the centralized reference by {ratio - 1.0:.2g} (relative): "
                "it is outside the reference's feasible set within the mechanism's tolerance, "
                "or the reference is inexact"
            )
    return float(ratio), float(gap), note


# ---------------------------------------------------------------------------------- auction


@dataclass(frozen=True, eq=False)
class _Pieces:
    """Every curve's inverse ``P_i(s)`` as pieces of power, split at ``s = 0`` (see below)."""

    curve: IntArray  # (M,) the curve of each piece
    start_kw: FloatArray  # (M,) s at the piece's start
    length_kw: FloatArray  # (M,) > 0
    price_start: FloatArray  # (M,) P at its start (the higher end)
    price_end: FloatArray  # (M,) P at its end
    below_zero: npt.NDArray[np.bool_]  # (M,) the piece lies at s <= 0
    lowest_kw: FloatArray  # (N,) the least power each curve may get: min(q at the cap, 0)

    def value(self, filled_kw: FloatArray) -> FloatArray:
        """``integral`` over each piece's first ``filled_kw`` kW (currency/h per piece)."""
        slope = (self.price_start - self.price_end) / self.length_kw
        return np.asarray(
            self.price_start * filled_kw - 0.5 * slope * filled_kw * filled_kw, dtype=np.float64
        )


def _pieces(bids: BidCurves, *, price_floor: float, price_cap: float) -> _Pieces:
    """The inverse curves as pieces: the value of a power is the area under them.

    Curve ``i``'s inverse runs through its breakpoints read from the highest price (powers
    ascending, prices descending), is at the cap below its least power and at the floor above
    its largest (the market's rules: demand at the cap is rationed at the cap, supply at the
    floor is curtailed at the floor), and is cut at ``s = 0`` so a curve's value is measured
    from zero. A curve's power ranges over ``[min(q_last, 0), max(q_first, 0)]``.
    """
    s = bids.power_kw[:, ::-1].astype(np.float64)
    p = bids.price_per_kwh[:, ::-1].astype(np.float64)
    n = s.shape[0]
    low = np.minimum(s[:, 0], 0.0)
    high = np.maximum(s[:, -1], 0.0)
    # Each curve: [low, s_0] at the cap, its pieces, [s_last, high] at the floor.
    seg_a = np.concatenate([low[:, None], s, s[:, -1:]], axis=1)[:, :-1]
    seg_b = np.concatenate([s, high[:, None]], axis=1)
    pa = np.concatenate([np.full((n, 1), price_cap), p[:, :-1], p[:, -1:]], axis=1)
    pb = np.concatenate([np.full((n, 1), price_cap), p[:, 1:], np.full((n, 1), price_floor)], 1)
    # the floor stretch: flat at the floor
    pa[:, -1] = price_floor
    a, b, pa, pb = seg_a.ravel(), seg_b.ravel(), pa.ravel(), pb.ravel()
    curve = np.repeat(np.arange(n, dtype=np.int64), seg_a.shape[1])
    length = b - a

    def price_at(x: FloatArray) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(length > 0, (x - a) / length, 0.0)
        return np.asarray(pa + (pb - pa) * w, dtype=np.float64)

    # The parts of each piece below and above zero.
    left_a, left_b = a, np.minimum(b, 0.0)
    right_a, right_b = np.maximum(a, 0.0), b
    starts = np.concatenate([left_a, right_a])
    ends = np.concatenate([left_b, right_b])
    p_start = np.concatenate([price_at(left_a), price_at(right_a)])
    p_end = np.concatenate([price_at(left_b), price_at(right_b)])
    below = np.concatenate([np.ones(a.size, dtype=bool), np.zeros(a.size, dtype=bool)])
    curves = np.concatenate([curve, curve])
    keep = ends - starts > 0
    return _Pieces(
        curve=curves[keep],
        start_kw=starts[keep],
        length_kw=(ends - starts)[keep],
        price_start=p_start[keep],
        price_end=p_end[keep],
        below_zero=below[keep],
        lowest_kw=low,
    )


def _supply_cost_per_h(supply: Supply | None, supply_kw: float) -> float:
    """What the supply is paid per hour for ``supply_kw`` (negative: the feeder takes power)."""
    if supply is None:
        return 0.0
    price = float(supply.price_per_kwh)
    export_price = (
        price if supply.export_price_per_kwh is None else float(supply.export_price_per_kwh)
    )
    return price * max(supply_kw, 0.0) - export_price * max(-supply_kw, 0.0)


def auction_welfare(
    bids: BidCurves,
    allocation_kw: npt.ArrayLike,
    supply_kw: float,
    *,
    supply: Supply | None,
    price_floor: float,
    price_cap: float,
    duration_h: float,
) -> float:
    """Total surplus of an allocation: ``h [sum_i V_i(x_i) - supply cost]`` (currency).

    ``V_i(x) = integral_0^x P_i(s) ds`` on curve ``i``'s true inverse (module docstring), for all
    curves at once; the supply is paid its price for what it imports (and pays its export price
    for what it takes back).
    """
    pieces = _pieces(bids, price_floor=price_floor, price_cap=price_cap)
    x = np.asarray(allocation_kw, dtype=np.float64)
    filled = np.clip(x[pieces.curve] - pieces.start_kw, 0.0, pieces.length_kw)
    value = pieces.value(filled) - np.where(pieces.below_zero, pieces.value(pieces.length_kw), 0.0)
    total = float(value.sum()) - _supply_cost_per_h(supply, float(supply_kw))
    return float(duration_h) * total


@dataclass(frozen=True, eq=False)
class AuctionOptimum:
    """The welfare-maximising allocation of one interval's curves (:func:`double_auction_optimum`).

    ``welfare`` in currency; ``allocation_kw`` ``(N,)``; ``supply_kw`` the supply's import
    (negative: export); ``solver`` its name and status.
    """

    welfare: float
    allocation_kw: FloatArray
    supply_kw: float
    solver: str


def double_auction_optimum(
    bids: BidCurves,
    *,
    price_floor: float,
    price_cap: float,
    duration_h: float,
    supply: Supply | None = None,
) -> AuctionOptimum:
    """The allocation of most total surplus, by a concave quadratic program (cvxpy, Clarabel).

    ``maximise h [sum_j (P_a,j y_j - (P_a,j - P_b,j) y_j^2 / (2 L_j)) - c s_in + c_out s_out]``
    over the fill ``0 <= y_j <= L_j`` of every piece ``j`` of every inverse curve (length ``L_j``,
    price from ``P_a,j`` down to ``P_b,j``: the integral of a linear piece) and the supply's
    import ``0 <= s_in <= capacity`` and export ``0 <= s_out <= export capacity``, subject to the
    balance ``sum_i x_i = s_in - s_out`` with ``x_i = min(q_last,i, 0) + sum_{j of i} y_j``. The
    inverse curves are non-increasing, so the objective is concave and the pieces of a curve
    fill in order at the optimum; no clearing rule enters. The welfare is measured from zero
    power (the pieces below zero enter as a constant).
    """
    import cvxpy  # noqa: PLC0415 (heavy; only the reference needs it)
    import scipy.sparse as sp  # noqa: PLC0415

    cp: Any = cvxpy
    n = len(bids)
    pieces = _pieces(bids, price_floor=price_floor, price_cap=price_cap)
    m = pieces.curve.size
    constant = float(pieces.value(pieces.length_kw)[pieces.below_zero].sum())
    lowest = float(pieces.lowest_kw.sum())
    terms: list[Any] = []
    constraints: list[Any] = []
    traded: Any = 0.0
    y = None
    if m:
        y = cp.Variable(m)
        half_slope = 0.5 * (pieces.price_start - pieces.price_end) / pieces.length_kw
        terms.append(pieces.price_start @ y - cp.sum(cp.multiply(half_slope, cp.square(y))))
        constraints += [y >= 0, y <= pieces.length_kw]
        traded = cp.sum(y)
    supply_in: Any = None
    supply_out: Any = None
    net_supply: Any = 0.0
    if supply is not None:
        price = float(supply.price_per_kwh)
        export_price = (
            price if supply.export_price_per_kwh is None else float(supply.export_price_per_kwh)
        )
        supply_in, supply_out = cp.Variable(nonneg=True), cp.Variable(nonneg=True)
        if math.isfinite(float(supply.capacity_kw)):
            constraints.append(supply_in <= float(supply.capacity_kw))
        if math.isfinite(float(supply.export_capacity_kw)):
            constraints.append(supply_out <= float(supply.export_capacity_kw))
        terms.append(-price * supply_in + export_price * supply_out)
        net_supply = supply_in - supply_out
    constraints.append(traded + lowest == net_supply)
    objective = cp.Maximize(cp.sum(cp.hstack(terms)) if terms else 0.0)
    problem = cp.Problem(objective, constraints)
    problem.solve(solver=cp.CLARABEL)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise RuntimeError(
            f"Clarabel did not solve the auction's welfare problem: {problem.status}"
        )
    allocation = pieces.lowest_kw.copy()
    if y is not None:
        fills = np.clip(np.asarray(y.value, dtype=np.float64), 0.0, pieces.length_kw)
        member = sp.csr_matrix((np.ones(m), (pieces.curve, np.arange(m))), shape=(n, m))
        allocation = allocation + np.asarray(member @ fills, dtype=np.float64)
    supply_kw = float(net_supply.value) if supply is not None else 0.0
    welfare = float(duration_h) * (float(problem.value) - constant)
    allocation.setflags(write=False)
    return AuctionOptimum(
        welfare=welfare,
        allocation_kw=allocation,
        supply_kw=supply_kw,
        solver=f"CLARABEL ({problem.status})",
    )


def _points(curves: BidCurves) -> IntArray:
    """``(N,)`` breakpoints each curve really has (its padding, repeated last points, dropped)."""
    if len(curves) == 0:
        return np.zeros(0, dtype=np.int64)
    p, q = curves.price_per_kwh, curves.power_kw
    changes = (np.diff(p, axis=1) != 0) | (np.diff(q, axis=1) != 0)
    return np.asarray(1 + changes.sum(axis=1), dtype=np.int64)


def _tree_clear(
    bids: BidCurves, auction: AuctionCase
) -> tuple[ClearingResult, tuple[tuple[str, int, int], ...]]:
    """The PowerMatcher tree: devices -> homes -> concentrators -> auctioneer, and back down.

    Returns the clearing with every device's allocation (``allocate`` of the top's price and
    fills on the devices' own curves) and, per level, the messages and numbers both ways (a
    curve of ``K`` breakpoints is ``2K`` numbers; an aggregate by side is two curves; the price
    and the buyers' and sellers' fills, 3 numbers, go down every link).
    """
    from transactive.aggregation import aggregate  # noqa: PLC0415

    homes, home_of = np.unique(auction.homes, return_inverse=True)
    n_homes = int(homes.size)
    home_curves = aggregate(bids, home_of, n_groups=n_homes, by_side=True)
    concentrator = np.arange(n_homes) // int(auction.homes_per_concentrator)
    n_conc = int(concentrator.max()) + 1 if n_homes else 0
    conc_curves = aggregate(
        home_curves, np.concatenate([concentrator, concentrator]), n_groups=n_conc, by_side=True
    )
    top = clear(
        conc_curves,
        price_cap=auction.price_cap,
        price_floor=auction.price_floor,
        supply=auction.supply,
    )
    allocation = allocate(bids, top)
    allocation.setflags(write=False)
    fill = fill_of_allocation(
        bids,
        top.clearing_price,
        allocation,
        price_cap=auction.price_cap,
        price_floor=auction.price_floor,
    )
    fill.setflags(write=False)
    result = dataclasses.replace(top, allocation_kw=allocation, marginal_fill=fill, ids=bids.ids)
    n = len(bids)
    down = 3
    levels = (
        ("devices <-> homes", 2 * n, int(2 * _points(bids).sum()) + down * n),
        (
            "homes <-> concentrators",
            2 * n_homes,
            int(2 * _points(home_curves).sum()) + down * n_homes,
        ),
        (
            "concentrators <-> auctioneer",
            2 * n_conc,
            int(2 * _points(conc_curves).sum()) + down * n_conc,
        ),
    )
    return result, levels


def _price_setter(bids: BidCurves, result: ClearingResult) -> int:
    """The bidder most able to move the price: the largest award among the marginal ones.

    Marginal: a block at the clearing price, or a curve whose power changes within a hair of it
    (a sloped piece through it). Without one, the largest award among the responsive curves
    (those not a single block at the cap); without one of those, the largest award.
    """
    price = float(result.clearing_price)
    lo, hi = bids.bounds_at(price)
    scale = max(float(np.abs(bids.power_kw).max(initial=0.0)), 1.0)
    hair = 1e-6 * max(float(result.price_cap) - float(result.price_floor), 1e-12)
    below, _ = bids.bounds_at(max(price - hair, float(result.price_floor)))
    _, above = bids.bounds_at(min(price + hair, float(result.price_cap)))
    marginal = ((hi - lo) > 1e-9 * scale) | (np.abs(below - above) > 1e-9 * scale)
    responsive = bids.price_per_kwh[:, 0] < float(result.price_cap)
    award = np.abs(np.asarray(result.allocation_kw))
    for pool in (marginal & (award > 0), responsive & (award > 0)):
        if pool.any():
            return int(np.argmax(np.where(pool, award, -1.0)))
    return int(np.argmax(award)) if award.size else 0


def evaluate_auction(auction: AuctionCase) -> tuple[MechanismRow, MechanismRow]:
    """The double auction and the PowerMatcher tree on one interval's bids (module docstring)."""
    from transactive.market.incentives import (  # noqa: PLC0415
        curve_misreports,
        double_auction,
        double_auction_utility,
        incentive_probe,
    )

    bids = auction.bids
    h, floor, cap = float(auction.duration_h), float(auction.price_floor), float(auction.price_cap)
    optimum = double_auction_optimum(
        bids, price_floor=floor, price_cap=cap, duration_h=h, supply=auction.supply
    )
    flat = clear(bids, price_cap=cap, price_floor=floor, supply=auction.supply)
    tree, levels = _tree_clear(bids, auction)
    n = len(bids)
    agent = _price_setter(bids, flat)
    assert bids.ids is not None  # AuctionCase requires ids
    utility = double_auction_utility(duration_h=h, price_floor=floor, price_cap=cap)
    family = curve_misreports(bids, agent, price_floor=floor, price_cap=cap)
    what = "h (V(x) - price x) on its true curve (currency)"

    def tree_mechanism(b: BidCurves) -> ClearingResult:
        return _tree_clear(b, auction)[0]

    rows: list[MechanismRow] = []
    points = _points(bids)
    for name, result, mechanism, per_agent, msgs, extra_levels in (
        (
            "double auction",
            flat,
            double_auction(price_cap=cap, price_floor=floor, supply=auction.supply),
            float(2 * points.sum() + 2 * n) / max(n, 1),
            2.0,
            (),
        ),
        (
            "PowerMatcher tree",
            tree,
            tree_mechanism,
            sum(level[2] for level in levels) / max(n, 1),
            sum(level[1] for level in levels) / max(n, 1),
            levels,
        ),
    ):
        welfare = auction_welfare(
            bids,
            result.allocation_kw,
            result.supply_kw,
            supply=auction.supply,
            price_floor=floor,
            price_cap=cap,
            duration_h=h,
        )
        eff, gap, note = _efficiency(welfare, optimum.welfare, "welfare")
        probe = incentive_probe(mechanism, bids, agent, family, utility)
        notes = [f"clearing price {result.clearing_price:.4g} per kWh ({result.clearing_type})"]
        if name == "PowerMatcher tree":
            diff = float(np.max(np.abs(result.allocation_kw - flat.allocation_kw), initial=0.0))
            same = result.clearing_price == flat.clearing_price and diff <= 1e-9 * max(
                float(np.abs(flat.allocation_kw).max(initial=0.0)), 1.0
            )
            notes.append(
                "same price and allocations as the flat auction"
                if same
                else f"differs from the flat auction (price {flat.clearing_price:.6g}, "
                f"largest allocation difference {diff:.3g} kW)"
            )
        if note:
            notes.append(note)
        rows.append(
            MechanismRow(
                name=name,
                kind=SINGLE,
                measure="welfare",
                unit="currency",
                achieved=welfare,
                optimum=optimum.welfare,
                efficiency=eff,
                efficiency_rule="achieved / optimum (total surplus)",
                relative_gap=gap,
                rounds=1,
                converged=True,
                tolerance=None,
                messages_per_agent=msgs,
                numbers_per_agent=per_agent,
                agents=f"bidders ({n})",
                probe=ProbeSummary.of(probe, str(bids.ids[agent]), what),
                message_levels=extra_levels,
                notes=tuple(notes),
            )
        )
    return rows[0], rows[1]


# ---------------------------------------------------------------------------------- TCL market


@dataclass(frozen=True, eq=False)
class TclOptimum:
    """The TCL market's welfare optimum (:func:`tcl_market_optimum`): currency, ``(N,)`` kW."""

    welfare: float
    power_kw: FloatArray
    solver: str


def tcl_market_optimum(
    bids: TclBids,
    *,
    capacity_kw: float,
    base_load_kw: float,
    reserve_price_per_kwh: float,
    duration_h: float,
) -> TclOptimum:
    """``max h sum_i (v_i - r) a_i`` s.t. ``0 <= a_i <= P_i``, ``sum_i a_i <= K`` (HiGHS LP).

    ``K = capacity_kw - base_load_kw``; the same allocation problem Li et al.'s coordinator
    solves, here as a linear program solved by scipy's HiGHS, independent of the mechanism's
    sort.
    """
    from scipy.optimize import linprog  # noqa: PLC0415

    value = np.asarray(bids.price_per_kwh, dtype=np.float64) - float(reserve_price_per_kwh)
    power = np.asarray(bids.power_kw, dtype=np.float64)
    n = value.size
    if n == 0:
        return TclOptimum(welfare=0.0, power_kw=np.zeros(0), solver="none (no bids)")
    headroom = float(capacity_kw) - float(base_load_kw)
    upper = np.where(value > 0, power, 0.0)  # a bid at or below the reserve is never worth serving
    res = linprog(
        -value,
        A_ub=np.ones((1, n)),
        b_ub=[headroom],
        bounds=np.column_stack([np.zeros(n), upper]),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"HiGHS did not solve the TCL market's LP: {res.message}")
    served = np.clip(np.asarray(res.x, dtype=np.float64), 0.0, upper)
    served.setflags(write=False)
    return TclOptimum(
        welfare=float(duration_h) * float(value @ served), power_kw=served, solver="HiGHS"
    )


def evaluate_tcl_market(tcl: TclMarketCase) -> tuple[MechanismRow, MechanismRow]:
    """Li et al.'s TCL market with VCG payments and with one uniform price (module docstring)."""
    from transactive.market.incentives import (  # noqa: PLC0415
        incentive_probe,
        tcl_misreports,
        truthful_tcl_mechanism,
        truthful_tcl_utility,
    )

    optimum = tcl_market_optimum(
        tcl.bids,
        capacity_kw=tcl.capacity_kw,
        base_load_kw=tcl.base_load_kw,
        reserve_price_per_kwh=tcl.reserve_price_per_kwh,
        duration_h=tcl.duration_h,
    )
    value = tcl.bids.price_per_kwh - float(tcl.reserve_price_per_kwh)
    n = len(tcl.bids)
    rows: list[MechanismRow] = []
    for name, pricing in (
        ("truthful TCL market (VCG)", "vcg"),
        ("TCL market (uniform)", "uniform"),
    ):
        mechanism: Callable[[TclBids], TruthfulClearing] = truthful_tcl_mechanism(
            capacity_kw=tcl.capacity_kw,
            duration_h=tcl.duration_h,
            base_load_kw=tcl.base_load_kw,
            reserve_price_per_kwh=tcl.reserve_price_per_kwh,
            pricing="vcg" if pricing == "vcg" else "uniform",
        )
        outcome = mechanism(tcl.bids)
        welfare = float(tcl.duration_h) * float(value @ outcome.power_kw)
        eff, gap, note = _efficiency(welfare, optimum.welfare, "welfare")
        served = np.flatnonzero(outcome.power_kw > 0)
        if served.size:  # the lowest-priced TCL served: the marginal one, or the nearest to it
            agent = int(served[np.argmin(tcl.bids.price_per_kwh[served])])
        else:
            agent = int(np.argmax(tcl.bids.price_per_kwh)) if n else -1
        notes = [
            f"clearing price {outcome.clearing_price_per_kwh:.4g} per kWh; the feeder limit "
            + ("binds" if outcome.binding else "does not bind")
        ]
        if note:
            notes.append(note)
        if agent >= 0:
            probe = incentive_probe(
                mechanism, tcl.bids, agent, tcl_misreports(tcl.bids, agent), truthful_tcl_utility
            )
            summary = ProbeSummary.of(
                probe,
                str(tcl.bids.ids[agent]),
                "true price x energy received (up to its need) - payment (currency)",
            )
        else:
            summary = ProbeSummary(None, None, None, None, None, 0, "n/a: no TCL bids")
        rows.append(
            MechanismRow(
                name=name,
                kind=SINGLE,
                measure="welfare",
                unit="currency",
                achieved=welfare,
                optimum=optimum.welfare,
                efficiency=eff,
                efficiency_rule="achieved / optimum (value of the TCLs served less energy cost)",
                relative_gap=gap,
                rounds=1,
                converged=True,
                tolerance=None,
                messages_per_agent=2.0,  # the bid up; the run fraction and payment down
                numbers_per_agent=4.0,  # (price, power) up; (run fraction, payment) down
                agents=f"TCLs ({n})",
                probe=summary,
                notes=tuple(notes),
            )
        )
    return rows[0], rows[1]


# ---------------------------------------------------------------------------------- EV probes


@dataclass(frozen=True, eq=False)
class _FleetReport:
    """The EVs' reports to a mechanism (sized, for :func:`incentive_probe`)."""

    fleet: EvFleet

    def __len__(self) -> int:
        return self.fleet.n_evs


@dataclass(frozen=True, eq=False)
class _DispatchReport:
    """The units' cost reports to the consensus (sized, for :func:`incentive_probe`)."""

    problem: DispatchProblem

    def __len__(self) -> int:
        return self.problem.n_units


def _slack_periods(fleet: EvFleet) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Per EV: first and last plugged period, the latest start and earliest end still feasible.

    The latest start is the last period from which the EV's rates to the end still give its
    need; the earliest end the first period up to which they do (all periods if it has no need).
    """
    rate = fleet.rate_max_kw
    h = fleet.period_h
    t = fleet.n_periods
    plugged = rate > 0
    first = np.argmax(plugged, axis=0)
    last = t - 1 - np.argmax(plugged[::-1], axis=0)
    need = fleet.energy_kwh * (1.0 - _ENERGY_RTOL)
    after = np.cumsum(rate[::-1], axis=0)[::-1] * h  # energy from period t to the end
    before = np.cumsum(rate, axis=0) * h  # energy up to period t
    ok_start = after >= need[None, :]
    latest_start = t - 1 - np.argmax(ok_start[::-1], axis=0)
    ok_end = before >= need[None, :]
    earliest_end = np.argmax(ok_end, axis=0)
    return first, last, np.minimum(latest_start, last), np.maximum(earliest_end, first)


def _probed_ev(fleet: EvFleet) -> int:
    """The EV with the largest need among those with slack; else the one with the largest need."""
    first, _last, latest_start, _end = _slack_periods(fleet)
    slack = latest_start - first
    eligible = (slack >= _MIN_SLACK_PERIODS) & (fleet.energy_kwh > 0)
    if eligible.any():
        return int(np.argmax(np.where(eligible, fleet.energy_kwh, -1.0)))
    return int(np.argmax(fleet.energy_kwh))


def _ev_misreports(fleet: EvFleet, agent: int) -> dict[str, EvFleet]:
    """EV ``agent``'s misreports (module docstring); each a fleet the EV's others are true in."""
    first, last, latest_start, earliest_end = _slack_periods(fleet)
    k = agent
    h = fleet.period_h
    out: dict[str, EvFleet] = {}

    def variant(rate_k: FloatArray, need_k: float) -> EvFleet:
        rate = fleet.rate_max_kw.copy()
        rate[:, k] = rate_k
        energy = fleet.energy_kwh.copy()
        energy[k] = need_k
        return EvFleet(ids=fleet.ids, rate_max_kw=rate, energy_kwh=energy, period_h=h)

    true_rate = fleet.rate_max_kw[:, k]
    need = float(fleet.energy_kwh[k])
    late = int((latest_start[k] - first[k]) // 2)
    if late >= 1:
        rate_k = true_rate.copy()
        rate_k[: first[k] + late] = 0.0
        out[f"arrives {late * h:g} h later"] = variant(rate_k, need)
    early = int((last[k] - earliest_end[k]) // 2)
    if early >= 1:
        rate_k = true_rate.copy()
        rate_k[last[k] - early + 1 :] = 0.0
        out[f"leaves {early * h:g} h earlier"] = variant(rate_k, need)
    if need > 0:
        out["needs 20 % less"] = variant(true_rate, 0.8 * need)
        reachable = float(true_rate.sum()) * h
        if 1.2 * need <= reachable * (1.0 - _ENERGY_RTOL):
            out["needs 20 % more"] = variant(true_rate, 1.2 * need)
    return out


def _ev_true_cost(
    schedule_kw: FloatArray,
    price: FloatArray,
    rate_kw: FloatArray,
    need_kwh: float,
    period_h: float,
) -> float:
    """What an EV pays at ``price`` for its true need (module docstring): schedule plus top-up."""
    from transactive.market.iterative.dual_decomposition import water_filling  # noqa: PLC0415

    r = np.clip(np.asarray(schedule_kw, dtype=np.float64), 0.0, None)
    cost = float(price @ r) * period_h
    got = float(r.sum()) * period_h
    short = need_kwh - got
    if short > _ENERGY_RTOL * max(need_kwh, 1.0):
        # the schedule lies in the EV's true rate box (misreports only cut it), so the room
        # left in its true window always holds the shortfall (EvFleet refuses it otherwise)
        room = np.clip(rate_kw - r, 0.0, None)
        top = EvFleet(
            ids=np.array(["top-up"]),
            rate_max_kw=room[:, None],
            energy_kwh=np.array([short]),
            period_h=period_h,
        )
        extra = water_filling(top, price)[:, 0]
        cost += float(price @ extra) * period_h
    return cost


def _ev_probe(
    run: Callable[[EvFleet], IterativeResult],
    fleet: EvFleet,
    agent: int,
    column: int,
    price: Callable[[IterativeResult], FloatArray],
    unit: str,
    truthful: IterativeResult,
) -> tuple[ProbeSummary, tuple[str, ...]]:
    """Probe EV ``agent`` of ``fleet`` (its schedule in ``column`` of the results).

    ``truthful`` is the perfect-communication run on the true reports (not run again).
    """
    from transactive.market.incentives import incentive_probe  # noqa: PLC0415

    family = _ev_misreports(fleet, agent)
    notes: list[str] = []
    if not family:
        return ProbeSummary(
            str(fleet.ids[agent]), None, None, None, None, 0, "n/a: the EV has no need to shift"
        ), ()
    unconverged: list[str] = []
    true_report = _FleetReport(fleet)

    def mechanism(report: _FleetReport) -> IterativeResult:
        result = truthful if report is true_report else run(report.fleet)
        if not result.converged:
            unconverged.append(str(result.algorithm))
        return result

    def utility(result: IterativeResult, k: int, true: _FleetReport) -> float:
        return -_ev_true_cost(
            result.schedules_kw[:, column],
            price(result),
            true.fleet.rate_max_kw[:, k],
            float(true.fleet.energy_kwh[k]),
            true.fleet.period_h,
        )

    probe = incentive_probe(
        mechanism,
        true_report,
        agent,
        {label: _FleetReport(f) for label, f in family.items()},
        utility,
    )
    if unconverged:
        notes.append(
            f"{len(unconverged)} of the probe's runs did not reach the tolerance (scored on "
            "their last round)"
        )
    return ProbeSummary.of(
        probe,
        str(fleet.ids[agent]),
        f"minus its cost for its true need at the final prices ({unit})",
    ), tuple(notes)


# ---------------------------------------------------------------------------------- iterative


@dataclass(frozen=True, eq=False)
class _Iterative:
    """What the generic iterative row needs of one mechanism."""

    name: str
    agents: str
    unit: str
    run: Callable[[CommsFaults], IterativeResult]
    achieved: Callable[[IterativeResult], float]
    optimum: float
    tolerance: float
    max_rounds: int
    probe: Callable[[IterativeResult], tuple[ProbeSummary, tuple[str, ...]]]
    per_agent: Callable[[IterativeResult], tuple[float, float]]
    notes: Callable[[IterativeResult], tuple[str, ...]] = lambda _result: ()
    reference_notes: tuple[str, ...] = ()
    #: The optimum over the limits a run ended at, when it ended beyond the problem's (within its
    #: tolerance), with a note; None when it kept them.
    relaxed_optimum: Callable[[IterativeResult], tuple[float, str] | None] = lambda _result: None


def _iterative_row(spec: _Iterative, losses: Sequence[float], seed: int) -> MechanismRow:
    result = spec.run(CommsFaults(seed=seed))
    achieved = spec.achieved(result)
    _eff, gap, note = _efficiency(achieved, spec.optimum, "cost")
    relaxed = spec.relaxed_optimum(result)
    if relaxed is None:
        eff = _eff
    else:
        eff, _gap, note = _efficiency(achieved, relaxed[0], "cost")
    figures = []
    for p in losses:
        run = result if p == 0.0 else spec.run(CommsFaults(loss_probability=p, seed=seed))
        figures.append(
            LossFigure(
                loss_probability=float(p),
                rounds_to_tolerance=run.rounds_to(spec.tolerance),
                rounds_run=run.n_rounds,
                max_rounds=spec.max_rounds,
                converged=run.converged,
                final_gap=relative_gap(spec.achieved(run), spec.optimum),
                messages_per_agent=spec.per_agent(run)[0],
            )
        )
    probe, probe_notes = spec.probe(result)
    messages, numbers = spec.per_agent(result)
    notes = [*spec.reference_notes, *spec.notes(result), *probe_notes]
    if relaxed is not None:
        notes.append(relaxed[1])
    if note:
        notes.append(note)
    if not result.converged:
        notes.append(f"did not reach the tolerance within {spec.max_rounds} rounds")
    return MechanismRow(
        name=spec.name,
        kind=ITERATIVE,
        measure="cost",
        unit=spec.unit,
        achieved=achieved,
        optimum=spec.optimum,
        efficiency=eff,
        efficiency_rule="optimum / achieved",
        relative_gap=gap,
        rounds=result.n_rounds,
        converged=result.converged,
        tolerance=spec.tolerance,
        messages_per_agent=messages,
        numbers_per_agent=numbers,
        agents=spec.agents,
        probe=probe,
        losses=tuple(figures),
        notes=tuple(notes),
    )


def _channel_counts(result: IterativeResult) -> tuple[float, float]:
    return float(result.messages_per_agent), float(result.numbers_per_agent)


def _rule_of(rule: StoppingRule | None, default: StoppingRule) -> StoppingRule:
    return default if rule is None else rule


def _valley_specs(case: ComparisonCase, rule: StoppingRule | None) -> list[_Iterative]:
    from transactive.market.iterative.valley_filling import (  # noqa: PLC0415
        centralized_valley_filling,
        gan_valley_filling,
        ma_callaway_hiskens,
        valley_objective_kw2,
    )

    fleet, base = case.fleet, case.base_load_kw
    rule_ = _rule_of(rule, StoppingRule())
    optimum = centralized_valley_filling(fleet, base)
    agent = _probed_ev(fleet)
    slope = float(case.price_slope_per_kwh_per_kw)

    def achieved(result: IterativeResult) -> float:
        return valley_objective_kw2(base, result.schedules_kw)

    def gan(f: EvFleet, faults: CommsFaults) -> IterativeResult:
        return gan_valley_filling(f, base, rule=rule_, faults=faults)

    def mch(f: EvFleet, faults: CommsFaults) -> IterativeResult:
        return ma_callaway_hiskens(f, base, price_slope=slope, rule=rule_, faults=faults)

    def marginal_cost(result: IterativeResult) -> FloatArray:
        return np.asarray(result.extra["total_load_kw"], dtype=np.float64)  # U'(D + X)

    def price(result: IterativeResult) -> FloatArray:
        return np.asarray(result.prices, dtype=np.float64)

    def spec(
        name: str,
        method: Callable[[EvFleet, CommsFaults], IterativeResult],
        price_of: Callable[[IterativeResult], FloatArray],
        unit: str,
        notes: tuple[str, ...] = (),
    ) -> _Iterative:
        def probe(truthful: IterativeResult) -> tuple[ProbeSummary, tuple[str, ...]]:
            return _ev_probe(
                lambda f: method(f, CommsFaults()), fleet, agent, agent, price_of, unit, truthful
            )

        return _Iterative(
            name=name,
            agents=f"EVs ({fleet.n_evs})",
            unit="kW^2",
            run=lambda faults: method(fleet, faults),
            achieved=achieved,
            optimum=optimum.objective,
            tolerance=rule_.tolerance,
            max_rounds=rule_.max_rounds,
            probe=probe,
            per_agent=_channel_counts,
            reference_notes=notes,
        )

    return [
        spec(
            "valley filling (Gan et al.)",
            gan,
            marginal_cost,
            "kW x kWh: Gan et al.'s marginal cost of load U'(D + X) = D + X",
        ),
        spec(
            "charging game (Ma et al.)",
            mch,
            price,
            "currency",
            ("a Nash equilibrium of heterogeneous EVs: near, not at, the valley-filling optimum",),
        ),
    ]


def _day_ahead_specs(case: ComparisonCase, rule: StoppingRule | None) -> list[_Iterative]:
    from transactive.market.iterative.admm import admm_exchange  # noqa: PLC0415
    from transactive.market.iterative.day_ahead import least_cost_dispatch  # noqa: PLC0415
    from transactive.market.iterative.dual_decomposition import (  # noqa: PLC0415
        dual_decomposition,
    )

    problem = case.day_ahead
    rule_ = _rule_of(rule, StoppingRule())
    optimum = centralized_day_ahead(problem)
    g = problem.n_generators
    fleet = problem.fleet
    agent = _probed_ev(fleet)

    def with_fleet(f: EvFleet) -> DayAheadProblem:
        return dataclasses.replace(problem, fleet=f, generator_ids=problem.gen_ids)

    def achieved(result: IterativeResult) -> float:
        return least_cost_dispatch(problem, result.schedules_kw[:, g:]).cost

    def price(result: IterativeResult) -> FloatArray:
        return np.asarray(result.prices, dtype=np.float64)

    def spec(name: str, method: Callable[..., IterativeResult]) -> _Iterative:
        def run(faults: CommsFaults) -> IterativeResult:
            return method(problem, rule=rule_, faults=faults)

        def probe(truthful: IterativeResult) -> tuple[ProbeSummary, tuple[str, ...]]:
            return _ev_probe(
                lambda f: method(with_fleet(f), rule=rule_, faults=CommsFaults()),
                fleet,
                agent,
                g + agent,
                price,
                "currency",
                truthful,
            )

        return _Iterative(
            name=name,
            agents=f"generators and EVs ({g} + {fleet.n_evs})",
            unit="currency",
            run=run,
            achieved=achieved,
            optimum=optimum.objective,
            tolerance=rule_.tolerance,
            max_rounds=rule_.max_rounds,
            probe=probe,
            per_agent=_channel_counts,
        )

    return [
        spec("day-ahead dual decomposition", dual_decomposition),
        spec("day-ahead ADMM", admm_exchange),
    ]


def _completed_output_kw(problem: DispatchProblem, output_kw: FloatArray) -> FloatArray:
    """The outputs with the mismatch taken up by the leader, then by the others in index order."""
    out = np.asarray(output_kw, dtype=np.float64).copy()
    mismatch = problem.demand_kw - float(out.sum())
    order = np.concatenate(
        [[problem.leader], np.delete(np.arange(problem.n_units), problem.leader)]
    )
    room = (problem.output_max_kw - out) if mismatch > 0 else (out - problem.output_min_kw)
    room = np.clip(room[order], 0.0, None)
    taken = np.clip(abs(mismatch) - (np.cumsum(room) - room), 0.0, room)
    out[order] += np.sign(mismatch) * taken
    return out


def _consensus_spec(case: ComparisonCase, rule: StoppingRule | None) -> _Iterative:
    from transactive.market.incentives import incentive_probe  # noqa: PLC0415

    problem = case.dispatch
    rule_ = _rule_of(rule, StoppingRule())
    optimum = centralized_dispatch(problem)
    n = problem.n_units
    directed = 2 * problem.graph.n_edges

    def run(faults: CommsFaults, p: DispatchProblem = problem) -> IterativeResult:
        return incremental_cost_consensus(p, rule=rule_, faults=faults)

    def achieved(result: IterativeResult) -> float:
        output = _completed_output_kw(problem, result.extra["output_kw"])
        return dispatch_cost_per_h(problem, output)

    def per_agent(result: IterativeResult) -> tuple[float, float]:
        # the channel's agents are the directed edges; per unit: the lambdas each one sent
        messages = float(result.extra["messages_per_unit"][0])
        return messages, float(result.numbers_per_agent) * directed / n

    out_opt = -np.asarray(optimum.schedules_kw, dtype=np.float64)[0]
    span = problem.output_max_kw - problem.output_min_kw
    tol = 1e-6 * np.maximum(span, 1.0)
    inside = (out_opt > problem.output_min_kw + tol) & (out_opt < problem.output_max_kw - tol)
    agent = int(np.argmax(np.where(inside, out_opt, -np.inf))) if inside.any() else 0

    def probe(truthful: IterativeResult) -> tuple[ProbeSummary, tuple[str, ...]]:
        family = {}
        for label, f_lin, f_quad in _GENERATOR_MISREPORTS:
            lin = problem.cost_linear_per_kwh.copy()
            quad = problem.cost_quadratic_per_kwh_per_kw.copy()
            lin[agent] *= f_lin
            quad[agent] *= f_quad
            family[label] = _DispatchReport(
                dataclasses.replace(
                    problem, cost_linear_per_kwh=lin, cost_quadratic_per_kwh_per_kw=quad
                )
            )

        def utility(result: IterativeResult, k: int, true: _DispatchReport) -> float:
            output = np.asarray(result.extra["output_kw"], dtype=np.float64)
            lam = float(result.prices[0])
            p = true.problem
            own = float(output[k])
            cost = (
                float(p.cost_constant_per_h[k])
                + float(p.cost_linear_per_kwh[k]) * own
                + float(p.cost_quadratic_per_kwh_per_kw[k]) * own * own
            )
            return lam * own - cost

        true_report = _DispatchReport(problem)
        result = incentive_probe(
            lambda rep: truthful if rep is true_report else run(CommsFaults(), rep.problem),
            true_report,
            agent,
            family,
            utility,
        )
        assert problem.ids is not None
        return ProbeSummary.of(
            result,
            str(problem.ids[agent]),
            "profit at the final incremental cost, lambda P - C(P) (currency/h)",
        ), ()

    return _Iterative(
        name="incremental cost consensus",
        agents=f"units ({n}) on a graph of {problem.graph.n_edges} links",
        unit="currency/h",
        run=run,
        achieved=achieved,
        optimum=optimum.objective,
        tolerance=rule_.tolerance,
        max_rounds=rule_.max_rounds,
        probe=probe,
        per_agent=per_agent,
        notes=lambda r: (
            f"final mismatch {float(r.extra['mismatch_kw'][-1]):.3g} kW, taken up by the "
            "leader in the achieved cost",
        ),
    )


def _network_spec(case: ComparisonCase, rule: StoppingRule | None) -> _Iterative:
    from transactive.coordination.ev_congestion import (  # noqa: PLC0415
        DEFAULT_EV_CONGESTION_RULE,
        centralized_network_ev,
        network_constrained_ev_charging,
    )
    from transactive.network.pgm import BatchPowerFlow  # noqa: PLC0415

    problem = case.network
    assert problem is not None  # compare_mechanisms calls this only with a feeder
    rule_ = _rule_of(rule, DEFAULT_EV_CONGESTION_RULE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimum = centralized_network_ev(problem)
    reference_notes = tuple(
        f"the OPF reference warned: {str(w.message).splitlines()[0]}" for w in caught
    )
    flow = BatchPowerFlow(problem.feeder)
    evs = problem.all_evs()
    fleet_of = problem.ev_fleet
    bus = problem.ev_bus
    agent = _probed_ev(evs)

    def with_evs(f: EvFleet) -> NetworkEvProblem:
        fleets = [
            EvFleet(
                ids=f.ids[fleet_of == k],
                rate_max_kw=f.rate_max_kw[:, fleet_of == k],
                energy_kwh=f.energy_kwh[fleet_of == k],
                period_h=f.period_h,
            )
            for k in range(problem.n_fleets)
        ]
        return dataclasses.replace(problem, fleets=fleets)

    def run(faults: CommsFaults, p: NetworkEvProblem = problem) -> IterativeResult:
        return network_constrained_ev_charging(p, rule=rule_, faults=faults, flow=flow)

    def price(result: IterativeResult) -> FloatArray:
        return np.asarray(result.prices, dtype=np.float64)[:, bus[agent]]

    def relaxed_optimum(result: IterativeResult) -> tuple[float, str] | None:
        """The OPF over the transformer and voltage limits the run ended at, if beyond them."""
        loading = float(np.max(result.extra["transformer_loading_pct"])) / 100.0
        low = float(np.min(result.extra["vmin_pu"]))
        high = float(np.max(result.extra["vmax_pu"]))
        vmin, vmax = problem.voltage_limits_pu
        changes: dict[str, Any] = {}
        said = []
        if loading > 1.0:
            changes["transformer_kva"] = problem.transformer_kva * loading
            said.append(f"the transformer at {100 * loading:.3f} %")
        if low < float(vmin.min()):
            changes["vmin_pu"] = np.minimum(vmin, low)
            said.append(f"voltages down to {low:.4f} pu")
        if high > float(vmax.max()):
            changes["vmax_pu"] = np.maximum(vmax, high)
            said.append(f"voltages up to {high:.4f} pu")
        if not changes:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reference's own warnings are noted above
            relaxed = centralized_network_ev(dataclasses.replace(problem, **changes)).objective
        return relaxed, (
            "the run ends beyond the limits within its tolerance ("
            + ", ".join(said)
            + f"): its efficiency is against the OPF with those limits ({relaxed:.6g}); the gap "
            "is against the problem's own"
        )

    def notes(result: IterativeResult) -> tuple[str, ...]:
        loading = float(np.max(result.extra["transformer_loading_pct"]))
        before = float(np.max(result.extra["uncongested_transformer_loading_pct"]))
        return (
            f"transformer loading {before:.1f} % on energy prices alone, {loading:.1f} % at the "
            "end",
        )

    return _Iterative(
        name="network-constrained EV charging",
        agents=f"fleet operators ({problem.n_fleets}) of {evs.n_evs} EVs",
        unit="currency",
        run=run,
        achieved=lambda r: float(r.objective[-1]),
        optimum=optimum.objective,
        tolerance=rule_.tolerance,
        max_rounds=rule_.max_rounds,
        probe=lambda truthful: _ev_probe(
            lambda f: run(CommsFaults(), with_evs(f)),
            evs,
            agent,
            agent,
            price,
            "currency",
            truthful,
        ),
        per_agent=_channel_counts,
        notes=notes,
        reference_notes=reference_notes,
        relaxed_optimum=relaxed_optimum,
    )


def compare_mechanisms(
    case: ComparisonCase,
    *,
    losses: Sequence[float] = (0.0, 0.1, 0.3),
    seed: int = 0,
    rule: StoppingRule | None = None,
) -> MechanismComparison:
    """Every mechanism of the project on ``case``: efficiency, cost, incentives, message loss.

    Parameters
    ----------
    case:
        The instances (:class:`ComparisonCase`, e.g. from :func:`case_from_scenario`).
    losses:
        Message loss probabilities of the loss table, each in ``[0, 1)`` (0 reuses the
        perfect-communication run).
    seed:
        Seed of the message losses (``CommsFaults(loss_probability=p, seed=seed)``).
    rule:
        Stopping rule for every iterative mechanism; None: each one's default
        (``StoppingRule()``; the network-constrained charging's ``DEFAULT_EV_CONGESTION_RULE``).

    Returns
    -------
    MechanismComparison
        One row per mechanism (module docstring for every definition).

    Raises
    ------
    ValidationError
        A bad case, loss probability (listing every one), seed or rule.

    """
    problems = Problems(subject="mechanism comparison")
    given: object = case
    if not isinstance(given, ComparisonCase):
        problems.add("case", f"must be a ComparisonCase, got {type(given).__name__}")
    try:
        values = list(losses)
    except TypeError:
        problems.add("losses", f"must be a sequence of probabilities, got {losses!r}")
        values = []
    bad = [i for i, p in enumerate(values) if not is_real(p) or not 0.0 <= float(p) < 1.0]
    if bad:
        problems.add("losses", "must each be a probability in [0, 1)", bad)
    if not is_count(seed):
        problems.add("seed", f"must be an integer, got {seed!r}")
    given_rule: object = rule
    if given_rule is not None and not isinstance(given_rule, StoppingRule):
        problems.add("rule", f"must be a StoppingRule or None, got {type(given_rule).__name__}")
    problems.raise_if_any()
    loss_values = tuple(float(p) for p in values)
    rows: list[MechanismRow] = []
    notes = list(case.notes)
    rows += evaluate_auction(case.auction)
    if case.tcl is not None:
        rows += evaluate_tcl_market(case.tcl)
    else:
        notes.append("no TCL market in this case: its rows are left out")
    specs = [*_valley_specs(case, rule), *_day_ahead_specs(case, rule), _consensus_spec(case, rule)]
    if case.network is not None:
        specs.append(_network_spec(case, rule))
    else:
        notes.append("no feeder in this case: the network-constrained EV charging is left out")
    rows += [_iterative_row(spec, loss_values, int(seed)) for spec in specs]
    return MechanismComparison(
        case=case.name,
        seed=int(seed),
        losses=loss_values,
        rows=tuple(rows),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------- scenarios


class _KindLike(Protocol):
    @property
    def count(self) -> int: ...

    @property
    def options(self) -> Mapping[str, Any]: ...


class _PopulationLike(Protocol):
    @property
    def seed(self) -> int: ...

    @property
    def ev(self) -> _KindLike: ...

    @property
    def hvac(self) -> _KindLike: ...

    @property
    def base_load(self) -> _KindLike: ...


class _FeederLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def scale(self) -> float: ...

    @property
    def line_max_i_ka(self) -> float | None: ...

    @property
    def vmin_pu(self) -> float: ...

    @property
    def vmax_pu(self) -> float: ...


class _WeatherLike(Protocol):
    @property
    def tmy3(self) -> str: ...


class _SupplyLike(Protocol):
    @property
    def price_per_kwh(self) -> float | None: ...

    @property
    def hourly_price_per_kwh(self) -> Sequence[float]: ...

    @property
    def capacity_basis_homes(self) -> int | None: ...


class _MechanismLike(Protocol):
    @property
    def price_cap_per_kwh(self) -> float: ...

    @property
    def price_floor_per_kwh(self) -> float: ...

    @property
    def homes_per_concentrator(self) -> int: ...

    @property
    def initial_price_std_per_kwh(self) -> float: ...


class ScenarioLike(Protocol):
    """What :func:`case_from_scenario` reads of a scenario (:class:`transactive.sim.Scenario`).

    A protocol, so the mechanism floor does not import the simulator above it.
    """

    @property
    def name(self) -> str:
        """The scenario's name."""
        ...

    @property
    def start(self) -> Any:
        """Its start, a timezone-aware datetime (its local clock)."""
        ...

    @property
    def start_day(self) -> int:
        """The day of the year its weather starts on."""
        ...

    @property
    def market_interval_s(self) -> int:
        """The market interval (s)."""
        ...

    @property
    def n_homes(self) -> int:
        """Its homes."""
        ...

    @property
    def season_capacity_kw(self) -> float:
        """Its feeder limit in the season of its start (kW; inf: none)."""
        ...

    @property
    def population(self) -> _PopulationLike:
        """Its device kinds (counts, options) and seed."""
        ...

    @property
    def feeder(self) -> _FeederLike:
        """Its feeder and voltage limits."""
        ...

    @property
    def weather(self) -> _WeatherLike:
        """Its TMY3 station."""
        ...

    @property
    def supply(self) -> _SupplyLike:
        """Its wholesale prices and the homes its limit is for."""
        ...

    @property
    def mechanism(self) -> _MechanismLike:
        """Its market's price limits and concentrator size."""
        ...


#: Default cap on the homes of a case (so a comparison runs in seconds).
DEFAULT_HOMES = 60
#: Seconds in a day.
_DAY_S = 86_400
#: The streams of :func:`case_from_scenario`, children of the scenario's seed in this order.
_CASE_STREAMS = ("placement", "ev", "hvac", "base_load", "dispatch")


def _options(spec: _KindLike) -> dict[str, Any]:
    """A kind's sampling options, lists as tuples (as the simulator passes them)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in spec.options.items()}


def _step_means(values: FloatArray, step_s: int, starts_s: IntArray, period_s: int) -> FloatArray:
    """Means over ``[s, s + period_s)`` of a daily profile of ``step_s`` steps, repeated daily.

    ``values`` is ``(steps, ...)`` from local midnight; the integral to ``t`` is the whole days
    before it plus the cumulative energy of the day up to ``t mod day`` (the profile is constant
    over each step), so any period, crossing midnight or not, is exact.
    """
    steps = values.shape[0]
    day = steps * step_s
    cum = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0) * step_s])
    pad = (slice(None),) + (None,) * (values.ndim - 1)

    def integral(t: IntArray) -> FloatArray:
        whole, within = np.divmod(np.asarray(t, dtype=np.int64), day)
        k = within // step_s
        part = (within - k * step_s).astype(np.float64)
        return np.asarray(
            whole.astype(np.float64)[pad] * cum[steps] + cum[k] + part[pad] * values[k],
            dtype=np.float64,
        )

    start = np.asarray(starts_s, dtype=np.int64)
    return (integral(start + period_s) - integral(start)) / float(period_s)


def case_from_scenario(
    scenario: ScenarioLike,
    *,
    evs: int | None = None,
    homes: int | None = None,
    hvac: int | None = None,
    period_s: int = 900,
    n_periods: int = 96,
    generators: int = 3,
    dispatch_units: int = 6,
    fleet_operators: int = 3,
    comfort_weight_per_k2: float = 1.0,
    transformer_share: float = 0.5,
    base_dir: str | Path | None = None,
) -> ComparisonCase:
    """A comparison case from a simulator scenario (``transactive.sim.load_scenario(name)[0]``).

    Rules (each a modelling choice of this comparison, stated):

    - **Sizes.** ``homes`` (default the scenario's homes, at most 60); ``evs`` and ``hvac``
      default to the scenario's shares of EVs and HVAC houses of its homes, times ``homes``,
      rounded. Home ``h`` holds device ``h`` of each kind (the simulator's rule), so the homes
      are raised to the EVs' or the houses' count when that is larger. A case needs EVs: a
      scenario without them is refused unless ``evs`` is given; without HVAC houses the case has
      no TCL market (its notes say so) unless ``hvac`` is given.
    - **Randomness.** Children of the scenario's seed (:class:`numpy.random.SeedSequence`), one
      each for the placement, the EVs, the HVAC houses, the households' base load and the
      dispatch units, drawn by the kinds' own ``sample`` with the scenario's options: the same
      scenario gives the same case, but not the simulator's devices (its streams differ).
    - **Horizon.** ``n_periods`` periods of ``period_s`` from the first local noon at or after
      the scenario's start (96 x 15 min: noon to noon), moved earlier to the period of the first
      EV's arrival when one arrives before it (so no EV's window is cut at the start; a window
      cut at the end keeps the energy the EV must have by then, the EV flexibility's rule).
    - **Load.** Every home's household load is SimBench's (the base-load kind's ``sample``, its
      mean power per period from the run's start as the simulator reads it), on its home's node
      of the scenario's feeder (homes spread over the load buses, then shuffled, as the
      simulator places them), plus the feeder's own load times ``feeder.scale`` over the day
      (:func:`transactive.network.feeder_day_load`); reactive power at each node's nominal
      power factor.
    - **Prices.** The scenario's hourly wholesale prices (or its flat price) per period.
    - **Day-ahead generators.** ``generators`` quadratic-cost units sharing 1.2 times the peak of
      the load with every EV at full rate (shares 3:2:1...), marginal costs from the day's lowest
      price at zero output to 1.2-1.6 times its highest at full output.
    - **Consensus.** ``dispatch_units`` units on a ring, leader 0, drawn from their stream:
      capacities together 1.6 times the largest base load, serving that load; marginal costs at
      zero output between the day's lowest and highest prices, reaching up to twice the highest
      at full output.
    - **Feeder.** The scenario's feeder and voltage limits; the EVs split over
      ``fleet_operators`` operators (EV ``i`` to operator ``i mod F``); the transformer limit
      ``transformer_share`` of the way from the base load's apparent-power peak to the peak of
      the base load plus the EVs' least-cost plan at the energy prices (by period, its hourly
      means), so it binds.
    - **One market interval** at the first hour of the day with the highest wholesale price:
      the HVAC houses, sampled at the outdoor temperature of the start, are stepped on their
      thermostats (TMY3 weather at the market interval) to it; the double auction takes their
      interval bids, the EVs' and the households' (unresponsive), with price statistics the
      day's prices' mean and standard deviation (at least the scenario's initial one), and the
      feeder's supply at that hour's price up to the scenario's limit per home times the homes;
      the TCL market takes the houses' bids of Li et al. (:func:`bids_from_hvac`, comfort weight
      ``comfort_weight_per_k2``, under the interval's weather), the same limit (all the demand
      when the scenario has none) with the households' load served first and the wholesale
      price as the reserve.
    - **Ma et al.'s price slope**: the day's highest price over the largest base load.

    Raises
    ------
    ValidationError
        Bad arguments, a scenario without EVs (naming the option to give), or
        instances the mechanisms refuse (their own messages).

    """
    problems = Problems(subject="comparison case")
    for name, value, least in (("evs", evs, 1), ("homes", homes, 1), ("hvac", hvac, 0)):
        if value is not None and (not is_count(value) or int(value) < least):
            problems.add(name, f"must be an integer >= {least}, got {value!r}")
    for name, value, least in (
        ("period_s", period_s, 1),
        ("n_periods", n_periods, 2),
        ("generators", generators, 1),
        ("dispatch_units", dispatch_units, 3),
        ("fleet_operators", fleet_operators, 1),
    ):
        if not is_count(value) or int(value) < least:
            problems.add(name, f"must be an integer >= {least}, got {value!r}")
    if not is_real(comfort_weight_per_k2) or comfort_weight_per_k2 < 0:
        problems.add("comfort_weight_per_k2", "must be a finite number >= 0")
    if not is_real(transformer_share) or not 0 < transformer_share < 1:
        problems.add("transformer_share", "must lie in (0, 1)")
    problems.raise_if_any()
    sc = scenario
    n_sc = int(sc.n_homes)
    if n_sc < 1:
        problems.add("population", "the scenario has no homes")
        problems.raise_if_any()
    n_homes = int(homes) if homes is not None else min(n_sc, DEFAULT_HOMES)
    n_ev = int(evs) if evs is not None else round(sc.population.ev.count / n_sc * n_homes)
    n_hvac = int(hvac) if hvac is not None else round(sc.population.hvac.count / n_sc * n_homes)
    if n_ev < 1:
        problems.add(
            "population.ev",
            f"scenario {sc.name!r} has no EVs for {n_homes} homes: give evs (--evs N)",
        )
    problems.raise_if_any()
    n_homes = max(n_homes, n_ev, n_hvac)
    return _build_case(
        sc,
        n_homes=n_homes,
        n_ev=n_ev,
        n_hvac=n_hvac,
        period_s=int(period_s),
        n_periods=int(n_periods),
        generators=int(generators),
        dispatch_units=int(dispatch_units),
        fleet_operators=int(fleet_operators),
        comfort_weight=float(comfort_weight_per_k2),
        transformer_share=float(transformer_share),
        base_dir=None if base_dir is None else Path(base_dir),
    )


def _build_case(
    sc: ScenarioLike,
    *,
    n_homes: int,
    n_ev: int,
    n_hvac: int,
    period_s: int,
    n_periods: int,
    generators: int,
    dispatch_units: int,
    fleet_operators: int,
    comfort_weight: float,
    transformer_share: float,
    base_dir: Path | None,
) -> ComparisonCase:
    """:func:`case_from_scenario` once its arguments are checked."""
    from transactive.coordination.ev_congestion import NetworkEvProblem  # noqa: PLC0415
    from transactive.data import load_tmy3  # noqa: PLC0415
    from transactive.devices.base import (  # noqa: PLC0415
        Horizon,
        MarketInterval,
        Population,
        PriceStats,
    )
    from transactive.devices.base_load import BaseLoadPopulation  # noqa: PLC0415
    from transactive.devices.ev import EVPopulation  # noqa: PLC0415
    from transactive.devices.hvac import HvacPopulation  # noqa: PLC0415
    from transactive.market.iterative.dual_decomposition import water_filling  # noqa: PLC0415
    from transactive.market.truthful_tcl import bids_from_hvac  # noqa: PLC0415
    from transactive.network import (  # noqa: PLC0415
        feeder_day_load,
        load_feeder,
        spread_over_load_buses,
    )

    seed = int(sc.population.seed)
    streams = {
        name: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x4837, i)))
        for i, name in enumerate(_CASE_STREAMS)
    }
    feeder_name = str(sc.feeder.name)
    if (
        base_dir is not None
        and feeder_name.endswith(".json")
        and not Path(feeder_name).is_absolute()
    ):
        feeder_name = str(base_dir / feeder_name)
    feeder = load_feeder(feeder_name, line_max_i_ka=sc.feeder.line_max_i_ka)
    start = sc.start
    local_start_s = int(start.hour) * 3600 + int(start.minute) * 60 + int(start.second)
    interval_s = int(sc.market_interval_s)
    notes: list[str] = []

    # prices by local hour
    hourly = tuple(float(p) for p in sc.supply.hourly_price_per_kwh)
    if hourly:
        by_hour = np.asarray(hourly, dtype=np.float64)
        if by_hour.size != 24:
            raise ValidationError(
                [Problem("supply.hourly_price_per_kwh", f"needs 24 prices, got {by_hour.size}")],
                subject="comparison case",
            )
    elif sc.supply.price_per_kwh is not None:
        by_hour = np.full(24, float(sc.supply.price_per_kwh))
    else:
        raise ValidationError(
            [Problem("supply", "the scenario gives no wholesale price")], subject="comparison case"
        )
    p_low, p_high = float(by_hour.min()), float(by_hour.max())

    # the EVs and the horizon
    evs = EVPopulation.sample(
        n_ev,
        streams["ev"],
        ids=np.array([f"ev-{i}" for i in range(n_ev)]),
        **_options(sc.population.ev),
    )
    noon_s = (12 * 3600 - local_start_s) % _DAY_S
    first_arrival = float(np.min(evs.arrival_s))
    horizon_start = int(min(noon_s, (first_arrival // period_s) * period_s))
    if horizon_start != noon_s:
        notes.append(
            f"the horizon starts {horizon_start / 3600:g} h after the start (the first EV's "
            "arrival), not at noon"
        )
    horizon = Horizon(horizon_start, period_s, n_periods)
    span_days = (local_start_s + horizon_start + n_periods * period_s) / _DAY_S + 1.0
    weather = load_tmy3(sc.weather.tmy3, step_s=period_s, start_day=sc.start_day, days=span_days)
    offset = (local_start_s + horizon_start) // period_s
    flexibility = evs.flexibility(horizon, [weather[offset + t] for t in range(n_periods)])
    fleet = EvFleet.from_flexibility(flexibility)
    starts = horizon_start + period_s * np.arange(n_periods, dtype=np.int64)
    hours = ((local_start_s + starts + period_s // 2) // 3600) % 24
    energy_price = by_hour[hours]

    # households, placement and the feeder's load
    households = BaseLoadPopulation.sample(
        n_homes,
        streams["base_load"],
        ids=np.array([f"base_load-{i}" for i in range(n_homes)]),
        **_options(sc.population.base_load),
    )
    home_kw = np.stack(
        [households.mean_power_kw(float(s), float(period_s)) for s in starts]
    )  # (T, homes): a loop over periods
    home_bus = np.asarray(
        streams["placement"].permutation(spread_over_load_buses(n_homes, feeder)), dtype=np.int64
    )
    n_nodes = feeder.n_nodes
    base_p = np.zeros((n_periods, n_nodes))
    np.add.at(base_p.T, home_bus, home_kw.T)
    nominal_p = np.asarray(feeder.load_p_kw, dtype=np.float64)
    nominal_q = np.asarray(feeder.load_q_kvar, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tan_phi = np.where(nominal_p > 0, nominal_q / nominal_p, 0.0)
    base_q = base_p * tan_phi[None, :]
    scale = float(sc.feeder.scale)
    if scale > 0:
        day = feeder_day_load(feeder, scale=scale)
        local_starts = (local_start_s + starts).astype(np.int64)
        base_p = base_p + _step_means(np.asarray(day.p_kw), day.interval_s, local_starts, period_s)
        base_q = base_q + _step_means(
            np.asarray(day.q_kvar), day.interval_s, local_starts, period_s
        )
    base_kw = base_p.sum(axis=1)

    # day-ahead generators
    shares = np.arange(generators, 0, -1, dtype=np.float64)
    caps = 1.2 * float((base_kw + fleet.rate_max_kw.sum(axis=1)).max()) * shares / shares.sum()
    a = np.full(generators, p_low)
    top = p_high * np.linspace(1.2, 1.6, generators)
    b = (top - a) / caps
    day_ahead = DayAheadProblem(
        period_h=fleet.period_h,
        inflexible_demand_kw=base_kw,
        cost_linear_per_kwh=a,
        cost_quadratic_per_kwh_per_kw=b,
        power_min_kw=np.zeros(generators),
        power_max_kw=caps,
        fleet=fleet,
    )

    # consensus dispatch
    rng = streams["dispatch"]
    demand = float(base_kw.max())
    raw = rng.uniform(0.5, 1.5, dispatch_units)
    unit_caps = 1.6 * demand * raw / raw.sum()
    lin = rng.uniform(p_low, p_high, dispatch_units)
    full = rng.uniform(1.2, 2.0, dispatch_units) * p_high
    quad = (full - lin) / (2.0 * unit_caps)  # lambda = b + 2 c P reaches `full` at capacity
    dispatch = DispatchProblem.build(
        cost_constant_per_h=np.zeros(dispatch_units),
        cost_linear_per_kwh=lin,
        cost_quadratic_per_kwh_per_kw=quad,
        output_min_kw=np.zeros(dispatch_units),
        output_max_kw=unit_caps,
        demand_kw=demand,
        graph=CommunicationGraph.ring(dispatch_units),
        leader=0,
    )

    # the feeder: fleets, buses, transformer limit
    ev_bus = home_bus[:n_ev]
    operator = np.arange(n_ev) % fleet_operators
    fleets = [
        EvFleet(
            ids=fleet.ids[operator == k],
            rate_max_kw=fleet.rate_max_kw[:, operator == k],
            energy_kwh=fleet.energy_kwh[operator == k],
            period_h=fleet.period_h,
        )
        for k in range(fleet_operators)
        if (operator == k).any()
    ]
    buses = [ev_bus[operator == k] for k in range(fleet_operators) if (operator == k).any()]
    base_s = np.hypot(base_kw, base_q.sum(axis=1))
    plan = water_filling(fleet, energy_price).sum(axis=1)
    per_hour = max(3600 // period_s, 1)
    whole = (n_periods // per_hour) * per_hour
    smooth = plan.copy()
    if whole:
        smooth[:whole] = np.repeat(plan[:whole].reshape(-1, per_hour).mean(axis=1), per_hour)
    planned_s = np.hypot(base_kw + smooth, base_q.sum(axis=1))
    base_peak, planned_peak = float(base_s.max()), float(planned_s.max())
    limit = base_peak + transformer_share * max(planned_peak - base_peak, 0.0)
    network = NetworkEvProblem(
        feeder=feeder,
        fleets=fleets,
        fleet_buses=buses,
        base_p_kw=base_p,
        base_q_kvar=base_q,
        energy_price_per_kwh=energy_price,
        transformer_kva=max(limit, 1.02 * base_peak),
        vmin_pu=float(sc.feeder.vmin_pu),
        vmax_pu=float(sc.feeder.vmax_pu),
    )

    # one market interval: the hour of the highest price
    first_hour = (-local_start_s) % 3600
    candidates = first_hour + 3600 * np.arange(24)
    cand_hours = ((local_start_s + candidates) // 3600) % 24
    at = int(candidates[int(np.argmax(by_hour[cand_hours]))])
    at = (at // interval_s) * interval_s
    interval_h = interval_s / 3600.0
    forecast = load_tmy3(
        sc.weather.tmy3,
        step_s=interval_s,
        start_day=sc.start_day,
        days=(local_start_s + at + interval_s) / _DAY_S + 1.0,
    )
    w0 = local_start_s // interval_s
    w_at = forecast[w0 + at // interval_s]
    houses = None
    if n_hvac:
        houses = HvacPopulation.sample(
            n_hvac,
            streams["hvac"],
            ids=np.array([f"hvac-{i}" for i in range(n_hvac)]),
            **{
                "outdoor_temperature_c": float(forecast[w0].temperature_c),
                **_options(sc.population.hvac),
            },
        )
        for k in range(at // interval_s):  # thermostats to the interval: a loop over time steps
            houses.step(k * interval_s, interval_s, forecast[w0 + k])
    price_now = float(by_hour[((local_start_s + at) // 3600) % 24])
    cap_price = float(sc.mechanism.price_cap_per_kwh)
    floor_price = float(sc.mechanism.price_floor_per_kwh)
    stats = PriceStats(
        mean_per_kwh=float(by_hour.mean()),
        std_per_kwh=max(float(by_hour.std()), float(sc.mechanism.initial_price_std_per_kwh)),
        price_cap_per_kwh=cap_price,
        price_floor_per_kwh=floor_price,
    )
    market = MarketInterval(at, interval_s)
    parts: list[Population] = [] if houses is None else [houses]
    parts += [evs, households]
    bids = BidCurves.concat([pop.bid(stats, market, w_at) for pop in parts])
    bids = bids.with_ids(np.concatenate([pop.ids for pop in parts]))
    bid_homes = np.concatenate([np.arange(pop.n_devices) for pop in parts]).astype(np.int64)
    basis = sc.supply.capacity_basis_homes
    per_home = float(sc.season_capacity_kw) / float(basis if basis is not None else sc.n_homes)
    capacity = per_home * n_homes
    supply = Supply(price_per_kwh=price_now, capacity_kw=capacity)
    auction = AuctionCase(
        bids=bids,
        homes=bid_homes,
        homes_per_concentrator=int(sc.mechanism.homes_per_concentrator),
        price_cap=cap_price,
        price_floor=floor_price,
        duration_h=interval_h,
        supply=supply,
    )
    tcl: TclMarketCase | None = None
    if houses is None:
        notes.append(
            f"scenario {sc.name!r} has no HVAC houses: no TCL market (give hvac, --hvac N)"
        )
        tcl_bids = None
    else:
        # the HVAC houses' truthful bids (Li et al.); their heat flows under the weather
        # (HvacPopulation has no public name for them yet: the one place they are computed)
        tcl_bids = bids_from_hvac(
            houses,
            outdoor_temperature_c=float(w_at.temperature_c),
            duration_s=float(interval_s),
            comfort_weight_per_k2=comfort_weight,
            heat=houses.heat_inputs(w_at),
        )
    household_kw = float(households.mean_power_kw(float(at), float(interval_s)).sum())
    tcl_capacity = capacity
    if tcl_bids is not None and not math.isfinite(tcl_capacity):
        tcl_capacity = household_kw + float(tcl_bids.power_kw.sum()) + 1.0
        notes.append("the scenario has no feeder limit: the TCL market's capacity is all demand")
    if tcl_bids is not None and household_kw < tcl_capacity:
        tcl = TclMarketCase(
            bids=tcl_bids,
            capacity_kw=tcl_capacity,
            base_load_kw=household_kw,
            reserve_price_per_kwh=price_now,
            duration_h=interval_h,
        )
    elif tcl_bids is not None:
        notes.append(
            f"the households' {household_kw:.4g} kW fill the feeder limit {tcl_capacity:.4g} kW "
            "at the interval: no TCL market"
        )
    local_at = (local_start_s + at) % _DAY_S
    notes.append(
        f"{n_homes} homes, {n_ev} EVs, {n_hvac} HVAC houses; horizon {n_periods} x "
        f"{period_s / 60:g} min; market interval at {local_at // 3600:02d}:"
        f"{(local_at % 3600) // 60:02d} local"
    )
    return ComparisonCase(
        name=str(sc.name),
        fleet=fleet,
        base_load_kw=base_kw,
        price_slope_per_kwh_per_kw=p_high / max(float(base_kw.max()), 1e-9),
        day_ahead=day_ahead,
        dispatch=dispatch,
        network=network,
        auction=auction,
        tcl=tcl,
        notes=tuple(notes),
    )
