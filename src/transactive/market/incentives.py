"""The incentive probe: what one agent gains by misreporting its bid.

Hu et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy System",
Proc. CSEE 2019, §3.1.3: a mechanism is judged, among other things, by its incentive
compatibility, whether a party does best by bidding its true curve. :func:`incentive_probe`
measures it for any mechanism: it clears the true bids and every bid profile of a family in
which one agent's bid is misreported, scores each outcome with that agent's *true* quasi-linear
utility (the value of what it gets at its true curve minus what it pays), and reports the best
misreport and its gain. A gain above zero is a proof, by example, that truthful bidding is not a
dominant strategy; no gain over a family is evidence (not proof) that it is.

Ready adapters:

- the uniform-price double auction :func:`transactive.market.clear` over
  :class:`~transactive.curves.BidCurves` (:func:`double_auction`, :func:`double_auction_utility`,
  :func:`curve_misreports`): a curve's value of a power ``x`` is ``∫_0^x P(s) ds`` with ``P``
  its inverse (the price at which it asks ``s``), its payment ``price · x``, both times the
  interval's hours (for a seller, ``x < 0``, the integral is minus its cost);
- the truthful TCL market :func:`transactive.market.truthful_tcl.clear_truthful`
  (:func:`truthful_tcl_mechanism`, :func:`truthful_tcl_utility`, :func:`tcl_misreports`): a TCL's
  value is its true price per kWh times the energy it gets, up to what its true power needs.

Pure computation. The search over a family is one clearing per misreport (a few dozen).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from transactive.curves import BidCurves
from transactive.errors import Problems
from transactive.market.clearing import ClearingResult, Supply, clear
from transactive.market.truthful_tcl import Pricing, TclBids, TruthfulClearing, clear_truthful

__all__ = [
    "IncentiveProbe",
    "curve_misreports",
    "curve_value",
    "double_auction",
    "double_auction_utility",
    "incentive_probe",
    "tcl_misreports",
    "truthful_tcl_mechanism",
    "truthful_tcl_utility",
]

FloatArray = npt.NDArray[np.float64]

Bids = TypeVar("Bids", bound=Sized)
Outcome = TypeVar("Outcome")

#: The default family: prices scaled by 0.5 ... 1.5 (Hu et al.'s probe of shading and
#: overbidding) and quantities scaled by these factors.
PRICE_FACTORS: tuple[float, ...] = tuple(float(f) for f in np.round(np.linspace(0.5, 1.5, 11), 2))
POWER_FACTORS: tuple[float, ...] = (0.5, 1.0, 1.5)


@dataclass(frozen=True, eq=False)
class IncentiveProbe(Generic[Bids]):
    """What agent ``agent`` can gain by misreporting, over one family of misreports.

    Attributes
    ----------
    agent:
        The probed agent's index in the bids.
    truthful_utility:
        Its true utility when everyone bids truthfully.
    labels, utilities:
        Each misreport's label and the agent's true utility under it (``(M,)``).
    best_label, best_misreport, best_utility:
        The misreport with the highest utility (the first of equals), its bid profile, its
        utility.
    gain:
        ``best_utility - truthful_utility`` (``<= 0``: no misreport of the family beats the
        truth).
    gain_relative:
        ``gain / scale``, the scale being the one given or ``|truthful_utility|``; when that is
        0, ``inf`` for a positive gain and 0 otherwise.

    """

    agent: int
    truthful_utility: float
    labels: tuple[str, ...]
    utilities: FloatArray
    best_label: str
    best_misreport: Bids
    best_utility: float
    gain: float
    gain_relative: float

    @property
    def truthful_is_best(self) -> bool:
        """Whether no misreport of the family gave a strictly higher utility."""
        return self.gain <= 0.0


def incentive_probe(
    mechanism: Callable[[Bids], Outcome],
    true_bids: Bids,
    agent: int,
    misreports: Mapping[str, Bids] | Sequence[Bids],
    utility: Callable[[Outcome, int, Bids], float],
    *,
    scale: float | None = None,
) -> IncentiveProbe[Bids]:
    """Clear the truth and every misreport; score each with the agent's true utility.

    Parameters
    ----------
    mechanism:
        ``mechanism(bids) -> outcome``, e.g. :func:`double_auction` or
        :func:`truthful_tcl_mechanism`.
    true_bids:
        Everyone's true bids (``len(true_bids)`` agents).
    agent:
        The probed agent, an index in ``[0, len(true_bids))``.
    misreports:
        Bid profiles in which ``agent``'s bid is misreported (the others' are true), by label
        (a mapping) or in order (labelled ``"0"``, ``"1"``, ...); at least one. Built by
        :func:`curve_misreports` or :func:`tcl_misreports`.
    utility:
        ``utility(outcome, agent, true_bids)``: the agent's true quasi-linear utility.
    scale:
        The divisor of ``gain_relative`` (> 0); default ``|truthful utility|``.

    Raises
    ------
    ValidationError
        An agent out of range, an empty family, a misreport with another number of agents, a
        bad scale, or a utility that is not a finite number.

    """
    problems = Problems(subject="incentive probe")
    n = len(true_bids)
    if isinstance(agent, bool) or not isinstance(agent, int | np.integer) or not 0 <= agent < n:
        problems.add("agent", f"must be an index in [0, {n}), got {agent!r}")
    if isinstance(misreports, Mapping):
        labels = tuple(str(k) for k in misreports)
        family = tuple(misreports.values())
    else:
        family = tuple(misreports)
        labels = tuple(str(i) for i in range(len(family)))
    if not family:
        problems.add("misreports", "is empty: give at least one misreported bid profile")
    wrong = [labels[j] for j, bids in enumerate(family) if len(bids) != n]
    if wrong:
        problems.add("misreports", f"must each hold the bids of {n} agents", wrong)
    if scale is not None and not (
        isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0
    ):
        problems.add("scale", f"must be a number > 0, got {scale!r}")
    problems.raise_if_any()
    who = int(agent)

    def score(bids: Bids, label: str) -> float:
        value = utility(mechanism(bids), who, true_bids)
        if not isinstance(value, int | float | np.floating) or not math.isfinite(float(value)):
            problems.add("utility", f"must return a finite number, got {value!r}", [label])
            problems.raise_if_any()
        return float(value)

    truthful = score(true_bids, "truthful")
    utilities = np.array([score(bids, label) for bids, label in zip(family, labels, strict=True)])
    best = int(np.argmax(utilities))
    gain = float(utilities[best]) - truthful
    reference = abs(truthful) if scale is None else float(scale)
    unbounded = math.inf if gain > 0 else 0.0
    relative = gain / reference if reference > 0 else unbounded
    utilities.setflags(write=False)
    return IncentiveProbe(
        agent=who,
        truthful_utility=truthful,
        labels=labels,
        utilities=utilities,
        best_label=labels[best],
        best_misreport=family[best],
        best_utility=float(utilities[best]),
        gain=gain,
        gain_relative=relative,
    )


def _checked_family(
    n: int,
    agent: int,
    factors: Sequence[tuple[str, Sequence[float]]],
    problems: Problems,
) -> None:
    if isinstance(agent, bool) or not isinstance(agent, int | np.integer) or not 0 <= agent < n:
        problems.add("agent", f"must be an index in [0, {n}), got {agent!r}")
    for name, values in factors:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            problems.add(name, "must be a non-empty sequence of numbers")
        elif not np.isfinite(arr).all():
            problems.add(name, "must be finite numbers")
        elif name.endswith("factors") and (arr <= 0).any():
            problems.add(name, "must be > 0 (a factor <= 0 is not a bid of the same shape)")


# ---------------------------------------------------------------------- TCL market adapters


def truthful_tcl_mechanism(
    *,
    capacity_kw: float,
    duration_h: float,
    base_load_kw: float = 0.0,
    reserve_price_per_kwh: float = 0.0,
    pricing: Pricing = "vcg",
) -> Callable[[TclBids], TruthfulClearing]:
    """``bids -> clear_truthful(bids, ...)`` with these settings, for :func:`incentive_probe`."""

    def mechanism(bids: TclBids) -> TruthfulClearing:
        return clear_truthful(
            bids,
            capacity_kw=capacity_kw,
            duration_h=duration_h,
            base_load_kw=base_load_kw,
            reserve_price_per_kwh=reserve_price_per_kwh,
            pricing=pricing,
        )

    return mechanism


def truthful_tcl_utility(outcome: TruthfulClearing, agent: int, true_bids: TclBids) -> float:
    """A TCL's true utility: true price x energy received (up to its true need) - payment.

    The one-block bid's value is linear in the run time (:func:`tcl_bids`): energy beyond what
    running the whole period at its true power draws is worth nothing to it.
    """
    need_kwh = float(true_bids.power_kw[agent]) * outcome.duration_h
    energy = min(float(outcome.energy_kwh[agent]), need_kwh)
    return float(true_bids.price_per_kwh[agent]) * energy - float(outcome.payment[agent])


def tcl_misreports(
    true_bids: TclBids,
    agent: int,
    *,
    price_factors: Sequence[float] = PRICE_FACTORS,
    power_factors: Sequence[float] = POWER_FACTORS,
    price_shifts_per_kwh: Sequence[float] = (0.0,),
) -> dict[str, TclBids]:
    """Agent ``agent``'s misreports: price ``max(f p + s, 0)``, power ``g P``, every combination.

    The truthful report (``f = g = 1``, ``s = 0``) is left out. Labels read
    ``"price x0.8 +0.00, power x1.0"``.
    """
    problems = Problems(subject="TCL misreports")
    _checked_family(
        len(true_bids),
        agent,
        [
            ("price_factors", price_factors),
            ("power_factors", power_factors),
            ("price_shifts_per_kwh", price_shifts_per_kwh),
        ],
        problems,
    )
    problems.raise_if_any()
    price = float(true_bids.price_per_kwh[agent])
    power = float(true_bids.power_kw[agent])
    family: dict[str, TclBids] = {}
    for f, s, g in itertools.product(price_factors, price_shifts_per_kwh, power_factors):
        if f == 1.0 and s == 0.0 and g == 1.0:
            continue
        label = f"price x{f:g} {s:+.2f}, power x{g:g}"
        family[label] = true_bids.with_bid(
            int(agent), price_per_kwh=max(f * price + s, 0.0), power_kw=g * power
        )
    if not family:
        problems.add("price_factors", "leave no misreport: every combination is the truth")
        problems.raise_if_any()
    return family


# ---------------------------------------------------------------------- double auction adapters


def double_auction(
    *, price_cap: float, price_floor: float = 0.0, supply: Supply | None = None
) -> Callable[[BidCurves], ClearingResult]:
    """``bids -> clear(bids, ...)`` (the project's uniform-price double auction)."""

    def mechanism(bids: BidCurves) -> ClearingResult:
        return clear(bids, price_cap=price_cap, price_floor=price_floor, supply=supply)

    return mechanism


def curve_value(
    bids: BidCurves, agent: int, power_kw: float, *, price_floor: float, price_cap: float
) -> float:
    """``∫_0^x P(s) ds`` for curve ``agent``: its value per hour of an average power ``x``.

    ``P`` is the curve's inverse: the price at which it asks ``s`` kW, linear between
    breakpoints (a block is a flat stretch). Beyond the curve's range, power it would not buy
    at the floor is worth the floor and power it would not sell at the cap costs the cap (the
    curve is constant beyond its ends, as :class:`~transactive.curves.BidCurves` reads). For a
    seller (``x < 0``) the result is minus its cost of supplying ``-x``.
    """
    # Inverse curve as points (s_j, P_j), s ascending: the breakpoints from the highest price.
    s = bids.power_kw[agent][::-1].astype(np.float64)
    p = bids.price_per_kwh[agent][::-1].astype(np.float64)
    x = float(power_kw)
    lo, hi = min(0.0, x), max(0.0, x)
    # Segments: (-inf, s_0] at the cap, [s_j, s_{j+1}] linear, [s_last, inf) at the floor.
    seg_lo = np.concatenate([[-math.inf], s[:-1], [s[-1]]])
    seg_hi = np.concatenate([[s[0]], s[1:], [math.inf]])
    p_lo = np.concatenate([[price_cap], p[:-1], [price_floor]])
    p_hi = np.concatenate([[price_cap], p[1:], [price_floor]])
    a = np.clip(seg_lo, lo, hi)
    b = np.clip(seg_hi, lo, hi)
    length = seg_hi - seg_lo
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(np.isfinite(length) & (length > 0), (p_hi - p_lo) / length, 0.0)
    base = np.where(np.isfinite(seg_lo), seg_lo, 0.0)
    start = np.where(np.isfinite(seg_lo), p_lo, p_hi)  # the cap stretch is flat
    price_a = start + slope * (a - base)
    price_b = start + slope * (b - base)
    area = float((0.5 * (price_a + price_b) * (b - a)).sum())
    return area if x >= 0 else -area


def double_auction_utility(
    *, duration_h: float, price_floor: float, price_cap: float
) -> Callable[[ClearingResult, int, BidCurves], float]:
    """A curve's true utility under :func:`clear`: ``h (value(a) - price a)``, ``a`` its award."""
    problems = Problems(subject="double auction utility")
    for name, value in (
        ("duration_h", duration_h),
        ("price_floor", price_floor),
        ("price_cap", price_cap),
    ):
        if not (isinstance(value, int | float) and math.isfinite(value)):
            problems.add(name, f"must be a finite number, got {value!r}")
    if isinstance(duration_h, int | float) and duration_h <= 0:
        problems.add("duration_h", f"must be > 0, got {duration_h}")
    problems.raise_if_any()

    def utility(outcome: ClearingResult, agent: int, true_bids: BidCurves) -> float:
        award = float(outcome.allocation_kw[agent])
        value = curve_value(true_bids, agent, award, price_floor=price_floor, price_cap=price_cap)
        return duration_h * (value - outcome.clearing_price * award)

    return utility


def curve_misreports(
    true_bids: BidCurves,
    agent: int,
    *,
    price_floor: float,
    price_cap: float,
    price_factors: Sequence[float] = PRICE_FACTORS,
    power_factors: Sequence[float] = POWER_FACTORS,
    price_shifts_per_kwh: Sequence[float] = (0.0,),
) -> dict[str, BidCurves]:
    """Curve ``agent`` misreported: prices ``clip(f p + s, floor, cap)``, powers ``g q``.

    Every combination but the truth; scaling and shifting keep a curve monotone. The bids'
    ids, if any, are kept.
    """
    problems = Problems(subject="curve misreports")
    _checked_family(
        len(true_bids),
        agent,
        [
            ("price_factors", price_factors),
            ("power_factors", power_factors),
            ("price_shifts_per_kwh", price_shifts_per_kwh),
        ],
        problems,
    )
    problems.raise_if_any()
    family: dict[str, BidCurves] = {}
    for f, s, g in itertools.product(price_factors, price_shifts_per_kwh, power_factors):
        if f == 1.0 and s == 0.0 and g == 1.0:
            continue
        prices = np.array(true_bids.price_per_kwh)
        powers = np.array(true_bids.power_kw)
        prices[agent] = np.clip(f * prices[agent] + s, price_floor, price_cap)
        powers[agent] = g * powers[agent]
        curves = BidCurves.from_breakpoints(prices, powers)
        if true_bids.ids is not None:
            curves = curves.with_ids(true_bids.ids)
        family[f"price x{f:g} {s:+.2f}, power x{g:g}"] = curves
    if not family:
        problems.add("price_factors", "leave no misreport: every combination is the truth")
        problems.raise_if_any()
    return family
