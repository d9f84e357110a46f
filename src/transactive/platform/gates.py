"""What depends on a market's kind: when its gates close, its intervals, who bids which side.

The platform runs three kinds of market (issue 13;
:class:`~transactive.platform.schemas.MarketKind`). They clear with the same auction
(:func:`transactive.market.clear`); this module holds the rules that tell them apart, as pure
functions (no database, no clock) that the CRUD layer and the interval lifecycle call:

- **Real-time** (the 5-minute double auctions of the Olympic Peninsula demonstration,
  Hammerstrom et al., PNNL-17167, 2007, and of AEP Ohio's gridSMART, PNNL-23192, 2014): each
  interval has its own gate, ``gate_closure_lead_s`` before its start.
- **Day-ahead** (the European day-ahead auction, SDAC, run by the NEMOs such as EPEX SPOT with
  the EUPHEMIA algorithm): one gate for every interval of a delivery day, 12:00 CET on the day
  before for all of day D. Here the gate of an interval is midnight (UTC) of its delivery day
  minus ``gate_closure_lead_s``, so a lead of 12 h closes every interval of day D at 12:00 UTC on
  D−1. The platform's delivery days are UTC days (the SDAC's are CET days; an operator matching
  them exactly would need a time zone on the market, which the data model does not carry).
  Intervals are the SDAC's market time units: whole hours (3600 s), or quarter-hours (900 s,
  the SDAC's MTU since the delivery day 1 October 2025), aligned to the day. Each interval
  clears on its own curves (EUPHEMIA with hourly simple orders only, no block or complex orders,
  separates by market time unit).
- **Flexibility** (Hu et al. 2019, §3.3, flexibility services; USEF, *The Framework
  Specifications* 2021, flexibility trading, where the DSO is the buyer of flexibility: FlexRequest,
  FlexOffer, FlexOrder): the DSO buys congestion relief from providers. Gates close like a
  real-time market's. A provider's bid is a selling curve of relief (power <= 0 at every price:
  kW of load decrease or DG increase it offers against its baseline, at that price); the DSO's
  bid is a buying curve (power >= 0: the relief it buys at up to that price); only the market's
  DSO buys, and it needs a contract on the market to bid. The market has no substation supply
  (the DSO is the only counterparty of the providers), no supplier (deviations settle with the
  DSO) and no network fees (relief is a change against a baseline, not a use of the network;
  the energy itself is billed in the energy markets).

References
----------
- Hu, J., et al., "Transactive Energy: an Effective Mechanism for Balancing Electric Energy
  System", Proceedings of the CSEE 39(21), 2019, §3.1.1 and §3.3.
- SDAC (Single Day-Ahead Coupling) and EPEX SPOT, day-ahead auction: order book gate closure
  12:00 CET on D−1 for the 24 (or 96) market time units of D; EUPHEMIA public description.
- USEF Foundation, *USEF: The Framework Specifications 2021*, §§ on flexibility trading between
  the DSO and aggregators and on the settlement of flexibility.

"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from transactive.errors import Problems
from transactive.platform.models import Market
from transactive.platform.schemas import MarketCreate, MarketKind

__all__ = [
    "DAY_AHEAD_INTERVALS_S",
    "bid_side_problems",
    "delivery_day",
    "gate_closes_at",
    "market_kind_problems",
]

#: The day-ahead market time units the platform accepts (SDAC: 60 min, and 15 min since the
#: delivery day 1 October 2025), in seconds.
DAY_AHEAD_INTERVALS_S = (3600, 900)
_DAY_S = 86400

_KIND_NAME = {
    MarketKind.REAL_TIME: "real-time",
    MarketKind.DAY_AHEAD: "day-ahead",
    MarketKind.FLEXIBILITY: "flexibility",
}


def _label(kind: MarketKind, market_id: int | None) -> str:
    name = _KIND_NAME[kind]
    return f"{name} market" if market_id is None else f"{name} market {market_id}"


def delivery_day(start: datetime) -> datetime:
    """Midnight (UTC) of the delivery day of an interval starting at ``start`` (aware)."""
    utc = start.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def _interval_problem(kind: MarketKind, interval_s: int, market_id: int | None) -> str | None:
    """Why a market of this kind cannot have intervals of ``interval_s`` seconds (None: it can)."""
    if kind is MarketKind.DAY_AHEAD and interval_s not in DAY_AHEAD_INTERVALS_S:
        return (
            f"a {_label(kind, market_id)} has intervals of whole hours (3600 s) or "
            f"quarter-hours (900 s), the day-ahead auction's market time units; got {interval_s} s"
        )
    return None


def gate_closes_at(
    kind: MarketKind,
    start: datetime,
    interval_s: int,
    lead_s: int,
    *,
    market_id: int | None = None,
) -> datetime:
    """When the gate of the interval starting at ``start`` closes, by the market kind's rule.

    Real-time and flexibility: ``start − lead_s`` (each interval its own gate). Day-ahead:
    midnight (UTC) of the interval's delivery day ``− lead_s`` (one gate for the whole day; with
    a lead of 12 h, 12:00 UTC on the day before: the SDAC/EPEX day-ahead auction's rule, see the
    module docstring).

    Parameters
    ----------
    kind : MarketKind
        The market's kind.
    start : datetime
        The interval's start, timezone-aware.
    interval_s : int
        The market's interval length, seconds (> 0); a day-ahead market's must be 3600 or 900
        and ``start`` aligned to it from midnight UTC.
    lead_s : int
        The market's ``gate_closure_lead_s`` (>= 0).
    market_id : int, optional
        Named in the error message.

    Returns
    -------
    datetime
        The gate closure, aware UTC.

    Raises
    ------
    ValidationError
        A naive ``start``, a non-positive interval or a negative lead, and for a day-ahead market
        an interval that is not a whole hour or a quarter-hour, or a start not aligned to it
        within the day; every problem at once, naming the market.

    """
    label = _label(kind, market_id)
    problems = Problems(subject=f"gate of an interval of the {label}")
    aware = start.tzinfo is not None and start.utcoffset() is not None
    if not aware:
        problems.add("start", f"must be timezone-aware, got {start!r}")
    if not (isinstance(interval_s, int | np.integer) and interval_s > 0):
        problems.add(
            "interval_s", f"must be a positive whole number of seconds, got {interval_s!r}"
        )
    if not (isinstance(lead_s, int | np.integer) and lead_s >= 0):
        problems.add(
            "gate_closure_lead_s", f"must be a whole number of seconds >= 0, got {lead_s!r}"
        )
    problems.raise_if_any()
    lead = timedelta(seconds=int(lead_s))
    utc = start.astimezone(UTC)
    if kind is not MarketKind.DAY_AHEAD:
        return utc - lead
    length = _interval_problem(kind, int(interval_s), market_id)
    if length is not None:
        problems.add("interval_s", length)
    day = delivery_day(utc)
    offset_us = round((utc - day) / timedelta(microseconds=1))
    if length is None and offset_us % (int(interval_s) * 1_000_000) != 0:
        problems.add(
            "start",
            f"{utc.isoformat()} is not aligned to the {label}'s {interval_s} s intervals "
            f"from midnight UTC of its delivery day",
        )
    problems.raise_if_any()
    return day - lead


def market_kind_problems(market: Market | MarketCreate) -> list[str]:
    """Every term of a market its kind does not allow (empty: the terms fit the kind).

    Day-ahead: intervals of 3600 s or 900 s. Flexibility: a DSO (the buyer of relief), and no
    substation supply, no supplier and no network rates (see the module docstring). The strings
    name the field first, as :func:`transactive.platform.crud.create_market`'s problems do.
    """
    problems: list[str] = []
    length = _interval_problem(market.kind, int(market.interval_s), None)
    if length is not None:
        problems.append(f"interval_s: {length}")
    if market.kind is not MarketKind.FLEXIBILITY:
        return problems
    if market.dso_member_id is None:
        problems.append(
            "dso_member_id: a flexibility market needs its DSO, the buyer of congestion relief "
            "and the counterparty of the providers' deviations"
        )
    if market.supply_price_per_kwh is not None or market.supply_capacity_kw is not None:
        problems.append(
            "supply_price_per_kwh: a flexibility market has no substation supply: the DSO buys "
            "the relief the providers sell"
        )
    if market.supplier_member_id is not None:
        problems.append(
            "supplier_member_id: a flexibility market has no supplier: the providers' deviations "
            "settle with the DSO"
        )
    rates = {
        "network_import_per_kwh": market.network_import_per_kwh,
        "network_export_per_kwh": market.network_export_per_kwh,
        "loss_price_per_kwh": market.loss_price_per_kwh,
    }
    for name, rate in rates.items():
        if rate != 0:
            problems.append(
                f"{name}: a flexibility market bills no network fees (relief is a change "
                f"against a baseline; the energy is billed in the energy markets), got {rate}"
            )
    return problems


def bid_side_problems(
    kind: MarketKind,
    *,
    dso_member_id: int | None,
    member_id: int,
    power_kw: Sequence[float] | np.ndarray,
) -> list[str]:
    """Why a member may not bid this curve in a market of this kind (empty: it may).

    In a flexibility market only the market's DSO buys relief (its curve's power >= 0 at every
    price) and every other member sells it (power <= 0 at every price); real-time and day-ahead
    markets take any curve. ``power_kw`` are the curve's breakpoints' powers.
    """
    if kind is not MarketKind.FLEXIBILITY:
        return []
    power = np.asarray(power_kw, dtype=np.float64)
    if dso_member_id is None:
        return ["market: the flexibility market has no DSO to buy relief; it takes no bids"]
    if member_id == dso_member_id:
        bad = np.flatnonzero(power < 0)
        if bad.size:
            points = ", ".join(str(k) for k in bad.tolist())
            return [
                "points.power_kw: the DSO buys congestion relief in a flexibility market: its "
                f"curve's power must be >= 0 (points {points})"
            ]
        return []
    bad = np.flatnonzero(power > 0)
    if bad.size:
        points = ", ".join(str(k) for k in bad.tolist())
        return [
            "points.power_kw: in a flexibility market a provider sells relief (kW of load "
            "decrease or DG increase, negative power) and only the DSO buys: its curve's power "
            f"must be <= 0 (points {points})"
        ]
    return []
